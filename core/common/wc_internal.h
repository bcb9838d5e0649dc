/* wc_internal.h - what the parts of libwcodec share and callers never see. */
#ifndef WC_INTERNAL_H
#define WC_INTERNAL_H

#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "../wcodec.h"

/* ---- container format constants (docs/FORMAT.md is the specification) ---- */
#define WC_MAGIC "\x89WCODEC\n"
#define WC_FORMAT_VERSION 1u
#define WC_HEADER_SIZE 64u
#define WC_TENSOR_RECORD_SIZE 64u
#define WC_TILE_RECORD_SIZE 40u
#define WC_PAYLOAD_ALIGN 64u
#define WC_NO_TABLE 0xFFFFFFFFu
#define WC_TILE_SIZE_MIN 4096u
#define WC_TILE_SIZE_MAX (16u << 20)
#define WC_FLAG_NAME 1u           /* header flag: a name area ends the tables */
#define WC_NAME_AREA_SIZE 256u    /* u8 length (1..255), the name, zero padding */

/* The name area (core/common/names.c): written from a name wc_name_ok accepts; read back into
 * out, 0, or -1 if it is malformed (a zero or overlong length, nonzero padding, a bad name). */
void wc_name_area_write(uint8_t area[WC_NAME_AREA_SIZE], const char *name);
/* 1 if `name` ends in .safetensors (and is more than that): the container's file name carries it. */
int wc_name_is_safetensors(const char *name);
int wc_name_area_read(const uint8_t area[WC_NAME_AREA_SIZE], char out[WC_NAME_MAX + 1]);

/* ---- rANS parameters: shared by the CPU and CUDA decoders ---- */
#define WC_RANS_LANES 32u           /* interleaved states per stream: one per warp lane */
#define WC_RANS_PROB_BITS 12u       /* frequencies sum to 4096 */
#define WC_RANS_PROB_SCALE (1u << WC_RANS_PROB_BITS)
#define WC_RANS_L (1u << 16)        /* states live in [L, 2^32); renormalize 16 bits at a time */
#define WC_RANS_STREAM_SYMBOLS 65536u /* a plane of a tile is cut into streams of this many */
#define WC_RANS_STATE_BYTES (WC_RANS_LANES * 4u)

/* decode-table entry: symbol (bits 0-7), freq-1 (bits 8-19), slot-cum (bits 20-31) */
#define WC_LUT_SYM(e) ((e) & 0xFFu)
#define WC_LUT_FREQ(e) ((((e) >> 8) & 0xFFFu) + 1u)
#define WC_LUT_BIAS(e) ((e) >> 20)

static inline uint64_t wc_align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

static inline uint16_t wc_rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t wc_rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t wc_rd64(const uint8_t *p) {
    return (uint64_t)wc_rd32(p) | (uint64_t)wc_rd32(p + 4) << 32;
}
static inline void wc_wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void wc_wr32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline void wc_wr64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}


/* xxh3-64 of a buffer (libxxhash). */
uint64_t wc_hash(const void *p, size_t n);

/* ---- dtype plane transform (core/common/planes.c) ---- */
/* Number of byte planes an element of dtype d is split into (1 for UNKNOWN). */
unsigned wc_plane_count(wc_dtype d);
/* Splits n elements of dtype d from src into plane_count planes at planes + k*n. */
void wc_planes_split(wc_dtype d, const uint8_t *src, size_t n, uint8_t *planes);
/* Inverse: plane k is at plane_ptr[k], each n bytes; writes n elements to dst. */
void wc_planes_merge(wc_dtype d, const uint8_t *const *plane_ptr, size_t n, uint8_t *dst);

/* ---- rANS (core/common/rans_table.c, core/compress/rans_encode.c, core/decompress/rans_decode.c) */
typedef struct {
    uint16_t freq[256]; /* sums to WC_RANS_PROB_SCALE; 0 = symbol absent */
} wc_rans_freqs;

/* Quantizes a histogram to frequencies summing to 4096, every present symbol >= 1. total > 0. */
void wc_rans_normalize(const uint64_t hist[256], wc_rans_freqs *out);
/* Bytes of the serialized table: 32-byte presence bitmap + u16 per present symbol, padded to 8. */
size_t wc_rans_table_size(const wc_rans_freqs *f);
void wc_rans_table_write(const wc_rans_freqs *f, uint8_t *dst);
/* Parses a serialized table from at most `avail` bytes; validates sums. 0 on success. */
int wc_rans_table_read(const uint8_t *src, size_t avail, wc_rans_freqs *out, size_t *consumed);
/* Builds the 4096-entry decode table. */
void wc_rans_build_lut(const wc_rans_freqs *f, uint32_t lut[WC_RANS_PROB_SCALE]);
/* Estimated bytes of coding `hist` with `f` (entropy under f, plus stream state overhead). */
uint64_t wc_rans_cost(const uint64_t hist[256], const wc_rans_freqs *f, uint64_t nsym);

/* Largest encoded size of one stream of n symbols (the encoder needs this much room). */
static inline size_t wc_rans_stream_bound(size_t n) { return WC_RANS_STATE_BYTES + 2 * n + 4; }
/* Encodes n (<= WC_RANS_STREAM_SYMBOLS) symbols; returns bytes written (a multiple of 4).
 * Every symbol must have a nonzero frequency. */
