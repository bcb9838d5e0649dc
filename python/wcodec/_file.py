"""A .wcodec container opened for reading: its safetensors header, and any byte range of the
original file decoded on CPU threads or by the GPU into memory the caller owns."""
import ctypes
import json
import os
import struct
import threading

from . import _lib

_threads = os.cpu_count() or 1


class Container:
    def __init__(self, path):
        self.path = os.fspath(path)
        self._c = ctypes.c_void_p()
        err = _lib._Error()
        _lib.check(_lib.wc_container_open(self.path.encode(), ctypes.byref(self._c), ctypes.byref(err)), err)
        self.source_size = _lib.wc_container_source_size(self._c)
        head = self.read(0, 8) if self.source_size >= 8 else b""
        if len(head) < 8:
            self.close()
            raise _lib.WcodecError(f"{self.path}: the original file is shorter than a safetensors header")
        n = struct.unpack("<Q", head)[0]
        if n > self.source_size - 8:
            self.close()
            raise _lib.WcodecError(f"{self.path}: header length {n} runs past the file")
        # the container checked this header when it was encoded; parse it as safetensors does
        self.header = json.loads(bytes(self.read(8, n)))
        self.metadata = self.header.pop("__metadata__", None)
        self.data_start = 8 + n
        self.tile_size = _lib.wc_container_tile_size(self._c)  # a tensor's tiles start every tile_size bytes

    def close(self):
        if self._c:
            _lib.wc_container_close(self._c)
            self._c = ctypes.c_void_p()

    def __del__(self):
        self.close()

    def read_into(self, offset, size, address, threads=None):
        """Decodes original bytes [offset, offset + size) into host memory at `address`."""
        err = _lib._Error()
        _lib.check(_lib.wc_container_read_range_mt(self._c, offset, size, address,
                                                   threads or _threads, ctypes.byref(err)), err)

    def advise(self, offset, size):
        """Tells the source that original bytes [offset, offset + size) will be read soon, in
        reads of their parts: a URL's source then fetches all of it ahead, not each part alone."""
        if size:
            _lib.wc_container_advise(self._c, _lib.wc_container_find_tile(self._c, offset),
                                     _lib.wc_container_find_tile(self._c, offset + size - 1))

    def tile_start(self, offset):
        """Where the tile holding original byte `offset` starts (a read that ends there decodes
        no tile twice); the file's size past its end."""
        i = _lib.wc_container_find_tile(self._c, offset)
        return _lib.wc_container_tile(self._c, i).contents.src_offset if offset < self.source_size else self.source_size

    def read(self, offset, size, threads=None):
        buf = bytearray(size)
        if size:
            self.read_into(offset, size, ctypes.addressof((ctypes.c_char * size).from_buffer(buf)), threads)
        return buf

    def read_into_gpu(self, offset, size, device_ptr, device):
        """Decodes original bytes [offset, offset + size) on CUDA device `device` (an index)
        straight into device memory at `device_ptr`."""
        read_into_gpu([(self, offset, size, device_ptr)], device)

    def coded_bytes(self, offset, size):
        """Coded bytes of the tiles that hold original bytes [offset, offset + size)."""
        if not size:
            return 0
        first = _lib.wc_container_find_tile(self._c, offset)
        last = _lib.wc_container_find_tile(self._c, offset + size - 1)
        return sum(_lib.wc_container_tile(self._c, i).contents.coded_size for i in range(first, last + 1))

    def tensor_range(self, name):
        """The tensor's header entry and its absolute byte range in the original file."""
        try:
            info = self.header[name]
        except KeyError:
            raise KeyError(f"{self.path}: no tensor named {name!r}") from None
        b, e = info["data_offsets"]
        return info, self.data_start + b, e - b


def read_into_gpu(parts, device):
    """Decodes every (container, offset, size, device_ptr) of `parts` on CUDA device `device` as
    one pipeline (wcgpu_read_ranges: the files are read, uploaded and decoded overlapped, one
    after another with no gap between them). An error names the file it concerns."""
    parts = [p for p in parts if p[2]]
    if not parts:
        return
    gpu = _gpu(device)  # first: without the CUDA decoder, its clear error
    ranges = (_lib.GpuRange * len(parts))(*[_lib.GpuRange(c._c, off, size, ptr) for c, off, size, ptr in parts])
    err, bad = _lib._Error(), ctypes.c_size_t(len(parts))
    with gpu.lock:
        st = _lib.wcgpu_read_ranges(gpu.handle, ranges, len(parts), ctypes.byref(bad), ctypes.byref(err))
    if st:
        msg = err.msg.decode("utf-8", "replace") or f"wcodec error {st}"
        raise _lib.WcodecError(f"{parts[bad.value][0].path}: {msg}" if bad.value < len(parts) else msg)


def check_size(path, dtype, shape, itemsize, size):
    """Raises ValueError unless `shape` of `itemsize`-byte elements is exactly `size` bytes: checked
    before anything is allocated, so that a crafted header cannot ask for more memory than its
    bytes justify."""
    n = itemsize
    for d in shape:
        if not isinstance(d, int) or d < 0:
            raise ValueError(f"{path}: {dtype}{list(shape)}: not a shape")
        n *= d
    if n != size:
        raise ValueError(f"{path}: {dtype}{list(shape)} is {n} bytes, the file gives {size}")


class _Gpu:
    def __init__(self, device):
        if not _lib.has_gpu:
            raise _lib.WcodecError("this libwcodec was built without the CUDA decoder "
                                   "(build with nvcc found: cmake -DCMAKE_CUDA_COMPILER=...)")
        self.handle = ctypes.c_void_p()
        err = _lib._Error()
        _lib.check(_lib.wcgpu_open(device, ctypes.byref(self.handle), ctypes.byref(err)), err)
        self.lock = threading.Lock()  # a handle serves one thread at a time


_gpus = {}
_gpus_lock = threading.Lock()


def _gpu(device):
    with _gpus_lock:
        if device not in _gpus:
            _gpus[device] = _Gpu(device)
        return _gpus[device]
