/* wcfs.h - what the parts of the wcodecfs daemon share. */
#ifndef WCFS_H
#define WCFS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "wcindex.h"
#include "wcnet.h"
#include "wcodec.h"

/* A container presented as a .safetensors file. */
typedef struct {
    char *presented;      /* path under the mount, "/sub/x.safetensors" */
    char *real;           /* absolute path of the container */
    uint32_t id;          /* index in the registry; part of cache keys */
    uint32_t index_id;    /* file id in the LMDB index */
    uint64_t source_size; /* st_size of the presented file */
    uint64_t tables_checksum; /* of the version indexed at mount: the one this mount serves */
    pthread_mutex_t open_lock;
    wc_container *c;      /* opened on first open(2); NULL before, or if it failed */
    int open_failed;
    atomic_int index_doubted; /* the index gave a wrong tile once: logged, then not again */
    struct wcfs_rfile *r; /* a remote container (remote.c: its object key); NULL for a local one */
    atomic_int fetch_rc;  /* remote: the last payload read's result, for wcfs_log_result */
    int64_t mtime;        /* remote: from the listing */
    _Atomic(atomic_uint_fast64_t *) read_stamps; /* push.c: per chunk, the last read of it */
    uint64_t *in_page_cache; /* cache.c, under its lock: a bit a tile whose every page went to the
                                kernel's page cache (the daemon's readahead skips it) */
} wcfs_file;

typedef struct {
    atomic_uint_fast64_t bytes_served, bytes_decoded, reads, tiles_decoded_cpu, tiles_decoded_gpu;
    atomic_uint_fast64_t decode_ns_cpu, decode_ns_gpu, cache_hits, cache_misses, cache_waits;
    atomic_uint_fast64_t cache_evictions, cache_used_once, readahead_tiles, tile_errors, uncached_tiles;
    atomic_uint_fast64_t cache_bytes, cache_peak, push_bytes, push_errors, push_skipped;
    atomic_uint_fast64_t tables_from_disk; /* remote: containers whose tables the disk cache held */
    uint64_t index_reused, index_built, containers_failed;
} wcfs_stats;

typedef struct {
    /* options */
    char *src;             /* absolute */
    char *index_dir;
    uint64_t cache_size;
    unsigned readahead;    /* tiles decoded ahead of a sequential reader */
    uint64_t kernel_readahead; /* bytes: the mount's bdi read_ahead_kb, 0 = the kernel's */
    unsigned threads;      /* decode workers */
    uint64_t push;         /* bytes pushed into the page cache ahead of a sequential reader */
    unsigned push_threads;
    int gpu;               /* 1: gpu=on (auto and off decode on the CPU) */
    int gpu_active;        /* the daemon decodes on the GPU */
    unsigned gpu_min_batch; /* queued tiles that make a GPU batch */
    char gpu_name[320];
    uint64_t fetch_size;   /* remote: the most bytes one GET fetches */
    uint64_t disk_cache_size;
    char *disk_cache_dir;  /* remote: NULL = no disk cache */
    /* state */
    wcnet *net;            /* a remote root (SRC a URL); NULL: SRC a local directory */
    wcnet_cache *disk;
    wcfs_file *files;      /* sorted by presented path */
    size_t n_files;
    wc_index *index;
    struct wcfs_cache *cache;
    wcfs_stats stats;
} wcfs;

extern wcfs g_fs;

/* tree.c: the registry of containers */
int wcfs_scan(wcfs *fs);                                /* at mount; 0 or -1 (message printed) */
wcfs_file *wcfs_lookup(wcfs *fs, const char *presented); /* NULL: not a container */
int wcfs_file_open(wcfs_file *f);                        /* opens the container once; 0 / -errno */
void wcfs_sort_files(wcfs *fs);                          /* registry in presented order, ids set */
/* Calls add(arg, name) for each container presented directly in folder `dir` ("/" or "/a/b");
 * -1 as soon as add returns non-zero, else 0. */
int wcfs_list_files(wcfs *fs, const char *dir, int (*add)(void *, const char *), void *arg);
/* A tile's coded bytes, from the container file or the remote object. */
wc_status wcfs_file_read_payload(wcfs_file *f, uint32_t tile, uint8_t *buf, wc_error *err);

/* remote.c: SRC a URL. scan: lists the root, fetches every container's header and tables
 * (pinning its version), builds the tree; before daemonizing (0; or -1, said on stderr). */
typedef struct wcfs_rnode wcfs_rnode;
int wcfs_remote_scan(wcfs *fs);
void wcfs_remote_free(wcfs *fs);
int wcfs_remote_attr(const char *path, struct stat *st);  /* 0 / -ENOENT */
/* calls add(arg, name, DT_x) for each entry of folder `dir`; stops at a non-zero return */
int wcfs_remote_list(const char *dir, int (*add)(void *, const char *, unsigned char), void *arg);
wcfs_rnode *wcfs_remote_plain(const char *path);          /* a plain file, or NULL */
const char *wcfs_remote_link(const char *path);           /* a link's target, or NULL */
ssize_t wcfs_remote_read_plain(wcfs_rnode *n, char *buf, size_t size, off_t off); /* bytes or -errno */
/* The last tile a read of tiles first..last (with `ahead` more wanted) should decode, and
 * the window fetches may coalesce over. */

