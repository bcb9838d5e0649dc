/* tile_decode.cu - tiles decoded in batches from payloads in host memory, into device memory
 * (wcgpu_decode_tiles) or host buffers (wcgpu_decode_tiles_to_host). */
#include <stdlib.h>
#include <string.h>

#include "wcgpu_internal.cuh"

#define MAX_BATCH_TILES 16384u

/* Decodes one batch (n <= MAX_BATCH_TILES) into the device stage; verdict[k] per tile.
 * *stage_at receives where tile k's decoded bytes are (device pointers). */
static wc_status decode_batch(wcgpu *g, const wc_container *c, const uint32_t *tiles, size_t n,
                              const uint8_t *const *payloads, uint8_t **stage_at,
                              uint32_t *verdict, wc_error *err) {
    wc_tile_layout *lay = (wc_tile_layout *)malloc(sizeof *lay);
    if (!lay) return wcgpu_fail(err, WC_ERR_NOMEM, "out of memory");
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
            pay += wcgpu_align_up(t->coded_size);
            stage += wcgpu_align_up(t->src_size);
        }
    } catch (const std::bad_alloc &) {
        st = wcgpu_fail(err, WC_ERR_NOMEM, "out of memory");
    }
    free(lay);
    if (st == WC_OK) {
        try {
            shape_streams(jl.s, 0);
        } catch (const std::bad_alloc &) {
            st = wcgpu_fail(err, WC_ERR_NOMEM, "out of memory");
        }
    }
    uint64_t at[4];
    uint64_t jobs_bytes = pack_jobs(jl, n, nullptr, at);
    if (st == WC_OK) st = wcgpu_ensure(g, pay + jobs_bytes, pay + planes + stage + jobs_bytes, err);
    if (st != WC_OK) return st;
    uint8_t *d_pay = g->d_buf, *d_planes = d_pay + pay, *d_stage = d_planes + planes;
    uint8_t *d_jobs = d_stage + stage;
    uint64_t p_at = 0;
    for (size_t k = 0; k < n; k++) {
        const wc_tile_info *t = wc_container_tile(c, tiles[k]);
        if (payloads[k] != g->h_pin + p_at) /* the loader API reads payloads in place */
            memcpy(g->h_pin + p_at, payloads[k], t->coded_size);
        stage_at[k] = d_stage + stage_off[k];
        p_at += wcgpu_align_up(t->coded_size);
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
    if (e == cudaSuccess) e = wcgpu_launch_kernels(l, s, g->ev);
    if (e == cudaSuccess)
        e = cudaMemcpyAsync(verdict, d_jobs + at[3], n * sizeof(uint32_t), cudaMemcpyDeviceToHost, s);
    if (e == cudaSuccess) e = cudaStreamSynchronize(s);
    for (int i = 0; e == cudaSuccess && i < 3; i++) {
        float ms = 0;
        if (cudaEventElapsedTime(&ms, g->ev[i], g->ev[i + 1]) == cudaSuccess) g->kernel_ms[i] += ms;
    }
    return e == cudaSuccess ? WC_OK : wcgpu_cuda_fail(err, e, "decoding");
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
    if (e != cudaSuccess) return wcgpu_cuda_fail(err, e, "selecting the device");
    uint8_t **stage_at = (uint8_t **)malloc((n ? n : 1) * sizeof *stage_at);
    uint32_t *verdict = verdicts_for(g, n);
    if (!stage_at || !verdict) {
        free(stage_at);
        return wcgpu_fail(err, WC_ERR_NOMEM, "out of memory");
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
    if (st == WC_OK && e != cudaSuccess) st = wcgpu_cuda_fail(err, e, "copying out");
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
            return e == cudaSuccess ? WC_OK : wcgpu_cuda_fail(err, e, "placing a tile");
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
    for (size_t k = 0; k < n; k++) need += wcgpu_align_up(wc_container_tile(c, tiles[k])->src_size);
    if (need > (1ull << 30) + (64u << 20)) need = (1ull << 30) + (64u << 20); /* a batch's bound */
    if (need > g->h_out_cap) {
        cudaFreeHost(g->h_out);
        g->h_out_cap = 0;
        cudaError_t e = cudaMallocHost((void **)&g->h_out, need);
        if (e != cudaSuccess) return wcgpu_cuda_fail(err, e, "pinned output buffer");
        g->h_out_cap = need;
    }
    uint8_t *placed = (uint8_t *)calloc(n ? n : 1, 1);
    uint64_t *at_off = (uint64_t *)malloc((n ? n : 1) * sizeof *at_off);
    if (!placed || !at_off) {
        free(placed);
        free(at_off);
        return wcgpu_fail(err, WC_ERR_NOMEM, "out of memory");
    }
    wc_status st = decode_all(
        g, c, tiles, n, payloads, bad, err,
        [&](size_t k, const uint8_t *src, const uint8_t *batch_stage) {
            at_off[k] = (uint64_t)(src - batch_stage);
            placed[k] = 1;
            cudaError_t e = cudaMemcpyAsync(g->h_out + at_off[k], src,
                                            wc_container_tile(c, tiles[k])->src_size,
                                            cudaMemcpyDeviceToHost, g->stream);
            return e == cudaSuccess ? WC_OK : wcgpu_cuda_fail(err, e, "copying a tile out");
        },
        [&](size_t first, size_t m) {
            cudaError_t e = cudaStreamSynchronize(g->stream);
            if (e != cudaSuccess) return wcgpu_cuda_fail(err, e, "copying tiles out");
            for (size_t k = first; k < first + m; k++)
                if (placed[k])
                    memcpy(host_out[k], g->h_out + at_off[k], wc_container_tile(c, tiles[k])->src_size);
            return WC_OK;
        });
    free(placed);
    free(at_off);
    return st;
}
