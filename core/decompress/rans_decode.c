/* rans_decode.c - the reference rANS decoder (see rans_encode.c for the stream layout). */
#include <pthread.h>

#include "../common/wc_internal.h"

/* A stream being decoded: its states, where its words are, where its symbols go. */
typedef struct {
    uint32_t x[WC_RANS_LANES];
    const uint8_t *p, *end;
    uint8_t *out;
    size_t i, n;
    const uint8_t *raw;  /* fused (wc_rans_fuse16): the raw plane's bytes of this stream's elements */
    unsigned sym_shift, raw_shift;
    int rot;
} dec_stream;

/* Element i of a fused stream from its symbol and raw byte (the plane merge of planes.c, in place). */
static inline void put_elem16(const dec_stream *d, size_t i, uint32_t sym) {
    uint32_t v = sym << d->sym_shift | (uint32_t)d->raw[i] << d->raw_shift;
    if (d->rot) v = (v >> 1 | v << 15) & 0xFFFF;
    d->out[2 * i] = (uint8_t)v;
    d->out[2 * i + 1] = (uint8_t)(v >> 8);
}

/* A round reads at most 32 words: with 64 bytes left no check is needed inside it. */
static inline int fast_round_ok(const dec_stream *d) {
    return d->n - d->i >= WC_RANS_LANES && d->end - d->p >= 2 * (ptrdiff_t)WC_RANS_LANES;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define WC_HAVE_AVX2_PATH 1

/* For each 8-lane "needs a word" mask: lane i takes word number popcount(mask & ((1<<i)-1)). */
static uint32_t word_perm[256][8];
static pthread_once_t word_perm_once = PTHREAD_ONCE_INIT;
static int use_avx2, use_avx512;

static void word_perm_init(void) {
    for (unsigned m = 0; m < 256; m++)
        for (unsigned i = 0, k = 0; i < 8; i++) {
            word_perm[m][i] = k;
            k += (m >> i) & 1;
        }
    use_avx2 = __builtin_cpu_supports("avx2");
    use_avx512 = __builtin_cpu_supports("avx512f");
}

int wc_rans_force_path(int path) {
    pthread_once(&word_perm_once, word_perm_init);
    int has2 = __builtin_cpu_supports("avx2"), has512 = __builtin_cpu_supports("avx512f");
    if ((path == 1 && !has2) || (path == 2 && !has512)) return -1;
    use_avx2 = path < 0 ? has2 : path == 1;
    use_avx512 = path < 0 ? has512 : path == 2;
    return 0;
}

/* One round of 8 lanes; the same arithmetic as decode_one, lanes in order. */
__attribute__((target("avx2"))) static inline __m256i avx2_lanes(const uint32_t *lut, __m256i x,
                                                                 __m256i *sym,
                                                                 const uint8_t **pp) {
    const __m256i mask12 = _mm256_set1_epi32(WC_RANS_PROB_SCALE - 1);
    __m256i e = _mm256_i32gather_epi32((const int *)lut, _mm256_and_si256(x, mask12), 4);
    *sym = _mm256_and_si256(e, _mm256_set1_epi32(0xFF));
    __m256i freq = _mm256_add_epi32(_mm256_and_si256(_mm256_srli_epi32(e, 8), mask12),
                                    _mm256_set1_epi32(1));
    x = _mm256_add_epi32(_mm256_mullo_epi32(freq, _mm256_srli_epi32(x, WC_RANS_PROB_BITS)),
                         _mm256_srli_epi32(e, 20));
    __m256i need = _mm256_cmpeq_epi32(_mm256_srli_epi32(x, 16), _mm256_setzero_si256());
    unsigned m = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(need));
    __m256i words = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)*pp));
    words = _mm256_permutevar8x32_epi32(words,
                                        _mm256_loadu_si256((const __m256i *)(const void *)word_perm[m]));
    __m256i renorm = _mm256_or_si256(_mm256_slli_epi32(x, 16), words);
    *pp += 2 * __builtin_popcount(m);
    return _mm256_blendv_epi8(x, renorm, need);
}

