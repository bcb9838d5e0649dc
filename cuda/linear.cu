/* linear.cu - the matrix kernels' host side: checks, which kernel runs a batch (GEMV, GEMM, or
 * unpack then a library GEMM) by GPU, each kernel's CTA shape and K split by shape and GPU, and
 * the split-K reductions (FP32 partials summed in K order: deterministic, graph-safe). */
#include <cuda_runtime.h>
#include <mutex>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemm_tile.cuh"
#include "gemm_wgmma_tile.cuh"
#include "gemv_tile.cuh"
#include "wcgpu.h"

namespace {

/* The streamed schedule's split tiles: each run's sum added in run order (gemv_tile.cuh). */
__global__ void stream_fixup_kernel(const float *partial, uint32_t rows, uint32_t U, uint32_t per, uint32_t batch,
                                    const uint16_t *bias, uint16_t *y) {
    const uint32_t i = blockIdx.x * blockDim.x + threadIdx.x, rt = i / (16 * batch);
    linear::pdl_launch_next();
    linear::pdl_wait_previous();
    if (rt >= (rows + 15) / 16) return;
    const uint32_t n = i / 16 % batch, r = i % 16, row = rt * 16 + r;
    const uint32_t w0 = gemv::first_run(rt, U, per), w1 = gemv::last_run(rt, U, per);
    if (w0 == w1 || row >= rows) return;
    float s = 0.f;
    for (uint32_t w = w0; w <= w1; w++) s += partial[((uint64_t)(w + rt) * batch + n) * 16 + r];
    if (bias) s += __uint_as_float((uint32_t)bias[row] << 16);
    y[(uint64_t)n * rows + row] = linear::to_bf16(s);
}

/* K-ranges' partials [ksplit][batch][rows] added in K order (the tiled GEMV's and the GEMM's). */
__global__ void reduce_kernel(const float *partial, uint32_t ksplit, uint32_t n, uint32_t rows,
                              const uint16_t *bias, uint16_t *y) {
    const uint32_t i = blockIdx.x * blockDim.x + threadIdx.x;
    linear::pdl_launch_next();
    linear::pdl_wait_previous();
    if (i >= n) return;
    float s = partial[i];
    for (uint32_t k = 1; k < ksplit; k++) s += partial[(uint64_t)k * n + i];
    if (bias) s += __uint_as_float((uint32_t)bias[i % rows] << 16);
    y[i] = linear::to_bf16(s);
}

/* The largest batch each kernel takes: above the GEMM's, the weight is unpacked and a library
 * GEMM runs. Measured per GPU (docs/BENCHMARKS.md, "Fused GEMM"; a GPU is matched by a part of its
 * name); on GPUs not measured the GEMM takes no batch: the GEMV to 16 rows, unpack above. */
struct thresholds {
    uint32_t gemv_max, gemm_max;
};
struct gpu_thresholds {
    const char *name;
    thresholds t;
};
const gpu_thresholds MEASURED[] = {
    {"H100", {WCGPU_GEMV_MAX_BATCH, WCGPU_GEMV_MAX_BATCH}},
    {"H200", {WCGPU_GEMV_MAX_BATCH, WCGPU_GEMV_MAX_BATCH}},
};

/* What the dispatcher asks of the current device at every launch, read from it once a process:
 * SM count, compute capability (major * 10 + minor), the kernels' batch limits. */
struct device_info {
    int sms, cc;
    thresholds limits;
};
const device_info &device(void) {
    static device_info info[64];
    static std::once_flag once[64];
    static const device_info unknown = {132, 0, {WCGPU_GEMV_MAX_BATCH, WCGPU_GEMV_MAX_BATCH}};
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) return unknown;
    std::call_once(once[dev], [dev] {
        device_info d = unknown;
        cudaDeviceProp prop;
        if (cudaGetDeviceProperties(&prop, dev) == cudaSuccess) {
            d.sms = prop.multiProcessorCount, d.cc = prop.major * 10 + prop.minor;
            for (const gpu_thresholds &g : MEASURED)
                if (strstr(prop.name, g.name)) d.limits = g.t;
        }
        info[dev] = d;
    });
    return info[dev];
}

