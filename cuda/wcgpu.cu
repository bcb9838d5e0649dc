/* wcgpu.cu - the GPU tile decoder (see wcgpu.h). Up to three kernels per decode:
 *   rans_kernel:  one warp per rANS stream, a lane per interleaved state; in each round the
 *                 lanes that need a word take the next words in lane order (ballot + popc),
 *                 exactly the order the CPU decoder reads them in. Where a tile has one coded
 *                 plane (BF16's exponent; any 1-byte dtype) the warp is fused with the plane
 *                 merge: it reads the raw planes' bytes of its elements, rebuilds each element
 *                 in registers and writes it to the output, so those bytes cross global memory
 *                 once. Other tiles' streams write planes to a scratch area. A block's warps
 *                 share one decode table in shared memory (one lookup a symbol).
 *   merge_kernel: the remaining tiles: planes -> elements (rotated back for floats), and raw
 *                 tiles copied.
 *   hash_kernel:  xxh3-64 of each decoded tile, 8 threads a tile, compared with the table;
 *                 skipped where the caller verified the payloads before (resident sets).
 * Jobs address memory as offsets from three bases given at launch (payloads, output, plane
 * scratch): the batch path and the loader pass absolute output addresses with output base 0; a
 * resident set keeps its jobs on the device and decodes into whatever output the caller gives.
 * The host side parses each tile's layout with the core's wc_tile_layout_parse. */
#include <cuda_runtime.h>
#include <stdio.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <new>
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

struct wcgpu_loader; /* the loader's pipeline (wcgpu_read_ranges) */
static void loader_free(wcgpu_loader *L);

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

/* ---------------------------------------------------------------- kernels */

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

template <typename T> __device__ __forceinline__ T rotr1(T v) { return v >> 1 | v << (8 * sizeof(T) - 1); }

/* A fused stream reads the raw planes' bytes of its elements 512 at a time: each lane loads four
 * 32-bit words (coalesced), a block ahead of their use, so that the global loads' latency hides
 * behind 16 rounds of decoding instead of stalling every round; round q takes its lane's byte
 * from the word's holder by shuffle. (Loaded in the round that used them, they made the fused
 * kernel slower than the plane-writing kernel and the merge pass together.) */
#define RAW_BLOCK 512u
template <unsigned R>
__device__ __forceinline__ void load_raw_block(const uint32_t *const *raw, uint32_t blk, uint32_t n_words,
                                               uint32_t lane, uint32_t (&to)[R ? R : 1][4]) {
#pragma unroll
    for (int r = 0; r < (int)R; r++)
#pragma unroll
        for (unsigned k = 0; k < 4; k++) {
            uint32_t w = blk * (RAW_BLOCK / 4) + k * 32 + lane;
            to[r][k] = w < n_words ? raw[r][w] : 0;
        }
}

/* One stream, its elements of type T (uint8_t: a plane of symbols, where not fused). PAIR: a
 * 2-byte float whose coded plane is the high one (BF16's exponent, F16's), one raw plane below it,
 * rotated back: there one byte permute builds [raw, sym, raw, sym] and its low half shifted right
 * by one is the element (rotr1 of sym << 8 | raw), where the general path takes about eight
 * instructions. The rounds of a whole 512-element block run without the end-of-stream checks. */
template <typename T, bool PAIR>
__device__ __forceinline__ void rans_stream(const stream_job &j, const uint32_t *tab, uint64_t pay, uint8_t *dst,
                                            uint32_t *verdict, uint32_t lane) {
    constexpr unsigned R = sizeof(T) - 1; /* raw planes beside the coded one */
    const uint8_t *src = reinterpret_cast<const uint8_t *>(pay + j.src);
    const uint32_t *raw[R ? R : 1];
    unsigned raw_shift[R ? R : 1];
#pragma unroll
    for (int r = 0; r < (int)R; r++) { /* raw plane r is plane r, or r + 1 past the coded one */
        unsigned p = (unsigned)r < j.plane ? (unsigned)r : (unsigned)r + 1;
        raw[r] = reinterpret_cast<const uint32_t *>(pay + j.tile_pay + j.raw_off[r] + j.first);
        raw_shift[r] = 8 * p;
    }
    /* PAIR's permute: bytes (raw, sym, raw, sym); the raw byte is byte lane % 4 of its word, the
     * symbol byte 0 of the table entry (selector 4) */
    const uint32_t pair_sel = (lane % 4) | 4u << 4 | (lane % 4) << 8 | 4u << 12;
    uint32_t raw_words = (j.count + 3) / 4, cur[R ? R : 1][4], nxt[R ? R : 1][4];
    load_raw_block<R>(raw, 0, raw_words, lane, cur);
    /* payloads are 64-byte aligned and streams 4-byte aligned within them */
    uint32_t x = reinterpret_cast<const uint32_t *>(src)[lane];
    const uint16_t *words = reinterpret_cast<const uint16_t *>(src + STATE_BYTES);
    uint32_t n_words = (j.len - STATE_BYTES) / 2;
    /* The words this warp reads next sit in two 32-word windows held one per lane: a round takes
     * at most 32, so they are always there, and the next window loads long before it is needed. */
    uint32_t base = 0, pos = 0;
    uint32_t win = lane < n_words ? words[lane] : 0;
    uint32_t next = 32 + lane < n_words ? words[32 + lane] : 0;
    /* one round: element i of this lane (active: i < count, where the block is the last one) */
    auto round = [&](uint32_t q, uint32_t i, bool active) {
        /* this round's raw bytes, by shuffle from their words' holders: every lane takes part */
        uint32_t rw[R ? R : 1];
#pragma unroll
        for (int r = 0; r < (int)R; r++) rw[r] = __shfl_sync(0xFFFFFFFFu, cur[r][q / 4], 8 * (q % 4) + lane / 4);
        bool need = false;
        if (active) {
            uint32_t e = tab[x & ((1u << PROB_BITS) - 1)];
            if (PAIR) {
                reinterpret_cast<uint16_t *>(dst)[i] = (uint16_t)(__byte_perm(rw[0], e, pair_sel) >> 1);
            } else if (R == 0) {
                dst[i] = (uint8_t)e;
            } else {
                T v = (T)(e & 0xFF) << (8 * j.plane);
#pragma unroll
                for (int r = 0; r < (int)R; r++) v |= (T)(rw[r] >> (8 * (lane % 4)) & 0xFF) << raw_shift[r];
                reinterpret_cast<T *>(dst)[i] = j.rot ? rotr1(v) : v;
            }
            x = ((e >> 8 & 0xFFFu) + 1u) * (x >> PROB_BITS) + (e >> 20);
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
    };
    for (uint32_t blk = 0; blk * RAW_BLOCK < j.count; blk++) {
        load_raw_block<R>(raw, blk + 1, raw_words, lane, nxt);
        if ((blk + 1) * RAW_BLOCK <= j.count) { /* a whole block: every lane active, no checks */
#pragma unroll
            for (uint32_t q = 0; q < RAW_BLOCK / 32; q++) round(q, blk * RAW_BLOCK + q * 32 + lane, true);
        } else {
#pragma unroll
            for (uint32_t q = 0; q < RAW_BLOCK / 32; q++) {
                uint32_t i = blk * RAW_BLOCK + q * 32 + lane;
                if (i - lane >= j.count) break; /* the whole warp leaves together */
                round(q, i, i < j.count);
            }
        }
#pragma unroll
        for (int r = 0; r < (int)R; r++)
#pragma unroll
            for (unsigned k = 0; k < 4; k++) cur[r][k] = nxt[r][k];
    }
    /* every state back at L, and exactly the stream's words consumed (plus padding); a stream
     * that ran out of words ends with states that are not L, or a word count past its end */
    bool bad = x != RANS_L || base + pos > n_words ||
               ((STATE_BYTES + 2 * (base + pos) + 3) & ~3u) != j.len;
    if (__any_sync(0xFFFFFFFFu, bad) && lane == 0) atomicOr(&verdict[j.verdict], TILE_BAD_STREAM);
}

/* Blocks per SM the compiler must leave registers for: 8 caps the kernel at 64 registers
 * (40 bytes spilled, in paths BF16 does not take), 32 warps an SM. Side by side on the H200:
 * 1058 GB/s against 854 with 6 blocks (78 registers, no spill); in the round before, 766 against
 * 674 uncapped (docs/BENCHMARKS.md). */
#ifndef WC_RANS_MIN_BLOCKS
#define WC_RANS_MIN_BLOCKS 8
#endif
__global__ void __launch_bounds__(WARPS_PER_BLOCK * 32, WC_RANS_MIN_BLOCKS)
rans_kernel(const stream_job *jobs, uint32_t n_jobs, uint64_t pay, uint64_t out, uint64_t scratch,
            uint32_t *verdict) {
    __shared__ __align__(16) uint32_t tab[TAB_SLOTS];
    uint32_t wib = threadIdx.x / 32, lane = threadIdx.x % 32;
    uint32_t warp = blockIdx.x * WARPS_PER_BLOCK + wib; /* n_jobs: whole blocks */
    /* the block's table into shared memory, 16 bytes a thread a step */
    const uint4 *src_tab = reinterpret_cast<const uint4 *>(jobs[blockIdx.x * WARPS_PER_BLOCK].lut);
    for (uint32_t k = threadIdx.x; k < TAB_SLOTS / 4; k += WARPS_PER_BLOCK * 32)
        reinterpret_cast<uint4 *>(tab)[k] = src_tab[k];
    __syncthreads();
    if (warp >= n_jobs) return;
    const stream_job j = jobs[warp];
    if (j.skip) return;
    if (j.len < STATE_BYTES || j.len % 4) {
        if (lane == 0) atomicOr(&verdict[j.verdict], TILE_BAD_STREAM);
        return;
    }
    uint8_t *dst = reinterpret_cast<uint8_t *>((j.fused ? out : scratch) + j.dst);
    switch (j.fused ? j.w : 1) {
    case 2:
        if (j.plane == 1 && j.rot) rans_stream<uint16_t, true>(j, tab, pay, dst, verdict, lane);
        else rans_stream<uint16_t, false>(j, tab, pay, dst, verdict, lane);
        break;
    case 4: rans_stream<uint32_t, false>(j, tab, pay, dst, verdict, lane); break;
    default: rans_stream<uint8_t, false>(j, tab, pay, dst, verdict, lane); break;
    }
}

template <typename T>
__device__ __forceinline__ void merge_elems(const uint8_t *const *plane, uint8_t *dst, uint32_t rot, uint32_t i) {
    T v = 0;
    for (uint32_t k = 0; k < sizeof(T); k++) v |= (T)plane[k][i] << (8 * k);
    reinterpret_cast<T *>(dst)[i] = rot ? rotr1(v) : v;
}

/* One thread an element. (Four a thread, with 32-bit plane loads, measured slower on the H100:
 * 3.4 ms against 2.1 ms for 1.4 GB; see docs/BENCHMARKS.md.) */
__global__ void merge_kernel(const merge_job *jobs, uint64_t pay, uint64_t out, uint64_t scratch) {
    const merge_job &j = jobs[blockIdx.y];
    const uint8_t *plane[WC_MAX_PLANES];
    for (uint32_t p = 0; p < j.w; p++)
        plane[p] = reinterpret_cast<const uint8_t *>((j.scratch_mask >> p & 1 ? scratch : pay) + j.plane[p]);
    uint8_t *dst = reinterpret_cast<uint8_t *>(out + j.dst);
    for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < j.n; i += gridDim.x * blockDim.x) {
        switch (j.w) {
        case 1: dst[i] = plane[0][i]; break;
        case 2: merge_elems<uint16_t>(plane, dst, j.rot, i); break;
        case 4: merge_elems<uint32_t>(plane, dst, j.rot, i); break;
        default: merge_elems<uint64_t>(plane, dst, j.rot, i); break;
        }
    }
}

