/* xxh3.cuh - XXH3-64 (seed 0, default secret), the tile checksum, for the GPU.
 *
 * The same function as libxxhash's XXH3_64bits, written for CUDA: a single-thread version of
 * every length (also compiled for the host, where tests/gpu/xxh3_host_check compares it with
 * libxxhash), and the pieces of the long-input loop that 8 threads share in the decoder's
 * hash kernel (thread j owns accumulator j). Reads are bytewise or 8-byte aligned only. */
#ifndef WC_XXH3_CUH
#define WC_XXH3_CUH

#include <stdint.h>

#define XXH_P32_1 0x9E3779B1u
#define XXH_P32_2 0x85EBCA77u
#define XXH_P32_3 0xC2B2AE3Du
#define XXH_P64_1 0x9E3779B185EBCA87ull
#define XXH_P64_2 0xC2B2AE3D27D4EB4Full
#define XXH_P64_3 0x165667B19E3779F9ull
#define XXH_P64_4 0x85EBCA77C2B2AE63ull
#define XXH_P64_5 0x27D4EB2F165667C5ull

#ifdef __CUDACC__
#define WC_HD __host__ __device__ __forceinline__
#define WC_SECRET_SPACE __constant__
#else
#define WC_HD static inline
#define WC_SECRET_SPACE static const
#endif

WC_SECRET_SPACE uint8_t wc_xxh3_secret[192] = {
    0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe, 0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21, 0xad, 0x1c,
    0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb, 0x72, 0x40, 0xa4, 0xa4, 0xb7, 0xb3, 0x67, 0x1f,
    0xcb, 0x79, 0xe6, 0x4e, 0xcc, 0xc0, 0xe5, 0x78, 0x82, 0x5a, 0xd0, 0x7d, 0xcc, 0xff, 0x72, 0x21,
    0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43, 0x24, 0x8e, 0xe0, 0x35, 0x90, 0xe6, 0x81, 0x3a, 0x26, 0x4c,
    0x3c, 0x28, 0x52, 0xbb, 0x91, 0xc3, 0x00, 0xcb, 0x88, 0xd0, 0x65, 0x8b, 0x1b, 0x53, 0x2e, 0xa3,
    0x71, 0x64, 0x48, 0x97, 0xa2, 0x0d, 0xf9, 0x4e, 0x38, 0x19, 0xef, 0x46, 0xa9, 0xde, 0xac, 0xd8,
    0xa8, 0xfa, 0x76, 0x3f, 0xe3, 0x9c, 0x34, 0x3f, 0xf9, 0xdc, 0xbb, 0xc7, 0xc7, 0x0b, 0x4f, 0x1d,
    0x8a, 0x51, 0xe0, 0x4b, 0xcd, 0xb4, 0x59, 0x31, 0xc8, 0x9f, 0x7e, 0xc9, 0xd9, 0x78, 0x73, 0x64,
    0xea, 0xc5, 0xac, 0x83, 0x34, 0xd3, 0xeb, 0xc3, 0xc5, 0x81, 0xa0, 0xff, 0xfa, 0x13, 0x63, 0xeb,
    0x17, 0x0d, 0xdd, 0x51, 0xb7, 0xf0, 0xda, 0x49, 0xd3, 0x16, 0x55, 0x26, 0x29, 0xd4, 0x68, 0x9e,
    0x2b, 0x16, 0xbe, 0x58, 0x7d, 0x47, 0xa1, 0xfc, 0x8f, 0xf8, 0xb8, 0xd1, 0x7a, 0xd0, 0x31, 0xce,
    0x45, 0xcb, 0x3a, 0x8f, 0x95, 0x16, 0x04, 0x28, 0xaf, 0xd7, 0xfb, 0xca, 0xbb, 0x4b, 0x40, 0x7e,
};