int sm_count(void) { return device().sms; }

/* The GEMV's CTA shape and K split with the least modelled time: waves of resident CTAs (the last
 * one counted whole: a wave's CTAs start and end together), each as long as its warp's units plus
 * a fixed cost (first loads, the warps' sum; about 1.5 units), plus the reduction's launch when K
 * is split. $WCGPU_GEMV="WARPS,KSPLIT" overrides it (for the benchmark's sweep). */
gemv::plan choose_gemv(uint32_t rows, uint32_t cols, uint32_t batch) {
    const int nb = batch > 8 ? 2 : 1;
    const uint32_t R = (rows + 15) / 16, U = (cols + 63) / 64;
    const bool cluster = linear::cluster_enabled(); /* a split K costs no second kernel, at most 8 */
    gemv::plan best = {4, 1, U, false};
    const char *env = getenv("WCGPU_GEMV");
    int w = 0;
    unsigned k = 0;
    if (env && sscanf(env, "stream,%d", &w) == 1 && (w == 4 || w == 8)) {
        const uint64_t warps = (uint64_t)sm_count() * gemv::cf12_ctas_per_sm(w, true, nb) * w;
        return {w, 0, (uint32_t)((R * (uint64_t)U + warps - 1) / warps), false};
    } else if (env && sscanf(env, "%d,%u", &w, &k) == 2 && (w == 4 || w == 8) && k >= 1) {
        best.warps = w;
        best.ksplit = cluster && k > 8 ? 8 : k;
    } else {
        double best_cost = 1e300;
        for (int warps = 4; warps <= 8; warps *= 2) {
            const uint64_t slots = (uint64_t)sm_count() * gemv::cf12_ctas_per_sm(warps, false, nb);
            for (uint32_t ks = 1; ks <= (cluster ? 8u : 16u) && ks <= U; ks++) {
                const uint32_t per = (U + ks - 1) / ks, split = (U + per - 1) / per;
                if (split != ks) continue;
                const uint64_t waves = (R * (uint64_t)split + slots - 1) / slots;
                const double cost = waves * ((per + warps - 1) / warps + 1.5) + (split > 1 ? (cluster ? 0.5 : 1.5) : 0);
                if (cost < best_cost - 1e-9) best_cost = cost, best = {warps, split, per, false};
            }
        }
    }
    best.per = (U + best.ksplit - 1) / best.ksplit;
    best.ksplit = (U + best.per - 1) / best.per;
    best.cluster = cluster && best.ksplit > 1;
    return best;
}

/* Partials of a K split in [ksplit][batch][rows] FP32 are held to half the weights' bytes (so
 * that a split never costs more traffic than it saves time). */
bool split_fits(uint32_t split, uint32_t batch, uint32_t cols) { return split == 1 || (double)split * batch * 4 <= cols * 0.75; }

/* The mma.sync GEMM's CTA shape and K split, by the same wave model: a warp's K-range of `per`
 * units plus a fixed cost (the first loads, the first slices, the epilogue: about 3 units), and
 * for a split K the partials' traffic (written, then read by the reduction) in unit-times of the
 * whole GPU's streaming. */
