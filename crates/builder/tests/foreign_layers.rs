//! A base with a foreign (non-distributable) layer: the build keeps its descriptor but never tries
//! to copy its blob, which no registry or layout is meant to hold.

use std::sync::Arc;

use layerize_builder::layer::filemap::{EntryMeta, FileSource, HostModes};
use layerize_builder::layer::recipe::Input;
use layerize_builder::layer::LayerOptions;
use layerize_builder::{build, BuildRequest, Endpoints, LayerSpec, Origin};
use layerize_manifest::media_type::{DOCKER_CONFIG, DOCKER_FOREIGN_LAYER_TAR, DOCKER_MANIFEST};
use layerize_manifest::Digest;
use layerize_registry::{BlobBody, OciLayout, Store};
use serde_json::json;

#[tokio::test]
async fn foreign_base_layers_are_referenced_not_copied() {
    let dir = tempfile::tempdir().unwrap();
    let base = OciLayout::create(dir.path().join("base"), Some("base".into())).unwrap();
    let foreign_diff_id = Digest::sha256(b"windows base layer tar");
    let foreign_digest = Digest::sha256(b"windows base layer blob");
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [foreign_diff_id]},
    }))
    .unwrap();
    let config_digest = Digest::sha256(&config);
    base.put_blob(
        &config_digest,
        config.len() as u64,
        BlobBody::Bytes(config.clone().into()),
    )
    .await
    .unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": [{
            "mediaType": DOCKER_FOREIGN_LAYER_TAR,
            "digest": foreign_digest,
            "size": 1234,
            "urls": ["https://example.invalid/layer.tar"],
        }],
    }))
    .unwrap();
    base.put_manifest("base", &manifest, DOCKER_MANIFEST)
        .await
        .unwrap();

    let target_dir = dir.path().join("target");
    let target = OciLayout::create(&target_dir, Some("app".into())).unwrap();
    let endpoints = Endpoints {
        base: Arc::new(base),
        base_reference: "base".into(),
        base_name: None,
        target: Arc::new(target),
        target_name: "oci:target:app".into(),
        target_reference: "app".into(),
        target_needs_oci: true,
        cache_from: Vec::new(),
    };
    let request = BuildRequest {
        platform: None,
        layers: vec![LayerSpec {
            name: "hello".into(),
            created_by: "test".into(),
            inputs: vec![Input::File {
                source: FileSource::Inline(b"hi\n".to_vec()),
                dest: "/hello".into(),
                meta: EntryMeta::default(),
                modes: HostModes::Keep,
            }],
            members: Vec::new(),
            script: None,
            apt: None,
        }],
        edits: Vec::new(),
        annotations: Vec::new(),
        layer_options: LayerOptions::default(),
        created: "1970-01-01T00:00:00Z".into(),
        jobs: 2,
        cache_dir: None,
        max_layers: None,
        dry_run: false,
        sandbox: Default::default(),
        step_root: Default::default(),
        apt: Default::default(),
    };
    let report = build(&endpoints, request).await.unwrap();

    assert_eq!(report.layers.len(), 2);
    assert_eq!(report.layers[0].status, Origin::Base);
    assert_eq!(report.layers[0].digest, foreign_digest);
    assert_eq!(
        report.layers[0].media_type,
        "application/vnd.oci.image.layer.nondistributable.v1.tar"
    );
    assert_eq!(
        report.blobs_skipped, 1,
        "the foreign layer counts as not sent"
    );
    assert!(!target_dir
        .join("blobs/sha256")
        .join(foreign_digest.hex())
        .exists());
}
