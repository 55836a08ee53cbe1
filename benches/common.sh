# Sourced by the benchmarks that race layerize against buildah through local registries:
# progress lines, timing (wall time, peak RSS, load at the start), medians and ratios,
# throwaway docker-registry instances on loopback and their access logs, buildah on a private
# storage root, and the Debian minbase tarball the bases are made from.
#
# The sourcing script sets `work` (its scratch directory), `cores` and `load_wait` (how long
# wait_for_quiet waits, in seconds) before calling these.

step() { printf '\n== %s\n' "$*" >&2; }

# containers/image keeps a system-wide blob-info cache (/var/lib/containers/cache for root) that
# remembers where blobs were seen and which compressed digest belongs to which layer; buildah
# 1.28 ignores --root for it. A CI runner without a cache starts without one, so as root the
# script runs in a private mount namespace with a tmpfs over that directory, emptied with
# buildah's storage (wipe_buildah). Nothing outside this process sees the tmpfs.
#
# private_blob_info_cache SCRIPT [ARGS...]: as root, re-executes SCRIPT ARGS in such a namespace
# (call it before anything else); inside it, mounts the tmpfs. Sets `cache_note` saying which.
blob_info_cache=/var/lib/containers/cache
private_blob_info_cache() {
  if ((EUID == 0)) && [[ -z ${LAYERIZE_BENCH_NS:-} ]]; then
    exec env LAYERIZE_BENCH_NS=1 unshare --mount --propagation private "$@"
  fi
  if [[ -n ${LAYERIZE_BENCH_NS:-} ]]; then
    mkdir -p "$blob_info_cache"
    mount -t tmpfs layerize-bench "$blob_info_cache"
    cache_note="empty containers/image blob-info cache before every buildah run (tmpfs in a private mount namespace)"
  else
    cache_note="not root: buildah used the shared containers/image blob-info cache, which may spare it requests"
  fi
}

# buildah on the benchmark's private storage below $work: call use_private_buildah once `work`
# is set; then `bah ARGS` runs buildah there, and "${buildah_cmd[@]}" is the same as a command
# line (for /usr/bin/time).
use_private_buildah() {
  buildah_root=$work/buildah-root
  buildah_runroot=$work/buildah-run
  buildah_cmd=(buildah --root "$buildah_root" --runroot "$buildah_runroot" --storage-driver overlay)
}
bah() { "${buildah_cmd[@]}" "$@"; }

wipe_buildah() {
  if [[ -d $buildah_root ]]; then
    bah rm --all >/dev/null
    bah rmi --all --force >/dev/null 2>&1 || true
  fi
  rm -rf "$buildah_root" "$buildah_runroot"
  if [[ -n ${LAYERIZE_BENCH_NS:-} ]]; then rm -rf "${blob_info_cache:?}"/*; fi
}

# Removes buildah's containers and images at exit (the storage itself goes with $work).
cleanup_buildah() {
  if [[ -d $buildah_root ]]; then
    bah rm --all >/dev/null 2>&1 || true
    bah rmi --all --force >/dev/null 2>&1 || true
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Registries: $work/NAME.{yml,port,pid,log}, data in $work/NAME-data. Access-log lines
# (`127.0.0.1 - - [..] "METHOD URI HTTP/1.1" STATUS ..`) are what the request counts come from.
start_registry() {
  local name=$1 port
  [[ -f $work/$name.port ]] || free_port >"$work/$name.port"
  port=$(cat "$work/$name.port")
  cat >"$work/$name.yml" <<EOF
version: 0.1
log: {level: info}
storage: {filesystem: {rootdirectory: $work/$name-data}}
http: {addr: 127.0.0.1:$port, secret: layerize-bench}
EOF
  docker-registry serve "$work/$name.yml" >>"$work/$name.log" 2>&1 &
  echo $! >"$work/$name.pid"
  for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "registry $name did not come up on port $port" >&2
  return 1
}

stop_registry() {
  local name=$1 pid
  [[ -f $work/$name.pid ]] || return 0
  pid=$(cat "$work/$name.pid")
  kill "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  rm -f "$work/$name.pid"
}

# A registry with nothing in it, on the same port as before.
reset_registry() {
  stop_registry "$1"
  rm -rf "$work/$1-data"
  start_registry "$1"
}

access_lines() { grep -cE '^127\.0\.0\.1 - .*"(GET|HEAD|POST|PUT|PATCH|DELETE) ' "$work/$1.log" || true; }
# Access-log requests after line $2 of registry $1's log: "METHOD PATH STATUS", one a line.
requests_since() {
  grep -E '^127\.0\.0\.1 - .*"(GET|HEAD|POST|PUT|PATCH|DELETE) ' "$work/$1.log" | tail -n +"$(($2 + 1))" |
    sed -E 's/^[^"]*"([A-Z]+) ([^ ]+) [^"]*" ([0-9]+).*/\1 \2 \3/'
}

