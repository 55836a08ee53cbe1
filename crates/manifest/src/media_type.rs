//! Media types of the two image families (Docker v2 schema 2 and OCI) and how to tell which kind
//! of manifest a blob of bytes is.

use serde_json::Value;

use crate::ManifestError;

/// Docker v2 schema 2 image manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list (multi-platform).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip-compressed layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker uncompressed layer (rare, but readers accept it).
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker foreign layer (Windows base layers): its blob lives at the descriptor's `urls`.
pub const DOCKER_FOREIGN_LAYER_GZIP: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
/// Docker foreign layer, uncompressed.
pub const DOCKER_FOREIGN_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar";
/// Docker schema 1 manifest, unsigned (deprecated, refused).
pub const DOCKER_SCHEMA1_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Docker schema 1 manifest, signed (deprecated, refused).
pub const DOCKER_SCHEMA1_SIGNED_MANIFEST: &str =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index (multi-platform).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI uncompressed layer.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI gzip-compressed layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI zstd-compressed layer.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// OCI non-distributable layer (deprecated in image-spec 1.1; what Docker foreign layers become).
pub const OCI_NONDISTRIBUTABLE_LAYER_TAR: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar";
/// OCI non-distributable gzip layer.
pub const OCI_NONDISTRIBUTABLE_LAYER_GZIP: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";

/// Whether a layer's blob must not be copied between registries (Docker foreign and OCI
/// non-distributable layers): pushers skip it, the descriptor's `urls` say where it lives.
pub fn is_foreign_layer(media_type: &str) -> bool {
    matches!(
        media_type,
        DOCKER_FOREIGN_LAYER_GZIP
            | DOCKER_FOREIGN_LAYER_TAR
            | OCI_NONDISTRIBUTABLE_LAYER_TAR
            | OCI_NONDISTRIBUTABLE_LAYER_GZIP
    )
}

/// The `Accept` header value for manifest GETs: all four kinds layerize reads.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// The two image families. A manifest, its config and its layers all use one family's types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    Docker,
    Oci,
}

impl Family {
    /// The family of a manifest or index media type; `None` for anything else.
    pub fn of_manifest(media_type: &str) -> Option<Family> {
        match media_type {
            DOCKER_MANIFEST | DOCKER_MANIFEST_LIST => Some(Family::Docker),
            OCI_MANIFEST | OCI_INDEX => Some(Family::Oci),
            _ => None,
        }
    }

    /// The config media type of this family.
    pub fn config_media_type(self) -> &'static str {
        match self {
            Family::Docker => DOCKER_CONFIG,
            Family::Oci => OCI_CONFIG,
        }
    }

    /// The single-image manifest media type of this family.
    pub fn manifest_media_type(self) -> &'static str {
        match self {
            Family::Docker => DOCKER_MANIFEST,
            Family::Oci => OCI_MANIFEST,
        }
    }

    /// Whether a layer of `media_type` may appear in a manifest of this family.
    pub fn accepts_layer(self, media_type: &str) -> bool {
        match self {
            Family::Docker => matches!(
                media_type,
                DOCKER_LAYER_GZIP
                    | DOCKER_LAYER_TAR
                    | DOCKER_FOREIGN_LAYER_GZIP
                    | DOCKER_FOREIGN_LAYER_TAR
            ),
            Family::Oci => media_type.starts_with("application/vnd.oci.image.layer."),
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::Docker => "Docker v2",
            Family::Oci => "OCI",
        })
    }
}

/// The four kinds of manifest layerize reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ManifestKind {
    DockerManifest,
    DockerList,
    OciManifest,
    OciIndex,
}

impl ManifestKind {
    /// Tells what `bytes` are. The JSON `mediaType` field decides first, then `content_type`
    /// (the registry's `Content-Type`, parameters ignored), and for an OCI document without
    /// either, its shape: `manifests` means an index, `config` and `layers` a manifest.
    /// Docker schema 1 is refused.
    pub fn detect(bytes: &[u8], content_type: Option<&str>) -> Result<ManifestKind, ManifestError> {
        let document: Value =
            serde_json::from_slice(bytes).map_err(|source| ManifestError::InvalidJson {
                what: "manifest",
                source,
            })?;
        if !document.is_object() {
            return Err(ManifestError::Malformed(
                "manifest is not a JSON object".into(),
            ));
        }
        if document.get("schemaVersion").and_then(Value::as_u64) == Some(1) {
            return Err(ManifestError::Schema1);
        }
        if let Some(media_type) = document.get("mediaType").and_then(Value::as_str) {
            return Self::from_media_type(media_type);
        }
        let content_type = content_type
            .map(|value| value.split(';').next().unwrap_or("").trim())
            .filter(|value| !value.is_empty() && !is_generic_content_type(value));
        if let Some(content_type) = content_type {
            return Self::from_media_type(content_type);
        }
        if document.get("manifests").is_some() {
            Ok(ManifestKind::OciIndex)
        } else if document.get("config").is_some() && document.get("layers").is_some() {
            Ok(ManifestKind::OciManifest)
        } else {
            Err(ManifestError::UnrecognisedManifest)
        }
    }

