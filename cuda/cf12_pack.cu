/* cf12_pack.cu - BF16 matrices into the compute format and back, on the GPU, asynchronous on the
 * caller's stream and with no allocation: the histogram that picks the window, the per-block
 * escape offsets, the packer, and the unpacker (which decodes with the fused kernels' own code).
 * Same bytes as core/common/cf12.c. */
#include <cuda_runtime.h>

#include "cf12.cuh"
#include "wcgpu.h"

namespace {

constexpr unsigned BR = WC_CF12_BLOCK_ROWS, BC = WC_CF12_BLOCK_COLS;

__global__ void histogram_kernel(const uint16_t *w, uint64_t n, unsigned long long *hist) {
    __shared__ unsigned h[256];
    for (unsigned i = threadIdx.x; i < 256; i += blockDim.x) h[i] = 0;
    __syncthreads();
    for (uint64_t k = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; k < n; k += (uint64_t)gridDim.x * blockDim.x)
        atomicAdd(&h[(w[k] >> 7) & 0xff], 1u);
    __syncthreads();
    for (unsigned i = threadIdx.x; i < 256; i += blockDim.x)
        if (h[i]) atomicAdd(&hist[i], (unsigned long long)h[i]);
}

struct matrix {
    const uint16_t *w;
    uint32_t rows, cols, base, U;
    uint64_t blocks;
    /* slot i of this lane in block b: its value (padding: 2^(base+1-127), which never escapes) */
    __device__ uint16_t at(uint64_t b, unsigned lane, unsigned i) const {
        unsigned r, c;
        cf12::place(lane, i, &r, &c);
        const uint64_t row = b / U * BR + r, col = b % U * BC + c;
        return row < rows && col < cols ? w[row * cols + col] : (uint16_t)((base + 1) << 7);
    }
    __device__ bool escapes(uint16_t v) const {
        const unsigned e = (v >> 7) & 0xff;
        return e <= base || e > base + 15;
    }
};

/* One warp a block: the block's escape count into counts[b]. */
__global__ void count_kernel(matrix m, uint32_t *counts) {
    const uint64_t b = (blockIdx.x * (uint64_t)blockDim.x + threadIdx.x) / 32;
    const unsigned lane = threadIdx.x & 31;
    if (b >= m.blocks) return;
    unsigned n = 0;
    for (unsigned i = 0; i < 32; i++) {
        n += m.escapes(m.at(b, lane, i));
    }
    for (unsigned o = 16; o; o >>= 1) n += __shfl_down_sync(0xffffffffu, n, o);
    if (!lane) counts[b] = n;
}

/* Exclusive scan of counts[0..n) in place, counts[n] = the total: one CTA (attach time only). */
__global__ void scan_kernel(uint32_t *counts, uint64_t n) {
    __shared__ uint32_t part[1024];
    const uint64_t per = (n + blockDim.x - 1) / blockDim.x, lo = threadIdx.x * per;
    const uint64_t hi = lo + per < n ? lo + per : n;
    uint32_t s = 0;
    for (uint64_t k = lo; k < hi; k++) s += counts[k];
    part[threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        uint32_t acc = 0;
        for (unsigned k = 0; k < blockDim.x; k++) {
            const uint32_t v = part[k];
            part[k] = acc;
            acc += v;
        }
        counts[n] = acc;
    }
    __syncthreads();
    uint32_t acc = part[threadIdx.x];
    for (uint64_t k = lo; k < hi; k++) {
        const uint32_t v = counts[k];
        counts[k] = acc;
        acc += v;
    }
}

/* One warp a block: sign+mantissa bytes, codes, and the escapes in slot order. */
__global__ void pack_kernel(matrix m, const uint32_t *offsets, uint8_t *body, uint32_t *escapes) {
    const uint64_t b = (blockIdx.x * (uint64_t)blockDim.x + threadIdx.x) / 32;
    const unsigned lane = threadIdx.x & 31;
    if (b >= m.blocks) return;
    uint32_t sm[8] = {0}, cd[4] = {0}, esc = 0;
#pragma unroll
    for (unsigned i = 0; i < 32; i++) {
        const uint16_t v = m.at(b, lane, i);
        const unsigned p = i >> 1, h = i & 1, j = p >> 2, q = p & 3;
        const uint32_t code = m.escapes(v) ? 0 : ((v >> 7) & 0xff) - m.base;
        sm[i / 4] |= (uint32_t)(((v >> 8) & 0x80) | (v & 0x7f)) << (8 * (i & 3));
        cd[j] |= code << (4 * q + 16 * h);
        esc |= (uint32_t)(code == 0) << i;
    }
    uint4 *blk = reinterpret_cast<uint4 *>(body + b * WC_CF12_BLOCK_BYTES);
    blk[lane] = make_uint4(sm[0], sm[1], sm[2], sm[3]);
    blk[32 + lane] = make_uint4(sm[4], sm[5], sm[6], sm[7]);
    blk[64 + lane] = make_uint4(cd[0], cd[1], cd[2], cd[3]);
    unsigned n = __popc(esc), before = n;
    for (unsigned o = 1; o < 32; o <<= 1) {
        const unsigned v = __shfl_up_sync(0xffffffffu, before, o);
        if (lane >= o) before += v;
    }
    uint32_t at = offsets[b] + before - n;
    for (; esc; esc &= esc - 1) {
        const unsigned i = __ffs(esc) - 1;
        escapes[at++] = (lane * 32 + i) << 8 | ((m.at(b, lane, i) >> 7) & 0xff);
    }
}

/* One warp a block, decoded as the fused kernels decode it, staged in shared memory and stored
 * row by row (16-byte stores where the row allows: this is the large batches' path, decode then
 * cuBLAS, so it runs at memory speed). */
constexpr unsigned UNPACK_WARPS = 8;
__global__ void __launch_bounds__(UNPACK_WARPS * 32) unpack_kernel(wcgpu_cf12 m, uint16_t *w) {
    __shared__ __align__(16) uint16_t tile[UNPACK_WARPS][BR][BC];
    const uint32_t U = (m.cols + BC - 1) / BC;
    const unsigned lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const uint64_t b = (blockIdx.x * (uint64_t)blockDim.x + threadIdx.x) / 32;
    if (b >= cf12::blocks(m.rows, m.cols)) return;
    uint32_t a[4][4];
    cf12::decode(cf12::fetch(m.body, b, lane), m.offsets, m.escapes, b, lane, m.base, a);
#pragma unroll
    for (unsigned p = 0; p < 16; p++) {
        unsigned r, c;
        cf12::place(lane, p * 2, &r, &c);
        *reinterpret_cast<uint32_t *>(&tile[warp][r][c]) = a[p >> 2][p & 3];
    }
    __syncwarp();
    const uint64_t row0 = b / U * BR, col0 = b % U * BC;
    const bool vec = m.cols % 8 == 0 && reinterpret_cast<uintptr_t>(w) % 16 == 0;
#pragma unroll
    for (unsigned k = 0; k < 4; k++) { /* 16 rows x 8 pieces of 8 weights: 4 a lane */
        const unsigned piece = k * 32 + lane, r = piece / 8, c = piece % 8 * 8;
        const uint64_t row = row0 + r, col = col0 + c;
        if (row >= m.rows || col >= m.cols) continue;
        uint16_t *dst = w + row * m.cols + col;
        if (vec && col + 8 <= m.cols)
            *reinterpret_cast<uint4 *>(dst) = *reinterpret_cast<const uint4 *>(&tile[warp][r][c]);
        else
            for (unsigned e = 0; e < 8 && col + e < m.cols; e++) dst[e] = tile[warp][r][c + e];
    }
}

wc_status launched(wc_error *err, const char *what) {
    const cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess) return WC_OK;
    return wc_error_set(err, WC_ERR_IO, "cf12 %s: %s", what, cudaGetErrorString(e));
}

