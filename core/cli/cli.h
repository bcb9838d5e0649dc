/* cli.h - what the wcodec subcommands share. */
#ifndef WC_CLI_H
#define WC_CLI_H

#include <signal.h>
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

/* Walks the regular files under src (a directory), mirroring subfolders under dst, and calls
 * fn(src_file, dst_dir_path, name, ctx) for each; stops at the first non-zero return. */
typedef int (*cli_tree_fn)(const char *src_file, const char *dst_dir, const char *name, void *ctx);
int cli_walk_tree(const char *src, const char *dst, cli_tree_fn fn, void *ctx);

int cmd_encode(int argc, char **argv);
int cmd_decode(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_manifest(int argc, char **argv);

#endif
