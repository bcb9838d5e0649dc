#!/usr/bin/env bash
# hf_cache_bench.sh [DATA_DIR] [COPIES] - a Hugging Face cache encoded as it is: bytes on disk (du -sb) of
# the encoded cache against the original, and the re-encode of the unchanged cache against the
# first encode (median of 5 each, same run, same disk). The cache: one model, two revisions
# sharing the real BF16 blob (use-lite.bf16) and a config blob (the issue's "BF16 cache of two
# revisions sharing one blob"), the BF16 file repeated COPIES times (default 8: 112 MB; needs
# /usr/bin/python3 with numpy, tests/bench/repeat_model.py) so that the encode is not all start-up.
set -euo pipefail
cd "$(dirname "$0")/../.."
W=$(realpath "${BUILD:-build}")/wcodec
D=${1:-../shared/data}
T=$(mktemp -d "${TMPDIR:-/var/tmp}/hfbench.XXXXXX"); trap 'rm -rf "$T"' EXIT
M=$T/hub/models--org--use-lite; mkdir -p "$M/blobs" "$M/refs"
blob() { local h; h=$(sha256sum "$1" | cut -c1-64); cp "$1" "$M/blobs/$h"; echo "$h"; }
/usr/bin/python3 tests/bench/repeat_model.py "$D/use-lite.bf16.safetensors" "${2:-8}" "$T/model.safetensors"
b1=$(blob "$T/model.safetensors")
echo '{"model_type": "use-lite"}' > "$T/config.json"; c=$(blob "$T/config.json")
r1=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; r2=bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb
for r in $r1 $r2; do mkdir -p "$M/snapshots/$r"; ln -s "../../blobs/$b1" "$M/snapshots/$r/model.safetensors"
  ln -s "../../blobs/$c" "$M/snapshots/$r/config.json"; done
printf %s $r2 > "$M/refs/main"
ms() { local a b; a=$(date +%s%N); "$@" >/dev/null 2>&1; b=$(date +%s%N); echo $(( (b - a) / 1000 )); }
median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
first=$(for i in 1 2 3 4 5; do rm -rf "$T/enc"; ms "$W" encode -q "$T/hub" "$T/enc"; done | median)
again=$(for i in 1 2 3 4 5; do ms "$W" encode -q "$T/hub" "$T/enc"; done | median)
orig=$(du -sb "$T/hub" | cut -f1); enc=$(du -sb "$T/enc" | cut -f1)
bf=$(stat -c %s "$M/blobs/$b1"); bfc=$(stat -c %s "$T/enc/models--org--use-lite/blobs/$b1.wcodec")
echo "machine: $(lscpu | awk -F': *' '/Model name/ {print $2; exit}'), $(nproc) cores, $(df -T "$T" | awk 'NR==2 {print $2}') at $T"
echo "| what | original | encoded | ratio |"
echo "|---|---|---|---|"
echo "| the cache, du -sb (2 blobs, 2 revisions, 4 links) | $orig | $enc | $(awk -v a="$enc" -v b="$orig" 'BEGIN{printf "%.4f", a/b}') |"
echo "| the BF16 blob | $bf | $bfc | $(awk -v a="$bfc" -v b="$bf" 'BEGIN{printf "%.4f", a/b}') |"
echo "| encode, us (median of 5) | first: $first | unchanged: $again | $(awk -v a="$first" -v b="$again" 'BEGIN{printf "%.1fx faster", a/b}') |"
"$W" decode -q "$T/enc" "$T/back" && diff -r --no-dereference "$T/hub" "$T/back" && echo "decode round trip: identical tree"
