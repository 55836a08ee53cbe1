//! Content descriptors: what a manifest or index says about a blob it points to.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Digest, Platform};

/// An OCI / Docker content descriptor. Fields layerize does not model (`data`) are dropped when
/// read; manifests keep them because they are edited as JSON, not through this type.
///
/// `urls` and `annotations` are empty when absent and then left out when serialised;
/// annotations serialise in key order, so the output is deterministic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    /// A plain descriptor with no urls, annotations, platform or artifact type.
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Self {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            urls: Vec::new(),
            annotations: BTreeMap::new(),
            platform: None,
            artifact_type: None,
        }
    }

    /// The same descriptor with one more annotation.
    pub fn with_annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.annotations.insert(key.into(), value.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_camel_case_and_skips_empty_fields() {
        let descriptor = Descriptor::new(crate::media_type::OCI_LAYER_GZIP, Digest::sha256(b""), 0)
            .with_annotation("b", "2")
            .with_annotation("a", "1");
        let json = serde_json::to_string(&descriptor).unwrap();
        assert_eq!(
            json,
            r#"{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0,"annotations":{"a":"1","b":"2"}}"#
        );
        let back: Descriptor = serde_json::from_str(&json).unwrap();
        assert_eq!(back, descriptor);
    }

    #[test]
    fn reads_platform_and_urls() {
        let json = r#"{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","size":5,
            "digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "urls":["https://example.com/layer"],"platform":{"architecture":"arm64","os":"linux","variant":"v8"}}"#;
        let descriptor: Descriptor = serde_json::from_str(json).unwrap();
        assert_eq!(descriptor.urls, ["https://example.com/layer"]);
        assert_eq!(descriptor.platform.unwrap().to_string(), "linux/arm64/v8");
    }

    #[test]
    fn refuses_a_bad_digest() {
        let json = r#"{"mediaType":"x","digest":"sha256:abc","size":1}"#;
        assert!(serde_json::from_str::<Descriptor>(json).is_err());
    }
}
