//! Tests of [`Image`]: appending layers and editing configs of Docker and OCI bases keeps every
//! field layerize does not own, digests match the bytes, Docker-to-OCI conversion, validation.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::media_type::*;
use crate::{utc_rfc3339, Compression};

const BASE_DIFF_ID: &str =
    "sha256:1f3f4f2e0b5fd8a2b4d8e37b9de4fd3ab9fa1ecdbc93e0ab8e1ba2b0e0aebec0";
const BASE_LAYER: &str = "sha256:aece8493d3972efa43bfd4ee3cdba659c0f787f8f59c82fb3e48c87cbb22a12e";

/// A Docker config as `docker build` writes it, fields in Docker's order.
fn docker_config() -> Value {
    json!({
        "architecture": "amd64",
        "config": {
            "Hostname": "", "Domainname": "", "User": "",
            "AttachStdin": false, "AttachStdout": false, "AttachStderr": false,
            "ExposedPorts": {"80/tcp": {}},
            "Tty": false, "OpenStdin": false, "StdinOnce": false,
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "NGINX_VERSION=1.25.3"],
            "Cmd": ["nginx", "-g", "daemon off;"],
            "Healthcheck": {"Test": ["CMD-SHELL", "curl -f http://localhost/ || exit 1"], "Interval": 30000000000u64, "Retries": 3},
            "Image": "sha256:5d0da3dc976460b72c77d94c8a1ad043720b0416bfc16c52c45d4847e53fadb6",
            "Volumes": null, "WorkingDir": "", "Entrypoint": ["/docker-entrypoint.sh"], "OnBuild": null,
            "Labels": {"maintainer": "NGINX Docker Maintainers"},
            "StopSignal": "SIGQUIT"
        },
        "container": "2a9f3e2c1f3b7d9a",
        "container_config": {
            "Hostname": "2a9f3e2c1f3b", "Env": ["PATH=/usr/bin:/bin"],
            "Cmd": ["/bin/sh", "-c", "#(nop) ", "CMD [\"nginx\" \"-g\" \"daemon off;\"]"],
            "Labels": {"maintainer": "NGINX Docker Maintainers"}
        },
        "created": "2023-11-01T12:00:00.123456789Z",
        "docker_version": "20.10.23",
        "history": [
            {"created": "2023-10-30T00:00:00Z", "created_by": "/bin/sh -c #(nop) ADD file:4b03b5f551e3fbdf47ec609712007327828f7530cc3455c43bbcdcaf449a75a9 in / "},
            {"created": "2023-10-30T00:00:01Z", "created_by": "/bin/sh -c #(nop)  CMD [\"bash\"]", "empty_layer": true},
            {"created": "2023-11-01T12:00:00Z", "created_by": "/bin/sh -c #(nop)  STOPSIGNAL SIGQUIT", "empty_layer": true}
        ],
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [BASE_DIFF_ID]}
    })
}

/// An OCI config as buildkit writes it.
fn oci_config() -> Value {
    json!({
        "architecture": "arm64",
        "variant": "v8",
        "config": {
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"],
            "Cmd": ["/bin/sh"],
            "WorkingDir": "/",
            "ArgsEscaped": true,
            "OnBuild": null
        },
        "created": "2024-01-01T00:00:00Z",
        "history": [
            {"created": "2024-01-01T00:00:00Z", "created_by": "ADD alpine-minirootfs.tar.gz / # buildkit", "comment": "buildkit.dockerfile.v0"},
            {"created": "2024-01-01T00:00:00Z", "created_by": "CMD [\"/bin/sh\"]", "comment": "buildkit.dockerfile.v0", "empty_layer": true}
        ],
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [BASE_DIFF_ID]},
        "x-unknown-extension": {"z": 1, "a": 2}
    })
}

