#!/usr/bin/env bash
# Registry benchmark for issue 3: layerize against the tools a CI job would otherwise use.
#
#   1. Cross-registry copy: a multi-layer base of a few hundred MB from registry A to registry B,
#      `layerize build` with no layer flags vs `skopeo copy`. Registry B is wiped and restarted
#      before every run, so nothing can be skipped or mounted.
#   2. Small append: one small file on top of a base that registry B already holds:
#      `layerize build --file` vs `buildah from` (a cold pull into empty storage, as on a CI
#      runner without a cache) + `buildah add` + `buildah commit` + `buildah push` into a fresh
#      repository of B. layerize indexes the base's filesystem for a layer (to resolve the
#      destinations against it), so it runs in three variants:
#        cold       an empty --cache-dir per run: every base layer blob is read and indexed,
#                   pushed to a fresh repository (a CI runner's first build);
#        warm       a --cache-dir filled by an earlier build: no base blob is read, pushed to a
#                   fresh repository;
#        unchanged  warm, and the same append re-run onto the same target, which already holds
#                   everything (a CI job re-run with nothing changed).
#      Registry requests are counted from B's access log.
#   3. Peak RSS of every timed command (/usr/bin/time).
#
# The base is made with tools that are not ours: `mmdebstrap --variant=minbase` plus real
# subtrees of this machine's /usr, stacked as layers with buildah and pushed with buildah.
# Both registries are throwaway `docker-registry` (distribution 2.8) instances on loopback;
# buildah uses its own storage root under the work directory, never the system one.
#
# Usage: benches/registry.sh [--no-doc]
#   RUNS=N           timed runs per tool and scenario (default 5; medians are reported)
#   LOAD_WAIT=SECS   how long to wait for the 1-minute load average to drop below the core count
#                    before measuring (default 90); the loads seen are reported either way
#   BASE_CACHE=DIR   where the mmdebstrap tarball is kept between runs
#                    (default ~/.cache/layerize-bench)
#   KEEP=1           keep the work directory (registry logs, reports) for a closer look
# Prints a summary table and, unless --no-doc, replaces the generated part of the "Registry"
# section of docs/benchmarks.md (between the registry-bench markers) with the results.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
# shellcheck source=benches/doc_section.sh
source "$repo/benches/doc_section.sh"

# shellcheck source=benches/common.sh
source "$repo/benches/common.sh"
private_blob_info_cache "$repo/benches/registry.sh" "$@"

