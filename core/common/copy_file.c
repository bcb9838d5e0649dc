/* copy_file.c - plain files beside the containers (config.json, ...): copied atomically. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "wc_internal.h"

wc_status wc_copy_file(const char *src, const char *dst, int overwrite, wc_error *err) {
    int fd = open(src, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return wc_error_set(err, WC_ERR_IO, "%s: %s", src, strerror(errno));
    struct stat sb;
    wc_outfile o;
    wc_status st = WC_OK;
    if (fstat(fd, &sb) != 0) {
        st = wc_error_set(err, WC_ERR_IO, "%s: %s", src, strerror(errno));
    } else if ((st = wc_out_open(&o, dst, overwrite, err)) == WC_OK) {
        static const size_t chunk = 1 << 20;
        uint8_t *buf = malloc(chunk);
        uint64_t off = 0;
        if (!buf) st = wc_error_set(err, WC_ERR_NOMEM, "%s: out of memory", src);
        while (st == WC_OK) {
            ssize_t r = read(fd, buf, chunk);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) st = wc_error_set(err, WC_ERR_IO, "%s: %s", src, strerror(errno));
            if (r <= 0) break;
            st = wc_out_pwrite(&o, buf, (size_t)r, off, err);
            off += (uint64_t)r;
        }
        free(buf);
        if (st == WC_OK) st = wc_out_commit(&o, sb.st_mode, &sb.st_mtim, err);
        else wc_out_abort(&o);
    }
    close(fd);
    return st;
}