/// Config bytes as a registry might serve them (pretty, not our compact form) and a manifest
/// of `family` pointing at them with the given layers.
fn fixture(family: Family, config: &Value, layers: Value) -> (Vec<u8>, Vec<u8>) {
    let config_bytes = serde_json::to_vec_pretty(config).unwrap();
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": family.manifest_media_type(),
        "config": {
            "mediaType": family.config_media_type(),
            "size": config_bytes.len(),
            "digest": Digest::sha256(&config_bytes).to_string()
        },
        "layers": layers
    });
    if family == Family::Oci {
        manifest["annotations"] =
            json!({"org.opencontainers.image.created": "2024-01-01T00:00:00Z"});
    }
    (serde_json::to_vec_pretty(&manifest).unwrap(), config_bytes)
}

fn base_layers(media_type: &str) -> Value {
    json!([{"mediaType": media_type, "size": 3_214_000, "digest": BASE_LAYER}])
}

fn docker_image() -> Image {
    let (manifest, config) = fixture(
        Family::Docker,
        &docker_config(),
        base_layers(DOCKER_LAYER_GZIP),
    );
    Image::from_json(&manifest, &config).unwrap()
}

fn oci_image() -> Image {
    let (manifest, config) = fixture(Family::Oci, &oci_config(), base_layers(OCI_LAYER_GZIP));
    Image::from_json(&manifest, &config).unwrap()
}

fn new_layer(family: Family, compression: Compression) -> (Descriptor, Digest) {
    let media_type = layer_media_type(family, compression).unwrap();
    (
        Descriptor::new(media_type, Digest::sha256(b"compressed"), 10),
        Digest::sha256(b"uncompressed"),
    )
}

fn added_by(step: &str) -> History {
    History {
        created_by: step.to_owned(),
        comment: Some("layerize".to_owned()),
        empty_layer: false,
    }
}

