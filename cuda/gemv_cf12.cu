/* gemv_cf12.cu - the decode-fused GEMV: W read once, in the compute format (three 16-byte loads a
 * lane per 1024 weights), decoded in registers into the tensor cores' A fragments. */
#include "cf12.cuh"
#include "gemv_tile.cuh"
#include "wcgpu.h"

namespace gemv {

cudaError_t run_cf12(const wcgpu_cf12 &m, const args &a, const plan &p, cudaStream_t s) {
    return launch(cf12::source{m.body, m.offsets, m.escapes, a.U, m.base}, a, p, s);
}

int cf12_ctas_per_sm(int warps, bool streamed, int nb) {
    static int cache[2][9][3];
    if ((warps != 4 && warps != 8) || (nb != 1 && nb != 2)) return 1;
    int &n = cache[streamed][warps][nb];
    if (!n) n = ctas_per_sm<cf12::source>(streamed, warps, nb);
    return n;
}

} // namespace gemv
