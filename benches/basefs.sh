#!/usr/bin/env bash
# Base filesystem index benchmark for issue 6: how long `layerize build` takes to index a base of
# 200k paths, beyond reading its blobs, and its peak RSS (goal: under 1 s, < 64 MiB).
#
# The base is generated (deterministic, seeded): three gzip layers in an OCI layout, shaped like a
# large CUDA-style image. Layer 1 is a Debian-like OS (merged /usr with /bin -> usr/bin, /tmp 1777,
# ~1,500 packages with docs, man pages, binaries, shared libraries and their .so symlinks, headers,
# data trees, dpkg info files); layer 2 a toolkit under /opt (deep include trees with long paths,
# PAX headers) and Python packages with __pycache__; layer 3 an application layer that replaces
# files, whites out ~1,000 lower paths and makes one directory opaque. Paths are ~60 bytes on
# average, most files are small (lognormal sizes, median ~700 bytes), libraries larger.
#
# Measured in the same run, RUNS times interleaved (medians):
#   read   `gzip -dc BLOB > /dev/null` for each layer blob, one after another: reading the blobs
#          (and `pigz -dc`, zlib's inflate, for comparison);
#   cold   `layerize build --base oci:BASE:base --target oci:OUT:t --file x:/x --cache-dir EMPTY`:
#          indexes every layer from its blob (and caches it);
#   warm   the same with the cache the cold run filled: no base blob is read;
#   empty  the same build on an empty base (`umoci new`): what a build costs without any index.
# The index phase of a build is taken from its own JSON log: from "Obtained base image manifest"
# to "Indexed the base filesystem" (both step 6; nothing else runs in between). Beyond reading:
#   wall: cold index phase - read      (layerize reads up to 3 layers at once on the cores there are)
#   CPU:  cold CPU - empty CPU - read CPU  (independent of how the work was spread over the cores)
# Peak RSS of each build from GNU time. GNU gzip inflates more slowly than the zlib-rs layerize
# uses, so the subtractions flatter layerize; where `perf` works, one more cold build is profiled
# and its CPU split by symbol: reading (inflate, CRC-32, SHA-256 of the blob and of the diffID),
# memory copies and fills (libc mem*: mostly bytes moving through the read buffers, and the
# 32 KiB buffer the tar crate zeroes for every skipped body), kernel, and the index proper (tar
# headers, paths, settling, merging, sorting, the cache). Beyond reading is the index proper, and
# at most that plus the copies and kernel time.
#
# Usage: benches/basefs.sh [--no-doc]
#   RUNS=N         timed runs of each (default 5)
#   PATHS=N        paths of the merged base (default 200000)
#   WORK=DIR       where the base and outputs go (default /var/tmp/layerize-bench-basefs)
#   KEEP=1         keep WORK (the generated base is reused by the next run when kept)
# Prints a summary and, unless --no-doc, replaces the generated part of the "Base filesystem
# index" section of docs/benchmarks.md (between the basefs-bench markers).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
# shellcheck source=benches/doc_section.sh
source "$repo/benches/doc_section.sh"

update_doc=true
case ${1:-} in
  --no-doc) update_doc=false ;;
  '') ;;
  *) echo "usage: $0 [--no-doc]" >&2; exit 2 ;;
esac
runs=${RUNS:-5}
paths=${PATHS:-200000}
work=${WORK:-/var/tmp/layerize-bench-basefs}
cores=$(nproc)

for tool in gzip pigz umoci jq python3 /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "missing $tool (run scripts/install-deps)" >&2; exit 1; }
done
step() { printf '\n== %s\n' "$*" >&2; }

step "Building layerize (release)"
cargo build --release --locked -p layerize-cli >&2
target_dir=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
layerize=$target_dir/release/layerize

mkdir -p "$work"
[[ -n ${KEEP:-} ]] || trap 'rm -rf "$work"' EXIT
base=$work/base-$paths

step "Making the base ($paths paths, three gzip layers, OCI layout)"
if [[ ! -f $base/index.json ]]; then
  rm -rf "$base.tmp"
  python3 - "$base.tmp" "$paths" <<'EOF'
import hashlib, io, json, math, os, random, subprocess, sys, tarfile

