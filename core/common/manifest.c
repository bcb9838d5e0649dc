/* manifest.c - the list of files of an encoded directory, for servers that cannot list one. */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "wc_internal.h"

#define FMT_FAIL(...) wc_error_set(err, WC_ERR_FORMAT, __VA_ARGS__)
#define MAX_SIZE (1ull << 62)

typedef struct {
    wc_manifest_entry *v;
    size_t n, cap;
} entry_list;

static int list_push(entry_list *l, wc_manifest_entry e) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        wc_manifest_entry *v = realloc(l->v, cap * sizeof *v);
        if (!v) return -1;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = e;
    return 0;
}

static void list_free(entry_list *l) {
    for (size_t i = 0; i < l->n; i++) free(l->v[i].path);
    free(l->v);
}

static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const wc_manifest_entry *)a)->path, ((const wc_manifest_entry *)b)->path);
}

static wc_status hash_file(const char *path, uint64_t *out, wc_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return wc_error_set(err, WC_ERR_IO, "%s: %s", path, strerror(errno));
    wc_hasher *h = wc_hasher_new();
    uint8_t *buf = malloc(1 << 20);
    wc_status st = WC_OK;
    if (!h || !buf) {
        st = wc_error_set(err, WC_ERR_NOMEM, "%s: out of memory", path);
    } else {
        for (;;) {
            ssize_t r = read(fd, buf, 1 << 20);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) {
                st = wc_error_set(err, WC_ERR_IO, "%s: %s", path, strerror(errno));
                break;
            }
            if (r == 0) break;
            wc_hasher_update(h, buf, (size_t)r);
        }
        if (st == WC_OK) *out = wc_hasher_digest(h);
    }
    if (h) wc_hasher_free(h);
    free(buf);
    close(fd);
    return st;
}

/* Adds the regular files under root/rel to l; rel is "" or "sub/dir/". */
static wc_status walk(const char *root, const char *rel, entry_list *l, wc_error *err) {
    char *dir;
    if (asprintf(&dir, "%s/%s", root, rel) < 0) return wc_error_set(err, WC_ERR_NOMEM, "out of memory");
    struct dirent **ents;
    int n = scandir(dir, &ents, NULL, alphasort);
    wc_status st = n < 0 ? wc_error_set(err, WC_ERR_IO, "%s: %s", dir, strerror(errno)) : WC_OK;
    for (int i = 0; i < n; i++) {
        const char *name = ents[i]->d_name;
        char *full = NULL, *sub = NULL;
        struct stat sb;
        if (st != WC_OK || !strcmp(name, ".") || !strcmp(name, "..") ||
            (name[0] == '.' && strstr(name, ".tmp.")) || /* our own temporaries */
            (!*rel && !strcmp(name, WC_MANIFEST_NAME))) {
        } else if (asprintf(&full, "%s%s", dir, name) < 0 || asprintf(&sub, "%s%s", rel, name) < 0) {
            st = wc_error_set(err, WC_ERR_NOMEM, "out of memory");
        } else if (lstat(full, &sb) != 0) {
            st = wc_error_set(err, WC_ERR_IO, "%s: %s", full, strerror(errno));
        } else if (S_ISDIR(sb.st_mode)) {
            char *subdir;
            if (asprintf(&subdir, "%s/", sub) < 0) st = wc_error_set(err, WC_ERR_NOMEM, "out of memory");
            else st = walk(root, subdir, l, err), free(subdir);
        } else if (S_ISREG(sb.st_mode)) {
            wc_manifest_entry e = {.path = sub, .size = (uint64_t)sb.st_size, .mtime = sb.st_mtim.tv_sec};
            if ((st = hash_file(full, &e.xxh3, err)) == WC_OK) {
                if (list_push(l, e) != 0) st = wc_error_set(err, WC_ERR_NOMEM, "out of memory");
                else sub = NULL; /* the list owns it */
            }
        }
        free(full);
        free(sub);
        free(ents[i]);
    }
    if (n >= 0) free(ents);
    free(dir);
    return st;
}

static char *manifest_json(const entry_list *l) {
    cJSON *root = cJSON_CreateObject(), *files = cJSON_CreateArray();
    if (!root || !files) goto fail;
    cJSON_AddItemToObject(root, "files", files);
    if (!cJSON_AddNumberToObject(root, "wcodec_manifest", 1)) goto fail;
    for (size_t i = 0; i < l->n; i++) {
        const wc_manifest_entry *e = &l->v[i];
        char hex[17];
        snprintf(hex, sizeof hex, "%016" PRIx64, e->xxh3);
        cJSON *o = cJSON_CreateObject();
        if (!o) goto fail;
        cJSON_AddItemToArray(files, o);
        /* sizes below 2^53 are exact as JSON numbers; a larger file is not a model shard */
        if (!cJSON_AddStringToObject(o, "path", e->path) ||
            !cJSON_AddNumberToObject(o, "size", (double)e->size) ||
            !cJSON_AddNumberToObject(o, "mtime", (double)e->mtime) ||
            !cJSON_AddStringToObject(o, "xxh3", hex))
            goto fail;
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    return text;
fail:
    cJSON_Delete(root);
    return NULL;
}

wc_status wc_manifest_write(const char *dir, wc_error *err) {
    entry_list l = {0};
    wc_status st = walk(dir, "", &l, err);
    char *text = NULL, *dst = NULL;
    if (st == WC_OK) {
        qsort(l.v, l.n, sizeof *l.v, cmp_entry);
        text = manifest_json(&l);
        if (!text || asprintf(&dst, "%s/%s", dir, WC_MANIFEST_NAME) < 0) {
            dst = NULL;
            st = wc_error_set(err, WC_ERR_NOMEM, "%s: out of memory", dir);
        }
    }
    if (st == WC_OK) {
        wc_outfile o;
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        if ((st = wc_out_open(&o, dst, 1, err)) == WC_OK) {
            st = wc_out_pwrite(&o, text, strlen(text), 0, err);
            if (st == WC_OK) st = wc_out_commit(&o, 0644, &now, err);
            else wc_out_abort(&o);
        }
    }
    free(dst);
    cJSON_free(text);
    list_free(&l);
    return st;
}

/* A path the mount may present: relative, no empty, "." or ".." component, no control bytes. */
int wc_manifest_path_ok(const char *p) {
    if (!*p || strlen(p) > 4096) return 0;
    for (const char *c = p;; ) {
        const char *slash = strchr(c, '/');
        size_t n = slash ? (size_t)(slash - c) : strlen(c);
        if (n == 0 || n > 255 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
            return 0;
        for (size_t k = 0; k < n; k++)
            if ((unsigned char)c[k] < 0x20 || c[k] == 0x7f) return 0;
        if (!slash) return 1;
        c = slash + 1;
    }
}

static int whole_number(const cJSON *v, double max, double *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= -max && d <= max) || d != (double)(int64_t)d) return 0;
    *out = d;
    return 1;
}

