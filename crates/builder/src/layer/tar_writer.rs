//! The deterministic tar stream of a file map: entries in map order, relative names (directories
//! with a trailing `/`), ustar headers with empty user/group names, PAX records for names and link
//! targets longer than the ustar fields and for extended attributes (`SCHILY.xattr.*`, sorted by
//! name), and no trailing record padding.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;

use tar::{EntryType, Header};

use crate::layer::filemap::{Content, Entry, FileMap, Node, SpecialKind};
use crate::layer::pax;
use crate::layer::LayerError;

const BLOCK: usize = 512;
const USTAR_NAME_LEN: usize = 100;
const COPY_BUFFER: usize = 256 << 10;

/// Writes the tar stream of `map` to `out`; entries without an mtime get `layer_mtime`.
pub(crate) fn write_tar<W: Write>(
    map: &FileMap,
    layer_mtime: u64,
    out: &mut W,
) -> Result<(), LayerError> {
    let leaders = hardlink_leaders(map)?;
    let mut writer = TarWriter {
        out,
        layer_mtime,
        buffer: vec![0; COPY_BUFFER],
    };
    for item in map.entries() {
        let (path, entry) = item?;
        let (path, entry) = (path.as_str(), &entry);
        let leader = match &entry.node {
            Node::File(_) => leaders.get(path).copied(),
            // A host tree's links point at the first path of their group already.
            Node::Hardlink(file) => Some(leaders.get(file.as_str()).copied().unwrap_or(file)),
            _ => None,
        };
        match (&entry.node, leader) {
            // The first path of a hardlink group in tar order carries the content, so that
            // extractors meet the file before any link to it.
            (Node::File(_) | Node::Hardlink(_), Some(leader)) if leader != path => {
                writer.link(path, entry, leader)?
            }
            (Node::File(content), _) => writer.file(path, entry, content)?,
            (Node::Hardlink(file), _) => match &map.get(file)?.expect("checked above").node {
                Node::File(content) => writer.file(path, entry, content)?,
                _ => unreachable!("hardlink_leaders checked that targets are files"),
            },
            (Node::Dir, _) => {
                writer.header(&format!("{path}/"), EntryType::Directory, 0, entry, None)?
            }
            (Node::Symlink(target), _) => {
                writer.header(path, EntryType::Symlink, 0, entry, Some(target))?
            }
            (Node::Special { kind, major, minor }, _) => {
                let entry_type = match kind {
                    SpecialKind::Char => EntryType::Char,
                    SpecialKind::Block => EntryType::Block,
                    SpecialKind::Fifo => EntryType::Fifo,
                };
                writer.device(path, entry_type, entry, *major, *minor)?
            }
        }
    }
    writer
        .out
        .write_all(&[0; 2 * BLOCK])
        .map_err(LayerError::Write)
}

/// For every regular file added one by one that has hardlinks: the path of its group that comes
/// first in tar order. Fails when a hardlink's target is no longer a regular file of the map.
/// (Files of host trees are grouped while the trees are walked.)
fn hardlink_leaders(map: &FileMap) -> Result<HashMap<&str, &str>, LayerError> {
    let mut leaders: HashMap<&str, &str> = HashMap::new();
    for (path, entry) in map.explicit_entries() {
        if let Node::Hardlink(file) = &entry.node {
            if map.get(path)?.is_none() {
                // Replaced by a host tree added later.
                continue;
            }
            if !matches!(
                map.get(file)?.map(|target| &target.node),
                Some(Node::File(_))
            ) {
                return Err(LayerError::BrokenHardlink {
                    path: path.to_owned(),
                    target: file.clone(),
                });
            }
            let leader = leaders.entry(file.as_str()).or_insert(file.as_str());
            *leader = (*leader).min(path);
        }
    }
    Ok(leaders)
}

struct TarWriter<'a, W> {
    out: &'a mut W,
    layer_mtime: u64,
    buffer: Vec<u8>,
}

