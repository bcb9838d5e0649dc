/* cmd_verify.c - `wcodec verify FILE.wcodec [ORIGINAL]`. */
#include <string.h>

#include "cli.h"

int cmd_verify(int argc, char **argv) {
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        printf("usage: wcodec verify FILE.wcodec [ORIGINAL.safetensors]\n"
               "\n"
               "Decodes every tile of FILE.wcodec and checks the header, table, tile and\n"
               "whole-file checksums; with ORIGINAL, also compares every byte with it.\n"
               "Exit status 0 when all holds, 1 on the first problem (named on stderr).\n");
        return 0;
    }
    if (argc < 2 || argc > 3) return cli_fail("verify needs FILE.wcodec [ORIGINAL]; see --help");
    wc_error err = {0};
    if (wc_verify_file(argv[1], argc == 3 ? argv[2] : NULL, &err) != WC_OK)
        return cli_fail_err(&err);
    fprintf(stderr, "%s: OK%s\n", argv[1], argc == 3 ? " (identical to the original)" : "");
    return 0;
}
