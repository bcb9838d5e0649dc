/* cf12.c - the compute format of BF16 matrices on the CPU: the reference packer and unpacker
 * (docs/FORMAT.md, "cf12"; the GPU's twins are in cuda/cf12_pack.cu and must match byte for byte). */
#include <string.h>

#include "wcodec.h"

#define BR WC_CF12_BLOCK_ROWS
#define BC WC_CF12_BLOCK_COLS

/* Where weight i (0..31) of lane L sits in its block: the A fragments of four m16n8k16 products,
 * k permuted so that the lane's 16 columns are contiguous (and so are its activations). */
static void slot_place(unsigned lane, unsigned i, unsigned *r, unsigned *c) {
    unsigned g = lane >> 2, t = lane & 3, p = i >> 1, h = i & 1, j = p >> 2, q = p & 3;
    *r = g + 8 * (q & 1);
    *c = t * 16 + j * 4 + (q >> 1) * 2 + h;
}

/* Byte of the body (within its block) holding slot (L, i)'s sign+mantissa, and of its code. */
static unsigned sm_at(unsigned lane, unsigned i) { return (i < 16 ? 0 : 512) + lane * 16 + (i & 15); }
static unsigned code_at(unsigned lane, unsigned i, unsigned *shift) {
    unsigned p = i >> 1, h = i & 1, j = p >> 2, q = p & 3, bit = 4 * q + 16 * h;
    *shift = bit & 7;
    return 1024 + lane * 16 + j * 4 + bit / 8;
}

static unsigned exponent_of(uint16_t v) { return (v >> 7) & 0xff; }
static uint8_t sm_of(uint16_t v) { return (uint8_t)(((v >> 8) & 0x80) | (v & 0x7f)); }

uint64_t wc_cf12_blocks(uint32_t rows, uint32_t cols) {
    return (uint64_t)((rows + BR - 1) / BR) * ((cols + BC - 1) / BC);
}

uint64_t wc_cf12_body_bytes(uint32_t rows, uint32_t cols) {
    return wc_cf12_blocks(rows, cols) * WC_CF12_BLOCK_BYTES;
}

void wc_cf12_histogram(const uint16_t *w, size_t n, uint64_t hist[256]) {
    for (size_t k = 0; k < n; k++) hist[exponent_of(w[k])]++;
}

unsigned wc_cf12_pick_base(const uint64_t hist[256]) {
    unsigned best = 0;
    uint64_t best_n = 0;
    for (unsigned b = 0; b <= 240; b++) {
        uint64_t n = 0;
        for (unsigned e = b + 1; e <= b + 15; e++) n += hist[e];
        if (n > best_n) best = b, best_n = n;
    }
    return best;
}

static int escapes(uint16_t v, unsigned base) {
    unsigned e = exponent_of(v);
    return e <= base || e > base + 15;
}

/* Calls f(row, col, lane, i) for every slot of block (rt, u) inside the matrix, in escape order. */
#define FOR_SLOTS(rt, u, rows, cols, ...)                                            \
    for (unsigned lane = 0; lane < 32; lane++)                                          \
        for (unsigned i = 0; i < 32; i++) {                                             \
            unsigned r_, c_;                                                            \
            slot_place(lane, i, &r_, &c_);                                              \
            uint64_t row = (uint64_t)(rt) * BR + r_, col = (uint64_t)(u) * BC + c_;     \
            int inside = row < (rows) && col < (cols);                                  \
            __VA_ARGS__                                                                 \
        }

uint64_t wc_cf12_offsets(const uint16_t *w, uint32_t rows, uint32_t cols, unsigned base,
                         uint32_t *offsets) {
    uint64_t R = (rows + BR - 1) / BR, U = (cols + BC - 1) / BC, n = 0;
    for (uint64_t rt = 0; rt < R; rt++)
        for (uint64_t u = 0; u < U; u++) {
            offsets[rt * U + u] = (uint32_t)n;
            FOR_SLOTS(rt, u, rows, cols, { n += inside && escapes(w[row * cols + col], base); })
        }
    offsets[R * U] = (uint32_t)n;
    return n;
}

wc_status wc_cf12_pack(const uint16_t *w, uint32_t rows, uint32_t cols, unsigned base,
                       const uint32_t *offsets, uint8_t *body, uint32_t *escapes_out, wc_error *err) {
    if (!rows || !cols || base > 240)
        return wc_error_set(err, WC_ERR_ARG, "cf12: a %ux%u matrix with base %u cannot be packed",
                            rows, cols, base);
    uint64_t R = (rows + BR - 1) / BR, U = (cols + BC - 1) / BC;
    for (uint64_t rt = 0; rt < R; rt++)
        for (uint64_t u = 0; u < U; u++) {
            uint8_t *blk = body + (rt * U + u) * WC_CF12_BLOCK_BYTES;
            uint32_t at = offsets[rt * U + u];
            memset(blk + 1024, 0, 512);
            FOR_SLOTS(rt, u, rows, cols, {
                /* padding: +2^(base+1-127), finite, multiplied by the zeros the kernels load */
                uint16_t v = inside ? w[row * cols + col] : (uint16_t)((base + 1) << 7);
                unsigned shift, code = escapes(v, base) ? 0 : exponent_of(v) - base;
                uint8_t *cp = blk + code_at(lane, i, &shift);
                blk[sm_at(lane, i)] = sm_of(v);
                *cp |= (uint8_t)(code << shift);
                if (!code) escapes_out[at++] = (lane * 32 + i) << 8 | exponent_of(v);
            })
            if (at != offsets[rt * U + u + 1])
                return wc_error_set(err, WC_ERR_ARG, "cf12: offsets were made with another base");
        }
    return WC_OK;
}

wc_status wc_cf12_unpack(const uint8_t *body, const uint32_t *offsets, const uint32_t *escapes_in,
                         uint32_t rows, uint32_t cols, unsigned base, uint16_t *w, wc_error *err) {
    if (!rows || !cols || base > 240)
        return wc_error_set(err, WC_ERR_ARG, "cf12: a %ux%u matrix with base %u", rows, cols, base);
    uint64_t R = (rows + BR - 1) / BR, U = (cols + BC - 1) / BC;
    for (uint64_t rt = 0; rt < R; rt++)
        for (uint64_t u = 0; u < U; u++) {
            const uint8_t *blk = body + (rt * U + u) * WC_CF12_BLOCK_BYTES;
            uint32_t at = offsets[rt * U + u], end = offsets[rt * U + u + 1];
            if (end < at) return wc_error_set(err, WC_ERR_FORMAT, "cf12: escape offsets out of order");
            FOR_SLOTS(rt, u, rows, cols, {
                unsigned shift;
                const uint8_t *cp = blk + code_at(lane, i, &shift);
                unsigned code = *cp >> shift & 15, e = base + code;
                if (!code) {
                    if (at == end || escapes_in[at] >> 8 != lane * 32 + i)
                        return wc_error_set(err, WC_ERR_FORMAT,
                                            "cf12: block %llu has an escape with no patch",
                                            (unsigned long long)(rt * U + u));
                    e = escapes_in[at++] & 0xff;
                }
                uint8_t sm = blk[sm_at(lane, i)];
                if (inside) w[row * cols + col] = (uint16_t)((sm & 0x80) << 8 | e << 7 | (sm & 0x7f));
            })
            if (at != end)
                return wc_error_set(err, WC_ERR_FORMAT, "cf12: block %llu has a patch that is not an escape",
                                    (unsigned long long)(rt * U + u));
        }
    return WC_OK;
}
