#!/usr/bin/env bash
# put_section.sh FILE "## Heading" < BODY - replaces (or appends) one "## " section of a
# markdown file, keeping the others, so that each benchmark script owns its own section.
set -euo pipefail
file=$1; head=$2; body=$(cat)
tmp=$(mktemp)
{
  if [ -f "$file" ]; then
    BODY=$body awk -v h="$head" '
      /^## / { if (skip) skip = 0; if ($0 == h) { print h; print ""; print ENVIRON["BODY"]; print ""; skip = 1; done = 1; next } }
      !skip { print }
      END { if (!done) { print h; print ""; print ENVIRON["BODY"]; print "" } }' "$file"
  else
    printf '# Benchmarks\n\n%s\n\n%s\n\n' "$head" "$body"
  fi
} > "$tmp"
mv "$tmp" "$file"
