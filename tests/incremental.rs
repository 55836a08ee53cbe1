//! End-to-end (issue 7): incremental builds from a build file of 30 package-like layers, pushed
//! to a real registry and pulled by podman. After each edit a developer makes — remove the 10th
//! package, move the 3rd to the end, change the 5th — a build makes exactly the layers whose own
//! inputs changed, because a layer's key never depends on its position or its neighbours; the
//! registry log shows that nothing else was uploaded. The same edits then run as on a new CI
//! runner (an empty cache dir, the previous image's tag passed with `--cache-from`, pushed to a
//! new repository) and must give the same counts and the same digests. Also: the same build
//! twice, the previous image at the target tag as the only cache (its dropped layer reported),
//! and `--dry-run`, which prints the plan and writes nothing. On a Docker v2 and an OCI base.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use support::access_log::{self, Request};
use support::images::{self, Format, Image};
use support::layer_records::records;
use support::layerize::{run_ok, run_with_report, Built};
use support::podman::PulledImage;
use support::registry::Registry;
use support::{scratch_dir, skopeo};

const PACKAGES: usize = 30;
/// The package the scenarios remove, move and change (1-based, as in "the 10th").
const REMOVED: usize = 10;
const MOVED: usize = 3;
const CHANGED: usize = 5;

fn name(package: usize) -> String {
    format!("pkg{package:02}")
}

/// Even packages are `dir` layers (a host tree), odd ones `files` layers (two host files with
/// explicit modes and one inline file).
fn is_dir_layer(package: usize) -> bool {
    package.is_multiple_of(2)
}

