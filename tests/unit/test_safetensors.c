/* test_safetensors.c - the header parser: what it accepts, and a named error for each defect. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "common/wc_internal.h"

/* Parses a file made of the 8-byte length, `json`, then `data_len` zero bytes. */
static wc_status parse(const char *json, size_t data_len, wc_st_file *out, wc_error *err) {
    size_t n = strlen(json);
    size_t total = 8 + n + data_len;
    uint8_t *buf = calloc(1, total);
    wc_wr64(buf, n);
    memcpy(buf + 8, json, n);
    memset(err, 0, sizeof *err);
    wc_status st = wc_st_parse(buf, total, total, "x.safetensors", out, err);
    free(buf);
    return st;
}

/* The parse must fail with WC_ERR_SAFETENSORS and a message containing `want`. */
static void expect_error(const char *json, size_t data_len, const char *want) {
    wc_st_file f = {0};
    wc_error err;
    assert_int_equal(parse(json, data_len, &f, &err), WC_ERR_SAFETENSORS);
    if (!strstr(err.msg, want)) fail_msg("message '%s' lacks '%s'", err.msg, want);
    assert_non_null(strstr(err.msg, "x.safetensors"));
}

static void test_valid_with_metadata_and_padding(void **state) {
    (void)state;
    const char *json = "{\"__metadata__\":{\"format\":\"pt\"},"
                       "\"b\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[8,32]},"
                       "\"a\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[0,8]}}      ";
    wc_st_file f = {0};
    wc_error err;
    assert_int_equal(parse(json, 32, &f, &err), WC_OK);
    assert_int_equal(f.n_tensors, 2);
    assert_string_equal(f.tensors[0].name, "a"); /* sorted by offset */
    assert_int_equal(f.tensors[0].dtype, WC_DTYPE_BF16);
    assert_int_equal(f.tensors[0].begin, f.data_start);
    assert_int_equal(f.tensors[1].ndim, 2);
    assert_int_equal(f.tensors[1].shape[1], 3);
    assert_int_equal(f.data_start, 8 + strlen(json));
    wc_st_free(&f);
}

static void test_spacing_scalar_empty_and_unknown_dtype(void **state) {
    (void)state;
    const char *json = "{ \n\t\"s\" : { \"dtype\" : \"I64\" , \"shape\" : [ ] , "
                       "\"data_offsets\" : [ 0 , 8 ] } ,"
                       "\"z\":{\"dtype\":\"F16\",\"shape\":[0,5],\"data_offsets\":[8,8]},"
                       "\"q\":{\"dtype\":\"F4_E2M1\",\"shape\":[7],\"data_offsets\":[8,12]}}";
    wc_st_file f = {0};
    wc_error err;
    assert_int_equal(parse(json, 12, &f, &err), WC_OK);
    assert_int_equal(f.n_tensors, 3);
    int unknown = 0;
    for (size_t i = 0; i < f.n_tensors; i++)
        if (!strcmp(f.tensors[i].name, "q")) {
            unknown = 1;
            assert_int_equal(f.tensors[i].dtype, WC_DTYPE_UNKNOWN);
            assert_string_equal(f.tensors[i].dtype_name, "F4_E2M1");
        }
    assert_true(unknown);
    wc_st_free(&f);
}

static void test_no_tensors(void **state) {
    (void)state;
    wc_st_file f = {0};
    wc_error err;
    assert_int_equal(parse("{}", 0, &f, &err), WC_OK);
    assert_int_equal(f.n_tensors, 0);
    wc_st_free(&f);
}

static void test_header_length_beyond_file(void **state) {
    (void)state;
    uint8_t buf[16] = {0};
    wc_wr64(buf, 1000);
    wc_st_file f = {0};
    wc_error err = {0};
    assert_int_equal(wc_st_parse(buf, sizeof buf, sizeof buf, "x.safetensors", &f, &err),
                     WC_ERR_SAFETENSORS);
    assert_non_null(strstr(err.msg, "beyond the file"));
    assert_int_equal(wc_st_parse(buf, 4, 4, "x.safetensors", &f, &err), WC_ERR_SAFETENSORS);
    assert_non_null(strstr(err.msg, "too short"));
    wc_wr64(buf, UINT64_MAX); /* no overflow in 8 + N */
    assert_int_equal(wc_st_parse(buf, sizeof buf, sizeof buf, "x.safetensors", &f, &err),
                     WC_ERR_SAFETENSORS);
}

static void test_json_errors(void **state) {
    (void)state;
    expect_error("{\"a\":{\"dtype\":\"F32\",", 0, "syntax error");
    expect_error("[1,2,3]", 0, "not an object");
    expect_error("{}  x", 0, "unexpected bytes");
    expect_error("{\"__metadata__\":[1]}", 0, "__metadata__");
    expect_error("{\"a\":[]}", 0, "'a'");
}

static void test_entry_errors(void **state) {
    (void)state;
    expect_error("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "'w': missing or non-string \"dtype\"");
    expect_error("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "'w': missing or non-array \"shape\"");
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "'w': \"data_offsets\"");
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "'w'");
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "'w': shape[0]");
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, "'w': shape[0]");
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4, "'w': shape[0]");
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,-4]}}", 4, "'w': data_offsets");
}

static void test_size_mismatch(void **state) {
    (void)state;
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", 12,
                 "'w': shape and F32 give 16 bytes but data_offsets span 12");
}

static void test_offsets_out_of_file(void **state) {
    (void)state;
    expect_error("{\"w\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[4,12]}}", 8,
                 "'w': data_offsets end 12 is beyond the data area (8 bytes)");
    expect_error("{\"w\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,0]}}", 8,
                 "'w': data_offsets begin 4 > end 0");
}

static void test_overlap(void **state) {
    (void)state;
    expect_error("{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]},"
                 "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[6,10]}}",
                 10, "overlaps");
}

static void test_shape_overflow(void **state) {
    (void)state;
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
                 "\"data_offsets\":[0,4]}}", 4, "'w': shape overflows");
    expect_error("{\"w\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],"
                 "\"data_offsets\":[0,8]}}", 8, "'w'");
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,4]}}", 4, "'w'");
}

static void test_duplicate_name(void **state) {
    (void)state;
    expect_error("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
                 "\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[2,3]},"
                 "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[3,4]}}",
                 4, "'a' appears twice");
}

static void test_too_many_dims(void **state) {
    (void)state;
    char json[512];
    int pos = snprintf(json, sizeof json, "{\"w\":{\"dtype\":\"U8\",\"shape\":[");
    for (int i = 0; i < WC_ST_MAX_DIMS + 1; i++) pos += snprintf(json + pos, sizeof json - (size_t)pos, "%s1", i ? "," : "");
    snprintf(json + pos, sizeof json - (size_t)pos, "],\"data_offsets\":[0,1]}}");
    expect_error(json, 1, "dimensions");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_with_metadata_and_padding),
        cmocka_unit_test(test_spacing_scalar_empty_and_unknown_dtype),
        cmocka_unit_test(test_no_tensors),
        cmocka_unit_test(test_header_length_beyond_file),
        cmocka_unit_test(test_json_errors),
        cmocka_unit_test(test_entry_errors),
        cmocka_unit_test(test_size_mismatch),
        cmocka_unit_test(test_offsets_out_of_file),
        cmocka_unit_test(test_overlap),
        cmocka_unit_test(test_shape_overflow),
        cmocka_unit_test(test_duplicate_name),
        cmocka_unit_test(test_too_many_dims),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
