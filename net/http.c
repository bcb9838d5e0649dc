/* http.c - the transport under every remote root: ranged GETs with libcurl, kept-alive handles,
 * retries with backoff, version pins. Knows nothing of S3 or of listings (root.c, s3.c). */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "net_internal.h"

#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 5000

char *wcnet_encode(const char *s, int keep_slash) {
    size_t n = strlen(s);
    char *out = malloc(3 * n + 1), *o = out;
    if (!out) return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~' || (keep_slash && *p == '/'))
            *o++ = (char)*p;
        else
            o += sprintf(o, "%%%02X", *p);
    }
    *o = 0;
    return out;
}

const char *wcnet_display_url(const wcnet *n) { return n->display; }

void wcnet_get_stats(const wcnet *n, wcnet_stats *out) {
    out->requests = atomic_load(&n->requests);
    out->bytes = atomic_load(&n->bytes);
    out->retries = atomic_load(&n->retries);
    out->failures = atomic_load(&n->failures);
}

/* A handle from the pool, waiting while `connections` are in use. */
static CURL *handle_take(wcnet *n) {
    pthread_mutex_lock(&n->lock);
    while (n->in_use >= n->o.connections) pthread_cond_wait(&n->cond, &n->lock);
    n->in_use++;
    CURL *h = n->n_idle ? n->idle[--n->n_idle] : NULL;
    pthread_mutex_unlock(&n->lock);
    return h ? h : curl_easy_init();
}

static void handle_give(wcnet *n, CURL *h) {
    pthread_mutex_lock(&n->lock);
    n->in_use--;
    if (h) n->idle[n->n_idle++] = h; /* keeps its connection for the next request */
    pthread_cond_signal(&n->cond);
    pthread_mutex_unlock(&n->lock);
}

typedef struct {
    uint8_t *buf;
    size_t cap, got, max; /* max: the growable buffer's limit (0: buf is the caller's) */
    int overflow;
} sink;

static size_t sink_write(char *data, size_t size, size_t nmemb, void *arg) {
    sink *s = arg;
    size_t n = size * nmemb;
    if (s->got + n > s->cap) {
        if (!s->max || s->got + n > s->max) {
            s->overflow = 1; /* more than asked: the server ignored the range */
            return CURL_WRITEFUNC_ERROR;
        }
        size_t cap = s->cap ? s->cap : 65536;
        while (cap < s->got + n) cap *= 2;
        uint8_t *b = realloc(s->buf, cap);
        if (!b) return CURL_WRITEFUNC_ERROR;
        s->buf = b;
        s->cap = cap;
    }
    memcpy(s->buf + s->got, data, n);
    s->got += n;
    return n;
}

static const char *header(CURL *h, const char *name) {
    struct curl_header *hd;
    return curl_easy_header(h, name, 0, CURLH_HEADER, -1, &hd) == CURLHE_OK ? hd->value : NULL;
}

enum { A_OK, A_RETRY, A_FAIL };

/* What one answer means; fills *rc (-errno) and err on A_FAIL/A_RETRY. */
static int judge(CURL *h, CURLcode cc, const sink *s, const char *what, uint64_t off, size_t len,
                 int ranged, wcnet_version *ver, int *rc, wc_error *err) {
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    *rc = -EIO;
    if (cc != CURLE_OK && !(cc == CURLE_WRITE_ERROR && s->overflow)) {
        wc_error_set(err, WC_ERR_IO, "%s: %s", what, curl_easy_strerror(cc));
        /* a certificate that does not verify will not verify on a retry */
        return cc == CURLE_PEER_FAILED_VERIFICATION || cc == CURLE_SSL_CACERT_BADFILE ||
                       cc == CURLE_URL_MALFORMAT || cc == CURLE_UNSUPPORTED_PROTOCOL
                   ? A_FAIL
                   : A_RETRY;
    }
    if (code == 404) *rc = -ENOENT;
    if (code == 401 || code == 403) *rc = -EACCES;
    if (code == 412 || (code == 416 && ver && ver->pinned)) *rc = -ESTALE;
    if (code >= 500 || code == 429) {
        wc_error_set(err, WC_ERR_IO, "%s: HTTP %ld", what, code);
        return A_RETRY;
    }
    if (*rc == -ESTALE)
        return wc_error_set(err, WC_ERR_IO, "%s: changed on the server since it was mounted", what), A_FAIL;
    if (code != 200 && code != 206)
        return wc_error_set(err, WC_ERR_IO, "%s: HTTP %ld", what, code), A_FAIL;
    uint64_t total = s->got, start = 0;
    const char *cr = header(h, "Content-Range");
    if (code == 206) {
        unsigned long long a, b, t;
        if (!cr || sscanf(cr, "bytes %llu-%llu/%llu", &a, &b, &t) != 3)
            return wc_error_set(err, WC_ERR_IO, "%s: a partial answer without a usable Content-Range", what), A_FAIL;
        start = a;
        total = t;
    } else if (ranged && (off != 0 || s->overflow)) {
        return wc_error_set(err, WC_ERR_IO, "%s: the server does not answer range requests", what), A_FAIL;
    }
    if (ranged && start == off && s->got < len && total == start + s->got && !(ver && ver->pinned)) {
        *rc = -ERANGE; /* the object ends before the range does */
        return wc_error_set(err, WC_ERR_IO, "%s: %" PRIu64 " bytes, shorter than the %zu asked for at %" PRIu64,
                            what, total, len, off), A_FAIL;
    }
    if (ranged && (start != off || s->got != len))
        return wc_error_set(err, WC_ERR_IO, "%s: asked for %zu bytes at %" PRIu64 ", got %zu at %" PRIu64
                            " (object of %" PRIu64 " bytes)", what, len, off, s->got, start, total), A_FAIL;
    const char *etag = header(h, "ETag");
    if (ver && ver->pinned && ((ver->etag[0] && etag && strcmp(etag, ver->etag)) || total != ver->size)) {
        *rc = -ESTALE;
        return wc_error_set(err, WC_ERR_IO, "%s: changed on the server since it was mounted", what), A_FAIL;
    }
    if (ver && !ver->pinned) {
        snprintf(ver->etag, sizeof ver->etag, "%s", etag && strlen(etag) < sizeof ver->etag ? etag : "");
        ver->size = total;
        ver->pinned = 1;
    }
    *rc = 0;
    return A_OK;
}

