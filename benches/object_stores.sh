#!/usr/bin/env bash
# regsweep on every object store it speaks, in one run: S3 (moto_server), GCS (fake-gcs-server)
# and Azure Blob (Azurite), each on 127.0.0.1, the same generated registries put into each.
# For each store and tree: a dry run with an empty manifest cache, a second with it warm, and a
# real `gc -m`, with requests as regsweep counts them (a batch is one request) and as the server
# logged them, bytes copied into the trash, wall and CPU time, peak RSS. On S3 also the
# reference's real `garbage-collect -m` on its own copy of the same tree (Debian's registry has
# no gcs or azure driver, so the reference cannot run on those).
#
#   benches/object_stores.sh [PRESET...]        (default: small bucket)
#
# The reference runs on the presets in REFERENCE_PRESETS (default: small; on bucket it takes
# a quarter of an hour against moto).
#
# Needs the peers scripts/test installs under target/peers, and docker-registry.
# Prints Markdown tables on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
presets=("$@")
[ ${#presets[@]} -gt 0 ] || presets=(small bucket)
moto=${REGSWEEP_MOTO_SERVER:-$PWD/target/peers/moto/bin/moto_server}
fake_gcs=${REGSWEEP_FAKE_GCS_SERVER:-$(find target/peers/gcs -type f -name 'fake-gcs-server-linux-*' | head -n 1)}
azurite=${REGSWEEP_AZURITE:-$PWD/target/peers/azurite/node_modules/.bin/azurite-blob}
cargo build --release --quiet --bin regsweep --example gen-registry
bin=$PWD/target/release/regsweep
gen=$PWD/target/release/examples/gen-registry
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 300); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; }

s3_port=$(free_port)
"$moto" -H 127.0.0.1 -p "$s3_port" > "$work/s3.log" 2>&1 & pids+=($!)
gcs_port=$(free_port)
"$fake_gcs" -scheme http -host 127.0.0.1 -port "$gcs_port" -backend memory -log-level info > "$work/gcs.log" 2>&1 & pids+=($!)
az_port=$(free_port)
"$azurite" --blobHost 127.0.0.1 --blobPort "$az_port" --skipApiVersionCheck --loose --disableTelemetry \
  --location "$work/azurite" > "$work/azure.log" 2>&1 & pids+=($!)
wait_port "$s3_port"; wait_port "$gcs_port"; wait_port "$az_port"; sleep 1

export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
unset AWS_CA_BUNDLE AWS_ENDPOINT_URL AWS_PROFILE GOOGLE_APPLICATION_CREDENTIALS
export STORAGE_EMULATOR_HOST=127.0.0.1:$gcs_port
export AZURE_STORAGE_CONNECTION_STRING="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:$az_port/devstoreaccount1;"

# The request lines a server logged (its whole log), as "METHOD path".
requests_of() {
  python3 - "$1" <<'PY'
import re, sys
for line in open(sys.argv[1], errors="replace"):
    line = re.sub(r"\x1b\[[0-9;]*m", "", line)
    m = re.search(r'\\?"(GET|PUT|POST|DELETE|HEAD|PATCH) (\S+) HTTP', line)
    if m: print(m.group(1), m.group(2))
PY
}
lines() { requests_of "$work/$1.log" | wc -l; }
# What the server saw since line $2: "requests batch-calls" (a batch's calls, which
# fake-gcs-server logs one by one besides the batch, are not requests of their own).
seen_since() {
  requests_of "$work/$1.log" | tail -n +"$(( $2 + 1 ))" | python3 -c '
import sys
lines = [l.split() for l in sys.stdin if l.strip()]
batches = sum(1 for m, p in lines if m == "POST" and "batch" in p)
deletes = sum(1 for m, p in lines if m == "DELETE")
print(len(lines), batches, deletes)'
}
field() { python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }

declare -A endpoint=([s3]="--endpoint http://127.0.0.1:$s3_port" [gcs]="" [azure]="")
declare -A scheme=([s3]=s3 [gcs]=gs [azure]=azblob)

