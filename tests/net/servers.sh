# servers.sh - sourced by the tests and benchmarks that start their own servers on loopback
# (nginx from Debian; s3rver from npm behind tests/net/sigv4_proxy.py, which checks every
# request's Signature V4 since s3rver does not).
#
# nginx_conf DIR < BODY: writes DIR/nginx.conf for a server that keeps everything under DIR (its
# pid, logs/ and the temporary files nginx would otherwise put in system folders), with BODY
# (log formats, servers) inside its http block.
nginx_conf() {
  mkdir -p "$1/logs" "$1/tmp"
  {
    cat <<CONF
worker_processes 2;
pid $1/nginx.pid;
error_log $1/logs/error.log;
events { worker_connections 256; }
http {
  client_body_temp_path $1/tmp; proxy_temp_path $1/tmp; fastcgi_temp_path $1/tmp;
  uwsgi_temp_path $1/tmp; scgi_temp_path $1/tmp;
CONF
    cat
    echo "}"
  } > "$1/nginx.conf"
}

# free_port: a TCP port free on 127.0.0.1 now. wait_port PORT: until something listens there (10 s).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null ||
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for i in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

# s3_up S3RVER DIR BUCKET: s3rver keeping its objects in DIR with BUCKET made, behind the signature
# check that knows key S3RVER / secret S3CRETKEY; sets S3_EP (the check's URL) and appends both
# processes to PIDS (the caller kills them). Returns 1 if they do not come up.
s3_up() {
  local p3 p4 here
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  p3=$(free_port); p4=$(free_port); mkdir -p "$2"
  "$1" -d "$2" -a 127.0.0.1 -p "$p3" --silent --configure-bucket "$3" >"$2.s3rver.log" 2>&1 & PIDS+=($!)
  /usr/bin/python3 "$here/sigv4_proxy.py" "$p4" "$p3" S3RVER S3CRETKEY >"$2.proxy.log" 2>&1 & PIDS+=($!)
  S3_EP=http://127.0.0.1:$p4
  wait_port "$p3" && wait_port "$p4"
}
# s3_put FILE KEY: uploads FILE to $S3_EP as KEY ("bucket/path"), signed.
s3_put() { curl -sS -f --aws-sigv4 "aws:amz:us-east-1:s3" --user S3RVER:S3CRETKEY \
             -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -T "$1" "$S3_EP/$(printf %s "$2" | sed 's/ /%20/g')"; }

# make_cert DIR: DIR/cert.pem and DIR/key.pem, a self-signed certificate for 127.0.0.1 (a private CA's
# stand-in: https that no system CA vouches for).
make_cert() { openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
  -keyout "$1/key.pem" -out "$1/cert.pem" 2>/dev/null; }

# nginx_start DIR PORT...: nginx with DIR/nginx.conf (nginx_conf), until every PORT answers.
# nginx_stop DIR: until it is gone (5 s).
nginx_start() { local d=$1 p; shift; "${NGINX:-nginx}" -p "$d" -c "$d/nginx.conf" 2>"$d/start.log" || return 1
  for p in "$@"; do wait_port "$p" || return 1; done; }
nginx_stop() { kill "$(cat "$1/nginx.pid")" 2>/dev/null; for i in $(seq 50); do [ -f "$1/nginx.pid" ] || return 0; sleep 0.1; done; }