fn parse(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn docker_append_and_edits_keep_every_other_field_in_order() {
    let mut image = docker_image();
    let (layer, diff_id) = new_layer(Family::Docker, Compression::Gzip);
    image.set_created(&utc_rfc3339(1_700_000_000));
    image
        .apply(&ConfigEdit::EnvAppend {
            key: "PATH".into(),
            value: "/app/bin".into(),
            separator: ":".into(),
        })
        .unwrap();
    image
        .apply(&ConfigEdit::Label {
            key: "org.example".into(),
            value: "1".into(),
        })
        .unwrap();
    image
        .append_layer(&layer, &diff_id, added_by("layerize: files /app"))
        .unwrap();
    let finished = image.finish();

    let mut expected = docker_config();
    expected["created"] = "2023-11-14T22:13:20Z".into();
    expected["config"]["Env"][0] =
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/app/bin".into();
    expected["config"]["Labels"]["org.example"] = "1".into();
    expected["history"].as_array_mut().unwrap().push(json!({
        "created": "2023-11-14T22:13:20Z",
        "created_by": "layerize: files /app",
        "comment": "layerize"
    }));
    expected["rootfs"]["diff_ids"]
        .as_array_mut()
        .unwrap()
        .push(diff_id.to_string().into());
    // Compare the serialised text: equal values *and* equal key order.
    assert_eq!(
        String::from_utf8(finished.config_bytes.clone()).unwrap(),
        serde_json::to_string(&expected).unwrap()
    );

    let manifest = parse(&finished.manifest_bytes);
    assert_eq!(manifest["mediaType"], DOCKER_MANIFEST);
    assert_eq!(manifest["layers"][0]["digest"], BASE_LAYER);
    assert_eq!(manifest["layers"][1], serde_json::to_value(&layer).unwrap());
    assert_eq!(manifest["config"]["mediaType"], DOCKER_CONFIG);
    assert_eq!(
        manifest.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["schemaVersion", "mediaType", "config", "layers"]
    );
}

#[test]
fn finish_digests_match_the_bytes() {
    let mut image = oci_image();
    let (layer, diff_id) = new_layer(Family::Oci, Compression::Zstd);
    image.append_layer(&layer, &diff_id, added_by("x")).unwrap();
    let finished = image.finish();

    assert_eq!(
        finished.config.digest,
        Digest::sha256(&finished.config_bytes)
    );
    assert_eq!(finished.config.size, finished.config_bytes.len() as u64);
    assert_eq!(finished.config.media_type, OCI_CONFIG);
    assert_eq!(
        finished.manifest.digest,
        Digest::sha256(&finished.manifest_bytes)
    );
    assert_eq!(finished.manifest.size, finished.manifest_bytes.len() as u64);
    assert_eq!(finished.manifest.media_type, OCI_MANIFEST);

    let manifest = parse(&finished.manifest_bytes);
    assert_eq!(
        manifest["config"]["digest"],
        finished.config.digest.as_str()
    );
    assert_eq!(manifest["config"]["size"], finished.config_bytes.len());
    // The manifest round-trips into an image whose config check passes.
    let again = Image::from_json(&finished.manifest_bytes, &finished.config_bytes).unwrap();
    assert_eq!(again.diff_ids(), [BASE_DIFF_ID.parse().unwrap(), diff_id]);
    assert_eq!(again.layers()[1], layer);
}

#[test]
fn oci_image_keeps_unknown_fields_and_takes_annotations() {
    let mut image = oci_image();
    assert_eq!(image.family(), Family::Oci);
    assert_eq!(image.platform().unwrap().to_string(), "linux/arm64/v8");
    let (layer, diff_id) = new_layer(Family::Oci, Compression::Gzip);
    image
        .append_layer(&layer, &diff_id, added_by("layerize"))
        .unwrap();
    image.set_annotation("org.example.note", "hi").unwrap();
    let base_digest = Digest::sha256(b"base manifest");
    image.set_base_annotations(Some("docker.io/library/alpine:3.19"), &base_digest);
    let finished = image.finish();

    let config = parse(&finished.config_bytes);
    assert_eq!(config["x-unknown-extension"], json!({"z": 1, "a": 2}));
    assert_eq!(
        serde_json::to_string(&config["x-unknown-extension"]).unwrap(),
        r#"{"z":1,"a":2}"#
    );
    assert_eq!(config["config"], oci_config()["config"]);
    // No `created` was set on the image after the base's, so the entry carries the base's.
    assert_eq!(
        config["history"][2],
        json!({"created": "2024-01-01T00:00:00Z", "created_by": "layerize", "comment": "layerize"})
    );
    let manifest = parse(&finished.manifest_bytes);
    assert_eq!(
        manifest["annotations"],
        json!({
            "org.opencontainers.image.created": "2024-01-01T00:00:00Z",
            "org.example.note": "hi",
            "org.opencontainers.image.base.name": "docker.io/library/alpine:3.19",
            "org.opencontainers.image.base.digest": base_digest.as_str()
        })
    );
}

#[test]
fn history_without_created_and_without_a_base_history() {
    let mut config = docker_config();
    let object = config.as_object_mut().unwrap();
    object.remove("created");
    object.remove("history");
    let (manifest, config) = fixture(Family::Docker, &config, base_layers(DOCKER_LAYER_GZIP));
    let mut image = Image::from_json(&manifest, &config).unwrap();
    image.set_created("2024-01-01T00:00:00Z");
    assert!(
        image.config_json().get("history").is_none(),
        "no history invented"
    );
    image.config.as_object_mut().unwrap().remove("created");
    let (layer, diff_id) = new_layer(Family::Docker, Compression::Gzip);
    image
        .append_layer(
            &layer,
            &diff_id,
            History {
                comment: None,
                ..added_by("a")
            },
        )
        .unwrap();
    image
        .append_history(History {
            created_by: "b".into(),
            comment: None,
            empty_layer: true,
        })
        .unwrap();
    assert_eq!(
        image.config_json()["history"],
        json!([{"created_by": "a"}, {"created_by": "b", "empty_layer": true}])
    );
}

#[test]
fn set_created_after_appending_dates_our_entries_only() {
    let mut image = oci_image();
    let (layer, diff_id) = new_layer(Family::Oci, Compression::Gzip);
    image
        .append_layer(&layer, &diff_id, added_by("one"))
        .unwrap();
    image.set_created("2030-01-01T00:00:00Z");
    image
        .append_layer(&layer, &diff_id, added_by("two"))
        .unwrap();
    image.set_created(&utc_rfc3339(0));
    let history = &image.config_json()["history"];
    assert_eq!(
        history[0],
        oci_config()["history"][0],
        "base entries untouched"
    );
    assert_eq!(history[1], oci_config()["history"][1]);
    for (position, step) in [(2, "one"), (3, "two")] {
        assert_eq!(
            serde_json::to_string(&history[position]).unwrap(),
            format!(
                r#"{{"created":"1970-01-01T00:00:00Z","created_by":"{step}","comment":"layerize"}}"#
            )
        );
    }
    assert_eq!(image.config_json()["created"], "1970-01-01T00:00:00Z");
}

#[test]
fn layer_and_history_consistency_is_checked() {
    let mut image = docker_image();
    let (zstd, diff_id) = new_layer(Family::Oci, Compression::Zstd);
    let err = image
        .append_layer(&zstd, &diff_id, added_by("x"))
        .unwrap_err();
    assert_eq!(err.to_string(), "zstd layers need an OCI manifest");
    let (oci_gzip, _) = new_layer(Family::Oci, Compression::Gzip);
    let err = image
        .append_layer(&oci_gzip, &diff_id, added_by("x"))
        .unwrap_err();
    assert!(
        matches!(err, ManifestError::LayerFamilyMismatch { .. }),
        "{err}"
    );
    let (docker_gzip, _) = new_layer(Family::Docker, Compression::Gzip);
    let empty = History {
        empty_layer: true,
        ..added_by("x")
    };
    assert!(image.append_layer(&docker_gzip, &diff_id, empty).is_err());
    assert!(image.append_history(added_by("x")).is_err());
    assert_eq!(image.layers().len(), 1, "nothing was appended");
    assert_eq!(image.diff_ids().len(), 1);
}

#[test]
fn docker_manifests_refuse_annotations_and_ignore_base_annotations() {
    let mut image = docker_image();
    let err = image.set_annotation("a", "b").unwrap_err();
    assert_eq!(
        err.to_string(),
        "annotations need an OCI manifest (use an oci: target or --format oci)"
    );
    let before = image.manifest_json().clone();
    image.set_base_annotations(Some("ubuntu:22.04"), &Digest::sha256(b"x"));
    assert_eq!(image.manifest_json(), &before);
}

#[test]
fn to_oci_converts_media_types_like_skopeo() {
    let layers = json!([
        {"mediaType": DOCKER_FOREIGN_LAYER_GZIP, "size": 1, "digest": Digest::sha256(b"1").as_str(),
         "urls": ["https://mcr.microsoft.com/v2/windows/blobs/sha256:1"]},
        {"mediaType": DOCKER_LAYER_GZIP, "size": 2, "digest": Digest::sha256(b"2").as_str()},
        {"mediaType": DOCKER_LAYER_TAR, "size": 3, "digest": Digest::sha256(b"3").as_str()}
    ]);
    let mut config = docker_config();
    config["rootfs"]["diff_ids"] = json!([BASE_DIFF_ID, BASE_DIFF_ID, BASE_DIFF_ID]);
    let (manifest_bytes, config_bytes) = fixture(Family::Docker, &config, layers);
    let mut image = Image::from_json(&manifest_bytes, &config_bytes).unwrap();
    image.to_oci().unwrap();
    assert_eq!(image.family(), Family::Oci);
    assert_eq!(image.manifest_media_type(), OCI_MANIFEST);
    image.set_annotation("org.example", "now allowed").unwrap();
    let finished = image.finish();

    let manifest = parse(&finished.manifest_bytes);
    assert_eq!(manifest["mediaType"], OCI_MANIFEST);
    assert_eq!(manifest["config"]["mediaType"], OCI_CONFIG);
    let types: Vec<&str> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| layer["mediaType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            OCI_NONDISTRIBUTABLE_LAYER_GZIP,
            OCI_LAYER_GZIP,
            OCI_LAYER_TAR
        ]
    );
    assert_eq!(
        manifest["layers"][0]["urls"][0],
        "https://mcr.microsoft.com/v2/windows/blobs/sha256:1"
    );
    // The config content is unchanged: only re-serialised compactly.
    assert_eq!(finished.config_bytes, serde_json::to_vec(&config).unwrap());
    assert_eq!(finished.manifest.media_type, OCI_MANIFEST);
}

