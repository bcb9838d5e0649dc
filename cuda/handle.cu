/* handle.cu - the GPU decoder's handle (wcgpu_open, wcgpu_close, its timings and name), the
 * errors its calls report, and what it keeps between calls: pinned and device buffers, decode
 * tables uploaded once, verdict slots. */
#include <stdio.h>
#include <stdlib.h>

#include <xxhash.h>

#include "wcgpu_internal.cuh"

wc_status wcgpu_cuda_fail(wc_error *err, cudaError_t e, const char *what) {
    if (err) {
        snprintf(err->msg, sizeof err->msg, "GPU: %s: %s", what, cudaGetErrorString(e));
        err->code = WC_ERR_IO;
    }
    return WC_ERR_IO;
}

wc_status wcgpu_fail(wc_error *err, wc_status code, const char *msg) {
    if (err) {
        snprintf(err->msg, sizeof err->msg, "%s", msg);
        err->code = code;
    }
    return code;
}

/* Where a tile's error is reported: "GPU: tile 7 (source bytes a..b): checksum mismatch". */
wc_status tile_verdict_error(const wc_container *c, uint32_t tile, uint32_t verdict, wc_error *err) {
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
    if (device >= count) return wcgpu_fail(err, WC_ERR_ARG, "no such CUDA device");
    wcgpu *g = (wcgpu *)calloc(1, sizeof *g);
    if (!g) return wcgpu_fail(err, WC_ERR_NOMEM, "out of memory");
    g->device = device;
    cudaDeviceProp prop;
    if ((e = cudaSetDevice(device)) != cudaSuccess || (e = cudaGetDeviceProperties(&prop, device)) != cudaSuccess ||
        (e = cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking)) != cudaSuccess ||
        (e = cudaEventCreate(&g->ev[0])) != cudaSuccess || (e = cudaEventCreate(&g->ev[1])) != cudaSuccess ||
        (e = cudaEventCreate(&g->ev[2])) != cudaSuccess || (e = cudaEventCreate(&g->ev[3])) != cudaSuccess) {
        free(g);
        return wcgpu_cuda_fail(err, e, "opening the device");
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

wc_status wcgpu_ensure(wcgpu *g, size_t h_need, size_t d_need, wc_error *err) {
    cudaError_t e;
    if (h_need > g->h_pin_cap) {
        cudaFreeHost(g->h_pin);
        g->h_pin = NULL;
        g->h_pin_cap = 0;
        size_t cap = h_need + h_need / 4;
        if ((e = cudaMallocHost((void **)&g->h_pin, cap)) != cudaSuccess)
            return wcgpu_cuda_fail(err, e, "pinned host buffer");
        g->h_pin_cap = cap;
    }
    if (d_need > g->d_buf_cap) {
        cudaFree(g->d_buf);
        g->d_buf = NULL;
        g->d_buf_cap = 0;
        size_t cap = d_need + d_need / 4;
        if ((e = cudaMalloc((void **)&g->d_buf, cap)) != cudaSuccess)
            return wcgpu_cuda_fail(err, e, "device buffer");
        g->d_buf_cap = cap;
    }
    return WC_OK;
}

/* The device copy of a decode table (the container's packed form, as the kernel keeps it),
 * uploaded once per distinct table (keyed by content). */
const uint32_t *device_lut(wcgpu *g, const uint32_t *lut, wc_error *err) {
    if (!lut) return wcgpu_fail(err, WC_ERR_NOMEM, "out of memory"), nullptr;
    uint64_t key = XXH3_64bits(lut, TAB_SLOTS * sizeof(uint32_t));
    for (size_t i = 0; i < g->n_luts; i++)
        if (g->luts[i].key == key) return g->luts[i].d_lut;
    if (g->n_luts == g->cap_luts) {
        size_t cap = g->cap_luts ? 2 * g->cap_luts : 64;
        lut_entry *l = (lut_entry *)realloc(g->luts, cap * sizeof *l);
        if (!l) return wcgpu_fail(err, WC_ERR_NOMEM, "out of memory"), nullptr;
        g->luts = l;
        g->cap_luts = cap;
    }
    uint32_t *d;
    cudaError_t e = cudaMalloc((void **)&d, TAB_SLOTS * sizeof(uint32_t));
    if (e == cudaSuccess) e = cudaMemcpy(d, lut, TAB_SLOTS * sizeof(uint32_t), cudaMemcpyHostToDevice);
    if (e != cudaSuccess) return wcgpu_cuda_fail(err, e, "decode table"), nullptr;
    g->luts[g->n_luts++] = {key, d};
    return d;
}

/* g's pinned verdict slots, grown to at least n (one per tile of a call); NULL if pinned memory
 * ran out. */
uint32_t *verdicts_for(wcgpu *g, size_t n) {
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
