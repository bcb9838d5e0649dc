/* container_read.c - opening a container: the header and table parser, every bound checked.
 *
 * Everything here reads untrusted bytes; the fuzzer (tests/fuzz/fuzz_container.c) calls
 * wc_container_parse directly. Nothing is trusted until its checksum and bounds are checked,
 * and nothing is allocated beyond what the file's own size can justify.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "../common/wc_internal.h"

typedef struct {
    uint32_t tile_size, n_tensors, n_tiles, freq_bytes;
    uint64_t source_size, source_checksum, tables_checksum;
    uint64_t tables_size, payload_start;
    int named; /* WC_FLAG_NAME: the tables end with the name area */
} header_fields;

#define FMT_FAIL(...) wc_error_set(err, WC_ERR_FORMAT, __VA_ARGS__)

static wc_status parse_header(const uint8_t *h, uint64_t file_size, const char *name,
                              header_fields *hf, wc_error *err) {
    if (file_size < WC_HEADER_SIZE)
        return FMT_FAIL("%s: %llu bytes, too short for a container", name,
                        (unsigned long long)file_size);
    if (memcmp(h, WC_MAGIC, 8) != 0) return FMT_FAIL("%s: not a wcodec container (bad magic)", name);
    uint32_t version = wc_rd32(h + 8);
    if (version != WC_FORMAT_VERSION)
        return wc_error_set(err, WC_ERR_VERSION, "%s: container format version %u, this build reads %u",
                       name, version, WC_FORMAT_VERSION);
    if (wc_hash(h, 56) != wc_rd64(h + 56))
        return wc_error_set(err, WC_ERR_CHECKSUM, "%s: container header checksum mismatch", name);
    hf->tile_size = wc_rd32(h + 12);
    hf->source_size = wc_rd64(h + 16);
    hf->source_checksum = wc_rd64(h + 24);
    hf->n_tensors = wc_rd32(h + 32);
    hf->n_tiles = wc_rd32(h + 36);
    hf->freq_bytes = wc_rd32(h + 40);
    uint32_t flags = wc_rd32(h + 44);
    hf->tables_checksum = wc_rd64(h + 48);
    if (flags & ~WC_FLAG_NAME) return FMT_FAIL("%s: unknown header flags 0x%x", name, flags);
    hf->named = (flags & WC_FLAG_NAME) != 0;
    if (hf->tile_size < WC_TILE_SIZE_MIN || hf->tile_size > WC_TILE_SIZE_MAX ||
        hf->tile_size % WC_PAYLOAD_ALIGN)
        return FMT_FAIL("%s: tile size %u out of range", name, hf->tile_size);
    hf->tables_size = (uint64_t)hf->n_tensors * WC_TENSOR_RECORD_SIZE +
                      (uint64_t)hf->n_tiles * WC_TILE_RECORD_SIZE + hf->freq_bytes +
                      (hf->named ? WC_NAME_AREA_SIZE : 0);
    hf->payload_start = wc_align_up(WC_HEADER_SIZE + hf->tables_size, WC_PAYLOAD_ALIGN);
    if (WC_HEADER_SIZE + hf->tables_size > file_size)
        return FMT_FAIL("%s: tables (%llu bytes) extend beyond the file (%llu bytes): truncated?",
                        name, (unsigned long long)hf->tables_size, (unsigned long long)file_size);
    if (hf->freq_bytes % 8) return FMT_FAIL("%s: frequency table area is not 8-byte aligned", name);
    return WC_OK;
}

/* Frequency tables follow one another in tensor and plane order, each used once: so a table
 * area of F bytes yields at most F/40 decode tables, and no crafted file can make us build
 * more decode tables than its size pays for. *freq_next is where the next one must start. */