wc_status check_shape(uint32_t rows, uint32_t cols, unsigned base, wc_error *err) {
    if (!rows || !cols || base > 240)
        return wc_error_set(err, WC_ERR_ARG, "cf12: a %ux%u matrix with base %u cannot be packed", rows, cols, base);
    return WC_OK;
}

unsigned warp_grid(uint64_t blocks) { return (unsigned)((blocks * 32 + 255) / 256); }

} // namespace

extern "C" wc_status wcgpu_cf12_histogram(const void *d_w, uint64_t n, unsigned long long *d_hist, void *stream,
                                          wc_error *err) {
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    if (cudaMemsetAsync(d_hist, 0, 256 * sizeof *d_hist, s) != cudaSuccess) return launched(err, "histogram");
    if (n) histogram_kernel<<<264, 512, 0, s>>>(static_cast<const uint16_t *>(d_w), n, d_hist);
    return launched(err, "histogram");
}

extern "C" wc_status wcgpu_cf12_offsets(const void *d_w, uint32_t rows, uint32_t cols, unsigned base,
                                        uint32_t *d_offsets, void *stream, wc_error *err) {
    if (wc_status st = check_shape(rows, cols, base, err)) return st;
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    const matrix m = {static_cast<const uint16_t *>(d_w), rows, cols, base, (cols + BC - 1) / BC,
                      wc_cf12_blocks(rows, cols)};
    count_kernel<<<warp_grid(m.blocks), 256, 0, s>>>(m, d_offsets);
    scan_kernel<<<1, 1024, 0, s>>>(d_offsets, m.blocks);
    return launched(err, "offsets");
}

extern "C" wc_status wcgpu_cf12_pack(const void *d_w, uint32_t rows, uint32_t cols, unsigned base,
                                     const uint32_t *d_offsets, uint8_t *d_body, uint32_t *d_escapes, void *stream,
                                     wc_error *err) {
    if (wc_status st = check_shape(rows, cols, base, err)) return st;
    const matrix m = {static_cast<const uint16_t *>(d_w), rows, cols, base, (cols + BC - 1) / BC,
                      wc_cf12_blocks(rows, cols)};
    pack_kernel<<<warp_grid(m.blocks), 256, 0, static_cast<cudaStream_t>(stream)>>>(m, d_offsets, d_body, d_escapes);
    return launched(err, "pack");
}

extern "C" wc_status wcgpu_cf12_unpack(const wcgpu_cf12 *m, void *d_w, void *stream, wc_error *err) {
    if (wc_status st = check_shape(m->rows, m->cols, m->base, err)) return st;
    unpack_kernel<<<warp_grid(wc_cf12_blocks(m->rows, m->cols)), UNPACK_WARPS * 32, 0,
                    static_cast<cudaStream_t>(stream)>>>(
        *m, static_cast<uint16_t *>(d_w));
    return launched(err, "unpack");
}
