/* hash.c - the one checksum of the format: xxh3-64 (libxxhash). */
#include <xxhash.h>

#include "wc_internal.h"

uint64_t wc_hash(const void *p, size_t n) { return (uint64_t)XXH3_64bits(p, n); }

wc_hasher *wc_hasher_new(void) {
    XXH3_state_t *s = XXH3_createState();
    if (!s) return NULL;
    XXH3_64bits_reset(s);
    return (wc_hasher *)s; /* the state is the hasher */
}
void wc_hasher_update(wc_hasher *h, const void *p, size_t n) {
    XXH3_64bits_update((XXH3_state_t *)h, p, n);
}
uint64_t wc_hasher_digest(const wc_hasher *h) { return XXH3_64bits_digest((const XXH3_state_t *)h); }
void wc_hasher_free(wc_hasher *h) { XXH3_freeState((XXH3_state_t *)h); }
