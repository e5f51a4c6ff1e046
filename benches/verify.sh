#!/usr/bin/env bash
# Throughput of `regsweep check --verify` against `openssl dgst -sha256` on one core, on the
# same bytes, warm cache.
#
#   benches/verify.sh [--dir DIR] [--blobs N] [--mib M]
#
# Writes N random blobs of M MiB each (default 48 x 64 MiB = 3 GiB) as a registry under DIR
# (default /tmp/regsweep-bench/verify), reads them once to warm the cache, then times
# `openssl dgst -sha256` over all of them (one process: one core) and `regsweep check --verify`,
# three times each, alternating, and prints the medians in GB/s.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=/tmp/regsweep-bench/verify
blobs=48
mib=64
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir=$2; shift 2 ;;
    --blobs) blobs=$2; shift 2 ;;
    --mib) mib=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "verify.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
command -v openssl >/dev/null || { echo "verify.sh: openssl is not installed" >&2; exit 2; }
cargo build --release --quiet --bin regsweep
regsweep=$PWD/target/release/regsweep

if [ ! -f "$dir/.generated-$blobs-$mib" ]; then
  rm -rf "$dir"
  mkdir -p "$dir/docker/registry/v2/blobs/sha256"
  for i in $(seq "$blobs"); do
    tmp="$dir/blob.tmp"
    head -c "$((mib << 20))" /dev/urandom > "$tmp"
    hex=$(sha256sum "$tmp" | cut -d' ' -f1)
    mkdir -p "$dir/docker/registry/v2/blobs/sha256/${hex:0:2}/$hex"
    mv "$tmp" "$dir/docker/registry/v2/blobs/sha256/${hex:0:2}/$hex/data"
  done
  touch "$dir/.generated-$blobs-$mib"
fi
files=$(find "$dir/docker" -name data)
total=$(cat $files | wc -c)
cat $files > /dev/null   # warm

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
secs() { local s e; s=$(date +%s.%N); "$@" > /dev/null; e=$(date +%s.%N); echo "$e - $s" | bc -l; }
: > /tmp/verify.openssl; : > /tmp/verify.regsweep
for _ in 1 2 3; do
  secs sh -c "cat $(echo $files) | openssl dgst -sha256" >> /tmp/verify.openssl
  secs "$regsweep" check --verify -q "$dir" >> /tmp/verify.regsweep
done
o=$(median < /tmp/verify.openssl); r=$(median < /tmp/verify.regsweep)
awk -v t="$total" -v o="$o" -v r="$r" 'BEGIN {
  printf "| bytes | openssl dgst -sha256, 1 core | regsweep check --verify | ratio |\n|---:|---:|---:|---:|\n"
  printf "| %.2f GiB | %.2f GB/s (%.2f s) | %.2f GB/s (%.2f s) | %.2fx |\n", t / 2^30, t / o / 1e9, o, t / r / 1e9, r, o / r }'
