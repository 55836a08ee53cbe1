//! The `layers` list: each entry a name and exactly one kind (`files`, `dir`, `tar`, `delete`,
//! `opaque`, `group` of several named packages made into one layer, `script`, or `apt`
//! packages), turned into the builder's [`Input`]s with sources resolved against the build
//! file's directory.
//!
//! Host files and trees of a build file get normalised modes ([`HostModes::Normalise`]): the
//! layer must not depend on the umask of the checkout it was built from.

use std::collections::HashMap;
use std::fmt;

use layerize_builder::build::apt::AptRequest;
use layerize_builder::layer::filemap::{EntryMeta, FileSource, HostModes};
use layerize_builder::layer::recipe::Input;
use layerize_builder::layer::script::ScriptStep;

use crate::context::{Context, SourceKind};
use crate::dest::{destination, Use};
use crate::error::{Fault, Problem};
use crate::meta;
use crate::position::Position;
use crate::read::{key, list, string, Fields};
use crate::yaml::{Key, Node, Value};

/// One entry of `layers`: one layer of the image.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerEntry {
    pub name: String,
    /// Where the entry starts.
    pub at: Position,
    /// Whether it is a `group`.
    pub group: bool,
    /// The packages the layer is made of, in order: a group's members, or the entry itself.
    pub members: Vec<Package>,
}

impl LayerEntry {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn members(&self) -> &[Package] {
        &self.members
    }

    pub fn is_group(&self) -> bool {
        self.group
    }

    /// An entry of kind `apt` written at `at`.
    pub(crate) fn apt(name: &str, at: Position, request: AptRequest) -> LayerEntry {
        LayerEntry {
            name: name.to_owned(),
            at,
            group: false,
            members: vec![Package::apt(name, at, request)],
        }
    }
}

/// A named set of inputs: a layer entry that is not a group, or a member of a group.
#[derive(Clone, Debug, PartialEq)]
pub struct Package {
    pub name: String,
    /// Where its entry starts.
    pub at: Position,
    pub kind: Kind,
    /// What it adds, in order, ready for the builder.
    pub inputs: Vec<Input>,
    /// Where each input was written (same length and order as `inputs`).
    pub input_positions: Vec<Position>,
    /// For a `script` layer: its step (then `inputs` is empty).
    pub script: Option<ScriptStep>,
    /// For an `apt` layer: the packages it asks for (then `inputs` is empty).
    pub apt: Option<AptRequest>,
}

impl Package {
    pub fn inputs(&self) -> &[Input] {
        &self.inputs
    }

    fn apt(name: &str, at: Position, request: AptRequest) -> Package {
        Package {
            name: name.to_owned(),
            at,
            kind: Kind::Apt,
            inputs: Vec::new(),
            input_positions: Vec::new(),
            script: None,
            apt: Some(request),
        }
    }
}

/// The kind of a package.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Files,
    Dir,
    Tar,
    Delete,
    Opaque,
    Script,
    Apt,
}

impl Kind {
    /// The key that gives it in the build file.
    pub fn key(self) -> &'static str {
        match self {
            Kind::Files => "files",
            Kind::Dir => "dir",
            Kind::Tar => "tar",
            Kind::Delete => "delete",
            Kind::Opaque => "opaque",
            Kind::Script => "script",
            Kind::Apt => "apt",
        }
    }

    fn from_key(key: &str) -> Option<Kind> {
        [
            Kind::Files,
            Kind::Dir,
            Kind::Tar,
            Kind::Delete,
            Kind::Opaque,
            Kind::Script,
            Kind::Apt,
        ]
        .into_iter()
        .find(|kind| kind.key() == key)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

const LAYER_KEYS: &[&str] = &[
    "name", "files", "dir", "tar", "delete", "opaque", "group", "script", "apt",
];
const MEMBER_KEYS: &[&str] = &["name", "files", "dir", "tar", "delete", "opaque"];
const LAYER_KINDS: &[&str] = &[
    "files", "dir", "tar", "delete", "opaque", "group", "script", "apt",
];
const MEMBER_KINDS: &[&str] = &["files", "dir", "tar", "delete", "opaque"];
const FILES_KEYS: &[&str] = &["src", "dest", "mode", "owner", "content"];
const DIR_KEYS: &[&str] = &["src", "dest"];
const TAR_KEYS: &[&str] = &["src"];

/// Whether an entry is a layer entry or a member of a group.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Layer,
    Member,
}

impl Level {
    fn context(self) -> &'static str {
        match self {
            Level::Layer => "a layer entry",
            Level::Member => "a group member",
        }
    }

    fn keys(self) -> &'static [&'static str] {
        match self {
            Level::Layer => LAYER_KEYS,
            Level::Member => MEMBER_KEYS,
        }
    }

    fn kinds(self) -> &'static [&'static str] {
        match self {
            Level::Layer => LAYER_KINDS,
            Level::Member => MEMBER_KINDS,
        }
    }
}

