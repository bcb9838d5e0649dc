/* stats.c - the counters, as the text of the read-only file /.wcodecfs-stats. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>

#include "wcfs.h"

char *wcfs_stats_text(wcfs *fs, size_t *len) {
    wcfs_stats *s = &fs->stats;
    char *text = NULL;
    int n = asprintf(&text,
        "bytes_served: %llu\nbytes_decoded: %llu\nreads: %llu\n"
        "tiles_decoded_cpu: %llu\ntiles_decoded_gpu: %llu\n"
        "decode_ms_cpu: %.3f\ndecode_ms_gpu: %.3f\n"
        "cache_hits: %llu\ncache_misses: %llu\ncache_waits: %llu\ncache_evictions: %llu\ncache_used_once: %llu\n"
        "cache_bytes: %llu\ncache_peak_bytes: %llu\ncache_budget_bytes: %llu\n"
        "uncached_tiles: %llu\nreadahead_tiles: %llu\ntile_errors: %llu\npush_bytes: %llu\npush_errors: %llu\npush_skipped: %llu\n"
        "containers: %zu\ncontainers_failed: %llu\nindex_reused: %llu\nindex_built: %llu\n"
        "gpu: %s\n",
        (unsigned long long)s->bytes_served, (unsigned long long)s->bytes_decoded,
        (unsigned long long)s->reads,
        (unsigned long long)s->tiles_decoded_cpu, (unsigned long long)s->tiles_decoded_gpu,
        s->decode_ns_cpu / 1e6, s->decode_ns_gpu / 1e6,
        (unsigned long long)s->cache_hits, (unsigned long long)s->cache_misses,
        (unsigned long long)s->cache_waits, (unsigned long long)s->cache_evictions,
        (unsigned long long)s->cache_used_once,
        (unsigned long long)s->cache_bytes, (unsigned long long)s->cache_peak,
        (unsigned long long)fs->cache_size, (unsigned long long)s->uncached_tiles,
        (unsigned long long)s->readahead_tiles, (unsigned long long)s->tile_errors,
        (unsigned long long)s->push_bytes, (unsigned long long)s->push_errors,
        (unsigned long long)s->push_skipped,
        fs->n_files, (unsigned long long)s->containers_failed,
        (unsigned long long)s->index_reused, (unsigned long long)s->index_built,
        fs->gpu_active ? fs->gpu_name : "off");
    if (n < 0) return NULL;
    if (fs->net) { /* a remote root: what went over the network, and the disk cache */
        wcnet_stats ns;
        wcnet_cache_stats ds = {0};
        wcnet_get_stats(fs->net, &ns);
        if (fs->disk) wcnet_cache_get_stats(fs->disk, &ds);
        char *more = NULL;
        n = asprintf(&more, "%snet_requests: %llu\nnet_bytes: %llu\nnet_retries: %llu\nnet_failures: %llu\n"
                     "disk_cache_hits: %llu\ndisk_cache_misses: %llu\ndisk_cache_bad: %llu\n"
                     "disk_cache_bytes: %llu\ndisk_cache_entries: %llu\ndisk_cache_evicted: %llu\n"
                     "tables_from_disk_cache: %llu\n", text,
                     (unsigned long long)ns.requests, (unsigned long long)ns.bytes,
                     (unsigned long long)ns.retries, (unsigned long long)ns.failures,
                     (unsigned long long)ds.hits, (unsigned long long)ds.misses, (unsigned long long)ds.bad,
                     (unsigned long long)ds.bytes, (unsigned long long)ds.entries,
                     (unsigned long long)ds.evicted, (unsigned long long)fs->stats.tables_from_disk);
        free(text);
        if (n < 0) return NULL;
        text = more;
    }
    *len = (size_t)n;
    return text;
}