/* Elements i..i+15 of a fused stream from two vectors of 8 symbols (lanes in element order). */
__attribute__((target("avx2"))) static inline __m256i avx2_elem8(const dec_stream *d, size_t i, __m256i sym) {
    __m256i raw = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(d->raw + i)));
    __m256i v = _mm256_or_si256(_mm256_sll_epi32(sym, _mm_cvtsi32_si128((int)d->sym_shift)),
                                _mm256_sll_epi32(raw, _mm_cvtsi32_si128((int)d->raw_shift)));
    if (d->rot)
        v = _mm256_and_si256(_mm256_or_si256(_mm256_srli_epi32(v, 1), _mm256_slli_epi32(v, 15)),
                             _mm256_set1_epi32(0xFFFF));
    return v;
}

__attribute__((target("avx2"))) static inline void avx2_elems16(const dec_stream *d, size_t i, __m256i s0,
                                                               __m256i s1) {
    __m256i p = _mm256_packus_epi32(avx2_elem8(d, i, s0), avx2_elem8(d, i + 8, s1));
    p = _mm256_permute4x64_epi64(p, 0xD8); /* packus works per 128-bit half: elements back in order */
    _mm256_storeu_si256((__m256i *)(void *)(d->out + 2 * i), p);
}

/* Decodes whole rounds while fast_round_ok. */
__attribute__((target("avx2"))) static void avx2_rounds(const uint32_t *lut, dec_stream *d) {
    __m256i x0 = _mm256_loadu_si256((const __m256i *)(const void *)d->x);
    __m256i x1 = _mm256_loadu_si256((const __m256i *)(const void *)(d->x + 8));
    __m256i x2 = _mm256_loadu_si256((const __m256i *)(const void *)(d->x + 16));
    __m256i x3 = _mm256_loadu_si256((const __m256i *)(const void *)(d->x + 24));
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    while (fast_round_ok(d)) {
        __m256i s0, s1, s2, s3;
        x0 = avx2_lanes(lut, x0, &s0, &d->p);
        x1 = avx2_lanes(lut, x1, &s1, &d->p);
        x2 = avx2_lanes(lut, x2, &s2, &d->p);
        x3 = avx2_lanes(lut, x3, &s3, &d->p);
        if (d->raw) {
            avx2_elems16(d, d->i, s0, s1);
            avx2_elems16(d, d->i + 16, s2, s3);
        } else {
            __m256i b = _mm256_packus_epi16(_mm256_packus_epi32(s0, s1), _mm256_packus_epi32(s2, s3));
            _mm256_storeu_si256((__m256i *)(void *)(d->out + d->i), _mm256_permutevar8x32_epi32(b, order));
        }
        d->i += WC_RANS_LANES;
    }
    _mm256_storeu_si256((__m256i *)(void *)d->x, x0);
    _mm256_storeu_si256((__m256i *)(void *)(d->x + 8), x1);
    _mm256_storeu_si256((__m256i *)(void *)(d->x + 16), x2);
    _mm256_storeu_si256((__m256i *)(void *)(d->x + 24), x3);
}

/* AVX-512: 16 lanes a vector; vpexpandd hands consecutive words to the lanes that need one,
 * in lane order, which is exactly the stream's order. */
__attribute__((target("avx512f"))) static inline __m512i avx512_lanes(const uint32_t *lut,
                                                                      __m512i x, __m512i *sym,
                                                                      const uint8_t **pp) {
    const __m512i mask12 = _mm512_set1_epi32(WC_RANS_PROB_SCALE - 1);
    __m512i e = _mm512_i32gather_epi32(_mm512_and_si512(x, mask12), (const void *)lut, 4);
    *sym = e;
    __m512i freq = _mm512_add_epi32(_mm512_and_si512(_mm512_srli_epi32(e, 8), mask12),
                                    _mm512_set1_epi32(1));
    x = _mm512_add_epi32(_mm512_mullo_epi32(freq, _mm512_srli_epi32(x, WC_RANS_PROB_BITS)),
                         _mm512_srli_epi32(e, 20));
    __mmask16 need = _mm512_cmplt_epu32_mask(x, _mm512_set1_epi32(WC_RANS_L));
    __m512i words = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)*pp));
    *pp += 2 * __builtin_popcount((unsigned)need);
    return _mm512_mask_or_epi32(x, need, _mm512_slli_epi32(x, 16),
                                _mm512_maskz_expand_epi32(need, words));
}

/* Elements i..i+15 of a fused stream from 16 symbols (lanes in element order; the lut entries,
 * whose low byte is the symbol). */
