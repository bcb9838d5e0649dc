/* wcgpu.cu - the GPU tile decoder (see wcgpu.h). Three kernels per batch:
 *   rans_kernel:  one warp per rANS stream, a lane per interleaved state; in each round the
 *                 lanes that need a word take the next words in lane order (ballot + popc),
 *                 exactly the order the CPU decoder reads them in.
 *   merge_kernel: byte planes -> elements (rotated back for floats), into an aligned stage.
 *   hash_kernel:  xxh3-64 of each decoded tile, 8 threads a tile, compared with the table.
 * The host side parses each tile's layout with the core's wc_tile_layout_parse. */
#include <cuda_runtime.h>
#include <stdio.h>

#include <atomic>
#include <thread>
#include <utility>
#include <vector>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "wcgpu.h"
#include "xxh3.cuh"

#define RANS_L (1u << 16)
#define PROB_BITS 12u
#define STATE_BYTES 128u
#define ALIGN 64u
#define MAX_BATCH_TILES 16384u

enum { TILE_OK = 0, TILE_BAD_STREAM = 1, TILE_BAD_CHECKSUM = 2 };

struct stream_job {
    const uint8_t *src;
    uint8_t *dst;
    const uint32_t *lut;
    uint32_t len, count, tile, pad;
};

struct merge_job {
    const uint8_t *plane[WC_MAX_PLANES];
    uint8_t *dst;
    uint32_t n, w, rot, tile;
};

struct hash_job {
    const uint8_t *data;
    uint64_t len, expect;
    uint32_t tile, pad;
};

struct lut_entry {
    uint64_t key;
    uint32_t *d_lut;
};

struct wcgpu {
    int device;
    cudaStream_t stream;
    char name[320];
    uint8_t *h_pin;       /* payloads up, verdicts and (to_host) tiles down */
    size_t h_pin_cap;
    uint8_t *h_pin2;      /* the loader's second payload buffer: filled while h_pin is decoded */
    size_t h_pin2_cap;
    uint8_t *d_buf;       /* payloads | planes | stage | jobs | verdicts */
    size_t d_buf_cap;
    lut_entry *luts;
    size_t n_luts, cap_luts;
    uint32_t *h_verdict;        /* pinned, one per tile of a call */
    uint8_t *h_out;             /* pinned: a batch's decoded tiles on their way to the host */
    size_t h_out_cap;
    size_t verdict_cap;
    cudaEvent_t ev[4];          /* before rans, after rans, after merge, after hash */
    double kernel_ms[3];        /* per kernel, summed over the last call's batches */
};

/* ---------------------------------------------------------------- kernels */

/* A decode table as the kernel keeps it in shared memory: slot -> symbol (4096 bytes), then
 * per symbol (freq - 1) | cum << 16 (256 u32). 5 KiB a warp instead of the 16 KiB u32 table. */
#define DTAB_BYTES (4096u + 256u * 4u)
#define WARPS_PER_BLOCK 4u

