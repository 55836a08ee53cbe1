//! Choosing one platform's manifest from a Docker manifest list or an OCI image index.

use serde::Deserialize;

use crate::{Descriptor, ManifestError, ManifestKind, Platform};

/// The parts of a list or index that selection reads; other fields are ignored.
#[derive(Deserialize)]
struct IndexDocument {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// The annotation buildx puts on attestation manifests (SBOM, provenance) in an index.
const REFERENCE_TYPE_ANNOTATION: &str = "vnd.docker.reference.type";

/// The descriptor of the manifest for `wanted` in a Docker manifest list or OCI index.
///
/// Attestation entries (`unknown/unknown`, or annotated as `attestation-manifest`), entries
/// without a platform and nested indexes are not candidates. An entry whose normalised
/// platform equals `wanted` wins (the first one, in index order); otherwise the compatible entry
/// with the newest variant (see [`Platform::matches`]). With no candidate the error lists the
/// platforms the index offers.
pub fn select_manifest(index_bytes: &[u8], wanted: &Platform) -> Result<Descriptor, ManifestError> {
    let kind = ManifestKind::detect(index_bytes, None)?;
    if !kind.is_index() {
        return Err(ManifestError::NotAnIndex(kind_name(kind)));
    }
    let index: IndexDocument =
        serde_json::from_slice(index_bytes).map_err(|source| ManifestError::InvalidJson {
            what: "index",
            source,
        })?;
    let candidates: Vec<(&Descriptor, &Platform)> = index
        .manifests
        .iter()
        .filter(|entry| !is_attestation(entry) && !is_nested_index(entry))
        .filter_map(|entry| entry.platform.as_ref().map(|platform| (entry, platform)))
        .collect();

    let exact = candidates
        .iter()
        .find(|(_, platform)| wanted.same_as(platform));
    let best = exact.or_else(|| {
        candidates
            .iter()
            .filter(|(_, platform)| wanted.matches(platform))
            // `max_by_key` keeps the last maximum; reverse so that the first one in index order wins.
            .rev()
            .max_by_key(|(_, platform)| platform.normalize().variant_revision())
    });
    match best {
        Some((descriptor, _)) => Ok((*descriptor).clone()),
        None => {
            let available: Vec<String> = candidates
                .iter()
                .map(|(_, platform)| platform.to_string())
                .collect();
            Err(ManifestError::NoMatchingPlatform {
                wanted: wanted.to_string(),
                available: if available.is_empty() {
                    "none".to_owned()
                } else {
                    available.join(", ")
                },
            })
        }
    }
}

fn is_attestation(entry: &Descriptor) -> bool {
    let unknown_platform = entry
        .platform
        .as_ref()
        .is_some_and(|platform| platform.os == "unknown" && platform.architecture == "unknown");
    let annotated = entry
        .annotations
        .get(REFERENCE_TYPE_ANNOTATION)
        .is_some_and(|value| value == "attestation-manifest");
    unknown_platform || annotated
}

fn is_nested_index(entry: &Descriptor) -> bool {
    ManifestKind::from_media_type(&entry.media_type).is_ok_and(ManifestKind::is_index)
}

pub(crate) fn kind_name(kind: ManifestKind) -> &'static str {
    match kind {
        ManifestKind::DockerManifest => "a Docker v2 image manifest",
        ManifestKind::DockerList => "a Docker manifest list",
        ManifestKind::OciManifest => "an OCI image manifest",
        ManifestKind::OciIndex => "an OCI image index",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Digest;

    fn digest(n: u8) -> String {
        Digest::sha256(&[n]).to_string()
    }

    /// A buildx-style OCI index: two images, each with its attestation manifest, plus arm/v6
    /// and arm/v7 entries.
    fn buildx_index() -> String {
        let image = |n: u8, platform: &str| {
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":100{n},"platform":{platform}}}"#,
                digest(n)
            )
        };
        let attestation = |n: u8, of: u8| {
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":5{n},
                "annotations":{{"vnd.docker.reference.digest":"{}","vnd.docker.reference.type":"attestation-manifest"}},
                "platform":{{"architecture":"unknown","os":"unknown"}}}}"#,
                digest(n),
                digest(of)
            )
        };
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{},{},{},{},{},{}]}}"#,
            attestation(10, 1),
            image(1, r#"{"architecture":"amd64","os":"linux"}"#),
            image(2, r#"{"architecture":"arm64","os":"linux","variant":"v8"}"#),
            attestation(11, 2),
            image(3, r#"{"architecture":"arm","os":"linux","variant":"v6"}"#),
            image(4, r#"{"architecture":"arm","os":"linux","variant":"v7"}"#),
        )
    }

    fn select(index: &str, wanted: &str) -> Result<Descriptor, ManifestError> {
        select_manifest(index.as_bytes(), &wanted.parse().unwrap())
    }

    #[test]
    fn selects_by_normalised_platform_and_skips_attestations() {
        let index = buildx_index();
        for (wanted, expected) in [
            ("linux/amd64", 1),
            ("linux/x86_64", 1),
            ("linux/arm64", 2),
            ("linux/aarch64", 2),
            ("linux/arm64/v8", 2),
            ("linux/arm/v6", 3),
            ("linux/arm", 4),
            ("linux/armhf", 4),
            ("linux/arm/v8", 4),
        ] {
            let chosen = select(&index, wanted).unwrap();
            assert_eq!(chosen.digest.to_string(), digest(expected), "{wanted}");
        }
    }

    #[test]
    fn unknown_platform_lists_what_is_available() {
        let err = select(&buildx_index(), "linux/s390x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "no manifest for platform linux/s390x in index; available: \
             linux/amd64, linux/arm64/v8, linux/arm/v6, linux/arm/v7"
        );
        let err = select(&buildx_index(), "unknown/unknown").unwrap_err();
        assert!(matches!(err, ManifestError::NoMatchingPlatform { .. }));
    }

    #[test]
    fn docker_list_with_compatible_fallback() {
        let list = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[
            {{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"{}","size":1,"platform":{{"architecture":"amd64","os":"linux","variant":"v2"}}}},
            {{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"{}","size":1,"platform":{{"architecture":"amd64","os":"linux"}}}},
            {{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"{}","size":1,"platform":{{"architecture":"amd64","os":"linux","variant":"v3"}}}}]}}"#,
            digest(1),
            digest(2),
            digest(3)
        );
        assert_eq!(
            select(&list, "linux/amd64").unwrap().digest.to_string(),
            digest(2)
        );
        assert_eq!(
            select(&list, "linux/amd64/v3").unwrap().digest.to_string(),
            digest(3)
        );
        assert_eq!(
            select(&list, "linux/amd64/v4").unwrap().digest.to_string(),
            digest(3)
        );
        assert!(select(&list, "linux/arm64").is_err());
    }

    #[test]
    fn refuses_a_single_manifest() {
        let manifest = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#;
        let err = select(manifest, "linux/amd64").unwrap_err();
        assert_eq!(
            err.to_string(),
            "expected an image index or manifest list, got an OCI image manifest"
        );
    }
}