/// The data file of `package` at `revision`: its own size (a few KiB to ~50 KiB) and
/// pseudo-random bytes, so that no two packages share a layer.
fn data(package: usize, revision: u64) -> Vec<u8> {
    let size = 1_000 + package * 1_537;
    let mut state = 0x9E37_79B9_7F4A_7C15_u64 ^ ((package as u64) << 32 | revision);
    (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn tool(package: usize) -> String {
    format!("#!/bin/sh\necho {}\n", name(package))
}

fn version(package: usize) -> String {
    format!("{} 1.0\n", name(package))
}

/// One of the image's files: where it lands, what it holds and its mode.
struct ImageFile {
    path: String,
    contents: Vec<u8>,
    mode: u32,
}

/// The files `package` puts into the image at `revision` of its data file.
fn package_files(package: usize, revision: u64) -> Vec<ImageFile> {
    let root = format!("opt/{}", name(package));
    vec![
        ImageFile {
            path: format!("{root}/bin/{}", name(package)),
            contents: tool(package).into_bytes(),
            mode: 0o755,
        },
        ImageFile {
            path: format!("{root}/share/data.bin"),
            contents: data(package, revision),
            mode: 0o644,
        },
        ImageFile {
            path: format!("{root}/share/VERSION"),
            contents: version(package).into_bytes(),
            mode: 0o644,
        },
    ]
}

/// A build context: `layerize.yaml` next to `src/pkgNN/{bin,share}/...`.
struct Project {
    dir: tempfile::TempDir,
    /// The revision of the changed package's data file now on disk.
    changed_revision: u64,
}

impl Project {
    fn new() -> Project {
        let dir = scratch_dir();
        for package in 1..=PACKAGES {
            for file in package_files(package, 0) {
                // A files layer writes its VERSION inline in the build file.
                if !is_dir_layer(package) && file.path.ends_with("VERSION") {
                    continue;
                }
                let host = dir.path().join("src").join(&file.path["opt/".len()..]);
                std::fs::create_dir_all(host.parent().unwrap()).unwrap();
                std::fs::write(&host, &file.contents).unwrap();
                std::fs::set_permissions(&host, std::fs::Permissions::from_mode(file.mode))
                    .unwrap();
            }
        }
        Project {
            dir,
            changed_revision: 0,
        }
    }

    fn data_file(&self, package: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("src/{}/share/data.bin", name(package)))
    }

    /// Rewrites the changed package's data file in place with the bytes of `revision`: the same
    /// size, and its old modification time put back, so that only its contents tell the change
    /// (as after `cp -p` or a tar extraction); a key taken from size and mtime would miss it.
    fn set_changed_revision(&mut self, revision: u64) {
        let path = self.data_file(CHANGED);
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::fs::write(&path, data(CHANGED, revision)).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        self.changed_revision = revision;
    }

    fn revision_of(&self, package: usize) -> u64 {
        if package == CHANGED {
            self.changed_revision
        } else {
            0
        }
    }

    /// Writes `layerize.yaml` with the packages in `order`; returns its path.
    fn write_build_file(&self, base: &str, target: &str, order: &[usize]) -> PathBuf {
        let mut yaml = format!("image: {{base: \"{base}\", target: \"{target}\"}}\nlayers:\n");
        for &package in order {
            let pkg = name(package);
            yaml.push_str(&format!("  - name: {pkg}\n"));
            if is_dir_layer(package) {
                yaml.push_str(&format!("    dir: {{src: src/{pkg}, dest: /opt/{pkg}}}\n"));
            } else {
                yaml.push_str(&format!(
                    "    files:\n      \
                     - {{src: src/{pkg}/bin/{pkg}, dest: /opt/{pkg}/bin/{pkg}, mode: \"0755\"}}\n      \
                     - {{src: src/{pkg}/share/data.bin, dest: /opt/{pkg}/share/data.bin, mode: \"0644\"}}\n      \
                     - {{dest: /opt/{pkg}/share/VERSION, content: {:?}}}\n",
                    version(package)
                ));
            }
        }
        yaml.push_str("config: {env: {APP_MODE: incremental}}\n");
        let path = self.dir.path().join("layerize.yaml");
        std::fs::write(&path, yaml).unwrap();
        path
    }
}

/// The registry of a scenario and the busybox base pushed into it in the scenario's format.
struct Site {
    registry: Registry,
    base: String,
    format: Format,
}

/// One `layerize build -c`: what it reported and the requests the registry saw meanwhile.
struct Step {
    built: Built,
    requests: Vec<Request>,
}

impl Step {
    fn report(&self) -> &Value {
        &self.built.report
    }

    fn digest(&self) -> &str {
        self.report()["digest"].as_str().unwrap()
    }

    /// The layers this build added to the base, in manifest order.
    fn own_layers(&self) -> Vec<&Value> {
        let layers = self.report()["layers"].as_array().unwrap();
        layers
            .iter()
            .filter(|layer| layer["status"] != "base")
            .collect()
    }

    fn base_layer_count(&self) -> usize {
        let layers = self.report()["layers"].as_array().unwrap();
        layers.iter().filter(|l| l["status"] == "base").count()
    }

    fn names_with_status(&self, status: &str) -> Vec<String> {
        self.own_layers()
            .into_iter()
            .filter(|layer| layer["status"] == status)
            .map(|layer| layer["name"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Layer name -> key.
    fn keys(&self) -> BTreeMap<String, String> {
        self.own_layers()
            .into_iter()
            .map(|layer| {
                let key = layer["key"]
                    .as_str()
                    .expect("a built or reused layer has a key");
                (layer["name"].as_str().unwrap().to_owned(), key.to_owned())
            })
            .collect()
    }

    fn layer_digest(&self, name: &str) -> String {
        let layer = self
            .own_layers()
            .into_iter()
            .find(|layer| layer["name"] == name)
            .unwrap_or_else(|| panic!("no layer {name} in {}", self.report()));
        layer["digest"].as_str().unwrap().to_owned()
    }

    /// The digests whose upload this build completed, in order.
    fn uploaded_digests(&self) -> Vec<Option<String>> {
        access_log::uploads(&self.requests)
            .into_iter()
            .map(|(digest, _)| digest)
            .collect()
    }

    /// The build made exactly the layers `names` and reused every other one, in the file's
    /// `order`; only their blobs and the config were sent (by the report and by the registry's
    /// log alike).
    fn assert_built_only(&self, names: &[String], order: &[usize], config_digest: &str) {
        let expected_order: Vec<String> = order.iter().map(|&p| name(p)).collect();
        let own: Vec<String> = self
            .own_layers()
            .into_iter()
            .map(|layer| layer["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(own, expected_order, "layers not in the file's order");
        assert_eq!(self.names_with_status("built"), names, "{}", self.report());
        let reused = self.names_with_status("reused");
        assert_eq!(reused.len() + names.len(), order.len(), "{}", self.report());

        let config = Some(config_digest.to_owned());
        let uploaded = self.uploaded_digests();
        let layer_uploads: BTreeSet<Option<String>> = uploaded
            .iter()
            .filter(|digest| **digest != config)
            .cloned()
            .collect();
        let built: BTreeSet<Option<String>> =
            names.iter().map(|n| Some(self.layer_digest(n))).collect();
        // The config is uploaded too, unless the repository holds the very same image already.
        assert_eq!(
            layer_uploads, built,
            "layer blobs uploaded (all uploads: {uploaded:?})"
        );
        assert_eq!(
            uploaded.len(),
            layer_uploads.len() + usize::from(uploaded.contains(&config)),
            "a blob uploaded twice: {uploaded:?}"
        );
        assert_eq!(
            self.report()["blobs_uploaded"].as_u64().unwrap() as usize,
            uploaded.len(),
            "the report's blobs_uploaded and the registry's log disagree"
        );
    }

    /// Every reused layer came from `source` (a `reused_from` value).
    fn assert_reused_from(&self, source: &str) {
        for layer in self.own_layers() {
            if layer["status"] == "reused" {
                assert_eq!(layer["reused_from"], source, "{layer}");
            }
        }
    }
}

/// The manifest the registry serves at a reference.
struct Pushed {
    manifest: Value,
}

impl Pushed {
    fn config_digest(&self) -> &str {
        self.manifest["config"]["digest"].as_str().unwrap()
    }
}

impl Site {
    fn new(format: Format) -> Site {
        let registry = Registry::open();
        images::push(Image::Busybox, format, &registry, "base/busybox:1");
        let base = format!("{}/base/busybox:1", registry.host());
        Site {
            registry,
            base,
            format,
        }
    }

    fn reference(&self, repository_tag: &str) -> String {
        format!("{}/{repository_tag}", self.registry.host())
    }

    /// Runs `layerize build -c FILE ARGS...` and collects its report and registry requests.
    fn build(&self, file: &Path, args: &[String]) -> Step {
        let before = self.registry.settled_access_log().len();
        let mut command = support::layerize!();
        command.arg("build").arg("-c").arg(file).args(args);
        let built = run_with_report(&mut command);
        let log = self.registry.settled_access_log();
        Step {
            built,
            requests: access_log::requests(&log[before..]),
        }
    }

    /// `--dry-run`: the plan's lines, after checking that the registry saw no write and the
    /// cache dir `cache` did not change.
    fn dry_run(&self, file: &Path, args: &[String], cache: &Path) -> Vec<String> {
        let cache_before = files_below(cache);
        let before = self.registry.settled_access_log().len();
        let mut command = support::layerize!();
        command
            .arg("build")
            .arg("-c")
            .arg(file)
            .args(args)
            .arg("--dry-run");
        let output = run_ok(&mut command);
        let log = self.registry.settled_access_log();
        let writes: Vec<Request> = access_log::requests(&log[before..])
            .into_iter()
            .filter(Request::is_write)
            .collect();
        assert!(
            writes.is_empty(),
            "--dry-run wrote to the registry: {writes:#?}"
        );
        assert_eq!(
            files_below(cache),
            cache_before,
            "--dry-run changed the cache dir"
        );
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The manifest and config at `reference`, checked against `step`'s report: the manifest's
    /// digest, its layers in the report's order, and the record of each layer the build added.
    fn pushed(&self, reference: &str, step: &Step) -> Pushed {
        let bytes = skopeo::inspect_raw(reference, None);
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        assert_eq!(
            digest,
            step.digest(),
            "{reference} is not what the report says"
        );
        let manifest: Value = serde_json::from_slice(&bytes).unwrap();
        let expected_type = match self.format {
            Format::Docker => "application/vnd.docker.distribution.manifest.v2+json",
            Format::Oci => "application/vnd.oci.image.manifest.v1+json",
        };
        assert_eq!(step.report()["manifest_media_type"], expected_type);
        let config_bytes = skopeo::inspect_config_raw(reference, None);
        assert_eq!(
            format!("sha256:{}", hex::encode(Sha256::digest(&config_bytes))),
            manifest["config"]["digest"].as_str().unwrap()
        );
        let config: Value = serde_json::from_slice(&config_bytes).unwrap();

        let reported = step.report()["layers"].as_array().unwrap();
        let layers = manifest["layers"].as_array().unwrap();
        let digests = |list: &[Value]| -> Vec<Value> {
            list.iter().map(|layer| layer["digest"].clone()).collect()
        };
        assert_eq!(
            digests(layers),
            digests(reported),
            "manifest vs report order"
        );
        for (record, layer) in records(&manifest, &config).iter().zip(reported) {
            match record {
                None => assert_eq!(layer["status"], "base", "{layer} has no record"),
                Some(record) => {
                    assert_eq!(record.name, layer["name"].as_str().unwrap());
                    assert_eq!(record.key, layer["key"].as_str().unwrap());
                    assert!(record.members.is_empty(), "{record:?}: one package a layer");
                }
            }
        }
        let env = config["config"]["Env"].as_array().unwrap();
        assert!(
            env.contains(&Value::from("APP_MODE=incremental")),
            "{env:?}"
        );
        Pushed { manifest }
    }
}

/// Every file below `dir`, relative to it.
fn files_below(dir: &Path) -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path.clone());
            }
            found.insert(path.strip_prefix(dir).unwrap().to_owned());
        }
    }
    found
}

/// podman pulls `reference` and sees every package of `order` with its files, contents and
/// modes, no trace of the packages left out, and the base's files.
fn assert_podman_sees(reference: &str, project: &Project, order: &[usize]) {
    let pulled = PulledImage::pull(reference, None);
    let root = pulled.root();
    assert!(
        root.join("bin/busybox").is_file(),
        "the base's files are gone"
    );
    for package in 1..=PACKAGES {
        let dir = root.join("opt").join(name(package));
        if !order.contains(&package) {
            assert!(
                std::fs::symlink_metadata(&dir).is_err(),
                "/opt/{} is still in {reference}",
                name(package)
            );
            continue;
        }
        for file in package_files(package, project.revision_of(package)) {
            let path = root.join(&file.path);
            let contents = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("/{} in {reference}: {e}", file.path));
            assert!(
                contents == file.contents,
                "/{} has other contents",
                file.path
            );
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
            assert_eq!(mode, file.mode, "/{} mode {mode:o}", file.path);
        }
    }
}

/// `order` without `package`.
fn without(order: &[usize], package: usize) -> Vec<usize> {
    order.iter().copied().filter(|&p| p != package).collect()
}

/// `order` with `package` moved to the end.
fn moved_to_end(order: &[usize], package: usize) -> Vec<usize> {
    let mut moved = without(order, package);
    moved.push(package);
    moved
}

fn args(pairs: &[(&str, &str)]) -> Vec<String> {
    pairs
        .iter()
        .flat_map(|(flag, value)| [flag.to_string(), value.to_string()])
        .collect()
}

fn path_arg(flag: &str, path: &Path) -> Vec<String> {
    vec![flag.to_owned(), path.display().to_string()]
}

/// A plan line for each layer, as `--dry-run` prints them.
#[derive(Debug, PartialEq, Eq)]
enum PlanLine {
    Base,
    Reuse {
        name: String,
        key: String,
        from: String,
    },
    Build {
        name: String,
        key: String,
    },
    Drop {
        name: String,
    },
}

fn parse_plan(lines: &[String]) -> Vec<PlanLine> {
    lines
        .iter()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["base", _name, digest] if digest.starts_with("sha256:") => PlanLine::Base,
                ["reuse", name, key, "from", from, ..] => PlanLine::Reuse {
                    name: name.to_string(),
                    key: key.to_string(),
                    from: from.to_string(),
                },
                ["build", name, key, ..] => PlanLine::Build {
                    name: name.to_string(),
                    key: key.to_string(),
                },
                ["drop", name, reason @ ..] if !reason.is_empty() => PlanLine::Drop {
                    name: name.to_string(),
                },
                _ => panic!("not a plan line: {line:?}\nplan:\n{}", lines.join("\n")),
            }
        })
        .collect()
}

