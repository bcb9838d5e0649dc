/* linear_common.cuh - what the matrix kernels share (the GEMV, gemv_tile.cuh; the GEMM,
 * gemm_tile.cuh): their arguments, the tensor-core product, the output's rounding and bias,
 * programmatic dependent launch and the launch that allows it. */
#ifndef WCGPU_LINEAR_COMMON_CUH
#define WCGPU_LINEAR_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "wcgpu.h"

namespace linear {

struct args {
    const uint16_t *x, *bias;
    uint16_t *y;
    float *partial;
    uint32_t batch, rows, cols, U, per; /* per: units a K-range (the GEMV's tiled CTA, the GEMM's warp); a run (streamed GEMV) */
    uint32_t pf;                        /* units a warp keeps on their way into L2 beyond the one in registers */
    int cluster;                        /* the tiled GEMV's split K summed in a cluster (cluster_sum), not by reduce_kernel */
    int x_vec;                          /* x rows 16-byte aligned: vector loads */
};

__device__ __forceinline__ void mma(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint16_t to_bf16(float v) {
    return __bfloat16_as_ushort(__float2bfloat16_rn(v));
}

/* Programmatic dependent launch (every kernel of the GEMV and the GEMM is launched with it, launch_k):
 * a kernel lets the next one launch as soon as all its CTAs have started, so that the next
 * kernel's CTAs take the SMs this one's last wave leaves idle, and fetch their first weights (never
 * written by anyone) while this one ends; everything that reads what the kernel before wrote (x,
 * the partials) or writes anything waits for that kernel to be complete, memory included. */
__device__ __forceinline__ void pdl_launch_next() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_wait_previous() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

/* cp.async's groups (the GEMMs' staging of x): close the copies issued so far into a group; wait
 * until at most N groups are in flight. */
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory"); }

/* The GEMMs' start (gemm_tile.cuh, gemm_wgmma_tile.cuh): a warp's first unit of its K-range [u0,
 * u1) read into registers and the next `pf` on their way into L2 (where the warp has a row tile:
 * `mine`), then the wait for the kernel ahead: the weights are written by no kernel, so they are
 * read while it ends (PDL). */
template <class Src>
__device__ __forceinline__ typename Src::raw first_unit(const Src &src, const args &a, uint32_t rt, uint32_t u0,
                                                        uint32_t u1, bool mine, unsigned lane) {
    typename Src::raw r;
    pdl_launch_next();
    if (mine) {
        r = src.fetch(rt, u0, lane);
        for (uint32_t d = 1; d <= a.pf && u0 + d < u1; d++) src.prefetch((uint64_t)rt * a.U + u0 + d, lane);
    }
    pdl_wait_previous();
    return r;
}

/* Output element i of batch group k in a lane's accumulators: its row in the tile and batch row. */
__device__ __forceinline__ uint32_t out_row(unsigned lane, int i) { return (lane >> 2) + 8 * (i >> 1); }
__device__ __forceinline__ uint32_t out_n(unsigned lane, int k, int i) { return 8 * k + 2 * (lane & 3) + (i & 1); }
__device__ __forceinline__ uint16_t with_bias(const args &a, uint32_t row, float v) {
    return to_bf16(a.bias ? v + __uint_as_float((uint32_t)a.bias[row] << 16) : v);
}

/* Units a warp prefetches into L2 ahead of the one in registers: $WCGPU_PREFETCH (0..64; the
 * benchmark's sweep), else WCGPU_LINEAR_PREFETCH. */
#ifndef WCGPU_LINEAR_PREFETCH
#define WCGPU_LINEAR_PREFETCH 0 /* not yet timed on a GPU: off, as the measured builds ran */
#endif
uint32_t prefetch_depth();

/* On sm_90 and later, where WCGPU_LINEAR_CLUSTER is 1 or $WCGPU_CLUSTER=1 (=0 turns it off): the
 * tiled GEMV sums a split K in a thread-block cluster (at most 8 K-ranges) instead of a second
 * kernel. */
#ifndef WCGPU_LINEAR_CLUSTER
#define WCGPU_LINEAR_CLUSTER 0 /* not yet timed on a GPU: off, as the measured builds ran */
#endif
bool cluster_enabled();

/* 1 unless $WCGPU_PDL=0 (the benchmark's comparison): launch with programmatic dependence. */
bool pdl_enabled();

/* Launches kernel k on stream s with `smem` bytes of dynamic shared memory, allowed to start
 * before the kernel ahead of it ends (see pdl_launch_next), as a cluster of `cluster` CTAs. */
template <class... P, class... A>
cudaError_t launch_cfg(void (*k)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t s, dim3 cluster, A... args) {
    cudaLaunchAttribute attr[2];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = pdl_enabled() ? 1 : 0;
    attr[1].id = cudaLaunchAttributeClusterDimension; /* thread-block clusters (cluster_sum), where asked */
    attr[1].val.clusterDim.x = cluster.x, attr[1].val.clusterDim.y = cluster.y, attr[1].val.clusterDim.z = cluster.z;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid, cfg.blockDim = block, cfg.dynamicSmemBytes = smem, cfg.stream = s, cfg.attrs = attr;
    cfg.numAttrs = cluster.x * cluster.y * cluster.z > 1 ? 2 : 1;
    return cudaLaunchKernelEx(&cfg, k, args...);
}
template <class... P, class... A>
cudaError_t launch_k(void (*k)(P...), dim3 grid, dim3 block, cudaStream_t s, dim3 cluster, A... args) {
    return launch_cfg(k, grid, block, 0, s, cluster, args...);
}
template <class... P, class... A>
cudaError_t launch_k_smem(void (*k)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t s, A... args) {
    return launch_cfg(k, grid, block, smem, s, dim3(1), args...);
}

} // namespace linear
#endif