now() { date +%s.%N; }
load1() { cut -d' ' -f1 /proc/loadavg; }
# Median of the numbers on stdin.
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
fmt() { printf '%.2f' "$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
med() { median <"$work/$1.$2"; }
mib_of_kib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
met() { if awk "BEGIN { exit !($1) }"; then echo met; else echo "NOT met"; fi; }

wait_for_quiet() {
  local waited=0
  while awk -v l="$(load1)" -v c="$cores" 'BEGIN { exit !(l >= c) }' && ((waited < load_wait)); do
    echo "load $(load1) on $cores cores: waiting for other work to settle ($waited/${load_wait}s)" >&2
    sleep 15
    waited=$((waited + 15))
  done
}

# Runs a command with its wall time (s) appended to $work/$1.time, its peak RSS (KiB) to
# $work/$1.rss and the 1-minute load average at its start to $work/$1.load.
timed() {
  local key=$1 start end
  shift
  load1 >>"$work/$key.load"
  start=$(now)
  /usr/bin/time -f '%M' -o "$work/$key.rss1" "$@" >"$work/$key.out" 2>"$work/$key.err" || {
    echo "failed: $*" >&2
    cat "$work/$key.err" >&2
    return 1
  }
  end=$(now)
  awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f\n", e - s }' >>"$work/$key.time"
  cat "$work/$key.rss1" >>"$work/$key.rss"
}

# Like `timed`, for a sequence of commands (one shell function): summed wall time, and the
# largest peak RSS of any of its commands (each wrapped in `rss`).
rss() { /usr/bin/time -f '%M' -a -o "$work/seq.rss" "$@"; }
timed_sequence() {
  local key=$1 start end
  shift
  load1 >>"$work/$key.load"
  rm -f "$work/seq.rss"
  start=$(now)
  "$@" >"$work/$key.out" 2>"$work/$key.err" || {
    echo "failed: $*" >&2
    cat "$work/$key.err" >&2
    return 1
  }
  end=$(now)
  awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f\n", e - s }' >>"$work/$key.time"
  sort -n "$work/seq.rss" | tail -n1 >>"$work/$key.rss"
}

# minbase_tarball CACHE_DIR: the path of a `mmdebstrap --variant=minbase bookworm` tarball,
# made from this machine's Debian mirror the first time and kept in CACHE_DIR.
minbase_tarball() {
  local cache=$1 tarball mirror
  tarball=$cache/bookworm-minbase.tar
  if [[ ! -s $tarball ]]; then
    mkdir -p "$cache"
    mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)
    mmdebstrap --quiet --variant=minbase --format=tar bookworm "$tarball.tmp" ${mirror:+"$mirror"} >&2
    mv "$tarball.tmp" "$tarball"
  fi
  echo "$tarball"
}

# "layerize VERSION (commit C); skopeo ...; buildah ...; docker-registry ..." for the reports;
# the commit gets "+uncommitted" when the code measured differs from it.
tool_versions() {
  local layerize=$1 version commit
  version=$("$layerize" --version 2>/dev/null || echo "layerize $(git rev-parse --short HEAD)")
  commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates Cargo.lock || echo "+uncommitted")
  echo "$version (commit $commit); $(skopeo --version); $(buildah --version | cut -d' ' -f1-3); docker-registry $(docker-registry --version | awk '{ print $3 }')"
}

# "N cores (CPU), M GiB RAM, KERNEL" for the reports.
machine_summary() {
  local cpu_model mem_gib
  cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
  mem_gib=$(awk '/^MemTotal/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)
  echo "$cores cores ($cpu_model), $mem_gib GiB RAM, $(uname -sr)"
}

# The start every comparison bench shares: `--no-doc` parsed into $update_doc, the knobs every
# bench reads ($runs from RUNS, default $1; $load_wait; $base_cache; $cores), the dependencies
# installed, layerize built in release ($layerize), and a work directory under $TMPDIR (default
# /tmp) named after the bench ($work). Call it as `bench_setup DEFAULT_RUNS NAME "$@"`.
bench_setup() {
  local default_runs=$1 name=$2
  shift 2
  update_doc=true
  case ${1:-} in
    --no-doc) update_doc=false ;;
    '') ;;
    *) echo "usage: $0 [--no-doc]" >&2; exit 2 ;;
  esac
  runs=${RUNS:-$default_runs}
  load_wait=${LOAD_WAIT:-90}
  base_cache=${BASE_CACHE:-$HOME/.cache/layerize-bench}
  cores=$(nproc)
  scripts/install-deps >&2
  step "Building layerize (release)"
  cargo build --release --locked -p layerize-cli >&2
  layerize=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)/release/layerize
  work=$(mktemp -d "${TMPDIR:-/tmp}/layerize-bench-$name.XXXXXX")
}

# Pushes `mmdebstrap --variant=minbase bookworm` (kept in $base_cache) as a one-layer image to
# $R/base:1 with buildah, leaving buildah's storage empty; sets $minbase (the tarball),
# $base_manifest and $base_mib (its compressed size).
push_minbase_base() {
  step "Making the base image (mmdebstrap minbase, one layer) in $R/base:1"
  minbase=$(minbase_tarball "$base_cache")
  local container
  container=$(bah from scratch)
  bah add "$container" "$minbase" / >/dev/null
  bah commit --quiet "$container" localhost/layerize-bench-base:1 >/dev/null
  bah rm "$container" >/dev/null
  bah push --quiet --tls-verify=false localhost/layerize-bench-base:1 "docker://$R/base:1"
  wipe_buildah
  base_manifest=$(skopeo inspect --raw --tls-verify=false "docker://$R/base:1")
  base_mib=$(jq '[.layers[].size] | add / 1048576 | round' <<<"$base_manifest")
}

# A cleanup for benches with one registry (`r`) and buildah: stops both and removes $work
# unless KEEP is set; installed as the EXIT trap.
trap_cleanup_one_registry() {
  cleanup() {
    stop_registry r
    cleanup_buildah
    if [[ -n ${KEEP:-} ]]; then echo "kept $work" >&2; else rm -rf "$work"; fi
  }
  trap cleanup EXIT
}
