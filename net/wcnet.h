/*
 * wcnet.h - where remote container bytes come from: byte ranges of objects under an HTTP(S)
 * URL or an S3 prefix (libcurl), and an on-disk cache of what was fetched.
 *
 * Conventions as in wcodec.h: wc_error messages (one line, naming the URL, never a
 * credential), caller-owned outputs. Calls that move bytes return 0 or a negative errno:
 *   -ENOENT  the server said 404          -EACCES  it said 401 or 403
 *   -ESTALE  the object is no longer the version pinned (412, another ETag or size)
 *   -ERANGE  the object (not yet pinned) ends before the range asked for
 *   -EIO     anything else, once retries are spent (5xx, a refused or stalled connection)
 * A wcnet may be used from many threads at once; at most `connections` requests are in flight.
 */
#ifndef WCNET_H
#define WCNET_H

#include <stddef.h>
#include <stdint.h>

#include "wcodec.h"

typedef struct wcnet wcnet;
typedef struct wcnet_cache wcnet_cache; /* the disk cache, below */

typedef struct {
    unsigned connections;     /* requests in flight at once, each on a kept-alive connection; 0 = 8 */
    unsigned connect_timeout; /* seconds to connect; 0 = 10 */
    unsigned stall_timeout;   /* seconds a transfer may go without a byte; 0 = 15 */
    unsigned retry_time;      /* seconds during which a failed request (5xx, 429, a connection
                               * error) is retried, with backoff 0.1 s doubling to 5 s; 0 = 30.
                               * While the server is failing, new requests try once: a server
                               * gone costs each read one attempt, not the whole retry time */
    const char *s3_endpoint;  /* "http://127.0.0.1:9000": path-style requests there; NULL = AWS */
    const char *s3_region;    /* NULL: $AWS_REGION, $AWS_DEFAULT_REGION, else us-east-1 */
    const char *ca_file;      /* PEM certificates to verify servers with, instead of the
                               * system's (a private CA); NULL: the system's */
} wcnet_opts;

/*
 * Opens a remote root: "http://host/dir/", "https://...", or "s3://bucket/prefix". For S3 the
 * credentials are read now: $AWS_ACCESS_KEY_ID, $AWS_SECRET_ACCESS_KEY (and
 * $AWS_SESSION_TOKEN), else the [$AWS_PROFILE or default] section of
 * $AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials. TLS certificates are always verified.
 * WC_ERR_ARG for a URL of another kind or S3 without credentials. No request is made.
 */
wc_status wcnet_open(const char *url, const wcnet_opts *opts, wcnet **out, wc_error *err);
void wcnet_close(wcnet *n);
/* The root as logs may show it: no user:password@ part. */
const char *wcnet_display_url(const wcnet *n);

/*
 * Lists the root as a manifest (wcodec.h; xxh3 is 0 where the source gives none): for S3 by
 * ListObjectsV2 under the prefix (keys ending in '/' are folder markers and skipped), and where
 * the prefix holds a wcodec-manifest.json, one GET more for the links it lists (an object store
 * keeps none; objects at a link's path or under it, copies of what it points to, give way to
 * it); for HTTP by fetching the root's wcodec-manifest.json. 0 or a negative errno, as above.
 */
int wcnet_list(wcnet *n, wc_manifest **out, wc_error *err);

/* What pins an object to the version first seen. Zeroed: not pinned yet. */
typedef struct {
    char etag[128];  /* as the server sent it, quotes included; "" if it sends none */
    uint64_t size;   /* the object's whole size */
    int pinned;
} wcnet_version;

/*
 * Reads len bytes at `off` of the object at `path` (relative to the root) into buf, with one
 * ranged GET (retried as wcnet_opts says). The first read through an unpinned *ver pins it
 * (ETag and size from the answer); later reads send If-Match and check the answer against it:
 * -ESTALE when the object was replaced. A short object is -EIO. ver may be NULL.
 */
int wcnet_get(wcnet *n, const char *path, uint64_t off, size_t len, void *buf, wcnet_version *ver,
              wc_error *err);

/* ---- one object as a container source (wcodec.h's wc_source) ---- */

/*
 * Opens the object at `url` ("https://host/dir/model.wcodec", "s3://bucket/prefix/model.wcodec")
 * as a source, pinned to the version its first read sees: a later read of a replaced object is
 * an error naming the URL, never bytes of another version. Opening makes one GET (the 64-byte
 * header: size and ETag); once its container is open the source fetches tiles in runs of up to
 * 4 MiB ($WCODEC_FETCH_SIZE) within the range a reader advised (wc_container_read_range_mt
 * advises its range), with
 * opts->connections (8) reads in flight, and as many prefetchers fetching the advised tiles
 * ahead of the readers (at most 32 MiB, or 4 runs, ahead); with $WCODEC_DISK_CACHE=DIR (at most
 * $WCODEC_DISK_CACHE_SIZE, default 10G) every tile and the tables are kept there, shared by every
 * object the process opens. opts NULL: wcnet_opts_from_env. A 404, 403, an unreachable server: WC_ERR_IO with the URL and why.
 */
