//! Synthetic layer tars for tests: members of every kind, written with the `tar` crate (GNU
//! long names for long paths), plus raw headers and PAX records where a test needs them.

use std::io::Write;

use layerize_manifest::Digest;
use tar::{EntryType, Header};

use crate::{merge, read_layer, CaptureSet, FsIndex, LayerIndex};

/// A tar being written; every member gets `uid`/`gid`/`mtime` as currently set.
pub(crate) struct TarWriter {
    builder: tar::Builder<Vec<u8>>,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
}

impl TarWriter {
    pub fn new() -> Self {
        TarWriter {
            builder: tar::Builder::new(Vec::new()),
            uid: 0,
            gid: 0,
            mtime: 1_700_000_000,
        }
    }

    fn header(&self, kind: EntryType, mode: u32, size: u64) -> Header {
        let mut header = Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(self.uid);
        header.set_gid(self.gid);
        header.set_mtime(self.mtime);
        header.set_size(size);
        header
    }

    pub fn file(&mut self, path: &str, content: &[u8], mode: u32) -> &mut Self {
        let mut header = self.header(EntryType::Regular, mode, content.len() as u64);
        self.builder
            .append_data(&mut header, path, content)
            .unwrap();
        self
    }

    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        let mut header = self.header(EntryType::Directory, mode, 0);
        self.builder
            .append_data(&mut header, path, &[][..])
            .unwrap();
        self
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut header = self.header(EntryType::Symlink, 0o777, 0);
        self.builder.append_link(&mut header, path, target).unwrap();
        self
    }

    pub fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut header = self.header(EntryType::Link, 0o644, 0);
        self.builder.append_link(&mut header, path, target).unwrap();
        self
    }

    /// A character or block device, or a FIFO.
    pub fn special(&mut self, path: &str, kind: EntryType, major: u32, minor: u32) -> &mut Self {
        let mut header = self.header(kind, 0o666, 0);
        header.set_device_major(major).unwrap();
        header.set_device_minor(minor).unwrap();
        self.builder
            .append_data(&mut header, path, &[][..])
            .unwrap();
        self
    }

    /// `DIR/.wh.NAME` for `path` = `DIR/NAME`.
    pub fn whiteout(&mut self, path: &str) -> &mut Self {
        let member = match path.rsplit_once('/') {
            Some((dir, name)) => format!("{dir}/.wh.{name}"),
            None => format!(".wh.{path}"),
        };
        self.file(&member, b"", 0o644)
    }

    /// `DIR/.wh..wh..opq` (`dir` = `""`: the root).
    pub fn opaque(&mut self, dir: &str) -> &mut Self {
        let member = if dir.is_empty() {
            ".wh..wh..opq".to_owned()
        } else {
            format!("{dir}/.wh..wh..opq")
        };
        self.file(&member, b"", 0o644)
    }

    /// A regular file whose name field holds `name` as is (the `tar` crate refuses `..`).
    pub fn raw_name(&mut self, name: &[u8]) -> &mut Self {
        let mut header = self.header(EntryType::Regular, 0o644, 0);
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.set_cksum();
        self.builder.append(&header, &[][..]).unwrap();
        self
    }

    /// A member with exactly this header.
    pub fn raw(&mut self, header: &Header, content: &[u8]) -> &mut Self {
        self.builder.append(header, content).unwrap();
        self
    }

    /// A PAX extended header for the next member.
    pub fn pax(&mut self, records: &[(&str, &str)]) -> &mut Self {
        let mut body = Vec::new();
        for (key, value) in records {
            let rest = format!(" {key}={value}\n");
            let mut len = rest.len() + 1;
            while format!("{len}").len() + rest.len() != len {
                len += 1;
            }
            write!(body, "{len}{rest}").unwrap();
        }
        let mut header = self.header(EntryType::XHeader, 0o644, body.len() as u64);
        self.builder
            .append_data(&mut header, "PaxHeaders/x", body.as_slice())
            .unwrap();
        self
    }

    pub fn finish(&mut self) -> Vec<u8> {
        let builder = std::mem::replace(&mut self.builder, tar::Builder::new(Vec::new()));
        builder.into_inner().unwrap()
    }
}

/// `tar` compressed with gzip as several members (as layerize writes them).
pub(crate) fn gzip(tar: &[u8]) -> Vec<u8> {
    let mut blob = Vec::new();
    for part in tar.chunks(tar.len().div_ceil(3).max(1)) {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(part).unwrap();
        blob.extend(encoder.finish().unwrap());
    }
    blob
}

pub(crate) fn zstd(tar: &[u8]) -> Vec<u8> {
    zstd::encode_all(tar, 3).unwrap()
}

/// The layer index of an uncompressed tar, nothing captured.
pub(crate) fn layer(tar: &[u8]) -> LayerIndex {
    read_layer(tar, &Digest::sha256(tar), &CaptureSet::default()).unwrap()
}

/// The filesystem of these uncompressed tars, bottom first.
pub(crate) fn stack(tars: &[Vec<u8>]) -> FsIndex {
    merge(tars.iter().map(|tar| layer(tar))).unwrap()
}

/// `path kind mode uid:gid -> link` for every entry, for readable assertions.
pub(crate) fn listing(index: &FsIndex) -> Vec<String> {
    index
        .iter()
        .map(|entry| {
            let mut line = format!(
                "{} {:?} {:o} {}:{}",
                entry.path, entry.kind, entry.mode, entry.uid, entry.gid
            );
            if !entry.link.is_empty() {
                line.push_str(" -> ");
                line.push_str(entry.link);
            }
            line
        })
        .collect()
}
