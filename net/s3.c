/* s3.c - S3 roots: credentials, addressing (AWS virtual-hosted, or path-style at an endpoint),
 * ListObjectsV2. Requests are signed with AWS Signature V4 by libcurl (CURLOPT_AWS_SIGV4). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "net_internal.h"

#define FMT_FAIL(...) wc_error_set(err, WC_ERR_FORMAT, __VA_ARGS__)

static void copy_trimmed(char *dst, size_t cap, const char *s, size_t n) {
    while (n && (*s == ' ' || *s == '\t')) s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) n--;
    snprintf(dst, cap, "%.*s", (int)n, s);
}

int wcnet_parse_credentials(const char *text, const char *profile, char *key, size_t key_len,
                            char *secret, size_t secret_len, char *token, size_t token_len) {
    int in_profile = 0;
    key[0] = secret[0] = token[0] = 0;
    for (const char *line = text; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        char buf[1024];
        copy_trimmed(buf, sizeof buf, line, n);
        if (buf[0] == '[') {
            char *close = strchr(buf, ']');
            if (close) {
                char name[256];
                copy_trimmed(name, sizeof name, buf + 1, (size_t)(close - buf - 1));
                in_profile = !strcmp(name, profile);
            }
        } else if (in_profile && buf[0] != '#' && buf[0] != ';') {
            char *eq = strchr(buf, '=');
            if (eq) {
                char name[128];
                copy_trimmed(name, sizeof name, buf, (size_t)(eq - buf));
                const char *v = eq + 1;
                if (!strcmp(name, "aws_access_key_id")) copy_trimmed(key, key_len, v, strlen(v));
                else if (!strcmp(name, "aws_secret_access_key")) copy_trimmed(secret, secret_len, v, strlen(v));
                else if (!strcmp(name, "aws_session_token")) copy_trimmed(token, token_len, v, strlen(v));
            }
        }
        line = end ? end + 1 : NULL;
    }
    return key[0] && secret[0] ? 0 : -1;
}

static char *read_text(const char *path) {
    FILE *f = fopen(path, "re");
    if (!f) return NULL;
    char *buf = calloc(1, 1 << 16);
    if (buf) buf[fread(buf, 1, (1 << 16) - 1, f)] = 0;
    fclose(f);
    return buf;
}

static int load_credentials(char *key, size_t kl, char *secret, size_t sl, char *token, size_t tl) {
    const char *k = getenv("AWS_ACCESS_KEY_ID"), *s = getenv("AWS_SECRET_ACCESS_KEY");
    if (k && *k && s && *s) {
        const char *t = getenv("AWS_SESSION_TOKEN");
        snprintf(key, kl, "%s", k);
        snprintf(secret, sl, "%s", s);
        snprintf(token, tl, "%s", t ? t : "");
        return 0;
    }
    const char *file = getenv("AWS_SHARED_CREDENTIALS_FILE"), *home = getenv("HOME");
    const char *profile = getenv("AWS_PROFILE");
    char *path = NULL;
    if (file && *file) path = strdup(file);
    else if (home && asprintf(&path, "%s/.aws/credentials", home) < 0) path = NULL;
    char *text = path ? read_text(path) : NULL;
    int rc = text ? wcnet_parse_credentials(text, profile && *profile ? profile : "default", key, kl,
                                            secret, sl, token, tl)
                  : -1;
    if (text) {
        memset(text, 0, strlen(text));
        free(text);
    }
    free(path);
    return rc;
}

wc_status wcnet_s3_setup(wcnet *n, const char *url, wc_error *err) {
    const char *bucket = url + 5, *slash = strchr(bucket, '/');
    size_t blen = slash ? (size_t)(slash - bucket) : strlen(bucket);
    const char *prefix = slash ? slash + 1 : "";
    if (blen == 0 || blen > 63) return wc_error_set(err, WC_ERR_ARG, "%s: no bucket name", url);
    for (size_t i = 0; i < blen; i++)
        if (!((bucket[i] >= 'a' && bucket[i] <= 'z') || (bucket[i] >= '0' && bucket[i] <= '9') ||
              bucket[i] == '-' || bucket[i] == '.'))
            return wc_error_set(err, WC_ERR_ARG, "%s: not a valid bucket name", url);
    const char *region = n->o.s3_region;
    if (!region || !*region) region = getenv("AWS_REGION");
    if (!region || !*region) region = getenv("AWS_DEFAULT_REGION");
    if (!region || !*region) region = "us-east-1";
    if (strlen(region) > 40) return wc_error_set(err, WC_ERR_ARG, "s3 region %s: too long", region);
    snprintf(n->sigv4, sizeof n->sigv4, "aws:amz:%s:s3", region);
    char key[256], secret[256], token[4096];
    if (load_credentials(key, sizeof key, secret, sizeof secret, token, sizeof token) != 0)
        return wc_error_set(err, WC_ERR_ARG, "%s: no AWS credentials (set AWS_ACCESS_KEY_ID and "
                            "AWS_SECRET_ACCESS_KEY, or write ~/.aws/credentials)", url);
    int ok = asprintf(&n->userpwd, "%s:%s", key, secret) >= 0;
    memset(secret, 0, sizeof secret);
    if (!ok) n->userpwd = NULL;
    if (ok && token[0] && asprintf(&n->token_header, "x-amz-security-token: %s", token) < 0) ok = 0;
    size_t plen = strlen(prefix);
    ok = ok && asprintf(&n->s3_prefix, "%s%s", prefix, plen && prefix[plen - 1] != '/' ? "/" : "") >= 0;
    char *enc_prefix = ok ? wcnet_encode(n->s3_prefix, 1) : NULL;
    const char *ep = n->o.s3_endpoint;
    if (enc_prefix && ep && *ep) {
        /* an S3-compatible store: path-style, https://endpoint/bucket/key */
        size_t elen = strlen(ep);
        const char *sep = ep[elen - 1] == '/' ? "" : "/";
        ok = asprintf(&n->s3_list_url, "%s%s%.*s", ep, sep, (int)blen, bucket) >= 0 &&
             asprintf(&n->base, "%s%s%.*s/%s", ep, sep, (int)blen, bucket, enc_prefix) >= 0;
    } else if (enc_prefix) {
        ok = asprintf(&n->s3_list_url, "https://%.*s.s3.%s.amazonaws.com", (int)blen, bucket, region) >= 0 &&
             asprintf(&n->base, "%s/%s", n->s3_list_url, enc_prefix) >= 0;
    }
    ok = ok && enc_prefix && asprintf(&n->display, "s3://%.*s/%s", (int)blen, bucket, n->s3_prefix) >= 0;
    free(enc_prefix);
    /* display is "s3://bucket/prefix/"; messages append the encoded path, as for HTTP */
    return ok ? WC_OK : wc_error_set(err, WC_ERR_NOMEM, "out of memory");
}

