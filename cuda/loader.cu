/* loader.cu - the loader: byte ranges of containers read, decoded and placed in device memory
 * (wcgpu_read_ranges, wcgpu_read_range) by a pipeline of reader threads, uploads and decodes. */
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "wcgpu_internal.cuh"

/* Threads that pread payloads ahead of the uploads: half the CPUs, at most 8 (8 were as good as
 * 12 or 15 on the H200 machine); WCGPU_READERS overrides. */
unsigned payload_readers(void) {
    unsigned readers = std::thread::hardware_concurrency();
    readers = readers < 2 ? 1 : readers > 16 ? 8 : readers / 2;
    if (const char *env = getenv("WCGPU_READERS")) readers = (unsigned)std::max(1, std::min(64, atoi(env)));
    return readers;
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

void loader_free(wcgpu_loader *L) {
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
        if (!g->loader) return wcgpu_fail(err, WC_ERR_NOMEM, "out of memory");
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
            return wcgpu_cuda_fail(err, e, "loader streams");
        }
    }
    for (load_slot &sl : g->loader->slot) {
        if (h > sl.h_cap) {
            cudaFreeHost(sl.h);
            sl.h = nullptr, sl.h_cap = 0;
            if ((e = cudaMallocHost((void **)&sl.h, h)) != cudaSuccess) return wcgpu_cuda_fail(err, e, "pinned loader buffer");
            sl.h_cap = h;
        }
        if (d > sl.d_cap) {
            cudaFree(sl.d);
            sl.d = nullptr, sl.d_cap = 0;
            if ((e = cudaMalloc((void **)&sl.d, d)) != cudaSuccess) return wcgpu_cuda_fail(err, e, "loader device buffer");
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
            uint64_t pay = wcgpu_align_up(t->coded_size);
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
            if (!in_place) ch.stage += wcgpu_align_up(t->src_size);
            /* jobs: every stream of every plane, padded to whole blocks at worst, and the rest */
            ch.jobs += wcgpu_align_up(WARPS_PER_BLOCK * (t->src_size / 65536 + WC_MAX_PLANES + 1) * sizeof(stream_job)) +
                       sizeof(merge_job) + sizeof(hash_job) + 4 + 3 * ALIGN;
            max_pay = std::max(max_pay, ch.pay);
            max_jobs = std::max(max_jobs, ch.jobs);
            max_stage = std::max(max_stage, ch.stage);
        }
    }
    if (tiles.empty()) return WC_OK;
    size_t n = tiles.size();
    if (!verdicts_for(g, n)) return wcgpu_fail(err, WC_ERR_NOMEM, "out of pinned memory for verdicts");
    wc_status st = loader_ready(g, max_pay + max_jobs, wcgpu_align_up(max_pay + max_jobs) + max_stage, err);
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
            if (pool.empty()) return wcgpu_fail(err, WC_ERR_NOMEM, "cannot start a reader thread");
            break;
        }
    }
    wc_tile_layout *lay = (wc_tile_layout *)malloc(sizeof *lay);
    if (!lay) st = wcgpu_fail(err, WC_ERR_NOMEM, "out of memory");
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
        uint8_t *d_stage = sl.d + wcgpu_align_up(ch.pay + ch.jobs); /* tiles decode 64-byte aligned */
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
            st = wcgpu_fail(err, WC_ERR_NOMEM, "out of memory");
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
        if ((e = wcgpu_launch_kernels(l, sl.s, nullptr)) != cudaSuccess) break;
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
    if (st == WC_OK && e != cudaSuccess) st = wcgpu_cuda_fail(err, e, "loading");
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
    return wcgpu_on_device(g, err, [&] { return load_ranges(g, ranges, n, bad_range, err); });
}

extern "C" wc_status wcgpu_read_range(wcgpu *g, const wc_container *c, uint64_t offset, size_t len,
                                      void *d_dst, wc_error *err) {
    if (offset > wc_container_source_size(c) || len > wc_container_source_size(c) - offset)
        return wcgpu_fail(err, WC_ERR_ARG, "range beyond the source");
    wcgpu_range r = {c, offset, len, d_dst};
    return wcgpu_read_ranges(g, &r, 1, nullptr, err);
}
