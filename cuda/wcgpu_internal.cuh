/* wcgpu_internal.cuh - what the GPU decoder's files share (not part of the API, wcgpu.h): the
 * job structs the kernels read, the handle, the launch of a decode's kernels, and the host
 * helpers used by more than one file. Functions declared here are hidden: libwcodec.so exports
 * wcgpu.h's functions only.
 *   decode_kernels.cu  the kernels and wcgpu_launch_kernels
 *   handle.cu          wcgpu_open/close, errors, the handle's buffers and decode tables
 *   jobs.cu            a tile's jobs built on the host, shaped and packed
 *   tile_decode.cu     batch decodes (wcgpu_decode_tiles*)
 *   loader.cu          the loader pipeline (wcgpu_read_ranges)
 *   resident_set.cu    resident sets (wcgpu_set_*) */
#ifndef WCGPU_INTERNAL_CUH
#define WCGPU_INTERNAL_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include <new>
#include <vector>

#include "wcgpu.h"

#define WCGPU_HIDDEN __attribute__((visibility("hidden")))

#define ALIGN 64u
#define FUSED_MAX_W 4u

enum { TILE_OK = 0, TILE_BAD_STREAM = 1, TILE_BAD_CHECKSUM = 2 };

/* One rANS stream. src and raw planes: from the payload base; dst: from the output base where
 * fused (element `first` of the tile), else from the scratch base (its plane's symbol `first`). */
struct stream_job {
    uint64_t src, dst, tile_pay;
    const uint32_t *lut;
    uint32_t len, count, verdict, first;
    uint32_t raw_off[FUSED_MAX_W]; /* fused: raw plane r's bytes (the planes other than this
                                    * stream's, in plane order) at tile_pay + raw_off[r] */
    uint8_t w, plane, rot, fused;  /* fused: element width, this stream's plane, rotate back */
    uint32_t skip;                 /* padding: a block's warps share one table (see shape_streams) */
};

/* A tile the streams did not finish: planes (from the payload base, or from the scratch base
 * where scratch_mask has their bit) merged into elements at dst (from the output base). */
struct merge_job {
    uint64_t plane[WC_MAX_PLANES];
    uint64_t dst;
    uint32_t n, w, rot, scratch_mask;
};

struct hash_job {
    uint64_t data, len, expect; /* data: from the output base */
    uint32_t verdict, pad;
};

struct lut_entry {
    uint64_t key;
    uint32_t *d_lut;
};

struct wcgpu_loader; /* the loader's pipeline (wcgpu_read_ranges, loader.cu) */
WCGPU_HIDDEN void loader_free(wcgpu_loader *L);

struct wcgpu {
    int device;
    cudaStream_t stream;
    char name[320];
    uint8_t *h_pin;       /* payloads up, verdicts and (to_host) tiles down */
    size_t h_pin_cap;
    uint8_t *d_buf;       /* payloads | planes | stage | jobs | verdicts */
    size_t d_buf_cap;
    lut_entry *luts;
    size_t n_luts, cap_luts;
    uint32_t *h_verdict;        /* pinned, one per tile of a call */
    uint8_t *h_out;             /* pinned: a batch's decoded tiles on their way to the host */
    size_t h_out_cap;
    size_t verdict_cap;
    cudaEvent_t ev[4];          /* before rans, after rans, after merge, after hash */
    wcgpu_loader *loader;       /* made at the first load */
    double kernel_ms[3];        /* per kernel, summed over the last call's batches */
};

/* A block's warps decode streams of one table (shape_streams pads and orders the jobs so), kept
 * in shared memory as the container's packed form: slot -> sym | (freq - 1) << 8 | (slot - cum)
 * << 20, so that a round takes one table lookup. (Two lookups, slot -> symbol in a byte table and
 * symbol -> freq and cum, fitted 5 KiB tables into every warp; the second lookup sat in each
 * round's dependent chain: docs/BENCHMARKS.md.) */
#define TAB_SLOTS 4096u
/* Warps a block: 4 shares a table among few enough streams that padding runs of one table to
 * whole blocks costs little; 8 (with 4 blocks an SM) measured 2-3% slower. */
#ifndef WARPS_PER_BLOCK
#define WARPS_PER_BLOCK 4u
#endif

/* The jobs and bases of one decode (see wcgpu_launch_kernels). */
struct launch {
    const stream_job *sj;
    uint32_t n_sj;
    const merge_job *mj;
    uint32_t n_mj, max_merge_n;
    const hash_job *hj;
    uint32_t n_hj;
    uint64_t pay, out, scratch;
    uint32_t *verdict;
};

/* decode_kernels.cu */
WCGPU_HIDDEN cudaError_t wcgpu_launch_kernels(const launch &l, cudaStream_t s, const cudaEvent_t *ev);

/* handle.cu */
WCGPU_HIDDEN wc_status wcgpu_cuda_fail(wc_error *err, cudaError_t e, const char *what);
WCGPU_HIDDEN wc_status wcgpu_fail(wc_error *err, wc_status code, const char *msg);
WCGPU_HIDDEN wc_status tile_verdict_error(const wc_container *c, uint32_t tile, uint32_t verdict, wc_error *err);
WCGPU_HIDDEN wc_status wcgpu_ensure(wcgpu *g, size_t h_need, size_t d_need, wc_error *err);
WCGPU_HIDDEN const uint32_t *device_lut(wcgpu *g, const uint32_t *lut, wc_error *err);
WCGPU_HIDDEN uint32_t *verdicts_for(wcgpu *g, size_t n);

static inline uint64_t wcgpu_align_up(uint64_t v) { return (v + ALIGN - 1) / ALIGN * ALIGN; }

/* The jobs of a decode, built on the host. */
struct job_lists {
    std::vector<stream_job> s;
    std::vector<merge_job> m;
    std::vector<hash_job> h;
    uint32_t max_merge_n = 1;
    const uint32_t *memo_host = nullptr, *memo_dev = nullptr; /* consecutive streams share tables */
};

/* jobs.cu */
WCGPU_HIDDEN wc_status tile_jobs(wcgpu *g, const wc_container *c, uint32_t tile, const uint8_t *payload,
                                 uint64_t pay_off, uint64_t out_off, uint64_t *scratch_at, uint32_t verdict,
                                 bool hash, wc_tile_layout *lay, job_lists &jl, wc_error *err);
WCGPU_HIDDEN void shape_streams(std::vector<stream_job> &s, size_t from);
WCGPU_HIDDEN uint64_t pack_jobs(const job_lists &jl, size_t n_verdicts, uint8_t *to, uint64_t at[4]);

/* loader.cu */
WCGPU_HIDDEN unsigned payload_readers(void);

/* Runs f with g's device current, then gives the caller's back. */
template <typename F> wc_status wcgpu_on_device(wcgpu *g, wc_error *err, F f) {
    int prev = -1;
    cudaGetDevice(&prev);
    cudaError_t e = prev == g->device ? cudaSuccess : cudaSetDevice(g->device);
    if (e != cudaSuccess) return wcgpu_cuda_fail(err, e, "selecting the device");
    wc_status st;
    try {
        st = f();
    } catch (const std::bad_alloc &) {
        st = wcgpu_fail(err, WC_ERR_NOMEM, "out of memory");
    }
    if (prev >= 0 && prev != g->device) cudaSetDevice(prev);
    return st;
}

#endif
