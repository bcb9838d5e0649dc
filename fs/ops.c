/* ops.c - the FUSE operations: a read-only mirror of SRC where containers read as safetensors.
 *
 * The low-level API, so that a read is answered straight from the decoded tiles: their memory
 * goes to the kernel as an iovec (fuse_reply_iov), with no copy into a reply buffer (the
 * high-level API reads into a buffer of its own and frees it, so it cannot point into the cache).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "wcfs.h"

/* nothing changes while mounted: names and attributes are cached by the kernel this long */
#define TIMEOUT_S 60.0
#ifndef FUSE_UNKNOWN_INO
#define FUSE_UNKNOWN_INO 0xffffffff /* what libfuse's high-level API lists (defined from 3.16) */
#endif

enum { H_PASS, H_CONTAINER, H_STATS, H_REMOTE };

typedef struct {
    int kind;
    int fd;                      /* H_PASS */
    wcfs_rnode *node;            /* H_REMOTE: a plain file of a remote root */
    wcfs_file *f;                /* H_CONTAINER */
    int direct;                  /* opened O_DIRECT: reads bypass the kernel's page cache */
    atomic_uint_fast64_t next;   /* where a sequential reader reads next */
    uint64_t ino;
    _Atomic uint64_t pushed;     /* where the bytes pushed ahead of this reader end (push.c) */
    _Atomic uint64_t run_start;  /* where its current sequential run began */
    char *text;                  /* H_STATS: the snapshot taken at open */
    size_t text_len;
} handle;

static int is_stats(const char *path) { return !strcmp(path, "/" WCFS_STATS_NAME); }

static int has_suffix(const char *name, size_t n, const char *suffix) {
    size_t k = strlen(suffix);
    return n > k && !strcmp(name + n - k, suffix);
}

/* Our own temporaries (wcodec's atomic output) and raw containers are not presented: regular
 * files with those names. A directory or a symlink is shown as it is, whatever its name. Nor is
 * the root's manifest (it lists the containers, not the presented files), as in a remote mount. */
static int hidden(const char *name, mode_t mode) {
    return S_ISREG(mode) &&
           ((name[0] == '.' && strstr(name, ".tmp.")) || has_suffix(name, strlen(name), ".wcodec"));
}

static char *real_path(const char *path) {
    char *p;
    return asprintf(&p, "%s%s", g_fs.src, path) < 0 ? NULL : p;
}

static char *child_path(const char *parent, const char *name) {
    char *p;
    return asprintf(&p, "%s%s%s", parent, strcmp(parent, "/") ? "/" : "", name) < 0 ? NULL : p;
}

/* The attributes of `path` as presented; 0 or -errno. */
static int get_attr(const char *path, struct stat *st) {
    memset(st, 0, sizeof *st);
    if (is_stats(path)) {
        st->st_mode = S_IFREG | 0444;
        st->st_nlink = 1;
        st->st_uid = getuid();
        st->st_gid = getgid();
        return 0;
    }
    if (g_fs.net) return wcfs_remote_attr(path, st);
    wcfs_file *f = wcfs_lookup(&g_fs, path);
    const char *base = strrchr(path, '/');
    char *real = f ? strdup(f->real) : real_path(path);
    if (!real) return -ENOMEM;
    int rc = lstat(real, st) == 0 ? 0 : -errno; /* a symlink is presented, never followed */
    free(real);
    if (rc == 0 && !f && base && (hidden(base + 1, st->st_mode) || !strcmp(path, "/" WC_MANIFEST_NAME)))
        rc = -ENOENT;
    if (rc == 0 && f) {
        st->st_size = (off_t)f->source_size;
        st->st_blocks = (blkcnt_t)((f->source_size + 511) / 512);
    }
    return rc;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
    char *path = child_path(wcfs_node_path(parent), name);
    struct fuse_entry_param e = {.attr_timeout = TIMEOUT_S, .entry_timeout = TIMEOUT_S};
    int rc = path ? get_attr(path, &e.attr) : -ENOMEM;
    if (rc == 0 && !(e.ino = wcfs_node_ref(path))) rc = -ENOMEM;
    free(path);
    if (rc) {
        fuse_reply_err(req, -rc);
        return;
    }
    e.attr.st_ino = e.ino;
    if (fuse_reply_entry(req, &e) == -ENOENT) wcfs_node_forget(e.ino, 1); /* interrupted */
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
    wcfs_node_forget(ino, nlookup);
    fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets) {
    for (size_t i = 0; i < count; i++) wcfs_node_forget(forgets[i].ino, forgets[i].nlookup);
    fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    (void)fi;
    struct stat st;
    int rc = get_attr(wcfs_node_path(ino), &st);
    if (rc) {
        fuse_reply_err(req, -rc);
        return;
    }
    st.st_ino = ino;
    fuse_reply_attr(req, &st, TIMEOUT_S);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino) {
    if (g_fs.net) { /* a remote root's links are its manifest's */
        const char *target = wcfs_remote_link(wcfs_node_path(ino));
        if (target) fuse_reply_readlink(req, target);
        else fuse_reply_err(req, EINVAL);
        return;
    }
    char *real = real_path(wcfs_node_path(ino));
    char target[PATH_MAX + 1];
    ssize_t n = real ? readlink(real, target, PATH_MAX) : -1;
    int e = real ? errno : ENOMEM;
    free(real);
    if (n < 0) {
        fuse_reply_err(req, e);
        return;
    }
    target[n] = 0;
    fuse_reply_readlink(req, target);
}

