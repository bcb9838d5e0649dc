/* url_source.c - URLs for every tool: an object opened by its URL alone (wcnet_source_open: its
 * own connections, its version pinned by a GET of its 64-byte header, then read as the mount
 * reads it: object_source.c, tiles fetched in runs within what readers advise, prefetched, kept
 * in the disk cache of $WCODEC_DISK_CACHE); folders listed and small objects fetched whole;
 * the opener wc_source_open uses for http://, https:// and s3:// names. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net_internal.h"
#include "wcnet.h"

#define FETCH_SIZE (4u << 20) /* the most one GET of tiles takes: 4 MiB measured a little faster than 8
                                * and 32 over a 200 MB/s link (docs/BENCHMARKS.md) */

void wcnet_opts_from_env(wcnet_opts *o) {
    memset(o, 0, sizeof *o);
    o->s3_endpoint = getenv("AWS_ENDPOINT_URL_S3");
    if (!o->s3_endpoint || !*o->s3_endpoint) o->s3_endpoint = getenv("AWS_ENDPOINT_URL");
    o->ca_file = getenv("WCODEC_CA_FILE");
    if (o->ca_file && !*o->ca_file) o->ca_file = NULL;
    const char *v;
    if ((v = getenv("WCODEC_RETRY_TIME")) && atoi(v) > 0) o->retry_time = (unsigned)atoi(v);
    if ((v = getenv("WCODEC_STALL_TIMEOUT")) && atoi(v) > 0) o->stall_timeout = (unsigned)atoi(v);
    if ((v = getenv("WCODEC_CONNECTIONS")) && atoi(v) > 0 && atoi(v) <= 64) o->connections = (unsigned)atoi(v);
}

/* The root (up to and with the last '/') and the object name after it, of an object URL. */
static wc_status split_url(const char *url, char **root, const char **key, wc_error *err) {
    const char *slash = strrchr(url, '/'), *scheme_end = strstr(url, "://");
    if (!scheme_end || !slash || slash < scheme_end + 3)
        return wc_error_set(err, WC_ERR_ARG, "%.300s: not an http://, https:// or s3:// URL", url);
    if (!(*root = strndup(url, (size_t)(slash - url) + 1))) return wc_error_set(err, WC_ERR_NOMEM, "out of memory");
    *key = slash + 1;
    return WC_OK;
}

static wcnet_cache *env_cache;
static wc_error env_cache_err;

static void open_env_cache(void) {
    const char *dir = getenv("WCODEC_DISK_CACHE"), *size = getenv("WCODEC_DISK_CACHE_SIZE");
    uint64_t budget = 10ull << 30;
    if (!dir || !*dir) return;
    if (size && *size && wc_parse_size(size, &budget) != 0) {
        wc_error_set(&env_cache_err, WC_ERR_ARG, "WCODEC_DISK_CACHE_SIZE=%.100s: not a size", size);
        return;
    }
    wcnet_cache_open(dir, budget, &env_cache, &env_cache_err);
}

wc_status wcnet_source_open(const char *url, const wcnet_opts *opts, wc_source **out, wc_error *err) {
    char *root = NULL;
    const char *key = "";
    const char *host = strstr(url, "://");
    if (!host || (!strncmp(url, "http", 4) && !strchr(host + 3, '/')) || !*(strrchr(url, '/') + 1))
        return wc_error_set(err, WC_ERR_ARG, "%.300s: not the URL of an object (http(s)://host/path/name or "
                            "s3://bucket/key)", url);
    wc_status st = split_url(url, &root, &key, err);
    if (st != WC_OK) return st;
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, open_env_cache);
    if (env_cache_err.code) return wc_error_set(err, env_cache_err.code, "%s", env_cache_err.msg);
    wcnet_opts env;
    if (!opts) wcnet_opts_from_env(&env);
    if (!opts) opts = &env;
    wcnet *n;
    st = wcnet_open(root, opts, &n, err);
    free(root);
    if (st != WC_OK) return st;
    /* a container's 64-byte header pins the version and tells the size */
    uint8_t head[64];
    wcnet_version ver = {0};
    wc_error e = {0};
    int rc = wcnet_get(n, key, 0, sizeof head, head, &ver, &e);
    if (rc == -ERANGE) wc_error_set(&e, WC_ERR_FORMAT, "%s%s: too short for a container", wcnet_display_url(n), key);
    if (rc != 0) {
        wcnet_close(n);
        return wc_error_set(err, e.code == WC_ERR_FORMAT ? e.code : WC_ERR_IO, "%s", e.msg);
    }
    /* the object as the mount reads it: tiles fetched in runs within what readers advise */
    uint64_t fetch = FETCH_SIZE;
    const char *fs = getenv("WCODEC_FETCH_SIZE");
    if (fs && *fs && (wc_parse_size(fs, &fetch) != 0 || fetch < (64u << 10) || fetch > (64u << 20))) {
        wcnet_close(n);
        return wc_error_set(err, WC_ERR_ARG, "WCODEC_FETCH_SIZE=%.100s: expected a size from 64K to 64M", fs);
    }
    char cache_id[1400];
    snprintf(cache_id, sizeof cache_id, "%s%s#%s#%llu", wcnet_display_url(n), key, ver.etag, (unsigned long long)ver.size);
    if ((st = wcnet_object_source(n, key, &ver, head, sizeof head, env_cache, cache_id, (size_t)fetch, out, err)) != WC_OK) {
        wcnet_close(n);
        return st;
    }
    wcnet_object_source_own(*out, opts->connections ? opts->connections : 8);
    (*out)->mode = 0644;
    return WC_OK;
}

wc_status wcnet_list_folder(const char *url, wc_manifest **out, wc_error *err) {
    wcnet_opts o;
    wcnet_opts_from_env(&o);
    wcnet *n;
    wc_status st = wcnet_open(url, &o, &n, err);
    if (st != WC_OK) return st;
    int rc = wcnet_list(n, out, err);
    wcnet_close(n);
    return rc ? (err && err->code ? err->code : WC_ERR_IO) : WC_OK;
}

wc_status wcnet_fetch_object(const char *url, size_t max, uint8_t **out, size_t *len, wc_error *err) {
    char *root = NULL;
    const char *key = "";
    wc_status st = split_url(url, &root, &key, err);
    if (st != WC_OK) return st;
    wcnet_opts o;
    wcnet_opts_from_env(&o);
    wcnet *n;
    st = wcnet_open(root, &o, &n, err);
    free(root);
    if (st != WC_OK) return st;
    char *enc = wcnet_encode(key, 1), *full = NULL, *what = NULL;
    int rc = -ENOMEM;
    if (enc && asprintf(&full, "%s%s", n->base, enc) >= 0 && asprintf(&what, "%s%s", wcnet_display_url(n), key) >= 0)
        rc = wcnet_fetch(n, full, what, 0, 0, NULL, out, len, max, NULL, err);
    else
        wc_error_set(err, WC_ERR_NOMEM, "out of memory");
    if (rc == 0 && *len >= max) {
        free(*out);
        *out = NULL;
        rc = -EFBIG;
        wc_error_set(err, WC_ERR_IO, "%s: larger than %zu bytes", what, max);
    }
    free(enc);
    free(full);
    free(what);
    wcnet_close(n);
    return rc ? (err && err->code ? err->code : WC_ERR_IO) : WC_OK;
}

void wcnet_free(void *p) { free(p); }

static wc_status open_url_from_env(const char *url, wc_source **out, wc_error *err) {
    return wcnet_source_open(url, NULL, out, err);
}

void wcnet_register_urls(void) { wc_source_set_url_opener(open_url_from_env); }
