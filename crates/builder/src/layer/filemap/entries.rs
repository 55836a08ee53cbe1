//! The entries of a file map in tar order: the entries added one by one merged with the walks of
//! the host trees.

use super::entry::{Entry, Node};
use super::host_tree::{HostWalk, Inode};
use super::{Explicit, FileMap, FileMapError, Rank};

/// The entries of a file map in tar order: the entries added one by one merged with the walks of
/// the host trees. Where several have a path, the one with the highest [`Rank`] that no later
/// add hides is written.
pub(crate) struct Entries<'a> {
    pub(super) map: &'a FileMap,
    pub(super) explicit:
        std::iter::Peekable<std::collections::btree_map::Iter<'a, String, Explicit>>,
    pub(super) walks: Vec<HostWalk<'a>>,
    /// Whether the walks have read ahead their first entries.
    pub(super) started: bool,
    /// `(path/, seq)` of each non-directory of a host tree whose path may still have entries of
    /// earlier adds below it, which it hides.
    pub(super) shadows: Vec<(String, u64)>,
}

impl Iterator for Entries<'_> {
    type Item = Result<(String, Entry), FileMapError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.advance().transpose()
    }
}

impl Entries<'_> {
    fn advance(&mut self) -> Result<Option<(String, Entry)>, FileMapError> {
        if !self.started {
            self.started = true;
            for walk in &mut self.walks {
                walk.next = walk.advance()?;
            }
        }
        loop {
            let mut next = self.explicit.peek().map(|(path, _)| path.as_str());
            for walk in &self.walks {
                if let Some(item) = &walk.next {
                    if next.is_none_or(|next| item.path.as_str() < next) {
                        next = Some(&item.path);
                    }
                }
            }
            let Some(path) = next.map(str::to_owned) else {
                return Ok(None);
            };
            self.shadows
                .retain(|(prefix, _)| path < *prefix || path.starts_with(prefix.as_str()));

            let visible = |shadows: &[(String, u64)], seq: u64| {
                !self.map.masked(&path, seq)
                    && !shadows
                        .iter()
                        .any(|(prefix, shadow)| *shadow > seq && path.starts_with(prefix.as_str()))
            };
            let mut best: Option<Candidate> = None;
            if let Some((_, explicit)) = self.explicit.next_if(|(next, _)| **next == path) {
                if visible(&self.shadows, explicit.seq) {
                    let rank = Rank {
                        seq: explicit.seq,
                        implicit: explicit.implicit,
                    };
                    best = Some(Candidate {
                        rank,
                        entry: explicit.entry.clone(),
                        linked: None,
                        from_walk: false,
                    });
                }
            }
            for walk in self.walks.iter_mut() {
                if walk.next.as_ref().is_none_or(|item| item.path != path) {
                    continue;
                }
                let item = walk.next.take().expect("checked above");
                walk.next = walk.advance()?;
                let is_dir = matches!(item.entry.node, Node::Dir);
                let rank = Rank {
                    seq: walk.tree.seq,
                    implicit: false,
                };
                // Trees of one add (a tree and its directories written through base symlinks)
                // may share directories, nothing else.
                if let Some(best) = best.as_ref().filter(|best| best.from_walk) {
                    if best.rank.seq == rank.seq
                        && !(is_dir && matches!(best.entry.node, Node::Dir))
                    {
                        return Err(FileMapError::HostTreeCollision {
                            path,
                            src: walk.tree.src.clone(),
                            link: walk.tree.via.clone().unwrap_or_default(),
                        });
                    }
                }
                if best.as_ref().is_none_or(|best| rank.outranks(&best.rank))
                    && visible(&self.shadows, rank.seq)
                {
                    best = Some(Candidate {
                        rank,
                        entry: item.entry,
                        linked: item.inode,
                        from_walk: true,
                    });
                }
                if !is_dir {
                    self.shadows.push((format!("{path}/"), rank.seq));
                }
            }
            let Some(Candidate {
                rank,
                mut entry,
                linked,
                from_walk,
            }) = best
            else {
                continue;
            };
            if from_walk {
                // Entries added one by one were checked when they were added.
                self.map.check_base(&path, &entry.node, rank.seq)?;
            }
            if let Some(inode) = linked {
                // The trees of one add (a tree and its directories written through base
                // symlinks) share their groups of hardlinked files, kept by the first of them.
                let group = self
                    .walks
                    .iter()
                    .position(|walk| walk.tree.seq == rank.seq)
                    .expect("the walk of the entry");
                match self.walks[group].inodes.entry(inode) {
                    std::collections::hash_map::Entry::Occupied(first) => {
                        entry.node = Node::Hardlink(first.get().clone())
                    }
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert(path.clone());
                    }
                }
            }
            return Ok(Some((path, entry)));
        }
    }
}

/// One of the entries at a path while host trees are walked.
pub(super) struct Candidate {
    pub(super) rank: Rank,
    pub(super) entry: Entry,
    /// The inode of a host file with several links.
    pub(super) linked: Option<Inode>,
    /// Whether it comes from a host tree.
    pub(super) from_walk: bool,
}
