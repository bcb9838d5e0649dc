/* decode_file.c - whole-container decode: to a file (decode) or against a file (verify).
 *
 * One loop serves all three (a file, a stream, a comparison): chunks in order, each decoded
 * and checked tile by tile, then handed to a sink; the whole-source checksum is checked at the end.
 */
#include <errno.h>
#include <string.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/wc_internal.h"

/* Where decoded bytes go: [off, off + len) of the source. */
typedef wc_status (*chunk_sink)(void *arg, uint64_t off, const uint8_t *bytes, size_t len,
                                wc_error *err);

/* Decoded a chunk at a time: each chunk by opts->threads threads (tiles in parallel, every
 * tile's checksum checked), then hashed in order for the whole-source checksum and handed on.
 * A chunk is TILES_PER_THREAD tiles a thread: small enough to stay in the caches while it is
 * hashed and written (64 MiB chunks went through DRAM three times and held 71 MB resident to decode
 * a 112 MB file), large enough that every thread has tiles to balance. Memory does not grow with
 * the file. */
#define TILES_PER_THREAD 4u
#define MAX_CHUNK (64u << 20)

static wc_status decode_all(const wc_container *c, const wc_decode_opts *opts, chunk_sink sink,
                            void *arg, wc_error *err) {
    unsigned threads = wc_read_threads(c, opts->threads); /* as read_range_mt will use */
    uint64_t chunk = (uint64_t)threads * TILES_PER_THREAD * c->tile_size;
    if (chunk > MAX_CHUNK) chunk = MAX_CHUNK;
    size_t cap = c->source_size < chunk ? (size_t)c->source_size : (size_t)chunk;
    uint8_t *buf = malloc(cap ? cap : 1);
    wc_hasher *h = wc_hasher_new();
    wc_status st = WC_OK;
    if (!buf || !h) st = wc_error_set(err, WC_ERR_NOMEM, "%s: out of memory", c->name);
    if (c->n_tiles) wc_container_advise(c, 0, c->n_tiles - 1); /* all of it: a remote source fetches ahead */
    for (uint64_t pos = 0; st == WC_OK && pos < c->source_size;) {
        if (opts->cancel && *opts->cancel) {
            st = wc_error_set(err, WC_ERR_CANCELLED, "%s: cancelled", c->name);
            break;
        }
        size_t len = c->source_size - pos < cap ? (size_t)(c->source_size - pos) : cap;
        if (pos + len < c->source_size) { /* end at a tile's start: no tile decoded (or fetched) twice */
            const wc_tile_info *t = &c->tiles[wc_container_find_tile(c, pos + len)];
            if (t->src_offset > pos) len = (size_t)(t->src_offset - pos);
        }
        if ((st = wc_container_read_range_mt(c, pos, len, buf, opts->threads, err)) != WC_OK) break;
        wc_hasher_update(h, buf, len);
        if ((st = sink(arg, pos, buf, len, err)) != WC_OK) break;
        pos += len;
        if (opts->progress) opts->progress(opts->progress_arg, pos, c->source_size);
    }
    if (st == WC_OK && wc_hasher_digest(h) != c->source_checksum)
        st = wc_error_set(err, WC_ERR_CHECKSUM, "%s: whole-source checksum mismatch", c->name);
    if (h) wc_hasher_free(h);
    free(buf);
    return st;
}

static wc_status sink_write(void *arg, uint64_t off, const uint8_t *bytes, size_t len, wc_error *err) {
    return wc_out_pwrite(arg, bytes, len, off, err);
}

typedef struct {
    int fd;
    const char *name;
} stream_arg;

static wc_status sink_stream(void *arg, uint64_t off, const uint8_t *bytes, size_t len, wc_error *err) {
    (void)off; /* chunks come in order */
    const stream_arg *sa = arg;
    for (size_t done = 0; done < len;) {
        ssize_t n = write(sa->fd, bytes + done, len - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return wc_error_set(err, WC_ERR_IO, "%s: writing the output: %s", sa->name, strerror(errno));
        done += (size_t)n;
    }
    return WC_OK;
}

typedef struct {
    const char *path;
    const uint8_t *map;
} compare_arg;

static wc_status sink_compare(void *arg, uint64_t off, const uint8_t *bytes, size_t len, wc_error *err) {
    const compare_arg *ca = arg;
    if (memcmp(ca->map + off, bytes, len) == 0) return WC_OK;
    size_t k = 0;
    while (ca->map[off + k] == bytes[k]) k++;
    return wc_error_set(err, WC_ERR_MISMATCH, "%s: differs from the container at byte %llu", ca->path,
                   (unsigned long long)(off + k));
}

static wc_status sink_none(void *arg, uint64_t off, const uint8_t *bytes, size_t len, wc_error *err) {
    (void)arg, (void)off, (void)bytes, (void)len, (void)err;
    return WC_OK;
}

static const wc_decode_opts defaults = {0};

wc_status wc_decode_file(const char *src, const char *dst, const wc_decode_opts *opts,
                         wc_error *err) {
    if (!opts) opts = &defaults;
    wc_container *c;
    wc_status st = wc_container_open(src, &c, err);
    if (st != WC_OK) return st;
    wc_outfile o;
    /* the copy gets the container's mode and mtime (a URL's Last-Modified; now where none) */
    const wc_source *s = c->src;
    struct timespec mtime = s->mtime.tv_sec ? s->mtime : (struct timespec){0, UTIME_OMIT};
    if ((st = wc_out_open(&o, dst, opts->overwrite, err)) == WC_OK) {
        if (ftruncate(o.fd, (off_t)c->source_size) != 0)
            st = wc_error_set(err, WC_ERR_IO, "%s: %s", dst, strerror(errno));
        if (st == WC_OK) st = decode_all(c, opts, sink_write, &o, err);
        if (st == WC_OK) st = wc_out_commit(&o, s->mode ? s->mode : 0644, &mtime, err);
        else wc_out_abort(&o);
    }
    wc_container_close(c);
    return st;
}

wc_status wc_decode_fd(const char *src, int fd, const wc_decode_opts *opts, wc_error *err) {
    wc_container *c;
    wc_status st = wc_container_open(src, &c, err);
    if (st != WC_OK) return st;
    stream_arg sa = {fd, src};
    st = decode_all(c, opts ? opts : &defaults, sink_stream, &sa, err);
    wc_container_close(c);
    return st;
}

wc_status wc_verify_file(const char *container, const char *original, const wc_decode_opts *opts,
                         wc_error *err) {
    if (!opts) opts = &defaults;
    wc_container *c;
    wc_status st = wc_container_open(container, &c, err);
    if (st != WC_OK) return st;
    if (!original) {
        st = decode_all(c, opts, sink_none, NULL, err);
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
        st = decode_all(c, opts, sink_compare, &ca, err);
    }
    if (map != MAP_FAILED) munmap(map, (size_t)sb.st_size);
    if (fd >= 0) close(fd);
    wc_container_close(c);
    return st;
}
