/* remote.c - a mount of an http(s):// or s3:// root: the tree from its listing, containers'
 * tables fetched once at mount, tile payloads fetched as reads need them.
 *
 * A payload is read from the disk cache, else fetched with the tiles after it that the
 * reader is about to want (the window read_container names) in one ranged GET; the extra
 * payloads wait in memory ("staged") for the decode workers that will ask for them, and go
 * to the disk cache. One fetch per tile at a time: a second asker waits for the first. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "wcfs.h"

#define STAGE_MAX (128u << 20) /* fetched payloads not yet decoded */
#define FIRST_GET (256u << 10) /* the first GET of a container: its header and, mostly, tables */

typedef struct wcfs_rnode {
    char *path;      /* presented, "/a/b" */
    char *key;       /* the object, relative to the root; NULL for a folder */
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
    char *cache_id; /* the version, for the disk cache */
    wcnet_version ver;
    uint8_t *in_flight; /* per tile */
    uint8_t **staged;   /* per tile */
    atomic_uint want_first, want_last;
    atomic_int last_rc;
};

static wcfs_rnode *nodes; /* sorted by path */
static size_t n_nodes;
static pthread_mutex_t r_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t r_cond = PTHREAD_COND_INITIALIZER;
static uint64_t staged_bytes; /* including what runs in flight will stage */

/* One log line when a remote object starts failing (naming the URL and why), one when it
 * works again: not one per tile. */
static void note_result(atomic_int *last, int rc, const char *what, const wc_error *err) {
    int was = atomic_exchange(last, rc);
    if (rc && rc != was) wcfs_log("%s; serving %s", err->msg, rc == -ENOENT ? "ENOENT" : rc == -EACCES ? "EACCES" : "EIO");
    else if (!rc && was) wcfs_log("%s: answering again", what);
}

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

static int finish_open(wcfs *fs, wcfs_file *f, const wc_manifest_entry *e);

/* With a disk cache: a container's tables kept there, under what the listing says of its version
 * (path, size, mtime, the manifest's xxh3), with the ETag they were fetched under: a remount, or
 * another daemon sharing the cache, whose listing says the same, parses them from disk and
 * fetches nothing for them. The entry is [ETag, 128 bytes][header and tables]. Returns 1 on a hit
 * (f->c parsed, r->ver pinned to the stored ETag: a replaced object still fails its tiles' GETs). */
#define TABLES_SLOT UINT32_MAX
static int tables_from_disk(wcfs *fs, wcfs_file *f, const wc_manifest_entry *e, const char *id) {
    uint8_t *blob;
    size_t len;
    if (!fs->disk || !wcnet_cache_get_alloc(fs->disk, id, TABLES_SLOT, &blob, &len)) return 0;
    struct wcfs_rfile *r = f->r;
    int ok = len > sizeof r->ver.etag &&
             wc_container_parse(blob + sizeof r->ver.etag, len - sizeof r->ver.etag, e->size, e->path, &f->c, NULL) == WC_OK;
    if (ok) {
        memcpy(r->ver.etag, blob, sizeof r->ver.etag);
        r->ver.etag[sizeof r->ver.etag - 1] = 0;
        r->ver.size = e->size;
        r->ver.pinned = 1;
    }
    free(blob);
    return ok;
}

static void tables_to_disk(wcfs *fs, const struct wcfs_rfile *r, const char *id, const uint8_t *tables, size_t len) {
    uint8_t *blob = fs->disk ? malloc(sizeof r->ver.etag + len) : NULL;
    if (!blob) return;
    memcpy(blob, r->ver.etag, sizeof r->ver.etag);
    memcpy(blob + sizeof r->ver.etag, tables, len);
    wcnet_cache_put(fs->disk, id, TABLES_SLOT, blob, sizeof r->ver.etag + len);
    free(blob);
}

/* Fetches and checks a container's header and tables (or finds them in the disk cache), pinning
 * its version. */
