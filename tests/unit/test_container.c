/* test_container.c - safetensors -> container -> the same bytes, for every dtype and edge case;
 * corruption is always an error, never wrong bytes; failures leave nothing behind. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include <xxhash.h>

#include "common/wc_internal.h"
#include "fixture.h"

static char *dir;

static char *path_in(const char *name) {
    char *p;
    assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
    return p;
}

static int setup(void **state) {
    (void)state;
    dir = fx_tmpdir();
    return dir ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    fx_rmtree(dir);
    free(dir);
    return 0;
}

static int files_in_dir(void) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.' || strstr(e->d_name, ".tmp.");
    closedir(d);
    return n;
}

static void clear_dir(void) {
    fx_rmtree(dir);
    mkdir(dir, 0700);
}

/* encode with the given tile size and threads, decode, compare; verify; random ranges. */
static void roundtrip_file(const char *src, uint32_t tile_size, unsigned threads) {
    char *wc = path_in("x.wcodec"), *out = path_in("x.out");
    wc_error err = {0};
    wc_encode_opts o = {.tile_size = tile_size, .threads = threads, .overwrite = 1};
    if (wc_encode_file(src, wc, &o, &err) != WC_OK) fail_msg("encode: %s", err.msg);
    wc_decode_opts d = {.threads = threads, .overwrite = 1};
    if (wc_decode_file(wc, out, &d, &err) != WC_OK) fail_msg("decode: %s", err.msg);
    assert_true(fx_same_file(src, out));
    if (wc_verify_file(wc, src, &d, &err) != WC_OK) fail_msg("verify: %s", err.msg);
    /* the stream form: to a descriptor, in order */
    char *streamed = path_in("x.stream");
    int fd = open(streamed, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    if (wc_decode_fd(wc, fd, &d, &err) != WC_OK) fail_msg("decode to fd: %s", err.msg);
    close(fd);
    assert_true(fx_same_file(src, streamed));
    free(streamed);

    size_t n;
    uint8_t *orig = fx_read_file(src, &n);
    wc_container *c;
    assert_int_equal(wc_container_open(wc, &c, &err), WC_OK);
    assert_int_equal(wc_container_source_size(c), n);
    uint32_t s = 5;
    for (int k = 0; k < 50 && n; k++) {
        s = s * 1664525u + 1013904223u;
        size_t off = s % n, len = (s >> 7) % (3 * (size_t)wc_container_tile_size(c));
        if (len > n - off) len = n - off;
        uint8_t *buf = malloc(len + 1);
        assert_int_equal(wc_container_read_range(c, off, len, buf, &err), WC_OK);
        assert_memory_equal(buf, orig + off, len);
        memset(buf, 0xA5, len);
        assert_int_equal(wc_container_read_range_mt(c, off, len, buf, 1 + k % 5, &err), WC_OK);
        assert_memory_equal(buf, orig + off, len);
        free(buf);
        uint32_t t = wc_container_find_tile(c, off);
        const wc_tile_info *ti = wc_container_tile(c, t);
        assert_true(ti->src_offset <= off && off < ti->src_offset + ti->src_size);
    }
    assert_int_equal(wc_container_find_tile(c, n), wc_container_tile_count(c));
    wc_container_close(c);
    free(orig);
    free(wc);
    free(out);
}

static const char *all_dtypes[] = {"BOOL", "U8",  "I8",   "I16", "U16", "I32",     "U32",     "I64",
                                   "U64",  "F16", "BF16", "F32", "F64", "F8_E4M3", "F8_E5M2"};

static void test_every_dtype_roundtrips(void **state) {
    (void)state;
    char *src = path_in("all.safetensors");
    fx_tensor ts[16];
    uint8_t *bufs[16];
    size_t nd = sizeof all_dtypes / sizeof *all_dtypes;
    for (size_t i = 0; i < nd; i++) {
        unsigned w = wc_dtype_width(wc_dtype_from_name(all_dtypes[i]));
        uint64_t rows = 37 + i * 11, cols = 301; /* odd sizes: tiles cut unevenly */
        bufs[i] = malloc(rows * cols * w);
        fx_fill(all_dtypes[i], bufs[i], rows * cols, (uint32_t)i);
        ts[i] = (fx_tensor){all_dtypes[i], all_dtypes[i], 2, {rows, cols}, bufs[i], rows * cols * w};
    }
    assert_int_equal(fx_write_safetensors(src, ts, nd, NULL), 0);
    roundtrip_file(src, 4096, 1);
    roundtrip_file(src, 4096, 3);
    roundtrip_file(src, WC_TILE_SIZE_DEFAULT, 2);
    for (size_t i = 0; i < nd; i++) free(bufs[i]);
    free(src);
}

static void test_large_tensors_code_well(void **state) {
    (void)state;
    /* BF16 gaussian weights: the exponent plane codes to about 3 of 8 bits */
    char *src = path_in("big.safetensors"), *wc = path_in("big.wcodec");
    size_t n = 3 * WC_TILE_SIZE_DEFAULT / 2 + 77;
    uint8_t *data = malloc(2 * n);
    fx_fill("BF16", data, n, 3);
    fx_tensor t = {"w", "BF16", 1, {n}, data, 2 * n};
    assert_int_equal(fx_write_safetensors(src, &t, 1, NULL), 0);
    roundtrip_file(src, 0, 2);
    wc_encode_opts o = {.threads = 2};
    assert_int_equal(wc_encode_file(src, wc, &o, NULL), WC_OK);
    struct stat a, b;
    stat(src, &a);
    stat(wc, &b);
    assert_true(b.st_size < a.st_size * 0.72);
    free(data);
    free(src);
    free(wc);
}

static void test_edge_cases(void **state) {
    (void)state;
    char *src = path_in("edge.safetensors");
    uint8_t scalar[8] = {1, 2, 3, 4, 5, 6, 7, 8}, odd[7 * 2], unk[13];
    fx_fill("F16", odd, 7, 1);
    for (size_t i = 0; i < sizeof unk; i++) unk[i] = (uint8_t)(i * 37);
    fx_tensor ts[] = {
        {"scalar", "I64", 0, {0}, scalar, 8},
        {"empty", "F32", 2, {0, 4}, NULL, 0},
        {"odd", "F16", 1, {7}, odd, sizeof odd},
        {"future", "F4_E2M1", 1, {26}, unk, sizeof unk},
    };
    fx_layout lays[] = {
        {0},
        {.metadata = "{\"format\": \"pt\", \"note\": \"x\"}", .pad = 5},
        {.compact = 1, .gap = 3, .tail = 11},
        {.metadata = "{}", .pad = 7, .gap = 64},
    };
    for (size_t l = 0; l < sizeof lays / sizeof *lays; l++) {
        assert_int_equal(fx_write_safetensors(src, ts, 4, &lays[l]), 0);
        roundtrip_file(src, 4096, 1);
    }
    /* no tensors at all */
    assert_int_equal(fx_write_safetensors(src, NULL, 0, NULL), 0);
    roundtrip_file(src, 4096, 1);
    fx_layout meta = {.metadata = "{\"a\": \"b\"}", .pad = 3};
    assert_int_equal(fx_write_safetensors(src, NULL, 0, &meta), 0);
    roundtrip_file(src, 4096, 1);
    /* a header larger than a tile */
    char *names[300];
    fx_tensor many[300];
    for (int i = 0; i < 300; i++) {
        assert_true(asprintf(&names[i], "layer.%03d.a_rather_long_tensor_name_to_grow_the_header", i) > 0);
        many[i] = (fx_tensor){names[i], "U8", 1, {1}, scalar + (i % 8), 1};
    }
    assert_int_equal(fx_write_safetensors(src, many, 300, NULL), 0);
    roundtrip_file(src, 4096, 2);
    for (int i = 0; i < 300; i++) free(names[i]);
    free(src);
}

static void test_threads_do_not_change_output(void **state) {
    (void)state;
    char *src = path_in("t.safetensors"), *a = path_in("a.wcodec"), *b = path_in("b.wcodec");
    size_t n = 100000;
    uint8_t *data = malloc(4 * n);
    fx_fill("F32", data, n, 9);
    fx_tensor t = {"w", "F32", 2, {1000, 100}, data, 4 * n};
    assert_int_equal(fx_write_safetensors(src, &t, 1, NULL), 0);
    wc_encode_opts o1 = {.tile_size = 8192, .threads = 1}, o4 = {.tile_size = 8192, .threads = 4};
    assert_int_equal(wc_encode_file(src, a, &o1, NULL), WC_OK);
    assert_int_equal(wc_encode_file(src, b, &o4, NULL), WC_OK);
    assert_true(fx_same_file(a, b));
    free(data);
    free(src);
    free(a);
    free(b);
}

static void test_incompressible_barely_grows(void **state) {
    (void)state;
    char *src = path_in("rnd.safetensors"), *wc = path_in("rnd.wcodec");
    size_t n = 4 << 20;
    uint8_t *data = malloc(n);
    uint32_t s = 77;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 17, s ^= s << 5;
        data[i] = (uint8_t)s;
    }
    fx_tensor t = {"blocks", "U8", 2, {4096, 1024}, data, n};
    assert_int_equal(fx_write_safetensors(src, &t, 1, NULL), 0);
    assert_int_equal(wc_encode_file(src, wc, NULL, NULL), WC_OK);
    struct stat a, b;
    stat(src, &a);
    stat(wc, &b);
    assert_true((double)b.st_size <= (double)a.st_size * 1.001);
    free(data);
    free(src);
    free(wc);
}

