/* cmd_convert.c - `wcodec encode` and `wcodec decode`: one file, or a directory tree. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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
    const char *dst_top; /* a tree's DST, where the encode writes its manifest */
    uint64_t in_bytes, out_bytes;
    unsigned files, unchanged, links;
    cli_pathset outputs; /* a tree's: every path this run wrote or found current */
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

static int report_sizes(convert_ctx *cx, const char *src, const char *dst, uint64_t in, uint64_t out) {
    cx->in_bytes += in;
    cx->out_bytes += out;
    cx->files++;
    if (!cx->quiet)
        fprintf(stderr, "%s -> %s: %llu -> %llu bytes (%.4f)\n", src, dst, (unsigned long long)in,
                (unsigned long long)out, in ? (double)out / in : 1.0);
    return 0;
}

/* One file written: counted, and a line saying so. */
static int report(convert_ctx *cx, const char *src, const char *dst) {
    return report_sizes(cx, src, dst, file_size(src), file_size(dst));
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
    if (to_stdout(dst)) {
        wc_container_summary sum;
        if (wc_container_peek(src, &sum, NULL) == WC_OK) out = sum.source_size;
        return report_sizes(cx, src, "(standard output)", file_size(src), out);
    }
    return report(cx, src, dst);
}

static int same_mtime(const struct stat *a, const struct stat *b) {
    return a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* After a hash check found dst current: it takes src's mtime, so that the next run's quick
 * check (size and mtime) says so without reading it again. */
static void adopt_mtime(const char *dst, const struct stat *src) {
    struct timespec ts[2] = {{0, UTIME_OMIT}, src->st_mtim};
    utimensat(AT_FDCWD, dst, ts, AT_SYMLINK_NOFOLLOW);
}

/* Whether the container dst already holds src (named `name`): it presents that name, keeps as
 * many bytes, and has src's mtime, or (the mtime differing) the whole-file checksum of src; and
 * the tile size asked for, if one was. */
static int container_current(const convert_ctx *cx, const char *src, const struct stat *ss, const char *dst,
                             const char *name) {
    wc_container_summary sum;
    struct stat ds;
    char presented[WC_NAME_MAX + 16];
    const char *base = strrchr(dst, '/');
    if (lstat(dst, &ds) != 0 || !S_ISREG(ds.st_mode) || wc_container_peek(dst, &sum, NULL) != WC_OK ||
        wc_presented_name(base ? base + 1 : dst, sum.source_name, presented, sizeof presented) != 0 ||
        strcmp(presented, name) || sum.source_size != (uint64_t)ss->st_size ||
        (cx->tile_size && sum.tile_size != cx->tile_size))
        return 0;
    if (same_mtime(ss, &ds)) return 1;
    uint64_t h;
    if (wc_hash_file(src, &h, NULL) != WC_OK || h != sum.source_checksum) return 0;
    adopt_mtime(dst, ss);
    return 1;
}

/* Whether the copy dst already holds src's bytes: the same size, and the same mtime or bytes. */
static int copy_current(const char *src, const struct stat *ss, const char *dst) {
    struct stat ds;
    uint64_t a, b;
    if (lstat(dst, &ds) != 0 || !S_ISREG(ds.st_mode) || ds.st_size != ss->st_size) return 0;
    if (same_mtime(ss, &ds)) return 1;
    if (wc_hash_file(src, &a, NULL) != WC_OK || wc_hash_file(dst, &b, NULL) != WC_OK || a != b) return 0;
    adopt_mtime(dst, ss);
    return 1;
}

/* dst is this run's to write: two sources writing one output (a blob "a" and "a.safetensors",
 * both a.wcodec) would lose one of them. */
static int claim(convert_ctx *cx, const char *dst, const char *src) {
    int r = cli_pathset_add(&cx->outputs, dst);
    if (r < 0) return cli_fail("out of memory");
    if (r > 0) return cli_fail("%s: would be written a second time, from %s (two files of one folder named "
                               "NAME and NAME.safetensors both make NAME.wcodec); rename one", dst, src);
    return 0;
}

static int skipped(convert_ctx *cx, const char *src, const struct stat *ss, const char *dst) {
    struct stat ds;
    cx->unchanged++;
    cx->in_bytes += (uint64_t)ss->st_size;
    cx->out_bytes += lstat(dst, &ds) == 0 ? (uint64_t)ds.st_size : 0;
    if (!cx->quiet) fprintf(stderr, "%s: unchanged, skipped\n", src);
    return 0;
}

/* encode: a safetensors file (by name, or by content: a blob has no extension) becomes its
 * container, anything else is copied; what is current already is left as it is. */
static int encode_tree_file(const char *src, const char *dst_dir, const char *name, void *ctx) {
    convert_ctx *cx = ctx;
    char cname[WC_NAME_MAX + 1], *dst = NULL;
    struct stat ss;
    if (stat(src, &ss) != 0) return cli_fail("%s: %s", src, strerror(errno));
    if (!strcmp(name, WC_MANIFEST_NAME) && !strcmp(dst_dir, cx->dst_top)) return 0; /* ours */
    int coded = cli_has_suffix(name, ".safetensors") || wc_st_sniff_file(src);
    if (coded && wc_container_file_name(name, cname, sizeof cname) != 0)
        return cli_fail("%s: the name is too long to add .wcodec to", src);
    if (asprintf(&dst, "%s/%s", dst_dir, coded ? cname : name) < 0) return cli_fail("out of memory");
    int rc = claim(cx, dst, src);
    if (!rc) {
        if (!cx->overwrite && (coded ? container_current(cx, src, &ss, dst, name) : copy_current(src, &ss, dst))) {
            rc = skipped(cx, src, &ss, dst);
        } else if (coded) {
            wc_error err = {0};
            wc_encode_opts o = {.tile_size = cx->tile_size, .threads = cx->threads, .overwrite = 1,
                                .store_raw = cx->store_raw, .source_name = name, .cancel = &cli_cancel,
                                .progress = cx->progress ? show_progress : NULL, .progress_arg = cx};
            cx->current = src;
            wc_status st = wc_encode_file(src, dst, &o, &err);
            if (cx->progress) fputs("\r\033[K", stderr);
            rc = st == WC_OK ? report(cx, src, dst) : cli_fail_err(&err);
        } else {
            wc_error err = {0};
            rc = wc_copy_file(src, dst, 1, &err) == WC_OK ? report(cx, src, dst) : cli_fail_err(&err);
        }
    }
    free(dst);
    return rc;
}

/* decode: a container becomes the file it presents, anything else is copied. */
static int decode_tree_file(const char *src, const char *dst_dir, const char *name, void *ctx) {
    convert_ctx *cx = ctx;
    char *dst = NULL;
    int rc;
    if (!strcmp(name, WC_MANIFEST_NAME)) return 0; /* the encode's listing, not the model's */
    if (cli_has_suffix(name, ".wcodec")) {
        wc_container_summary sum;
        wc_error err = {0};
        char presented[WC_NAME_MAX + 16];
        if (wc_container_peek(src, &sum, &err) != WC_OK) return cli_fail_err(&err);
        if (wc_presented_name(name, sum.source_name, presented, sizeof presented) != 0)
            return cli_fail("%s: no name to decode it to", src);
        if (asprintf(&dst, "%s/%s", dst_dir, presented) < 0) return cli_fail("out of memory");
        rc = claim(cx, dst, src);
        if (!rc) rc = convert_one(cx, src, dst);
    } else {
        wc_error err = {0};
        if (asprintf(&dst, "%s/%s", dst_dir, name) < 0) return cli_fail("out of memory");
        rc = claim(cx, dst, src);
        if (!rc) rc = wc_copy_file(src, dst, cx->overwrite, &err) == WC_OK ? report(cx, src, dst) : cli_fail_err(&err);
    }
    free(dst);
    return rc;
}

/* A symlink kept: made under a temporary name and renamed into place, as files are. One that
 * is already there with the same target is left alone. */
static int tree_link(const char *target, const char *dst_dir, const char *name, void *ctx) {
    convert_ctx *cx = ctx;
    char *dst = NULL, *tmp = NULL, have[PATH_MAX];
    if (asprintf(&dst, "%s/%s", dst_dir, name) < 0 || asprintf(&tmp, "%s/.%s.tmp.link", dst_dir, name) < 0) {
        free(dst);
        return cli_fail("out of memory");
    }
    int rc = claim(cx, dst, target);
    ssize_t n = rc ? -1 : readlink(dst, have, sizeof have - 1);
    struct stat ds;
    if (rc) {
    } else if (n >= 0 && (have[n] = 0, !strcmp(have, target))) {
        cx->links++;
    } else if (!cx->encode && !cx->overwrite && lstat(dst, &ds) == 0) {
        rc = cli_fail("%s: exists (use -f to replace it)", dst);
    } else if ((unlink(tmp), symlink(target, tmp)) != 0 || rename(tmp, dst) != 0) {
        rc = cli_fail("%s: %s", dst, strerror(errno));
        unlink(tmp);
    } else {
        cx->links++;
    }
    free(dst);
    free(tmp);
    return rc;
}

/* What the encode left in DST that SRC no longer has (a revision deleted since): named, not
 * removed. Returns how many. */
static unsigned report_leftovers(const convert_ctx *cx, const char *dir, int top, unsigned seen) {
    struct dirent **ents;
    int n = scandir(dir, &ents, NULL, alphasort);
    for (int i = 0; i < n; i++) {
        const char *name = ents[i]->d_name;
        char *p = NULL;
        struct stat sb;
        if (strcmp(name, ".") && strcmp(name, "..") && !(name[0] == '.' && strstr(name, ".tmp.")) &&
            !(top && !strcmp(name, WC_MANIFEST_NAME)) && asprintf(&p, "%s/%s", dir, name) > 0 && lstat(p, &sb) == 0) {
            if (S_ISDIR(sb.st_mode)) {
                seen = report_leftovers(cx, p, 0, seen);
            } else if (!cli_pathset_has(&cx->outputs, p)) {
                if (seen < 10) fprintf(stderr, "wcodec: %s: not in SRC any more; left as it is\n", p);
                seen++;
            }
        }
        free(p);
        free(ents[i]);
    }
    if (n >= 0) free(ents);
    return seen;
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

/* `wcodec decode URL/ DST`: the folder by its listing; containers decoded to the names they
 * present and links made, as a local tree decode does (decode_tree_file, tree_link), other files
 * fetched. */
static int decode_folder_url(convert_ctx *cx, const char *url, const char *dst) {
    wc_manifest *m;
    wc_error err = {0};
    if (wcnet_list_folder(url, &m, &err) != WC_OK) return cli_fail_err(&err);
    int rc = 0;
    const char *sep = cli_has_suffix(url, "/") ? "" : "/";
    for (size_t i = 0; i < m->n && !rc; i++) {
        const wc_manifest_entry *e = &m->files[i];
        const char *base = strrchr(e->path, '/');
        base = base ? base + 1 : e->path;
        if (!strcmp(base, WC_MANIFEST_NAME)) continue; /* as a local decode */
        char *from = NULL, *to = NULL, *dir = NULL;
        if (asprintf(&from, "%s%s%s", url, sep, e->path) < 0 || asprintf(&to, "%s/%s", dst, e->path) < 0 ||
            !(dir = strndup(to, strlen(to) - strlen(base) - 1)))
            rc = cli_fail("out of memory");
        else if (cli_cancel)
            rc = cli_fail("cancelled");
        else if (!(rc = make_parents(to)))
            rc = e->link ? tree_link(e->link, dir, base, cx)
                 : cli_has_suffix(base, ".wcodec") ? decode_tree_file(from, dir, base, cx)
                                                   : fetch_to_file(from, to, cx->overwrite);
        free(from);
        free(to);
        free(dir);
    }
    wc_manifest_free(m);
    cli_pathset_free(&cx->outputs); /* filled by decode_tree_file and tree_link */
    if (!rc && !cx->quiet) fprintf(stderr, "%u containers decoded and %u symlinks made from %s\n", cx->files, cx->links, url);
    return rc;
}

static void print_help(int encode) {
    if (encode)
        printf("usage: wcodec encode [options] SRC DST\n"
               "\n"
               "SRC a .safetensors file: DST is the container written.\n"
               "SRC a directory: DST mirrors it, and DST/" WC_MANIFEST_NAME " lists it (what an\n"
               "HTTP or S3 mount reads; see 'wcodec manifest'). Every safetensors file becomes a\n"
               "container: by its name (x.safetensors -> x.wcodec) or by its content (a Hugging\n"
               "Face blob, blobs/<sha256> -> blobs/<sha256>.wcodec, which keeps its name); every\n"
               "other file is copied. A symlink leading inside SRC is kept as it is (the\n"
               "snapshots of a Hugging Face cache); one to a file outside SRC is stored as that\n"
               "file; one dangling, in a loop, or to a folder outside is kept as a link. Each\n"
               "but the first kind is said on one line.\n"
               "Run again on the same DST, it updates: what is already there with the same size\n"
               "and mtime, or the same bytes (checksum), is skipped and said so; what changed or\n"
               "is new is encoded; what SRC no longer has is named, not deleted.\n"
               "Output is written to a temporary file and renamed when complete: an error or\n"
               "Ctrl-C leaves nothing behind. Containers keep the source's mode and mtime.\n"
               "\n"
               "options:\n"
               "  -j N             encode with N threads (default: all online CPUs)\n"
               "  -f, --force      rewrite every output, even those already current\n"
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
               "" WC_MANIFEST_NAME ", s3://bucket/prefix): the tree the encode read comes\n"
               "back: every container as the file it presents (x.wcodec as x.safetensors, a\n"
               "blob's as its own name), other files copied, symlinks made again as they were.\n"
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
    const cli_tree_ops ops = {.file = encode ? encode_tree_file : decode_tree_file, .link = tree_link,
                              .classify = encode};
    cx.dst_top = dst;
    int rc = cli_walk_tree(src, dst, &ops, &cx);
    wc_error err = {0};
    if (!rc && encode && wc_manifest_write(dst, &err) != WC_OK) rc = cli_fail_err(&err);
    unsigned left = !rc && encode ? report_leftovers(&cx, dst, 1, 0) : 0;
    if (left > 10) fprintf(stderr, "wcodec: ... %u files in all in %s that SRC no longer has\n", left, dst);
    if (!rc && !cx.quiet)
        fprintf(stderr, "%u files %s: %llu -> %llu bytes; %u unchanged (skipped); %u symlinks\n", cx.files,
                encode ? "encoded or copied" : "decoded or copied", (unsigned long long)cx.in_bytes,
                (unsigned long long)cx.out_bytes, cx.unchanged, cx.links);
    cli_pathset_free(&cx.outputs);
    return rc;
}

int cmd_encode(int argc, char **argv) { return convert_main(argc, argv, 1); }
int cmd_decode(int argc, char **argv) { return convert_main(argc, argv, 0); }
