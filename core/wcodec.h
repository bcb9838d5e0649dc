/*
 * wcodec.h - libwcodec: lossless compression of .safetensors files into .wcodec containers.
 *
 * One public header; its comments are the documentation. The container format itself is
 * specified in docs/FORMAT.md.
 *
 * Conventions (every function below follows them):
 *  - Functions return wc_status: WC_OK (0) on success, a negative code on failure.
 *  - Where a function takes `wc_error *err`, it may be NULL; when not NULL and the call fails,
 *    err->msg holds one human-readable line naming the file and, where it applies, the tensor.
 *  - Output pointers are written only on success. Memory handed to the caller is freed with
 *    the matching *_free / *_close function and nothing else.
 *  - Nothing here prints, exits or installs signal handlers; the `wcodec` tool does that.
 *  - All multi-byte fields in files are little-endian. The library assumes a little-endian host.
 */
#ifndef WCODEC_H
#define WCODEC_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The release of this library and its tools (`wcodec --version`, `wcodecfs --version`). The
 * container format has its own version, in each file's header (docs/FORMAT.md). */
#define WCODEC_VERSION_STRING "0.1.0"

/* ===================================================================================== */
/* Errors                                                                                */
/* ===================================================================================== */

typedef enum {
    WC_OK = 0,
    WC_ERR_IO = -1,          /* open/read/write/rename failed; errno-derived message */
    WC_ERR_NOMEM = -2,       /* allocation failed */
    WC_ERR_SAFETENSORS = -3, /* the source is not a valid .safetensors file */
    WC_ERR_FORMAT = -4,      /* the container is malformed (bad magic, tables, bounds) */
    WC_ERR_CHECKSUM = -5,    /* a checksum failed: the header, the tables or a tile */
    WC_ERR_VERSION = -6,     /* the container's format version is not one we read */
    WC_ERR_ARG = -7,         /* bad argument from the caller */
    WC_ERR_CANCELLED = -8,   /* the caller's cancel flag was raised */
    WC_ERR_MISMATCH = -9,    /* verify: decoded bytes differ from the given original */
    WC_ERR_EXISTS = -10      /* output exists and overwriting was not asked for */
} wc_status;

typedef struct {
    wc_status code;
    char msg[512];
} wc_error;

/* A short static name for a status ("checksum mismatch", ...). Never NULL. */
const char *wc_status_str(wc_status s);

/* Fills *err (when err is not NULL) with code and a printf-formatted message; returns code.
 * For modules built on libwcodec (the index, the filesystem) to report errors the same way. */
