/* cmd_info.c - `wcodec info FILE.wcodec`: what is in a container, tensor by tensor. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* Names and shapes live in the source's header JSON, which the container keeps as its first
 * tiles; the encoder numbered tensors in the parser's order, so index i matches. */
static int read_source_header(const wc_container *c, wc_st_file *sf, wc_error *err) {
    uint8_t len8[8];
    if (wc_container_source_size(c) < 8 || wc_container_read_range(c, 0, 8, len8, err) != WC_OK)
        return -1;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | len8[i];
    if (n > WC_ST_MAX_HEADER || n > wc_container_source_size(c) - 8) return -1;
    uint8_t *buf = malloc((size_t)n + 8);
    int rc = -1;
    if (buf && wc_container_read_range(c, 0, (size_t)n + 8, buf, err) == WC_OK &&
        wc_st_parse(buf, (size_t)n + 8, wc_container_source_size(c), NULL, sf, err) == WC_OK)
        rc = 0;
    free(buf);
    return rc;
}

int cmd_info(int argc, char **argv) {
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        printf("usage: wcodec info FILE.wcodec\n"
               "\n"
               "Prints, per tensor: name, dtype, shape, source bytes, container bytes, ratio\n"
               "(container/source) and coding: one letter per byte plane, 'r' for rANS-coded,\n"
               "'-' for stored raw ('raw' when every tile is raw). Then the totals.\n");
        return 0;
    }
    if (argc != 2) return cli_fail("info needs FILE.wcodec; see --help");
    wc_error err = {0};
    wc_container *c;
    if (wc_container_open(argv[1], &c, &err) != WC_OK) return cli_fail_err(&err);
    wc_st_file sf = {0};
    int have_names = read_source_header(c, &sf, &err) == 0 &&
                     sf.n_tensors == wc_container_tensor_count(c);
    printf("%-60s %-8s %-20s %12s %12s %7s %s\n", "tensor", "dtype", "shape", "source", "coded",
           "ratio", "coding");
    for (uint32_t i = 0; i < wc_container_tensor_count(c); i++) {
        const wc_tensor_info *t = wc_container_tensor(c, i);
        uint64_t coded = 0;
        int any_coded = 0;
        for (uint32_t k = 0; k < t->tile_count; k++) {
            const wc_tile_info *ti = wc_container_tile(c, t->first_tile + k);
            coded += ti->coded_size;
            any_coded |= ti->mode == WC_TILE_PLANES;
        }
        char shape[256] = "?", coding[16] = "raw";
        const char *name = "?", *dtype = wc_dtype_name((wc_dtype)t->dtype);
        if (have_names && sf.tensors[i].begin == t->src_offset) {
            const wc_st_tensor *s = &sf.tensors[i];
            name = s->name;
            dtype = s->dtype_name;
            size_t pos = (size_t)snprintf(shape, sizeof shape, "[");
            for (uint32_t d = 0; d < s->ndim && pos < sizeof shape; d++)
                pos += (size_t)snprintf(shape + pos, sizeof shape - pos, "%s%" PRIu64,
                                        d ? "," : "", s->shape[d]);
            if (pos < sizeof shape) snprintf(shape + pos, sizeof shape - pos, "]");
        }
        if (any_coded) {
            for (unsigned p = 0; p < t->plane_count; p++) coding[p] = t->plane_coded[p] ? 'r' : '-';
            coding[t->plane_count] = 0;
        }
        printf("%-60s %-8s %-20s %12" PRIu64 " %12" PRIu64 " %7.4f %s\n", name, dtype, shape,
               t->src_size, coded, t->src_size ? (double)coded / t->src_size : 1.0, coding);
    }
    uint64_t src = wc_container_source_size(c), file = wc_container_file_size(c);
    printf("total: %u tensors, %u tiles of %u bytes, source %" PRIu64 " bytes, container %" PRIu64
           " bytes, ratio %.4f (%.3fx)\n",
           wc_container_tensor_count(c), wc_container_tile_count(c), wc_container_tile_size(c),
           src, file, src ? (double)file / src : 1.0, file ? (double)src / file : 1.0);
    wc_st_free(&sf);
    wc_container_close(c);
    return 0;
}
