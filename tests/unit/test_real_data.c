/* test_real_data.c - real trained weights (../shared/data) round-trip byte for byte and shrink.
 * Skips when the folder is absent (a user's fresh checkout has none). */
#define _GNU_SOURCE
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "fixture.h"
#include "wcodec.h"

static void test_real_files_roundtrip(void **state) {
    (void)state;
    const char *data = fx_shared_data();
    if (!data) skip();
    char *tmp = fx_tmpdir();
    DIR *d = opendir(data);
    assert_non_null(d);
    int files = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t n = strlen(e->d_name);
        if (n < 12 || strcmp(e->d_name + n - 12, ".safetensors")) continue;
        char *src, *wc, *out;
        assert_true(asprintf(&src, "%s/%s", data, e->d_name) > 0);
        assert_true(asprintf(&wc, "%s/x.wcodec", tmp) > 0);
        assert_true(asprintf(&out, "%s/x.out", tmp) > 0);
        wc_error err = {0};
        wc_encode_opts o = {.threads = 2, .overwrite = 1};
        if (wc_encode_file(src, wc, &o, &err) != WC_OK) fail_msg("%s", err.msg);
        wc_decode_opts d = {.threads = 2, .overwrite = 1};
        if (wc_decode_file(wc, out, &d, &err) != WC_OK) fail_msg("%s", err.msg);
        assert_true(fx_same_file(src, out));
        struct stat a, b;
        stat(src, &a);
        stat(wc, &b);
        /* real weights always shrink (the quantized I8 file least: about 0.91) */
        printf("# %s: %.4f\n", e->d_name, (double)b.st_size / a.st_size);
        assert_true(b.st_size < a.st_size * 0.95);
        free(src);
        free(wc);
        free(out);
        files++;
    }
    closedir(d);
    fx_rmtree(tmp);
    free(tmp);
    if (!files) skip();
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_real_files_roundtrip)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
