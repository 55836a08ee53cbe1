//! The build plan: every layer of the resulting image as a value saying what it is and where it
//! comes from (the base, this build, or a cache).

use layerize_manifest::{Descriptor, Digest};
use serde::Serialize;

use crate::layer::filemap::FileMap;
use crate::layer::recipe::Input;

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
    /// A human name: `base[3]` for base layers, the spec name for built ones.
    pub name: String,
    /// The cache key of a built layer, derived from its own inputs only (later issues).
    pub key: Option<String>,
    /// How it was made, as the config history's `created_by` says (empty for base layers).
    pub created_by: String,
    /// The compressed blob as the manifest lists it.
    pub descriptor: Descriptor,
    /// The sha256 of the uncompressed tar, as the config lists it.
    pub diff_id: Digest,
    pub origin: Origin,
}

/// A layer this build is asked to make.
pub struct LayerSpec {
    /// A short name for logs and the report (`files`, `layer-2`, a package name later).
    pub name: String,
    /// The config history's `created_by` for this layer.
    pub created_by: String,
    /// What goes into it, in order; destinations resolve against the base when the build runs.
    pub inputs: Vec<Input>,
}

/// A layer to make, its inputs applied to a file map over the base and checked.
pub struct PreparedLayer {
    pub name: String,
    pub created_by: String,
    pub files: FileMap,
}

/// What to do for one layer of the result.
pub enum Step {
    /// Carry a base layer over: make its blob present in the target.
    FromBase(Box<Layer>),
    /// Build a layer from its checked file map.
    Build(PreparedLayer),
}

/// The layers of the result in order: the base's first, then the ones asked for.
pub struct Plan {
    pub steps: Vec<Step>,
}

impl Plan {
    pub fn new(base_layers: Vec<Layer>, layers: Vec<PreparedLayer>) -> Self {
        let steps = base_layers
            .into_iter()
            .map(|layer| Step::FromBase(Box::new(layer)))
            .chain(layers.into_iter().map(Step::Build))
            .collect();
        Plan { steps }
    }
}
