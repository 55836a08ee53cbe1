//! The `.deb` container: an `ar` archive of `debian-binary` (format 2.x), `control.tar[.EXT]`
//! and `data.tar[.EXT]` in that order, each member decompressed as its name says.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use super::DebError;

/// A `.deb` being read front to back: `control.tar` first, then `data.tar`.
pub(super) struct DebReader {
    deb: PathBuf,
    ar: ar::Archive<BufReader<File>>,
    /// The member to read next.
    next_index: usize,
}

impl DebReader {
    /// Opens `deb` and checks its `debian-binary` member.
    pub(super) fn open(deb: &Path) -> Result<DebReader, DebError> {
        let file = File::open(deb).map_err(|source| DebError::Read {
            deb: deb.to_owned(),
            source,
        })?;
        let mut reader = DebReader {
            deb: deb.to_owned(),
            ar: ar::Archive::new(BufReader::new(file)),
            next_index: 0,
        };
        let version = {
            let (name, member) = reader.next_member("debian-binary")?;
            if name != "debian-binary" {
                return Err(malformed(
                    deb,
                    format!("its first member is {name:?}, not debian-binary"),
                ));
            }
            let mut version = String::new();
            member
                .take(64)
                .read_to_string(&mut version)
                .map_err(|error| malformed(deb, format!("debian-binary is unreadable: {error}")))?;
            version
        };
        if !version.starts_with("2.") {
            return Err(malformed(
                deb,
                format!(
                    "debian-binary says format {:?}; only format 2.x is a .deb dpkg installs",
                    version.trim()
                ),
            ));
        }
        Ok(reader)
    }

    /// The decompressed `control.tar`, the member after `debian-binary`.
    pub(super) fn control_tar(&mut self) -> Result<Box<dyn Read + '_>, DebError> {
        self.tar_member("control.tar")
    }

    /// The decompressed `data.tar`, the member after `control.tar`.
    pub(super) fn data_tar(&mut self) -> Result<Box<dyn Read + '_>, DebError> {
        self.tar_member("data.tar")
    }

    fn tar_member(&mut self, stem: &str) -> Result<Box<dyn Read + '_>, DebError> {
        let deb = self.deb.clone();
        let (name, member) = self.next_member(stem)?;
        let Some(extension) = name.strip_prefix(stem) else {
            return Err(malformed(
                &deb,
                format!("found member {name:?} where {stem} belongs"),
            ));
        };
        let member: Box<dyn Read + '_> = Box::new(member);
        let decompressed: Box<dyn Read + '_> = match extension {
            "" => member,
            ".gz" => Box::new(flate2::read::MultiGzDecoder::new(member)),
            ".xz" => Box::new(liblzma::read::XzDecoder::new_multi_decoder(member)),
            ".zst" => Box::new(zstd::stream::read::Decoder::new(member).map_err(|source| {
                DebError::Read {
                    deb: deb.clone(),
                    source,
                }
            })?),
            other => {
                return Err(DebError::Compression {
                    deb,
                    member: name.clone(),
                    compression: other.trim_start_matches('.').to_owned(),
                })
            }
        };
        Ok(decompressed)
    }

    /// The next member dpkg reads (members named `_…` are ignored, as dpkg does), with its name.
    fn next_member(
        &mut self,
        expected: &str,
    ) -> Result<(String, ar::Entry<'_, BufReader<File>>), DebError> {
        let deb = self.deb.clone();
        let unreadable = |error: std::io::Error| {
            malformed(&deb, format!("its ar container is unreadable: {error}"))
        };
        let count = self.ar.count_entries().map_err(unreadable)?;
        // Names first, the member itself after: an entry borrows the archive.
        let (index, name) = loop {
            if self.next_index >= count {
                return Err(malformed(&deb, format!("it has no {expected} member")));
            }
            let index = self.next_index;
            self.next_index += 1;
            let entry = self.ar.jump_to_entry(index).map_err(unreadable)?;
            let name = String::from_utf8_lossy(entry.header().identifier())
                .trim_end_matches('/')
                .to_owned();
            if !name.starts_with('_') {
                break (index, name);
            }
        };
        let entry = self.ar.jump_to_entry(index).map_err(unreadable)?;
        Ok((name, entry))
    }
}

pub(super) fn malformed(deb: &Path, problem: String) -> DebError {
    DebError::Malformed {
        deb: deb.to_owned(),
        problem,
    }
}
