/* fixture.h - test inputs made on the spot: safetensors files of every dtype, temp dirs. */
#ifndef WC_FIXTURE_H
#define WC_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *name;
    const char *dtype; /* as written in the header; may be a dtype we do not know */
    uint32_t ndim;
    uint64_t shape[4];
    const uint8_t *data;
    size_t len; /* bytes of data (for a known dtype: product(shape) x width) */
} fx_tensor;

typedef struct {
    const char *metadata; /* JSON object text for "__metadata__", or NULL */
    unsigned pad;         /* extra spaces after the JSON (the header length includes them) */
    size_t gap;           /* bytes of 0xEE between consecutive tensors' data */
    size_t tail;          /* bytes of 0xDD after the last tensor */
    int compact;          /* 1: no spaces in the JSON */
} fx_layout;

/* Writes a safetensors file; tensors' data go in the order given. Returns 0 on success. */
int fx_write_safetensors(const char *path, const fx_tensor *ts, size_t n, const fx_layout *lay);
/* Writes raw bytes to path. */
int fx_write_bytes(const char *path, const void *p, size_t n);
/* Reads a whole file (malloc'd, *n its size); NULL on error. */
uint8_t *fx_read_file(const char *path, size_t *n);
/* Fills n elements of dtype with weight-like values (gaussian for floats, small ints...). */
void fx_fill(const char *dtype, uint8_t *dst, size_t n_elems, uint32_t seed);
/* A fresh directory under $TMPDIR; the caller rm -rf's it with fx_rmtree. */
char *fx_tmpdir(void);
void fx_rmtree(const char *dir);
/* 1 if files a and b have identical bytes. */
int fx_same_file(const char *a, const char *b);
/* Path of the real-weights folder (../shared/data beside the checkout), or NULL if absent. */
const char *fx_shared_data(void);

#endif
