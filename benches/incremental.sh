#!/usr/bin/env bash
# Incremental-build benchmark for issue 7: per-package layers that never rebuild a neighbour.
#
#   1. Remove one package (scenario (b) of tests/incremental.rs): a build context of 30
#      package-like directories (a script, a config file, pseudo-random data and text: ~60 MiB
#      in all, generated deterministically) as a layerize.yaml (one `dir` layer per package) and
#      as the equivalent Dockerfile (one `COPY` per package, no RUN), on the same Debian minbase
#      base in the same local docker-registry. Each tool builds and pushes it from scratch
#      (layerize: an empty --cache-dir; buildah: `buildah bud --layers` on empty storage, then
#      `buildah push`), then the 10th package is removed and each builds and pushes again (same
#      cache dir / same storage) to a new tag. Measured for each step: layers rebuilt (layerize:
#      the report; buildah: COPY steps not answered from its cache), bytes uploaded and blobs
#      uploaded (from the registry's access log: the blobs each upload session completed, sized
#      from the registry's storage) and wall time.
#   2. No-change rebuild of ~1 GiB: 30 packages of the same kind, ~34 MiB each, built and pushed
#      into a new repository from an empty cache dir, then the same build again (same cache dir,
#      same tag), and the same build on a new runner (an empty cache dir, --cache-from the first
#      tag, a new tag).
#
# The registry is a throwaway `docker-registry` (distribution 2.8) on loopback; buildah uses its
# own storage root under the work directory, never the system one (see benches/common.sh for the
# containers/image blob-info cache).
#
# Usage: benches/incremental.sh [--no-doc]
#   RUNS=N           timed runs per tool and scenario (default 3; medians are reported)
#   LOAD_WAIT=SECS   how long to wait for the 1-minute load average to drop below the core count
#                    before measuring (default 90); the loads seen are reported either way
#   BASE_CACHE=DIR   where the mmdebstrap tarball is kept between runs
#                    (default ~/.cache/layerize-bench)
#   BIG_MIB=N        the size of scenario 2's build context (default 1024)
#   KEEP=1           keep the work directory (registry log, reports, build outputs)
# Prints a summary and, unless --no-doc, replaces the generated part of the "Incremental
# builds" section of docs/benchmarks.md (between the incremental-bench markers) with it.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
# shellcheck source=benches/doc_section.sh
source "$repo/benches/doc_section.sh"
# shellcheck source=benches/common.sh
source "$repo/benches/common.sh"
private_blob_info_cache "$repo/benches/incremental.sh" "$@"

bench_setup 3 incremental "$@"
big_mib=${BIG_MIB:-1024}
packages=30
removed=10

use_private_buildah
trap_cleanup_one_registry

# make_packages DIR TOTAL_MIB: $packages package directories DIR/pkgNN with bin/pkgNN (a
# script), etc/pkgNN.conf, share/data.bin (pseudo-random bytes, 60% of the package) and
# share/notes.txt (text of pseudo-random words, 40%). Sizes differ per package and add up to
# about TOTAL_MIB; the same arguments always give the same bytes.
make_packages() {
  python3 - "$1" "$2" "$packages" <<'EOF'
import os, random, sys
root, total_mib, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(7)
vocabulary = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
              for _ in range(5000)]
