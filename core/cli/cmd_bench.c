/* cmd_bench.c - `wcodec bench FILE`: ratio, order-0 bound, encode and decode speed.
 *
 * Decode is timed from memory to memory (payloads preloaded), so it measures the decoder and
 * not the disk. Output is `key: value` lines, read by tests/bench/run.sh. On a container (a
 * .wcodec file, or a URL) there is nothing to encode: it times the read from its source, fetch
 * and decode overlapped, then the decoder alone.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../common/wc_internal.h"
#include "cli.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Bytes an ideal order-0 coder needs for each plane of each tensor (per tensor statistics),
 * plus everything outside tensors at full size: the bound our planes could reach. */
static double order0_bound(const uint8_t *src, const wc_st_file *sf) {
    double bytes = (double)sf->file_size;
    uint8_t *planes = NULL;
    for (size_t i = 0; i < sf->n_tensors; i++) {
        const wc_st_tensor *t = &sf->tensors[i];
        unsigned w = wc_dtype_width(t->dtype);
        uint64_t size = t->end - t->begin;
        if (!w || !size) continue;
        size_t n = (size_t)(size / w);
        uint8_t *p = realloc(planes, (size_t)size);
        if (!p) break;
        planes = p;
        wc_planes_split(t->dtype, src + t->begin, n, planes);
        double coded = 0;
        for (unsigned k = 0; k < w; k++) {
            uint64_t h[256] = {0};
            for (size_t j = 0; j < n; j++) h[planes[k * n + j]]++;
            for (int s = 0; s < 256; s++)
                if (h[s]) coded -= (double)h[s] * log2((double)h[s] / n) / 8;
        }
        bytes -= (double)size - coded;
    }
    free(planes);
    return bytes;
}

typedef struct {
    const wc_container *c;
    const uint8_t *payloads;
    const uint64_t *pos;
    uint8_t *out;
    uint8_t **scratch;
    int failed;
} decode_job;

static void decode_tile_job(void *arg, size_t i, unsigned worker) {
    decode_job *j = arg;
    const wc_tile_info *t = wc_container_tile(j->c, (uint32_t)i);
    if (wc_tile_decode_cpu(j->c, (uint32_t)i, j->payloads + j->pos[i], j->out + t->src_offset,
                           j->scratch[worker], NULL) != WC_OK)
        j->failed = 1;
}

/* Decodes the whole container repeatedly for at least min_s seconds; returns bytes/s. */
static double time_decode(decode_job *j, unsigned threads, double min_s) {
    uint32_t n = wc_container_tile_count(j->c);
    double t0 = now(), t;
    unsigned reps = 0;
    do {
        if (threads <= 1)
            for (uint32_t i = 0; i < n; i++) decode_tile_job(j, i, 0);
        else
            wc_parallel_for(threads, n, decode_tile_job, j);
        reps++;
    } while ((t = now() - t0) < min_s);
    return (double)wc_container_source_size(j->c) * reps / t;
}

/* The lines every bench prints first: sizes, the ratio, the order-0 bound of the source's planes
 * (`src`, its tensors `sf`). */
static void print_sizes(const char *name, const uint8_t *src, const wc_st_file *sf, uint64_t size, uint64_t file) {
    printf("file: %s\nsource_bytes: %llu\ncontainer_bytes: %llu\n", name, (unsigned long long)size,
           (unsigned long long)file);
    printf("ratio: %.4f\nfactor: %.3f\norder0_bound_ratio: %.4f\n", (double)file / size, (double)size / file,
           order0_bound(src, sf) / size);
}

/* Times payloads preloaded from c, one thread then `threads`; prints the decode lines. Returns
 * 0, or 1 with a message if a tile does not decode. */
static int bench_decode(wc_container *ct, uint8_t *out, unsigned threads) {
    uint32_t n = wc_container_tile_count(ct);
    uint8_t *payloads = malloc((size_t)wc_container_file_size(ct));
    uint64_t *pos = malloc((n ? n : 1) * sizeof *pos);
    uint8_t *scratch[64] = {0};
    int ok = payloads && pos;
    for (unsigned w = 0; ok && w < 64; w++) ok = (scratch[w] = malloc(wc_container_tile_size(ct))) != NULL;
    wc_error err = {0};
    int rc = ok ? 0 : cli_fail("out of memory");
    uint64_t at = 0;
    if (n) wc_container_advise(ct, 0, n - 1);
    for (uint32_t i = 0; !rc && i < n; i++) {
        pos[i] = at;
        if (wc_container_read_tile(ct, i, payloads + at, &err) != WC_OK) rc = cli_fail_err(&err);
        at += wc_container_tile(ct, i)->coded_size;
    }
    decode_job job = {ct, payloads, pos, out, scratch, 0};
    if (!rc) {
        double d1 = time_decode(&job, 1, 1.0);
        if (!job.failed) printf("decode_GBps_1thread: %.3f\n", d1 / 1e9);
        if (!job.failed && threads > 1)
            printf("decode_GBps_%uthreads: %.3f\n", threads, time_decode(&job, threads, 1.0) / 1e9);
        if (job.failed) rc = cli_fail("%s: a tile does not decode", wc_container_source(ct)->name);
    }
    for (unsigned w = 0; w < 64; w++) free(scratch[w]);
    free(payloads);
    free(pos);
    return rc;
}

