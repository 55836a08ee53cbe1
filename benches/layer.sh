#!/usr/bin/env bash
# Layer-building benchmark, each comparison in the same run, RUNS times interleaved, reporting the
# medians (wall time, CPU time, peak RSS, output size) and layerize's ratios to pigz:
# - rootfs: one layer from three copies of a Debian bookworm minbase root filesystem directory
#   made by mmdebstrap, /dev nodes included (~530 MiB, ~26k entries: the shape of real images),
#   with `layerize build --dir TREE:/ --threads 2` (release binary, an empty base made by umoci,
#   an OCI layout target: the whole CLI path, blob placed into the layout) and
#   `tar -c | pigz -6 -p 2`. Goal (issue 6): layerize <= 0.4x pigz's wall time, < 64 MiB RSS.
# - usr: the same with layerize, pigz and `tar -c | gzip -6` on a ~500 MiB tree (the first
#   250 MiB of /usr/lib and of /usr/share in path order: binaries, libraries, text, docs).
#   Goal: <= 0.5x pigz's time, <= 1.03x its size.
# - With LEVELS="4 5" the layer alone (the builder's `layer_of_dir` example: the same checking
#   walk and writing as a build, no layout) is also timed at those libdeflate levels and at 6, in
#   the same interleaved runs, because the CLI always uses the default level.
# Then peak RSS of layerize for a ~20 MiB and a ~2 GiB tree (skip with RSS_SCALING=0).
#
# Usage: benches/layer.sh [--no-doc]
#   RUNS=N          interleaved runs of each tool (default 5)
#   COMPARE="..."   the comparisons to run (default "rootfs usr")
#   LEVELS="..."    also time the layer alone at these gzip levels, and at 6 (default: none)
#   TREE_MIB=N      size of the usr tree (default 500)
#   ROOTFS=DIR      an mmdebstrap rootfs to copy instead of making one
#   WORK=DIR        where the trees and outputs go (default /var/tmp/layerize-bench)
#   KEEP=1          keep WORK (and the trees) for the next run
#   LOAD_WAIT=SECS  how long to wait, before each round of runs, for the 1-minute load average
#                   to drop below the core count (default 90); the loads seen are reported
#   RSS_SCALING=0   skip the peak-RSS-by-size runs
# Prints a summary and, unless --no-doc, replaces the generated part of the "Layer building"
# section of docs/benchmarks.md (between the layer-bench markers).
# Needs: pigz, gzip, umoci, GNU time (/usr/bin/time), python3, cargo; for rootfs, root and
# mmdebstrap with this machine's apt sources (unless ROOTFS is given).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=benches/doc_section.sh
source "$ROOT/benches/doc_section.sh"
# load1, wait_for_quiet (which reads `cores` and `load_wait`, set below), median and met.
# shellcheck source=benches/common.sh
source "$ROOT/benches/common.sh"
update_doc=true
for arg in "$@"; do
  case $arg in
    --no-doc) update_doc=false ;;
    *) echo "usage: $0 [--no-doc]" >&2; exit 2 ;;
  esac
done

RUNS=${RUNS:-5}
TREE_MIB=${TREE_MIB:-500}
WORK=${WORK:-/var/tmp/layerize-bench}
RSS_SCALING=${RSS_SCALING:-1}
COMPARE=${COMPARE:-rootfs usr}
LEVELS=${LEVELS:-}
ROOTFS=${ROOTFS:-}
KEEP=${KEEP:-0}
LOAD_WAIT=${LOAD_WAIT:-90}
CORES=$(nproc)
cores=$CORES
load_wait=$LOAD_WAIT

for tool in pigz gzip umoci /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "missing $tool (run scripts/install-deps)" >&2; exit 1; }
done

echo "building layerize and the layer_of_dir example (release)..." >&2
cargo build --quiet --release --locked --manifest-path "$ROOT/Cargo.toml" -p layerize-cli
cargo build --quiet --release --locked --manifest-path "$ROOT/Cargo.toml" -p layerize-builder --example layer_of_dir
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps --manifest-path "$ROOT/Cargo.toml" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
export LAYERIZE="$TARGET_DIR/release/layerize" LAYER_OF_DIR="$TARGET_DIR/release/examples/layer_of_dir" WORK
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- crates Cargo.lock || echo "+uncommitted")

