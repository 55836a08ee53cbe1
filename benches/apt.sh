#!/usr/bin/env bash
# apt-layer benchmark for issue 9: layerize making curl, git and vim into per-package layers on a
# Debian bookworm minbase and pushing the image, against `apt-get install` of the same packages
# in a chroot of the same base rootfs; then the rebuild after removing git. In the same run:
#
#   - apt-get: the minbase tarball unpacked once into a reference rootfs, where `apt-get update`
#     and `apt-get install --download-only` fill the package lists and /var/cache/apt/archives
#     (untimed). Each round copies it (untimed) and times `apt-get install -y
#     --no-install-recommends curl git vim` in a chroot of the copy; the rebuild is what a
#     Dockerfile rebuild does: a fresh copy and `apt-get install ... curl vim`. dpkg runs with
#     --force-unsafe-io, as in Debian's official container images.
#   - layerize: `apt: [curl, git, vim]` (Recommends are off by default) on the base in a local
#     docker-registry, built once untimed to fill the cache dir. Each round removes everything
#     of the cache dir but its downloads (the .debs in CACHE/apt/v1/debs and the indexes in
#     CACHE/apt/v1/http), times a build pushed to a new repository, then the rebuild without
#     git pushed to the same tag. Then it puts back what an untimed build of one script step on
#     the base left in a cache dir of its own (the base's index, kept tar and unpacked layer
#     directory: the base already on the machine, as apt-get's rootfs is) and times the first
#     build again, to another new repository.
#
# The untimed preparation of each timed build (the copy of the rootfs, the dropped cache) is
# synced to disk before it, so that neither tool's time includes writing back the other's.
# Both download from the mirror in the base's sources only during their untimed warm-ups;
# layerize still revalidates its cached indexes with conditional requests in every build.
# Needs root (chroot, and the sandbox that runs the maintainer scripts).
#
# Usage: benches/apt.sh [--no-doc]
#   RUNS=N           timed rounds per tool (default 3; medians are reported), interleaved
#   LOAD_WAIT=SECS   how long to wait for the 1-minute load average to drop below the core count
#                    before measuring (default 90)
#   BASE_CACHE=DIR   where the mmdebstrap tarball is kept between runs
#                    (default ~/.cache/layerize-bench)
#   KEEP=1           keep the work directory (registry log, reports, build outputs)
# Prints a summary and, unless --no-doc, replaces the generated part of the "apt layers" section
# of docs/benchmarks.md (between the apt-bench markers) with it.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
if ((EUID != 0)); then
  echo "benches/apt.sh needs root (chroot, and the sandbox for maintainer scripts)" >&2
  exit 1
fi
# shellcheck source=benches/doc_section.sh
source "$repo/benches/doc_section.sh"
# shellcheck source=benches/common.sh
source "$repo/benches/common.sh"

bench_setup 3 apt "$@"

use_private_buildah
trap_cleanup_one_registry

packages=(curl git vim)
without_git=(curl vim)

start_registry r
R=127.0.0.1:$(cat "$work/r.port")
push_minbase_base

# --- apt-get: a reference rootfs with warm lists and archives --------------------------------
step "apt-get: the reference rootfs, its package lists and the .debs (untimed)"
reference=$work/rootfs-reference
mkdir -p "$reference"
tar -xf "$minbase" -C "$reference"
cp -L /etc/resolv.conf "$reference/etc/resolv.conf"
apt_in() { chroot "$1" env DEBIAN_FRONTEND=noninteractive apt-get "${@:2}"; }
apt_in "$reference" update -q >&2
apt_in "$reference" install -y -q --no-install-recommends --download-only "${packages[@]}" >&2
debs=$(find "$reference/var/cache/apt/archives" -name '*.deb' | wc -l)

# apt_get_install KEY PACKAGES...: a fresh copy of the reference rootfs (untimed), then the timed
# install in a chroot of it.
apt_get_install() {
  local key=$1 copy=$work/rootfs-copy
  shift
  rm -rf "$copy"
  cp -a "$reference" "$copy"
  sync
  timed "$key" chroot "$copy" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
    --no-install-recommends -o Dpkg::Options::=--force-unsafe-io "$@"
  grep -c '^Setting up ' "$work/$key.out" >>"$work/$key.count" || true
  rm -rf "$copy"
}

