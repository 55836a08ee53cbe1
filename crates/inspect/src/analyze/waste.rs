//! The wasted-bytes ledger. Layers are applied bottom-up to a map of the regular files visible
//! so far (path -> layer and size); a copy that a later layer overwrites, deletes or hides is
//! lost, and at the end the map holds the copies that survive into the image's filesystem.
//!
//! A path's wasted bytes are the bytes of all its copies but the one that survives: every lost
//! copy. A path deleted in the end has no survivor, so all its copies are wasted. Only regular
//! files carry bytes; directories, links and devices are tracked only as what replaces files.
//! Memory is one entry per visible file plus one per lost copy.

use std::collections::{BTreeMap, HashMap};

use layerize_basefs::{Change, Kind, LayerIndex};
use serde::Serialize;

/// How a copy was lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fate {
    /// A later layer put an entry at the same path (a file, a link, a directory), or put a
    /// directory where this file stood on the way to an entry below it.
    Overwritten,
    /// A later layer's whiteout removed the path or a directory above it.
    Deleted,
    /// A later layer hid it: an opaque directory above it, or a non-directory (or a directory
    /// that replaces the lower one) at a directory above it.
    Hidden,
}

/// A layer's copy of a file that does not survive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LostCopy {
    pub path: String,
    pub size: u64,
    pub fate: Fate,
    /// The layer that overwrote, deleted or hid it.
    pub by_layer: usize,
}

/// The copies of one path, when some of them are wasted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PathWaste {
    pub path: String,
    /// Copies of the path in all layers, the survivor included.
    pub copies: usize,
    pub wasted_bytes: u64,
    /// The layer whose copy the image shows; `None` when the path is gone in the end.
    pub surviving_layer: Option<usize>,
}

/// What the ledger found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Waste {
    /// Per layer (by position), its lost copies in the order they were lost.
    pub lost: Vec<Vec<LostCopy>>,
    /// Every path with wasted bytes, most wasted first (then by path).
    pub paths: Vec<PathWaste>,
}

impl Waste {
    pub fn wasted_bytes(&self) -> u64 {
        self.lost.iter().flatten().map(|copy| copy.size).sum()
    }
}

/// The copy of a file the image shows at a path so far.
#[derive(Clone, Copy, Debug)]
struct Visible {
    layer: usize,
    size: u64,
}

/// Applies layers in order and collects what each loses.
#[derive(Debug, Default)]
pub struct Ledger {
    live: BTreeMap<String, Visible>,
    lost: Vec<Vec<LostCopy>>,
}

impl Ledger {
    pub fn new() -> Ledger {
        Ledger::default()
    }

    /// Applies the layer at position `layer` on top of every layer applied before. Positions
    /// must grow; a layer that cannot be read is simply not applied.
    pub fn apply(&mut self, layer: usize, index: &LayerIndex) {
        assert!(layer >= self.lost.len(), "layers are applied bottom-up");
        self.lost.resize_with(layer + 1, Vec::new);
        if index.hides_root() {
            let all: Vec<String> = self.live.keys().cloned().collect();
            for path in all {
                self.lose(&path, Fate::Hidden, layer);
            }
        }
        // Tree order: a directory comes right before its subtree, so what the layer removes
        // below a path is removed before the layer's own entries there are added.
        for change in index.changes() {
            self.lose_ancestors(change.path, layer);
            match change.change {
                Change::Whiteout => {
                    self.lose(change.path, Fate::Deleted, layer);
                    self.lose_below(change.path, Fate::Deleted, layer);
                }
                Change::Opaque => self.lose_below(change.path, Fate::Hidden, layer),
                Change::Put(kind) => {
                    self.lose(change.path, Fate::Overwritten, layer);
                    if change.hides_lower || kind != Kind::Dir {
                        self.lose_below(change.path, Fate::Hidden, layer);
                    }
                    if kind == Kind::File {
                        let copy = Visible {
                            layer,
                            size: change.size,
                        };
                        self.live.insert(change.path.to_owned(), copy);
                    }
                }
            }
        }
    }

    /// The lost copies per layer and the wasted bytes per path.
    pub fn finish(self) -> Waste {
        let mut by_path: HashMap<&str, PathWaste> = HashMap::new();
        for copy in self.lost.iter().flatten() {
            let entry = by_path
                .entry(copy.path.as_str())
                .or_insert_with(|| PathWaste {
                    path: copy.path.clone(),
                    copies: 0,
                    wasted_bytes: 0,
                    surviving_layer: None,
                });
            entry.copies += 1;
            entry.wasted_bytes += copy.size;
        }
        for (path, entry) in &mut by_path {
            if let Some(survivor) = self.live.get(*path) {
                entry.copies += 1;
                entry.surviving_layer = Some(survivor.layer);
            }
        }
        let mut paths: Vec<PathWaste> = by_path.into_values().collect();
        paths.sort_by(|a, b| {
            b.wasted_bytes
                .cmp(&a.wasted_bytes)
                .then_with(|| a.path.cmp(&b.path))
        });
        Waste {
            lost: self.lost,
            paths,
        }
    }

    /// A file of a lower layer at a parent of `path` becomes a directory.
    fn lose_ancestors(&mut self, path: &str, layer: usize) {
        let mut end = 0;
        while let Some(slash) = path[end..].find('/') {
            end += slash;
            self.lose(&path[..end], Fate::Overwritten, layer);
            end += 1;
        }
    }

    fn lose(&mut self, path: &str, fate: Fate, by_layer: usize) {
        if let Some(copy) = self.live.remove(path) {
            self.record(path.to_owned(), copy, fate, by_layer);
        }
    }

    /// Everything strictly below the directory `path`.
    fn lose_below(&mut self, path: &str, fate: Fate, by_layer: usize) {
        // Byte order keeps the paths starting with `dir/` together, from `dir/` up to `dir0`
        // ('0' is the byte after '/').
        let (from, to) = (format!("{path}/"), format!("{path}0"));
        let below: Vec<String> = self
            .live
            .range(from..to)
            .map(|(path, _)| path.clone())
            .collect();
        for path in below {
            let copy = self.live.remove(&path).expect("listed just now");
            self.record(path, copy, fate, by_layer);
        }
    }

    fn record(&mut self, path: String, copy: Visible, fate: Fate, by_layer: usize) {
        debug_assert!(copy.layer < by_layer, "a layer never loses its own files");
        self.lost[copy.layer].push(LostCopy {
            path,
            size: copy.size,
            fate,
            by_layer,
        });
    }
}

#[cfg(test)]
mod tests;
