/* gpu_check.c - the CUDA decoder against the CPU decoder, and its benchmark.
 *   gpu_check compare C.wcodec...        GPU bytes == CPU bytes for every tile; a corrupted
 *                                        tile is caught on the GPU; the loader API reads
 *                                        tensors straight into device memory correctly
 *   gpu_check bench C.wcodec ORIG.safetensors   decode GB/s (device to device) next to
 *                                        cudaMemcpy D2D; loader API vs read + cudaMemcpy
 * compare exits 0 only if everything matched; ends with 'N passed, N failed'. */
#include <cuda_runtime.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "wcgpu.h"

static int passed, failed;
#define CHECK(cond, ...)                                   \
    do {                                                   \
        if (cond) passed++;                                \
        else {                                             \
            failed++;                                      \
            printf("not ok - " __VA_ARGS__);               \
            printf("\n");                                  \
        }                                                  \
    } while (0)

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* All payloads of c in one host buffer; pointers per tile. */
static uint8_t *load_payloads(const wc_container *c, const uint8_t ***ptrs) {
    uint32_t n = wc_container_tile_count(c);
    uint64_t total = 0;
    for (uint32_t i = 0; i < n; i++) total += wc_container_tile(c, i)->coded_size;
    uint8_t *all = malloc(total ? total : 1);
    *ptrs = malloc((n ? n : 1) * sizeof **ptrs);
    uint64_t at = 0;
    for (uint32_t i = 0; i < n; i++) {
        (*ptrs)[i] = all + at;
        if (wc_container_read_tile(c, i, all + at, NULL) != WC_OK) return NULL;
        at += wc_container_tile(c, i)->coded_size;
    }
    return all;
}

/* A resident set of every tile of c in one group, tile i at place[i] (64-byte aligned, in order);
 * *out_bytes: the group's size. */
static wcgpu_set *whole_set(wcgpu *g, const wc_container *c, int keep, void **pay, uint64_t *place,
                            uint64_t *out_bytes, uint8_t *d_check, wc_error *err) {
    wcgpu_set *s = NULL;
    *pay = NULL;
    uint64_t at = 0;
    wc_status st = wcgpu_set_create(g, keep, &s, err);
    for (uint32_t i = 0; i < wc_container_tile_count(c) && st == WC_OK; i++) {
        const wc_tile_info *t = wc_container_tile(c, i);
        place[i] = at;
        st = wcgpu_set_add(s, 0, c, t->src_offset, t->src_size, at, err);
        at += (t->src_size + 63) / 64 * 64;
    }
    *out_bytes = at;
    if (st != WC_OK) {
        wcgpu_set_close(s);
        return NULL;
    }
    uint64_t pb = wcgpu_set_payload_bytes(s);
    if (keep == WCGPU_KEEP_DEVICE) cudaMalloc(pay, pb ? pb : 1);
    else cudaMallocHost(pay, pb ? pb : 1);
    if (wcgpu_set_finish(s, *pay, d_check, at, NULL, err) != WC_OK) {
        wcgpu_set_close(s);
        return NULL;
    }
    return s;
}

/* The decoded tiles at their places == the source. */
static int same_tiles(const wc_container *c, const uint8_t *got, const uint64_t *place, const uint8_t *cpu) {
    for (uint32_t i = 0; i < wc_container_tile_count(c); i++) {
        const wc_tile_info *t = wc_container_tile(c, i);
        if (memcmp(got + place[i], cpu + t->src_offset, t->src_size)) return 0;
    }
    return 1;
}

static void free_payloads(int keep, void *pay) {
    if (keep == WCGPU_KEEP_DEVICE) cudaFree(pay);
    else cudaFreeHost(pay);
}

/* Resident sets: every tensor in a group of its own at a 64-byte aligned place, and the whole
 * source as one group; kept on the device and in host memory; decoded asynchronously on a
 * stream of ours; with and without the hash. Then a payload damaged after the check: a verified
 * decode names the tile. */
