#!/usr/bin/env python3
"""sigv4_proxy.py PORT UPSTREAM_PORT KEY SECRET - checks each request's AWS Signature V4 and
forwards the good ones to an S3 server on 127.0.0.1:UPSTREAM_PORT.

s3rver accepts any V4 signature made with a known key id (it does not compute V4), so the
mount tests put this in front of it: a wrong signature gets S3's 403 SignatureDoesNotMatch.
The check follows AWS's published algorithm; `sigv4_proxy.py --self-test` checks it against
AWS's own test vector (the aws-sig-v4-test-suite's get-vanilla). Standard library only."""
import hashlib, hmac, http.client, http.server, socketserver, sys, urllib.parse

def sign(secret, method, path, query, headers, signed, amz_date, scope, payload_hash):
    """The V4 signature of a request; headers: lower-case name -> value."""
    def enc(s, safe):
        return urllib.parse.quote(s, safe=safe)
    # the path as sent is already encoded once (S3 does not encode it twice)
    pairs = sorted((enc(urllib.parse.unquote(k), '-_.~'), enc(urllib.parse.unquote(v), '-_.~'))
                   for k, _, v in (p.partition('=') for p in query.split('&') if p))
    canonical = '\n'.join([
        method, path or '/', '&'.join(f'{k}={v}' for k, v in pairs),
        ''.join(f'{h}:{" ".join(headers[h].strip().split())}\n' for h in signed),
        ';'.join(signed), payload_hash])
    to_sign = '\n'.join(['AWS4-HMAC-SHA256', amz_date, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    date, region, service, _ = scope.split('/')
    k = ('AWS4' + secret).encode()
    for part in (date, region, service, 'aws4_request'):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()

def self_test():
    # aws-sig-v4-test-suite/get-vanilla: GET / on example.amazonaws.com, service "service"
    got = sign('wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY', 'GET', '/', '',
               {'host': 'example.amazonaws.com', 'x-amz-date': '20150830T123600Z'},
               ['host', 'x-amz-date'], '20150830T123600Z',
               '20150830/us-east-1/service/aws4_request',
               'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855')
    want = '5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31'
    print('self-test', 'ok' if got == want else f'FAILED: {got}')
    return got == want

class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def log_message(self, *a):
        pass

    def refuse(self, why):
        body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SignatureDoesNotMatch</Code>'
                f'<Message>{why}</Message></Error>').encode()
        self.send_response(403)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def check(self):
        auth = self.headers.get('Authorization', '')
        if not auth.startswith('AWS4-HMAC-SHA256 '):
            return 'not signed with V4'
        fields = dict(p.strip().split('=', 1) for p in auth[17:].split(','))
        key, _, scope = fields['Credential'].partition('/')
        if key != KEY:
            return 'unknown key id'
        headers = {k.lower(): v for k, v in self.headers.items()}
        signed = fields['SignedHeaders'].split(';')
        if any(h not in headers for h in signed) or 'host' not in signed:
            return 'a signed header is missing'
        path, _, query = self.path.partition('?')
        want = sign(SECRET, self.command, path, query, headers, signed, headers.get('x-amz-date', ''),
                    scope, headers.get('x-amz-content-sha256', ''))
        return None if hmac.compare_digest(want, fields['Signature']) else 'signature does not match'

    def forward(self):
        why = self.check()
        n = int(self.headers.get('Content-Length') or 0)
        body = self.rfile.read(n) if n else None
        if why:
            return self.refuse(why)
        up = http.client.HTTPConnection('127.0.0.1', UPSTREAM, timeout=60)
        up.request(self.command, self.path, body=body, headers=dict(self.headers.items()))
        r = up.getresponse()
        data = r.read()
        self.send_response(r.status, r.reason)
        for k, v in r.getheaders():
            if k.lower() not in ('content-length', 'transfer-encoding', 'connection'):
                self.send_header(k, v)
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(data)
        up.close()

    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = forward

class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

if __name__ == '__main__':
    if sys.argv[1:] == ['--self-test']:
        sys.exit(0 if self_test() else 1)
    PORT, UPSTREAM, KEY, SECRET = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    Server(('127.0.0.1', PORT), Proxy).serve_forever()