__global__ void __launch_bounds__(WARPS_PER_BLOCK * 32)
rans_kernel(const stream_job *jobs, uint32_t n_jobs, uint32_t *verdict) {
    __shared__ __align__(16) uint8_t tabs[WARPS_PER_BLOCK][DTAB_BYTES];
    uint32_t wib = threadIdx.x / 32, lane = threadIdx.x % 32;
    uint32_t warp = blockIdx.x * WARPS_PER_BLOCK + wib;
    if (warp >= n_jobs) return;
    stream_job j = jobs[warp];
    /* the table into shared memory: 16 bytes a lane a step */
    const uint4 *src_tab = reinterpret_cast<const uint4 *>(j.lut);
    uint4 *dst_tab = reinterpret_cast<uint4 *>(tabs[wib]);
    for (uint32_t k = lane; k < DTAB_BYTES / 16; k += 32) dst_tab[k] = src_tab[k];
    __syncwarp();
    const uint8_t *slot_sym = tabs[wib];
    const uint32_t *sym_info = reinterpret_cast<const uint32_t *>(tabs[wib] + 4096);
    if (j.len < STATE_BYTES || j.len % 4) {
        if (lane == 0) atomicOr(&verdict[j.tile], TILE_BAD_STREAM);
        return;
    }
    /* payloads are 64-byte aligned and streams 4-byte aligned within them */
    uint32_t x = reinterpret_cast<const uint32_t *>(j.src)[lane];
    const uint16_t *words = reinterpret_cast<const uint16_t *>(j.src + STATE_BYTES);
    uint32_t n_words = (j.len - STATE_BYTES) / 2;
    /* The words this warp reads next sit in two 32-word windows held one per lane: a round takes
     * at most 32, so they are always there, and the next window loads long before it is needed. */
    uint32_t base = 0, pos = 0;
    uint32_t win = lane < n_words ? words[lane] : 0;
    uint32_t next = 32 + lane < n_words ? words[32 + lane] : 0;
    for (uint32_t first = 0; first < j.count; first += 32) {
        uint32_t i = first + lane;
        bool active = i < j.count, need = false;
        if (active) {
            uint32_t slot = x & ((1u << PROB_BITS) - 1);
            uint32_t sym = slot_sym[slot], info = sym_info[sym];
            j.dst[i] = (uint8_t)sym;
            x = ((info & 0xFFFFu) + 1u) * (x >> PROB_BITS) + slot - (info >> 16);
            need = x < RANS_L;
        }
        uint32_t mask = __ballot_sync(0xFFFFFFFFu, need);
        uint32_t k = pos + __popc(mask & ((1u << lane) - 1u)); /* < 64 */
        uint32_t w0 = __shfl_sync(0xFFFFFFFFu, win, k & 31), w1 = __shfl_sync(0xFFFFFFFFu, next, k & 31);
        if (need) x = x << 16 | (k < 32 ? w0 : w1);
        pos += __popc(mask);
        if (pos >= 32) {
            pos -= 32;
            base += 32;
            win = next;
            next = base + 32 + lane < n_words ? words[base + 32 + lane] : 0;
        }
    }
    /* every state back at L, and exactly the stream's words consumed (plus padding); a stream
     * that ran out of words ends with states that are not L, or a word count past its end */
    bool bad = x != RANS_L || base + pos > n_words ||
               ((STATE_BYTES + 2 * (base + pos) + 3) & ~3u) != j.len;
    if (__any_sync(0xFFFFFFFFu, bad) && lane == 0) atomicOr(&verdict[j.tile], TILE_BAD_STREAM);
}

template <typename T>
__device__ __forceinline__ void merge_elems(const merge_job &j, uint32_t i) {
    T v = 0;
    for (uint32_t k = 0; k < sizeof(T); k++) v |= (T)j.plane[k][i] << (8 * k);
    if (j.rot) v = v >> 1 | v << (8 * sizeof(T) - 1);
    reinterpret_cast<T *>(j.dst)[i] = v;
}

/* One thread an element. (Four a thread, with 32-bit plane loads, measured slower on the H100:
 * 3.4 ms against 2.1 ms for 1.4 GB; see docs/BENCHMARKS.md.) */
__global__ void merge_kernel(const merge_job *jobs) {
    const merge_job &j = jobs[blockIdx.y];
    for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < j.n; i += gridDim.x * blockDim.x) {
        switch (j.w) {
        case 1: j.dst[i] = j.plane[0][i]; break;
        case 2: merge_elems<uint16_t>(j, i); break;
        case 4: merge_elems<uint32_t>(j, i); break;
        default: merge_elems<uint64_t>(j, i); break;
        }
    }
}

/* 8 threads a tile: thread t owns accumulator t; a stripe's 64 bytes are one 8-byte word per
 * thread (coalesced), the partner's word comes by shuffle. Stage data is 64-byte aligned. */
__global__ void hash_kernel(const hash_job *jobs, uint32_t n_jobs, uint32_t *verdict) {
    uint32_t g = (blockIdx.x * blockDim.x + threadIdx.x) / 8, t = threadIdx.x % 8;
    uint32_t group_mask = 0xFFu << (threadIdx.x % 32 / 8 * 8);
    if (g >= n_jobs) return; /* whole groups leave together: n_jobs is per group */
    hash_job j = jobs[g];
    uint64_t h;
    if (j.len <= 240) {
        h = t == 0 ? xxh3_short(j.data, j.len) : 0;
    } else {
        const uint64_t *in = reinterpret_cast<const uint64_t *>(j.data);
        uint64_t key[16];
#pragma unroll
        for (unsigned s = 0; s < 16; s++) key[s] = xxh_secret64(8 * s + 8 * t);
        uint64_t scramble_key = xxh_secret64(128 + 8 * t), last_key = xxh_secret64(121 + 8 * t);
        uint64_t acc = xxh3_acc_init(t);
        uint64_t blocks = (j.len - 1) / 1024, tail = ((j.len - 1) - 1024 * blocks) / 64;
        for (uint64_t b = 0; b < blocks; b++) { /* whole blocks: 16 stripes, then a scramble */
            uint64_t w[16];
#pragma unroll
            for (unsigned s = 0; s < 16; s++) w[s] = in[(1024 * b + 64 * s) / 8 + t];
#pragma unroll
            for (unsigned s = 0; s < 16; s++)
                acc = xxh3_acc_step(acc, w[s], __shfl_xor_sync(group_mask, w[s], 1, 8), key[s]);
            acc = xxh3_acc_scramble(acc, scramble_key);
        }
#pragma unroll
        for (unsigned s = 0; s < 16; s++) { /* the partial block */
            if (s < tail) {
                uint64_t w = in[(1024 * blocks + 64 * s) / 8 + t];
                acc = xxh3_acc_step(acc, w, __shfl_xor_sync(group_mask, w, 1, 8), key[s]);
            }
        }
        uint64_t w = xxh_rd64(j.data + j.len - 64 + 8 * t); /* the last stripe: unaligned */
        acc = xxh3_acc_step(acc, w, __shfl_xor_sync(group_mask, w, 1, 8), last_key);
        uint64_t all[8];
        for (int k = 0; k < 8; k++) all[k] = __shfl_sync(group_mask, acc, k, 8);
        h = xxh3_acc_merge(all, j.len);
    }
    if (t == 0 && h != j.expect) atomicOr(&verdict[j.tile], TILE_BAD_CHECKSUM);
}