WC_HD uint64_t xxh_rd64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}
WC_HD uint32_t xxh_rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
WC_HD uint64_t xxh_secret64(unsigned off) { return xxh_rd64(wc_xxh3_secret + off); }
WC_HD uint64_t xxh_rotl64(uint64_t x, int r) { return x << r | x >> (64 - r); }
WC_HD uint64_t xxh_swap64(uint64_t x) {
    uint64_t r = 0;
    for (int i = 0; i < 8; i++) r = r << 8 | (x >> (8 * i) & 0xFF);
    return r;
}
WC_HD uint64_t xxh_mul128_fold64(uint64_t a, uint64_t b) {
#ifdef __CUDA_ARCH__
    return a * b ^ __umul64hi(a, b);
#else
    unsigned __int128 p = (unsigned __int128)a * b;
    return (uint64_t)p ^ (uint64_t)(p >> 64);
#endif
}
WC_HD uint64_t xxh64_avalanche(uint64_t h) {
    h ^= h >> 33;
    h *= XXH_P64_2;
    h ^= h >> 29;
    h *= XXH_P64_3;
    return h ^ (h >> 32);
}
WC_HD uint64_t xxh3_avalanche(uint64_t h) {
    h ^= h >> 37;
    h *= 0x165667919E3779F9ull;
    return h ^ (h >> 32);
}
WC_HD uint64_t xxh3_rrmxmx(uint64_t h, uint64_t len) {
    h ^= xxh_rotl64(h, 49) ^ xxh_rotl64(h, 24);
    h *= 0x9FB21C651E98DF25ull;
    h ^= (h >> 35) + len;
    h *= 0x9FB21C651E98DF25ull;
    return h ^ (h >> 28);
}
WC_HD uint64_t xxh3_mix16(const uint8_t *in, unsigned secret_off) {
    return xxh_mul128_fold64(xxh_rd64(in) ^ xxh_secret64(secret_off),
                             xxh_rd64(in + 8) ^ xxh_secret64(secret_off + 8));
}

/* Inputs of at most 240 bytes. */
WC_HD uint64_t xxh3_short(const uint8_t *in, uint64_t len) {
    if (len == 0) return xxh64_avalanche(xxh_secret64(56) ^ xxh_secret64(64));
    if (len <= 3) {
        uint32_t c = (uint32_t)in[0] << 16 | (uint32_t)in[len >> 1] << 24 | in[len - 1] |
                     (uint32_t)len << 8;
        uint64_t flip = (uint64_t)(xxh_rd32(wc_xxh3_secret) ^ xxh_rd32(wc_xxh3_secret + 4));
        return xxh64_avalanche((uint64_t)c ^ flip);
    }
    if (len <= 8) {
        uint64_t flip = xxh_secret64(8) ^ xxh_secret64(16);
        uint64_t v = (uint64_t)xxh_rd32(in + len - 4) + ((uint64_t)xxh_rd32(in) << 32);
        return xxh3_rrmxmx(v ^ flip, len);
    }
    if (len <= 16) {
        uint64_t lo = xxh_rd64(in) ^ (xxh_secret64(24) ^ xxh_secret64(32));
        uint64_t hi = xxh_rd64(in + len - 8) ^ (xxh_secret64(40) ^ xxh_secret64(48));
        return xxh3_avalanche(len + xxh_swap64(lo) + hi + xxh_mul128_fold64(lo, hi));
    }
    uint64_t acc = len * XXH_P64_1;
    if (len <= 128) {
        if (len > 32) {
            if (len > 64) {
                if (len > 96) acc += xxh3_mix16(in + 48, 96) + xxh3_mix16(in + len - 64, 112);
                acc += xxh3_mix16(in + 32, 64) + xxh3_mix16(in + len - 48, 80);
            }
            acc += xxh3_mix16(in + 16, 32) + xxh3_mix16(in + len - 32, 48);
        }
        acc += xxh3_mix16(in, 0) + xxh3_mix16(in + len - 16, 16);
        return xxh3_avalanche(acc);
    }
    unsigned rounds = (unsigned)(len / 16);
    for (unsigned i = 0; i < 8; i++) acc += xxh3_mix16(in + 16 * i, 16 * i);
    acc = xxh3_avalanche(acc);
    for (unsigned i = 8; i < rounds; i++) acc += xxh3_mix16(in + 16 * i, 16 * (i - 8) + 3);
    acc += xxh3_mix16(in + len - 16, 136 - 17);
    return xxh3_avalanche(acc);
}

