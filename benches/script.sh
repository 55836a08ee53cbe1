#!/usr/bin/env bash
# Script-layer benchmark for issue 8: when the first of three script steps changes, layerize reruns
# it and the one step that `needs` it; `buildah bud --layers --isolation chroot` reruns every RUN
# after it. In the same run, on the same base in the same local registry:
#
#   - layerize: a layerize.yaml of three script steps (tests/script_layers.rs's: `hello` writes
#     /opt/a/hello and edits /etc/motd with sed, `no-issue` deletes /etc/issue, `result` needs
#     `hello` and writes /opt/b/result), built and pushed with an empty --cache-dir (the base
#     warmed into it first by an untimed build of another step), then the first step changed and
#     built and pushed again with the same cache dir. Steps rerun: the report's steps[] `built`.
#   - buildah: the equivalent Dockerfile (FROM the same base, three RUN steps with the same
#     commands joined by &&) with `buildah bud --layers --isolation chroot` + `buildah push` on
#     empty storage (the base pulled first, untimed), then the changed Dockerfile with the same
#     storage. Steps rerun: RUN steps not answered "Using cache".
#
# The base is `mmdebstrap --variant=minbase bookworm` as one layer, in a throwaway docker-registry
# on loopback; buildah uses its own storage root under the work directory (see benches/common.sh
# for the containers/image blob-info cache). Needs root (buildah's chroot isolation, and the
# sandbox's namespaces mode).
#
# Usage: benches/script.sh [--no-doc]
#   RUNS=N           timed rounds per tool (default 3; medians are reported), interleaved, after
#                    one untimed warm-up round each
#   LOAD_WAIT=SECS   how long to wait for the 1-minute load average to drop below the core count
#                    before measuring (default 90); the loads seen are reported either way
#   BASE_CACHE=DIR   where the mmdebstrap tarball is kept between runs
#                    (default ~/.cache/layerize-bench)
#   KEEP=1           keep the work directory (registry log, reports, build outputs)
# Prints a summary and, unless --no-doc, replaces the generated part of the "Script layers"
# section of docs/benchmarks.md (between the script-bench markers) with it.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
if ((EUID != 0)); then
  echo "benches/script.sh needs root (buildah --isolation chroot)" >&2
  exit 1
fi
# shellcheck source=benches/doc_section.sh
source "$repo/benches/doc_section.sh"
# shellcheck source=benches/common.sh
source "$repo/benches/common.sh"
private_blob_info_cache "$repo/benches/script.sh" "$@"

bench_setup 3 script "$@"

use_private_buildah
trap_cleanup_one_registry

# write_build_files DIR BASE CHANGED: DIR/layerize.yaml (three script steps) and DIR/Dockerfile
# (three RUN steps of the same commands) on BASE; with CHANGED=1 the first step has one command
# more. Both are written from one list of commands, quoted by python (JSON strings are YAML).
write_build_files() {
  python3 - "$@" <<'EOF'
import json, sys
directory, base, changed = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
hello = [
    "mkdir -p /opt/a",
    r"printf '#!/bin/sh\necho hi\n' > /opt/a/hello && chmod 755 /opt/a/hello",
    "sed -i 's/Debian GNU/Layerized GNU/g' /etc/motd",
]
if changed:
    hello.append("echo 2 > /opt/a/version")
steps = [
    ("hello", hello, []),
    ("no-issue", ["rm /etc/issue"], []),
    ("result", ["mkdir -p /opt/b", "/opt/a/hello > /opt/b/result"], ["hello"]),
]
with open(f"{directory}/layerize.yaml", "w") as out:
    out.write(f'image: {{base: "{base}", target: "unused.invalid/never:pushed"}}\nlayers:\n')
    for name, run, needs in steps:
        out.write(f"  - name: {name}\n    script:\n      run: {json.dumps(run)}\n")
        if needs:
            out.write(f"      needs: {json.dumps(needs)}\n")
with open(f"{directory}/Dockerfile", "w") as out:
    out.write(f"FROM {base}\n")
    for _, run, _ in steps:
        out.write(f"RUN {' && '.join(run)}\n")
EOF
}