wc_status wcnet_source_open(const char *url, const wcnet_opts *opts, wc_source **out, wc_error *err);
/* Options from the environment, as the AWS CLI reads them: the S3 endpoint from
 * $AWS_ENDPOINT_URL_S3 or $AWS_ENDPOINT_URL (an S3-compatible store; unset: AWS), the region
 * from $AWS_REGION or $AWS_DEFAULT_REGION; a private CA's PEM file from $WCODEC_CA_FILE;
 * $WCODEC_RETRY_TIME and $WCODEC_STALL_TIMEOUT (seconds) for retry_time and stall_timeout;
 * $WCODEC_CONNECTIONS (1-64) for connections. The
 * strings are the environment's (valid while it is unchanged). */
void wcnet_opts_from_env(wcnet_opts *o);
/*
 * An object of a mounted root as a source, fetching tiles in runs (the mount's read path):
 * `key` under n's root, pinned to *ver, its first prefix_len bytes (header and tables, fetched
 * or from the disk cache) given, tiles kept in `disk` (or NULL) under cache_id, runs of at most
 * fetch_size bytes. n must outlive the source. Then open the container on it
 * (wc_container_open_source, which reads the tables from the prefix and binds the source to the
 * container): from then on a whole tile's read is served from the disk cache, from payloads an
 * earlier run staged, or by a GET of it and of the tiles after it within what
 * wc_container_advise named.
 */
wc_status wcnet_object_source(wcnet *n, const char *key, const wcnet_version *ver, const uint8_t *prefix,
                              size_t prefix_len, wcnet_cache *disk, const char *cache_id, size_t fetch_size,
                              wc_source **out, wc_error *err);
wc_status wcnet_object_source_bind(wc_source *s, const wc_container *c, wc_error *err);

/* The folder at `url` ("https://host/model/": its wcodec-manifest.json; "s3://bucket/prefix":
 * ListObjectsV2) as a manifest, with the environment's options. Free with wc_manifest_free. */
wc_status wcnet_list_folder(const char *url, wc_manifest **out, wc_error *err);
/* The whole object at `url` (a config.json) in a malloc'd *out of *len bytes (free with
 * wcnet_free); WC_ERR_IO if it is max bytes or more, or cannot be fetched (the URL named). */
wc_status wcnet_fetch_object(const char *url, size_t max, uint8_t **out, size_t *len, wc_error *err);
void wcnet_free(void *p);
/* Makes wc_source_open (and so wc_container_open, and every tool built on it) open http://,
 * https:// and s3:// names with wcnet_source_open and the environment's options. */
void wcnet_register_urls(void);

/* Counters for the daemon's stats file. */
typedef struct {
    uint64_t requests, bytes, retries, failures;
} wcnet_stats;
void wcnet_get_stats(const wcnet *n, wcnet_stats *out);

/* ---- the disk cache of fetched tile payloads ---- */


/*
 * Opens (creating) the cache directory `dir`, holding at most `budget` bytes: the oldest used
 * entries are deleted past it. Entries are kept across mounts, and may be shared by daemons
 * (files are written whole and renamed into place). Each is checked on use (its length and
 * its xxh3-64): a damaged one is deleted and reads as a miss.
 */
wc_status wcnet_cache_open(const char *dir, uint64_t budget, wcnet_cache **out, wc_error *err);
void wcnet_cache_close(wcnet_cache *c);
/* `object` names one version of one object (URL and ETag): a replaced object misses. */
int wcnet_cache_has(wcnet_cache *c, const char *object, uint32_t tile);
/* 1 and len bytes in buf on a checked hit, 0 on a miss. */
int wcnet_cache_get(wcnet_cache *c, const char *object, uint32_t tile, void *buf, size_t len);
/* The same for an entry of unknown length: 1 and a malloc'd *out of *len bytes on a checked hit. */
int wcnet_cache_get_alloc(wcnet_cache *c, const char *object, uint32_t tile, uint8_t **out, size_t *len);
/* Stores a copy; a failure (a full disk) only loses the entry. */
void wcnet_cache_put(wcnet_cache *c, const char *object, uint32_t tile, const void *buf, size_t len);
typedef struct {
    uint64_t hits, misses, bad, bytes, entries, evicted;
} wcnet_cache_stats;
void wcnet_cache_get_stats(wcnet_cache *c, wcnet_cache_stats *out);

/* ---- parsers of server answers (internal; exposed for the fuzzers and unit tests) ---- */

/* One page of a ListObjectsV2 answer: appends keys under `prefix` (stripped) to *m (created
 * if NULL); *next receives a malloc'd continuation token, or NULL on the last page. */
wc_status wcnet_parse_list_page(const char *xml, size_t len, const char *prefix, wc_manifest **m,
                                char **next, wc_error *err);
/* Reads key id, secret and session token (may stay "") of `profile` from an AWS credentials
 * file's text. 0 when both key and secret were found. */
int wcnet_parse_credentials(const char *text, const char *profile, char *key, size_t key_len,
                            char *secret, size_t secret_len, char *token, size_t token_len);

#endif
