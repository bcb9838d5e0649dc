/* safetensors.c - the one safetensors header parser (cJSON), with every check the format needs.
 *
 * Layout: u64 N (little-endian), N bytes of JSON, then the data area. The JSON maps tensor
 * names to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the data
 * area), plus an optional "__metadata__" object. Writers pad the JSON with spaces.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "wc_internal.h"

#define ST_FAIL(...) wc_error_set(err, WC_ERR_SAFETENSORS, __VA_ARGS__)

/* JSON numbers arrive as doubles: exact for integers up to 2^53, far beyond any real file. */
static int json_to_u64(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0) || d > 9007199254740992.0 || floor(d) != d) return 0;
    *out = (uint64_t)d;
    return 1;
}

static int cmp_tensor(const void *a, const void *b) {
    const wc_st_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* JSON allows a key twice; safetensors does not. */
static wc_status check_unique_names(const wc_st_tensor *ts, size_t nt, const char *path,
                                    wc_error *err) {
    if (nt < 2) return WC_OK;
    const char **names = malloc(nt * sizeof *names);
    if (!names) return wc_error_set(err, WC_ERR_NOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < nt; i++) names[i] = ts[i].name;
    qsort(names, nt, sizeof *names, cmp_name);
    wc_status st = WC_OK;
    for (size_t i = 1; i < nt && st == WC_OK; i++)
        if (strcmp(names[i], names[i - 1]) == 0)
            st = ST_FAIL("%s: tensor '%s' appears twice", path, names[i]);
    free(names);
    return st;
}

void wc_st_free(wc_st_file *f) {
    if (!f) return;
    for (size_t i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    memset(f, 0, sizeof *f);
}

static wc_status parse_entry(const cJSON *item, uint64_t data_len, const char *path,
                             wc_st_tensor *t, wc_error *err) {
    const char *name = item->string;
    if (!cJSON_IsObject(item))
        return ST_FAIL("%s: tensor '%s': entry is not a JSON object", path, name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsString(dtype))
        return ST_FAIL("%s: tensor '%s': missing or non-string \"dtype\"", path, name);
    if (!cJSON_IsArray(shape))
        return ST_FAIL("%s: tensor '%s': missing or non-array \"shape\"", path, name);
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2)
        return ST_FAIL("%s: tensor '%s': \"data_offsets\" must be [begin, end]", path, name);

    snprintf(t->dtype_name, sizeof t->dtype_name, "%s", dtype->valuestring);
    t->dtype = wc_dtype_from_name(dtype->valuestring);

    int nd = cJSON_GetArraySize(shape);
    if (nd > WC_ST_MAX_DIMS)
        return ST_FAIL("%s: tensor '%s': %d dimensions (at most %d)", path, name, nd,
                       WC_ST_MAX_DIMS);
    t->ndim = (uint32_t)nd;
    uint64_t elems = 1;
    int overflow = 0;
    const cJSON *dim;
    int k = 0;
    cJSON_ArrayForEach(dim, shape) {
        if (!json_to_u64(dim, &t->shape[k]))
            return ST_FAIL("%s: tensor '%s': shape[%d] is not a non-negative integer", path,
                           name, k);
        overflow |= __builtin_mul_overflow(elems, t->shape[k], &elems);
        k++;
    }
    uint64_t b, e;
    if (!json_to_u64(cJSON_GetArrayItem(offs, 0), &b) ||
        !json_to_u64(cJSON_GetArrayItem(offs, 1), &e))
        return ST_FAIL("%s: tensor '%s': data_offsets are not non-negative integers", path,
                       name);
    if (b > e)
        return ST_FAIL("%s: tensor '%s': data_offsets begin %llu > end %llu", path, name,
                       (unsigned long long)b, (unsigned long long)e);
    if (e > data_len)
        return ST_FAIL("%s: tensor '%s': data_offsets end %llu is beyond the data area "
                       "(%llu bytes)", path, name, (unsigned long long)e,
                       (unsigned long long)data_len);
    unsigned w = wc_dtype_width(t->dtype);
    if (w) { /* unknown dtypes have no width to check: their bytes are kept as they are */
        uint64_t bytes;
        if (overflow || __builtin_mul_overflow(elems, (uint64_t)w, &bytes))
            return ST_FAIL("%s: tensor '%s': shape overflows 64 bits", path, name);
        if (bytes != e - b)
            return ST_FAIL("%s: tensor '%s': shape and %s give %llu bytes but data_offsets "
                           "span %llu", path, name, t->dtype_name, (unsigned long long)bytes,
                           (unsigned long long)(e - b));
    }
    t->begin = b;
    t->end = e;
    return WC_OK;
}

wc_status wc_st_parse(const uint8_t *buf, size_t buf_len, uint64_t file_size, const char *path,
                      wc_st_file *out, wc_error *err) {
    if (!path) path = "(safetensors)";
    if (file_size < 8 || buf_len < 8)
        return ST_FAIL("%s: file is %llu bytes, too short for a safetensors header", path,
                       (unsigned long long)file_size);
    uint64_t n = wc_rd64(buf);
    if (n > file_size - 8)
        return ST_FAIL("%s: header length %llu is beyond the file size %llu", path,
                       (unsigned long long)n, (unsigned long long)file_size);
    if (n > WC_ST_MAX_HEADER)
        return ST_FAIL("%s: header length %llu exceeds the %u-byte limit", path,
                       (unsigned long long)n, WC_ST_MAX_HEADER);
    if (n < 2) return ST_FAIL("%s: header length %llu is too short", path, (unsigned long long)n);
    if (buf_len < 8 + n) return wc_error_set(err, WC_ERR_ARG, "%s: header not in buffer", path);

    const char *json = (const char *)buf + 8;
    const char *json_end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, (size_t)n, &json_end, 0);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        long off = at ? (long)(at - json) : -1;
        return ST_FAIL("%s: header JSON syntax error near byte %ld", path, off);
    }
    wc_status st = WC_OK;
    wc_st_tensor *ts = NULL;
    size_t nt = 0;
    for (const char *p = json_end; p < json + n; p++) {
        if (*p != ' ' && *p != '\0' && *p != '\n' && *p != '\t' && *p != '\r') {
            st = ST_FAIL("%s: unexpected bytes after the header JSON at byte %ld", path,
                         (long)(p - json));
            goto done;
        }
    }
    if (!cJSON_IsObject(root)) {
        st = ST_FAIL("%s: header JSON is not an object", path);
        goto done;
    }
    size_t cap = (size_t)cJSON_GetArraySize(root);
    ts = calloc(cap ? cap : 1, sizeof *ts);
    if (!ts) {
        st = wc_error_set(err, WC_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    uint64_t data_len = file_size - 8 - n;
    const cJSON *item;
    cJSON_ArrayForEach(item, root) {
        if (strcmp(item->string, "__metadata__") == 0) {
            if (!cJSON_IsObject(item)) {
                st = ST_FAIL("%s: \"__metadata__\" is not an object", path);
                goto done;
            }
            continue;
        }
        wc_st_tensor *t = &ts[nt];
        if ((st = parse_entry(item, data_len, path, t, err)) != WC_OK) goto done;
        t->begin += 8 + n;
        t->end += 8 + n;
        if (!(t->name = strdup(item->string))) {
            st = wc_error_set(err, WC_ERR_NOMEM, "%s: out of memory", path);
            goto done;
        }
        nt++;
    }
    if ((st = check_unique_names(ts, nt, path, err)) != WC_OK) goto done;
    qsort(ts, nt, sizeof *ts, cmp_tensor);
    /* Overlap: compare each tensor with the furthest end seen so far (empty ones overlap none). */
    uint64_t max_end = 0;
    const char *max_name = NULL;
    for (size_t i = 0; i < nt; i++) {
        if (ts[i].begin == ts[i].end) continue;
        if (max_name && ts[i].begin < max_end) {
            st = ST_FAIL("%s: tensor '%s' overlaps tensor '%s'", path, ts[i].name, max_name);
            goto done;
        }
        max_end = ts[i].end;
        max_name = ts[i].name;
    }

    out->file_size = file_size;
    out->header_len = n;
    out->data_start = 8 + n;
    out->n_tensors = nt;
    out->tensors = ts;
    ts = NULL;
done:
    if (ts) {
        for (size_t i = 0; i < nt; i++) free(ts[i].name);
        free(ts);
    }
    cJSON_Delete(root);
    return st;
}

int wc_st_sniff_file(const char *path) {
    wc_source *src;
    if (wc_source_open_file(path, &src, NULL) != WC_OK) return 0;
    uint8_t head[9], *buf = NULL;
    int yes = 0;
    /* cheap refusals first: a JSON object that fits the file and the parser's limit */
    if (src->size >= 10 && wc_source_read(src, 0, sizeof head, head, NULL) == WC_OK) {
        uint64_t n = wc_rd64(head);
        if (n >= 2 && n <= WC_ST_MAX_HEADER && n <= src->size - 8 && head[8] == '{' && (buf = malloc(8 + n)) &&
            wc_source_read(src, 0, 8 + (size_t)n, buf, NULL) == WC_OK) {
            wc_st_file f;
            yes = wc_st_parse(buf, 8 + (size_t)n, src->size, path, &f, NULL) == WC_OK;
            if (yes) wc_st_free(&f);
        }
    }
    free(buf);
    wc_source_close(src);
    return yes;
}
