/* make_fixtures.c OUTDIR - safetensors files of every dtype and edge case, for mount tests. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "wcodec.h"

static int write_all_dtypes(const char *dir) {
    static const char *dt[] = {"BOOL", "U8",  "I8",   "I16", "U16", "I32",     "U32",    "I64",
                               "U64",  "F16", "BF16", "F32", "F64", "F8_E4M3", "F8_E5M2"};
    fx_tensor ts[15];
    uint8_t *bufs[15];
    for (int i = 0; i < 15; i++) {
        unsigned w = wc_dtype_width(wc_dtype_from_name(dt[i]));
        uint64_t rows = 97 + 13 * (uint64_t)i, cols = 1031; /* tiles cut unevenly */
        bufs[i] = malloc(rows * cols * w);
        fx_fill(dt[i], bufs[i], rows * cols, (uint32_t)i + 1);
        ts[i] = (fx_tensor){dt[i], dt[i], 2, {rows, cols}, bufs[i], rows * cols * w};
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/all_dtypes.safetensors", dir);
    fx_layout lay = {.metadata = "{\"format\": \"pt\"}", .pad = 4};
    int rc = fx_write_safetensors(path, ts, 15, &lay);
    for (int i = 0; i < 15; i++) free(bufs[i]);
    return rc;
}

static int write_edge(const char *dir) {
    uint8_t scalar[8] = {1, 2, 3, 4, 5, 6, 7, 8}, odd[14], unk[13];
    fx_fill("F16", odd, 7, 9);
    for (int i = 0; i < 13; i++) unk[i] = (uint8_t)(i * 31);
    fx_tensor ts[] = {{"scalar", "I64", 0, {0}, scalar, 8},
                      {"empty", "F32", 2, {0, 4}, NULL, 0},
                      {"odd", "F16", 1, {7}, odd, sizeof odd},
                      {"future", "F4_E2M1", 1, {26}, unk, sizeof unk}};
    char path[4096];
    snprintf(path, sizeof path, "%s/edge.safetensors", dir);
    fx_layout lay = {.gap = 5, .tail = 3, .compact = 1};
    return fx_write_safetensors(path, ts, 4, &lay);
}

static int write_big(const char *dir) {
    size_t n = 3u << 20; /* 6 MiB of BF16 in two tensors: 24 tiles */
    uint8_t *a = malloc(n), *b = malloc(n);
    fx_fill("BF16", a, n / 2, 21);
    fx_fill("BF16", b, n / 2, 22);
    fx_tensor ts[] = {{"layers.0.weight", "BF16", 2, {1536, 1024}, a, n},
                      {"layers.1.weight", "BF16", 2, {1536, 1024}, b, n}};
    char path[4096];
    snprintf(path, sizeof path, "%s/big_bf16.safetensors", dir);
    int rc = fx_write_safetensors(path, ts, 2, NULL);
    free(a);
    free(b);
    return rc;
}

/* Many small tensors of several dtypes (each its own tables, most a single short tile): the GPU
 * decoder's job shaping and the loader's chunking under stress. */
static int write_many_small(const char *dir) {
    static const char *dt[] = {"BF16", "F16", "F32", "I8", "U8", "F8_E4M3", "I32"};
    enum { N = 1500 };
    fx_tensor *ts = calloc(N, sizeof *ts);
    uint8_t **bufs = calloc(N, sizeof *bufs);
    char (*names)[16] = calloc(N, sizeof *names);
    int rc = -1;
    if (!ts || !bufs || !names) goto out;
    uint32_t r = 12345;
    for (int i = 0; i < N; i++) {
        r = r * 1103515245u + 12345u;
        const char *d = dt[i % 7];
        unsigned w = wc_dtype_width(wc_dtype_from_name(d));
        uint64_t n = 1 + (r >> 8) % 4000;
        if (!(bufs[i] = malloc(n * w))) goto out;
        fx_fill(d, bufs[i], n, (uint32_t)i + 100);
        snprintf(names[i], sizeof names[i], "t.%d", i);
        ts[i] = (fx_tensor){names[i], d, 1, {n}, bufs[i], n * w};
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/many_small.safetensors", dir);
    rc = fx_write_safetensors(path, ts, N, NULL);
out:
    for (int i = 0; bufs && i < N; i++) free(bufs[i]);
    free(bufs);
    free(ts);
    free(names);
    return rc;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: make_fixtures OUTDIR\n");
        return 2;
    }
    if (write_all_dtypes(argv[1]) || write_edge(argv[1]) || write_big(argv[1]) || write_many_small(argv[1])) {
        perror("make_fixtures");
        return 1;
    }
    return 0;
}
