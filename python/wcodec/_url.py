"""URLs as the package takes them (http://, https://, s3://; options from the environment, as
the wcodec tool reads them): a container is opened by the C library itself; a folder is listed
by its wcodec-manifest.json (HTTP) or ListObjectsV2 (S3); small files (config.json) are fetched
whole."""
import contextlib
import ctypes
import threading

from . import _lib

SCHEMES = ("http://", "https://", "s3://")


def is_url(path):
    return isinstance(path, str) and path.startswith(SCHEMES)


def join(folder, name):
    return folder + ("" if folder.endswith("/") else "/") + name


_listings = threading.local()


@contextlib.contextmanager
def listed_once():
    """Within it (on this thread), each folder URL is listed once: a call that reads a folder's
    config files and then its shards makes one listing request, not one per file."""
    outer = getattr(_listings, "memo", None)
    _listings.memo = {} if outer is None else outer
    try:
        yield
    finally:
        _listings.memo = outer


def list_folder(url):
    """[(path, size)] of every file under the folder `url`, paths relative to it, sorted."""
    memo = getattr(_listings, "memo", None)
    if memo is not None:
        if url not in memo:
            memo[url] = _list_folder(url)
        return memo[url]
    return _list_folder(url)


def _list_folder(url):
    m, err = ctypes.POINTER(_lib.Manifest)(), _lib._Error()
    _lib.check(_lib.wcnet_list_folder(url.encode(), ctypes.byref(m), ctypes.byref(err)), err)
    try:
        return [(m.contents.files[i].path.decode(), m.contents.files[i].size) for i in range(m.contents.n)]
    finally:
        _lib.wc_manifest_free(m)


def fetch(url, max_bytes=64 << 20):
    """The whole object at `url` as bytes (at most max_bytes)."""
    out, n, err = ctypes.c_void_p(), ctypes.c_size_t(), _lib._Error()
    _lib.check(_lib.wcnet_fetch_object(url.encode(), max_bytes, ctypes.byref(out), ctypes.byref(n),
                                       ctypes.byref(err)), err)
    try:
        return ctypes.string_at(out, n.value)
    finally:
        _lib.wcnet_free(out)
