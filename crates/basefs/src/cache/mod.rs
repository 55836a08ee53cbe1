//! The on-disk cache of layer indexes, one file per diffID under
//! `<cache-dir>/basefs/v1/sha256/<hex>`: written atomically, and checked whole when read, so a
//! truncated, corrupt or older file is rebuilt and never trusted.
//!
//! Format (little-endian): magic, version, the diffID's 64 hex digits, flags, record and arena
//! lengths, the records (40 bytes each), the arena, the captured files (path, content), and the
//! sha256 of everything before it.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use layerize_manifest::Digest;

use crate::hashing::{HashingReader, HashingWriter};
use crate::kept_tar::TarDir;
use crate::layer::{LayerIndex, Settled};
use crate::path::tree_cmp;
use crate::table::{Record, Slot, Table};

const MAGIC: &[u8; 16] = b"layerize-basefs\n";
/// Bump when the format or the meaning of a record changes; the directory name carries it too.
const VERSION: u32 = 1;
const RECORD_BYTES: u64 = 40;
const HEADER_BYTES: u64 = 16 + 4 + 64 + 4 + 8 + 8;
const CHECKSUM_BYTES: u64 = 32;
const FLAG_HIDES_ROOT: u32 = 1;

/// `$XDG_CACHE_HOME/layerize` when that is an absolute path, else `$HOME/.cache/layerize`;
/// `None` when neither is set.
pub fn default_cache_dir() -> Option<PathBuf> {
    cache_dir_from(std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME"))
}

fn cache_dir_from(xdg_cache_home: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    let xdg = xdg_cache_home.map(PathBuf::from);
    if let Some(xdg) = xdg.filter(|dir| dir.is_absolute()) {
        return Some(xdg.join("layerize"));
    }
    let home = home
        .map(PathBuf::from)
        .filter(|dir| !dir.as_os_str().is_empty())?;
    Some(home.join(".cache").join("layerize"))
}

/// Whether a file of a cache directory (a kept tar, a blob, a download) is at `path`; its
/// modification time is bumped as a use, which `layerize cache clean` goes by (least recently
/// used first). A file that cannot be touched (a read-only cache) is still there.
pub fn touch_if_present(path: &Path) -> bool {
    if !path.is_file() {
        return false;
    }
    if let Ok(file) = File::options().append(true).open(path) {
        let _ = file.set_modified(std::time::SystemTime::now());
    }
    true
}

/// Layer indexes kept under a cache directory (`--cache-dir`, or [`default_cache_dir`]).
#[derive(Clone, Debug)]
pub struct LayerCache {
    dir: PathBuf,
    /// Whether [`LayerCache::store`] writes (a dry run reads the cache but leaves it as it is).
    writable: bool,
    /// Where layers read from their blobs also leave their tars, when asked.
    tars: Option<TarDir>,
}

impl LayerCache {
    pub fn new(cache_dir: impl AsRef<Path>) -> LayerCache {
        LayerCache {
            dir: cache_dir
                .as_ref()
                .join("basefs")
                .join(format!("v{VERSION}"))
                .join("sha256"),
            writable: true,
            tars: None,
        }
    }

    /// The same cache, read but never written.
    pub fn read_only(mut self) -> LayerCache {
        self.writable = false;
        self
    }

    /// The same cache, also keeping the uncompressed tar of each layer read from its blob in
    /// `tars` (for a build that unpacks the base's layers; a read-only cache keeps none).
    pub fn keeping_tars(mut self, tars: TarDir) -> LayerCache {
        self.tars = Some(tars);
        self
    }

    /// Where to keep the tars of layers read from their blobs, if anywhere.
    pub(crate) fn tars(&self) -> Option<&TarDir> {
        self.tars.as_ref().filter(|_| self.writable)
    }

    /// Where the index of the layer with this diffID lives.
    pub fn path(&self, diff_id: &Digest) -> PathBuf {
        self.dir.join(diff_id.hex())
    }

    /// The cached index of the layer, or `None` when there is none or it cannot be trusted
    /// (each reason is logged).
    pub fn load(&self, diff_id: &Digest) -> Option<LayerIndex> {
        let path = self.path(diff_id);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return None,
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot open a cached layer index");
                return None;
            }
        };
        // Entries are files whose modification time is their last use, which is what
        // `layerize cache clean` removes the least recently used by.
        if self.writable {
            let _ = file.set_modified(std::time::SystemTime::now());
        }
        match decode(file, diff_id) {
            Ok(layer) => Some(layer),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "ignoring a cached layer index");
                None
            }
        }
    }

    /// Writes the index of the layer: to a temporary file in the same directory, renamed into
    /// place when complete, so readers see the old file, no file, or the whole new one.
    pub fn store(&self, diff_id: &Digest, layer: &LayerIndex) -> io::Result<()> {
        if !self.writable {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir)?;
        let temp = tempfile::NamedTempFile::new_in(&self.dir)?;
        let mut writer = HashingWriter::new(BufWriter::new(temp));
        encode(&mut writer, diff_id, layer)?;
        let (checksum, mut buffered) = writer.finish();
        buffered.write_all(&checksum)?;
        let temp = buffered
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?;
        temp.persist(self.path(diff_id))
            .map_err(|error| error.error)?;
        Ok(())
    }
}

