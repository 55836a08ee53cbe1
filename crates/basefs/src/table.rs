//! The compact form every index is kept in: one string arena holding each path followed by its
//! link target, and a vector of fixed-size records pointing into it.
//!
//! 40 bytes per record plus the path and target bytes themselves: 200k paths of ~60 bytes take
//! ~20 MB, where a `Vec` of owned entries takes about three times that.

use crate::entry::{Entry, Kind};

/// What a record stands for. Merged indexes hold only [`Slot::Entry`]; a layer's own table
/// also holds whiteouts and opaque directories.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    Entry(Kind),
    /// The path and everything below it are removed from the layers underneath.
    Whiteout,
    /// A directory the layer does not describe itself but whose lower children it hides
    /// (`.wh..wh..opq` without an entry for the directory): the lower directory stays, or an
    /// implicit one is made.
    Opaque,
}

impl Slot {
    const KINDS: [Kind; 7] = [
        Kind::File,
        Kind::Dir,
        Kind::Symlink,
        Kind::Hardlink,
        Kind::Char,
        Kind::Block,
        Kind::Fifo,
    ];
    const WHITEOUT: u8 = 7;
    const OPAQUE: u8 = 8;

    pub fn to_byte(self) -> u8 {
        match self {
            Slot::Entry(kind) => Self::KINDS.iter().position(|k| *k == kind).unwrap_or(0) as u8,
            Slot::Whiteout => Self::WHITEOUT,
            Slot::Opaque => Self::OPAQUE,
        }
    }

    pub fn from_byte(byte: u8) -> Option<Slot> {
        match byte {
            Self::WHITEOUT => Some(Slot::Whiteout),
            Self::OPAQUE => Some(Slot::Opaque),
            kind => Self::KINDS.get(usize::from(kind)).copied().map(Slot::Entry),
        }
    }

    pub fn is_dir(self) -> bool {
        self == Slot::Entry(Kind::Dir)
    }
}

/// One path's metadata. The path starts at `offset` in the arena; the link target follows it
/// directly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub size: u64,
    pub mtime: u64,
    pub offset: u32,
    pub uid: u32,
    pub gid: u32,
    /// Where the record came from: its member number in the layer's tar (a layer's table,
    /// for settling members at one path) or the layer's position in the stack (a merged index).
    pub origin: u32,
    pub path_len: u16,
    pub link_len: u16,
    pub mode: u16,
    pub slot: u8,
    /// [`Record::HIDES_LOWER`].
    pub flags: u8,
}

impl Record {
    /// In a layer's table: the layer removed what the layers below have at and under this
    /// path before (or while) putting its own entry there.
    pub const HIDES_LOWER: u8 = 1;

    pub fn slot(&self) -> Slot {
        // Tables are only made by this crate and checked when read from disk.
        Slot::from_byte(self.slot).unwrap_or(Slot::Whiteout)
    }

    pub fn hides_lower(&self) -> bool {
        self.flags & Self::HIDES_LOWER != 0
    }

    pub fn path_end(&self) -> usize {
        self.offset as usize + usize::from(self.path_len)
    }

    pub fn link_end(&self) -> usize {
        self.path_end() + usize::from(self.link_len)
    }

    /// This record's path and link target with other metadata.
    pub fn with_meta(self, meta: Meta) -> Record {
        record(self.offset, self.path_len, self.link_len, meta)
    }
}

/// Metadata of a record to be added, apart from its path and link target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Meta {
    pub slot: Slot,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u64,
    pub size: u64,
    pub origin: u32,
    pub flags: u8,
}

impl Meta {
    /// A directory an entry needs but no layer describes: 0755 root, time zero.
    pub fn implicit_dir(origin: u32) -> Meta {
        Meta {
            slot: Slot::Entry(Kind::Dir),
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 0,
            size: 0,
            origin,
            flags: 0,
        }
    }
}

/// Why a table cannot take another record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error("{what} of {len} bytes is longer than the {max}-byte limit")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("more than 4 GiB of paths and link targets")]
    ArenaFull,
    #[error("more than 2^32 layers")]
    TooManyLayers,
}

/// Records and the arena their strings live in. The order of the records is the owner's
/// business: byte order in [`crate::FsIndex`], tree order in a layer's table.
#[derive(Clone, Debug, Default)]
pub(crate) struct Table {
    pub arena: String,
    pub records: Vec<Record>,
}

