/* gemm_wgmma_cf12.cu - the decode-fused GEMM on sm_90a: each weight read once per 128 or 256
 * batch rows, in the compute format, decoded in registers into wgmma's A fragments, multiplied by
 * activations staged in shared memory (gemm_wgmma_tile.cuh). Built for sm_90a alone. */
#include "cf12.cuh"
#include "gemm_wgmma_tile.cuh"
#include "wcgpu.h"

namespace gemm_wgmma {

cudaError_t run_cf12(const wcgpu_cf12 &m, const args &a, const plan &p, cudaStream_t s) {
    return launch(cf12::source{m.body, m.offsets, m.escapes, a.U, m.base}, a, p, s);
}

int cf12_ctas_per_sm(int wg, int nt) {
    static int cache[3][3];
    if ((wg != 1 && wg != 2) || (nt != 128 && nt != 256)) return 1;
    int &c = cache[wg][nt / 128];
    if (!c) c = ctas_per_sm<cf12::source>(wg, nt);
    return c;
}

} // namespace gemm_wgmma
