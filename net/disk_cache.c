/* disk_cache.c - fetched tile payloads kept on local disk, bounded, checked on every use.
 *
 * One file per tile: DIR/kk/<16 hex digits of the key>, the key an xxh3 of (object version,
 * tile). A file holds a 24-byte header ("WCTC", format 1, payload length, payload xxh3-64)
 * and the payload. Recency is the file's mtime, so that it survives remounts. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "wcnet.h"

#define HEADER_SIZE 24
#define MAGIC "WCTC"
#define STALE_TMP_S 600 /* a temporary this old was left by a daemon that died */

typedef struct {
    uint64_t key, used; /* used: a clock, larger = more recent */
    uint64_t size;      /* bytes on disk */
    int dead;
} entry;

struct wcnet_cache {
    char *dir;
    uint64_t budget, bytes;
    pthread_mutex_t lock;
    entry *v;
    size_t n, cap;
    size_t *slots; /* open addressing: index into v, plus 1; 0 = empty */
    size_t n_slots;
    uint64_t clock;
    wcnet_cache_stats st;
};

static uint64_t key_of(const char *object, uint32_t tile) {
    return XXH3_64bits_withSeed(object, strlen(object), tile);
}

static void path_of(const wcnet_cache *c, uint64_t key, char *out, size_t len) {
    snprintf(out, len, "%s/%02x/%016" PRIx64, c->dir, (unsigned)(key >> 56), key);
}

static int rebuild_slots(wcnet_cache *c) {
    size_t n = 1024;
    while (n < 2 * c->n + 2) n *= 2;
    size_t *s = calloc(n, sizeof *s);
    if (!s) return -1;
    free(c->slots);
    c->slots = s;
    c->n_slots = n;
    for (size_t i = 0; i < c->n; i++) {
        size_t h = (size_t)c->v[i].key & (n - 1);
        while (s[h]) h = (h + 1) & (n - 1);
        s[h] = i + 1;
    }
    return 0;
}

static entry *find(wcnet_cache *c, uint64_t key) {
    if (!c->n_slots) return NULL;
    for (size_t h = (size_t)key & (c->n_slots - 1); c->slots[h]; h = (h + 1) & (c->n_slots - 1)) {
        entry *e = &c->v[c->slots[h] - 1];
        if (e->key == key && !e->dead) return e;
    }
    return NULL;
}

static int add(wcnet_cache *c, uint64_t key, uint64_t size, uint64_t used) {
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 1024;
        entry *v = realloc(c->v, cap * sizeof *v);
        if (!v) return -1;
        c->v = v;
        c->cap = cap;
    }
    c->v[c->n++] = (entry){.key = key, .used = used, .size = size};
    c->bytes += size;
    if (2 * c->n + 2 > c->n_slots) return rebuild_slots(c);
    size_t h = (size_t)key & (c->n_slots - 1);
    while (c->slots[h]) h = (h + 1) & (c->n_slots - 1);
    c->slots[h] = c->n;
    return 0;
}

static int by_used(const void *a, const void *b) {
    uint64_t x = ((const entry *)a)->used, y = ((const entry *)b)->used;
    return x < y ? -1 : x > y;
}

/* Deletes the least recently used entries down to 90% of the budget; lock held. */
static void evict(wcnet_cache *c) {
    if (c->bytes <= c->budget) return;
    qsort(c->v, c->n, sizeof *c->v, by_used);
    size_t keep = 0;
    for (size_t i = 0; i < c->n; i++) {
        entry *e = &c->v[i];
        if (!e->dead && c->bytes > c->budget / 10 * 9) {
            char p[4200];
            path_of(c, e->key, p, sizeof p);
            unlink(p);
            c->bytes -= e->size;
            c->st.evicted++;
            e->dead = 1;
        }
        if (!e->dead) c->v[keep++] = *e;
    }
    c->n = keep;
    rebuild_slots(c);
}

static void drop(wcnet_cache *c, entry *e, const char *path) {
    unlink(path);
    c->bytes -= e->size;
    e->dead = 1;
}

/* Loads what an earlier mount left: every entry, oldest mtime first. */
static void load(wcnet_cache *c) {
    time_t now = time(NULL);
    for (unsigned sub = 0; sub < 256; sub++) {
        char d[4200];
        snprintf(d, sizeof d, "%s/%02x", c->dir, sub);
        DIR *dir = opendir(d);
        if (!dir) continue;
        for (struct dirent *de; (de = readdir(dir));) {
            struct stat sb;
            char *end;
            if (de->d_name[0] == '.' && strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
                if (fstatat(dirfd(dir), de->d_name, &sb, 0) == 0 && now - sb.st_mtime > STALE_TMP_S)
                    unlinkat(dirfd(dir), de->d_name, 0);
                continue;
            }
            uint64_t key = strtoull(de->d_name, &end, 16);
            if (strlen(de->d_name) != 16 || *end || (key >> 56) != sub ||
                fstatat(dirfd(dir), de->d_name, &sb, 0) != 0 || !S_ISREG(sb.st_mode))
                continue;
            add(c, key, (uint64_t)sb.st_size, (uint64_t)sb.st_mtim.tv_sec * 1000000000u + (uint64_t)sb.st_mtim.tv_nsec);
        }
        closedir(dir);
    }
    /* the clock goes on from the newest mtime, in the same units */
    for (size_t i = 0; i < c->n; i++)
        if (c->v[i].used > c->clock) c->clock = c->v[i].used;
    evict(c);
}

