//! Path rules of a file map: lexical normalisation of destinations, parents and joins.

use super::FileMapError;

/// The parents of a normalised path, outermost first.
pub(super) fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/')
        .map(move |(index, _)| &path[..index])
}

/// Normalises a destination lexically to a relative path without `.`, `..`, empty or trailing
/// components (`""` is the root), by the same rule the base index applies to tar members.
pub(crate) fn normalize(dest: &str) -> Result<String, FileMapError> {
    check_no_nul(dest)?;
    layerize_basefs::normalise(dest).map_err(|_| FileMapError::EscapesRoot(dest.to_owned()))
}

pub(super) fn check_no_nul(text: &str) -> Result<(), FileMapError> {
    if text.contains('\0') {
        return Err(FileMapError::InvalidPath {
            path: text.to_owned(),
            reason: "contains a NUL byte",
        });
    }
    Ok(())
}

pub(super) fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}
