/* ops.c - the FUSE operations: a read-only mirror of SRC where containers read as safetensors. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "wcfs.h"

enum { H_PASS, H_CONTAINER, H_STATS };

typedef struct {
    int kind;
    int fd;                      /* H_PASS */
    wcfs_file *f;                /* H_CONTAINER */
    int direct;                  /* opened O_DIRECT: reads bypass the kernel's page cache */
    atomic_uint_fast64_t next;   /* where a sequential reader reads next */
    char *text;                  /* H_STATS: the snapshot taken at open */
    size_t text_len;
} handle;

static int is_stats(const char *path) { return !strcmp(path, "/" WCFS_STATS_NAME); }

/* Our own temporaries (wcodec's atomic output) and raw containers are not presented. */
static int hidden_name(const char *name) {
    size_t n = strlen(name);
    return (name[0] == '.' && strstr(name, ".tmp.")) || (n > 7 && !strcmp(name + n - 7, ".wcodec"));
}

static char *real_path(const char *path) {
    char *p;
    return asprintf(&p, "%s%s", g_fs.src, path) < 0 ? NULL : p;
}

static int op_getattr(const char *path, struct stat *st, struct fuse_file_info *fi) {
    (void)fi;
    memset(st, 0, sizeof *st);
    if (is_stats(path)) {
        st->st_mode = S_IFREG | 0444;
        st->st_nlink = 1;
        st->st_uid = getuid();
        st->st_gid = getgid();
        return 0;
    }
    wcfs_file *f = wcfs_lookup(&g_fs, path);
    const char *base = strrchr(path, '/');
    if (!f && base && hidden_name(base + 1)) return -ENOENT;
    char *real = f ? strdup(f->real) : real_path(path);
    if (!real) return -ENOMEM;
    int rc = lstat(real, st) == 0 ? 0 : -errno;
    free(real);
    if (rc == 0 && f) {
        st->st_size = (off_t)f->source_size;
        st->st_blocks = (blkcnt_t)((f->source_size + 511) / 512);
    }
    return rc;
}

static int op_readlink(const char *path, char *buf, size_t size) {
    char *real = real_path(path);
    if (!real) return -ENOMEM;
    ssize_t n = readlink(real, buf, size - 1);
    free(real);
    if (n < 0) return -errno;
    buf[n] = 0;
    return 0;
}

static int op_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
                      struct fuse_file_info *fi, enum fuse_readdir_flags flags) {
    (void)off, (void)fi, (void)flags;
    char *real = real_path(path);
    if (!real) return -ENOMEM;
    DIR *d = opendir(real);
    free(real);
    if (!d) return -errno;
    if (!strcmp(path, "/")) fill(buf, WCFS_STATS_NAME, NULL, 0, 0);
    const char *sep = strcmp(path, "/") ? "/" : "";
    for (struct dirent *e; (e = readdir(d));) {
        const char *name = e->d_name;
        size_t n = strlen(name);
        char *presented = NULL;
        if (n > 7 && !strcmp(name + n - 7, ".wcodec")) {
            /* a container: listed under its presented name if it was registered */
            if (asprintf(&presented, "%s%s%.*s.safetensors", path, sep, (int)(n - 7), name) > 0 &&
                wcfs_lookup(&g_fs, presented))
                fill(buf, strrchr(presented, '/') + 1, NULL, 0, 0);
        } else if (!hidden_name(name)) {
            /* a plain file, unless a container presents the same name */
            if (asprintf(&presented, "%s%s%s", path, sep, name) > 0 && !wcfs_lookup(&g_fs, presented))
                fill(buf, name, NULL, 0, 0);
        }
        free(presented);
    }
    closedir(d);
    return 0;
}

static int op_open(const char *path, struct fuse_file_info *fi) {
    if ((fi->flags & O_ACCMODE) != O_RDONLY) return -EROFS;
    handle *h = calloc(1, sizeof *h);
    if (!h) return -ENOMEM;
    wcfs_file *f;
    if (is_stats(path)) {
        h->kind = H_STATS;
        h->text = wcfs_stats_text(&g_fs, &h->text_len);
        fi->direct_io = 1; /* its size is only known once read */
    } else if ((f = wcfs_lookup(&g_fs, path))) {
        int rc = wcfs_file_open(f);
        if (rc) {
            free(h);
            return rc;
        }
        h->kind = H_CONTAINER;
        h->f = f;
        h->direct = (fi->flags & O_DIRECT) != 0;
        fi->keep_cache = 1; /* the bytes never change while mounted */
    } else {
        char *real = real_path(path);
        h->kind = H_PASS;
        h->fd = real ? open(real, O_RDONLY | O_CLOEXEC) : -1;
        int e = errno;
        free(real);
        if (h->fd < 0) {
            free(h);
            return -e;
        }
        fi->keep_cache = 1;
    }
    fi->fh = (uint64_t)(uintptr_t)h;
    return 0;
}