mkdir -p "$WORK"
[ "$KEEP" = 1 ] || trap 'rm -rf "$WORK"' EXIT
export EMPTY_BASE="$WORK/empty-base"
[ -d "$EMPTY_BASE" ] || { umoci init --layout "$EMPTY_BASE" && umoci new --image "$EMPTY_BASE:base"; }
REPORT="$WORK/report.md"
: >"$REPORT"

# layerize_layer DIR OUT THREADS: `layerize build --dir DIR:/` on the empty base into a fresh
# layout; OUT becomes a hard link to the built layer's blob. Prints the blob's digest.
layerize_layer() {
  local dir=$1 out=$2 threads=$3 target="$WORK/target-layout" digest
  rm -rf "$target"
  "$LAYERIZE" --log-level warn build --base "oci:$EMPTY_BASE:base" --target "oci:$target:bench" \
    --dir "$dir:/" --threads "$threads" --report "$WORK/report.json" >/dev/null
  digest=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["layers"][-1]["digest"][7:])' "$WORK/report.json")
  ln -f "$target/blobs/sha256/$digest" "$out"
  echo "$digest"
}
export -f layerize_layer
LAYER=(bash -c 'layerize_layer "$@"' layerize_layer)

# make_tree DIR MIB: copies regular files and symlinks from /usr into DIR, once: the first half
# of MIB from /usr/share in path order, the rest from /usr/lib in path order.
make_tree() {
  local dir=$1 mib=$2
  [ -d "$dir" ] && return
  echo "copying a ${mib} MiB tree from /usr into $dir..." >&2
  mkdir -p "$dir.tmp"
  local limit=$((mib * 1048576))
  pick() { # pick SRC BYTES: "size path" lines of SRC's first BYTES in path order
    find "$1" \( -type f -o -type l \) -printf '%s %p\n' | sort -k2 |
      awk -v limit="$2" '{ total += $1; if (total <= limit) print }'
  }
  pick /usr/share $((limit / 2)) >"$dir.share"
  pick /usr/lib $((limit - $(awk '{ t += $1 } END { print t + 0 }' "$dir.share"))) >"$dir.lib"
  cut -d' ' -f2- "$dir.share" "$dir.lib" | tar -c --files-from - 2>/dev/null | tar -x -C "$dir.tmp"
  rm "$dir.share" "$dir.lib"
  mv "$dir.tmp" "$dir"
}

# make_rootfs_tree DIR: three copies of a Debian bookworm minbase rootfs (with /dev) in DIR/1..3,
# once; the rootfs is $ROOTFS or made with mmdebstrap into DIR.rootfs.
make_rootfs_tree() {
  local dir=$1 rootfs=$ROOTFS
  [ -d "$dir" ] && return
  if [ -z "$rootfs" ]; then
    rootfs="$dir.rootfs"
    if [ ! -d "$rootfs" ]; then
      echo "making a Debian bookworm minbase rootfs with mmdebstrap into $rootfs..." >&2
      local sources=/etc/apt/sources.list.d/debian.sources
      [ -e "$sources" ] || sources=/etc/apt/sources.list
      mmdebstrap --quiet --variant=minbase bookworm "$rootfs" "$sources"
    fi
  fi
  [ -c "$rootfs/dev/null" ] || { echo "$rootfs has no /dev/null device node" >&2; exit 1; }
  echo "copying $rootfs three times into $dir..." >&2
  mkdir -p "$dir.tmp"
  for copy in 1 2 3; do cp -a "$rootfs" "$dir.tmp/$copy"; done
  mv "$dir.tmp" "$dir"
}

# measure NAME OUT COMMAND...: runs COMMAND under GNU time, prints
# "NAME wall cpu rss_kib size load1_at_start".
measure() {
  local name=$1 out=$2 load stats
  shift 2
  load=$(load1)
  stats=$( { /usr/bin/time -f '%e %U %S %M' "$@" >/dev/null; } 2>&1 | tail -1)
  read -r wall user sys rss <<<"$stats"
  echo "$name $wall $(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }') $rss $(stat -c %s "$out") $load"
}

div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }

# compare LABEL TREE TIME_GOAL TOOLS...: builds a layer of TREE with each of TOOLS (layerize,
# pigz, gzip, level-N), RUNS times interleaved; appends the medians and layerize's ratios to the
# report (TIME_GOAL: the goal for layerize's time over pigz's), and checks the blob: valid gzip,
# the same with 1 and 2 threads.
compare() {
  local label=$1 tree=$2 time_goal=$3 results="$WORK/results.txt" loads_before
  shift 3
  tar -cf - -C "$tree" . | wc -c >/dev/null # warm the page cache
  loads_before=$(cut -d' ' -f1-3 /proc/loadavg)
  : >"$results"
  for run in $(seq "$RUNS"); do
    wait_for_quiet
    echo "$label: run $run/$RUNS..." >&2
    for tool in "$@"; do
      case $tool in
        layerize) measure layerize "$WORK/layerize.tar.gz" "${LAYER[@]}" "$tree" "$WORK/layerize.tar.gz" 2 ;;
        pigz) measure pigz "$WORK/pigz.tar.gz" bash -c "tar -c -C '$tree' . | pigz -6 -p 2 > '$WORK/pigz.tar.gz'" ;;
        gzip) measure gzip "$WORK/gzip.tar.gz" bash -c "tar -c -C '$tree' . | gzip -6 > '$WORK/gzip.tar.gz'" ;;
        level-*) measure "$tool" "$WORK/$tool.tar.gz" "$LAYER_OF_DIR" "$tree" "${tool#level-}" 2 "$WORK/$tool.tar.gz" ;;
      esac | sed "s/\$/ $run/" >>"$results"
    done
  done
  local loads_after
  loads_after=$(cut -d' ' -f1-3 /proc/loadavg)
  gzip -t "$WORK/layerize.tar.gz" # the multi-member stream is one valid gzip file
  local digest_2_threads digest_1_thread
  digest_2_threads=$(sha256sum "$WORK/layerize.tar.gz" | cut -c1-64)
  digest_1_thread=$(layerize_layer "$tree" "$WORK/layerize-1.tar.gz" 1)
  [ "$digest_2_threads" = "$digest_1_thread" ] || { echo "thread count changed the blob" >&2; exit 1; }

  stat_of() { awk -v n="$1" -v c="$2" '$1 == n { print $c }' "$results" | median; }
  # paired TOOL: the median over runs of TOOL's wall time over pigz's in the same run, which
  # cancels most of a load that changes between runs.
  paired() {
    awk -v n="$1" '$1 == n { t[$7] = $2 } $1 == "pigz" { p[$7] = $2 } END { for (r in t) print t[r] / p[r] }' "$results" |
      median | awk '{ printf "%.3f", $1 }'
  }
  runs_of() { awk -v n="$1" '$1 == n { printf "%s%s", sep, $2; sep = " " }' "$results"; }
  mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
  local run_loads time_ratio rss
  run_loads=$(awk '{ print $6 }' "$results" | sort -g | awk '{ v[NR] = $1 } END { printf "%s to %s", v[1], v[NR] }')
  time_ratio=$(div "$(stat_of layerize 2)" "$(stat_of pigz 2)")
  rss=$(stat_of layerize 4)
  {
    echo "#### $label: $(du -sm "$tree" | cut -f1) MiB, $(find "$tree" | wc -l) entries ($(find "$tree" \( -type c -o -type b \) | wc -l) devices)"
    echo
    echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') by \`benches/layer.sh\`, layerize commit $COMMIT (release),"
    echo "median of $RUNS interleaved runs on $CORES cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1))."
    echo "Load averages $loads_before before and $loads_after after; 1-minute load at the start of each"
    echo "timed run $run_loads (above $CORES: other work competed for the cores)."
    echo
    echo "| tool | wall s | runs (s) | CPU s | peak RSS MiB | output bytes |"
    echo "|---|---:|---|---:|---:|---:|"
    for tool in "$@"; do
      local name
      case $tool in
        layerize) name='`layerize build --dir` (libdeflate 6, 2 threads)' ;;
        pigz) name='`tar -c \| pigz -6 -p 2`' ;;
        gzip) name='`tar -c \| gzip -6`' ;;
        level-*) name="layer alone (\`layer_of_dir\`), libdeflate ${tool#level-}, 2 threads" ;;
      esac
      echo "| $name | $(stat_of "$tool" 2) | $(runs_of "$tool") | $(stat_of "$tool" 3) | $(mib "$(stat_of "$tool" 4)") | $(stat_of "$tool" 5) |"
    done
    echo
    echo "- layerize / pigz: **time ${time_ratio}x (goal <= $time_goal: $(met "$time_ratio <= $time_goal"))**," \
      "median of the per-run ratios $(paired layerize)x," \
      "CPU $(div "$(stat_of layerize 3)" "$(stat_of pigz 3)")x," \
      "size $(div "$(stat_of layerize 5)" "$(stat_of pigz 5)")x. **Peak RSS $(mib "$rss") MiB (goal < 64 MiB: $(met "$rss < 65536"))**."
    if [[ " $* " == *" gzip "* ]]; then
      echo "- layerize / gzip: time $(div "$(stat_of layerize 2)" "$(stat_of gzip 2)")x," \
        "size $(div "$(stat_of layerize 5)" "$(stat_of gzip 5)")x."
    fi
    for tool in "$@"; do
      [[ $tool == level-* ]] || continue
      echo "- Level ${tool#level-} / pigz -6: time $(div "$(stat_of "$tool" 2)" "$(stat_of pigz 2)")x" \
        "(per-run $(paired "$tool")x)," \
        "CPU $(div "$(stat_of "$tool" 3)" "$(stat_of pigz 3)")x," \
        "size $(div "$(stat_of "$tool" 5)" "$(stat_of pigz 5)")x ($(stat_of "$tool" 5) against $(stat_of pigz 5) bytes)."
    done
    echo "- Same blob with 1 and 2 threads (\`sha256:${digest_2_threads:0:12}…\`)."
    echo
  } >>"$REPORT"
}

