/* test_net.c - the manifest, the parsers of S3 answers and credentials, the disk cache. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "wcnet.h"

static char *tmpdir(void) {
    char *d = strdup("/tmp/wcnet-test.XXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

static void write_file(const char *dir, const char *name, const char *text) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void rm_rf(const char *d) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    assert_int_equal(system(cmd), 0);
}

static wc_manifest *read_manifest(const char *dir) {
    char p[4096], buf[65536];
    snprintf(p, sizeof p, "%s/" WC_MANIFEST_NAME, dir);
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    wc_manifest *m = NULL;
    wc_error err = {0};
    assert_int_equal(wc_manifest_parse((const uint8_t *)buf, n, &m, &err), WC_OK);
    return m;
}

static void make_link(const char *dir, const char *name, const char *target) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    assert_int_equal(symlink(target, p), 0);
}

static void test_manifest_lists_files_and_links(void **state) {
    (void)state;
    char *d = tmpdir(), sub[4096];
    snprintf(sub, sizeof sub, "%s/sub", d);
    assert_int_equal(mkdir(sub, 0755), 0);
    write_file(d, "config.json", "{}");
    write_file(d, "sub/m.wcodec", "not really a container");
    write_file(d, ".x.tmp.123456", "a temporary of ours");
    make_link(d, "link", "config.json");
    make_link(d, "sub/up", "../../blobs/3f2a"); /* dangling: kept as it is, not followed */
    make_link(d, "dirlink", "sub");             /* a link to a folder: not walked into */
    wc_error err = {0};
    assert_int_equal(wc_manifest_write(d, &err), WC_OK);
    wc_manifest *m = read_manifest(d);
    assert_int_equal(m->n, 5); /* no temporary, not itself */
    assert_string_equal(m->files[0].path, "config.json");
    assert_null(m->files[0].link);
    assert_int_equal(m->files[0].size, 2);
    assert_int_equal(m->files[0].xxh3, XXH3_64bits("{}", 2));
    assert_string_equal(m->files[1].path, "dirlink");
    assert_string_equal(m->files[1].link, "sub");
    assert_string_equal(m->files[2].path, "link");
    assert_string_equal(m->files[2].link, "config.json");
    assert_int_equal(m->files[2].size, strlen("config.json")); /* a link's size: its target's length */
    assert_int_equal(m->files[2].xxh3, 0);
    assert_true(m->files[2].mtime > 1700000000);
    assert_string_equal(m->files[3].path, "sub/m.wcodec");
    assert_null(m->files[3].link);
    assert_int_equal(m->files[3].size, strlen("not really a container"));
    assert_true(m->files[3].mtime > 1700000000);
    assert_string_equal(m->files[4].path, "sub/up");
    assert_string_equal(m->files[4].link, "../../blobs/3f2a");
    wc_manifest_free(m);
    /* written again (the files changed): replaced, not appended */
    write_file(d, "config.json", "{\"a\": 1}");
    assert_int_equal(wc_manifest_write(d, &err), WC_OK);
    m = read_manifest(d);
    assert_int_equal(m->n, 5);
    assert_int_equal(m->files[0].size, 8);
    wc_manifest_free(m);
    /* a target no manifest can hold (a control byte) fails the write, naming the link */
    make_link(d, "bad", "a\tb");
    assert_int_equal(wc_manifest_write(d, &err), WC_ERR_IO);
    assert_non_null(strstr(err.msg, "/bad: a link target"));
    rm_rf(d);
    free(d);
}

static void set_mtime(const char *dir, const char *name, time_t t) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    struct timespec ts[2] = {{t, 0}, {t, 0}};
    assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
}

/* The checksums of an older manifest are reused for files of the same size and mtime: planted
 * ones show which were (an unchanged file is not read again), real ones which were not. */
