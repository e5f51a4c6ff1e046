#!/usr/bin/env bash
# Real runs, not dry runs: regsweep's sweep against `rm -rf` of exactly the paths it deletes,
# and the reference collector, on fresh copies of the same synthetic registry, in one run.
#
#   benches/real_run.sh [--pairs N] [--dir DIR] [--out FILE] PRESET...
#
# For each preset (small, medium, large) it generates the registry once (seed 1) under DIR
# (default /tmp/regsweep-bench/PRESET) and lists, from regsweep's dry run of it, the paths a
# real run deletes (blob directories, revision directories, tag-history entries, layer-link
# directories). Then, N times (default 3), on two fresh copies (`cp -a`, then `sync`, so the
# page cache is warm and nothing is left to write back), in alternating order:
#   regsweep gc -m --min-age 0 -q COPY            (this checkout, release build)
#   xargs -n 1000 rm -rf < PATHS                  (one process at a time, 1,000 paths a call)
# and once each, on fresh copies:
#   xargs -P 8 -n 1000 rm -rf < PATHS             (what the filesystem allows in parallel)
#   docker-registry garbage-collect -m CFG        (the reference, distribution 2.8)
# It prints the medians, the ratio regsweep / rm -rf of each pair (and their median), and
# regsweep's time by phase (the median run's `timings`), as Markdown tables appended to FILE
# (default: stdout).
set -euo pipefail
cd "$(dirname "$0")/.."

pairs=3
base=/tmp/regsweep-bench
out=/dev/stdout
presets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --pairs) pairs=$2; shift 2 ;;
    --dir) base=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) presets+=("$1"); shift ;;
  esac
done
[ ${#presets[@]} -gt 0 ] || presets=(small medium)
command -v docker-registry >/dev/null || { echo "real_run.sh: docker-registry is not installed" >&2; exit 2; }

cargo build --release --quiet --bin regsweep --example gen-registry
regsweep=$PWD/target/release/regsweep
gen=$PWD/target/release/examples/gen-registry

# Wall-clock seconds of a command (its output discarded).
seconds() {
  local t0 t1
  t0=$(date +%s.%N)
  "$@" > /dev/null
  t1=$(date +%s.%N)
  echo "$t0 $t1" | awk '{ printf "%.2f\n", $2 - $1 }'
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

fresh() { rm -rf "$2"; cp -a "$1" "$2"; sync; }

# The paths a real run deletes, from a dry run's JSON report, under ROOT.
paths_of() {
  python3 - "$1" "$2" <<'EOF'
import json, sys
report, root = json.load(open(sys.argv[1])), sys.argv[2] + "/docker/registry/v2"
d = report["deleted"]
for m in d["manifests"]:
    alg, hx = m["digest"].split(":")
    for t in m["tags"]:
        print(f"{root}/repositories/{m['repository']}/_manifests/tags/{t}/index/{alg}/{hx}")
    print(f"{root}/repositories/{m['repository']}/_manifests/revisions/{alg}/{hx}")
for l in d["layer_links"]:
    alg, hx = l["digest"].split(":")
    print(f"{root}/repositories/{l['repository']}/_layers/{alg}/{hx}")
for b in d["blobs"]:
    alg, hx = b["digest"].split(":")
    print(f"{root}/blobs/{alg}/{hx[:2]}/{hx}")
EOF
}

for preset in "${presets[@]}"; do
  template=$base/$preset
  if [ ! -f "$template/.generated" ]; then
    rm -rf "$template"
    "$gen" --preset "$preset" --seed 1 "$template" >&2
    touch "$template/.generated"
  fi
  work=$base/$preset-work
  mkdir -p "$work"
  a=$work/a b=$work/b
  "$regsweep" gc -d -m --min-age 0 -q --json "$work/plan.json" "$template" || true
  paths_of "$work/plan.json" "$b" > "$work/paths"
  count=$(wc -l < "$work/paths")
  : > "$work/regsweep" ; : > "$work/rm" ; : > "$work/ratio"
  for i in $(seq 1 "$pairs"); do
    fresh "$template" "$a"
    fresh "$template" "$b"
    if [ $((i % 2)) = 1 ]; then
      r=$(seconds "$regsweep" gc -m --min-age 0 -q --json "$work/run-$i.json" "$a"); sync
      m=$(seconds sh -c "xargs -n 1000 rm -rf < '$work/paths'"); sync
    else
      m=$(seconds sh -c "xargs -n 1000 rm -rf < '$work/paths'"); sync
      r=$(seconds "$regsweep" gc -m --min-age 0 -q --json "$work/run-$i.json" "$a"); sync
    fi
    echo "$r" >> "$work/regsweep"; echo "$m" >> "$work/rm"
    echo "$r $m" | awk '{ printf "%.2f\n", $1 / $2 }' >> "$work/ratio"
    echo "$preset pair $i: regsweep ${r}s, rm -rf ${m}s" >&2
  done
  fresh "$template" "$b"
  par=$(seconds sh -c "xargs -P 8 -n 1000 rm -rf < '$work/paths'"); sync
  rm -rf "$b"
  fresh "$template" "$a"
  cfg=$work/config.yml
  printf 'version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: %s\n' "$a" > "$cfg"
  ref=$(seconds sh -c "docker-registry garbage-collect -m '$cfg' 2>&1"); sync
  rm -rf "$a"

  r=$(median < "$work/regsweep"); m=$(median < "$work/rm"); ratio=$(median < "$work/ratio")
  # The phases of the run nearest the median.
  best=$(awk -v med="$r" '{ d = $1 - med; if (d < 0) d = -d; print d, NR }' "$work/regsweep" | sort -g | head -1 | cut -d' ' -f2)
  phases=$(python3 -c "
import json, sys
t = json.load(open(sys.argv[1]))['timings']
print(' | '.join(f'{t[k]:.2f}' for k in ['mark', 'plan', 'second_look', 'references', 'trash', 'last_look', 'delete', 'tidy']))
" "$work/run-$best.json")
  {
    echo
    echo "#### $preset: $count paths deleted, $pairs pairs on fresh copies"
    echo
    echo "| what | median wall (s) | runs |"
    echo "|---|---:|---|"
    echo "| \`regsweep gc -m --min-age 0\` | $r | $(paste -sd' ' "$work/regsweep") |"
    echo "| \`rm -rf\` of the same paths, one process, 1,000 a call | $m | $(paste -sd' ' "$work/rm") |"
    echo "| regsweep / rm -rf (per pair) | **$ratio** | $(paste -sd' ' "$work/ratio") |"
    echo "| \`rm -rf\` of the same paths, 8 processes (the filesystem's limit here) | $par | 1 run |"
    echo "| reference \`garbage-collect -m\` | $ref | 1 run |"
    echo
    echo "regsweep by phase (s), the run nearest the median:"
    echo
    echo "| mark | plan | second look | references | trash | last look | delete | tidy |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
    echo "| $phases |"
  } >> "$out"
done
