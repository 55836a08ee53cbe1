//! Stacking layers bottom to top with OCI / overlay semantics, one walk in tree order per layer:
//! - a whiteout removes the path and everything below it in lower layers;
//! - an opaque whiteout in D hides everything lower layers have below D (not D itself);
//! - an entry replaces a lower entry at its path; a non-directory replacing a lower directory
//!   hides the lower children; a directory over a directory keeps the lower children and
//!   takes its own metadata;
//! - a path whose parent is missing or not a directory gets an implicit directory (0755 root),
//!   as extracting the tar would make one; an existing directory parent is kept as it is.

use std::cmp::Ordering;

use crate::entry::Kind;
use crate::index::FsIndex;
use crate::layer::{LayerIndex, Settled};
use crate::path::{is_below, tree_cmp};
use crate::table::{Meta, Record, Slot, Table, TableError};

/// The filesystem of `layers`, bottom first. Captured file contents are not part of it.
pub fn merge(layers: impl IntoIterator<Item = LayerIndex>) -> Result<FsIndex, TableError> {
    let mut merged = Table::default();
    for (number, layer) in layers.into_iter().enumerate() {
        let number = u32::try_from(number).map_err(|_| TableError::TooManyLayers)?;
        merged = merge_onto(merged, layer.settled, number)?;
    }
    Ok(FsIndex::from_merged(merged))
}

/// `lower` (merged, tree order) with layer `number` applied on top.
///
/// The result's arena is the lower arena with the layer's appended, so records of both keep
/// their strings where they are and implicit directories reuse a prefix of a descendant's path.
pub(crate) fn merge_onto(lower: Table, layer: Settled, number: u32) -> Result<Table, TableError> {
    let Settled {
        table: mut upper,
        hides_root,
    } = layer;
    if lower.records.is_empty() {
        match alone(upper, number) {
            Ok(table) => return Ok(table),
            Err(back) => upper = back,
        }
    }
    let Table {
        mut arena,
        records: lower_records,
    } = lower;
    let shift = arena.len();
    if u32::try_from(shift + upper.arena.len()).is_err() {
        return Err(TableError::ArenaFull);
    }
    if shift == 0 {
        arena = upper.arena;
    } else {
        arena.push_str(&upper.arena);
        drop(upper.arena);
    }
    let shift = shift as u32;
    let lower_records = if hides_root {
        Vec::new()
    } else {
        lower_records
    };

    let mut walk = Walk {
        arena: &arena,
        records: Vec::with_capacity(lower_records.len() + upper.records.len()),
        dirs: Vec::new(),
        hidden: None,
        number,
    };
    let mut lower = lower_records.iter().copied().peekable();
    for upper_record in &upper.records {
        let record = Record {
            offset: upper_record.offset + shift,
            origin: number,
            flags: 0,
            ..*upper_record
        };
        let path = walk.path(&record);
        while let Some(before) = lower.next_if(|l| tree_cmp(walk.path(l), path) == Ordering::Less) {
            walk.keep_lower(before, Some(path));
        }
        let below = lower
            .next_if(|l| walk.path(l) == path)
            .filter(|l| !walk.is_hidden(l));
        walk.ensure_parents(&record);
        match record.slot() {
            Slot::Whiteout => walk.hide(record),
            Slot::Entry(Kind::Dir) => {
                if upper_record.hides_lower() {
                    walk.hide(record);
                }
                walk.emit(record);
            }
            Slot::Entry(_) => {
                walk.hide(record);
                walk.emit(record);
            }
            Slot::Opaque => {
                walk.hide(record);
                match below {
                    Some(dir) if dir.slot().is_dir() => walk.emit(dir),
                    _ => walk.emit(record.with_meta(Meta::implicit_dir(number))),
                }
            }
        }
    }
    for after in lower {
        walk.keep_lower(after, None);
    }
    let records = walk.records;
    Ok(Table { arena, records })
}