static void test_manifest_reuses_checksums(void **state) {
    (void)state;
    char *d = tmpdir(), json[1024];
    write_file(d, "same", "unchanged");
    write_file(d, "edited", "version 1");
    write_file(d, "racy", "the older");
    set_mtime(d, "same", 1600000000);
    set_mtime(d, "edited", 1600000000);
    struct stat racy;
    char p[4096];
    snprintf(p, sizeof p, "%s/racy", d);
    assert_int_equal(stat(p, &racy), 0);
    snprintf(json, sizeof json,
             "{\"wcodec_manifest\": 1, \"files\": ["
             "{\"path\": \"edited\", \"size\": 9, \"mtime\": 1600000000, \"xxh3\": \"00000000000000e1\"},"
             "{\"path\": \"racy\", \"size\": 9, \"mtime\": %lld, \"xxh3\": \"00000000000000a1\"},"
             "{\"path\": \"same\", \"size\": 9, \"mtime\": 1600000000, \"xxh3\": \"00000000000000b1\"}]}",
             (long long)racy.st_mtim.tv_sec);
    write_file(d, WC_MANIFEST_NAME, json);
    /* the old manifest written in the second "racy" was last changed in: it may have changed
     * again after, within that second, keeping its size and mtime */
    set_mtime(d, WC_MANIFEST_NAME, racy.st_mtim.tv_sec);
    write_file(d, "edited", "version 2"); /* the same size, another mtime */
    set_mtime(d, "edited", 1600000001);
    wc_error err = {0};
    assert_int_equal(wc_manifest_write(d, &err), WC_OK);
    wc_manifest *m = read_manifest(d);
    assert_int_equal(m->n, 3);
    assert_string_equal(m->files[0].path, "edited");
    assert_int_equal(m->files[0].xxh3, XXH3_64bits("version 2", 9));
    assert_int_equal(m->files[0].mtime, 1600000001);
    assert_string_equal(m->files[1].path, "racy");
    assert_int_equal(m->files[1].xxh3, XXH3_64bits("the older", 9));
    assert_string_equal(m->files[2].path, "same");
    assert_int_equal(m->files[2].xxh3, 0xb1); /* reused: not read */
    wc_manifest_free(m);
    /* an old manifest that does not parse: every file read */
    write_file(d, WC_MANIFEST_NAME, "{\"wcodec_manifest\": 1, \"files\": [{]}");
    assert_int_equal(wc_manifest_write(d, &err), WC_OK);
    m = read_manifest(d);
    assert_int_equal(m->files[2].xxh3, XXH3_64bits("unchanged", 9));
    wc_manifest_free(m);
    rm_rf(d);
    free(d);
}

static void refused(const char *json, const char *words) {
    wc_manifest *m = NULL;
    wc_error err = {0};
    assert_int_equal(wc_manifest_parse((const uint8_t *)json, strlen(json), &m, &err), WC_ERR_FORMAT);
    assert_null(m);
    if (!strstr(err.msg, words)) fail_msg("\"%s\" does not say \"%s\"", err.msg, words);
}

static void test_manifest_refuses_bad_input(void **state) {
    (void)state;
    refused("not json", "not a JSON object");
    refused("{\"files\": []}", "version 1");
    refused("{\"wcodec_manifest\": 2, \"files\": []}", "version 1");
    refused("{\"wcodec_manifest\": 1}", "no \"files\"");
    const char *paths[] = {"../x", "/abs", "a//b", "a/./b", "a/..", "", "a/", "tab\there"};
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
        char j[256];
        snprintf(j, sizeof j, "{\"wcodec_manifest\": 1, \"files\": [{\"path\": \"%s\", \"size\": 1}]}", paths[i]);
        refused(j, "path");
    }
    refused("{\"wcodec_manifest\": 1, \"files\": [{\"path\": \"a\", \"size\": -1}]}", "size");
    refused("{\"wcodec_manifest\": 1, \"files\": [{\"path\": \"a\", \"size\": 1.5}]}", "size");
    refused("{\"wcodec_manifest\": 1, \"files\": [{\"path\": \"a\", \"size\": 1e300}]}", "size");
    refused("{\"wcodec_manifest\": 1, \"files\": [{\"path\": \"a\", \"size\": \"1\"}]}", "size");
    refused("{\"wcodec_manifest\": 1, \"files\": [{\"path\": \"a\", \"size\": 1, \"xxh3\": \"xyz\"}]}", "xxh3");
    refused("{\"wcodec_manifest\": 1, \"files\": [{\"path\": \"a\", \"size\": 1}, {\"path\": \"a\", \"size\": 2}]}",
            "listed twice");
    refused("{\"wcodec_manifest\": 1, \"files\": [{\"path\": \"a\", \"size\": 1}, {\"path\": \"a/b\", \"size\": 2}]}",
            "a file and a folder");
    /* links: a target of 1..4095 bytes without a control byte; a path once, not a folder */
    refused("{\"wcodec_manifest\": 1, \"files\": [{\"path\": \"a\", \"link\": \"\"}]}", "\"link\"");
    refused("{\"wcodec_manifest\": 1, \"files\": [{\"path\": \"a\", \"link\": \"x\\ty\"}]}", "\"link\"");
    refused("{\"wcodec_manifest\": 1, \"files\": [{\"path\": \"a\", \"link\": \"x\\u007fy\"}]}", "\"link\"");
    refused("{\"wcodec_manifest\": 1, \"files\": [{\"path\": \"a\", \"link\": 5}]}", "\"link\"");
    refused("{\"wcodec_manifest\": 1, \"files\": [{\"path\": \"a\", \"link\": \"x\"}, {\"path\": \"a\", \"size\": 2}]}",
            "listed twice");
    refused("{\"wcodec_manifest\": 1, \"files\": [{\"path\": \"a\", \"link\": \"x\"}, {\"path\": \"a/b\", \"link\": \"y\"}]}",
            "a file and a folder");
    char *longlink = malloc(4200);
    assert_non_null(longlink);
    for (size_t n = 4095; n <= 4096; n++) {
        int len = snprintf(longlink, 4200, "{\"wcodec_manifest\": 1, \"files\": [{\"path\": \"a\", \"link\": \"%0*d\"}]}",
                           (int)n, 0);
        wc_manifest *lm = NULL;
        assert_int_equal(wc_manifest_parse((const uint8_t *)longlink, (size_t)len, &lm, NULL),
                         n == 4095 ? WC_OK : WC_ERR_FORMAT);
        if (lm) assert_int_equal(strlen(lm->files[0].link), 4095);
        wc_manifest_free(lm);
    }
    free(longlink);
    wc_manifest *m = NULL;
    const char *ln = "{\"wcodec_manifest\": 1, \"files\": [{\"path\": \"s/m.safetensors\", \"mtime\": 7, "
                     "\"link\": \"../../blobs/3f2a\"}, {\"path\": \"blobs/3f2a.wcodec\", \"size\": 9}]}";
    assert_int_equal(wc_manifest_parse((const uint8_t *)ln, strlen(ln), &m, NULL), WC_OK);
    assert_int_equal(m->n, 2);
    assert_string_equal(m->files[1].path, "s/m.safetensors");
    assert_string_equal(m->files[1].link, "../../blobs/3f2a");
    assert_int_equal(m->files[1].size, 16);
    assert_int_equal(m->files[1].mtime, 7);
    assert_null(m->files[0].link);
    wc_manifest_free(m);
    m = NULL;
    const char *good = "{\"wcodec_manifest\": 1, \"files\": [{\"path\": \"b c/d\", \"size\": 0}]}";
    assert_int_equal(wc_manifest_parse((const uint8_t *)good, strlen(good), &m, NULL), WC_OK);
    assert_string_equal(m->files[0].path, "b c/d");
    wc_manifest_free(m);
}