/// Reads the `layers` list, after `leading` (the top-level `apt` section's entry), whose name
/// is then taken.
pub(crate) fn read(
    node: &Node,
    leading: Option<LayerEntry>,
    context: &Context,
) -> Result<Vec<LayerEntry>, Fault> {
    let items = list(node, &key("layers"), "a list of layer entries")?;
    if items.is_empty() && leading.is_none() {
        return Err(Fault::new(node.at, Problem::NoLayers));
    }
    let mut reader = Reader {
        context,
        names: HashMap::new(),
    };
    let mut entries = Vec::with_capacity(items.len() + 1);
    if let Some(entry) = leading {
        reader.names.insert(entry.name.clone(), entry.at);
        entries.push(entry);
    }
    for item in items {
        entries.push(reader.layer(item)?);
    }
    Ok(entries)
}

struct Reader<'a> {
    context: &'a Context,
    /// Every name used so far, layers and group members alike, and where.
    names: HashMap<String, Position>,
}

/// An entry's name and its one kind, before the kind is read.
struct Named<'a> {
    name: String,
    kind: &'a Key,
    value: &'a Node,
}

impl Reader<'_> {
    fn layer(&mut self, node: &Node) -> Result<LayerEntry, Fault> {
        let named = self.named(node, Level::Layer)?;
        let (group, members) = if named.kind.text == "group" {
            (true, self.group(named.value)?)
        } else {
            (false, vec![self.package(node.at, &named)?])
        };
        Ok(LayerEntry {
            name: named.name,
            at: node.at,
            group,
            members,
        })
    }

    fn group(&mut self, node: &Node) -> Result<Vec<Package>, Fault> {
        non_empty_list(node, "group", "a list of packages", "package")?
            .iter()
            .map(|item| {
                let named = self.named(item, Level::Member)?;
                self.package(item.at, &named)
            })
            .collect()
    }

    /// Checks an entry's keys, name and kind count.
    fn named<'n>(&mut self, node: &'n Node, level: Level) -> Result<Named<'n>, Fault> {
        let fields = Fields::any(node, level.context(), level.context())?;
        let mut kinds: Vec<(&Key, &Node)> = Vec::new();
        for (key, value) in fields.entries {
            let text = key.text.as_str();
            if text == "group" && level == Level::Member {
                return Err(Fault::new(key.at, Problem::NestedGroup));
            }
            if text == "script" && level == Level::Member {
                return Err(Fault::new(key.at, Problem::ScriptInGroup));
            }
            if text == "apt" && level == Level::Member {
                return Err(Fault::new(key.at, Problem::AptInGroup));
            }
            if level.kinds().contains(&text) {
                kinds.push((key, value));
            }
        }
        fields.only(level.keys())?;
        let name_node = fields.require("name")?;
        let name = string(name_node, &key("name"))?;
        if !valid_name(&name) {
            return Err(Fault::new(name_node.at, Problem::InvalidName(name)));
        }
        if let Some(first) = self.names.get(&name) {
            let problem = Problem::DuplicateName {
                name,
                first: *first,
            };
            return Err(Fault::new(name_node.at, problem));
        }
        self.names.insert(name.clone(), name_node.at);
        match kinds.as_slice() {
            [] => Err(Fault::new(
                node.at,
                Problem::NoKind {
                    context: level.context(),
                    name,
                    kinds: level.kinds(),
                },
            )),
            [(kind, value)] => Ok(Named { name, kind, value }),
            [(first, _), (second, _), ..] => Err(Fault::new(
                second.at,
                Problem::TwoKinds {
                    context: level.context(),
                    name,
                    first: first.text.clone(),
                    second: second.text.clone(),
                    in_group: level == Level::Member,
                },
            )),
        }
    }

    fn package(&self, at: Position, named: &Named<'_>) -> Result<Package, Fault> {
        let kind = Kind::from_key(&named.kind.text)
            .expect("named() lets only kinds through, and groups are read apart");
        let node = named.value;
        if kind == Kind::Script {
            // `names` already holds this entry's own name: a step cannot need itself.
            let mut earlier = self.names.clone();
            earlier.remove(&named.name);
            return Ok(Package {
                name: named.name.clone(),
                at,
                kind,
                inputs: Vec::new(),
                input_positions: Vec::new(),
                script: Some(crate::script::read(node, &earlier)?),
                apt: None,
            });
        }
        if kind == Kind::Apt {
            let request = crate::apt_request::read(node)?;
            return Ok(Package::apt(&named.name, at, request));
        }
        let inputs: Vec<(Input, Position)> = match kind {
            Kind::Files => {
                let entries = non_empty_list(node, "files", "a list of files entries", "file")?;
                entries
                    .iter()
                    .map(|entry| Ok((self.file(entry)?, entry.at)))
                    .collect::<Result<_, Fault>>()?
            }
            Kind::Dir => vec![(self.dir(node)?, node.at)],
            Kind::Tar => vec![(self.tar(node)?, node.at)],
            Kind::Delete => paths(node, "delete")?
                .iter()
                .map(|path| {
                    let not_root = Use::NotRoot("cannot be deleted");
                    let path_text = destination(path, &key("delete"), not_root)?;
                    Ok((Input::Delete(path_text), path.at))
                })
                .collect::<Result<_, Fault>>()?,
            Kind::Opaque => paths(node, "opaque")?
                .iter()
                .map(|path| {
                    let path_text = destination(path, &key("opaque"), Use::RootToo)?;
                    Ok((Input::Opaque(path_text), path.at))
                })
                .collect::<Result<_, Fault>>()?,
            Kind::Script | Kind::Apt => unreachable!("read above"),
        };
        let (inputs, input_positions) = inputs.into_iter().unzip();
        Ok(Package {
            name: named.name.clone(),
            at,
            kind,
            inputs,
            input_positions,
            script: None,
            apt: None,
        })
    }

    fn file(&self, node: &Node) -> Result<Input, Fault> {
        let fields = Fields::of(node, "a files entry", "a files entry", FILES_KEYS)?;
        let source = match (fields.get("src"), fields.entry("content")) {
            (Some(_), Some((content, _))) => {
                return Err(Fault::new(content.at, Problem::SourceAndContent))
            }
            (Some(src), None) => {
                FileSource::Host(self.context.source(src, &key("src"), SourceKind::File)?)
            }
            (None, Some((_, content))) => {
                FileSource::Inline(string(content, &key("content"))?.into_bytes())
            }
            (None, None) => return Err(Fault::new(fields.at, Problem::NoSourceOrContent)),
        };
        let dest = destination(
            fields.require("dest")?,
            &key("dest"),
            Use::NotRoot("cannot be a file"),
        )?;
        let mode = fields.get("mode").map(meta::mode).transpose()?;
        let (uid, gid) = fields
            .get("owner")
            .map(meta::owner)
            .transpose()?
            .unwrap_or((0, 0));
        Ok(Input::File {
            source,
            dest,
            meta: EntryMeta {
                mode,
                uid,
                gid,
                ..EntryMeta::default()
            },
            modes: HostModes::Normalise,
        })
    }

    fn dir(&self, node: &Node) -> Result<Input, Fault> {
        let fields = Fields::of(node, &key("dir"), "a dir entry", DIR_KEYS)?;
        let source = self
            .context
            .source(fields.require("src")?, &key("src"), SourceKind::Dir)?;
        let dest = destination(fields.require("dest")?, &key("dest"), Use::RootToo)?;
        Ok(Input::Dir {
            source,
            dest,
            modes: HostModes::Normalise,
        })
    }

    /// `tar: FILE` or `tar: {src: FILE}`.
    fn tar(&self, node: &Node) -> Result<Input, Fault> {
        let src = match &node.value {
            Value::Map(_) => {
                Fields::of(node, &key("tar"), "a tar entry", TAR_KEYS)?.require("src")?
            }
            _ => node,
        };
        let path = self.context.source(src, &key("tar"), SourceKind::File)?;
        Ok(Input::Tar(path))
    }
}