fn encode(out: &mut impl Write, diff_id: &Digest, layer: &LayerIndex) -> io::Result<()> {
    let Settled { table, hides_root } = &layer.settled;
    let arena_len: u64 = table
        .records
        .iter()
        .map(|record| (record.link_end() - record.offset as usize) as u64)
        .sum();
    out.write_all(MAGIC)?;
    out.write_all(&VERSION.to_le_bytes())?;
    out.write_all(diff_id.hex().as_bytes())?;
    let flags = if *hides_root { FLAG_HIDES_ROOT } else { 0 };
    out.write_all(&flags.to_le_bytes())?;
    out.write_all(&(table.records.len() as u64).to_le_bytes())?;
    out.write_all(&arena_len.to_le_bytes())?;
    // Strings are written in record order, so the file's arena holds no unused bytes.
    let mut offset: u32 = 0;
    for record in &table.records {
        let packed = Record { offset, ..*record };
        offset += (record.link_end() - record.offset as usize) as u32;
        out.write_all(&record_bytes(&packed))?;
    }
    for record in &table.records {
        out.write_all(&table.arena.as_bytes()[record.offset as usize..record.link_end()])?;
    }
    out.write_all(&(layer.captured.len() as u32).to_le_bytes())?;
    for (path, content) in &layer.captured {
        out.write_all(&(path.len() as u32).to_le_bytes())?;
        out.write_all(path.as_bytes())?;
        out.write_all(&(content.len() as u64).to_le_bytes())?;
        out.write_all(content)?;
    }
    Ok(())
}

/// Why a cache file is not used.
#[derive(Debug, thiserror::Error)]
enum Invalid {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("not a layer index of format version {VERSION}")]
    Version,
    #[error("written for another diffID")]
    OtherLayer,
    #[error("checksum mismatch (damaged or truncated)")]
    Checksum,
    #[error("malformed: {0}")]
    Malformed(&'static str),
}

fn decode(file: File, diff_id: &Digest) -> Result<LayerIndex, Invalid> {
    let file_len = file.metadata()?.len();
    let body_len = file_len
        .checked_sub(CHECKSUM_BYTES)
        .filter(|len| *len >= HEADER_BYTES)
        .ok_or(Invalid::Malformed("too short"))?;
    let mut file = BufReader::with_capacity(64 * 1024, file);
    let mut body = HashingReader::new((&mut file).take(body_len));

    let magic: [u8; 16] = read_array(&mut body)?;
    let version = u32::from_le_bytes(read_array(&mut body)?);
    if &magic != MAGIC || version != VERSION {
        return Err(Invalid::Version);
    }
    if read_array::<64>(&mut body)? != diff_id.hex().as_bytes() {
        return Err(Invalid::OtherLayer);
    }
    let flags = u32::from_le_bytes(read_array(&mut body)?);
    let count = u64::from_le_bytes(read_array(&mut body)?);
    let arena_len = u64::from_le_bytes(read_array(&mut body)?);
    // Checked against the file's length before anything is allocated.
    let records_len = count
        .checked_mul(RECORD_BYTES)
        .filter(|len| {
            len.checked_add(arena_len)
                .is_some_and(|len| len <= body_len)
        })
        .ok_or(Invalid::Malformed("lengths beyond the end of the file"))?;
    let mut records = Vec::with_capacity((records_len / RECORD_BYTES) as usize);
    for _ in 0..count {
        records.push(parse_record(&read_array(&mut body)?)?);
    }
    let arena = String::from_utf8(read_vec(&mut body, arena_len, body_len)?)
        .map_err(|_| Invalid::Malformed("arena is not UTF-8"))?;
    let table = Table { arena, records };
    check_records(&table)?;

    let mut captured = BTreeMap::new();
    let captures = u32::from_le_bytes(read_array(&mut body)?);
    for _ in 0..captures {
        let path_len = u32::from_le_bytes(read_array(&mut body)?);
        let path = String::from_utf8(read_vec(&mut body, u64::from(path_len), body_len)?)
            .map_err(|_| Invalid::Malformed("captured path is not UTF-8"))?;
        let content_len = u64::from_le_bytes(read_array(&mut body)?);
        captured.insert(path, read_vec(&mut body, content_len, body_len)?);
    }
    let (checksum, read) = body.finish();
    if read != body_len {
        return Err(Invalid::Malformed("bytes after the captured files"));
    }
    if Digest::from_sha256_raw(read_array(&mut file)?) != checksum {
        return Err(Invalid::Checksum);
    }
    let settled = Settled {
        table,
        hides_root: flags & FLAG_HIDES_ROOT != 0,
    };
    Ok(LayerIndex { settled, captured })
}

