//! Builds with apt layers (issue 9): `apt:` entries and the top-level `apt` section of a build
//! file, the report's `apt` part read by package, and commands run in a chroot of a pulled image
//! (whose result the tests assert, failures included).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use crate::script_builds::DebianSite;
use crate::tools;

/// An entry of the `layers:` list with `apt: [PACKAGES]`: one layer per resolved package.
pub fn apt_layer(name: &str, packages: &[&str]) -> String {
    format!("  - name: {name}\n    apt: {}\n", json(packages))
}

/// An entry with `apt: {group: [PACKAGES]}`: one layer, named `name`, for all of them.
pub fn apt_group_layer(name: &str, packages: &[&str]) -> String {
    format!("  - name: {name}\n    apt: {{group: {}}}\n", json(packages))
}

/// The top-level `apt:` section: `sources` (one-line), `keys` (host paths) and `extra` items
/// as written (e.g. `replace_sources: true`).
pub fn apt_section(sources: &[String], keys: &[PathBuf], extra: &[&str]) -> String {
    let keys: Vec<String> = keys.iter().map(|key| key.display().to_string()).collect();
    let mut items = vec![
        format!("sources: {}", json(sources)),
        format!("keys: {}", json(&keys)),
    ];
    items.extend(extra.iter().map(|item| item.to_string()));
    format!("apt: {{{}}}\n", items.join(", "))
}

/// [`DebianSite::write_build_file`] with a top-level `section` (e.g. from [`apt_section`])
/// after the layers.
pub fn write_build_file_with(
    site: &DebianSite,
    dir: &Path,
    target: &str,
    section: &str,
    layers: &[String],
) -> PathBuf {
    let path = site.write_build_file(dir, target, layers);
    let mut yaml = std::fs::read_to_string(&path).expect("read layerize.yaml");
    yaml.push_str(section);
    std::fs::write(&path, yaml).expect("write layerize.yaml");
    path
}

/// The report's `apt` part; panics when it has none.
pub fn apt(report: &Value) -> &Value {
    let apt = &report["apt"];
    assert!(apt.is_object(), "the report has no apt part: {report}");
    apt
}

/// The report's `apt.packages`, in its order.
pub fn packages(report: &Value) -> &[Value] {
    apt(report)["packages"]
        .as_array()
        .unwrap_or_else(|| panic!("the report has no apt.packages: {report}"))
}

/// The package `name` of `apt.packages`.
pub fn package<'a>(report: &'a Value, name: &str) -> &'a Value {
    packages(report)
        .iter()
        .find(|package| package["name"] == name)
        .unwrap_or_else(|| panic!("no package {name} in apt.packages: {}", apt(report)))
}

/// The names of `apt.packages`.
pub fn package_names(report: &Value) -> BTreeSet<String> {
    packages(report)
        .iter()
        .map(|package| text(&package["name"]))
        .collect()
}

/// The layers the packages named in `names` are in.
pub fn layers_of(report: &Value, names: &BTreeSet<String>) -> BTreeSet<String> {
    names
        .iter()
        .map(|name| text(&package(report, name)["layer"]))
        .collect()
}

/// A list of strings of the report (e.g. `apt.with_scripts`) as a set.
pub fn string_set(list: &Value) -> BTreeSet<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("{list} is not a list"))
        .iter()
        .map(text)
        .collect()
}

/// The names of the report's `dropped[]`.
pub fn dropped_names(report: &Value) -> BTreeSet<String> {
    report["dropped"]
        .as_array()
        .unwrap_or_else(|| panic!("the report has no dropped[]: {report}"))
        .iter()
        .map(|dropped| text(&dropped["name"]))
        .collect()
}

/// Runs `sh -c SCRIPT` in a chroot of `root`, whatever its exit status.
pub fn chroot_sh(root: &Path, script: &str) -> Output {
    tools::output(
        tools::command("chroot")
            .arg(root)
            .args(["sh", "-c", script])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            ),
    )
}

/// [`chroot_sh`], which must succeed; returns its stdout.
pub fn chroot_ok(root: &Path, script: &str) -> String {
    let output = chroot_sh(root, script);
    assert!(
        output.status.success(),
        "chroot {} sh -c {script:?}: {}",
        root.display(),
        tools::describe_output(&output)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("strings as JSON")
}

fn text(value: &Value) -> String {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{value} is not a string"))
        .to_owned()
}
