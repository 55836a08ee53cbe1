//! What a pushed image says about the layers layerize built, read as any other client would read
//! it (from the manifest and config JSON, not with layerize's own parser): the record in each
//! layer's config history entry (`comment` = `layerize.layer/v1 {"name","key","members"}`) and,
//! on OCI manifests, the `dev.layerize.layer.{name,key}` annotations on the layer descriptor.

use serde_json::Value;

/// The history comment prefix of a record.
pub const COMMENT_PREFIX: &str = "layerize.layer/v1 ";
pub const NAME_ANNOTATION: &str = "dev.layerize.layer.name";
pub const KEY_ANNOTATION: &str = "dev.layerize.layer.key";

/// One layer's record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub name: String,
    pub key: String,
    /// The packages of a batch layer; empty for a layer that is one package.
    pub members: Vec<String>,
}

impl Recorded {
    /// The packages the layer holds: its members, or itself.
    pub fn packages(&self) -> Vec<String> {
        if self.members.is_empty() {
            vec![self.name.clone()]
        } else {
            self.members.clone()
        }
    }
}

/// The record in each history entry of `config` that made a layer (those without
/// `empty_layer: true`), in order, `None` where an entry has no record. There is one such entry
/// per layer of the manifest; [`records`] checks that.
pub fn history_records(config: &Value) -> Vec<Option<Recorded>> {
    config["history"]
        .as_array()
        .expect("the config has a history")
        .iter()
        .filter(|entry| entry["empty_layer"] != true)
        .map(|entry| {
            let json = entry["comment"].as_str()?.strip_prefix(COMMENT_PREFIX)?;
            let record: Value = serde_json::from_str(json).expect("a record's JSON parses");
            let members = record["members"]
                .as_array()
                .map(|names| names.iter().map(string).collect())
                .unwrap_or_default();
            Some(Recorded {
                name: string(&record["name"]),
                key: string(&record["key"]),
                members,
            })
        })
        .collect()
}

/// The record of every layer of `manifest`, in manifest order, from `config`'s history; on an
/// OCI manifest the descriptor's annotations must say the same name and key, and a Docker v2
/// descriptor must carry none.
pub fn records(manifest: &Value, config: &Value) -> Vec<Option<Recorded>> {
    let layers = manifest["layers"]
        .as_array()
        .expect("the manifest lists layers");
    let from_history = history_records(config);
    assert_eq!(
        from_history.len(),
        layers.len(),
        "one history entry per layer: {config}"
    );
    let docker = manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json";
    for (descriptor, record) in layers.iter().zip(&from_history) {
        let annotations = &descriptor["annotations"];
        if docker {
            assert!(
                annotations.is_null(),
                "a Docker v2 layer descriptor with annotations: {descriptor}"
            );
            continue;
        }
        let annotated = (
            annotations[NAME_ANNOTATION].as_str(),
            annotations[KEY_ANNOTATION].as_str(),
        );
        let expected = record
            .as_ref()
            .map(|record| (Some(record.name.as_str()), Some(record.key.as_str())))
            .unwrap_or((None, None));
        assert_eq!(
            annotated, expected,
            "the annotations of {descriptor} and its history record disagree"
        );
    }
    from_history
}

fn string(value: &Value) -> String {
    value
        .as_str()
        .unwrap_or_else(|| panic!("expected a string, got {value}"))
        .to_owned()
}
