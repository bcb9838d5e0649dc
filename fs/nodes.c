/* nodes.c - the kernel's node ids and the paths under the mount they stand for.
 *
 * The low-level FUSE API names files by node id. A node is made by the first lookup of a path
 * and lives until the kernel forgets every lookup of it; one path has one node, so that the
 * kernel keeps one inode (and one page cache) per file. The root is FUSE_ROOT_ID and never
 * forgotten. Node ids are the nodes' addresses.
 */
#define _GNU_SOURCE
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wcfs.h"

struct wcfs_node {
    char *path;
    uint64_t nlookup;
    struct wcfs_node *hnext;
};

#define NODE_BUCKETS 4096u

static wcfs_node root = {.path = "/"};
static wcfs_node *buckets[NODE_BUCKETS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static unsigned bucket_of(const char *path) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) h = (h ^ *p) * 16777619u;
    return h % NODE_BUCKETS;
}

const char *wcfs_node_path(uint64_t ino) {
    return ino == FUSE_ROOT_ID ? root.path : ((wcfs_node *)(uintptr_t)ino)->path;
}

uint64_t wcfs_node_ref(const char *path) {
    if (!strcmp(path, "/")) return FUSE_ROOT_ID;
    unsigned b = bucket_of(path);
    pthread_mutex_lock(&lock);
    wcfs_node *n = buckets[b];
    while (n && strcmp(n->path, path)) n = n->hnext;
    if (!n && (n = calloc(1, sizeof *n)) && !(n->path = strdup(path))) {
        free(n);
        n = NULL;
    }
    if (n && !n->nlookup) { /* new */
        n->hnext = buckets[b];
        buckets[b] = n;
    }
    if (n) n->nlookup++;
    pthread_mutex_unlock(&lock);
    return n ? (uint64_t)(uintptr_t)n : 0;
}

void wcfs_node_forget(uint64_t ino, uint64_t nlookup) {
    if (ino == FUSE_ROOT_ID) return;
    wcfs_node *n = (wcfs_node *)(uintptr_t)ino;
    pthread_mutex_lock(&lock);
    n->nlookup = nlookup < n->nlookup ? n->nlookup - nlookup : 0;
    if (!n->nlookup) {
        wcfs_node **pp = &buckets[bucket_of(n->path)];
        while (*pp != n) pp = &(*pp)->hnext;
        *pp = n->hnext;
        free(n->path);
        free(n);
    }
    pthread_mutex_unlock(&lock);
}

void wcfs_nodes_free(void) {
    pthread_mutex_lock(&lock);
    for (unsigned b = 0; b < NODE_BUCKETS; b++)
        for (wcfs_node *n = buckets[b], *next; n; n = next) {
            next = n->hnext;
            free(n->path);
            free(n);
        }
    memset(buckets, 0, sizeof buckets);
    pthread_mutex_unlock(&lock);
}
