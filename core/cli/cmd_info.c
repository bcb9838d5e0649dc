/* cmd_info.c - `wcodec info [--json] FILE.wcodec`: what is in a container, tensor by tensor. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"

/* Names and shapes live in the source's header JSON, which the container keeps as its first
 * tiles; the encoder numbered tensors in the parser's order, so index i matches. */
static int read_source_header(const wc_container *c, wc_st_file *sf, wc_error *err) {
    uint8_t len8[8];
    if (wc_container_source_size(c) < 8 || wc_container_read_range(c, 0, 8, len8, err) != WC_OK)
        return -1;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | len8[i];
    if (n > WC_ST_MAX_HEADER || n > wc_container_source_size(c) - 8) return -1;
    uint8_t *buf = malloc((size_t)n + 8);
    int rc = -1;
    if (buf && wc_container_read_range(c, 0, (size_t)n + 8, buf, err) == WC_OK &&
        wc_st_parse(buf, (size_t)n + 8, wc_container_source_size(c), NULL, sf, err) == WC_OK)
        rc = 0;
    free(buf);
    return rc;
}

/* One tensor's line. */
typedef struct {
    const char *name, *dtype;
    char shape[256], coding[16];
    uint64_t source, coded;
    const wc_st_tensor *st; /* NULL where the header could not be read */
} info_row;

static void fill_row(const wc_container *c, const wc_st_file *sf, int have_names, uint32_t i, info_row *r) {
    const wc_tensor_info *t = wc_container_tensor(c, i);
    int any_coded = 0;
    memset(r, 0, sizeof *r);
    for (uint32_t k = 0; k < t->tile_count; k++) {
        const wc_tile_info *ti = wc_container_tile(c, t->first_tile + k);
        r->coded += ti->coded_size;
        any_coded |= ti->mode == WC_TILE_PLANES;
    }
    r->source = t->src_size;
    r->name = "?";
    r->dtype = wc_dtype_name((wc_dtype)t->dtype);
    snprintf(r->shape, sizeof r->shape, "?");
    snprintf(r->coding, sizeof r->coding, "raw");
    if (have_names && sf->tensors[i].begin == t->src_offset) {
        const wc_st_tensor *s = r->st = &sf->tensors[i];
        r->name = s->name;
        r->dtype = s->dtype_name;
        size_t pos = (size_t)snprintf(r->shape, sizeof r->shape, "[");
        for (uint32_t d = 0; d < s->ndim && pos < sizeof r->shape; d++)
            pos += (size_t)snprintf(r->shape + pos, sizeof r->shape - pos, "%s%" PRIu64, d ? "," : "", s->shape[d]);
        if (pos < sizeof r->shape) snprintf(r->shape + pos, sizeof r->shape - pos, "]");
    }
    if (any_coded) {
        for (unsigned p = 0; p < t->plane_count; p++) r->coding[p] = t->plane_coded[p] ? 'r' : '-';
        r->coding[t->plane_count] = 0;
    }
}

static double ratio(uint64_t num, uint64_t den) { return den ? (double)num / den : 1.0; }

static int print_json(const char *path, const wc_container *c, const wc_st_file *sf, int have_names) {
    cJSON *root = cJSON_CreateObject(), *list = cJSON_CreateArray();
    uint64_t src = wc_container_source_size(c), file = wc_container_file_size(c);
    cJSON_AddStringToObject(root, "file", path);
    cJSON_AddNumberToObject(root, "source_bytes", (double)src);
    cJSON_AddNumberToObject(root, "container_bytes", (double)file);
    cJSON_AddNumberToObject(root, "ratio", ratio(file, src));
    cJSON_AddNumberToObject(root, "tile_size", wc_container_tile_size(c));
    cJSON_AddNumberToObject(root, "tiles", wc_container_tile_count(c));
    cJSON_AddItemToObject(root, "tensors", list);
    for (uint32_t i = 0; i < wc_container_tensor_count(c); i++) {
        info_row r;
        fill_row(c, sf, have_names, i, &r);
        cJSON *t = cJSON_CreateObject(), *shape = cJSON_CreateArray();
        cJSON_AddItemToArray(list, t);
        if (r.st) cJSON_AddStringToObject(t, "name", r.name);
        else cJSON_AddNullToObject(t, "name");
        cJSON_AddStringToObject(t, "dtype", r.dtype);
        for (uint32_t d = 0; r.st && d < r.st->ndim; d++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)r.st->shape[d]));
        cJSON_AddItemToObject(t, "shape", r.st ? shape : (cJSON_Delete(shape), cJSON_CreateNull()));
        cJSON_AddNumberToObject(t, "source_bytes", (double)r.source);
        cJSON_AddNumberToObject(t, "coded_bytes", (double)r.coded);
        cJSON_AddNumberToObject(t, "ratio", ratio(r.coded, r.source));
        cJSON_AddStringToObject(t, "coding", r.coding);
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return cli_fail("out of memory");
    puts(text);
    free(text);
    return 0;
}

