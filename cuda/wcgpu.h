/*
 * wcgpu.h - the GPU tile decoder: container tiles -> device memory, checksums checked on the GPU.
 *
 * Decodes exactly what the CPU decoder (wc_tile_decode_cpu) decodes, byte for byte: rANS streams
 * one per warp (a lane per interleaved state), byte planes merged back into elements, raw tiles
 * copied, and each tile's xxh3-64 recomputed on the GPU and compared with the container's.
 *
 * Conventions as in wcodec.h (wc_status returns, optional wc_error). A wcgpu handle owns one CUDA
 * stream and its buffers: use it from one thread at a time (the filesystem gives its GPU worker
 * its own handle). Calls are synchronous: when they return, the output is complete.
 */
#ifndef WCGPU_H
#define WCGPU_H

#include <stddef.h>
#include <stdint.h>

#include "wcodec.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wcgpu wcgpu;

/* Opens CUDA device `device` (-1 = the first). Without a usable device: WC_ERR_IO with a
 * message that says so ("no CUDA device" and the runtime's reason). Close with wcgpu_close. */
wc_status wcgpu_open(int device, wcgpu **out, wc_error *err);
void wcgpu_close(wcgpu *g);
/* "NVIDIA H100 80GB HBM3 (sm_90)"; valid while the handle is. */
const char *wcgpu_device_name(const wcgpu *g);

/*
 * Decodes tiles[0..n) of container c. payloads[k] holds tile tiles[k]'s coded bytes in host
 * memory (coded_size of them). Decoded tile k lands in device memory at d_out + out_offsets[k]
 * (src_size bytes; any alignment). One upload, one launch of each kernel, one download of the
 * verdicts. On any bad tile returns WC_ERR_FORMAT or WC_ERR_CHECKSUM naming the first one; if
 * bad is not NULL, bad[k] is set to 1 for every bad tile and 0 for every good one (whose bytes
 * are valid even when the call fails).
 */
wc_status wcgpu_decode_tiles(wcgpu *g, const wc_container *c, const uint32_t *tiles, size_t n,
                             const uint8_t *const *payloads, uint8_t *d_out,
                             const uint64_t *out_offsets, uint8_t *bad, wc_error *err);

/* The same, with decoded tile k copied to host memory host_out[k] (src_size bytes). */
wc_status wcgpu_decode_tiles_to_host(wcgpu *g, const wc_container *c, const uint32_t *tiles,
                                     size_t n, const uint8_t *const *payloads,
                                     uint8_t *const *host_out, uint8_t *bad, wc_error *err);

/* Milliseconds the kernels of the last decode call took on the GPU (event-timed, summed over
 * its batches): decode throughput device memory to device memory, without the upload. */
double wcgpu_last_kernel_ms(const wcgpu *g);
/* The same split by kernel: [0] rANS streams, [1] plane merge, [2] checksums. */
void wcgpu_last_kernel_split(const wcgpu *g, double ms[3]);

/*
 * Loader API: decodes source bytes [offset, offset + len) of container c (opened from a file)
 * straight into the device buffer d_dst: for example one tensor, whose range
 * wc_container_tensor() gives. Reads only the tiles the range touches.
 */
wc_status wcgpu_read_range(wcgpu *g, const wc_container *c, uint64_t offset, size_t len,
                           void *d_dst, wc_error *err);

#ifdef __cplusplus
}
#endif
#endif