/* 8 threads a tile: thread t owns accumulator t; a stripe's 64 bytes are one 8-byte word per
 * thread (coalesced), the partner's word comes by shuffle. Tiles start 64-byte aligned. */
__global__ void hash_kernel(const hash_job *jobs, uint32_t n_jobs, uint64_t out, uint32_t *verdict) {
    uint32_t g = (blockIdx.x * blockDim.x + threadIdx.x) / 8, t = threadIdx.x % 8;
    uint32_t group_mask = 0xFFu << (threadIdx.x % 32 / 8 * 8);
    if (g >= n_jobs) return; /* whole groups leave together: n_jobs is per group */
    hash_job j = jobs[g];
    const uint8_t *data = reinterpret_cast<const uint8_t *>(out + j.data);
    uint64_t h;
    if (j.len <= 240) {
        h = t == 0 ? xxh3_short(data, j.len) : 0;
    } else {
        const uint64_t *in = reinterpret_cast<const uint64_t *>(data);
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
        uint64_t w = xxh_rd64(data + j.len - 64 + 8 * t); /* the last stripe: unaligned */
        acc = xxh3_acc_step(acc, w, __shfl_xor_sync(group_mask, w, 1, 8), last_key);
        uint64_t all[8];
        for (int k = 0; k < 8; k++) all[k] = __shfl_sync(group_mask, acc, k, 8);
        h = xxh3_acc_merge(all, j.len);
    }
    if (t == 0 && h != j.expect) atomicOr(&verdict[j.verdict], TILE_BAD_CHECKSUM);
}

/* The kernels of one decode on stream s: jobs in device memory, bases as above. The launch
 * shapes live here alone, for the batch path and resident sets both. */
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

