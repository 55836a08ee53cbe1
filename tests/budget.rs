//! End-to-end (issue 7): the layer budget. 150 tiny packages under `optimization: {max_layers:
//! 40}` fit into at most 40 layers, base included, grouped by the file's order when there is no
//! previous image. The grouping is recorded in the image and the next build keeps it: changing
//! one package rebuilds exactly its group, removing one rebuilds exactly the group it leaves,
//! adding one adds one new layer and rebuilds nothing. Into an OCI layout (read back with
//! umoci), and once into a real registry from an empty cache dir, where the grouping can only
//! come from the image at the target tag (read back with podman).

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use support::access_log;
use support::images::{self, Format, Image};
use support::layer_records::records;
use support::layerize::{run_with_report, Built};
use support::podman::PulledImage;
use support::registry::Registry;
use support::scratch_dir;
use support::skopeo::{self, Unpacked};

const PACKAGES: usize = 150;
const MAX_LAYERS: usize = 40;
const TAG: &str = "app";

fn name(package: usize) -> String {
    format!("tiny{package:03}")
}

/// The file each package installs, below `/opt/tiny`.
fn path_of(package: usize) -> String {
    format!("opt/tiny/{}", name(package))
}

/// A build file: packages by number, each with the revision of its one file's contents.
#[derive(Clone)]
struct Packages(Vec<(usize, u32)>);

impl Packages {
    fn first() -> Packages {
        Packages((1..=PACKAGES).map(|package| (package, 0)).collect())
    }

    fn contents(package: usize, revision: u32) -> String {
        format!("{} revision {revision}\n", name(package))
    }

    fn changed(&self, package: usize) -> Packages {
        let mut next = self.clone();
        for entry in &mut next.0 {
            if entry.0 == package {
                entry.1 += 1;
            }
        }
        next
    }

    fn without(&self, package: usize) -> Packages {
        Packages(
            self.0
                .iter()
                .copied()
                .filter(|(p, _)| *p != package)
                .collect(),
        )
    }

    /// With a new package right after `after`.
    fn with_new(&self, package: usize, after: usize) -> Packages {
        let mut next = self.clone();
        let at = next.0.iter().position(|(p, _)| *p == after).unwrap() + 1;
        next.0.insert(at, (package, 0));
        next
    }

    fn names(&self) -> Vec<String> {
        self.0.iter().map(|(package, _)| name(*package)).collect()
    }

    fn write(&self, dir: &Path, base: &str, target: &str) -> std::path::PathBuf {
        let mut yaml = format!("image: {{base: \"{base}\", target: \"{target}\"}}\nlayers:\n");
        for &(package, revision) in &self.0 {
            yaml.push_str(&format!(
                "  - name: {}\n    files: [{{dest: /{}, content: {:?}}}]\n",
                name(package),
                path_of(package),
                Packages::contents(package, revision)
            ));
        }
        yaml.push_str(&format!("optimization: {{max_layers: {MAX_LAYERS}}}\n"));
        let path = dir.join("layerize.yaml");
        std::fs::write(&path, yaml).unwrap();
        path
    }

    /// Every package's file has its contents below `root`.
    fn assert_in(&self, root: &Path) {
        for &(package, revision) in &self.0 {
            let path = root.join(path_of(package));
            let contents = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(contents, Packages::contents(package, revision));
        }
    }
}

/// A build's layers as the report gives them.
struct Layers<'a>(Vec<&'a Value>);

impl<'a> Layers<'a> {
    fn of(built: &'a Built) -> Layers<'a> {
        Layers(built.report["layers"].as_array().unwrap().iter().collect())
    }

    /// The layers the build added to the base.
    fn own(&self) -> Vec<&'a Value> {
        self.0
            .iter()
            .copied()
            .filter(|l| l["status"] != "base")
            .collect()
    }

    /// The packages of each own layer: its `members`, or the layer itself when it is one
    /// package (then it has no `members`).
    fn groups(&self) -> Vec<Vec<String>> {
        self.own()
            .into_iter()
            .map(|layer| match layer["members"].as_array() {
                Some(members) => {
                    assert!(members.len() > 1, "a batch of one: {layer}");
                    members
                        .iter()
                        .map(|m| m.as_str().unwrap().to_owned())
                        .collect()
                }
                None => vec![layer["name"].as_str().unwrap().to_owned()],
            })
            .collect()
    }

    fn with_status(&self, status: &str) -> Vec<&'a Value> {
        self.own()
            .into_iter()
            .filter(|l| l["status"] == status)
            .collect()
    }

    /// (packages, digest) of every own layer.
    fn digests_by_group(&self) -> BTreeSet<(Vec<String>, String)> {
        self.groups()
            .into_iter()
            .zip(self.own())
            .map(|(group, layer)| (group, layer["digest"].as_str().unwrap().to_owned()))
            .collect()
    }
}