level_tools=()
if [ -n "$LEVELS" ]; then
  for level in $LEVELS 6; do level_tools+=("level-$level"); done
fi

for case in $COMPARE; do
  case $case in
    rootfs)
      make_rootfs_tree "$WORK/rootfs-x3"
      compare "Three copies of a Debian rootfs with /dev" "$WORK/rootfs-x3" 0.4 layerize pigz "${level_tools[@]}"
      ;;
    usr)
      make_tree "$WORK/tree-${TREE_MIB}" "$TREE_MIB"
      compare "A ${TREE_MIB} MiB tree from /usr" "$WORK/tree-${TREE_MIB}" 0.5 layerize pigz gzip "${level_tools[@]}"
      ;;
    *) echo "unknown comparison $case (COMPARE takes rootfs and usr)" >&2; exit 1 ;;
  esac
done

if [ "$RSS_SCALING" = 1 ]; then
  rss_of() { # rss_of LABEL DIR
    local wall rss size
    read -r _ wall _ rss size _ < <(measure layerize "$WORK/scale.tar.gz" "${LAYER[@]}" "$2" "$WORK/scale.tar.gz" 2)
    echo "| $1 | $(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }') | $wall | $size |"
  }
  make_tree "$WORK/tree-2048" 2048
  if [ ! -d "$WORK/one-file-2048" ]; then
    mkdir -p "$WORK/one-file-2048" "$WORK/one-file-20"
    # cat stops on SIGPIPE once head has enough.
    { find "$WORK/tree-2048" -type f -print0 | xargs -0 cat || true; } | head -c $((2048 << 20)) >"$WORK/one-file-2048/f"
    head -c $((20 << 20)) "$WORK/one-file-2048/f" >"$WORK/one-file-20/f"
  fi
  make_tree "$WORK/tree-20" 20
  {
    echo "#### Peak RSS of layerize by layer size (goal: flat, < 64 MiB), one run each"
    echo
    echo "| layer | peak RSS MiB | wall s | output bytes |"
    echo "|---|---:|---:|---:|"
    rss_of "one 20 MiB file" "$WORK/one-file-20"
    rss_of "one 2 GiB file" "$WORK/one-file-2048"
    rss_of "20 MiB tree ($(find "$WORK/tree-20" | wc -l) entries)" "$WORK/tree-20"
    rss_of "2 GiB tree ($(find "$WORK/tree-2048" | wc -l) entries)" "$WORK/tree-2048"
    echo
  } >>"$REPORT"
fi

echo >&2
cat "$REPORT"
if $update_doc; then
  update_doc_section "$ROOT/docs/benchmarks.md" layer-bench "Layer building" "$REPORT"
fi