static void compare_sets(wcgpu *g, const char *path, const wc_container *c, const uint8_t *cpu, uint64_t size) {
    wc_error err = {0};
    cudaStream_t stream;
    cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
    uint64_t room = size + 64ull * (wc_container_tile_count(c) + 1);
    uint8_t *d, *gpu = malloc(room);
    cudaMalloc((void **)&d, room);
    for (int keep = WCGPU_KEEP_DEVICE; keep <= WCGPU_KEEP_HOST; keep++) {
        const char *kn = keep == WCGPU_KEEP_DEVICE ? "device" : "host";
        /* per tensor: tensor i into group i % 3 at 64 bytes past the previous one of that group */
        wcgpu_set *s = NULL;
        uint32_t nt = wc_container_tensor_count(c);
        uint64_t at[3] = {64, 64, 64}, *place = malloc((nt + 1) * sizeof *place), check = 0;
        wc_status st = wcgpu_set_create(g, keep, &s, &err);
        for (uint32_t i = 0; i < nt && st == WC_OK; i++) {
            const wc_tensor_info *t = wc_container_tensor(c, i);
            place[i] = at[i % 3];
            st = wcgpu_set_add(s, i % 3, c, t->src_offset, t->src_size, place[i], &err);
            at[i % 3] += (t->src_size + 127) / 64 * 64;
        }
        for (int k = 0; k < 3; k++) check = check > at[k] ? check : at[k];
        CHECK(st == WC_OK, "%s: set (%s) add: %s", path, kn, err.msg);
        void *pay = NULL;
        uint64_t pb = st == WC_OK ? wcgpu_set_payload_bytes(s) : 0;
        if (keep == WCGPU_KEEP_DEVICE) cudaMalloc(&pay, pb + 1);
        else cudaMallocHost(&pay, pb + 1);
        uint8_t *dc;
        cudaMalloc((void **)&dc, check);
        if (st == WC_OK) st = wcgpu_set_finish(s, pay, dc, check, NULL, &err);
        CHECK(st == WC_OK, "%s: set (%s) finish: %s", path, kn, err.msg);
        for (int verify = 0; verify <= 1 && st == WC_OK; verify++) {
            int same = 1;
            for (uint32_t grp = 0; grp < 3 && grp < nt && st == WC_OK; grp++) {
                cudaMemsetAsync(dc, 0xAB, check, stream);
                st = wcgpu_set_decode(s, grp, dc, stream, verify, &err);
                if (st == WC_OK && verify) st = wcgpu_set_check(s, grp, stream, NULL, &err);
                uint8_t *h = malloc(check);
                cudaMemcpyAsync(h, dc, check, cudaMemcpyDeviceToHost, stream);
                cudaStreamSynchronize(stream);
                for (uint32_t i = grp; i < nt; i += 3) {
                    const wc_tensor_info *t = wc_container_tensor(c, i);
                    same &= memcmp(h + place[i], cpu + t->src_offset, t->src_size) == 0;
                }
                free(h);
            }
            CHECK(st == WC_OK && same, "%s: set (%s, verify=%d), tensors by group: %s", path, kn, verify,
                  st == WC_OK ? "bytes differ" : err.msg);
        }
        wcgpu_set_close(s);
        free_payloads(keep, pay);
        cudaFree(dc);
        free(place);

        /* every tile in one group */
        uint32_t n = wc_container_tile_count(c);
        uint64_t *tp = malloc((n + 1) * sizeof *tp), out_bytes = 0;
        s = whole_set(g, c, keep, &pay, tp, &out_bytes, d, &err);
        CHECK(s != NULL, "%s: whole-source set (%s): %s", path, kn, err.msg);
        if (!s) {
            free(tp);
            continue;
        }
        cudaMemsetAsync(d, 0, out_bytes, stream);
        st = wcgpu_set_decode(s, 0, d, stream, 0, &err);
        cudaMemcpyAsync(gpu, d, out_bytes, cudaMemcpyDeviceToHost, stream);
        cudaStreamSynchronize(stream);
        CHECK(st == WC_OK && same_tiles(c, gpu, tp, cpu), "%s: whole-source set (%s): %s", path, kn,
              st == WC_OK ? "bytes differ" : err.msg);
        free(tp);
        /* damage one coded tile's payload where it is kept: the verified decode names it */
        uint64_t pay_at = 0;
        for (uint32_t i = 0; i < wc_container_tile_count(c); i++) {
            const wc_tile_info *t = wc_container_tile(c, i);
            if (t->mode == WC_TILE_PLANES && t->coded_size > 256) {
                uint8_t x, *at = (uint8_t *)pay + pay_at + t->coded_size - 7;
                cudaMemcpy(&x, at, 1, cudaMemcpyDefault);
                x ^= 0x5A;
                cudaMemcpy(at, &x, 1, cudaMemcpyDefault);
                uint32_t bad_range = 99;
                st = wcgpu_set_decode(s, 0, d, stream, 1, &err);
                if (st == WC_OK) st = wcgpu_set_check(s, 0, stream, &bad_range, &err);
                char want[32];
                snprintf(want, sizeof want, "tile %u ", i);
                CHECK((st == WC_ERR_CHECKSUM || st == WC_ERR_FORMAT) && bad_range == i && strstr(err.msg, want),
                      "%s: damaged payload of tile %u (%s) not named: %s", path, i, kn, err.msg);
                break;
            }
            pay_at += (t->coded_size + 63) / 64 * 64;
        }
        wcgpu_set_close(s);
        free_payloads(keep, pay);
    }
    /* bad arguments: a range that is not whole tiles, an unaligned output offset */
    wcgpu_set *s;
    if (wcgpu_set_create(g, WCGPU_KEEP_DEVICE, &s, &err) == WC_OK) {
        const wc_tile_info *t0 = wc_container_tile(c, 0);
        CHECK(t0->src_size < 2 || wcgpu_set_add(s, 0, c, 1, t0->src_size - 1, 0, &err) == WC_ERR_ARG,
              "%s: a range inside a tile is refused", path);
        CHECK(wcgpu_set_add(s, 0, c, 0, t0->src_size, 8, &err) == WC_ERR_ARG, "%s: out_offset 8 is refused", path);
        if (wc_container_tile_count(c) > 1 && t0->src_size % 64) {
            const wc_tile_info *t1 = wc_container_tile(c, 1);
            CHECK(wcgpu_set_add(s, 0, c, 0, t0->src_size + t1->src_size, 0, &err) == WC_ERR_ARG,
                  "%s: a tile landing unaligned is refused", path);
        }
        CHECK(wcgpu_set_decode(s, 0, d, stream, 0, &err) == WC_ERR_ARG, "%s: decode before finish is refused", path);
        wcgpu_set_close(s);
    }
    cudaFree(d);
    free(gpu);
    cudaStreamDestroy(stream);
}

