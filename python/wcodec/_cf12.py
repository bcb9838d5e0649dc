"""The compute format (cf12, docs/FORMAT.md) in torch: a BF16 weight packed on the GPU, and the
decode-fused linear as the torch custom op wcodec::cf12_linear (a fake implementation beside it,
so that torch.compile and CUDA graphs trace it). The library picks the kernel by batch and GPU
(wcgpu_linear_kernel_for): the fused GEMV for decode steps, the fused GEMM for larger batches
(both read each weight once, compressed), and above the GEMM's measured range (long prefills)
the weight unpacked into a temporary BF16 tensor and F.linear. Every launch goes on torch's
current stream, every buffer comes from torch's allocator, and nothing synchronizes."""
import ctypes
from typing import Optional

import torch
from torch.nn import functional as F

from . import _lib

GEMV, GEMM, UNPACK = 0, 1, 2  # wcgpu_linear_kernel


class Cf12Weight:
    """One matrix in the compute format: body, offsets and escapes (device tensors), its shape and
    the base of its exponent window."""
    __slots__ = ("body", "offsets", "escapes", "rows", "cols", "base")

    def nbytes(self):
        return sum(t.numel() * t.element_size() for t in (self.body, self.offsets, self.escapes))

    def unpack(self):
        w = torch.empty((self.rows, self.cols), dtype=torch.bfloat16, device=self.body.device)
        _unpack_into(self.body, self.offsets, self.escapes, self.rows, self.cols, self.base, w)
        return w


def _stream(device):
    return ctypes.c_void_p(torch.cuda.current_stream(device).cuda_stream)


def _struct(body, offsets, escapes, rows, cols, base):
    return _lib.Cf12(body.data_ptr(), offsets.data_ptr(), escapes.data_ptr(), rows, cols, base)


def _unpack_into(body, offsets, escapes, rows, cols, base, w):
    err = _lib._Error()
    m = _struct(body, offsets, escapes, rows, cols, base)
    _lib.check(_lib.wcgpu_cf12_unpack(ctypes.byref(m), w.data_ptr(), _stream(w.device), ctypes.byref(err)), err)


def pack(w):
    """A 2-D BF16 CUDA tensor in the compute format (synchronizes twice: for the window's base and
    for the escape count; attach time only)."""
    if w.dtype != torch.bfloat16 or w.dim() != 2 or not w.is_cuda or not w.numel():
        raise ValueError(f"cf12: needs a non-empty 2-D bfloat16 CUDA tensor, not {w.dtype}{list(w.shape)} "
                         f"on {w.device}")
    w = w.contiguous()
    rows, cols = w.shape
    dev, s, err = w.device, _stream(w.device), _lib._Error()
    hist = torch.empty(256, dtype=torch.int64, device=dev)
    _lib.check(_lib.wcgpu_cf12_histogram(w.data_ptr(), w.numel(), hist.data_ptr(), s, ctypes.byref(err)), err)
    base = _lib.wc_cf12_pick_base((ctypes.c_uint64 * 256)(*hist.tolist()))
    cw = Cf12Weight()
    cw.rows, cw.cols, cw.base = rows, cols, base
    cw.offsets = torch.empty(_lib.wc_cf12_blocks(rows, cols) + 1, dtype=torch.int32, device=dev)
    _lib.check(_lib.wcgpu_cf12_offsets(w.data_ptr(), rows, cols, base, cw.offsets.data_ptr(), s,
                                       ctypes.byref(err)), err)
    n = int(cw.offsets[-1].item()) & 0xFFFFFFFF
    cw.body = torch.empty(_lib.wc_cf12_body_bytes(rows, cols), dtype=torch.uint8, device=dev)
    cw.escapes = torch.empty(max(n, 1), dtype=torch.int32, device=dev)
    _lib.check(_lib.wcgpu_cf12_pack(w.data_ptr(), rows, cols, base, cw.offsets.data_ptr(), cw.body.data_ptr(),
                                    cw.escapes.data_ptr(), s, ctypes.byref(err)), err)
    return cw


