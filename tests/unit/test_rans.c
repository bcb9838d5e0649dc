/* test_rans.c - the entropy coder alone: every decoder path gives back what was encoded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <cmocka.h>

#include "common/wc_internal.h"

static uint32_t rng(uint32_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* Encodes sym[0..n) with a table built from its own histogram, decodes it on every path. */
static void roundtrip(const uint8_t *sym, size_t n) {
    uint64_t hist[256] = {0};
    for (size_t i = 0; i < n; i++) hist[sym[i]]++;
    if (n == 0) hist[0] = 1; /* a table needs one symbol; the stream has none */
    wc_rans_freqs f;
    wc_rans_normalize(hist, &f);
    uint32_t sum = 0;
    for (int s = 0; s < 256; s++) {
        sum += f.freq[s];
        assert_true(!hist[s] || f.freq[s] >= 1);
        assert_true(hist[s] || f.freq[s] == 0);
    }
    assert_int_equal(sum, WC_RANS_PROB_SCALE);

    /* through serialization, as the container stores it */
    uint8_t table[32 + 512 + 8];
    wc_rans_table_write(&f, table);
    wc_rans_freqs g;
    size_t used;
    assert_int_equal(wc_rans_table_read(table, sizeof table, &g, &used), 0);
    assert_int_equal(used, wc_rans_table_size(&f));
    assert_memory_equal(&f, &g, sizeof f);
    uint32_t *lut = malloc(WC_RANS_PROB_SCALE * 4);
    wc_rans_build_lut(&g, lut);

    uint8_t *enc = malloc(wc_rans_stream_bound(n));
    size_t len = wc_rans_encode_stream(&f, sym, n, enc);
    assert_true(len % 4 == 0 && len <= wc_rans_stream_bound(n));
    uint8_t *dec = malloc(n + 1);
    for (int path = 0; path <= 2; path++) {
        if (wc_rans_force_path(path) != 0) continue;
        memset(dec, 0xAB, n + 1);
        assert_int_equal(wc_rans_decode_stream(lut, enc, len, dec, n), 0);
        assert_memory_equal(dec, sym, n);
        assert_int_equal(dec[n], 0xAB); /* nothing written past the end */
        /* one byte short: the stream must be refused, not over-read */
        if (len > WC_RANS_STATE_BYTES + 4)
            assert_int_equal(wc_rans_decode_stream(lut, enc, len - 4, dec, n), -1);
    }
    wc_rans_force_path(-1);
    free(enc);
    free(dec);
    free(lut);
}

static const size_t sizes[] = {0, 1, 2, 31, 32, 33, 63, 64, 65, 100, 1000, 4095, 4096, 4097,
                               WC_RANS_STREAM_SYMBOLS - 33, WC_RANS_STREAM_SYMBOLS - 1,
                               WC_RANS_STREAM_SYMBOLS};

static void test_uniform(void **state) {
    (void)state;
    uint32_t s = 1;
    uint8_t *buf = malloc(WC_RANS_STREAM_SYMBOLS);
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        for (size_t i = 0; i < sizes[k]; i++) buf[i] = (uint8_t)rng(&s);
        roundtrip(buf, sizes[k]);
    }
    free(buf);
}

static void test_skewed(void **state) {
    (void)state;
    uint32_t s = 7;
    uint8_t *buf = malloc(WC_RANS_STREAM_SYMBOLS);
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        /* geometric-like: symbol 120 most of the time, a long tail of rare ones */
        for (size_t i = 0; i < sizes[k]; i++) {
            uint32_t r = rng(&s);
            buf[i] = (uint8_t)(120 + __builtin_ctz(r | 0x80000000u) * ((r >> 28) & 1 ? 1 : -1));
        }
        roundtrip(buf, sizes[k]);
    }
    free(buf);
}

static void test_one_symbol(void **state) {
    (void)state;
    uint8_t *buf = malloc(WC_RANS_STREAM_SYMBOLS);
    memset(buf, 42, WC_RANS_STREAM_SYMBOLS);
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) roundtrip(buf, sizes[k]);
    /* a single symbol costs nothing: the stream is its states */
    uint64_t hist[256] = {0};
    hist[42] = WC_RANS_STREAM_SYMBOLS;
    wc_rans_freqs f;
    wc_rans_normalize(hist, &f);
    uint8_t *enc = malloc(wc_rans_stream_bound(WC_RANS_STREAM_SYMBOLS));
    assert_int_equal(wc_rans_encode_stream(&f, buf, WC_RANS_STREAM_SYMBOLS, enc),
                     WC_RANS_STATE_BYTES);
    free(enc);
    free(buf);
}