/// A layer on nothing, rewritten in place when it needs no implicit directory (every path's
/// parent is one of its directories, as in tars that list them): whiteouts dropped, opaque
/// directories made implicit ones. This saves a second vector of records for the largest
/// layer of most images, the first. `Err` gives the table back for the general walk.
fn alone(mut upper: Table, number: u32) -> Result<Table, Table> {
    let mut dirs: Vec<usize> = Vec::new();
    for (index, record) in upper.records.iter().enumerate() {
        let path = upper.path(record);
        while let Some(&dir) = dirs.last() {
            if is_below(path, upper.path(&upper.records[dir])) {
                break;
            }
            dirs.pop();
        }
        let parent_len = path.rfind('/').unwrap_or(0);
        let parent_found = dirs
            .last()
            .map_or(0, |&dir| usize::from(upper.records[dir].path_len));
        if parent_len != parent_found {
            return Err(upper);
        }
        if matches!(record.slot(), Slot::Entry(Kind::Dir) | Slot::Opaque) {
            dirs.push(index);
        }
    }
    upper.records.retain_mut(|record| match record.slot() {
        Slot::Whiteout => false,
        Slot::Opaque => {
            *record = record.with_meta(Meta::implicit_dir(number));
            true
        }
        Slot::Entry(_) => {
            record.origin = number;
            record.flags = 0;
            true
        }
    });
    Ok(upper)
}

/// The output of one merge, built in tree order.
struct Walk<'a> {
    arena: &'a str,
    records: Vec<Record>,
    /// Indexes in `records` of the directories above the last record written.
    dirs: Vec<usize>,
    /// The upper record whose lower subtree is being skipped.
    hidden: Option<Record>,
    number: u32,
}

impl<'a> Walk<'a> {
    fn path(&self, record: &Record) -> &'a str {
        &self.arena[record.offset as usize..record.path_end()]
    }

    fn is_hidden(&self, lower: &Record) -> bool {
        self.hidden
            .is_some_and(|hidden| is_below(self.path(lower), self.path(&hidden)))
    }

    /// Skips the lower layers' paths below `upper` from now on.
    fn hide(&mut self, upper: Record) {
        let inside_hidden = self
            .hidden
            .is_some_and(|hidden| is_below(self.path(&upper), self.path(&hidden)));
        if !inside_hidden {
            self.hidden = Some(upper);
        }
    }

    /// A lower record that no upper record is at: kept unless hidden, and made a directory if
    /// the next upper path lies below it.
    fn keep_lower(&mut self, lower: Record, next_upper: Option<&str>) {
        if self.is_hidden(&lower) {
            return;
        }
        let is_parent_of_next = next_upper.is_some_and(|next| is_below(next, self.path(&lower)));
        if is_parent_of_next && !lower.slot().is_dir() {
            let dir = Record {
                link_len: 0,
                ..lower.with_meta(Meta::implicit_dir(self.number))
            };
            self.emit(dir);
        } else {
            self.emit(lower);
        }
    }

    /// Writes implicit directories for the ancestors of `upper` the output does not have.
    fn ensure_parents(&mut self, upper: &Record) {
        let path = self.path(upper);
        self.pop_dirs_not_above(path);
        let start = self
            .dirs
            .last()
            .map_or(0, |&dir| usize::from(self.records[dir].path_len) + 1);
        for (slash, _) in path[start..].match_indices('/') {
            let dir = Record {
                path_len: (start + slash) as u16,
                link_len: 0,
                ..upper.with_meta(Meta::implicit_dir(self.number))
            };
            self.emit(dir);
        }
    }

    fn emit(&mut self, record: Record) {
        self.pop_dirs_not_above(self.path(&record));
        if record.slot().is_dir() {
            self.dirs.push(self.records.len());
        }
        self.records.push(record);
    }

    fn pop_dirs_not_above(&mut self, path: &str) {
        while let Some(&dir) = self.dirs.last() {
            if is_below(path, self.path(&self.records[dir])) {
                break;
            }
            self.dirs.pop();
        }
    }
}

#[cfg(test)]
mod tests;
