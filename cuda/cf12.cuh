/* cf12.cuh - the compute format on the device: one warp reads one 16 x 64 block (three 16-byte
 * loads a lane) and turns it into the A fragments of four m16n8k16 tensor-core products in a
 * handful of integer ops a weight. docs/FORMAT.md ("cf12") has the layout; core/common/cf12.c is
 * the CPU reference these must match. */
#ifndef WCGPU_CF12_CUH
#define WCGPU_CF12_CUH

#include <stdint.h>

#include "wcodec.h"

namespace cf12 {

__host__ __device__ inline uint64_t blocks(uint32_t rows, uint32_t cols) {
    return (uint64_t)((rows + WC_CF12_BLOCK_ROWS - 1) / WC_CF12_BLOCK_ROWS) *
           ((cols + WC_CF12_BLOCK_COLS - 1) / WC_CF12_BLOCK_COLS);
}

struct raw {
    uint4 lo, hi, cd; /* sign+mantissa bytes of slots 0..15 and 16..31, the 32 exponent codes */
};

/* Weights are read once: stream them past L1. */
__device__ __forceinline__ uint4 ld_stream(const uint4 *p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
    return v;
}

__device__ __forceinline__ raw fetch(const uint8_t *body, uint64_t block, unsigned lane) {
    const uint4 *b = reinterpret_cast<const uint4 *>(body + block * WC_CF12_BLOCK_BYTES);
    raw r;
    r.lo = ld_stream(b + lane);
    r.hi = ld_stream(b + 32 + lane);
    r.cd = ld_stream(b + 64 + lane);
    return r;
}

/* One block on its way into L2 (no registers held): one bulk prefetch on sm_90, a line a lane
 * before it. */
__device__ __forceinline__ void prefetch_l2(const uint8_t *body, uint64_t block, unsigned lane) {
    const uint8_t *p = body + block * WC_CF12_BLOCK_BYTES;
#if __CUDA_ARCH__ >= 900
    if (lane == 0) asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(WC_CF12_BLOCK_BYTES) : "memory");
#else
    if (lane < WC_CF12_BLOCK_BYTES / 128) asm volatile("prefetch.global.L2 [%0];" ::"l"(p + lane * 128));
#endif
}

__device__ __forceinline__ uint32_t prmt(uint32_t a, uint32_t sel) {
    uint32_t r;
    asm("prmt.b32 %0, %1, 0, %2;" : "=r"(r) : "r"(a), "r"(sel));
    return r;
}

/* Two weights as one bf16x2 register: their sign+mantissa bytes spread by prmt (each byte's sign
 * replicated into the byte above it), masked to sign and mantissa, plus the exponent window's
 * codes moved to bits 7..10 and 23..26, plus the base there. */
template <unsigned Q>
__device__ __forceinline__ uint32_t pair(uint32_t smw, uint32_t cw, uint32_t b7) {
    const uint32_t x = prmt(smw, (Q & 1) ? 0xB3A2u : 0x9180u);
    const uint32_t c = (Q == 0 ? cw << 7 : Q == 1 ? cw << 3 : Q == 2 ? cw >> 1 : cw >> 5) & 0x07800780u;
    return (x & 0x807F807Fu) + c + b7;
}

__device__ __forceinline__ uint32_t has_zero_nibble(uint32_t v) {
    return (v - 0x11111111u) & ~v & 0x88888888u;
}

__device__ __forceinline__ uint32_t word(const uint4 &v, unsigned k) {
    return k == 0 ? v.x : k == 1 ? v.y : k == 2 ? v.z : v.w;
}

/* The exponent of an escaped slot (lane * 32 + slot) from its block's patches [lo, hi). */
static __device__ __noinline__ uint32_t escaped_exponent(const uint32_t *escapes, uint32_t lo, uint32_t hi, uint32_t pos) {
    for (uint32_t e = lo; e < hi; e++)
        if ((escapes[e] >> 8) == pos) return escapes[e] & 0xff;
    return 0; /* not reached for a well-formed matrix */
}

/* a[j][q]: the A fragment registers of product j (q = a0a1, a2a3, a4a5, a6a7). Escapes (code 0)
 * are patched from the block's list: rare, so the lane that has one takes the slow path. */
__device__ __forceinline__ void decode(const raw &r, const uint32_t *offsets, const uint32_t *escapes,
                                       uint64_t block, unsigned lane, unsigned base, uint32_t a[4][4]) {
    const uint32_t b7 = base << 7 | base << 23;
#pragma unroll
    for (unsigned j = 0; j < 4; j++) {
        const uint4 &sm = j < 2 ? r.lo : r.hi;
        const uint32_t w0 = word(sm, (j & 1) * 2), w1 = word(sm, (j & 1) * 2 + 1), cw = word(r.cd, j);
        a[j][0] = pair<0>(w0, cw, b7);
        a[j][1] = pair<1>(w0, cw, b7);
        a[j][2] = pair<2>(w1, cw, b7);
        a[j][3] = pair<3>(w1, cw, b7);
    }
    if (__builtin_expect((has_zero_nibble(r.cd.x) | has_zero_nibble(r.cd.y) | has_zero_nibble(r.cd.z) |
                          has_zero_nibble(r.cd.w)) != 0, 0)) {
        const uint32_t lo = offsets[block], hi = offsets[block + 1];
#pragma unroll
        for (unsigned p = 0; p < 16; p++)
#pragma unroll
            for (unsigned h = 0; h < 2; h++)
                if (!((word(r.cd, p >> 2) >> (4 * (p & 3) + 16 * h)) & 15)) {
                    const uint32_t shift = 7 + 16 * h;
                    a[p >> 2][p & 3] = (a[p >> 2][p & 3] & ~(0xFFu << shift)) |
                                       escaped_exponent(escapes, lo, hi, lane * 32 + p * 2 + h) << shift;
                }
    }
}

/* Where slot i of lane `lane` sits in its block (as slot_place in core/common/cf12.c). */
__device__ __forceinline__ void place(unsigned lane, unsigned i, unsigned *r, unsigned *c) {
    const unsigned g = lane >> 2, t = lane & 3, p = i >> 1, h = i & 1, j = p >> 2, q = p & 3;
    *r = g + 8 * (q & 1);
    *c = t * 16 + j * 4 + (q >> 1) * 2 + h;
}

/* The matrix as the kernels' weight source (gemv_tile.cuh, gemm_tile.cuh): a block's loads, its
 * decode into A fragments, its prefetch into L2. Its twin for plain BF16 is bf16_source.cuh. */
struct source {
    const uint8_t *body;
    const uint32_t *offsets, *escapes;
    uint32_t U, base;
    typedef cf12::raw raw;
    __device__ __forceinline__ raw fetch(uint32_t rt, uint32_t u, unsigned lane) const {
        return cf12::fetch(body, (uint64_t)rt * U + u, lane);
    }
    __device__ __forceinline__ void prefetch(uint64_t block, unsigned lane) const { prefetch_l2(body, block, lane); }
    __device__ __forceinline__ void frags(const raw &r, uint32_t rt, uint32_t u, unsigned lane, uint32_t f[4][4]) const {
        decode(r, offsets, escapes, (uint64_t)rt * U + u, lane, base, f);
    }
};

} // namespace cf12
#endif