/* A container of several dtypes with small tiles, for the corruption tests. */
/* A small container of three dtypes from the source `name`: "c.safetensors" keeps no name (c.wcodec
 * gives it); any other keeps it in the name area. */
static char *make_container(const char *name, uint8_t **bytes, size_t *len) {
    char *src = path_in(name), *wc = path_in("c.wcodec");
    uint8_t *a = malloc(20000 * 2), *b = malloc(5000), *c = malloc(3000 * 4);
    fx_fill("BF16", a, 20000, 1);
    fx_fill("I8", b, 5000, 2);
    fx_fill("F32", c, 3000, 3);
    fx_tensor ts[] = {{"a", "BF16", 2, {200, 100}, a, 40000},
                      {"b", "I8", 1, {5000}, b, 5000},
                      {"c", "F32", 1, {3000}, c, 12000}};
    fx_layout lay = {.metadata = "{\"k\":\"v\"}", .gap = 5};
    assert_int_equal(fx_write_safetensors(src, ts, 3, &lay), 0);
    wc_encode_opts o = {.tile_size = 4096, .overwrite = 1};
    assert_int_equal(wc_encode_file(src, wc, &o, NULL), WC_OK);
    *bytes = fx_read_file(wc, len);
    free(a);
    free(b);
    free(c);
    free(wc);
    return src;
}

