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
    for (size_t i = 0; i < l->n; i++) free(l->v[i].path), free(l->v[i].link);
    free(l->v);
}

static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const wc_manifest_entry *)a)->path, ((const wc_manifest_entry *)b)->path);
}

/* A link target the manifest can hold: what a mount can hand to readlink as it is. */
static int link_target_ok(const char *t) {
    size_t n = strlen(t);
    if (n == 0 || n > 4095) return 0;
    for (size_t k = 0; k < n; k++)
        if ((unsigned char)t[k] < 0x20 || t[k] == 0x7f) return 0;
    return 1;
}

typedef struct {
    const char *root;
    entry_list *l;
    wc_manifest *old;       /* the manifest being replaced, or NULL */
    struct timespec old_time; /* its mtime: when the walk that wrote it began */
} walk_ctx;

/* The checksum an older manifest gives a file still of its size and mtime, or 0. Only for a
 * file last modified before the walk that wrote the old one began (to the nanosecond): one
 * rewritten later may keep its size and whole-second mtime. */
static uint64_t old_xxh3(const walk_ctx *w, const char *path, const struct stat *sb) {
    wc_manifest_entry key = {.path = (char *)path};
    const wc_manifest_entry *e = w->old && w->old->n ? bsearch(&key, w->old->files, w->old->n, sizeof key, cmp_entry)
                                                     : NULL;
    return e && !e->link && e->size == (uint64_t)sb->st_size && e->mtime == sb->st_mtim.tv_sec &&
                   (sb->st_mtim.tv_sec < w->old_time.tv_sec ||
                    (sb->st_mtim.tv_sec == w->old_time.tv_sec && sb->st_mtim.tv_nsec < w->old_time.tv_nsec))
               ? e->xxh3 : 0;
}

/* Adds the regular files and symlinks under root/rel to w->l; rel is "" or "sub/dir/". */
static wc_status walk(const walk_ctx *w, const char *rel, wc_error *err) {
    char *dir;
    if (asprintf(&dir, "%s/%s", w->root, rel) < 0) return wc_error_set(err, WC_ERR_NOMEM, "out of memory");
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
            else st = walk(w, subdir, err), free(subdir);
        } else if (S_ISREG(sb.st_mode) || S_ISLNK(sb.st_mode)) {
            char target[4097]; /* one byte more than a target may have: a longer one is seen */
            ssize_t tn = S_ISLNK(sb.st_mode) ? readlink(full, target, sizeof target - 1) : 0;
            if (tn >= 0) target[tn] = 0;
            wc_manifest_entry e = {.path = sub, .mtime = sb.st_mtim.tv_sec,
                                   .size = S_ISLNK(sb.st_mode) ? (uint64_t)(tn > 0 ? tn : 0) : (uint64_t)sb.st_size};
            if (tn < 0)
                st = wc_error_set(err, WC_ERR_IO, "%s: %s", full, strerror(errno));
            else if (S_ISLNK(sb.st_mode) && !link_target_ok(target))
                st = wc_error_set(err, WC_ERR_IO, "%s: a link target a manifest cannot hold (empty, over 4095 "
                                  "bytes or with a control byte)", full);
            else if (S_ISLNK(sb.st_mode) && !(e.link = strdup(target)))
                st = wc_error_set(err, WC_ERR_NOMEM, "out of memory");
            else if (S_ISREG(sb.st_mode) && !(e.xxh3 = old_xxh3(w, sub, &sb)))
                st = wc_hash_file(full, &e.xxh3, err);
            if (st == WC_OK && list_push(w->l, e) == 0) {
                sub = NULL; /* the list owns it */
            } else {
                free(e.link);
                if (st == WC_OK) st = wc_error_set(err, WC_ERR_NOMEM, "out of memory");
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
        /* sizes below 2^53 are exact as JSON numbers; a larger file is not a model shard. A link
         * has no size or checksum of its own: its target is all it holds */
        if (!cJSON_AddStringToObject(o, "path", e->path) ||
            (!e->link && !cJSON_AddNumberToObject(o, "size", (double)e->size)) ||
            !cJSON_AddNumberToObject(o, "mtime", (double)e->mtime) ||
            !cJSON_AddStringToObject(o, e->link ? "link" : "xxh3", e->link ? e->link : hex))
            goto fail;
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    return text;
fail:
    cJSON_Delete(root);
    return NULL;
}

/* The manifest at `path` and its mtime, or NULL: none there, or one that does not parse, only
 * means every file is read again. */
/* The manifest at path now (NULL if none or unparsable), its bytes (*text, malloc'd, NUL-ended;
 * NULL if unreadable) and its mtime. */
static wc_manifest *read_old(const char *path, char **text, struct timespec *mtime) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    char *buf = NULL;
    wc_manifest *m = NULL;
    if (fd >= 0 && fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size < (256 << 20) &&
        (buf = malloc((size_t)sb.st_size + 1))) {
        size_t got = 0;
        while (got < (size_t)sb.st_size) {
            ssize_t r = read(fd, buf + got, (size_t)sb.st_size - got);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) break;
            got += (size_t)r;
        }
        buf[got] = 0;
        if (got == (size_t)sb.st_size && wc_manifest_parse((const uint8_t *)buf, got, &m, NULL) == WC_OK)
            *mtime = sb.st_mtim;
    }
    if (fd >= 0) close(fd);
    *text = buf;
    return m;
}

