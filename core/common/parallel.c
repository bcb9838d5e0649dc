/* parallel.c - fork-join over an atomic item counter: uneven items balance themselves. */
#include <pthread.h>
#include <stdatomic.h>

#include "wc_internal.h"

typedef struct {
    atomic_size_t next;
    size_t count;
    wc_parallel_fn fn;
    void *ctx;
} pool;

typedef struct {
    pool *p;
    unsigned worker;
} worker_arg;

static void drain(pool *p, unsigned worker) {
    for (size_t i; (i = atomic_fetch_add(&p->next, 1)) < p->count;) p->fn(p->ctx, i, worker);
}

static void *worker_main(void *a) {
    worker_arg *wa = a;
    drain(wa->p, wa->worker);
    return NULL;
}

void wc_parallel_for(unsigned threads, size_t count, wc_parallel_fn fn, void *ctx) {
    pool p = {.count = count, .fn = fn, .ctx = ctx};
    atomic_init(&p.next, 0);
    if (threads > 64) threads = 64;
    if (threads > count) threads = (unsigned)(count ? count : 1);
    pthread_t tid[64];
    worker_arg args[64];
    unsigned started = 0;
    for (unsigned w = 1; w < threads; w++) {
        args[w] = (worker_arg){&p, w};
        if (pthread_create(&tid[w], NULL, worker_main, &args[w]) != 0) break;
        started = w;
    }
    drain(&p, 0); /* if a thread failed to start, the rest (and we) take its share */
    for (unsigned w = 1; w <= started; w++) pthread_join(tid[w], NULL);
}
