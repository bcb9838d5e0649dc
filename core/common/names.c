/* names.c - what a container is called on disk and what it presents (docs/FORMAT.md, "Names").
 *
 * One rule for the encoder, the tree decode and both mounts: a source named x.safetensors is
 * kept as x.wcodec and presented as x.safetensors (the file name carries the name); a source of
 * any other name (a Hugging Face blob, named by its hash) is kept as NAME.wcodec with NAME in
 * the container's name area, and presented as NAME. */
#include <string.h>

#include "wc_internal.h"

#define ST_SUFFIX ".safetensors"
#define WC_SUFFIX ".wcodec"

static int ends_with(const char *s, size_t n, const char *suffix) {
    size_t k = strlen(suffix);
    return n > k && !memcmp(s + n - k, suffix, k);
}

int wc_name_ok(const char *name) {
    size_t n = strlen(name);
    if (n == 0 || n > WC_NAME_MAX || !strcmp(name, ".") || !strcmp(name, "..")) return 0;
    for (size_t i = 0; i < n; i++)
        if (name[i] == '/' || (unsigned char)name[i] < 0x20 || name[i] == 0x7f) return 0;
    return 1;
}

int wc_name_is_safetensors(const char *name) { return ends_with(name, strlen(name), ST_SUFFIX); }

int wc_container_file_name(const char *source_name, char *out, size_t len) {
    if (!wc_name_ok(source_name)) return -1;
    size_t n = strlen(source_name);
    if (wc_name_is_safetensors(source_name)) n -= strlen(ST_SUFFIX);
    if (n + strlen(WC_SUFFIX) + 1 > len || n + strlen(WC_SUFFIX) > WC_NAME_MAX) return -1;
    memcpy(out, source_name, n);
    memcpy(out + n, WC_SUFFIX, sizeof WC_SUFFIX);
    return 0;
}

int wc_presented_name(const char *file_name, const char *stored, char *out, size_t len) {
    if (stored && *stored) {
        if (!wc_name_ok(stored) || strlen(stored) + 1 > len) return -1;
        memcpy(out, stored, strlen(stored) + 1);
        return 0;
    }
    size_t n = strlen(file_name);
    if (!ends_with(file_name, n, WC_SUFFIX)) return -1;
    n -= strlen(WC_SUFFIX);
    if (n + sizeof ST_SUFFIX > len) return -1;
    memcpy(out, file_name, n);
    memcpy(out + n, ST_SUFFIX, sizeof ST_SUFFIX);
    return 0;
}

void wc_name_area_write(uint8_t area[WC_NAME_AREA_SIZE], const char *name) {
    size_t n = strlen(name);
    memset(area, 0, WC_NAME_AREA_SIZE);
    area[0] = (uint8_t)n;
    memcpy(area + 1, name, n);
}

int wc_name_area_read(const uint8_t area[WC_NAME_AREA_SIZE], char out[WC_NAME_MAX + 1]) {
    size_t n = area[0];
    if (n == 0) return -1;
    for (size_t i = 1 + n; i < WC_NAME_AREA_SIZE; i++)
        if (area[i]) return -1;
    memcpy(out, area + 1, n);
    out[n] = 0;
    return strlen(out) == n && wc_name_ok(out) ? 0 : -1;
}
