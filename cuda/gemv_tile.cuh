/* gemv_tile.cuh - the GEMV's tiling and reduction order, shared by the fused kernel
 * (gemv_cf12.cu) and its plain reference (gemv_bf16_ref.cu), which differ only in where the A
 * fragments come from: so the reference proves the fused kernel's decode, bit for bit.
 *
 * A CTA computes 16 output rows (one row tile) over a K-range of `per` 64-column units; its
 * warps take the units in turn (warp w: units w, w + WARPS, ...), each keeping one unit's loads in
 * flight while it multiplies the last. Per unit and lane: the A fragments of 4 m16n8k16 products
 * (W's 16 rows x 64 columns), the lane's 16 contiguous activations of batch row g as B, FP32
 * accumulators. Then the warps' sums are added in warp order, and written as BF16 (one K-range)
 * or as FP32 partials for linear.cu's reduction kernel (several), or added across the K-ranges'
 * thread-block cluster (cluster_sum) in that kernel's order. Batches of 9..16 rows take a second group of 8
 * (NB = 2): the same decoded fragments, a second product per fragment. */
#ifndef WCGPU_GEMV_TILE_CUH
#define WCGPU_GEMV_TILE_CUH

#include <cooperative_groups.h>
#include <stdint.h>

#include "linear_common.cuh"

namespace gemv {
using namespace linear;

struct xfrag {
    uint32_t w[8]; /* x[g][unit*64 + t*16 .. +16] as bf16 pairs */
};

__device__ __forceinline__ xfrag load_x(const args &a, uint32_t u, unsigned g, unsigned t) {
    xfrag f;
    const uint32_t col = u * 64 + t * 16;
    if (g >= a.batch) {
#pragma unroll
        for (int k = 0; k < 8; k++) f.w[k] = 0;
        return f;
    }
    const uint16_t *p = a.x + (uint64_t)g * a.cols + col;
    if (a.x_vec && col + 16 <= a.cols) {
        const uint4 v0 = __ldg(reinterpret_cast<const uint4 *>(p)), v1 = __ldg(reinterpret_cast<const uint4 *>(p) + 1);
        f.w[0] = v0.x, f.w[1] = v0.y, f.w[2] = v0.z, f.w[3] = v0.w;
        f.w[4] = v1.x, f.w[5] = v1.y, f.w[6] = v1.z, f.w[7] = v1.w;
        return f;
    }
#pragma unroll
    for (int k = 0; k < 8; k++) {
        const uint32_t lo = col + 2 * k < a.cols ? p[2 * k] : 0, hi = col + 2 * k + 1 < a.cols ? p[2 * k + 1] : 0;
        f.w[k] = lo | hi << 16;
    }
    return f;
}

/* The loads of one unit: W's (Src::raw) and each batch group's activations. */
template <class Src, int NB> struct unit {
    typename Src::raw w;
    xfrag x[NB];
    __device__ __forceinline__ void load_w(const Src &src, uint32_t rt, uint32_t u, unsigned lane) {
        w = src.fetch(rt, u, lane);
    }
    __device__ __forceinline__ void load_x(const args &a, uint32_t u, unsigned lane) {
#pragma unroll
        for (int k = 0; k < NB; k++) x[k] = gemv::load_x(a, u, (lane >> 2) + 8 * k, lane & 3);
    }
    __device__ __forceinline__ void load(const Src &src, const args &a, uint32_t rt, uint32_t u, unsigned lane) {
        load_w(src, rt, u, lane);
        load_x(a, u, lane);
    }
    /* decoded, then multiplied into c[k] (batch group k's 16 x 8 accumulators) */
    __device__ __forceinline__ void mma_into(const Src &src, uint32_t rt, uint32_t u, unsigned lane,
                                             float c[NB][4]) const {
        uint32_t f[4][4];
        src.frags(w, rt, u, lane, f);
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int k = 0; k < NB; k++) mma(c[k], f[j], x[k].w[2 * j], x[k].w[2 * j + 1]);
    }
};

/* The split K summed without a second kernel (a.cluster: the K-ranges of a row tile are one
 * thread-block cluster, blockIdx.y its rank): every CTA leaves its sum in shared memory, and the
 * first reads the others' through distributed shared memory, adding them in K-range order as
 * reduce_kernel does (so the bits are the same either way), then writes the output. Every thread
 * of every CTA takes part in both cluster barriers; the second keeps each CTA's shared memory
 * alive until the first has read it. */
