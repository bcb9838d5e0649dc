/* rans_encode.c - static rANS encoder, 32 interleaved states per stream.
 *
 * Symbol i belongs to state i % 32. The decoder walks symbols forward and, after each symbol,
 * a state that fell below L reads the next 16-bit word; so the encoder walks symbols backward
 * and pushes words onto a stack, which then reads forward in exactly the decoder's order. A
 * CUDA warp decodes the same stream with one state per lane: in each round of 32 symbols the
 * lanes that need a word take them in lane order (ballot + popcount).
 */
#include "../common/wc_internal.h"

size_t wc_rans_encode_stream(const wc_rans_freqs *f, const uint8_t *sym, size_t n, uint8_t *dst) {
    uint32_t cum[256];
    uint32_t c = 0;
    for (int s = 0; s < 256; s++) cum[s] = c, c += f->freq[s];

    uint32_t x[WC_RANS_LANES];
    for (unsigned j = 0; j < WC_RANS_LANES; j++) x[j] = WC_RANS_L;

    /* Words grow down from the end of the bound, then move up behind the states. */
    uint8_t *top = dst + wc_rans_stream_bound(n);
    uint8_t *w = top;
    for (size_t i = n; i-- > 0;) {
        uint32_t s = sym[i];
        uint32_t fr = f->freq[s];
        uint32_t xs = x[i % WC_RANS_LANES];
        uint64_t x_max = (uint64_t)fr << (32 - WC_RANS_PROB_BITS); /* ((L >> bits) << 16) * fr */
        if (xs >= x_max) {
            w -= 2;
            wc_wr16(w, (uint16_t)xs);
            xs >>= 16;
        }
        x[i % WC_RANS_LANES] = ((xs / fr) << WC_RANS_PROB_BITS) + xs % fr + cum[s];
    }
    for (unsigned j = 0; j < WC_RANS_LANES; j++) wc_wr32(dst + 4 * j, x[j]);
    size_t words = (size_t)(top - w);
    memmove(dst + WC_RANS_STATE_BYTES, w, words);
    size_t len = WC_RANS_STATE_BYTES + words;
    size_t padded = (size_t)wc_align_up(len, 4);
    memset(dst + len, 0, padded - len);
    return padded;
}
