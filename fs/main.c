/* main.c - wcodecfs: mount a directory of .wcodec containers as plain safetensors files. */
#define _GNU_SOURCE
#include <errno.h>
#include <fuse_lowlevel.h>
#include <malloc.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>
#include <unistd.h>

#include "wcfs.h"

wcfs g_fs;

typedef struct {
    char *src, *cache_size, *index_dir, *gpu, *kernel_readahead, *log, *push;
    char *disk_cache, *disk_cache_size, *fetch_size, *s3_endpoint, *s3_region, *ca_file;
    unsigned readahead, threads, push_threads, gpu_min_batch, connections, retry_time, stall_timeout;
    int help, nonopts;
} options;

enum { KEY_HELP };

static const struct fuse_opt opt_spec[] = {
    {"cache_size=%s", offsetof(options, cache_size), 0},
    {"index_dir=%s", offsetof(options, index_dir), 0},
    {"readahead=%u", offsetof(options, readahead), 0},
    {"threads=%u", offsetof(options, threads), 0},
    {"gpu=%s", offsetof(options, gpu), 0},
    {"gpu_min_batch=%u", offsetof(options, gpu_min_batch), 0},
    {"kernel_readahead=%s", offsetof(options, kernel_readahead), 0},
    {"log=%s", offsetof(options, log), 0},
    {"push=%s", offsetof(options, push), 0},
    {"push_threads=%u", offsetof(options, push_threads), 0},
    {"disk_cache=%s", offsetof(options, disk_cache), 0},
    {"disk_cache_size=%s", offsetof(options, disk_cache_size), 0},
    {"fetch_size=%s", offsetof(options, fetch_size), 0},
    {"connections=%u", offsetof(options, connections), 0},
    {"retry_time=%u", offsetof(options, retry_time), 0},
    {"stall_timeout=%u", offsetof(options, stall_timeout), 0},
    {"s3_endpoint=%s", offsetof(options, s3_endpoint), 0},
    {"s3_region=%s", offsetof(options, s3_region), 0},
    {"ca_file=%s", offsetof(options, ca_file), 0},
    FUSE_OPT_KEY("-h", KEY_HELP),
    FUSE_OPT_KEY("--help", KEY_HELP),
    FUSE_OPT_END};

static int opt_proc(void *data, const char *arg, int key, struct fuse_args *out) {
    (void)out;
    options *o = data;
    if (key == KEY_HELP) {
        o->help = 1;
        return 0;
    }
    if (key == FUSE_OPT_KEY_NONOPT && o->nonopts++ == 0) { /* SRC; MNT goes on to libfuse */
        o->src = strdup(arg);
        return 0;
    }
    return 1;
}