/* ---------------------------------------------------------------- host side */

static wc_status cuda_fail(wc_error *err, cudaError_t e, const char *what) {
    if (err) {
        snprintf(err->msg, sizeof err->msg, "GPU: %s: %s", what, cudaGetErrorString(e));
        err->code = WC_ERR_IO;
    }
    return WC_ERR_IO;
}

static wc_status fail(wc_error *err, wc_status code, const char *msg) {
    if (err) {
        snprintf(err->msg, sizeof err->msg, "%s", msg);
        err->code = code;
    }
    return code;
}

extern "C" wc_status wcgpu_open(int device, wcgpu **out, wc_error *err) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        if (err) {
            snprintf(err->msg, sizeof err->msg, "no CUDA device (%s)",
                     e != cudaSuccess ? cudaGetErrorString(e) : "none found");
            err->code = WC_ERR_IO;
        }
        return WC_ERR_IO;
    }
    if (device < 0) device = 0;
    if (device >= count) return fail(err, WC_ERR_ARG, "no such CUDA device");
    wcgpu *g = (wcgpu *)calloc(1, sizeof *g);
    if (!g) return fail(err, WC_ERR_NOMEM, "out of memory");
    g->device = device;
    cudaDeviceProp prop;
    if ((e = cudaSetDevice(device)) != cudaSuccess || (e = cudaGetDeviceProperties(&prop, device)) != cudaSuccess ||
        (e = cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking)) != cudaSuccess ||
        (e = cudaEventCreate(&g->ev[0])) != cudaSuccess || (e = cudaEventCreate(&g->ev[1])) != cudaSuccess ||
        (e = cudaEventCreate(&g->ev[2])) != cudaSuccess || (e = cudaEventCreate(&g->ev[3])) != cudaSuccess) {
        free(g);
        return cuda_fail(err, e, "opening the device");
    }
    snprintf(g->name, sizeof g->name, "%.256s (sm_%d%d)", prop.name, prop.major, prop.minor);
    *out = g;
    return WC_OK;
}

extern "C" void wcgpu_close(wcgpu *g) {
    if (!g) return;
    cudaSetDevice(g->device);
    for (size_t i = 0; i < g->n_luts; i++) cudaFree(g->luts[i].d_lut);
    free(g->luts);
    cudaFreeHost(g->h_pin);
    cudaFreeHost(g->h_pin2);
    cudaFreeHost(g->h_verdict);
    cudaFreeHost(g->h_out);
    cudaFree(g->d_buf);
    for (int i = 0; i < 4; i++) cudaEventDestroy(g->ev[i]);
    cudaStreamDestroy(g->stream);
    free(g);
}

extern "C" double wcgpu_last_kernel_ms(const wcgpu *g) {
    return g->kernel_ms[0] + g->kernel_ms[1] + g->kernel_ms[2];
}

extern "C" void wcgpu_last_kernel_split(const wcgpu *g, double ms[3]) {
    for (int i = 0; i < 3; i++) ms[i] = g->kernel_ms[i];
}

extern "C" const char *wcgpu_device_name(const wcgpu *g) { return g->name; }

static wc_status ensure(wcgpu *g, size_t h_need, size_t d_need, wc_error *err) {
    cudaError_t e;
    if (h_need > g->h_pin_cap) {
        cudaFreeHost(g->h_pin);
        g->h_pin = NULL;
        g->h_pin_cap = 0;
        size_t cap = h_need + h_need / 4;
        if ((e = cudaMallocHost((void **)&g->h_pin, cap)) != cudaSuccess)
            return cuda_fail(err, e, "pinned host buffer");
        g->h_pin_cap = cap;
    }
    if (d_need > g->d_buf_cap) {
        cudaFree(g->d_buf);
        g->d_buf = NULL;
        g->d_buf_cap = 0;
        size_t cap = d_need + d_need / 4;
        if ((e = cudaMalloc((void **)&g->d_buf, cap)) != cudaSuccess)
            return cuda_fail(err, e, "device buffer");
        g->d_buf_cap = cap;
    }
    return WC_OK;
}

