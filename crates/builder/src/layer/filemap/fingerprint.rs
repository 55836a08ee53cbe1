//! A file map's fingerprint: a digest of everything that decides its tar stream except the bytes
//! of host files, which stand in by their identity on disk (device, inode, size, modification and
//! change times). Equal fingerprints on one machine mean an equal tar, so a build can skip
//! hashing unchanged inputs; it is a local shortcut only, never recorded in an image.

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime};

use layerize_manifest::Digest;
use sha2::{Digest as _, Sha256};

use super::entry::{Content, Entry, Node, SpecialKind};
use super::{FileMap, FileMapError, Skipped};

/// What [`FileMap::fingerprint`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    pub digest: Digest,
    /// The latest modification or change time of any host file the map reads. A file changed
    /// again within the file system's timestamp granularity after this would keep its
    /// fingerprint, so a fingerprint is only worth remembering once this is safely in the past
    /// (git's "racily clean" rule).
    pub newest_change: SystemTime,
}

impl Fingerprint {
    /// Whether the fingerprint may be remembered at `now`: every host file it covers last
    /// changed more than `margin` before.
    pub fn is_settled(&self, now: SystemTime, margin: Duration) -> bool {
        self.newest_change + margin < now
    }
}

impl FileMap {
    /// Walks the map like [`FileMap::validate`] (so it checks the same things), hashing every
    /// entry's path, type, mode, owner, time, attributes and link target, the content of inline
    /// files, and the identity of host files and tar members. `mtime` is the layer's default
    /// entry time. The `seed` says what else goes into the tar that the map does not know of
    /// (the identity of tar inputs, which the map holds only as spooled copies).
    pub fn fingerprint(&self, mtime: u64, seed: &[u8]) -> Result<Fingerprint, FileMapError> {
        let mut hasher = Sha256::new();
        let mut newest_change = SystemTime::UNIX_EPOCH;
        hasher.update(b"layerize file map fingerprint v1\0");
        hasher.update(seed);
        hasher.update(mtime.to_le_bytes());
        for item in self.walk(Skipped::Quiet) {
            let (path, entry) = item?;
            field(&mut hasher, path.as_bytes());
            hash_meta(&mut hasher, &entry);
            match &entry.node {
                Node::File(Content::Inline(bytes)) => {
                    hasher.update(b"i");
                    hasher.update(Sha256::digest(bytes));
                }
                Node::File(Content::Host(source)) => {
                    let metadata =
                        std::fs::metadata(source).map_err(|source_error| FileMapError::Io {
                            path: source.clone(),
                            source: source_error,
                        })?;
                    hasher.update(b"h");
                    hasher.update(file_identity(&metadata));
                    for time in [metadata.modified(), metadata.created()]
                        .into_iter()
                        .flatten()
                        .chain(change_time(&metadata))
                    {
                        newest_change = newest_change.max(time);
                    }
                }
                Node::File(Content::TarMember { offset, size, .. }) => {
                    hasher.update(b"t");
                    hasher.update(offset.to_le_bytes());
                    hasher.update(size.to_le_bytes());
                }
                Node::Dir => hasher.update(b"d"),
                Node::Symlink(target) => {
                    hasher.update(b"l");
                    field(&mut hasher, target.as_bytes());
                }
                Node::Hardlink(target) => {
                    hasher.update(b"L");
                    field(&mut hasher, target.as_bytes());
                }
                Node::Special { kind, major, minor } => {
                    hasher.update(match kind {
                        SpecialKind::Char => b"c",
                        SpecialKind::Block => b"b",
                        SpecialKind::Fifo => b"p",
                    });
                    hasher.update(major.to_le_bytes());
                    hasher.update(minor.to_le_bytes());
                }
            }
        }
        Ok(Fingerprint {
            digest: Digest::from_sha256_raw(hasher.finalize().into()),
            newest_change,
        })
    }
}

/// What stands in for a host file's content in a fingerprint: device, inode, size, and the
/// modification and change times to the nanosecond, as little-endian bytes.
pub fn file_identity(metadata: &std::fs::Metadata) -> Vec<u8> {
    [
        metadata.dev(),
        metadata.ino(),
        metadata.size(),
        metadata.mtime() as u64,
        metadata.mtime_nsec() as u64,
        metadata.ctime() as u64,
        metadata.ctime_nsec() as u64,
    ]
    .iter()
    .flat_map(|number| number.to_le_bytes())
    .collect()
}

/// The inode change time, which `std` does not expose as a `SystemTime`.
fn change_time(metadata: &std::fs::Metadata) -> Option<SystemTime> {
    let seconds = u64::try_from(metadata.ctime()).ok()?;
    let nanos = u32::try_from(metadata.ctime_nsec()).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::new(seconds, nanos))
}

fn hash_meta(hasher: &mut Sha256, entry: &Entry) {
    hasher.update(entry.mode.to_le_bytes());
    hasher.update(entry.uid.to_le_bytes());
    hasher.update(entry.gid.to_le_bytes());
    match entry.mtime {
        Some(mtime) => {
            hasher.update(b"m");
            hasher.update(mtime.to_le_bytes());
        }
        None => hasher.update(b"-"),
    }
    hasher.update((entry.xattrs.len() as u64).to_le_bytes());
    for (name, value) in &entry.xattrs {
        field(hasher, name.as_bytes());
        field(hasher, value);
    }
}

/// A length-prefixed field, so that no two different sequences of fields hash alike.
fn field(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use crate::layer::filemap::{EntryMeta, FileMap, FileSource};

    fn map_with(host: &std::path::Path, inline: &[u8]) -> FileMap {
        let mut map = FileMap::new();
        map.add_file(
            "/app",
            FileSource::Host(host.to_owned()),
            EntryMeta::default(),
        )
        .unwrap();
        map.add_file(
            "/etc/version",
            FileSource::Inline(inline.to_vec()),
            EntryMeta::default(),
        )
        .unwrap();
        map
    }

    #[test]
    fn changes_with_host_files_inline_content_mtime_and_seed() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("app");
        std::fs::write(&host, b"one").unwrap();
        let first = map_with(&host, b"1").fingerprint(0, b"").unwrap();
        assert_eq!(first, map_with(&host, b"1").fingerprint(0, b"").unwrap());
        assert_ne!(
            first.digest,
            map_with(&host, b"2").fingerprint(0, b"").unwrap().digest
        );
        assert_ne!(
            first.digest,
            map_with(&host, b"1").fingerprint(1, b"").unwrap().digest
        );
        assert_ne!(
            first.digest,
            map_with(&host, b"1").fingerprint(0, b"x").unwrap().digest
        );
        // Rewriting the host file replaces its change time even with the same bytes.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&host, b"two").unwrap();
        let rewritten = map_with(&host, b"1").fingerprint(0, b"").unwrap();
        assert_ne!(first.digest, rewritten.digest);
        assert!(rewritten.newest_change > first.newest_change);
    }

    #[test]
    fn a_fresh_change_is_not_settled() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("app");
        std::fs::write(&host, b"one").unwrap();
        let fingerprint = map_with(&host, b"1").fingerprint(0, b"").unwrap();
        let margin = Duration::from_secs(2);
        assert!(!fingerprint.is_settled(SystemTime::now(), margin));
        assert!(fingerprint.is_settled(SystemTime::now() + Duration::from_secs(3), margin));
    }

    #[test]
    fn a_missing_host_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("gone");
        std::fs::write(&host, b"x").unwrap();
        let map = map_with(&host, b"1");
        std::fs::remove_file(&host).unwrap();
        assert!(map.fingerprint(0, b"").is_err());
    }
}
