/* jobs.cu - the jobs of a decode, built on the host: a tile's stream, merge and checksum jobs
 * (its layout parsed with the core's wc_tile_layout_parse), the stream jobs shaped for
 * rans_kernel, and the job arrays packed for their upload. */
#include <string.h>

#include <algorithm>

#include "wcgpu_internal.cuh"

/* Appends the jobs of tile `tile` of c. Its payload (`payload`: a host copy, for the layout)
 * sits at pay_off from the payload base; its decoded bytes go to out_off from the output base
 * (64-byte aligned); the planes of a tile that cannot be fused go to *scratch_at from the scratch
 * base (advanced past them). `verdict` is its verdict slot; `hash` adds its checksum job. */
wc_status tile_jobs(wcgpu *g, const wc_container *c, uint32_t tile, const uint8_t *payload,
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
    if (n_coded) *scratch_at += wcgpu_align_up(t->src_size);
    jl.m.push_back(m);
    jl.max_merge_n = std::max(jl.max_merge_n, m.n);
    return WC_OK;
}

/* The stream jobs from `from` on, shaped for rans_kernel: a block's warps share one table, so
 * the jobs go in runs of one table, each run padded with skip jobs to whole blocks; and the blocks
 * run longest stream first, so that short streams (small tiles, a tensor's last tile) fill the
 * last wave instead of a long stream starting late and running alone. */
void shape_streams(std::vector<stream_job> &s, size_t from) {
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
uint64_t pack_jobs(const job_lists &jl, size_t n_verdicts, uint8_t *to, uint64_t at[4]) {
    uint64_t sz[4] = {jl.s.size() * sizeof(stream_job), jl.m.size() * sizeof(merge_job),
                      jl.h.size() * sizeof(hash_job), n_verdicts * sizeof(uint32_t)};
    const void *from[4] = {jl.s.data(), jl.m.data(), jl.h.data(), nullptr};
    uint64_t pos = 0;
    for (int k = 0; k < 4; k++) {
        at[k] = pos;
        if (to && from[k] && sz[k]) memcpy(to + pos, from[k], sz[k]);
        if (to && !from[k]) memset(to + pos, 0, sz[k]);
        pos += wcgpu_align_up(sz[k]);
    }
    return pos;
}