impl Table {
    pub fn with_capacity(records: usize, arena: usize) -> Table {
        Table {
            arena: String::with_capacity(arena),
            records: Vec::with_capacity(records),
        }
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn path(&self, record: &Record) -> &str {
        &self.arena[record.offset as usize..record.path_end()]
    }

    pub fn link(&self, record: &Record) -> &str {
        &self.arena[record.path_end()..record.link_end()]
    }

    /// Appends a record whose path and link target are new strings.
    pub fn push(&mut self, path: &str, link: &str, meta: Meta) -> Result<(), TableError> {
        let path_len = short_len("path", path)?;
        let link_len = short_len("link target", link)?;
        let offset = u32::try_from(self.arena.len()).map_err(|_| TableError::ArenaFull)?;
        if u32::try_from(self.arena.len() + path.len() + link.len()).is_err() {
            return Err(TableError::ArenaFull);
        }
        self.arena.push_str(path);
        self.arena.push_str(link);
        self.records.push(record(offset, path_len, link_len, meta));
        Ok(())
    }

    pub fn entry<'a>(&'a self, record: &Record) -> Entry<'a> {
        let kind = match record.slot() {
            Slot::Entry(kind) => kind,
            Slot::Whiteout | Slot::Opaque => Kind::Dir,
        };
        Entry {
            path: self.path(record),
            kind,
            mode: u32::from(record.mode),
            uid: record.uid,
            gid: record.gid,
            mtime: record.mtime,
            size: record.size,
            link: self.link(record),
        }
    }

    /// Arena bytes no record points at (replaced paths, dropped members).
    pub fn unused_arena_bytes(&self) -> usize {
        let used: usize = self
            .records
            .iter()
            .map(|record| record.link_end() - record.offset as usize)
            .sum();
        self.arena.len().saturating_sub(used)
    }

    /// The same records over a fresh arena holding only their strings, in record order.
    pub fn compacted(&self) -> Table {
        let used = self.arena.len() - self.unused_arena_bytes();
        let mut table = Table::with_capacity(self.records.len(), used);
        for record in &self.records {
            let offset = table.arena.len() as u32;
            table
                .arena
                .push_str(&self.arena[record.offset as usize..record.link_end()]);
            table.records.push(Record { offset, ..*record });
        }
        table
    }
}

/// Tables are equal when their records say the same in the same order, wherever their strings
/// lie in the arenas.
impl PartialEq for Table {
    fn eq(&self, other: &Table) -> bool {
        let same = |a: &Record, b: &Record| {
            self.path(a) == other.path(b)
                && self.link(a) == other.link(b)
                && Record { offset: 0, ..*a } == Record { offset: 0, ..*b }
        };
        self.records.len() == other.records.len()
            && self
                .records
                .iter()
                .zip(&other.records)
                .all(|(a, b)| same(a, b))
    }
}

impl Eq for Table {}

fn short_len(what: &'static str, text: &str) -> Result<u16, TableError> {
    u16::try_from(text.len()).map_err(|_| TableError::TooLong {
        what,
        len: text.len(),
        max: usize::from(u16::MAX),
    })
}

fn record(offset: u32, path_len: u16, link_len: u16, meta: Meta) -> Record {
    Record {
        size: meta.size,
        mtime: meta.mtime,
        offset,
        uid: meta.uid,
        gid: meta.gid,
        origin: meta.origin,
        path_len,
        link_len,
        // Permission bits with setuid, setgid and sticky: 12 bits.
        mode: (meta.mode & 0o7777) as u16,
        slot: meta.slot.to_byte(),
        flags: meta.flags,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_forty_bytes() {
        assert_eq!(std::mem::size_of::<Record>(), 40);
    }

    #[test]
    fn slots_round_trip_through_their_byte() {
        for byte in 0..=8 {
            assert_eq!(Slot::from_byte(byte).unwrap().to_byte(), byte);
        }
        assert_eq!(Slot::from_byte(9), None);
    }

    #[test]
    fn compacting_drops_unreferenced_bytes() {
        let mut table = Table::default();
        let meta = Meta::implicit_dir(0);
        table.push("gone", "", meta).unwrap();
        table.push("kept", "target", meta).unwrap();
        table.records.remove(0);
        assert_eq!(table.unused_arena_bytes(), 4);
        let compact = table.compacted();
        assert_eq!(compact.arena, "kepttarget");
        assert_eq!(compact.link(&compact.records[0]), "target");
    }
}
