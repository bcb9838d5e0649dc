/* cmd_verify.c - `wcodec verify [-j N] [-q] FILE.wcodec [ORIGINAL]`. */
#include <getopt.h>
#include <string.h>

#include "cli.h"

int cmd_verify(int argc, char **argv) {
    static const struct option longopts[] = {{"quiet", no_argument, 0, 'q'},
                                              {"help", no_argument, 0, 'h'},
                                              {0, 0, 0, 0}};
    wc_decode_opts o = {.threads = cli_default_threads(), .cancel = &cli_cancel};
    int quiet = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "j:qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'j':
            if (cli_parse_threads(optarg, &o.threads)) return 1;
            break;
        case 'q': quiet = 1; break;
        case 'h':
            printf("usage: wcodec verify [options] FILE.wcodec [ORIGINAL.safetensors]\n"
                   "\n"
                   "Decodes every tile of FILE.wcodec (a path or a URL, see 'wcodec --help')\n"
                   "and checks the header, table, tile and\n"
                   "whole-file checksums; with ORIGINAL, also compares every byte with it.\n"
                   "Exit status 0 when all holds, 1 on the first problem (named on stderr).\n"
                   "\n"
                   "options:\n"
                   "  -j N             decode with N threads (default: all online CPUs)\n"
                   "  -q, --quiet      no OK line\n"
                   "  -h, --help       this text\n");
            return 0;
        default: return cli_fail("see 'wcodec verify --help'");
        }
    }
    int n = argc - optind;
    if (n < 1 || n > 2) return cli_fail("verify needs FILE.wcodec [ORIGINAL]; see --help");
    const char *file = argv[optind], *orig = n == 2 ? argv[optind + 1] : NULL;
    wc_error err = {0};
    if (wc_verify_file(file, orig, &o, &err) != WC_OK) return cli_fail_err(&err);
    if (!quiet) fprintf(stderr, "%s: OK%s\n", file, orig ? " (identical to the original)" : "");
    return 0;
}
