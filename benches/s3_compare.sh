#!/usr/bin/env bash
# regsweep against the reference collector on the same bucket, in one run: requests by kind (as
# the S3 server logged them) and wall time of dry runs, both modes, on generated registries of a
# few thousand and tens of thousands of keys; regsweep twice (empty manifest cache, then warm).
#
#   benches/s3_compare.sh [PRESET...]        (default: small bucket)
#
# Needs moto_server (scripts/test installs it under target/peers/moto) and docker-registry.
# Prints a Markdown table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
presets=("$@")
[ ${#presets[@]} -gt 0 ] || presets=(small bucket)
moto=${REGSWEEP_MOTO_SERVER:-$PWD/target/peers/moto/bin/moto_server}
cargo build --release --quiet --bin regsweep --example gen-registry
bin=$PWD/target/release/regsweep
work=$(mktemp -d)
trap 'kill $moto_pid 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$moto" -H 127.0.0.1 -p "$port" > "$work/moto.log" 2>&1 &
moto_pid=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
unset AWS_CA_BUNDLE AWS_ENDPOINT_URL AWS_PROFILE

# Requests the server logged since line $1, as "list get head delete put other total".
count_since() {
  tail -n +"$(( $1 + 1 ))" "$work/moto.log" | python3 -c '
import sys, collections
c = collections.Counter()
for line in sys.stdin:
    parts = line.split("\"")
    if len(parts) < 2: continue
    req = parts[1].split()
    if not req: continue
    method = "".join(ch for ch in req[0] if ch.isupper())
    path = req[1] if len(req) > 1 else ""
    if method == "GET" and ("list-type=2" in path or "prefix=" in path): c["list"] += 1
    elif method == "GET": c["get"] += 1
    elif method == "HEAD": c["head"] += 1
    elif method == "DELETE" or (method == "POST" and "delete" in path): c["delete"] += 1
    elif method == "PUT": c["put"] += 1
    else: c["other"] += 1
t = sum(c.values())
print(c["list"], c["get"], c["head"], c["delete"], c["put"], c["other"], t)'
}
lines() { wc -l < "$work/moto.log"; }

echo "| tree | keys | manifests | tool | mode | list | get | head | delete | put | other | requests | wall s |"
echo "|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for preset in "${presets[@]}"; do
  bucket="bench-$preset"
  target/release/examples/gen-registry --preset "$preset" --seed 1 "$work/$preset" \
    --upload "s3://$bucket/reg" --s3-endpoint "http://127.0.0.1:$port" 2> "$work/gen.log"
  keys=$(find "$work/$preset/docker/registry/v2" -type f | wc -l)
  manifests=$(find "$work/$preset/docker/registry/v2/repositories" -path '*_manifests/revisions/*/link' | wc -l)
  config=$work/$preset.yml
  printf 'version: 0.1\nstorage:\n  s3:\n    accesskey: bench\n    secretkey: bench\n    region: us-east-1\n    regionendpoint: http://127.0.0.1:%s\n    bucket: %s\n    rootdirectory: /reg\n    secure: false\n  redirect:\n    disable: true\n' "$port" "$bucket" > "$config"
  for mode in "" "-m"; do
    m=${mode:-"(all roots)"}
    start=$(lines); t0=$(date +%s.%N)
    docker-registry garbage-collect --dry-run $mode "$config" > /dev/null 2>&1
    t1=$(date +%s.%N)
    read -r l g h d p o t < <(count_since "$start")
    printf '| %s | %s | %s | reference | %s | %s | %s | %s | %s | %s | %s | %s | %.2f |\n' "$preset" "$keys" "$manifests" "$m" "$l" "$g" "$h" "$d" "$p" "$o" "$t" "$(echo "$t1 - $t0" | bc)"
    rm -rf "$work/cache"
    for run in "first (empty cache)" "second (cache)"; do
      start=$(lines); t0=$(date +%s.%N)
      "$bin" gc -d -q --min-age 0 $mode --cache-dir "$work/cache" "$config"
      t1=$(date +%s.%N)
      read -r l g h d p o t < <(count_since "$start")
      printf '| %s | %s | %s | regsweep, %s | %s | %s | %s | %s | %s | %s | %s | %s | %.2f |\n' "$preset" "$keys" "$manifests" "$run" "$m" "$l" "$g" "$h" "$d" "$p" "$o" "$t" "$(echo "$t1 - $t0" | bc)"
    done
  done
done
/usr/bin/time -f '%M' "$bin" gc -d -q --min-age 0 --cache-dir "$work/cache" "$work/${presets[-1]}.yml" 2> "$work/rss" || true
echo
echo "regsweep peak RSS on ${presets[-1]} (warm cache): $(tail -1 "$work/rss") KB"
