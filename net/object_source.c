/* object_source.c - a container object as a wc_source, fetching in runs (a mounted root's, or
 * one opened by its URL alone, which also gets prefetchers).
 *
 * Bound to its container (wcnet_object_source_bind), the source knows the tiles: a payload is
 * read from the disk cache, else fetched with the tiles after it that the reader is about to want
 * (the window it was advised of) in one ranged GET; the extra payloads wait in memory ("staged")
 * for the decode workers that will ask for them, and go to the disk cache. One fetch per tile at
 * a time: a second asker waits for the first. Reads that are not whole tiles (the header and
 * tables, before binding) come from the prefix given at creation, or one GET each. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "net_internal.h"
#include "wcnet.h"

#define STAGE_MAX (128u << 20) /* fetched payloads not yet decoded, all objects together */
#define PREFETCH_MAX (32u << 20) /* an object with prefetchers: how far ahead of the readers they
                                  * go, and all its runs may stage (at least 4 runs, at most STAGE_MAX) */

typedef struct {
    wc_source s;
    wcnet *n;                /* the root's: shared by its objects */
    char *key, *cache_id;
    wcnet_version ver;       /* pinned: read-only here */
    wcnet_cache *disk;       /* or NULL */
    size_t fetch_size;
    uint8_t *prefix;         /* the object's first prefix_len bytes (header and tables) */
    size_t prefix_len;
    const wc_container *c;   /* bound: tiles known */
    int owns_n;              /* close n with the source (an object opened by URL alone) */
    /* prefetchers (an object opened by URL alone): threads that fetch the advised tiles ahead of
     * the readers, in runs, several at once, into the stage; readers find them there */
    pthread_t *fetchers;
    unsigned n_fetchers;
    uint32_t next_fetch;     /* the next tile a prefetcher looks at */
    uint64_t room;           /* staged bytes (in flight included) a run may take the stage to:
                              * STAGE_MAX, or with prefetchers at least 4 runs, about PREFETCH_MAX */
    int closing;
    uint8_t *in_flight;      /* per tile */
    uint8_t **staged;        /* per tile */
    atomic_uint want_first, want_last;
} object_source;

static pthread_mutex_t r_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t r_cond = PTHREAD_COND_INITIALIZER;
static uint64_t staged_bytes; /* including what runs in flight will stage */
static object_source **live;  /* every bound source, so that a full stage can be emptied */
static size_t n_live, cap_live;

static uint64_t span(const wc_container *c, uint32_t a, uint32_t b) {
    return wc_container_tile(c, b)->payload_offset + wc_container_tile(c, b)->coded_size -
           wc_container_tile(c, a)->payload_offset;
}

/* Staged payloads no reader came for (readers gone): dropped when the stage is full. r_lock held. */
static void drop_staged(void) {
    for (size_t i = 0; i < n_live; i++) {
        object_source *o = live[i];
        for (uint32_t t = 0, n = wc_container_tile_count(o->c); t < n; t++)
            if (o->staged[t]) {
                staged_bytes -= wc_container_tile(o->c, t)->coded_size;
                free(o->staged[t]);
                o->staged[t] = NULL;
            }
    }
}

/* The tile whose payload starts at off, or UINT32_MAX. */
static uint32_t tile_at(const wc_container *c, uint64_t off) {
    uint32_t lo = 0, hi = wc_container_tile_count(c);
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        uint64_t p = wc_container_tile(c, mid)->payload_offset;
        if (p == off) return mid;
        if (p < off) lo = mid + 1;
        else hi = mid;
    }
    return UINT32_MAX;
}

/* 1 if nobody has tile k or is fetching it: not staged, not in flight, not on disk. r_lock held. */
static int unfetched(object_source *o, uint32_t k) {
    return !o->in_flight[k] && !o->staged[k] && !(o->disk && wcnet_cache_has(o->disk, o->cache_id, k));
}

/* Extends a run from tile t (not staged, not in flight) over the wanted tiles after it that
 * nobody has or is fetching, within fetch_size and the stage's room; marks them in flight and
 * reserves their room. r_lock held. Returns the run's last tile. */
