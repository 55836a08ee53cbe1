//! Settling a layer's members into one record per path, in tree order: what the layer as a
//! whole puts at each path and whether it hides what lower layers have there.
//!
//! The rules are those of applying the members one after another (see the naive model in the
//! tests), computed from the sorted members instead of replayed:
//! - at one path the last entry wins; a whiteout does not hide an entry of its own layer (the
//!   OCI rule), it only makes the entry hide the lower layers' files below it;
//! - a non-directory entry at P drops the members below P that came before it;
//! - a member below P that survives makes P a directory: a whiteout or non-directory at P
//!   becomes an implicit directory (0755 root) that hides lower layers below P;
//! - an opaque whiteout in D hides the lower layers' files below D; without an entry for D
//!   the layer keeps D as an [`Slot::Opaque`] record.

use crate::entry::Kind;
use crate::path::{is_below, tree_cmp};
use crate::table::{Meta, Record, Slot, Table};

/// A layer's settled table and whether an opaque whiteout at the root hides every lower path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Settled {
    pub table: Table,
    pub hides_root: bool,
}

impl Settled {
    /// The record at `path`.
    pub fn find(&self, path: &str) -> Option<&Record> {
        let table = &self.table;
        table
            .records
            .binary_search_by(|record| tree_cmp(table.path(record), path))
            .ok()
            .map(|index| &table.records[index])
    }
}

/// A record of the output whose subtree is still being walked.
struct Open {
    index: usize,
    /// Members below with a number up to this were dropped by a non-directory entry at this
    /// path or above.
    cut_below: u32,
    has_descendant: bool,
}

/// Settles members recorded in archive order (`origin` = member number).
pub(crate) fn settle(mut raw: Table) -> Settled {
    let Table { arena, records } = &mut raw;
    let path = |record: &Record| &arena[record.offset as usize..record.path_end()];
    records.sort_unstable_by(|a, b| tree_cmp(path(a), path(b)).then(a.origin.cmp(&b.origin)));

    let mut hides_root = false;
    let mut stack: Vec<Open> = Vec::new();
    let mut written = 0;
    let mut group_start = 0;
    while group_start < records.len() {
        let first = records[group_start];
        let group_path = path(&first);
        let group_len = records[group_start..]
            .iter()
            .take_while(|record| path(record) == group_path)
            .count();
        let group = group_start..group_start + group_len;
        group_start = group.end;
        while let Some(open) = stack.last() {
            if is_below(group_path, path(&records[open.index])) {
                break;
            }
            finish(records, stack.pop().expect("stack is not empty"));
        }
        let cut = stack.last().map_or(0, |open| open.cut_below);
        let surviving = || records[group.clone()].iter().filter(|r| r.origin > cut);
        let Some(last) = surviving().next_back().copied() else {
            continue;
        };

        if let Some(dir) = group_path.strip_suffix('/') {
            // Opaque whiteouts in `dir`.
            if dir.is_empty() {
                hides_root = true;
                continue;
            }
            match stack.last_mut() {
                Some(open) if path(&records[open.index]) == dir => {
                    records[open.index].flags |= Record::HIDES_LOWER;
                    open.has_descendant = true;
                }
                parent => {
                    if let Some(parent) = parent {
                        parent.has_descendant = true;
                    }
                    let meta = Meta {
                        slot: Slot::Opaque,
                        flags: Record::HIDES_LOWER,
                        ..Meta::implicit_dir(last.origin)
                    };
                    records[written] = Record {
                        path_len: dir.len() as u16,
                        ..first.with_meta(meta)
                    };
                    stack.push(Open {
                        index: written,
                        cut_below: cut,
                        has_descendant: true,
                    });
                    written += 1;
                }
            }
            continue;
        }

        let winner = surviving()
            .rfind(|record| matches!(record.slot(), Slot::Entry(_)))
            .copied()
            .unwrap_or(last);
        let hides = surviving().any(|record| record.slot() == Slot::Whiteout || is_non_dir(record));
        let last_non_dir = surviving()
            .filter(|record| is_non_dir(record))
            .map(|record| record.origin)
            .max()
            .unwrap_or(0);
        if let Some(parent) = stack.last_mut() {
            parent.has_descendant = true;
        }
        records[written] = Record {
            flags: if hides { Record::HIDES_LOWER } else { 0 },
            ..winner
        };
        stack.push(Open {
            index: written,
            cut_below: cut.max(last_non_dir),
            has_descendant: false,
        });
        written += 1;
    }
    while let Some(open) = stack.pop() {
        finish(records, open);
    }
    records.truncate(written);
    Settled {
        table: raw,
        hides_root,
    }
}

/// Ends the walk below a record: one with surviving members below it must be a directory.
fn finish(records: &mut [Record], open: Open) {
    let record = &mut records[open.index];
    if open.has_descendant && (record.slot() == Slot::Whiteout || is_non_dir(record)) {
        let meta = Meta {
            flags: Record::HIDES_LOWER,
            ..Meta::implicit_dir(record.origin)
        };
        *record = Record {
            link_len: 0,
            ..record.with_meta(meta)
        };
    }
}

fn is_non_dir(record: &Record) -> bool {
    matches!(record.slot(), Slot::Entry(kind) if kind != Kind::Dir)
}