gemm::plan choose_gemm_mma(uint32_t rows, uint32_t cols, uint32_t batch) {
    const uint32_t R = (rows + 15) / 16, U = (cols + 63) / 64, T = (batch + gemm::TOKENS - 1) / gemm::TOKENS;
    gemm::plan best = {8, 1, U};
    double best_cost = 1e300;
    for (int warps = 4; warps <= 8; warps *= 2) {
        const uint64_t slots = (uint64_t)sm_count() * gemm::cf12_ctas_per_sm(warps);
        const uint64_t ctas1 = (uint64_t)((R + warps - 1) / warps) * T;
        const double unit_bytes = (double)slots * warps * WC_CF12_BLOCK_BYTES; /* a unit-time's bytes */
        for (uint32_t ks = 1; ks <= 16 && ks <= U; ks++) {
            const uint32_t per = (U + ks - 1) / ks, split = (U + per - 1) / per;
            if (split != ks || !split_fits(split, batch, cols)) continue;
            const uint64_t waves = (ctas1 * split + slots - 1) / slots;
            const double reduce = split > 1 ? 2 + 2.0 * split * batch * rows * 4 / unit_bytes : 0;
            const double cost = waves * (per + 3.0) + reduce;
            if (cost < best_cost - 1e-9) best_cost = cost, best = {warps, split, per};
        }
    }
    return best;
}

/* The wgmma GEMM's shape (warpgroups, batch rows a CTA) and K split, in SM cycles: a wave of
 * resident CTAs lasts its K-range plus about 3 units, a unit as long as the larger of the tensor
 * cores' time for the product of every CTA resident on the SM (2 cycles a batch row for 64 rows x 64 columns at
 * ~4096 FLOP a cycle an SM) and the weights' streaming (a warpgroup's 6 KB at ~14 bytes a cycle an
 * SM, ~440 cycles); a split K adds its partials' traffic and the reduction's launch. */
gemm_wgmma::plan choose_gemm_wgmma(uint32_t rows, uint32_t cols, uint32_t batch) {
    const uint32_t R = (rows + 15) / 16, U = (cols + 63) / 64;
    gemm_wgmma::plan best = {2, 256, 1, U};
    double best_cost = 1e300;
    for (int wg = 2; wg >= 1; wg--) /* two warpgroups first: on a tie they hide each other's decode */
        for (int nt = 128; nt <= 256; nt *= 2) {
            const int c = gemm_wgmma::cf12_ctas_per_sm(wg, nt);
            const uint64_t sms = (uint64_t)sm_count(), slots = sms * c;
            const uint64_t ctas1 = (uint64_t)((R + 4 * wg - 1) / (4 * wg)) * ((batch + nt - 1) / nt);
            for (uint32_t ks = 1; ks <= 16 && ks <= U; ks++) {
                const uint32_t per = (U + ks - 1) / ks, split = (U + per - 1) / per;
                if (split != ks || !split_fits(split, batch, cols)) continue;
                const uint64_t total = ctas1 * split, waves = (total + slots - 1) / slots;
                /* CTAs sharing an SM in a wave: fewer than fit where the grid does not fill it */
                const uint64_t resident = ((total < slots ? total : slots) + sms - 1) / sms;
                const double unit = (double)resident * wg * (2.0 * nt > 440 ? 2.0 * nt : 440);
                const double reduce = split > 1 ? 4000 + 2.0 * split * batch * rows * 4 / (14.0 * sms) : 0;
                const double cost = waves * (per + 3.0) * unit + reduce;
                if (cost < best_cost - 1e-9) best_cost = cost, best = {wg, nt, split, per};
            }
        }
    return best;
}

/* The wgmma GEMM runs on 9.0 devices where it was built (sm_90a), unless $WCGPU_WGMMA=0. */
bool wgmma_usable(void) {
#ifdef WCGPU_HAVE_WGMMA
    const char *e = getenv("WCGPU_WGMMA");
    return !(e && !strcmp(e, "0")) && device().cc == 90;
#else
    return false;
#endif
}

/* The smallest batch the GEMM takes on wgmma where it can ($WCGPU_WGMMA_MIN overrides): not yet
 * timed on a GPU, so a guess, where its 128-row tiles are at least half full. */
uint32_t wgmma_min_batch(void) {
    const char *e = getenv("WCGPU_WGMMA_MIN");
    unsigned v;
    return e && sscanf(e, "%u", &v) == 1 ? v : 65;
}

