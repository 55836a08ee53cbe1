//! Bad input fails a build before any blob moves: the target layout holds no blob and no tag
//! afterwards, whichever input was wrong and wherever it came in the request.

use std::path::Path;
use std::sync::Arc;

use layerize_builder::layer::filemap::{EntryMeta, FileMap, FileSource, HostModes};
use layerize_builder::layer::recipe::Input;
use layerize_builder::layer::{write_layer, LayerOptions};
use layerize_builder::{build, BuildError, BuildRequest, Endpoints, LayerSpec};
use layerize_manifest::media_type::{
    DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST, OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST,
};
use layerize_manifest::{ConfigEdit, Digest};
use layerize_registry::{BlobBody, OciLayout, Store};
use serde_json::json;

/// Which manifest family the base uses.
#[derive(Clone, Copy)]
enum Family {
    Oci,
    Docker,
}

/// A base layout with one real gzip layer holding `etc/hostname`.
async fn base_layout(dir: &Path, family: Family) -> OciLayout {
    let base = OciLayout::create(dir, Some("base".into())).unwrap();
    let mut files = FileMap::new();
    files
        .add_file(
            "/etc/hostname",
            FileSource::Inline(b"base\n".to_vec()),
            EntryMeta::default(),
        )
        .unwrap();
    let mut blob = Vec::new();
    let written = write_layer(&files, &LayerOptions::default(), &mut blob).unwrap();
    let put = |digest: Digest, bytes: Vec<u8>| {
        let base = &base;
        async move {
            base.put_blob(&digest, bytes.len() as u64, BlobBody::Bytes(bytes.into()))
                .await
                .unwrap();
        }
    };
    put(written.digest.clone(), blob).await;
    let (manifest_type, config_type, layer_type) = match family {
        Family::Oci => (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER_GZIP),
        Family::Docker => (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER_GZIP),
    };
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [written.diff_id]},
    }))
    .unwrap();
    let config_digest = Digest::sha256(&config);
    put(config_digest.clone(), config.clone()).await;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {"mediaType": config_type, "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": layer_type, "digest": written.digest, "size": written.size}],
    }))
    .unwrap();
    base.put_manifest("base", &manifest, manifest_type)
        .await
        .unwrap();
    base
}

fn inline(dest: &str) -> Input {
    Input::File {
        source: FileSource::Inline(b"app\n".to_vec()),
        dest: dest.into(),
        meta: EntryMeta::default(),
        modes: HostModes::Keep,
    }
}

fn layer(name: &str, inputs: Vec<Input>) -> LayerSpec {
    LayerSpec {
        name: name.into(),
        created_by: format!("test {name}"),
        inputs,
        members: Vec::new(),
        script: None,
        apt: None,
    }
}

/// Runs a build of `layers` with `edits` and `annotations` on a fresh base into a fresh target
/// layout; returns the error and the number of blobs the target holds afterwards.
async fn failed_build(
    family: Family,
    layers: Vec<LayerSpec>,
    edits: Vec<ConfigEdit>,
    annotations: Vec<(String, String)>,
) -> (BuildError, usize) {
    let dir = tempfile::tempdir().unwrap();
    let base = base_layout(&dir.path().join("base"), family).await;
    let target_dir = dir.path().join("target");
    // A layout target takes OCI media types, so a Docker base is converted and could carry
    // annotations; a Docker family is kept only for registry targets.
    let target_needs_oci = matches!(family, Family::Oci);
    let endpoints = Endpoints {
        base: Arc::new(base),
        base_reference: "base".into(),
        base_name: None,
        target: Arc::new(OciLayout::create(&target_dir, Some("app".into())).unwrap()),
        target_name: "oci:target:app".into(),
        target_reference: "app".into(),
        target_needs_oci,
        cache_from: Vec::new(),
    };
    let request = BuildRequest {
        platform: None,
        layers,
        edits,
        annotations,
        layer_options: LayerOptions::default(),
        created: "1970-01-01T00:00:00Z".into(),
        jobs: 4,
        cache_dir: None,
        max_layers: None,
        dry_run: false,
        sandbox: Default::default(),
        step_root: Default::default(),
        apt: Default::default(),
    };
    let error = match build(&endpoints, request).await {
        Ok(report) => panic!("the build succeeded: {}", report.digest),
        Err(error) => error,
    };
    let blobs = std::fs::read_dir(target_dir.join("blobs/sha256"))
        .map(|entries| entries.count())
        .unwrap_or(0);
    let index = std::fs::read_to_string(target_dir.join("index.json")).unwrap();
    assert!(!index.contains("\"app\""), "the tag was written: {index}");
    (error, blobs)
}

#[tokio::test]
async fn a_relative_workdir_fails_before_any_blob_moves() {
    let layers = vec![layer("app", vec![inline("/app")])];
    let edits = vec![ConfigEdit::WorkingDir("srv".into())];
    let (error, blobs) = failed_build(Family::Oci, layers, edits, Vec::new()).await;
    assert!(error.to_string().contains("absolute path"), "{error}");
    assert_eq!(blobs, 0);
}

#[tokio::test]
async fn a_bad_exposed_port_fails_before_any_blob_moves() {
    let layers = vec![layer("app", vec![inline("/app")])];
    let edits = vec![ConfigEdit::ExposedPort("70000/tcp".into())];
    let (error, blobs) = failed_build(Family::Oci, layers, edits, Vec::new()).await;
    assert!(error.to_string().contains("1-65535"), "{error}");
    assert_eq!(blobs, 0);
}

#[tokio::test]
async fn an_annotation_on_a_docker_manifest_fails_before_any_blob_moves() {
    let layers = vec![layer("app", vec![inline("/app")])];
    let annotations = vec![("org.example.a".to_owned(), "b".to_owned())];
    let (error, blobs) = failed_build(Family::Docker, layers, Vec::new(), annotations).await;
    assert!(error.to_string().contains("annotation"), "{error}");
    assert_eq!(blobs, 0);
}

#[tokio::test]
async fn a_missing_source_in_a_later_layer_fails_before_any_blob_moves() {
    let layers = vec![
        layer("first", vec![inline("/first")]),
        layer(
            "second",
            vec![Input::File {
                source: FileSource::Host("/nonexistent/layerize/app".into()),
                dest: "/app".into(),
                meta: EntryMeta::default(),
                modes: HostModes::Keep,
            }],
        ),
    ];
    let (error, blobs) = failed_build(Family::Oci, layers, Vec::new(), Vec::new()).await;
    let message = error.to_string();
    assert!(
        message.contains("second") && message.contains("/nonexistent/layerize/app"),
        "{message}"
    );
    assert_eq!(blobs, 0);
}
