/* gemm_wgmma_bf16_ref.cu - the sm_90a GEMM's reference: plain BF16 W (row-major, bf16_source.cuh),
 * the same fragments, tiling and reduction order as the fused kernel, so that both give the same
 * bits on the same weights. */
#include "bf16_source.cuh"
#include "gemm_wgmma_tile.cuh"
#include "wcgpu.h"

namespace gemm_wgmma {

cudaError_t run_bf16_ref(const uint16_t *w, const args &a, const plan &p, cudaStream_t s) {
    return launch(bf16_source{w, a.rows, a.cols}, a, p, s);
}

} // namespace gemm_wgmma
