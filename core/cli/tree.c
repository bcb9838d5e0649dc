/* tree.c - walking a directory tree for `wcodec encode` and `wcodec decode`, symlinks kept.
 *
 * Folders are mirrored; regular files go to the caller's file(); symlinks are never followed
 * into folders, so that no tree of links (a loop, a link to an ancestor) can make the walk run
 * forever. Encoding, a link is classified by where it leads (README, "Symlinks"):
 *   inside SRC                -> kept, its target text unchanged (an HF snapshot's link to its blob)
 *   outside SRC, to a file    -> stored as the file it points to (a folder of links into a cache
 *                                elsewhere still gets encoded), with a warning
 *   outside SRC, to a folder  -> kept as a link, with a warning (not followed: it could be /)
 *   dangling, or a loop       -> kept as a link, with a warning
 * Decoding, every link is kept as it is: the encode already chose.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

typedef struct {
    const cli_tree_ops *ops;
    void *ctx;
    char *root_real; /* realpath of SRC: what "inside" means */
} walker;

static void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void warn(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("wcodec: warning: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static int inside(const walker *w, const char *real) {
    size_t n = strlen(w->root_real);
    return !strncmp(real, w->root_real, n) && (real[n] == '/' || real[n] == 0 || n == 1);
}

static int link_entry(walker *w, const char *s, const char *dst, const char *name) {
    char target[PATH_MAX];
    ssize_t n = readlink(s, target, sizeof target - 1);
    if (n < 0) return cli_fail("%s: %s", s, strerror(errno));
    target[n] = 0;
    if (!w->ops->classify) return w->ops->link(target, dst, name, w->ctx);
    char *real = realpath(s, NULL);
    if (!real) {
        if (errno == ELOOP) warn("%s -> %s: a loop of symlinks; kept as a link", s, target);
        else warn("%s -> %s: dangling (%s); kept as a link", s, target, strerror(errno));
        return w->ops->link(target, dst, name, w->ctx);
    }
    int rc;
    struct stat sb;
    if (inside(w, real)) {
        if (target[0] == '/')
            warn("%s -> %s: an absolute link; kept as it is (it names SRC's place, not the copy's)", s, target);
        rc = w->ops->link(target, dst, name, w->ctx);
    } else if (stat(real, &sb) == 0 && S_ISREG(sb.st_mode)) {
        warn("%s -> %s: outside SRC; stored as the file it points to", s, target);
        rc = w->ops->file(real, dst, name, w->ctx);
    } else {
        warn("%s -> %s: outside SRC and not a regular file; kept as a link", s, target);
        rc = w->ops->link(target, dst, name, w->ctx);
    }
    free(real);
    return rc;
}

static int walk(walker *w, const char *src, const char *dst) {
    if (mkdir(dst, 0755) != 0 && errno != EEXIST) return cli_fail("%s: %s", dst, strerror(errno));
    struct stat db;
    if (lstat(dst, &db) != 0 || !S_ISDIR(db.st_mode)) return cli_fail("%s: not a directory", dst);
    struct dirent **ents;
    int n = scandir(src, &ents, NULL, alphasort);
    if (n < 0) return cli_fail("%s: %s", src, strerror(errno));
    int rc = 0;
    for (int i = 0; i < n; i++) {
        const char *name = ents[i]->d_name;
        if (rc || cli_cancel || strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ||
            (name[0] == '.' && strstr(name, ".tmp."))) { /* our own temporaries */
            free(ents[i]);
            continue;
        }
        char *s = NULL, *d = NULL;
        struct stat sb;
        if (asprintf(&s, "%s/%s", src, name) < 0 || asprintf(&d, "%s/%s", dst, name) < 0) {
            rc = cli_fail("out of memory");
        } else if (lstat(s, &sb) != 0) {
            rc = cli_fail("%s: %s", s, strerror(errno));
        } else if (S_ISDIR(sb.st_mode)) {
            rc = walk(w, s, d);
        } else if (S_ISREG(sb.st_mode)) {
            rc = w->ops->file(s, dst, name, w->ctx);
        } else if (S_ISLNK(sb.st_mode)) {
            rc = link_entry(w, s, dst, name);
        } else {
            warn("%s: not a regular file, a folder or a symlink; skipped", s);
        }
        free(s);
        free(d);
        free(ents[i]);
    }
    free(ents);
    if (!rc && cli_cancel) rc = cli_fail("cancelled");
    return rc;
}

int cli_walk_tree(const char *src, const char *dst, const cli_tree_ops *ops, void *ctx) {
    walker w = {.ops = ops, .ctx = ctx, .root_real = realpath(src, NULL)};
    if (!w.root_real) return cli_fail("%s: %s", src, strerror(errno));
    int rc = walk(&w, src, dst);
    free(w.root_real);
    return rc;
}

/* ---- a set of paths (open addressing; FNV-1a) ---- */

static size_t path_hash(const char *p) {
    uint64_t h = 14695981039346656037ull;
    for (; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return (size_t)h;
}

int cli_pathset_add(cli_pathset *s, const char *path) {
    if (2 * (s->n + 1) > s->cap) { /* grow: at most half full */
        size_t cap = s->cap ? 2 * s->cap : 256;
        char **v = calloc(cap, sizeof *v);
        if (!v) return -1;
        for (size_t i = 0; i < s->cap; i++)
            if (s->v[i]) {
                size_t k = path_hash(s->v[i]) & (cap - 1);
                while (v[k]) k = (k + 1) & (cap - 1);
                v[k] = s->v[i];
            }
        free(s->v);
        s->v = v;
        s->cap = cap;
    }
    size_t k = path_hash(path) & (s->cap - 1);
    for (; s->v[k]; k = (k + 1) & (s->cap - 1))
        if (!strcmp(s->v[k], path)) return 1;
    if (!(s->v[k] = strdup(path))) return -1;
    s->n++;
    return 0;
}

int cli_pathset_has(const cli_pathset *s, const char *path) {
    if (!s->cap) return 0;
    for (size_t k = path_hash(path) & (s->cap - 1); s->v[k]; k = (k + 1) & (s->cap - 1))
        if (!strcmp(s->v[k], path)) return 1;
    return 0;
}

void cli_pathset_free(cli_pathset *s) {
    for (size_t i = 0; i < s->cap; i++) free(s->v[i]);
    free(s->v);
    *s = (cli_pathset){0};
}
