//! What one layer is made of, as asked for: its inputs in order (host files, host trees, tars,
//! deletions, opaque directories), turned into a file map only once the base they land on is
//! known, so that destinations resolve against it.

use std::fmt;
use std::path::PathBuf;

use crate::layer::filemap::{EntryMeta, FileMap, FileMapError, FileSource, HostModes};

/// One input of a layer, applied in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// A regular file at `dest`. Unless `meta.mode` is set, a host file's permission bits are
    /// taken as `modes` says.
    File {
        source: FileSource,
        dest: String,
        meta: EntryMeta,
        modes: HostModes,
    },
    /// The tree under a host directory, at `dest`, its permission bits taken as `modes` says.
    Dir {
        source: PathBuf,
        dest: String,
        modes: HostModes,
    },
    /// The entries of an existing tar (plain, gzip or zstd).
    Tar(PathBuf),
    /// Deletes a path of the layers below (a whiteout).
    Delete(String),
    /// Hides what the layers below have under a directory (an opaque whiteout).
    Opaque(String),
}

impl Input {
    /// Adds this input to `files`.
    pub fn add_to(&self, files: &mut FileMap) -> Result<(), FileMapError> {
        match self {
            Input::File {
                source,
                dest,
                meta,
                modes,
            } => files.add_file_with_modes(dest, source.clone(), meta.clone(), *modes),
            Input::Dir {
                source,
                dest,
                modes,
            } => files.add_host_dir_with_modes(source, dest, *modes),
            Input::Tar(path) => files.add_tar(path),
            Input::Delete(path) => files.delete(path),
            Input::Opaque(path) => files.make_opaque(path),
        }
    }
}

impl Input {
    /// What the input puts where, without host paths (which differ between machines and would
    /// make the image's history, hence its digest, depend on where the build ran): `file DEST`,
    /// `dir DEST`, `tar NAME` (the tar's file name), `delete PATH`, `opaque DIR`.
    pub fn summary(&self) -> String {
        match self {
            Input::File { dest, .. } => format!("file {dest}"),
            Input::Dir { dest, .. } => format!("dir {dest}"),
            Input::Tar(path) => format!(
                "tar {}",
                path.file_name().map_or_else(
                    || path.display().to_string(),
                    |name| name.to_string_lossy().into_owned()
                )
            ),
            Input::Delete(path) => format!("delete {path}"),
            Input::Opaque(path) => format!("opaque {path}"),
        }
    }
}

/// The input the way the `layerize build` flag that gives it is written, without the dashes:
/// `file SRC:DEST[:MODE]`, `dir SRC:DEST`, `tar FILE`, `delete PATH`, `opaque DIR`.
impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Input::File {
                source, dest, meta, ..
            } => {
                match source {
                    FileSource::Host(path) => write!(f, "file {}:{dest}", path.display())?,
                    FileSource::Inline(bytes) => write!(f, "file ({} bytes):{dest}", bytes.len())?,
                }
                match meta.mode {
                    Some(mode) => write!(f, ":{mode:o}"),
                    None => Ok(()),
                }
            }
            Input::Dir { source, dest, .. } => write!(f, "dir {}:{dest}", source.display()),
            Input::Tar(path) => write!(f, "tar {}", path.display()),
            Input::Delete(path) => write!(f, "delete {path}"),
            Input::Opaque(path) => write!(f, "opaque {path}"),
        }
    }
}

/// Why a layer's inputs do not make a file map.
#[derive(Debug, thiserror::Error)]
#[error("{input}: {error}")]
pub struct InputError {
    /// The input as [`Input`]'s `Display` writes it.
    pub input: String,
    pub error: FileMapError,
}

/// Applies `inputs` in order to `files`, naming the input that fails.
pub fn apply(inputs: &[Input], files: &mut FileMap) -> Result<(), InputError> {
    for input in inputs {
        input.add_to(files).map_err(|error| InputError {
            input: input.to_string(),
            error,
        })?;
    }
    Ok(())
}
