/* cmd_convert.c - `wcodec encode` and `wcodec decode`: one file, or a directory tree. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../common/wc_internal.h" /* wc_outfile: atomic output files */
#include "cli.h"
#include "wcnet.h"

typedef struct {
    int encode; /* 1 = encode, 0 = decode */
    int overwrite, quiet, progress, store_raw;
    unsigned threads;
    uint32_t tile_size;
    const char *current;
    uint64_t in_bytes, out_bytes;
    unsigned files;
} convert_ctx;

static void show_progress(void *arg, uint64_t done, uint64_t total) {
    const convert_ctx *cx = arg;
    fprintf(stderr, "\r%s: %3d%% (%.1f of %.1f MB) ", cx->current,
            total ? (int)(100 * done / total) : 100, done / 1e6, total / 1e6);
}

static uint64_t file_size(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

/* "-" names standard output, for a decode of one container: wcodec decode x.wcodec - | ... */
static int to_stdout(const char *dst) { return !strcmp(dst, "-"); }

static int convert_one(convert_ctx *cx, const char *src, const char *dst) {
    wc_error err = {0};
    wc_status st;
    cx->current = src;
    if (cx->encode) {
        wc_encode_opts o = {.tile_size = cx->tile_size, .threads = cx->threads,
                            .overwrite = cx->overwrite, .store_raw = cx->store_raw,
                            .cancel = &cli_cancel,
                            .progress = cx->progress ? show_progress : NULL, .progress_arg = cx};
        st = wc_encode_file(src, dst, &o, &err);
    } else {
        wc_decode_opts o = {.threads = cx->threads, .overwrite = cx->overwrite, .cancel = &cli_cancel,
                            .progress = cx->progress ? show_progress : NULL, .progress_arg = cx};
        st = to_stdout(dst) ? wc_decode_fd(src, STDOUT_FILENO, &o, &err) : wc_decode_file(src, dst, &o, &err);
    }
    if (cx->progress) fputs("\r\033[K", stderr);
    if (st != WC_OK) return cli_fail_err(&err);
    uint64_t out = to_stdout(dst) ? 0 : file_size(dst);
    if (wc_source_is_url(src)) { /* its size is not asked for again: a URL costs a round trip */
        cx->files++;
        cx->out_bytes += out;
        if (!cx->quiet && !to_stdout(dst)) fprintf(stderr, "%s -> %s: %llu bytes\n", src, dst, (unsigned long long)out);
        return 0;
    }
    uint64_t in = file_size(src);
    if (to_stdout(dst)) {
        wc_container_summary sum;
        if (wc_container_peek(src, &sum, NULL) == WC_OK) out = sum.source_size;
        dst = "(standard output)";
    }
    cx->in_bytes += in;
    cx->out_bytes += out;
    cx->files++;
    if (!cx->quiet)
        fprintf(stderr, "%s -> %s: %llu -> %llu bytes (%.4f)\n", src, dst, (unsigned long long)in,
                (unsigned long long)out, in ? (double)out / in : 1.0);
    return 0;
}

static int tree_entry(const char *src_file, const char *dst_dir, const char *name, void *ctx) {
    convert_ctx *cx = ctx;
    const char *from = cx->encode ? ".safetensors" : ".wcodec";
    const char *to = cx->encode ? ".wcodec" : ".safetensors";
    char *dst = NULL;
    int rc;
    if (!strcmp(name, WC_MANIFEST_NAME)) return 0; /* the encode writes its own; a decode has none */
    if (cli_has_suffix(name, from)) {
        int stem = (int)(strlen(name) - strlen(from));
        if (asprintf(&dst, "%s/%.*s%s", dst_dir, stem, name, to) < 0) return cli_fail("out of memory");
        rc = convert_one(cx, src_file, dst);
    } else {
        wc_error err = {0};
        if (asprintf(&dst, "%s/%s", dst_dir, name) < 0) return cli_fail("out of memory");
        rc = wc_copy_file(src_file, dst, cx->overwrite, &err) == WC_OK ? 0 : cli_fail_err(&err);
    }
    free(dst);
    return rc;
}

/* mkdir -p of the folders above `path`. */
static int make_parents(const char *path) {
    char *p = strdup(path);
    if (!p) return cli_fail("out of memory");
    for (char *s = strchr(p + 1, '/'); s; s = strchr(s + 1, '/')) {
        *s = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            int rc = cli_fail("%s: %s", p, strerror(errno));
            free(p);
            return rc;
        }
        *s = '/';
    }
    free(p);
    return 0;
}