static void test_rare_symbols_keep_nonzero_freq(void **state) {
    (void)state;
    uint64_t hist[256] = {0};
    hist[0] = 1000000000ull;
    for (int s = 1; s < 256; s++) hist[s] = 1;
    wc_rans_freqs f;
    wc_rans_normalize(hist, &f);
    for (int s = 0; s < 256; s++) assert_true(f.freq[s] >= 1);
}

static void test_bad_tables_refused(void **state) {
    (void)state;
    uint8_t t[64] = {0};
    wc_rans_freqs f;
    size_t used;
    assert_int_equal(wc_rans_table_read(t, sizeof t, &f, &used), -1); /* no symbols */
    t[0] = 1;                                                          /* symbol 0 */
    wc_wr16(t + 32, 4095);
    assert_int_equal(wc_rans_table_read(t, sizeof t, &f, &used), -1); /* sum 4095 */
    wc_wr16(t + 32, 4096);
    assert_int_equal(wc_rans_table_read(t, sizeof t, &f, &used), 0);
    assert_int_equal(wc_rans_table_read(t, 33, &f, &used), -1); /* truncated */
    t[0] = 3;
    wc_wr16(t + 32, 4096);
    wc_wr16(t + 34, 0);
    assert_int_equal(wc_rans_table_read(t, sizeof t, &f, &used), -1); /* zero freq */
}

static void test_corrupt_stream_never_overreads(void **state) {
    (void)state;
    uint32_t s = 99;
    size_t n = 5000;
    uint8_t *sym = malloc(n), *dec = malloc(n);
    for (size_t i = 0; i < n; i++) sym[i] = (uint8_t)(rng(&s) % 17);
    uint64_t hist[256] = {0};
    for (size_t i = 0; i < n; i++) hist[sym[i]]++;
    wc_rans_freqs f;
    wc_rans_normalize(hist, &f);
    uint32_t lut[WC_RANS_PROB_SCALE];
    wc_rans_build_lut(&f, lut);
    uint8_t *enc = malloc(wc_rans_stream_bound(n));
    size_t len = wc_rans_encode_stream(&f, sym, n, enc);
    int detected = 0;
    for (size_t k = 0; k < len; k += 7) {
        uint8_t *copy = malloc(len); /* exact size: ASan catches any over-read */
        memcpy(copy, enc, len);
        copy[k] ^= 0x5A;
        int rc = wc_rans_decode_stream(lut, copy, len, dec, n);
        detected += rc != 0 || memcmp(dec, sym, n) != 0;
        free(copy);
    }
    assert_true(detected > 0);
    free(enc);
    free(sym);
    free(dec);
}

/* A plane of a tile: several streams decoded together (two at a time on AVX-512), with uneven
 * lengths so that one stream runs out of fast rounds before the other. */
static void test_streams_decoded_together(void **state) {
    (void)state;
    static const size_t lens[][3] = {{WC_RANS_STREAM_SYMBOLS, WC_RANS_STREAM_SYMBOLS, 1000},
                                     {5000, 70, 0},
                                     {33, WC_RANS_STREAM_SYMBOLS, 0}};
    uint32_t s = 4242;
    uint32_t *lut = malloc(WC_RANS_PROB_SCALE * 4);
    for (size_t c = 0; c < sizeof lens / sizeof *lens; c++) {
        unsigned count = lens[c][2] ? 3 : 2;
        uint8_t *sym[3], *enc[3], *dec[3];
        const uint8_t *src[3];
        size_t len[3], n[3];
        uint64_t hist[256] = {0};
        for (unsigned k = 0; k < count; k++) {
            n[k] = lens[c][k];
            sym[k] = malloc(n[k]);
            for (size_t i = 0; i < n[k]; i++) sym[k][i] = (uint8_t)(100 + rng(&s) % 9 + (rng(&s) % 97 == 0) * 50);
            for (size_t i = 0; i < n[k]; i++) hist[sym[k][i]]++;
        }
        wc_rans_freqs f;
        wc_rans_normalize(hist, &f);
        wc_rans_build_lut(&f, lut);
        for (unsigned k = 0; k < count; k++) {
            enc[k] = malloc(wc_rans_stream_bound(n[k]));
            len[k] = wc_rans_encode_stream(&f, sym[k], n[k], enc[k]);
            src[k] = enc[k];
            dec[k] = malloc(n[k] + 1);
        }
        for (int path = 0; path <= 2; path++) {
            if (wc_rans_force_path(path) != 0) continue;
            for (unsigned k = 0; k < count; k++) memset(dec[k], 0, n[k]);
            assert_int_equal(wc_rans_decode_streams(lut, count, src, len, dec, n, NULL), 0);
            for (unsigned k = 0; k < count; k++) assert_memory_equal(dec[k], sym[k], n[k]);
        }
        wc_rans_force_path(-1);
        for (unsigned k = 0; k < count; k++) free(sym[k]), free(enc[k]), free(dec[k]);
    }
    free(lut);
}

