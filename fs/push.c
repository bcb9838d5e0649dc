/* push.c - decoded bytes pushed into the kernel's page cache ahead of a sequential reader.
 *
 * A cold read through FUSE costs the reader's own thread more than the bytes: for every 4 KiB
 * page it allocates and inserts a page-cache page, then waits for the FUSE request that fills
 * it, and only then copies (docs/BENCHMARKS.md: one reader's thread is busy 98% of the time, on
 * the raw-stored mount too). FUSE_NOTIFY_STORE lets the daemon insert and fill those pages
 * itself: the pusher threads here decode tiles ahead of a sequential reader and store them, so
 * that the reader's reads and page faults find their pages present and only copy, and the
 * per-page work moves to the pushers (it stays per 4 KiB page: this kernel gives FUSE files no
 * large folios).
 *
 * The reader's position is learnt from its reads: a read at the end of what was pushed for its
 * handle (it ran past the pushed bytes) continues the push. Pushes start beyond the kernel's
 * own read-ahead window, whose requests are already on their way, so that the two rarely fill
 * the same page. Only pages inside the file are stored, never past its size.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fuse_lowlevel.h>
#include <linux/fuse.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/uio.h>

#include "wcfs.h"

/* Pushes go in chunks of whole pages: a page stored in two parts, by two messages, would never
 * be marked up to date, and its reader would fetch it again with a request of its own. */
#define CHUNK (1u << 20)
#define QUEUE_CAP 4096u
#define CHUNK_TILES 64u /* a chunk spanning more tiles (tiny tensors) is left to the reader */

typedef struct {
    wcfs_file *f;
    uint64_t ino, from, to;
    uint64_t queued_at; /* read_seq then */
} push_job;

/* Each read a reader's kernel sends stamps the chunks it covers with a new number, and a queued
 * push stamps its chunk with PUSHED and the number then. A chunk read after its push was queued
 * is the kernel's already (the pusher fell behind): the push is dropped rather than decoding and
 * storing the same bytes twice. A chunk read or pushed once is not queued again, so readers of
 * neighbouring regions do not push each other's bytes twice; a chunk evicted since then comes
 * back through the reader's own requests. */
static atomic_uint_fast64_t read_seq;
#define PUSHED (1ull << 63)

static struct {
    int fd; /* the session's /dev/fuse */
    pthread_mutex_t lock;
    pthread_cond_t work;
    push_job queue[QUEUE_CAP];
    unsigned head, len;
    pthread_t *threads;
    unsigned n_threads, running;
    int stopping;
} P = {.lock = PTHREAD_MUTEX_INITIALIZER, .work = PTHREAD_COND_INITIALIZER};

/* One FUSE_NOTIFY_STORE of bytes from..to, straight from the decoded tiles' memory. */
static void push_chunk(const push_job *j) {
    wcfs_file *f = j->f;
    uint64_t stamp = atomic_load(&f->read_stamps[j->from / CHUNK]);
    if (!(stamp & PUSHED) && stamp > j->queued_at) {
        atomic_fetch_add(&g_fs.stats.push_skipped, 1);
        return;
    }
    struct fuse_out_header oh = {0};
    struct fuse_notify_store_out so = {.nodeid = j->ino, .offset = j->from};
    struct iovec iov[2 + CHUNK_TILES];
    wcfs_entry *refs[CHUNK_TILES];
    unsigned n;
    int rc; /* a tile that fails: its reader gets EIO through its own request */
    size_t got = wcfs_cache_pin_range(g_fs.cache, f, wc_container_find_tile(f->c, j->from), j->from,
                                      j->to - j->from, iov + 2, refs, CHUNK_TILES, &n, &rc);
    if (!rc && got < j->to - j->from) { /* many tiny tensors: the reader's requests do it */
        wcfs_cache_unpin_range(g_fs.cache, refs, iov + 2, n, 0);
        atomic_fetch_add(&g_fs.stats.push_skipped, 1);
        return;
    }
    int ok = !rc;
    if (ok) {
        so.size = (uint32_t)(j->to - j->from);
        oh.error = FUSE_NOTIFY_STORE;
        oh.len = (uint32_t)(sizeof oh + sizeof so + so.size);
        iov[0] = (struct iovec){&oh, sizeof oh};
        iov[1] = (struct iovec){&so, sizeof so};
        /* ENOENT: the file was closed and forgotten meanwhile; nothing is lost */
        ok = writev(P.fd, iov, (int)(2 + n)) == (ssize_t)oh.len;
    }
    wcfs_cache_unpin_range(g_fs.cache, refs, iov + 2, n, ok);
    if (ok) atomic_fetch_add(&g_fs.stats.push_bytes, j->to - j->from);
    else atomic_fetch_add(&g_fs.stats.push_errors, 1);
}

