/* tree.c - the registry: every container under SRC, what it presents, and its index entry. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "wcfs.h"

static int cmp_file(const void *a, const void *b) {
    return strcmp(((const wcfs_file *)a)->presented, ((const wcfs_file *)b)->presented);
}

/* Adds the container `name` at real path `real`, presented in folder `rel` under the name it
 * keeps (wc_presented_name), or warns and skips it. */
static void add_container(wcfs *fs, size_t *cap, const char *real, const char *rel, const char *name) {
    wc_error err = {0};
    wc_container_summary sum;
    struct stat sb;
    wc_index_file rec;
    int reused = 0;
    char shown[WC_NAME_MAX + 16], *presented = NULL;
    if (stat(real, &sb) != 0 || wc_container_peek(real, &sum, &err) != WC_OK ||
        wc_index_sync(fs->index, real, &sum, (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec,
                      &rec, &reused, &err) != WC_OK) {
        wcfs_log("warning: skipping %s: %s", real,
                err.msg[0] ? err.msg : strerror(errno));
        fs->stats.containers_failed++;
        return;
    }
    if (wc_presented_name(name, sum.source_name, shown, sizeof shown) != 0 ||
        asprintf(&presented, "%s/%s", rel, shown) < 0)
        abort(); /* name ends in .wcodec, and the summary's name was checked */
    if (fs->n_files == *cap) {
        *cap = *cap ? 2 * *cap : 64;
        fs->files = realloc(fs->files, *cap * sizeof *fs->files);
        if (!fs->files) abort();
    }
    wcfs_file *f = &fs->files[fs->n_files++];
    memset(f, 0, sizeof *f);
    f->presented = presented;
    f->real = strdup(real);
    f->index_id = rec.file_id;
    f->source_size = rec.source_size;
    f->tables_checksum = rec.tables_checksum;
    pthread_mutex_init(&f->open_lock, NULL);
    if (reused) fs->stats.index_reused++;
    else fs->stats.index_built++;
}

static int scan_dir(wcfs *fs, size_t *cap, const char *rel) {
    char *dir;
    if (asprintf(&dir, "%s%s", fs->src, rel) < 0) return -1;
    struct dirent **ents;
    int n = scandir(dir, &ents, NULL, alphasort);
    if (n < 0) {
        wcfs_log("warning: cannot list %s: %s", dir, strerror(errno));
        free(dir);
        return 0;
    }
    for (int i = 0; i < n; i++) {
        const char *name = ents[i]->d_name;
        char *real = NULL, *sub = NULL;
        struct stat sb;
        size_t len = strlen(name);
        if (strcmp(name, ".") && strcmp(name, "..") && asprintf(&real, "%s/%s", dir, name) > 0 &&
            asprintf(&sub, "%s/%s", rel, name) > 0 && lstat(real, &sb) == 0) {
            /* lstat: a symlink (to a container or a folder, inside SRC or out) is not followed;
             * the mount shows it as a link */
            if (S_ISDIR(sb.st_mode)) {
                scan_dir(fs, cap, sub);
            } else if (S_ISREG(sb.st_mode) && len > 7 && !strcmp(name + len - 7, ".wcodec") &&
                       name[0] != '.') {
                add_container(fs, cap, real, rel, name);
            }
        }
        free(real);
        free(sub);
        free(ents[i]);
    }
    free(ents);
    free(dir);
    return 0;
}

void wcfs_sort_files(wcfs *fs) {
    if (fs->n_files) qsort(fs->files, fs->n_files, sizeof *fs->files, cmp_file);
    for (size_t i = 0; i < fs->n_files; i++) fs->files[i].id = (uint32_t)i;
}

int wcfs_scan(wcfs *fs) {
    size_t cap = 0;
    if (scan_dir(fs, &cap, "") != 0) return -1;
    wcfs_sort_files(fs);
    /* two containers of a folder presenting one name (a.wcodec keeping the name "b", and
     * b.wcodec): the first in path order is served, the other said and dropped */
    size_t w = 0;
    for (size_t i = 0; i < fs->n_files; i++) {
        wcfs_file *f = &fs->files[i];
        if (w && !strcmp(fs->files[w - 1].presented, f->presented)) {
            wcfs_log("warning: %s and %s both present %s; serving the first", fs->files[w - 1].real, f->real,
                     f->presented);
            fs->stats.containers_failed++;
            free(f->presented);
            free(f->real);
            pthread_mutex_destroy(&f->open_lock);
            continue;
        }
        fs->files[w++] = *f;
    }
    fs->n_files = w;
    wcfs_sort_files(fs); /* ids again, dense */
    return 0;
}

int wcfs_list_files(wcfs *fs, const char *dir, int (*add)(void *, const char *), void *arg) {
    char *prefix; /* "/a/b/": the folder's files are the run of paths that start with it */
    if (asprintf(&prefix, "%s/", strcmp(dir, "/") ? dir : "") < 0) return -1;
    size_t pl = strlen(prefix), lo = 0, hi = fs->n_files;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(fs->files[mid].presented, prefix) < 0) lo = mid + 1;
        else hi = mid;
    }
    int rc = 0;
    for (size_t i = lo; i < fs->n_files && !rc; i++) {
        const char *p = fs->files[i].presented;
        if (strncmp(p, prefix, pl)) break;
        if (!strchr(p + pl, '/') && add(arg, p + pl)) rc = -1;
    }
    free(prefix);
    return rc;
}

wcfs_file *wcfs_lookup(wcfs *fs, const char *presented) {
    wcfs_file key = {.presented = (char *)presented};
    if (!fs->n_files) return NULL;
    return bsearch(&key, fs->files, fs->n_files, sizeof key, cmp_file);
}

wc_status wcfs_file_read_payload(wcfs_file *f, uint32_t tile, uint8_t *buf, wc_error *err) {
    wc_error local = {0};
    if (!err) err = &local;
    wc_status st = wc_container_read_tile(f->c, tile, buf, err); /* whatever the source */
    if (f->r) wcfs_log_result(&f->fetch_rc, st == WC_OK ? 0 : -EIO, f->presented, err->msg);
    return st;
}

int wcfs_file_open(wcfs_file *f) {
    if (f->r) return f->c ? 0 : -EIO; /* opened at mount */
    pthread_mutex_lock(&f->open_lock);
    int rc = 0;
    if (!f->c && !f->open_failed) {
        wc_error err = {0};
        if (wc_container_open(f->real, &f->c, &err) != WC_OK) {
            wcfs_log("%s", err.msg);
            f->open_failed = 1;
        } else if (wc_container_source_size(f->c) != f->source_size ||
                   wc_container_tables_checksum(f->c) != f->tables_checksum) {
            /* replaced since the mount indexed it: its tiles are not the ones the index maps */
            wcfs_log("%s changed since mount; remount to serve it", f->real);
            wc_container_close(f->c);
            f->c = NULL;
            f->open_failed = 1;
        }
    }
    if (f->open_failed) rc = -EIO;
    pthread_mutex_unlock(&f->open_lock);
    return rc;
}