    /// The kind a manifest media type names.
    pub fn from_media_type(media_type: &str) -> Result<ManifestKind, ManifestError> {
        match media_type {
            DOCKER_MANIFEST => Ok(ManifestKind::DockerManifest),
            DOCKER_MANIFEST_LIST => Ok(ManifestKind::DockerList),
            OCI_MANIFEST => Ok(ManifestKind::OciManifest),
            OCI_INDEX => Ok(ManifestKind::OciIndex),
            DOCKER_SCHEMA1_MANIFEST | DOCKER_SCHEMA1_SIGNED_MANIFEST => Err(ManifestError::Schema1),
            other => Err(ManifestError::UnsupportedMediaType(other.to_owned())),
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            ManifestKind::DockerManifest => DOCKER_MANIFEST,
            ManifestKind::DockerList => DOCKER_MANIFEST_LIST,
            ManifestKind::OciManifest => OCI_MANIFEST,
            ManifestKind::OciIndex => OCI_INDEX,
        }
    }

    pub fn family(self) -> Family {
        match self {
            ManifestKind::DockerManifest | ManifestKind::DockerList => Family::Docker,
            ManifestKind::OciManifest | ManifestKind::OciIndex => Family::Oci,
        }
    }

    /// Whether this is a multi-platform list/index rather than a single image manifest.
    pub fn is_index(self) -> bool {
        matches!(self, ManifestKind::DockerList | ManifestKind::OciIndex)
    }
}

/// Content types that say nothing about the manifest kind (some registries and file servers
/// send them), so the document's shape has to decide.
fn is_generic_content_type(content_type: &str) -> bool {
    matches!(
        content_type,
        "application/json" | "application/octet-stream" | "text/plain"
    )
}

/// Layer compressions layerize writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compression {
    Gzip,
    Zstd,
}

/// The media type for a new layer compressed with `compression` in a manifest of `family`.
/// Docker v2 manifests have no zstd layer type.
pub fn layer_media_type(
    family: Family,
    compression: Compression,
) -> Result<&'static str, ManifestError> {
    match (family, compression) {
        (Family::Docker, Compression::Gzip) => Ok(DOCKER_LAYER_GZIP),
        (Family::Docker, Compression::Zstd) => Err(ManifestError::ZstdNeedsOci),
        (Family::Oci, Compression::Gzip) => Ok(OCI_LAYER_GZIP),
        (Family::Oci, Compression::Zstd) => Ok(OCI_LAYER_ZSTD),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detect_uses_media_type_field_first() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{}},"layers":[]}}"#
        );
        let kind = ManifestKind::detect(body.as_bytes(), Some(OCI_INDEX)).unwrap();
        assert_eq!(kind, ManifestKind::DockerManifest);
    }

    #[test]
    fn detect_falls_back_to_content_type_then_shape() {
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        let manifest = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        assert_eq!(
            ManifestKind::detect(
                index,
                Some("application/vnd.docker.distribution.manifest.list.v2+json; charset=utf-8")
            )
            .unwrap(),
            ManifestKind::DockerList
        );
        assert_eq!(
            ManifestKind::detect(index, None).unwrap(),
            ManifestKind::OciIndex
        );
        assert_eq!(
            ManifestKind::detect(manifest, Some("application/json")).unwrap(),
            ManifestKind::OciManifest
        );
        assert!(matches!(
            ManifestKind::detect(br#"{"schemaVersion":2}"#, None),
            Err(ManifestError::UnrecognisedManifest)
        ));
    }

    #[test]
    fn detect_refuses_schema1_and_garbage() {
        let schema1 =
            br#"{"schemaVersion":1,"name":"library/busybox","tag":"latest","fsLayers":[]}"#;
        let err = ManifestKind::detect(schema1, Some(DOCKER_SCHEMA1_SIGNED_MANIFEST)).unwrap_err();
        assert!(err.to_string().contains("schema 1"), "{err}");
        let err = ManifestKind::detect(br#"{"mediaType":"#, None).unwrap_err();
        assert!(err.to_string().contains("invalid manifest JSON"), "{err}");
        let err = ManifestKind::detect(br#"{"mediaType":"text/html"}"#, None).unwrap_err();
        assert!(err.to_string().contains("text/html"), "{err}");
    }

    #[test]
    fn layer_media_types_per_family() {
        assert_eq!(
            layer_media_type(Family::Docker, Compression::Gzip).unwrap(),
            DOCKER_LAYER_GZIP
        );
        assert_eq!(
            layer_media_type(Family::Oci, Compression::Zstd).unwrap(),
            OCI_LAYER_ZSTD
        );
        let err = layer_media_type(Family::Docker, Compression::Zstd).unwrap_err();
        assert_eq!(err.to_string(), "zstd layers need an OCI manifest");
        assert!(Family::Oci.accepts_layer(OCI_LAYER_ZSTD));
        assert!(!Family::Docker.accepts_layer(OCI_LAYER_GZIP));
        assert!(!Family::Oci.accepts_layer(DOCKER_LAYER_GZIP));
    }

    #[test]
    fn family_of_manifest_types() {
        assert_eq!(
            Family::of_manifest(DOCKER_MANIFEST_LIST),
            Some(Family::Docker)
        );
        assert_eq!(Family::of_manifest(OCI_MANIFEST), Some(Family::Oci));
        assert_eq!(Family::of_manifest(OCI_CONFIG), None);
    }
}