/* `wcodec bench CONTAINER|URL`: what the container's source serves. */
static int bench_container(const char *name, unsigned threads) {
    wc_error err = {0};
    wc_container *ct;
    if (wc_container_open(name, &ct, &err) != WC_OK) return cli_fail_err(&err);
    uint64_t size = wc_container_source_size(ct), file = wc_container_file_size(ct);
    uint8_t *out = malloc(size ? (size_t)size : 1);
    if (!out) {
        wc_container_close(ct);
        return cli_fail("out of memory");
    }
    unsigned read_threads = wc_read_threads(ct, threads);
    double t0 = now();
    wc_status st = wc_container_read_range_mt(ct, 0, (size_t)size, out, read_threads, &err);
    double t_read = now() - t0;
    int rc = 0;
    wc_st_file sf = {0};
    if (st != WC_OK)
        rc = cli_fail_err(&err);
    else if (wc_hash(out, (size_t)size) != wc_container_source_checksum(ct))
        rc = cli_fail("%s: decoded bytes do not match the container's checksum", name);
    else if (wc_st_parse(out, (size_t)size, size, name, &sf, &err) != WC_OK)
        rc = cli_fail_err(&err);
    if (!rc) {
        print_sizes(name, out, &sf, size, file);
        printf("read_GBps_%uthreads: %.3f\n", read_threads, size / t_read / 1e9);
        fflush(stdout);
        rc = bench_decode(ct, out, threads);
    }
    wc_st_free(&sf);
    free(out);
    wc_container_close(ct);
    return rc;
}

/* A container by its name or its first bytes: a URL, or a file that begins with the magic. */
static int is_container(const char *name) {
    if (wc_source_is_url(name)) return 1;
    char magic[8] = {0};
    int fd = open(name, O_RDONLY);
    if (fd < 0) return 0;
    ssize_t got = pread(fd, magic, sizeof magic, 0);
    close(fd);
    return got == (ssize_t)sizeof magic && memcmp(magic, WC_MAGIC, sizeof magic) == 0;
}

int cmd_bench(int argc, char **argv) {
    unsigned threads = 1;
    uint32_t tile_size = 0;
    static const struct option longopts[] = {{"help", no_argument, 0, 'h'},
                                              {"tile-size", required_argument, 0, 't'},
                                              {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "j:h", longopts, NULL)) != -1) {
        uint64_t v;
        if (c == 'h') {
            printf("usage: wcodec bench [-j N] [--tile-size N] FILE.safetensors\n"
                   "       wcodec bench [-j N] CONTAINER.wcodec | URL\n"
                   "\n"
                   "Encodes FILE to a temporary container (on one thread), checks that it\n"
                   "decodes to the same bytes, then prints: sizes, the ratio container/source,\n"
                   "the order-0 entropy bound of the byte planes, encode MB/s, and decode GB/s\n"
                   "on one thread (and on N threads with -j N), memory to memory.\n"
                   "\n"
                   "On a container, a local one or a URL (https://..., s3://bucket/key), it\n"
                   "first reads the whole container from its source into memory (fetch and\n"
                   "decode overlapped, read_GBps: decoded bytes per second), checks the bytes\n"
                   "against the container's checksum, then reads the payloads into memory\n"
                   "(a URL's are fetched again) and times the decoder on them as above.\n"
                   "Nothing is encoded.\n");
            return 0;
        } else if (c == 'j' && !wc_parse_size(optarg, &v) && v >= 1 && v <= 64) {
            threads = (unsigned)v;
        } else if (c == 't' && !wc_parse_size(optarg, &v) && v <= UINT32_MAX) {
            tile_size = (uint32_t)v;
        } else {
            return cli_fail("bad option; see 'wcodec bench --help'");
        }
    }
    if (argc - optind != 1) return cli_fail("bench needs one FILE.safetensors or container; see --help");
    const char *src = argv[optind];
    if (is_container(src)) {
        if (tile_size) return cli_fail("%s: --tile-size is for a .safetensors source; a container keeps its tiles", src);
        return bench_container(src, threads);
    }
    const char *tmpdir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s/wcodec-bench-%d.wcodec", tmpdir, (int)getpid());

    wc_error err = {0};
    wc_encode_opts o = {.tile_size = tile_size, .threads = 1, .overwrite = 1};
    double t0 = now();
    if (wc_encode_file(src, tmp, &o, &err) != WC_OK) return cli_fail_err(&err);
    double t_enc = now() - t0;

    wc_container *ct;
    if (wc_container_open(tmp, &ct, &err) != WC_OK) {
        unlink(tmp);
        return cli_fail_err(&err);
    }
    unlink(tmp); /* the open descriptor keeps it readable */
    int fd = open(src, O_RDONLY);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) return cli_fail("%s: cannot reopen", src);
    uint64_t size = (uint64_t)sb.st_size, file = wc_container_file_size(ct);
    const uint8_t *orig = mmap(NULL, size ? (size_t)size : 1, PROT_READ, MAP_PRIVATE, fd, 0);
    uint8_t *out = malloc(size ? (size_t)size : 1);
    if (orig == MAP_FAILED || !out) return cli_fail("out of memory");
    if (wc_container_read_range(ct, 0, (size_t)size, out, &err) != WC_OK || memcmp(out, orig, (size_t)size) != 0)
        return cli_fail("%s: decoded bytes differ from the source: not benchmarking", src);

    wc_st_file sf = {0};
    if (wc_st_parse(orig, (size_t)size, size, src, &sf, &err) != WC_OK) return cli_fail_err(&err);
    print_sizes(src, orig, &sf, size, file);
    printf("encode_MBps_1thread: %.1f\n", size / t_enc / 1e6);
    fflush(stdout);
    int rc = bench_decode(ct, out, threads);
    wc_st_free(&sf);
    free(out);
    munmap((void *)orig, size ? (size_t)size : 1);
    close(fd);
    wc_container_close(ct);
    return rc;
}
