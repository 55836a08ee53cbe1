//! The local layer cache: what this machine learnt about layers it built or reused, under the
//! cache directory (`$XDG_CACHE_HOME/layerize` by default) —
//! `layers/v1/<key hex>.json`: the blob a layer key stands for (digest, size, diffID), and
//! `fingerprints/v1/<fingerprint hex>`: the diffID of a file map whose host files have not
//! changed, so that an unchanged layer is not even hashed, and
//! `empty-steps/v1/<key hex>`: script steps that changed nothing, so made no layer.
//!
//! Every entry is one small file, written to a temporary file and renamed into place; its
//! modification time is its last use (bumped on every hit), for `layerize cache clean`. A cache
//! that cannot be read or written never fails a build: it is logged and ignored.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use layerize_manifest::Digest;
use serde::{Deserialize, Serialize};
use tracing::warn;

const VERSION: u32 = 1;

/// A layer the cache knows the blob of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedLayer {
    pub key: String,
    pub digest: Digest,
    pub size: u64,
    pub diff_id: Digest,
    /// The name it was last built or reused under, for people reading the cache.
    pub name: String,
}

pub struct LocalCache {
    layers: PathBuf,
    fingerprints: PathBuf,
    empty_steps: PathBuf,
}

impl LocalCache {
    pub fn new(cache_dir: &Path) -> LocalCache {
        LocalCache {
            layers: cache_dir.join("layers").join(format!("v{VERSION}")),
            fingerprints: cache_dir.join("fingerprints").join(format!("v{VERSION}")),
            empty_steps: cache_dir.join("empty-steps").join(format!("v{VERSION}")),
        }
    }

    /// Whether any layer or empty step is recorded: with none, no key can hit here.
    pub fn has_layers(&self) -> bool {
        [&self.layers, &self.empty_steps]
            .iter()
            .any(|dir| fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()))
    }

    /// Whether the script step with `key` is known to change nothing.
    pub fn is_empty_step(&self, key: &str) -> bool {
        hex_of(key).is_some_and(|hex| read_entry(&self.empty_steps.join(hex)).is_some())
    }

    /// Remembers that the script step with `key` (last run as `name`) changed nothing.
    pub fn record_empty_step(&self, key: &str, name: &str) {
        if let Some(hex) = hex_of(key) {
            write_entry(&self.empty_steps, hex, name.as_bytes());
        }
    }

    pub fn layer(&self, key: &str) -> Option<CachedLayer> {
        let path = self.layers.join(format!("{}.json", hex_of(key)?));
        let bytes = read_entry(&path)?;
        match serde_json::from_slice::<CachedLayer>(&bytes) {
            Ok(layer) if layer.key == key => Some(layer),
            Ok(_) => {
                warn!(path = %path.display(), "ignoring a cached layer recorded under another key");
                None
            }
            Err(error) => {
                warn!(path = %path.display(), %error, "ignoring a damaged cached layer");
                None
            }
        }
    }

    pub fn record_layer(&self, layer: &CachedLayer) {
        let Some(hex) = hex_of(&layer.key) else {
            return;
        };
        let json = serde_json::to_vec(layer).expect("a cached layer serialises");
        write_entry(&self.layers, &format!("{hex}.json"), &json);
    }

    /// The diffID recorded for a file map fingerprint.
    pub fn diff_id(&self, fingerprint: &Digest) -> Option<Digest> {
        let path = self.fingerprints.join(fingerprint.hex());
        let bytes = read_entry(&path)?;
        let parsed = std::str::from_utf8(&bytes)
            .ok()
            .and_then(|text| text.trim().parse::<Digest>().ok());
        if parsed.is_none() {
            warn!(path = %path.display(), "ignoring a damaged fingerprint entry");
        }
        parsed
    }

    pub fn record_diff_id(&self, fingerprint: &Digest, diff_id: &Digest) {
        write_entry(
            &self.fingerprints,
            fingerprint.hex(),
            diff_id.to_string().as_bytes(),
        );
    }
}

