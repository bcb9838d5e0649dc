/*
 * wcgpu.h - the GPU tile decoder: container tiles -> device memory, checksums checked on the GPU.
 *
 * Decodes exactly what the CPU decoder (wc_tile_decode_cpu) decodes, byte for byte: rANS streams
 * one per warp (a lane per interleaved state), byte planes merged back into elements, raw tiles
 * copied, and each tile's xxh3-64 recomputed on the GPU and compared with the container's.
 *
 * Conventions as in wcodec.h (wc_status returns, optional wc_error). A wcgpu handle owns one CUDA
 * stream and its buffers: use it from one thread at a time (the filesystem gives its GPU worker
 * its own handle). Calls are synchronous: when they return, the output is complete (except
 * wcgpu_set_decode, below, which is asynchronous on the caller's stream).
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
 * wc_container_tensor() gives. Reads only the tiles the range touches, and checks each one's
 * checksum. On a bad tile returns WC_ERR_CHECKSUM or WC_ERR_FORMAT naming it; the bytes in d_dst
 * are then unspecified.
 */
wc_status wcgpu_read_range(wcgpu *g, const wc_container *c, uint64_t offset, size_t len,
                           void *d_dst, wc_error *err);

/* One range of wcgpu_read_ranges: source bytes [offset, offset + len) of c into d_dst. */
typedef struct wcgpu_range {
    const wc_container *c;
    uint64_t offset;
    size_t len;
    void *d_dst;
} wcgpu_range;

/*
 * The same for n ranges, of one container or several (a sharded model's files), as one pipeline:
 * reader threads read payloads ahead into pinned buffers, the uploads follow one another on one
 * copy stream, and each chunk decodes while later ones are read and uploaded, so that for a
 * model in the page cache the upload link, not the file reads or the kernels, sets the pace.
 * Tiles landing 64-byte aligned decode in place; others are decoded aside and copied. Reader
 * threads: half the CPUs (at most 8), or $WCGPU_READERS. The handle keeps its pinned and device
 * buffers (8 slots of 8 MiB and their jobs) for the next call; wcgpu_close frees them. On error,
 * *bad_range (if not NULL) is the index of the range it concerns.
 */
wc_status wcgpu_read_ranges(wcgpu *g, const wcgpu_range *ranges, size_t n, size_t *bad_range,
                            wc_error *err);

/*
 * Resident sets: tiles whose payloads stay coded in memory, decoded on demand. For weights kept
 * compressed through inference (wcodec.torch.attach): each group (a transformer block, say) is
 * decoded just before it runs, asynchronously on the caller's stream, into the caller's device
 * memory, with no host work beyond one launch per kernel: the jobs are built once and live on
 * the device.
 *
 * Use: wcgpu_set_create; wcgpu_set_add for every range (a tensor's bytes), each into a group and
 * at an offset of that group's output; allocate wcgpu_set_payload_bytes() of payload memory
 * (device memory for WCGPU_KEEP_DEVICE, pinned host memory for WCGPU_KEEP_HOST: the caller owns
 * it, so that a framework's allocator counts it) and a device buffer of the largest group's
 * bytes; wcgpu_set_finish; then wcgpu_set_decode as often as wanted.
 *
 * Payloads are checked once, in wcgpu_set_finish: every tile is decoded and its xxh3 compared.
 * Later decodes skip the hash unless asked (verify), and then report through wcgpu_set_check.
 * A set belongs to its wcgpu handle (close the set first) and holds device memory of its own:
 * job tables, a plane scratch for tiles with more than one coded plane (none for BF16), and
 * for WCGPU_KEEP_HOST a staging area of the largest group's coded bytes (wcgpu_set_device_bytes).
 * Scratch and staging are shared by the set's decodes: enqueue them on one stream, or wait for
 * one before enqueuing the next on another. Not thread-safe: one thread at a time.
 */
typedef struct wcgpu_set wcgpu_set;
enum { WCGPU_KEEP_DEVICE = 0, WCGPU_KEEP_HOST = 1 };

/* An empty set on g's device, its payloads to be kept as `keep` says. */
wc_status wcgpu_set_create(wcgpu *g, int keep, wcgpu_set **out, wc_error *err);
/* Frees the set's own memory (not the payload memory, which is the caller's). NULL is a no-op. */
void wcgpu_set_close(wcgpu_set *s);

/* Adds source bytes [offset, offset + len) of c to group `group` (groups are numbered from 0),
 * to be decoded at out_offset (a multiple of 64) of that group's output. The range must be
 * whole tiles, each landing at a multiple of 64, as a tensor's range does (WC_ERR_ARG otherwise). c must stay open until
 * wcgpu_set_finish returns; after that the set needs no container. */
