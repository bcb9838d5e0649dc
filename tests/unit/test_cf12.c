/* test_cf12.c - the compute format (cf12) gives back every bit of a BF16 matrix, puts each weight
 * where the tensor-core fragments want it, and patches exactly the weights outside its window. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "fixture.h"
#include "wcodec.h"

typedef struct {
    uint8_t *body;
    uint32_t *offsets, *escapes;
    uint64_t n_escapes;
    unsigned base;
} packed;

static packed pack(const uint16_t *w, uint32_t rows, uint32_t cols) {
    packed p;
    uint64_t hist[256] = {0};
    wc_cf12_histogram(w, (size_t)rows * cols, hist);
    p.base = wc_cf12_pick_base(hist);
    p.offsets = malloc((wc_cf12_blocks(rows, cols) + 1) * 4);
    p.n_escapes = wc_cf12_offsets(w, rows, cols, p.base, p.offsets);
    p.body = malloc(wc_cf12_body_bytes(rows, cols));
    p.escapes = malloc(p.n_escapes * 4 + 4);
    wc_error err = {0};
    if (wc_cf12_pack(w, rows, cols, p.base, p.offsets, p.body, p.escapes, &err)) fail_msg("%s", err.msg);
    return p;
}

static void unpack_equal(const packed *p, const uint16_t *w, uint32_t rows, uint32_t cols) {
    uint16_t *back = malloc((size_t)rows * cols * 2);
    memset(back, 0xA5, (size_t)rows * cols * 2);
    wc_error err = {0};
    if (wc_cf12_unpack(p->body, p->offsets, p->escapes, rows, cols, p->base, back, &err))
        fail_msg("%s", err.msg);
    assert_memory_equal(back, w, (size_t)rows * cols * 2);
    free(back);
}

static void drop(packed *p) {
    free(p->body);
    free(p->offsets);
    free(p->escapes);
}

/* The escapes a window must patch, counted straight from the exponents. */
static uint64_t outside(const uint16_t *w, size_t n, unsigned base) {
    uint64_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned e = (w[i] >> 7) & 0xff;
        k += e <= base || e > base + 15;
    }
    return k;
}

static void roundtrip(const uint16_t *w, uint32_t rows, uint32_t cols) {
    packed p = pack(w, rows, cols);
    assert_int_equal(p.n_escapes, outside(w, (size_t)rows * cols, p.base));
    unpack_equal(&p, w, rows, cols);
    drop(&p);
}

static uint16_t *gaussian_bf16(uint32_t rows, uint32_t cols, uint32_t seed) {
    uint16_t *w = malloc((size_t)rows * cols * 2);
    fx_fill("BF16", (uint8_t *)w, (size_t)rows * cols, seed);
    return w;
}

static void test_shapes_roundtrip(void **state) {
    (void)state;
    static const uint32_t shapes[][2] = {{1, 1},   {1, 64},  {16, 64}, {17, 65}, {3, 200},
                                         {64, 63}, {33, 130}, {256, 2048}, {1000, 7}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        uint16_t *w = gaussian_bf16(shapes[s][0], shapes[s][1], (uint32_t)s + 1);
        roundtrip(w, shapes[s][0], shapes[s][1]);
        free(w);
    }
}

/* Weight (9, 37) of a block: row 9 = g 1 + 8 (q odd); col 37 = t 2 * 16 + j 1 * 4 + r 0 * 2 + h 1,
 * so lane 6, pair j*4 + q = 5 (q = r*2 + 1), slot 11: its byte at 6*16 + 11 and its code in word j
 * of lane 6's codes, bit 4q + 16h = 20 (m16n8k16's A fragment: a2,a3 are row g+8, cols 2t, 2t+1). */
