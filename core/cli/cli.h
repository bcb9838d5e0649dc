/* cli.h - what the wcodec subcommands share. */
#ifndef WC_CLI_H
#define WC_CLI_H

#include <signal.h>
#include <stddef.h>
#include <stdio.h>

#include "wcodec.h"

extern volatile sig_atomic_t cli_cancel; /* raised by SIGINT/SIGTERM */

/* Prints "wcodec: msg" on stderr; returns 1 (the exit status of every failure). */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int cli_fail_err(const wc_error *err);
int cli_is_dir(const char *path);
/* The default thread count (online CPUs), and a -j argument checked (1..64): 0, or 1 with a
 * message printed. */
unsigned cli_default_threads(void);
int cli_parse_threads(const char *arg, unsigned *threads);
/* 1 if path ends with suffix. */
int cli_has_suffix(const char *path, const char *suffix);

/* tree.c: walks the tree under src (a directory), mirroring its folders under dst (made as
 * needed), and hands each regular file to ops->file(src_file, dst_dir, name, ctx) and each
 * symlink kept to ops->link(target_text, dst_dir, name, ctx); stops at the first non-zero
 * return. Symlinks never lead the walk into a folder. With `classify` (encode), a link is kept
 * when it leads inside src or nowhere (dangling, a loop), or to a folder outside, and a link to
 * a regular file outside src is handed to file() as that file; one warning line each, but for
 * relative links inside src. Without it (decode) every link is kept as it is. */
typedef struct {
    int (*file)(const char *src_file, const char *dst_dir, const char *name, void *ctx);
    int (*link)(const char *target, const char *dst_dir, const char *name, void *ctx);
    int classify;
} cli_tree_ops;
int cli_walk_tree(const char *src, const char *dst, const cli_tree_ops *ops, void *ctx);

/* A set of strings (the outputs one run has written, to find clashes and leftovers). add:
 * 0 added, 1 already there, -1 out of memory. */
typedef struct {
    char **v;
    size_t n, cap;
} cli_pathset;
int cli_pathset_add(cli_pathset *s, const char *path);
int cli_pathset_has(const cli_pathset *s, const char *path);
void cli_pathset_free(cli_pathset *s);

int cmd_encode(int argc, char **argv);
int cmd_decode(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_manifest(int argc, char **argv);

#endif
