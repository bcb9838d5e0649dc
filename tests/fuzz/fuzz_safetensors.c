/* fuzz_safetensors.c - libFuzzer target: the safetensors header parser on arbitrary bytes. */
#include <stddef.h>
#include <stdint.h>

#include "wcodec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    wc_st_file f = {0};
    wc_error err;
    if (wc_st_parse(data, size, size, "fuzz", &f, &err) == WC_OK) {
        /* what the encoder relies on: sorted, in the data area, no overlap */
        for (size_t i = 0; i < f.n_tensors; i++) {
            const wc_st_tensor *t = &f.tensors[i];
            if (t->begin < f.data_start || t->end > size || t->begin > t->end) __builtin_trap();
            if (i && t->begin < f.tensors[i - 1].begin) __builtin_trap();
        }
        wc_st_free(&f);
    }
    return 0;
}