size_t wc_rans_encode_stream(const wc_rans_freqs *f, const uint8_t *sym, size_t n, uint8_t *dst);
/* Decodes n symbols from a stream of `len` bytes; 0 on success, -1 if the stream is malformed
 * (too short, trailing words, final states off). Never reads outside [src, src+len). */
int wc_rans_decode_stream(const uint32_t *lut, const uint8_t *src, size_t len, uint8_t *out,
                          size_t n);
/* Streams of the one coded plane of 2-byte elements whose other plane is raw, decoded straight
 * into the elements (the plane merge done in registers: one pass over the output instead of
 * three). Stream k's symbol i becomes element i of out[k] (2 bytes, little-endian): byte `plane`
 * the symbol, the other byte raw[k][i], then rotated right by one bit if rot (planes.c's float
 * transform undone). Bytes identical to decoding the plane and calling wc_planes_merge. */
typedef struct {
    const uint8_t *const *raw; /* [stream]: the raw plane's bytes of that stream's elements */
    unsigned plane;            /* 0 or 1: which byte of an element the symbols are */
    int rot;
} wc_rans_fuse16;
/* The same for `count` streams sharing one table (a plane of a tile), decoded two at a time
 * where the CPU allows, which hides the latency of a round. 0 if all are well-formed. With fuse
 * (may be NULL), out[k] receives 2-byte elements as above. */
int wc_rans_decode_streams(const uint32_t *lut, unsigned count, const uint8_t *const *src,
                           const size_t *len, uint8_t *const *out, const size_t *n,
                           const wc_rans_fuse16 *fuse);

/* Tests: pick the decoder's inner loop: 0 scalar, 1 AVX2, 2 AVX-512, -1 best available.
 * Returns -1 when this CPU lacks it. All paths decode identical bytes. Not thread-safe. */
int wc_rans_force_path(int path);

/* ---- the container in memory (core/decompress/container_read.c) ---- */
typedef struct {
    wc_tensor_info info;
    wc_rans_freqs *freqs[WC_MAX_PLANES]; /* frequencies of coded planes, NULL for raw planes */
    /* decode tables, built on first use (wc_container_plane_lut): opening a container with
     * thousands of tensors costs no 16 KiB table each, and reading one tensor builds one */
    _Atomic(uint32_t *) lut[WC_MAX_PLANES];
} wc_tensor_entry;

struct wc_container {
    char *name;
    char source_name[WC_NAME_MAX + 1]; /* kept in the name area; "" if it has none */
    wc_source *src; /* NULL when parsed from memory */
    uint64_t file_size;
    uint64_t source_size;
    uint64_t source_checksum;
    uint64_t tables_checksum;
    uint32_t tile_size;
    uint32_t n_tensors, n_tiles;
    uint32_t max_coded;
    wc_tensor_entry *tensors;
    wc_tile_info *tiles;
};

/* The threads a reader of many tiles of c uses: `threads` within 1..64, and at least the reads
 * worth having in flight from c's source (a URL's connections: they mostly wait on the network). */
static inline unsigned wc_read_threads(const wc_container *c, unsigned threads) {
    if (c->src && threads < c->src->concurrency) threads = c->src->concurrency;
    return threads < 1 ? 1 : threads > 64 ? 64 : threads;
}

/* Streams a plane of n symbols is cut into. */
static inline uint32_t wc_stream_count(uint64_t n) {
    return (uint32_t)((n + WC_RANS_STREAM_SYMBOLS - 1) / WC_RANS_STREAM_SYMBOLS);
}

/* ---- a tiny fork-join pool (core/common/parallel.c) ----
 * Calls fn(ctx, item, worker) for every item in [0, count) on `threads` threads (the caller's
 * among them); worker is in [0, threads) and names per-thread scratch. Returns when all ran. */
typedef void (*wc_parallel_fn)(void *ctx, size_t item, unsigned worker);
void wc_parallel_for(unsigned threads, size_t count, wc_parallel_fn fn, void *ctx);

/* ---- streaming checksum (core/common/hash.c) ---- */
typedef struct wc_hasher wc_hasher;
wc_hasher *wc_hasher_new(void); /* NULL when out of memory */
void wc_hasher_update(wc_hasher *h, const void *p, size_t n);
uint64_t wc_hasher_digest(const wc_hasher *h);
void wc_hasher_free(wc_hasher *h);
/* xxh3-64 of a whole file, read in 1 MiB chunks; WC_ERR_IO naming the path. */
wc_status wc_hash_file(const char *path, uint64_t *out, wc_error *err);

/* ---- atomic output files (core/common/outfile.c) ----
 * A new file is written under a temporary name beside its destination and renamed onto it
 * only when complete and synced; wc_out_abort removes it. So a crash, a full disk or a cancel
 * never leaves a partial file at the destination. */
typedef struct {
    int fd;
    char *dst, *tmp;
    int overwrite;
} wc_outfile;

wc_status wc_out_open(wc_outfile *o, const char *dst, int overwrite, wc_error *err);
wc_status wc_out_pwrite(wc_outfile *o, const void *buf, size_t len, uint64_t off, wc_error *err);
/* Syncs, gives the file `mode` and `mtime` (from a stat of the source), renames it to dst. */
wc_status wc_out_commit(wc_outfile *o, unsigned mode, const struct timespec *mtime, wc_error *err);
void wc_out_abort(wc_outfile *o);

#endif
