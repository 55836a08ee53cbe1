//! Images whose layers carry layer records: crafted from the suite's build with
//! `layerize_manifest`'s types (a batch layer among them), read from the layout and, copied by
//! skopeo, from a registry in OCI and in Docker v2 form.

use std::path::Path;

use layerize_manifest::{Descriptor, Digest, Family, History, Image, LayerRecord};
use layerize_registry::{BlobBody, OciLayout, Store};
use serde_json::{json, Value};
use support::images;
use support::layerize::run_ok;
use support::registry::Registry;
use support::skopeo;

use super::{
    analyze_json, blob, layerize_json, layerize_text, layout_manifest, Inputs, BASE_MOTD, BIG,
    BUILT, GONE,
};

/// Rewrites the suite's image in `layout` (tag `plain`) with a layer record on each built layer
/// (history comment, and annotations on the OCI descriptors), tagged `recorded`; the third is a
/// batch of two packages. Returns the records.
fn craft_recorded(layout: &Path, base: &images::OciLayout) -> Vec<LayerRecord> {
    let (plain, _) = layout_manifest(layout, "plain");
    let plain_config: Value =
        serde_json::from_slice(&blob(layout, plain["config"]["digest"].as_str().unwrap())).unwrap();
    let base_manifest = base.manifest();
    let base_config = base.blob(base_manifest["config"]["digest"].as_str().unwrap());
    let mut image = Image::from_json(&serde_json::to_vec(&base_manifest).unwrap(), &base_config)
        .expect("the base image");
    let records: Vec<LayerRecord> = (1..=BUILT)
        .map(|n| LayerRecord {
            name: format!("pkg-{n}"),
            key: Digest::sha256(format!("key of pkg-{n}").as_bytes()).to_string(),
            members: if n == 3 {
                vec!["jq".into(), "yq".into()]
            } else {
                vec![]
            },
        })
        .collect();
    let history = plain_config["history"].as_array().unwrap();
    for (n, record) in records.iter().enumerate() {
        let position = 1 + n;
        let mut descriptor: Descriptor =
            serde_json::from_value(plain["layers"][position].clone()).unwrap();
        record.annotate(&mut descriptor, Family::Oci);
        let diff_id: Digest =
            serde_json::from_value(plain_config["rootfs"]["diff_ids"][position].clone()).unwrap();
        let created_by = history[history.len() - BUILT + n]["created_by"]
            .as_str()
            .unwrap()
            .to_owned();
        let history = History {
            created_by,
            comment: Some(record.to_comment()),
            empty_layer: false,
        };
        image.append_layer(&descriptor, &diff_id, history).unwrap();
    }
    image.set_created("2024-05-01T10:00:00Z");
    let finished = image.finish();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = OciLayout::open(layout, Some("recorded".into())).unwrap();
        let config = finished.config_bytes.clone();
        store
            .put_blob(
                &finished.config.digest,
                config.len() as u64,
                BlobBody::Bytes(config.into()),
            )
            .await
            .unwrap();
        store
            .put_manifest(
                "recorded",
                &finished.manifest_bytes,
                &finished.manifest.media_type,
            )
            .await
            .unwrap();
    });
    records
}

fn assert_recorded_tree(tree: &Value, records: &[LayerRecord]) {
    let layers = tree["layers"].as_array().unwrap();
    assert_eq!(layers[0]["origin"], "base");
    assert_eq!(layers[0]["key"], Value::Null);
    for (layer, record) in layers[1..].iter().zip(records) {
        assert_eq!(layer["origin"], "built", "{layer}");
        assert_eq!(layer["name"], record.name);
        assert_eq!(layer["key"], record.key);
    }
    assert_eq!(layers[3]["members"], json!(["jq", "yq"]));
}

