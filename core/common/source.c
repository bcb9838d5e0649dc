/* source.c - the local file as a source (pread from any thread), and the choice between a file
 * and a URL for wc_source_open (the URL opener lives in net/, registered at run time, so that
 * core links no network code). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "wcodec.h"

typedef struct {
    wc_source s;
    int fd;
} file_source;

wc_status wc_source_check_range(const wc_source *s, uint64_t off, size_t len, wc_error *err) {
    if (off <= s->size && len <= s->size - off) return WC_OK;
    return wc_error_set(err, WC_ERR_FORMAT, "%s: bytes %llu..%llu are past its end (%llu bytes)", s->name,
                        (unsigned long long)off, (unsigned long long)(off + len), (unsigned long long)s->size);
}

static wc_status file_read_at(wc_source *s, uint64_t off, size_t len, void *buf, wc_error *err) {
    file_source *f = (file_source *)s;
    wc_status st = wc_source_check_range(s, off, len, err);
    if (st != WC_OK) return st;
    for (size_t pos = 0; pos < len;) {
        ssize_t r = pread(f->fd, (uint8_t *)buf + pos, len - pos, (off_t)(off + pos));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
            return wc_error_set(err, WC_ERR_IO, "%s: %s", s->name, r ? strerror(errno) : "unexpected end of file");
        pos += (size_t)r;
    }
    return WC_OK;
}

static void file_close(wc_source *s) {
    close(((file_source *)s)->fd);
    free(s);
}

static const wc_source_ops file_ops = {file_read_at, file_close, NULL, NULL};

wc_status wc_source_open_file(const char *path, wc_source **out, wc_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        wc_status st = wc_error_set(err, WC_ERR_IO, "%s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return st;
    }
    file_source *f = calloc(1, sizeof *f);
    if (!f) {
        close(fd);
        return wc_error_set(err, WC_ERR_NOMEM, "%s: out of memory", path);
    }
    f->fd = fd;
    f->s.ops = &file_ops;
    f->s.size = (uint64_t)sb.st_size;
    f->s.mode = sb.st_mode & 07777;
    f->s.mtime = sb.st_mtim;
    snprintf(f->s.name, sizeof f->s.name, "%s", path);
    snprintf(f->s.identity, sizeof f->s.identity, "file:%llu:%llu:%llu:%lld.%09ld", (unsigned long long)sb.st_dev,
             (unsigned long long)sb.st_ino, (unsigned long long)sb.st_size, (long long)sb.st_mtim.tv_sec,
             sb.st_mtim.tv_nsec);
    *out = &f->s;
    return WC_OK;
}

static _Atomic(wc_url_opener) url_opener;

void wc_source_set_url_opener(wc_url_opener opener) { atomic_store(&url_opener, opener); }

int wc_source_is_url(const char *name) {
    return !strncmp(name, "http://", 7) || !strncmp(name, "https://", 8) || !strncmp(name, "s3://", 5);
}

wc_status wc_source_open(const char *name, wc_source **out, wc_error *err) {
    if (!wc_source_is_url(name)) return wc_source_open_file(name, out, err);
    wc_url_opener open_url = atomic_load(&url_opener);
    if (!open_url)
        return wc_error_set(err, WC_ERR_ARG, "%.200s: this program reads no URLs (built without the net module)", name);
    return open_url(name, out, err);
}