/* The device copy of a decode table (in the kernel's compact form), uploaded once per distinct
 * table (keyed by content). */
static const uint32_t *device_lut(wcgpu *g, const uint32_t *lut, wc_error *err) {
    if (!lut) return fail(err, WC_ERR_NOMEM, "out of memory"), nullptr;
    uint64_t key = XXH3_64bits(lut, 4096 * sizeof(uint32_t));
    for (size_t i = 0; i < g->n_luts; i++)
        if (g->luts[i].key == key) return g->luts[i].d_lut;
    if (g->n_luts == g->cap_luts) {
        size_t cap = g->cap_luts ? 2 * g->cap_luts : 64;
        lut_entry *l = (lut_entry *)realloc(g->luts, cap * sizeof *l);
        if (!l) return fail(err, WC_ERR_NOMEM, "out of memory"), nullptr;
        g->luts = l;
        g->cap_luts = cap;
    }
    uint8_t tab[DTAB_BYTES] = {0};
    uint32_t *info = reinterpret_cast<uint32_t *>(tab + 4096);
    for (uint32_t slot = 0; slot < 4096; slot++) {
        uint32_t e = lut[slot], sym = e & 0xFF, freq = ((e >> 8) & 0xFFF) + 1, cum = slot - (e >> 20);
        tab[slot] = (uint8_t)sym;
        info[sym] = (freq - 1) | cum << 16;
    }
    uint32_t *d;
    cudaError_t e = cudaMalloc((void **)&d, DTAB_BYTES);
    if (e == cudaSuccess) e = cudaMemcpy(d, tab, DTAB_BYTES, cudaMemcpyHostToDevice);
    if (e != cudaSuccess) return cuda_fail(err, e, "decode table"), nullptr;
    g->luts[g->n_luts++] = {key, d};
    return d;
}

static uint64_t align_up(uint64_t v) { return (v + ALIGN - 1) / ALIGN * ALIGN; }

/* Decodes one batch (n <= MAX_BATCH_TILES) into the device stage; verdict[k] per tile.
 * *stage_at receives where tile k's decoded bytes are (device pointers). */
