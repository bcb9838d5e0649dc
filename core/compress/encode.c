/* encode.c - safetensors file -> .wcodec container.
 *
 * 1. Parse the header; cut the file into tiles: the header region and any gaps as raw tiles,
 *    each tensor's bytes as tiles of tile_size (the last one short).
 * 2. Per tensor and plane, a histogram over the whole tensor; a plane is rANS-coded when that
 *    saves at least 1% (table and stream states counted), else stored raw.
 * 3. Tiles are encoded in parallel, a batch at a time, and written in order; a tile that does
 *    not shrink is stored raw, so no tile ever grows.
 * 4. Tables and header last, then fsync and rename: a container is valid only once complete.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/wc_internal.h"

typedef struct {
    uint64_t src_offset;
    uint32_t src_size;
    uint32_t tensor;
    uint8_t mode;
    uint32_t coded_size;
    uint64_t checksum;
} tile_plan;

typedef struct {
    wc_tensor_info info;
    wc_rans_freqs freqs[WC_MAX_PLANES];
} tensor_plan;

typedef struct {
    const char *path;
    const uint8_t *src;
    uint64_t src_size;
    uint32_t tile_size;
    unsigned threads;
    int store_raw;
    tensor_plan *tensors;
    uint32_t n_tensors;
    tile_plan *tiles;
    uint32_t n_tiles;
    size_t tiles_cap;
    uint8_t **scratch;   /* per worker: tile_size bytes for planes */
    uint8_t **out;       /* per batch slot: coded tile */
    size_t out_cap;
    uint32_t batch_first;
} encoder;

static wc_status add_tiles(encoder *e, uint64_t begin, uint64_t end, uint32_t tensor,
                           wc_error *err) {
    for (uint64_t off = begin; off < end; off += e->tile_size) {
        if (e->n_tiles == UINT32_MAX - 1)
            return wc_error_set(err, WC_ERR_ARG, "%s: too many tiles", e->path);
        if (e->n_tiles == e->tiles_cap) {
            size_t cap = e->tiles_cap ? 2 * e->tiles_cap : 1024;
            tile_plan *t = realloc(e->tiles, cap * sizeof *t);
            if (!t) return wc_error_set(err, WC_ERR_NOMEM, "%s: out of memory", e->path);
            e->tiles = t;
            e->tiles_cap = cap;
        }
        uint64_t len = end - off < e->tile_size ? end - off : e->tile_size;
        e->tiles[e->n_tiles++] = (tile_plan){.src_offset = off, .src_size = (uint32_t)len,
                                             .tensor = tensor};
    }
    return WC_OK;
}

static wc_status plan_tiles(encoder *e, const wc_st_file *sf, wc_error *err) {
    e->n_tensors = (uint32_t)sf->n_tensors;
    e->tensors = calloc(sf->n_tensors ? sf->n_tensors : 1, sizeof *e->tensors);
    if (!e->tensors) return wc_error_set(err, WC_ERR_NOMEM, "%s: out of memory", e->path);
    wc_status st = add_tiles(e, 0, sf->data_start, WC_TENSOR_NONE, err);
    uint64_t pos = sf->data_start;
    for (uint32_t i = 0; i < e->n_tensors && st == WC_OK; i++) {
        const wc_st_tensor *t = &sf->tensors[i];
        wc_tensor_info *in = &e->tensors[i].info;
        if (t->begin > pos) st = add_tiles(e, pos, t->begin, WC_TENSOR_NONE, err);
        in->src_offset = t->begin;
        in->src_size = t->end - t->begin;
        in->dtype = (uint8_t)t->dtype;
        in->plane_count = (uint8_t)wc_plane_count(t->dtype);
        in->first_tile = e->n_tiles;
        if (st == WC_OK) st = add_tiles(e, t->begin, t->end, i, err);
        in->tile_count = e->n_tiles - in->first_tile;
        if (t->end > pos) pos = t->end;
    }
    if (st == WC_OK && pos < e->src_size) st = add_tiles(e, pos, e->src_size, WC_TENSOR_NONE, err);
    return st;
}

