/* decode_kernels.cu - the GPU tile decoder's kernels (see wcgpu.h). Up to three per decode:
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
 * resident set keeps its jobs on the device and decodes into whatever output the caller gives. */
#include "wcgpu_internal.cuh"
#include "xxh3.cuh"

#define RANS_L (1u << 16)
#define PROB_BITS 12u
#define STATE_BYTES 128u

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
cudaError_t wcgpu_launch_kernels(const launch &l, cudaStream_t s, const cudaEvent_t *ev) {
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