static const char *page1 =
    "<?xml version=\"1.0\"?><ListBucketResult><Name>b</Name><Prefix>m/</Prefix>"
    "<Contents><Key>m/</Key><Size>0</Size></Contents>"
    "<Contents><Key>m/a&amp;b.wcodec</Key><LastModified>2026-11-24T07:22:47.000Z</LastModified>"
    "<ETag>&quot;e1&quot;</ETag><Size>1234</Size></Contents>"
    "<Contents><Key>m/sub/c.json</Key><Size>5</Size></Contents>"
    "<Contents><Key>m/../escape</Key><Size>5</Size></Contents>"
    "<Contents><Key>other/x</Key><Size>5</Size></Contents>"
    "<IsTruncated>true</IsTruncated><NextContinuationToken>tok+/=</NextContinuationToken>"
    "</ListBucketResult>";

static void test_list_pages(void **state) {
    (void)state;
    wc_manifest *m = NULL;
    char *next = NULL;
    wc_error err = {0};
    assert_int_equal(wcnet_parse_list_page(page1, strlen(page1), "m/", &m, &next, &err), WC_OK);
    assert_string_equal(next, "tok+/=");
    free(next);
    /* the folder marker, the escape and the key outside the prefix are skipped */
    assert_int_equal(m->n, 2);
    assert_string_equal(m->files[0].path, "a&b.wcodec");
    assert_int_equal(m->files[0].size, 1234);
    assert_int_equal(m->files[0].mtime, 1795504967);
    assert_string_equal(m->files[1].path, "sub/c.json");
    const char *last = "<ListBucketResult><Contents><Key>m/z</Key><Size>7</Size></Contents>"
                       "<IsTruncated>false</IsTruncated></ListBucketResult>";
    assert_int_equal(wcnet_parse_list_page(last, strlen(last), "m/", &m, &next, &err), WC_OK);
    assert_null(next);
    assert_int_equal(m->n, 3);
    assert_int_equal(wc_manifest_check(m, &err), WC_OK);
    wc_manifest_free(m);

    m = NULL;
    const char *lost = "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>";
    assert_int_equal(wcnet_parse_list_page(lost, strlen(lost), "", &m, &next, &err), WC_ERR_FORMAT);
    wc_manifest_free(m);
    m = NULL;
    const char *error = "<Error><Code>AccessDenied</Code></Error>";
    assert_int_equal(wcnet_parse_list_page(error, strlen(error), "", &m, &next, &err), WC_ERR_FORMAT);
    assert_null(m);
}