/* A copy of the container at `path` with one byte of tile k's payload changed, opened. */
static wc_container *damaged_copy(const char *path, const wc_container *c, uint32_t k, char *tmp) {
    const wc_tile_info *t = wc_container_tile(c, k);
    uint64_t n = wc_container_file_size(c);
    uint8_t *b = malloc(n);
    FILE *f = fopen(path, "rb");
    size_t got = f ? fread(b, 1, n, f) : 0;
    if (f) fclose(f);
    int fd = mkstemp(tmp);
    wc_container *out = NULL;
    if (got == n && fd >= 0) {
        b[t->payload_offset + t->coded_size / 2] ^= 0x24;
        if (write(fd, b, n) == (ssize_t)n) wc_container_open(tmp, &out, NULL);
    }
    if (fd >= 0) close(fd);
    free(b);
    return out;
}

/* The loader (wcgpu_read_ranges) against the CPU decode: the whole file in place and at an
 * unaligned address (every tile decoded aside and copied), a range cut inside tiles, every tensor
 * as a range of one call, this file and a damaged copy in one call (the bad tile and range named). */
static void compare_loader(wcgpu *g, const char *path, const wc_container *c, const uint8_t *cpu, uint64_t size) {
    wc_error err = {0};
    uint8_t *d, *host = malloc(size + 1);
    cudaMalloc((void **)&d, 2 * size + 128);
    for (unsigned shift = 0; shift <= 1; shift++) {
        cudaMemset(d, 0, 2 * size + 128);
        wc_status st = wcgpu_read_range(g, c, 0, size, d + 64 + shift, &err);
        cudaMemcpy(host, d + 64 + shift, size, cudaMemcpyDeviceToHost);
        CHECK(st == WC_OK && memcmp(host, cpu, size) == 0, "%s: loader, whole file at +%u: %s", path, shift,
              st == WC_OK ? "bytes differ" : err.msg);
    }
    if (size > 2) {
        wc_status st = wcgpu_read_range(g, c, 1, size - 2, d, &err);
        cudaMemcpy(host, d, size - 2, cudaMemcpyDeviceToHost);
        CHECK(st == WC_OK && memcmp(host, cpu + 1, size - 2) == 0, "%s: loader, bytes 1..size-1: %s", path,
              st == WC_OK ? "bytes differ" : err.msg);
    }
    uint32_t nt = wc_container_tensor_count(c);
    wcgpu_range *r = malloc((nt + 2) * sizeof *r);
    size_t nr = 0;
    for (uint32_t i = 0; i < nt; i++) {
        const wc_tensor_info *t = wc_container_tensor(c, i);
        r[nr++] = (wcgpu_range){c, t->src_offset, t->src_size, d + t->src_offset};
    }
    cudaMemset(d, 0, size);
    wc_status st = wcgpu_read_ranges(g, r, nr, NULL, &err);
    cudaMemcpy(host, d, size, cudaMemcpyDeviceToHost);
    int same = 1;
    for (uint32_t i = 0; i < nt && same; i++) {
        const wc_tensor_info *t = wc_container_tensor(c, i);
        same = memcmp(host + t->src_offset, cpu + t->src_offset, t->src_size) == 0;
    }
    CHECK(st == WC_OK && same, "%s: loader, %u tensors in one call: %s", path, nt, st == WC_OK ? "bytes differ" : err.msg);
    /* a damaged copy after the good file: the error names the copy's range and the tile */
    uint32_t k = wc_container_tile_count(c) / 2;
    char tmp[] = "/tmp/gpu_check.XXXXXX";
    wc_container *bad = wc_container_tile(c, k)->coded_size >= 2 ? damaged_copy(path, c, k, tmp) : NULL;
    if (bad) {
        wcgpu_range two[2] = {{c, 0, size, d}, {bad, 0, size, d + size + 64}};
        size_t bad_range = 99;
        char want[32];
        snprintf(want, sizeof want, "tile %u ", k);
        st = wcgpu_read_ranges(g, two, 2, &bad_range, &err);
        cudaMemcpy(host, d, size, cudaMemcpyDeviceToHost);
        CHECK((st == WC_ERR_CHECKSUM || st == WC_ERR_FORMAT) && bad_range == 1 && strstr(err.msg, want),
              "%s: loader, damaged tile %u of the second file not named: %s (range %zu)", path, k, err.msg, bad_range);
        CHECK(memcmp(host, cpu, size) == 0, "%s: loader, the good file beside a damaged one differs", path);
        wc_container_close(bad);
        unlink(tmp);
    }
    wcgpu_range beyond = {c, size, 1, d};
    CHECK(wcgpu_read_ranges(g, &beyond, 1, NULL, &err) == WC_ERR_ARG, "%s: loader, a range beyond the source is refused", path);
    free(r);
    free(host);
    cudaFree(d);
}

