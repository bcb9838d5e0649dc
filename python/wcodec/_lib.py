"""The C library (libwcodec.so) through ctypes: where it is found, and its functions' types.

Found, in this order: the file named by $WCODEC_LIBRARY; a copy installed inside this package
(pip install ./python after building); build/libwcodec.so of the source tree this package sits
in (PYTHONPATH=python); the system's (ldconfig, after cmake --install)."""
import ctypes
import ctypes.util
import os


class WcodecError(Exception):
    """A failure of the C library; the message is its one line (file, tile or tensor named)."""


class _Error(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("msg", ctypes.c_char * 512)]


def _candidates():
    env = os.environ.get("WCODEC_LIBRARY")
    if env:
        yield env
        return
    here = os.path.dirname(os.path.abspath(__file__))
    yield os.path.join(here, "libwcodec.so")
    yield os.path.join(here, "..", "..", "build", "libwcodec.so")
    found = ctypes.util.find_library("wcodec")
    if found:
        yield found


def _load():
    tried = []
    for path in _candidates():
        if path != os.path.basename(path) and not os.path.exists(path):
            tried.append(path)
            continue
        try:
            return ctypes.CDLL(path)
        except OSError as e:
            tried.append(f"{path} ({e})")
    raise ImportError("wcodec: libwcodec.so not found; build it (cmake --build build) or set "
                      "WCODEC_LIBRARY. Tried: " + ", ".join(tried or ["nothing"]))


lib = _load()
P, U64, U32, SZ, INT = ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint32, ctypes.c_size_t, ctypes.c_int
ERR = ctypes.POINTER(_Error)


def _fn(name, res, *args):
    f = getattr(lib, name)
    f.restype, f.argtypes = res, list(args)
    return f


wc_container_open = _fn("wc_container_open", INT, ctypes.c_char_p, ctypes.POINTER(P), ERR)
wc_container_close = _fn("wc_container_close", None, P)
wc_container_source_size = _fn("wc_container_source_size", U64, P)
class TileInfo(ctypes.Structure):  # wc_tile_info
    _fields_ = [("payload_offset", ctypes.c_uint64), ("src_offset", ctypes.c_uint64),
                ("checksum", ctypes.c_uint64), ("src_size", ctypes.c_uint32),
                ("coded_size", ctypes.c_uint32), ("tensor", ctypes.c_uint32), ("mode", ctypes.c_uint8)]


wc_container_tile_size = _fn("wc_container_tile_size", U32, P)
wc_container_find_tile = _fn("wc_container_find_tile", U32, P, U64)
wc_container_tile = _fn("wc_container_tile", ctypes.POINTER(TileInfo), P, U32)
wc_container_advise = _fn("wc_container_advise", INT, P, U32, U32)
wc_container_read_range_mt = _fn("wc_container_read_range_mt", INT, P, U64, SZ, P, ctypes.c_uint, ERR)

# URLs (net/): an HTTP folder's manifest or an S3 prefix's listing, and small whole objects.
class ManifestEntry(ctypes.Structure):  # wc_manifest_entry
    _fields_ = [("path", ctypes.c_char_p), ("size", ctypes.c_uint64), ("mtime", ctypes.c_int64),
                ("xxh3", ctypes.c_uint64), ("link", ctypes.c_char_p)]


class Manifest(ctypes.Structure):  # wc_manifest
    _fields_ = [("n", SZ), ("files", ctypes.POINTER(ManifestEntry))]


wcnet_list_folder = _fn("wcnet_list_folder", INT, ctypes.c_char_p, ctypes.POINTER(ctypes.POINTER(Manifest)), ERR)
wc_manifest_free = _fn("wc_manifest_free", None, ctypes.POINTER(Manifest))
wcnet_fetch_object = _fn("wcnet_fetch_object", INT, ctypes.c_char_p, SZ, ctypes.POINTER(ctypes.c_void_p),
                         ctypes.POINTER(SZ), ERR)
wcnet_free = _fn("wcnet_free", None, ctypes.c_void_p)

