//! A single-platform image being edited: its manifest and config as JSON values, with layers
//! appended, config edits, annotations, conversion to OCI, and the final serialisation.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::index::kind_name;
use crate::media_type::{self, Family, ManifestKind};
use crate::{ConfigEdit, Descriptor, Digest, ManifestError, Platform};

/// Annotation naming the image this one was built on (image-spec).
pub const BASE_NAME_ANNOTATION: &str = "org.opencontainers.image.base.name";
/// Annotation holding the manifest digest of the base image (image-spec).
pub const BASE_DIGEST_ANNOTATION: &str = "org.opencontainers.image.base.digest";

/// A config `history` entry describing one build step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct History {
    pub created_by: String,
    pub comment: Option<String>,
    /// True for a step that made no layer (like `ENV` in a Dockerfile); such entries are
    /// added with [`Image::append_history`], layer entries with [`Image::append_layer`].
    pub empty_layer: bool,
}

/// The result of [`Image::finish`]: the bytes to store and the descriptors pointing at them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinishedImage {
    pub config_bytes: Vec<u8>,
    pub config: Descriptor,
    pub manifest_bytes: Vec<u8>,
    /// Media type, digest and size of `manifest_bytes` (no platform: index writers add it,
    /// see [`Image::platform`]).
    pub manifest: Descriptor,
}

/// One platform's image: a Docker v2 or OCI manifest plus its config, edited as JSON values
/// (key order preserved) so every field layerize does not touch survives.
///
/// Invariants, checked by [`Image::from_json`] and kept by every method: the manifest's
/// `config` and `layers` are valid descriptors, the config's `rootfs` is
/// `{"type":"layers","diff_ids":[...]}` with one valid diffID per layer.
#[derive(Clone, Debug)]
pub struct Image {
    manifest: Value,
    config: Value,
    family: Family,
    /// Positions in `config.history` of the entries this image appended, whose `created`
    /// follows [`Image::set_created`].
    appended_history: Vec<usize>,
}

impl Image {
    /// Reads a single-platform manifest and its config, checking that the config bytes are
    /// the blob the manifest names and that layers and diffIDs agree.
    pub fn from_json(manifest_bytes: &[u8], config_bytes: &[u8]) -> Result<Image, ManifestError> {
        let kind = ManifestKind::detect(manifest_bytes, None)?;
        if kind.is_index() {
            return Err(ManifestError::NotAManifest(kind_name(kind)));
        }
        let manifest: Value = parse_json(manifest_bytes, "manifest")?;
        let config: Value = parse_json(config_bytes, "config")?;
        if !config.is_object() {
            return Err(malformed("config is not a JSON object"));
        }

        let config_descriptor: Descriptor = field(&manifest, "config", "manifest")?;
        let actual = Digest::sha256(config_bytes);
        if config_descriptor.digest != actual {
            return Err(ManifestError::ConfigDigestMismatch {
                expected: config_descriptor.digest,
                actual,
            });
        }
        let layers: Vec<Descriptor> = field(&manifest, "layers", "manifest")?;
        let rootfs_type = config.pointer("/rootfs/type").and_then(Value::as_str);
        if rootfs_type != Some("layers") {
            return Err(ManifestError::Malformed(format!(
                "config rootfs.type is {}, expected \"layers\"",
                config
                    .pointer("/rootfs/type")
                    .map_or("missing".to_owned(), Value::to_string)
            )));
        }
        let diff_ids: Vec<Digest> = field(&config["rootfs"], "diff_ids", "config rootfs")?;
        if layers.len() != diff_ids.len() {
            return Err(ManifestError::LayerCountMismatch {
                layers: layers.len(),
                diff_ids: diff_ids.len(),
            });
        }
        if !config
            .get("history")
            .is_none_or(|v| v.is_array() || v.is_null())
        {
            return Err(malformed("config history is not an array"));
        }
        if !manifest
            .get("annotations")
            .is_none_or(|v| v.is_object() || v.is_null())
        {
            return Err(malformed("manifest annotations are not an object"));
        }
        Ok(Image {
            manifest,
            config,
            family: kind.family(),
            appended_history: Vec::new(),
        })
    }

    pub fn family(&self) -> Family {
        self.family
    }

