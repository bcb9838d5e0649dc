#!/usr/bin/env python3
"""range_server.py ROOT PORT_FILE LOG - a static HTTP server on 127.0.0.1 for the GPU machine,
which has no nginx: GET and HEAD with one byte range, an ETag per file, If-Match honoured (412).
Writes the port it bound to PORT_FILE, one line per request ("path range") to LOG."""
import http.server
import os
import re
import sys
import threading

root, port_file, log_path = sys.argv[1], sys.argv[2], sys.argv[3]
log_lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_HEAD(self):
        self.serve(body=False)

    def do_GET(self):
        self.serve(body=True)

    def serve(self, body):
        rng = self.headers.get("Range", "")
        with log_lock, open(log_path, "a") as log:
            log.write(f"{self.path} {rng or '-'}\n")
        path = os.path.realpath(os.path.join(root, self.path.split("?")[0].lstrip("/")))
        if not path.startswith(os.path.realpath(root) + os.sep) or not os.path.isfile(path):
            return self.empty(404)
        st = os.stat(path)
        etag = f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
        if self.headers.get("If-Match") not in (None, "*", etag):
            return self.empty(412)
        start, end, code = 0, st.st_size - 1, 200
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng)
        if m:
            start = int(m.group(1))
            end = min(int(m.group(2)) if m.group(2) else st.st_size - 1, st.st_size - 1)
            if start >= st.st_size:
                return self.empty(416, {"Content-Range": f"bytes */{st.st_size}"})
            code = 206
        self.send_response(code)
        self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        if code == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{st.st_size}")
        self.end_headers()
        if body:
            with open(path, "rb") as f:
                f.seek(start)
                left = end - start + 1
                while left:
                    b = f.read(min(left, 1 << 20))
                    if not b:
                        break
                    self.wfile.write(b)
                    left -= len(b)

    def empty(self, code, headers=None):
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
with open(port_file + ".tmp", "w") as f:
    f.write(f"{server.server_address[1]}\n")
os.rename(port_file + ".tmp", port_file)
server.serve_forever()