out, wanted = sys.argv[1], int(sys.argv[2])
rng = random.Random(6)
MTIME = 1700000000
os.makedirs(f"{out}/blobs/sha256")

# Text-like content: slices of a pool of words, so that gzip compresses it as it does real files.
syllables = ["ab", "ac", "al", "an", "ar", "be", "ca", "co", "de", "di", "el", "en", "er", "ex",
             "fi", "ge", "in", "io", "is", "la", "le", "li", "lo", "ma", "me", "mi", "mo", "ne",
             "no", "on", "or", "pa", "pe", "po", "ra", "re", "ri", "ro", "sa", "se", "si", "so",
             "ta", "te", "ti", "to", "ul", "un", "ur", "va", "ve", "xy", "ze"]
words = ["".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(3000)]
pool = " ".join(rng.choices(words, k=900_000)).encode()

# Medians as in real images, scaled down so that the base stays a few hundred MiB: the index
# reads headers, and the reading of file bodies is measured apart.
SIZE_SCALE = 0.4

def size(median, sigma, cap):
    return min(cap, int(rng.lognormvariate(math.log(median * SIZE_SCALE), sigma)))

def content(n):
    parts = []
    while n > 0:
        take = min(n, 1 << 20)
        start = rng.randrange(0, len(pool) - take)
        parts.append(pool[start:start + take])
        n -= take
    return b"".join(parts)

def tree(root, files, make):
    """`files` files (paths from `make`) in a tree of about one directory per eight files."""
    dirs = [(root, 0)]
    for _ in range(files):
        if rng.random() < 0.12:
            parent, depth = rng.choice(dirs)
            if depth < 5:
                dirs.append((f"{parent}/{name((1, 1))}", depth + 1))
        yield f"{rng.choice(dirs)[0]}/{make()}"

def name(parts=(1, 3)):
    return "".join(rng.choices(words, k=rng.randint(*parts)))