static wc_status parse_tensor(const uint8_t *r, const uint8_t *freq, uint32_t freq_bytes,
                              uint32_t *freq_next, const header_fields *hf, const char *name,
                              uint32_t ti, wc_tensor_entry *t, wc_error *err) {
    wc_tensor_info *in = &t->info;
    in->src_offset = wc_rd64(r);
    in->src_size = wc_rd64(r + 8);
    in->first_tile = wc_rd32(r + 16);
    in->tile_count = wc_rd32(r + 20);
    in->dtype = r[24];
    in->plane_count = r[25];
    if (in->src_offset > hf->source_size || in->src_size > hf->source_size - in->src_offset)
        return FMT_FAIL("%s: tensor %u lies outside the source", name, ti);
    if (in->dtype >= WC_DTYPE_COUNT || in->plane_count != wc_plane_count(in->dtype))
        return FMT_FAIL("%s: tensor %u has a bad dtype or plane count", name, ti);
    unsigned w = wc_dtype_width((wc_dtype)in->dtype);
    if (w && in->src_size % w) return FMT_FAIL("%s: tensor %u is not whole elements", name, ti);
    if (in->first_tile > hf->n_tiles || in->tile_count > hf->n_tiles - in->first_tile)
        return FMT_FAIL("%s: tensor %u names tiles beyond the tile table", name, ti);
    for (unsigned k = 26; k < 32; k++)
        if (r[k]) return FMT_FAIL("%s: tensor %u: reserved bytes are not zero", name, ti);
    for (unsigned p = 0; p < WC_MAX_PLANES; p++) {
        uint32_t off = wc_rd32(r + 32 + 4 * p);
        in->plane_coded[p] = 0;
        if (off == WC_NO_TABLE) continue;
        wc_rans_freqs f;
        size_t used;
        if (p >= in->plane_count || in->dtype == WC_DTYPE_UNKNOWN || off != *freq_next ||
            off >= freq_bytes || wc_rans_table_read(freq + off, freq_bytes - off, &f, &used) != 0)
            return FMT_FAIL("%s: tensor %u plane %u has a bad frequency table", name, ti, p);
        *freq_next += (uint32_t)used;
        if (!(t->freqs[p] = malloc(sizeof f))) return wc_error_set(err, WC_ERR_NOMEM, "%s: out of memory", name);
        *t->freqs[p] = f;
        in->plane_coded[p] = 1;
    }
    return WC_OK;
}

static wc_status parse_tiles(wc_container *c, const uint8_t *recs, const header_fields *hf,
                             wc_error *err) {
    const char *name = c->name;
    uint64_t src_pos = 0, payload_pos = hf->payload_start;
    for (uint32_t i = 0; i < c->n_tiles; i++) {
        const uint8_t *r = recs + (size_t)i * WC_TILE_RECORD_SIZE;
        wc_tile_info *t = &c->tiles[i];
        t->payload_offset = wc_rd64(r);
        t->src_offset = wc_rd64(r + 8);
        t->checksum = wc_rd64(r + 16);
        t->src_size = wc_rd32(r + 24);
        t->coded_size = wc_rd32(r + 28);
        t->tensor = wc_rd32(r + 32);
        t->mode = r[36];
        if (r[37] | r[38] | r[39]) return FMT_FAIL("%s: tile %u: reserved bytes are not zero", name, i);
        if (t->src_offset != src_pos || t->src_size == 0 || t->src_size > c->tile_size ||
            t->src_size > c->source_size - src_pos)
            return FMT_FAIL("%s: tile %u does not continue the source where tile %u ended", name,
                            i, i ? i - 1 : 0);
        src_pos += t->src_size;
        if (t->payload_offset % WC_PAYLOAD_ALIGN || t->payload_offset < payload_pos ||
            t->coded_size > c->file_size || t->payload_offset > c->file_size - t->coded_size)
            return FMT_FAIL("%s: tile %u payload at %llu+%u is out of place or beyond the file "
                            "(%llu bytes): truncated?", name, i,
                            (unsigned long long)t->payload_offset, t->coded_size,
                            (unsigned long long)c->file_size);
        payload_pos = t->payload_offset + t->coded_size;
        if (t->mode == WC_TILE_RAW) {
            if (t->coded_size != t->src_size)
                return FMT_FAIL("%s: raw tile %u has coded size %u != %u", name, i, t->coded_size,
                                t->src_size);
        } else if (t->mode == WC_TILE_PLANES) {
            if (t->tensor == WC_TENSOR_NONE || t->coded_size > t->src_size)
                return FMT_FAIL("%s: coded tile %u has no tensor or grew", name, i);
        } else {
            return FMT_FAIL("%s: tile %u has unknown mode %u", name, i, t->mode);
        }
        if (t->tensor != WC_TENSOR_NONE) {
            if (t->tensor >= c->n_tensors)
                return FMT_FAIL("%s: tile %u names tensor %u of %u", name, i, t->tensor,
                                c->n_tensors);
            const wc_tensor_info *ti = &c->tensors[t->tensor].info;
            unsigned w = wc_dtype_width((wc_dtype)ti->dtype);
            if (i < ti->first_tile || i >= ti->first_tile + ti->tile_count ||
                t->src_offset < ti->src_offset ||
                t->src_offset + t->src_size > ti->src_offset + ti->src_size ||
                (w && t->src_size % w))
                return FMT_FAIL("%s: tile %u lies outside its tensor %u", name, i, t->tensor);
        }
        if (t->coded_size > c->max_coded) c->max_coded = t->coded_size;
    }
    if (src_pos != c->source_size)
        return FMT_FAIL("%s: tiles cover %llu of %llu source bytes", name,
                        (unsigned long long)src_pos, (unsigned long long)c->source_size);
    /* Each tensor's tiles are exactly its range: the first starts it, every one names it. */
    for (uint32_t ti = 0; ti < c->n_tensors; ti++) {
        const wc_tensor_info *in = &c->tensors[ti].info;
        uint64_t covered = 0;
        for (uint32_t k = 0; k < in->tile_count; k++) {
            const wc_tile_info *t = &c->tiles[in->first_tile + k];
            if (t->tensor != ti || t->src_offset != in->src_offset + covered)
                return FMT_FAIL("%s: tensor %u's tiles do not cover it", name, ti);
            covered += t->src_size;
        }
        if (covered != in->src_size)
            return FMT_FAIL("%s: tensor %u's tiles cover %llu of %llu bytes", name, ti,
                            (unsigned long long)covered, (unsigned long long)in->src_size);
    }
    return WC_OK;
}