template <int NB>
__device__ __forceinline__ void cluster_sum(const args &a, float (*sum)[32], uint32_t rt, unsigned lane, unsigned warp) {
#if __CUDA_ARCH__ >= 900
    cooperative_groups::cluster_group cl = cooperative_groups::this_cluster();
    cl.sync();
    if (cl.block_rank() == 0 && warp == 0) {
#pragma unroll
        for (int i = 0; i < NB * 4; i++) {
            float s = sum[i][lane];
            for (unsigned r = 1; r < cl.num_blocks(); r++) s += *cl.map_shared_rank(&sum[i][lane], r);
            const uint32_t row = rt * 16 + out_row(lane, i % 4), n = out_n(lane, i / 4, i % 4);
            if (row < a.rows && n < a.batch) a.y[(uint64_t)n * a.rows + row] = with_bias(a, row, s);
        }
    }
    cl.sync();
#else
    (void)a, (void)sum, (void)rt, (void)lane, (void)warp; /* never asked for below sm_90 (linear.cu) */
#endif
}

/* The tiled schedule. Src: fetch(rt, u, lane) -> Src::raw (the loads), frags(raw, rt, u, lane, a)
 * (the decode), prefetch(block, lane) (block rt * U + u on its way into L2, or nothing). Prefetch:
 * a warp keeps `pf` more of its units on their way into L2 beyond the one it holds in registers,
 * so that the SM has more bytes in flight than registers would hold (HBM's latency under load
 * times its bandwidth is more than one unit a warp), and a CTA waiting on the kernel ahead of it
 * (PDL) streams more than its first unit meanwhile. */
template <class Src, int WARPS, int NB>
__global__ void __launch_bounds__(WARPS * 32) gemv_kernel(Src src, args a) {
    const unsigned lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const uint32_t rt = blockIdx.x, u0 = blockIdx.y * a.per;
    const uint32_t u1 = u0 + a.per < a.U ? u0 + a.per : a.U;
    float c[NB][4] = {};
    uint32_t u = u0 + warp;
    unit<Src, NB> cur, nxt;
    pdl_launch_next();
    if (u < u1) {
        cur.load_w(src, rt, u, lane);
        for (uint32_t d = 1; d <= a.pf && u + d * WARPS < u1; d++) src.prefetch((uint64_t)rt * a.U + u + d * WARPS, lane);
    }
    pdl_wait_previous();
    if (u < u1) {
        cur.load_x(a, u, lane);
        for (;;) {
            const bool more = u + WARPS < u1;
            if (a.pf && u + (a.pf + 1) * WARPS < u1) src.prefetch((uint64_t)rt * a.U + u + (a.pf + 1) * WARPS, lane);
            if (more) nxt.load(src, a, rt, u + WARPS, lane);
            cur.mma_into(src, rt, u, lane, c);
            if (!more) break;
            cur = nxt;
            u += WARPS;
        }
    }
    __shared__ float red[WARPS][NB * 4][32];
#pragma unroll
    for (int i = 0; i < NB * 4; i++) red[warp][i][lane] = c[i / 4][i % 4];
    __syncthreads();
    if (!warp) {
#pragma unroll
        for (int i = 0; i < NB * 4; i++) {
            float s = red[0][i][lane];
#pragma unroll
            for (int w = 1; w < WARPS; w++) s += red[w][i][lane];
            red[0][i][lane] = s; /* the CTA's sum, for the cluster's first CTA to read */
            const uint32_t row = rt * 16 + out_row(lane, i % 4), n = out_n(lane, i / 4, i % 4);
            if (a.cluster || row >= a.rows || n >= a.batch) continue;
            if (gridDim.y == 1)
                a.y[(uint64_t)n * a.rows + row] = with_bias(a, row, s);
            else
                a.partial[((uint64_t)blockIdx.y * a.batch + n) * a.rows + row] = s;
        }
    }
    if (a.cluster) cluster_sum<NB>(a, red[0], rt, lane, warp);
}

/* The streamed schedule: the matrix's R x U units in row-tile order, cut into equal runs of `per`,
 * one run a warp, every warp resident at once (so none waits for a second wave and all finish
 * together). A warp sums its run tile by tile; a tile whose units all fall in one run is written
 * as BF16 by that warp, one split between runs leaves each run's FP32 sum in the workspace (at
 * run index + tile index: unique), for stream_fixup to add in run order. */
__host__ __device__ inline uint32_t first_run(uint32_t rt, uint32_t U, uint32_t per) { return rt * U / per; }
__host__ __device__ inline uint32_t last_run(uint32_t rt, uint32_t U, uint32_t per) { return ((rt + 1) * U - 1) / per; }

