/* tile_decode_cpu.c - the reference tile decoder: payload -> planes -> elements, checksum.
 *
 * A PLANES payload (docs/FORMAT.md): for each coded plane, a u32 byte size for each of its
 * streams; then each plane in order: a coded plane as its streams back to back, a raw plane
 * as n bytes padded to a multiple of 4.
 */
#include <stdlib.h>

#include <pthread.h>

#include "../common/wc_internal.h"

static wc_status corrupt(const wc_container *c, uint32_t i, wc_error *err) {
    const wc_tile_info *t = &c->tiles[i];
    return wc_error_set(err, WC_ERR_FORMAT, "%s: tile %u (source bytes %llu..%llu): corrupt payload",
                   c->name, i, (unsigned long long)t->src_offset,
                   (unsigned long long)(t->src_offset + t->src_size));
}

wc_status wc_tile_layout_parse(const wc_container *c, uint32_t i, const uint8_t *payload,
                               wc_tile_layout *out, wc_error *err) {
    if (i >= c->n_tiles || c->tiles[i].mode != WC_TILE_PLANES)
        return wc_error_set(err, WC_ERR_ARG, "%s: tile %u is not a coded tile", c->name, i);
    const wc_tile_info *t = &c->tiles[i];
    const wc_tensor_info *ti = &c->tensors[t->tensor].info;
    unsigned w = ti->plane_count;
    uint32_t n = t->src_size / w, ns = wc_stream_count(n);
    unsigned n_coded = 0;
    for (unsigned p = 0; p < w; p++) n_coded += ti->plane_coded[p];
    out->n = n;
    out->dtype = ti->dtype;
    out->plane_count = (uint8_t)w;
    out->n_streams = 0;
    uint64_t pos = (uint64_t)4 * ns * n_coded;
    if (pos > t->coded_size) return corrupt(c, i, err);
    const uint8_t *sizes = payload;
    for (unsigned p = 0; p < w; p++) {
        out->plane_coded[p] = ti->plane_coded[p];
        if (!ti->plane_coded[p]) {
            if (n > t->coded_size - pos) return corrupt(c, i, err);
            out->raw_offset[p] = (uint32_t)pos;
            pos += wc_align_up(n, 4);
            continue;
        }
        for (uint32_t s = 0; s < ns; s++) {
            wc_stream_ref *r = &out->streams[out->n_streams++];
            r->plane = p;
            r->offset = (uint32_t)pos;
            r->len = wc_rd32(sizes);
            r->first = s * WC_RANS_STREAM_SYMBOLS;
            r->count = n - r->first < WC_RANS_STREAM_SYMBOLS ? n - r->first : WC_RANS_STREAM_SYMBOLS;
            sizes += 4;
            if (r->len > t->coded_size - pos) return corrupt(c, i, err);
            pos += r->len;
        }
    }
    if (pos != t->coded_size) return corrupt(c, i, err);
    return WC_OK;
}

static wc_status decode_planes(const wc_container *c, uint32_t i, const uint8_t *payload,
                               uint8_t *out, uint8_t *scratch, wc_error *err) {
    wc_tile_layout *lay = malloc(sizeof *lay);
    if (!lay) return wc_error_set(err, WC_ERR_NOMEM, "%s: out of memory", c->name);
    wc_status st = wc_tile_layout_parse(c, i, payload, lay, err);
    if (st == WC_OK) {
        uint32_t tensor = c->tiles[i].tensor;
        unsigned w = lay->plane_count;
        const uint8_t *plane_ptr[WC_MAX_PLANES];
        for (unsigned p = 0; p < w; p++)
            plane_ptr[p] = lay->plane_coded[p] ? (w == 1 ? out : scratch + (size_t)p * lay->n)
                                               : payload + lay->raw_offset[p];
        /* 2-byte elements with one coded plane (BF16's exponent): the streams write elements,
         * merging in registers; otherwise planes, merged after */
        int fused = w == 2 && lay->plane_coded[0] + lay->plane_coded[1] == 1;
        unsigned coded = fused && lay->plane_coded[1];
        const uint8_t *raw[WC_TILE_MAX_STREAMS];
        wc_rans_fuse16 fuse = {raw, coded, lay->dtype == WC_DTYPE_F16 || lay->dtype == WC_DTYPE_BF16};
        /* the streams of a plane decode together (two at a time where SIMD allows) */
        for (uint32_t s = 0; s < lay->n_streams && st == WC_OK;) {
            uint32_t p = lay->streams[s].plane, k = 0;
            const uint8_t *src[WC_TILE_MAX_STREAMS];
            uint8_t *dst[WC_TILE_MAX_STREAMS];
            size_t len[WC_TILE_MAX_STREAMS], cnt[WC_TILE_MAX_STREAMS];
            for (; s < lay->n_streams && lay->streams[s].plane == p; s++, k++) {
                const wc_stream_ref *r = &lay->streams[s];
                src[k] = payload + r->offset;
                dst[k] = fused ? out + 2 * (size_t)r->first : (uint8_t *)plane_ptr[p] + r->first;
                raw[k] = fused ? plane_ptr[1 - coded] + r->first : NULL;
                len[k] = r->len;
                cnt[k] = r->count;
            }
            const uint32_t *lut = wc_container_plane_lut(c, tensor, p);
            if (!lut) st = wc_error_set(err, WC_ERR_NOMEM, "%s: out of memory", c->name);
            else if (wc_rans_decode_streams(lut, k, src, len, dst, cnt, fused ? &fuse : NULL) != 0)
                st = corrupt(c, i, err);
        }
        if (st == WC_OK && !fused) wc_planes_merge((wc_dtype)lay->dtype, plane_ptr, lay->n, out);
    }
    free(lay);
    return st;
}