/* ---- ListObjectsV2 ---- */

/* The text of the first <tag>...</tag> in [p, end), entities decoded, into a malloc'd string;
 * NULL if absent. *after receives where the element ends. */
static char *element(const char *p, const char *end, const char *tag, const char **after) {
    char open[64], close[64];
    snprintf(open, sizeof open, "<%s>", tag);
    snprintf(close, sizeof close, "</%s>", tag);
    const char *a = memmem(p, (size_t)(end - p), open, strlen(open));
    if (!a) return NULL;
    a += strlen(open);
    const char *b = memmem(a, (size_t)(end - a), close, strlen(close));
    if (!b) return NULL;
    if (after) *after = b + strlen(close);
    char *out = malloc((size_t)(b - a) + 1), *o = out;
    if (!out) return NULL;
    static const struct { const char *ent; char c; } ents[] = {
        {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    while (a < b) {
        size_t k = 0;
        for (; k < 5; k++) {
            size_t el = strlen(ents[k].ent);
            if ((size_t)(b - a) >= el && !memcmp(a, ents[k].ent, el)) {
                *o++ = ents[k].c;
                a += el;
                break;
            }
        }
        if (k == 5) {
            unsigned long v;
            int used = 0;
            if (*a == '&' && (sscanf(a, "&#x%lx;%n", &v, &used) == 1 || sscanf(a, "&#%lu;%n", &v, &used) == 1) &&
                used > 0 && a + used <= b && v > 0 && v < 128) {
                *o++ = (char)v; /* keys in a model folder are ASCII; others stay escaped */
                a += used;
            } else {
                *o++ = *a++;
            }
        }
    }
    *o = 0;
    return out;
}

static int64_t parse_iso_time(const char *s) {
    struct tm tm = {0};
    if (!s || !strptime(s, "%Y-%m-%dT%H:%M:%S", &tm)) return 0;
    return (int64_t)timegm(&tm);
}

wc_status wcnet_parse_list_page(const char *xml, size_t len, const char *prefix, wc_manifest **m,
                                char **next, wc_error *err) {
    const char *end = xml + len;
    if (!memmem(xml, len, "<ListBucketResult", 17)) return FMT_FAIL("not a ListObjectsV2 answer");
    if (!*m && !(*m = calloc(1, sizeof **m))) return wc_error_set(err, WC_ERR_NOMEM, "out of memory");
    size_t plen = strlen(prefix), cap = (*m)->n;
    for (const char *p = xml, *after;; p = after) {
        const char *c = memmem(p, (size_t)(end - p), "<Contents>", 10);
        const char *ce = c ? memmem(c, (size_t)(end - c), "</Contents>", 11) : NULL;
        if (!ce) break;
        after = ce + 11;
        char *key = element(c, ce, "Key", NULL), *size = element(c, ce, "Size", NULL);
        char *mtime = element(c, ce, "LastModified", NULL), *stop = NULL;
        unsigned long long sz = size ? strtoull(size, &stop, 10) : 0;
        size_t klen = key ? strlen(key) : 0;
        /* keys outside the prefix, folder markers and names the mount cannot show are skipped */
        if (key && size && stop && !*stop && *size && sz < (1ull << 62) && klen > plen &&
            !strncmp(key, prefix, plen) && key[klen - 1] != '/' && wc_manifest_path_ok(key + plen)) {
            if ((*m)->n == cap) {
                cap = cap ? 2 * cap : 64;
                wc_manifest_entry *f = realloc((*m)->files, cap * sizeof *f);
                if (!f) cap = 0;
                else (*m)->files = f;
            }
            char *path = cap ? strdup(key + plen) : NULL;
            if (!path) {
                free(key), free(size), free(mtime);
                return wc_error_set(err, WC_ERR_NOMEM, "out of memory");
            }
            (*m)->files[(*m)->n++] = (wc_manifest_entry){.path = path, .size = sz, .mtime = parse_iso_time(mtime)};
        }
        free(key);
        free(size);
        free(mtime);
    }
    char *truncated = element(xml, end, "IsTruncated", NULL);
    *next = truncated && !strcmp(truncated, "true") ? element(xml, end, "NextContinuationToken", NULL) : NULL;
    int lost = truncated && !strcmp(truncated, "true") && !*next;
    free(truncated);
    return lost ? FMT_FAIL("a truncated listing without a continuation token") : WC_OK;
}

int wcnet_s3_list(wcnet *n, wc_manifest **out, wc_error *err) {
    wc_manifest *m = NULL;
    char *token = NULL, *prefix = wcnet_encode(n->s3_prefix, 0);
    int rc = prefix ? 0 : -ENOMEM;
    for (int page = 0; rc == 0 && (page == 0 || token); page++) {
        char *tok = token ? wcnet_encode(token, 0) : NULL, *url = NULL;
        /* parameters in sorted order: the signature's canonical query is sorted */
        if (asprintf(&url, "%s/?%s%s%slist-type=2&prefix=%s", n->s3_list_url, tok ? "continuation-token=" : "",
                     tok ? tok : "", tok ? "&" : "", prefix) < 0) url = NULL;
        free(tok);
        free(token);
        token = NULL;
        uint8_t *body = NULL;
        size_t len = 0;
        rc = url ? wcnet_fetch(n, url, n->display, 0, 0, NULL, &body, &len, 64u << 20, NULL, err) : -ENOMEM;
        if (rc == 0 && wcnet_parse_list_page((const char *)body, len, n->s3_prefix, &m, &token, err) != WC_OK)
            rc = -EIO;
        free(body);
        free(url);
    }
    free(token);
    free(prefix);
    if (rc == 0 && wc_manifest_check(m, err) != WC_OK) rc = -EIO;
    if (rc) {
        wc_manifest_free(m);
        return rc;
    }
    *out = m;
    return 0;
}
