"""URLs as the package takes them (http://, https://, s3://; options from the environment, as
the wcodec tool reads them): a container is opened by the C library itself; a folder is listed
by its wcodec-manifest.json (HTTP) or ListObjectsV2 (S3); small files (config.json) are fetched
whole."""
import ctypes

from . import _lib

SCHEMES = ("http://", "https://", "s3://")


def is_url(path):
    return isinstance(path, str) and path.startswith(SCHEMES)


def join(folder, name):
    return folder + ("" if folder.endswith("/") else "/") + name


def list_folder(url):
    """[(path, size)] of every file under the folder `url`, paths relative to it, sorted."""
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