/// The first build's layers: within the budget, every package in exactly one layer, grouped
/// in the file's order.
fn assert_first_grouping(built: &Built, packages: &Packages) {
    let layers = Layers::of(built);
    assert!(layers.0.len() <= MAX_LAYERS, "{} layers", layers.0.len());
    assert_eq!(layers.with_status("built").len(), layers.own().len());
    let flattened: Vec<String> = layers.groups().concat();
    assert_eq!(
        flattened,
        packages.names(),
        "grouping is not by the file's order"
    );
}

/// Every package of the file is in exactly one layer; within a layer packages keep the file's
/// order, and layers are ordered by the file position of their first package.
fn assert_file_order(built: &Built, packages: &Packages) {
    let names = packages.names();
    let position = |package: &String| {
        names
            .iter()
            .position(|name| name == package)
            .unwrap_or_else(|| panic!("{package} is not in the build file"))
    };
    let groups = Layers::of(built).groups();
    let mut all: Vec<usize> = groups.iter().flatten().map(position).collect();
    for group in &groups {
        let positions: Vec<usize> = group.iter().map(position).collect();
        assert!(
            positions.is_sorted(),
            "{group:?} is not in the file's order"
        );
    }
    let firsts: Vec<usize> = groups.iter().map(|group| position(&group[0])).collect();
    assert!(
        firsts.is_sorted(),
        "layers not ordered by their first package: {groups:?}"
    );
    all.sort();
    assert_eq!(all, (0..names.len()).collect::<Vec<_>>(), "{groups:?}");
}

/// `after` rebuilt exactly one layer, holding `packages`, and reused every other layer of
/// `before` (the same packages, the same blob); it has no other layer.
fn assert_one_rebuilt(before: &Built, after: &Built, packages: &[String], new_group: bool) {
    let (before, after) = (Layers::of(before), Layers::of(after));
    let built = after.with_status("built");
    assert_eq!(built.len(), 1, "built: {built:#?}");
    let built_group: Vec<String> = after
        .groups()
        .into_iter()
        .zip(after.own())
        .find(|(_, layer)| layer["status"] == "built")
        .unwrap()
        .0;
    assert_eq!(built_group, packages);
    let old = before.digests_by_group();
    let kept: BTreeSet<_> = after
        .digests_by_group()
        .into_iter()
        .filter(|(group, _)| *group != built_group)
        .collect();
    assert!(
        kept.is_subset(&old),
        "a reused layer is not one of before's"
    );
    let expected_kept = old.len() - usize::from(!new_group);
    assert_eq!(kept.len(), expected_kept, "layers of before lost");
    assert_eq!(after.with_status("reused").len(), kept.len());
}

/// The group holding `package`.
fn group_of(built: &Built, package: &str) -> Vec<String> {
    Layers::of(built)
        .groups()
        .into_iter()
        .find(|group| group.iter().any(|member| member == package))
        .unwrap_or_else(|| panic!("{package} is in no layer"))
}

/// The manifest and config a layout holds at [`TAG`]; its records must say what `built`'s
/// report says.
fn assert_layout_records(layout: &Path, built: &Built) {
    let read = |digest: &str| -> Value {
        let hex = digest.strip_prefix("sha256:").unwrap();
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap())
            .unwrap()
    };
    let index = read_json(&layout.join("index.json"));
    let descriptor = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == TAG)
        .unwrap()
        .clone();
    assert_eq!(descriptor["digest"], built.report["digest"]);
    let manifest = read(descriptor["digest"].as_str().unwrap());
    let config = read(manifest["config"]["digest"].as_str().unwrap());
    assert_records(&manifest, &config, built);
}