static void every_corrupted_byte_is_caught(const char *name) {
    uint8_t *good;
    size_t len;
    char *src = make_container(name, &good, &len);
    char *bad = path_in("bad.wcodec"), *out = path_in("bad.out");
    wc_container *c;
    wc_error err;
    assert_int_equal(wc_container_parse(good, len, len, "good", &c, &err), WC_OK);
    /* the bytes that carry meaning: header + tables, and each payload (not alignment padding) */
    uint8_t *meaningful = calloc(1, len);
    size_t tables_end = WC_HEADER_SIZE +
                        (size_t)wc_container_tensor_count(c) * WC_TENSOR_RECORD_SIZE +
                        (size_t)wc_container_tile_count(c) * WC_TILE_RECORD_SIZE +
                        wc_rd32(good + 40) /* freq_bytes, docs/FORMAT.md */ +
                        (wc_rd32(good + 44) & WC_FLAG_NAME ? WC_NAME_AREA_SIZE : 0);
    memset(meaningful, 1, tables_end);
    for (uint32_t i = 0; i < wc_container_tile_count(c); i++) {
        const wc_tile_info *t = wc_container_tile(c, i);
        memset(meaningful + t->payload_offset, 1, t->coded_size);
    }
    uint64_t first_payload = wc_container_tile(c, 0)->payload_offset;
    wc_container_close(c);

    int cases = 0;
    for (size_t k = 0; k < len; k += (k < first_payload ? 3 : 97)) {
        if (!meaningful[k]) continue;
        uint8_t *copy = malloc(len);
        memcpy(copy, good, len);
        copy[k] ^= (uint8_t)(1u << (k % 8));
        assert_int_equal(fx_write_bytes(bad, copy, len), 0);
        wc_status v = wc_verify_file(bad, src, NULL, &err);
        if (v == WC_OK) fail_msg("flipping byte %zu of %zu went unnoticed", k, len);
        assert_int_not_equal(v, WC_ERR_MISMATCH); /* caught by checksums, not by the compare */
        unlink(out);
        wc_decode_opts force = {.overwrite = 1, .threads = 1 + (unsigned)(k % 3)};
        assert_int_not_equal(wc_decode_file(bad, out, &force, &err), WC_OK);
        assert_int_equal(access(out, F_OK), -1); /* no output left behind */
        free(copy);
        cases++;
    }
    assert_true(cases > 100);
    free(meaningful);
    free(good);
    free(src);
    free(bad);
    free(out);
}

