//! Reading an existing tar (plain, gzip or zstd) into file-map members that point at offsets in
//! an uncompressed copy, so a layer can re-stream it without holding content in memory.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use tar::EntryType;

use crate::layer::filemap::{Content, FileMapError, Node, SpecialKind};

/// One tar member, its path and link target not yet normalised.
pub(crate) struct Member {
    pub path: String,
    pub node: Node,
    pub mode: u32,
}

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
    for entry in entries {
        let entry = entry.map_err(|err| tar_error(err.to_string()))?;
        let name = utf8(&entry.path_bytes(), path)?;
        let header = entry.header();
        let mode = header.mode().map_err(|err| tar_error(err.to_string()))?;
        let link_name = || match entry.link_name_bytes() {
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
            EntryType::Fifo => device(SpecialKind::Fifo)?,
            EntryType::XGlobalHeader => continue,
            other => {
                return Err(tar_error(format!(
                    "{name}: unsupported tar entry type {other:?}"
                )))
            }
        };
        members.push(Member {
            path: name,
            node,
            mode,
        });
    }
    Ok(members)
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