/// The whole scenario on the busybox base in `format`.
fn incremental_builds_rebuild_only_what_changed(format: Format) {
    let site = Site::new(format);
    let mut project = Project::new();
    let all: Vec<usize> = (1..=PACKAGES).collect();
    let without_removed = without(&all, REMOVED);
    let moved = moved_to_end(&without_removed, MOVED);
    let cache = scratch_dir();
    let cache_args = path_arg("--cache-dir", cache.path());
    let app = |tag: &str| site.reference(&format!("app:{tag}"));

    // (a) The first build makes all 30 layers.
    let first = site.build(
        &project.write_build_file(&site.base, &app("a"), &all),
        &cache_args,
    );
    assert_eq!(first.names_with_status("built").len(), PACKAGES);
    assert!(first.base_layer_count() >= 1);
    let keys = first.keys();
    let distinct: BTreeSet<&String> = keys.values().collect();
    assert_eq!(
        distinct.len(),
        PACKAGES,
        "two packages share a key: {keys:?}"
    );
    let first_pushed = site.pushed(&app("a"), &first);
    first.assert_built_only(
        &all.iter().map(|&p| name(p)).collect::<Vec<_>>(),
        &all,
        first_pushed.config_digest(),
    );
    assert_podman_sees(&app("a"), &project, &all);

    // (b) Remove the 10th: nothing is built, only the config is uploaded, and podman sees the
    // 10th's files gone and every other package intact.
    let removed = site.build(
        &project.write_build_file(&site.base, &app("b"), &without_removed),
        &cache_args,
    );
    let removed_pushed = site.pushed(&app("b"), &removed);
    removed.assert_built_only(&[], &without_removed, removed_pushed.config_digest());
    assert_eq!(removed.report()["blobs_uploaded"], 1, "only the config");
    removed.assert_reused_from("local-cache");
    assert_keys_unchanged(&first, &removed);
    assert_podman_sees(&app("b"), &project, &without_removed);

    // (c) Move the 3rd to the end: nothing is built, the manifest follows the file's order (the
    // manifest's layers are the report's, checked by `pushed`) and the moved layer is the same
    // blob.
    let reordered = site.build(
        &project.write_build_file(&site.base, &app("c"), &moved),
        &cache_args,
    );
    let reordered_pushed = site.pushed(&app("c"), &reordered);
    reordered.assert_built_only(&[], &moved, reordered_pushed.config_digest());
    reordered.assert_reused_from("local-cache");
    let last = reordered_pushed.manifest["layers"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        last["digest"].as_str().unwrap(),
        first.layer_digest(&name(MOVED))
    );
    assert_keys_unchanged(&first, &reordered);
    assert_podman_sees(&app("c"), &project, &moved);

    // The plan of (d), first as a dry run, which writes nothing (checked by `dry_run`).
    project.set_changed_revision(1);
    let changed_file = project.write_build_file(&site.base, &app("d"), &moved);
    let plan = parse_plan(&site.dry_run(&changed_file, &cache_args, cache.path()));
    let bases = plan
        .iter()
        .take_while(|line| **line == PlanLine::Base)
        .count();
    assert_eq!(bases, first.base_layer_count(), "{plan:?}");
    let mut planned_key = None;
    for (line, &package) in plan[bases..].iter().zip(&moved) {
        match line {
            PlanLine::Build { name: built, key } if *built == name(CHANGED) => {
                planned_key = Some(key.clone());
            }
            PlanLine::Reuse {
                name: reused,
                key,
                from,
            } => {
                assert_eq!(*reused, name(package), "{plan:?}");
                assert_eq!(*key, keys[reused], "{plan:?}");
                assert_eq!(from, "local-cache", "{plan:?}");
            }
            other => panic!("{other:?} for {}: {plan:?}", name(package)),
        }
    }
    assert_eq!(plan.len(), bases + moved.len(), "{plan:?}");
    assert!(
        skopeo::digest_if_exists(&app("d"), None).is_none(),
        "the dry run pushed"
    );

    // (d) Change the 5th's contents: exactly that layer is built.
    let changed = site.build(&changed_file, &cache_args);
    let changed_pushed = site.pushed(&app("d"), &changed);
    changed.assert_built_only(&[name(CHANGED)], &moved, changed_pushed.config_digest());
    let new_key = &changed.keys()[&name(CHANGED)];
    assert_ne!(
        *new_key,
        keys[&name(CHANGED)],
        "the changed package kept its key"
    );
    let planned_key = planned_key.expect("the plan builds the changed package");
    assert!(
        planned_key == "new" || planned_key == *new_key,
        "plan said {planned_key}"
    );
    assert_podman_sees(&app("d"), &project, &moved);

    // (f) The same build twice: the same digest, nothing built, and since the tag already
    // points at that very image, nothing written at all.
    let again = site.build(&changed_file, &cache_args);
    assert_eq!(again.digest(), changed.digest());
    again.assert_built_only(&[], &moved, changed_pushed.config_digest());
    let writes: Vec<&Request> = again.requests.iter().filter(|r| r.is_write()).collect();
    assert!(writes.is_empty(), "an unchanged rebuild wrote: {writes:#?}");

    // (e) (b)-(d) again as on new CI runners: an empty cache dir each, the previous tag as
    // --cache-from, each pushed to a new tag of a new repository (given by --target over the
    // file's own target, which stays unpushed). The same counts, and the same digests as the
    // builds above: the result depends on the inputs, not on where the cache came from.
    project.set_changed_revision(0);
    let unused = site.reference("unused:never");
    let ci = |tag: &str| site.reference(&format!("ci:{tag}"));
    let runs = [
        (
            &without_removed,
            app("a"),
            ci("b"),
            &removed,
            Vec::<String>::new(),
        ),
        (&moved, ci("b"), ci("c"), &reordered, Vec::new()),
        (&moved, ci("c"), ci("d"), &changed, vec![name(CHANGED)]),
    ];
    for (order, previous, target, same_as, built) in runs {
        if !built.is_empty() {
            project.set_changed_revision(1);
        }
        let runner_cache = scratch_dir();
        let mut ci_args = path_arg("--cache-dir", runner_cache.path());
        ci_args.extend(args(&[("--cache-from", &previous), ("--target", &target)]));
        let step = site.build(
            &project.write_build_file(&site.base, &unused, order),
            &ci_args,
        );
        let pushed = site.pushed(&target, &step);
        step.assert_built_only(&built, order, pushed.config_digest());
        step.assert_reused_from(&previous);
        assert_eq!(
            step.digest(),
            same_as.digest(),
            "{target} differs from its twin"
        );
    }
    assert!(skopeo::digest_if_exists(&unused, None).is_none());

    // The previous image at the target tag is a cache too, and comes first: (b)'s file onto
    // app:a, which holds (a). Its plan (planned with the first cache dir, whose layers are in the
    // repository too; a dry run with an empty cache dir is a test of its own) and its report
    // (from an empty cache dir) name the 10th as dropped.
    project.set_changed_revision(0);
    let onto_first = project.write_build_file(&site.base, &app("a"), &without_removed);
    let plan = parse_plan(&site.dry_run(&onto_first, &cache_args, cache.path()));
    assert!(
        plan.contains(&PlanLine::Drop {
            name: name(REMOVED)
        }),
        "{plan:?}"
    );
    let reuses = plan
        .iter()
        .filter(|line| matches!(line, PlanLine::Reuse { from, .. } if from == "target"))
        .count();
    assert_eq!(reuses, without_removed.len(), "{plan:?}");
    let empty_cache = scratch_dir();
    let onto = site.build(&onto_first, &path_arg("--cache-dir", empty_cache.path()));
    let onto_pushed = site.pushed(&app("a"), &onto);
    onto.assert_built_only(&[], &without_removed, onto_pushed.config_digest());
    onto.assert_reused_from("target");
    assert_eq!(onto.digest(), removed.digest());
    let dropped = onto.report()["dropped"].as_array().expect("a dropped list");
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert_eq!(dropped[0]["name"], name(REMOVED));
    assert_eq!(dropped[0]["key"], keys[&name(REMOVED)].as_str());
    assert!(!dropped[0]["reason"].as_str().unwrap().is_empty());
}