static void test_layout_is_the_mma_fragment(void **state) {
    (void)state;
    uint16_t w[16 * 64];
    for (int i = 0; i < 16 * 64; i++) w[i] = 0x3c00; /* exponent 120 everywhere */
    w[9 * 64 + 37] = 0xbe15;                          /* sign 1, exponent 124, mantissa 0x15 */
    packed p = pack(w, 16, 64);
    assert_int_equal(p.base, 109); /* the smallest base whose window holds 120 and 124 */
    assert_int_equal(p.body[6 * 16 + 11], 0x80 | 0x15);
    assert_int_equal(p.body[1024 + 6 * 16 + 4 + 2] >> 4, 124 - 109);
    assert_int_equal(p.body[1024 + 6 * 16 + 4 + 2] & 15, 120 - 109); /* slot 10: q 1, h 0 -> bit 4 */
    assert_int_equal(p.n_escapes, 0);
    drop(&p);
}

static void test_all_exponents_equal(void **state) {
    (void)state;
    uint16_t *w = gaussian_bf16(48, 192, 7);
    for (size_t i = 0; i < 48 * 192; i++) w[i] = (uint16_t)((w[i] & 0x807f) | 127 << 7);
    packed p = pack(w, 48, 192);
    assert_int_equal(p.n_escapes, 0);
    assert_int_equal(p.base, 112); /* 127 is the window's last place: the smallest base holding it */
    unpack_equal(&p, w, 48, 192);
    drop(&p);
    free(w);
}

/* Every one of the 65536 BF16 patterns (NaNs, infinities, zeros, subnormals), in odd shapes. */
static void test_every_bf16_value(void **state) {
    (void)state;
    uint16_t *w = malloc(65536 * 2);
    for (uint32_t i = 0; i < 65536; i++) w[i] = (uint16_t)(i * 40503u); /* a permutation */
    roundtrip(w, 256, 256);
    roundtrip(w, 1024, 64);
    roundtrip(w, 65536, 1);
    roundtrip(w, 97, 675); /* 65475 of them, K not a multiple of the block */
    free(w);
}

static void test_escapes_on_every_row_and_a_row_of_escapes(void **state) {
    (void)state;
    const uint32_t rows = 40, cols = 300;
    uint16_t *w = gaussian_bf16(rows, cols, 11);
    for (uint32_t r = 0; r < rows; r++) w[r * cols + (r * 7) % cols] = (r & 1) ? 0x0000 : 0xff80; /* 0, -inf */
    for (uint32_t c = 0; c < cols; c++) w[21 * cols + c] = (uint16_t)(c & 1 ? 0x0001 : 0x7fc0); /* subnormal, NaN */
    packed p = pack(w, rows, cols);
    assert_true(p.n_escapes >= rows + cols - 1);
    assert_int_equal(p.n_escapes, outside(w, (size_t)rows * cols, p.base));
    unpack_equal(&p, w, rows, cols);
    drop(&p);
    free(w);
}

/* Damaged arrays are refused, never turned into other weights. */
static void test_inconsistent_arrays_refused(void **state) {
    (void)state;
    const uint32_t rows = 20, cols = 70;
    uint16_t *w = gaussian_bf16(rows, cols, 3), *back = malloc(rows * cols * 2);
    w[5] = 0; /* one escape */
    packed p = pack(w, rows, cols);
    assert_int_equal(p.n_escapes, outside(w, rows * cols, p.base));
    wc_error err = {0};
    uint32_t saved = p.escapes[0];
    p.escapes[0] += 1 << 8; /* the patch names another slot */
    assert_int_equal(wc_cf12_unpack(p.body, p.offsets, p.escapes, rows, cols, p.base, back, &err), WC_ERR_FORMAT);
    p.escapes[0] = saved;
    uint32_t end = p.offsets[wc_cf12_blocks(rows, cols)];
    p.offsets[wc_cf12_blocks(rows, cols)] = end + 1; /* a patch too many */
    p.escapes[end] = 0;
    assert_int_equal(wc_cf12_unpack(p.body, p.offsets, p.escapes, rows, cols, p.base, back, &err), WC_ERR_FORMAT);
    assert_int_equal(wc_cf12_pack(w, 0, cols, p.base, p.offsets, p.body, p.escapes, &err), WC_ERR_ARG);
    assert_int_equal(wc_cf12_pack(w, rows, cols, 241, p.offsets, p.body, p.escapes, &err), WC_ERR_ARG);
    drop(&p);
    free(w);
    free(back);
}

