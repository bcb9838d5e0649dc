/* readahead.c - the mount's kernel read-ahead window (its bdi's read_ahead_kb).
 *
 * FUSE reads that go through the page cache come in requests no larger than the kernel's
 * read-ahead window, 128 KiB by default: far too small to keep the decoders and the FUSE
 * channel busy. The INIT reply can only lower that window, so it is raised the one way there
 * is: writing /sys/class/bdi/MAJ:MIN/read_ahead_kb (root only), after the kernel has taken our
 * INIT reply, which would lower it again. wcfs_readahead_check() finds the file and checks that
 * it can be written while stderr still reaches the user; wcfs_readahead_start() then writes
 * it from a thread whose stat() of the mount point returns once INIT is done.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "wcfs.h"

/* mountinfo escapes space, tab, newline and backslash as \ooo */
static int same_mount_point(const char *escaped, const char *path) {
    for (; *escaped; path++) {
        int c = (unsigned char)*escaped++;
        if (c == '\\' && escaped[0] >= '0' && escaped[0] <= '3' && escaped[1] && escaped[2]) {
            c = (escaped[0] - '0') << 6 | (escaped[1] - '0') << 3 | (escaped[2] - '0');
            escaped += 3;
        }
        if (c != (unsigned char)*path) return 0;
    }
    return *path == 0;
}

int wcfs_readahead_check(const char *mnt, char *bdi_path, size_t len) {
    char *real = realpath(mnt, NULL);
    FILE *mi = fopen("/proc/self/mountinfo", "r");
    char line[4096], point[4096];
    unsigned maj, min, found = 0;
    while (real && mi && fgets(line, sizeof line, mi)) {
        unsigned a, b;
        if (sscanf(line, "%*u %*u %u:%u %*s %4095s", &a, &b, point) == 3 && same_mount_point(point, real)) {
            maj = a, min = b, found = 1; /* the last line is the topmost mount */
        }
    }
    if (mi) fclose(mi);
    free(real);
    int rc = -1;
    if (!found) {
        wcfs_log("kernel_readahead not set: %s not found in /proc/self/mountinfo", mnt);
    } else {
        snprintf(bdi_path, len, "/sys/class/bdi/%u:%u/read_ahead_kb", maj, min);
        FILE *f = fopen(bdi_path, "r+");
        if (f) fclose(f), rc = 0;
        else wcfs_log("kernel_readahead not set: %s: %s (needs root); the kernel reads ahead its "
                      "default 128 KiB", bdi_path, strerror(errno));
    }
    return rc;
}

typedef struct {
    char *mnt, *bdi_path;
    uint64_t bytes;
} job;

static void *set_readahead(void *arg) {
    job *j = arg;
    struct stat sb;
    if (stat(j->mnt, &sb) == 0) { /* INIT is done */
        FILE *f = fopen(j->bdi_path, "w");
        int ok = f && fprintf(f, "%llu\n", (unsigned long long)(j->bytes >> 10)) > 0;
        if (f && fclose(f) != 0) ok = 0;
        if (!ok) wcfs_log("kernel_readahead not set: %s: %s", j->bdi_path, strerror(errno));
    }
    free(j->mnt);
    free(j->bdi_path);
    free(j);
    return NULL;
}

void wcfs_readahead_start(const char *mnt, const char *bdi_path, uint64_t bytes) {
    job *j = calloc(1, sizeof *j);
    pthread_t t;
    if (j && (j->mnt = strdup(mnt)) && (j->bdi_path = strdup(bdi_path))) {
        j->bytes = bytes;
        if (pthread_create(&t, NULL, set_readahead, j) == 0) {
            pthread_detach(t);
            return;
        }
    }
    if (j) free(j->mnt), free(j->bdi_path);
    free(j);
}