static int print_table(const wc_container *c, const wc_st_file *sf, int have_names) {
    uint32_t n = wc_container_tensor_count(c);
    info_row *rows = malloc((n ? n : 1) * sizeof *rows);
    if (!rows) return cli_fail("out of memory");
    /* columns as wide as their longest entry: long tensor names keep the table aligned */
    int wname = 6, wdtype = 5, wshape = 5;
    uint64_t coded_total = 0;
    for (uint32_t i = 0; i < n; i++) {
        info_row *r = &rows[i];
        fill_row(c, sf, have_names, i, r);
        int ln = (int)strlen(r->name), ld = (int)strlen(r->dtype), ls = (int)strlen(r->shape);
        wname = ln > wname ? ln : wname;
        wdtype = ld > wdtype ? ld : wdtype;
        wshape = ls > wshape ? ls : wshape;
        coded_total += r->coded;
    }
    printf("%-*s %-*s %-*s %12s %12s %7s %s\n", wname, "tensor", wdtype, "dtype", wshape, "shape", "source",
           "coded", "ratio", "coding");
    for (uint32_t i = 0; i < n; i++) {
        const info_row *r = &rows[i];
        printf("%-*s %-*s %-*s %12" PRIu64 " %12" PRIu64 " %7.4f %s\n", wname, r->name, wdtype, r->dtype, wshape,
               r->shape, r->source, r->coded, ratio(r->coded, r->source), r->coding);
    }
    free(rows);
    uint64_t src = wc_container_source_size(c), file = wc_container_file_size(c);
    printf("total: %u tensors, %u tiles of %u bytes, source %" PRIu64 " bytes, tensors coded %" PRIu64
           " bytes, container %" PRIu64 " bytes, ratio %.4f (%.3fx)\n",
           n, wc_container_tile_count(c), wc_container_tile_size(c), src, coded_total, file,
           ratio(file, src), file ? (double)src / file : 1.0);
    return 0;
}

int cmd_info(int argc, char **argv) {
    int json = 0;
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        printf("usage: wcodec info [--json] FILE.wcodec\n"
               "\n"
               "Prints, per tensor: name, dtype, shape, source bytes, container bytes, ratio\n"
               "(container/source) and coding: one letter per byte plane, 'r' for rANS-coded,\n"
               "'-' for stored raw ('raw' when every tile is raw). Then the totals.\n"
               "--json prints the same as one JSON object (file totals, then \"tensors\").\n");
        return 0;
    }
    if (argc >= 2 && !strcmp(argv[1], "--json")) {
        json = 1;
        argc--, argv++;
    }
    if (argc != 2) return cli_fail("info needs FILE.wcodec; see --help");
    wc_error err = {0};
    wc_container *c;
    if (wc_container_open(argv[1], &c, &err) != WC_OK) return cli_fail_err(&err);
    wc_st_file sf = {0};
    int have_names = read_source_header(c, &sf, &err) == 0 &&
                     sf.n_tensors == wc_container_tensor_count(c);
    int rc = 0;
    if (json) rc = print_json(argv[1], c, &sf, have_names);
    else rc = print_table(c, &sf, have_names);
    wc_st_free(&sf);
    wc_container_close(c);
    return rc;
}
