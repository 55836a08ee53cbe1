//! The build plan: every layer of the resulting image as a value saying what it is and where it
//! comes from (the base, this build, or a cache), and the layers of the previous image that the
//! build no longer has.

use std::fmt;

use layerize_manifest::{layer_record, Descriptor, Digest};
use serde::Serialize;

use crate::build::apt::AptSpec;
use crate::build::previous::CacheSource;
use crate::layer::filemap::{FileMap, Fingerprint};
use crate::layer::recipe::Input;
use crate::layer::script::ScriptStep;

/// Where a layer of the result comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// One of the base image's layers, carried over unchanged.
    Base,
    /// Made in this run.
    Built,
    /// Taken from a cache instead of being built.
    Reused,
}

/// One layer of an image as a value: what it is (digests, size, media type) and how it was made.
#[derive(Debug, Clone)]
pub struct Layer {
    /// A human name: `base[3]` for base layers, the layer entry's (or batch's) name otherwise.
    pub name: String,
    /// The key of a layer layerize makes, derived from its own inputs only (see
    /// [`crate::layer::key`]); `None` for base layers.
    pub key: Option<String>,
    /// The packages a batch layer holds (empty unless it holds several).
    pub members: Vec<String>,
    /// How it was made, as the config history's `created_by` says (empty for base layers).
    pub created_by: String,
    /// The compressed blob as the manifest lists it.
    pub descriptor: Descriptor,
    /// The sha256 of the uncompressed tar, as the config lists it.
    pub diff_id: Digest,
    pub origin: Origin,
    /// For a reused layer: where it was found.
    pub reused_from: Option<CacheSource>,
}

/// A layer entry of the build: one package, or an explicit group of several.
#[derive(Clone, Debug)]
pub struct LayerSpec {
    /// A short name for the plan, logs, the report and the image's record (`files`, a package
    /// name, a group's name).
    pub name: String,
    /// The config history's `created_by` for this layer.
    pub created_by: String,
    /// What goes into it, in order; destinations resolve against the base when the build runs.
    /// Empty for a script layer.
    pub inputs: Vec<Input>,
    /// The packages of an explicit group, in order (empty: the entry is one package, `name`).
    pub members: Vec<String>,
    /// For a script layer: the step whose changes make it (then `inputs` and `members` are
    /// empty). Script layers are never batched.
    pub script: Option<ScriptStep>,
    /// For an apt layer: what it asks for, or (once planned) the packages or database it holds
    /// (then `inputs` and `script` are empty).
    pub apt: Option<AptSpec>,
}

impl LayerSpec {
    /// The packages this entry holds: its members, or itself.
    pub fn packages(&self) -> Vec<String> {
        layer_record::packages(&self.name, &self.members)
    }
}

/// A layer the build makes or reuses.
pub struct PlannedLayer {
    pub name: String,
    pub created_by: String,
    pub members: Vec<String>,
    pub work: Work,
    pub key: Option<String>,
    pub decision: Decision,
}

/// How a planned layer is made.
pub enum Work {
    /// From host files, trees and tars: its file map, checked against the base.
    Files {
        files: FileMap,
        /// The file map's fingerprint, remembered with its diffID once the layer exists.
        fingerprint: Fingerprint,
        /// The diffID, when it was worth knowing before building (a cache might have the layer,
        /// or a script needs it).
        diff_id: Option<Digest>,
    },
    /// By running a step in a sandbox.
    Script {
        step: ScriptStep,
        /// The layers of the build the sandbox holds above the base: what the step needs, with
        /// what those need in turn, as indices into the plan's layers, ascending.
        needs: Vec<usize>,
    },
    /// apt packages or the dpkg database, keyed from the index: turned into `Files` (the `.deb`s
    /// fetched and converted) before any blob moves, when the layer is built.
    Apt(AptSpec),
}

impl PlannedLayer {
    /// The step, for a script layer.
    pub fn script(&self) -> Option<&ScriptStep> {
        match &self.work {
            Work::Script { step, .. } => Some(step),
            Work::Files { .. } | Work::Apt(_) => None,
        }
    }
}

/// What to do for a layer the build asks for.
pub enum Decision {
    /// Take this blob; it still has to be made present in the target (from `source`).
    Reuse(Candidate),
    /// A cache says this script step changed nothing: it adds no layer and is not run.
    Empty(CacheSource),
    /// Build it.
    Build(BuildReason),
}

/// A blob a cache says has a layer's key.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub digest: Digest,
    pub size: u64,
    pub diff_id: Digest,
    pub source: CacheSource,
}

/// Why a layer is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildReason {
    /// No cache has anything yet, so its key was not worked out in advance.
    NoCache,
    /// No cache has its key.
    NewKey,
}

impl fmt::Display for BuildReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BuildReason::NoCache => "no cache to reuse from",
            BuildReason::NewKey => "no cache has its key",
        })
    }
}

/// A layer of the previous image at the target tag that this build no longer has.
#[derive(Clone, Debug, Serialize)]
pub struct Dropped {
    pub name: String,
    pub key: String,
    pub reason: String,
}

/// One line of a plan as `--dry-run` prints it.
pub enum PlanLine<'a> {
    Base(&'a Layer),
    Layer(&'a PlannedLayer),
    Dropped(&'a Dropped),
}

impl fmt::Display for PlanLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanLine::Base(layer) => {
                write!(f, "base   {} {}", layer.name, layer.descriptor.digest)
            }
            PlanLine::Layer(layer) => {
                let key = layer.key.as_deref().unwrap_or("new");
                match &layer.decision {
                    Decision::Reuse(candidate) => {
                        write!(f, "reuse  {} {key} from {}", layer.name, candidate.source)
                    }
                    Decision::Empty(source) => {
                        write!(
                            f,
                            "empty  {} {key} from {source} (the step changed nothing)",
                            layer.name
                        )
                    }
                    Decision::Build(reason) => {
                        write!(f, "build  {} {key} ({reason})", layer.name)
                    }
                }?;
                if !layer.members.is_empty() {
                    write!(f, " [{}]", layer.members.join(", "))?;
                }
                Ok(())
            }
            PlanLine::Dropped(dropped) => {
                write!(f, "drop   {} ({})", dropped.name, dropped.reason)
            }
        }
    }
}
