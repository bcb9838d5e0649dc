/* root.c - a remote root, opened and listed: an HTTP(S) folder (its wcodec-manifest.json) or
 * an S3 prefix (s3.c's signing and ListObjectsV2), both over http.c's transport. The one place
 * that tells the two apart, so that the transport does not call back into S3. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net_internal.h"

/* "http://user:pw@host/x" -> "http://host/x" */
static char *strip_userinfo(const char *url) {
    const char *scheme = strstr(url, "://");
    const char *host = scheme ? scheme + 3 : url;
    const char *slash = strchr(host, '/'), *at = strchr(host, '@');
    char *out;
    if (at && (!slash || at < slash)) {
        if (asprintf(&out, "%.*s%s", (int)(host - url), url, at + 1) < 0) return NULL;
        return out;
    }
    return strdup(url);
}

static void global_init(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

wc_status wcnet_open(const char *url, const wcnet_opts *opts, wcnet **out, wc_error *err) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, global_init);
    wcnet *n = calloc(1, sizeof *n);
    if (!n) return wc_error_set(err, WC_ERR_NOMEM, "out of memory");
    if (opts) n->o = *opts;
    if (!n->o.connections) n->o.connections = 8;
    if (!n->o.connect_timeout) n->o.connect_timeout = 10;
    if (!n->o.stall_timeout) n->o.stall_timeout = 15;
    if (!n->o.retry_time) n->o.retry_time = 30;
    n->o.s3_endpoint = n->o.s3_region = n->o.ca_file = NULL; /* not kept: the caller's strings */
    if (opts && opts->ca_file && !(n->ca_file = strdup(opts->ca_file))) {
        wcnet_close(n);
        return wc_error_set(err, WC_ERR_NOMEM, "out of memory");
    }
    pthread_mutex_init(&n->lock, NULL);
    pthread_cond_init(&n->cond, NULL);
    wc_status st = WC_OK;
    if (!(n->idle = calloc(n->o.connections, sizeof *n->idle))) {
        st = wc_error_set(err, WC_ERR_NOMEM, "out of memory");
    } else if (!strncmp(url, "s3://", 5)) {
        n->s3 = 1;
        wcnet_opts o = opts ? *opts : (wcnet_opts){0};
        n->o.s3_endpoint = o.s3_endpoint;
        n->o.s3_region = o.s3_region;
        st = wcnet_s3_setup(n, url, err);
        n->o.s3_endpoint = n->o.s3_region = NULL;
    } else if (!strncmp(url, "http://", 7) || !strncmp(url, "https://", 8)) {
        size_t len = strlen(url);
        if (asprintf(&n->base, "%s%s", url, len && url[len - 1] == '/' ? "" : "/") < 0) n->base = NULL;
        n->display = n->base ? strip_userinfo(n->base) : NULL;
        if (!n->base || !n->display) st = wc_error_set(err, WC_ERR_NOMEM, "out of memory");
    } else {
        st = wc_error_set(err, WC_ERR_ARG, "%s: not an http://, https:// or s3:// URL", url);
    }
    if (st != WC_OK) {
        wcnet_close(n);
        return st;
    }
    *out = n;
    return WC_OK;
}

void wcnet_close(wcnet *n) {
    if (!n) return;
    for (unsigned i = 0; i < n->n_idle; i++) curl_easy_cleanup(n->idle[i]);
    free(n->idle);
    free(n->base);
    free(n->display);
    free(n->s3_prefix);
    free(n->s3_list_url);
    free(n->ca_file);
    if (n->userpwd) {
        memset(n->userpwd, 0, strlen(n->userpwd));
        free(n->userpwd);
    }
    free(n->token_header);
    pthread_mutex_destroy(&n->lock);
    pthread_cond_destroy(&n->cond);
    free(n);
}

/* The root's wcodec-manifest.json, parsed; 0 or a negative errno. */
static int fetch_manifest(wcnet *n, wc_manifest **out, wc_error *err) {
    char *url = NULL, *what = NULL;
    uint8_t *body = NULL;
    size_t len = 0;
    int rc = -ENOMEM;
    if (asprintf(&url, "%s" WC_MANIFEST_NAME, n->base) >= 0 &&
        asprintf(&what, "%s" WC_MANIFEST_NAME, n->display) >= 0)
        rc = wcnet_fetch(n, url, what, 0, 0, NULL, &body, &len, 256u << 20, NULL, err);
    if (rc == 0 && wc_manifest_parse(body, len, out, err) != WC_OK) rc = -EIO;
    free(body);
    free(url);
    free(what);
    return rc;
}

static int cmp_path(const void *a, const void *b) {
    return strcmp(((const wc_manifest_entry *)a)->path, ((const wc_manifest_entry *)b)->path);
}

/* 1 if `path` is a link of `links` (a manifest, sorted) or lies under one. */
static int under_link(const wc_manifest *links, const char *path) {
    char prefix[4097];
    for (const char *s = strchr(path, '/');; s = strchr(s + 1, '/')) {
        snprintf(prefix, sizeof prefix, "%.*s", s ? (int)(s - path) : (int)strlen(path), path);
        wc_manifest_entry key = {.path = prefix};
        const wc_manifest_entry *e = bsearch(&key, links->files, links->n, sizeof key, cmp_path);
        if (e && e->link) return 1;
        if (!s) return 0;
    }
}

/* An object store keeps no symlinks: a tree uploaded with its manifest gets them from there.
 * The objects stay as listed, but for those at a link's path or under it, copies made by a tool
 * that followed the link when it uploaded the tree (aws s3 sync does): the link stands for them. */
static int add_links(wcnet *n, wc_manifest *m, wc_error *err) {
    wc_manifest *links = NULL;
    int rc = fetch_manifest(n, &links, err);
    if (rc) return rc;
    size_t n_links = 0, w = 0;
    for (size_t i = 0; i < links->n; i++) n_links += links->files[i].link != NULL;
    wc_manifest_entry *v = n_links ? realloc(m->files, (m->n + n_links) * sizeof *v) : NULL;
    if (v) {
        m->files = v;
        for (size_t i = 0; i < m->n; i++) {
            if (under_link(links, v[i].path)) free(v[i].path);
            else v[w++] = v[i];
        }
        for (size_t i = 0; i < links->n; i++)
            if (links->files[i].link) v[w++] = links->files[i], links->files[i] = (wc_manifest_entry){0};
        m->n = w;
        rc = wc_manifest_check(m, err) == WC_OK ? 0 : -EIO;
    } else if (n_links) {
        rc = -ENOMEM;
        wc_error_set(err, WC_ERR_NOMEM, "out of memory");
    }
    wc_manifest_free(links);
    return rc;
}

int wcnet_list(wcnet *n, wc_manifest **out, wc_error *err) {
    if (!n->s3) {
        int rc = fetch_manifest(n, out, err);
        if (rc == -ENOENT)
            wc_error_set(err, WC_ERR_IO, "%s: no " WC_MANIFEST_NAME " there (write one with 'wcodec manifest DIR')",
                         n->display);
        return rc;
    }
    int rc = wcnet_s3_list(n, out, err);
    wc_manifest_entry key = {.path = WC_MANIFEST_NAME};
    if (rc == 0 && (*out)->n && bsearch(&key, (*out)->files, (*out)->n, sizeof key, cmp_path) &&
        (rc = add_links(n, *out, err)) != 0) {
        wc_manifest_free(*out);
        *out = NULL;
    }
    return rc;
}