/* The GEMM's kernel and schedule: the one plan that the fused kernel, its reference, the
 * workspace size and the reduction all follow. */
struct gemm_plan {
    bool wgmma;
    gemm::plan mma;       /* !wgmma */
    gemm_wgmma::plan wg;  /* wgmma */
    uint32_t ksplit() const { return wgmma ? wg.ksplit : mma.ksplit; }
    uint32_t per() const { return wgmma ? wg.per : mma.per; }
};

/* $WCGPU_GEMM overrides the choice: "WARPS,KSPLIT" (mma.sync) or "wg,WARPGROUPS,BATCH_ROWS,KSPLIT"
 * (wgmma, where usable), for the checks and the benchmark's sweep. */
gemm_plan choose_gemm(uint32_t rows, uint32_t cols, uint32_t batch) {
    const uint32_t U = (cols + 63) / 64;
    gemm_plan p = {};
    const char *env = getenv("WCGPU_GEMM");
    int w = 0, nt = 0;
    unsigned k = 0;
    const bool wgmma = wgmma_usable();
    if (env && wgmma && sscanf(env, "wg,%d,%d,%u", &w, &nt, &k) == 3 && (w == 1 || w == 2) && (nt == 128 || nt == 256) && k >= 1) {
        p.wgmma = true, p.wg = {w, nt, k, 0};
    } else if (env && sscanf(env, "%d,%u", &w, &k) == 2 && (w == 4 || w == 8) && k >= 1) {
        p.mma = {w, k, 0};
    } else if (wgmma && batch >= wgmma_min_batch()) {
        p.wgmma = true, p.wg = choose_gemm_wgmma(rows, cols, batch);
    } else {
        p.mma = choose_gemm_mma(rows, cols, batch);
    }
    uint32_t &ks = p.wgmma ? p.wg.ksplit : p.mma.ksplit, &per = p.wgmma ? p.wg.per : p.mma.per;
    if (ks > U) ks = U;
    per = (U + ks - 1) / ks;
    ks = (U + per - 1) / per;
    return p;
}

/* The largest batch each kernel takes, on the current device (device_info), unless
 * $WCGPU_LINEAR="GEMV_MAX,GEMM_MAX" (for example "16,256") overrides it, for the checks and the
 * benchmarks. */
thresholds kernel_thresholds(void) {
    const char *env = getenv("WCGPU_LINEAR");
    unsigned a, b;
    if (env && sscanf(env, "%u,%u", &a, &b) == 2 && a <= WCGPU_GEMV_MAX_BATCH) return {a, b};
    return device().limits;
}

wc_status check(const char *what, uint32_t rows, uint32_t cols, uint32_t batch, uint32_t max_batch, const void *x,
                wc_error *err) {
    if (!rows || !cols || !batch || batch > max_batch)
        return wc_error_set(err, WC_ERR_ARG, "%s: a %ux%u weight at batch %u (1..%u)", what, rows, cols, batch,
                            max_batch);
    if (!x) return wc_error_set(err, WC_ERR_ARG, "%s: no input", what);
    return WC_OK;
}

linear::args make_args(uint32_t rows, uint32_t cols, const void *x, uint32_t batch, const void *bias, void *y,
                       void *workspace, uint32_t per, bool cluster) {
    linear::args a;
    a.x = static_cast<const uint16_t *>(x);
    a.bias = static_cast<const uint16_t *>(bias);
    a.y = static_cast<uint16_t *>(y);
    a.partial = static_cast<float *>(workspace);
    a.batch = batch, a.rows = rows, a.cols = cols, a.U = (cols + 63) / 64, a.per = per;
    a.x_vec = (reinterpret_cast<uintptr_t>(x) % 16 == 0) && cols % 8 == 0;
    a.pf = linear::prefetch_depth();
    a.cluster = cluster;
    return a;
}

