#!/usr/bin/env bash
# Alternates import_large binaries on one input so that machine noise falls on all of
# them alike: each round runs the bare read (`csv-bare`) and then MODE, for each binary
# in turn; prints the minimum and median of each (the lower middle one for an even count).
#
#   benches/alternate.sh ROUNDS MODE FILE BINARY...
#   benches/alternate.sh 10 csv-import /tmp/big1m.csv /tmp/old/import_large target/release/import_large
set -euo pipefail
if [ $# -lt 4 ] || [ "$1" -lt 1 ]; then
  echo "usage: $0 ROUNDS MODE FILE BINARY..." >&2
  exit 2
fi
rounds=$1 mode=$2 file=$3
shift 3
declare -A seconds
for _ in $(seq "$rounds"); do
  for bin in "$@"; do
    seconds[bare]+="$("$bin" csv-bare "$file" | cut -f2 | cut -d' ' -f1) "
    seconds[$bin]+="$("$bin" "$mode" "$file" | cut -f2 | cut -d' ' -f1) "
  done
done
for key in bare "$@"; do
  printf '%s: ' "$key"
  tr ' ' '\n' <<<"${seconds[$key]}" | grep . | sort -n |
    awk '{a[NR]=$1} END {printf "n=%d min %.3f s, median %.3f s\n", NR, a[1], a[int((NR+1)/2)]}'
done
