/* gemm_wgmma_tile.cuh - the GEMM's tiling for large batches and prefill on sm_90a (wgmma), shared
 * by the fused kernel (gemm_wgmma_cf12.cu) and its plain reference (gemm_wgmma_bf16_ref.cu), which
 * differ only in where the A fragments come from, as in gemm_tile.cuh.
 *
 * The product is taken transposed (y^T = W x^T): the weights are wgmma's A operand, 64 rows a
 * warpgroup, held in registers, where each warp decodes its 16 x 64 block exactly as for
 * mma.sync (the register fragments of wgmma's A are mma.sync's, a warp's 16 rows each); the
 * activations are the B operand, NT batch rows (128 or 256) read by wgmma from shared memory. So a
 * weight is decoded once per NT batch rows and never written anywhere, where unpacking writes and
 * rereads all of W.
 *
 * The one price: the compute format's A fragments take the columns of a 64-wide unit in the order
 * its 16-byte loads give them (lane t holds columns 16t..16t+15, cf12.cuh place()), where mma.sync
 * only needs A and B to agree. wgmma reads B by a descriptor in its own canonical order, so x's
 * columns are permuted into that order as they are staged: product j's logical column pair p is
 * unit column pair 8(p & 3) + 2j + (p >> 2) (x_byte). The staging copies 4 bytes at a time
 * (cp.async), into rows of 128 bytes in the 128-byte swizzle (chunk c of row r at c ^ (r & 7)),
 * STAGES units deep: unit u + 2 is copied while unit u is multiplied and unit u + 1's wgmma may
 * still be in flight (wait_group 1), so a stage is refilled two units after its last use.
 *
 * A CTA computes WG warpgroups x 64 rows for NT batch rows over a K-range of `per` units, summed
 * in unit order, K-ranges (blockIdx.z) in order by the split-K reduction, as the mma.sync GEMM.
 * Batches beyond NT are more CTAs along blockIdx.x, the fastest-varying index, so that the CTAs
 * reading one group of rows run together and share the weights through L2. */
#ifndef WCGPU_GEMM_WGMMA_TILE_CUH
#define WCGPU_GEMM_WGMMA_TILE_CUH

#include <stdint.h>

#include "linear_common.cuh"

namespace gemm_wgmma {
using namespace linear;

enum { STAGES = 4, ROW_BYTES = 128 };

template <int NT> struct shape {
    enum { STAGE_BYTES = NT * ROW_BYTES, SMEM_BYTES = STAGES * STAGE_BYTES + 1024 /* for 1024-byte alignment */ };
};

/* The byte of stage row r where unit column e (0..63) of x goes: the logical position wgmma reads
 * it from (see above), swizzled. */
__device__ __forceinline__ uint32_t x_byte(uint32_t r, uint32_t e) {
    const uint32_t w = e >> 1, p = (w >> 3) | (w & 1) << 2, j = (w >> 1) & 3;
    const uint32_t logical = 32 * j + 4 * p + 2 * (e & 1);
    return r * ROW_BYTES + (((logical >> 4) ^ (r & 7)) << 4) + (logical & 15);
}

__device__ __forceinline__ void cp_async4(uint32_t smem, const void *gmem, bool inside) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(smem), "l"(gmem), "r"(inside ? 4 : 0) : "memory");
}

/* x[n0 .. n0+NT][u*64 .. +64] into the stage at shared address `stage`, zeros outside x: 4-byte
 * copies where x's rows allow them (x 4-byte aligned, cols even), element by element otherwise. */
template <int NT, int THREADS>
__device__ __forceinline__ void stage_x(const args &a, uint8_t *stage, uint32_t n0, uint32_t u) {
    const uint32_t col0 = u * 64, base = (uint32_t)__cvta_generic_to_shared(stage);
    if (((uintptr_t)a.x & 3) == 0 && (a.cols & 1) == 0) {
        for (uint32_t i = threadIdx.x; i < NT * 32; i += THREADS) {
            const uint32_t r = i >> 5, e = (i & 31) * 2, c = col0 + e, n = n0 + r;
            const bool inside = n < a.batch && c < a.cols;
            cp_async4(base + x_byte(r, e), inside ? a.x + (uint64_t)n * a.cols + c : a.x, inside);
        }
        return;
    }
    for (uint32_t i = threadIdx.x; i < NT * 64; i += THREADS) {
        const uint32_t r = i >> 6, e = i & 63, c = col0 + e, n = n0 + r;
        *reinterpret_cast<uint16_t *>(stage + x_byte(r, e)) = n < a.batch && c < a.cols ? a.x[(uint64_t)n * a.cols + c] : 0;
    }
}