static int open_container(wcfs *fs, wcfs_file *f, const wc_manifest_entry *e, wc_error *err) {
    struct wcfs_rfile *r = f->r;
    char *tables_id = NULL;
    if (asprintf(&tables_id, "%s%s#tables#%llu#%lld#%016llx", wcnet_display_url(fs->net), e->path,
                 (unsigned long long)e->size, (long long)e->mtime, (unsigned long long)e->xxh3) < 0)
        return -ENOMEM;
    if (tables_from_disk(fs, f, e, tables_id)) {
        free(tables_id);
        atomic_fetch_add(&fs->stats.tables_from_disk, 1);
        return finish_open(fs, f, e);
    }
    size_t first = e->size < FIRST_GET ? (size_t)e->size : FIRST_GET;
    uint8_t *buf = malloc(first ? first : 1);
    int rc = buf ? wcnet_get(fs->net, e->path, 0, first, buf, &r->ver, err) : -ENOMEM;
    uint64_t need = 0;
    if (rc == 0 && wc_container_tables_extent(buf, first, r->ver.size, &need, err) != WC_OK) rc = -EIO;
    if (rc == 0 && need > first) {
        uint8_t *more = realloc(buf, (size_t)need);
        if (!more) rc = -ENOMEM;
        else buf = more, rc = wcnet_get(fs->net, e->path, first, (size_t)(need - first), buf + first, &r->ver, err);
    }
    if (rc == 0 && wc_container_parse(buf, need > first ? (size_t)need : first, r->ver.size, e->path, &f->c, err) != WC_OK)
        rc = -EIO;
    if (rc == 0) tables_to_disk(fs, r, tables_id, buf, (size_t)need);
    free(buf);
    free(tables_id);
    return rc ? rc : finish_open(fs, f, e);
}