static int read_container(handle *h, char *buf, size_t size, off_t off) {
    wcfs_file *f = h->f;
    wcfs_cache *c = g_fs.cache;
    if ((uint64_t)off >= f->source_size) return 0;
    if (size > f->source_size - (uint64_t)off) size = (size_t)(f->source_size - (uint64_t)off);
    uint32_t first;
    wc_error err = {0};
    if (wc_index_find_tile(g_fs.index, f->index_id, (uint64_t)off, &first, &err) != WC_OK) {
        fprintf(stderr, "wcodecfs: %s: %s\n", f->presented, err.msg);
        return -EIO;
    }
    /* the tiles of this read: on the CPU, the later ones decode on the workers while this
     * thread does the first; on the GPU, all of them and the read-ahead go as one batch */
    uint32_t last = first;
    while (wc_container_tile(f->c, last)->src_offset + wc_container_tile(f->c, last)->src_size <
           (uint64_t)off + size)
        last++;
    uint64_t expected = atomic_exchange(&h->next, (uint64_t)off + size);
    uint32_t ahead = off == 0 || expected == (uint64_t)off ? g_fs.readahead : 0;
    if (g_fs.gpu_active && last - first + 1 + ahead >= g_fs.gpu_min_batch) {
        wcfs_cache_prefetch_range(c, f, first, last + ahead); /* one GPU batch */
    } else {
        wcfs_cache_prefetch_range(c, f, first + 1, last + ahead);
    }

    size_t done = 0;
    for (uint32_t t = first; t <= last; t++) {
        const wc_tile_info *ti = wc_container_tile(f->c, t);
        const uint8_t *data;
        wcfs_entry *ref;
        /* A short read would be zero-filled by the kernel: fail the whole request instead. */
        int rc = wcfs_cache_get(c, f, t, &data, &ref);
        if (rc) return rc;
        uint64_t from = (uint64_t)off + done - ti->src_offset;
        size_t take = (size_t)(ti->src_size - from);
        if (take > size - done) take = size - done;
        memcpy(buf + done, data + from, take);
        wcfs_cache_put(c, ref, h->direct ? 0 : (uint32_t)take);
        done += take;
    }
    atomic_fetch_add(&g_fs.stats.bytes_served, done);
    return (int)done;
}

static int op_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
    (void)path;
    handle *h = (handle *)(uintptr_t)fi->fh;
    atomic_fetch_add(&g_fs.stats.reads, 1);
    if (h->kind == H_CONTAINER) return read_container(h, buf, size, off);
    if (h->kind == H_STATS) {
        if ((size_t)off >= h->text_len) return 0;
        if (size > h->text_len - (size_t)off) size = h->text_len - (size_t)off;
        memcpy(buf, h->text + off, size);
        return (int)size;
    }
    ssize_t n = pread(h->fd, buf, size, off);
    if (n > 0) atomic_fetch_add(&g_fs.stats.bytes_served, (uint64_t)n);
    return n < 0 ? -errno : (int)n;
}

static int op_release(const char *path, struct fuse_file_info *fi) {
    (void)path;
    handle *h = (handle *)(uintptr_t)fi->fh;
    if (h->kind == H_PASS) close(h->fd);
    free(h->text);
    free(h);
    return 0;
}

static int op_statfs(const char *path, struct statvfs *st) {
    (void)path;
    return statvfs(g_fs.src, st) == 0 ? 0 : -errno;
}

static void *op_init(struct fuse_conn_info *conn, struct fuse_config *cfg) {
    /* a large read-ahead window is cut into many requests of max_pages: let them all be
     * in flight at once rather than the kernel's 12 */
    conn->max_background = 64;
    conn->congestion_threshold = 48;
    cfg->kernel_cache = 1;
    cfg->entry_timeout = cfg->attr_timeout = 60.0; /* nothing changes while mounted */
    cfg->use_ino = 0;
    return NULL;
}

const struct fuse_operations wcfs_ops = {
    .getattr = op_getattr,
    .readlink = op_readlink,
    .readdir = op_readdir,
    .open = op_open,
    .read = op_read,
    .release = op_release,
    .statfs = op_statfs,
    .init = op_init,
};