static void test_every_corrupted_byte_is_caught(void **state) {
    (void)state;
    every_corrupted_byte_is_caught("c.safetensors");
    every_corrupted_byte_is_caught("c-blob"); /* the name area too */
}

/* Several threads over a range with two bad tiles: the lowest one is reported, as one thread
 * would; a range that avoids both still reads. */
static void test_read_range_mt_reports_lowest_bad_tile(void **state) {
    (void)state;
    uint8_t *good;
    size_t len;
    char *src = make_container("c.safetensors", &good, &len), *bad = path_in("two_bad.wcodec");
    wc_container *c;
    wc_error err;
    assert_int_equal(wc_container_parse(good, len, len, "c", &c, &err), WC_OK);
    uint32_t n = wc_container_tile_count(c), lo = n / 3, hi = 2 * n / 3;
    assert_true(lo + 1 < hi);
    const wc_tile_info *a = wc_container_tile(c, lo), *b = wc_container_tile(c, hi);
    good[a->payload_offset + a->coded_size / 2] ^= 0x10;
    good[b->payload_offset + b->coded_size / 2] ^= 0x10;
    uint64_t lo_end = a->src_offset + a->src_size, hi_start = b->src_offset;
    wc_container_close(c);
    assert_int_equal(fx_write_bytes(bad, good, len), 0);
    assert_int_equal(wc_container_open(bad, &c, &err), WC_OK);
    uint64_t size = wc_container_source_size(c);
    uint8_t *out = malloc(size);
    char want[64];
    snprintf(want, sizeof want, "tile %u ", lo);
    for (unsigned threads = 1; threads <= 8; threads *= 2) {
        memset(&err, 0, sizeof err);
        wc_status st = wc_container_read_range_mt(c, 0, size, out, threads, &err);
        assert_true(st == WC_ERR_CHECKSUM || st == WC_ERR_FORMAT);
        if (!strstr(err.msg, want)) fail_msg("%u threads: '%s' does not name tile %u", threads, err.msg, lo);
        assert_int_equal(wc_container_read_range_mt(c, lo_end, hi_start - lo_end, out, threads, &err), WC_OK);
    }
    size_t n_orig;
    uint8_t *orig = fx_read_file(src, &n_orig);
    assert_memory_equal(out, orig + lo_end, hi_start - lo_end);
    wc_container_close(c);
    free(orig);
    free(out);
    free(good);
    free(src);
    free(bad);
}

/* Crafted tables that carry valid checksums (as a hostile file can): each is refused with a
 * format error naming the problem, before any allocation the file's size does not justify. */
static void reseal(uint8_t *b, size_t len) {
    uint64_t tables = (uint64_t)wc_rd32(b + 32) * WC_TENSOR_RECORD_SIZE +
                      (uint64_t)wc_rd32(b + 36) * WC_TILE_RECORD_SIZE + wc_rd32(b + 40);
    if (tables <= len - WC_HEADER_SIZE) wc_wr64(b + 48, wc_hash(b + WC_HEADER_SIZE, (size_t)tables));
    wc_wr64(b + 56, wc_hash(b, 56));
}