fn assert_records(manifest: &Value, config: &Value, built: &Built) {
    let layers = Layers::of(built);
    let mut groups = layers.groups().into_iter();
    for (record, layer) in records(manifest, config).iter().zip(&layers.0) {
        match record {
            None => assert_eq!(layer["status"], "base"),
            Some(record) => {
                assert_eq!(record.key, layer["key"].as_str().unwrap());
                assert_eq!(record.packages(), groups.next().unwrap(), "{layer}");
            }
        }
    }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn build(file: &Path, cache: &Path) -> Built {
    run_with_report(
        support::layerize!()
            .arg("build")
            .arg("-c")
            .arg(file)
            .arg("--cache-dir")
            .arg(cache),
    )
}

#[test]
fn a_layer_budget_keeps_its_grouping_in_a_layout() {
    let base = images::layout(Image::Busybox, Format::Oci);
    let out = scratch_dir();
    let layout = out.path().join("layout");
    let target = format!("oci:{}:{TAG}", layout.display());
    let project = scratch_dir();
    let cache = scratch_dir();
    let build_of = |packages: &Packages| {
        let file = packages.write(project.path(), &base.reference(), &target);
        let built = build(&file, cache.path());
        assert_file_order(&built, packages);
        assert_layout_records(&layout, &built);
        packages.assert_in(&Unpacked::new(&layout, TAG).rootfs());
        built
    };

    let packages = Packages::first();
    let first = build_of(&packages);
    assert_first_grouping(&first, &packages);

    // With no previous image the grouping is a function of the file: the same build into a new
    // layout from an empty cache dir gives the same image.
    let other = scratch_dir();
    let other_cache = scratch_dir();
    let file = packages.write(
        project.path(),
        &base.reference(),
        &format!("oci:{}:{TAG}", other.path().join("layout").display()),
    );
    assert_eq!(
        build(&file, other_cache.path()).report["digest"],
        first.report["digest"]
    );

    // Change one package: exactly its group is rebuilt, the grouping stays.
    let changed_package = name(77);
    let changed = packages.changed(77);
    let second = build_of(&changed);
    assert_one_rebuilt(&first, &second, &group_of(&first, &changed_package), false);
    assert_eq!(Layers::of(&second).groups(), Layers::of(&first).groups());
    assert!(Layers::of(&second).0.len() <= MAX_LAYERS);

    // Remove one from another group of several: exactly that group is rebuilt without it.
    let (removed, old_group) = Layers::of(&second)
        .groups()
        .into_iter()
        .filter(|group| group.len() > 1 && !group.contains(&changed_package))
        .map(|group| (group[1].clone(), group))
        .next()
        .expect("a batch of several packages");
    let removed_number: usize = removed["tiny".len()..].parse().unwrap();
    let fewer = changed.without(removed_number);
    let third = build_of(&fewer);
    let shrunk: Vec<String> = old_group.into_iter().filter(|p| *p != removed).collect();
    assert_one_rebuilt(&second, &third, &shrunk, false);

    // Add one in the middle of the file: one new layer holding just it, nothing rebuilt.
    let added = fewer.with_new(PACKAGES + 1, 50);
    let fourth = build_of(&added);
    assert_one_rebuilt(&third, &fourth, &[name(PACKAGES + 1)], true);
    assert_eq!(Layers::of(&fourth).0.len(), Layers::of(&third).0.len() + 1);
}

#[test]
fn a_layer_budget_keeps_its_grouping_from_the_image_at_the_target_tag() {
    let registry = Registry::open();
    images::push(Image::Busybox, Format::Docker, &registry, "base/busybox:1");
    let base = format!("{}/base/busybox:1", registry.host());
    let target = format!("{}/budget:1", registry.host());
    let project = scratch_dir();

    let packages = Packages::first();
    let first = build(
        &packages.write(project.path(), &base, &target),
        scratch_dir().path(),
    );
    assert_first_grouping(&first, &packages);
    let manifest: Value = serde_json::from_slice(&skopeo::inspect_raw(&target, None)).unwrap();
    let config: Value = serde_json::from_slice(&skopeo::inspect_config_raw(&target, None)).unwrap();
    assert_records(&manifest, &config, &first);
    packages.assert_in(PulledImage::pull(&target, None).root());

    // A new runner: an empty cache dir, so the grouping and the layers come from the image at
    // the target tag alone.
    let changed = packages.changed(123);
    let before = registry.settled_access_log().len();
    let second = build(
        &changed.write(project.path(), &base, &target),
        scratch_dir().path(),
    );
    let log = registry.settled_access_log();
    assert_file_order(&second, &changed);
    assert_one_rebuilt(&first, &second, &group_of(&first, &name(123)), false);
    for layer in Layers::of(&second).with_status("reused") {
        assert_eq!(layer["reused_from"], "target", "{layer}");
    }
    let built_digest = Layers::of(&second).with_status("built")[0]["digest"].clone();
    let manifest: Value = serde_json::from_slice(&skopeo::inspect_raw(&target, None)).unwrap();
    let uploaded: BTreeSet<String> = access_log::uploads(&access_log::requests(&log[before..]))
        .into_iter()
        .map(|(digest, _)| digest.expect("an upload session without its final PUT"))
        .collect();
    let expected: BTreeSet<String> = [&built_digest, &manifest["config"]["digest"]]
        .into_iter()
        .map(|digest| digest.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        uploaded, expected,
        "only the rebuilt group and the config are uploaded"
    );
    changed.assert_in(PulledImage::pull(&target, None).root());
}
