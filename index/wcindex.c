/* wcindex.c - the LMDB index (see wcindex.h for the layout). */
#include "wcindex.h"

#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

struct wc_index {
    MDB_env *env;
    MDB_dbi files, tiles, meta;
};


/* An LMDB (or errno) failure: rc names it. */
static wc_status ix_fail(wc_error *err, int rc, const char *what) {
    return wc_error_set(err, WC_ERR_IO, "index: %s: %s", what, mdb_strerror(rc));
}

wc_status wc_index_open(const char *dir, wc_index **out, wc_error *err) {
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return ix_fail(err, errno, dir);
    wc_index *ix = calloc(1, sizeof *ix);
    if (!ix) return wc_error_set(err, WC_ERR_NOMEM, "index: out of memory");
    int rc;
    MDB_txn *txn = NULL;
    if ((rc = mdb_env_create(&ix->env)) ||
        (rc = mdb_env_set_maxdbs(ix->env, 4)) ||
        (rc = mdb_env_set_maxreaders(ix->env, 1024)) ||
        /* address space, not disk: the file grows only as entries are written */
        (rc = mdb_env_set_mapsize(ix->env, (size_t)16 << 30)) ||
        (rc = mdb_env_open(ix->env, dir, MDB_NOTLS, 0600)) ||
        (rc = mdb_txn_begin(ix->env, NULL, 0, &txn)) ||
        (rc = mdb_dbi_open(txn, "files", MDB_CREATE, &ix->files)) ||
        (rc = mdb_dbi_open(txn, "tiles", MDB_CREATE, &ix->tiles)) ||
        (rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &ix->meta)) ||
        (rc = mdb_txn_commit(txn))) {
        if (txn && rc) mdb_txn_abort(txn);
        wc_status st = ix_fail(err, rc, dir);
        if (ix->env) mdb_env_close(ix->env);
        free(ix);
        return st;
    }
    *out = ix;
    return WC_OK;
}

void wc_index_close(wc_index *ix) {
    if (!ix) return;
    mdb_env_close(ix->env);
    free(ix);
}

static void tile_key(uint8_t k[12], uint32_t file_id, uint64_t off) {
    for (int i = 0; i < 4; i++) k[i] = (uint8_t)(file_id >> (24 - 8 * i));
    for (int i = 0; i < 8; i++) k[4 + i] = (uint8_t)(off >> (56 - 8 * i));
}

/* Deletes every tile key of file_id. */
static int delete_tiles(MDB_txn *txn, MDB_dbi dbi, uint32_t file_id) {
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc) return rc;
    uint8_t k[12];
    tile_key(k, file_id, 0);
    MDB_val key = {sizeof k, k}, val;
    for (rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        if (key.mv_size != 12 || memcmp(key.mv_data, k, 4) != 0) break;
        if ((rc = mdb_cursor_del(cur, 0))) break;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int next_file_id(MDB_txn *txn, MDB_dbi meta, uint32_t *id) {
    MDB_val key = {7, "next_id"}, val;
    uint32_t next = 1;
    int rc = mdb_get(txn, meta, &key, &val);
    if (rc == 0 && val.mv_size == 4) memcpy(&next, val.mv_data, 4);
    else if (rc != MDB_NOTFOUND) return rc;
    *id = next++;
    val = (MDB_val){4, &next};
    return mdb_put(txn, meta, &key, &val, 0);
}

wc_status wc_index_sync(wc_index *ix, const char *real_path, const wc_container_summary *sum,
                        int64_t mtime_ns, wc_index_file *rec, int *reused, wc_error *err) {
    uint64_t h = XXH3_64bits(real_path, strlen(real_path));
    MDB_val fkey = {sizeof h, &h}, val;
    MDB_txn *txn;
    int rc = mdb_txn_begin(ix->env, NULL, MDB_RDONLY, &txn);
    if (rc) return ix_fail(err, rc, real_path);
    wc_index_file old;
    int have = mdb_get(txn, ix->files, &fkey, &val) == 0 && val.mv_size == sizeof old;
    if (have) memcpy(&old, val.mv_data, sizeof old);
    mdb_txn_abort(txn);
    if (have && old.version == WC_INDEX_VERSION && old.container_size == sum->file_size &&
        old.mtime_ns == mtime_ns && old.tables_checksum == sum->tables_checksum) {
        *rec = old;
        *reused = 1;
        return WC_OK;
    }

    wc_container *c;
    wc_status st = wc_container_open(real_path, &c, err);
    if (st != WC_OK) return st;
    if ((rc = mdb_txn_begin(ix->env, NULL, 0, &txn))) {
        wc_container_close(c);
        return ix_fail(err, rc, real_path);
    }
    wc_index_file r = {.version = WC_INDEX_VERSION,
                       .container_size = sum->file_size,
                       .mtime_ns = mtime_ns,
                       .tables_checksum = wc_container_tables_checksum(c),
                       .source_size = wc_container_source_size(c),
                       .tile_count = wc_container_tile_count(c)};
    if (have) {
        r.file_id = old.file_id;
        rc = delete_tiles(txn, ix->tiles, old.file_id);
    } else {
        rc = next_file_id(txn, ix->meta, &r.file_id);
    }
    for (uint32_t i = 0; !rc && i < r.tile_count; i++) {
        uint8_t k[12];
        tile_key(k, r.file_id, wc_container_tile(c, i)->src_offset);
        MDB_val key = {sizeof k, k}, v = {sizeof i, &i};
        rc = mdb_put(txn, ix->tiles, &key, &v, 0);
    }
    if (!rc) {
        val = (MDB_val){sizeof r, &r};
        rc = mdb_put(txn, ix->files, &fkey, &val, 0);
    }
    wc_container_close(c);
    if (rc || (rc = mdb_txn_commit(txn))) {
        if (rc) mdb_txn_abort(txn);
        return ix_fail(err, rc, real_path);
    }
    *rec = r;
    *reused = 0;
    return WC_OK;
}

wc_status wc_index_find_tile(wc_index *ix, uint32_t file_id, uint64_t offset, uint32_t *tile,
                             wc_error *err) {
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = mdb_txn_begin(ix->env, NULL, MDB_RDONLY, &txn);
    if (rc) return ix_fail(err, rc, "lookup");
    if ((rc = mdb_cursor_open(txn, ix->tiles, &cur))) {
        mdb_txn_abort(txn);
        return ix_fail(err, rc, "lookup");
    }
    uint8_t k[12];
    tile_key(k, file_id, offset);
    MDB_val key = {sizeof k, k}, val;
    /* the greatest key <= (file_id, offset): the first key >= it, or the one before */
    rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
    if (rc == 0 && !(key.mv_size == 12 && memcmp(key.mv_data, k, 12) == 0))
        rc = mdb_cursor_get(cur, &key, &val, MDB_PREV);
    else if (rc == MDB_NOTFOUND)
        rc = mdb_cursor_get(cur, &key, &val, MDB_LAST);
    wc_status st = WC_OK;
    if (rc || key.mv_size != 12 || memcmp(key.mv_data, k, 4) != 0 || val.mv_size != 4)
        st = wc_error_set(err, WC_ERR_FORMAT, "index: no tile for file %u offset %llu", file_id,
                     (unsigned long long)offset);
    else
        memcpy(tile, val.mv_data, 4);
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return st;
}