echo "| store | tree | keys | manifests | run | list | get | put | delete | requests (server) | floor | trash bytes | wall s | CPU s | peak RSS MB |"
echo "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
reference_rows=()
for preset in "${presets[@]}"; do
  tree=$work/tree-$preset
  "$gen" --preset "$preset" --seed 1 "$tree" 2> "$work/gen.log"
  keys=$(find "$tree/docker/registry/v2" -type f | wc -l)
  for store in s3 gcs azure; do
    url="${scheme[$store]}://bench-$preset/reg"
    # A fresh copy of the tree, uploaded (the generator's seed makes it the same registry).
    rm -rf "$work/up"
    RAYON_NUM_THREADS=8 "$gen" --preset "$preset" --seed 1 "$work/up" --upload "$url" ${endpoint[$store]} 2> "$work/up.log"
    sleep 3   # older than the run's own start: no later look takes the tree for a push
    rm -rf "$work/cache"
    for run in "dry, empty cache" "dry, warm cache" "real gc -m"; do
      args=(gc -q --min-age 0 -m --json "$work/r.json" --cache-dir "$work/cache")
      [ "$run" = "real gc -m" ] || args+=(-d)
      start=$(lines "$store")
      /usr/bin/time -f '%e %U %S %M' -o "$work/time" "$bin" "${args[@]}" ${endpoint[$store]} "$url" || true
      read -r wall user sys rss < "$work/time"
      read -r seen batches deletes < <(seen_since "$store" "$start")
      own=$(( seen - (deletes - $(field "$work/r.json" 'r["requests"]["delete"]') + batches) ))
      [ "$store" = gcs ] || own=$seen
      manifests=$(field "$work/r.json" 'r["summary"]["manifests"]')
      pages=$(field "$work/r.json" 'r["requests"]["list"]')
      case "$store:$run" in
        s3:"dry, empty cache") floor=$(( (keys + 999) / 1000 + manifests ));;
        *:"dry, empty cache") floor=$(( (keys + 4999) / 5000 + manifests ));;
        s3:"dry, warm cache") floor=$(( (keys + 999) / 1000 ));;
        *:"dry, warm cache") floor=$(( (keys + 4999) / 5000 ));;
        *) floor="";;
      esac
      printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %.2f | %.1f |\n' \
        "$store" "$preset" "$keys" "$manifests" "$run" "$pages" \
        "$(field "$work/r.json" 'r["requests"]["get"]')" \
        "$(field "$work/r.json" 'r["requests"]["put"]')" \
        "$(field "$work/r.json" 'r["requests"]["delete"]')" \
        "$(field "$work/r.json" 'r["requests"]["list"]+r["requests"]["get"]+r["requests"]["put"]+r["requests"]["delete"]+r["requests"]["head"]') ($own)" \
        "$floor" \
        "$( [ "$run" = "real gc -m" ] && field "$work/r.json" 'r["summary"]["deleted_bytes"]' || echo 0)" \
        "$wall" "$(echo "$user + $sys" | bc)" "$(echo "scale=1; $rss / 1024" | bc)"
    done
    if [ "$store" = s3 ] && [[ " ${REFERENCE_PRESETS:-small} " == *" $preset "* ]]; then
      # The reference on its own copy of the same tree, same server.
      ref="bench-ref-$preset"
      rm -rf "$work/up"
      RAYON_NUM_THREADS=8 "$gen" --preset "$preset" --seed 1 "$work/up" --upload "s3://$ref/reg" ${endpoint[s3]} 2> "$work/up.log"
      config=$work/ref.yml
      printf 'version: 0.1\nstorage:\n  s3:\n    accesskey: bench\n    secretkey: bench\n    region: us-east-1\n    regionendpoint: http://127.0.0.1:%s\n    bucket: %s\n    rootdirectory: /reg\n    secure: false\n  redirect:\n    disable: true\n' "$s3_port" "$ref" > "$config"
      start=$(lines s3); t0=$(date +%s.%N)
      docker-registry garbage-collect -m "$config" > /dev/null 2>&1 || true
      t1=$(date +%s.%N)
      read -r seen _ _ < <(seen_since s3 "$start")
      reference_rows+=("| s3 | $preset | $keys | reference \`garbage-collect -m\` | $seen | $(printf '%.2f' "$(echo "$t1 - $t0" | bc)") |")
    fi
  done
done
echo
echo "| store | tree | keys | run | requests (server) | wall s |"
echo "|---|---|---:|---|---:|---:|"
printf '%s\n' "${reference_rows[@]}"