#[test]
fn recorded_layers_show_names_keys_and_origins_in_tree_and_export_chain() {
    let inputs = Inputs::new();
    let layout = inputs.layout();
    inputs.build(&inputs.layout_ref("plain"), &inputs.file("r.json"), &[]);
    let records = craft_recorded(&layout, &inputs.base);
    let recorded = inputs.layout_ref("recorded");
    let (manifest, digest) = layout_manifest(&layout, "recorded");

    let tree = layerize_json(&["layers", "--tree", &recorded, "--json"]);
    assert_recorded_tree(&tree, &records);
    let text = layerize_text(&["layers", "--tree", &recorded]);
    assert!(
        text.contains("pkg-2") && text.contains(&records[1].key[..19]),
        "{text}"
    );

    // A report of the build that wrote it says which layers were reused, and from where.
    let statuses = ["base", "reused", "built", "reused", "reused", "built"];
    let report = json!({
        "target": recorded,
        "digest": digest,
        "layers": manifest["layers"].as_array().unwrap().iter().zip(statuses).enumerate().map(|(index, (layer, status))| {
            let mut entry = json!({"name": format!("n{index}"), "digest": layer["digest"], "status": status});
            if status == "reused" {
                entry["reused_from"] = json!(if index == 1 { "target" } else { "registry.example/app:prev" });
            }
            entry
        }).collect::<Vec<_>>(),
    });
    let report_path = inputs.file("recorded-report.json");
    std::fs::write(&report_path, report.to_string()).unwrap();
    let report_arg = report_path.display().to_string();
    let tree = layerize_json(&[
        "layers",
        "--tree",
        &recorded,
        "--json",
        "--report",
        &report_arg,
    ]);
    let origins: Vec<(&str, Option<&str>)> = tree["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| {
            (
                layer["origin"].as_str().unwrap(),
                layer["reused_from"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        origins,
        [
            ("base", None),
            ("reused", Some("target")),
            ("built", None),
            ("reused", Some("registry.example/app:prev")),
            ("reused", Some("registry.example/app:prev")),
            ("built", None),
        ]
    );
    // Records win over the report's names.
    assert_eq!(tree["layers"][1]["name"], "pkg-1");
    let analysis = analyze_json(&recorded, &report_path);
    assert_eq!(
        analysis["cache_hit_rate"],
        json!({"reused": 3, "built": 2, "rate": 0.6})
    );
    assert_eq!(
        analysis["totals"]["wasted_bytes"],
        BIG + GONE + BASE_MOTD.len()
    );

    // export-chain: parents chained, digests the manifest's, keys and times from the config.
    let chain_path = inputs.file("chain.json");
    run_ok(
        support::layerize!()
            .args([
                "export-chain",
                &recorded,
                "--report",
                &report_arg,
                "--output",
            ])
            .arg(&chain_path),
    );
    let chain: Value = serde_json::from_slice(&std::fs::read(&chain_path).unwrap()).unwrap();
    assert_eq!(chain["digest"], digest);
    assert_eq!(chain["config_digest"], manifest["config"]["digest"]);
    assert_eq!(
        chain["media_type"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let exported = chain["layers"].as_array().unwrap();
    let manifest_layers = manifest["layers"].as_array().unwrap();
    assert_eq!(exported.len(), manifest_layers.len());
    for (index, (layer, descriptor)) in exported.iter().zip(manifest_layers).enumerate() {
        assert_eq!(layer["index"], index);
        assert_eq!(layer["digest"], descriptor["digest"]);
        assert_eq!(layer["size"], descriptor["size"]);
        assert_eq!(layer["media_type"], descriptor["mediaType"]);
        let parent = if index == 0 {
            Value::Null
        } else {
            manifest_layers[index - 1]["digest"].clone()
        };
        assert_eq!(layer["parent"], parent, "layer {index}");
        assert_eq!(layer["status"], statuses[index]);
    }
    for (layer, record) in exported[1..].iter().zip(&records) {
        assert_eq!(layer["key"], record.key);
        assert_eq!(layer["name"], record.name);
        assert_eq!(layer["created"], "2024-05-01T10:00:00Z");
    }
    assert_eq!(exported[0]["key"], Value::Null);
    assert_eq!(exported[1]["reused_from"], "target");

    // The records travel through a registry, in OCI form and as Docker v2 (history only, as
    // Docker layer descriptors carry no annotations).
    let registry = Registry::open();
    let oci_remote = format!("{}/inspect/recorded:oci", registry.host());
    skopeo::copy(&recorded, &oci_remote, None, &["--preserve-digests"]);
    let tree = layerize_json(&["layers", "--tree", &oci_remote, "--json"]);
    assert_eq!(tree["digest"], digest);
    assert_recorded_tree(&tree, &records);
    let docker_remote = format!("{}/inspect/recorded:docker", registry.host());
    skopeo::copy(&recorded, &docker_remote, None, &["--format", "v2s2"]);
    let exported = layerize_json(&["export-chain", &docker_remote]);
    assert_eq!(
        exported["media_type"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let keys: Vec<&Value> = exported["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| &l["key"])
        .collect();
    let mut expected = vec![&Value::Null];
    let record_keys: Vec<Value> = records.iter().map(|record| json!(record.key)).collect();
    expected.extend(record_keys.iter());
    assert_eq!(keys, expected);
}
