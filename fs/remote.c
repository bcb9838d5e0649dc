/* remote.c - a mount of an http(s):// or s3:// root: the tree from its listing, and each
 * container opened at mount on a source of net/ (wcnet_object_source: its tables fetched once,
 * or found in the disk cache; its tiles fetched in runs as reads need them), so that from then
 * on the filesystem reads it as it reads a local one. Plain files are read by range. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "wcfs.h"

#define FIRST_GET (256u << 10) /* the first GET of a container: its header and, mostly, tables */

typedef struct wcfs_rnode {
    char *path;      /* presented, "/a/b" */
    char *key;       /* the object, relative to the root; NULL for a folder or a link */
    char *link;      /* a symlink's target (the manifest's), as it is; NULL for anything else */
    int is_dir;
    uint64_t size;
    int64_t mtime;
    wcfs_file *f;    /* a container: presented as its source */
    pthread_mutex_t pin_lock;
    wcnet_version ver; /* plain files: pinned by the first read */
    atomic_int last_rc;
} wcfs_rnode;

struct wcfs_rfile {
    char *key;
};

static wcfs_rnode *nodes; /* sorted by path */
static size_t n_nodes;

static int cmp_node(const void *a, const void *b) {
    return strcmp(((const wcfs_rnode *)a)->path, ((const wcfs_rnode *)b)->path);
}

static wcfs_rnode *find_node(const char *path) {
    wcfs_rnode key = {.path = (char *)path};
    return n_nodes ? bsearch(&key, nodes, n_nodes, sizeof key, cmp_node) : NULL;
}

static int push_node(size_t *cap, wcfs_rnode n) {
    if (n_nodes == *cap) {
        *cap = *cap ? 2 * *cap : 64;
        wcfs_rnode *v = realloc(nodes, *cap * sizeof *v);
        if (!v) return -1;
        nodes = v;
    }
    pthread_mutex_init(&n.pin_lock, NULL);
    nodes[n_nodes++] = n;
    return 0;
}

/* With a disk cache: a container's tables kept there, under what the listing says of its version
 * (path, size, mtime, the manifest's xxh3), with the ETag they were fetched under: a remount, or
 * another daemon sharing the cache, whose listing says the same, finds them on disk and fetches
 * nothing for them. The entry is [ETag, 128 bytes][header and tables]. On a hit *tables (malloc'd)
 * and *ver (pinned to the stored ETag: a replaced object still fails its tiles' GETs). */
#define TABLES_SLOT UINT32_MAX
static int tables_from_disk(wcfs *fs, const wc_manifest_entry *e, const char *id, uint8_t **tables, size_t *len,
                            wcnet_version *ver) {
    uint8_t *blob;
    size_t n;
    if (!fs->disk || !wcnet_cache_get_alloc(fs->disk, id, TABLES_SLOT, &blob, &n)) return 0;
    if (n <= sizeof ver->etag) {
        free(blob);
        return 0;
    }
    memcpy(ver->etag, blob, sizeof ver->etag);
    ver->etag[sizeof ver->etag - 1] = 0;
    ver->size = e->size;
    ver->pinned = 1;
    *len = n - sizeof ver->etag;
    memmove(blob, blob + sizeof ver->etag, *len);
    *tables = blob;
    return 1;
}

static void tables_to_disk(wcfs *fs, const wcnet_version *ver, const char *id, const uint8_t *tables, size_t len) {
    uint8_t *blob = fs->disk ? malloc(sizeof ver->etag + len) : NULL;
    if (!blob) return;
    memcpy(blob, ver->etag, sizeof ver->etag);
    memcpy(blob + sizeof ver->etag, tables, len);
    wcnet_cache_put(fs->disk, id, TABLES_SLOT, blob, sizeof ver->etag + len);
    free(blob);
}