#[test]
fn to_oci_refuses_unknown_layer_types_without_changing_anything() {
    let layers = json!([{"mediaType": "application/x-custom", "size": 1, "digest": BASE_LAYER}]);
    let (manifest, config) = fixture(Family::Docker, &docker_config(), layers);
    let mut image = Image::from_json(&manifest, &config).unwrap();
    let before = image.manifest_json().clone();
    let err = image.to_oci().unwrap_err();
    assert!(err.to_string().contains("application/x-custom"), "{err}");
    assert_eq!(image.manifest_json(), &before);
    assert_eq!(image.family(), Family::Docker);
}

#[test]
fn to_oci_on_an_oci_image_changes_nothing() {
    let mut image = oci_image();
    let before = image.manifest_json().clone();
    image.to_oci().unwrap();
    assert_eq!(image.manifest_json(), &before);
}

#[test]
fn from_json_validates_the_image() {
    let case = |config: Value, layers: Value| {
        let (manifest, config) = fixture(Family::Docker, &config, layers);
        Image::from_json(&manifest, &config)
            .unwrap_err()
            .to_string()
    };
    let two_layers = json!([
        {"mediaType": DOCKER_LAYER_GZIP, "size": 1, "digest": BASE_LAYER},
        {"mediaType": DOCKER_LAYER_GZIP, "size": 1, "digest": BASE_LAYER}
    ]);
    assert_eq!(
        case(docker_config(), two_layers),
        "malformed image: the manifest lists 2 layers but the config's rootfs.diff_ids has 1"
    );
    let mut wrong_type = docker_config();
    wrong_type["rootfs"]["type"] = "squashfs".into();
    assert_eq!(
        case(wrong_type, base_layers(DOCKER_LAYER_GZIP)),
        r#"malformed image: config rootfs.type is "squashfs", expected "layers""#
    );
    let mut no_rootfs = docker_config();
    no_rootfs.as_object_mut().unwrap().remove("rootfs");
    assert!(case(no_rootfs, base_layers(DOCKER_LAYER_GZIP)).contains("rootfs.type is missing"));
    let mut bad_diff_id = docker_config();
    bad_diff_id["rootfs"]["diff_ids"][0] = "sha256:nope".into();
    assert!(case(bad_diff_id, base_layers(DOCKER_LAYER_GZIP)).contains("diff_ids"));

    let (manifest, _) = fixture(
        Family::Docker,
        &docker_config(),
        base_layers(DOCKER_LAYER_GZIP),
    );
    let err = Image::from_json(&manifest, b"{}").unwrap_err();
    assert!(
        matches!(err, ManifestError::ConfigDigestMismatch { .. }),
        "{err}"
    );

    let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
    assert_eq!(
        Image::from_json(index, b"{}").unwrap_err().to_string(),
        "expected a single-platform image manifest, got an OCI image index; select a platform first"
    );
    let schema1 = br#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#;
    assert!(matches!(
        Image::from_json(schema1, b"{}"),
        Err(ManifestError::Schema1)
    ));
}

