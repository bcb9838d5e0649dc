/* object_source.c - a container object of a mounted root as a wc_source, fetching in runs.
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

#include "net_internal.h"
#include "wcnet.h"

#define STAGE_MAX (128u << 20) /* fetched payloads not yet decoded, all objects together */

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
    uint32_t u = t, wf = atomic_load(&o->want_first), wl = atomic_load(&o->want_last);
    if (staged_bytes + o->fetch_size > STAGE_MAX) drop_staged();
    while (t >= wf && u + 1 <= wl && !o->in_flight[u + 1] && !o->staged[u + 1] &&
           span(c, t, u + 1) <= o->fetch_size && staged_bytes + span(c, t + 1, u + 1) <= STAGE_MAX &&
           !(o->disk && wcnet_cache_has(o->disk, o->cache_id, u + 1)))
        u++;
    uint64_t reserved = u > t ? span(c, t + 1, u) : 0;
    staged_bytes += reserved;
    memset(o->in_flight + t, 1, u - t + 1);
    pthread_mutex_unlock(&r_lock);

    uint64_t off = wc_container_tile(c, t)->payload_offset;
    size_t len = (size_t)span(c, t, u);
    uint8_t *run = u > t ? malloc(len) : buf;
    wcnet_version ver = o->ver;
    int rc = run ? wcnet_get(o->n, o->key, off, len, run, &ver, err) : -ENOMEM;

    pthread_mutex_lock(&r_lock);
    staged_bytes -= reserved;
    memset(o->in_flight + t, 0, u - t + 1);
    for (uint32_t k = t + 1; rc == 0 && k <= u; k++) {
        const wc_tile_info *ti = wc_container_tile(c, k);
        if ((o->staged[k] = malloc(ti->coded_size ? ti->coded_size : 1))) {
            memcpy(o->staged[k], run + (ti->payload_offset - off), ti->coded_size);
            staged_bytes += ti->coded_size;
        }
    }
    pthread_cond_broadcast(&r_cond);
    pthread_mutex_unlock(&r_lock);

    if (rc == 0 && run != buf) memcpy(buf, run, coded);
    for (uint32_t k = t; rc == 0 && o->disk && k <= u; k++) {
        const wc_tile_info *ti = wc_container_tile(c, k);
        wcnet_cache_put(o->disk, o->cache_id, k, run + (ti->payload_offset - off), ti->coded_size);
    }
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
    } else {
        wcnet_version ver = o->ver;
        rc = wcnet_get(o->n, o->key, off, len, buf, &ver, err);
    }
    return rc ? WC_ERR_IO : WC_OK; /* err: the URL and why (wcnet_get) */
}

/* The tiles whose payloads lie in [off, off + len): fetched along with the next miss. */
static void object_advise(wc_source *s, uint64_t off, uint64_t len) {
    object_source *o = (object_source *)s;
    if (!o->c || !len) return;
    uint32_t n = wc_container_tile_count(o->c), first = tile_at(o->c, off);
    if (first == UINT32_MAX) return;
    uint32_t last = first;
    while (last + 1 < n && wc_container_tile(o->c, last + 1)->payload_offset < off + len) last++;
    atomic_store(&o->want_first, first);
    atomic_store(&o->want_last, last);
}

static void object_close(wc_source *s) {
    object_source *o = (object_source *)s;
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
    return ok ? WC_OK : wc_error_set(err, WC_ERR_NOMEM, "out of memory");
}

void wcnet_object_source_own(wc_source *s, unsigned concurrency) {
    object_source *o = (object_source *)s;
    o->owns_n = 1;
    o->s.concurrency = concurrency;
}