static void usage(const char *prog) {
    printf("usage: %s SRC MNT [-f] [-d] [-o opt,...]\n"
           "\n"
           "SRC is a local directory, an http(s)://host/path/ URL (listed by its\n"
           "" WC_MANIFEST_NAME ", which 'wcodec encode' writes) or s3://bucket/prefix.\n"
           "Presents SRC at MNT, read-only: every x.wcodec appears as\n"
           "x.safetensors (the original bytes, exact size, the container's mode and mtime),\n"
           "every other file, folder and symlink as it is (symlinks are shown, never followed).\n"
           "Tiles are decoded on demand into a bounded cache. A container changed while\n"
           "mounted reads as the version mounted, or fails with EIO; remount to serve the new\n"
           "one. Counters: cat MNT/" WCFS_STATS_NAME ". Unmount: fusermount3 -u MNT.\n"
           "\n"
           "wcodecfs options:\n"
           "    -o cache_size=N    bytes of decoded tiles kept (K/M/G suffixes; default 1/8 of\n"
           "                       RAM, 256M..8G; from 1M to RAM)\n"
           "    -o index_dir=DIR   where the LMDB index lives (default $XDG_CACHE_HOME/wcodecfs\n"
           "                       or ~/.cache/wcodecfs); reused while containers are unchanged\n"
           "    -o readahead=N     tiles decoded ahead of a sequential reader (default 8)\n"
           "    -o kernel_readahead=N  the kernel's read-ahead window on this mount, which also\n"
           "                       bounds the size of FUSE read requests (default 16M; 0 keeps\n"
           "                       the kernel's 128K). Set through /sys/class/bdi: needs root,\n"
           "                       otherwise one warning and the kernel's default\n"
           "    -o threads=N       decode worker threads (default: online CPUs)\n"
           "    -o push=N          bytes decoded and stored into the kernel's page cache ahead\n"
           "                       of a sequential reader, by threads of their own, so that\n"
           "                       its reads and page faults find them there (the window grows\n"
           "                       with the run read so far, up to N; 256M is a good value).\n"
           "                       Default 0 (off): it costs daemon CPU and pays only where\n"
           "                       cores sit idle (docs/BENCHMARKS.md). Local SRC only\n"
           "    -o push_threads=N  threads that push (default: half the decode threads)\n"
           "    -o gpu=auto|on|off auto (default) and off decode on CPU threads, which serve\n"
           "                       the mount faster than the GPU does (docs/BENCHMARKS.md);\n"
           "                       on sends large batches to the GPU, and fails without one\n"
           "    -o gpu_min_batch=N with gpu=on, tiles a read plus its read-ahead must reach to\n"
           "                       go to the GPU as one batch (default 16); smaller work stays on the\n"
           "                       CPU threads, whose latency is lower\n"
           "    -o log=FILE        append log lines (bad tiles, containers changed since the\n"
           "                       mount) to FILE, with UTC times; without it they go to stderr\n"
           "                       in the foreground (-f) and to syslog once detached\n"
           "\n"
           "remote SRC (http://, https://, s3://) options:\n"
           "    A container's header and tables are fetched at mount and its version (ETag)\n"
           "    pinned: reads fetch only the tiles they need, adjacent ones in one ranged GET;\n"
           "    an object replaced on the server gives EIO, never a mix of versions. A server\n"
           "    answering 404 or 403 gives ENOENT or EACCES for a plain file, EIO for a\n"
           "    container's tiles, with one log line naming the URL. TLS is always verified.\n"
           "    -o disk_cache=DIR  keep fetched tiles in DIR (kept across mounts; each checked\n"
           "                       on use); default: none\n"
           "    -o disk_cache_size=N  bytes DIR may hold (default 10G); oldest used go first\n"
           "    -o connections=N   requests in flight at once (default 8)\n"
           "    -o fetch_size=N    the most bytes one request fetches (default 8M)\n"
           "    -o retry_time=S    seconds a failing request (5xx, connection lost) is retried,\n"
           "                       backing off from 0.1 s to 5 s (default 30); while the server\n"
           "                       fails, each new read tries once: EIO at once, served again\n"
           "                       as soon as the server answers\n"
           "    -o stall_timeout=S a transfer with no byte for S seconds fails (default 15)\n"
           "    -o s3_endpoint=URL an S3-compatible store (path-style requests); default AWS\n"
           "    -o s3_region=R     the signing region (default $AWS_REGION, else us-east-1)\n"
           "    -o ca_file=PEM     verify https servers with these CA certificates instead of\n"
           "                       the system's (a private CA); verification is never off\n"
           "    S3 credentials: $AWS_ACCESS_KEY_ID, $AWS_SECRET_ACCESS_KEY ($AWS_SESSION_TOKEN),\n"
           "    else ~/.aws/credentials ($AWS_SHARED_CREDENTIALS_FILE, $AWS_PROFILE)\n"
           "\n"
           "FUSE options:\n"
           "    -f                 stay in the foreground\n"
           "    -d, -o debug       FUSE debug output (implies -f)\n"
           "    -s                 one thread serves every request\n"
           "    -o max_threads=N   threads serving requests (default 10)\n"
           "    -o clone_fd        a /dev/fuse descriptor per thread\n"
           "    -o allow_other     other users may read the mount (needs user_allow_other\n"
           "                       in /etc/fuse.conf unless root); file modes still apply\n"
           "    -o allow_root      root may read the mount\n"
           "    -o auto_unmount    unmount when the daemon exits\n"
           "    -V, --version      the release, and libfuse's\n"
           "\n",
           prog);
}

static int dir_is_empty(const char *path) {
    DIR *d = opendir(path);
    if (!d) return 0;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n == 0;
}

