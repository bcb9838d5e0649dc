/* cmd_manifest.c - `wcodec manifest DIR`: (re)writes the list an HTTP mount reads. */
#include <getopt.h>
#include <string.h>

#include "cli.h"

int cmd_manifest(int argc, char **argv) {
    static const struct option longopts[] = {{"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (c != 'h') return cli_fail("see 'wcodec manifest --help'");
        printf("usage: wcodec manifest DIR\n"
               "\n"
               "Writes DIR/" WC_MANIFEST_NAME ": every regular file under DIR with its path,\n"
               "size, mtime and xxh3-64 checksum, and every symlink with its target (not\n"
               "followed). 'wcodecfs http://host/DIR/ MNT' reads it to list the directory (a web\n"
               "server cannot list one), and an S3 mount for the links (an object store keeps\n"
               "none). 'wcodec encode' writes it for a directory; run this after changing files\n"
               "in DIR. A file listed before with the same size and mtime is not read again.\n");
        return 0;
    }
    if (argc - optind != 1) return cli_fail("manifest needs DIR; see 'wcodec manifest --help'");
    const char *dir = argv[optind];
    if (!cli_is_dir(dir)) return cli_fail("%s: not a directory", dir);
    wc_error err = {0};
    if (wc_manifest_write(dir, &err) != WC_OK) return cli_fail_err(&err);
    return 0;
}