wc_status wc_container_parse(const uint8_t *buf, size_t buf_len, uint64_t file_size,
                             const char *name, wc_container **out, wc_error *err) {
    if (!name) name = "(container)";
    header_fields hf;
    if (buf_len < WC_HEADER_SIZE)
        return FMT_FAIL("%s: %zu bytes, too short for a container", name, buf_len);
    wc_status st = parse_header(buf, file_size, name, &hf, err);
    if (st != WC_OK) return st;
    if (WC_HEADER_SIZE + hf.tables_size > buf_len)
        return wc_error_set(err, WC_ERR_ARG, "%s: tables not in buffer", name);
    const uint8_t *tables = buf + WC_HEADER_SIZE;
    if (wc_hash(tables, (size_t)hf.tables_size) != hf.tables_checksum)
        return wc_error_set(err, WC_ERR_CHECKSUM, "%s: container table checksum mismatch", name);

    wc_container *c = calloc(1, sizeof *c);
    if (!c) return wc_error_set(err, WC_ERR_NOMEM, "%s: out of memory", name);
    c->file_size = file_size;
    c->source_size = hf.source_size;
    c->source_checksum = hf.source_checksum;
    c->tables_checksum = hf.tables_checksum;
    c->tile_size = hf.tile_size;
    c->n_tensors = hf.n_tensors;
    c->n_tiles = hf.n_tiles;
    c->name = strdup(name);
    c->tensors = calloc(hf.n_tensors ? hf.n_tensors : 1, sizeof *c->tensors);
    c->tiles = calloc(hf.n_tiles ? hf.n_tiles : 1, sizeof *c->tiles);
    if (!c->name || !c->tensors || !c->tiles) {
        st = wc_error_set(err, WC_ERR_NOMEM, "%s: out of memory", name);
        goto fail;
    }
    const uint8_t *tensor_recs = tables;
    const uint8_t *tile_recs = tensor_recs + (size_t)hf.n_tensors * WC_TENSOR_RECORD_SIZE;
    const uint8_t *freq = tile_recs + (size_t)hf.n_tiles * WC_TILE_RECORD_SIZE;
    uint32_t freq_next = 0;
    for (uint32_t i = 0; i < hf.n_tensors; i++) {
        st = parse_tensor(tensor_recs + (size_t)i * WC_TENSOR_RECORD_SIZE, freq, hf.freq_bytes,
                          &freq_next, &hf, name, i, &c->tensors[i], err);
        if (st != WC_OK) goto fail;
    }
    if (freq_next != hf.freq_bytes) {
        st = FMT_FAIL("%s: %u bytes of frequency tables are not used", name,
                      hf.freq_bytes - freq_next);
        goto fail;
    }
    if ((st = parse_tiles(c, tile_recs, &hf, err)) != WC_OK) goto fail;
    if (hf.named && wc_name_area_read(freq + hf.freq_bytes, c->source_name) != 0) {
        st = FMT_FAIL("%s: the source's name (name area) is malformed", name);
        goto fail;
    }
    *out = c;
    return WC_OK;
fail:
    wc_container_close(c);
    return st;
}