cudaError_t reduce(const linear::args &a, uint32_t ksplit, cudaStream_t s) {
    const uint32_t n = a.batch * a.rows;
    return linear::launch_k(reduce_kernel, (n + 255) / 256, 256, s, dim3(1), (const float *)a.partial, ksplit, n, a.rows, a.bias,
                            a.y);
}

template <class Run>
wc_status run_gemv(uint32_t rows, uint32_t cols, const void *x, uint32_t batch, const void *bias, void *y,
                   void *workspace, void *stream, wc_error *err, Run kernel) {
    if (wc_status st = check("gemv", rows, cols, batch, WCGPU_GEMV_MAX_BATCH, x, err)) return st;
    const gemv::plan p = choose_gemv(rows, cols, batch);
    if (p.ksplit != 1 && !p.cluster && !workspace) return wc_error_set(err, WC_ERR_ARG, "gemv: no workspace for the split K");
    const linear::args a = make_args(rows, cols, x, batch, bias, y, workspace, p.per, p.cluster);
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    cudaError_t e = kernel(a, p, s);
    if (e == cudaSuccess && p.ksplit == 0) {
        const uint32_t n = (rows + 15) / 16 * 16 * batch;
        e = linear::launch_k(stream_fixup_kernel, (n + 255) / 256, 256, s, dim3(1), (const float *)a.partial, rows, a.U, p.per,
                             batch, a.bias, a.y);
    } else if (e == cudaSuccess && p.ksplit > 1 && !p.cluster) {
        e = reduce(a, p.ksplit, s);
    }
    if (e != cudaSuccess) return wc_error_set(err, WC_ERR_IO, "gemv: %s", cudaGetErrorString(e));
    return WC_OK;
}

template <class Run>
wc_status run_gemm(uint32_t rows, uint32_t cols, const void *x, uint32_t batch, const void *bias, void *y,
                   void *workspace, void *stream, wc_error *err, Run kernel) {
    if (wc_status st = check("gemm", rows, cols, batch, WCGPU_GEMM_MAX_BATCH, x, err)) return st;
    const gemm_plan p = choose_gemm(rows, cols, batch);
    if (p.ksplit() != 1 && !workspace) return wc_error_set(err, WC_ERR_ARG, "gemm: no workspace for the split K");
    const linear::args a = make_args(rows, cols, x, batch, bias, y, workspace, p.per(), false);
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    cudaError_t e = kernel(a, p, s);
    if (e == cudaSuccess && p.ksplit() > 1) e = reduce(a, p.ksplit(), s);
    if (e != cudaSuccess) return wc_error_set(err, WC_ERR_IO, "gemm: %s", cudaGetErrorString(e));
    return WC_OK;
}

wc_status check_matrix(const wcgpu_cf12 *m, const char *what, wc_error *err) {
    if (!m || !m->body || !m->offsets || m->base > 240) return wc_error_set(err, WC_ERR_ARG, "%s: no cf12 matrix", what);
    return WC_OK;
}

} // namespace

bool linear::pdl_enabled() { /* read at each launch: a benchmark compares both in one process */
    const char *e = getenv("WCGPU_PDL");
    return !(e && !strcmp(e, "0"));
}

bool linear::cluster_enabled() { /* read at each launch, as pdl_enabled; clusters need sm_90 */
    const char *e = getenv("WCGPU_CLUSTER");
    const bool asked = e && (!strcmp(e, "0") || !strcmp(e, "1")) ? e[0] == '1' : WCGPU_LINEAR_CLUSTER;
    return asked && device().cc >= 90;
}

uint32_t linear::prefetch_depth() { /* read at each launch, as pdl_enabled */
    const char *e = getenv("WCGPU_PREFETCH");
    unsigned d;
    return e && sscanf(e, "%u", &d) == 1 && d <= 64 ? d : WCGPU_LINEAR_PREFETCH;
}

