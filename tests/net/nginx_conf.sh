# nginx_conf.sh - sourced by the tests and benchmarks that start their own nginx.
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