static uint32_t start_run(object_source *o, uint32_t t, uint64_t *reserved) {
    const wc_container *c = o->c;
    uint32_t u = t, wf = atomic_load(&o->want_first), wl = atomic_load(&o->want_last);
    while (t >= wf && u + 1 <= wl && unfetched(o, u + 1) && span(c, t, u + 1) <= o->fetch_size &&
           staged_bytes + span(c, t + 1, u + 1) <= o->room)
        u++;
    *reserved = u > t ? span(c, t + 1, u) : 0;
    staged_bytes += *reserved;
    memset(o->in_flight + t, 1, u - t + 1);
    return u;
}

/* Fetches tiles t..u (marked in flight by start_run) in one GET into run; stages every one of
 * them but `keep` (the asker's own, or UINT32_MAX); returns 0 or -errno. */
static int fetch_run(object_source *o, uint32_t t, uint32_t u, uint64_t reserved, uint8_t *run, uint32_t keep,
                     wc_error *err) {
    const wc_container *c = o->c;
    uint64_t off = wc_container_tile(c, t)->payload_offset;
    wcnet_version ver = o->ver;
    int rc = run ? wcnet_get(o->n, o->key, off, (size_t)span(c, t, u), run, &ver, err) : -ENOMEM;
    pthread_mutex_lock(&r_lock);
    staged_bytes -= reserved;
    memset(o->in_flight + t, 0, u - t + 1);
    for (uint32_t k = t; rc == 0 && k <= u; k++) {
        const wc_tile_info *ti = wc_container_tile(c, k);
        if (k == keep || o->staged[k]) continue;
        if ((o->staged[k] = malloc(ti->coded_size ? ti->coded_size : 1))) {
            memcpy(o->staged[k], run + (ti->payload_offset - off), ti->coded_size);
            staged_bytes += ti->coded_size;
        }
    }
    pthread_cond_broadcast(&r_cond);
    pthread_mutex_unlock(&r_lock);
    for (uint32_t k = t; rc == 0 && o->disk && k <= u; k++) {
        const wc_tile_info *ti = wc_container_tile(c, k);
        wcnet_cache_put(o->disk, o->cache_id, k, run + (ti->payload_offset - off), ti->coded_size);
    }
    return rc;
}

static void *prefetcher(void *arg) {
    object_source *o = arg;
    uint32_t n = wc_container_tile_count(o->c);
    pthread_mutex_lock(&r_lock);
    while (!o->closing) {
        uint32_t wl = atomic_load(&o->want_last), t = o->next_fetch;
        while (t <= wl && t < n && !unfetched(o, t)) t++;
        int none = t > wl || t >= n;
        uint64_t need = none ? 0 : wc_container_tile(o->c, t)->coded_size;
        if (none || staged_bytes + need + o->fetch_size > o->room) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 50 * 1000000L; /* a reader's advice or taking staged tiles wakes it sooner */
            if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
            pthread_cond_timedwait(&r_cond, &r_lock, &ts);
            continue;
        }
        uint64_t reserved;
        staged_bytes += need; /* the first tile is staged too: nobody asked for it yet */
        uint32_t u = start_run(o, t, &reserved);
        reserved += need;
        o->next_fetch = u + 1;
        pthread_mutex_unlock(&r_lock);
        uint8_t *run = malloc((size_t)span(o->c, t, u));
        wc_error err = {0};
        fetch_run(o, t, u, reserved, run, UINT32_MAX, &err); /* a failure: the readers fetch it again, and see why */
        free(run);
        pthread_mutex_lock(&r_lock);
    }
    pthread_mutex_unlock(&r_lock);
    return NULL;
}

