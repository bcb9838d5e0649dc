/* error.c - status names and error messages. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "wc_internal.h"

const char *wc_status_str(wc_status s) {
    switch (s) {
    case WC_OK: return "ok";
    case WC_ERR_IO: return "I/O error";
    case WC_ERR_NOMEM: return "out of memory";
    case WC_ERR_SAFETENSORS: return "invalid safetensors file";
    case WC_ERR_FORMAT: return "malformed container";
    case WC_ERR_CHECKSUM: return "checksum mismatch";
    case WC_ERR_VERSION: return "unsupported container version";
    case WC_ERR_ARG: return "invalid argument";
    case WC_ERR_CANCELLED: return "cancelled";
    case WC_ERR_MISMATCH: return "content mismatch";
    case WC_ERR_EXISTS: return "file exists";
    }
    return "unknown error";
}

wc_status wc_error_set(wc_error *err, wc_status code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

int wc_parse_size(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *s == '-') return -1;
    unsigned shift = 0;
    if (*end == 'K' || *end == 'k') shift = 10, end++;
    else if (*end == 'M' || *end == 'm') shift = 20, end++;
    else if (*end == 'G' || *end == 'g') shift = 30, end++;
    if (*end == 'i' && shift) end++;
    if (*end == 'B' && shift) end++;
    if (*end || v > (UINT64_MAX >> shift)) return -1;
    *out = (uint64_t)v << shift;
    return 0;
}