/* cache.c: the decoded-tile cache and its decode workers */
typedef struct wcfs_cache wcfs_cache;
typedef struct wcfs_entry wcfs_entry;
/* `workers` CPU decode threads, plus one GPU worker if gpu (the GPU must be open). */
wcfs_cache *wcfs_cache_new(wcfs *fs, uint64_t budget, unsigned workers, int gpu);
void wcfs_cache_free(wcfs_cache *c);
/* Returns the decoded tile (pinned until wcfs_cache_put), decoding it or waiting for the
 * decode already under way. 0, or -EIO for a tile that does not decode. */
int wcfs_cache_get(wcfs_cache *c, wcfs_file *f, uint32_t tile, const uint8_t **data,
                   wcfs_entry **ref);
/* Unpins; the caller gave the tile's bytes [from, from + handed) to the kernel's page cache
 * (handed 0 for O_DIRECT readers): once every page of the tile has gone there, the tile is freed. */
void wcfs_cache_put(wcfs_cache *c, wcfs_entry *ref, uint64_t from, uint64_t handed);
/* Pins the tiles of f covering bytes off..off+len, `tile` (the one holding byte off) first, at
 * most `max` of them: iov[k] is tile k's part of the range and refs[k] its pin. Sets *n to how
 * many were pinned and returns the bytes they cover: less than len when `max` ran out, or when a
 * tile failed (*rc is then its -errno; else 0). */
size_t wcfs_cache_pin_range(wcfs_cache *c, wcfs_file *f, uint32_t tile, uint64_t off, size_t len,
                            struct iovec *iov, wcfs_entry **refs, unsigned max, unsigned *n, int *rc);
/* Unpins n tiles pinned by wcfs_cache_pin_range; `handed`: their iov bytes went to the kernel's
 * page cache. */
void wcfs_cache_unpin_range(wcfs_cache *c, wcfs_entry **refs, const struct iovec *iov, unsigned n,
                            int handed);
/* Starts decoding tiles first..last in the background, except those cached or under way;
 * queued at once, so that the GPU can take them as one batch. */
void wcfs_cache_prefetch_range(wcfs_cache *c, wcfs_file *f, uint32_t first, uint32_t last);

/* gpu.c: the GPU backend (stubs that fail when the build has no CUDA) */
typedef struct {
    wcfs_file *f;
    uint32_t tile;
    uint8_t *out; /* src_size bytes */
    int ok;       /* set by wcfs_gpu_decode */
} wcfs_decode_req;
int wcfs_gpu_probe(char *msg, size_t len); /* at mount, before fork: 0 if a GPU can be used */
int wcfs_gpu_open(char *msg, size_t len);  /* in the daemon; msg gets the device or the reason */
void wcfs_gpu_close(void);
/* Decodes a batch (grouped by file) on the GPU, checksums included; sets each req's ok. */
void wcfs_gpu_decode(wcfs *fs, wcfs_decode_req *reqs, size_t n);

/* readahead.c: the kernel's read-ahead window on the mount. check: before daemonizing, finds
 * the bdi's read_ahead_kb file and checks that it can be written (0; or -1, said on stderr).
 * start: after the session loop starts, a thread writes it once INIT is done. */
int wcfs_readahead_check(const char *mnt, char *bdi_path, size_t len);
void wcfs_readahead_start(const char *mnt, const char *bdi_path, uint64_t bytes);

/* push.c: decoded bytes stored into the kernel's page cache ahead of sequential readers by
 * threads of their own (FUSE_NOTIFY_STORE). start: once the session is mounted; stop: after
 * its loop has ended, before it is unmounted (it answers the requests the pushers wait on). */
struct fuse_session;
int wcfs_push_start(struct fuse_session *se, unsigned threads); /* 0 / -1 */
void wcfs_push_stop(struct fuse_session *se); /* before the session is unmounted */
/* Queues pushes of the whole chunks of f's bytes from..to for node ino, from *frontier on
 * where that lies inside (where this reader's pushes end so far), which it then moves. */
void wcfs_push(wcfs_file *f, uint64_t ino, _Atomic uint64_t *frontier, uint64_t from, uint64_t to);
/* A read of f's bytes off..end came from the kernel: pushes of them queued before are dropped. */
void wcfs_push_saw_read(wcfs_file *f, uint64_t off, uint64_t end);

/* log.c: wcfs_log("fmt", ...) writes one line, "wcodecfs: " prefixed: to stderr until the daemon
 * detaches, then to syslog, or always to the file named by -o log=FILE (opened before detaching;
 * -1 if it cannot be). */
int wcfs_log_open(const char *path);
void wcfs_log_detached(void);
void wcfs_log_close(void);
void wcfs_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* One line when something (`what`) starts failing (msg, and the errno served: rc < 0), one
 * when it works again (rc 0): not one per tile. *last holds the previous rc. */
void wcfs_log_result(atomic_int *last, int rc, const char *what, const char *msg);

/* stats.c */
char *wcfs_stats_text(wcfs *fs, size_t *len); /* malloc'd */
#define WCFS_STATS_NAME ".wcodecfs-stats"

/* nodes.c: node ids (what the kernel names files by) to paths under the mount */
typedef struct wcfs_node wcfs_node;
uint64_t wcfs_node_ref(const char *path);     /* finds or makes the node, one more lookup; 0: no memory */
const char *wcfs_node_path(uint64_t ino);     /* "/" for the root */
void wcfs_node_forget(uint64_t ino, uint64_t nlookup); /* freed when every lookup is forgotten */
void wcfs_nodes_free(void);

/* ops.c */
struct fuse_lowlevel_ops;
extern const struct fuse_lowlevel_ops wcfs_ops;

#endif