static void test_crafted_tables_refused(void **state) {
    (void)state;
    uint8_t *good;
    size_t len;
    char *src = make_container("c.safetensors", &good, &len);
    wc_container *c;
    wc_error err;
    assert_int_equal(wc_container_parse(good, len, len, "c", &c, &err), WC_OK);
    uint32_t n_tensors = wc_container_tensor_count(c);
    wc_container_close(c);
    size_t tile0 = WC_HEADER_SIZE + (size_t)n_tensors * WC_TENSOR_RECORD_SIZE, tile1 = tile0 + WC_TILE_RECORD_SIZE;
    static const struct {
        const char *what, *expect;
        size_t at;
        int width; /* 4 or 8 bytes, little-endian */
        uint64_t value;
    } cases[] = {
        {"tile count that overflows the tables", "beyond the file", 36, 4, 0xFFFFFFFFu},
        {"tensor count that overflows the tables", "beyond the file", 32, 4, 0x7FFFFFFFu},
        {"tile size out of range", "tile size", 12, 4, 1u << 30},
        {"a payload offset past the end", "beyond the file", 0 /* tile0 */, 8, 1ull << 40},
        {"a coded size larger than the file", "beyond the file", 28 /* tile0 */, 4, 0xFFFFFFF0u},
        {"a tile that does not continue the source", "does not continue", 8 /* tile1 */, 8, 12345},
        {"a tile larger than a tile", "does not continue", 24 /* tile0 */, 4, 0xFFFFFFFFu},
        {"a tensor beyond the tile table", "beyond the tile table", WC_HEADER_SIZE + 20, 4, 0xFFFFFFF0u},
        {"a tensor outside the source", "outside the source", WC_HEADER_SIZE + 8, 8, 1ull << 62},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        uint8_t *b = malloc(len);
        memcpy(b, good, len);
        size_t at = cases[k].at;
        if (k == 3 || k == 4 || k == 6) at += tile0;
        if (k == 5) at += tile1;
        if (cases[k].width == 4) wc_wr32(b + at, (uint32_t)cases[k].value);
        else wc_wr64(b + at, cases[k].value);
        reseal(b, len);
        memset(&err, 0, sizeof err);
        wc_status st = wc_container_parse(b, len, len, "crafted", &c, &err);
        if (st == WC_OK) fail_msg("%s: accepted", cases[k].what);
        assert_int_equal(st, WC_ERR_FORMAT);
        if (!strstr(err.msg, cases[k].expect)) fail_msg("%s: '%s' lacks '%s'", cases[k].what, err.msg, cases[k].expect);
        free(b);
    }
    /* an empty file and a header alone */
    assert_int_equal(wc_container_parse(good, 0, 0, "empty", &c, &err), WC_ERR_FORMAT);
    assert_int_equal(wc_container_parse(good, WC_HEADER_SIZE, WC_HEADER_SIZE, "header", &c, &err), WC_ERR_FORMAT);
    free(good);
    free(src);
}

static void test_bad_tile_fails_alone(void **state) {
    (void)state;
    uint8_t *good;
    size_t len;
    char *src = make_container("c.safetensors", &good, &len);
    size_t n;
    uint8_t *orig = fx_read_file(src, &n);
    wc_container *c;
    wc_error err;
    assert_int_equal(wc_container_parse(good, len, len, "c", &c, &err), WC_OK);
    uint32_t victim = wc_container_tile_count(c) / 2;
    const wc_tile_info *v = wc_container_tile(c, victim);
    good[v->payload_offset + v->coded_size / 2] ^= 0x10;
    uint8_t *out = malloc(wc_container_tile_size(c));
    for (uint32_t i = 0; i < wc_container_tile_count(c); i++) {
        const wc_tile_info *t = wc_container_tile(c, i);
        wc_status st = wc_tile_decode_cpu(c, i, good + t->payload_offset, out, NULL, &err);
        if (i == victim) {
            assert_true(st == WC_ERR_CHECKSUM || st == WC_ERR_FORMAT);
            assert_non_null(strstr(err.msg, "tile"));
        } else {
            assert_int_equal(st, WC_OK);
            assert_memory_equal(out, orig + t->src_offset, t->src_size);
        }
    }
    wc_container_close(c);
    free(out);
    free(orig);
    free(good);
    free(src);
}