static void sleep_ms(unsigned ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int wcnet_fetch(wcnet *n, const char *url, const char *what, uint64_t off, size_t len, void *buf,
                uint8_t **whole, size_t *whole_len, size_t max_whole, wcnet_version *ver,
                wc_error *err) {
    if (!whole && len == 0) return 0;
    struct curl_slist *hdrs = NULL;
    char line[200], range[64];
    if (n->s3) {
        /* the SHA-256 of an empty body: what S3 wants signed for a GET */
        hdrs = curl_slist_append(hdrs, "x-amz-content-sha256: "
                                       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        if (n->token_header) hdrs = curl_slist_append(hdrs, n->token_header);
    }
    if (ver && ver->pinned && ver->etag[0]) {
        snprintf(line, sizeof line, "If-Match: %s", ver->etag);
        hdrs = curl_slist_append(hdrs, line);
    }
    snprintf(range, sizeof range, "%" PRIu64 "-%" PRIu64, off, off + len - 1);
    double start = now_s();
    unsigned delay = BACKOFF_FIRST_MS;
    int tries_left = atomic_load(&n->failing) ? 1 : 1 << 30;
    int rc = -EIO;
    for (;;) {
        CURL *h = handle_take(n);
        if (!h) {
            handle_give(n, NULL);
            rc = -ENOMEM;
            wc_error_set(err, WC_ERR_NOMEM, "%s: out of memory", what);
            break;
        }
        sink s = whole ? (sink){.max = max_whole} : (sink){.buf = buf, .cap = len};
        curl_easy_reset(h);
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, (long)n->o.connect_timeout);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, (long)n->o.stall_timeout);
        curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink_write);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        if (!whole) curl_easy_setopt(h, CURLOPT_RANGE, range);
        if (n->ca_file) curl_easy_setopt(h, CURLOPT_CAINFO, n->ca_file);
        if (n->s3) {
            curl_easy_setopt(h, CURLOPT_AWS_SIGV4, n->sigv4);
            curl_easy_setopt(h, CURLOPT_USERPWD, n->userpwd);
        } else {
            curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
            curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
            curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
        }
        atomic_fetch_add(&n->requests, 1);
        CURLcode cc = curl_easy_perform(h);
        int verdict = judge(h, cc, &s, what, off, len, !whole, ver, &rc, err);
        atomic_fetch_add(&n->bytes, s.got);
        /* a handle whose transfer broke off is not reused: its connection is in doubt */
        handle_give(n, cc == CURLE_OK ? h : (curl_easy_cleanup(h), NULL));
        if (verdict == A_OK) {
            atomic_store(&n->failing, 0);
            if (whole) {
                *whole = s.buf;
                *whole_len = s.got;
                s.buf = NULL;
            }
        }
        if (whole) free(s.buf);
        if (verdict != A_RETRY) break;
        if (--tries_left == 0 || now_s() - start + delay / 1000.0 > n->o.retry_time) {
            atomic_store(&n->failing, 1);
            break;
        }
        atomic_fetch_add(&n->retries, 1);
        sleep_ms(delay);
        delay = delay * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : delay * 2;
    }
    if (rc) atomic_fetch_add(&n->failures, 1);
    curl_slist_free_all(hdrs);
    return rc;
}

int wcnet_get(wcnet *n, const char *path, uint64_t off, size_t len, void *buf, wcnet_version *ver,
              wc_error *err) {
    char *enc = wcnet_encode(path, 1), *url = NULL, *what = NULL;
    int rc = -ENOMEM;
    if (enc && asprintf(&url, "%s%s", n->base, enc) >= 0 &&
        asprintf(&what, "%s%s", n->display, enc) >= 0)
        rc = wcnet_fetch(n, url, what, off, len, buf, NULL, NULL, 0, ver, err);
    else
        wc_error_set(err, WC_ERR_NOMEM, "out of memory");
    free(enc);
    free(url);
    free(what);
    return rc;
}