__attribute__((target("avx512f"))) static inline void avx512_elems16(const dec_stream *d, size_t i, __m512i e) {
    __m512i sym = _mm512_and_si512(e, _mm512_set1_epi32(0xFF));
    __m512i raw = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(d->raw + i)));
    __m512i v;
    if (d->rot && d->sym_shift == 8) {
        /* BF16 and F16: (raw, sym, raw) as bytes 0..2, shifted right by one, holds the rotated-back
         * element in its low half: one three-way or and a shift */
        v = _mm512_srli_epi32(_mm512_ternarylogic_epi32(raw, _mm512_slli_epi32(sym, 8), _mm512_slli_epi32(raw, 16), 0xFE), 1);
    } else {
        v = _mm512_or_si512(_mm512_sll_epi32(sym, _mm_cvtsi32_si128((int)d->sym_shift)),
                            _mm512_sll_epi32(raw, _mm_cvtsi32_si128((int)d->raw_shift)));
        if (d->rot) v = _mm512_or_si512(_mm512_srli_epi32(v, 1), _mm512_slli_epi32(v, 15)); /* bits 16+ dropped below */
    }
    _mm256_storeu_si256((__m256i *)(void *)(d->out + 2 * i), _mm512_cvtepi32_epi16(v));
}

__attribute__((target("avx512f"))) static inline void avx512_store(const dec_stream *d, size_t i, __m512i e) {
    if (d->raw) avx512_elems16(d, i, e);
    else _mm_storeu_si128((__m128i *)(void *)(d->out + i), _mm512_cvtepi32_epi8(e));
}

/* Two streams at once: a round's latency (gather, multiply, expand) is long, and a second
 * stream's independent rounds fill it. Runs while both streams can take fast rounds; with
 * b == a, one stream alone. */
__attribute__((target("avx512f"))) static void avx512_rounds2(const uint32_t *lut, dec_stream *a,
                                                             dec_stream *b) {
    __m512i a0 = _mm512_loadu_si512(a->x), a1 = _mm512_loadu_si512(a->x + 16);
    __m512i b0 = _mm512_loadu_si512(b->x), b1 = _mm512_loadu_si512(b->x + 16);
    int two = b != a;
    while (fast_round_ok(a) && (!two || fast_round_ok(b))) {
        __m512i s0, s1, t0 = b0, t1 = b1;
        a0 = avx512_lanes(lut, a0, &s0, &a->p);
        if (two) b0 = avx512_lanes(lut, b0, &t0, &b->p);
        a1 = avx512_lanes(lut, a1, &s1, &a->p);
        if (two) b1 = avx512_lanes(lut, b1, &t1, &b->p);
        avx512_store(a, a->i, s0);
        avx512_store(a, a->i + 16, s1);
        a->i += WC_RANS_LANES;
        if (two) {
            avx512_store(b, b->i, t0);
            avx512_store(b, b->i + 16, t1);
            b->i += WC_RANS_LANES;
        }
    }
    _mm512_storeu_si512(a->x, a0);
    _mm512_storeu_si512(a->x + 16, a1);
    if (two) {
        _mm512_storeu_si512(b->x, b0);
        _mm512_storeu_si512(b->x + 16, b1);
    }
}
#else
int wc_rans_force_path(int path) { return path > 0 ? -1 : 0; }
#endif

/* One symbol of state j; reads a word when the state drops below L. The caller guarantees
 * that at least 2 readable bytes remain at *pp. Branch-free: a renormalization happens on
 * about a fifth of the symbols, at random, which a branch predictor cannot learn. */
static inline uint32_t decode_one(const uint32_t *lut, uint32_t x, uint8_t *o,
                                  const uint8_t **pp) {
    uint32_t e = lut[x & (WC_RANS_PROB_SCALE - 1)];
    *o = (uint8_t)WC_LUT_SYM(e);
    x = WC_LUT_FREQ(e) * (x >> WC_RANS_PROB_BITS) + WC_LUT_BIAS(e);
    uint32_t need = x < WC_RANS_L; /* arithmetic, not ?:, so that no compiler makes a branch */
    uint16_t w;
    memcpy(&w, *pp, 2);
    x = x << (need * 16) | (w & (0u - need));
    *pp += need * 2;
    return x;
}

