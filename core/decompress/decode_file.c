/* decode_file.c - whole-container decode: to a file (decode) or against a file (verify).
 *
 * One loop serves both: tiles in order, each read, decoded and checked, then handed to a sink;
 * the whole-source checksum is checked at the end.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/wc_internal.h"

typedef wc_status (*tile_sink)(void *arg, const wc_tile_info *t, const uint8_t *bytes,
                               wc_error *err);

static wc_status decode_all(const wc_container *c, tile_sink sink, void *arg,
                            volatile sig_atomic_t *cancel, wc_error *err) {
    uint8_t *payload = malloc(c->max_coded ? c->max_coded : 1);
    uint8_t *tile = malloc(2 * (size_t)c->tile_size);
    wc_hasher *h = wc_hasher_new();
    wc_status st = WC_OK;
    if (!payload || !tile || !h) st = wc_error_set(err, WC_ERR_NOMEM, "%s: out of memory", c->name);
    for (uint32_t i = 0; st == WC_OK && i < c->n_tiles; i++) {
        if (cancel && *cancel) {
            st = wc_error_set(err, WC_ERR_CANCELLED, "%s: cancelled", c->name);
            break;
        }
        if ((st = wc_container_read_tile(c, i, payload, err)) != WC_OK) break;
        if ((st = wc_tile_decode_cpu(c, i, payload, tile, tile + c->tile_size, err)) != WC_OK)
            break;
        wc_hasher_update(h, tile, c->tiles[i].src_size);
        st = sink(arg, &c->tiles[i], tile, err);
    }
    if (st == WC_OK && wc_hasher_digest(h) != c->source_checksum)
        st = wc_error_set(err, WC_ERR_CHECKSUM, "%s: whole-source checksum mismatch", c->name);
    if (h) wc_hasher_free(h);
    free(payload);
    free(tile);
    return st;
}

static wc_status sink_write(void *arg, const wc_tile_info *t, const uint8_t *bytes, wc_error *err) {
    return wc_out_pwrite(arg, bytes, t->src_size, t->src_offset, err);
}

typedef struct {
    const char *path;
    const uint8_t *map;
} compare_arg;

static wc_status sink_compare(void *arg, const wc_tile_info *t, const uint8_t *bytes,
                              wc_error *err) {
    const compare_arg *ca = arg;
    if (memcmp(ca->map + t->src_offset, bytes, t->src_size) == 0) return WC_OK;
    size_t k = 0;
    while (ca->map[t->src_offset + k] == bytes[k]) k++;
    return wc_error_set(err, WC_ERR_MISMATCH, "%s: differs from the container at byte %llu", ca->path,
                   (unsigned long long)(t->src_offset + k));
}

static wc_status sink_none(void *arg, const wc_tile_info *t, const uint8_t *bytes, wc_error *err) {
    (void)arg, (void)t, (void)bytes, (void)err;
    return WC_OK;
}

wc_status wc_decode_file(const char *src, const char *dst, int overwrite,
                         volatile sig_atomic_t *cancel, wc_error *err) {
    wc_container *c;
    wc_status st = wc_container_open(src, &c, err);
    if (st != WC_OK) return st;
    struct stat sb;
    wc_outfile o;
    if (fstat(c->fd, &sb) != 0) {
        st = wc_error_set(err, WC_ERR_IO, "%s: %s", src, strerror(errno));
    } else if ((st = wc_out_open(&o, dst, overwrite, err)) == WC_OK) {
        if (ftruncate(o.fd, (off_t)c->source_size) != 0)
            st = wc_error_set(err, WC_ERR_IO, "%s: %s", dst, strerror(errno));
        if (st == WC_OK) st = decode_all(c, sink_write, &o, cancel, err);
        if (st == WC_OK) st = wc_out_commit(&o, sb.st_mode, &sb.st_mtim, err);
        else wc_out_abort(&o);
    }
    wc_container_close(c);
    return st;
}

wc_status wc_verify_file(const char *container, const char *original, wc_error *err) {
    wc_container *c;
    wc_status st = wc_container_open(container, &c, err);
    if (st != WC_OK) return st;
    if (!original) {
        st = decode_all(c, sink_none, NULL, NULL, err);
        wc_container_close(c);
        return st;
    }
    int fd = open(original, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    void *map = MAP_FAILED;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        st = wc_error_set(err, WC_ERR_IO, "%s: %s", original, strerror(errno));
    } else if ((uint64_t)sb.st_size != c->source_size) {
        st = wc_error_set(err, WC_ERR_MISMATCH, "%s: %llu bytes, the container holds %llu", original,
                     (unsigned long long)sb.st_size, (unsigned long long)c->source_size);
    } else if (sb.st_size > 0 &&
               (map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0)) == MAP_FAILED) {
        st = wc_error_set(err, WC_ERR_IO, "%s: mmap: %s", original, strerror(errno));
    } else {
        compare_arg ca = {original, map == MAP_FAILED ? NULL : map};
        st = decode_all(c, sink_compare, &ca, NULL, err);
    }
    if (map != MAP_FAILED) munmap(map, (size_t)sb.st_size);
    if (fd >= 0) close(fd);
    wc_container_close(c);
    return st;
}