/* Fetches a container's header and tables (pinning its version), or finds them on disk. */
static int fetch_tables(wcfs *fs, const wc_manifest_entry *e, const char *tables_id, uint8_t **out, size_t *out_len,
                        wcnet_version *ver, wc_error *err) {
    if (tables_from_disk(fs, e, tables_id, out, out_len, ver)) {
        atomic_fetch_add(&fs->stats.tables_from_disk, 1);
        return 0;
    }
    size_t first = e->size < FIRST_GET ? (size_t)e->size : FIRST_GET;
    uint8_t *buf = malloc(first ? first : 1);
    int rc = buf ? wcnet_get(fs->net, e->path, 0, first, buf, ver, err) : -ENOMEM;
    uint64_t need = 0;
    if (rc == 0 && wc_container_tables_extent(buf, first, ver->size, &need, err) != WC_OK) rc = -EIO;
    if (rc == 0 && need > first) {
        uint8_t *more = realloc(buf, (size_t)need);
        if (!more) rc = -ENOMEM;
        else buf = more, rc = wcnet_get(fs->net, e->path, first, (size_t)(need - first), buf + first, ver, err);
    }
    if (rc) {
        free(buf);
        return rc;
    }
    *out = buf;
    *out_len = need > first ? (size_t)need : first;
    tables_to_disk(fs, ver, tables_id, buf, (size_t)need);
    return 0;
}

/* Opens a container on its object source: the tables parsed from what was fetched, the tiles
 * fetched in runs from here on (net/object_source.c). */
static int open_container(wcfs *fs, wcfs_file *f, const wc_manifest_entry *e, wc_error *err) {
    char *tables_id = NULL, *cache_id = NULL;
    uint8_t *tables = NULL;
    size_t len = 0;
    wcnet_version ver = {0};
    if (asprintf(&tables_id, "%s%s#tables#%llu#%lld#%016llx", wcnet_display_url(fs->net), e->path,
                 (unsigned long long)e->size, (long long)e->mtime, (unsigned long long)e->xxh3) < 0)
        return -ENOMEM;
    int rc = fetch_tables(fs, e, tables_id, &tables, &len, &ver, err);
    free(tables_id);
    if (rc) return rc;
    wc_source *src = NULL;
    rc = asprintf(&cache_id, "%s%s#%s#%llu#%lld", wcnet_display_url(fs->net), e->path, ver.etag,
                  (unsigned long long)ver.size, (long long)e->mtime) < 0 ? -ENOMEM : 0;
    if (rc == 0 && wcnet_object_source(fs->net, e->path, &ver, tables, len, fs->disk, cache_id, g_fs.fetch_size, &src,
                                       err) != WC_OK)
        rc = -ENOMEM;
    free(tables);
    free(cache_id);
    if (rc) return rc;
    if (wc_container_open_source(src, &f->c, err) != WC_OK) return -EIO; /* src closed with it */
    f->source_size = wc_container_source_size(f->c);
    f->tables_checksum = wc_container_tables_checksum(f->c);
    return 0;
}

typedef struct {
    wcfs *fs;
    const wc_manifest *m;
    size_t *todo; /* manifest indexes of containers */
    size_t n_todo;
    atomic_size_t next;
    int *rcs;
    wc_error *errs;
} open_job;

