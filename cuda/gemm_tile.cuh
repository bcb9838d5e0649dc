/* gemm_tile.cuh - the GEMM's tiling and reduction order (batches above the GEMV's and prefill),
 * shared by the fused kernel (gemm_cf12.cu) and its plain reference (gemm_bf16_ref.cu), which
 * differ only in where the A fragments come from: so the reference proves the fused kernel's
 * decode, bit for bit.
 *
 * A CTA computes WARPS row tiles of 16 output rows (a warp each) for 64 batch rows (TOKENS) over
 * a K-range of `per` 64-column units. The activations are what the warps share: the CTA copies
 * each unit's 64 x 64 slice of x into shared memory (cp.async, STAGES deep), and every warp reads
 * its B fragments there. The weights are what each warp owns: it reads its unit straight into
 * registers (one unit ahead, `pf` more on their way into L2), decodes it once, and multiplies the
 * fragments by the 8 groups of 8 batch rows (32 m16n8k16 products a unit). A warp sums its K-range
 * in unit order; K-ranges (blockIdx.z) are added in order by the split-K reduction. Batches above
 * 64 are more CTAs along blockIdx.x, the fastest-varying index, so that the CTAs reading one
 * group of rows run side by side and all but the first find the weights in L2. */
#ifndef WCGPU_GEMM_TILE_CUH
#define WCGPU_GEMM_TILE_CUH

#include <stdint.h>

#include "linear_common.cuh"

namespace gemm {
using namespace linear;

enum { TOKENS = 64, NB = TOKENS / 8, STAGES = 3, ROW_VECS = 9 /* 8 of a slice's row, 1 of padding */ };

/* A slice's row is 128 bytes; padded to 144 so that the 8 rows a quarter-warp reads (lanes of 2
 * groups) fall in distinct banks. */
struct slices {
    uint4 v[STAGES][TOKENS][ROW_VECS];
};

__device__ __forceinline__ void cp_async16(void *smem, const void *gmem, bool inside) {
    const uint32_t s = (uint32_t)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(s), "l"(gmem), "r"(inside ? 16 : 0) : "memory");
}

/* x[n0 .. n0+64][u*64 .. +64] into one stage, zeros outside x: 16-byte copies where x's rows
 * allow them, element by element where they do not. */
template <int THREADS>
__device__ __forceinline__ void stage_x(const args &a, uint4 (*dst)[ROW_VECS], uint32_t n0, uint32_t u) {
    const uint32_t col0 = u * 64;
    if (a.x_vec) { /* cols % 8 == 0: a 16-byte piece is wholly inside or wholly outside */
        for (uint32_t i = threadIdx.x; i < TOKENS * 8; i += THREADS) {
            const uint32_t r = i >> 3, c = col0 + (i & 7) * 8, n = n0 + r;
            const bool inside = n < a.batch && c < a.cols;
            cp_async16(&dst[r][i & 7], inside ? a.x + (uint64_t)n * a.cols + c : a.x, inside);
        }
        return;
    }
    for (uint32_t i = threadIdx.x; i < TOKENS * 64; i += THREADS) {
        const uint32_t r = i >> 6, c = col0 + (i & 63), n = n0 + r;
        reinterpret_cast<uint16_t *>(&dst[r][0])[i & 63] = n < a.batch && c < a.cols ? a.x[(uint64_t)n * a.cols + c] : 0;
    }
}

template <class Src, int WARPS>
__global__ void __launch_bounds__(WARPS * 32) gemm_kernel(Src src, args a) {
    __shared__ slices sx;
    const unsigned lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const uint32_t n0 = blockIdx.x * TOKENS, rt = blockIdx.y * WARPS + warp;
    const uint32_t u0 = blockIdx.z * a.per, u1 = u0 + a.per < a.U ? u0 + a.per : a.U;
    const bool mine = rt < (a.rows + 15) / 16; /* the last CTA's spare warps only copy */
    const uint32_t groups = a.batch - n0 >= TOKENS ? NB : (a.batch - n0 + 7) / 8;
    typename Src::raw cur = first_unit(src, a, rt, u0, u1, mine, lane), nxt;
#pragma unroll
    for (int s = 0; s < STAGES - 1; s++) {
        if (u0 + s < u1) stage_x<WARPS * 32>(a, sx.v[s], n0, u0 + s);
        cp_async_commit();
    }
    float c[NB][4] = {};
    for (uint32_t u = u0, stage = 0; u < u1; u++, stage = stage + 1 == STAGES ? 0 : stage + 1) {
        cp_async_wait<STAGES - 2>();
        __syncthreads(); /* unit u's slice is in; every warp is done with the stage about to be refilled */
        const uint32_t un = u + STAGES - 1;
        if (un < u1) stage_x<WARPS * 32>(a, sx.v[(stage + STAGES - 1) % STAGES], n0, un);
        cp_async_commit();
        if (!mine) continue;
        if (u + 1 < u1) {
            nxt = src.fetch(rt, u + 1, lane);
            if (a.pf && u + 1 + a.pf < u1) src.prefetch((uint64_t)rt * a.U + u + 1 + a.pf, lane);
        }
        uint32_t f[4][4];
        src.frags(cur, rt, u, lane, f);
#pragma unroll
        for (int k = 0; k < NB; k++) {
            if (k >= (int)groups) break;
            const uint4 b0 = sx.v[stage][8 * k + g][2 * t], b1 = sx.v[stage][8 * k + g][2 * t + 1];
            mma(c[k], f[0], b0.x, b0.y);
            mma(c[k], f[1], b0.z, b0.w);
            mma(c[k], f[2], b1.x, b1.y);
            mma(c[k], f[3], b1.z, b1.w);
        }
        cur = nxt;
    }
    if (!mine) return;
#pragma unroll
    for (int k = 0; k < NB; k++)
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const uint32_t row = rt * 16 + out_row(lane, i), n = n0 + out_n(lane, k, i);
            if (row >= a.rows || n >= a.batch) continue;
            if (gridDim.z == 1)
                a.y[(uint64_t)n * a.rows + row] = with_bias(a, row, c[k][i]);
            else
                a.partial[((uint64_t)blockIdx.z * a.batch + n) * a.rows + row] = c[k][i];
        }
}

/* The dispatcher's choice (linear.cu): warps (row tiles) a CTA, the K split, units a K-range. */
struct plan {
    int warps;
    uint32_t ksplit, per;
};

template <class Src> cudaError_t launch(const Src &src, const args &a, const plan &p, cudaStream_t s) {
    const dim3 grid((a.batch + TOKENS - 1) / TOKENS, ((a.rows + 15) / 16 + p.warps - 1) / p.warps, p.ksplit);
    return p.warps == 4 ? launch_k(gemm_kernel<Src, 4>, grid, 128, s, dim3(1), src, a)
                        : launch_k(gemm_kernel<Src, 8>, grid, 256, s, dim3(1), src, a);
}

template <class Src> int ctas_per_sm(int warps) {
    int n = 0;
    const cudaError_t e = warps == 4 ? cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, gemm_kernel<Src, 4>, 128, 0)
                                     : cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, gemm_kernel<Src, 8>, 256, 0);
    return e == cudaSuccess && n > 0 ? n : 1;
}

cudaError_t run_cf12(const wcgpu_cf12 &m, const args &a, const plan &p, cudaStream_t s);
cudaError_t run_bf16_ref(const uint16_t *w, const args &a, const plan &p, cudaStream_t s);
/* CTAs of the fused kernel resident on one SM (the plan is made for it; the reference follows it). */
int cf12_ctas_per_sm(int warps);

} // namespace gemm
#endif