/* A plain file of a remote folder (config.json, the tokenizer) fetched whole to dst, atomically. */
static int fetch_to_file(const char *url, const char *dst, int overwrite) {
    uint8_t *buf = NULL;
    size_t len = 0;
    wc_error err = {0};
    wc_outfile o;
    if (wcnet_fetch_object(url, (size_t)1 << 30, &buf, &len, &err) != WC_OK) return cli_fail_err(&err);
    wc_status st = wc_out_open(&o, dst, overwrite, &err);
    if (st == WC_OK && (st = wc_out_pwrite(&o, buf, len, 0, &err)) == WC_OK)
        st = wc_out_commit(&o, 0644, &(struct timespec){0, UTIME_OMIT}, &err);
    else if (st == WC_OK)
        wc_out_abort(&o);
    wcnet_free(buf);
    return st == WC_OK ? 0 : cli_fail_err(&err);
}

/* `wcodec decode URL/ DST`: the folder by its listing; containers decoded, other files fetched. */
static int decode_folder_url(convert_ctx *cx, const char *url, const char *dst) {
    wc_manifest *m;
    wc_error err = {0};
    if (wcnet_list_folder(url, &m, &err) != WC_OK) return cli_fail_err(&err);
    int rc = 0;
    const char *sep = cli_has_suffix(url, "/") ? "" : "/";
    for (size_t i = 0; i < m->n && !rc; i++) {
        const char *p = m->files[i].path;
        int coded = cli_has_suffix(p, ".wcodec");
        if (!strcmp(p, WC_MANIFEST_NAME) || cli_has_suffix(p, "/" WC_MANIFEST_NAME)) continue; /* as a local decode */
        char *from = NULL, *to = NULL;
        if (asprintf(&from, "%s%s%s", url, sep, p) < 0 ||
            asprintf(&to, "%s/%.*s%s", dst, (int)(strlen(p) - (coded ? strlen(".wcodec") : 0)), p,
                     coded ? ".safetensors" : "") < 0)
            rc = cli_fail("out of memory");
        else if (cli_cancel)
            rc = cli_fail("cancelled");
        else if (!(rc = make_parents(to)))
            rc = coded ? convert_one(cx, from, to) : fetch_to_file(from, to, cx->overwrite);
        free(from);
        free(to);
    }
    wc_manifest_free(m);
    if (!rc && !cx->quiet) fprintf(stderr, "%u containers decoded from %s\n", cx->files, url);
    return rc;
}

static void print_help(int encode) {
    if (encode)
        printf("usage: wcodec encode [options] SRC DST\n"
               "\n"
               "SRC a .safetensors file: DST is the container written.\n"
               "SRC a directory: DST mirrors it; every *.safetensors becomes *.wcodec, every other\n"
               "file is copied, subfolders are kept, and DST/" WC_MANIFEST_NAME " lists them\n"
               "all (what an HTTP mount reads; see 'wcodec manifest').\n"
               "Output is written to a temporary file and renamed when complete: an error or\n"
               "Ctrl-C leaves nothing behind. Containers keep the source's mode and mtime.\n"
               "\n"
               "options:\n"
               "  -j N             encode with N threads (default: all online CPUs)\n"
               "  -f, --force      overwrite existing outputs\n"
               "  -q, --quiet      no progress or summary lines\n"
               "  --raw            store every tile uncoded (a baseline for benchmarks)\n"
               "  --tile-size N    decoded bytes per tile (default 256K; multiple of 64,\n"
               "                   4K..16M; smaller tiles = finer random access)\n"
               "  -h, --help       this text\n");
    else
        printf("usage: wcodec decode [options] SRC DST\n"
               "\n"
               "SRC a container (a path, or a URL: http(s)://host/path/x.wcodec or\n"
               "s3://bucket/key, see 'wcodec --help'): DST gets the original .safetensors\n"
               "bytes. SRC a directory (or a folder's URL: https://host/model/ listed by its\n"
               "" WC_MANIFEST_NAME ", s3://bucket/prefix): every *.wcodec becomes\n"
               "*.safetensors, other files are copied.\n"
               "Every tile checksum and the whole-file checksum are checked; on any error\n"
               "nothing is left at DST.\n"
               "\n"
               "DST '-' writes one container's bytes to standard output, in order (a stream\n"
               "cannot be taken back: on an error the output stops there and the exit status\n"
               "is 1; nothing wrong is written).\n"
               "\n"
               "options:\n"
               "  -j N             decode with N threads (default: all online CPUs)\n"
               "  -f, --force      overwrite existing outputs\n"
               "  -q, --quiet      no progress or summary lines\n"
               "  -h, --help       this text\n");
}