static void test_truncated_container(void **state) {
    (void)state;
    uint8_t *good;
    size_t len;
    char *src = make_container("c.safetensors", &good, &len);
    char *bad = path_in("trunc.wcodec");
    for (size_t cut = 0; cut < len; cut += (cut < 4096 ? 61 : 1999)) {
        assert_int_equal(fx_write_bytes(bad, good, cut), 0);
        wc_error err;
        assert_int_not_equal(wc_verify_file(bad, NULL, NULL, &err), WC_OK);
    }
    free(good);
    free(src);
    free(bad);
}

static void test_malformed_source_leaves_nothing(void **state) {
    (void)state;
    clear_dir();
    char *src = path_in("bad.safetensors"), *dst = path_in("bad.wcodec");
    const char *json = "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}";
    uint8_t buf[256] = {0};
    wc_wr64(buf, strlen(json));
    memcpy(buf + 8, json, strlen(json));
    assert_int_equal(fx_write_bytes(src, buf, 8 + strlen(json) + 8), 0);
    wc_error err = {0};
    assert_int_equal(wc_encode_file(src, dst, NULL, &err), WC_ERR_SAFETENSORS);
    assert_non_null(strstr(err.msg, "'w'"));
    assert_int_equal(access(dst, F_OK), -1);
    assert_int_equal(files_in_dir(), 1); /* only the source: no temporary left */
    free(src);
    free(dst);
}

static void test_full_disk_leaves_nothing(void **state) {
    (void)state;
    clear_dir();
    char *src = path_in("big.safetensors"), *dst = path_in("big.wcodec");
    size_t n = 1 << 20;
    uint8_t *data = malloc(n);
    uint32_t s = 3;
    for (size_t i = 0; i < n; i++) s ^= s << 13, s ^= s >> 17, s ^= s << 5, data[i] = (uint8_t)s;
    fx_tensor t = {"w", "U8", 1, {n}, data, n};
    assert_int_equal(fx_write_safetensors(src, &t, 1, NULL), 0);
    pid_t pid = fork();
    if (pid == 0) { /* a file size limit makes writes fail as a full disk does */
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {200000, 200000};
        setrlimit(RLIMIT_FSIZE, &rl);
        wc_error err = {0};
        wc_status st = wc_encode_file(src, dst, NULL, &err);
        _exit(st == WC_ERR_IO && strstr(err.msg, "big.wcodec") ? 0 : 1);
    }
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(access(dst, F_OK), -1);
    assert_int_equal(files_in_dir(), 1);
    free(data);
    free(src);
    free(dst);
}

static void test_existing_output_and_cancel(void **state) {
    (void)state;
    clear_dir();
    char *src = path_in("s.safetensors"), *dst = path_in("s.wcodec");
    uint8_t data[4000];
    fx_fill("BF16", data, 2000, 5);
    fx_tensor t = {"w", "BF16", 1, {2000}, data, sizeof data};
    assert_int_equal(fx_write_safetensors(src, &t, 1, NULL), 0);
    assert_int_equal(fx_write_bytes(dst, "keep", 4), 0);
    wc_error err = {0};
    assert_int_equal(wc_encode_file(src, dst, NULL, &err), WC_ERR_EXISTS);
    size_t n;
    uint8_t *kept = fx_read_file(dst, &n);
    assert_int_equal(n, 4);
    free(kept);
    unlink(dst);
    volatile sig_atomic_t cancel = 1;
    wc_encode_opts o = {.cancel = &cancel};
    assert_int_equal(wc_encode_file(src, dst, &o, &err), WC_ERR_CANCELLED);
    assert_int_equal(access(dst, F_OK), -1);
    assert_int_equal(files_in_dir(), 1);
    /* mode and mtime follow the source */
    chmod(src, 0640);
    struct timespec times[2] = {{0, UTIME_OMIT}, {1234567890, 0}};
    utimensat(AT_FDCWD, src, times, 0);
    assert_int_equal(wc_encode_file(src, dst, NULL, &err), WC_OK);
    struct stat sb;
    stat(dst, &sb);
    assert_int_equal(sb.st_mode & 0777, 0640);
    assert_int_equal(sb.st_mtime, 1234567890);
    free(src);
    free(dst);
}

