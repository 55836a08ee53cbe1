//! Reading an existing tar (plain, gzip or zstd) into file-map members that point at offsets in
//! an uncompressed copy, so a layer can re-stream it without holding content in memory. Of the
//! PAX records beyond names and sizes, only extended attributes (`SCHILY.xattr.*`) are kept;
//! they are read from the archive by layerize's own PAX parser ([`crate::layer::pax`]).

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use tar::EntryType;

use crate::layer::filemap::{Content, FileMapError, Node, SpecialKind, Xattrs};
use crate::layer::pax;

/// One tar member, its path and link target not yet normalised.
pub(crate) struct Member {
    pub path: String,
    pub node: Node,
    pub mode: u32,
    /// The numeric owner the header gives.
    pub uid: u32,
    pub gid: u32,
    pub xattrs: Xattrs,
}

const BLOCK: u64 = 512;
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// The members of the tar at `path`, in archive order.
pub(crate) fn members(path: &Path) -> Result<Vec<Member>, FileMapError> {
    let io_error = |source| FileMapError::Io {
        path: path.to_owned(),
        source,
    };
    let tar_error = |message: String| FileMapError::Tar {
        path: path.to_owned(),
        message,
    };
    let mut input = File::open(path).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            FileMapError::SourceNotFound(path.to_owned())
        } else {
            io_error(source)
        }
    })?;
    let mut magic = Vec::with_capacity(4);
    (&mut input)
        .take(4)
        .read_to_end(&mut magic)
        .map_err(io_error)?;
    let archive = if magic.starts_with(GZIP_MAGIC) {
        spool(flate2::read::MultiGzDecoder::new(
            File::open(path).map_err(io_error)?,
        ))
        .map_err(|err| tar_error(format!("decompressing gzip: {err}")))?
    } else if magic.starts_with(ZSTD_MAGIC) {
        let decoder = zstd::stream::read::Decoder::new(File::open(path).map_err(io_error)?)
            .map_err(io_error)?;
        spool(decoder).map_err(|err| tar_error(format!("decompressing zstd: {err}")))?
    } else {
        input
    };
    (&archive).seek(SeekFrom::Start(0)).map_err(io_error)?;
    let archive = Arc::new(archive);

    let mut reader = tar::Archive::new(&*archive);
    let mut members = Vec::new();
    let entries = reader
        .entries_with_seek()
        .map_err(|err| tar_error(err.to_string()))?;
    // Where the next member's headers begin: its extension headers, then its own.
    let mut next_header = 0;
    for entry in entries {
        let entry = entry.map_err(|err| tar_error(err.to_string()))?;
        let member_error = |err: String| {
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            tar_error(format!("{name}: {err}"))
        };
        let records = extended_header(&archive, next_header, entry.raw_header_position())
            .map_err(member_error)?;
        next_header = entry.raw_file_position() + entry.size().div_ceil(BLOCK) * BLOCK;
        let extended = Extended::read(&records, entry.size()).map_err(member_error)?;
        let name = match &extended.path {
            Some(bytes) => utf8(bytes, path)?,
            None => utf8(&entry.path_bytes(), path)?,
        };
        let header = entry.header();
        let mode = header.mode().map_err(|err| tar_error(err.to_string()))?;
        let linkpath = extended.linkpath.as_deref().map(Cow::Borrowed);
        let link_name = || match linkpath.or_else(|| entry.link_name_bytes()) {
            Some(bytes) => utf8(&bytes, path),
            None => Err(tar_error(format!("{name}: link without a target"))),
        };
        let device = |kind| -> Result<Node, FileMapError> {
            let number = |field: io::Result<Option<u32>>| {
                field
                    .map(Option::unwrap_or_default)
                    .map_err(|err| tar_error(format!("{name}: {err}")))
            };
            Ok(Node::Special {
                kind,
                major: number(header.device_major())?,
                minor: number(header.device_minor())?,
            })
        };
        let node = match header.entry_type() {
            EntryType::Regular | EntryType::Continuous => Node::File(Content::TarMember {
                archive: Arc::clone(&archive),
                offset: entry.raw_file_position(),
                size: entry.size(),
            }),
            EntryType::Directory => Node::Dir,
            EntryType::Symlink => Node::Symlink(link_name()?),
            EntryType::Link => Node::Hardlink(link_name()?),
            EntryType::Char => device(SpecialKind::Char)?,
            EntryType::Block => device(SpecialKind::Block)?,
            // GNU tar leaves a FIFO's device fields empty.
            EntryType::Fifo => Node::Special {
                kind: SpecialKind::Fifo,
                major: 0,
                minor: 0,
            },
            EntryType::XGlobalHeader => continue,
            other => {
                return Err(tar_error(format!(
                    "{name}: unsupported tar entry type {other:?}"
                )))
            }
        };
        let owner = |id: io::Result<u64>| id.ok().and_then(|id| u32::try_from(id).ok());
        members.push(Member {
            path: name,
            node,
            mode,
            uid: owner(header.uid()).unwrap_or(0),
            gid: owner(header.gid()).unwrap_or(0),
            xattrs: extended.xattrs,
        });
    }
    Ok(members)
}

