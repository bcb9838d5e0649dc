/* fuzz_container.c - libFuzzer target: the container header/table parser and the tile decoder
 * on arbitrary bytes. The input is a whole container file; every tile it declares is decoded.
 *
 * Each input is parsed twice: as it is, and with its header and table checksums made right.
 * Random bytes almost never carry a valid xxh3, so without the second pass the checks behind
 * the checksums (counts, offsets, sizes, coverage) would meet only the seeds; a crafted file can
 * carry valid checksums, so those checks are what stands between it and the decoder. */
#include <stdlib.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <xxhash.h>

#include "../../core/common/wc_internal.h"
#include "wcodec.h"

static void parse_and_decode(const uint8_t *data, size_t size) {
    wc_container *c;
    wc_error err;
    if (wc_container_parse(data, size, size, "fuzz", &c, &err) != WC_OK) return;
    uint8_t *out = malloc(wc_container_tile_size(c));
    for (uint32_t i = 0; out && i < wc_container_tile_count(c); i++) {
        const wc_tile_info *t = wc_container_tile(c, i);
        /* the parser promised the payload lies inside the file */
        if (t->payload_offset + t->coded_size > size) __builtin_trap();
        wc_tile_decode_cpu(c, i, data + t->payload_offset, out, NULL, &err);
    }
    free(out);
    wc_container_close(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    parse_and_decode(data, size);
    if (size < WC_HEADER_SIZE) return 0;
    uint8_t *fixed = malloc(size);
    if (!fixed) return 0;
    memcpy(fixed, data, size);
    memcpy(fixed, WC_MAGIC, 8);
    wc_wr32(fixed + 8, WC_FORMAT_VERSION);
    uint64_t tables = (uint64_t)wc_rd32(fixed + 32) * WC_TENSOR_RECORD_SIZE +
                      (uint64_t)wc_rd32(fixed + 36) * WC_TILE_RECORD_SIZE + wc_rd32(fixed + 40);
    if (tables <= size - WC_HEADER_SIZE)
        wc_wr64(fixed + 48, XXH3_64bits(fixed + WC_HEADER_SIZE, (size_t)tables));
    wc_wr64(fixed + 56, XXH3_64bits(fixed, 56));
    parse_and_decode(fixed, size);
    free(fixed);
    return 0;
}