static void *open_worker(void *arg) {
    open_job *j = arg;
    for (size_t i; (i = atomic_fetch_add(&j->next, 1)) < j->n_todo;)
        j->rcs[i] = open_container(j->fs, &j->fs->files[i], &j->m->files[j->todo[i]], &j->errs[i]);
    return NULL;
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static int is_container(const wc_manifest_entry *e) {
    size_t n = strlen(e->path);
    return !e->link && n > 7 && !strcmp(e->path + n - 7, ".wcodec") && base_name(e->path)[0] != '.';
}

/* Adds path's folders ("/a", "/a/b" for "/a/b/c"); the same folder comes once per file under
 * it, and the duplicates go when the nodes are sorted. */
static int add_folders(size_t *cap, const char *path) {
    for (const char *s = strchr(path + 1, '/'); s; s = strchr(s + 1, '/')) {
        char *d = strndup(path, (size_t)(s - path));
        if (!d || push_node(cap, (wcfs_rnode){.path = d, .is_dir = 1}) != 0) return -1;
    }
    return 0;
}

static void free_node(wcfs_rnode *n) {
    free(n->path);
    free(n->key);
    free(n->link);
    pthread_mutex_destroy(&n->pin_lock);
}

int wcfs_remote_scan(wcfs *fs) {
    wc_error err = {0};
    wc_manifest *m = NULL;
    int rc = wcnet_list(fs->net, &m, &err);
    if (rc) {
        fprintf(stderr, "wcodecfs: %s\n", err.msg);
        return -1;
    }
    /* the containers, each opened (two GETs at most) on a few threads: a model of many shards
     * mounts in the time of a few round trips, not of all of them */
    size_t *todo = calloc(m->n ? m->n : 1, sizeof *todo), n_todo = 0;
    if (!todo) abort();
    for (size_t i = 0; i < m->n; i++)
        if (is_container(&m->files[i])) todo[n_todo++] = i;
    fs->files = calloc(n_todo ? n_todo : 1, sizeof *fs->files);
    if (!fs->files) abort();
    for (size_t i = 0; i < n_todo; i++) {
        wcfs_file *f = &fs->files[i];
        f->r = calloc(1, sizeof *f->r);
        if (!f->r || !(f->r->key = strdup(m->files[todo[i]].path))) abort();
        pthread_mutex_init(&f->open_lock, NULL);
    }
    open_job job = {.fs = fs, .m = m, .todo = todo, .n_todo = n_todo,
                    .rcs = calloc(n_todo ? n_todo : 1, sizeof(int)),
                    .errs = calloc(n_todo ? n_todo : 1, sizeof(wc_error))};
    if (!job.rcs || !job.errs) abort();
    pthread_t th[8];
    unsigned nth = n_todo < 8 ? (unsigned)n_todo : 8, started = 0;
    for (; started < nth; started++)
        if (pthread_create(&th[started], NULL, open_worker, &job) != 0) break;
    if (!started) open_worker(&job);
    for (unsigned t = 0; t < started; t++) pthread_join(th[t], NULL);

    size_t cap = 0, kept = 0, k = 0; /* k: the next container, in manifest order as todo is */
    for (size_t i = 0; i < m->n; i++) {
        const wc_manifest_entry *e = &m->files[i];
        const char *base = base_name(e->path);
        if (!strcmp(e->path, WC_MANIFEST_NAME) || (base[0] == '.' && strstr(base, ".tmp."))) continue;
        char *path = NULL, name[WC_NAME_MAX + 16];
        wcfs_rnode node = {.size = e->size, .mtime = e->mtime};
        if (is_container(e)) {
            wcfs_file *f = &fs->files[k];
            int bad = job.rcs[k++] != 0;
            /* its source's name, kept in it, or x.safetensors for x.wcodec (wcodec.h, Names) */
            if (!bad && wc_presented_name(base, wc_container_source_name(f->c), name, sizeof name) != 0) {
                bad = 1;
                wc_error_set(&job.errs[k - 1], WC_ERR_FORMAT, "no name to present it under");
            }
            if (bad) {
                wcfs_log("warning: skipping %s: %s", e->path, job.errs[k - 1].msg);
                fs->stats.containers_failed++;
                wc_container_close(f->c);
                free(f->r->key);
                free(f->r);
                continue;
            }
            if (asprintf(&path, "/%.*s%s", (int)(base - e->path), e->path, name) < 0) abort();
            f->presented = strdup(path);
            f->real = strdup(e->path);
            f->mtime = e->mtime;
            node.size = f->source_size;
            fs->files[kept] = *f; /* the registry keeps the opened ones, in order (kept < k) */
            node.f = &fs->files[kept++];
        } else if (asprintf(&path, "/%s", e->path) < 0) {
            abort();
        } else if (e->link) {
            if (!(node.link = strdup(e->link))) abort();
        } else {
            node.key = strdup(e->path);
        }
        if (add_folders(&cap, path) != 0 || push_node(&cap, (node.path = path, node)) != 0) abort();
    }
    fs->n_files = kept;
    qsort(nodes, n_nodes, sizeof *nodes, cmp_node);
    /* one node a path: a folder named by several files comes once, and a container presented
     * over a plain file of the same name wins, as in a local mount */
    size_t w = 0;
    for (size_t i = 0; i < n_nodes; i++) {
        if (w && !strcmp(nodes[w - 1].path, nodes[i].path)) {
            wcfs_rnode *loser = nodes[i].f ? &nodes[w - 1] : &nodes[i];
            free_node(loser);
            if (nodes[i].f) nodes[w - 1] = nodes[i];
            continue;
        }
        nodes[w++] = nodes[i];
    }
    n_nodes = w;
    /* the registry in presented order, so that wcfs_lookup's bsearch finds them; node pointers
     * are set again after sorting */
    wcfs_sort_files(fs);
    for (size_t i = 0; i < n_nodes; i++)
        if (nodes[i].f) nodes[i].f = wcfs_lookup(fs, nodes[i].path);
    free(todo);
    free(job.rcs);
    free(job.errs);
    wc_manifest_free(m);
    return 0;
}

int wcfs_remote_attr(const char *path, struct stat *st) {
    if (!strcmp(path, "/")) {
        st->st_mode = S_IFDIR | 0555;
        st->st_nlink = 2;
        return 0;
    }
    wcfs_rnode *n = find_node(path);
    if (!n) return -ENOENT;
    st->st_mode = n->is_dir ? S_IFDIR | 0555 : n->link ? S_IFLNK | 0777 : S_IFREG | 0444;
    st->st_nlink = n->is_dir ? 2 : 1;
    st->st_size = (off_t)(n->f ? n->f->source_size : n->size);
    st->st_blocks = (blkcnt_t)((st->st_size + 511) / 512);
    st->st_mtime = st->st_ctime = st->st_atime = (time_t)n->mtime;
    return 0;
}

int wcfs_remote_list(const char *dir, int (*add)(void *, const char *, unsigned char), void *arg) {
    size_t dl = strcmp(dir, "/") ? strlen(dir) : 0;
    int rc = 0;
    for (size_t i = 0; i < n_nodes && rc == 0; i++) {
        const char *p = nodes[i].path;
        if (strncmp(p, dir, dl) || p[dl] != '/' || strchr(p + dl + 1, '/')) continue;
        rc = add(arg, p + dl + 1, nodes[i].is_dir ? DT_DIR : nodes[i].link ? DT_LNK : DT_REG);
    }
    return rc;
}

const char *wcfs_remote_link(const char *path) {
    wcfs_rnode *n = find_node(path);
    return n ? n->link : NULL;
}

wcfs_rnode *wcfs_remote_plain(const char *path) {
    wcfs_rnode *n = find_node(path);
    return n && n->key ? n : NULL;
}

ssize_t wcfs_remote_read_plain(wcfs_rnode *n, char *buf, size_t size, off_t off) {
    if ((uint64_t)off >= n->size) return 0;
    if (size > n->size - (uint64_t)off) size = (size_t)(n->size - (uint64_t)off);
    wcnet_version ver;
    pthread_mutex_lock(&n->pin_lock);
    ver = n->ver;
    pthread_mutex_unlock(&n->pin_lock);
    wc_error err = {0};
    int rc = wcnet_get(g_fs.net, n->key, (uint64_t)off, size, buf, &ver, &err);
    if (rc == 0 && ver.size != n->size) {
        rc = -ESTALE;
        wc_error_set(&err, WC_ERR_IO, "%s%s: %llu bytes, listed as %llu", wcnet_display_url(g_fs.net),
                     n->key, (unsigned long long)ver.size, (unsigned long long)n->size);
    }
    if (rc == 0) {
        pthread_mutex_lock(&n->pin_lock);
        if (!n->ver.pinned) n->ver = ver;
        pthread_mutex_unlock(&n->pin_lock);
    }
    wcfs_log_result(&n->last_rc, rc, n->path, err.msg);
    if (rc == -ENOENT || rc == -EACCES || rc == 0) return rc ? rc : (ssize_t)size;
    return -EIO;
}

void wcfs_remote_free(wcfs *fs) {
    for (size_t i = 0; i < fs->n_files; i++) {
        struct wcfs_rfile *r = fs->files[i].r;
        if (!r) continue;
        free(r->key);
        free(r);
    }
    for (size_t i = 0; i < n_nodes; i++) free_node(&nodes[i]);
    free(nodes);
    nodes = NULL;
    n_nodes = 0;
}