/* Streams decoded straight into 2-byte elements (wc_rans_fuse16) give the bytes that decoding
 * the plane and merging it with the raw plane gives, on every decoder path, for either plane
 * coded, rotated or not, and lengths that end inside a round. */
static void test_streams_fused_into_elements(void **state) {
    (void)state;
    static const size_t lens[] = {WC_RANS_STREAM_SYMBOLS, 4999, 33};
    enum { COUNT = 3 };
    uint32_t s = 99;
    uint32_t *lut = malloc(WC_RANS_PROB_SCALE * 4);
    uint8_t *sym[COUNT], *enc[COUNT], *rawp[COUNT], *want[COUNT], *got[COUNT];
    const uint8_t *src[COUNT], *raw[COUNT];
    size_t len[COUNT], n[COUNT];
    uint64_t hist[256] = {0};
    for (unsigned k = 0; k < COUNT; k++) {
        n[k] = lens[k];
        sym[k] = malloc(n[k]);
        rawp[k] = malloc(n[k]);
        for (size_t i = 0; i < n[k]; i++) {
            sym[k][i] = (uint8_t)(120 + rng(&s) % 7 + (rng(&s) % 61 == 0) * 90);
            rawp[k][i] = (uint8_t)rng(&s);
            hist[sym[k][i]]++;
        }
        raw[k] = rawp[k];
    }
    wc_rans_freqs f;
    wc_rans_normalize(hist, &f);
    wc_rans_build_lut(&f, lut);
    for (unsigned k = 0; k < COUNT; k++) {
        enc[k] = malloc(wc_rans_stream_bound(n[k]));
        len[k] = wc_rans_encode_stream(&f, sym[k], n[k], enc[k]);
        src[k] = enc[k];
        want[k] = malloc(2 * n[k]);
        got[k] = malloc(2 * n[k]);
    }
    for (unsigned plane = 0; plane < 2; plane++) {
        for (int rot = 0; rot < 2; rot++) {
            wc_dtype d = rot ? WC_DTYPE_BF16 : WC_DTYPE_U16;
            for (unsigned k = 0; k < COUNT; k++) {
                const uint8_t *pp[2] = {plane ? raw[k] : sym[k], plane ? sym[k] : raw[k]};
                wc_planes_merge(d, pp, n[k], want[k]);
            }
            wc_rans_fuse16 fuse = {raw, plane, rot};
            for (int path = 0; path <= 2; path++) {
                if (wc_rans_force_path(path) != 0) continue;
                for (unsigned k = 0; k < COUNT; k++) memset(got[k], 0xEE, 2 * n[k]);
                assert_int_equal(wc_rans_decode_streams(lut, COUNT, src, len, got, n, &fuse), 0);
                for (unsigned k = 0; k < COUNT; k++) assert_memory_equal(got[k], want[k], 2 * n[k]);
            }
            wc_rans_force_path(-1);
        }
    }
    for (unsigned k = 0; k < COUNT; k++) free(sym[k]), free(rawp[k]), free(enc[k]), free(want[k]), free(got[k]);
    free(lut);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uniform),
        cmocka_unit_test(test_skewed),
        cmocka_unit_test(test_one_symbol),
        cmocka_unit_test(test_rare_symbols_keep_nonzero_freq),
        cmocka_unit_test(test_bad_tables_refused),
        cmocka_unit_test(test_corrupt_stream_never_overreads),
        cmocka_unit_test(test_streams_decoded_together),
        cmocka_unit_test(test_streams_fused_into_elements),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
