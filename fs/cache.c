/* cache.c - decoded tiles: a hash table, an LRU list under a byte budget, decode workers.
 *
 * One mutex guards the table; decoding happens outside it. A tile is in one of three states:
 * LOADING (someone is decoding it: others wait, so no tile is decoded twice at once), READY,
 * or ERROR (it does not decode: kept as a tombstone so that the error is logged once and
 * later reads fail fast with EIO). Bytes are reserved when decoding starts, so the budget holds
 * at every moment; a tile that cannot get room (everything pinned) is decoded as a transient,
 * served to its readers, and freed.
 *
 * Use once: a tile whose every byte has gone into the kernel's page cache (buffered reads; the
 * mount keeps that cache) is freed as soon as it is unpinned, not kept in the LRU list. The
 * kernel holds those bytes now, and a streaming reader then reuses a few warm tile buffers
 * instead of faulting in fresh memory for every tile (that was a quarter of the daemon's time).
 * What went there is counted in pages of the file, a bit each, not in bytes: readers of one file
 * at once (tensor-parallel ranks) can be handed the same page twice, and a byte count then called
 * a tile done before all of it was, freed it, and decoded it again for its last pages.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wcfs.h"

/* RETRY: a remote tile that could not be fetched (the server down, a timeout): its readers get
 * EIO, and the entry goes when the last lets go, so that a later read fetches it again */
enum { E_LOADING, E_READY, E_ERROR, E_RETRY };

struct wcfs_entry {
    uint32_t file, tile;
    int state, cached;
    uint32_t size;
    uint64_t src_offset; /* the tile's first byte in the file */
    uint32_t pages, pages_handed; /* the file pages the tile touches; those given to the page cache */
    uint64_t *handed; /* a bit a page: given to the kernel's page cache */
    unsigned refs;
    uint8_t *data;
    wcfs_entry *hnext;
    wcfs_entry *prev, *next; /* LRU links: in the list while READY, cached and unpinned */
};

#define QUEUE_CAP 4096u
#define PAGE 4096u /* the kernel's page cache's unit: buffered reads ask for whole pages */
/* Waiters for a tile sleep on one of these, chosen by the tile: a finished decode wakes the
 * few readers whose tiles share its stripe, not every reader of the mount. */
#define DONE_STRIPES 64u

struct wcfs_cache {
    wcfs *fs;
    pthread_mutex_t lock;
    pthread_cond_t done[DONE_STRIPES], work;
    pthread_key_t buffers; /* each decoding thread's payload and scratch buffers */
    wcfs_entry **buckets;
    size_t nbuckets;
    wcfs_entry lru; /* sentinel: lru.next is the most recently used */
    uint64_t budget, bytes;
    wcfs_entry *queue[QUEUE_CAP];
    unsigned q_head, q_len;
    pthread_t *workers;
    unsigned n_workers;
    int stopping;
    int gpu_started; /* worker 0 is the GPU worker */
};

static size_t bucket_of(const wcfs_cache *c, uint32_t file, uint32_t tile) {
    uint64_t h = ((uint64_t)file << 32 | tile) * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 32) & (c->nbuckets - 1);
}

static pthread_cond_t *done_of(wcfs_cache *c, const wcfs_entry *e) {
    return &c->done[(e->file * 31u + e->tile) % DONE_STRIPES];
}

static wcfs_entry *find(wcfs_cache *c, uint32_t file, uint32_t tile) {
    for (wcfs_entry *e = c->buckets[bucket_of(c, file, tile)]; e; e = e->hnext)
        if (e->file == file && e->tile == tile) return e;
    return NULL;
}

static void unlink_hash(wcfs_cache *c, wcfs_entry *e) {
    wcfs_entry **pp = &c->buckets[bucket_of(c, e->file, e->tile)];
    while (*pp != e) pp = &(*pp)->hnext;
    *pp = e->hnext;
}

