//! The top-level `apt` section. As a mapping it holds the options of every apt entry of the
//! build — `sources`, `keys`, `replace_sources`, `scripts`, `recommends` — read into the
//! builder's [`AptOptions`]. As a list, or a mapping with `packages` or `group`, it is also an
//! entry named `apt` that the build places before the `layers` entries (the seed's
//! `apt: [curl, git, vim]`).

use std::path::PathBuf;

use layerize_builder::build::apt::{AptOptions, AptScripts};

use crate::apt_request;
use crate::apt_source::{check_apt_source, link_signed_by};
use crate::context::{Context, SourceKind};
use crate::error::{Fault, Problem};
use crate::layers::LayerEntry;
use crate::read::{boolean, key, list, string, wrong_type, Fields};
use crate::yaml::{Key, Node, Value};

/// The name of the entry a section with packages makes.
pub(crate) const ENTRY_NAME: &str = "apt";

const SECTION_KEYS: &[&str] = &[
    "packages",
    "group",
    "sources",
    "keys",
    "replace_sources",
    "scripts",
    "recommends",
];

/// What the section gives the build.
pub(crate) struct AptSection {
    pub options: AptOptions,
    /// The entry its packages make, placed before the `layers` entries.
    pub entry: Option<LayerEntry>,
}

/// Reads the section written under `section_key`.
pub(crate) fn read(section_key: &Key, node: &Node, context: &Context) -> Result<AptSection, Fault> {
    let entry = |request| Some(LayerEntry::apt(ENTRY_NAME, section_key.at, request));
    if let Value::List(_) = node.value {
        return Ok(AptSection {
            options: AptOptions::default(),
            entry: entry(apt_request::read(node)?),
        });
    }
    if !matches!(node.value, Value::Map(_)) {
        let expected = "a list of packages, or a mapping of apt options";
        return Err(wrong_type(node, &key("apt"), expected));
    }
    let fields = Fields::of(node, &key("apt"), "the apt section", SECTION_KEYS)?;
    let mut options = AptOptions::default();
    let mut keys_written: Vec<(String, PathBuf)> = Vec::new();
    if let Some(keys) = fields.get("keys") {
        let what = format!("an item of {}", key("keys"));
        for item in list(keys, &key("keys"), "a list of key files")? {
            let path = context.source(item, &what, SourceKind::File)?;
            keys_written.push((string(item, &what)?, path.clone()));
            options.keys.push(path);
        }
    }
    if let Some(sources) = fields.get("sources") {
        let what = format!("an item of {}", key("sources"));
        for item in list(sources, &key("sources"), "a list of one-line sources")? {
            let line = string(item, &what)?;
            check_apt_source(&line)
                .map_err(|error| Fault::new(item.at, Problem::AptSyntax(error)))?;
            options.sources.push(link_signed_by(&line, &keys_written));
        }
    }
    if let Some(replace) = fields.get("replace_sources") {
        options.replace_sources = boolean(replace, "replace_sources")?;
    }
    if let Some(scripts) = fields.get("scripts") {
        options.scripts = match string(scripts, &key("scripts"))?.as_str() {
            "run" => AptScripts::Run,
            "skip" => AptScripts::Skip,
            other => {
                let message = format!("run (the maintainer scripts, in the sandbox, as one configure layer) or skip (left out), found \"{other}\"");
                let problem = Problem::InvalidValue {
                    key: "scripts".to_owned(),
                    message,
                };
                return Err(Fault::new(scripts.at, problem));
            }
        };
    }
    if let Some(recommends) = fields.get("recommends") {
        options.recommends = boolean(recommends, "recommends")?;
    }
    Ok(AptSection {
        options,
        entry: apt_request::from_fields(&fields)?.and_then(entry),
    })
}
