//! Builds with script steps (issue 8) on the Debian bookworm base in a loopback registry: the
//! registry with the base pushed into it, build files written from script and file layers, and a
//! build's report read by step and by layer.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::access_log::{self, Request};
use crate::images::{self, Format, Image};
use crate::registry::Registry;

/// A loopback registry holding the Debian bookworm minbase at [`DebianSite::base`].
pub struct DebianSite {
    pub registry: Registry,
    /// `127.0.0.1:PORT/base/debian:bookworm`.
    pub base: String,
}

impl DebianSite {
    pub fn new() -> DebianSite {
        let registry = Registry::open();
        images::push(
            Image::Debian,
            Format::Oci,
            &registry,
            "base/debian:bookworm",
        );
        let base = format!("{}/base/debian:bookworm", registry.host());
        DebianSite { registry, base }
    }

    /// `127.0.0.1:PORT/REPOSITORY:TAG`.
    pub fn reference(&self, repository_tag: &str) -> String {
        format!("{}/{repository_tag}", self.registry.host())
    }

    /// Writes `DIR/layerize.yaml`: this site's base, `target`, and `layers` (the entries of the
    /// `layers:` list, as made by [`script_layer`] and [`files_layer`]); returns its path.
    pub fn write_build_file(&self, dir: &Path, target: &str, layers: &[String]) -> PathBuf {
        let mut yaml = format!(
            "image: {{base: \"{}\", target: \"{target}\"}}\nlayers:\n",
            self.base
        );
        for layer in layers {
            yaml.push_str(layer);
        }
        let path = dir.join("layerize.yaml");
        std::fs::write(&path, yaml).expect("write layerize.yaml");
        path
    }

    /// How many access-log lines the registry has written so far, to take requests from later.
    pub fn log_mark(&self) -> usize {
        self.registry.settled_access_log().len()
    }

    /// The requests the registry answered since `mark` (see [`DebianSite::log_mark`]).
    pub fn requests_since(&self, mark: usize) -> Vec<Request> {
        access_log::requests(&self.registry.settled_access_log()[mark..])
    }
}

impl Default for DebianSite {
    fn default() -> DebianSite {
        DebianSite::new()
    }
}

/// A `script:` entry of the `layers:` list: `run` (each command a YAML string, quoted as JSON,
/// which YAML reads alike), `needs` when not empty, and `extra` lines (e.g. `env: {K: V}`)
/// placed as they are under `script:`, indented by six spaces.
pub fn script_layer(name: &str, run: &[&str], needs: &[&str], extra: &[&str]) -> String {
    let quoted = |items: &[&str]| serde_json::to_string(items).expect("strings as JSON");
    let mut yaml = format!(
        "  - name: {name}\n    script:\n      run: {}\n",
        quoted(run)
    );
    if !needs.is_empty() {
        yaml.push_str(&format!("      needs: {}\n", quoted(needs)));
    }
    for line in extra {
        yaml.push_str(&format!("      {line}\n"));
    }
    yaml
}

/// A `files:` entry of the `layers:` list with one entry per item of `files`, each a flow
/// mapping such as `{src: app.tar.gz, dest: /srv/app.tar.gz}`.
pub fn files_layer(name: &str, files: &[&str]) -> String {
    let mut yaml = format!("  - name: {name}\n    files:\n");
    for file in files {
        yaml.push_str(&format!("      - {file}\n"));
    }
    yaml
}

/// The report's `steps[]`, one per script step, in file order.
/// `COMMAND build -c FILE ARGS... --report R` (COMMAND is `support::layerize!()`), which must
/// succeed; returns the report.
pub fn build_with(mut command: std::process::Command, file: &Path, args: &[&str]) -> Value {
    command.arg("build").arg("-c").arg(file).args(args);
    crate::layerize::run_with_report(&mut command).report
}

/// `--cache-dir CACHE`.
pub fn cache_args(cache: &tempfile::TempDir) -> Vec<&str> {
    vec!["--cache-dir", cache.path().to_str().unwrap()]
}

pub fn steps(report: &Value) -> &[Value] {
    report["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("the report has no steps[]: {report}"))
}

/// The report's step `name`.
pub fn step<'a>(report: &'a Value, name: &str) -> &'a Value {
    steps(report)
        .iter()
        .find(|step| step["name"] == name)
        .unwrap_or_else(|| panic!("no step {name} in the report's steps: {report}"))
}

/// `(name, status)` of every step, in the report's order.
pub fn step_statuses(report: &Value) -> Vec<(String, String)> {
    steps(report)
        .iter()
        .map(|step| (text(&step["name"]), text(&step["status"])))
        .collect()
}

/// The report's layers that the build added to the base, in manifest order.
pub fn own_layers(report: &Value) -> Vec<&Value> {
    report["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("the report has no layers[]: {report}"))
        .iter()
        .filter(|layer| layer["status"] != "base")
        .collect()
}

/// The names of [`own_layers`], in manifest order.
pub fn own_layer_names(report: &Value) -> Vec<String> {
    own_layers(report)
        .into_iter()
        .map(|layer| text(&layer["name"]))
        .collect()
}

/// The report's own layer `name`.
pub fn layer<'a>(report: &'a Value, name: &str) -> &'a Value {
    own_layers(report)
        .into_iter()
        .find(|layer| layer["name"] == name)
        .unwrap_or_else(|| panic!("no layer {name} in the report: {report}"))
}

/// The digests of every layer of the image, base layers included, in manifest order.
pub fn layer_digests(report: &Value) -> Vec<String> {
    report["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("the report has no layers[]: {report}"))
        .iter()
        .map(|layer| text(&layer["digest"]))
        .collect()
}

/// Whether `request` writes a manifest (`PUT /v2/NAME/manifests/REF`): what moves a tag.
pub fn is_manifest_put(request: &Request) -> bool {
    request.method == "PUT" && request.target.contains("/manifests/")
}

fn text(value: &Value) -> String {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{value} is not a string"))
        .to_owned()
}
