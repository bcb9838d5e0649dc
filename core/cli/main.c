/* main.c - the wcodec command line tool: dispatch, shared helpers. */
#define _GNU_SOURCE
#include <sched.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "wcnet.h"

volatile sig_atomic_t cli_cancel;

static const char usage[] =
    "usage: wcodec COMMAND [options] ARGS\n"
    "\n"
    "Lossless compression of .safetensors model weights into .wcodec containers.\n"
    "\n"
    "commands:\n"
    "  encode SRC DST    SRC a .safetensors file -> DST container; or SRC a directory:\n"
    "                    every .safetensors becomes .wcodec, other files are copied\n"
    "  decode SRC DST    the inverse: the original bytes, every checksum checked\n"
    "  verify FILE.wcodec [ORIGINAL.safetensors]\n"
    "                    decode everything, check every checksum, compare if given\n"
    "  info FILE.wcodec  per tensor: name, dtype, shape, sizes, ratio, coding\n"
    "  bench FILE        encode and decode speed and ratio of a .safetensors file\n"
    "  manifest DIR      (re)write DIR/" WC_MANIFEST_NAME ", the file list an HTTP mount\n"
    "                    reads (encode writes it for a directory)\n"
    "\n"
    "A container may be named by its URL: http://host/path/x.wcodec, https://..., or\n"
    "s3://bucket/key (credentials, region and endpoint as for the AWS CLI:\n"
    "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ~/.aws/credentials, AWS_REGION,\n"
    "AWS_ENDPOINT_URL; WCODEC_CA_FILE names a private CA's certificates).\n"
    "\n"
    "'wcodec COMMAND --help' for a command's options; 'wcodec --version' the release.\n"
    "Exit status: 0 on success, 1 on any\n"
    "error (one line on stderr).\n";

int cli_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("wcodec: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

int cli_fail_err(const wc_error *err) { return cli_fail("%s", err->msg); }

int cli_is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* The CPUs this process may run on (taskset, cgroup cpusets), not all that are online: threads
 * beyond them only take turns on the same cores. */
unsigned cli_default_threads(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set) > 64 ? 64 : (unsigned)CPU_COUNT(&set);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    return ncpu > 0 ? (unsigned)ncpu : 1;
}

int cli_parse_threads(const char *arg, unsigned *threads) {
    uint64_t v;
    if (wc_parse_size(arg, &v) || v < 1 || v > 64)
        return cli_fail("-j %s: expected a thread count from 1 to 64", arg);
    *threads = (unsigned)v;
    return 0;
}

int cli_has_suffix(const char *path, const char *suffix) {
    size_t n = strlen(path), k = strlen(suffix);
    return n >= k && strcmp(path + n - k, suffix) == 0;
}

static void on_signal(int sig) {
    (void)sig;
    cli_cancel = 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs(usage, stderr);
        return 1;
    }
    const char *cmd = argv[1];
    wcnet_register_urls(); /* containers may be named by http://, https:// or s3:// URLs */
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        fputs(usage, stdout);
        return 0;
    }
    if (!strcmp(cmd, "-V") || !strcmp(cmd, "--version")) {
        puts("wcodec " WCODEC_VERSION_STRING);
        return 0;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = {{"encode", cmd_encode}, {"decode", cmd_decode}, {"verify", cmd_verify},
                {"info", cmd_info},     {"bench", cmd_bench},   {"manifest", cmd_manifest}};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(cmd, cmds[i].name)) return cmds[i].fn(argc - 1, argv + 1);
    cli_fail("unknown command '%s'", cmd);
    fputs(usage, stderr);
    return 1;
}
