#!/usr/bin/env bash
# run.sh - the Python package's tests (test_wcodec.py, test_tp.py: slices and tensor-parallel shards,
# two ranks over gloo; then test_attach.py: torch on the CPU), with an interpreter that has numpy:
# $PYTHON if set, else Debian's /usr/bin/python3 (python3-numpy), else the python3 first on PATH.
# What needs torch is skipped, saying so, where torch does not import.
# Environment: WCODEC_LIBRARY (libwcodec.so), WCODEC_BIN (the wcodec tool).
set -u
for py in ${PYTHON:-} /usr/bin/python3 python3; do
  if command -v "$py" >/dev/null && "$py" -c "import numpy" 2>/dev/null; then
    "$py" -W error::ResourceWarning "$(dirname "$0")/test_wcodec.py" "$@" || exit 1
    "$py" -W error::ResourceWarning "$(dirname "$0")/test_tp.py" "$@" || exit 1
    exec "$py" -W error::ResourceWarning "$(dirname "$0")/test_attach.py" "$@"
  fi
done
echo "tests/python/run.sh: no python3 with numpy (apt-get install python3-numpy)" >&2
exit 1