#[test]
fn accessors_read_the_base() {
    let image = docker_image();
    assert_eq!(image.family(), Family::Docker);
    assert_eq!(image.manifest_media_type(), DOCKER_MANIFEST);
    assert_eq!(image.layers()[0].digest.as_str(), BASE_LAYER);
    assert_eq!(image.diff_ids()[0].as_str(), BASE_DIFF_ID);
    assert_eq!(image.config_descriptor().media_type, DOCKER_CONFIG);
    assert_eq!(image.platform(), Some(Platform::default()));
}

proptest! {
    /// Any sequence of env edits gives the same bytes twice, digests that match them, and an
    /// Env where every variable appears once.
    #[test]
    fn edits_are_deterministic_and_digests_match(
        edits in prop::collection::vec(
            (prop::sample::select(vec!["PATH", "LANG", "A", "NGINX_VERSION"]), "[a-z/]{0,6}", any::<bool>()),
            0..8,
        )
    ) {
        let build = || {
            let mut image = docker_image();
            for (key, value, append) in &edits {
                let edit = if *append {
                    ConfigEdit::EnvAppend { key: key.to_string(), value: value.clone(), separator: ":".into() }
                } else {
                    ConfigEdit::Env { key: key.to_string(), value: value.clone() }
                };
                image.apply(&edit).unwrap();
            }
            image.finish()
        };
        let (first, second) = (build(), build());
        prop_assert_eq!(&first, &second);
        prop_assert_eq!(&first.manifest.digest, &Digest::sha256(&first.manifest_bytes));
        prop_assert_eq!(&first.config.digest, &Digest::sha256(&first.config_bytes));
        let config = parse(&first.config_bytes);
        let names: Vec<&str> = config["config"]["Env"].as_array().unwrap().iter()
            .map(|entry| entry.as_str().unwrap().split('=').next().unwrap())
            .collect();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        prop_assert_eq!(names.len(), unique.len());
        prop_assert_eq!(&config["container_config"], &docker_config()["container_config"]);
    }
}

