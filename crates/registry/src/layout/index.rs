//! The `index.json` model: the entries reading needs (tags, digests, sizes), choosing the entry
//! a reference means, and editing the file in place so that other tools' entries and fields
//! survive, under a file lock so that concurrent builds into one layout all keep their tags.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use layerize_manifest::media_type::OCI_INDEX;
use layerize_manifest::Digest;
use serde::Deserialize;
use serde_json::{json, Value};

use super::blob_writer::write_atomically;
use super::{OciLayout, INDEX_FILE, INDEX_LOCK_FILE, REF_NAME_ANNOTATION};
use crate::store::StoreError;

/// The fields of `index.json` that reading needs; writing edits the JSON value instead, so
/// that entries and fields of other tools survive.
#[derive(Deserialize)]
pub(super) struct IndexView {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
pub(super) struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: Option<String>,
    /// Kept as text: other tools' entries may use digest algorithms layerize does not read.
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    pub fn ref_name(&self) -> Option<&str> {
        self.annotations
            .get(REF_NAME_ANNOTATION)
            .map(String::as_str)
    }
}

impl OciLayout {
    pub(super) fn parse_index(&self, bytes: &[u8]) -> Result<IndexView, StoreError> {
        let index: IndexView = serde_json::from_slice(bytes)
            .map_err(|e| self.failed(format!("read {INDEX_FILE}"), format!("invalid JSON: {e}")))?;
        if index.schema_version != 2 {
            return Err(self.failed(
                format!("read {INDEX_FILE}"),
                format!("schemaVersion is {}, expected 2", index.schema_version),
            ));
        }
        Ok(index)
    }

    pub(super) async fn read_index(&self) -> Result<IndexView, StoreError> {
        let bytes = tokio::fs::read(self.root.join(INDEX_FILE))
            .await
            .map_err(|e| self.io_error(format!("read {INDEX_FILE}"), e))?;
        self.parse_index(&bytes)
    }

    /// The `index.json` entry a tag names; `""` means the layout's tag, or else its only image.
    pub(super) fn select<'a>(
        &self,
        index: &'a IndexView,
        reference: &str,
    ) -> Result<&'a Descriptor, StoreError> {
        let tag = match reference {
            "" => self.tag.as_deref(),
            tag => Some(tag),
        };
        match (tag, index.manifests.as_slice()) {
            (Some(tag), manifests) => manifests
                .iter()
                .find(|entry| entry.ref_name() == Some(tag))
                .ok_or_else(|| StoreError::NotFound {
                    store: self.name.clone(),
                    what: format!("tag {tag:?} ({})", describe_images(manifests)),
                }),
            (None, [only]) => Ok(only),
            (None, []) => Err(StoreError::NotFound {
                store: self.name.clone(),
                what: "image (the layout holds no images)".to_owned(),
            }),
            (None, manifests) => Err(self.failed(
                "get manifest",
                format!(
                    "the layout holds {} images ({}); name one with oci:{}:TAG",
                    manifests.len(),
                    describe_images(manifests),
                    self.root.display()
                ),
            )),
        }
    }

    /// Points `tag` (or, untagged, an entry of its own) at a manifest, keeping every other
    /// entry and field of `index.json`. Holds the layout's index lock from reading the file to
    /// replacing it, so that a concurrent update (from this process or another) is never lost.
    pub(super) async fn add_to_index(
        &self,
        tag: Option<&str>,
        media_type: &str,
        digest: &Digest,
        size: usize,
    ) -> Result<(), StoreError> {
        let lock_path = self.root.join(INDEX_LOCK_FILE);
        let _lock = tokio::task::spawn_blocking(move || lock_exclusively(&lock_path))
            .await
            .map_err(|e| self.failed(format!("lock {INDEX_LOCK_FILE}"), e.to_string()))?
            .map_err(|e| self.io_error(format!("lock {INDEX_LOCK_FILE}"), e))?;
        let operation = format!("update {INDEX_FILE}");
        let bytes = tokio::fs::read(self.root.join(INDEX_FILE))
            .await
            .map_err(|e| self.io_error(operation.clone(), e))?;
        self.parse_index(&bytes)?;
        let mut index: Value = serde_json::from_slice(&bytes)
            .map_err(|e| self.failed(operation.clone(), e.to_string()))?;
        let object = index
            .as_object_mut()
            .ok_or_else(|| self.failed(operation.clone(), "index.json is not a JSON object"))?;
        object
            .entry("mediaType")
            .or_insert_with(|| json!(OCI_INDEX));
        let manifests = object
            .entry("manifests")
            .or_insert_with(|| json!([]))
            .as_array_mut()
            .ok_or_else(|| self.failed(operation.clone(), "manifests is not an array"))?;
        manifests.retain(|entry| {
            let entry_tag = entry
                .get("annotations")
                .and_then(|a| a.get(REF_NAME_ANNOTATION))
                .and_then(Value::as_str);
            match tag {
                Some(tag) => entry_tag != Some(tag),
                None => {
                    entry_tag.is_some()
                        || entry.get("digest").and_then(Value::as_str) != Some(digest.as_str())
                }
            }
        });
        let mut descriptor = json!({
            "mediaType": media_type,
            "digest": digest,
            "size": size,
        });
        if let Some(tag) = tag {
            descriptor["annotations"] = json!({ REF_NAME_ANNOTATION: tag });
        }
        manifests.push(descriptor);

        let root = self.root.clone();
        let bytes = serde_json::to_vec(&index).expect("a JSON value serialises");
        tokio::task::spawn_blocking(move || write_atomically(&root, INDEX_FILE, &bytes))
            .await
            .map_err(|e| self.failed(operation.clone(), e.to_string()))?
            .map_err(|e| self.io_error(operation, e))
    }
}