static int read_tile(object_source *o, uint32_t t, uint8_t *buf, wc_error *err) {
    const wc_container *c = o->c;
    size_t coded = wc_container_tile(c, t)->coded_size;
    uint64_t at = wc_container_tile(c, t)->payload_offset;
    if (o->disk && wcnet_cache_get(o->disk, o->cache_id, t, buf, coded)) return 0;
    if (at + coded <= o->prefix_len) { /* came with the tables; on disk for a mount that will not have it */
        memcpy(buf, o->prefix + at, coded);
        if (o->disk) wcnet_cache_put(o->disk, o->cache_id, t, buf, coded);
        return 0;
    }
    pthread_mutex_lock(&r_lock);
    for (;;) {
        if (o->staged[t]) {
            memcpy(buf, o->staged[t], coded);
            free(o->staged[t]);
            o->staged[t] = NULL;
            staged_bytes -= coded;
            pthread_mutex_unlock(&r_lock);
            return 0;
        }
        if (!o->in_flight[t]) break;
        pthread_cond_wait(&r_cond, &r_lock);
    }
    /* the run: this tile, and the wanted ones after it that nobody has or is fetching */
    if (staged_bytes + o->fetch_size > STAGE_MAX && !o->fetchers) drop_staged();
    uint64_t reserved;
    uint32_t u = start_run(o, t, &reserved);
    pthread_mutex_unlock(&r_lock);
    uint8_t *run = u > t ? malloc((size_t)span(c, t, u)) : buf;
    int rc = fetch_run(o, t, u, reserved, run, t, err);
    if (rc == 0 && run != buf) memcpy(buf, run, coded);
    if (run != buf) free(run);
    return rc;
}

static wc_status object_read_at(wc_source *s, uint64_t off, size_t len, void *buf, wc_error *err) {
    object_source *o = (object_source *)s;
    wc_status st = wc_source_check_range(s, off, len, err);
    if (st != WC_OK) return st;
    uint32_t t = o->c ? tile_at(o->c, off) : UINT32_MAX;
    int rc;
    if (t != UINT32_MAX && wc_container_tile(o->c, t)->coded_size == len) {
        rc = read_tile(o, t, buf, err);
    } else if (off + len <= o->prefix_len) { /* the header and tables */
        memcpy(buf, o->prefix + off, len);
        rc = 0;
    } else { /* not a tile (the tables, read at open): one GET, kept on disk under its range */
        char id[sizeof o->s.name + 64];
        snprintf(id, sizeof id, "%s#%llu+%zu", o->cache_id, (unsigned long long)off, len);
        if (o->disk && wcnet_cache_get(o->disk, id, UINT32_MAX, buf, len)) return WC_OK;
        wcnet_version ver = o->ver;
        rc = wcnet_get(o->n, o->key, off, len, buf, &ver, err);
        if (rc == 0 && o->disk) wcnet_cache_put(o->disk, id, UINT32_MAX, buf, len);
    }
    return rc ? WC_ERR_IO : WC_OK; /* err: the URL and why (wcnet_get) */
}

/* The tiles whose payloads lie in [off, off + len): fetched along with the next miss (and by the
 * prefetchers, where there are). Advice that goes on within the window wanted so far keeps its far
 * end (a whole-file reader advises all of it, then each chunk); other advice replaces it. */
static void object_advise(wc_source *s, uint64_t off, uint64_t len) {
    object_source *o = (object_source *)s;
    if (!o->c || !len) return;
    uint32_t n = wc_container_tile_count(o->c), first = tile_at(o->c, off);
    if (first == UINT32_MAX) return;
    uint32_t last = first;
    while (last + 1 < n && wc_container_tile(o->c, last + 1)->payload_offset < off + len) last++;
    pthread_mutex_lock(&r_lock);
    uint32_t wf = atomic_load(&o->want_first), wl = atomic_load(&o->want_last);
    if (first >= wf && first <= wl && last < wl) last = wl;
    atomic_store(&o->want_first, first);
    atomic_store(&o->want_last, last);
    if (o->next_fetch < first || o->next_fetch > last + 1) o->next_fetch = first;
    pthread_cond_broadcast(&r_cond);
    pthread_mutex_unlock(&r_lock);
}