static wc_status decode_batch(wcgpu *g, const wc_container *c, const uint32_t *tiles, size_t n,
                              const uint8_t *const *payloads, uint8_t **stage_at,
                              uint32_t *verdict, wc_error *err) {
    wc_tile_layout *lay = (wc_tile_layout *)malloc(sizeof *lay);
    if (!lay) return fail(err, WC_ERR_NOMEM, "out of memory");
    /* sizes: payloads, plane scratch, stage, jobs */
    uint64_t pay = 0, planes = 0, stage = 0;
    size_t n_streams = 0;
    wc_status st = WC_OK;
    for (size_t k = 0; k < n && st == WC_OK; k++) {
        const wc_tile_info *t = wc_container_tile(c, tiles[k]);
        pay += align_up(t->coded_size);
        stage += align_up(t->src_size);
        if (t->mode == WC_TILE_PLANES) {
            if ((st = wc_tile_layout_parse(c, tiles[k], payloads[k], lay, err)) != WC_OK) break;
            n_streams += lay->n_streams;
            planes += align_up((uint64_t)t->src_size);
        }
    }
    uint64_t jobs_bytes = align_up(n_streams * sizeof(stream_job)) + align_up(n * sizeof(merge_job)) +
                          align_up(n * sizeof(hash_job)) + align_up(n * sizeof(uint32_t));
    if (st == WC_OK) st = ensure(g, pay + jobs_bytes, pay + planes + stage + jobs_bytes, err);
    if (st != WC_OK) {
        free(lay);
        return st;
    }
    uint8_t *d_pay = g->d_buf, *d_planes = d_pay + pay, *d_stage = d_planes + planes;
    uint8_t *d_jobs = d_stage + stage;
    uint8_t *h_jobs = g->h_pin + pay;
    stream_job *sj = (stream_job *)h_jobs;
    merge_job *mj = (merge_job *)(h_jobs + align_up(n_streams * sizeof(stream_job)));
    hash_job *hj = (hash_job *)((uint8_t *)mj + align_up(n * sizeof(merge_job)));
    uint32_t *hv = (uint32_t *)((uint8_t *)hj + align_up(n * sizeof(hash_job)));
    size_t d_mj = (uint8_t *)mj - h_jobs, d_hj = (uint8_t *)hj - h_jobs, d_v = (uint8_t *)hv - h_jobs;

    uint64_t p_at = 0, pl_at = 0, s_at = 0;
    size_t si = 0;
    const uint32_t *memo_host = NULL, *memo_dev = NULL; /* consecutive streams share tables */
    for (size_t k = 0; k < n && st == WC_OK; k++) {
        const wc_tile_info *t = wc_container_tile(c, tiles[k]);
        if (payloads[k] != g->h_pin + p_at) /* the loader API reads payloads in place */
            memcpy(g->h_pin + p_at, payloads[k], t->coded_size);
        uint8_t *dp = d_pay + p_at, *ds = d_stage + s_at;
        stage_at[k] = ds;
        merge_job m = {};
        m.dst = ds;
        m.tile = (uint32_t)k;
        if (t->mode == WC_TILE_RAW) {
            m.plane[0] = dp;
            m.n = t->src_size;
            m.w = 1;
        } else {
            wc_tile_layout_parse(c, tiles[k], payloads[k], lay, NULL); /* checked above */
            m.n = lay->n;
            m.w = lay->plane_count;
            wc_dtype d = (wc_dtype)lay->dtype;
            m.rot = m.w > 1 && (d == WC_DTYPE_F16 || d == WC_DTYPE_BF16 || d == WC_DTYPE_F32 ||
                                d == WC_DTYPE_F64);
            for (unsigned p = 0; p < lay->plane_count; p++)
                m.plane[p] = lay->plane_coded[p] ? d_planes + pl_at + (uint64_t)p * lay->n
                                                 : dp + lay->raw_offset[p];
            for (uint32_t s = 0; s < lay->n_streams; s++) {
                const wc_stream_ref *r = &lay->streams[s];
                const uint32_t *host_lut = wc_container_plane_lut(c, t->tensor, r->plane);
                const uint32_t *lut = host_lut == memo_host ? memo_dev : device_lut(g, host_lut, err);
                memo_host = host_lut;
                memo_dev = lut;
                if (!lut) {
                    st = err ? err->code : WC_ERR_IO;
                    break;
                }
                sj[si++] = {dp + r->offset, d_planes + pl_at + (uint64_t)r->plane * lay->n + r->first,
                            lut, r->len, r->count, (uint32_t)k, 0};
            }
            pl_at += align_up(t->src_size);
        }
        mj[k] = m;
        hj[k] = {ds, t->src_size, t->checksum, (uint32_t)k, 0};
        hv[k] = TILE_OK;
        p_at += align_up(t->coded_size);
        s_at += align_up(t->src_size);
    }
    free(lay);
    if (st != WC_OK) return st;

    cudaError_t e;
    cudaStream_t s = g->stream;
    uint32_t max_n = 1;
    for (size_t k = 0; k < n; k++) max_n = mj[k].n > max_n ? mj[k].n : max_n;
    /* payloads, then the jobs (after the payloads in h_pin, after the stage on the device) */
    if ((e = cudaMemcpyAsync(d_pay, g->h_pin, pay, cudaMemcpyHostToDevice, s)) == cudaSuccess)
        e = cudaMemcpyAsync(d_jobs, h_jobs, jobs_bytes, cudaMemcpyHostToDevice, s);
    if (e == cudaSuccess) e = cudaEventRecord(g->ev[0], s);
    if (e == cudaSuccess && n_streams) {
        rans_kernel<<<(unsigned)((n_streams + WARPS_PER_BLOCK - 1) / WARPS_PER_BLOCK), WARPS_PER_BLOCK * 32, 0, s>>>(
            (const stream_job *)d_jobs, (uint32_t)n_streams, (uint32_t *)(d_jobs + d_v));
        e = cudaGetLastError();
    }
    if (e == cudaSuccess) {
        dim3 grid((max_n + 255) / 256 < 64 ? (max_n + 255) / 256 : 64, (unsigned)n);
        cudaEventRecord(g->ev[1], s);
        merge_kernel<<<grid, 256, 0, s>>>((const merge_job *)(d_jobs + d_mj));
        e = cudaGetLastError();
    }
    if (e == cudaSuccess) {
        cudaEventRecord(g->ev[2], s);
        hash_kernel<<<(unsigned)((n * 8 + 127) / 128), 128, 0, s>>>(
            (const hash_job *)(d_jobs + d_hj), (uint32_t)n, (uint32_t *)(d_jobs + d_v));
        e = cudaGetLastError();
    }
    if (e == cudaSuccess) e = cudaEventRecord(g->ev[3], s);
    if (e == cudaSuccess)
        e = cudaMemcpyAsync(verdict, d_jobs + d_v, n * sizeof(uint32_t), cudaMemcpyDeviceToHost, s);
    if (e == cudaSuccess) e = cudaStreamSynchronize(s);
    for (int i = 0; e == cudaSuccess && i < 3; i++) {
        float ms = 0;
        if (cudaEventElapsedTime(&ms, g->ev[i], g->ev[i + 1]) == cudaSuccess) g->kernel_ms[i] += ms;
    }
    return e == cudaSuccess ? WC_OK : cuda_fail(err, e, "decoding");
}

