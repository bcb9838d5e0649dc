/* fuzz_s3_list.c - libFuzzer target: the ListObjectsV2 parser (a server's bytes). The first
 * byte picks the prefix the keys must have. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wcnet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const char *prefix = data[0] & 1 ? "m/" : "";
    char *xml = malloc(size);
    if (!xml) return 0;
    memcpy(xml, data + 1, size - 1);
    xml[size - 1] = 0;
    wc_manifest *m = NULL;
    char *next = NULL;
    if (wcnet_parse_list_page(xml, size - 1, prefix, &m, &next, NULL) == WC_OK) {
        for (size_t i = 0; m && i < m->n; i++)
            if (!wc_manifest_path_ok(m->files[i].path)) __builtin_trap();
        if (m) wc_manifest_check(m, NULL);
    }
    wc_manifest_free(m);
    free(next);
    free(xml);
    return 0;
}