bench_setup 5 registry "$@"
use_private_buildah
cleanup() {
  local name
  for name in a b; do stop_registry "$name"; done
  cleanup_buildah
  if [[ -n ${KEEP:-} ]]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

# "kind|count" lines, sorted by kind, for a file of "METHOD PATH STATUS" lines.
kinds() {
  awk '{
    kind = $1 " other"
    if ($2 == "/v2/") kind = "GET /v2/ (ping)"
    else if ($2 ~ /\/manifests\//) kind = $1 " manifest"
    else if ($1 == "POST" && $2 ~ /mount=/) kind = "POST mount"
    else if ($1 == "POST") kind = "POST upload start"
    else if ($1 == "PATCH") kind = "PATCH upload data"
    else if ($1 == "PUT") kind = "PUT upload finish"
    else if ($2 ~ /\/blobs\//) kind = $1 " blob"
    print kind " " $3
  }' "$1" | sort | uniq -c | awk '{ n = $1; $1 = ""; sub(/^ /, ""); print $0 "|" n }' | sort -t'|' -k1,1
}
start_registry a
start_registry b
A=127.0.0.1:$(cat "$work/a.port")
B=127.0.0.1:$(cat "$work/b.port")

step "Making the base image (mmdebstrap minbase + real /usr subtrees, one layer each)"
minbase=$(minbase_tarball "$base_cache")
candidate_trees=()
for tree in /usr/lib/gcc /usr/lib/python3.11 /usr/share/locale /usr/lib/llvm-14 /usr/lib/jvm; do
  [[ -d $tree ]] && candidate_trees+=("$tree")
done
# Stop adding trees once the base is big enough (about 700 MB unpacked, a few hundred packed).
container=$(bah from scratch)
bah add "$container" "$minbase" / >/dev/null
bah commit --quiet "$container" localhost/layerize-bench-base:0 >/dev/null
bah rm "$container" >/dev/null
layer=0 unpacked=$(($(stat -c %s "$minbase") / 1048576))
extra_trees=()
for tree in "${candidate_trees[@]}"; do
  ((unpacked < 700)) || break
  extra_trees+=("$tree")
  container=$(bah from "localhost/layerize-bench-base:$layer")
  bah add "$container" "$tree" "$tree" >/dev/null
  bah commit --quiet "$container" "localhost/layerize-bench-base:$((layer + 1))" >/dev/null
  bah rm "$container" >/dev/null
  layer=$((layer + 1))
  unpacked=$((unpacked + $(du -sm "$tree" | cut -f1)))
done
bah push --quiet --tls-verify=false "localhost/layerize-bench-base:$layer" "docker://$A/base:1"
wipe_buildah
base_manifest=$(skopeo inspect --raw --tls-verify=false "docker://$A/base:1")
base_layers=$(jq '.layers | length' <<<"$base_manifest")
base_bytes=$(jq '[.layers[].size] | add + 0' <<<"$base_manifest")
base_mib=$(awk -v b="$base_bytes" 'BEGIN { printf "%.0f", b / 1048576 }')
base_media_type=$(jq -r '.mediaType // "application/vnd.oci.image.manifest.v1+json"' <<<"$base_manifest")
echo "base: $base_layers layers, $base_mib MiB compressed, ~$unpacked MiB unpacked ($base_media_type)" >&2

loads_before=$(cut -d' ' -f1-3 /proc/loadavg)
wait_for_quiet
loads_at_start=$(cut -d' ' -f1-3 /proc/loadavg)

# --- 1. cross-registry copy ------------------------------------------------------------------
copy_layerize() {
  reset_registry b
  timed copy-layerize "$layerize" build --base "$A/base:1" --target "$B/base-copy:1" \
    --report "$work/copy-report.json"
  jq -r .requests "$work/copy-report.json" >>"$work/copy-layerize.requests"
  jq -r .blobs_uploaded "$work/copy-report.json" >>"$work/copy-layerize.blobs"
}
copy_skopeo() {
  reset_registry b
  timed copy-skopeo skopeo copy --quiet --src-tls-verify=false --dest-tls-verify=false \
    "docker://$A/base:1" "docker://$B/base-copy:1"
}
step "1. Cross-registry copy A -> B: warm-up, then $runs runs each, interleaved"
copy_layerize
copy_skopeo
for f in copy-layerize copy-skopeo; do rm -f "$work/$f".{time,rss,load,requests,blobs}; done
for i in $(seq "$runs"); do
  if ((i % 2)); then copy_layerize; copy_skopeo; else copy_skopeo; copy_layerize; fi
  echo "run $i: layerize $(tail -n1 "$work/copy-layerize.time")s, skopeo $(tail -n1 "$work/copy-skopeo.time")s" >&2
done
# The copy must really have carried every base blob (the layers and the config).
copied=$(sort -n "$work/copy-layerize.blobs" | head -n1)
if ((copied < base_layers + 1)); then
  echo "layerize copied only $copied of $((base_layers + 1)) blobs: the copy skipped something" >&2
  exit 1
fi

# --- 2. small append -------------------------------------------------------------------------
step "2. Small append onto $B/base:1: warm-up, then $runs runs each, interleaved"
reset_registry b
skopeo copy --quiet --src-tls-verify=false --dest-tls-verify=false "docker://$A/base:1" "docker://$B/base:1"
head -c 4096 /dev/urandom | base64 >"$work/small-file"
# Filled by the warm-up of the warm variant, then only read: the base's layers never change.
warm_cache=$work/index-warm
append_n=0
declare -A last_repo # variant -> the repository its last run pushed to
# append_layerize VARIANT: one timed layerize append (cold, warm or unchanged, see the top).
append_layerize() {
  local variant=$1 key=append-$1 before cache target
  append_n=$((append_n + 1))
  case $variant in
    cold) cache=$(mktemp -d "$work/index-cold.XXXXXX") target=$B/app-c$append_n:1 ;;
    warm) cache=$warm_cache target=$B/app-w$append_n:1 ;;
    unchanged) cache=$warm_cache target=$B/app-unchanged:1 ;;
  esac
  last_repo[$variant]=${target#"$B/"}
  last_repo[$variant]=${last_repo[$variant]%:*}
  before=$(access_lines b)
  timed "$key" "$layerize" build --base "$B/base:1" --target "$target" \
    --file "$work/small-file:/app/file" --cache-dir "$cache" --report "$work/$key-report.json"
  sleep 0.2 # the access log line is written after the response
  requests_since b "$before" >"$work/$key.log"
  wc -l <"$work/$key.log" >>"$work/$key.logged"
  jq -r .requests "$work/$key-report.json" >>"$work/$key.requests"
  jq -r .base_index.layers_read "$work/$key-report.json" >>"$work/$key.layers-read"
  if [[ $variant == cold ]]; then rm -rf "$cache"; fi
}
buildah_append() {
  local target=$1 container
  container=$(rss "${buildah_cmd[@]}" from --quiet --tls-verify=false "$B/base:1")
  rss "${buildah_cmd[@]}" add "$container" "$work/small-file" /app/file
  rss "${buildah_cmd[@]}" commit --quiet "$container" localhost/layerize-bench-app:1
  rss "${buildah_cmd[@]}" push --quiet --tls-verify=false localhost/layerize-bench-app:1 "docker://$target"
}
append_buildah() {
  local before
  append_n=$((append_n + 1))
  wipe_buildah
  before=$(access_lines b)
  timed_sequence append-buildah buildah_append "$B/app-b$append_n:1"
  sleep 0.2
  requests_since b "$before" >"$work/append-buildah.log"
  wc -l <"$work/append-buildah.log" >>"$work/append-buildah.logged"
}
append_variants=(cold warm unchanged)
# The warm-up of `warm` fills the cache and that of `unchanged` pushes its target once.
for variant in "${append_variants[@]}"; do append_layerize "$variant"; done
append_buildah
for f in append-{cold,warm,unchanged,buildah}; do rm -f "$work/$f".{time,rss,load,requests,logged,layers-read}; done
for i in $(seq "$runs"); do
  if ((i % 2)); then
    for variant in "${append_variants[@]}"; do append_layerize "$variant"; done
    append_buildah
  else
    append_buildah
    for ((v = ${#append_variants[@]} - 1; v >= 0; v--)); do append_layerize "${append_variants[v]}"; done
  fi
  echo "run $i: layerize cold $(tail -n1 "$work/append-cold.time")s, warm $(tail -n1 "$work/append-warm.time")s," \
    "unchanged $(tail -n1 "$work/append-unchanged.time")s; buildah $(tail -n1 "$work/append-buildah.time")s" >&2
done
wipe_buildah
# Every cold run read each base layer, no warm one read any.
for variant in "${append_variants[@]}"; do
  expected=0
  [[ $variant == cold ]] && expected=$base_layers
  if sort -u "$work/append-$variant.layers-read" | grep -vqx "$expected"; then
    echo "layerize $variant read $(paste -sd' ' "$work/append-$variant.layers-read") base layers, expected $expected" >&2
    exit 1
  fi
done

# Request counts of the same append where the target repository already links the base layers:
# the usual CI case (the app repository holds the previous build) and the best case (the target
# is the base's own repository). A new file content each time, so the layer is really new.
count_append() {
  local target=$1 before file=$work/small-file-${1//[:\/]/-}
  head -c 4096 /dev/urandom | base64 >"$file"
  before=$(access_lines b)
  "$layerize" build --base "$B/base:1" --target "$B/$target" \
    --file "$file:/app/file" --cache-dir "$warm_cache" >/dev/null 2>"$work/count.err" || {
    cat "$work/count.err" >&2
    return 1
  }
  sleep 0.2
  requests_since b "$before" | wc -l
}
append_req_existing=$(count_append "${last_repo[warm]}:next")
append_req_same_repo=$(count_append base:app)
loads_at_end=$(cut -d' ' -f1-3 /proc/loadavg)

# --- results ---------------------------------------------------------------------------------
copy_l=$(med copy-layerize time) copy_s=$(med copy-skopeo time)
append_b=$(med append-buildah time)
copy_ratio=$(ratio "$copy_s" "$copy_l")
declare -A append_t append_ratio append_req_log append_req_report
for variant in "${append_variants[@]}"; do
  append_t[$variant]=$(med "append-$variant" time)
  append_ratio[$variant]=$(ratio "$append_b" "${append_t[$variant]}")
  append_req_log[$variant]=$(med "append-$variant" logged)
  append_req_report[$variant]=$(med "append-$variant" requests)
done
append_req_buildah=$(med append-buildah logged)
base_read_mib=$(jq '.base_index.blob_bytes_read / 1048576 | round' "$work/append-cold-report.json")
copy_req_report=$(med copy-layerize requests)
run_loads=$(cat "$work"/{copy,append}-*.load | sort -g | awk '{ v[NR] = $1 } END { printf "%s to %s (median %s)", v[1], v[NR], (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }')

goal_copy=$(met "$copy_l <= $copy_s")
goal_append_requests=$(met "${append_req_log[warm]} <= 10 && $append_req_existing <= 10")
goal_append_requests_best=$(met "$append_req_same_repo <= 10")
goal_unchanged_requests=$(met "${append_req_log[unchanged]} <= 10")
goal_unchanged_speed=$(met "${append_ratio[unchanged]} >= 10")
goal_cold_speed=$(met "${append_ratio[cold]} >= 10")

versions=$(tool_versions "$layerize")

report=$work/report.md
{
  echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') by \`benches/registry.sh\` (RUNS=$runs; medians, runs"
  echo "interleaved, one untimed warm-up each)."
  echo
  echo "- Machine: $(machine_summary), both registries on"
  echo "  loopback with filesystem storage on the same disk."
  echo "- Load: 1/5/15-minute load averages $loads_before before, $loads_at_start when measuring started,"
  echo "  $loads_at_end at the end; 1-minute load at the start of each timed run $run_loads on $cores cores."
  echo "  A load above 1 means other work (parallel compiles) competed for the cores."
  echo "- Versions: $versions."
  echo "- Base: \`mmdebstrap --variant=minbase bookworm\` + this machine's ${extra_trees[*]}, one layer each:"
  echo "  $base_layers layers, $base_mib MiB compressed (~$unpacked MiB unpacked), made and pushed with buildah"
  echo "  ($base_media_type)."
  echo "- buildah: own storage root (overlay), emptied before every run; $cache_note."
  echo
  echo "| scenario | tool | median s | runs (s) | peak RSS MiB | registry requests |"
  echo "|---|---|---|---|---|---|"
  echo "| copy A -> B | layerize | $(fmt "$copy_l") | $(paste -sd' ' "$work/copy-layerize.time") | $(mib_of_kib "$(med copy-layerize rss)") | $copy_req_report (report) |"
  echo "| copy A -> B | skopeo copy | $(fmt "$copy_s") | $(paste -sd' ' "$work/copy-skopeo.time") | $(mib_of_kib "$(med copy-skopeo rss)") | |"
  for variant in "${append_variants[@]}"; do
    case $variant in
      cold) what="layerize, cold index (empty --cache-dir), fresh repository" ;;
      warm) what="layerize, warm index, fresh repository" ;;
      unchanged) what="layerize, warm index, unchanged re-run (target holds everything)" ;;
    esac
    echo "| small append on B | $what | $(fmt "${append_t[$variant]}") | $(paste -sd' ' "$work/append-$variant.time") | $(mib_of_kib "$(med "append-$variant" rss)") | ${append_req_log[$variant]} (B's log; report: ${append_req_report[$variant]}) |"
  done
  echo "| small append on B | buildah from+add+commit+push | $(fmt "$append_b") | $(paste -sd' ' "$work/append-buildah.time") | $(mib_of_kib "$(med append-buildah rss)") (largest step) | $append_req_buildah (B's log) |"
  echo
  echo "Goals:"
  echo "- Cross-registry copy at least as fast as skopeo: **$goal_copy** (skopeo / layerize = ${copy_ratio}x)."
  echo "- Small append, warm index, unchanged re-run in at most 10 registry requests: **$goal_unchanged_requests**"
  echo "  (${append_req_log[unchanged]} requests) and at least 10x faster than buildah: **$goal_unchanged_speed** (buildah / layerize = ${append_ratio[unchanged]}x)."
  echo "- Small append, cold index, at least 10x faster than buildah: **$goal_cold_speed** (buildah / layerize ="
  echo "  ${append_ratio[cold]}x; it reads all $base_layers base layer blobs, $base_read_mib MiB, to index them). Warm, fresh repository: ${append_ratio[warm]}x."
  echo "- Small append into a new repository in at most 10 registry requests (issue 3): **$goal_append_requests**"
  echo "  (warm index: ${append_req_log[warm]} requests into a fresh repository, $append_req_existing into an app repository that already"
  echo "  holds the base layers from an earlier build; only in the best case, the base's own repository as target,"
  echo "  $append_req_same_repo requests: **$goal_append_requests_best** there)."
  echo
  echo "Registry requests of one small append, by kind (B's access log):"
  echo
  echo "| request | layerize cold | layerize warm | layerize unchanged | buildah |"
  echo "|---|---|---|---|---|"
  join -t'|' -a1 -a2 -e0 -o0,1.2,2.2 <(kinds "$work/append-cold.log") <(kinds "$work/append-warm.log") |
    join -t'|' -a1 -a2 -e0 -o0,1.2,1.3,2.2 - <(kinds "$work/append-unchanged.log") |
    join -t'|' -a1 -a2 -e0 -o0,1.2,1.3,1.4,2.2 - <(kinds "$work/append-buildah.log") |
    awk -F'|' '{ printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5 }'
  for variant in cold unchanged; do
    echo
    echo "layerize's requests in order, $variant (digests shortened):"
    echo
    echo '```'
    sed -E 's/(sha256(:|%3A)[0-9a-f]{12})[0-9a-f]{52}/\1…/g; s/_state=[^&]*&?//; s/\?$//' "$work/append-$variant.log"
    echo '```'
  done
} >"$report"

step "Summary"
cat "$report"

if $update_doc; then
  update_doc_section "$repo/docs/benchmarks.md" registry-bench "Registry" "$report"
fi
