/* gemv_cf12.cu - the decode-fused GEMV: W read once, in the compute format (three 16-byte loads a
 * lane per 1024 weights), decoded in registers into the tensor cores' A fragments. */
#include "cf12.cuh"
#include "gemv_tile.cuh"
#include "wcgpu.h"

namespace gemv {

struct cf12_src {
    const uint8_t *body;
    const uint32_t *offsets, *escapes;
    uint32_t U, base;
    typedef cf12::raw raw;
    __device__ __forceinline__ raw fetch(uint32_t rt, uint32_t u, unsigned lane) const {
        return cf12::fetch(body, (uint64_t)rt * U + u, lane);
    }
    __device__ __forceinline__ void frags(const raw &r, uint32_t rt, uint32_t u, unsigned lane, uint32_t f[4][4]) const {
        cf12::decode(r, offsets, escapes, (uint64_t)rt * U + u, lane, base, f);
    }
};

cudaError_t run_cf12(const wcgpu_cf12 &m, const args &a, const plan &p, cudaStream_t s) {
    return launch(cf12_src{m.body, m.offsets, m.escapes, a.U, m.base}, a, p, s);
}

int cf12_ctas_per_sm(int warps, bool streamed, int nb) {
    static int cache[2][9][3];
    if ((warps != 4 && warps != 8) || (nb != 1 && nb != 2)) return 1;
    int &n = cache[streamed][warps][nb];
    if (!n) n = ctas_per_sm<cf12_src>(streamed, warps, nb);
    return n;
}

} // namespace gemv