/// A layer's key is the same whatever its position and its neighbours.
fn assert_keys_unchanged(first: &Step, later: &Step) {
    let keys = first.keys();
    for (layer, key) in later.keys() {
        assert_eq!(key, keys[&layer], "{layer} changed its key");
    }
}

#[test]
fn incremental_builds_on_a_docker_v2_base() {
    incremental_builds_rebuild_only_what_changed(Format::Docker);
}

#[test]
fn incremental_builds_on_an_oci_base() {
    incremental_builds_rebuild_only_what_changed(Format::Oci);
}

/// `--dry-run` on a new machine — an empty cache dir, nothing at the target tag — prints a plan
/// that builds every layer and writes nothing: no registry request that changes anything, no
/// target tag, and nothing in the cache dir (not even the base's filesystem index).
#[test]
fn a_dry_run_from_an_empty_cache_dir_writes_nothing() {
    let site = Site::new(Format::Oci);
    let project = Project::new();
    let order = [1, 2, 3];
    let target = site.reference("app:1");
    let file = project.write_build_file(&site.base, &target, &order);
    let cache = scratch_dir();
    let plan =
        parse_plan(&site.dry_run(&file, &path_arg("--cache-dir", cache.path()), cache.path()));
    let built: Vec<&PlanLine> = plan
        .iter()
        .filter(|line| matches!(line, PlanLine::Build { .. }))
        .collect();
    assert_eq!(built.len(), order.len(), "{plan:?}");
    assert!(skopeo::digest_if_exists(&target, None).is_none());
}