/* The long-input loop, one accumulator lane j (0..7): `partner` is lane j^1's input word. */
WC_HD uint64_t xxh3_acc_init(unsigned j) {
    const uint64_t init[8] = {XXH_P32_3, XXH_P64_1, XXH_P64_2, XXH_P64_3,
                              XXH_P64_4, XXH_P32_2, XXH_P64_5, XXH_P32_1};
    return init[j];
}
/* key: the secret's 8 bytes for this lane and stripe (xxh_secret64(8 * stripe + 8 * j), or
 * 121 + 8 * j for the last stripe); a GPU thread keeps its keys in registers, since lanes reading
 * different constant-memory addresses would be served one after another. */
WC_HD uint64_t xxh3_acc_step(uint64_t acc, uint64_t mine, uint64_t partner, uint64_t key) {
    key ^= mine;
    return acc + partner + (key & 0xFFFFFFFFull) * (key >> 32);
}
/* key: xxh_secret64(128 + 8 * j) */
WC_HD uint64_t xxh3_acc_scramble(uint64_t acc, uint64_t key) {
    acc ^= acc >> 47;
    acc ^= key;
    return acc * XXH_P32_1;
}
/* Merges the 8 accumulators of an input of len > 240 bytes into the hash. */
WC_HD uint64_t xxh3_acc_merge(const uint64_t acc[8], uint64_t len) {
    uint64_t r = len * XXH_P64_1;
    for (unsigned i = 0; i < 4; i++)
        r += xxh_mul128_fold64(acc[2 * i] ^ xxh_secret64(11 + 16 * i),
                               acc[2 * i + 1] ^ xxh_secret64(11 + 16 * i + 8));
    return xxh3_avalanche(r);
}

/* The stripe schedule of a long input: stripe k (0-based) of the input is stripe k % 16 of
 * block k / 16; blocks end with a scramble; then the partial block; then the last stripe,
 * which starts at len - 64 and uses secret offset 121. */
WC_HD uint64_t xxh3_64(const uint8_t *in, uint64_t len) {
    if (len <= 240) return xxh3_short(in, len);
    uint64_t acc[8];
    for (unsigned j = 0; j < 8; j++) acc[j] = xxh3_acc_init(j);
    uint64_t blocks = (len - 1) / 1024;
    uint64_t tail_stripes = ((len - 1) - 1024 * blocks) / 64;
    for (uint64_t b = 0; b <= blocks; b++) {
        uint64_t stripes = b < blocks ? 16 : tail_stripes;
        for (uint64_t s = 0; s < stripes; s++) {
            const uint8_t *p = in + 1024 * b + 64 * s;
            uint64_t w[8];
            for (unsigned j = 0; j < 8; j++) w[j] = xxh_rd64(p + 8 * j);
            for (unsigned j = 0; j < 8; j++)
                acc[j] = xxh3_acc_step(acc[j], w[j], w[j ^ 1], xxh_secret64((unsigned)(8 * s + 8 * j)));
        }
        if (b < blocks)
            for (unsigned j = 0; j < 8; j++) acc[j] = xxh3_acc_scramble(acc[j], xxh_secret64(128 + 8 * j));
    }
    const uint8_t *last = in + len - 64;
    uint64_t w[8];
    for (unsigned j = 0; j < 8; j++) w[j] = xxh_rd64(last + 8 * j);
    for (unsigned j = 0; j < 8; j++) acc[j] = xxh3_acc_step(acc[j], w[j], w[j ^ 1], xxh_secret64(121 + 8 * j));
    return xxh3_acc_merge(acc, len);
}

#endif
