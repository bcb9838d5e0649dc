/* test_planes.c - the dtype transform is a bijection, and puts the exponent where we say. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <cmocka.h>

#include "common/wc_internal.h"

static void test_every_dtype_roundtrips(void **state) {
    (void)state;
    const size_t n = 1001;
    for (int d = 0; d < WC_DTYPE_COUNT; d++) {
        unsigned w = wc_plane_count((wc_dtype)d);
        uint8_t *src = malloc(n * w), *planes = malloc(n * w), *back = malloc(n * w);
        uint32_t s = 12345u + (uint32_t)d;
        for (size_t i = 0; i < n * w; i++) {
            s = s * 1103515245u + 12345u;
            src[i] = (uint8_t)(s >> 16);
        }
        wc_planes_split((wc_dtype)d, src, n, planes);
        const uint8_t *pp[WC_MAX_PLANES];
        for (unsigned k = 0; k < w; k++) pp[k] = planes + k * n;
        wc_planes_merge((wc_dtype)d, pp, n, back);
        assert_memory_equal(src, back, n * w);
        free(src);
        free(planes);
        free(back);
    }
}

static void test_bf16_top_plane_is_exponent(void **state) {
    (void)state;
    /* -1.5 in BF16: sign 1, exponent 127, mantissa 0x40 */
    uint8_t v[2] = {0xC0, 0xBF};
    uint8_t planes[2];
    wc_planes_split(WC_DTYPE_BF16, v, 1, planes);
    assert_int_equal(planes[1], 127);             /* exponent */
    assert_int_equal(planes[0], (0x40 << 1) | 1); /* mantissa then sign */
}

static void test_f32_top_plane_is_exponent(void **state) {
    (void)state;
    float f = -0.375f; /* exponent 125 */
    uint8_t planes[4];
    wc_planes_split(WC_DTYPE_F32, (const uint8_t *)&f, 1, planes);
    assert_int_equal(planes[3], 125);
    assert_int_equal(planes[0] & 1, 1); /* the sign, now the lowest bit */
}

static void test_dtype_names(void **state) {
    (void)state;
    static const char *names[] = {"BOOL", "U8",  "I8",  "I16", "U16",  "I32",     "U32",
                                  "I64",  "U64", "F16", "BF16", "F32", "F64", "F8_E4M3",
                                  "F8_E5M2"};
    static const unsigned widths[] = {1, 1, 1, 2, 2, 4, 4, 8, 8, 2, 2, 4, 8, 1, 1};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        wc_dtype d = wc_dtype_from_name(names[i]);
        assert_int_not_equal(d, WC_DTYPE_UNKNOWN);
        assert_string_equal(wc_dtype_name(d), names[i]);
        assert_int_equal(wc_dtype_width(d), widths[i]);
    }
    assert_int_equal(wc_dtype_from_name("F4_E2M1"), WC_DTYPE_UNKNOWN);
    assert_int_equal(wc_dtype_width(WC_DTYPE_UNKNOWN), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_dtype_roundtrips),
        cmocka_unit_test(test_bf16_top_plane_is_exponent),
        cmocka_unit_test(test_f32_top_plane_is_exponent),
        cmocka_unit_test(test_dtype_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