extern "C" wcgpu_linear_kernel wcgpu_linear_kernel_for(uint32_t rows, uint32_t cols, uint32_t batch) {
    (void)rows, (void)cols;
    const thresholds t = kernel_thresholds();
    if (batch <= t.gemv_max) return WCGPU_LINEAR_GEMV;
    return batch <= t.gemm_max ? WCGPU_LINEAR_GEMM : WCGPU_LINEAR_UNPACK;
}

extern "C" uint64_t wcgpu_gemv_workspace_bytes(uint32_t rows, uint32_t cols, uint32_t batch) {
    const gemv::plan p = choose_gemv(rows, cols, batch);
    if (p.ksplit == 0) { /* a slot per (run, tile) pair: runs + tiles */
        const uint64_t R = (rows + 15) / 16, runs = (R * ((cols + 63) / 64) + p.per - 1) / p.per;
        return (runs + R) * batch * 16 * sizeof(float);
    }
    return p.ksplit > 1 && !p.cluster ? (uint64_t)p.ksplit * batch * rows * sizeof(float) : 0;
}

extern "C" wc_status wcgpu_gemv_cf12(const wcgpu_cf12 *m, const void *x, uint32_t batch, const void *bias, void *y,
                                     void *workspace, void *stream, wc_error *err) {
    if (wc_status st = check_matrix(m, "gemv", err)) return st;
    return run_gemv(m->rows, m->cols, x, batch, bias, y, workspace, stream, err,
                    [&](const linear::args &a, const gemv::plan &p, cudaStream_t s) { return gemv::run_cf12(*m, a, p, s); });
}

extern "C" wc_status wcgpu_gemv_bf16_ref(const void *w, uint32_t rows, uint32_t cols, const void *x, uint32_t batch,
                                         const void *bias, void *y, void *workspace, void *stream, wc_error *err) {
    const uint16_t *wp = static_cast<const uint16_t *>(w);
    return run_gemv(rows, cols, x, batch, bias, y, workspace, stream, err,
                    [&](const linear::args &a, const gemv::plan &p, cudaStream_t s) { return gemv::run_bf16_ref(wp, a, p, s); });
}

extern "C" uint64_t wcgpu_gemm_workspace_bytes(uint32_t rows, uint32_t cols, uint32_t batch) {
    const gemm_plan p = choose_gemm(rows, cols, batch);
    return p.ksplit() > 1 ? (uint64_t)p.ksplit() * batch * rows * sizeof(float) : 0;
}

extern "C" wc_status wcgpu_gemm_cf12(const wcgpu_cf12 *m, const void *x, uint32_t batch, const void *bias, void *y,
                                     void *workspace, void *stream, wc_error *err) {
    if (wc_status st = check_matrix(m, "gemm", err)) return st;
    return run_gemm(m->rows, m->cols, x, batch, bias, y, workspace, stream, err,
                    [&](const linear::args &a, const gemm_plan &p, cudaStream_t s) {
#ifdef WCGPU_HAVE_WGMMA
                        if (p.wgmma) return gemm_wgmma::run_cf12(*m, a, p.wg, s);
#endif
                        return gemm::run_cf12(*m, a, p.mma, s);
                    });
}

extern "C" wc_status wcgpu_gemm_bf16_ref(const void *w, uint32_t rows, uint32_t cols, const void *x, uint32_t batch,
                                         const void *bias, void *y, void *workspace, void *stream, wc_error *err) {
    const uint16_t *wp = static_cast<const uint16_t *>(w);
    return run_gemm(rows, cols, x, batch, bias, y, workspace, stream, err,
                    [&](const linear::args &a, const gemm_plan &p, cudaStream_t s) {
#ifdef WCGPU_HAVE_WGMMA
                        if (p.wgmma) return gemm_wgmma::run_bf16_ref(wp, a, p.wg, s);
#endif
                        return gemm::run_bf16_ref(wp, a, p.mma, s);
                    });
}