wc_status wc_error_set(wc_error *err, wc_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Parses a byte count: digits, optionally followed by K, M or G (binary; "KiB"/"KB" also read
 * as K). 0 on success, -1 on anything else or overflow. */
int wc_parse_size(const char *s, uint64_t *out);

/* ===================================================================================== */
/* dtypes                                                                                */
/* ===================================================================================== */

typedef enum {
    WC_DTYPE_UNKNOWN = 0, /* a dtype this version does not know: stored raw, never refused */
    WC_DTYPE_BOOL, WC_DTYPE_U8, WC_DTYPE_I8, WC_DTYPE_I16, WC_DTYPE_U16,
    WC_DTYPE_I32, WC_DTYPE_U32, WC_DTYPE_I64, WC_DTYPE_U64,
    WC_DTYPE_F16, WC_DTYPE_BF16, WC_DTYPE_F32, WC_DTYPE_F64,
    WC_DTYPE_F8_E4M3, WC_DTYPE_F8_E5M2,
    WC_DTYPE_COUNT
} wc_dtype;

/* "BF16" -> WC_DTYPE_BF16; unknown names -> WC_DTYPE_UNKNOWN. */
wc_dtype wc_dtype_from_name(const char *name);
/* WC_DTYPE_BF16 -> "BF16"; WC_DTYPE_UNKNOWN or out of range -> "?". */
const char *wc_dtype_name(wc_dtype d);
/* Bytes per element; 0 for WC_DTYPE_UNKNOWN. */
unsigned wc_dtype_width(wc_dtype d);

/* ===================================================================================== */
/* safetensors                                                                           */
/* ===================================================================================== */

#define WC_ST_MAX_DIMS 32
#define WC_ST_MAX_HEADER (256u << 20) /* header JSON larger than this is refused */

typedef struct {
    char *name;                  /* tensor name, NUL-terminated, owned by the wc_st_file */
    char dtype_name[24];         /* as written in the header (truncated if absurdly long) */
    wc_dtype dtype;              /* WC_DTYPE_UNKNOWN for a dtype we do not know */
    uint32_t ndim;
    uint64_t shape[WC_ST_MAX_DIMS];
    uint64_t begin, end;         /* absolute byte offsets in the file: [begin, end) */
} wc_st_tensor;

typedef struct {
    uint64_t file_size;
    uint64_t header_len;  /* N, the JSON length stored in the first 8 bytes */
    uint64_t data_start;  /* 8 + N */
    size_t n_tensors;
    wc_st_tensor *tensors; /* sorted by begin (then by name); owned */
} wc_st_file;

/*
 * Parses and validates a safetensors header. `buf` holds at least the first 8 + N bytes of the
 * file (more is fine), `buf_len` how many, `file_size` the whole file's size, `path` is used in
 * messages only (may be NULL). Checks: header length within the file, JSON syntax, that only
 * spaces follow the JSON, each entry's dtype/shape/data_offsets, size == product(shape) x width
 * (for known dtypes), offsets within the data area, no overlap, no duplicate names, no integer
 * overflow. On success fills *out (free with wc_st_free).
 * Returns WC_ERR_SAFETENSORS with a message naming the problem and the tensor, or WC_ERR_NOMEM.
 */
wc_status wc_st_parse(const uint8_t *buf, size_t buf_len, uint64_t file_size, const char *path,
                      wc_st_file *out, wc_error *err);
void wc_st_free(wc_st_file *f);
/* 1 if the file at `path` is a safetensors file by its content (a header wc_st_parse accepts,
 * whatever the file is named: Hugging Face blobs have no extension), 0 if not or unreadable.
 * Reads the first 8 + N bytes only. */
int wc_st_sniff_file(const char *path);

/* ===================================================================================== */
/* Containers: reading                                                                   */
/* ===================================================================================== */

#define WC_TILE_SIZE_DEFAULT (256u << 10)

/*
 * Names. A container keeps its source's name. A source named x.safetensors is the container
 * x.wcodec, and presents (through the mount, and in a tree decode) as x.safetensors: the file
 * name carries the name (renamed y.wcodec, it presents y.safetensors), and the container holds
 * none. A source of any other name (a Hugging Face blob, named by its hash, with no extension)
 * is NAME.wcodec, and the container keeps NAME in its name area (docs/FORMAT.md), which is what
 * it presents, whatever the file is called.
 */
#define WC_NAME_MAX 255 /* bytes of a name: one path component */
/* 1 if `name` can be a presented file name: 1..255 bytes, no '/', no control byte, not "." or
 * "..". */
int wc_name_ok(const char *name);
/* The container file name for a source named `source_name` (see above) into out[len]: 0, or -1
 * for a name wc_name_ok refuses or a result that does not fit (in len, or in 255 bytes). */
int wc_container_file_name(const char *source_name, char *out, size_t len);
/* The name a container file presents: `stored` (its name area; NULL or "" if none) when it has
 * one, else file_name with ".wcodec" replaced by ".safetensors". 0, or -1 if file_name does not
 * end in ".wcodec" (with no name stored) or out[len] is too small. */
int wc_presented_name(const char *file_name, const char *stored, char *out, size_t len);
#define WC_TENSOR_NONE 0xFFFFFFFFu /* tile.tensor for header and gap tiles */

typedef enum { WC_TILE_RAW = 0, WC_TILE_PLANES = 1 } wc_tile_mode;

/* One tile: a contiguous range of the source file, independently decodable. */
typedef struct {
    uint64_t payload_offset; /* where its coded bytes start in the container file */
    uint64_t src_offset;     /* where its decoded bytes go in the source file */
    uint64_t checksum;       /* xxh3-64 of the decoded bytes */
    uint32_t src_size;       /* decoded size */
    uint32_t coded_size;     /* coded size */
    uint32_t tensor;         /* index into the tensor table, or WC_TENSOR_NONE */
    uint8_t mode;            /* wc_tile_mode */
} wc_tile_info;

#define WC_MAX_PLANES 8

/* One tensor as the container sees it (names live in the header JSON, see wc_container_header). */
typedef struct {
    uint64_t src_offset, src_size;
    uint32_t first_tile, tile_count;
    uint8_t dtype;       /* wc_dtype */
    uint8_t plane_count; /* byte planes the tensor is split into (1 for raw-stored dtypes) */
    uint8_t plane_coded[WC_MAX_PLANES]; /* 1 where that plane is rANS-coded, 0 where raw */
} wc_tensor_info;

typedef struct wc_container wc_container;

/*
 * Sources: where a container's bytes come from. The container reader asks its source for byte
 * ranges and never knows whether they come from a disk or a network (the style of SQLite's VFS):
 * a local file (wc_source_open_file, here in core), an HTTP(S) or S3 object (net/wcnet.h), or
 * a cache in front of another source.
 */
typedef struct wc_source wc_source;
typedef struct {
    /* Reads exactly len bytes at off into buf; may be called from many threads at once. WC_OK,
     * or WC_ERR_IO (or WC_ERR_FORMAT for a range past the end) with a message naming the source. */
    wc_status (*read_at)(wc_source *s, uint64_t off, size_t len, void *buf, wc_error *err);
    void (*close)(wc_source *s); /* frees the source itself */
    /* Optional (NULL: nothing to gain): the reader will soon read [off, off + len); a source that
     * fetches in runs may fetch it along with its next miss. */
    void (*advise)(wc_source *s, uint64_t off, uint64_t len);
    /* Optional: called once the container on s is opened (its tables parsed), so that a source
     * may learn where tiles begin and end. Non-WC_OK fails the open. */
    wc_status (*opened)(wc_source *s, const wc_container *c, wc_error *err);
} wc_source_ops;

struct wc_source {
    const wc_source_ops *ops;
    uint64_t size;          /* the object's size, fixed when it was opened */
    char identity[192];     /* the version read: "file:dev:ino:size:mtime" or the object's ETag */
    char name[1024];        /* for messages: the path or the URL (never a credential) */
    unsigned mode;          /* permission bits a decoded copy gets (0644 where the source has none) */
    unsigned concurrency;   /* reads worth having in flight at once (0 or 1: a disk; a URL: its
                             * connections): readers of many tiles use at least this many threads */
    struct timespec mtime;  /* modification time; tv_sec 0 where the source has none */
};

/* For sources' read_at: WC_OK if [off, off + len) lies within s, else WC_ERR_FORMAT saying so. */
wc_status wc_source_check_range(const wc_source *s, uint64_t off, size_t len, wc_error *err);
/* A local file as a source. WC_ERR_IO naming the path if it cannot be opened. */
wc_status wc_source_open_file(const char *path, wc_source **out, wc_error *err);

/*
 * Opens `name` as a source: a URL (http://, https://, s3://) through the opener the net module
 * registers (wcnet_register_urls; the wcodec tool and libwcodec.so do), anything else as a local
 * file (write "./http://x" for a local file of that name). A URL without an opener registered
 * is WC_ERR_ARG.
 */
wc_status wc_source_open(const char *name, wc_source **out, wc_error *err);
typedef wc_status (*wc_url_opener)(const char *url, wc_source **out, wc_error *err);
void wc_source_set_url_opener(wc_url_opener opener);
/* 1 if name is a URL wc_source_open hands to the URL opener. */
int wc_source_is_url(const char *name);

static inline wc_status wc_source_read(wc_source *s, uint64_t off, size_t len, void *buf, wc_error *err) {
    return s->ops->read_at(s, off, len, buf, err);
}
static inline void wc_source_close(wc_source *s) {
    if (s) s->ops->close(s);
}

/*
 * Opens a container (a path, or a URL: see wc_source_open): reads and checks its header and
 * tables (checksums, every bound), keeps the source open for tile reads. The table is small (about 40 bytes a tile); tile payloads are
 * read on demand. Returns WC_ERR_IO, WC_ERR_FORMAT, WC_ERR_VERSION, WC_ERR_CHECKSUM or
 * WC_ERR_NOMEM with a message naming the file. Close with wc_container_close.
 */
wc_status wc_container_open(const char *path, wc_container **out, wc_error *err);
/* The same over any source (wc_source_open names a file or a URL): the container owns src from
 * here on, on failure too, and closes it. */
wc_status wc_container_open_source(wc_source *src, wc_container **out, wc_error *err);
/* The source a container reads its payloads from (NULL for one parsed from memory); borrowed. */
wc_source *wc_container_source(const wc_container *c);
/* Tells c's source that tiles first..last will be read soon (their payloads' span). Returns 1 if
 * the source takes advice (fetches in runs: a remote object), 0 if it has none to take. */
int wc_container_advise(const wc_container *c, uint32_t first, uint32_t last);

/*
 * Same checks as wc_container_open on bytes already in memory: `buf` holds the first
 * `buf_len` bytes of a container whose total size is `file_size` (the header and tables must
 * be within buf; payloads need not be). The result has no file: wc_container_read_tile fails
 * on it, wc_tile_decode_cpu works. Used by the fuzzer and by callers that read tables themselves.
 */
wc_status wc_container_parse(const uint8_t *buf, size_t buf_len, uint64_t file_size,
                             const char *name, wc_container **out, wc_error *err);

void wc_container_close(wc_container *c);

/* What the 64-byte header says, checked (magic, version, header checksum) but without reading
 * the tables: enough to present a file and to tell whether an index built earlier still fits. */
typedef struct {
    uint64_t file_size, source_size, source_checksum, tables_checksum;
    uint32_t tile_size, tile_count, tensor_count;
    /* the source's name from the name area (checked for form; its checksum is checked when the
     * container is opened), or "" where the container keeps none */
    char source_name[WC_NAME_MAX + 1];
} wc_container_summary;

wc_status wc_container_peek(const char *path, wc_container_summary *out, wc_error *err);

uint64_t wc_container_source_size(const wc_container *c);
/* The source's name kept in the container, or "" if it keeps none (see Names above). */
const char *wc_container_source_name(const wc_container *c);
uint64_t wc_container_source_checksum(const wc_container *c); /* xxh3-64 of the whole source */
uint64_t wc_container_tables_checksum(const wc_container *c);
uint64_t wc_container_file_size(const wc_container *c);
uint32_t wc_container_tile_size(const wc_container *c); /* nominal decoded size of a tile */
uint32_t wc_container_tile_count(const wc_container *c);
uint32_t wc_container_tensor_count(const wc_container *c);
/* Index must be < the count; the pointer lives as long as the container. */
const wc_tile_info *wc_container_tile(const wc_container *c, uint32_t i);
const wc_tensor_info *wc_container_tensor(const wc_container *c, uint32_t i);
/* Largest coded_size of any tile: a buffer this big holds any payload. */
uint32_t wc_container_max_coded_size(const wc_container *c);

/*
 * The one mapping from source bytes to tiles: the index of the tile holding source byte
 * `offset`, or wc_container_tile_count() when offset >= source size. O(log n).
 */
uint32_t wc_container_find_tile(const wc_container *c, uint64_t offset);

/* Reads tile i's coded bytes (coded_size of them) into buf. WC_ERR_IO on a short read. */
wc_status wc_container_read_tile(const wc_container *c, uint32_t i, uint8_t *buf, wc_error *err);

/*
 * Decodes tile i from its coded bytes `payload` (coded_size bytes) into `out` (src_size bytes),
 * then checks the decoded bytes' checksum. `scratch` is NULL or a buffer of at least
 * wc_container_tile_size() bytes (it saves an allocation per call). Thread-safe: many threads
 * may decode tiles of one container at once. On any error (a malformed stream, a checksum
 * mismatch) returns WC_ERR_FORMAT or WC_ERR_CHECKSUM; `out` then holds garbage that must not
 * be served.
 */
wc_status wc_tile_decode_cpu(const wc_container *c, uint32_t i, const uint8_t *payload,
                             uint8_t *out, uint8_t *scratch, wc_error *err);

/* Where everything of one PLANES tile lies in its payload (docs/FORMAT.md, "PLANES payload"):
 * the one parser of that layout, shared by the CPU decoder and the CUDA decoder's host side. */
#define WC_TILE_MAX_STREAMS 264 /* 16 MiB / 65536 symbols, plus one short stream per plane */
typedef struct {
    uint32_t plane;   /* which plane it decodes into */
    uint32_t offset;  /* where its bytes start in the payload */
    uint32_t len;     /* its bytes */
    uint32_t first;   /* its first symbol's index in the plane */
    uint32_t count;   /* symbols */
} wc_stream_ref;

typedef struct {
    uint32_t n;          /* elements in the tile = symbols per plane */
    uint8_t dtype;       /* wc_dtype */
    uint8_t plane_count;
    uint8_t plane_coded[WC_MAX_PLANES];
    uint32_t raw_offset[WC_MAX_PLANES]; /* a raw plane's n bytes start here in the payload */
    uint32_t n_streams;
    wc_stream_ref streams[WC_TILE_MAX_STREAMS];
} wc_tile_layout;

/* Fills *out for PLANES tile i from its payload (coded_size bytes), checking every size and
 * bound against coded_size. WC_ERR_FORMAT for a malformed payload, WC_ERR_ARG for a RAW tile. */
wc_status wc_tile_layout_parse(const wc_container *c, uint32_t i, const uint8_t *payload,
                               wc_tile_layout *out, wc_error *err);

/*
 * Decodes source bytes [offset, offset + len) into out, reading and decoding every tile that
 * range touches. A convenience over find_tile + read_tile + tile_decode_cpu.
 */
wc_status wc_container_read_range(const wc_container *c, uint64_t offset, size_t len,
                                  uint8_t *out, wc_error *err);
/* The same on `threads` threads (1..64; 0 counts as 1), tiles in parallel: tiles the range
 * covers whole are decoded straight into out. On a bad tile, fails with the error of the
 * lowest one (as the one-thread call would); out is then partly written. Thread-safe: several
 * calls may read one container at once. */
wc_status wc_container_read_range_mt(const wc_container *c, uint64_t offset, size_t len,
                                     uint8_t *out, unsigned threads, wc_error *err);

/* The rANS decode table of one tensor plane, for other decoders (the CUDA one): 4096 entries,
 * or NULL where the plane is raw (or memory ran out). Built on first use and kept until the
 * container is closed; thread-safe. See docs/FORMAT.md for the entry layout. */
const uint32_t *wc_container_plane_lut(const wc_container *c, uint32_t tensor, unsigned plane);

/* ===================================================================================== */
/* Whole files                                                                           */
/* ===================================================================================== */

typedef struct {
    uint32_t tile_size;      /* 0 = WC_TILE_SIZE_DEFAULT; a multiple of 64, 4 KiB .. 16 MiB */
    unsigned threads;        /* 0 or 1 = encode on the calling thread only */
    int overwrite;           /* replace an existing destination */
    int store_raw;           /* no coding: every tile raw (for baselines; still checksummed) */
    /* The source's name (see Names above); NULL = src's last path component. One ending in
     * .safetensors is carried by dst's file name; any other is kept in the container. */
    const char *source_name;
    volatile sig_atomic_t *cancel; /* NULL, or a flag that aborts the encode when set */
    /* Called from the calling thread now and then; may be NULL. */
    void (*progress)(void *arg, uint64_t done_bytes, uint64_t total_bytes);
    void *progress_arg;
} wc_encode_opts;

/*
 * Encodes the safetensors file `src` into the container `dst`. Writes to a temporary file in
 * dst's directory, syncs, then renames it to dst: on any failure (a malformed source, a full
 * disk, cancel) nothing is left at dst and the temporary file is removed. The container gets
 * the source's mode and mtime. opts may be NULL for defaults.
 */
wc_status wc_encode_file(const char *src, const char *dst, const wc_encode_opts *opts,
                         wc_error *err);

/* Options of the whole-container decodes below; NULL means every default. */
typedef struct {
    unsigned threads;              /* decode threads, 1..64; 0 = 1 */
    int overwrite;                 /* wc_decode_file: replace an existing dst (else WC_ERR_EXISTS) */
    volatile sig_atomic_t *cancel; /* NULL, or a flag that aborts the decode when set */
    /* Called from the calling thread after each chunk (64 MiB of source); may be NULL. */
    void (*progress)(void *arg, uint64_t done_bytes, uint64_t total_bytes);
    void *progress_arg;
} wc_decode_opts;

/*
 * Decodes the container `src` into `dst`, the original safetensors bytes, with the same
 * atomicity as wc_encode_file. Every tile checksum and the whole-source checksum are checked.
 */
wc_status wc_decode_file(const char *src, const char *dst, const wc_decode_opts *opts,
                         wc_error *err);

/*
 * The same, written in order to the open descriptor `fd` (a pipe, standard output). A stream
 * cannot be taken back: on failure (a bad tile, the whole-source checksum, a write error) the
 * bytes before the failure have been written, and the status says so; nothing wrong is written.
 * opts->overwrite is not used.
 */
wc_status wc_decode_fd(const char *src, int fd, const wc_decode_opts *opts, wc_error *err);

/*
 * Decodes every tile of `container`, checking every checksum; if `original` is not NULL, also
 * compares the decoded bytes with that file. WC_ERR_MISMATCH names the first differing offset.
 */
wc_status wc_verify_file(const char *container, const char *original, const wc_decode_opts *opts,
                         wc_error *err);

/* Copies the file `src` to `dst` with the same atomicity, mode and mtime as wc_encode_file. */
wc_status wc_copy_file(const char *src, const char *dst, int overwrite, wc_error *err);

/* ===================================================================================== */
/* The manifest of an encoded directory                                                  */
/* ===================================================================================== */

/*
 * An encoded directory served over HTTP cannot be listed, nor can an object store keep its
 * symlinks; its manifest, a JSON file at its root, lists every regular file and symlink under
 * it (containers, the files copied beside them, a Hugging Face cache's snapshot links):
 *   {"wcodec_manifest": 1, "files": [{"path": "sub/x.wcodec", "size": N, "mtime": S,
 *                                     "xxh3": "16 hex digits"},
 *                                    {"path": "snapshots/r1/m.safetensors", "mtime": S,
 *                                     "link": "../../blobs/3f2a"}, ...]}
 * Paths are relative, '/'-separated, without "." or ".." components; sorted, each once. A
 * link's target is its text as readlink gives it, unchanged (1..4095 bytes, no control byte);
 * the link is not followed. Our own temporaries and the manifest itself are not listed.
 */
#define WC_MANIFEST_NAME "wcodec-manifest.json"

typedef struct {
    char *path;     /* relative, as above */
    uint64_t size;  /* bytes */
    int64_t mtime;  /* seconds since the epoch */
    uint64_t xxh3;  /* xxh3-64 of the whole file; 0 for a link */
    char *link;     /* a symlink's target; NULL for a regular file. A link's size is the
                     * target's length, as lstat gives it */
} wc_manifest_entry;

typedef struct {
    size_t n;
    wc_manifest_entry *files; /* sorted by path */
} wc_manifest;

/* Writes DIR/wcodec-manifest.json for the files and links now under `dir` (atomically,
 * replacing an older one). A file is read for its checksum unless the older manifest lists it
 * with the same size and mtime, and that mtime is older than the older manifest (a file changed
 * within the second it was listed in is read again): re-running it on an unchanged tree reads
 * no file. WC_ERR_IO names the file that failed. */
wc_status wc_manifest_write(const char *dir, wc_error *err);

/* Parses manifest bytes (untrusted: from a server). Every entry is checked: WC_ERR_FORMAT
 * names the first problem (not JSON, a path that escapes the root or repeats, a size that is
 * not a whole number in 0..2^62, a link target that is empty, too long or has a control byte).
 * Free with wc_manifest_free. */
wc_status wc_manifest_parse(const uint8_t *buf, size_t len, wc_manifest **out, wc_error *err);
void wc_manifest_free(wc_manifest *m);
/* For manifests built elsewhere (an S3 listing; files malloc'd, paths and links malloc'd):
 * sorts the entries and checks them as wc_manifest_parse does. */
wc_status wc_manifest_check(wc_manifest *m, wc_error *err);
/* 1 if `path` may be presented: relative, no empty, "." or ".." component, no control byte. */
int wc_manifest_path_ok(const char *path);

/* The bytes a reader must fetch from the start of a container to open it from memory: given
 * its first 64 bytes (`head`, checked as wc_container_open checks them) and the container's
 * size, *len receives header + tables, the `buf_len` wc_container_parse needs. */
wc_status wc_container_tables_extent(const uint8_t *head, size_t head_len, uint64_t file_size,
                                     uint64_t *len, wc_error *err);

/* ===================================================================================== */
/* cf12: the compute format of BF16 matrices (weights kept compressed for GPU inference) */
/* ===================================================================================== */

/*
 * A BF16 matrix (rows x cols, row-major: an nn.Linear weight [out_features, in_features]) in a
 * layout a decode-fused matrix kernel reads at any row tile and K-slice: 12 bits a weight (its
 * sign and mantissa byte, and a 4-bit exponent code c: exponent = base + c for c in 1..15, one
 * base for the matrix; c = 0 escapes to an 8-bit exponent in a per-block patch list), arranged so
 * that each lane of a warp loads the operand fragments of four m16n8k16 tensor-core products
 * with three 16-byte loads. docs/FORMAT.md ("cf12") specifies every byte. Lossless: unpack
 * gives back every bit, NaN, Inf, zeros and subnormals included. The container's rANS stays the
 * storage format; this one is made in memory at attach (cuda/cf12_pack.cu on the GPU; these
 * functions are the CPU reference and the tests' oracle).
 *
 * Three arrays: the body (wc_cf12_body_bytes), the per-block escape offsets (blocks + 1
 * uint32) and the escapes (uint32 each; count from wc_cf12_offsets). All are the caller's.
 */
#define WC_CF12_BLOCK_ROWS 16
#define WC_CF12_BLOCK_COLS 64
#define WC_CF12_BLOCK_BYTES 1536 /* 1024 weights: 1024 sign+mantissa bytes, 512 code bytes */

/* Blocks of 16 x 64 weights covering the matrix (rows and cols rounded up): the tail block of a
 * row or column holds padding, which unpack never returns. */
uint64_t wc_cf12_blocks(uint32_t rows, uint32_t cols);
uint64_t wc_cf12_body_bytes(uint32_t rows, uint32_t cols);
/* Adds n BF16 weights' exponents to hist (256 counters; zero it first). */
void wc_cf12_histogram(const uint16_t *w, size_t n, uint64_t hist[256]);
/* The base whose window base+1..base+15 holds the most weights of hist (the smallest on a tie;
 * 0..240). */
unsigned wc_cf12_pick_base(const uint64_t hist[256]);
/* Fills offsets[0..blocks] (offsets[b] = the first escape of block b; offsets[blocks] = the
 * count) for matrix w under `base`; returns the escape count. WC_ERR_ARG-free: rows and cols
 * must be > 0 and base <= 240, as wc_cf12_pack checks. */
uint64_t wc_cf12_offsets(const uint16_t *w, uint32_t rows, uint32_t cols, unsigned base,
                         uint32_t *offsets);
/* Writes the body and the escapes of w (offsets from wc_cf12_offsets with the same base).
 * WC_ERR_ARG for an empty matrix, base > 240, or more escapes than a uint32 offset holds. */
wc_status wc_cf12_pack(const uint16_t *w, uint32_t rows, uint32_t cols, unsigned base,
                       const uint32_t *offsets, uint8_t *body, uint32_t *escapes, wc_error *err);
/* The matrix back from its three arrays, every bit. WC_ERR_FORMAT where they disagree (an
 * escape code with no patch, a patch that is not an escape, offsets out of order). */
wc_status wc_cf12_unpack(const uint8_t *body, const uint32_t *offsets, const uint32_t *escapes,
                         uint32_t rows, uint32_t cols, unsigned base, uint16_t *w, wc_error *err);

#ifdef __cplusplus
}
#endif
#endif /* WCODEC_H */
