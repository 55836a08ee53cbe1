//! The merge against a naive model: random small layer stacks written as real tars, read and
//! merged, compared with applying the same members one by one to maps of whole paths.

use std::collections::BTreeMap;

use proptest::prelude::*;

use crate::test_tar::{stack, TarWriter};
use crate::Kind;

/// Names chosen so that byte order and tree order differ (`a` < `a.` < `a/…` in bytes).
const NAMES: [&str; 3] = ["a", "a.", "b"];
const MTIME: u64 = 1_700_000_000;

#[derive(Clone, Debug)]
enum Member {
    Entry {
        path: String,
        kind: Kind,
        mode: u32,
    },
    Whiteout(String),
    /// `.wh..wh..opq` in this directory (`""`: the root).
    Opaque(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Node {
    kind: Kind,
    mode: u32,
    mtime: u64,
}

const IMPLICIT_DIR: Node = Node {
    kind: Kind::Dir,
    mode: 0o755,
    mtime: 0,
};

/// A path as its components; an opaque whiteout in D is the key `D + [""]`, which sorts
/// right after D and before D's children, and lies below D.
type Key = Vec<String>;

#[derive(Clone, Copy, Debug)]
enum State {
    Entry { node: Node, hides_lower: bool },
    Whiteout,
    Opaque,
}

fn key(path: &str) -> Key {
    if path.is_empty() {
        Vec::new()
    } else {
        path.split('/').map(str::to_owned).collect()
    }
}

fn remove_below<V>(map: &mut BTreeMap<Key, V>, key: &Key) {
    map.retain(|other, _| !(other.len() > key.len() && other.starts_with(key)));
}

/// The layer's own view, applying members in archive order.
fn naive_layer(members: &[Member]) -> BTreeMap<Key, State> {
    let mut layer: BTreeMap<Key, State> = BTreeMap::new();
    for member in members {
        let key = match member {
            Member::Entry { path, .. } | Member::Whiteout(path) => key(path),
            Member::Opaque(dir) => {
                let mut key = key(dir);
                key.push(String::new());
                key
            }
        };
        // Whatever lies below a path makes its ancestors directories of this layer.
        for depth in 1..key.len() {
            let ancestor = &key[..depth];
            let is_dir = match layer.get(ancestor) {
                Some(State::Entry { node, .. }) => node.kind == Kind::Dir,
                Some(State::Whiteout) => false,
                Some(State::Opaque) | None => true,
            };
            if !is_dir {
                let implicit = State::Entry {
                    node: IMPLICIT_DIR,
                    hides_lower: true,
                };
                layer.insert(ancestor.to_vec(), implicit);
            }
        }
        match member {
            Member::Entry { kind, mode, .. } => {
                if *kind != Kind::Dir {
                    remove_below(&mut layer, &key);
                }
                let hid = match layer.get(&key) {
                    Some(State::Entry { hides_lower, .. }) => *hides_lower,
                    Some(State::Whiteout) => true,
                    Some(State::Opaque) | None => false,
                };
                let node = Node {
                    kind: *kind,
                    mode: *mode,
                    mtime: MTIME,
                };
                let hides_lower = hid || *kind != Kind::Dir;
                layer.insert(key, State::Entry { node, hides_lower });
            }
            Member::Whiteout(_) => {
                let state = match layer.get(&key) {
                    Some(State::Entry { node, .. }) => State::Entry {
                        node: *node,
                        hides_lower: true,
                    },
                    _ => State::Whiteout,
                };
                layer.insert(key, state);
            }
            Member::Opaque(_) => {
                layer.insert(key, State::Opaque);
            }
        }
    }
    layer
}

/// Applies one layer's view to the whole filesystem.
fn naive_apply(merged: &mut BTreeMap<Key, Node>, layer: &BTreeMap<Key, State>) {
    for (key, state) in layer {
        let (path, is_opaque) = match key.split_last() {
            Some((last, dir)) if last.is_empty() => (dir.to_vec(), true),
            _ => (key.clone(), false),
        };
        if is_opaque && path.is_empty() {
            merged.clear();
            continue;
        }
        let depth = if is_opaque {
            path.len()
        } else {
            path.len() - 1
        };
        for end in 1..=depth {
            let ancestor = &path[..end];
            if merged.get(ancestor).map(|node| node.kind) != Some(Kind::Dir) {
                merged.insert(ancestor.to_vec(), IMPLICIT_DIR);
            }
        }
        if is_opaque {
            remove_below(merged, &path);
            continue;
        }
        match state {
            State::Whiteout => {
                remove_below(merged, &path);
                merged.remove(&path);
            }
            State::Entry { node, hides_lower } => {
                let merges = node.kind == Kind::Dir
                    && !hides_lower
                    && merged.get(&path).map(|node| node.kind) == Some(Kind::Dir);
                if !merges {
                    remove_below(merged, &path);
                }
                merged.insert(path, *node);
            }
            State::Opaque => unreachable!("opaque states live at marker keys"),
        }
    }
}

fn tar_of(members: &[Member]) -> Vec<u8> {
    let mut tar = TarWriter::new();
    for member in members {
        match member {
            Member::Entry { path, kind, mode } => match kind {
                Kind::Dir => tar.dir(path, *mode),
                Kind::Symlink => tar.symlink(path, "target"),
                _ => tar.file(path, b"", *mode),
            },
            Member::Whiteout(path) => tar.whiteout(path),
            Member::Opaque(dir) => tar.opaque(dir),
        };
    }
    tar.finish()
}

fn path_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(&NAMES[..]), 1..=3).prop_map(|names| names.join("/"))
}

fn member_strategy() -> impl Strategy<Value = Member> {
    let mode = prop::sample::select(&[0o755u32, 0o700, 0o644][..]);
    let kind = prop::sample::select(&[Kind::File, Kind::Dir, Kind::Symlink][..]);
    prop_oneof![
        6 => (path_strategy(), kind, mode).prop_map(|(path, kind, mode)| Member::Entry {
            path,
            kind,
            mode: if kind == Kind::Symlink { 0o777 } else { mode },
        }),
        2 => path_strategy().prop_map(Member::Whiteout),
        1 => path_strategy().prop_map(Member::Opaque),
        1 => Just(Member::Opaque(String::new())),
    ]
}

fn stack_strategy() -> impl Strategy<Value = Vec<Vec<Member>>> {
    prop::collection::vec(prop::collection::vec(member_strategy(), 0..8), 1..4)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn merge_matches_applying_members_one_by_one(layers in stack_strategy()) {
        let mut expected: BTreeMap<Key, Node> = BTreeMap::new();
        for members in &layers {
            naive_apply(&mut expected, &naive_layer(members));
        }
        let tars: Vec<Vec<u8>> = layers.iter().map(|members| tar_of(members)).collect();
        let index = stack(&tars);
        let actual: BTreeMap<Key, Node> = index
            .iter()
            .map(|entry| (key(entry.path), Node { kind: entry.kind, mode: entry.mode, mtime: entry.mtime }))
            .collect();
        prop_assert_eq!(&actual, &expected);

        // The index's own invariants: byte order, every entry found by `get`, and every
        // entry's parent a directory of the index.
        let paths: Vec<&str> = index.iter().map(|entry| entry.path).collect();
        prop_assert!(paths.windows(2).all(|pair| pair[0] < pair[1]));
        for path in &paths {
            prop_assert_eq!(index.get(path).map(|entry| entry.path), Some(*path));
            if let Some((parent, _)) = path.rsplit_once('/') {
                prop_assert_eq!(index.get(parent).map(|entry| entry.kind), Some(Kind::Dir));
            }
        }
    }
}