/* How many tiles from tiles[at] make the next batch: up to MAX_BATCH_TILES tiles and about
 * max_bytes of decoded bytes (1 GiB for whole calls; the loader takes smaller ones). */
static size_t batch_size(const wc_container *c, const uint32_t *tiles, size_t at, size_t n,
                         uint64_t max_bytes = 1ull << 30) {
    size_t m = 0;
    uint64_t bytes = 0;
    while (at + m < n && m < MAX_BATCH_TILES && (m == 0 || bytes < max_bytes))
        bytes += wc_container_tile(c, tiles[at + m++])->src_size;
    return m;
}

/* Runs batches; deliver(k, stage pointer, batch's first stage pointer) places good tile k;
 * batch_done(first, count) runs when a batch's deliveries are issued; collects verdicts. */
template <typename Deliver, typename BatchDone>
static wc_status decode_all(wcgpu *g, const wc_container *c, const uint32_t *tiles, size_t n,
                            const uint8_t *const *payloads, uint8_t *bad, wc_error *err,
                            Deliver deliver, BatchDone batch_done) {
    cudaError_t e = cudaSetDevice(g->device);
    if (e != cudaSuccess) return cuda_fail(err, e, "selecting the device");
    uint8_t **stage_at = (uint8_t **)malloc((n ? n : 1) * sizeof *stage_at);
    if (n > g->verdict_cap) {
        cudaFreeHost(g->h_verdict);
        g->verdict_cap = 0;
        if (cudaMallocHost((void **)&g->h_verdict, n * sizeof *g->h_verdict) == cudaSuccess) g->verdict_cap = n;
    }
    uint32_t *verdict = g->h_verdict;
    if (!stage_at || n > g->verdict_cap) {
        free(stage_at);
        return fail(err, WC_ERR_NOMEM, "out of memory");
    }
    wc_status st = WC_OK, first_bad = WC_OK;
    g->kernel_ms[0] = g->kernel_ms[1] = g->kernel_ms[2] = 0;
    for (size_t at = 0; at < n && st == WC_OK;) {
        size_t m = batch_size(c, tiles, at, n);
        st = decode_batch(g, c, tiles + at, m, payloads + at, stage_at + at, verdict + at, err);
        for (size_t k = at; st == WC_OK && k < at + m; k++) {
            if (bad) bad[k] = verdict[k] != TILE_OK;
            if (verdict[k] == TILE_OK) {
                st = deliver(k, stage_at[k], stage_at[at]);
            } else if (first_bad == WC_OK) {
                const wc_tile_info *t = wc_container_tile(c, tiles[k]);
                first_bad = verdict[k] & TILE_BAD_STREAM ? WC_ERR_FORMAT : WC_ERR_CHECKSUM;
                if (err) {
                    snprintf(err->msg, sizeof err->msg,
                             "GPU: tile %u (source bytes %llu..%llu): %s", tiles[k],
                             (unsigned long long)t->src_offset,
                             (unsigned long long)(t->src_offset + t->src_size),
                             first_bad == WC_ERR_FORMAT ? "corrupt payload" : "checksum mismatch");
                    err->code = first_bad;
                }
            }
        }
        if (st == WC_OK) st = batch_done(at, m);
        at += m;
    }
    if (st == WC_OK) e = cudaStreamSynchronize(g->stream);
    if (st == WC_OK && e != cudaSuccess) st = cuda_fail(err, e, "copying out");
    free(stage_at);
    return st != WC_OK ? st : first_bad;
}

extern "C" wc_status wcgpu_decode_tiles(wcgpu *g, const wc_container *c, const uint32_t *tiles,
                                        size_t n, const uint8_t *const *payloads, uint8_t *d_out,
                                        const uint64_t *out_offsets, uint8_t *bad, wc_error *err) {
    return decode_all(
        g, c, tiles, n, payloads, bad, err,
        [&](size_t k, const uint8_t *src, const uint8_t *) {
            cudaError_t e = cudaMemcpyAsync(d_out + out_offsets[k], src,
                                            wc_container_tile(c, tiles[k])->src_size,
                                            cudaMemcpyDeviceToDevice, g->stream);
            return e == cudaSuccess ? WC_OK : cuda_fail(err, e, "placing a tile");
        },
        [](size_t, size_t) { return WC_OK; });
}