/// The data of the PAX extended header (`x`) among the extension headers (PAX, GNU long names)
/// that `archive` has between `from` and a member's header at `to`; empty when there is none.
fn extended_header(archive: &File, from: u64, to: u64) -> Result<Vec<u8>, String> {
    let len = to
        .checked_sub(from)
        .and_then(|len| usize::try_from(len).ok())
        .ok_or("the member's header is not where its extension headers end")?;
    let mut headers = vec![0; len];
    archive
        .read_exact_at(&mut headers, from)
        .map_err(|err| format!("reading its extension headers: {err}"))?;
    let block = BLOCK as usize;
    let mut pax = Vec::new();
    let mut offset = 0;
    while offset + block <= headers.len() {
        let header = tar::Header::from_byte_slice(&headers[offset..offset + block]);
        let data = offset + block;
        let end = header
            .entry_size()
            .ok()
            .and_then(|size| usize::try_from(size).ok())
            .and_then(|size| data.checked_add(size))
            .filter(|&end| end <= headers.len())
            .ok_or("an extension header's size runs past the member's header")?;
        if header.entry_type() == EntryType::XHeader {
            pax = headers[data..end].to_vec();
        }
        offset = data + (end - data).div_ceil(block) * block;
    }
    Ok(pax)
}

/// What a member's PAX extended header says that layerize uses.
#[derive(Debug, Default)]
struct Extended {
    /// Read here rather than by the `tar` crate, which splits records at newlines and so can take
    /// a piece of a value for a record.
    path: Option<Vec<u8>>,
    linkpath: Option<Vec<u8>>,
    /// A later record of a name wins, as in GNU tar.
    xattrs: Xattrs,
}

impl Extended {
    /// Reads the records of `data`; `size` is the member size the `tar` crate found, which the
    /// records must not contradict (it misses a `size` record after a value with a newline).
    fn read(data: &[u8], size: u64) -> Result<Extended, String> {
        let mut extended = Extended::default();
        for record in pax::read_records(data).map_err(|err| err.to_string())? {
            let value = || Some(record.value.to_vec());
            match record.key {
                "path" => extended.path = value(),
                "linkpath" => extended.linkpath = value(),
                "size" if std::str::from_utf8(record.value).ok() != Some(&size.to_string()) => {
                    return Err(format!(
                        "its PAX size {} is not the {size} bytes read",
                        record.value.escape_ascii()
                    ))
                }
                key => {
                    if let Some(name) = key.strip_prefix(pax::XATTR_PREFIX) {
                        if name.is_empty() {
                            return Err(format!("PAX record {key:?} names no extended attribute"));
                        }
                        extended
                            .xattrs
                            .insert(name.to_owned(), record.value.to_vec());
                    }
                }
            }
        }
        Ok(extended)
    }
}

/// Decompresses `reader` into an unnamed temporary file, ready to be read by offset.
fn spool(mut reader: impl Read) -> io::Result<File> {
    let mut file = tempfile::tempfile()?;
    io::copy(&mut reader, &mut file)?;
    Ok(file)
}

fn utf8(bytes: &[u8], tar: &Path) -> Result<String, FileMapError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| FileMapError::Tar {
        path: tar.to_owned(),
        message: format!(
            "member name {:?} is not valid UTF-8",
            String::from_utf8_lossy(bytes)
        ),
    })
}