template <class Src, int WARPS, int NB>
__global__ void __launch_bounds__(WARPS * 32) gemv_stream_kernel(Src src, args a) {
    const unsigned lane = threadIdx.x & 31;
    const uint32_t run = blockIdx.x * WARPS + (threadIdx.x >> 5), total = (a.rows + 15) / 16 * a.U;
    uint32_t f = run * a.per;
    pdl_launch_next();
    if (f >= total) return;
    const uint32_t f1 = f + a.per < total ? f + a.per : total;
    uint32_t rt = f / a.U, u = f % a.U;
    float c[NB][4] = {};
    unit<Src, NB> cur, nxt;
    cur.load_w(src, rt, u, lane);
    for (uint32_t d = 1; d <= a.pf && f + d < f1; d++) src.prefetch(f + d, lane); /* block index f: row-tile order */
    pdl_wait_previous();
    cur.load_x(a, u, lane);
    for (;;) {
        const bool more = f + 1 < f1;
        if (a.pf && f + a.pf + 1 < f1) src.prefetch(f + a.pf + 1, lane);
        const uint32_t rn = u + 1 == a.U ? rt + 1 : rt, un = u + 1 == a.U ? 0 : u + 1;
        if (more) nxt.load(src, a, rn, un, lane);
        cur.mma_into(src, rt, u, lane, c);
        if (!more || rn != rt) { /* the run leaves this tile: its sum out */
            const bool whole = first_run(rt, a.U, a.per) == last_run(rt, a.U, a.per);
#pragma unroll
            for (int i = 0; i < NB * 4; i++) {
                const uint32_t r = out_row(lane, i % 4), row = rt * 16 + r, n = out_n(lane, i / 4, i % 4);
                if (whole) {
                    if (row < a.rows && n < a.batch) a.y[(uint64_t)n * a.rows + row] = with_bias(a, row, c[i / 4][i % 4]);
                } else if (n < a.batch) {
                    a.partial[((uint64_t)(run + rt) * a.batch + n) * 16 + r] = c[i / 4][i % 4];
                }
                c[i / 4][i % 4] = 0.f;
            }
        }
        if (!more) break;
        cur = nxt;
        rt = rn, u = un, f++;
    }
}

/* The dispatcher's choice (linear.cu). */
struct plan {
    int warps;
    uint32_t ksplit, per; /* streamed: ksplit = 0, per = units a warp */
    bool cluster;         /* a split K summed in a cluster (cluster_sum), not by the reduction kernel */
};

/* Launches the kernel for a source under the dispatcher's choice. */
template <class Src, int NB> cudaError_t launch_nb(const Src &src, const args &a, const plan &p, cudaStream_t s) {
    if (p.ksplit == 0) {
        const uint32_t runs = ((a.rows + 15) / 16 * a.U + p.per - 1) / p.per, ctas = (runs + p.warps - 1) / p.warps;
        return p.warps == 4 ? launch_k(gemv_stream_kernel<Src, 4, NB>, ctas, 128, s, dim3(1), src, a)
                            : launch_k(gemv_stream_kernel<Src, 8, NB>, ctas, 256, s, dim3(1), src, a);
    }
    const dim3 grid((a.rows + 15) / 16, p.ksplit), cluster(1, p.cluster ? p.ksplit : 1, 1);
    return p.warps == 4 ? launch_k(gemv_kernel<Src, 4, NB>, grid, 128, s, cluster, src, a)
                        : launch_k(gemv_kernel<Src, 8, NB>, grid, 256, s, cluster, src, a);
}
template <class Src> cudaError_t launch(const Src &src, const args &a, const plan &p, cudaStream_t s) {
    return a.batch > 8 ? launch_nb<Src, 2>(src, a, p, s) : launch_nb<Src, 1>(src, a, p, s);
}

/* The fused kernel's resident CTAs per SM, for a schedule, warps and batch groups. */
template <class Src> int ctas_per_sm(bool streamed, int warps, int nb) {
    int n = 0;
    const int t = warps * 32;
    cudaError_t e;
    if (streamed)
        e = warps == 4 ? (nb == 2 ? cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, gemv_stream_kernel<Src, 4, 2>, t, 0)
                                  : cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, gemv_stream_kernel<Src, 4, 1>, t, 0))
                       : (nb == 2 ? cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, gemv_stream_kernel<Src, 8, 2>, t, 0)
                                  : cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, gemv_stream_kernel<Src, 8, 1>, t, 0));
    else
        e = warps == 4 ? (nb == 2 ? cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, gemv_kernel<Src, 4, 2>, t, 0)
                                  : cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, gemv_kernel<Src, 4, 1>, t, 0))
                       : (nb == 2 ? cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, gemv_kernel<Src, 8, 2>, t, 0)
                                  : cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, gemv_kernel<Src, 8, 1>, t, 0));
    return e == cudaSuccess && n > 0 ? n : 1;
}

/* The dispatcher's entry for both sources: the plan, the kernel, the split-K reduction. */
cudaError_t run_cf12(const wcgpu_cf12 &m, const args &a, const plan &p, cudaStream_t s);
cudaError_t run_bf16_ref(const uint16_t *w, const args &a, const plan &p, cudaStream_t s);
/* CTAs of the fused kernel resident on one SM (the plan is made for it, and the reference follows
 * the same plan so that both sum in the same order). */
int cf12_ctas_per_sm(int warps, bool streamed, int nb);

} // namespace gemv
#endif