class Layer:
    """Members of one layer tar, written straight through a pigz process into a blob."""

    def __init__(self):
        self.members = []
        self.dirs = set()

    def dir(self, path, mode=0o755, uid=0):
        if path not in self.dirs:
            parent = path.rsplit("/", 1)[0] if "/" in path else None
            if parent:
                self.dir(parent)
            self.dirs.add(path)
            self.members.append(("d", path, mode, uid, None))

    def file(self, path, n, mode=0o644, uid=0):
        self.dir(path.rsplit("/", 1)[0])
        self.members.append(("f", path, mode, uid, n))

    def symlink(self, path, target):
        self.dir(path.rsplit("/", 1)[0])
        self.members.append(("l", path, 0o777, 0, target))

    def whiteout(self, path):
        parent, leaf = path.rsplit("/", 1)
        self.dir(parent)
        self.members.append(("f", f"{parent}/.wh.{leaf}", 0o644, 0, 0))

    def write(self):
        class Hashing:
            def __init__(self, sink):
                self.sink, self.hash, self.size = sink, hashlib.sha256(), 0
            def write(self, data):
                self.hash.update(data)
                self.size += len(data)
                self.sink.write(data)
        tmp = f"{out}/blobs/sha256/layer.tmp"
        with open(tmp, "wb") as blob:
            pigz = subprocess.Popen(["pigz", "-6", "-p", "2", "-n"], stdin=subprocess.PIPE, stdout=blob)
            tar_out = Hashing(pigz.stdin)
            with tarfile.open(fileobj=tar_out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for kind, path, mode, uid, extra in self.members:
                    info = tarfile.TarInfo(path)
                    info.mtime, info.mode, info.uid, info.gid = MTIME, mode, uid, uid
                    data = None
                    if kind == "d":
                        info.type = tarfile.DIRTYPE
                    elif kind == "l":
                        info.type, info.linkname = tarfile.SYMTYPE, extra
                    else:
                        info.size = extra
                        data = content(extra)
                    tar.addfile(info, None if data is None else io.BytesIO(data))
            pigz.stdin.close()
            if pigz.wait() != 0:
                sys.exit("pigz failed")
        digest = hashlib.sha256(open(tmp, "rb").read()).hexdigest()
        os.rename(tmp, f"{out}/blobs/sha256/{digest}")
        return {"digest": digest, "size": os.path.getsize(f"{out}/blobs/sha256/{digest}"),
                "diff_id": tar_out.hash.hexdigest(), "tar_size": tar_out.size,
                "members": len(self.members)}

# Layer 1: the OS.
os_layer = Layer()
for link, target in [("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")]:
    os_layer.symlink(link, target)
for d in ["etc", "home", "media", "mnt", "opt", "proc", "run", "srv", "sys", "usr/bin", "usr/sbin",
          "usr/lib64", "usr/lib/x86_64-linux-gnu", "usr/include", "usr/share/doc", "usr/share/man/man1",
          "usr/share/man/man3", "usr/share/man/man5", "usr/share/man/man8", "usr/share/locale",
          "var/lib/dpkg/info", "var/cache", "var/log", "usr/lib/python3/dist-packages"]:
    os_layer.dir(d)
os_layer.dir("tmp", 0o1777)
os_layer.dir("root", 0o700)
os_layer.file("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", 210_000, 0o755)
os_layer.symlink("usr/lib64/ld-linux-x86-64.so.2", "../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
locales = [name((1, 1))[:2] + ("_" + name((1, 1))[:2].upper() if i % 3 else "") for i in range(60)]

def package(layer):
    pkg = name((1, 2)) + str(rng.randint(0, 99))
    entries = len(layer.members)
    doc = f"usr/share/doc/{pkg}"
    layer.file(f"{doc}/copyright", size(1500, 0.8, 40_000))
    layer.file(f"{doc}/changelog.Debian.gz", size(2000, 0.9, 60_000))
    for _ in range(rng.choice([0, 0, 1, 1, 2, 4])):
        tool = name((1, 2))
        if rng.random() < 0.1:
            layer.file(f"usr/bin/{tool}.real", size(30_000, 1.2, 2_000_000), 0o755)
            layer.symlink(f"usr/bin/{tool}", f"/etc/alternatives/{tool}")
            layer.symlink(f"etc/alternatives/{tool}", f"/usr/bin/{tool}.real")
        else:
            layer.file(f"usr/bin/{tool}", size(30_000, 1.2, 2_000_000), 0o755)
        layer.file(f"usr/share/man/man1/{tool}.1.gz", size(1500, 0.8, 30_000))
    if rng.random() < 0.5:
        lib = f"lib{pkg}.so"
        major = rng.randint(0, 9)
        real = f"{lib}.{major}.{rng.randint(0, 30)}.{rng.randint(0, 9)}"
        layer.file(f"usr/lib/x86_64-linux-gnu/{real}", size(60_000, 1.3, 4_000_000))
        layer.symlink(f"usr/lib/x86_64-linux-gnu/{lib}.{major}", real)
        if rng.random() < 0.4:
            layer.symlink(f"usr/lib/x86_64-linux-gnu/{lib}", f"{lib}.{major}")
            for _ in range(rng.randint(1, 30)):
                layer.file(f"usr/include/{pkg}/{name((1, 2))}.h", size(3000, 1.0, 200_000))
                layer.file(f"usr/share/man/man3/{name((1, 2))}.3.gz", size(1200, 0.6, 20_000))
    if rng.random() < 0.35:
        extension = lambda: rng.choice(["txt", "xml", "json", "png", "conf", "dat"])
        for path in tree(f"usr/share/{pkg}", rng.randint(1, 120), lambda: f"{name()}.{extension()}"):
            layer.file(path, size(700, 1.4, 500_000))
    if rng.random() < 0.2:
        for locale in rng.sample(locales, rng.randint(5, 60)):
            layer.file(f"usr/share/locale/{locale}/LC_MESSAGES/{pkg}.mo", size(8000, 0.8, 300_000))
    if rng.random() < 0.1:
        layer.file(f"usr/sbin/{name((1, 2))}", size(60_000, 1.0, 1_000_000), 0o4755)
    if rng.random() < 0.2:
        layer.file(f"etc/{pkg}/{name((1, 1))}.conf", size(900, 1.0, 50_000))
    layer.file(f"var/lib/dpkg/info/{pkg}.list", size(60 * (len(layer.members) - entries), 0.2, 2_000_000))
    layer.file(f"var/lib/dpkg/info/{pkg}.md5sums", size(50 * (len(layer.members) - entries), 0.2, 2_000_000))

# Layer 2: a toolkit with deep, long paths, and Python packages.
kit = Layer()
kit.dir("usr/lib/python3/dist-packages")
kit_root = "opt/toolkit-12.2/targets/x86_64-linux"
kit.symlink("opt/toolkit", "toolkit-12.2")

def kit_component(layer):
    comp = name((2, 3))
    include = f"{kit_root}/include/{comp}"
    header = lambda: f"{name((2, 3))}_{name((1, 2))}.hpp"
    for path in tree(f"{include}/{name((1, 2))}_{name((1, 2))}", rng.randint(10, 150), header):
        layer.file(path, size(4000, 1.2, 400_000))
    for _ in range(rng.randint(1, 3)):
        lib = f"lib{comp}{name((1, 1))}.so"
        real = f"{lib}.12.2.{rng.randint(0, 200)}"
        layer.file(f"{kit_root}/lib/{real}", size(120_000, 1.2, 4_000_000), 0o755)
        layer.symlink(f"{kit_root}/lib/{lib}.12", real)
        layer.symlink(f"{kit_root}/lib/{lib}", f"{lib}.12")
    layer.file(f"opt/toolkit-12.2/doc/{comp}/index.html", size(20_000, 1.0, 500_000))

def python_package(layer):
    root = f"usr/lib/python3/dist-packages/{name((1, 2))}"
    for path in tree(root, rng.randint(3, 60), lambda: name((1, 2))):
        where, module = path.rsplit("/", 1)
        layer.file(f"{where}/{module}.py", size(3000, 1.2, 300_000))
        layer.file(f"{where}/__pycache__/{module}.cpython-311.pyc", size(2500, 1.2, 300_000))
    layer.file(f"{root}-1.0.dist-info/RECORD", size(3000, 0.8, 100_000))
    layer.file(f"{root}-1.0.dist-info/METADATA", size(2000, 0.8, 100_000))

# Layer 3: an application: new files, replaced files, whiteouts, one opaque directory.
app = Layer()

share_os, share_kit = 0.58, 0.39
while len(os_layer.members) < wanted * share_os:
    package(os_layer)
while len(kit.members) < wanted * share_kit * 0.55:
    kit_component(kit)
while len(kit.members) < wanted * share_kit:
    python_package(kit)
lower_files = [m[1] for m in os_layer.members + kit.members if m[0] == "f"]
gone = set(rng.sample(lower_files, 1000))
for path in sorted(gone):
    app.whiteout(path)
for path in rng.sample([p for p in lower_files if p not in gone], 800):
    app.file(path, size(2000, 1.0, 100_000))
opaque = "opt/toolkit-12.2/doc"
app.file(f"{opaque}/.wh..wh..opq", 0)
app.file(f"{opaque}/README", 4000)
# The merged filesystem's paths, to stop adding application files at the wanted count.
merged = {m[1] for m in os_layer.members + kit.members}
merged -= gone
merged = {p for p in merged if not p.startswith(opaque + "/")}
counted = 0
while True:
    for member in app.members[counted:]:
        if "/.wh." not in "/" + member[1]:
            merged.add(member[1])
    counted = len(app.members)
    if len(merged) >= wanted:
        break
    app.file(f"srv/app/{name((1, 1))}/{name((1, 2))}/{name()}.js", size(3000, 1.3, 300_000))

layers = [l.write() for l in (os_layer, kit, app)]
config = {
    "architecture": "amd64", "os": "linux", "created": "2023-11-14T22:13:20Z",
    "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + l["diff_id"] for l in layers]},
    "history": [{"created_by": f"benches/basefs.sh layer {i + 1}"} for i in range(len(layers))],
}
def blob(data):
    digest = hashlib.sha256(data).hexdigest()
    with open(f"{out}/blobs/sha256/{digest}", "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + digest, "size": len(data)}
config_blob = blob(json.dumps(config, sort_keys=True).encode())
manifest = {
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_blob},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": "sha256:" + l["digest"], "size": l["size"]} for l in layers],
}
manifest_blob = blob(json.dumps(manifest, sort_keys=True).encode())
index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
         "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest_blob,
                        "annotations": {"org.opencontainers.image.ref.name": "base"}}]}