wc_status wcnet_cache_open(const char *dir, uint64_t budget, wcnet_cache **out, wc_error *err) {
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return wc_error_set(err, WC_ERR_IO, "disk_cache=%s: %s", dir, strerror(errno));
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode) || access(dir, W_OK | X_OK) != 0)
        return wc_error_set(err, WC_ERR_IO, "disk_cache=%s: not a writable directory", dir);
    wcnet_cache *c = calloc(1, sizeof *c);
    if (!c || !(c->dir = strdup(dir)) || rebuild_slots(c) != 0) {
        if (c) free(c->dir);
        free(c);
        return wc_error_set(err, WC_ERR_NOMEM, "out of memory");
    }
    c->budget = budget;
    pthread_mutex_init(&c->lock, NULL);
    for (unsigned sub = 0; sub < 256; sub++) {
        char d[4200];
        snprintf(d, sizeof d, "%s/%02x", dir, sub);
        mkdir(d, 0700);
    }
    load(c);
    *out = c;
    return WC_OK;
}

void wcnet_cache_close(wcnet_cache *c) {
    if (!c) return;
    pthread_mutex_destroy(&c->lock);
    free(c->v);
    free(c->slots);
    free(c->dir);
    free(c);
}

int wcnet_cache_has(wcnet_cache *c, const char *object, uint32_t tile) {
    pthread_mutex_lock(&c->lock);
    int has = find(c, key_of(object, tile)) != NULL;
    pthread_mutex_unlock(&c->lock);
    return has;
}

static int read_all(int fd, void *buf, size_t len) {
    for (size_t got = 0; got < len;) {
        ssize_t r = read(fd, (uint8_t *)buf + got, len - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    return 0;
}

/* The checked entry at fd (its header first) into buf, or a malloc'd *out when buf is NULL. */
static int read_entry(int fd, void *buf, size_t len, uint8_t **out, size_t *out_len) {
    uint8_t h[HEADER_SIZE];
    if (fd < 0 || read_all(fd, h, sizeof h) != 0 || memcmp(h, MAGIC, 4) || h[4] != 1) return 0;
    uint64_t have = *(uint64_t *)(void *)(h + 8);
    if (buf ? have != len : have > (1ull << 31)) return 0;
    uint8_t *b = buf ? buf : malloc(have ? (size_t)have : 1);
    int ok = b && read_all(fd, b, (size_t)have) == 0 && XXH3_64bits(b, (size_t)have) == *(uint64_t *)(void *)(h + 16);
    if (!buf && ok) *out = b, *out_len = (size_t)have;
    else if (!buf) free(b);
    return ok;
}

static int get_entry(wcnet_cache *c, const char *object, uint32_t tile, void *buf, size_t len, uint8_t **out,
                     size_t *out_len) {
    uint64_t key = key_of(object, tile);
    char path[4200];
    path_of(c, key, path, sizeof path);
    pthread_mutex_lock(&c->lock);
    int known = find(c, key) != NULL;
    if (!known) c->st.misses++;
    pthread_mutex_unlock(&c->lock);
    if (!known) return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int ok = read_entry(fd, buf, len, out, out_len);
    if (fd >= 0) close(fd);
    pthread_mutex_lock(&c->lock);
    entry *e = find(c, key);
    if (ok) {
        c->st.hits++;
        if (e) e->used = ++c->clock;
    } else {
        /* damaged, or deleted by another daemon sharing the folder: fetched again */
        c->st.misses++;
        if (fd >= 0) c->st.bad++;
        if (e) drop(c, e, path);
    }
    pthread_mutex_unlock(&c->lock);
    if (ok) utimensat(AT_FDCWD, path, NULL, 0); /* recency, for the next mount */
    return ok;
}

int wcnet_cache_get(wcnet_cache *c, const char *object, uint32_t tile, void *buf, size_t len) {
    return get_entry(c, object, tile, buf, len, NULL, NULL);
}

int wcnet_cache_get_alloc(wcnet_cache *c, const char *object, uint32_t tile, uint8_t **out, size_t *len) {
    return get_entry(c, object, tile, NULL, 0, out, len);
}

void wcnet_cache_put(wcnet_cache *c, const char *object, uint32_t tile, const void *buf, size_t len) {
    uint64_t key = key_of(object, tile);
    char path[4200], tmp[4300];
    path_of(c, key, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s/%02x/.tmp.XXXXXX", c->dir, (unsigned)(key >> 56));
    if (wcnet_cache_has(c, object, tile) || len + HEADER_SIZE > c->budget) return;
    uint8_t h[HEADER_SIZE] = MAGIC;
    h[4] = 1;
    uint64_t l = len, sum = XXH3_64bits(buf, len);
    memcpy(h + 8, &l, 8);
    memcpy(h + 16, &sum, 8);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) return;
    int ok = write(fd, h, sizeof h) == (ssize_t)sizeof h && write(fd, buf, len) == (ssize_t)len;
    ok = close(fd) == 0 && ok && rename(tmp, path) == 0;
    if (!ok) {
        unlink(tmp); /* a full disk loses this entry, nothing else */
        return;
    }
    pthread_mutex_lock(&c->lock);
    if (!find(c, key) && add(c, key, len + HEADER_SIZE, ++c->clock) == 0) evict(c);
    pthread_mutex_unlock(&c->lock);
}

void wcnet_cache_get_stats(wcnet_cache *c, wcnet_cache_stats *out) {
    pthread_mutex_lock(&c->lock);
    *out = c->st;
    out->bytes = c->bytes;
    size_t live = 0;
    for (size_t i = 0; i < c->n; i++) live += !c->v[i].dead;
    out->entries = live;
    pthread_mutex_unlock(&c->lock);
}
