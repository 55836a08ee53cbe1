#!/usr/bin/env bash
# Layer-building benchmark, each comparison in the same run, RUNS times interleaved, printing the
# medians (wall time, CPU time, peak RSS, output size) and layerize's ratios to pigz:
# - usr: one layer from a ~500 MiB tree (the first 250 MiB of /usr/lib and of /usr/share in path
#   order: binaries, libraries, text, docs) with `layerize build --dir` (release binary, an empty
#   base made by umoci, an OCI layout target), `tar -c | pigz -6 -p 2` and `tar -c | gzip -6`.
# - rootfs: the same with layerize and pigz on three copies of a Debian bookworm minbase root
#   filesystem directory made by mmdebstrap, /dev nodes included (~530 MiB, ~26k entries: the
#   shape of real images).
# Then peak RSS of layerize for a ~20 MiB and a ~2 GiB tree (skip with RSS_SCALING=0).
#
# Usage: benches/layer.sh            (env: RUNS=3, TREE_MIB=500, WORK=/var/tmp/layerize-bench,
#                                      COMPARE="usr rootfs", RSS_SCALING=1,
#                                      ROOTFS=DIR: an mmdebstrap rootfs to copy instead of making one,
#                                      KEEP=0 keeps the trees for the next run)
# Needs: pigz, gzip, umoci, GNU time (/usr/bin/time), python3, cargo; for rootfs, root and
# mmdebstrap with this machine's apt sources (unless ROOTFS is given).
set -euo pipefail

RUNS=${RUNS:-3}
TREE_MIB=${TREE_MIB:-500}
WORK=${WORK:-/var/tmp/layerize-bench}
RSS_SCALING=${RSS_SCALING:-1}
COMPARE=${COMPARE:-usr rootfs}
ROOTFS=${ROOTFS:-}
KEEP=${KEEP:-0}
ROOT=$(cd "$(dirname "$0")/.." && pwd)

for tool in pigz gzip umoci /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "missing $tool (run scripts/install-deps)" >&2; exit 1; }
done

echo "building layerize (release)..." >&2
cargo build --quiet --release --locked --manifest-path "$ROOT/Cargo.toml" -p layerize-cli
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps --manifest-path "$ROOT/Cargo.toml" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
export LAYERIZE="$TARGET_DIR/release/layerize" WORK

mkdir -p "$WORK"
[ "$KEEP" = 1 ] || trap 'rm -rf "$WORK"' EXIT
export EMPTY_BASE="$WORK/empty-base"
[ -d "$EMPTY_BASE" ] || { umoci init --layout "$EMPTY_BASE" && umoci new --image "$EMPTY_BASE:base"; }

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

# measure NAME OUT COMMAND...: runs COMMAND under GNU time, prints "NAME wall cpu rss_kib size".
measure() {
  local name=$1 out=$2; shift 2
  local stats
  stats=$( { /usr/bin/time -f '%e %U %S %M' "$@" >/dev/null; } 2>&1 | tail -1)
  read -r wall user sys rss <<<"$stats"
  echo "$name $wall $(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }') $rss $(stat -c %s "$out")"
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }

# compare TREE TIME_GOAL TOOLS...: builds a layer of TREE with each of TOOLS (layerize, pigz,
# gzip), RUNS times interleaved; prints the medians and layerize's ratios (TIME_GOAL: the goal for
# layerize's time over pigz's), and checks the blob: valid gzip, the same with 1 and 2 threads.
compare() {
  local tree=$1 time_goal=$2 results="$WORK/results.txt" load_before
  shift 2
  tar -cf - -C "$tree" . | wc -c >/dev/null # warm the page cache
  load_before=$(cut -d' ' -f1-3 /proc/loadavg)
  : >"$results"
  for run in $(seq "$RUNS"); do
    echo "run $run/$RUNS..." >&2
    for tool in "$@"; do
      case $tool in
        layerize) measure layerize "$WORK/layerize.tar.gz" "${LAYER[@]}" "$tree" "$WORK/layerize.tar.gz" 2 ;;
        pigz) measure pigz "$WORK/pigz.tar.gz" bash -c "tar -c -C '$tree' . | pigz -6 -p 2 > '$WORK/pigz.tar.gz'" ;;
        gzip) measure gzip "$WORK/gzip.tar.gz" bash -c "tar -c -C '$tree' . | gzip -6 > '$WORK/gzip.tar.gz'" ;;
      esac >>"$results"
    done
  done
  gzip -t "$WORK/layerize.tar.gz" # the multi-member stream is one valid gzip file
  local digest_2_threads digest_1_thread
  digest_2_threads=$(sha256sum "$WORK/layerize.tar.gz" | cut -c1-64)
  digest_1_thread=$(layerize_layer "$tree" "$WORK/layerize-1.tar.gz" 1)

  stat_of() { awk -v n="$1" -v c="$2" '$1 == n { print $c }' "$results" | median; }
  echo
  echo "Layer from $tree: $(du -sm "$tree" | cut -f1) MiB, $(find "$tree" | wc -l) entries ($(find "$tree" \( -type c -o -type b \) | wc -l) devices), median of $RUNS runs, $(nproc) cores, load before: $load_before, after: $(cut -d' ' -f1-3 /proc/loadavg)"
  printf '%-10s %9s %9s %10s %14s\n' tool wall_s cpu_s rss_mib size_bytes
  for tool in "$@"; do
    printf '%-10s %9s %9s %10s %14s\n' "$tool" "$(stat_of "$tool" 2)" "$(stat_of "$tool" 3)" \
      "$(div "$(stat_of "$tool" 4)" 1024)" "$(stat_of "$tool" 5)"
  done
  echo "layerize/pigz: time $(div "$(stat_of layerize 2)" "$(stat_of pigz 2)")x (goal <= $time_goal)," \
    "size $(div "$(stat_of layerize 5)" "$(stat_of pigz 5)")x (goal <= 1.03)," \
    "cpu $(div "$(stat_of layerize 3)" "$(stat_of pigz 3)")x;" \
    "layerize peak RSS $(div "$(stat_of layerize 4)" 1024) MiB (goal < 64)"
  if [[ " $* " == *" gzip "* ]]; then
    echo "layerize/gzip: time $(div "$(stat_of layerize 2)" "$(stat_of gzip 2)")x," \
      "size $(div "$(stat_of layerize 5)" "$(stat_of gzip 5)")x"
  fi
  echo "layerize blob digest with 2 threads: $digest_2_threads, with 1 thread: $digest_1_thread"
  [ "$digest_2_threads" = "$digest_1_thread" ] || { echo "thread count changed the blob" >&2; exit 1; }
}

for case in $COMPARE; do
  case $case in
    usr)
      make_tree "$WORK/tree-${TREE_MIB}" "$TREE_MIB"
      compare "$WORK/tree-${TREE_MIB}" 0.5 layerize pigz gzip
      ;;
    rootfs)
      make_rootfs_tree "$WORK/rootfs-x3"
      compare "$WORK/rootfs-x3" 0.4 layerize pigz
      ;;
    *) echo "unknown comparison $case (COMPARE takes usr and rootfs)" >&2; exit 1 ;;
  esac
done

if [ "$RSS_SCALING" = 1 ]; then
  rss_of() { # rss_of LABEL DIR
    read -r _ wall _ rss size < <(measure layerize "$WORK/scale.tar.gz" "${LAYER[@]}" "$2" "$WORK/scale.tar.gz" 2)
    echo "  $1: peak RSS $(div "$rss" 1024) MiB, ${wall} s, ${size} bytes"
  }
  echo
  echo "Peak RSS of layerize by layer size (goal: flat, < 64 MiB):"
  make_tree "$WORK/tree-2048" 2048
  if [ ! -d "$WORK/one-file-2048" ]; then
    mkdir -p "$WORK/one-file-2048" "$WORK/one-file-20"
    # cat stops on SIGPIPE once head has enough.
    { find "$WORK/tree-2048" -type f -print0 | xargs -0 cat || true; } | head -c $((2048 << 20)) >"$WORK/one-file-2048/f"
    head -c $((20 << 20)) "$WORK/one-file-2048/f" >"$WORK/one-file-20/f"
  fi
  rss_of "one 20 MiB file          " "$WORK/one-file-20"
  rss_of "one 2 GiB file           " "$WORK/one-file-2048"
  make_tree "$WORK/tree-20" 20
  rss_of "20 MiB tree ($(find "$WORK/tree-20" | wc -l) entries)" "$WORK/tree-20"
  rss_of "2 GiB tree ($(find "$WORK/tree-2048" | wc -l) entries)" "$WORK/tree-2048"
fi
