/* net_internal.h - what root.c, http.c, s3.c and url_source.c share: root.c opens and lists
 * (HTTP or S3), s3.c signs and lists S3, both over http.c's transport; none calls back up. */
#ifndef WCNET_INTERNAL_H
#define WCNET_INTERNAL_H

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>

#include "wcnet.h"

struct wcnet {
    int s3;
    char *base;     /* objects' URLs are base + encoded path */
    char *display;  /* the root for messages: no credentials */
    char *s3_prefix; /* S3: the key prefix ("" or ending in '/') */
    char *s3_list_url; /* S3: the bucket's URL, for ListObjectsV2 */
    char sigv4[96];    /* S3: "aws:amz:REGION:s3" */
    char *userpwd;     /* S3: "key:secret" */
    char *token_header; /* S3: "x-amz-security-token: ..." or NULL */
    wcnet_opts o;
    char *ca_file;     /* or NULL */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    CURL **idle;       /* kept-alive handles not in use */
    unsigned n_idle, in_use;
    atomic_int failing; /* the last request failed for good and none has worked since */
    atomic_uint_fast64_t requests, bytes, retries, failures;
};

/* s3.c */
wc_status wcnet_s3_setup(wcnet *n, const char *url, wc_error *err);
int wcnet_s3_list(wcnet *n, wc_manifest **out, wc_error *err);

/* http.c: one GET of url (len bytes at off; or the whole object into a malloc'd *whole of at
 * most max_whole bytes when whole != NULL), retried; 0 or -errno as wcnet.h says. */
int wcnet_fetch(wcnet *n, const char *url, const char *what, uint64_t off, size_t len, void *buf,
                uint8_t **whole, size_t *whole_len, size_t max_whole, wcnet_version *ver,
                wc_error *err);
/* object_source.c: the source closes n with itself, and says `concurrency` reads are worth having
 * in flight (an object opened by its URL alone, wcnet_source_open). */
void wcnet_object_source_own(wc_source *s, unsigned concurrency);
/* Appends s percent-encoded (all but unreserved characters, and '/' when keep_slash). */
char *wcnet_encode(const char *s, int keep_slash);

#endif
