/* dtype.c - safetensors dtype names and element widths. */
#include "wc_internal.h"

static const struct {
    const char *name;
    unsigned width;
} dtype_table[WC_DTYPE_COUNT] = {
    [WC_DTYPE_UNKNOWN] = {"?", 0},     [WC_DTYPE_BOOL] = {"BOOL", 1},
    [WC_DTYPE_U8] = {"U8", 1},         [WC_DTYPE_I8] = {"I8", 1},
    [WC_DTYPE_I16] = {"I16", 2},       [WC_DTYPE_U16] = {"U16", 2},
    [WC_DTYPE_I32] = {"I32", 4},       [WC_DTYPE_U32] = {"U32", 4},
    [WC_DTYPE_I64] = {"I64", 8},       [WC_DTYPE_U64] = {"U64", 8},
    [WC_DTYPE_F16] = {"F16", 2},       [WC_DTYPE_BF16] = {"BF16", 2},
    [WC_DTYPE_F32] = {"F32", 4},       [WC_DTYPE_F64] = {"F64", 8},
    [WC_DTYPE_F8_E4M3] = {"F8_E4M3", 1}, [WC_DTYPE_F8_E5M2] = {"F8_E5M2", 1},
};

wc_dtype wc_dtype_from_name(const char *name) {
    for (int d = 1; d < WC_DTYPE_COUNT; d++)
        if (strcmp(name, dtype_table[d].name) == 0) return (wc_dtype)d;
    return WC_DTYPE_UNKNOWN;
}

const char *wc_dtype_name(wc_dtype d) {
    return (unsigned)d < WC_DTYPE_COUNT ? dtype_table[d].name : "?";
}

unsigned wc_dtype_width(wc_dtype d) {
    return (unsigned)d < WC_DTYPE_COUNT ? dtype_table[d].width : 0;
}