impl<W: Write> TarWriter<'_, W> {
    fn file(&mut self, path: &str, entry: &Entry, content: &Content) -> Result<(), LayerError> {
        match content {
            Content::Inline(bytes) => {
                self.header(path, EntryType::Regular, bytes.len() as u64, entry, None)?;
                self.write(bytes)?;
                self.pad(bytes.len() as u64)
            }
            Content::Host(source) => {
                let read_error = |source_error| LayerError::Read {
                    path: source.clone(),
                    source: source_error,
                };
                let file = File::open(source).map_err(read_error)?;
                let size = file.metadata().map_err(read_error)?.len();
                self.header(path, EntryType::Regular, size, entry, None)?;
                let copied = self.copy(file.take(size)).map_err(|err| match err {
                    CopyError::Read(err) => read_error(err),
                    CopyError::Write(err) => LayerError::Write(err),
                })?;
                if copied != size {
                    return Err(LayerError::SourceChanged {
                        path: source.clone(),
                    });
                }
                self.pad(size)
            }
            Content::TarMember {
                archive,
                offset,
                size,
            } => {
                self.header(path, EntryType::Regular, *size, entry, None)?;
                let member = MemberReader {
                    archive,
                    offset: *offset,
                    remaining: *size,
                };
                let copied = self.copy(member).map_err(|err| match err {
                    CopyError::Read(source) => LayerError::Read {
                        path: format!("tar member {path}").into(),
                        source,
                    },
                    CopyError::Write(err) => LayerError::Write(err),
                })?;
                if copied != *size {
                    return Err(LayerError::SourceChanged {
                        path: format!("tar member {path}").into(),
                    });
                }
                self.pad(*size)
            }
        }
    }

    fn link(&mut self, path: &str, entry: &Entry, target: &str) -> Result<(), LayerError> {
        self.header(path, EntryType::Link, 0, entry, Some(target))
    }

    fn device(
        &mut self,
        path: &str,
        entry_type: EntryType,
        entry: &Entry,
        major: u32,
        minor: u32,
    ) -> Result<(), LayerError> {
        let mut header = self.base_header(entry_type, 0, entry);
        header.set_device_major(major).map_err(LayerError::Write)?;
        header.set_device_minor(minor).map_err(LayerError::Write)?;
        self.emit(path, None, header, entry)
    }

    fn header(
        &mut self,
        name: &str,
        entry_type: EntryType,
        size: u64,
        entry: &Entry,
        link: Option<&str>,
    ) -> Result<(), LayerError> {
        let header = self.base_header(entry_type, size, entry);
        self.emit(name, link, header, entry)
    }

    fn base_header(&self, entry_type: EntryType, size: u64, entry: &Entry) -> Header {
        let mut header = Header::new_ustar();
        header.set_entry_type(entry_type);
        header.set_size(size);
        header.set_mode(entry.mode);
        header.set_uid(entry.uid.into());
        header.set_gid(entry.gid.into());
        header.set_mtime(entry.mtime.unwrap_or(self.layer_mtime));
        header
    }

    /// Writes `header` with its name and link target, preceded by a PAX header when either one
    /// does not fit its ustar field or the entry has extended attributes.
    fn emit(
        &mut self,
        name: &str,
        link: Option<&str>,
        mut header: Header,
        entry: &Entry,
    ) -> Result<(), LayerError> {
        let mut pax = Vec::new();
        put_name(&mut header.as_old_mut().name, name, "path", &mut pax);
        if let Some(link) = link {
            put_name(
                &mut header.as_old_mut().linkname,
                link,
                "linkpath",
                &mut pax,
            );
        }
        for (xattr, value) in &entry.xattrs {
            let key = format!("{}{xattr}", pax::XATTR_PREFIX);
            pax::write_record(&mut pax, &key, value);
        }
        if !pax.is_empty() {
            let base = name.trim_end_matches('/');
            let base = base.rsplit('/').next().unwrap_or(base);
            let pax_name = format!("PaxHeaders.0/{base}");
            let mut pax_header = self.base_header(EntryType::XHeader, pax.len() as u64, entry);
            put_name(
                &mut pax_header.as_old_mut().name,
                &pax_name,
                "",
                &mut Vec::new(),
            );
            pax_header.set_mode(0o644);
            pax_header.set_uid(0);
            pax_header.set_gid(0);
            pax_header.set_cksum();
            self.write(pax_header.as_bytes())?;
            self.write(&pax)?;
            self.pad(pax.len() as u64)?;
        }
        header.set_cksum();
        self.write(header.as_bytes())
    }

    fn copy(&mut self, mut reader: impl Read) -> Result<u64, CopyError> {
        let mut copied = 0;
        loop {
            let read = match reader.read(&mut self.buffer) {
                Ok(0) => return Ok(copied),
                Ok(read) => read,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(CopyError::Read(err)),
            };
            self.out
                .write_all(&self.buffer[..read])
                .map_err(CopyError::Write)?;
            copied += read as u64;
        }
    }

    fn pad(&mut self, size: u64) -> Result<(), LayerError> {
        let rest = (size % BLOCK as u64) as usize;
        if rest == 0 {
            return Ok(());
        }
        self.write(&[0; BLOCK][rest..])
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), LayerError> {
        self.out.write_all(bytes).map_err(LayerError::Write)
    }
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Puts `value` into a ustar name field, or its first bytes there and the whole value into a PAX
/// record `key` when it is too long.
fn put_name(field: &mut [u8; USTAR_NAME_LEN], value: &str, key: &str, pax: &mut Vec<u8>) {
    let bytes = value.as_bytes();
    let len = bytes.len().min(USTAR_NAME_LEN);
    field[..len].copy_from_slice(&bytes[..len]);
    if bytes.len() > USTAR_NAME_LEN {
        pax::write_record(pax, key, bytes);
    }
}

/// The bytes of one member of an uncompressed tar, read by offset so members can be read in any
/// order from a shared file.
struct MemberReader<'a> {
    archive: &'a File,
    offset: u64,
    remaining: u64,
}

impl Read for MemberReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf
            .len()
            .min(self.remaining.try_into().unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let read = self.archive.read_at(&mut buf[..want], self.offset)?;
        self.offset += read as u64;
        self.remaining -= read as u64;
        Ok(read)
    }
}
