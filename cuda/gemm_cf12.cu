/* gemm_cf12.cu - the decode-fused GEMM: each weight read once per 64 batch rows, in the compute
 * format, decoded in registers into the tensor cores' A fragments and multiplied by activations
 * staged in shared memory (gemm_tile.cuh). */
#include "cf12.cuh"
#include "gemm_tile.cuh"
#include "wcgpu.h"

namespace gemm {

cudaError_t run_cf12(const wcgpu_cf12 &m, const args &a, const plan &p, cudaStream_t s) {
    return launch(cf12::source{m.body, m.offsets, m.escapes, a.U, m.base}, a, p, s);
}

int cf12_ctas_per_sm(int warps) {
    static int cache[9];
    if (warps != 4 && warps != 8) return 1;
    if (!cache[warps]) cache[warps] = ctas_per_sm<cf12::source>(warps);
    return cache[warps];
}

} // namespace gemm
