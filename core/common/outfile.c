/* outfile.c - atomic output: temp file beside the destination, fsync, rename. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "wc_internal.h"

wc_status wc_out_open(wc_outfile *o, const char *dst, int overwrite, wc_error *err) {
    memset(o, 0, sizeof *o);
    o->fd = -1;
    struct stat sb;
    if (!overwrite && lstat(dst, &sb) == 0)
        return wc_error_set(err, WC_ERR_EXISTS, "%s: already exists (use -f to overwrite)", dst);
    char *d = strdup(dst), *b = strdup(dst);
    if (!d || !b) goto nomem;
    size_t len = strlen(dst) + 32;
    o->tmp = malloc(len);
    o->dst = strdup(dst);
    if (!o->tmp || !o->dst) goto nomem;
    /* A dot-name so that directory listings and globs of *.wcodec skip it. */
    snprintf(o->tmp, len, "%s/.%s.tmp.XXXXXX", dirname(d), basename(b));
    free(d);
    free(b);
    o->fd = mkostemp(o->tmp, O_CLOEXEC);
    o->overwrite = overwrite;
    if (o->fd < 0) {
        wc_status st = wc_error_set(err, WC_ERR_IO, "%s: cannot create a temporary file: %s", dst,
                               strerror(errno));
        free(o->tmp);
        free(o->dst);
        o->tmp = o->dst = NULL;
        return st;
    }
    return WC_OK;
nomem:
    free(d);
    free(b);
    free(o->tmp);
    free(o->dst);
    o->tmp = o->dst = NULL;
    return wc_error_set(err, WC_ERR_NOMEM, "%s: out of memory", dst);
}

wc_status wc_out_pwrite(wc_outfile *o, const void *buf, size_t len, uint64_t off, wc_error *err) {
    const uint8_t *p = buf;
    while (len) {
        ssize_t w = pwrite(o->fd, p, len, (off_t)off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0)
            return wc_error_set(err, WC_ERR_IO, "%s: write failed: %s", o->dst,
                           w < 0 ? strerror(errno) : "no progress");
        p += w;
        len -= (size_t)w;
        off += (uint64_t)w;
    }
    return WC_OK;
}

wc_status wc_out_commit(wc_outfile *o, unsigned mode, const struct timespec *mtime, wc_error *err) {
    wc_status st = WC_OK;
    struct timespec times[2] = {{0, UTIME_OMIT}, *mtime};
    if (fchmod(o->fd, mode & 07777) != 0 || futimens(o->fd, times) != 0 || fsync(o->fd) != 0) {
        st = wc_error_set(err, WC_ERR_IO, "%s: %s", o->dst, strerror(errno));
    } else if (close(o->fd) != 0) {
        o->fd = -1;
        st = wc_error_set(err, WC_ERR_IO, "%s: %s", o->dst, strerror(errno));
    } else {
        o->fd = -1;
        int r = o->overwrite ? rename(o->tmp, o->dst)
                             : renameat2(AT_FDCWD, o->tmp, AT_FDCWD, o->dst, RENAME_NOREPLACE);
        if (r != 0)
            st = wc_error_set(err, errno == EEXIST ? WC_ERR_EXISTS : WC_ERR_IO, "%s: %s", o->dst,
                         strerror(errno));
    }
    if (st != WC_OK) {
        wc_out_abort(o);
        return st;
    }
    free(o->tmp);
    free(o->dst);
    o->tmp = o->dst = NULL;
    return WC_OK;
}

void wc_out_abort(wc_outfile *o) {
    if (o->fd >= 0) close(o->fd);
    o->fd = -1;
    if (o->tmp) unlink(o->tmp);
    free(o->tmp);
    free(o->dst);
    o->tmp = o->dst = NULL;
}