/* Histograms of every plane of one tensor; decides which planes to code. */
static void choose_plane_coding(void *ctx, size_t ti, unsigned worker) {
    encoder *e = ctx;
    tensor_plan *tp = &e->tensors[ti];
    wc_tensor_info *in = &tp->info;
    unsigned w = in->plane_count;
    if (in->dtype == WC_DTYPE_UNKNOWN || in->src_size == 0 || e->store_raw) return;
    uint64_t (*hist)[256] = calloc(WC_MAX_PLANES, sizeof *hist);
    if (!hist) return; /* planes stay raw: correct, only larger */
    uint8_t *planes = e->scratch[worker];
    for (uint32_t k = 0; k < in->tile_count; k++) {
        const tile_plan *t = &e->tiles[in->first_tile + k];
        size_t n = t->src_size / w;
        wc_planes_split((wc_dtype)in->dtype, e->src + t->src_offset, n, planes);
        for (unsigned p = 0; p < w; p++)
            for (size_t i = 0; i < n; i++) hist[p][planes[p * n + i]]++;
    }
    uint64_t n_total = in->src_size / w;
    for (unsigned p = 0; p < w; p++) {
        wc_rans_normalize(hist[p], &tp->freqs[p]);
        uint64_t cost = wc_rans_cost(hist[p], &tp->freqs[p], n_total);
        in->plane_coded[p] = cost * 100 < n_total * 99;
    }
    free(hist);
}

/* Encodes tile (batch_first + slot) into out[slot]; falls back to raw when it does not shrink. */
static void encode_tile(void *ctx, size_t slot, unsigned worker) {
    encoder *e = ctx;
    tile_plan *t = &e->tiles[e->batch_first + slot];
    const uint8_t *src = e->src + t->src_offset;
    t->checksum = wc_hash(src, t->src_size);
    t->mode = WC_TILE_RAW;
    t->coded_size = t->src_size;
    if (t->tensor == WC_TENSOR_NONE) return;
    const tensor_plan *tp = &e->tensors[t->tensor];
    unsigned w = tp->info.plane_count, n_coded = 0;
    for (unsigned p = 0; p < w; p++) n_coded += tp->info.plane_coded[p];
    if (!n_coded) return;

    size_t n = t->src_size / w;
    uint32_t ns = wc_stream_count(n);
    uint8_t *planes = e->scratch[worker], *out = e->out[slot];
    wc_planes_split((wc_dtype)tp->info.dtype, src, n, planes);
    uint8_t *sizes = out;
    size_t pos = (size_t)4 * ns * n_coded;
    for (unsigned p = 0; p < w && pos < t->src_size; p++) {
        const uint8_t *plane = planes + p * n;
        if (!tp->info.plane_coded[p]) {
            memcpy(out + pos, plane, n);
            size_t padded = (size_t)wc_align_up(n, 4);
            memset(out + pos + n, 0, padded - n);
            pos += padded;
            continue;
        }
        for (uint32_t s = 0; s < ns; s++) {
            size_t first = (size_t)s * WC_RANS_STREAM_SYMBOLS;
            size_t cnt = n - first < WC_RANS_STREAM_SYMBOLS ? n - first : WC_RANS_STREAM_SYMBOLS;
            size_t len = wc_rans_encode_stream(&tp->freqs[p], plane + first, cnt, out + pos);
            wc_wr32(sizes, (uint32_t)len);
            sizes += 4;
            pos += len;
        }
    }
    if (pos < t->src_size) {
        t->mode = WC_TILE_PLANES;
        t->coded_size = (uint32_t)pos;
    }
}

static size_t out_bound(uint32_t tile_size) {
    /* header words + per stream (states + padding) + 2 bytes a symbol at worst */
    return 2 * (size_t)tile_size + (tile_size / WC_RANS_STREAM_SYMBOLS + WC_MAX_PLANES) * 144 + 64;
}