    pub fn manifest_media_type(&self) -> &'static str {
        self.family.manifest_media_type()
    }

    /// The manifest's layer descriptors, in order (base layers first).
    pub fn layers(&self) -> Vec<Descriptor> {
        valid(&self.manifest["layers"])
    }

    /// The config's `rootfs.diff_ids`, one per layer.
    pub fn diff_ids(&self) -> Vec<Digest> {
        valid(&self.config["rootfs"]["diff_ids"])
    }

    /// The history entry of each layer, in manifest order, found by skipping `empty_layer`
    /// entries. When the history describes fewer layers than there are (some bases carry none
    /// for theirs), the entries are matched from the end, since appended layers come last; with
    /// more entries than layers nothing is matched.
    pub fn layer_histories(&self) -> Vec<Option<History>> {
        self.layer_history_entries()
            .into_iter()
            .map(|entry| {
                entry.map(|entry| History {
                    created_by: entry["created_by"].as_str().unwrap_or_default().to_owned(),
                    comment: entry["comment"].as_str().map(str::to_owned),
                    empty_layer: false,
                })
            })
            .collect()
    }

    /// The config's `Env` (`NAME=value` strings, in order; empty when it has none).
    pub fn env(&self) -> Vec<String> {
        self.config["config"]["Env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|entry| entry.as_str().map(str::to_owned))
            .collect()
    }

    /// The history entries of steps that made no layer (`empty_layer`), in order.
    pub fn empty_layer_histories(&self) -> Vec<History> {
        self.config["history"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["empty_layer"].as_bool() == Some(true))
            .map(|entry| History {
                created_by: entry["created_by"].as_str().unwrap_or_default().to_owned(),
                comment: entry["comment"].as_str().map(str::to_owned),
                empty_layer: true,
            })
            .collect()
    }

    /// The `created` time (as written, normally RFC 3339) of each layer's history entry, matched
    /// as [`Image::layer_histories`] matches them; `None` where there is no entry or no time.
    pub fn layer_created_times(&self) -> Vec<Option<String>> {
        self.layer_history_entries()
            .into_iter()
            .map(|entry| entry.and_then(|entry| entry["created"].as_str().map(str::to_owned)))
            .collect()
    }

    /// The raw history entry of each layer, matched as [`Image::layer_histories`] says.
    fn layer_history_entries(&self) -> Vec<Option<&Value>> {
        let layers = self.layers().len();
        let entries: Vec<&Value> = self.config["history"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["empty_layer"].as_bool() != Some(true))
            .collect();
        if entries.len() > layers {
            return vec![None; layers];
        }
        let missing = layers - entries.len();
        std::iter::repeat_n(None, missing)
            .chain(entries.into_iter().map(Some))
            .collect()
    }

    /// The manifest's config descriptor as it stands; [`Image::finish`] recomputes its
    /// digest and size after edits.
    pub fn config_descriptor(&self) -> Descriptor {
        valid(&self.manifest["config"])
    }

    /// The platform the config declares (`os`, `architecture`, `variant`, `os.version`,
    /// `os.features`), for index entries; `None` when `os` or `architecture` is missing.
    pub fn platform(&self) -> Option<Platform> {
        let text = |key: &str| {
            self.config
                .get(key)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        Some(Platform {
            architecture: text("architecture")?,
            os: text("os")?,
            os_version: text("os.version"),
            os_features: serde_json::from_value(self.config["os.features"].clone())
                .unwrap_or_default(),
            variant: text("variant"),
        })
    }

    /// The manifest as edited so far.
    pub fn manifest_json(&self) -> &Value {
        &self.manifest
    }

    /// The config as edited so far.
    pub fn config_json(&self) -> &Value {
        &self.config
    }

    /// Appends a layer: its descriptor to the manifest, `diff_id` to `rootfs.diff_ids` and a
    /// history entry (its `created` is the config's, kept in step by [`Image::set_created`]
    /// whether that is called before or after). The base's history is left as it is even when it
    /// describes fewer layers than there are. The layer's media type must belong to the
    /// manifest's family (see [`media_type::layer_media_type`]), and `history.empty_layer`
    /// must be false.
    pub fn append_layer(
        &mut self,
        layer: &Descriptor,
        diff_id: &Digest,
        history: History,
    ) -> Result<(), ManifestError> {
        if !self.family.accepts_layer(&layer.media_type) {
            return Err(if layer.media_type == media_type::OCI_LAYER_ZSTD {
                ManifestError::ZstdNeedsOci
            } else {
                ManifestError::LayerFamilyMismatch {
                    media_type: layer.media_type.clone(),
                    family: self.family,
                }
            });
        }
        if history.empty_layer {
            return Err(ManifestError::InvalidHistory(
                "a layer's history entry cannot be empty_layer; use append_history for steps without a layer",
            ));
        }
        let mut descriptor = serde_json::to_value(layer).expect("a descriptor serialises");
        if self.family == Family::Docker {
            // Docker v2 layer descriptors have no annotations; some registries reject them.
            if let Some(object) = descriptor.as_object_mut() {
                object.remove("annotations");
            }
        }
        array_mut(&mut self.manifest, "/layers").push(descriptor);
        array_mut(&mut self.config, "/rootfs/diff_ids").push(diff_id.to_string().into());
        self.push_history(history);
        Ok(())
    }

    /// Records a step that made no layer (`history.empty_layer` must be true).
    pub fn append_history(&mut self, history: History) -> Result<(), ManifestError> {
        if !history.empty_layer {
            return Err(ManifestError::InvalidHistory(
                "a history entry without a layer must be empty_layer",
            ));
        }
        self.push_history(history);
        Ok(())
    }

    fn push_history(&mut self, history: History) {
        let mut entry = Map::new();
        entry.insert("created_by".into(), history.created_by.into());
        if let Some(comment) = history.comment {
            entry.insert("comment".into(), comment.into());
        }
        if history.empty_layer {
            entry.insert("empty_layer".into(), true.into());
        }
        let created = self
            .config
            .get("created")
            .filter(|value| value.is_string())
            .cloned();
        let list = self.history_mut();
        list.push(with_created(entry, created));
        let position = list.len() - 1;
        self.appended_history.push(position);
    }

    fn history_mut(&mut self) -> &mut Vec<Value> {
        let document = self.config.as_object_mut().expect("config is an object");
        let list = document.entry("history").or_insert(Value::Null);
        if list.is_null() {
            *list = Value::Array(Vec::new());
        }
        list.as_array_mut().expect("history checked in from_json")
    }

    /// Applies one config edit to `config.config` (see [`ConfigEdit`] for each one's rules).
    pub fn apply(&mut self, edit: &ConfigEdit) -> Result<(), ManifestError> {
        edit.apply_to(&mut self.config)
    }

    /// Sets the config's `created` (RFC 3339, e.g. from [`crate::utc_rfc3339`]) and the
    /// `created` of every history entry this image appended, before or after this call. The
    /// value is not checked.
    pub fn set_created(&mut self, rfc3339: &str) {
        let created = Value::from(rfc3339);
        self.config
            .as_object_mut()
            .expect("config is an object")
            .insert("created".into(), created.clone());
        if self.appended_history.is_empty() {
            return;
        }
        let positions = self.appended_history.clone();
        let history = self.history_mut();
        for position in positions {
            let Value::Object(entry) = std::mem::take(&mut history[position]) else {
                unreachable!("appended history entries are objects");
            };
            history[position] = with_created(entry, Some(created.clone()));
        }
    }

    /// Sets a manifest annotation. Docker v2 manifests have no annotations: convert with
    /// [`Image::to_oci`] first, or this is an error.
    pub fn set_annotation(&mut self, key: &str, value: &str) -> Result<(), ManifestError> {
        if self.family == Family::Docker {
            return Err(ManifestError::AnnotationsNeedOci);
        }
        let manifest = self
            .manifest
            .as_object_mut()
            .expect("manifest is an object");
        let annotations = manifest.entry("annotations").or_insert(Value::Null);
        if annotations.is_null() {
            *annotations = Value::Object(Map::new());
        }
        annotations
            .as_object_mut()
            .expect("annotations checked in from_json")
            .insert(key.into(), value.into());
        Ok(())
    }

    /// Records the base image in the image-spec annotations `org.opencontainers.image.base.digest`
    /// and, when the base has a name others can pull, `.base.name`; a `.base.name` inherited from
    /// the base's own base is removed rather than left stale. Does nothing on a Docker v2
    /// manifest, which cannot carry annotations: the base is optional provenance, not worth
    /// failing a build for.
    pub fn set_base_annotations(&mut self, base_name: Option<&str>, base_digest: &Digest) {
        if self.family != Family::Oci {
            return;
        }
        self.set_annotation(BASE_DIGEST_ANNOTATION, base_digest.as_str())
            .expect("OCI manifests take annotations");
        match base_name {
            Some(name) => self
                .set_annotation(BASE_NAME_ANNOTATION, name)
                .expect("OCI manifests take annotations"),
            None => {
                if let Some(annotations) = self
                    .manifest
                    .get_mut("annotations")
                    .and_then(Value::as_object_mut)
                {
                    annotations.shift_remove(BASE_NAME_ANNOTATION);
                }
            }
        }
    }

    /// Converts a Docker v2 image to OCI media types as `skopeo copy --format oci` does:
    /// manifest and config media types, gzip and uncompressed layers to their OCI twins,
    /// foreign layers to OCI non-distributable ones (keeping their `urls`). The config
    /// content and all other fields stay as they are, so layer blobs and diffIDs are
    /// unchanged. A no-op on an OCI image; on an unknown layer type nothing is changed.
    pub fn to_oci(&mut self) -> Result<(), ManifestError> {
        if self.family == Family::Oci {
            return Ok(());
        }
        let converted: Vec<&'static str> = self
            .layers()
            .iter()
            .map(|layer| oci_layer_type(&layer.media_type))
            .collect::<Result<_, _>>()?;
        let layers = array_mut(&mut self.manifest, "/layers");
        for (layer, media_type) in layers.iter_mut().zip(converted) {
            layer["mediaType"] = media_type.into();
        }
        self.manifest["config"]["mediaType"] = media_type::OCI_CONFIG.into();
        self.manifest["mediaType"] = media_type::OCI_MANIFEST.into();
        self.family = Family::Oci;
        Ok(())
    }

    /// Serialises the config, points the manifest at it (digest and size) and serialises the
    /// manifest. Compact `serde_json` output: the same image always gives the same bytes.
    pub fn finish(mut self) -> FinishedImage {
        let config_bytes = serde_json::to_vec(&self.config).expect("JSON values serialise");
        let config_digest = Digest::sha256(&config_bytes);
        let config_entry = &mut self.manifest["config"];
        config_entry["digest"] = config_digest.to_string().into();
        config_entry["size"] = config_bytes.len().into();
        let config = valid(config_entry);

        let manifest_bytes = serde_json::to_vec(&self.manifest).expect("JSON values serialise");
        let manifest = Descriptor::new(
            self.manifest_media_type(),
            Digest::sha256(&manifest_bytes),
            manifest_bytes.len() as u64,
        );
        FinishedImage {
            config_bytes,
            config,
            manifest_bytes,
            manifest,
        }
    }
}

/// A history entry with `created` set (or removed) as its first field, where Docker and
/// buildkit put it.
fn with_created(entry: Map<String, Value>, created: Option<Value>) -> Value {
    let mut result = Map::new();
    if let Some(created) = created {
        result.insert("created".into(), created);
    }
    result.extend(entry.into_iter().filter(|(key, _)| key != "created"));
    Value::Object(result)
}

/// The OCI media type `skopeo` gives a Docker (or already OCI) layer type.
fn oci_layer_type(docker: &str) -> Result<&'static str, ManifestError> {
    use media_type::*;
    Ok(match docker {
        DOCKER_LAYER_GZIP | OCI_LAYER_GZIP => OCI_LAYER_GZIP,
        DOCKER_LAYER_TAR | OCI_LAYER_TAR => OCI_LAYER_TAR,
        OCI_LAYER_ZSTD => OCI_LAYER_ZSTD,
        DOCKER_FOREIGN_LAYER_GZIP | OCI_NONDISTRIBUTABLE_LAYER_GZIP => {
            OCI_NONDISTRIBUTABLE_LAYER_GZIP
        }
        DOCKER_FOREIGN_LAYER_TAR | OCI_NONDISTRIBUTABLE_LAYER_TAR => OCI_NONDISTRIBUTABLE_LAYER_TAR,
        other => return Err(ManifestError::UnconvertibleLayer(other.to_owned())),
    })
}

