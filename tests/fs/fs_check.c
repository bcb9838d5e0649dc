/* fs_check.c - what a reader of the mount relies on, checked against the original file.
 *   fs_check random ORIG FILE THREADS READS   concurrent random preads, compared
 *   fs_check mmap ORIG FILE READS             mmap of FILE, random pages compared
 *   fs_check direct FILE OFFSET LEN           one O_DIRECT read of a range (no kernel readahead)
 *   fs_check randread FILE BLOCK SECONDS THREADS   random O_DIRECT reads of BLOCK bytes for
 *                                             SECONDS (benchmarks): prints reads per second
 *   fs_check soak ORIG FILE THREADS SECONDS SEED   random ranges for SECONDS, odd threads (all
 *                                             with FS_CHECK_ALL_DIRECT set) with O_DIRECT; a
 *                                             thread stops when the mount is gone: prints
 *                                             reads, bytes, mismatches
 *   fs_check ranges ORIG FILE CHUNK           every CHUNK-sized range with O_DIRECT: prints the
 *                                             ranges that fail (and how), checks the others
 * Exit 0 when everything read matched. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static uint8_t *orig;
static size_t orig_len;
static const char *file;
static long reads_per_thread;
static int mismatches;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static uint8_t *load(const char *path, size_t *n) {
    int fd = open(path, O_RDONLY);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) return NULL;
    uint8_t *p = malloc((size_t)sb.st_size + 1);
    size_t got = 0;
    while (got < (size_t)sb.st_size) {
        ssize_t r = read(fd, p + got, (size_t)sb.st_size - got);
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    *n = got;
    return p;
}

static uint64_t rng(uint64_t *s) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}

/* random and soak: random ranges (a quarter up to 4 MiB, the rest up to 64 KiB), compared. A
 * soak runs until its deadline from a seed of its own, odd threads with O_DIRECT (past the
 * kernel's page cache, so that the daemon serves them). */
static uint64_t soak_seed;
static double soak_deadline;
static atomic_long reads_done, bytes_done;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *random_reader(void *arg) {
    uintptr_t i = (uintptr_t)arg;
    uint64_t s = (i + soak_seed * 1000) * 0x9E3779B97F4A7C15ull + 1;
    int direct = soak_deadline > 0 && (i % 2 || getenv("FS_CHECK_ALL_DIRECT"));
    int fd = open(file, O_RDONLY | (direct ? O_DIRECT : 0));
    uint8_t *buf = malloc(4 << 20);
    for (long k = 0; fd >= 0 && (soak_deadline > 0 ? now_s() < soak_deadline : k < reads_per_thread); k++) {
        size_t off = rng(&s) % orig_len;
        size_t len = (rng(&s) % 4 == 0) ? rng(&s) % (4 << 20) : rng(&s) % 65536 + 1;
        if (len > orig_len - off) len = orig_len - off;
        ssize_t r = pread(fd, buf, len, (off_t)off);
        if (r < 0 && soak_deadline > 0 && (errno == ENOTCONN || errno == ENODEV || errno == ECONNABORTED)) {
            mismatches++; /* the mount is gone: counted once, and this reader stops */
            break;
        }
        atomic_fetch_add(&reads_done, 1);
        if (r > 0) atomic_fetch_add(&bytes_done, r);
        if (r != (ssize_t)len || memcmp(buf, orig + off, len) != 0) {
            pthread_mutex_lock(&lock);
            if (mismatches++ < 5)
                fprintf(stderr, "mismatch: pread(%zu, %zu)%s = %zd (%s)\n", off, len, direct ? " O_DIRECT" : "",
                        r, r < 0 ? strerror(errno) : "bytes differ");
            pthread_mutex_unlock(&lock);
        }
    }
    if (fd < 0) mismatches++;
    free(buf);
    if (fd >= 0) close(fd);
    return NULL;
}

static size_t randread_bs;
static double randread_secs;
static atomic_long randread_ops;

static void *randread_worker(void *arg) {
    uint64_t s = (uintptr_t)arg * 0x9E3779B97F4A7C15ull + 1;
    int fd = open(file, O_RDONLY | O_DIRECT); /* every read reaches the filesystem */
    uint8_t *buf = NULL;
    if (posix_memalign((void **)&buf, 4096, randread_bs)) return NULL;
    double end = now_s() + randread_secs;
    while (fd >= 0 && now_s() < end) {
        size_t off = (rng(&s) % (orig_len / randread_bs)) * randread_bs;
        if (pread(fd, buf, randread_bs, (off_t)off) != (ssize_t)randread_bs) {
            mismatches++;
            break;
        }
        atomic_fetch_add(&randread_ops, 1);
    }
    free(buf);
    if (fd >= 0) close(fd);
    return NULL;
}