static void compare(wcgpu *g, const char *path) {
    wc_error err = {0};
    wc_container *c;
    if (wc_container_open(path, &c, &err) != WC_OK) {
        CHECK(0, "%s", err.msg);
        return;
    }
    uint64_t size = wc_container_source_size(c);
    uint32_t n = wc_container_tile_count(c);
    uint8_t *cpu = malloc(size + 1), *gpu = malloc(size + 1);
    CHECK(wc_container_read_range(c, 0, size, cpu, &err) == WC_OK, "%s: CPU decode: %s", path, err.msg);
    const uint8_t **pl;
    uint8_t *all = load_payloads(c, &pl);
    uint32_t *tiles = malloc(n * sizeof *tiles);
    uint64_t *offs = malloc(n * sizeof *offs);
    for (uint32_t i = 0; i < n; i++) tiles[i] = i, offs[i] = wc_container_tile(c, i)->src_offset;
    uint8_t *d;
    cudaMalloc((void **)&d, size + 1);
    wc_status st = wcgpu_decode_tiles(g, c, tiles, n, pl, d, offs, NULL, &err);
    CHECK(st == WC_OK, "%s: GPU decode: %s", path, err.msg);
    cudaMemcpy(gpu, d, size, cudaMemcpyDeviceToHost);
    CHECK(memcmp(cpu, gpu, size) == 0, "%s: GPU bytes differ from CPU bytes", path);

    /* the same tiles to host memory (the filesystem's path) */
    uint8_t **outs = malloc(n * sizeof *outs);
    for (uint32_t i = 0; i < n; i++) outs[i] = gpu + wc_container_tile(c, i)->src_offset;
    memset(gpu, 0, size);
    st = wcgpu_decode_tiles_to_host(g, c, tiles, n, pl, outs, NULL, &err);
    CHECK(st == WC_OK && memcmp(cpu, gpu, size) == 0, "%s: GPU to host: %s", path,
          st == WC_OK ? "bytes differ" : err.msg);
    free(outs);

    /* a corrupted tile, coded and raw: caught on the GPU, the other tiles still right */
    for (int want_mode = WC_TILE_PLANES; want_mode >= WC_TILE_RAW; want_mode--) {
        for (uint32_t k = n / 2, tries = 0; tries < n; k = (k + 1) % n, tries++) {
            const wc_tile_info *t = wc_container_tile(c, k);
            if (t->mode != want_mode || t->coded_size < 2) continue;
            uint8_t *copy = malloc(t->coded_size);
            memcpy(copy, pl[k], t->coded_size);
            copy[t->coded_size / 2] ^= 0x24;
            const uint8_t *p2[2] = {copy, pl[(k + 1) % n]};
            uint32_t t2[2] = {k, (k + 1) % n};
            uint64_t o2[2] = {0, t->src_size};
            uint8_t bad[2] = {0, 0};
            st = wcgpu_decode_tiles(g, c, t2, n > 1 ? 2 : 1, p2, d, o2, bad, &err);
            CHECK(st == WC_ERR_CHECKSUM || st == WC_ERR_FORMAT, "%s: corrupted %s tile %u not caught",
                  path, want_mode ? "coded" : "raw", k);
            CHECK(bad[0] == 1 && (n == 1 || bad[1] == 0), "%s: bad-tile flags wrong", path);
            free(copy);
            break;
        }
    }

    /* loader API: the largest tensors, straight into device memory */
    for (uint32_t ti = 0; ti < wc_container_tensor_count(c) && ti < 8; ti++) {
        const wc_tensor_info *t = wc_container_tensor(c, ti);
        if (!t->src_size) continue;
        cudaMemset(d, 0, size);
        st = wcgpu_read_range(g, c, t->src_offset, t->src_size, d, &err);
        cudaMemcpy(gpu, d, t->src_size, cudaMemcpyDeviceToHost);
        CHECK(st == WC_OK && memcmp(gpu, cpu + t->src_offset, t->src_size) == 0,
              "%s: loader API, tensor %u: %s", path, ti, st == WC_OK ? "bytes differ" : err.msg);
    }
    compare_loader(g, path, c, cpu, size);
    compare_sets(g, path, c, cpu, size);
    printf("# %s: %u tiles, %llu bytes: GPU == CPU\n", path, n, (unsigned long long)size);
    cudaFree(d);
    free(cpu);
    free(gpu);
    free(all);
    free(pl);
    free(tiles);
    free(offs);
    wc_container_close(c);
}

