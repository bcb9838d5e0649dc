#!/usr/bin/env bash
# install-deps.sh - the Debian/Ubuntu packages wcodecfs builds, tests and benchmarks with.
# Idempotent: installs only what is missing. Needs root (or sudo).
set -euo pipefail
pkgs=(build-essential cmake pkg-config libcjson-dev libxxhash-dev liblmdb-dev lmdb-utils libfuse3-dev fuse3
      libcurl4-openssl-dev ca-certificates libcmocka-dev clang python3 python3-numpy python3-pip
      python3-setuptools zstd nginx-light curl time
      python3-torch) # torch 1.13, CPU: the torch paths (wcodec.torch, attach) are tested with /usr/bin/python3
# Node.js and npm from Debian, unless some other install of them is on PATH already
command -v npm >/dev/null || pkgs+=(nodejs npm)
# the S3 API server the remote-mount tests start on loopback (tests/net/test_remote.sh): s3rver
# from the npm registry, kept in the checkout's .deps/ (git-ignored)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
s3rver() {
  [ -x "$ROOT/.deps/npm/node_modules/.bin/s3rver" ] && return 0
  echo "install-deps: installing s3rver 3.7.1 (npm) into $ROOT/.deps/npm"
  npm install --no-audit --no-fund --loglevel=error --prefix "$ROOT/.deps/npm" s3rver@3.7.1 >/dev/null
}
missing=()
for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
[ ${#missing[@]} -eq 0 ] && { s3rver; exit 0; }
SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
s3rver