/// Every record's strings lie in the arena on character boundaries, its slot is known, and the
/// paths are strictly increasing in tree order: the invariants the merge relies on.
fn check_records(table: &Table) -> Result<(), Invalid> {
    let mut previous: Option<&str> = None;
    for record in &table.records {
        let in_arena = record.link_end() <= table.arena.len()
            && [record.offset as usize, record.path_end(), record.link_end()]
                .iter()
                .all(|at| table.arena.is_char_boundary(*at));
        if !in_arena || record.path_len == 0 || Slot::from_byte(record.slot).is_none() {
            return Err(Invalid::Malformed("a record points outside the arena"));
        }
        let path = table.path(record);
        if previous.is_some_and(|previous| tree_cmp(previous, path).is_ge()) {
            return Err(Invalid::Malformed("records out of order"));
        }
        previous = Some(path);
    }
    Ok(())
}

fn record_bytes(record: &Record) -> [u8; RECORD_BYTES as usize] {
    let mut bytes = [0u8; RECORD_BYTES as usize];
    let mut at = 0;
    let mut put = |field: &[u8]| {
        bytes[at..at + field.len()].copy_from_slice(field);
        at += field.len();
    };
    put(&record.size.to_le_bytes());
    put(&record.mtime.to_le_bytes());
    put(&record.offset.to_le_bytes());
    put(&record.uid.to_le_bytes());
    put(&record.gid.to_le_bytes());
    put(&record.origin.to_le_bytes());
    put(&record.path_len.to_le_bytes());
    put(&record.link_len.to_le_bytes());
    put(&record.mode.to_le_bytes());
    put(&[record.slot, record.flags]);
    bytes
}

fn parse_record(bytes: &[u8; RECORD_BYTES as usize]) -> Result<Record, Invalid> {
    let field = |at: usize, len: usize| &bytes[at..at + len];
    let u64_at = |at| u64::from_le_bytes(field(at, 8).try_into().expect("8 bytes"));
    let u32_at = |at| u32::from_le_bytes(field(at, 4).try_into().expect("4 bytes"));
    let u16_at = |at| u16::from_le_bytes(field(at, 2).try_into().expect("2 bytes"));
    let record = Record {
        size: u64_at(0),
        mtime: u64_at(8),
        offset: u32_at(16),
        uid: u32_at(20),
        gid: u32_at(24),
        origin: u32_at(28),
        path_len: u16_at(32),
        link_len: u16_at(34),
        mode: u16_at(36),
        slot: bytes[38],
        flags: bytes[39],
    };
    if record.mode > 0o7777 || record.flags & !Record::HIDES_LOWER != 0 {
        return Err(Invalid::Malformed("record fields out of range"));
    }
    Ok(record)
}

fn read_array<const N: usize>(reader: &mut impl Read) -> io::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    reader.read_exact(&mut bytes)?;
    Ok(bytes)
}

fn read_vec(reader: &mut impl Read, len: u64, limit: u64) -> Result<Vec<u8>, Invalid> {
    if len > limit {
        return Err(Invalid::Malformed("a length beyond the end of the file"));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    reader.take(len).read_to_end(&mut bytes)?;
    if bytes.len() as u64 != len {
        return Err(Invalid::Malformed("truncated"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests;