extern "C" wc_status wcgpu_decode_tiles_to_host(wcgpu *g, const wc_container *c,
                                                const uint32_t *tiles, size_t n,
                                                const uint8_t *const *payloads,
                                                uint8_t *const *host_out, uint8_t *bad,
                                                wc_error *err) {
    /* a batch's tiles come down together into pinned memory, then go to their buffers */
    uint64_t need = 0;
    for (size_t k = 0; k < n; k++) need += align_up(wc_container_tile(c, tiles[k])->src_size);
    if (need > (1ull << 30) + (64u << 20)) need = (1ull << 30) + (64u << 20); /* a batch's bound */
    if (need > g->h_out_cap) {
        cudaFreeHost(g->h_out);
        g->h_out_cap = 0;
        cudaError_t e = cudaMallocHost((void **)&g->h_out, need);
        if (e != cudaSuccess) return cuda_fail(err, e, "pinned output buffer");
        g->h_out_cap = need;
    }
    uint8_t *placed = (uint8_t *)calloc(n ? n : 1, 1);
    uint64_t *at_off = (uint64_t *)malloc((n ? n : 1) * sizeof *at_off);
    if (!placed || !at_off) {
        free(placed);
        free(at_off);
        return fail(err, WC_ERR_NOMEM, "out of memory");
    }
    wc_status st = decode_all(
        g, c, tiles, n, payloads, bad, err,
        [&](size_t k, const uint8_t *src, const uint8_t *batch_stage) {
            at_off[k] = (uint64_t)(src - batch_stage);
            placed[k] = 1;
            cudaError_t e = cudaMemcpyAsync(g->h_out + at_off[k], src,
                                            wc_container_tile(c, tiles[k])->src_size,
                                            cudaMemcpyDeviceToHost, g->stream);
            return e == cudaSuccess ? WC_OK : cuda_fail(err, e, "copying a tile out");
        },
        [&](size_t first, size_t m) {
            cudaError_t e = cudaStreamSynchronize(g->stream);
            if (e != cudaSuccess) return cuda_fail(err, e, "copying tiles out");
            for (size_t k = first; k < first + m; k++)
                if (placed[k])
                    memcpy(host_out[k], g->h_out + at_off[k], wc_container_tile(c, tiles[k])->src_size);
            return WC_OK;
        });
    free(placed);
    free(at_off);
    return st;
}

/* Reads the payloads of tiles[at..at+m) into buf (each at its aligned place, where
 * decode_batch expects it), `threads` readers at once: parallel reads keep a disk's queue deep
 * and copy from the page cache on several cores. On failure, the lowest failing tile's error. */
static wc_status read_payloads(const wc_container *c, const uint32_t *tiles, size_t at, size_t m,
                               uint8_t *buf, const uint8_t **payloads, unsigned threads, wc_error *err) {
    std::vector<uint64_t> place(m);
    uint64_t p_at = 0;
    for (size_t k = 0; k < m; k++) {
        place[k] = p_at;
        payloads[at + k] = buf + p_at;
        p_at += align_up(wc_container_tile(c, tiles[at + k])->coded_size);
    }
    std::atomic<size_t> next(0), failed(SIZE_MAX);
    std::vector<wc_error> errs(threads);
    std::vector<wc_status> sts(threads, WC_OK);
    std::vector<size_t> bad_at(threads, SIZE_MAX);
    auto work = [&](unsigned w) {
        for (size_t k; (k = next.fetch_add(1)) < m;) {
            if (k > failed.load()) break;
            wc_error e = {};
            wc_status st = wc_container_read_tile(c, tiles[at + k], buf + place[k], &e);
            if (st != WC_OK && k < bad_at[w]) {
                bad_at[w] = k;
                sts[w] = st;
                errs[w] = e;
                for (size_t f = failed.load(); k < f && !failed.compare_exchange_weak(f, k);) {}
            }
        }
    };
    std::vector<std::thread> pool;
    for (unsigned w = 1; w < threads; w++) {
        try {
            pool.emplace_back(work, w);
        } catch (...) {
            break; /* fewer threads then */
        }
    }
    work(0);
    for (auto &t : pool) t.join();
    size_t lowest = SIZE_MAX;
    wc_status st = WC_OK;
    for (unsigned w = 0; w < threads; w++)
        if (sts[w] != WC_OK && bad_at[w] < lowest) {
            lowest = bad_at[w];
            st = sts[w];
            if (err) *err = errs[w];
        }
    return st;
}