# --- layerize: build files and a warm cache dir ----------------------------------------------
# write_build_file FILE PACKAGES...: `apt: [PACKAGES]` as one entry on the local base.
write_build_file() {
  local file=$1
  shift
  local list
  list=$(printf '%s, ' "$@")
  cat >"$file" <<EOF
image: {base: "$R/base:1", target: "unused.invalid/never:pushed"}
layers:
  - name: tools
    apt: [${list%, }]
EOF
}
write_build_file "$work/first.yaml" "${packages[@]}"
write_build_file "$work/without-git.yaml" "${without_git[@]}"
cache=$work/layerize-cache
step "layerize: a warm-up build into $cache (untimed)"
"$layerize" build -c "$work/first.yaml" --target "$R/warm:1" --cache-dir "$cache" \
  --report "$work/warm-report.json" >"$work/warm.out" 2>&1 || { cat "$work/warm.out" >&2; exit 1; }
if [[ ! -d $cache/apt/v1/debs ]]; then
  echo "no .deb cache at $cache/apt/v1/debs after the warm-up build" >&2
  exit 1
fi

# Everything of the cache dir but its downloads (the .debs and the archive's indexes): the
# layers, blobs, unpacked bases, the base's index, and each .deb's facts.
drop_layer_cache() {
  find "$cache" -mindepth 1 -maxdepth 1 ! -name apt -exec rm -rf {} +
  find "$cache/apt/v1" -mindepth 1 -maxdepth 1 ! -name debs ! -name http -exec rm -rf {} +
}

# layerize_build KEY FILE TARGET: one timed build, its built layers (from the report) appended
# to $work/KEY.count.
layerize_build() {
  local key=$1 file=$2 target=$3
  timed "$key" "$layerize" build -c "$file" --target "$target" --cache-dir "$cache" \
    --report "$work/$key-report.json"
  jq '[.layers[] | select(.status == "built")] | length' "$work/$key-report.json" >>"$work/$key.count"
}

# The base alone in a cache dir, for the rounds that start with the base already on this
# machine as apt-get's rootfs is: a build of one script step on the base indexes it, keeps its
# tar and unpacks it for the step's root, as the first build of an image on that base does.
cat >"$work/base-only.yaml" <<EOF
image: {base: "$R/base:1", target: "unused.invalid/never:pushed"}
layers:
  - name: nothing
    script:
      run: ["true"]
EOF
base_cache=$work/layerize-cache-with-base
step "layerize: a cache dir holding only the base (untimed)"
"$layerize" build -c "$work/base-only.yaml" --target "$R/base-only:1" --cache-dir "$base_cache" \
  >"$work/base-only.out" 2>&1 || { cat "$work/base-only.out" >&2; exit 1; }
if [[ ! -d $base_cache/unpacked ]]; then
  echo "the base-only build unpacked no base into $base_cache/unpacked" >&2
  exit 1
fi

# The downloads of the layerize cache dir plus what the base-only build left: the base's index,
# its kept tar and its layer directory.
restore_base_cache() {
  drop_layer_cache
  cp -a "$base_cache"/. "$cache"/
}

loads_before=$(cut -d' ' -f1-3 /proc/loadavg)
wait_for_quiet
loads_at_start=$(cut -d' ' -f1-3 /proc/loadavg)

round_layerize() {
  local run=$1
  drop_layer_cache
  sync
  layerize_build layerize-first "$work/first.yaml" "$R/lz$run:1"
  layerize_build layerize-rebuild "$work/without-git.yaml" "$R/lz$run:1"
  restore_base_cache
  sync
  layerize_build layerize-first-base "$work/first.yaml" "$R/lzb$run:1"
}
round_apt_get() {
  apt_get_install apt-get-first "${packages[@]}"
  apt_get_install apt-get-rebuild "${without_git[@]}"
}
keys=(layerize-first layerize-first-base layerize-rebuild apt-get-first apt-get-rebuild)
step "curl + git + vim, then without git: $runs runs each, interleaved"
for i in $(seq "$runs"); do
  if ((i % 2)); then round_layerize "$i"; round_apt_get; else round_apt_get; round_layerize "$i"; fi
  echo "run $i: layerize first $(tail -n1 "$work/layerize-first.time")s rebuild $(tail -n1 "$work/layerize-rebuild.time")s" \
    "first with the base cached $(tail -n1 "$work/layerize-first-base.time")s;" \
    "apt-get first $(tail -n1 "$work/apt-get-first.time")s rebuild $(tail -n1 "$work/apt-get-rebuild.time")s" >&2
done
loads_at_end=$(cut -d' ' -f1-3 /proc/loadavg)