static void write_tables(const encoder *e, uint8_t *buf, uint64_t *payload_offsets,
                         uint32_t freq_bytes, uint64_t src_checksum, const char *name) {
    uint8_t *tr = buf + WC_HEADER_SIZE;
    uint8_t *tl = tr + (size_t)e->n_tensors * WC_TENSOR_RECORD_SIZE;
    uint8_t *fq = tl + (size_t)e->n_tiles * WC_TILE_RECORD_SIZE;
    uint32_t fpos = 0;
    for (uint32_t i = 0; i < e->n_tensors; i++) {
        const tensor_plan *tp = &e->tensors[i];
        uint8_t *r = tr + (size_t)i * WC_TENSOR_RECORD_SIZE;
        memset(r, 0, WC_TENSOR_RECORD_SIZE);
        wc_wr64(r, tp->info.src_offset);
        wc_wr64(r + 8, tp->info.src_size);
        wc_wr32(r + 16, tp->info.first_tile);
        wc_wr32(r + 20, tp->info.tile_count);
        r[24] = tp->info.dtype;
        r[25] = tp->info.plane_count;
        for (unsigned p = 0; p < WC_MAX_PLANES; p++) {
            uint32_t off = WC_NO_TABLE;
            if (p < tp->info.plane_count && tp->info.plane_coded[p]) {
                off = fpos;
                wc_rans_table_write(&tp->freqs[p], fq + fpos);
                fpos += (uint32_t)wc_rans_table_size(&tp->freqs[p]);
            }
            wc_wr32(r + 32 + 4 * p, off);
        }
    }
    for (uint32_t i = 0; i < e->n_tiles; i++) {
        const tile_plan *t = &e->tiles[i];
        uint8_t *r = tl + (size_t)i * WC_TILE_RECORD_SIZE;
        memset(r, 0, WC_TILE_RECORD_SIZE);
        wc_wr64(r, payload_offsets[i]);
        wc_wr64(r + 8, t->src_offset);
        wc_wr64(r + 16, t->checksum);
        wc_wr32(r + 24, t->src_size);
        wc_wr32(r + 28, t->coded_size);
        wc_wr32(r + 32, t->tensor);
        r[36] = t->mode;
    }
    if (name) wc_name_area_write(fq + freq_bytes, name);
    uint64_t tables_size = (uint64_t)(fq + freq_bytes - tr) + (name ? WC_NAME_AREA_SIZE : 0);
    uint8_t *h = buf;
    memset(h, 0, WC_HEADER_SIZE);
    memcpy(h, WC_MAGIC, 8);
    wc_wr32(h + 8, WC_FORMAT_VERSION);
    wc_wr32(h + 12, e->tile_size);
    wc_wr64(h + 16, e->src_size);
    wc_wr64(h + 24, src_checksum);
    wc_wr32(h + 32, e->n_tensors);
    wc_wr32(h + 36, e->n_tiles);
    wc_wr32(h + 40, freq_bytes);
    wc_wr32(h + 44, name ? WC_FLAG_NAME : 0);
    wc_wr64(h + 48, wc_hash(tr, (size_t)tables_size));
    wc_wr64(h + 56, wc_hash(h, 56));
}

static wc_status encode_payloads(encoder *e, wc_outfile *o, uint64_t payload_start,
                                 uint64_t *payload_offsets, const wc_encode_opts *opts,
                                 wc_error *err) {
    uint32_t batch = e->threads * 8;
    uint64_t pos = payload_start, done = 0;
    for (uint32_t first = 0; first < e->n_tiles; first += batch) {
        if (opts->cancel && *opts->cancel)
            return wc_error_set(err, WC_ERR_CANCELLED, "%s: cancelled", e->path);
        uint32_t cnt = e->n_tiles - first < batch ? e->n_tiles - first : batch;
        e->batch_first = first;
        wc_parallel_for(e->threads, cnt, encode_tile, e);
        for (uint32_t k = 0; k < cnt; k++) {
            const tile_plan *t = &e->tiles[first + k];
            const uint8_t *bytes = t->mode == WC_TILE_RAW ? e->src + t->src_offset : e->out[k];
            payload_offsets[first + k] = pos;
            wc_status st = wc_out_pwrite(o, bytes, t->coded_size, pos, err);
            if (st != WC_OK) return st;
            pos = wc_align_up(pos + t->coded_size, WC_PAYLOAD_ALIGN);
            done += t->src_size;
        }
        if (opts->progress) opts->progress(opts->progress_arg, done, e->src_size);
    }
    return WC_OK;
}

static void encoder_free(encoder *e) {
    for (unsigned w = 0; e->scratch && w < e->threads; w++) free(e->scratch[w]);
    for (unsigned s = 0; e->out && s < e->threads * 8; s++) free(e->out[s]);
    free(e->scratch);
    free(e->out);
    free(e->tiles);
    free(e->tensors);
}

static wc_status alloc_buffers(encoder *e, wc_error *err) {
    unsigned slots = e->threads * 8;
    e->out_cap = out_bound(e->tile_size);
    e->scratch = calloc(e->threads, sizeof *e->scratch);
    e->out = calloc(slots, sizeof *e->out);
    if (!e->scratch || !e->out) return wc_error_set(err, WC_ERR_NOMEM, "%s: out of memory", e->path);
    for (unsigned w = 0; w < e->threads; w++)
        if (!(e->scratch[w] = malloc(e->tile_size)))
            return wc_error_set(err, WC_ERR_NOMEM, "%s: out of memory", e->path);
    for (unsigned s = 0; s < slots; s++)
        if (!(e->out[s] = malloc(e->out_cap)))
            return wc_error_set(err, WC_ERR_NOMEM, "%s: out of memory", e->path);
    return WC_OK;
}

