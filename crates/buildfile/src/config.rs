//! The `config` section: runtime settings of the image (environment, entrypoint, command,
//! working directory, user, labels, exposed ports) and manifest annotations, as the builder's
//! [`ConfigEdit`]s. Every value is checked when the file is loaded, as applying it would check
//! it, so that a bad one is refused at its line.

use layerize_manifest::{ConfigEdit, ManifestError};

use crate::error::{Fault, Problem};
use crate::position::Position;
use crate::read::{key, list, string, string_map, strings, Fields};
use crate::yaml::Node;

/// The `config` section, each setting as written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// `KEY=value` settings in the order written (an inherited variable is replaced in place).
    pub env: Vec<(String, String)>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub labels: Vec<(String, String)>,
    /// `PORT[/PROTOCOL]`.
    pub ports: Vec<String>,
    /// Manifest annotations (OCI manifests only).
    pub annotations: Vec<(String, String)>,
}

const CONFIG_KEYS: &[&str] = &[
    "env",
    "entrypoint",
    "cmd",
    "workdir",
    "user",
    "labels",
    "ports",
    "annotations",
];

impl Config {
    /// The edits to the base's config, in the order the `layerize build` flags apply theirs:
    /// env, entrypoint, cmd, workdir, user, labels, ports.
    pub fn edits(&self) -> Vec<ConfigEdit> {
        let mut edits = Vec::new();
        for (key, value) in &self.env {
            edits.push(env(key, value));
        }
        edits.extend(self.entrypoint.clone().map(ConfigEdit::Entrypoint));
        edits.extend(self.cmd.clone().map(ConfigEdit::Cmd));
        edits.extend(self.workdir.clone().map(ConfigEdit::WorkingDir));
        edits.extend(self.user.clone().map(ConfigEdit::User));
        for (key, value) in &self.labels {
            edits.push(label(key, value));
        }
        edits.extend(self.ports.iter().cloned().map(ConfigEdit::ExposedPort));
        edits
    }
}

fn env(key: &str, value: &str) -> ConfigEdit {
    ConfigEdit::Env {
        key: key.to_owned(),
        value: value.to_owned(),
    }
}

fn label(key: &str, value: &str) -> ConfigEdit {
    ConfigEdit::Label {
        key: key.to_owned(),
        value: value.to_owned(),
    }
}

/// Reads the `config` section.
pub(crate) fn read(node: &Node) -> Result<Config, Fault> {
    let fields = Fields::of(node, &key("config"), "the config section", CONFIG_KEYS)?;
    let mut config = Config::default();
    if let Some(node) = fields.get("env") {
        for (name, value, at) in string_map(node, &key("env"), "env")? {
            check("env", &env(&name, &value), at)?;
            config.env.push((name, value));
        }
    }
    config.entrypoint = fields
        .get("entrypoint")
        .map(|node| strings(node, &key("entrypoint")))
        .transpose()?;
    config.cmd = fields
        .get("cmd")
        .map(|node| strings(node, &key("cmd")))
        .transpose()?;
    if let Some(node) = fields.get("workdir") {
        let dir = string(node, &key("workdir"))?;
        check("workdir", &ConfigEdit::WorkingDir(dir.clone()), node.at)?;
        config.workdir = Some(dir);
    }
    config.user = fields
        .get("user")
        .map(|node| string(node, &key("user")))
        .transpose()?;
    if let Some(node) = fields.get("labels") {
        for (name, value, at) in string_map(node, &key("labels"), "labels")? {
            check("labels", &label(&name, &value), at)?;
            config.labels.push((name, value));
        }
    }
    if let Some(node) = fields.get("ports") {
        let item = format!("an item of {}", key("ports"));
        for port in list(node, &key("ports"), "a list of ports (8080, \"53/udp\")")? {
            let text = string(port, &item)?;
            check("ports", &ConfigEdit::ExposedPort(text.clone()), port.at)?;
            config.ports.push(text);
        }
    }
    if let Some(node) = fields.get("annotations") {
        for (name, value, at) in string_map(node, &key("annotations"), "annotations")? {
            if name.is_empty() {
                let message = "an annotation key cannot be empty".to_owned();
                let problem = Problem::InvalidValue {
                    key: "annotations".into(),
                    message,
                };
                return Err(Fault::new(at, problem));
            }
            config.annotations.push((name, value));
        }
    }
    Ok(config)
}

/// Refuses `edit` at `at` (under the section key `key`) when applying it would.
fn check(key: &str, edit: &ConfigEdit, at: Position) -> Result<(), Fault> {
    edit.check().map_err(|error| {
        let message = match error {
            ManifestError::InvalidEdit(message) => message,
            other => other.to_string(),
        };
        let key = key.to_owned();
        Fault::new(at, Problem::InvalidValue { key, message })
    })
}