def _product(kernel, x2, body, offsets, escapes, rows, cols, base, bias, reference_weight):
    m = x2.shape[0]
    y = torch.empty((m, rows), dtype=torch.bfloat16, device=x2.device)
    nws = (_lib.wcgpu_gemv_workspace_bytes if kernel == GEMV else _lib.wcgpu_gemm_workspace_bytes)(rows, cols, m)
    ws = torch.empty(nws, dtype=torch.uint8, device=x2.device) if nws else None
    err, s = _lib._Error(), _stream(x2.device)
    b = bias.data_ptr() if bias is not None else None
    wsp = ws.data_ptr() if ws is not None else None
    if reference_weight is None:
        st = _struct(body, offsets, escapes, rows, cols, base)
        fn = _lib.wcgpu_gemv_cf12 if kernel == GEMV else _lib.wcgpu_gemm_cf12
        _lib.check(fn(ctypes.byref(st), x2.data_ptr(), m, b, y.data_ptr(), wsp, s, ctypes.byref(err)), err)
    else:
        fn = _lib.wcgpu_gemv_bf16_ref if kernel == GEMV else _lib.wcgpu_gemm_bf16_ref
        _lib.check(fn(reference_weight.data_ptr(), rows, cols, x2.data_ptr(), m, b, y.data_ptr(), wsp, s,
                      ctypes.byref(err)), err)
    return y


def gemv(x2, body, offsets, escapes, rows, cols, base, bias, reference_weight=None):
    """y = x2 . W^T (+ bias) by the fused GEMV (x2: [m <= 16, cols] contiguous BF16), or by the
    reference kernel of the same tiling on plain BF16 weights when reference_weight is given."""
    return _product(GEMV, x2, body, offsets, escapes, rows, cols, base, bias, reference_weight)


def gemm(x2, body, offsets, escapes, rows, cols, base, bias, reference_weight=None):
    """The same by the fused GEMM (any m), or by its reference kernel on plain BF16 weights."""
    return _product(GEMM, x2, body, offsets, escapes, rows, cols, base, bias, reference_weight)


def _linear(x, body, offsets, escapes, rows, cols, base, bias):
    lead = x.shape[:-1]
    x2 = x.reshape(-1, cols).to(torch.bfloat16).contiguous()
    bias = None if bias is None else bias.to(torch.bfloat16).contiguous()
    kernel = _lib.wcgpu_linear_kernel_for(rows, cols, x2.shape[0]) if x2.shape[0] else UNPACK
    if kernel != UNPACK:
        y = _product(kernel, x2, body, offsets, escapes, rows, cols, base, bias, None)
    else:
        w = torch.empty((rows, cols), dtype=torch.bfloat16, device=x.device)
        _unpack_into(body, offsets, escapes, rows, cols, base, w)
        y = F.linear(x2, w, bias)
    return y.reshape(*lead, rows)


if hasattr(torch, "library") and hasattr(torch.library, "custom_op"):
    @torch.library.custom_op("wcodec::cf12_linear", mutates_args=())
    def cf12_linear(x: torch.Tensor, body: torch.Tensor, offsets: torch.Tensor, escapes: torch.Tensor,
                    rows: int, cols: int, base: int, bias: Optional[torch.Tensor]) -> torch.Tensor:
        return _linear(x, body, offsets, escapes, rows, cols, base, bias)

    @cf12_linear.register_fake
    def _(x, body, offsets, escapes, rows, cols, base, bias):
        return x.new_empty((*x.shape[:-1], rows), dtype=torch.bfloat16)
else:  # torch before 2.4: a plain function (eager only)
    cf12_linear = _linear


def linear(x, cw, bias=None):
    """F.linear(x, W, bias) for W held as the Cf12Weight cw."""
    return cf12_linear(x, cw.body, cw.offsets, cw.escapes, cw.rows, cw.cols, cw.base, bias)