/* The format's checksum is xxh3-64 whichever code computes it (the dispatcher's AVX-512 or AVX2
 * path where libxxhash has one): every length path, one call and streamed in uneven pieces. */
static void test_hash_is_xxh3(void **state) {
    (void)state;
    size_t cap = (4u << 20) + 7;
    uint8_t *b = malloc(cap);
    assert_non_null(b);
    for (size_t i = 0; i < cap; i++) b[i] = (uint8_t)(i * 2654435761u >> 13);
    for (size_t len = 0; len <= 3000; len++)
        assert_true(wc_hash(b + len % 7, len) == XXH3_64bits(b + len % 7, len));
    const size_t big[] = {65536, 262144 - 1, 262144, 1u << 20, 4u << 20};
    for (size_t k = 0; k < sizeof big / sizeof *big; k++) {
        assert_true(wc_hash(b + k, big[k]) == XXH3_64bits(b + k, big[k]));
        wc_hasher *h = wc_hasher_new();
        assert_non_null(h);
        for (size_t at = 0, step = 1; at < big[k]; at += step, step = step * 3 + 1) {
            size_t n = big[k] - at < step ? big[k] - at : step;
            wc_hasher_update(h, b + k + at, n);
        }
        assert_true(wc_hasher_digest(h) == XXH3_64bits(b + k, big[k]));
        wc_hasher_free(h);
    }
    free(b);
}

static void test_not_a_container(void **state) {
    (void)state;
    char *p = path_in("junk.wcodec");
    wc_error err = {0};
    wc_container *c;
    assert_int_equal(fx_write_bytes(p, "hello", 5), 0);
    assert_int_equal(wc_container_open(p, &c, &err), WC_ERR_FORMAT);
    uint8_t junk[128] = "\x89WCODEC\n\x02";
    assert_int_equal(fx_write_bytes(p, junk, sizeof junk), 0);
    assert_int_equal(wc_container_open(p, &c, &err), WC_ERR_VERSION);
    assert_non_null(strstr(err.msg, "version 2"));
    assert_int_equal(wc_container_open("/nonexistent/x.wcodec", &c, &err), WC_ERR_IO);
    free(p);
}

/* A source's name: one ending in .safetensors is not kept (the container's file name carries it,
 * flag clear, as in every container before names); any other is kept, read back by open and by
 * peek, and a malformed name area is refused. */
