#!/usr/bin/env bash
# Compare regsweep with the reference collector on the same synthetic registry, in one run.
#
#   benches/compare.sh [--runs N] [--cold-runs N] [--dir DIR] [--out FILE] PRESET...
#
# For each preset (small, medium, large) it generates the registry once (seed 1) under DIR
# (default /tmp/regsweep-bench/PRESET), then times, alternating so that drift hits all three
# alike:
#   regsweep gc -d --min-age 0 ROOT                 (this checkout, release build)
#   docker-registry garbage-collect --dry-run CFG   (the reference, distribution 2.8)
#   find ROOT -type f | wc -l                       (merely listing the tree)
# on a warm cache (each timed run right after an untimed run of the same command) and on a cold
# one (page cache dropped before every run; needs root, skipped otherwise). It quotes medians of N runs (default 5; --cold-runs sets
# the cold count separately, 0 skips the cold cache) and the peak RSS reported by
# /usr/bin/time -v, and appends a Markdown table to FILE (default: stdout).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=5
cold_runs=
base=/tmp/regsweep-bench
out=/dev/stdout
presets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --cold-runs) cold_runs=$2; shift 2 ;;
    --dir) base=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) presets+=("$1"); shift ;;
  esac
done
[ ${#presets[@]} -gt 0 ] || presets=(medium)
[ -n "$cold_runs" ] || cold_runs=$runs
command -v docker-registry >/dev/null || { echo "compare.sh: docker-registry is not installed" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "compare.sh: /usr/bin/time is not installed (apt-get install time)" >&2; exit 2; }

cargo build --release --quiet --bin regsweep --example gen-registry
regsweep=$PWD/target/release/regsweep
gen=$PWD/target/release/examples/gen-registry

can_drop=no
if [ "$(id -u)" = 0 ] && (sync && echo 3 > /proc/sys/vm/drop_caches) 2>/dev/null; then can_drop=yes; fi

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }

# Run a command under /usr/bin/time -v; print "seconds peak_kb".
measure() {
  local log
  log=$(mktemp)
  /usr/bin/time -v "$@" > /dev/null 2> "$log" || { cat "$log" >&2; rm -f "$log"; return 1; }
  awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]; secs = s }
              /Maximum resident set size/ { kb = $2 }
              END { printf "%.3f %d\n", secs, kb }' "$log"
  rm -f "$log"
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

{
echo "| preset | files | cache | regsweep (s) | reference (s) | find (s) | speed-up vs reference | vs find | regsweep RSS (MB) | reference RSS (MB) |"
echo "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"
} >> "$out"

for preset in "${presets[@]}"; do
  root=$base/$preset
  if [ ! -f "$root/.generated" ]; then
    rm -rf "$root"
    "$gen" --preset "$preset" --seed 1 "$root" >&2
    touch "$root/.generated"
  fi
  cfg=$(mktemp --suffix .yml)
  printf 'version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: %s\n' "$root" > "$cfg"
  files=$(find "$root" -type f | wc -l)

  modes=(warm)
  [ "$can_drop" = yes ] && [ "$cold_runs" -gt 0 ] && modes+=(cold)
  for mode in "${modes[@]}"; do
    tmp=$(mktemp -d)
    n=$runs
    [ "$mode" = cold ] && n=$cold_runs
    for i in $(seq "$n"); do
      # Warm: each tool runs once untimed right before its timed run, so that what it reads
      # is in the page cache (this VM reclaims idle page cache within seconds, so "warm from
      # an earlier round" would not be). Cold: the page cache is dropped before each run.
      prep() { if [ "$mode" = cold ]; then drop_caches; else "$@" >/dev/null 2>&1 || true; fi; }
      prep "$regsweep" gc -d --min-age 0 -q "$root"
      measure "$regsweep" gc -d --min-age 0 -q "$root" >> "$tmp/regsweep"
      prep docker-registry garbage-collect --dry-run "$cfg"
      measure docker-registry garbage-collect --dry-run "$cfg" >> "$tmp/reference"
      prep sh -c "find '$root' -type f | wc -l"
      measure sh -c "find '$root' -type f | wc -l" >> "$tmp/find"
      echo "compare.sh: $preset $mode run $i/$n done" >&2
    done
    ours=$(cut -d' ' -f1 "$tmp/regsweep" | median)
    ref=$(cut -d' ' -f1 "$tmp/reference" | median)
    fnd=$(cut -d' ' -f1 "$tmp/find" | median)
    ours_kb=$(cut -d' ' -f2 "$tmp/regsweep" | sort -n | tail -1)
    ref_kb=$(cut -d' ' -f2 "$tmp/reference" | sort -n | tail -1)
    awk -v p="$preset" -v f="$files" -v m="$mode" -v o="$ours" -v r="$ref" -v fd="$fnd" -v ok="$ours_kb" -v rk="$ref_kb" \
      'BEGIN { printf "| %s | %d | %s | %.2f | %.2f | %.2f | %.1fx | %.1fx | %.1f | %.1f |\n", p, f, m, o, r, fd, r / o, fd / o, ok / 1024, rk / 1024 }' >> "$out"
    rm -rf "$tmp"
  done
  rm -f "$cfg"
done
