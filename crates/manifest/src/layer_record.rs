//! What layerize records about each layer it built, inside the image itself, so that the image
//! at a tag is the cache of the next build: the layer's name, its key and, for a layer that
//! batches several packages, their names.
//!
//! The record lives in the layer's config history entry (`comment`), which every manifest family
//! carries, and on OCI manifests also in annotations on the layer descriptor. Docker v2 layer
//! descriptors cannot hold annotations (some registries reject them), so for those the history
//! entry is the only copy.

use serde::{Deserialize, Serialize};

use crate::{Descriptor, Family, Image};

/// Annotation on an OCI layer descriptor holding the layer's key.
pub const KEY_ANNOTATION: &str = "dev.layerize.layer.key";
/// Annotation on an OCI layer descriptor holding the layer's name.
pub const NAME_ANNOTATION: &str = "dev.layerize.layer.name";

/// The prefix of a history comment carrying a record; the version is that of this format.
const COMMENT_PREFIX: &str = "layerize.layer/v1 ";

/// One built layer as recorded in an image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// The layer's name in the build (a package or step name, or a batch's name).
    pub name: String,
    /// The layer's key, derived from its own inputs only.
    pub key: String,
    /// The packages a batch layer holds, in order; empty for a layer that is one package.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
}

impl LayerRecord {
    /// The record as a history `comment`.
    pub fn to_comment(&self) -> String {
        let json = serde_json::to_string(self).expect("a record serialises");
        format!("{COMMENT_PREFIX}{json}")
    }

    /// The record a history `comment` carries; `None` for any other comment.
    pub fn from_comment(comment: &str) -> Option<LayerRecord> {
        let json = comment.strip_prefix(COMMENT_PREFIX)?;
        serde_json::from_str(json).ok()
    }

    /// The record in a layer descriptor's annotations, when both name and key are there
    /// (members are only in the history entry).
    pub fn from_annotations(descriptor: &Descriptor) -> Option<LayerRecord> {
        Some(LayerRecord {
            name: descriptor.annotations.get(NAME_ANNOTATION)?.clone(),
            key: descriptor.annotations.get(KEY_ANNOTATION)?.clone(),
            members: Vec::new(),
        })
    }

    /// The packages the layer holds: its members, or itself.
    pub fn packages(&self) -> Vec<String> {
        packages(&self.name, &self.members)
    }

    /// Adds the record's annotations to a layer descriptor of `family` (none on Docker v2).
    pub fn annotate(&self, descriptor: &mut Descriptor, family: Family) {
        if family == Family::Oci {
            descriptor
                .annotations
                .insert(NAME_ANNOTATION.into(), self.name.clone());
            descriptor
                .annotations
                .insert(KEY_ANNOTATION.into(), self.key.clone());
        }
    }
}

/// The packages a layer named `name` holds: its batch `members`, or itself when it has none.
pub fn packages(name: &str, members: &[String]) -> Vec<String> {
    if members.is_empty() {
        vec![name.to_owned()]
    } else {
        members.to_vec()
    }
}

/// The record of each of `image`'s layers, in manifest order: `None` for layers layerize did not
/// build (or whose record was lost). Histories are matched to layers as [`Image::layer_histories`] says;
/// descriptor annotations stand in for a history entry that has no record.
pub fn layer_records(image: &Image) -> Vec<Option<LayerRecord>> {
    image
        .layers()
        .iter()
        .zip(image.layer_histories())
        .map(|(descriptor, history)| {
            history
                .and_then(|history| history.comment)
                .and_then(|comment| LayerRecord::from_comment(&comment))
                .or_else(|| LayerRecord::from_annotations(descriptor))
        })
        .collect()
}

/// The records of steps layerize ran that changed nothing, so made no layer: kept in `empty_layer`
/// history entries, so that a cache knows the step's outcome without running it again.
pub fn empty_step_records(image: &Image) -> Vec<LayerRecord> {
    image
        .empty_layer_histories()
        .into_iter()
        .filter_map(|history| history.comment)
        .filter_map(|comment| LayerRecord::from_comment(&comment))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(members: &[&str]) -> LayerRecord {
        LayerRecord {
            name: "tools".into(),
            key: format!("sha256:{}", "a".repeat(64)),
            members: members.iter().map(|m| m.to_string()).collect(),
        }
    }

    #[test]
    fn comment_round_trips_and_other_comments_are_not_records() {
        for r in [record(&[]), record(&["jq", "yq"])] {
            assert_eq!(LayerRecord::from_comment(&r.to_comment()), Some(r));
        }
        assert_eq!(LayerRecord::from_comment("buildkit.dockerfile.v0"), None);
        assert_eq!(LayerRecord::from_comment("layerize.layer/v1 {oops"), None);
        assert!(!record(&[]).to_comment().contains("members"));
    }

    #[test]
    fn annotations_only_on_oci_descriptors() {
        let digest = crate::Digest::sha256(b"x");
        let mut docker = Descriptor::new("application/x", digest.clone(), 1);
        record(&[]).annotate(&mut docker, Family::Docker);
        assert!(docker.annotations.is_empty());
        let mut oci = Descriptor::new("application/x", digest, 1);
        record(&["jq"]).annotate(&mut oci, Family::Oci);
        assert_eq!(oci.annotations[NAME_ANNOTATION], "tools");
        let back = LayerRecord::from_annotations(&oci).unwrap();
        assert_eq!(back.key, record(&[]).key);
        assert_eq!(back.packages(), vec!["tools".to_string()]);
        assert_eq!(record(&["jq", "yq"]).packages(), vec!["jq", "yq"]);
    }
}
