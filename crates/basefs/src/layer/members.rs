//! Tar members of one layer as table records, in archive order: paths normalised, whiteouts
//! and opaque whiteouts recognised, the bodies of asked-for files kept and all others skipped.

use std::collections::HashMap;
use std::io::{self, BufRead, Read};

use tar::EntryType;

use crate::entry::Kind;
use crate::error::{LayerError, MemberError};
use crate::layer::skip::ForwardSeek;
use crate::layer::CaptureSet;
use crate::path::{normalise, parent};
use crate::table::{Meta, Slot, Table};

const WHITEOUT_PREFIX: &str = ".wh.";
/// `.wh..wh..opq`: the directory holding it hides what lower layers have inside it.
const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";
/// Other `.wh..wh.` names are aufs bookkeeping (`.wh..wh.plnk`, `.wh..wh.aufs`), not files.
const AUFS_META_PREFIX: &str = ".wh..wh.";

/// A layer's members before settling: one record per member in archive order (`origin` is the
/// member number, from 1), and the content of captured files by path with the member number
/// it came from.
///
/// An opaque whiteout is recorded at its directory's path plus a trailing `/` (`/` for the
/// root): no normalised path ends in `/`, and in tree order that path sits right after the
/// directory, before its children.
#[derive(Default)]
pub(crate) struct RawLayer {
    pub table: Table,
    pub captured: HashMap<String, (u32, Vec<u8>)>,
}

/// Reads every member of the tar stream `tar` up to its end-of-archive marker.
pub(crate) fn read(tar: impl BufRead, capture: &CaptureSet) -> Result<RawLayer, LayerError> {
    let mut archive = tar::Archive::new(ForwardSeek::new(tar));
    let mut raw = RawLayer::default();
    let entries = archive.entries_with_seek().map_err(LayerError::Read)?;
    for (index, entry) in entries.enumerate() {
        let mut entry = entry.map_err(LayerError::Read)?;
        let number = u32::try_from(index + 1)
            .ok()
            .filter(|number| *number < u32::MAX)
            .ok_or(LayerError::TooManyMembers)?;
        let member_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let member_error = |source| LayerError::Member {
            path: member_path.clone(),
            source,
        };
        let Some((path, link, meta)) =
            classify(&mut entry, &member_path, number).map_err(member_error)?
        else {
            continue;
        };
        if meta.slot == Slot::Entry(Kind::File) && capture.wants(&path, meta.size) {
            let mut content = Vec::with_capacity(meta.size as usize);
            entry.read_to_end(&mut content).map_err(LayerError::Read)?;
            raw.captured.insert(path.clone(), (number, content));
        }
        raw.table
            .push(&path, &link, meta)
            .map_err(|error| member_error(error.into()))?;
    }
    Ok(raw)
}

/// The table path, link target and metadata of one member; `None` for members that describe
/// no path (the root directory itself, PAX global headers, aufs bookkeeping, unknown types).
fn classify(
    entry: &mut tar::Entry<'_, impl Read>,
    member_path: &str,
    number: u32,
) -> Result<Option<(String, String, Meta)>, MemberError> {
    let kind = match entry.header().entry_type() {
        // Pre-POSIX tars mark directories only by the trailing slash.
        EntryType::Regular if member_path.ends_with('/') => Kind::Dir,
        EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => Kind::File,
        EntryType::Directory => Kind::Dir,
        EntryType::Symlink => Kind::Symlink,
        EntryType::Link => Kind::Hardlink,
        EntryType::Char => Kind::Char,
        EntryType::Block => Kind::Block,
        EntryType::Fifo => Kind::Fifo,
        _ => return Ok(None),
    };
    let path = normalise(member_path)?;
    let name = path.rsplit('/').next().unwrap_or_default();
    if let Some(whited_out) = name.strip_prefix(WHITEOUT_PREFIX) {
        return whiteout(&path, name, whited_out, number);
    }
    if path.is_empty() {
        return Ok(None);
    }
    let header = entry.header();
    let fields = header.as_old();
    let mode = numeric(header.mode().map(u64::from), &fields.mode)? as u32;
    let uid = numeric(header.uid(), &fields.uid)?;
    let gid = numeric(header.gid(), &fields.gid)?;
    let header_mtime = numeric(header.mtime(), &fields.mtime)?;
    let link = match kind {
        Kind::Symlink => link_name(entry),
        Kind::Hardlink => match normalise(&link_name(entry)).map_err(MemberError::LinkTarget)? {
            target if target.is_empty() => return Err(MemberError::HardlinkToRoot),
            target => target,
        },
        _ => String::new(),
    };
    let meta = Meta {
        slot: Slot::Entry(kind),
        mode,
        uid: fits("uid", uid)?,
        gid: fits("gid", gid)?,
        mtime: pax_mtime(entry).unwrap_or(header_mtime),
        size: if kind == Kind::File { entry.size() } else { 0 },
        origin: number,
        flags: 0,
    };
    Ok(Some((path, link, meta)))
}

/// A `.wh.NAME` member (`name`, at `path`): a whiteout of NAME, an opaque whiteout of the
/// directory, or aufs bookkeeping to skip.
fn whiteout(
    path: &str,
    name: &str,
    whited_out: &str,
    number: u32,
) -> Result<Option<(String, String, Meta)>, MemberError> {
    let dir = parent(path);
    let path = if name == OPAQUE_WHITEOUT {
        format!("{dir}/")
    } else if name.starts_with(AUFS_META_PREFIX) {
        return Ok(None);
    } else if matches!(whited_out, "" | "." | "..") {
        return Err(MemberError::EmptyWhiteout);
    } else if dir.is_empty() {
        whited_out.to_owned()
    } else {
        format!("{dir}/{whited_out}")
    };
    let slot = if name == OPAQUE_WHITEOUT {
        Slot::Opaque
    } else {
        Slot::Whiteout
    };
    let meta = Meta {
        slot,
        mode: 0,
        uid: 0,
        gid: 0,
        mtime: 0,
        size: 0,
        origin: number,
        flags: 0,
    };
    Ok(Some((path, String::new(), meta)))
}

/// The member's link target; `""` when it has none, which hard links refuse (the root) and
/// symlinks keep as written.
fn link_name(entry: &tar::Entry<'_, impl Read>) -> String {
    entry
        .link_name_bytes()
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

/// The whole seconds of a PAX `mtime` record (`1700000000.5`), which the tar crate does not
/// apply to the header. Times before 1970 keep the header's value.
fn pax_mtime(entry: &mut tar::Entry<'_, impl Read>) -> Option<u64> {
    let extensions = entry.pax_extensions().ok()??;
    extensions
        .filter_map(Result::ok)
        .find(|extension| extension.key() == Ok("mtime"))
        .and_then(|extension| {
            let value = extension.value().ok()?;
            value.split('.').next()?.parse().ok()
        })
}

/// A numeric header field, an empty one (all NULs or spaces) read as 0 as Go's archive/tar
/// reads it, and so Docker and containerd.
fn numeric(value: io::Result<u64>, raw: &[u8]) -> Result<u64, MemberError> {
    match value {
        Ok(value) => Ok(value),
        Err(_) if raw.iter().all(|byte| matches!(byte, 0 | b' ')) => Ok(0),
        Err(error) => Err(MemberError::Header(error)),
    }
}

fn fits(field: &'static str, value: u64) -> Result<u32, MemberError> {
    u32::try_from(value).map_err(|_| MemberError::OutOfRange { field, value })
}