static void object_close(wc_source *s) {
    object_source *o = (object_source *)s;
    pthread_mutex_lock(&r_lock);
    o->closing = 1;
    pthread_cond_broadcast(&r_cond);
    pthread_mutex_unlock(&r_lock);
    for (unsigned i = 0; i < o->n_fetchers; i++) pthread_join(o->fetchers[i], NULL);
    free(o->fetchers);
    pthread_mutex_lock(&r_lock);
    for (size_t i = 0; i < n_live; i++)
        if (live[i] == o) live[i] = live[--n_live];
    for (uint32_t t = 0, n = o->c ? wc_container_tile_count(o->c) : 0; t < n; t++)
        if (o->staged[t]) {
            staged_bytes -= wc_container_tile(o->c, t)->coded_size;
            free(o->staged[t]);
        }
    pthread_mutex_unlock(&r_lock);
    if (o->owns_n) wcnet_close(o->n);
    free(o->staged);
    free(o->in_flight);
    free(o->prefix);
    free(o->key);
    free(o->cache_id);
    free(o);
}

wc_status wcnet_object_source_bind(wc_source *s, const wc_container *c, wc_error *err);

static wc_status object_opened(wc_source *s, const wc_container *c, wc_error *err) {
    return wcnet_object_source_bind(s, c, err);
}

static const wc_source_ops object_ops = {object_read_at, object_close, object_advise, object_opened};

wc_status wcnet_object_source(wcnet *n, const char *key, const wcnet_version *ver, const uint8_t *prefix,
                              size_t prefix_len, wcnet_cache *disk, const char *cache_id, size_t fetch_size,
                              wc_source **out, wc_error *err) {
    object_source *o = calloc(1, sizeof *o);
    if (!o || !(o->key = strdup(key)) || !(o->cache_id = strdup(cache_id)) ||
        !(o->prefix = malloc(prefix_len ? prefix_len : 1))) {
        if (o) free(o->key), free(o->cache_id), free(o);
        return wc_error_set(err, WC_ERR_NOMEM, "out of memory");
    }
    memcpy(o->prefix, prefix, prefix_len);
    o->prefix_len = prefix_len;
    o->s.ops = &object_ops;
    o->s.size = ver->size;
    o->s.mode = 0444;
    snprintf(o->s.name, sizeof o->s.name, "%s%s", wcnet_display_url(n), key);
    snprintf(o->s.identity, sizeof o->s.identity, "url:%s:%llu", ver->etag, (unsigned long long)ver->size);
    o->n = n;
    o->ver = *ver;
    o->disk = disk;
    o->fetch_size = fetch_size;
    o->room = STAGE_MAX;
    *out = &o->s;
    return WC_OK;
}

wc_status wcnet_object_source_bind(wc_source *s, const wc_container *c, wc_error *err) {
    object_source *o = (object_source *)s;
    if (o->c) return WC_OK; /* bound when its container opened */
    uint32_t n = wc_container_tile_count(c);
    o->in_flight = calloc(n ? n : 1, 1);
    o->staged = calloc(n ? n : 1, sizeof *o->staged);
    pthread_mutex_lock(&r_lock);
    int ok = o->in_flight && o->staged;
    if (ok && n_live == cap_live) {
        size_t cap = cap_live ? 2 * cap_live : 16;
        object_source **v = realloc(live, cap * sizeof *v);
        if (v) live = v, cap_live = cap;
        else ok = 0;
    }
    if (ok) {
        live[n_live++] = o;
        o->c = c;
    }
    pthread_mutex_unlock(&r_lock);
    if (!ok) return wc_error_set(err, WC_ERR_NOMEM, "out of memory");
    /* an object read by URL alone: prefetchers, one a connection (readers share them) */
    unsigned want = o->owns_n ? o->s.concurrency : 0;
    if (want && (o->fetchers = calloc(want, sizeof *o->fetchers)))
        while (o->n_fetchers < want && pthread_create(&o->fetchers[o->n_fetchers], NULL, prefetcher, o) == 0)
            o->n_fetchers++;
    return WC_OK;
}

void wcnet_object_source_own(wc_source *s, unsigned concurrency) {
    object_source *o = (object_source *)s;
    o->owns_n = 1;
    o->s.concurrency = concurrency;
    /* prefetchers keep the stage full: bound it, readers' runs included, near their look-ahead */
    uint64_t room = (uint64_t)4 * o->fetch_size > PREFETCH_MAX ? (uint64_t)4 * o->fetch_size : PREFETCH_MAX;
    o->room = room < STAGE_MAX ? room : STAGE_MAX;
}
