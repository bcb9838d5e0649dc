/* test_xxh3_gpu.c - the GPU's checksum code (cuda/xxh3.cuh), compiled for the host, equals
 * libxxhash's XXH3_64bits at every length path: 0..3000 bytes one by one, then tile sizes.
 * The 8-lane accumulator pieces the hash kernel shares are the same functions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <cmocka.h>
#include <xxhash.h>

#include "../../cuda/xxh3.cuh"

static void test_every_length(void **state) {
    (void)state;
    size_t max = 262144 + 100;
    uint8_t *buf = malloc(max);
    uint32_t s = 1;
    for (size_t i = 0; i < max; i++) s = s * 1103515245u + 12345u, buf[i] = (uint8_t)(s >> 16);
    for (size_t len = 0; len <= 3000; len++)
        if (xxh3_64(buf + len % 7, len) != XXH3_64bits(buf + len % 7, len))
            fail_msg("length %zu differs", len);
    static const size_t big[] = {4095, 4096, 65536, 131071, 262143, 262144, 262144 + 100};
    for (size_t k = 0; k < sizeof big / sizeof *big; k++)
        assert_true(xxh3_64(buf, big[k]) == XXH3_64bits(buf, big[k]));
    free(buf);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_every_length)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
