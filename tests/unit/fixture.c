/* fixture.c - see fixture.h. */
#define _GNU_SOURCE
#include "fixture.h"

#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "wcodec.h"

int fx_write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int rc = fwrite(p, 1, n, f) == n ? 0 : -1;
    return fclose(f) == 0 ? rc : -1;
}

uint8_t *fx_read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(len > 0 ? (size_t)len : 1);
    if (buf && fread(buf, 1, (size_t)len, f) != (size_t)len) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *n = (size_t)len;
    return buf;
}

int fx_write_safetensors(const char *path, const fx_tensor *ts, size_t n, const fx_layout *lay) {
    static const fx_layout none = {0};
    if (!lay) lay = &none;
    const char *sp = lay->compact ? "" : " ";
    size_t cap = 4096 + n * 512;
    char *json = malloc(cap);
    size_t pos = 0;
    pos += (size_t)snprintf(json + pos, cap - pos, "{");
    if (lay->metadata)
        pos += (size_t)snprintf(json + pos, cap - pos, "\"__metadata__\":%s%s%s", sp, lay->metadata,
                                n ? "," : "");
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        pos += (size_t)snprintf(json + pos, cap - pos, "%s\"%s\":%s{\"dtype\":%s\"%s\",%s\"shape\":%s[",
                                i ? "," : "", ts[i].name, sp, sp, ts[i].dtype, sp, sp);
        for (uint32_t d = 0; d < ts[i].ndim; d++)
            pos += (size_t)snprintf(json + pos, cap - pos, "%s%llu", d ? "," : "",
                                    (unsigned long long)ts[i].shape[d]);
        pos += (size_t)snprintf(json + pos, cap - pos, "],%s\"data_offsets\":%s[%llu,%s%llu]}", sp, sp,
                                (unsigned long long)off, sp, (unsigned long long)(off + ts[i].len));
        off += ts[i].len + (i + 1 < n ? lay->gap : 0);
    }
    pos += (size_t)snprintf(json + pos, cap - pos, "}");
    for (unsigned k = 0; k < lay->pad; k++) json[pos++] = ' ';
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(json);
        return -1;
    }
    uint8_t len8[8];
    for (int k = 0; k < 8; k++) len8[k] = (uint8_t)((uint64_t)pos >> (8 * k));
    fwrite(len8, 1, 8, f);
    fwrite(json, 1, pos, f);
    for (size_t i = 0; i < n; i++) {
        if (ts[i].len) fwrite(ts[i].data, 1, ts[i].len, f);
        for (size_t g = 0; i + 1 < n && g < lay->gap; g++) fputc(0xEE, f);
    }
    for (size_t g = 0; g < lay->tail; g++) fputc(0xDD, f);
    free(json);
    return fclose(f) == 0 ? 0 : -1;
}

static uint32_t rng_next(uint32_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static double gauss(uint32_t *s) {
    double u = (rng_next(s) + 1.0) / 4294967297.0, v = (rng_next(s) + 1.0) / 4294967297.0;
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

static uint16_t f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    int32_t e = (int32_t)((x >> 23) & 0xFF) - 127 + 15;
    uint32_t m = x & 0x7FFFFF;
    if (e <= 0) return (uint16_t)sign; /* flush tiny values to zero: fine for fixtures */
    if (e >= 31) return (uint16_t)(sign | 0x7C00);
    return (uint16_t)(sign | (uint32_t)e << 10 | m >> 13);
}

void fx_fill(const char *dtype, uint8_t *dst, size_t n, uint32_t seed) {
    uint32_t s = seed * 2654435761u + 12345;
    if (!s) s = 1;
    wc_dtype d = wc_dtype_from_name(dtype);
    unsigned w = wc_dtype_width(d);
    for (size_t i = 0; i < n; i++) {
        double g = gauss(&s) * 0.02;
        float f = (float)g;
        uint32_t fb;
        memcpy(&fb, &f, 4);
        switch (d) {
        case WC_DTYPE_BF16: { uint16_t v = (uint16_t)(fb >> 16); memcpy(dst + 2 * i, &v, 2); break; }
        case WC_DTYPE_F16: { uint16_t v = f32_to_f16(f); memcpy(dst + 2 * i, &v, 2); break; }
        case WC_DTYPE_F32: memcpy(dst + 4 * i, &f, 4); break;
        case WC_DTYPE_F64: memcpy(dst + 8 * i, &g, 8); break;
        case WC_DTYPE_BOOL: dst[i] = (rng_next(&s) & 7) == 0; break;
        case WC_DTYPE_F8_E4M3: case WC_DTYPE_F8_E5M2: dst[i] = (uint8_t)((fb >> 24 & 0x80) | (rng_next(&s) % 24 + 32)); break;
        default: {
            int64_t v = (int64_t)llround(g * 2000);
            if (w == 0) { dst[i] = (uint8_t)rng_next(&s); break; }
            for (unsigned k = 0; k < w; k++) dst[w * i + k] = (uint8_t)((uint64_t)v >> (8 * k));
        }
        }
    }
}

char *fx_tmpdir(void) {
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char *p;
    if (asprintf(&p, "%s/wctest.XXXXXX", base) < 0) return NULL;
    if (!mkdtemp(p)) {
        free(p);
        return NULL;
    }
    return p;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

void fx_rmtree(const char *dir) {
    if (dir) nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int fx_same_file(const char *a, const char *b) {
    size_t na, nb;
    uint8_t *pa = fx_read_file(a, &na), *pb = fx_read_file(b, &nb);
    int same = pa && pb && na == nb && memcmp(pa, pb, na) == 0;
    free(pa);
    free(pb);
    return same;
}

const char *fx_shared_data(void) {
    static char path[4096];
    const char *env = getenv("WCODEC_SHARED_DATA");
    snprintf(path, sizeof path, "%s", env ? env : WC_SOURCE_DIR "/../shared/data");
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode) ? path : NULL;
}