#[test]
fn a_base_without_a_name_drops_the_inherited_base_name() {
    let mut image = oci_image();
    image.set_base_annotations(
        Some("registry.example/grandparent:1"),
        &Digest::sha256(b"gp"),
    );
    let parent = Digest::sha256(b"parent");
    image.set_base_annotations(None, &parent);
    let manifest = parse(&image.finish().manifest_bytes);
    let annotations = &manifest["annotations"];
    assert!(
        annotations.get(BASE_NAME_ANNOTATION).is_none(),
        "{annotations}"
    );
    assert_eq!(annotations[BASE_DIGEST_ANNOTATION], parent.as_str());
}

#[test]
fn layer_histories_skip_empty_entries_and_records_survive_both_families() {
    use crate::{layer_records, LayerRecord};
    for (mut image, family) in [(docker_image(), Family::Docker), (oci_image(), Family::Oci)] {
        let (mut layer, diff_id) = new_layer(family, Compression::Gzip);
        let record = LayerRecord {
            name: "app".into(),
            key: format!("sha256:{}", "b".repeat(64)),
            members: vec![],
        };
        record.annotate(&mut layer, family);
        let history = History {
            created_by: "layerize build: app".into(),
            comment: Some(record.to_comment()),
            empty_layer: false,
        };
        image.append_layer(&layer, &diff_id, history).unwrap();
        let histories = image.layer_histories();
        assert_eq!(histories.len(), 2);
        assert_eq!(
            histories[1].as_ref().unwrap().created_by,
            "layerize build: app"
        );
        assert_eq!(layer_records(&image), vec![None, Some(record.clone())]);
        let manifest = image.manifest_json();
        assert_eq!(
            manifest["layers"][1].get("annotations").is_some(),
            family == Family::Oci,
            "{family:?}"
        );
    }
}

#[test]
fn a_short_history_is_matched_from_the_end() {
    let mut config = docker_config();
    config["history"] = json!([]);
    let (manifest, config) = fixture(Family::Docker, &config, base_layers(DOCKER_LAYER_GZIP));
    let mut image = Image::from_json(&manifest, &config).unwrap();
    let (layer, diff_id) = new_layer(Family::Docker, Compression::Gzip);
    image
        .append_layer(&layer, &diff_id, added_by("one"))
        .unwrap();
    let histories = image.layer_histories();
    assert!(histories[0].is_none());
    assert_eq!(histories[1].as_ref().unwrap().created_by, "one");
}

#[test]
fn layer_created_times_follow_the_matched_history_entries() {
    let mut image = docker_image();
    let (layer, diff_id) = new_layer(Family::Docker, Compression::Gzip);
    image
        .append_layer(&layer, &diff_id, added_by("app"))
        .unwrap();
    image.set_created("2024-05-01T00:00:00Z");
    // The empty_layer entries (CMD, STOPSIGNAL) are skipped, as layer_histories skips them.
    assert_eq!(
        image.layer_created_times(),
        vec![
            Some("2023-10-30T00:00:00Z".to_owned()),
            Some("2024-05-01T00:00:00Z".to_owned())
        ]
    );
}