/* Reads and checks the 64-byte header of src into h. */
static wc_status read_header(wc_source *src, uint8_t h[WC_HEADER_SIZE], header_fields *hf, wc_error *err) {
    memset(h, 0, WC_HEADER_SIZE);
    /* a short object is reported by its size, before any byte of h is looked at */
    if (src->size < WC_HEADER_SIZE) return parse_header(h, src->size, src->name, hf, err);
    wc_status st = wc_source_read(src, 0, WC_HEADER_SIZE, h, err);
    return st != WC_OK ? st : parse_header(h, src->size, src->name, hf, err);
}

wc_status wc_container_open_source(wc_source *src, wc_container **out, wc_error *err) {
    uint8_t *buf = NULL, h[WC_HEADER_SIZE];
    header_fields hf;
    wc_status st = read_header(src, h, &hf, err);
    if (st != WC_OK) goto done;
    size_t len = (size_t)(WC_HEADER_SIZE + hf.tables_size);
    if (!(buf = malloc(len))) {
        st = wc_error_set(err, WC_ERR_NOMEM, "%s: out of memory for %zu bytes of tables", src->name, len);
        goto done;
    }
    memcpy(buf, h, WC_HEADER_SIZE); /* the header is read once; then the tables after it */
    if ((st = wc_source_read(src, WC_HEADER_SIZE, len - WC_HEADER_SIZE, buf + WC_HEADER_SIZE, err)) != WC_OK) goto done;
    wc_container *c;
    if ((st = wc_container_parse(buf, len, src->size, src->name, &c, err)) != WC_OK) goto done;
    c->src = src;
    src = NULL;
    if (c->src->ops->opened && (st = c->src->ops->opened(c->src, c, err)) != WC_OK) {
        wc_container_close(c); /* closes the source too */
        goto done;
    }
    *out = c;
done:
    free(buf);
    wc_source_close(src);
    return st;
}

wc_status wc_container_open(const char *path, wc_container **out, wc_error *err) {
    wc_source *src;
    wc_status st = wc_source_open(path, &src, err);
    return st != WC_OK ? st : wc_container_open_source(src, out, err);
}

wc_source *wc_container_source(const wc_container *c) { return c->src; }

int wc_container_advise(const wc_container *c, uint32_t first, uint32_t last) {
    if (!c->src || !c->src->ops->advise || first > last || last >= c->n_tiles) return 0;
    uint64_t a = c->tiles[first].payload_offset, b = c->tiles[last].payload_offset + c->tiles[last].coded_size;
    c->src->ops->advise(c->src, a, b - a);
    return 1;
}

wc_status wc_container_tables_extent(const uint8_t *head, size_t head_len, uint64_t file_size,
                                     uint64_t *len, wc_error *err) {
    header_fields hf;
    if (head_len < WC_HEADER_SIZE)
        return FMT_FAIL("(container): %zu bytes, too short for a header", head_len);
    wc_status st = parse_header(head, file_size, "(container)", &hf, err);
    if (st == WC_OK) *len = WC_HEADER_SIZE + hf.tables_size;
    return st;
}