# layerize_build KEY DIR TARGET CACHE: one timed `layerize build -c`, its steps rerun (from the
# report) appended to $work/KEY.rerun.
layerize_build() {
  local key=$1 dir=$2 target=$3 cache=$4
  timed "$key" "$layerize" build -c "$dir/layerize.yaml" --target "$target" --cache-dir "$cache" \
    --report "$work/$key-report.json"
  jq '[.steps[] | select(.status == "built")] | length' "$work/$key-report.json" >>"$work/$key.rerun"
}

# buildah_build KEY DIR TAG TARGET: one timed `buildah bud --layers --isolation chroot` +
# `buildah push`, its RUN steps not taken from the cache appended to $work/KEY.rerun.
buildah_steps() {
  rss "${buildah_cmd[@]}" bud --layers --isolation chroot --pull=never -f "$1/Dockerfile" -t "$2" "$1"
  rss "${buildah_cmd[@]}" push --quiet --tls-verify=false "$2" "docker://$3"
}
buildah_build() {
  local key=$1 dir=$2 tag=$3 target=$4 steps cached
  timed_sequence "$key" buildah_steps "$dir" "$tag" "$target"
  steps=$(grep -cE '^STEP [0-9]+/[0-9]+: RUN ' "$work/$key.out" || true)
  cached=$(grep -c -- '^--> Using cache ' "$work/$key.out" || true)
  echo $((steps - cached)) >>"$work/$key.rerun"
}

start_registry r
R=127.0.0.1:$(cat "$work/r.port")

push_minbase_base

first=$work/first changed=$work/changed warm=$work/warm
mkdir -p "$first" "$changed" "$warm"
write_build_files "$first" "$R/base:1" 0
write_build_files "$changed" "$R/base:1" 1
# A step of its own, to bring the base into layerize's cache dir without building any step of
# the benchmark.
cat >"$warm/layerize.yaml" <<EOF
image: {base: "$R/base:1", target: "unused.invalid/never:pushed"}
layers:
  - name: warm
    script: {run: ["mkdir -p /opt/warm"]}
EOF

loads_before=$(cut -d' ' -f1-3 /proc/loadavg)
wait_for_quiet
loads_at_start=$(cut -d' ' -f1-3 /proc/loadavg)

round_layerize() {
  local run=$1 cache=$work/cache-$1
  rm -rf "$cache"
  "$layerize" build -c "$warm/layerize.yaml" --target "$R/warm$run:1" --cache-dir "$cache" \
    >"$work/warm.out" 2>&1 || { cat "$work/warm.out" >&2; return 1; }
  layerize_build layerize-first "$first" "$R/lz$run:1" "$cache"
  layerize_build layerize-changed "$changed" "$R/lz$run:2" "$cache"
  rm -rf "$cache"
}
round_buildah() {
  local run=$1
  wipe_buildah
  bah pull --quiet --tls-verify=false "docker://$R/base:1" >/dev/null
  buildah_build buildah-first "$first" localhost/layerize-bench-script:1 "$R/bh$run:1"
  buildah_build buildah-changed "$changed" localhost/layerize-bench-script:2 "$R/bh$run:2"
  wipe_buildah
}
keys=(layerize-first layerize-changed buildah-first buildah-changed)
step "Three script steps, then the first changed: warm-up, then $runs runs each, interleaved"
round_layerize 0
round_buildah 0
for key in "${keys[@]}"; do rm -f "$work/$key".{time,rss,load,rerun}; done
for i in $(seq "$runs"); do
  if ((i % 2)); then round_layerize "$i"; round_buildah "$i"; else round_buildah "$i"; round_layerize "$i"; fi
  echo "run $i: layerize first $(tail -n1 "$work/layerize-first.time")s changed $(tail -n1 "$work/layerize-changed.time")s;" \
    "buildah first $(tail -n1 "$work/buildah-first.time")s changed $(tail -n1 "$work/buildah-changed.time")s" >&2