/* wgmma's shared-memory descriptor for a K-major operand in the 128-byte swizzle: rows of 128
 * bytes, 8-row groups 1024 bytes apart. */
__device__ __forceinline__ uint64_t smem_desc(uint32_t addr) {
    return (uint64_t)((addr & 0x3FFFF) >> 4) | (uint64_t)1 << 16 | (uint64_t)(1024 >> 4) << 32 | (uint64_t)1 << 62;
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
template <int N> __device__ __forceinline__ void wgmma_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory"); }
/* Stage writes by the threads (cp.async, stores) made visible to wgmma's reads (the async proxy). */
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }

/* d += A (64 x 16, registers) . B (16 x 128, shared, by descriptor), FP32. */
__device__ __forceinline__ void wgmma_m64n128(float d[64], const uint32_t a[4], uint64_t desc) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "setp.ne.b32 p, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
        "{%64, %65, %66, %67}, %68, p, 1, 1, 0;\n"
        "}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
          "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
          "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
          "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
          "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
          "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(1)
        : "memory");
#else
    (void)d, (void)a, (void)desc;
    __trap(); /* built for sm_90a only (cuda/CMakeLists.txt); the dispatcher never launches it elsewhere */
#endif
}

template <class Src, int WG, int NT>
__global__ void __launch_bounds__(WG * 128, 1) gemm_wgmma_kernel(Src src, args a) {
    extern __shared__ uint8_t smem_raw[];
    uint8_t *smem = smem_raw + ((1024 - ((uint32_t)__cvta_generic_to_shared(smem_raw) & 1023)) & 1023);
    enum { THREADS = WG * 128, NH = NT / 128, STAGE_BYTES = shape<NT>::STAGE_BYTES };
    const unsigned lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const uint32_t n0 = blockIdx.x * NT, rt = blockIdx.y * (WG * 4) + warp;
    const uint32_t u0 = blockIdx.z * a.per, u1 = u0 + a.per < a.U ? u0 + a.per : a.U;
    const bool mine = rt < (a.rows + 15) / 16; /* spare warps multiply zeros: a warpgroup's wgmma takes all four */
    const uint32_t sbase = (uint32_t)__cvta_generic_to_shared(smem);
    typename Src::raw cur = first_unit(src, a, rt, u0, u1, mine, lane), nxt;
#pragma unroll
    for (int s = 0; s < 2; s++) {
        if (u0 + s < u1) stage_x<NT, THREADS>(a, smem + s * STAGE_BYTES, n0, u0 + s);
        cp_async_commit();
    }
    float d[NH][64];
#pragma unroll
    for (int h = 0; h < NH; h++)
#pragma unroll
        for (int i = 0; i < 64; i++) d[h][i] = 0.f;
    for (uint32_t u = u0; u < u1; u++) {
        const uint32_t stage = (u - u0) % STAGES;
        uint32_t f[4][4] = {};
        if (mine) {
            src.frags(cur, rt, u, lane, f);
            if (u + 1 < u1) {
                nxt = src.fetch(rt, u + 1, lane);
                if (a.pf && u + 1 + a.pf < u1) src.prefetch((uint64_t)rt * a.U + u + 1 + a.pf, lane);
            }
        }
        cp_async_wait<1>(); /* unit u's copies (the newest group, unit u + 1's, may be in flight) */
        fence_proxy_async();
        __syncthreads(); /* unit u's stage is in for every thread; every warpgroup is past unit u - 1's
                            wait, so unit u - 2's wgmma is done and its stage free */
        if (u + 2 < u1) stage_x<NT, THREADS>(a, smem + ((stage + 2) % STAGES) * STAGE_BYTES, n0, u + 2);
        cp_async_commit();
        wgmma_fence();
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int h = 0; h < NH; h++)
                wgmma_m64n128(d[h], f[j], smem_desc(sbase + stage * STAGE_BYTES + h * 128 * ROW_BYTES + 32 * j));
        wgmma_commit();
        wgmma_wait<1>();
        cur = nxt;
    }
    wgmma_wait<0>();
    if (!mine) return;