/* As decode_one, but checks the end first; returns 0 on a stream that ends too soon. */
static inline int decode_one_checked(const uint32_t *lut, uint32_t *x, uint8_t *o,
                                     const uint8_t **pp, const uint8_t *end) {
    uint32_t e = lut[*x & (WC_RANS_PROB_SCALE - 1)];
    *o = (uint8_t)WC_LUT_SYM(e);
    uint32_t v = WC_LUT_FREQ(e) * (*x >> WC_RANS_PROB_BITS) + WC_LUT_BIAS(e);
    if (v < WC_RANS_L) {
        if (end - *pp < 2) return 0;
        v = v << 16 | wc_rd16(*pp);
        *pp += 2;
    }
    *x = v;
    return 1;
}

static int dec_init(dec_stream *d, const uint8_t *src, size_t len, uint8_t *out, size_t n,
                    const wc_rans_fuse16 *fuse, unsigned k) {
    if (len < WC_RANS_STATE_BYTES || len % 4) return -1;
    for (unsigned j = 0; j < WC_RANS_LANES; j++) d->x[j] = wc_rd32(src + 4 * j);
    d->p = src + WC_RANS_STATE_BYTES;
    d->end = src + len;
    d->out = out;
    d->i = 0;
    d->n = n;
    d->raw = fuse ? fuse->raw[k] : NULL;
    d->sym_shift = fuse && fuse->plane ? 8 : 0;
    d->raw_shift = 8 - d->sym_shift;
    d->rot = fuse && fuse->rot;
    return 0;
}

/* The rest of a stream, scalar: fast rounds, then symbol by symbol with checks; then the
 * end-of-stream checks. */
static int dec_finish(const uint32_t *lut, dec_stream *d, const uint8_t *src) {
    uint8_t sym;
    while (fast_round_ok(d)) {
        for (unsigned j = 0; j < WC_RANS_LANES; j++) {
            d->x[j] = decode_one(lut, d->x[j], d->raw ? &sym : d->out + d->i + j, &d->p);
            if (d->raw) put_elem16(d, d->i + j, sym);
        }
        d->i += WC_RANS_LANES;
    }
    for (; d->i < d->n; d->i++) {
        if (!decode_one_checked(lut, &d->x[d->i % WC_RANS_LANES], d->raw ? &sym : d->out + d->i, &d->p, d->end))
            return -1;
        if (d->raw) put_elem16(d, d->i, sym);
    }
    /* The encoder started every state at L and wrote exactly these words (plus padding). */
    for (unsigned j = 0; j < WC_RANS_LANES; j++)
        if (d->x[j] != WC_RANS_L) return -1;
    if (wc_align_up((uint64_t)(d->p - src), 4) != (uint64_t)(d->end - src)) return -1;
    return 0;
}

int wc_rans_decode_streams(const uint32_t *lut, unsigned count, const uint8_t *const *src,
                           const size_t *len, uint8_t *const *out, const size_t *n,
                           const wc_rans_fuse16 *fuse) {
#ifdef WC_HAVE_AVX2_PATH
    pthread_once(&word_perm_once, word_perm_init);
#endif
    for (unsigned k = 0; k < count; k += 2) {
        dec_stream d[2];
        unsigned m = count - k < 2 ? count - k : 2;
        for (unsigned q = 0; q < m; q++)
            if (dec_init(&d[q], src[k + q], len[k + q], out[k + q], n[k + q], fuse, k + q) != 0) return -1;
#ifdef WC_HAVE_AVX2_PATH
        if (use_avx512) {
            avx512_rounds2(lut, &d[0], &d[m - 1]);
            for (unsigned q = 0; q < m; q++) avx512_rounds2(lut, &d[q], &d[q]);
        } else if (use_avx2) {
            for (unsigned q = 0; q < m; q++) avx2_rounds(lut, &d[q]);
        }
#endif
        for (unsigned q = 0; q < m; q++)
            if (dec_finish(lut, &d[q], src[k + q]) != 0) return -1;
    }
    return 0;
}

int wc_rans_decode_stream(const uint32_t *lut, const uint8_t *src, size_t len, uint8_t *out,
                          size_t n) {
    return wc_rans_decode_streams(lut, 1, &src, &len, &out, &n, NULL);
}