with open(f"{out}/oci-layout", "w") as f:
    json.dump({"imageLayoutVersion": "1.0.0"}, f)
with open(f"{out}/index.json", "w") as f:
    json.dump(index, f)
with open(f"{out}/layers.json", "w") as f:
    json.dump(layers, f)
EOF
  mv "$base.tmp" "$base"
fi
# Page cache warm for every blob, so that all measurements read them from memory.
jq -r '.[].digest' "$base/layers.json" | while read -r digest; do cat "$base/blobs/sha256/$digest" >/dev/null; done
layer_summary=$(jq -r '[.[] | "\(.members) members, \(.tar_size / 1048576 | round) MiB tar, \(.size / 1048576 | round) MiB gzip"] | join("; ")' "$base/layers.json")
blob_mib=$(jq '[.[].size] | add / 1048576 | round' "$base/layers.json")
tar_mib=$(jq '[.[].tar_size] | add / 1048576 | round' "$base/layers.json")
echo "base: $layer_summary" >&2

empty=$work/empty-base
[[ -d $empty ]] || { umoci init --layout "$empty" && umoci new --image "$empty:base"; } >&2
echo "layerize benchmark input" >"$work/x"
warm_cache=$work/cache-warm

now() { date +%s.%N; }
load1() { cut -d' ' -f1 /proc/loadavg; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
med() { median <"$work/$1.$2"; }

# Appends "wall user+sys rss_kib" of COMMAND to $work/KEY.stats (stdout to /dev/null, stderr to
# $work/KEY.err) and the 1-minute load at its start to $work/KEY.load.
timed() {
  local key=$1
  shift
  load1 >>"$work/$key.load"
  /usr/bin/time -f '%e %U %S %M' -o "$work/$key.time1" "$@" >/dev/null 2>"$work/$key.err" || {
    echo "failed: $*" >&2
    cat "$work/$key.err" >&2
    return 1
  }
  awk '{ printf "%s %.2f %s\n", $1, $2 + $3, $4 }' "$work/$key.time1" >>"$work/$key.stats"
}

read_blobs() { # read_blobs DECOMPRESSOR
  local digest
  for digest in $(jq -r '.[].digest' "$base/layers.json"); do "$1" -dc "$base/blobs/sha256/$digest"; done >/dev/null
}

# build KEY BASE CACHE_DIR: the small build, with its JSON log kept in $work/KEY.err.
build() {
  local key=$1 from=$2 cache=$3
  rm -rf "$work/out"
  timed "$key" "$layerize" --log-format json build --base "oci:$from:base" --target "oci:$work/out:t" \
    --file "$work/x:/x" --cache-dir "$cache" --report "$work/$key.report"
  # Seconds from "Obtained base image manifest" to "Indexed the base filesystem".
  python3 - "$work/$key.err" >>"$work/$key.index" <<'EOF'
import datetime, json, sys
seen = {}
for line in open(sys.argv[1]):
    event = json.loads(line)
    seen.setdefault(event.get("message"), datetime.datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")))
start, end = seen.get("Obtained base image manifest"), seen.get("Indexed the base filesystem")
print(f"{(end - start).total_seconds():.3f}" if start and end else "nan")
EOF
}
run_read() {
  timed read bash -c "$(declare -f read_blobs); base='$base'; read_blobs gzip"
  timed read-pigz bash -c "$(declare -f read_blobs); base='$base'; read_blobs pigz"
}
run_cold() {
  local cache
  cache=$(mktemp -d "$work/cache-cold.XXXXXX")
  build cold "$base" "$cache"
  rm -rf "$cache"
}
run_warm() { build warm "$base" "$warm_cache"; }
run_empty() { build empty "$empty" "$work/cache-empty"; }

step "Warm-up (fills the warm cache), then $runs runs of each, interleaved"
rm -rf "$warm_cache" "$work"/*.{stats,load,index,report}
build fill "$base" "$warm_cache"
run_empty
rm -f "$work"/*.{stats,load,index}
loads_before=$(cut -d' ' -f1-3 /proc/loadavg)
for i in $(seq "$runs"); do
  if ((i % 2)); then run_read; run_cold; run_warm; run_empty; else run_empty; run_warm; run_cold; run_read; fi
  echo "run $i: read $(tail -n1 "$work/read.stats" | cut -d' ' -f1)s, cold $(tail -n1 "$work/cold.stats" | cut -d' ' -f1)s (index $(tail -n1 "$work/cold.index")s), warm $(tail -n1 "$work/warm.stats" | cut -d' ' -f1)s, empty $(tail -n1 "$work/empty.stats" | cut -d' ' -f1)s" >&2
done
loads_after=$(cut -d' ' -f1-3 /proc/loadavg)

# perf: the cold build's CPU by symbol, "percent symbol" lines.
profile=$work/profile.txt
rm -f "$profile"
if command -v perf >/dev/null; then
  step "Profiling one cold build with perf"
  cache=$(mktemp -d "$work/cache-cold.XXXXXX")
  rm -rf "$work/out"
  if perf record -F 999 -o "$work/perf.data" -- "$layerize" --log-level warn build --base "oci:$base:base" \
    --target "oci:$work/out:t" --file "$work/x:/x" --cache-dir "$cache" >/dev/null 2>"$work/perf.err"; then
    perf report -i "$work/perf.data" --no-children --sort sym --stdio -g none --percent-limit 0 2>/dev/null |
      awk '/^ +[0-9.]+%/ { sub(/%/, "", $1); print }' >"$profile"
  else
    echo "perf record failed; no profile ($(tail -n1 "$work/perf.err"))" >&2
  fi
  rm -rf "$cache"
fi

# The cold builds really indexed every layer from its blob and the warm ones none.
jq -e '.base_index.layers_read == 3 and .base_index.layers_from_cache == 0' "$work/cold.report" >/dev/null
jq -e '.base_index.layers_read == 0 and .base_index.layers_from_cache == 3' "$work/warm.report" >/dev/null
indexed_paths=$(jq .base_index.paths "$work/cold.report")
[[ $(jq .base_index.paths "$work/warm.report") == "$indexed_paths" ]]

col() { awk -v c="$2" '{ print $c }' "$work/$1.stats" | median; }
runs_of() { awk -v c="$2" '{ printf "%s%s", sep, $c; sep = " " }' "$work/$1.stats"; }
calc() { awk "BEGIN { printf \"%.2f\", $1 }"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
read_wall=$(col read 1) read_cpu=$(col read 2)
pigz_wall=$(col read-pigz 1) pigz_cpu=$(col read-pigz 2)
cold_wall=$(col cold 1) cold_cpu=$(col cold 2) cold_rss=$(col cold 3) cold_index=$(med cold index)
warm_wall=$(col warm 1) warm_cpu=$(col warm 2) warm_rss=$(col warm 3) warm_index=$(med warm index)
empty_wall=$(col empty 1) empty_cpu=$(col empty 2) empty_rss=$(col empty 3)
beyond_wall=$(calc "$cold_index - $read_wall")
beyond_cpu=$(calc "$cold_cpu - $empty_cpu - $read_cpu")
met() { if awk "BEGIN { exit !($1) }"; then echo met; else echo "NOT met"; fi; }
# share SYMBOL_REGEX: percent of the profile's samples in matching symbols.
share() { awk -v re="$1" '$0 ~ re { p += $1 } END { printf "%.1f", p }' "$profile"; }
if [[ -s $profile ]]; then
  inflate=$(share 'zlib_rs::' ) crc=$(share 'crc32') sha=$(share 'sha2::')
  inflate=$(awk -v a="$inflate" -v b="$crc" 'BEGIN { printf "%.1f", a - b }')
  copies=$(share '__mem(move|cpy|set)') kernel=$(share '\[k\]')
  index_share=$(awk "BEGIN { printf \"%.1f\", 100 - $inflate - $crc - $sha - $copies - $kernel }")
  beyond_perf=$(calc "$cold_cpu * $index_share / 100 - $empty_cpu")
  beyond_perf_max=$(calc "$cold_cpu * ($index_share + $copies + $kernel) / 100 - $empty_cpu")
  goal_time=$(met "$beyond_wall < 1 && $beyond_cpu < 1 && $beyond_perf < 1")
else
  goal_time=$(met "$beyond_wall < 1 && $beyond_cpu < 1")
fi
goal_rss=$(met "$cold_rss < 65536")
run_loads=$(cat "$work"/{read,cold,warm,empty}.load | sort -g | awk '{ v[NR] = $1 } END { printf "%s to %s", v[1], v[NR] }')
commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates Cargo.lock || echo "+uncommitted")
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)

report=$work/report.md
{
  echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') by \`benches/basefs.sh\` (RUNS=$runs, medians, runs interleaved"
  echo "after one untimed warm-up), layerize commit $commit, release build."
  echo
  echo "- Machine: $cores cores ($cpu_model), blobs in the page cache."
  echo "- Load: 1/5/15-minute load averages $loads_before before and $loads_after after; 1-minute load"
  echo "  at the start of each timed run $run_loads on $cores cores (above $cores: other work competed for the cores)."
  echo "- Base: generated, $indexed_paths paths after merging, three gzip layers ($layer_summary):"
  echo "  $tar_mib MiB of tar, $blob_mib MiB of gzip."
  echo
  echo "| measurement | wall s | runs (s) | CPU s | index phase s | peak RSS MiB |"
  echo "|---|---:|---|---:|---:|---:|"
  echo "| read: \`gzip -dc\` of each blob | $read_wall | $(runs_of read 1) | $read_cpu | | $(mib "$(col read 3)") |"
  echo "| (for comparison: \`pigz -dc\` of each blob) | $pigz_wall | $(runs_of read-pigz 1) | $pigz_cpu | | $(mib "$(col read-pigz 3)") |"
  echo "| cold: build, empty \`--cache-dir\` (indexes 3 layers) | $cold_wall | $(runs_of cold 1) | $cold_cpu | $cold_index | $(mib "$cold_rss") |"
  echo "| warm: build, the cache filled (reads no base blob) | $warm_wall | $(runs_of warm 1) | $warm_cpu | $warm_index | $(mib "$warm_rss") |"
  echo "| empty: the same build on an empty base | $empty_wall | $(runs_of empty 1) | $empty_cpu | | $(mib "$empty_rss") |"
  echo
  echo "Index time beyond reading the blobs, goal under 1 s: **$goal_time**."
  echo
  echo "- By subtraction, as the goal is worded: cold index phase - read = **$beyond_wall s** wall,"
  echo "  cold - empty - read = **$beyond_cpu s** CPU. (Below zero when GNU gzip inflates more slowly than"
  echo "  the zlib-rs layerize uses, and because layerize reads up to three layers at once.)"
  if [[ -s $profile ]]; then
    echo "- By profile (perf, one more cold build), share of its CPU samples: inflate (zlib-rs) $inflate%,"
    echo "  CRC-32 of the gzip members $crc%, SHA-256 of the blobs and diffIDs $sha%, memory copies and fills"
    echo "  (libc) $copies%, kernel $kernel%, the index proper (tar headers, paths, settling, merging, sorting,"
    echo "  cache) $index_share%. Index CPU beyond reading (cold CPU × share - empty build CPU): **$beyond_perf s**;"
    echo "  at most $beyond_perf_max s if the copies and all kernel time are counted as indexing too."
  fi
  echo
  echo "Peak RSS of the cold build $(mib "$cold_rss") MiB, goal < 64 MiB: **$goal_rss**."
  if [[ -s $profile ]]; then
    echo
    echo "Largest symbols of the profile outside inflate, CRC-32 and SHA-256:"
    echo
    echo "| % | symbol |"
    echo "|---:|---|"
    grep -Ev 'zlib_rs::|crc32|sha2::' "$profile" | head -n 12 | awk '{ p = $1; $1 = ""; sub(/^ \[.\] /, ""); printf "| %s | `%s` |\n", p, $0 }'
  fi
} >"$report"

step "Summary"
cat "$report"

if $update_doc; then
  update_doc_section "$repo/docs/benchmarks.md" basefs-bench "Base filesystem index" "$report"
fi