/* The decoder's bytes: every 2-D BF16 tensor of a container (a fixture, and the real weights in
 * ../shared/data when present) read back through wc_container_read_range, then packed. */
static void pack_container_tensors(const char *src, const char *tmp, int *matrices) {
    char *wc;
    assert_true(asprintf(&wc, "%s/t.wcodec", tmp) > 0);
    wc_error err = {0};
    wc_encode_opts o = {.threads = 2, .overwrite = 1};
    if (wc_encode_file(src, wc, &o, &err) != WC_OK) fail_msg("%s", err.msg);
    size_t n;
    uint8_t *file = fx_read_file(src, &n);
    wc_st_file st;
    if (wc_st_parse(file, n, n, src, &st, &err) != WC_OK) fail_msg("%s", err.msg);
    wc_container *c;
    if (wc_container_open(wc, &c, &err) != WC_OK) fail_msg("%s", err.msg);
    for (size_t k = 0; k < st.n_tensors; k++) {
        const wc_st_tensor *t = &st.tensors[k];
        if (t->dtype != WC_DTYPE_BF16 || t->ndim != 2 || !t->shape[0] || !t->shape[1]) continue;
        uint32_t rows = (uint32_t)t->shape[0], cols = (uint32_t)t->shape[1];
        uint16_t *w = malloc((size_t)rows * cols * 2);
        if (wc_container_read_range(c, t->begin, (size_t)rows * cols * 2, (uint8_t *)w, &err) != WC_OK)
            fail_msg("%s", err.msg);
        assert_memory_equal(w, file + t->begin, (size_t)rows * cols * 2);
        roundtrip(w, rows, cols);
        free(w);
        ++*matrices;
    }
    wc_st_free(&st);
    free(file);
    wc_container_close(c);
    free(wc);
}

static void test_container_tensors(void **state) {
    (void)state;
    char *tmp = fx_tmpdir(), *src, *real;
    assert_true(asprintf(&src, "%s/m.safetensors", tmp) > 0);
    static uint8_t a[300 * 130 * 2], b[64 * 4096 * 2];
    fx_fill("BF16", a, 300 * 130, 5);
    fx_fill("BF16", b, 64 * 4096, 6);
    fx_tensor ts[] = {{"a", "BF16", 2, {300, 130}, a, sizeof a}, {"b", "BF16", 2, {64, 4096}, b, sizeof b}};
    assert_int_equal(fx_write_safetensors(src, ts, 2, NULL), 0);
    int matrices = 0;
    pack_container_tensors(src, tmp, &matrices);
    assert_int_equal(matrices, 2);
    const char *data = fx_shared_data();
    if (data) {
        assert_true(asprintf(&real, "%s/use-lite.bf16.safetensors", data) > 0);
        FILE *f = fopen(real, "rb");
        if (f) {
            fclose(f);
            pack_container_tensors(real, tmp, &matrices);
            assert_true(matrices > 2);
        }
        free(real);
    }
    fx_rmtree(tmp);
    free(src);
    free(tmp);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shapes_roundtrip),
        cmocka_unit_test(test_layout_is_the_mma_fragment),
        cmocka_unit_test(test_all_exponents_equal),
        cmocka_unit_test(test_every_bf16_value),
        cmocka_unit_test(test_escapes_on_every_row_and_a_row_of_escapes),
        cmocka_unit_test(test_inconsistent_arrays_refused),
        cmocka_unit_test(test_container_tensors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