static const char *last_component(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* The name the container keeps: NULL for a name ending in .safetensors, which the container's
 * file name carries (see wcodec.h, Names). */
static wc_status name_to_keep(const char *src, const char *given, const char **out, wc_error *err) {
    const char *name = given ? given : last_component(src);
    if (!wc_name_ok(name))
        return wc_error_set(err, WC_ERR_ARG, "%s: \"%.255s\" cannot be kept as a file name", src, name);
    *out = wc_name_is_safetensors(name) ? NULL : name;
    return WC_OK;
}

wc_status wc_encode_file(const char *src, const char *dst, const wc_encode_opts *opts_in,
                         wc_error *err) {
    wc_encode_opts opts = {0};
    if (opts_in) opts = *opts_in;
    encoder e = {.path = src, .tile_size = opts.tile_size ? opts.tile_size : WC_TILE_SIZE_DEFAULT,
                 .store_raw = opts.store_raw};
    e.threads = opts.threads ? opts.threads : 1;
    if (e.threads > 64) e.threads = 64;
    if (e.tile_size < WC_TILE_SIZE_MIN || e.tile_size > WC_TILE_SIZE_MAX ||
        e.tile_size % WC_PAYLOAD_ALIGN)
        return wc_error_set(err, WC_ERR_ARG, "tile size %u: must be a multiple of 64 in [%u, %u]",
                       e.tile_size, WC_TILE_SIZE_MIN, WC_TILE_SIZE_MAX);

    const char *keep = NULL;
    wc_status nst = name_to_keep(src, opts.source_name, &keep, err);
    if (nst != WC_OK) return nst;
    int fd = open(src, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return wc_error_set(err, WC_ERR_IO, "%s: %s", src, strerror(errno));
    struct stat sb;
    wc_st_file sf = {0};
    wc_outfile o = {.fd = -1};
    uint8_t *tables = NULL;
    uint64_t *payload_offsets = NULL;
    void *map = MAP_FAILED;
    wc_status st = WC_OK;
    if (fstat(fd, &sb) != 0) {
        st = wc_error_set(err, WC_ERR_IO, "%s: %s", src, strerror(errno));
        goto done;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = wc_error_set(err, WC_ERR_ARG, "%s: not a regular file", src);
        goto done;
    }
    e.src_size = (uint64_t)sb.st_size;
    if (e.src_size > 0) {
        map = mmap(NULL, (size_t)e.src_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            st = wc_error_set(err, WC_ERR_IO, "%s: mmap: %s", src, strerror(errno));
            goto done;
        }
        madvise(map, (size_t)e.src_size, MADV_SEQUENTIAL);
        e.src = map;
    }
    if ((st = wc_st_parse(e.src, (size_t)e.src_size, e.src_size, src, &sf, err)) != WC_OK) goto done;
    if ((st = plan_tiles(&e, &sf, err)) != WC_OK) goto done;
    if ((st = alloc_buffers(&e, err)) != WC_OK) goto done;
    wc_parallel_for(e.threads, e.n_tensors, choose_plane_coding, &e);

    uint32_t freq_bytes = 0;
    for (uint32_t i = 0; i < e.n_tensors; i++)
        for (unsigned p = 0; p < e.tensors[i].info.plane_count; p++)
            if (e.tensors[i].info.plane_coded[p])
                freq_bytes += (uint32_t)wc_rans_table_size(&e.tensors[i].freqs[p]);
    size_t tables_len = WC_HEADER_SIZE + (size_t)e.n_tensors * WC_TENSOR_RECORD_SIZE +
                        (size_t)e.n_tiles * WC_TILE_RECORD_SIZE + freq_bytes + (keep ? WC_NAME_AREA_SIZE : 0);
    tables = malloc(tables_len);
    payload_offsets = malloc((e.n_tiles ? e.n_tiles : 1) * sizeof *payload_offsets);
    if (!tables || !payload_offsets) {
        st = wc_error_set(err, WC_ERR_NOMEM, "%s: out of memory", src);
        goto done;
    }
    if ((st = wc_out_open(&o, dst, opts.overwrite, err)) != WC_OK) goto done;
    st = encode_payloads(&e, &o, wc_align_up(tables_len, WC_PAYLOAD_ALIGN), payload_offsets,
                         &opts, err);
    if (st != WC_OK) goto done;
    write_tables(&e, tables, payload_offsets, freq_bytes, wc_hash(e.src, (size_t)e.src_size), keep);
    if ((st = wc_out_pwrite(&o, tables, tables_len, 0, err)) != WC_OK) goto done;
    st = wc_out_commit(&o, sb.st_mode, &sb.st_mtim, err);
done:
    if (st != WC_OK && o.tmp) wc_out_abort(&o);
    free(tables);
    free(payload_offsets);
    encoder_free(&e);
    wc_st_free(&sf);
    if (map != MAP_FAILED) munmap(map, (size_t)e.src_size);
    close(fd);
    return st;
}