static void lru_remove(wcfs_entry *e) {
    if (!e->prev) return;
    e->prev->next = e->next;
    e->next->prev = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_front(wcfs_cache *c, wcfs_entry *e) {
    e->next = c->lru.next;
    e->prev = &c->lru;
    c->lru.next->prev = e;
    c->lru.next = e;
}

static void destroy(wcfs_cache *c, wcfs_entry *e) {
    unlink_hash(c, e);
    if (e->cached) c->bytes -= e->size;
    atomic_store(&c->fs->stats.cache_bytes, c->bytes);
    free(e->data);
    free(e->handed);
    free(e);
}

/* Makes room for `size` bytes by evicting least recently used tiles; 1 if it fits. */
static int reserve(wcfs_cache *c, uint32_t size) {
    while (c->bytes + size > c->budget && c->lru.prev != &c->lru) {
        wcfs_entry *victim = c->lru.prev;
        lru_remove(victim);
        destroy(c, victim);
        atomic_fetch_add(&c->fs->stats.cache_evictions, 1);
    }
    if (c->bytes + size > c->budget) return 0;
    c->bytes += size;
    atomic_store(&c->fs->stats.cache_bytes, c->bytes);
    if (c->bytes > atomic_load(&c->fs->stats.cache_peak))
        atomic_store(&c->fs->stats.cache_peak, c->bytes);
    return 1;
}

/* A new LOADING entry with one reference; the caller holds the lock. */
static wcfs_entry *start_entry(wcfs_cache *c, wcfs_file *f, uint32_t tile) {
    wcfs_entry *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->file = f->id;
    e->tile = tile;
    e->state = E_LOADING;
    e->refs = 1;
    const wc_tile_info *ti = wc_container_tile(f->c, tile);
    e->size = ti->src_size;
    e->src_offset = ti->src_offset;
    e->pages = e->size ? (uint32_t)((ti->src_offset + e->size - 1) / PAGE - ti->src_offset / PAGE + 1) : 0;
    if (e->pages && !(e->handed = calloc((e->pages + 63) / 64, sizeof *e->handed))) {
        free(e);
        return NULL;
    }
    e->cached = reserve(c, e->size);
    if (!e->cached) atomic_fetch_add(&c->fs->stats.uncached_tiles, 1);
    size_t b = bucket_of(c, e->file, tile);
    e->hnext = c->buckets[b];
    c->buckets[b] = e;
    return e;
}

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* A decoding thread's own payload and scratch buffers, kept from one tile to the next. */
typedef struct {
    uint8_t *payload, *scratch;
    size_t payload_cap, scratch_cap;
} buffers;

static void free_buffers(void *p) {
    buffers *b = p;
    free(b->payload);
    free(b->scratch);
    free(b);
}

static uint8_t *grow(uint8_t **p, size_t *cap, size_t need) {
    if (*cap >= need) return *p;
    free(*p);
    *cap = 0;
    if ((*p = malloc(need))) *cap = need;
    return *p;
}

/* Decodes e's tile, outside the lock. Returns the new state. */
static int decode(wcfs_cache *c, wcfs_entry *e) {
    wcfs_file *f = &c->fs->files[e->file];
    const wc_tile_info *t = wc_container_tile(f->c, e->tile);
    buffers *b = pthread_getspecific(c->buffers);
    if (!b && (b = calloc(1, sizeof *b)) && pthread_setspecific(c->buffers, b) != 0) {
        free(b);
        b = NULL;
    }
    uint8_t *payload = b ? grow(&b->payload, &b->payload_cap, t->coded_size ? t->coded_size : 1) : NULL;
    uint8_t *scratch = b ? grow(&b->scratch, &b->scratch_cap, wc_container_tile_size(f->c)) : NULL;
    e->data = malloc(t->src_size);
    wc_error err = {0};
    wc_status st = WC_ERR_NOMEM;
    double t0 = now_ns();
    if (payload && scratch && e->data && (st = wcfs_file_read_payload(f, e->tile, payload, &err)) == WC_OK)
        st = wc_tile_decode_cpu(f->c, e->tile, payload, e->data, scratch, &err);
    atomic_fetch_add(&c->fs->stats.decode_ns_cpu, (uint64_t)(now_ns() - t0));
    atomic_fetch_add(&c->fs->stats.tiles_decoded_cpu, 1);
    atomic_fetch_add(&c->fs->stats.bytes_decoded, t->src_size);
    if (st == WC_OK) return E_READY;
    int fetch_failed = f->r && st == WC_ERR_IO; /* logged once by remote.c, not per tile */
    if (!fetch_failed) wcfs_log("%s: serving EIO for it", err.msg[0] ? err.msg : "out of memory");
    atomic_fetch_add(&c->fs->stats.tile_errors, 1);
    free(e->data);
    e->data = NULL;
    return fetch_failed ? E_RETRY : E_ERROR;
}

/* Publishes a decode's result; the caller holds the lock. */
static void finish(wcfs_cache *c, wcfs_entry *e, int state) {
    e->state = state;
    if ((state == E_ERROR || state == E_RETRY) && e->cached) { /* a tombstone holds no bytes */
        c->bytes -= e->size;
        e->cached = 0;
        atomic_store(&c->fs->stats.cache_bytes, c->bytes);
    }
    pthread_cond_broadcast(done_of(c, e));
}

/* Whether every page of a tile is in the kernel's page cache, as far as the daemon knows: set when
 * the last page went there, cleared when a read asks for the tile again (the kernel let some go).
 * Another reader of the file then finds its pages there, so the daemon's readahead skips such a
 * tile, which it would otherwise decode again for nobody (two ranks reading one file at once
 * decoded a quarter of it twice). The caller holds the lock. */
static int in_page_cache(const wcfs_cache *c, uint32_t file, uint32_t tile) {
    const uint64_t *bits = c->fs->files[file].in_page_cache;
    return bits && bits[tile / 64] >> (tile % 64) & 1;
}
static void set_in_page_cache(wcfs_cache *c, uint32_t file, uint32_t tile, int on) {
    wcfs_file *f = &c->fs->files[file];
    if (!f->in_page_cache) {
        if (!on || !(f->in_page_cache = calloc((wc_container_tile_count(f->c) + 63) / 64, sizeof(uint64_t)))) return;
    }
    if (on) f->in_page_cache[tile / 64] |= 1ull << (tile % 64);
    else f->in_page_cache[tile / 64] &= ~(1ull << (tile % 64));
}

/* Drops one reference; the caller holds the lock. */
static void release(wcfs_cache *c, wcfs_entry *e) {
    if (--e->refs) return;
    if (e->state == E_RETRY) {
        destroy(c, e);
        return;
    }
    if (e->state != E_READY) return;
    if (e->cached && e->pages_handed < e->pages) {
        lru_push_front(c, e);
    } else { /* a transient, or used once */
        if (e->pages_handed == e->pages) set_in_page_cache(c, e->file, e->tile, 1);
        if (e->cached) atomic_fetch_add(&c->fs->stats.cache_used_once, 1);
        destroy(c, e);
    }
}

/* Queues a LOADING entry for each tile not in the table; the caller holds the lock. */
static void enqueue_missing(wcfs_cache *c, wcfs_file *f, uint32_t first, uint32_t last,
                            int readahead) {
    uint32_t n = wc_container_tile_count(f->c);
    for (uint32_t t = first; t <= last && t < n && c->q_len < QUEUE_CAP; t++) {
        if (find(c, f->id, t) || in_page_cache(c, f->id, t)) continue;
        wcfs_entry *e = start_entry(c, f, t); /* its reference belongs to the queue */
        if (!e) break;
        c->queue[(c->q_head + c->q_len++) % QUEUE_CAP] = e;
        if (readahead) atomic_fetch_add(&c->fs->stats.readahead_tiles, 1);
    }
}

int wcfs_cache_get(wcfs_cache *c, wcfs_file *f, uint32_t tile, const uint8_t **data,
                   wcfs_entry **ref) {
    pthread_mutex_lock(&c->lock);
    wcfs_entry *e = find(c, f->id, tile);
    if (e) {
        e->refs++;
        lru_remove(e);
        atomic_fetch_add(e->state == E_LOADING ? &c->fs->stats.cache_waits : &c->fs->stats.cache_hits, 1);
    } else if ((e = start_entry(c, f, tile))) { /* a miss nobody is decoding: decode it here */
        atomic_fetch_add(&c->fs->stats.cache_misses, 1);
        set_in_page_cache(c, f->id, tile, 0);
        pthread_mutex_unlock(&c->lock);
        int state = decode(c, e);
        pthread_mutex_lock(&c->lock);
        finish(c, e, state);
    }
    if (!e) {
        pthread_mutex_unlock(&c->lock);
        return -ENOMEM; /* no memory, or the queue is full */
    }
    while (e->state == E_LOADING) pthread_cond_wait(done_of(c, e), &c->lock);
    int rc = 0;
    if (e->state == E_ERROR) {
        e->refs--; /* tombstones stay in the table, never in the LRU list */
        rc = -EIO;
    } else if (e->state == E_RETRY) {
        release(c, e);
        rc = -EIO;
    } else {
        *data = e->data;
        *ref = e;
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

/* Marks the file pages holding the tile's bytes [from, from + len) as given to the page cache
 * (each whole: a buffered read asks for whole pages, and the tile next to this one gives the rest
 * of a page they share); the caller holds the lock. */
static void mark_handed(wcfs_entry *e, uint64_t from, uint64_t len) {
    if (!len || !e->pages) return;
    const uint64_t first = e->src_offset / PAGE, p0 = (e->src_offset + from) / PAGE - first,
                   p1 = (e->src_offset + from + len - 1) / PAGE - first;
    for (uint64_t p = p0; p <= p1 && p < e->pages; p++)
        if (!(e->handed[p / 64] >> (p % 64) & 1)) {
            e->handed[p / 64] |= 1ull << (p % 64);
            e->pages_handed++;
        }
}

void wcfs_cache_put(wcfs_cache *c, wcfs_entry *ref, uint64_t from, uint64_t handed) {
    pthread_mutex_lock(&c->lock);
    mark_handed(ref, from, handed);
    release(c, ref);
    pthread_mutex_unlock(&c->lock);
}

size_t wcfs_cache_pin_range(wcfs_cache *c, wcfs_file *f, uint32_t tile, uint64_t off, size_t len,
                            struct iovec *iov, wcfs_entry **refs, unsigned max, unsigned *n, int *rc) {
    size_t done = 0;
    *n = 0;
    *rc = 0;
    for (; done < len && *n < max; tile++) {
        const wc_tile_info *ti = wc_container_tile(f->c, tile);
        const uint8_t *data;
        if ((*rc = wcfs_cache_get(c, f, tile, &data, &refs[*n]))) break;
        uint64_t from = off + done - ti->src_offset;
        size_t take = (size_t)(ti->src_size - from);
        if (take > len - done) take = len - done;
        iov[(*n)++] = (struct iovec){(void *)(data + from), take};
        done += take;
    }
    return done;
}

void wcfs_cache_unpin_range(wcfs_cache *c, wcfs_entry **refs, const struct iovec *iov, unsigned n,
                            int handed) {
    for (unsigned k = 0; k < n; k++)
        wcfs_cache_put(c, refs[k], (uint64_t)((const uint8_t *)iov[k].iov_base - refs[k]->data), handed ? iov[k].iov_len : 0);
}

void wcfs_cache_prefetch_range(wcfs_cache *c, wcfs_file *f, uint32_t first, uint32_t last) {
    if (!c->n_workers || first > last) return;
    pthread_mutex_lock(&c->lock);
    unsigned before = c->q_len;
    enqueue_missing(c, f, first, last, 1);
    /* wake one CPU worker per new tile, not all of them for each; the GPU worker waits on the
     * same variable for another condition, so with it everyone is woken */
    unsigned added = c->q_len - before;
    if (c->gpu_started || added >= c->n_workers) pthread_cond_broadcast(&c->work);
    else
        while (added--) pthread_cond_signal(&c->work);
    pthread_mutex_unlock(&c->lock);
}

/* Takes the oldest queued entry (its queue reference passes to the caller); lock held. */
static wcfs_entry *dequeue(wcfs_cache *c) {
    wcfs_entry *e = c->queue[c->q_head];
    c->q_head = (c->q_head + 1) % QUEUE_CAP;
    c->q_len--;
    return e;
}

static int by_file(const void *a, const void *b) {
    const wcfs_decode_req *x = a, *y = b;
    return x->f->id < y->f->id ? -1 : x->f->id > y->f->id ? 1 : (x->tile > y->tile) - (x->tile < y->tile);
}

/* The GPU worker: everything queued goes to the GPU as one batch. Called with the lock held. */
static void gpu_batch(wcfs_cache *c) {
    enum { BATCH = 256 };
    wcfs_entry *es[BATCH];
    wcfs_decode_req reqs[BATCH];
    size_t n = 0;
    while (c->q_len && n < BATCH) es[n++] = dequeue(c);
    pthread_mutex_unlock(&c->lock);
    for (size_t k = 0; k < n; k++) {
        es[k]->data = malloc(es[k]->size);
        reqs[k] = (wcfs_decode_req){&c->fs->files[es[k]->file], es[k]->tile, es[k]->data, 0};
    }
    qsort(reqs, n, sizeof *reqs, by_file);
    wcfs_gpu_decode(c->fs, reqs, n);
    for (size_t k = 0; k < n; k++)
        atomic_fetch_add(&c->fs->stats.bytes_decoded, wc_container_tile(reqs[k].f->c, reqs[k].tile)->src_size);
    pthread_mutex_lock(&c->lock);
    for (size_t k = 0; k < n; k++) {
        wcfs_entry *e = find(c, reqs[k].f->id, reqs[k].tile);
        if (!reqs[k].ok) {
            atomic_fetch_add(&c->fs->stats.tile_errors, 1);
            free(e->data);
            e->data = NULL;
        }
        finish(c, e, reqs[k].ok ? E_READY : reqs[k].f->r ? E_RETRY : E_ERROR);
        release(c, e);
    }
}

/* CPU workers take queued tiles one at a time while the queue is short; a GPU worker waits for
 * a queue of at least gpu_min_batch tiles (a large read plus its read-ahead) and takes it whole:
 * small work stays on the CPU, where its latency is lower, and large batches go to the GPU. */
static void *cpu_worker(void *arg) {
    wcfs_cache *c = arg;
    pthread_mutex_lock(&c->lock);
    for (;;) {
        while (!c->stopping && !(c->q_len && (!c->gpu_started || c->q_len < c->fs->gpu_min_batch)))
            pthread_cond_wait(&c->work, &c->lock);
        if (!c->q_len) break; /* stopping, and nothing left (while stopping, all hands drain) */
        wcfs_entry *e = dequeue(c);
        pthread_mutex_unlock(&c->lock);
        int state = decode(c, e);
        pthread_mutex_lock(&c->lock);
        finish(c, e, state);
        release(c, e);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

static void *gpu_worker(void *arg) {
    wcfs_cache *c = arg;
    pthread_mutex_lock(&c->lock);
    for (;;) {
        while (!c->stopping && c->q_len < c->fs->gpu_min_batch) pthread_cond_wait(&c->work, &c->lock);
        if (!c->q_len) break;
        gpu_batch(c); /* returns with the lock held */
        pthread_cond_broadcast(&c->work); /* what is left may be the CPU workers' now */
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

wcfs_cache *wcfs_cache_new(wcfs *fs, uint64_t budget, unsigned workers, int gpu) {
    wcfs_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->fs = fs;
    c->budget = budget;
    c->nbuckets = 1024;
    while (c->nbuckets < 2 * (budget / (64u << 10)) && c->nbuckets < (1u << 22)) c->nbuckets *= 2;
    c->buckets = calloc(c->nbuckets, sizeof *c->buckets);
    c->workers = calloc(workers + 1, sizeof *c->workers);
    if (!c->buckets || !c->workers) {
        free(c->buckets);
        free(c->workers);
        free(c);
        return NULL;
    }
    c->lru.next = c->lru.prev = &c->lru;
    pthread_mutex_init(&c->lock, NULL);
    for (unsigned i = 0; i < DONE_STRIPES; i++) pthread_cond_init(&c->done[i], NULL);
    pthread_key_create(&c->buffers, free_buffers);
    pthread_cond_init(&c->work, NULL);
    if (gpu && pthread_create(&c->workers[c->n_workers], NULL, gpu_worker, c) == 0) {
        c->n_workers++;
        c->gpu_started = 1;
    }
    for (unsigned i = 0; i < workers; i++)
        if (pthread_create(&c->workers[c->n_workers], NULL, cpu_worker, c) == 0) c->n_workers++;
    return c;
}

void wcfs_cache_free(wcfs_cache *c) {
    if (!c) return;
    pthread_mutex_lock(&c->lock);
    c->stopping = 1;
    pthread_cond_broadcast(&c->work);
    pthread_mutex_unlock(&c->lock);
    for (unsigned i = 0; i < c->n_workers; i++) pthread_join(c->workers[i], NULL);
    buffers *own = pthread_getspecific(c->buffers); /* a single-threaded loop decoded here */
    if (own) free_buffers(own);
    pthread_key_delete(c->buffers);
    for (size_t b = 0; b < c->nbuckets; b++)
        for (wcfs_entry *e = c->buckets[b], *n; e; e = n) {
            n = e->hnext;
            free(e->data);
            free(e);
        }
    free(c->buckets);
    free(c->workers);
    free(c);
}