wc_status wc_container_peek(const char *path, wc_container_summary *out, wc_error *err) {
    wc_source *src;
    wc_status st = wc_source_open(path, &src, err);
    if (st != WC_OK) return st;
    header_fields hf;
    uint8_t h[WC_HEADER_SIZE];
    uint64_t file_size = src->size;
    st = read_header(src, h, &hf, err);
    uint8_t area[WC_NAME_AREA_SIZE];
    char stored[WC_NAME_MAX + 1] = "";
    if (st == WC_OK && hf.named &&
        (st = wc_source_read(src, WC_HEADER_SIZE + hf.tables_size - WC_NAME_AREA_SIZE, sizeof area, area, err)) == WC_OK &&
        wc_name_area_read(area, stored) != 0)
        st = FMT_FAIL("%s: the source's name (name area) is malformed", src->name);
    wc_source_close(src);
    if (st != WC_OK) return st;
    *out = (wc_container_summary){.file_size = file_size,
                                  .source_size = hf.source_size,
                                  .source_checksum = hf.source_checksum,
                                  .tables_checksum = hf.tables_checksum,
                                  .tile_size = hf.tile_size,
                                  .tile_count = hf.n_tiles,
                                  .tensor_count = hf.n_tensors};
    memcpy(out->source_name, stored, sizeof stored);
    return WC_OK;
}

void wc_container_close(wc_container *c) {
    if (!c) return;
    wc_source_close(c->src);
    if (c->tensors)
        for (uint32_t i = 0; i < c->n_tensors; i++)
            for (unsigned p = 0; p < WC_MAX_PLANES; p++) {
                free(c->tensors[i].freqs[p]);
                free(atomic_load(&c->tensors[i].lut[p]));
            }
    free(c->tensors);
    free(c->tiles);
    free(c->name);
    free(c);
}

uint64_t wc_container_source_size(const wc_container *c) { return c->source_size; }
const char *wc_container_source_name(const wc_container *c) { return c->source_name; }
uint64_t wc_container_source_checksum(const wc_container *c) { return c->source_checksum; }
uint64_t wc_container_tables_checksum(const wc_container *c) { return c->tables_checksum; }
uint64_t wc_container_file_size(const wc_container *c) { return c->file_size; }
uint32_t wc_container_tile_size(const wc_container *c) { return c->tile_size; }
uint32_t wc_container_tile_count(const wc_container *c) { return c->n_tiles; }
uint32_t wc_container_tensor_count(const wc_container *c) { return c->n_tensors; }
uint32_t wc_container_max_coded_size(const wc_container *c) { return c->max_coded; }
const wc_tile_info *wc_container_tile(const wc_container *c, uint32_t i) { return &c->tiles[i]; }
const wc_tensor_info *wc_container_tensor(const wc_container *c, uint32_t i) {
    return &c->tensors[i].info;
}
const uint32_t *wc_container_plane_lut(const wc_container *c, uint32_t tensor, unsigned plane) {
    if (tensor >= c->n_tensors || plane >= WC_MAX_PLANES || !c->tensors[tensor].freqs[plane]) return NULL;
    wc_tensor_entry *te = &c->tensors[tensor]; /* the table is a cache: built once, kept */
    uint32_t *lut = atomic_load_explicit(&te->lut[plane], memory_order_acquire);
    if (lut) return lut;
    uint32_t *mine = malloc(WC_RANS_PROB_SCALE * sizeof *mine);
    if (!mine) return NULL;
    wc_rans_build_lut(te->freqs[plane], mine);
    uint32_t *none = NULL;
    if (atomic_compare_exchange_strong(&te->lut[plane], &none, mine)) return mine;
    free(mine); /* another thread built it first */
    return none;
}

uint32_t wc_container_find_tile(const wc_container *c, uint64_t offset) {
    if (offset >= c->source_size) return c->n_tiles;
    uint32_t lo = 0, hi = c->n_tiles; /* invariant: tiles[lo].src_offset <= offset */
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (c->tiles[mid].src_offset <= offset) lo = mid;
        else hi = mid;
    }
    return lo;
}

wc_status wc_container_read_tile(const wc_container *c, uint32_t i, uint8_t *buf, wc_error *err) {
    if (!c->src || i >= c->n_tiles)
        return wc_error_set(err, WC_ERR_ARG, "%s: no source or no tile %u", c->name, i);
    const wc_tile_info *t = &c->tiles[i];
    wc_error e = {0};
    if (wc_source_read(c->src, t->payload_offset, t->coded_size, buf, &e) != WC_OK)
        return wc_error_set(err, WC_ERR_IO, "%s (reading tile %u)", e.msg, i);
    return WC_OK;
}
