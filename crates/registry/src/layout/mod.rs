//! The OCI image layout on disk (`oci-layout`, `index.json`, `blobs/sha256/<hex>`) as a
//! [`Store`](crate::Store): read what skopeo, umoci or podman wrote, and write layouts they
//! accept. This module owns the layout directory itself (opening, creating, validating it);
//! the parts live below it:
//!
//! - `index`: the `index.json` model, tags, and editing the file in place;
//! - `blob_writer`: blobs written to a temporary file inside `blobs/`, verified (size and
//!   sha256) and then renamed into place, so a blob name never holds anything but its content;
//!   blobs of another layout hard-linked (copied only across file systems), never re-compressed;
//! - `store`: the [`Store`](crate::Store) operations on top of both.

mod blob_writer;
mod index;
mod store;
#[cfg(test)]
mod test_support;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use layerize_manifest::media_type::OCI_INDEX;
use layerize_manifest::Digest;
use serde_json::{json, Value};

use crate::reference::ImageRef;
use crate::store::StoreError;

use blob_writer::write_atomically;
pub(crate) use index::check_ref_name;

/// The annotation of an `index.json` entry that carries its tag.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
const LAYOUT_FILE: &str = "oci-layout";
const INDEX_FILE: &str = "index.json";
/// Locked (`flock`) around every read-modify-write of `index.json`, by every layerize process:
/// `index.json` itself is replaced by a rename, so it cannot carry the lock.
const INDEX_LOCK_FILE: &str = "index.json.lock";
const LAYOUT_VERSION: &str = "1.0.0";
/// Registries refuse larger manifests, so anything bigger that a tag points at is not one.
const MAX_MANIFEST_SIZE: u64 = 4 << 20;
const READ_CHUNK: usize = 256 << 10;
const TEMP_PREFIX: &str = ".tmp-";

/// An OCI image layout directory, optionally narrowed to one tag (`oci:DIR:TAG`).
pub struct OciLayout {
    root: PathBuf,
    tag: Option<String>,
    name: String,
}

impl OciLayout {
    /// Opens an existing layout. `tag`, if given, is the image that `get_manifest("")` and
    /// `put_manifest("")` mean; without it `get_manifest("")` takes the layout's only image.
    pub fn open(path: impl Into<PathBuf>, tag: Option<String>) -> Result<Self, StoreError> {
        let layout = Self::new(path.into(), tag)?;
        layout.validate()?;
        Ok(layout)
    }

    /// Opens the layout at `path`, first making one there if the directory is missing or empty.
    pub fn create(path: impl Into<PathBuf>, tag: Option<String>) -> Result<Self, StoreError> {
        let layout = Self::new(path.into(), tag)?;
        if !layout.root.join(LAYOUT_FILE).exists() {
            layout.initialise()?;
        }
        layout.validate()?;
        Ok(layout)
    }

    /// The directory of the layout.
    pub fn path(&self) -> &Path {
        &self.root
    }

    fn new(root: PathBuf, tag: Option<String>) -> Result<Self, StoreError> {
        let name = ImageRef::Layout {
            path: root.clone(),
            tag: tag.clone(),
        }
        .to_string();
        let layout = OciLayout { root, tag, name };
        if let Some(tag) = &layout.tag {
            check_ref_name(tag).map_err(|message| layout.failed("open", message))?;
        }
        Ok(layout)
    }

    fn initialise(&self) -> Result<(), StoreError> {
        let root = &self.root;
        if root.exists() {
            let mut entries = fs::read_dir(root)
                .map_err(|e| self.io_error(format!("read {}", root.display()), e))?;
            if entries.next().is_some() {
                return Err(self.failed(
                    "create",
                    format!(
                        "{} is neither empty nor an OCI image layout (no {LAYOUT_FILE} file); \
                         refusing to write into it",
                        root.display()
                    ),
                ));
            }
        }
        fs::create_dir_all(root.join("blobs").join("sha256"))
            .map_err(|e| self.io_error(format!("create {}/blobs/sha256", root.display()), e))?;
        let index = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [],
        });
        let version = json!({ "imageLayoutVersion": LAYOUT_VERSION });
        // oci-layout last: the directory only claims to be a layout once index.json exists.
        for (file, value) in [(INDEX_FILE, index), (LAYOUT_FILE, version)] {
            write_atomically(root, file, &value.to_string().into_bytes())
                .map_err(|e| self.io_error(format!("write {file}"), e))?;
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), StoreError> {
        let root = &self.root;
        if !root.is_dir() {
            return Err(self.failed(
                "open",
                format!("{} does not exist or is not a directory", root.display()),
            ));
        }
        let version = match fs::read(root.join(LAYOUT_FILE)) {
            Ok(version) => version,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(self.failed(
                    "open",
                    format!(
                        "not an OCI image layout: {} (no {LAYOUT_FILE} file)",
                        root.display()
                    ),
                ))
            }
            Err(e) => return Err(self.io_error(format!("read {LAYOUT_FILE}"), e)),
        };
        let version: Option<String> = serde_json::from_slice::<Value>(&version)
            .ok()
            .and_then(|v| v.get("imageLayoutVersion")?.as_str().map(str::to_owned));
        if !version.as_deref().is_some_and(|v| v.starts_with("1.")) {
            return Err(self.failed(
                "open",
                format!(
                    "not an OCI image layout: {} ({LAYOUT_FILE} does not say \
                     {{\"imageLayoutVersion\":\"1.0.0\"}})",
                    root.display()
                ),
            ));
        }
        let index = fs::read(root.join(INDEX_FILE))
            .map_err(|e| self.io_error(format!("read {INDEX_FILE}"), e))?;
        self.parse_index(&index)?;
        Ok(())
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm())
            .join(digest.hex())
    }

    fn check_digest(&self, expected: &Digest, actual: Digest) -> Result<(), StoreError> {
        if *expected == actual {
            Ok(())
        } else {
            Err(StoreError::DigestMismatch {
                store: self.name.clone(),
                expected: expected.clone(),
                actual,
            })
        }
    }

    fn size_mismatch(&self, digest: &Digest, expected: u64, received: u64) -> StoreError {
        self.failed(
            format!("write blob {digest}"),
            format!("size mismatch: expected {expected} bytes, received {received}"),
        )
    }

    fn failed(&self, operation: impl Into<String>, message: impl Into<String>) -> StoreError {
        StoreError::Failed {
            store: self.name.clone(),
            operation: operation.into(),
            message: message.into(),
        }
    }

    fn io_error(&self, operation: impl Into<String>, source: io::Error) -> StoreError {
        StoreError::Io {
            store: self.name.clone(),
            operation: operation.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_and_create_refuse_what_is_not_a_layout() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let error = OciLayout::open(&missing, None).err().unwrap();
        assert!(error.to_string().contains("does not exist"), "{error}");

        let plain = dir.path().join("plain");
        fs::create_dir(&plain).unwrap();
        fs::write(plain.join("notes.txt"), "mine").unwrap();
        let error = OciLayout::open(&plain, None).err().unwrap();
        assert_eq!(
            error.to_string(),
            format!(
                "oci:{0}: open: not an OCI image layout: {0} (no oci-layout file)",
                plain.display()
            )
        );
        let error = OciLayout::create(&plain, None).err().unwrap();
        assert!(error.to_string().contains("refusing to write"), "{error}");
        assert!(!plain.join(LAYOUT_FILE).exists());

        let bad_tag = OciLayout::create(dir.path().join("new"), Some("a b".into()))
            .err()
            .unwrap();
        assert!(
            bad_tag.to_string().contains("layout tag \"a b\""),
            "{bad_tag}"
        );
    }
}