extern "C" wc_status wcgpu_read_range(wcgpu *g, const wc_container *c, uint64_t offset, size_t len,
                                      void *d_dst, wc_error *err) {
    if (offset > wc_container_source_size(c) || len > wc_container_source_size(c) - offset)
        return fail(err, WC_ERR_ARG, "range beyond the source");
    if (len == 0) return WC_OK;
    uint32_t first = wc_container_find_tile(c, offset), last = wc_container_find_tile(c, offset + len - 1);
    size_t n = last - first + 1;
    uint32_t *tiles = (uint32_t *)malloc(n * sizeof *tiles);
    const uint8_t **payloads = (const uint8_t **)calloc(n, sizeof *payloads);
    wc_status st = tiles && payloads ? WC_OK : fail(err, WC_ERR_NOMEM, "out of memory");
    for (size_t k = 0; k < n && tiles; k++) tiles[k] = first + (uint32_t)k;
    auto place = [&](size_t k, const uint8_t *src, const uint8_t *) {
        const wc_tile_info *t = wc_container_tile(c, tiles[k]);
        uint64_t from = offset > t->src_offset ? offset - t->src_offset : 0;
        uint64_t to = offset + len < t->src_offset + t->src_size ? offset + len - t->src_offset : t->src_size;
        cudaError_t e = cudaMemcpyAsync((uint8_t *)d_dst + (t->src_offset + from - offset), src + from,
                                        to - from, cudaMemcpyDeviceToDevice, g->stream);
        return e == cudaSuccess ? WC_OK : cuda_fail(err, e, "placing a tile");
    };
    /* Batches, and the pinned room the largest needs (payloads, then its jobs: decode_batch's
     * layout). Two such buffers: batch i+1's payloads are read from the file straight into one
     * (no copy, no pageable memory) while batch i is uploaded and decoded from the other. */
    std::vector<std::pair<size_t, size_t>> batches;
    uint64_t need = 0;
    for (size_t at = 0; at < n && st == WC_OK;) {
        /* batches of about 64 MiB, so that reading the next overlaps decoding this one */
        size_t m = batch_size(c, tiles, at, n, 64ull << 20);
        uint64_t pay = 0, jobs = 256;
        for (size_t k = at; k < at + m; k++) {
            const wc_tile_info *t = wc_container_tile(c, tiles[k]);
            pay += align_up(t->coded_size);
            jobs += align_up((t->src_size / 65536 + WC_MAX_PLANES + 1) * sizeof(stream_job)) +
                    sizeof(merge_job) + sizeof(hash_job) + 4 + 3 * ALIGN;
        }
        need = pay + jobs > need ? pay + jobs : need;
        batches.emplace_back(at, m);
        at += m;
    }
    if (st == WC_OK) st = ensure(g, need, 0, err);
    if (st == WC_OK && batches.size() > 1) {
        std::swap(g->h_pin, g->h_pin2);
        std::swap(g->h_pin_cap, g->h_pin2_cap);
        st = ensure(g, need, 0, err);
        std::swap(g->h_pin, g->h_pin2);
        std::swap(g->h_pin_cap, g->h_pin2_cap);
    }
    unsigned readers = std::thread::hardware_concurrency();
    readers = readers < 2 ? 1 : readers > 16 ? 8 : readers / 2;
    if (st == WC_OK) st = read_payloads(c, tiles, batches[0].first, batches[0].second, g->h_pin, payloads, readers, err);
    for (size_t b = 0; b < batches.size() && st == WC_OK; b++) {
        size_t at = batches[b].first, m = batches[b].second;
        wc_status next_st = WC_OK;
        wc_error next_err = {};
        std::thread next;
        if (b + 1 < batches.size()) {
            auto read_next = [&] {
                next_st = read_payloads(c, tiles, batches[b + 1].first, batches[b + 1].second, g->h_pin2,
                                        payloads, readers, &next_err);
            };
            try {
                next = std::thread(read_next);
            } catch (...) {
                read_next(); /* no thread to spare: read it now, without the overlap */
            }
        }
        st = decode_all(g, c, tiles + at, m, payloads + at, NULL, err,
                        [&](size_t k, const uint8_t *src, const uint8_t *bs) { return place(at + k, src, bs); },
                        [](size_t, size_t) { return WC_OK; });
        if (next.joinable()) next.join();
        /* decode_all has synchronized the stream: this batch's buffer is free for the one after */
        std::swap(g->h_pin, g->h_pin2);
        std::swap(g->h_pin_cap, g->h_pin2_cap);
        if (st == WC_OK && next_st != WC_OK) {
            st = next_st;
            if (err) *err = next_err;
        }
    }
    free(payloads);
    free(tiles);
    return st;
}
