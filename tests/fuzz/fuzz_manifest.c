/* fuzz_manifest.c - libFuzzer target: the manifest parser (a server's bytes) on arbitrary input. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "wcodec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    wc_manifest *m = NULL;
    if (wc_manifest_parse(data, size, &m, NULL) == WC_OK) {
        /* what the mount relies on: safe paths, sorted, each once; link targets readlink can
         * give as they are (1..4095 bytes, no control byte) */
        for (size_t i = 0; i < m->n; i++) {
            if (!wc_manifest_path_ok(m->files[i].path)) __builtin_trap();
            const char *t = m->files[i].link;
            if (t && (!*t || strlen(t) > 4095 || m->files[i].size != strlen(t))) __builtin_trap();
            for (; t && *t; t++)
                if ((unsigned char)*t < 0x20 || *t == 0x7f) __builtin_trap();
            if (i && strcmp(m->files[i - 1].path, m->files[i].path) >= 0) __builtin_trap();
        }
        wc_manifest_free(m);
    }
    return 0;
}