static int convert_main(int argc, char **argv, int encode) {
    convert_ctx cx = {.encode = encode};
    cx.threads = cli_default_threads();
    static const struct option longopts[] = {{"force", no_argument, 0, 'f'},
                                              {"quiet", no_argument, 0, 'q'},
                                              {"help", no_argument, 0, 'h'},
                                              {"tile-size", required_argument, 0, 't'},
                                              {"raw", no_argument, 0, 'r'},
                                              {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "j:fqh", longopts, NULL)) != -1) {
        uint64_t v;
        switch (c) {
        case 'j':
            if (cli_parse_threads(optarg, &cx.threads)) return 1;
            break;
        case 't':
            if (!encode) return cli_fail("--tile-size is an encode option");
            if (wc_parse_size(optarg, &v) || v > UINT32_MAX)
                return cli_fail("--tile-size %s: not a size", optarg);
            cx.tile_size = (uint32_t)v;
            break;
        case 'r':
            if (!encode) return cli_fail("--raw is an encode option");
            cx.store_raw = 1;
            break;
        case 'f': cx.overwrite = 1; break;
        case 'q': cx.quiet = 1; break;
        case 'h': print_help(encode); return 0;
        default: return cli_fail("see 'wcodec %s --help'", encode ? "encode" : "decode");
        }
    }
    if (argc - optind != 2)
        return cli_fail("%s needs SRC and DST; see 'wcodec %s --help'", argv[0], argv[0]);
    const char *src = argv[optind], *dst = argv[optind + 1];
    cx.progress = !cx.quiet && isatty(2);
    struct stat sb;
    if (!encode && wc_source_is_url(src)) { /* one container by its URL, or a folder */
        if (!cli_has_suffix(src, ".wcodec")) {
            if (to_stdout(dst)) return cli_fail("DST '-' (standard output) is for decoding one container");
            return decode_folder_url(&cx, src, dst);
        }
        if (to_stdout(dst) && isatty(STDOUT_FILENO))
            return cli_fail("refusing to write binary data to a terminal; redirect or pipe it");
        return convert_one(&cx, src, dst);
    }
    if (stat(src, &sb) != 0) return cli_fail("%s: no such file or directory", src);
    if (to_stdout(dst) && (encode || S_ISDIR(sb.st_mode)))
        return cli_fail("DST '-' (standard output) is for decoding one container");
    if (to_stdout(dst) && isatty(STDOUT_FILENO))
        return cli_fail("refusing to write binary data to a terminal; redirect or pipe it");
    if (!S_ISDIR(sb.st_mode)) return convert_one(&cx, src, dst);
    int rc = cli_walk_tree(src, dst, tree_entry, &cx);
    wc_error err = {0};
    if (!rc && encode && wc_manifest_write(dst, &err) != WC_OK) rc = cli_fail_err(&err);
    if (!rc && !cx.quiet)
        fprintf(stderr, "%u files: %llu -> %llu bytes\n", cx.files,
                (unsigned long long)cx.in_bytes, (unsigned long long)cx.out_bytes);
    return rc;
}

int cmd_encode(int argc, char **argv) { return convert_main(argc, argv, 1); }
int cmd_decode(int argc, char **argv) { return convert_main(argc, argv, 0); }