/// A list that must hold something.
fn non_empty_list<'a>(
    node: &'a Node,
    name: &'static str,
    expected: &'static str,
    item: &'static str,
) -> Result<&'a [Node], Fault> {
    let items = list(node, &key(name), expected)?;
    if items.is_empty() {
        let problem = Problem::EmptyList { key: name, item };
        return Err(Fault::new(node.at, problem));
    }
    Ok(items)
}

/// `delete: /etc/motd` or `delete: [/etc/motd, /etc/issue]`.
fn paths<'a>(node: &'a Node, name: &'static str) -> Result<&'a [Node], Fault> {
    match &node.value {
        Value::Scalar { .. } => Ok(std::slice::from_ref(node)),
        _ => non_empty_list(node, name, "a path or a list of paths", "path"),
    }
}

/// `[A-Za-z0-9][A-Za-z0-9._+-]*`.
fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|first| first.is_ascii_alphanumeric())
        && bytes.all(|byte| byte.is_ascii_alphanumeric() || b"._+-".contains(&byte))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_start_with_a_letter_or_digit() {
        for name in ["app", "0", "lib.so-1_2+3", "A"] {
            assert!(valid_name(name), "{name}");
        }
        for name in ["", "-app", ".hidden", "a b", "a/b", "é", "a:b"] {
            assert!(!valid_name(name), "{name}");
        }
    }
}
