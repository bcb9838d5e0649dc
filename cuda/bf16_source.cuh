/* bf16_source.cuh - plain BF16 W (row-major) as the matrix kernels' weight source, for their
 * references (gemv_bf16_ref.cu, gemm_bf16_ref.cu): the same A fragments cf12::source decodes,
 * read element by element with zeros outside the matrix. Written for plainness, not speed. */
#ifndef WCGPU_BF16_SOURCE_CUH
#define WCGPU_BF16_SOURCE_CUH

#include <stdint.h>

struct bf16_source {
    const uint16_t *w;
    uint32_t rows, cols;
    struct raw {
        uint32_t f[4][4];
    };
    /* a[j][q]: rows g + 8 (q & 1), columns u*64 + t*16 + j*4 + (q >> 1)*2 + {0, 1} */
    __device__ __forceinline__ raw fetch(uint32_t rt, uint32_t u, unsigned lane) const {
        raw r;
        const unsigned g = lane >> 2, t = lane & 3;
#pragma unroll
        for (unsigned j = 0; j < 4; j++)
#pragma unroll
            for (unsigned q = 0; q < 4; q++) {
                const uint64_t row = rt * 16 + g + 8 * (q & 1), col = u * 64 + t * 16 + j * 4 + (q >> 1) * 2;
                uint32_t v = 0;
                if (row < rows && col < cols) v = w[row * cols + col];
                if (row < rows && col + 1 < cols) v |= (uint32_t)w[row * cols + col + 1] << 16;
                r.f[j][q] = v;
            }
        return r;
    }
    __device__ __forceinline__ void prefetch(uint64_t, unsigned) const {} /* plainness: no prefetch */
    __device__ __forceinline__ void frags(const raw &r, uint32_t, uint32_t, unsigned, uint32_t f[4][4]) const {
#pragma unroll
        for (unsigned j = 0; j < 4; j++)
#pragma unroll
            for (unsigned q = 0; q < 4; q++) f[j][q] = r.f[j][q];
    }
};

#endif