fn malformed(message: &str) -> ManifestError {
    ManifestError::Malformed(message.to_owned())
}

fn parse_json(bytes: &[u8], what: &'static str) -> Result<Value, ManifestError> {
    serde_json::from_slice(bytes).map_err(|source| ManifestError::InvalidJson { what, source })
}

/// `parent[key]` read as `T`, with an error naming the field.
fn field<T: DeserializeOwned>(parent: &Value, key: &str, owner: &str) -> Result<T, ManifestError> {
    let value = parent
        .get(key)
        .ok_or_else(|| ManifestError::Malformed(format!("{owner} has no {key:?}")))?;
    serde_json::from_value(value.clone())
        .map_err(|error| ManifestError::Malformed(format!("{owner} field {key:?}: {error}")))
}

/// A value that [`Image::from_json`] validated, read back as `T`.
fn valid<T: DeserializeOwned>(value: &Value) -> T {
    serde_json::from_value(value.clone()).expect("validated in Image::from_json")
}

/// The array at `pointer`, validated in [`Image::from_json`].
fn array_mut<'a>(document: &'a mut Value, pointer: &str) -> &'a mut Vec<Value> {
    document
        .pointer_mut(pointer)
        .and_then(Value::as_array_mut)
        .expect("validated in Image::from_json")
}

#[cfg(test)]
mod tests;
