/* rans_encode.c - static rANS encoder, 32 interleaved states per stream.
 *
 * Symbol i belongs to state i % 32. The decoder walks symbols forward and, after each symbol,
 * a state that fell below L reads the next 16-bit word; so the encoder walks symbols backward
 * and pushes words onto a stack, which then reads forward in exactly the decoder's order. A
 * CUDA warp decodes the same stream with one state per lane: in each round of 32 symbols the
 * lanes that need a word take them in lane order (ballot + popcount).
 */
#include "../common/wc_internal.h"

/* Division by a frequency, done as a multiply: m = ceil(2^(32+k) / f) with 2^k >= f gives
 * floor(x / f) == (x * m) >> (32 + k) exactly for every 32-bit x (the error m*f - 2^(32+k) is
 * below f <= 2^k). m needs 33 bits, so the product is taken in 128 bits. */
typedef struct {
    uint64_t rcp;
    uint32_t shift, freq, cum;
    uint64_t x_max;
} enc_symbol;

static void enc_symbols_init(const wc_rans_freqs *f, enc_symbol *es) {
    uint32_t cum = 0;
    for (int s = 0; s < 256; s++) {
        uint32_t fr = f->freq[s], k = 0;
        while ((1u << k) < fr) k++;
        es[s].freq = fr;
        es[s].cum = cum;
        es[s].shift = 32 + k;
        es[s].rcp = fr ? (((uint64_t)1 << (32 + k)) + fr - 1) / fr : 0;
        es[s].x_max = (uint64_t)fr << (32 - WC_RANS_PROB_BITS); /* ((L >> bits) << 16) * fr */
        cum += fr;
    }
}

size_t wc_rans_encode_stream(const wc_rans_freqs *f, const uint8_t *sym, size_t n, uint8_t *dst) {
    enc_symbol es[256];
    enc_symbols_init(f, es);

    uint32_t x[WC_RANS_LANES];
    for (unsigned j = 0; j < WC_RANS_LANES; j++) x[j] = WC_RANS_L;

    /* Words grow down from the end of the bound, then move up behind the states. A word is
     * stored on every symbol and kept only when needed: no unpredictable branch. */
    uint8_t *top = dst + wc_rans_stream_bound(n);
    uint8_t *w = top;
    for (size_t i = n; i-- > 0;) {
        const enc_symbol *e = &es[sym[i]];
        uint32_t xs = x[i % WC_RANS_LANES];
        uint32_t need = xs >= e->x_max;
        wc_wr16(w - 2, (uint16_t)xs);
        w -= 2 * need;
        xs >>= 16 * need;
        uint32_t q = (uint32_t)(((unsigned __int128)xs * e->rcp) >> e->shift);
        x[i % WC_RANS_LANES] = (q << WC_RANS_PROB_BITS) + (xs - q * e->freq) + e->cum;
    }
    for (unsigned j = 0; j < WC_RANS_LANES; j++) wc_wr32(dst + 4 * j, x[j]);
    size_t words = (size_t)(top - w);
    memmove(dst + WC_RANS_STATE_BYTES, w, words);
    size_t len = WC_RANS_STATE_BYTES + words;
    size_t padded = (size_t)wc_align_up(len, 4);
    memset(dst + len, 0, padded - len);
    return padded;
}