done
loads_at_end=$(cut -d' ' -f1-3 /proc/loadavg)

# --- results ---------------------------------------------------------------------------------
runs_of() { paste -sd' ' "$work/$1.time"; }
# The rerun counts seen, "2" or "2 3" when runs differ.
rerun_of() { sort -u "$work/$1.rerun" | paste -sd' '; }
row() {
  local key=$1
  shift
  printf '| %s ' "$@"
  echo "| $(rerun_of "$key") | $(fmt "$(med "$key" time)") | $(runs_of "$key") | $(mib_of_kib "$(med "$key" rss)") |"
}
lz_changed=$(med layerize-changed time) bh_changed=$(med buildah-changed time)
speedup=$(ratio "$bh_changed" "$lz_changed")
lz_most=$(sort -n "$work/layerize-changed.rerun" | tail -n1)
lz_least=$(sort -n "$work/layerize-changed.rerun" | head -n1)
bh_least=$(sort -n "$work/buildah-changed.rerun" | head -n1)
goal_rerun=$(met "$lz_most == 2 && $lz_least == 2 && $bh_least == 3")
run_loads=$(cat "$work"/{layerize,buildah}-*.load | sort -g | awk '{ v[NR] = $1 } END { printf "%s to %s (median %s)", v[1], v[NR], (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }')
modes=$(jq -r '[.steps[] | select(.status == "built") | .mode] | unique | join(", ")' "$work/layerize-first-report.json")

report=$work/report.md
{
  echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') by \`benches/script.sh\` (RUNS=$runs; medians, one untimed"
  echo "warm-up round each, the tools' rounds interleaved)."
  echo
  echo "- Machine: $(machine_summary), the registry on loopback with filesystem storage."
  echo "- Load: 1/5/15-minute load averages $loads_before before, $loads_at_start when measuring started,"
  echo "  $loads_at_end at the end; 1-minute load at the start of each timed run $run_loads on $cores cores."
  echo "- Versions: $(tool_versions "$layerize")."
  echo "- Base: \`mmdebstrap --variant=minbase bookworm\` as one layer ($base_mib MiB compressed), in the"
  echo "  local registry. Both tools start warm on it: buildah pulled it (untimed) into its own storage"
  echo "  root (overlay), layerize ran an untimed build of another step with the same --cache-dir."
  echo "  buildah: $cache_note. layerize's sandbox mode: $modes."
  echo "- Each build pushes its image to the registry (layerize: part of \`build\`; buildah: \`bud\` +"
  echo "  \`push\`). Steps rerun: layerize's report (\`steps[].status == \"built\"\`); buildah's RUN steps"
  echo "  not answered \"Using cache\"."
  echo
  echo "Three script steps (\`hello\` writes /opt/a/hello and edits /etc/motd, \`no-issue\` deletes"
  echo "/etc/issue, \`result\` needs \`hello\` and writes /opt/b/result) / the equivalent Dockerfile of three"
  echo "RUN steps; then one command added to the first step:"
  echo
  echo "| build | tool | steps rerun | median s | runs (s) | peak RSS MiB |"
  echo "|---|---|---|---|---|---|"
  row layerize-first "first build + push" "layerize build -c"
  row buildah-first "first build + push" "buildah bud --layers --isolation chroot + push"
  row layerize-changed "first step changed" "layerize build -c"
  row buildah-changed "first step changed" "buildah bud --layers --isolation chroot + push"
  echo
  echo "Goal: with the first step changed, layerize reruns it and the step that needs it (2), where"
  echo "buildah reruns every RUN from the changed one on (3): **$goal_rerun** (layerize $(rerun_of layerize-changed),"
  echo "buildah $(rerun_of buildah-changed)). Rebuild wall time buildah / layerize = ${speedup}x."
} >"$report"

step "Summary"
cat "$report"

if $update_doc; then
  update_doc_section "$repo/docs/benchmarks.md" script-bench "Script layers" "$report"
fi