# the compute format (cf12) on the CPU: the reference packer, for tests and for the CPU path
wc_cf12_blocks = _fn("wc_cf12_blocks", U64, U32, U32)
wc_cf12_body_bytes = _fn("wc_cf12_body_bytes", U64, U32, U32)
wc_cf12_pick_base = _fn("wc_cf12_pick_base", ctypes.c_uint, ctypes.POINTER(U64))
wc_cf12_histogram = _fn("wc_cf12_histogram", None, P, SZ, ctypes.POINTER(U64))
wc_cf12_offsets = _fn("wc_cf12_offsets", U64, P, U32, U32, ctypes.c_uint, P)
wc_cf12_pack = _fn("wc_cf12_pack", INT, P, U32, U32, ctypes.c_uint, P, P, P, ERR)
wc_cf12_unpack = _fn("wc_cf12_unpack", INT, P, P, P, U32, U32, ctypes.c_uint, P, ERR)

# The CUDA decoder is in the library only where it was built with CUDA.
has_gpu = hasattr(lib, "wcgpu_open")
if has_gpu:
    wcgpu_open = _fn("wcgpu_open", INT, INT, ctypes.POINTER(P), ERR)
    wcgpu_close = _fn("wcgpu_close", None, P)
    class GpuRange(ctypes.Structure):  # wcgpu_range
        _fields_ = [("c", P), ("offset", U64), ("len", SZ), ("d_dst", P)]

    wcgpu_read_ranges = _fn("wcgpu_read_ranges", INT, P, ctypes.POINTER(GpuRange), SZ, ctypes.POINTER(SZ), ERR)
    # resident sets (wcodec.torch.attach): payloads kept coded, decoded per group on a stream
    wcgpu_set_create = _fn("wcgpu_set_create", INT, P, INT, ctypes.POINTER(P), ERR)
    wcgpu_set_close = _fn("wcgpu_set_close", None, P)
    wcgpu_set_add = _fn("wcgpu_set_add", INT, P, U32, P, U64, U64, U64, ERR)
    wcgpu_set_payload_bytes = _fn("wcgpu_set_payload_bytes", U64, P)
    wcgpu_set_group_bytes = _fn("wcgpu_set_group_bytes", U64, P, U32)
    wcgpu_set_device_bytes = _fn("wcgpu_set_device_bytes", U64, P)
    wcgpu_set_finish = _fn("wcgpu_set_finish", INT, P, P, P, U64, ctypes.POINTER(U32), ERR)
    wcgpu_set_decode = _fn("wcgpu_set_decode", INT, P, U32, P, P, INT, ERR)
    wcgpu_set_check = _fn("wcgpu_set_check", INT, P, U32, P, ctypes.POINTER(U32), ERR)

    class Cf12(ctypes.Structure):  # wcgpu_cf12
        _fields_ = [("body", P), ("offsets", P), ("escapes", P), ("rows", U32), ("cols", U32), ("base", U32)]

    wcgpu_cf12_histogram = _fn("wcgpu_cf12_histogram", INT, P, U64, P, P, ERR)
    wcgpu_cf12_offsets = _fn("wcgpu_cf12_offsets", INT, P, U32, U32, ctypes.c_uint, P, P, ERR)
    wcgpu_cf12_pack = _fn("wcgpu_cf12_pack", INT, P, U32, U32, ctypes.c_uint, P, P, P, P, ERR)
    wcgpu_cf12_unpack = _fn("wcgpu_cf12_unpack", INT, ctypes.POINTER(Cf12), P, P, ERR)
    wcgpu_gemv_workspace_bytes = _fn("wcgpu_gemv_workspace_bytes", U64, U32, U32, U32)
    wcgpu_gemv_cf12 = _fn("wcgpu_gemv_cf12", INT, ctypes.POINTER(Cf12), P, U32, P, P, P, P, ERR)
    wcgpu_gemv_bf16_ref = _fn("wcgpu_gemv_bf16_ref", INT, P, U32, U32, P, U32, P, P, P, P, ERR)
    wcgpu_gemm_workspace_bytes = _fn("wcgpu_gemm_workspace_bytes", U64, U32, U32, U32)
    wcgpu_gemm_cf12 = _fn("wcgpu_gemm_cf12", INT, ctypes.POINTER(Cf12), P, U32, P, P, P, P, ERR)
    wcgpu_gemm_bf16_ref = _fn("wcgpu_gemm_bf16_ref", INT, P, U32, U32, P, U32, P, P, P, P, ERR)
    wcgpu_linear_kernel_for = _fn("wcgpu_linear_kernel_for", INT, U32, U32, U32)  # 0 GEMV, 1 GEMM, 2 unpack


def check(status, err):
    """Raises WcodecError with the library's message when status is not WC_OK (0)."""
    if status != 0:
        raise WcodecError(err.msg.decode("utf-8", "replace") or f"wcodec error {status}")