wc_status wc_tile_decode_cpu(const wc_container *c, uint32_t i, const uint8_t *payload,
                             uint8_t *out, uint8_t *scratch, wc_error *err) {
    if (i >= c->n_tiles) return wc_error_set(err, WC_ERR_ARG, "%s: no tile %u", c->name, i);
    const wc_tile_info *t = &c->tiles[i];
    if (t->mode == WC_TILE_RAW) {
        memcpy(out, payload, t->src_size);
    } else {
        uint8_t *own = NULL;
        if (!scratch && !(scratch = own = malloc(c->tile_size)))
            return wc_error_set(err, WC_ERR_NOMEM, "%s: out of memory", c->name);
        wc_status st = decode_planes(c, i, payload, out, scratch, err);
        free(own);
        if (st != WC_OK) return st;
    }
    if (wc_hash(out, t->src_size) != t->checksum)
        return wc_error_set(err, WC_ERR_CHECKSUM,
                       "%s: tile %u (source bytes %llu..%llu): checksum mismatch", c->name, i,
                       (unsigned long long)t->src_offset,
                       (unsigned long long)(t->src_offset + t->src_size));
    return WC_OK;
}

/* A range decoded by several threads, tile by tile: tiles the range covers whole decode straight
 * into the output, the (at most two) it covers in part through a worker's own tile buffer. */
typedef struct {
    const wc_container *c;
    uint64_t offset;
    size_t len;
    uint8_t *out;
    uint32_t first;
    uint8_t **bufs;          /* [worker]: payload (max_coded bytes), then 2 x tile_size */
    pthread_mutex_t lock;    /* guards the failure below */
    uint32_t failed;         /* the lowest failing tile + 1; 0: none */
    wc_status status;
    wc_error err;
} range_job;

static void range_tile(void *ctx, size_t item, unsigned worker) {
    range_job *j = ctx;
    const wc_container *c = j->c;
    uint32_t i = j->first + (uint32_t)item;
    const wc_tile_info *t = &c->tiles[i];
    uint8_t *payload = j->bufs[worker], *tile = payload + (c->max_coded ? c->max_coded : 1);
    uint64_t from = j->offset > t->src_offset ? j->offset - t->src_offset : 0;
    uint64_t to = t->src_size;
    if (j->offset + j->len < t->src_offset + to) to = j->offset + j->len - t->src_offset;
    int whole = from == 0 && to == t->src_size;
    uint8_t *dst = whole ? j->out + (t->src_offset - j->offset) : tile;
    wc_error err = {0};
    wc_status st = wc_container_read_tile(c, i, payload, &err);
    if (st == WC_OK) st = wc_tile_decode_cpu(c, i, payload, dst, tile + c->tile_size, &err);
    if (st == WC_OK) {
        if (!whole) memcpy(j->out + (t->src_offset + from - j->offset), tile + from, (size_t)(to - from));
        return;
    }
    pthread_mutex_lock(&j->lock); /* report the lowest failing tile, as a sequential read would */
    if (!j->failed || i + 1 < j->failed) {
        j->failed = i + 1;
        j->status = st;
        j->err = err;
    }
    pthread_mutex_unlock(&j->lock);
}

wc_status wc_container_read_range_mt(const wc_container *c, uint64_t offset, size_t len,
                                     uint8_t *out, unsigned threads, wc_error *err) {
    if (offset > c->source_size || len > c->source_size - offset)
        return wc_error_set(err, WC_ERR_ARG, "%s: range %llu+%zu is beyond the source (%llu bytes)",
                       c->name, (unsigned long long)offset, len,
                       (unsigned long long)c->source_size);
    if (len == 0) return WC_OK;
    uint32_t first = wc_container_find_tile(c, offset), last = wc_container_find_tile(c, offset + len - 1);
    wc_container_advise(c, first, last); /* a source that fetches in runs takes the range in few */
    threads = wc_read_threads(c, threads);
    if (threads > last - first + 1) threads = last - first + 1;
    range_job j = {.c = c, .offset = offset, .len = len, .out = out, .first = first};
    pthread_mutex_init(&j.lock, NULL);
    int ok = (j.bufs = calloc(threads, sizeof *j.bufs)) != NULL;
    for (unsigned w = 0; ok && w < threads; w++)
        ok = (j.bufs[w] = malloc((c->max_coded ? c->max_coded : 1) + 2 * (size_t)c->tile_size)) != NULL;
    wc_status st = WC_OK;
    if (!ok) {
        st = wc_error_set(err, WC_ERR_NOMEM, "%s: out of memory", c->name);
    } else {
        wc_parallel_for(threads, last - first + 1, range_tile, &j);
        if (j.failed) {
            st = j.status;
            if (err) *err = j.err;
        }
    }
    for (unsigned w = 0; j.bufs && w < threads; w++) free(j.bufs[w]);
    free(j.bufs);
    pthread_mutex_destroy(&j.lock);
    return st;
}

wc_status wc_container_read_range(const wc_container *c, uint64_t offset, size_t len,
                                  uint8_t *out, wc_error *err) {
    return wc_container_read_range_mt(c, offset, len, out, 1, err);
}