static char *default_index_dir(void) {
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char *p = NULL;
    if (xdg && *xdg) return asprintf(&p, "%s/wcodecfs", xdg) < 0 ? NULL : p;
    if (home && *home) {
        char *cache;
        if (asprintf(&cache, "%s/.cache", home) < 0) return NULL;
        mkdir(cache, 0700);
        free(cache);
        return asprintf(&p, "%s/.cache/wcodecfs", home) < 0 ? NULL : p;
    }
    return asprintf(&p, "/tmp/wcodecfs-index-%u", (unsigned)getuid()) < 0 ? NULL : p;
}

static int fail(const char *fmt, const char *arg) {
    fprintf(stderr, "wcodecfs: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    return 1;
}

/* Checks the options and fills g_fs; 0 or an exit status. */
static int configure(options *o, const char *mnt) {
    struct stat sb;
    if (!o->src || !mnt) return fail("%s", "usage: wcodecfs SRC MNT [-o opts] (see --help)");
    int remote = !strncmp(o->src, "http://", 7) || !strncmp(o->src, "https://", 8) ||
                 !strncmp(o->src, "s3://", 5);
    if (!remote && (stat(o->src, &sb) != 0 || !S_ISDIR(sb.st_mode)))
        return fail("%s: no such directory", o->src);
    if (stat(mnt, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return fail("%s: mount point is not an existing directory", mnt);
    if (!dir_is_empty(mnt)) return fail("%s: mount point is not empty", mnt);
    g_fs.src = remote ? strdup(o->src) : realpath(o->src, NULL);
    if (!remote && (o->disk_cache || o->s3_endpoint || o->ca_file))
        return fail("%s", "disk_cache, s3_endpoint and ca_file are options of a remote SRC (http://, https://, s3://)");
    g_fs.fetch_size = 8u << 20;
    if (o->fetch_size && (wc_parse_size(o->fetch_size, &g_fs.fetch_size) != 0 ||
                          g_fs.fetch_size < (64u << 10) || g_fs.fetch_size > (64u << 20)))
        return fail("fetch_size=%s: expected a size from 64K to 64M", o->fetch_size);
    g_fs.disk_cache_size = 10ull << 30;
    if (o->disk_cache_size && (wc_parse_size(o->disk_cache_size, &g_fs.disk_cache_size) != 0 ||
                               g_fs.disk_cache_size < (1u << 20)))
        return fail("disk_cache_size=%s: expected a size of 1M or more", o->disk_cache_size);
    if (o->disk_cache) g_fs.disk_cache_dir = strdup(o->disk_cache);
    if (o->connections > 256) return fail("%s", "connections: expected 1 to 256");
    if (remote) {
        wcnet_opts no = {.connections = o->connections, .retry_time = o->retry_time,
                         .stall_timeout = o->stall_timeout, .s3_endpoint = o->s3_endpoint,
                         .s3_region = o->s3_region, .ca_file = o->ca_file};
        wc_error err = {0};
        if (wcnet_open(o->src, &no, &g_fs.net, &err) != WC_OK) return fail("%s", err.msg);
    }
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    uint64_t ram = pages > 0 && psize > 0 ? (uint64_t)pages * (uint64_t)psize : 2ull << 30;
    g_fs.cache_size = ram / 8;
    if (g_fs.cache_size < (256u << 20)) g_fs.cache_size = 256u << 20;
    if (g_fs.cache_size > (8ull << 30)) g_fs.cache_size = 8ull << 30;
    if (o->cache_size && wc_parse_size(o->cache_size, &g_fs.cache_size) != 0)
        return fail("cache_size=%s: not a size (a number, with K, M or G)", o->cache_size);
    /* a floor against typos (cache_size=100: bytes); above RAM the cache would swap */
    if (o->cache_size && (g_fs.cache_size < (1u << 20) || g_fs.cache_size > ram)) {
        char why[160];
        snprintf(why, sizeof why, "cache_size=%s: out of range: from 1M to this machine's memory (%llu MiB)",
                 o->cache_size, (unsigned long long)(ram >> 20));
        return fail("%s", why);
    }
    g_fs.readahead = o->readahead;
    g_fs.kernel_readahead = 16u << 20;
    if (o->kernel_readahead && wc_parse_size(o->kernel_readahead, &g_fs.kernel_readahead) != 0)
        return fail("kernel_readahead=%s: not a size", o->kernel_readahead);
    /* off unless asked for: it needs idle cores, and measured faster on the 16-core machine in
     * some runs, slower in others and on 2 cores (docs/BENCHMARKS.md) */
    g_fs.push = 0;
    if (o->push && wc_parse_size(o->push, &g_fs.push) != 0) return fail("push=%s: not a size", o->push);
    g_fs.gpu_min_batch = o->gpu_min_batch ? o->gpu_min_batch : 16;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    g_fs.threads = o->threads ? o->threads : (unsigned)(ncpu > 0 ? ncpu : 1);
    g_fs.push_threads = o->push_threads ? o->push_threads : (g_fs.threads + 1) / 2;
    /* auto means the CPU: through FUSE, with the bytes going back to host memory, the GPU
     * batches measured slower than the CPU threads at 1, 4 and 8 readers on an H100 machine
     * (docs/BENCHMARKS.md), so only gpu=on uses it */
    g_fs.gpu = 0;
    if (o->gpu && !strcmp(o->gpu, "on")) g_fs.gpu = 1;
    else if (o->gpu && strcmp(o->gpu, "auto") && strcmp(o->gpu, "off"))
        return fail("gpu=%s: expected auto, on or off", o->gpu);
    char why[512];
    if (g_fs.gpu == 1 && wcfs_gpu_probe(why, sizeof why) != 0) return fail("gpu=on: %s", why);
    g_fs.index_dir = o->index_dir ? strdup(o->index_dir) : default_index_dir();
    (void)sb;
    return 0;
}

static void free_options(options *o) {
    char **strs[] = {&o->src, &o->cache_size, &o->index_dir, &o->gpu, &o->kernel_readahead, &o->log, &o->push,
                     &o->disk_cache, &o->disk_cache_size, &o->fetch_size, &o->s3_endpoint, &o->s3_region, &o->ca_file};
    for (size_t i = 0; i < sizeof strs / sizeof *strs; i++) {
        free(*strs[i]);
        *strs[i] = NULL;
    }
}

/* What the mount built: the registry, the index, the remote root and its disk cache. */
static void free_state(void) {
    wc_index_close(g_fs.index);
    wcfs_remote_free(&g_fs);
    wcnet_cache_close(g_fs.disk);
    wcnet_close(g_fs.net);
    for (size_t i = 0; i < g_fs.n_files; i++) {
        wc_container_close(g_fs.files[i].c);
        free(g_fs.files[i].presented);
        free(g_fs.files[i].real);
        free(atomic_load(&g_fs.files[i].read_stamps));
        free(g_fs.files[i].in_page_cache);
    }
    free(g_fs.files);
    free(g_fs.src);
    free(g_fs.index_dir);
    free(g_fs.disk_cache_dir);
    memset(&g_fs, 0, sizeof g_fs);
}

int main(int argc, char **argv) {
    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    options o = {.readahead = 8};
    struct fuse_cmdline_opts co = {0};
    char *fsname = NULL;
    int rc = 1;
    if (fuse_opt_parse(&args, &o, opt_spec, opt_proc) != 0) goto refused;
    if (o.help) {
        usage(argv[0]);
        rc = 0;
        goto refused;
    }
    if (fuse_parse_cmdline(&args, &co) != 0) goto refused;
    if (co.show_version) {
        printf("wcodecfs %s (libfuse %s)\n", WCODEC_VERSION_STRING, fuse_pkgversion());
        rc = 0;
        goto refused;
    }
    if ((rc = configure(&o, co.mountpoint)) != 0) goto refused;
    rc = 1;
    if (wcfs_log_open(o.log) != 0) {
        fail("log=%s: cannot be opened for appending", o.log);
        goto refused;
    }

    /* Tiles and reply buffers come and go by the thousand: keep them in the heap, neither
     * mmapped fresh nor trimmed back, so that reuse costs no page faults (this was a third of
     * the daemon's time on a cold read). */
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 512 << 20);
    wc_error err = {0};
    if (g_fs.net) {
        /* a remote root: the containers' own tables, fetched now, map reads to tiles */
        if (g_fs.disk_cache_dir &&
            wcnet_cache_open(g_fs.disk_cache_dir, g_fs.disk_cache_size, &g_fs.disk, &err) != WC_OK)
            goto failed;
        if (wcfs_remote_scan(&g_fs) != 0) goto refused;
        wcfs_log("%s: %zu containers (%llu skipped), cache %llu MiB", wcnet_display_url(g_fs.net),
                 g_fs.n_files, (unsigned long long)g_fs.stats.containers_failed,
                 (unsigned long long)(g_fs.cache_size >> 20));
    } else {
        if (wc_index_open(g_fs.index_dir, &g_fs.index, &err) != WC_OK) goto failed;
        wcfs_scan(&g_fs);
        /* LMDB handles must not cross fork(): close now, reopen in the daemon. */
        wc_index_close(g_fs.index);
        g_fs.index = NULL;
        wcfs_log("%s: %zu containers (index: %llu reused, %llu built, %llu skipped), cache %llu MiB", g_fs.src, g_fs.n_files, (unsigned long long)g_fs.stats.index_reused,
                (unsigned long long)g_fs.stats.index_built,
                (unsigned long long)g_fs.stats.containers_failed,
                (unsigned long long)(g_fs.cache_size >> 20));
    }

    /* never the URL's user:password@ */
    if (asprintf(&fsname, "-ofsname=%s,subtype=wcodecfs,ro,default_permissions",
                 g_fs.net ? wcnet_display_url(g_fs.net) : g_fs.src) < 0) {
        fsname = NULL;
        goto refused;
    }
    fuse_opt_add_arg(&args, fsname);
    struct fuse_session *se = fuse_session_new(&args, &wcfs_ops, sizeof wcfs_ops, NULL);
    if (!se) goto refused;
    if (fuse_session_mount(se, co.mountpoint) != 0) {
        fuse_session_destroy(se);
        goto refused;
    }
    char bdi_path[64];
    int set_readahead = g_fs.kernel_readahead &&
                        wcfs_readahead_check(co.mountpoint, bdi_path, sizeof bdi_path) == 0;
    rc = 1;
    /* CUDA and worker threads start after fork (neither survives it) */
    int detached = fuse_daemonize(co.foreground) == 0;
    if (detached && !co.foreground) wcfs_log_detached();
    if (detached && g_fs.gpu == 1) {
        if (wcfs_gpu_open(g_fs.gpu_name, sizeof g_fs.gpu_name) == 0) g_fs.gpu_active = 1;
        else wcfs_log("GPU unusable, decoding on the CPU: %s", g_fs.gpu_name);
    }
    if ((g_fs.net || wc_index_open(g_fs.index_dir, &g_fs.index, &err) == WC_OK) &&
        (g_fs.cache = wcfs_cache_new(&g_fs, g_fs.cache_size, g_fs.threads, g_fs.gpu_active)) &&
        fuse_set_signal_handlers(se) == 0) {
        if (set_readahead) wcfs_readahead_start(co.mountpoint, bdi_path, g_fs.kernel_readahead);
        if (g_fs.push && !g_fs.net && wcfs_push_start(se, g_fs.push_threads) != 0) g_fs.push = 0;
        if (co.singlethread) {
            rc = fuse_session_loop(se);
        } else {
            struct fuse_loop_config *lc = fuse_loop_cfg_create();
            fuse_loop_cfg_set_clone_fd(lc, (unsigned)co.clone_fd);
            unsigned threads = co.max_threads; /* libfuse's default: 10 */
            fuse_loop_cfg_set_max_threads(lc, threads);
            /* idle threads are kept, not torn down and made again between bursts of reads */
            fuse_loop_cfg_set_idle_threads(lc, threads);
            rc = fuse_session_loop_mt(se, lc);
            fuse_loop_cfg_destroy(lc);
        }
        fuse_remove_signal_handlers(se);
    } else if (err.msg[0]) {
        wcfs_log("%s", err.msg);
    }
    wcfs_push_stop(se);
    fuse_session_unmount(se);
    fuse_session_destroy(se);
    wcfs_cache_free(g_fs.cache);
    if (g_fs.gpu_active) wcfs_gpu_close();
    rc = rc ? 1 : 0;
    goto refused;
failed:
    fail("%s", err.msg);
refused: /* and the end of a mount: everything given back */
    free_state();
    free_options(&o);
    wcfs_log_close();
    free(fsname);
    free(co.mountpoint);
    fuse_opt_free_args(&args);
    return rc;
}
