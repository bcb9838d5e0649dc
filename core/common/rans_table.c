/* rans_table.c - rANS frequency tables: quantizing, serializing, decode tables, cost. */
#include <math.h>

#include "wc_internal.h"

void wc_rans_normalize(const uint64_t hist[256], wc_rans_freqs *out) {
    uint64_t total = 0;
    for (int s = 0; s < 256; s++) total += hist[s];
    int32_t f[256];
    int32_t sum = 0;
    for (int s = 0; s < 256; s++) {
        f[s] = 0;
        if (!hist[s]) continue;
        uint64_t q = (uint64_t)((double)hist[s] * WC_RANS_PROB_SCALE / (double)total);
        f[s] = q ? (int32_t)q : 1;
        sum += f[s];
    }
    /* Fix the sum one unit at a time, each time where it costs the fewest coded bits. */
    while (sum != (int32_t)WC_RANS_PROB_SCALE) {
        int best = -1;
        double best_v = 0;
        for (int s = 0; s < 256; s++) {
            if (!hist[s]) continue;
            double v;
            if (sum < (int32_t)WC_RANS_PROB_SCALE) { /* gain of f+1 */
                v = (double)hist[s] * log2((f[s] + 1.0) / f[s]);
                if (best < 0 || v > best_v) best = s, best_v = v;
            } else if (f[s] > 1) { /* loss of f-1 */
                v = (double)hist[s] * log2((double)f[s] / (f[s] - 1.0));
                if (best < 0 || v < best_v) best = s, best_v = v;
            }
        }
        if (sum < (int32_t)WC_RANS_PROB_SCALE) f[best]++, sum++;
        else f[best]--, sum--;
    }
    for (int s = 0; s < 256; s++) out->freq[s] = (uint16_t)f[s];
}

static unsigned present_count(const wc_rans_freqs *f) {
    unsigned n = 0;
    for (int s = 0; s < 256; s++) n += f->freq[s] != 0;
    return n;
}

size_t wc_rans_table_size(const wc_rans_freqs *f) {
    return (size_t)wc_align_up(32 + 2 * present_count(f), 8);
}

void wc_rans_table_write(const wc_rans_freqs *f, uint8_t *dst) {
    size_t size = wc_rans_table_size(f);
    memset(dst, 0, size);
    uint8_t *p = dst + 32;
    for (int s = 0; s < 256; s++) {
        if (!f->freq[s]) continue;
        dst[s >> 3] |= (uint8_t)(1u << (s & 7));
        wc_wr16(p, f->freq[s]);
        p += 2;
    }
}

int wc_rans_table_read(const uint8_t *src, size_t avail, wc_rans_freqs *out, size_t *consumed) {
    if (avail < 32) return -1;
    unsigned n = 0;
    for (int s = 0; s < 256; s++) n += (src[s >> 3] >> (s & 7)) & 1;
    size_t size = (size_t)wc_align_up(32 + 2 * n, 8);
    if (n == 0 || size > avail) return -1;
    const uint8_t *p = src + 32;
    uint32_t sum = 0;
    for (int s = 0; s < 256; s++) {
        out->freq[s] = 0;
        if (!((src[s >> 3] >> (s & 7)) & 1)) continue;
        uint16_t v = wc_rd16(p);
        p += 2;
        if (v == 0 || v > WC_RANS_PROB_SCALE) return -1;
        out->freq[s] = v;
        sum += v;
    }
    if (sum != WC_RANS_PROB_SCALE) return -1;
    *consumed = size;
    return 0;
}

void wc_rans_build_lut(const wc_rans_freqs *f, uint32_t lut[WC_RANS_PROB_SCALE]) {
    uint32_t cum = 0;
    for (uint32_t s = 0; s < 256; s++) {
        uint32_t fr = f->freq[s];
        for (uint32_t k = 0; k < fr; k++) lut[cum + k] = s | (fr - 1) << 8 | k << 20;
        cum += fr;
    }
}

uint64_t wc_rans_cost(const uint64_t hist[256], const wc_rans_freqs *f, uint64_t nsym) {
    double bits = 0;
    for (int s = 0; s < 256; s++)
        if (hist[s]) bits += (double)hist[s] * (WC_RANS_PROB_BITS - log2((double)f->freq[s]));
    uint64_t streams = (nsym + WC_RANS_STREAM_SYMBOLS - 1) / WC_RANS_STREAM_SYMBOLS;
    return (uint64_t)(bits / 8) + streams * (WC_RANS_STATE_BYTES + 6) + wc_rans_table_size(f);
}
