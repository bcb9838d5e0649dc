/*
 * wcindex.h - the LMDB index of a mounted tree: for every container, the map from source byte
 * offsets to tiles, kept on disk and reused while the container is unchanged.
 *
 * Layout: an LMDB environment (a directory). Database "files": key = xxh3-64 of the
 * container's real path (8 bytes), value = its wc_index_file record. Database "tiles": key =
 * file id (u32, big-endian) + tile source offset (u64, big-endian), value = tile index (u32).
 * Big-endian keys sort by offset, so "which tile holds byte X" is one B-tree search.
 *
 * Conventions as in wcodec.h: wc_status returns, optional wc_error, caller-owned outputs.
 * A wc_index may be used from many threads at once (LMDB read transactions).
 */
#ifndef WCINDEX_H
#define WCINDEX_H

#include <stdint.h>

#include "wcodec.h"

#define WC_INDEX_VERSION 1u

typedef struct wc_index wc_index;

/* What the index remembers of a container, and what says whether that is still true. */
typedef struct {
    uint32_t version;         /* WC_INDEX_VERSION */
    uint32_t file_id;         /* prefix of this container's tile keys */
    uint64_t container_size;  /* the container file's size ... */
    int64_t mtime_ns;         /* ... mtime ... */
    uint64_t tables_checksum; /* ... and table checksum when indexed */
    uint64_t source_size;     /* bytes of the presented file */
    uint32_t tile_count;
    uint32_t reserved;
} wc_index_file;

/* Opens (creating if needed) the index environment in directory `dir` (created if missing). */
wc_status wc_index_open(const char *dir, wc_index **out, wc_error *err);
void wc_index_close(wc_index *ix);

/*
 * Makes the index describe the container at `real_path` (absolute), whose header says `sum`
 * and whose file has mtime `mtime_ns`. If the stored record matches size, mtime and table
 * checksum, nothing is written and *reused = 1. Otherwise the container is opened, its tables
 * are read, and its entries are replaced in one transaction (*reused = 0). *rec receives the
 * record in force.
 */
wc_status wc_index_sync(wc_index *ix, const char *real_path, const wc_container_summary *sum,
                        int64_t mtime_ns, wc_index_file *rec, int *reused, wc_error *err);

/* The tile holding source byte `offset` of file `file_id`. WC_ERR_FORMAT if none. O(log n). */
wc_status wc_index_find_tile(wc_index *ix, uint32_t file_id, uint64_t offset, uint32_t *tile,
                             wc_error *err);

#endif