wc_status wc_manifest_write(const char *dir, wc_error *err) {
    entry_list l = {0};
    char *text = NULL, *dst = NULL;
    if (asprintf(&dst, "%s/%s", dir, WC_MANIFEST_NAME) < 0) return wc_error_set(err, WC_ERR_NOMEM, "%s: out of memory", dir);
    /* the manifest's mtime is when the walk began: a file changed after it was read, in the
     * same second, is not taken on trust the next time (old_xxh3) */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    walk_ctx w = {.root = dir, .l = &l};
    char *old_text = NULL;
    w.old = read_old(dst, &old_text, &w.old_time);
    wc_status st = walk(&w, "", err);
    wc_manifest_free(w.old);
    if (st == WC_OK) {
        qsort(l.v, l.n, sizeof *l.v, cmp_entry);
        if (!(text = manifest_json(&l))) st = wc_error_set(err, WC_ERR_NOMEM, "%s: out of memory", dir);
    }
    if (st == WC_OK && !(old_text && !strcmp(old_text, text))) { /* unchanged: left alone */
        wc_outfile o;
        if ((st = wc_out_open(&o, dst, 1, err)) == WC_OK) {
            st = wc_out_pwrite(&o, text, strlen(text), 0, err);
            if (st == WC_OK) st = wc_out_commit(&o, 0644, &now, err);
            else wc_out_abort(&o);
        }
    }
    free(dst);
    free(old_text);
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
    const cJSON *link = cJSON_GetObjectItemCaseSensitive(o, "link");
    double sz = 0, mt = 0;
    if (!cJSON_IsObject(o) || !cJSON_IsString(path) || !wc_manifest_path_ok(path->valuestring))
        return FMT_FAIL("manifest: file %zu: missing or unsafe \"path\"", i);
    /* a link's size and checksum are not read: its target is all it holds */
    if (link && (!cJSON_IsString(link) || !link_target_ok(link->valuestring)))
        return FMT_FAIL("manifest: %s: \"link\" is not a target of 1..4095 bytes without control bytes",
                        path->valuestring);
    if (!link && (!whole_number(size, (double)MAX_SIZE, &sz) || sz < 0))
        return FMT_FAIL("manifest: %s: \"size\" is not a byte count", path->valuestring);
    if (mtime && !whole_number(mtime, 1e15, &mt))
        return FMT_FAIL("manifest: %s: \"mtime\" is not a time in seconds", path->valuestring);
    char *end = NULL;
    if (!link && hash && (!cJSON_IsString(hash) || strlen(hash->valuestring) != 16 ||
                          (e->xxh3 = strtoull(hash->valuestring, &end, 16), *end)))
        return FMT_FAIL("manifest: %s: \"xxh3\" is not 16 hex digits", path->valuestring);
    if (!(e->path = strdup(path->valuestring)) || (link && !(e->link = strdup(link->valuestring)))) {
        free(e->path);
        e->path = NULL;
        return wc_error_set(err, WC_ERR_NOMEM, "out of memory");
    }
    e->size = link ? strlen(e->link) : (uint64_t)sz;
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
            free(e.link);
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
    for (size_t i = 0; i < m->n; i++) free(m->files[i].path), free(m->files[i].link);
    free(m->files);
    free(m);
}