wc_status wcgpu_set_add(wcgpu_set *s, uint32_t group, const wc_container *c, uint64_t offset,
                        uint64_t len, uint64_t out_offset, wc_error *err);
/* Bytes of payload memory wcgpu_set_finish needs for the ranges added so far. */
uint64_t wcgpu_set_payload_bytes(const wcgpu_set *s);
/* Bytes a group's output needs: the end of its furthest range (0 for an unknown group). */
uint64_t wcgpu_set_group_bytes(const wcgpu_set *s, uint32_t group);

/*
 * Reads every payload into `payloads` (wcgpu_set_payload_bytes of them, as `keep` says), builds
 * the jobs on the device, then decodes every group into d_check (device memory of check_size
 * bytes, at least the largest group's) and checks every tile's checksum. Synchronous. On a bad
 * tile returns WC_ERR_CHECKSUM or WC_ERR_FORMAT naming it, with *bad_range (if not NULL) set to
 * the index (in wcgpu_set_add order) of the range holding it. A failed set can only be closed.
 */
wc_status wcgpu_set_finish(wcgpu_set *s, void *payloads, void *d_check, uint64_t check_size,
                           uint32_t *bad_range, wc_error *err);
/*
 * Enqueues the decode of `group` into d_out (wcgpu_set_group_bytes of device memory; 64-byte
 * aligned) on `stream` (a cudaStream_t; NULL is the legacy default stream) and returns without
 * waiting: the bytes are there for work enqueued after it on that stream. With verify, each
 * tile's checksum is computed too; call wcgpu_set_check to wait and learn the verdict.
 */
wc_status wcgpu_set_decode(wcgpu_set *s, uint32_t group, void *d_out, void *stream, int verify,
                           wc_error *err);
/* Waits for `stream`, then reports the verdicts of the last verified decode of `group`:
 * WC_OK, or WC_ERR_CHECKSUM / WC_ERR_FORMAT naming the first bad tile (and *bad_range). */
wc_status wcgpu_set_check(wcgpu_set *s, uint32_t group, void *stream, uint32_t *bad_range,
                          wc_error *err);
/* Device memory the set holds itself (jobs, plane scratch, staging), for memory accounting. */
uint64_t wcgpu_set_device_bytes(const wcgpu_set *s);

/*
 * The compute format on the GPU (cf12, core/wcodec.h and docs/FORMAT.md) and the matrix kernels
 * that read it: weights kept compressed through inference, each read once, decoded in registers.
 * Every call here is asynchronous on `stream` (a cudaStream_t; NULL is the legacy default stream),
 * allocates nothing (the caller owns every buffer: a framework's allocator counts it) and never
 * synchronizes, so that a CUDA graph can capture it. Errors: WC_ERR_ARG for a shape the call does
 * not take, WC_ERR_IO for a launch the runtime refused.
 */
typedef struct wcgpu_cf12 { /* a matrix in the compute format, in device memory */
    const uint8_t *body;       /* wc_cf12_body_bytes(rows, cols), 16-byte aligned */
    const uint32_t *offsets;   /* wc_cf12_blocks(rows, cols) + 1 */
    const uint32_t *escapes;   /* offsets[blocks] of them */
    uint32_t rows, cols, base; /* rows = out_features, cols = in_features (K) */
} wcgpu_cf12;

/* Packing a BF16 matrix d_w (rows x cols, row-major, in device memory): the exponent histogram
 * (256 counters) from which wc_cf12_pick_base picks the base; the escape offsets; then, with
 * offsets[blocks] escapes allocated, the body and escapes. Same bytes as wc_cf12_pack. */
wc_status wcgpu_cf12_histogram(const void *d_w, uint64_t n, unsigned long long *d_hist, void *stream,
                               wc_error *err);
wc_status wcgpu_cf12_offsets(const void *d_w, uint32_t rows, uint32_t cols, unsigned base, uint32_t *d_offsets,
                             void *stream, wc_error *err);
wc_status wcgpu_cf12_pack(const void *d_w, uint32_t rows, uint32_t cols, unsigned base, const uint32_t *d_offsets,
                          uint8_t *d_body, uint32_t *d_escapes, void *stream, wc_error *err);
/* The BF16 matrix back (rows x cols into d_w), every bit: for the batches the fused kernels leave
 * to a library GEMM (WCGPU_LINEAR_UNPACK) and for detach. */
wc_status wcgpu_cf12_unpack(const wcgpu_cf12 *m, void *d_w, void *stream, wc_error *err);

/* Which kernel multiplies a batch of `batch` rows by a matrix, on the current device: the GEMV
 * (small batches: decode steps), the GEMM (larger ones), or none: unpack the weight, then a
 * library GEMM (prefill's large batches, where a library's tensor-core rate is worth more than
 * reading fewer bytes). The thresholds are to be measured per GPU (linear.cu); until the GEMM
 * has been timed on a GPU it takes no batch: the GEMV to 16 rows, unpack above.
 * $WCGPU_LINEAR="GEMV_MAX,GEMM_MAX" overrides them. */