static void test_source_name_kept(void **state) {
    (void)state;
    char out[WC_NAME_MAX + 1];
    assert_int_equal(wc_container_file_name("x.safetensors", out, sizeof out), 0);
    assert_string_equal(out, "x.wcodec");
    assert_int_equal(wc_container_file_name("3f2a9c", out, sizeof out), 0);
    assert_string_equal(out, "3f2a9c.wcodec");
    assert_int_equal(wc_container_file_name(".safetensors", out, sizeof out), 0);
    assert_string_equal(out, ".safetensors.wcodec");
    char longname[251];
    memset(longname, 'a', 250);
    longname[250] = 0;
    assert_int_equal(wc_container_file_name(longname, out, sizeof out), -1); /* 257 bytes */
    assert_int_equal(wc_container_file_name("a/b", out, sizeof out), -1);
    assert_int_equal(wc_container_file_name("..", out, sizeof out), -1);
    assert_int_equal(wc_presented_name("x.wcodec", NULL, out, sizeof out), 0);
    assert_string_equal(out, "x.safetensors");
    assert_int_equal(wc_presented_name("x.wcodec", "3f2a9c", out, sizeof out), 0);
    assert_string_equal(out, "3f2a9c");
    assert_int_equal(wc_presented_name("x.bin", "", out, sizeof out), -1);

    struct {
        const char *src, *dst, *kept;
    } cases[] = {{"m.safetensors", "m.wcodec", ""},
                 {"3f2a9c", "3f2a9c.wcodec", "3f2a9c"},
                 {"m.safetensors", "renamed.wcodec", ""}, /* presents renamed.safetensors */
                 {"weights.st", "w.out", "weights.st"}};
    uint8_t *a = malloc(4000);
    fx_fill("BF16", a, 2000, 7);
    fx_tensor t = {"a", "BF16", 1, {2000}, a, 4000};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char *src = path_in(cases[k].src), *wc = path_in(cases[k].dst);
        wc_error err = {0};
        assert_int_equal(fx_write_safetensors(src, &t, 1, NULL), 0);
        wc_encode_opts o = {.overwrite = 1};
        if (wc_encode_file(src, wc, &o, &err) != WC_OK) fail_msg("%s: %s", cases[k].src, err.msg);
        wc_container_summary sum;
        assert_int_equal(wc_container_peek(wc, &sum, &err), WC_OK);
        assert_string_equal(sum.source_name, cases[k].kept);
        wc_container *c;
        assert_int_equal(wc_container_open(wc, &c, &err), WC_OK);
        assert_string_equal(wc_container_source_name(c), cases[k].kept);
        wc_container_close(c);
        size_t len;
        uint8_t *bytes = fx_read_file(wc, &len);
        assert_int_equal(wc_rd32(bytes + 44), *cases[k].kept ? WC_FLAG_NAME : 0);
        if (*cases[k].kept) { /* the area, malformed three ways: each refused by peek and open */
            size_t area = WC_HEADER_SIZE + wc_rd32(bytes + 32) * (size_t)WC_TENSOR_RECORD_SIZE +
                          wc_rd32(bytes + 36) * (size_t)WC_TILE_RECORD_SIZE + wc_rd32(bytes + 40);
            assert_int_equal(bytes[area], strlen(cases[k].kept));
            assert_memory_equal(bytes + area + 1, cases[k].kept, strlen(cases[k].kept));
            const size_t at[] = {area, area + 1, area + 200};
            const uint8_t to[] = {0, '/', 1};
            for (unsigned m = 0; m < 3; m++) {
                uint8_t keep = bytes[at[m]];
                bytes[at[m]] = to[m];
                assert_int_equal(fx_write_bytes(wc, bytes, len), 0);
                assert_int_equal(wc_container_peek(wc, &sum, &err), WC_ERR_FORMAT);
                assert_non_null(strstr(err.msg, "name"));
                assert_int_not_equal(wc_container_open(wc, &c, &err), WC_OK);
                bytes[at[m]] = keep;
            }
        }
        free(bytes);
        free(src);
        free(wc);
    }
    /* a name the file system cannot take is refused before anything is written */
    char *src = path_in("m.safetensors"), *wc = path_in("n.wcodec");
    wc_encode_opts o = {.source_name = "a/b"};
    wc_error err = {0};
    assert_int_equal(wc_encode_file(src, wc, &o, &err), WC_ERR_ARG);
    assert_int_equal(access(wc, F_OK), -1);
    free(src);
    free(wc);
    free(a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_source_name_kept),
        cmocka_unit_test(test_every_dtype_roundtrips),
        cmocka_unit_test(test_large_tensors_code_well),
        cmocka_unit_test(test_edge_cases),
        cmocka_unit_test(test_threads_do_not_change_output),
        cmocka_unit_test(test_incompressible_barely_grows),
        cmocka_unit_test(test_every_corrupted_byte_is_caught),
        cmocka_unit_test(test_read_range_mt_reports_lowest_bad_tile),
        cmocka_unit_test(test_crafted_tables_refused),
        cmocka_unit_test(test_bad_tile_fails_alone),
        cmocka_unit_test(test_truncated_container),
        cmocka_unit_test(test_malformed_source_leaves_nothing),
        cmocka_unit_test(test_full_disk_leaves_nothing),
        cmocka_unit_test(test_existing_output_and_cancel),
        cmocka_unit_test(test_not_a_container),
        cmocka_unit_test(test_hash_is_xxh3),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