#pragma unroll
    for (int h = 0; h < NH; h++)
#pragma unroll
        for (int k = 0; k < 16; k++)
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const uint32_t row = rt * 16 + out_row(lane, i), n = n0 + 128 * h + out_n(lane, k, i);
                if (row >= a.rows || n >= a.batch) continue;
                const float v = d[h][4 * k + i];
                if (gridDim.z == 1)
                    a.y[(uint64_t)n * a.rows + row] = with_bias(a, row, v);
                else
                    a.partial[((uint64_t)blockIdx.z * a.batch + n) * a.rows + row] = v;
            }
    (void)g, (void)t;
}

/* The dispatcher's choice (linear.cu): warpgroups a CTA (1 or 2), batch rows a CTA (128 or 256),
 * the K split, units a K-range. */
struct plan {
    int wg, nt;
    uint32_t ksplit, per;
};

/* The kernel's dynamic shared memory allowed, once a process for each device (the attribute is
 * the kernel's on the current device). */
template <class Src, int WG, int NT> cudaError_t prepare() {
    static bool done[64];
    int dev = 0;
    if (const cudaError_t e = cudaGetDevice(&dev)) return e;
    if (dev >= 0 && dev < 64 && done[dev]) return cudaSuccess;
    const cudaError_t e = cudaFuncSetAttribute(gemm_wgmma_kernel<Src, WG, NT>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               (int)shape<NT>::SMEM_BYTES);
    if (e == cudaSuccess && dev >= 0 && dev < 64) done[dev] = true;
    return e;
}

template <class Src, int WG, int NT> cudaError_t launch_shape(const Src &src, const args &a, const plan &p, cudaStream_t s) {
    if (const cudaError_t e = prepare<Src, WG, NT>()) return e;
    const dim3 grid((a.batch + NT - 1) / NT, ((a.rows + 15) / 16 + WG * 4 - 1) / (WG * 4), p.ksplit);
    return launch_k_smem(gemm_wgmma_kernel<Src, WG, NT>, grid, dim3(WG * 128), (size_t)shape<NT>::SMEM_BYTES, s, src, a);
}

template <class Src> cudaError_t launch(const Src &src, const args &a, const plan &p, cudaStream_t s) {
    if (p.wg == 1) return p.nt == 128 ? launch_shape<Src, 1, 128>(src, a, p, s) : launch_shape<Src, 1, 256>(src, a, p, s);
    return p.nt == 128 ? launch_shape<Src, 2, 128>(src, a, p, s) : launch_shape<Src, 2, 256>(src, a, p, s);
}

template <class Src, int WG, int NT> int ctas_per_sm_shape() {
    int n = 0;
    if (prepare<Src, WG, NT>() != cudaSuccess ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, gemm_wgmma_kernel<Src, WG, NT>, WG * 128, shape<NT>::SMEM_BYTES) !=
            cudaSuccess)
        return 1;
    return n > 0 ? n : 1;
}

template <class Src> int ctas_per_sm(int wg, int nt) {
    if (wg == 1) return nt == 128 ? ctas_per_sm_shape<Src, 1, 128>() : ctas_per_sm_shape<Src, 1, 256>();
    return nt == 128 ? ctas_per_sm_shape<Src, 2, 128>() : ctas_per_sm_shape<Src, 2, 256>();
}

cudaError_t run_cf12(const wcgpu_cf12 &m, const args &a, const plan &p, cudaStream_t s);
cudaError_t run_bf16_ref(const uint16_t *w, const args &a, const plan &p, cudaStream_t s);
/* CTAs of the fused kernel resident on one SM (the plan is made for it; the reference follows it). */
int cf12_ctas_per_sm(int wg, int nt);

} // namespace gemm_wgmma
#endif