pool = (" ".join(rng.choices(vocabulary, k=1_500_000)) + "\n").encode()
weights = [0.5 + (n * 37 % count) / count for n in range(1, count + 1)]
unit = total_mib * 1048576 / sum(weights)
for n, weight in zip(range(1, count + 1), weights):
    name = f"pkg{n:02d}"
    size, rng = int(unit * weight), random.Random(n)
    for sub in ("bin", "etc", "share"):
        os.makedirs(f"{root}/{name}/{sub}", exist_ok=True)
    with open(f"{root}/{name}/bin/{name}", "w") as f:
        f.write(f"#!/bin/sh\necho {name}\n")
    os.chmod(f"{root}/{name}/bin/{name}", 0o755)
    with open(f"{root}/{name}/etc/{name}.conf", "w") as f:
        f.write(f"name = {name}\nsize = {size}\n")
    with open(f"{root}/{name}/share/data.bin", "wb") as f:
        f.write(rng.randbytes(size * 6 // 10))
    with open(f"{root}/{name}/share/notes.txt", "wb") as f:
        left = size - size * 6 // 10
        while left > 0:
            start = rng.randrange(len(pool) - 65536)
            chunk = pool[start:start + min(left, 65536)]
            f.write(chunk)
            left -= len(chunk)
EOF
}

# write_build_files DIR BASE N...: DIR/layerize.yaml and DIR/Dockerfile adding packages N...
# in that order, one layer each, on BASE.
write_build_files() {
  local dir=$1 base=$2 n name
  shift 2
  {
    echo "image: {base: \"$base\", target: \"unused.invalid/never:pushed\"}"
    echo "layers:"
    for n in "$@"; do
      name=$(printf 'pkg%02d' "$n")
      echo "  - name: $name"
      echo "    dir: {src: $name, dest: /opt/$name}"
    done
  } >"$dir/layerize.yaml"
  {
    echo "FROM $base"
    for n in "$@"; do
      name=$(printf 'pkg%02d' "$n")
      echo "COPY $name /opt/$name"
    done
  } >"$dir/Dockerfile"
}

blob_size() {
  local hex=${1#sha256:}
  stat -c %s "$work/r-data/docker/registry/v2/blobs/sha256/${hex:0:2}/$hex/data"
}

# upload_stats KEY LOG_LINE: appends "blobs bytes" of the uploads the registry completed after
# line LOG_LINE of its access log to $work/KEY.uploads.
upload_stats() {
  local key=$1 since=$2 digest blobs=0 bytes=0
  sleep 0.2 # the access log line is written after the response
  while read -r digest; do
    blobs=$((blobs + 1))
    bytes=$((bytes + $(blob_size "$digest")))
  done < <(requests_since r "$since" | awk '$1 == "PUT" && $2 ~ /\/blobs\/uploads\// { print $2 }' |
    sed -nE 's/.*[?&]digest=(sha256(:|%3A)[0-9a-f]{64}).*/\1/p' | sed 's/%3A/:/')
  echo "$blobs $bytes" >>"$work/$key.uploads"
}

# layerize_build KEY FILE_DIR TARGET CACHE [ARGS...]: one timed `layerize build -c`, its layers
# built (from the report) appended to $work/KEY.rebuilt and its uploads to $work/KEY.uploads.
layerize_build() {
  local key=$1 dir=$2 target=$3 cache=$4 before
  shift 4
  before=$(access_lines r)
  timed "$key" "$layerize" build -c "$dir/layerize.yaml" --target "$target" --cache-dir "$cache" \
    --report "$work/$key-report.json" "$@"
  jq '[.layers[] | select(.status == "built")] | length' "$work/$key-report.json" >>"$work/$key.rebuilt"
  upload_stats "$key" "$before"
}

# buildah_build KEY DIR TAG TARGET: one timed `buildah bud --layers` + `buildah push`, its COPY
# steps not taken from the cache appended to $work/KEY.rebuilt and its uploads to KEY.uploads.
buildah_steps() {
  rss "${buildah_cmd[@]}" bud --layers --tls-verify=false -f "$1/Dockerfile" -t "$2" "$1"
  rss "${buildah_cmd[@]}" push --quiet --tls-verify=false "$2" "docker://$3"
}
buildah_build() {
  local key=$1 dir=$2 tag=$3 target=$4 before steps cached
  before=$(access_lines r)
  timed_sequence "$key" buildah_steps "$dir" "$tag" "$target"
  steps=$(grep -cE '^STEP [0-9]+/[0-9]+: COPY ' "$work/$key.out" || true)
  cached=$(grep -c -- '^--> Using cache ' "$work/$key.out" || true)
  echo $((steps - cached)) >>"$work/$key.rebuilt"
  upload_stats "$key" "$before"
}

start_registry r
R=127.0.0.1:$(cat "$work/r.port")

push_minbase_base

step "Generating the build contexts (30 packages: ~60 MiB, and ~$big_mib MiB)"
small=$work/small big=$work/big
mkdir -p "$small/first" "$small/removed" "$big"
make_packages "$small/first" 60
cp -a "$small/first/." "$small/removed/"
all=$(seq "$packages")
# shellcheck disable=SC2086 # one argument per package
write_build_files "$small/first" "$R/base:1" $all
# shellcheck disable=SC2046 # one argument per package
write_build_files "$small/removed" "$R/base:1" $(seq "$packages" | grep -vx "$removed")
make_packages "$big" "$big_mib"
# shellcheck disable=SC2086
write_build_files "$big" "$R/base:1" $all
small_mib=$(du -sm --exclude=layerize.yaml --exclude=Dockerfile "$small/first" | cut -f1)
big_size_mib=$(du -sm "$big" | cut -f1)

loads_before=$(cut -d' ' -f1-3 /proc/loadavg)
wait_for_quiet
loads_at_start=$(cut -d' ' -f1-3 /proc/loadavg)

# --- 1. remove the 10th ------------------------------------------------------------------------
remove_layerize() {
  local run=$1 cache=$work/cache-remove-$1
  rm -rf "$cache"
  layerize_build remove-layerize-first "$small/first" "$R/lz$run:1" "$cache"
  layerize_build remove-layerize-rebuild "$small/removed" "$R/lz$run:2" "$cache"
  rm -rf "$cache"
}
remove_buildah() {
  local run=$1
  wipe_buildah
  buildah_build remove-buildah-first "$small/first" localhost/layerize-bench-incr:1 "$R/bh$run:1"
  buildah_build remove-buildah-rebuild "$small/removed" localhost/layerize-bench-incr:2 "$R/bh$run:2"
  wipe_buildah
}
remove_keys=(remove-layerize-first remove-layerize-rebuild remove-buildah-first remove-buildah-rebuild)
step "1. Remove the ${removed}th of $packages packages: warm-up, then $runs runs each, interleaved"
remove_layerize 0
remove_buildah 0
for key in "${remove_keys[@]}"; do rm -f "$work/$key".{time,rss,load,rebuilt,uploads}; done
for i in $(seq "$runs"); do
  if ((i % 2)); then remove_layerize "$i"; remove_buildah "$i"; else remove_buildah "$i"; remove_layerize "$i"; fi
  echo "run $i: layerize first $(tail -n1 "$work/remove-layerize-first.time")s rebuild $(tail -n1 "$work/remove-layerize-rebuild.time")s;" \
    "buildah first $(tail -n1 "$work/remove-buildah-first.time")s rebuild $(tail -n1 "$work/remove-buildah-rebuild.time")s" >&2
done

# --- 2. no-change rebuild of ~1 GiB ----------------------------------------------------------
big_round() {
  local run=$1 cache=$work/cache-big-$1 fresh=$work/cache-fresh-$1
  rm -rf "$cache" "$fresh"
  layerize_build big-first "$big" "$R/big$run:1" "$cache"
  layerize_build big-same "$big" "$R/big$run:1" "$cache"
  layerize_build big-fresh "$big" "$R/big$run:2" "$fresh" --cache-from "$R/big$run:1"
  rm -rf "$cache" "$fresh"
}
big_keys=(big-first big-same big-fresh)
step "2. No-change rebuild of $big_size_mib MiB in $packages layers: warm-up, then $runs runs"
big_round 0
for key in "${big_keys[@]}"; do rm -f "$work/$key".{time,rss,load,rebuilt,uploads}; done
for i in $(seq "$runs"); do
  big_round "$i"
  echo "run $i: first $(tail -n1 "$work/big-first.time")s, unchanged $(tail -n1 "$work/big-same.time")s," \
    "new runner $(tail -n1 "$work/big-fresh.time")s" >&2
done
loads_at_end=$(cut -d' ' -f1-3 /proc/loadavg)

# --- results ---------------------------------------------------------------------------------
# col KEY N: the median of column N of $work/KEY.uploads (1: blobs, 2: bytes).
col() { awk -v c="$2" '{ print $c }' "$work/$1.uploads" | median; }
runs_of() { paste -sd' ' "$work/$1.time"; }
# The rebuilt counts seen, "20" or "20 21" when runs differ.
rebuilt_of() { sort -u "$work/$1.rebuilt" | paste -sd' '; }
# 1234567 -> "1,234,567 (1.2 MiB)"; below a MiB just the bytes.
bytes_of() {
  awk -v b="$1" 'BEGIN {
    d = sprintf("%d", b); s = ""
    while (length(d) > 3) { s = "," substr(d, length(d) - 2) s; d = substr(d, 1, length(d) - 3) }
    s = d s
    if (b >= 1048576) s = s sprintf(" (%.1f MiB)", b / 1048576)
    print s
  }'
}
# row KEY LABEL...: a table row of the labels and KEY's figures.
row() {
  local key=$1
  shift
  printf '| %s ' "$@"
  echo "| $(rebuilt_of "$key") | $(col "$key" 1) | $(bytes_of "$(col "$key" 2)") | $(fmt "$(med "$key" time)") | $(runs_of "$key") | $(mib_of_kib "$(med "$key" rss)") |"
}
lz_rebuild=$(med remove-layerize-rebuild time) bh_rebuild=$(med remove-buildah-rebuild time)
speedup=$(ratio "$bh_rebuild" "$lz_rebuild")
# Three decimals: an unchanged rebuild with the same cache dir is far below 0.01x.
ratio3() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
same_ratio=$(ratio3 "$(med big-same time)" "$(med big-first time)")
fresh_ratio=$(ratio3 "$(med big-fresh time)" "$(med big-first time)")
goal_rebuilt=$(met "$(sort -n "$work/remove-layerize-rebuild.rebuilt" | tail -n1) == 0 && $(sort -n "$work/remove-buildah-rebuild.rebuilt" | head -n1) >= $((packages - removed))")
goal_speed=$(met "$speedup >= 10")
goal_same=$(met "$same_ratio <= 0.15")
goal_fresh=$(met "$fresh_ratio <= 0.15")
run_loads=$(cat "$work"/{remove,big}-*.load | sort -g | awk '{ v[NR] = $1 } END { printf "%s to %s (median %s)", v[1], v[NR], (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }')

report=$work/report.md
{
  echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') by \`benches/incremental.sh\` (RUNS=$runs; medians, one"
  echo "untimed warm-up round each; in scenario 1 the tools' rounds interleaved)."
  echo
  echo "- Machine: $(machine_summary), the registry on loopback with filesystem storage."
  echo "- Load: 1/5/15-minute load averages $loads_before before, $loads_at_start when measuring started,"
  echo "  $loads_at_end at the end; 1-minute load at the start of each timed run $run_loads on $cores cores."
  echo "- Versions: $(tool_versions "$layerize")."
  echo "- Base: \`mmdebstrap --variant=minbase bookworm\` as one layer ($base_mib MiB compressed), made and pushed"
  echo "  with buildah. buildah: own storage root (overlay), emptied before each first build and kept for"
  echo "  the rebuild; $cache_note."
  echo "- Bytes and blobs uploaded: the blobs whose upload sessions the registry completed (access log),"
  echo "  sized from its storage; the config blob included."
  echo
  echo "1. $packages packages ($small_mib MiB: a script, a config file, pseudo-random data and text each),"
  echo "   one layer each (layerize.yaml \`dir\` layers / a Dockerfile of one \`COPY\` each), then the"
  echo "   ${removed}th removed. layerize keeps its --cache-dir, buildah its storage (\`bud --layers\`):"
  echo
  echo "| step | tool | layers rebuilt | blobs uploaded | bytes uploaded | median s | runs (s) | peak RSS MiB |"
  echo "|---|---|---|---|---|---|---|---|"
  row remove-layerize-first "first build + push" "layerize build -c"
  row remove-buildah-first "first build + push" "buildah bud --layers + push"
  row remove-layerize-rebuild "${removed}th removed" "layerize build -c"
  row remove-buildah-rebuild "${removed}th removed" "buildah bud --layers + push"
  echo
  echo "2. $packages packages, $big_size_mib MiB, one \`dir\` layer each, rebuilt without a change:"
  echo
  echo "| build | layers rebuilt | blobs uploaded | bytes uploaded | median s | runs (s) | peak RSS MiB |"
  echo "|---|---|---|---|---|---|---|"
  for key in "${big_keys[@]}"; do
    case $key in
      big-first) what="first (empty cache dir, new repository)" ;;
      big-same) what="unchanged, same cache dir and tag" ;;
      big-fresh) what="unchanged, new runner: empty cache dir, --cache-from the first tag, new tag" ;;
    esac
    row "$key" "$what"
  done
  echo
  echo "Goals:"
  echo "- Removing the ${removed}th rebuilds no layer where buildah rebuilds every later one: **$goal_rebuilt**"
  echo "  (layerize $(rebuilt_of remove-layerize-rebuild), buildah $(rebuilt_of remove-buildah-rebuild) of $((packages - 1)))."
  echo "- And at least 10x faster than buildah: **$goal_speed** (buildah / layerize = ${speedup}x)."
  echo "- A no-change rebuild of $big_size_mib MiB in at most 0.15x the first build's time: same cache dir"
  echo "  **$goal_same** (${same_ratio}x); new runner with --cache-from **$goal_fresh** (${fresh_ratio}x)."
} >"$report"

step "Summary"
cat "$report"

if $update_doc; then
  update_doc_section "$repo/docs/benchmarks.md" incremental-bench "Incremental builds" "$report"
fi