/* A directory's listing, taken whole at opendir so that readdir's offsets stay valid. */
typedef struct {
    size_t n, cap;
    char **names;
    unsigned char *types;
} listing;

static int listing_add(listing *l, const char *name, unsigned char type) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 32;
        char **names = realloc(l->names, cap * sizeof *names);
        if (names) l->names = names;
        unsigned char *types = names ? realloc(l->types, cap) : NULL;
        if (types) l->types = types;
        if (!names || !types) return -1;
        l->cap = cap;
    }
    if (!(l->names[l->n] = strdup(name))) return -1;
    l->types[l->n++] = type;
    return 0;
}

static void listing_free(listing *l) {
    if (!l) return;
    for (size_t i = 0; i < l->n; i++) free(l->names[i]);
    free(l->names);
    free(l->types);
    free(l);
}

static int listing_add_cb(void *l, const char *name, unsigned char type) {
    return listing_add(l, name, type);
}

static int listing_add_reg(void *l, const char *name) { return listing_add(l, name, DT_REG); }

/* The listing of a remote root's folder; 0 or an errno. */
static int remote_listing(const char *path, listing **out) {
    struct stat st;
    int rc = wcfs_remote_attr(path, &st);
    if (rc) return -rc;
    if (!S_ISDIR(st.st_mode)) return ENOTDIR;
    listing *l = calloc(1, sizeof *l);
    if (!l) return ENOMEM;
    rc = listing_add(l, ".", DT_DIR) | listing_add(l, "..", DT_DIR); /* .wcodecfs-stats: see op_opendir */
    if (rc || wcfs_remote_list(path, listing_add_cb, l)) {
        listing_free(l);
        return ENOMEM;
    }
    *out = l;
    return 0;
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    const char *path = wcfs_node_path(ino);
    if (g_fs.net) {
        listing *l = NULL;
        int e = remote_listing(path, &l);
        if (e) {
            fuse_reply_err(req, e);
            return;
        }
        fi->fh = (uint64_t)(uintptr_t)l;
        if (fuse_reply_open(req, fi) == -ENOENT) listing_free(l);
        return;
    }
    char *real = real_path(path);
    DIR *d = real ? opendir(real) : NULL;
    int e = real ? errno : ENOMEM;
    free(real);
    listing *l = d ? calloc(1, sizeof *l) : NULL;
    if (!l) {
        if (d) closedir(d);
        fuse_reply_err(req, d ? ENOMEM : e);
        return;
    }
    /* .wcodecfs-stats is opened by name and never listed: the listing is the source tree's, so
     * that a copy of the mount (cp -a, rsync) gets no stats file, and a tool that takes every
     * entry at the root as its own (huggingface_hub's scan_cache_dir: one folder per repo) none
     * it does not know */
    int rc = listing_add(l, ".", DT_DIR) | listing_add(l, "..", DT_DIR);
    for (struct dirent *de; rc == 0 && (de = readdir(d));) {
        const char *name = de->d_name;
        size_t n = strlen(name);
        if (!strcmp(name, ".") || !strcmp(name, "..")) continue;
        mode_t mode = DTTOIF(de->d_type);
        struct stat sb;
        if (de->d_type == DT_UNKNOWN && fstatat(dirfd(d), name, &sb, AT_SYMLINK_NOFOLLOW) == 0)
            mode = sb.st_mode;
        if (S_ISREG(mode) && has_suffix(name, n, ".wcodec")) {
            /* a container: listed below by the name it presents, if it was registered */
        } else if (!hidden(name, mode) && !(!strcmp(path, "/") && !strcmp(name, WC_MANIFEST_NAME))) {
            /* a plain file, unless a container presents the same name */
            char *full = child_path(path, name);
            if (full && !wcfs_lookup(&g_fs, full)) rc |= listing_add(l, name, (unsigned char)IFTODT(mode));
            free(full);
        }
    }
    closedir(d);
    if (!rc) rc = wcfs_list_files(&g_fs, path, listing_add_reg, l);
    if (rc) {
        listing_free(l);
        fuse_reply_err(req, ENOMEM);
        return;
    }
    fi->fh = (uint64_t)(uintptr_t)l;
    if (fuse_reply_open(req, fi) == -ENOENT) listing_free(l); /* interrupted */
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
    (void)ino;
    listing *l = (listing *)(uintptr_t)fi->fh;
    char *buf = malloc(size ? size : 1);
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    size_t used = 0;
    for (size_t i = off > 0 ? (size_t)off : 0; i < l->n; i++) {
        struct stat st = {.st_ino = FUSE_UNKNOWN_INO, .st_mode = (mode_t)DTTOIF(l->types[i])};
        size_t need = fuse_add_direntry(req, buf + used, size - used, l->names[i], &st, (off_t)i + 1);
        if (need > size - used) break;
        used += need;
    }
    fuse_reply_buf(req, buf, used);
    free(buf);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    (void)ino;
    listing_free((listing *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}

static void handle_free(handle *h) {
    if (h->kind == H_PASS) close(h->fd);
    free(h->text);
    free(h);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    const char *path = wcfs_node_path(ino);
    if ((fi->flags & O_ACCMODE) != O_RDONLY) {
        fuse_reply_err(req, EROFS);
        return;
    }
    handle *h = calloc(1, sizeof *h);
    if (!h) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    wcfs_file *f;
    if (is_stats(path)) {
        h->kind = H_STATS;
        h->text = wcfs_stats_text(&g_fs, &h->text_len);
        fi->direct_io = 1; /* its size is only known once read */
    } else if ((f = wcfs_lookup(&g_fs, path))) {
        int rc = wcfs_file_open(f);
        if (rc) {
            free(h);
            fuse_reply_err(req, -rc);
            return;
        }
        h->kind = H_CONTAINER;
        h->f = f;
        h->direct = (fi->flags & O_DIRECT) != 0;
        h->ino = ino;
        fi->keep_cache = 1; /* the bytes never change while mounted */
    } else if (g_fs.net) {
        h->kind = H_REMOTE;
        if (!(h->node = wcfs_remote_plain(path))) {
            free(h);
            fuse_reply_err(req, ENOENT);
            return;
        }
        fi->keep_cache = 1;
    } else {
        char *real = real_path(path);
        h->kind = H_PASS;
        h->fd = real ? open(real, O_RDONLY | O_CLOEXEC) : -1;
        int e = real ? errno : ENOMEM;
        free(real);
        if (h->fd < 0) {
            free(h);
            fuse_reply_err(req, e);
            return;
        }
        fi->keep_cache = 1;
    }
    fi->fh = (uint64_t)(uintptr_t)h;
    if (fuse_reply_open(req, fi) == -ENOENT) handle_free(h); /* interrupted: no release comes */
}

/* A read's tiles stay pinned while the kernel copies from them. A request spanning more tiles
 * than one writev may carry (many tiny tensors) is copied into one buffer instead. */
#define IOV_MAX_TILES 256u

/* Read-ahead past tiles first..last, for a source that fetches in runs (a remote object): it is
 * told the window, and the window stops one tile into the next tensor, so that a tensor read
 * alone fetches its own tiles and one more; a reader going on through the file moves the window
 * with it. Other sources: `ahead` as it is. Returns the tiles to read ahead. */
static uint32_t advise_source(wcfs_file *f, uint32_t first, uint32_t last, uint32_t ahead) {
    const wc_source *src = wc_container_source(f->c);
    if (!src || !src->ops->advise) return ahead;
    const wc_tile_info *t = wc_container_tile(f->c, last);
    uint32_t end = last + ahead, n = wc_container_tile_count(f->c);
    if (t->tensor != WC_TENSOR_NONE) {
        const wc_tensor_info *ti = wc_container_tensor(f->c, t->tensor);
        if (end > ti->first_tile + ti->tile_count) end = ti->first_tile + ti->tile_count;
    } else if (end > last + 1) {
        end = last + 1;
    }
    if (end < last) end = last;
    if (end >= n) end = n - 1;
    wc_container_advise(f->c, first, end);
    return end - last;
}

static void read_container(fuse_req_t req, handle *h, size_t size, off_t off) {
    wcfs_file *f = h->f;
    wcfs_cache *c = g_fs.cache;
    if ((uint64_t)off >= f->source_size) {
        fuse_reply_buf(req, NULL, 0);
        return;
    }
    if (size > f->source_size - (uint64_t)off) size = (size_t)(f->source_size - (uint64_t)off);
    uint32_t first;
    wc_error err = {0};
    if (!g_fs.index) { /* a remote root: the container's tables, fetched at mount, are the map */
        first = wc_container_find_tile(f->c, (uint64_t)off);
    } else if (wc_index_find_tile(g_fs.index, f->index_id, (uint64_t)off, &first, &err) != WC_OK ||
        first >= wc_container_tile_count(f->c) || wc_container_tile(f->c, first)->src_offset > (uint64_t)off ||
        wc_container_tile(f->c, first)->src_offset + wc_container_tile(f->c, first)->src_size <= (uint64_t)off) {
        /* the index is a cache of the container's checked tables: if it is damaged or wrong,
         * the tables themselves answer */
        if (!atomic_exchange(&f->index_doubted, 1))
            wcfs_log("%s: the index (in index_dir) disagrees with the container at byte %llu%s%s; "
                     "using the container's own tables", f->presented, (unsigned long long)off,
                     err.msg[0] ? ": " : "", err.msg);
        first = wc_container_find_tile(f->c, (uint64_t)off);
    }
    /* the tiles of this read: on the CPU, the later ones decode on the workers while this
     * thread does the first; on the GPU, all of them and the read-ahead go as one batch */
    uint32_t last = first;
    while (wc_container_tile(f->c, last)->src_offset + wc_container_tile(f->c, last)->src_size <
           (uint64_t)off + size)
        last++;
    uint64_t end = (uint64_t)off + size, expected = atomic_exchange(&h->next, end);
    /* sequential: where the last read ended, or running past the bytes pushed ahead of it */
    uint64_t pushed = atomic_load(&h->pushed);
    int sequential = off == 0 || expected == (uint64_t)off || ((uint64_t)off <= pushed && pushed < end);
    uint32_t ahead = sequential ? g_fs.readahead : 0;
    if (!sequential) atomic_store(&h->run_start, (uint64_t)off);
    if (g_fs.push && !h->direct && !f->r) {
        wcfs_push_saw_read(f, (uint64_t)off, end);
        /* Pushed: beyond the kernel's own read-ahead, whose requests are on their way, as much
         * as the run has read so far, up to `push`: a reader of one tensor gets at most about
         * its size decoded beyond it, a reader of the whole file soon the full window. */
        uint64_t start = atomic_load(&h->run_start), run = end - start;
        if (sequential && end > start)
            wcfs_push(f, h->ino, &h->pushed, end + g_fs.kernel_readahead,
                      end + g_fs.kernel_readahead + (run < g_fs.push ? run : g_fs.push));
    }
    ahead = advise_source(f, first, last, ahead);
    if (g_fs.gpu_active && last - first + 1 + ahead >= g_fs.gpu_min_batch) {
        wcfs_cache_prefetch_range(c, f, first, last + ahead); /* one GPU batch */
    } else {
        wcfs_cache_prefetch_range(c, f, first + 1, last + ahead);
    }

    uint32_t n = last - first + 1;
    int gather = n > IOV_MAX_TILES; /* copied into one buffer, 16 tiles pinned at a time */
    unsigned max = gather ? 16 : n;
    struct iovec iov_small[16];
    wcfs_entry *ref_small[16];
    struct iovec *iov = max <= 16 ? iov_small : malloc(max * sizeof *iov);
    wcfs_entry **refs = max <= 16 ? ref_small : malloc(max * sizeof *refs);
    char *buf = gather ? malloc(size) : NULL;
    if (!iov || !refs || (gather && !buf)) {
        fuse_reply_err(req, ENOMEM);
        goto out;
    }
    /* once replied to, the reader may close the file and a RELEASE on another thread free h */
    int direct = h->direct, rc = 0;
    size_t done = 0;
    unsigned pinned = 0;
    /* A short read would be zero-filled by the kernel: a tile that fails fails the request. */
    if (!gather) {
        done = wcfs_cache_pin_range(c, f, first, (uint64_t)off, size, iov, refs, max, &pinned, &rc);
    } else {
        for (uint32_t t = first; done < size && !rc; t += pinned) {
            wcfs_cache_pin_range(c, f, t, (uint64_t)off + done, size - done, iov, refs, max, &pinned, &rc);
            for (unsigned k = 0; k < pinned; k++) {
                memcpy(buf + done, iov[k].iov_base, iov[k].iov_len);
                done += iov[k].iov_len;
            }
            wcfs_cache_unpin_range(c, refs, iov, pinned, !direct);
        }
        pinned = 0;
    }
    if (rc) fuse_reply_err(req, -rc);
    else if (gather) fuse_reply_buf(req, buf, done);
    else fuse_reply_iov(req, iov, (int)pinned);
    /* the kernel has copied the bytes (or the reader has gone): unpin */
    wcfs_cache_unpin_range(c, refs, iov, pinned, !rc && !direct);
    if (!rc) atomic_fetch_add(&g_fs.stats.bytes_served, done);
out:
    if (iov != iov_small) free(iov);
    if (refs != ref_small) free(refs);
    free(buf);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
    (void)ino;
    handle *h = (handle *)(uintptr_t)fi->fh;
    atomic_fetch_add(&g_fs.stats.reads, 1);
    if (h->kind == H_CONTAINER) {
        read_container(req, h, size, off);
    } else if (h->kind == H_STATS) {
        /* replied from a copy: the reader, answered as soon as the kernel has the bytes, may
         * close the file and a RELEASE free h->text while this thread is still in writev, whose
         * sanitizer wrapper reads the buffer again after the call (a crash under ASan) */
        size_t from = (size_t)off < h->text_len ? (size_t)off : h->text_len;
        size_t n = size < h->text_len - from ? size : h->text_len - from;
        char *copy = malloc(n ? n : 1);
        if (!copy) {
            fuse_reply_err(req, ENOMEM);
            return;
        }
        memcpy(copy, h->text + from, n);
        fuse_reply_buf(req, copy, n);
        free(copy);
    } else {
        char *buf = malloc(size ? size : 1);
        ssize_t n = !buf ? -1 : h->kind == H_REMOTE ? wcfs_remote_read_plain(h->node, buf, size, off)
                                                    : pread(h->fd, buf, size, off);
        int e = !buf ? ENOMEM : h->kind == H_REMOTE ? (int)-n : errno;
        if (n < 0) fuse_reply_err(req, e);
        else if (fuse_reply_buf(req, buf, (size_t)n) == 0)
            atomic_fetch_add(&g_fs.stats.bytes_served, (uint64_t)n);
        free(buf);
    }
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    (void)ino;
    handle_free((handle *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino) {
    (void)ino;
    struct statvfs st = {.f_bsize = 4096, .f_frsize = 4096, .f_namemax = 255};
    if (!g_fs.net && statvfs(g_fs.src, &st) != 0) fuse_reply_err(req, errno);
    else fuse_reply_statfs(req, &st);
}

static void op_init(void *userdata, struct fuse_conn_info *conn) {
    (void)userdata;
    /* a large read-ahead window is cut into many requests of max_pages: let them all be
     * in flight at once rather than the kernel's 12 */
    conn->max_background = 64;
    conn->congestion_threshold = 48;
}

static void op_destroy(void *userdata) {
    (void)userdata;
    wcfs_nodes_free();
}

const struct fuse_lowlevel_ops wcfs_ops = {
    .init = op_init,
    .destroy = op_destroy,
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .readlink = op_readlink,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .releasedir = op_releasedir,
    .open = op_open,
    .read = op_read,
    .release = op_release,
    .statfs = op_statfs,
};
