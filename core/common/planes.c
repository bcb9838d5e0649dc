/* planes.c - the dtype transform: elements <-> byte planes.
 *
 * An element of width w becomes w byte planes, plane k holding byte k (little-endian) of each
 * element. Floating-point elements are first rotated left by one bit, so that the sign moves
 * to the lowest bit and the exponent fills the top byte whole: for BF16 and F32 plane w-1 is
 * then exactly the exponent, the plane with low entropy (about 2.7 bits of 8 on real weights),
 * and the other planes hold sign and mantissa, which are close to random. One rule serves every
 * width, and the CUDA decoder applies the same inverse.
 */
#include "wc_internal.h"

static int is_rotated_float(wc_dtype d) {
    return d == WC_DTYPE_F16 || d == WC_DTYPE_BF16 || d == WC_DTYPE_F32 || d == WC_DTYPE_F64;
}

unsigned wc_plane_count(wc_dtype d) {
    unsigned w = wc_dtype_width(d);
    return w ? w : 1;
}

void wc_planes_split(wc_dtype d, const uint8_t *src, size_t n, uint8_t *planes) {
    unsigned w = wc_plane_count(d);
    int rot = is_rotated_float(d);
    if (w == 1) {
        memcpy(planes, src, n);
    } else if (w == 2) {
        for (size_t i = 0; i < n; i++) {
            uint16_t v = wc_rd16(src + 2 * i);
            if (rot) v = (uint16_t)(v << 1 | v >> 15);
            planes[i] = (uint8_t)v;
            planes[n + i] = (uint8_t)(v >> 8);
        }
    } else if (w == 4) {
        for (size_t i = 0; i < n; i++) {
            uint32_t v = wc_rd32(src + 4 * i);
            if (rot) v = v << 1 | v >> 31;
            for (unsigned k = 0; k < 4; k++) planes[k * n + i] = (uint8_t)(v >> (8 * k));
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            uint64_t v = wc_rd64(src + 8 * i);
            if (rot) v = v << 1 | v >> 63;
            for (unsigned k = 0; k < 8; k++) planes[k * n + i] = (uint8_t)(v >> (8 * k));
        }
    }
}

void wc_planes_merge(wc_dtype d, const uint8_t *const *pp, size_t n, uint8_t *dst) {
    unsigned w = wc_plane_count(d);
    int rot = is_rotated_float(d);
    if (w == 1) {
        if (pp[0] != dst) memcpy(dst, pp[0], n);
    } else if (w == 2) {
        const uint8_t *p0 = pp[0], *p1 = pp[1];
        if (rot) {
            for (size_t i = 0; i < n; i++) {
                uint16_t v = (uint16_t)(p0[i] | p1[i] << 8);
                v = (uint16_t)(v >> 1 | v << 15);
                memcpy(dst + 2 * i, &v, 2);
            }
        } else {
            for (size_t i = 0; i < n; i++) {
                uint16_t v = (uint16_t)(p0[i] | p1[i] << 8);
                memcpy(dst + 2 * i, &v, 2);
            }
        }
    } else if (w == 4) {
        const uint8_t *p0 = pp[0], *p1 = pp[1], *p2 = pp[2], *p3 = pp[3];
        for (size_t i = 0; i < n; i++) {
            uint32_t v = (uint32_t)p0[i] | (uint32_t)p1[i] << 8 | (uint32_t)p2[i] << 16 |
                         (uint32_t)p3[i] << 24;
            if (rot) v = v >> 1 | v << 31;
            memcpy(dst + 4 * i, &v, 4);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            uint64_t v = 0;
            for (unsigned k = 0; k < 8; k++) v |= (uint64_t)pp[k][i] << (8 * k);
            if (rot) v = v >> 1 | v << 63;
            wc_wr64(dst + 8 * i, v);
        }
    }
}