/// The hex part of a `sha256:<hex>` key, which names its file; `None` for anything else, so a
/// key never becomes a path outside the cache.
fn hex_of(key: &str) -> Option<&str> {
    key.parse::<Digest>()
        .ok()
        .and_then(|_| key.strip_prefix("sha256:"))
}

/// Reads an entry and marks it used (its mtime is what `layerize cache clean` goes by).
pub(crate) fn read_entry(path: &Path) -> Option<Vec<u8>> {
    let read = || -> io::Result<Vec<u8>> {
        let mut file = File::open(path)?;
        let _ = file.set_modified(SystemTime::now());
        let mut bytes = Vec::new();
        io::Read::read_to_end(&mut file, &mut bytes)?;
        Ok(bytes)
    };
    match read() {
        Ok(bytes) => Some(bytes),
        Err(error) if error.kind() == io::ErrorKind::NotFound => None,
        Err(error) => {
            warn!(path = %path.display(), %error, "cannot read a cache entry");
            None
        }
    }
}

/// Writes an entry by rename, so that a reader never sees half of it; a cache that cannot be
/// written is a warning, never an error.
pub(crate) fn write_entry(dir: &Path, name: &str, bytes: &[u8]) {
    let write = || -> io::Result<()> {
        fs::create_dir_all(dir)?;
        let mut temp = tempfile::NamedTempFile::new_in(dir)?;
        temp.write_all(bytes)?;
        temp.persist(dir.join(name)).map_err(|error| error.error)?;
        Ok(())
    };
    if let Err(error) = write() {
        warn!(dir = %dir.display(), %error, "cannot write a cache entry");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(key_byte: u8) -> CachedLayer {
        let key = Digest::sha256(&[key_byte]).to_string();
        CachedLayer {
            key,
            digest: Digest::sha256(b"blob"),
            size: 4,
            diff_id: Digest::sha256(b"tar"),
            name: "app".into(),
        }
    }

    #[test]
    fn layers_and_fingerprints_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LocalCache::new(dir.path());
        assert!(!cache.has_layers());
        assert_eq!(cache.layer(&layer(1).key), None);
        cache.record_layer(&layer(1));
        assert!(cache.has_layers());
        assert_eq!(cache.layer(&layer(1).key), Some(layer(1)));
        assert_eq!(cache.layer(&layer(2).key), None);
        let fingerprint = Digest::sha256(b"fp");
        assert_eq!(cache.diff_id(&fingerprint), None);
        cache.record_diff_id(&fingerprint, &layer(1).diff_id);
        assert_eq!(cache.diff_id(&fingerprint), Some(layer(1).diff_id));
    }

    #[test]
    fn damaged_misfiled_and_odd_keys_are_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LocalCache::new(dir.path());
        cache.record_layer(&layer(1));
        let path = |key: &str| cache.layers.join(format!("{}.json", hex_of(key).unwrap()));
        fs::copy(path(&layer(1).key), path(&layer(2).key)).unwrap();
        assert_eq!(cache.layer(&layer(2).key), None);
        fs::write(path(&layer(1).key), b"{not json").unwrap();
        assert_eq!(cache.layer(&layer(1).key), None);
        assert_eq!(cache.layer("../../etc/passwd"), None);
        let fingerprint = Digest::sha256(b"fp");
        cache.record_diff_id(&fingerprint, &layer(1).diff_id);
        fs::write(cache.fingerprints.join(fingerprint.hex()), b"junk").unwrap();
        assert_eq!(cache.diff_id(&fingerprint), None);
    }

    #[test]
    fn a_hit_marks_the_entry_used() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LocalCache::new(dir.path());
        cache.record_layer(&layer(1));
        let path = cache
            .layers
            .join(format!("{}.json", hex_of(&layer(1).key).unwrap()));
        let old = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        cache.layer(&layer(1).key).unwrap();
        assert!(fs::metadata(&path).unwrap().modified().unwrap() > old);
    }
}
