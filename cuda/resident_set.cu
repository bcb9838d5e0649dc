/* resident_set.cu - resident sets (wcgpu_set_*): payloads kept in device (or pinned host)
 * memory, checked once, their jobs on the device, decoded on the caller's stream into the
 * caller's output, group by group. */
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "wcgpu_internal.cuh"

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
        p_at += wcgpu_align_up(wc_container_tile(c, tiles[at + k])->coded_size);
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
        return wcgpu_fail(err, WC_ERR_ARG, "wcgpu_set_create: bad argument");
    wcgpu_set *s = new (std::nothrow) wcgpu_set;
    if (!s) return wcgpu_fail(err, WC_ERR_NOMEM, "out of memory");
    s->g = g;
    s->keep = keep;
    *out = s;
    return WC_OK;
}

extern "C" void wcgpu_set_close(wcgpu_set *s) {
    if (!s) return;
    wcgpu_on_device(s->g, nullptr, [&] {
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
    if (s->finished) return wcgpu_fail(err, WC_ERR_ARG, "wcgpu_set_add: the set is finished");
    if (out_offset % ALIGN) return wcgpu_fail(err, WC_ERR_ARG, "wcgpu_set_add: out_offset must be a multiple of 64");
    if (group > (1u << 24)) return wcgpu_fail(err, WC_ERR_ARG, "wcgpu_set_add: group number too large");
    uint64_t size = wc_container_source_size(c);
    if (offset > size || len > size - offset) return wcgpu_fail(err, WC_ERR_ARG, "wcgpu_set_add: range beyond the source");
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
        return wcgpu_fail(err, WC_ERR_NOMEM, "out of memory");
    }
    set_group &gr = s->groups[group];
    gr.out_bytes = std::max(gr.out_bytes, out_offset + len);
    for (uint32_t k = 0; k < r.n_tiles; k++) s->pay_bytes += wcgpu_align_up(wc_container_tile(c, r.first_tile + k)->coded_size);
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
    if (e == cudaSuccess) e = wcgpu_launch_kernels(l, stream, nullptr);
    return e == cudaSuccess ? WC_OK : wcgpu_cuda_fail(err, e, "decoding");
}

static wc_status set_verdicts(wcgpu_set *s, uint32_t group, cudaStream_t stream, uint32_t *bad_range,
                              wc_error *err) {
    const set_group &gr = s->groups[group];
    if (!gr.nv) return WC_OK;
    uint32_t *verdict = (uint32_t *)(s->d_jobs + s->at[3]);
    cudaError_t e = cudaMemcpyAsync(s->h_verdict + gr.v0, verdict + gr.v0, gr.nv * sizeof(uint32_t),
                                    cudaMemcpyDeviceToHost, stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(stream);
    if (e != cudaSuccess) return wcgpu_cuda_fail(err, e, "decoding");
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
                pay_at += wcgpu_align_up(wc_container_tile(r.c, r.first_tile + t)->coded_size);
        }
        gr.pay_hi = pay_at;
        max_span = std::max(max_span, gr.pay_hi - gr.pay_lo);
    }
    uint8_t *host = nullptr; /* where payloads are read: the caller's host memory, or a staging copy */
    cudaError_t e = cudaSuccess;
    if (s->keep == WCGPU_KEEP_DEVICE && max_span && (e = cudaMallocHost((void **)&host, max_span)) != cudaSuccess)
        return wcgpu_cuda_fail(err, e, "pinned staging buffer");
    wc_tile_layout *lay = (wc_tile_layout *)malloc(sizeof *lay);
    job_lists jl;
    wc_status st = lay ? WC_OK : wcgpu_fail(err, WC_ERR_NOMEM, "out of memory");
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
                at += wcgpu_align_up(ti->coded_size);
            }
        }
        shape_streams(jl.s, gr.s0); /* set_finish runs inside wcgpu_on_device, which catches bad_alloc */
        gr.ns = jl.s.size() - gr.s0, gr.nm = jl.m.size() - gr.m0, gr.nh = jl.h.size() - gr.h0;
        gr.nv = (uint32_t)s->tiles.size() - gr.v0;
        gr.max_merge_n = jl.max_merge_n;
        jl.max_merge_n = 1;
        if (st == WC_OK && s->keep == WCGPU_KEEP_DEVICE && gr.pay_hi > gr.pay_lo &&
            (e = cudaMemcpy(s->pay + gr.pay_lo, host, gr.pay_hi - gr.pay_lo, cudaMemcpyHostToDevice)) != cudaSuccess)
            st = wcgpu_cuda_fail(err, e, "uploading payloads");
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
        return wcgpu_cuda_fail(err, e, "job tables");
    if ((e = cudaMallocHost((void **)&s->h_verdict, (s->tiles.size() + 1) * sizeof(uint32_t))) != cudaSuccess)
        return wcgpu_cuda_fail(err, e, "pinned verdicts");
    if (scratch && (e = cudaMalloc((void **)&s->d_scratch, scratch)) != cudaSuccess)
        return wcgpu_cuda_fail(err, e, "plane scratch");
    if (s->keep == WCGPU_KEEP_HOST && max_span && (e = cudaMalloc((void **)&s->d_stage, max_span)) != cudaSuccess)
        return wcgpu_cuda_fail(err, e, "device staging buffer");
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
    if (s->finished || !s->tiles.empty()) return wcgpu_fail(err, WC_ERR_ARG, "wcgpu_set_finish: called twice");
    if (!payloads && s->pay_bytes) return wcgpu_fail(err, WC_ERR_ARG, "wcgpu_set_finish: no payload memory");
    wc_status st = wcgpu_on_device(s->g, err, [&] { return set_finish(s, payloads, d_check, check_size, bad_range, err); });
    s->finished = st == WC_OK;
    return st;
}

extern "C" wc_status wcgpu_set_decode(wcgpu_set *s, uint32_t group, void *d_out, void *stream, int verify,
                                      wc_error *err) {
    if (!s->finished) return wcgpu_fail(err, WC_ERR_ARG, "wcgpu_set_decode: the set is not finished");
    if (group >= s->groups.size()) return wcgpu_fail(err, WC_ERR_ARG, "wcgpu_set_decode: no such group");
    return wcgpu_on_device(s->g, err, [&] { return set_enqueue(s, group, d_out, (cudaStream_t)stream, verify != 0, err); });
}

extern "C" wc_status wcgpu_set_check(wcgpu_set *s, uint32_t group, void *stream, uint32_t *bad_range,
                                     wc_error *err) {
    if (!s->finished) return wcgpu_fail(err, WC_ERR_ARG, "wcgpu_set_check: the set is not finished");
    if (group >= s->groups.size()) return wcgpu_fail(err, WC_ERR_ARG, "wcgpu_set_check: no such group");
    return wcgpu_on_device(s->g, err, [&] { return set_verdicts(s, group, (cudaStream_t)stream, bad_range, err); });
}
