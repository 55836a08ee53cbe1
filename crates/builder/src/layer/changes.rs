//! What a script step changed in its sandbox, as a file map: added and changed entries with the
//! modes and owners the image sees, deletions as whiteouts, remade directories as opaque ones,
//! and the directories above them with the metadata they have in the sandbox where the base does
//! not have them (a directory a needed layer made keeps its mode instead of getting a default).

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use layerize_basefs::FsIndex;
use layerize_sandbox::{ChangeKind, Changes};

use super::filemap::{EntryMeta, FileMap, FileMapError, FileSource};

/// The layer of `changes`, made in the sandbox root `root`, on `base`. `mapped_owner`: in a user
/// namespace the sandbox's root is this host uid/gid, which the image sees as 0:0.
pub fn changes_file_map(
    changes: &Changes,
    root: &Path,
    base: Option<Arc<FsIndex>>,
    mapped_owner: Option<(u32, u32)>,
) -> Result<FileMap, FileMapError> {
    let mut files = match &base {
        Some(base) => FileMap::on_base(Arc::clone(base)),
        None => FileMap::new(),
    };
    let listed: HashSet<&str> = changes
        .entries
        .iter()
        .map(|change| change.path.as_str())
        .collect();
    let mut parents_added: HashSet<String> = HashSet::new();
    for change in &changes.entries {
        add_parents(
            &mut files,
            &change.path,
            root,
            base.as_deref(),
            &listed,
            &mut parents_added,
            mapped_owner,
        )?;
        let dest = format!("/{}", change.path);
        let meta = EntryMeta {
            mode: Some(change.mode),
            uid: change.uid,
            gid: change.gid,
            mtime: None,
            xattrs: change.xattrs.clone(),
        };
        match &change.kind {
            ChangeKind::File { host_path, .. } => {
                files.add_file(&dest, FileSource::Host(host_path.clone()), meta)?
            }
            ChangeKind::Dir => files.add_dir(&dest, meta)?,
            ChangeKind::OpaqueDir => {
                files.add_dir(&dest, meta)?;
                files.make_opaque(&dest)?;
            }
            ChangeKind::Symlink { target } => files.add_symlink(&dest, target, meta)?,
            ChangeKind::Hardlink { target } => files.add_hardlink(&dest, &format!("/{target}"))?,
            ChangeKind::Deleted => files.delete(&dest)?,
        }
    }
    Ok(files)
}

/// Adds the directories above `path` that neither the changes nor the base have, with their
/// metadata in the sandbox.
fn add_parents(
    files: &mut FileMap,
    path: &str,
    root: &Path,
    base: Option<&FsIndex>,
    listed: &HashSet<&str>,
    added: &mut HashSet<String>,
    mapped_owner: Option<(u32, u32)>,
) -> Result<(), FileMapError> {
    let mut parent = String::new();
    let components: Vec<&str> = path.split('/').collect();
    for component in &components[..components.len().saturating_sub(1)] {
        if !parent.is_empty() {
            parent.push('/');
        }
        parent.push_str(component);
        if listed.contains(parent.as_str())
            || added.contains(&parent)
            || base.is_some_and(|base| base.get(&parent).is_some())
        {
            continue;
        }
        let Ok(metadata) = std::fs::symlink_metadata(root.join(&parent)) else {
            continue;
        };
        if !metadata.is_dir() {
            continue;
        }
        let (uid, gid) = match mapped_owner {
            Some(owner) if (metadata.uid(), metadata.gid()) == owner => (0, 0),
            _ => (metadata.uid(), metadata.gid()),
        };
        files.add_dir(
            &format!("/{parent}"),
            EntryMeta {
                mode: Some(metadata.mode() & 0o7777),
                uid,
                gid,
                mtime: None,
                xattrs: Default::default(),
            },
        )?;
        added.insert(parent.clone());
    }
    Ok(())
}