static int bench(wcgpu *g, const char *path, const char *orig) {
    wc_error err = {0};
    wc_container *c;
    if (wc_container_open(path, &c, &err) != WC_OK) return fprintf(stderr, "%s\n", err.msg), 1;
    uint64_t size = wc_container_source_size(c);
    uint32_t n = wc_container_tile_count(c);
    const uint8_t **pl;
    uint8_t *all = load_payloads(c, &pl);
    uint32_t *tiles = malloc(n * sizeof *tiles);
    uint64_t *offs = malloc(n * sizeof *offs);
    for (uint32_t i = 0; i < n; i++) tiles[i] = i, offs[i] = wc_container_tile(c, i)->src_offset;
    uint8_t *d, *d2;
    cudaMalloc((void **)&d, size);
    cudaMalloc((void **)&d2, size);
    double best_k = 1e9, best_e2e = 1e9, split[3] = {0, 0, 0};
    for (int r = 0; r < 5; r++) {
        double t0 = now();
        if (wcgpu_decode_tiles(g, c, tiles, n, pl, d, offs, NULL, &err) != WC_OK)
            return fprintf(stderr, "%s\n", err.msg), 1;
        double t = now() - t0, k = wcgpu_last_kernel_ms(g) / 1e3;
        if (r && k < best_k) best_k = k, wcgpu_last_kernel_split(g, split); /* run 0 warms up */
        if (r && t < best_e2e) best_e2e = t;
    }
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    float best_copy = 1e9f;
    for (int r = 0; r < 5; r++) {
        cudaEventRecord(a, 0);
        cudaMemcpyAsync(d2, d, size, cudaMemcpyDeviceToDevice, 0);
        cudaEventRecord(b, 0);
        cudaEventSynchronize(b);
        float ms;
        cudaEventElapsedTime(&ms, a, b);
        if (ms < best_copy) best_copy = ms;
    }
    /* resident set: the whole model as one group, payloads on the device, event-timed on a
     * stream of ours; without the hash and with it */
    double best_set[2] = {1e9, 1e9};
    void *pay;
    uint64_t *tp = malloc((n + 1) * sizeof *tp), out_bytes = 0;
    uint8_t *d3;
    cudaMalloc((void **)&d3, size + 64ull * (n + 1));
    wcgpu_set *rs = whole_set(g, c, WCGPU_KEEP_DEVICE, &pay, tp, &out_bytes, d3, &err);
    free(tp);
    if (!rs) return fprintf(stderr, "%s\n", err.msg), 1;
    cudaStream_t st;
    cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking);
    for (int verify = 0; verify <= 1; verify++) {
        for (int r = 0; r < 6; r++) {
            cudaEventRecord(a, st);
            if (wcgpu_set_decode(rs, 0, d3, st, verify, &err) != WC_OK) return fprintf(stderr, "%s\n", err.msg), 1;
            cudaEventRecord(b, st);
            cudaEventSynchronize(b);
            float ms;
            cudaEventElapsedTime(&ms, a, b);
            if (r && ms / 1e3 < best_set[verify]) best_set[verify] = ms / 1e3;
        }
        if (verify && wcgpu_set_check(rs, 0, st, NULL, &err) != WC_OK) return fprintf(stderr, "%s\n", err.msg), 1;
    }
    wcgpu_set_close(rs);
    cudaFree(pay);
    cudaFree(d3);
    cudaStreamDestroy(st);
    /* loader: container -> device (reads payloads from the file, decodes) vs raw file -> device */
    double best_load = 1e9, best_raw = 1e9;
    uint8_t *host = malloc(size);
    for (int r = 0; r < 3; r++) {
        double t0 = now();
        if (wcgpu_read_range(g, c, 0, size, d, &err) != WC_OK) return fprintf(stderr, "%s\n", err.msg), 1;
        double t1 = now();
        int fd = open(orig, O_RDONLY);
        size_t got = 0;
        while (fd >= 0 && got < size) {
            ssize_t k = read(fd, host + got, size - got);
            if (k <= 0) break;
            got += (size_t)k;
        }
        if (fd >= 0) close(fd);
        cudaMemcpy(d2, host, size, cudaMemcpyHostToDevice);
        double t2 = now();
        if (t1 - t0 < best_load) best_load = t1 - t0;
        if (t2 - t1 < best_raw) best_raw = t2 - t1;
    }
    /* the upload link's own figure: the raw bytes from pinned memory */
    double best_pinned = 1e9;
    uint8_t *pinned;
    if (cudaMallocHost((void **)&pinned, size) == cudaSuccess) {
        memcpy(pinned, host, size);
        for (int r = 0; r < 3; r++) {
            double t0 = now();
            cudaMemcpy(d2, pinned, size, cudaMemcpyHostToDevice);
            if (now() - t0 < best_pinned) best_pinned = now() - t0;
        }
        cudaFreeHost(pinned);
    }
    printf("device: %s\nsource_bytes: %llu\ntiles: %u\n", wcgpu_device_name(g), (unsigned long long)size, n);
    printf("gpu_decode_kernels_GBps: %.1f\n", size / best_k / 1e9);
    printf("gpu_kernel_ms_rans_merge_hash: %.2f %.2f %.2f\n", split[0], split[1], split[2]);
    printf("gpu_decode_with_upload_GBps: %.1f\n", size / best_e2e / 1e9);
    printf("cudaMemcpy_D2D_GBps: %.1f\n", size / (best_copy / 1e3) / 1e9);
    printf("gpu_resident_decode_no_hash_GBps: %.1f\n", size / best_set[0] / 1e9);
    printf("gpu_resident_decode_with_hash_GBps: %.1f\n", size / best_set[1] / 1e9);
    printf("loader_container_to_device_s: %.4f\nloader_raw_read_plus_copy_s: %.4f\n", best_load, best_raw);
    printf("loader_GBps: %.1f\npinned_h2d_raw_GBps: %.1f\n", size / best_load / 1e9, size / best_pinned / 1e9);
    /* the loader's last output against the raw file's bytes: a benchmark of wrong bytes is void */
    uint8_t *back = malloc(size);
    cudaMemcpy(back, d, size, cudaMemcpyDeviceToHost);
    printf("loader_bytes_equal: %s\n", memcmp(back, host, size) ? "NO" : "yes");
    free(back);
    free(host);
    cudaFree(d);
    cudaFree(d2);
    free(all);
    free(pl);
    free(tiles);
    free(offs);
    wc_container_close(c);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: gpu_check compare C.wcodec... | bench C.wcodec ORIG\n");
        return 2;
    }
    wcgpu *g;
    wc_error err = {0};
    if (wcgpu_open(-1, &g, &err) != WC_OK) {
        printf("# %s: skipped\n0 passed, 0 failed, 1 skipped\n", err.msg);
        return 0;
    }
    int rc = 0;
    if (!strcmp(argv[1], "bench") && argc == 4) {
        rc = bench(g, argv[2], argv[3]);
    } else {
        printf("# device: %s\n", wcgpu_device_name(g));
        for (int i = 2; i < argc; i++) compare(g, argv[i]);
        printf("%d passed, %d failed\n", passed, failed);
        rc = failed != 0;
    }
    wcgpu_close(g);
    return rc;
}