static int direct_read(int fd, uint8_t *buf, size_t len, off_t off) {
    size_t done = 0;
    while (done < len) {
        ssize_t r = pread(fd, buf + done, len - done, off + (off_t)done);
        if (r < 0) return -errno;
        if (r == 0) break;
        done += (size_t)r;
    }
    return (int)done;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *mode = argv[1];
    if (!strcmp(mode, "direct") && argc == 5) {
        int fd = open(argv[2], O_RDONLY | O_DIRECT);
        size_t len = strtoull(argv[4], 0, 10);
        uint8_t *buf;
        if (fd < 0 || posix_memalign((void **)&buf, 4096, len + 4096)) return perror("direct"), 1;
        int r = direct_read(fd, buf, len, (off_t)strtoull(argv[3], 0, 10));
        free(buf);
        close(fd);
        if (r != (int)len) return fprintf(stderr, "direct read: %d\n", r), 1;
        return 0;
    }
    if (!strcmp(mode, "randread") && argc == 6) {
        file = argv[2];
        size_t bs = strtoull(argv[3], 0, 10);
        double secs = atof(argv[4]);
        int threads = atoi(argv[5]);
        struct stat sb;
        if (stat(file, &sb) != 0) return perror(file), 1;
        orig_len = (size_t)sb.st_size;
        randread_bs = bs;
        randread_secs = secs;
        pthread_t t[64];
        for (int i = 0; i < threads && i < 64; i++) pthread_create(&t[i], NULL, randread_worker, (void *)(uintptr_t)(i + 1));
        for (int i = 0; i < threads && i < 64; i++) pthread_join(t[i], NULL);
        printf("randread: %.0f reads/s, %.1f MB/s\n", randread_ops / secs, randread_ops * bs / secs / 1e6);
        return mismatches != 0;
    }
    if (argc < 5) return 2;
    orig = load(argv[2], &orig_len);
    file = argv[3];
    if (!orig) return perror(argv[2]), 1;
    if (!strcmp(mode, "random") && argc == 6) {
        int threads = atoi(argv[4]);
        reads_per_thread = atol(argv[5]);
        pthread_t t[64];
        for (int i = 0; i < threads && i < 64; i++) pthread_create(&t[i], NULL, random_reader, (void *)(uintptr_t)(i + 1));
        for (int i = 0; i < threads && i < 64; i++) pthread_join(t[i], NULL);
        printf("%d threads x %ld random reads: %d mismatches\n", threads, reads_per_thread, mismatches);
        free(orig);
        return mismatches != 0;
    }
    if (!strcmp(mode, "soak") && argc == 7) {
        int threads = atoi(argv[4]);
        soak_deadline = now_s() + atof(argv[5]);
        soak_seed = strtoull(argv[6], 0, 10);
        pthread_t t[64];
        for (int i = 0; i < threads && i < 64; i++) pthread_create(&t[i], NULL, random_reader, (void *)(uintptr_t)(i + 1));
        for (int i = 0; i < threads && i < 64; i++) pthread_join(t[i], NULL);
        printf("soak: %ld reads, %ld bytes, %d mismatches\n", (long)reads_done, (long)bytes_done, mismatches);
        free(orig);
        return mismatches != 0;
    }
    if (!strcmp(mode, "mmap")) {
        int fd = open(file, O_RDONLY);
        struct stat sb;
        if (fd < 0 || fstat(fd, &sb) != 0 || (size_t)sb.st_size != orig_len) return fprintf(stderr, "size differs\n"), 1;
        const uint8_t *m = mmap(NULL, orig_len, PROT_READ, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED) return perror("mmap"), 1;
        uint64_t s = 7;
        long n = atol(argv[4]);
        for (long k = 0; k < n; k++) {
            size_t off = rng(&s) % orig_len, len = 4096;
            if (len > orig_len - off) len = orig_len - off;
            if (memcmp(m + off, orig + off, len)) mismatches++;
        }
        mismatches += memcmp(m, orig, orig_len) != 0; /* and the whole of it */
        printf("mmap: %ld random pages + whole file: %d mismatches\n", n, mismatches);
        munmap((void *)m, orig_len);
        close(fd);
        free(orig);
        return mismatches != 0;
    }
    if (!strcmp(mode, "ranges")) {
        size_t chunk = strtoull(argv[4], 0, 10);
        int fd = open(file, O_RDONLY | O_DIRECT);
        uint8_t *buf;
        if (fd < 0 || posix_memalign((void **)&buf, 4096, chunk)) return perror("ranges"), 1;
        int bad = 0;
        for (size_t off = 0; off < orig_len; off += chunk) {
            size_t len = orig_len - off < chunk ? orig_len - off : chunk;
            int r = direct_read(fd, buf, len, (off_t)off);
            if (r < 0) {
                printf("fail %zu %zu %s\n", off, len, strerror(-r));
                bad++;
            } else if ((size_t)r != len || memcmp(buf, orig + off, len)) {
                printf("WRONG %zu %zu\n", off, len);
                mismatches++;
            }
        }
        printf("ranges: %d failed, %d wrong\n", bad, mismatches);
        free(buf);
        free(orig);
        close(fd);
        return mismatches != 0;
    }
    return 2;
}