static void test_credentials(void **state) {
    (void)state;
    const char *text = "# comment\n[default]\naws_access_key_id=AK1\naws_secret_access_key = SK1 \n"
                       "\n[ other ]\r\n; comment\naws_access_key_id\t= AK2\r\naws_secret_access_key=SK2\r\n"
                       "aws_session_token = TOK\n[partial]\naws_access_key_id=AK3\n";
    char k[64], s[64], t[64];
    assert_int_equal(wcnet_parse_credentials(text, "default", k, sizeof k, s, sizeof s, t, sizeof t), 0);
    assert_string_equal(k, "AK1");
    assert_string_equal(s, "SK1");
    assert_string_equal(t, "");
    assert_int_equal(wcnet_parse_credentials(text, "other", k, sizeof k, s, sizeof s, t, sizeof t), 0);
    assert_string_equal(k, "AK2");
    assert_string_equal(s, "SK2");
    assert_string_equal(t, "TOK");
    assert_int_equal(wcnet_parse_credentials(text, "partial", k, sizeof k, s, sizeof s, t, sizeof t), -1);
    assert_int_equal(wcnet_parse_credentials(text, "missing", k, sizeof k, s, sizeof s, t, sizeof t), -1);
}

static void fill(uint8_t *b, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)(i * 31 + seed * 7 + (i >> 9));
}

static uint64_t files_bytes(const char *dir) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "find '%s' -type f -printf '%%s\\n' | awk '{s+=$1} END {print s+0}'", dir);
    FILE *p = popen(cmd, "r");
    unsigned long long v = 0;
    assert_int_equal(fscanf(p, "%llu", &v), 1);
    pclose(p);
    return v;
}

static void test_disk_cache(void **state) {
    (void)state;
    char *d = tmpdir();
    enum { N = 40000 };
    uint8_t *in = malloc(N), *out = malloc(N);
    wcnet_cache *c;
    wc_error err = {0};
    assert_int_equal(wcnet_cache_open(d, 100000, &c, &err), WC_OK);
    assert_int_equal(wcnet_cache_get(c, "obj#v1", 0, out, N), 0);
    for (unsigned t = 0; t < 2; t++) {
        fill(in, N, t);
        wcnet_cache_put(c, "obj#v1", t, in, N);
    }
    fill(in, N, 1);
    assert_int_equal(wcnet_cache_get(c, "obj#v1", 1, out, N), 1);
    assert_memory_equal(in, out, N);
    assert_int_equal(wcnet_cache_has(c, "obj#v2", 1), 0); /* another version of the object */
    assert_int_equal(wcnet_cache_get(c, "obj#v1", 1, out, N - 1), 0); /* not the length asked */
    assert_int_equal(wcnet_cache_has(c, "obj#v1", 1), 0);             /* ... and dropped */
    /* a third entry passes the budget: the least recently used goes */
    fill(in, N, 2);
    wcnet_cache_put(c, "obj#v1", 2, in, N);
    fill(in, N, 3);
    wcnet_cache_put(c, "obj#v1", 3, in, N);
    assert_true(files_bytes(d) <= 100000);
    assert_int_equal(wcnet_cache_has(c, "obj#v1", 0), 0);
    assert_int_equal(wcnet_cache_has(c, "obj#v1", 3), 1);
    wcnet_cache_stats st;
    wcnet_cache_get_stats(c, &st);
    assert_true(st.evicted >= 1);
    assert_true(st.bytes <= 100000);
    wcnet_cache_close(c);

    /* kept across opens; a damaged entry is dropped on use and counted */
    assert_int_equal(wcnet_cache_open(d, 100000, &c, &err), WC_OK);
    assert_int_equal(wcnet_cache_has(c, "obj#v1", 3), 1);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "for f in $(find '%s' -type f ! -name '.*'); do printf X | dd of=$f bs=1 seek=30000 conv=notrunc 2>/dev/null; done", d);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(wcnet_cache_get(c, "obj#v1", 3, out, N), 0);
    wcnet_cache_get_stats(c, &st);
    assert_int_equal(st.bad, 1);
    assert_int_equal(wcnet_cache_has(c, "obj#v1", 3), 0);
    wcnet_cache_close(c);
    /* a budget smaller than what is there: trimmed at open */
    assert_int_equal(wcnet_cache_open(d, 10, &c, &err), WC_OK);
    assert_int_equal(files_bytes(d), 0);
    wcnet_cache_close(c);
    assert_int_equal(wcnet_cache_open("/proc/nope", 10, &c, &err), WC_ERR_IO);
    free(in);
    free(out);
    rm_rf(d);
    free(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_manifest_lists_files_and_links),
        cmocka_unit_test(test_manifest_reuses_checksums),
        cmocka_unit_test(test_manifest_refuses_bad_input),
        cmocka_unit_test(test_list_pages),
        cmocka_unit_test(test_credentials),
        cmocka_unit_test(test_disk_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