# --- results ---------------------------------------------------------------------------------
runs_of() { paste -sd' ' "$work/$1.time"; }
count_of() { sort -u "$work/$1.count" | paste -sd' '; }
row() {
  local key=$1
  shift
  printf '| %s ' "$@"
  echo "| $(count_of "$key") | $(fmt "$(med "$key" time)") | $(runs_of "$key") | $(mib_of_kib "$(med "$key" rss)") |"
}
first_ratio=$(ratio "$(med layerize-first time)" "$(med apt-get-first time)")
first_base_ratio=$(ratio "$(med layerize-first-base time)" "$(med apt-get-first time)")
rebuild_ratio=$(ratio "$(med layerize-rebuild time)" "$(med apt-get-rebuild time)")
goal_first=$(met "$first_ratio <= 0.5")
goal_first_base=$(met "$first_base_ratio <= 0.5")
goal_rebuild=$(met "$rebuild_ratio <= 0.1")
resolved=$(jq '.apt.packages | length' "$work/layerize-first-report.json")
run_loads=$(cat "$work"/{layerize,apt-get}-*.load | sort -g | awk '{ v[NR] = $1 } END { printf "%s to %s (median %s)", v[1], v[NR], (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }')
modes=$(jq -r '[.steps[] | select(.status == "built") | .mode] | unique | join(", ")' "$work/layerize-first-report.json")

report=$work/report.md
{
  echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') by \`benches/apt.sh\` (RUNS=$runs; medians, the tools'"
  echo "rounds interleaved)."
  echo
  echo "- Machine: $(machine_summary), the registry on loopback with filesystem storage."
  echo "- Load: 1/5/15-minute load averages $loads_before before, $loads_at_start when measuring started,"
  echo "  $loads_at_end at the end; 1-minute load at the start of each timed run $run_loads on $cores cores."
  echo "- Versions: $(tool_versions "$layerize"); $(chroot "$reference" apt-get --version | head -n1)."
  echo "- Base: \`mmdebstrap --variant=minbase bookworm\` ($base_mib MiB compressed as one layer)."
  echo "  apt-get: the same tarball unpacked, \`apt-get update\` and \`--download-only\` run once ($debs"
  echo "  .debs in /var/cache/apt/archives), then each build times \`apt-get install -y"
  echo "  --no-install-recommends\` in a chroot of a fresh copy, dpkg with --force-unsafe-io; it makes no"
  echo "  image and pushes nothing. layerize: one untimed build filled its cache dir; each round drops all"
  echo "  of it but the downloads (\`apt/v1/debs\`, \`apt/v1/http\`: the .debs and indexes) and builds +"
  echo "  pushes to a new repository, then the rebuild pushes to the same tag; then the cache dir"
  echo "  gets back what an untimed build of one script step on the base left (the base's index, its"
  echo "  kept tar and its unpacked layer directory: the base on this machine, as apt-get's rootfs is)"
  echo "  and the first build is timed again, to another new repository. layerize's sandbox mode for"
  echo "  the maintainer scripts: $modes."
  echo "- Count: packages set up (apt-get's \"Setting up\" lines) / layers built (layerize's report;"
  echo "  $resolved packages resolved, each its own layer, plus dpkg-database and dpkg-configure)."
  echo
  echo "\`apt: [curl, git, vim]\` / \`apt-get install curl git vim\`; then the same without git:"
  echo
  echo "| build | tool | count | median s | runs (s) | peak RSS MiB |"
  echo "|---|---|---|---|---|---|"
  row layerize-first "first build (warm downloads)" "layerize build -c + push"
  row layerize-first-base "first build (warm downloads, the base in the cache)" "layerize build -c + push"
  row apt-get-first "first build (warm downloads)" "apt-get install in a chroot"
  row layerize-rebuild "git removed" "layerize build -c + push"
  row apt-get-rebuild "git removed" "apt-get install in a fresh chroot"
  echo
  echo "Goals: first build at most 0.5x apt-get's time: **$goal_first** (${first_ratio}x) with only"
  echo "the downloads cached, **$goal_first_base** (${first_base_ratio}x) with the base in the cache too;"
  echo "rebuild without git at most 0.1x: **$goal_rebuild** (${rebuild_ratio}x)."
} >"$report"

step "Summary"
cat "$report"

if $update_doc; then
  update_doc_section "$repo/docs/benchmarks.md" apt-bench "apt layers" "$report"
fi