static cudaError_t launch_kernels(const launch &l, cudaStream_t s, const cudaEvent_t *ev) {
    if (ev) cudaEventRecord(ev[0], s);
    if (l.n_sj)
        rans_kernel<<<(l.n_sj + WARPS_PER_BLOCK - 1) / WARPS_PER_BLOCK, WARPS_PER_BLOCK * 32, 0, s>>>(
            l.sj, l.n_sj, l.pay, l.out, l.scratch, l.verdict);
    if (ev) cudaEventRecord(ev[1], s);
    for (uint32_t at = 0; at < l.n_mj; at += 65535) { /* gridDim.y's limit */
        uint32_t m = l.n_mj - at < 65535 ? l.n_mj - at : 65535;
        unsigned x = (l.max_merge_n + 255) / 256 < 64 ? (l.max_merge_n + 255) / 256 : 64;
        merge_kernel<<<dim3(x ? x : 1, m), 256, 0, s>>>(l.mj + at, l.pay, l.out, l.scratch);
    }
    if (ev) cudaEventRecord(ev[2], s);
    if (l.n_hj)
        hash_kernel<<<(l.n_hj * 8 + 127) / 128, 128, 0, s>>>(l.hj, l.n_hj, l.out, l.verdict);
    if (ev) cudaEventRecord(ev[3], s);
    return cudaGetLastError();
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

/* Where a tile's error is reported: "GPU: tile 7 (source bytes a..b): checksum mismatch". */
static wc_status tile_verdict_error(const wc_container *c, uint32_t tile, uint32_t verdict, wc_error *err) {
    const wc_tile_info *t = wc_container_tile(c, tile);
    wc_status st = verdict & TILE_BAD_STREAM ? WC_ERR_FORMAT : WC_ERR_CHECKSUM;
    return wc_error_set(err, st, "GPU: tile %u (source bytes %llu..%llu): %s", tile,
                        (unsigned long long)t->src_offset, (unsigned long long)(t->src_offset + t->src_size),
                        st == WC_ERR_FORMAT ? "corrupt payload" : "checksum mismatch");
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
    loader_free(g->loader);
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

/* The device copy of a decode table (the container's packed form, as the kernel keeps it),
 * uploaded once per distinct table (keyed by content). */
static const uint32_t *device_lut(wcgpu *g, const uint32_t *lut, wc_error *err) {
    if (!lut) return fail(err, WC_ERR_NOMEM, "out of memory"), nullptr;
    uint64_t key = XXH3_64bits(lut, TAB_SLOTS * sizeof(uint32_t));
    for (size_t i = 0; i < g->n_luts; i++)
        if (g->luts[i].key == key) return g->luts[i].d_lut;
    if (g->n_luts == g->cap_luts) {
        size_t cap = g->cap_luts ? 2 * g->cap_luts : 64;
        lut_entry *l = (lut_entry *)realloc(g->luts, cap * sizeof *l);
        if (!l) return fail(err, WC_ERR_NOMEM, "out of memory"), nullptr;
        g->luts = l;
        g->cap_luts = cap;
    }
    uint32_t *d;
    cudaError_t e = cudaMalloc((void **)&d, TAB_SLOTS * sizeof(uint32_t));
    if (e == cudaSuccess) e = cudaMemcpy(d, lut, TAB_SLOTS * sizeof(uint32_t), cudaMemcpyHostToDevice);
    if (e != cudaSuccess) return cuda_fail(err, e, "decode table"), nullptr;
    g->luts[g->n_luts++] = {key, d};
    return d;
}

static uint64_t align_up(uint64_t v) { return (v + ALIGN - 1) / ALIGN * ALIGN; }

/* The jobs of a decode, built on the host. */
struct job_lists {
    std::vector<stream_job> s;
    std::vector<merge_job> m;
    std::vector<hash_job> h;
    uint32_t max_merge_n = 1;
    const uint32_t *memo_host = nullptr, *memo_dev = nullptr; /* consecutive streams share tables */
};

/* Appends the jobs of tile `tile` of c. Its payload (`payload`: a host copy, for the layout)
 * sits at pay_off from the payload base; its decoded bytes go to out_off from the output base
 * (64-byte aligned); the planes of a tile that cannot be fused go to *scratch_at from the scratch
 * base (advanced past them). `verdict` is its verdict slot; `hash` adds its checksum job. */
static wc_status tile_jobs(wcgpu *g, const wc_container *c, uint32_t tile, const uint8_t *payload,
                           uint64_t pay_off, uint64_t out_off, uint64_t *scratch_at, uint32_t verdict,
                           bool hash, wc_tile_layout *lay, job_lists &jl, wc_error *err) {
    const wc_tile_info *t = wc_container_tile(c, tile);
    if (hash) jl.h.push_back({out_off, t->src_size, t->checksum, verdict, 0});
    merge_job m = {};
    m.dst = out_off;
    if (t->mode == WC_TILE_RAW) {
        m.plane[0] = pay_off;
        m.n = t->src_size;
        m.w = 1;
        jl.m.push_back(m);
        jl.max_merge_n = std::max(jl.max_merge_n, m.n);
        return WC_OK;
    }
    wc_status st = wc_tile_layout_parse(c, tile, payload, lay, err);
    if (st != WC_OK) return st;
    unsigned w = lay->plane_count, n_coded = 0;
    for (unsigned p = 0; p < w; p++) n_coded += lay->plane_coded[p];
    wc_dtype d = (wc_dtype)lay->dtype;
    uint8_t rot = w > 1 && (d == WC_DTYPE_F16 || d == WC_DTYPE_BF16 || d == WC_DTYPE_F32 || d == WC_DTYPE_F64);
    bool fused = n_coded == 1 && (w == 1 || w == 2 || w == 4);
    uint64_t planes = *scratch_at;
    for (uint32_t s = 0; s < lay->n_streams; s++) {
        const wc_stream_ref *r = &lay->streams[s];
        const uint32_t *host_lut = wc_container_plane_lut(c, t->tensor, r->plane);
        const uint32_t *lut = host_lut == jl.memo_host ? jl.memo_dev : device_lut(g, host_lut, err);
        if (!lut) return err ? err->code : WC_ERR_IO;
        jl.memo_host = host_lut;
        jl.memo_dev = lut;
        stream_job j = {};
        j.src = pay_off + r->offset;
        j.dst = fused ? out_off + (uint64_t)r->first * w : planes + (uint64_t)r->plane * lay->n + r->first;
        j.tile_pay = pay_off;
        j.lut = lut;
        j.len = r->len;
        j.count = r->count;
        j.verdict = verdict;
        j.first = r->first;
        for (unsigned p = 0, r = 0; fused && p < w; p++)
            if (!lay->plane_coded[p]) j.raw_off[r++] = lay->raw_offset[p];
        j.w = (uint8_t)w;
        j.plane = (uint8_t)r->plane;
        j.rot = rot;
        j.fused = fused;
        jl.s.push_back(j);
    }
    if (fused) return WC_OK;
    m.n = lay->n;
    m.w = w;
    m.rot = rot;
    for (unsigned p = 0; p < w; p++) {
        m.plane[p] = lay->plane_coded[p] ? planes + (uint64_t)p * lay->n : pay_off + lay->raw_offset[p];
        m.scratch_mask |= (uint32_t)lay->plane_coded[p] << p;
    }
    if (n_coded) *scratch_at += align_up(t->src_size);
    jl.m.push_back(m);
    jl.max_merge_n = std::max(jl.max_merge_n, m.n);
    return WC_OK;
}

/* The stream jobs from `from` on, shaped for rans_kernel: a block's warps share one table, so
 * the jobs go in runs of one table, each run padded with skip jobs to whole blocks; and the blocks
 * run longest stream first, so that short streams (small tiles, a tensor's last tile) fill the
 * last wave instead of a long stream starting late and running alone. */
static void shape_streams(std::vector<stream_job> &s, size_t from) {
    std::stable_sort(s.begin() + from, s.end(), [](const stream_job &a, const stream_job &b) {
        return a.lut != b.lut ? a.lut < b.lut : a.count > b.count;
    });
    std::vector<stream_job> padded;
    padded.reserve(s.size() - from + WARPS_PER_BLOCK * 8);
    for (size_t k = from; k < s.size(); k++) {
        padded.push_back(s[k]);
        bool run_ends = k + 1 == s.size() || s[k + 1].lut != s[k].lut;
        while (run_ends && padded.size() % WARPS_PER_BLOCK) {
            stream_job pad = s[k];
            pad.skip = 1;
            pad.count = 0;
            padded.push_back(pad);
        }
    }
    std::vector<uint32_t> blocks(padded.size() / WARPS_PER_BLOCK);
    for (uint32_t b = 0; b < blocks.size(); b++) blocks[b] = b;
    std::stable_sort(blocks.begin(), blocks.end(), [&](uint32_t a, uint32_t b) {
        return padded[a * WARPS_PER_BLOCK].count > padded[b * WARPS_PER_BLOCK].count;
    });
    s.resize(from);
    for (uint32_t b : blocks) s.insert(s.end(), padded.begin() + b * WARPS_PER_BLOCK, padded.begin() + (b + 1) * WARPS_PER_BLOCK);
}

/* Host job arrays packed back to back (each 64-byte aligned) at `to`; returns the bytes. */
static uint64_t pack_jobs(const job_lists &jl, size_t n_verdicts, uint8_t *to, uint64_t at[4]) {
    uint64_t sz[4] = {jl.s.size() * sizeof(stream_job), jl.m.size() * sizeof(merge_job),
                      jl.h.size() * sizeof(hash_job), n_verdicts * sizeof(uint32_t)};
    const void *from[4] = {jl.s.data(), jl.m.data(), jl.h.data(), nullptr};
    uint64_t pos = 0;
    for (int k = 0; k < 4; k++) {
        at[k] = pos;
        if (to && from[k] && sz[k]) memcpy(to + pos, from[k], sz[k]);
        if (to && !from[k]) memset(to + pos, 0, sz[k]);
        pos += align_up(sz[k]);
    }
    return pos;
}

/* Decodes one batch (n <= MAX_BATCH_TILES) into the device stage; verdict[k] per tile.
 * *stage_at receives where tile k's decoded bytes are (device pointers). */
static wc_status decode_batch(wcgpu *g, const wc_container *c, const uint32_t *tiles, size_t n,
                              const uint8_t *const *payloads, uint8_t **stage_at,
                              uint32_t *verdict, wc_error *err) {
    wc_tile_layout *lay = (wc_tile_layout *)malloc(sizeof *lay);
    if (!lay) return fail(err, WC_ERR_NOMEM, "out of memory");
    /* jobs (reading the payloads where they are), then sizes: payloads, plane scratch, stage, jobs */
    uint64_t pay = 0, planes = 0, stage = 0;
    wc_status st = WC_OK;
    job_lists jl;
    std::vector<uint64_t> stage_off;
    try {
        stage_off.resize(n);
        for (size_t k = 0; k < n && st == WC_OK; k++) {
            const wc_tile_info *t = wc_container_tile(c, tiles[k]);
            stage_off[k] = stage;
            st = tile_jobs(g, c, tiles[k], payloads[k], pay, stage, &planes, (uint32_t)k, true, lay, jl, err);
            pay += align_up(t->coded_size);
            stage += align_up(t->src_size);
        }
    } catch (const std::bad_alloc &) {
        st = fail(err, WC_ERR_NOMEM, "out of memory");
    }
    free(lay);
    if (st == WC_OK) {
        try {
            shape_streams(jl.s, 0);
        } catch (const std::bad_alloc &) {
            st = fail(err, WC_ERR_NOMEM, "out of memory");
        }
    }
    uint64_t at[4];
    uint64_t jobs_bytes = pack_jobs(jl, n, nullptr, at);
    if (st == WC_OK) st = ensure(g, pay + jobs_bytes, pay + planes + stage + jobs_bytes, err);
    if (st != WC_OK) return st;
    uint8_t *d_pay = g->d_buf, *d_planes = d_pay + pay, *d_stage = d_planes + planes;
    uint8_t *d_jobs = d_stage + stage;
    uint64_t p_at = 0;
    for (size_t k = 0; k < n; k++) {
        const wc_tile_info *t = wc_container_tile(c, tiles[k]);
        if (payloads[k] != g->h_pin + p_at) /* the loader API reads payloads in place */
            memcpy(g->h_pin + p_at, payloads[k], t->coded_size);
        stage_at[k] = d_stage + stage_off[k];
        p_at += align_up(t->coded_size);
    }
    pack_jobs(jl, n, g->h_pin + pay, at);

    cudaError_t e;
    cudaStream_t s = g->stream;
    /* payloads, then the jobs (after the payloads in h_pin, after the stage on the device) */
    if ((e = cudaMemcpyAsync(d_pay, g->h_pin, pay, cudaMemcpyHostToDevice, s)) == cudaSuccess)
        e = cudaMemcpyAsync(d_jobs, g->h_pin + pay, jobs_bytes, cudaMemcpyHostToDevice, s);
    launch l = {(const stream_job *)(d_jobs + at[0]), (uint32_t)jl.s.size(),
                (const merge_job *)(d_jobs + at[1]), (uint32_t)jl.m.size(), jl.max_merge_n,
                (const hash_job *)(d_jobs + at[2]), (uint32_t)jl.h.size(),
                (uint64_t)d_pay, (uint64_t)d_stage, (uint64_t)d_planes, (uint32_t *)(d_jobs + at[3])};
    if (e == cudaSuccess) e = launch_kernels(l, s, g->ev);
    if (e == cudaSuccess)
        e = cudaMemcpyAsync(verdict, d_jobs + at[3], n * sizeof(uint32_t), cudaMemcpyDeviceToHost, s);
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

/* g's pinned verdict slots, grown to at least n (one per tile of a call); NULL if pinned memory
 * ran out. */
static uint32_t *verdicts_for(wcgpu *g, size_t n) {
    if (n < 1) n = 1;
    if (n > g->verdict_cap) {
        cudaFreeHost(g->h_verdict);
        g->h_verdict = NULL;
        g->verdict_cap = 0;
        if (cudaMallocHost((void **)&g->h_verdict, n * sizeof *g->h_verdict) != cudaSuccess) return NULL;
        g->verdict_cap = n;
    }
    return g->h_verdict;
}

/* Threads that pread payloads ahead of the uploads: half the CPUs, at most 8 (8 were as good as
 * 12 or 15 on the H200 machine); WCGPU_READERS overrides. */
static unsigned payload_readers(void) {
    unsigned readers = std::thread::hardware_concurrency();
    readers = readers < 2 ? 1 : readers > 16 ? 8 : readers / 2;
    if (const char *env = getenv("WCGPU_READERS")) readers = (unsigned)std::max(1, std::min(64, atoi(env)));
    return readers;
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
    uint32_t *verdict = verdicts_for(g, n);
    if (!stage_at || !verdict) {
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
                first_bad = tile_verdict_error(c, tiles[k], verdict[k], err);
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

/* Runs f with g's device current, then gives the caller's back. */
template <typename F> static wc_status on_device(wcgpu *g, wc_error *err, F f) {
    int prev = -1;
    cudaGetDevice(&prev);
    cudaError_t e = prev == g->device ? cudaSuccess : cudaSetDevice(g->device);
    if (e != cudaSuccess) return cuda_fail(err, e, "selecting the device");
    wc_status st;
    try {
        st = f();
    } catch (const std::bad_alloc &) {
        st = fail(err, WC_ERR_NOMEM, "out of memory");
    }
    if (prev >= 0 && prev != g->device) cudaSetDevice(prev);
    return st;
}

/* ---------------------------------------------------------------- the loader
 *
 * A pipeline over chunks of consecutive tiles (about LOAD_CHUNK coded bytes each), LOAD_SLOTS
 * of them in flight, each in a slot of its own (pinned host memory, device memory, a decode
 * stream): reader threads pread the payloads of the chunks ahead into their slots' pinned
 * memory; the calling thread builds each chunk's jobs and enqueues its upload on the one copy
 * stream, then its kernels on the slot's stream. So the copy engine moves one chunk after another
 * while earlier chunks decode (a chunk's kernels fill only part of the GPU; several slots'
 * kernels run at once) and later ones are read. Tiles wholly inside a range and landing 64-byte
 * aligned decode in place; the others (a range's partial first and last tiles) decode into the
 * slot's stage and are copied. Verdicts come back per chunk and are read at the end. */
#define LOAD_SLOTS 8u
#define LOAD_CHUNK (8u << 20)
#define LOAD_CHUNK_TILES 1024u

struct load_slot {
    uint8_t *h, *d, *d_scratch;          /* pinned payloads | jobs; device payloads | jobs | stage */
    size_t h_cap, d_cap, scratch_cap;
    cudaStream_t s;
    cudaEvent_t copied, decoded;         /* the slot's last upload, its last decode */
};

struct wcgpu_loader {
    cudaStream_t copy;
    load_slot slot[LOAD_SLOTS];
};

static void loader_free(wcgpu_loader *L) {
    if (!L) return;
    for (load_slot &sl : L->slot) {
        if (sl.s) cudaStreamSynchronize(sl.s);
        cudaFreeHost(sl.h);
        cudaFree(sl.d);
        cudaFree(sl.d_scratch);
        if (sl.s) cudaStreamDestroy(sl.s);
        if (sl.copied) cudaEventDestroy(sl.copied);
        if (sl.decoded) cudaEventDestroy(sl.decoded);
    }
    if (L->copy) cudaStreamDestroy(L->copy);
    free(L);
}

/* The loader's streams and events (once per handle), and every slot's room for h and d bytes. */
static wc_status loader_ready(wcgpu *g, size_t h, size_t d, wc_error *err) {
    cudaError_t e = cudaSuccess;
    if (!g->loader) {
        g->loader = (wcgpu_loader *)calloc(1, sizeof *g->loader);
        if (!g->loader) return fail(err, WC_ERR_NOMEM, "out of memory");
        wcgpu_loader *L = g->loader;
        e = cudaStreamCreateWithFlags(&L->copy, cudaStreamNonBlocking);
        for (load_slot &sl : L->slot) {
            if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&sl.s, cudaStreamNonBlocking);
            /* readers wait on `copied` before refilling a slot: block, do not spin a core they need */
            if (e == cudaSuccess) e = cudaEventCreateWithFlags(&sl.copied, cudaEventDisableTiming | cudaEventBlockingSync);
            if (e == cudaSuccess) e = cudaEventCreateWithFlags(&sl.decoded, cudaEventDisableTiming);
        }
        if (e != cudaSuccess) {
            loader_free(g->loader);
            g->loader = nullptr;
            return cuda_fail(err, e, "loader streams");
        }
    }
    for (load_slot &sl : g->loader->slot) {
        if (h > sl.h_cap) {
            cudaFreeHost(sl.h);
            sl.h = nullptr, sl.h_cap = 0;
            if ((e = cudaMallocHost((void **)&sl.h, h)) != cudaSuccess) return cuda_fail(err, e, "pinned loader buffer");
            sl.h_cap = h;
        }
        if (d > sl.d_cap) {
            cudaFree(sl.d);
            sl.d = nullptr, sl.d_cap = 0;
            if ((e = cudaMalloc((void **)&sl.d, d)) != cudaSuccess) return cuda_fail(err, e, "loader device buffer");
            sl.d_cap = d;
        }
    }
    return WC_OK;
}

struct load_tile {
    uint32_t range, tile;
    uint64_t pay_at;    /* in its slot's payloads */
    uint64_t stage_at;  /* in its slot's stage, or UINT64_MAX: decoded in place */
};

struct load_chunk {
    size_t first, n;    /* tiles */
    uint64_t pay, jobs, stage;
};

/* Reader threads' shared state: the calling thread enqueues chunks in order; a reader fills
 * chunk c's slot only after chunk c - LOAD_SLOTS, the slot's previous user, was uploaded. */
struct load_state {
    std::mutex mu;
    std::condition_variable cv;
    size_t enqueued = 0;
    std::vector<uint32_t> left; /* per chunk: tiles not read yet */
    std::vector<uint32_t> chunk_of;
    std::atomic<size_t> next{0};
    bool stop = false;
    size_t bad = SIZE_MAX;      /* the lowest tile whose read failed */
    wc_status bad_st = WC_OK;
    wc_error bad_err = {};
};

static wc_status load_ranges(wcgpu *g, const wcgpu_range *r, size_t nr, size_t *bad_range, wc_error *err) {
    /* the tiles, cut into chunks; where each payload and staged tile goes in its slot */
    std::vector<load_tile> tiles;
    std::vector<load_chunk> chunks;
    uint64_t max_pay = 0, max_jobs = 0, max_stage = 0;
    for (size_t i = 0; i < nr; i++) {
        const wc_container *c = r[i].c;
        if (!r[i].len) continue;
        uint32_t first = wc_container_find_tile(c, r[i].offset), last = wc_container_find_tile(c, r[i].offset + r[i].len - 1);
        for (uint32_t k = first; k <= last; k++) {
            const wc_tile_info *t = wc_container_tile(c, k);
            uint64_t pay = align_up(t->coded_size);
            if (chunks.empty() || chunks.back().n == LOAD_CHUNK_TILES ||
                (chunks.back().pay + pay > LOAD_CHUNK && chunks.back().n))
                chunks.push_back({tiles.size(), 0, 0, 256, 0});
            load_chunk &ch = chunks.back();
            bool whole = t->src_offset >= r[i].offset && t->src_offset + t->src_size <= r[i].offset + r[i].len;
            uintptr_t dst = (uintptr_t)r[i].d_dst + (uintptr_t)(t->src_offset - (whole ? r[i].offset : t->src_offset));
            bool in_place = whole && dst % ALIGN == 0;
            tiles.push_back({(uint32_t)i, k, ch.pay, in_place ? UINT64_MAX : ch.stage});
            ch.n++;
            ch.pay += pay;
            if (!in_place) ch.stage += align_up(t->src_size);
            /* jobs: every stream of every plane, padded to whole blocks at worst, and the rest */
            ch.jobs += align_up(WARPS_PER_BLOCK * (t->src_size / 65536 + WC_MAX_PLANES + 1) * sizeof(stream_job)) +
                       sizeof(merge_job) + sizeof(hash_job) + 4 + 3 * ALIGN;
            max_pay = std::max(max_pay, ch.pay);
            max_jobs = std::max(max_jobs, ch.jobs);
            max_stage = std::max(max_stage, ch.stage);
        }
    }
    if (tiles.empty()) return WC_OK;
    size_t n = tiles.size();
    if (!verdicts_for(g, n)) return fail(err, WC_ERR_NOMEM, "out of pinned memory for verdicts");
    wc_status st = loader_ready(g, max_pay + max_jobs, align_up(max_pay + max_jobs) + max_stage, err);
    if (st != WC_OK) return st;
    wcgpu_loader *L = g->loader;

    load_state ls;
    ls.left.resize(chunks.size());
    ls.chunk_of.resize(n);
    for (size_t c = 0; c < chunks.size(); c++) {
        ls.left[c] = (uint32_t)chunks[c].n;
        for (size_t k = chunks[c].first; k < chunks[c].first + chunks[c].n; k++) ls.chunk_of[k] = (uint32_t)c;
    }
    auto reader = [&] {
        cudaSetDevice(g->device);
        size_t synced = 0; /* chunks below this one: their slot's previous upload waited for */
        for (;;) {
            size_t k = ls.next.fetch_add(1);
            if (k >= n) break;
            size_t c = ls.chunk_of[k];
            if (c >= LOAD_SLOTS && c >= synced) {
                std::unique_lock<std::mutex> lk(ls.mu);
                ls.cv.wait(lk, [&] { return ls.stop || ls.enqueued > c - LOAD_SLOTS; });
                if (ls.stop) break;
                lk.unlock();
                cudaEventSynchronize(L->slot[c % LOAD_SLOTS].copied);
                synced = c + 1;
            }
            const load_tile &t = tiles[k];
            wc_error e = {};
            wc_status rs = wc_container_read_tile(r[t.range].c, t.tile, L->slot[c % LOAD_SLOTS].h + t.pay_at, &e);
            std::lock_guard<std::mutex> lk(ls.mu);
            if (rs != WC_OK && k < ls.bad) ls.bad = k, ls.bad_st = rs, ls.bad_err = e, ls.stop = true;
            if (--ls.left[c] == 0 || ls.stop) ls.cv.notify_all();
            if (ls.stop) break;
        }
    };
    unsigned readers = payload_readers();
    std::vector<std::thread> pool;
    for (unsigned w = 0; w < readers; w++) {
        try {
            pool.emplace_back(reader);
        } catch (...) {
            if (pool.empty()) return fail(err, WC_ERR_NOMEM, "cannot start a reader thread");
            break;
        }
    }
    wc_tile_layout *lay = (wc_tile_layout *)malloc(sizeof *lay);
    if (!lay) st = fail(err, WC_ERR_NOMEM, "out of memory");
    cudaError_t e = cudaSuccess;
    for (size_t c = 0; c < chunks.size() && st == WC_OK; c++) {
        const load_chunk &ch = chunks[c];
        load_slot &sl = L->slot[c % LOAD_SLOTS];
        {
            std::unique_lock<std::mutex> lk(ls.mu);
            ls.cv.wait(lk, [&] { return ls.stop || ls.left[c] == 0; });
            if (ls.stop) break;
        }
        /* jobs: payloads from the slot's device payloads, output at absolute addresses */
        job_lists jl;
        uint64_t scratch = 0;
        uint8_t *d_stage = sl.d + align_up(ch.pay + ch.jobs); /* tiles decode 64-byte aligned */
        try {
            for (size_t k = ch.first; k < ch.first + ch.n && st == WC_OK; k++) {
                const load_tile &t = tiles[k];
                const wc_container *cc = r[t.range].c;
                const wc_tile_info *ti = wc_container_tile(cc, t.tile);
                uint64_t out = t.stage_at == UINT64_MAX ? (uint64_t)r[t.range].d_dst + (ti->src_offset - r[t.range].offset)
                                                        : (uint64_t)d_stage + t.stage_at;
                st = tile_jobs(g, cc, t.tile, sl.h + t.pay_at, t.pay_at, out, &scratch, (uint32_t)(k - ch.first),
                               true, lay, jl, err);
                if (st != WC_OK && bad_range) *bad_range = t.range;
            }
            if (st == WC_OK) shape_streams(jl.s, 0);
        } catch (const std::bad_alloc &) {
            st = fail(err, WC_ERR_NOMEM, "out of memory");
        }
        if (st != WC_OK) break;
        uint64_t at[4];
        uint64_t jobs_bytes = pack_jobs(jl, ch.n, sl.h + ch.pay, at);
        if (scratch > sl.scratch_cap) { /* tiles with several coded planes: none in BF16 */
            cudaStreamSynchronize(sl.s);
            cudaFree(sl.d_scratch);
            sl.d_scratch = nullptr, sl.scratch_cap = 0;
            if ((e = cudaMalloc((void **)&sl.d_scratch, scratch + scratch / 4)) != cudaSuccess) break;
            sl.scratch_cap = scratch + scratch / 4;
        }
        /* up on the copy stream once the slot's last decode is done, then decoded on the slot's */
        uint8_t *d_jobs = sl.d + ch.pay;
        if ((e = cudaStreamWaitEvent(L->copy, sl.decoded, 0)) != cudaSuccess ||
            (e = cudaMemcpyAsync(sl.d, sl.h, ch.pay + jobs_bytes, cudaMemcpyHostToDevice, L->copy)) != cudaSuccess ||
            (e = cudaEventRecord(sl.copied, L->copy)) != cudaSuccess || (e = cudaStreamWaitEvent(sl.s, sl.copied, 0)) != cudaSuccess)
            break;
        {
            std::lock_guard<std::mutex> lk(ls.mu);
            ls.enqueued = c + 1;
        }
        ls.cv.notify_all();
        launch l = {(const stream_job *)(d_jobs + at[0]), (uint32_t)jl.s.size(),
                    (const merge_job *)(d_jobs + at[1]), (uint32_t)jl.m.size(), jl.max_merge_n,
                    (const hash_job *)(d_jobs + at[2]), (uint32_t)jl.h.size(),
                    (uint64_t)sl.d, 0, (uint64_t)sl.d_scratch, (uint32_t *)(d_jobs + at[3])};
        if ((e = launch_kernels(l, sl.s, nullptr)) != cudaSuccess) break;
        for (size_t k = ch.first; k < ch.first + ch.n && e == cudaSuccess; k++) {
            const load_tile &t = tiles[k];
            if (t.stage_at == UINT64_MAX) continue;
            const wcgpu_range &rg = r[t.range];
            const wc_tile_info *ti = wc_container_tile(rg.c, t.tile);
            uint64_t from = rg.offset > ti->src_offset ? rg.offset - ti->src_offset : 0;
            uint64_t to = std::min<uint64_t>(rg.offset + rg.len - ti->src_offset, ti->src_size);
            e = cudaMemcpyAsync((uint8_t *)rg.d_dst + (ti->src_offset + from - rg.offset), d_stage + t.stage_at + from,
                                to - from, cudaMemcpyDeviceToDevice, sl.s);
        }
        if (e == cudaSuccess)
            e = cudaMemcpyAsync(g->h_verdict + ch.first, d_jobs + at[3], ch.n * sizeof(uint32_t), cudaMemcpyDeviceToHost, sl.s);
        if (e == cudaSuccess) e = cudaEventRecord(sl.decoded, sl.s);
        if (e != cudaSuccess) break;
    }
    free(lay);
    {
        std::lock_guard<std::mutex> lk(ls.mu);
        ls.stop = true;
    }
    ls.cv.notify_all();
    for (auto &t : pool) t.join();
    for (load_slot &sl : L->slot) {
        cudaError_t se = cudaStreamSynchronize(sl.s);
        if (e == cudaSuccess) e = se;
    }
    if (e == cudaSuccess) e = cudaStreamSynchronize(L->copy);
    if (st == WC_OK && e != cudaSuccess) st = cuda_fail(err, e, "loading");
    if (st == WC_OK && ls.bad != SIZE_MAX) {
        st = ls.bad_st;
        if (err) *err = ls.bad_err;
        if (bad_range) *bad_range = tiles[ls.bad].range;
    }
    for (size_t k = 0; k < n && st == WC_OK; k++)
        if (g->h_verdict[k] != TILE_OK) {
            if (bad_range) *bad_range = tiles[k].range;
            st = tile_verdict_error(r[tiles[k].range].c, tiles[k].tile, g->h_verdict[k], err);
        }
    return st;
}

extern "C" wc_status wcgpu_read_ranges(wcgpu *g, const wcgpu_range *ranges, size_t n, size_t *bad_range,
                                       wc_error *err) {
    for (size_t i = 0; i < n; i++) {
        uint64_t size = wc_container_source_size(ranges[i].c);
        if (ranges[i].offset > size || ranges[i].len > size - ranges[i].offset) {
            if (bad_range) *bad_range = i;
            return wc_error_set(err, WC_ERR_ARG, "range %zu: bytes %llu..%llu are beyond the source (%llu bytes)", i,
                                (unsigned long long)ranges[i].offset,
                                (unsigned long long)(ranges[i].offset + ranges[i].len), (unsigned long long)size);
        }
    }
    return on_device(g, err, [&] { return load_ranges(g, ranges, n, bad_range, err); });
}

extern "C" wc_status wcgpu_read_range(wcgpu *g, const wc_container *c, uint64_t offset, size_t len,
                                      void *d_dst, wc_error *err) {
    if (offset > wc_container_source_size(c) || len > wc_container_source_size(c) - offset)
        return fail(err, WC_ERR_ARG, "range beyond the source");
    wcgpu_range r = {c, offset, len, d_dst};
    return wcgpu_read_ranges(g, &r, 1, nullptr, err);
}

/* ---------------------------------------------------------------- resident sets */

struct set_range {
    const wc_container *c;
    uint32_t group, index, first_tile, n_tiles;
    uint64_t offset, len, out_offset;
};

struct set_tile { /* what an error message needs, kept past the containers' closing */
    uint64_t src_offset;
    uint32_t src_size, tile, range;
};

struct set_group {
    uint64_t pay_lo = 0, pay_hi = 0, out_bytes = 0, scratch_bytes = 0;
    size_t s0 = 0, ns = 0, m0 = 0, nm = 0, h0 = 0, nh = 0;
    uint32_t v0 = 0, nv = 0, max_merge_n = 1;
};

struct wcgpu_set {
    wcgpu *g = nullptr;
    int keep = WCGPU_KEEP_DEVICE;
    bool finished = false;
    std::vector<set_range> ranges;
    std::vector<set_group> groups;
    std::vector<set_tile> tiles; /* by verdict slot */
    uint64_t pay_bytes = 0, device_bytes = 0;
    uint8_t *pay = nullptr;                 /* the caller's */
    uint8_t *d_jobs = nullptr;              /* stream | merge | hash jobs | verdicts */
    uint64_t at[4] = {0, 0, 0, 0};
    uint32_t *h_verdict = nullptr;          /* pinned */
    uint8_t *d_scratch = nullptr, *d_stage = nullptr;
};

extern "C" wc_status wcgpu_set_create(wcgpu *g, int keep, wcgpu_set **out, wc_error *err) {
    if (!g || !out || (keep != WCGPU_KEEP_DEVICE && keep != WCGPU_KEEP_HOST))
        return fail(err, WC_ERR_ARG, "wcgpu_set_create: bad argument");
    wcgpu_set *s = new (std::nothrow) wcgpu_set;
    if (!s) return fail(err, WC_ERR_NOMEM, "out of memory");
    s->g = g;
    s->keep = keep;
    *out = s;
    return WC_OK;
}

extern "C" void wcgpu_set_close(wcgpu_set *s) {
    if (!s) return;
    on_device(s->g, nullptr, [&] {
        cudaFree(s->d_jobs);
        cudaFree(s->d_scratch);
        cudaFree(s->d_stage);
        cudaFreeHost(s->h_verdict);
        return WC_OK;
    });
    delete s;
}

extern "C" wc_status wcgpu_set_add(wcgpu_set *s, uint32_t group, const wc_container *c, uint64_t offset,
                                   uint64_t len, uint64_t out_offset, wc_error *err) {
    if (s->finished) return fail(err, WC_ERR_ARG, "wcgpu_set_add: the set is finished");
    if (out_offset % ALIGN) return fail(err, WC_ERR_ARG, "wcgpu_set_add: out_offset must be a multiple of 64");
    if (group > (1u << 24)) return fail(err, WC_ERR_ARG, "wcgpu_set_add: group number too large");
    uint64_t size = wc_container_source_size(c);
    if (offset > size || len > size - offset) return fail(err, WC_ERR_ARG, "wcgpu_set_add: range beyond the source");
    set_range r = {c, group, (uint32_t)s->ranges.size(), 0, 0, offset, len, out_offset};
    if (len) {
        r.first_tile = wc_container_find_tile(c, offset);
        uint32_t last = wc_container_find_tile(c, offset + len - 1);
        const wc_tile_info *a = wc_container_tile(c, r.first_tile), *b = wc_container_tile(c, last);
        if (a->src_offset != offset || b->src_offset + b->src_size != offset + len)
            return wc_error_set(err, WC_ERR_ARG, "wcgpu_set_add: bytes %llu..%llu are not whole tiles "
                                "(a tensor's range is)", (unsigned long long)offset, (unsigned long long)(offset + len));
        r.n_tiles = last - r.first_tile + 1;
        /* the kernels store whole elements and hash 8-byte words: every tile lands 64-byte aligned */
        for (uint32_t k = 0; k < r.n_tiles; k++) {
            const wc_tile_info *t = wc_container_tile(c, r.first_tile + k);
            if ((out_offset + (t->src_offset - offset)) % ALIGN)
                return wc_error_set(err, WC_ERR_ARG, "wcgpu_set_add: tile %u would land at an offset that is not a "
                                    "multiple of 64 (add each tensor as a range of its own)", r.first_tile + k);
        }
    }
    try {
        s->ranges.push_back(r);
        if (group >= s->groups.size()) s->groups.resize(group + 1);
    } catch (const std::bad_alloc &) {
        return fail(err, WC_ERR_NOMEM, "out of memory");
    }
    set_group &gr = s->groups[group];
    gr.out_bytes = std::max(gr.out_bytes, out_offset + len);
    for (uint32_t k = 0; k < r.n_tiles; k++) s->pay_bytes += align_up(wc_container_tile(c, r.first_tile + k)->coded_size);
    return WC_OK;
}

extern "C" uint64_t wcgpu_set_payload_bytes(const wcgpu_set *s) { return s->pay_bytes; }

extern "C" uint64_t wcgpu_set_group_bytes(const wcgpu_set *s, uint32_t group) {
    return group < s->groups.size() ? s->groups[group].out_bytes : 0;
}

extern "C" uint64_t wcgpu_set_device_bytes(const wcgpu_set *s) { return s->device_bytes; }

static wc_status set_enqueue(wcgpu_set *s, uint32_t group, void *d_out, cudaStream_t stream, bool verify,
                             wc_error *err) {
    const set_group &gr = s->groups[group];
    if (!gr.nv) return WC_OK;
    uint64_t pay = (uint64_t)s->pay;
    cudaError_t e = cudaSuccess;
    if (s->keep == WCGPU_KEEP_HOST) { /* this group's payloads up first: one copy */
        e = cudaMemcpyAsync(s->d_stage, s->pay + gr.pay_lo, gr.pay_hi - gr.pay_lo, cudaMemcpyHostToDevice, stream);
        pay = (uint64_t)s->d_stage - gr.pay_lo;
    }
    uint32_t *verdict = (uint32_t *)(s->d_jobs + s->at[3]);
    if (e == cudaSuccess && verify) e = cudaMemsetAsync(verdict + gr.v0, 0, gr.nv * sizeof(uint32_t), stream);
    launch l = {(const stream_job *)(s->d_jobs + s->at[0]) + gr.s0, (uint32_t)gr.ns,
                (const merge_job *)(s->d_jobs + s->at[1]) + gr.m0, (uint32_t)gr.nm, gr.max_merge_n,
                (const hash_job *)(s->d_jobs + s->at[2]) + gr.h0, verify ? (uint32_t)gr.nh : 0,
                pay, (uint64_t)d_out, (uint64_t)s->d_scratch, verdict};
    if (e == cudaSuccess) e = launch_kernels(l, stream, nullptr);
    return e == cudaSuccess ? WC_OK : cuda_fail(err, e, "decoding");
}

static wc_status set_verdicts(wcgpu_set *s, uint32_t group, cudaStream_t stream, uint32_t *bad_range,
                              wc_error *err) {
    const set_group &gr = s->groups[group];
    if (!gr.nv) return WC_OK;
    uint32_t *verdict = (uint32_t *)(s->d_jobs + s->at[3]);
    cudaError_t e = cudaMemcpyAsync(s->h_verdict + gr.v0, verdict + gr.v0, gr.nv * sizeof(uint32_t),
                                    cudaMemcpyDeviceToHost, stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(stream);
    if (e != cudaSuccess) return cuda_fail(err, e, "decoding");
    for (uint32_t v = gr.v0; v < gr.v0 + gr.nv; v++) {
        if (s->h_verdict[v] == TILE_OK) continue;
        const set_tile &t = s->tiles[v];
        wc_status st = s->h_verdict[v] & TILE_BAD_STREAM ? WC_ERR_FORMAT : WC_ERR_CHECKSUM;
        if (bad_range) *bad_range = t.range;
        return wc_error_set(err, st, "GPU: tile %u (source bytes %llu..%llu): %s", t.tile,
                            (unsigned long long)t.src_offset, (unsigned long long)(t.src_offset + t.src_size),
                            st == WC_ERR_FORMAT ? "corrupt payload" : "checksum mismatch");
    }
    return WC_OK;
}

/* finish: payloads to their home, jobs built and uploaded, every tile decoded once and checked. */
static wc_status set_finish(wcgpu_set *s, void *payloads, void *d_check, uint64_t check_size,
                            uint32_t *bad_range, wc_error *err) {
    wcgpu *g = s->g;
    s->pay = (uint8_t *)payloads;
    std::vector<uint32_t> order(s->ranges.size());
    for (size_t k = 0; k < order.size(); k++) order[k] = (uint32_t)k;
    std::stable_sort(order.begin(), order.end(),
                     [&](uint32_t a, uint32_t b) { return s->ranges[a].group < s->ranges[b].group; });
    /* lay out: payloads group after group, so that a group's payloads are one span */
    uint64_t max_span = 0, pay_at = 0;
    for (size_t k = 0; k < order.size();) {
        uint32_t grp = s->ranges[order[k]].group;
        set_group &gr = s->groups[grp];
        gr.pay_lo = pay_at;
        for (; k < order.size() && s->ranges[order[k]].group == grp; k++) {
            const set_range &r = s->ranges[order[k]];
            for (uint32_t t = 0; t < r.n_tiles; t++)
                pay_at += align_up(wc_container_tile(r.c, r.first_tile + t)->coded_size);
        }
        gr.pay_hi = pay_at;
        max_span = std::max(max_span, gr.pay_hi - gr.pay_lo);
    }
    uint8_t *host = nullptr; /* where payloads are read: the caller's host memory, or a staging copy */
    cudaError_t e = cudaSuccess;
    if (s->keep == WCGPU_KEEP_DEVICE && max_span && (e = cudaMallocHost((void **)&host, max_span)) != cudaSuccess)
        return cuda_fail(err, e, "pinned staging buffer");
    wc_tile_layout *lay = (wc_tile_layout *)malloc(sizeof *lay);
    job_lists jl;
    wc_status st = lay ? WC_OK : fail(err, WC_ERR_NOMEM, "out of memory");
    unsigned readers = payload_readers();
    std::vector<uint32_t> tiles;
    std::vector<const uint8_t *> ptrs;
    for (size_t k = 0; k < order.size() && st == WC_OK;) {
        uint32_t grp = s->ranges[order[k]].group;
        set_group &gr = s->groups[grp];
        uint8_t *buf = s->keep == WCGPU_KEEP_DEVICE ? host : s->pay + gr.pay_lo;
        gr.s0 = jl.s.size(), gr.m0 = jl.m.size(), gr.h0 = jl.h.size();
        gr.v0 = (uint32_t)s->tiles.size();
        uint64_t at = gr.pay_lo;
        for (; k < order.size() && s->ranges[order[k]].group == grp && st == WC_OK; k++) {
            const set_range &r = s->ranges[order[k]];
            tiles.resize(r.n_tiles);
            ptrs.resize(r.n_tiles);
            for (uint32_t t = 0; t < r.n_tiles; t++) tiles[t] = r.first_tile + t;
            st = read_payloads(r.c, tiles.data(), 0, r.n_tiles, buf + (at - gr.pay_lo), ptrs.data(), readers, err);
            for (uint32_t t = 0; t < r.n_tiles && st == WC_OK; t++) {
                const wc_tile_info *ti = wc_container_tile(r.c, tiles[t]);
                uint32_t v = (uint32_t)s->tiles.size();
                s->tiles.push_back({ti->src_offset, ti->src_size, tiles[t], r.index});
                st = tile_jobs(g, r.c, tiles[t], ptrs[t], at, r.out_offset + (ti->src_offset - r.offset),
                               &gr.scratch_bytes, v, true, lay, jl, err);
                if (st != WC_OK && bad_range) *bad_range = r.index;
                at += align_up(ti->coded_size);
            }
        }
        shape_streams(jl.s, gr.s0); /* set_finish runs inside on_device, which catches bad_alloc */
        gr.ns = jl.s.size() - gr.s0, gr.nm = jl.m.size() - gr.m0, gr.nh = jl.h.size() - gr.h0;
        gr.nv = (uint32_t)s->tiles.size() - gr.v0;
        gr.max_merge_n = jl.max_merge_n;
        jl.max_merge_n = 1;
        if (st == WC_OK && s->keep == WCGPU_KEEP_DEVICE && gr.pay_hi > gr.pay_lo &&
            (e = cudaMemcpy(s->pay + gr.pay_lo, host, gr.pay_hi - gr.pay_lo, cudaMemcpyHostToDevice)) != cudaSuccess)
            st = cuda_fail(err, e, "uploading payloads");
    }
    free(lay);
    cudaFreeHost(host);
    if (st != WC_OK) return st;
    /* jobs and verdicts to the device; the plane scratch and (keep host) the staging area */
    uint64_t scratch = 0, jobs_bytes = pack_jobs(jl, s->tiles.size(), nullptr, s->at);
    for (const set_group &gr : s->groups) scratch = std::max(scratch, gr.scratch_bytes);
    std::vector<uint8_t> packed(jobs_bytes);
    pack_jobs(jl, s->tiles.size(), packed.data(), s->at);
    if ((e = cudaMalloc((void **)&s->d_jobs, jobs_bytes ? jobs_bytes : 64)) != cudaSuccess ||
        (e = cudaMemcpy(s->d_jobs, packed.data(), jobs_bytes, cudaMemcpyHostToDevice)) != cudaSuccess)
        return cuda_fail(err, e, "job tables");
    if ((e = cudaMallocHost((void **)&s->h_verdict, (s->tiles.size() + 1) * sizeof(uint32_t))) != cudaSuccess)
        return cuda_fail(err, e, "pinned verdicts");
    if (scratch && (e = cudaMalloc((void **)&s->d_scratch, scratch)) != cudaSuccess)
        return cuda_fail(err, e, "plane scratch");
    if (s->keep == WCGPU_KEEP_HOST && max_span && (e = cudaMalloc((void **)&s->d_stage, max_span)) != cudaSuccess)
        return cuda_fail(err, e, "device staging buffer");
    s->device_bytes = jobs_bytes + scratch + (s->keep == WCGPU_KEEP_HOST ? max_span : 0);
    /* every tile once, with its checksum: the payloads are trusted from here on */
    for (uint32_t grp = 0; grp < s->groups.size() && st == WC_OK; grp++) {
        if (s->groups[grp].out_bytes > check_size)
            return wc_error_set(err, WC_ERR_ARG, "wcgpu_set_finish: group %u needs %llu bytes to be checked in, "
                                "d_check has %llu", grp, (unsigned long long)s->groups[grp].out_bytes,
                                (unsigned long long)check_size);
        st = set_enqueue(s, grp, d_check, g->stream, true, err);
        if (st == WC_OK) st = set_verdicts(s, grp, g->stream, bad_range, err);
    }
    return st;
}

extern "C" wc_status wcgpu_set_finish(wcgpu_set *s, void *payloads, void *d_check, uint64_t check_size,
                                      uint32_t *bad_range, wc_error *err) {
    if (s->finished || !s->tiles.empty()) return fail(err, WC_ERR_ARG, "wcgpu_set_finish: called twice");
    if (!payloads && s->pay_bytes) return fail(err, WC_ERR_ARG, "wcgpu_set_finish: no payload memory");
    wc_status st = on_device(s->g, err, [&] { return set_finish(s, payloads, d_check, check_size, bad_range, err); });
    s->finished = st == WC_OK;
    return st;
}

extern "C" wc_status wcgpu_set_decode(wcgpu_set *s, uint32_t group, void *d_out, void *stream, int verify,
                                      wc_error *err) {
    if (!s->finished) return fail(err, WC_ERR_ARG, "wcgpu_set_decode: the set is not finished");
    if (group >= s->groups.size()) return fail(err, WC_ERR_ARG, "wcgpu_set_decode: no such group");
    return on_device(s->g, err, [&] { return set_enqueue(s, group, d_out, (cudaStream_t)stream, verify != 0, err); });
}

extern "C" wc_status wcgpu_set_check(wcgpu_set *s, uint32_t group, void *stream, uint32_t *bad_range,
                                     wc_error *err) {
    if (!s->finished) return fail(err, WC_ERR_ARG, "wcgpu_set_check: the set is not finished");
    if (group >= s->groups.size()) return fail(err, WC_ERR_ARG, "wcgpu_set_check: no such group");
    return on_device(s->g, err, [&] { return set_verdicts(s, group, (cudaStream_t)stream, bad_range, err); });
}