static void *pusher(void *arg) {
    (void)arg;
    pthread_mutex_lock(&P.lock);
    for (;;) {
        while (!P.stopping && !P.len) pthread_cond_wait(&P.work, &P.lock);
        if (P.stopping) break;
        push_job j = P.queue[P.head];
        P.head = (P.head + 1) % QUEUE_CAP;
        P.len--;
        pthread_mutex_unlock(&P.lock);
        push_chunk(&j);
        pthread_mutex_lock(&P.lock);
    }
    P.running--;
    pthread_mutex_unlock(&P.lock);
    return NULL;
}

int wcfs_push_start(struct fuse_session *se, unsigned threads) {
    P.fd = fuse_session_fd(se);
    P.threads = calloc(threads ? threads : 1, sizeof *P.threads);
    if (!P.threads) return -1;
    for (unsigned i = 0; i < threads; i++)
        if (pthread_create(&P.threads[P.n_threads], NULL, pusher, NULL) == 0) P.n_threads++;
    P.running = P.n_threads;
    return P.n_threads ? 0 : -1;
}

/* A pusher can be waiting for a page that a read request holds locked (the kernel got there
 * first): once the session loop has stopped, nobody would answer that request, so the
 * requests still coming are served here, one at a time, until every pusher has finished. */
void wcfs_push_stop(struct fuse_session *se) {
    if (!P.n_threads) return;
    pthread_mutex_lock(&P.lock);
    P.stopping = 1;
    pthread_cond_broadcast(&P.work);
    while (P.running) {
        pthread_mutex_unlock(&P.lock);
        struct pollfd pfd = {.fd = P.fd, .events = POLLIN};
        struct fuse_buf buf = {0};
        if (poll(&pfd, 1, 50) == 1 && (pfd.revents & POLLIN) && fuse_session_receive_buf(se, &buf) > 0)
            fuse_session_process_buf(se, &buf);
        free(buf.mem);
        pthread_mutex_lock(&P.lock);
    }
    pthread_mutex_unlock(&P.lock);
    for (unsigned i = 0; i < P.n_threads; i++) pthread_join(P.threads[i], NULL);
    free(P.threads);
    P.threads = NULL;
    P.n_threads = 0;
}

/* f's chunk stamps, made on first use (0: never read) */
static atomic_uint_fast64_t *stamps_of(wcfs_file *f) {
    atomic_uint_fast64_t *s = atomic_load(&f->read_stamps), *none = NULL;
    if (s) return s;
    if (!(s = calloc(f->source_size / CHUNK + 1, sizeof *s))) return NULL;
    if (!atomic_compare_exchange_strong(&f->read_stamps, &none, s)) {
        free(s);
        s = none;
    }
    return s;
}

void wcfs_push_saw_read(wcfs_file *f, uint64_t off, uint64_t end) {
    atomic_uint_fast64_t *s = P.n_threads && off < end ? stamps_of(f) : NULL;
    if (!s) return;
    uint64_t seq = atomic_fetch_add(&read_seq, 1) + 1;
    for (uint64_t c = off / CHUNK; c <= (end - 1) / CHUNK; c++) atomic_store(&s[c], seq);
}

void wcfs_push(wcfs_file *f, uint64_t ino, _Atomic uint64_t *frontier, uint64_t from, uint64_t to) {
    if (to > f->source_size) to = f->source_size;
    atomic_uint_fast64_t *stamps = P.n_threads ? stamps_of(f) : NULL;
    if (!stamps) return;
    uint64_t now = atomic_load(&read_seq), none = 0;
    pthread_mutex_lock(&P.lock); /* the frontier moves under it: reads racing queue each chunk once */
    uint64_t at = atomic_load(frontier);
    if (at > from) from = at; /* (at the file's end, nothing is left to queue) */
    from = (from + CHUNK - 1) / CHUNK * CHUNK;
    unsigned before = P.len;
    while (from < to && P.len < QUEUE_CAP) {
        uint64_t end = from + CHUNK; /* whole chunks (so whole pages), or the file's end */
        if (end > to && (end = to) != f->source_size) break;
        if (atomic_compare_exchange_strong(&stamps[from / CHUNK], &none, PUSHED | now))
            P.queue[(P.head + P.len++) % QUEUE_CAP] = (push_job){f, ino, from, end, now};
        none = 0;
        from = end;
    }
    unsigned added = P.len - before;
    atomic_store(frontier, from);
    if (added >= P.n_threads) pthread_cond_broadcast(&P.work);
    else
        while (added--) pthread_cond_signal(&P.work);
    pthread_mutex_unlock(&P.lock);
}
