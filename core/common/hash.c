/* hash.c - the one checksum of the format: xxh3-64 (libxxhash).
 *
 * Where libxxhash has its x86 dispatcher (WC_XXH_DISPATCH, found by CMake), the hash runs the
 * widest vector code the CPU has: after a CPU tile decode it took 23% of the time with the plain
 * (SSE2) entry point, and the decode of real BF16 is 14-15% faster with the dispatcher (docs/
 * BENCHMARKS.md). The result is the same function either way.
 */
#include <xxhash.h>
#if WC_XXH_DISPATCH
#include <xxh_x86dispatch.h>
#define HASH64 XXH3_64bits_dispatch
#define HASH64_UPDATE XXH3_64bits_update_dispatch
#else
#define HASH64 XXH3_64bits
#define HASH64_UPDATE XXH3_64bits_update
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "wc_internal.h"

uint64_t wc_hash(const void *p, size_t n) { return (uint64_t)HASH64(p, n); }

wc_hasher *wc_hasher_new(void) {
    XXH3_state_t *s = XXH3_createState();
    if (!s) return NULL;
    XXH3_64bits_reset(s);
    return (wc_hasher *)s; /* the state is the hasher */
}
void wc_hasher_update(wc_hasher *h, const void *p, size_t n) { HASH64_UPDATE((XXH3_state_t *)h, p, n); }
uint64_t wc_hasher_digest(const wc_hasher *h) { return XXH3_64bits_digest((const XXH3_state_t *)h); }
void wc_hasher_free(wc_hasher *h) { XXH3_freeState((XXH3_state_t *)h); }

wc_status wc_hash_file(const char *path, uint64_t *out, wc_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return wc_error_set(err, WC_ERR_IO, "%s: %s", path, strerror(errno));
    static const size_t chunk = 1 << 20;
    XXH3_state_t *s = XXH3_createState();
    uint8_t *buf = malloc(chunk);
    wc_status st = s && buf ? WC_OK : wc_error_set(err, WC_ERR_NOMEM, "%s: out of memory", path);
    if (s) XXH3_64bits_reset(s);
    while (st == WC_OK) {
        ssize_t r = read(fd, buf, chunk);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) st = wc_error_set(err, WC_ERR_IO, "%s: %s", path, strerror(errno));
        if (r <= 0) break;
        HASH64_UPDATE(s, buf, (size_t)r);
    }
    if (st == WC_OK) *out = XXH3_64bits_digest(s);
    XXH3_freeState(s);
    free(buf);
    close(fd);
    return st;
}