typedef enum { WCGPU_LINEAR_GEMV = 0, WCGPU_LINEAR_GEMM = 1, WCGPU_LINEAR_UNPACK = 2 } wcgpu_linear_kernel;
wcgpu_linear_kernel wcgpu_linear_kernel_for(uint32_t rows, uint32_t cols, uint32_t batch);

/* The largest batch the GEMV takes. */
#define WCGPU_GEMV_MAX_BATCH 16
/* Device memory the GEMV needs beside its output for this shape (split-K partial sums; 0 when
 * one CTA sums a row's whole K), on the current device. */
uint64_t wcgpu_gemv_workspace_bytes(uint32_t rows, uint32_t cols, uint32_t batch);
/*
 * y[batch][rows] = x[batch][cols] . W^T (+ bias[rows]): BF16 in and out, FP32 accumulation, on
 * tensor cores (mma.sync m16n8k16, W as the A operand, the batch as N in groups of 8: batches
 * 9..16 multiply each decoded fragment twice). batch 1..WCGPU_GEMV_MAX_BATCH; x and y row-major
 * and contiguous; bias may be NULL; workspace: wcgpu_gemv_workspace_bytes of device
 * memory (NULL when that is 0). The fused kernel (wcgpu_gemv_cf12) reads W in the compute format;
 * the reference (wcgpu_gemv_bf16_ref) reads plain BF16 W (rows x cols, row-major) with the same
 * tiling and reduction order, so the two give identical bits on the same weights.
 * The dispatcher picks the schedule by shape, batch group and the GPU's SM count and occupancy,
 * the same for both kernels; $WCGPU_GEMV="WARPS,KSPLIT" (tiled) or "stream,WARPS" (streamed)
 * overrides it, for the benchmark's sweep. Variants read from the environment at each call, off
 * by default until timed (both kernels follow them, so the bits stay equal): $WCGPU_PREFETCH=N,
 * N units a warp on their way into L2 ahead of the one in registers; $WCGPU_CLUSTER=1 (sm_90; =0 off), a
 * split K summed in a thread-block cluster instead of a second kernel (no workspace then);
 * $WCGPU_PDL=0, no programmatic dependent launch (on by default).
 */
wc_status wcgpu_gemv_cf12(const wcgpu_cf12 *m, const void *x, uint32_t batch, const void *bias, void *y,
                          void *workspace, void *stream, wc_error *err);
wc_status wcgpu_gemv_bf16_ref(const void *w, uint32_t rows, uint32_t cols, const void *x, uint32_t batch,
                              const void *bias, void *y, void *workspace, void *stream, wc_error *err);

/* The largest batch the GEMM takes. */
#define WCGPU_GEMM_MAX_BATCH (1u << 20)
/* Device memory the GEMM needs beside its output (split-K partial sums; 0 when unsplit). */
uint64_t wcgpu_gemm_workspace_bytes(uint32_t rows, uint32_t cols, uint32_t batch);
/*
 * The same product for batch 1..WCGPU_GEMM_MAX_BATCH (decode steps of many sequences, prefill),
 * with the same contract as the GEMV's above, on one of two kernels, picked by batch and GPU:
 * - mma.sync (any GPU): a CTA takes 4 or 8 row tiles of 16 (a warp each) and 64 batch rows,
 *   whose activations it stages in shared memory; each weight is read once per 64 batch rows.
 * - wgmma (sm_90a builds on 9.0 devices, H100 and H200; batches from $WCGPU_WGMMA_MIN, default 65;
 *   $WCGPU_WGMMA=0 turns it off): a CTA takes 1 or 2 warpgroups of 64 rows and 128 or 256 batch
 *   rows; each weight is read once per 128 or 256 batch rows.
 * Either way each weight is decoded once, in registers, never written. wcgpu_gemm_bf16_ref reads
 * plain BF16 W with the same kernel, tiling and reduction order: identical bits on the same
 * weights. The K split is picked by shape and GPU; $WCGPU_GEMM overrides the kernel and schedule:
 * "WARPS,KSPLIT" (mma.sync) or "wg,WARPGROUPS,BATCH_ROWS,KSPLIT" (wgmma, where it runs).
 */
wc_status wcgpu_gemm_cf12(const wcgpu_cf12 *m, const void *x, uint32_t batch, const void *bias, void *y,
                          void *workspace, void *stream, wc_error *err);
wc_status wcgpu_gemm_bf16_ref(const void *w, uint32_t rows, uint32_t cols, const void *x, uint32_t batch,
                              const void *bias, void *y, void *workspace, void *stream, wc_error *err);

#ifdef __cplusplus
}
#endif
#endif
