/* fuzz_container.c - libFuzzer target: the container header/table parser and the tile decoder
 * on arbitrary bytes. The input is a whole container file; every tile it declares is decoded. */
#include <stdlib.h>
#include <stddef.h>
#include <stdint.h>

#include "wcodec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    wc_container *c;
    wc_error err;
    if (wc_container_parse(data, size, size, "fuzz", &c, &err) != WC_OK) return 0;
    uint8_t *out = malloc(wc_container_tile_size(c));
    for (uint32_t i = 0; out && i < wc_container_tile_count(c); i++) {
        const wc_tile_info *t = wc_container_tile(c, i);
        /* the parser promised the payload lies inside the file */
        if (t->payload_offset + t->coded_size > size) __builtin_trap();
        wc_tile_decode_cpu(c, i, data + t->payload_offset, out, NULL, &err);
    }
    free(out);
    wc_container_close(c);
    return 0;
}
