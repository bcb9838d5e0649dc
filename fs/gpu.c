/* gpu.c - the GPU backend of the read path: batches of tiles through the CUDA decoder.
 * Without CUDA in the build, every entry point says so and the daemon decodes on the CPU. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "wcfs.h"

#ifdef WC_HAVE_GPU
#include "wcgpu.h"

static wcgpu *gpu;

int wcfs_gpu_open(char *msg, size_t len) {
    wc_error err = {0};
    if (wcgpu_open(-1, &gpu, &err) == WC_OK) {
        snprintf(msg, len, "%s", wcgpu_device_name(gpu));
        return 0;
    }
    snprintf(msg, len, "%s", err.msg);
    return -1;
}

void wcfs_gpu_close(void) {
    wcgpu_close(gpu);
    gpu = NULL;
}

/* CUDA must not be initialized before fork(): the mount-time check runs in a child. */
int wcfs_gpu_probe(char *msg, size_t len) {
    int pfd[2];
    if (pipe(pfd) != 0) return snprintf(msg, len, "pipe: %s", strerror(errno)), -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(pfd[0]);
        char m[512];
        int rc = wcfs_gpu_open(m, sizeof m);
        if (write(pfd[1], m, strlen(m)) < 0) rc = -1;
        _exit(rc ? 1 : 0);
    }
    close(pfd[1]);
    ssize_t n = pid > 0 ? read(pfd[0], msg, len - 1) : -1;
    msg[n > 0 ? n : 0] = 0;
    close(pfd[0]);
    int status = 1;
    if (pid > 0) waitpid(pid, &status, 0);
    return pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

void wcfs_gpu_decode(wcfs *fs, wcfs_decode_req *reqs, size_t n) {
    /* one call per container: requests arrive grouped by file */
    for (size_t at = 0; at < n;) {
        size_t m = 1;
        while (at + m < n && reqs[at + m].f == reqs[at].f) m++;
        wc_container *c = reqs[at].f->c;
        uint32_t *tiles = malloc(m * sizeof *tiles);
        const uint8_t **payloads = calloc(m, sizeof *payloads);
        uint8_t **outs = malloc(m * sizeof *outs), *bad = calloc(m, 1);
        int ok = tiles && payloads && outs && bad;
        for (size_t k = 0; ok && k < m; k++) {
            wcfs_decode_req *r = &reqs[at + k];
            tiles[k] = r->tile;
            outs[k] = r->out;
            uint8_t *p = malloc(wc_container_tile(c, r->tile)->coded_size + 1);
            payloads[k] = p;
            if (!p || wcfs_file_read_payload(r->f, r->tile, p, NULL) != WC_OK) bad[k] = 2;
        }
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        wc_error err = {0};
        wc_status st = ok ? wcgpu_decode_tiles_to_host(gpu, c, tiles, m, payloads, outs, bad, &err)
                          : WC_ERR_NOMEM;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        atomic_fetch_add(&fs->stats.decode_ns_gpu,
                         (uint64_t)((t1.tv_sec - t0.tv_sec) * 1000000000 + (t1.tv_nsec - t0.tv_nsec)));
        atomic_fetch_add(&fs->stats.tiles_decoded_gpu, m);
        for (size_t k = 0; k < m; k++) {
            /* a failed call that is not about particular tiles fails them all */
            int good = ok && !bad[k] && (st == WC_OK || st == WC_ERR_CHECKSUM || st == WC_ERR_FORMAT);
            reqs[at + k].ok = good;
            if (!good)
                wcfs_log("%s: tile %u: %s", reqs[at].f->real, tiles ? tiles[k] : 0,
                         bad && bad[k] ? "checksum or payload error on the GPU" : err.msg);
            free(payloads ? (void *)payloads[k] : NULL);
        }
        free(tiles);
        free(payloads);
        free(outs);
        free(bad);
        at += m;
    }
}
#else
static const char no_gpu[] = "this build has no GPU backend (CUDA was not found at build time)";
int wcfs_gpu_open(char *msg, size_t len) { return snprintf(msg, len, "%s", no_gpu), -1; }
int wcfs_gpu_probe(char *msg, size_t len) { return snprintf(msg, len, "%s", no_gpu), -1; }
void wcfs_gpu_close(void) {}
void wcfs_gpu_decode(wcfs *fs, wcfs_decode_req *reqs, size_t n) {
    (void)fs;
    for (size_t k = 0; k < n; k++) reqs[k].ok = 0;
}
#endif