static wc_status parse_entry(const cJSON *o, size_t i, wc_manifest_entry *e, wc_error *err) {
    const cJSON *path = cJSON_GetObjectItemCaseSensitive(o, "path");
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(o, "size");
    const cJSON *mtime = cJSON_GetObjectItemCaseSensitive(o, "mtime");
    const cJSON *hash = cJSON_GetObjectItemCaseSensitive(o, "xxh3");
    double sz, mt = 0;
    if (!cJSON_IsObject(o) || !cJSON_IsString(path) || !wc_manifest_path_ok(path->valuestring))
        return FMT_FAIL("manifest: file %zu: missing or unsafe \"path\"", i);
    if (!whole_number(size, (double)MAX_SIZE, &sz) || sz < 0)
        return FMT_FAIL("manifest: %s: \"size\" is not a byte count", path->valuestring);
    if (mtime && !whole_number(mtime, 1e15, &mt))
        return FMT_FAIL("manifest: %s: \"mtime\" is not a time in seconds", path->valuestring);
    char *end = NULL;
    if (hash && (!cJSON_IsString(hash) || strlen(hash->valuestring) != 16 ||
                 (e->xxh3 = strtoull(hash->valuestring, &end, 16), *end)))
        return FMT_FAIL("manifest: %s: \"xxh3\" is not 16 hex digits", path->valuestring);
    if (!(e->path = strdup(path->valuestring))) return wc_error_set(err, WC_ERR_NOMEM, "out of memory");
    e->size = (uint64_t)sz;
    e->mtime = (int64_t)mt;
    return WC_OK;
}

wc_status wc_manifest_parse(const uint8_t *buf, size_t len, wc_manifest **out, wc_error *err) {
    cJSON *root = cJSON_ParseWithLength((const char *)buf, len);
    const cJSON *version = root ? cJSON_GetObjectItemCaseSensitive(root, "wcodec_manifest") : NULL;
    const cJSON *files = root ? cJSON_GetObjectItemCaseSensitive(root, "files") : NULL;
    entry_list l = {0};
    wc_status st = WC_OK;
    if (!root || !cJSON_IsObject(root)) st = FMT_FAIL("manifest: not a JSON object");
    else if (!cJSON_IsNumber(version) || version->valuedouble != 1)
        st = FMT_FAIL("manifest: not a version 1 wcodec manifest");
    else if (!cJSON_IsArray(files)) st = FMT_FAIL("manifest: no \"files\" array");
    size_t i = 0;
    for (const cJSON *o = files ? files->child : NULL; st == WC_OK && o; o = o->next, i++) {
        wc_manifest_entry e = {0};
        if ((st = parse_entry(o, i, &e, err)) == WC_OK && list_push(&l, e) != 0) {
            free(e.path);
            st = wc_error_set(err, WC_ERR_NOMEM, "out of memory");
        }
    }
    cJSON_Delete(root);
    wc_manifest *m = st == WC_OK ? malloc(sizeof *m) : NULL;
    if (st == WC_OK && !m) st = wc_error_set(err, WC_ERR_NOMEM, "out of memory");
    if (st != WC_OK) {
        list_free(&l);
        return st;
    }
    m->n = l.n;
    m->files = l.v;
    if ((st = wc_manifest_check(m, err)) != WC_OK) {
        wc_manifest_free(m);
        return st;
    }
    *out = m;
    return WC_OK;
}

wc_status wc_manifest_check(wc_manifest *m, wc_error *err) {
    if (m->n == 0) return WC_OK;
    qsort(m->files, m->n, sizeof *m->files, cmp_entry);
    for (size_t k = 0; k < m->n; k++) {
        char *p = m->files[k].path;
        if (!wc_manifest_path_ok(p)) return FMT_FAIL("manifest: unsafe path \"%.200s\"", p);
        if (k && !strcmp(m->files[k - 1].path, p)) return FMT_FAIL("manifest: %s is listed twice", p);
        /* "a" a file and "a/b" another: "a" cannot be both */
        for (const char *s = strchr(p, '/'); s; s = strchr(s + 1, '/')) {
            char prefix[4097];
            snprintf(prefix, sizeof prefix, "%.*s", (int)(s - p), p);
            wc_manifest_entry key = {.path = prefix};
            if (bsearch(&key, m->files, m->n, sizeof key, cmp_entry))
                return FMT_FAIL("manifest: %s is a file and a folder", prefix);
        }
    }
    return WC_OK;
}

void wc_manifest_free(wc_manifest *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n; i++) free(m->files[i].path);
    free(m->files);
    free(m);
}