/* What an opened container needs beyond its tables: per tile state, its disk cache name. */
static int finish_open(wcfs *fs, wcfs_file *f, const wc_manifest_entry *e) {
    struct wcfs_rfile *r = f->r;
    uint32_t n = wc_container_tile_count(f->c);
    r->in_flight = calloc(n ? n : 1, 1);
    r->staged = calloc(n ? n : 1, sizeof *r->staged);
    if (!r->in_flight || !r->staged ||
        asprintf(&r->cache_id, "%s%s#%s#%llu#%lld", wcnet_display_url(fs->net), e->path, r->ver.etag,
                 (unsigned long long)r->ver.size, (long long)e->mtime) < 0)
        return -ENOMEM;
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

static int is_container(const char *path) {
    size_t n = strlen(path);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    return n > 7 && !strcmp(path + n - 7, ".wcodec") && base[0] != '.';
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
        if (is_container(m->files[i].path)) todo[n_todo++] = i;
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
        const char *base = strrchr(e->path, '/');
        base = base ? base + 1 : e->path;
        if (!strcmp(e->path, WC_MANIFEST_NAME) || (base[0] == '.' && strstr(base, ".tmp."))) continue;
        char *path = NULL;
        wcfs_rnode node = {.size = e->size, .mtime = e->mtime};
        if (is_container(e->path)) {
            wcfs_file *f = &fs->files[k];
            if (job.rcs[k++]) {
                wcfs_log("warning: skipping %s: %s", e->path, job.errs[k - 1].msg);
                fs->stats.containers_failed++;
                wc_container_close(f->c);
                free(f->r->in_flight);
                free(f->r->staged);
                free(f->r->cache_id);
                free(f->r->key);
                free(f->r);
                continue;
            }
            if (asprintf(&path, "/%.*s.safetensors", (int)(strlen(e->path) - 7), e->path) < 0) abort();
            f->presented = strdup(path);
            f->real = strdup(e->path);
            f->mtime = e->mtime;
            node.size = f->source_size;
            fs->files[kept] = *f; /* the registry keeps the opened ones, in order (kept < k) */
            node.f = &fs->files[kept++];
        } else if (asprintf(&path, "/%s", e->path) < 0) {
            abort();
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
    st->st_mode = n->is_dir ? S_IFDIR | 0555 : S_IFREG | 0444;
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
        rc = add(arg, p + dl + 1, nodes[i].is_dir ? DT_DIR : DT_REG);
    }
    return rc;
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
    note_result(&n->last_rc, rc, n->path, &err);
    if (rc == -ENOENT || rc == -EACCES || rc == 0) return rc ? rc : (ssize_t)size;
    return -EIO;
}

uint32_t wcfs_remote_window(wcfs_file *f, uint32_t first, uint32_t last, uint32_t ahead) {
    /* read-ahead stops one tile into the next tensor: a tensor read alone fetches its own
     * tiles and one more; a reader going on through the file moves the window with it */
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
    atomic_store(&f->r->want_first, first);
    atomic_store(&f->r->want_last, end);
    return end;
}

static uint64_t span(const wc_container *c, uint32_t a, uint32_t b) {
    return wc_container_tile(c, b)->payload_offset + wc_container_tile(c, b)->coded_size -
           wc_container_tile(c, a)->payload_offset;
}

static void drop_staged(wcfs *fs) {
    for (size_t i = 0; i < fs->n_files; i++) {
        struct wcfs_rfile *r = fs->files[i].r;
        for (uint32_t t = 0, n = wc_container_tile_count(fs->files[i].c); t < n; t++)
            if (r->staged[t]) {
                staged_bytes -= wc_container_tile(fs->files[i].c, t)->coded_size;
                free(r->staged[t]);
                r->staged[t] = NULL;
            }
    }
}

int wcfs_remote_payload(wcfs_file *f, uint32_t t, uint8_t *buf, wc_error *err) {
    struct wcfs_rfile *r = f->r;
    const wc_container *c = f->c;
    size_t coded = wc_container_tile(c, t)->coded_size;
    if (g_fs.disk && wcnet_cache_get(g_fs.disk, r->cache_id, t, buf, coded)) return 0;
    pthread_mutex_lock(&r_lock);
    for (;;) {
        if (r->staged[t]) {
            memcpy(buf, r->staged[t], coded);
            free(r->staged[t]);
            r->staged[t] = NULL;
            staged_bytes -= coded;
            pthread_mutex_unlock(&r_lock);
            return 0;
        }
        if (!r->in_flight[t]) break;
        pthread_cond_wait(&r_cond, &r_lock);
    }
    /* the run: this tile, and the wanted ones after it that nobody has or is fetching */
    uint32_t u = t, wf = atomic_load(&r->want_first), wl = atomic_load(&r->want_last);
    if (staged_bytes + g_fs.fetch_size > STAGE_MAX) drop_staged(&g_fs); /* left by readers gone */
    while (t >= wf && u + 1 <= wl && !r->in_flight[u + 1] && !r->staged[u + 1] &&
           span(c, t, u + 1) <= g_fs.fetch_size && staged_bytes + span(c, t + 1, u + 1) <= STAGE_MAX &&
           !(g_fs.disk && wcnet_cache_has(g_fs.disk, r->cache_id, u + 1)))
        u++;
    uint64_t reserved = u > t ? span(c, t + 1, u) : 0;
    staged_bytes += reserved;
    memset(r->in_flight + t, 1, u - t + 1);
    pthread_mutex_unlock(&r_lock);

    uint64_t off = wc_container_tile(c, t)->payload_offset;
    size_t len = (size_t)span(c, t, u);
    uint8_t *run = u > t ? malloc(len) : buf;
    int rc = run ? wcnet_get(g_fs.net, r->key, off, len, run, &r->ver, err) : -ENOMEM;

    pthread_mutex_lock(&r_lock);
    staged_bytes -= reserved;
    memset(r->in_flight + t, 0, u - t + 1);
    for (uint32_t k = t + 1; rc == 0 && k <= u; k++) {
        const wc_tile_info *ti = wc_container_tile(c, k);
        if ((r->staged[k] = malloc(ti->coded_size ? ti->coded_size : 1))) {
            memcpy(r->staged[k], run + (ti->payload_offset - off), ti->coded_size);
            staged_bytes += ti->coded_size;
        }
    }
    pthread_cond_broadcast(&r_cond);
    pthread_mutex_unlock(&r_lock);

    if (rc == 0 && run != buf) memcpy(buf, run, coded);
    for (uint32_t k = t; rc == 0 && g_fs.disk && k <= u; k++) {
        const wc_tile_info *ti = wc_container_tile(c, k);
        wcnet_cache_put(g_fs.disk, r->cache_id, k, run + (ti->payload_offset - off), ti->coded_size);
    }
    if (run != buf) free(run);
    note_result(&r->last_rc, rc, f->presented, err);
    return rc;
}

void wcfs_remote_free(wcfs *fs) {
    for (size_t i = 0; i < fs->n_files; i++) {
        struct wcfs_rfile *r = fs->files[i].r;
        if (!r) continue;
        for (uint32_t t = 0, n = fs->files[i].c ? wc_container_tile_count(fs->files[i].c) : 0; t < n; t++)
            free(r->staged[t]);
        free(r->staged);
        free(r->in_flight);
        free(r->key);
        free(r->cache_id);
        free(r);
    }
    for (size_t i = 0; i < n_nodes; i++) free_node(&nodes[i]);
    free(nodes);
    nodes = NULL;
    n_nodes = 0;
}