/// Opens (creating it if needed) and locks `path` exclusively, waiting for other holders; the
/// lock goes with the returned file.
fn lock_exclusively(path: &Path) -> io::Result<fs::File> {
    let file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)?;
    file.lock()?;
    Ok(file)
}

/// Checks a tag against the OCI grammar of `org.opencontainers.image.ref.name`: components of
/// letters and digits joined by one of `-._:@+` or `--`, separated by `/`.
pub(crate) fn check_ref_name(name: &str) -> Result<(), String> {
    let valid = name.split('/').all(|component| {
        let alnum = |c: char| c.is_ascii_alphanumeric();
        let mut separators = component.split(alnum).filter(|run| !run.is_empty());
        component.starts_with(alnum)
            && component.ends_with(alnum)
            && separators.all(|run| run == "--" || (run.len() == 1 && "-._:@+".contains(run)))
    });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "layout tag {name:?} must be letters and digits joined by one of - . _ : @ + or --"
        ))
    }
}

/// `tags: a, b, 1 untagged`, for errors that must say what the layout does hold.
fn describe_images(manifests: &[Descriptor]) -> String {
    if manifests.is_empty() {
        return "the layout holds no images".to_owned();
    }
    let tags: Vec<&str> = manifests.iter().filter_map(Descriptor::ref_name).collect();
    let mut text = if tags.is_empty() {
        "no tags".to_owned()
    } else {
        format!("tags: {}", tags.join(", "))
    };
    let untagged = manifests.len() - tags.len();
    if untagged > 0 {
        text.push_str(&format!(", {untagged} untagged"));
    }
    text
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::PathBuf;
    use std::sync::{Arc, Barrier};

    use super::super::test_support::*;
    use super::super::TEMP_PREFIX;
    use super::*;
    use crate::store::Store;

    #[tokio::test]
    async fn tags_select_entries_and_missing_tags_list_the_present_ones() {
        let dir = tempfile::tempdir().unwrap();
        let layout = layout_in(&dir, "l", None);
        let (a, _) = put_image(&layout, "a").await;
        let (b, _) = put_image(&layout, "b").await;
        assert_eq!(layout.get_manifest("a").await.unwrap().bytes, a);
        assert_eq!(layout.get_manifest("b").await.unwrap().bytes, b);
        let tagged = OciLayout::open(layout.path(), Some("b".into())).unwrap();
        assert_eq!(tagged.get_manifest("").await.unwrap().bytes, b);

        let error = layout.get_manifest("c").await.unwrap_err();
        assert!(matches!(error, StoreError::NotFound { .. }), "{error:?}");
        assert_eq!(
            error.to_string(),
            format!(
                "oci:{}: tag \"c\" (tags: a, b) not found",
                layout.path().display()
            )
        );
    }

    #[tokio::test]
    async fn untagged_open_needs_exactly_one_image() {
        let dir = tempfile::tempdir().unwrap();
        let layout = layout_in(&dir, "l", None);
        let error = layout.get_manifest("").await.unwrap_err();
        assert!(
            error.to_string().contains("the layout holds no images"),
            "{error}"
        );

        let (a, _) = put_image(&layout, "a").await;
        assert_eq!(layout.get_manifest("").await.unwrap().bytes, a);

        put_image(&layout, "b").await;
        // An untagged entry, as skopeo writes for `oci:DIR` without a tag.
        let config = b"{}";
        put_bytes(&layout, config).await;
        let untagged = manifest(&Digest::sha256(config), 2, "untagged");
        layout
            .put_manifest("", &untagged, MANIFEST_TYPE)
            .await
            .unwrap();
        let error = layout.get_manifest("").await.unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "{0}: get manifest: the layout holds 3 images (tags: a, b, 1 untagged); \
                 name one with {0}:TAG",
                layout.name()
            )
        );
    }

    #[test]
    fn concurrent_writers_with_layouts_of_their_own_keep_every_tag() {
        // As two builds in two processes do: no lock in memory is shared, only the directory.
        const PER_WRITER: usize = 50;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared");
        OciLayout::create(&path, None).unwrap();
        let start = Arc::new(Barrier::new(2));
        let writers: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|writer| {
                let (path, start) = (path.clone(), start.clone());
                std::thread::spawn(move || {
                    let layout = OciLayout::open(&path, None).unwrap();
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .build()
                        .unwrap();
                    start.wait();
                    runtime.block_on(async {
                        for i in 0..PER_WRITER {
                            put_image(&layout, &format!("{writer}{i}")).await;
                        }
                    });
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        let index = index_json(&OciLayout::open(&path, None).unwrap());
        let mut tags: Vec<&str> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| entry["annotations"][REF_NAME_ANNOTATION].as_str().unwrap())
            .collect();
        tags.sort_unstable();
        let mut expected: Vec<String> = ["a", "b"]
            .iter()
            .flat_map(|writer| (0..PER_WRITER).map(move |i| format!("{writer}{i}")))
            .collect();
        expected.sort_unstable();
        assert_eq!(tags, expected);
    }

    #[tokio::test]
    async fn put_manifest_keeps_foreign_entries_and_fields() {
        let dir = tempfile::tempdir().unwrap();
        let layout = layout_in(&dir, "l", None);
        let foreign_entries = json!([
            {
                "mediaType": OCI_INDEX,
                "digest": Digest::sha256(b"multi"),
                "size": 5,
                "annotations": { REF_NAME_ANNOTATION: "multi", "vendor.key": "kept" },
            },
            {
                "mediaType": MANIFEST_TYPE,
                "digest": Digest::sha256(b"arm"),
                "size": 3,
                "platform": { "architecture": "arm64", "os": "linux" },
            },
            {
                "mediaType": MANIFEST_TYPE,
                "digest": format!("sha512:{}", "ab".repeat(64)),
                "size": 4,
                "annotations": { REF_NAME_ANNOTATION: "sha512" },
            },
        ]);
        let foreign_index = json!({
            "schemaVersion": 2,
            "manifests": foreign_entries.clone(),
            "annotations": { "org.example": "top-level" },
        });
        fs::write(layout.path().join(INDEX_FILE), foreign_index.to_string()).unwrap();

        put_image(&layout, "t").await;
        let (_, digest) = put_image(&layout, "t").await;
        // Same tag again with other bytes: the entry moves, nothing else changes.
        let config = b"{}";
        put_bytes(&layout, config).await;
        let other = manifest(&Digest::sha256(config), 2, "other");
        let other_digest = layout
            .put_manifest("t", &other, MANIFEST_TYPE)
            .await
            .unwrap();
        assert_ne!(other_digest, digest);
        assert!(layout.has_blob(&digest).await.unwrap(), "old blob kept");

        let index = index_json(&layout);
        assert_eq!(index["annotations"], json!({ "org.example": "top-level" }));
        let manifests = index["manifests"].as_array().unwrap();
        assert_eq!(manifests.len(), 4);
        assert_eq!(manifests[..3], foreign_entries.as_array().unwrap()[..]);
        assert_eq!(manifests[3]["digest"], json!(other_digest));
        assert_eq!(
            layout.get_manifest("t").await.unwrap().bytes,
            other,
            "the tag points at the newest manifest"
        );
        assert_eq!(leftovers(&layout), Vec::<PathBuf>::new());
        let root_files: Vec<_> = fs::read_dir(layout.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.starts_with(TEMP_PREFIX))
            .collect();
        assert_eq!(root_files, Vec::<String>::new());
    }
}
