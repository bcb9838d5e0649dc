# harness.sh - sourced by tests/net's scripts: TAP-like checks over a scratch folder $T.
#   t NAME CMD...        ok if CMD succeeds (its stdout in $T/out, stderr in $T/err)
#   t_fails NAME CMD...  ok if CMD fails
#   said NAME PATTERN    ok if the last command's stderr matches PATTERN
# pass, fail and skip count; the script prints 'N passed, N failed' at its end.
pass=0; fail=0; skip=0
ok() { echo "ok - $1"; pass=$((pass+1)); }
no() { echo "not ok - $1"; fail=$((fail+1)); [ -f "$T/err" ] && sed 's/^/#   /' "$T/err" | tail -5; }
t() { local name=$1; shift; if "$@" >"$T/out" 2>"$T/err"; then ok "$name"; else no "$name"; fi; }
t_fails() { local name=$1; shift; if "$@" >"$T/out" 2>"$T/err"; then no "$name (succeeded)"; else ok "$name"; fi; }
said() { if grep -q "$2" "$T/err"; then ok "$1"; else no "$1"; fi; }
