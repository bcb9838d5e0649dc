/* url_register.c - in libwcodec.so only: URLs open as soon as the library is loaded, so that a
 * program using wc_container_open (the Python package) reads http://, https:// and s3:// names
 * with no call of its own. */
#include "wcnet.h"

__attribute__((constructor)) static void register_urls(void) { wcnet_register_urls(); }
