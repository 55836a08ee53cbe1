//! A `.deb`'s contents as one layer's tar: its files (moved into `/usr` on a merged-/usr base,
//! less what the base's dpkg path filters leave out) and the dpkg files that belong to it alone,
//! plus the facts the dpkg database needs.
//!
//! - [`archive`]: the `ar` container and its compressed members;
//! - [`control_tar`]: `control.tar`'s members (control, md5sums, conffiles, scripts);
//! - [`data`]: `data.tar`'s entries, checked and rewritten for the base, streamed into the layer;
//! - [`info`]: the package's own `var/lib/dpkg/info/*` and `status.d` files in the layer;
//! - [`facts`]: the facts as text, for a cache kept by the `.deb`'s SHA256.

mod archive;
mod control_tar;
mod data;
pub mod facts;
mod info;

pub use control_tar::EXECUTABLE_MEMBERS as MAINTAINER_SCRIPTS;
pub(crate) use data::layer_path_of;

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::control::Paragraph;
use crate::path_filter::PathFilters;

/// Bump when the layer a .deb converts to changes for the same .deb (it is part of layer keys).
pub const CONVERSION_FORMAT: &str = "deb-layer-v1";

pub use crate::base::UsrMerge;

/// What a converted `.deb` tells the dpkg database about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Converted {
    /// The `.deb`'s control file, as written.
    pub control: Paragraph,
    /// Each conffile (as the package names it) with the md5 hex of the content the package ships.
    pub conffiles: Vec<(String, String)>,
    /// The maintainer scripts it has (`config`, `postinst`, `postrm`, `preinst`, `prerm`,
    /// `triggers`), sorted.
    pub scripts: Vec<String>,
    /// Its own paths as dpkg's `.list` has them (`/.`, `/bin`, `/bin/ls`, …): not rewritten for
    /// the usr merge, no trailing slash, in `data.tar` order.
    pub paths: Vec<String>,
}

/// A `.deb` that cannot become a layer, or a layer that cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum DebError {
    #[error("cannot read {}: {source}", deb.display())]
    Read {
        deb: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a usable .deb: {problem}", deb.display())]
    Malformed { deb: PathBuf, problem: String },
    #[error(
        "{}: member {member} is compressed with {compression}, which layerize cannot read \
         (gzip, xz, zstd or none)",
        deb.display()
    )]
    Compression {
        deb: PathBuf,
        member: String,
        compression: String,
    },
    #[error("{}: data.tar entry {entry:?} is refused: {problem}", deb.display())]
    UnsafeEntry {
        deb: PathBuf,
        entry: String,
        problem: String,
    },
    #[error("cannot write the layer of {}: {source}", deb.display())]
    Write {
        deb: PathBuf,
        source: std::io::Error,
    },
}

/// Reads the `.deb` at `deb` and writes to `out` an uncompressed tar of its layer: its
/// `data.tar` entries (modes, owners, link targets and hard links kept; paths under the base's
/// usr-merge links moved to their targets, those links' own entries dropped; the paths `filters`
/// leave out dropped, as dpkg does not unpack them; anything escaping the root refused), its
/// `var/lib/dpkg/info/<dpkg_name>.*` files and its `var/lib/dpkg/status.d/<name>` entry. Entries
/// are not sorted and keep the `.deb`'s mtimes: the builder's layer writer normalises both.
pub fn convert(
    deb: &Path,
    dpkg_name: &str,
    usr: &UsrMerge,
    filters: &PathFilters,
    out: impl Write,
) -> Result<Converted, DebError> {
    let mut layer = tar::Builder::new(out);
    let (control, files) = read_into(deb, usr, filters, &mut layer)?;
    info::append(deb, dpkg_name, &control, &files, &mut layer)?;
    layer
        .into_inner()
        .and_then(|mut out| out.flush())
        .map_err(|source| DebError::Write {
            deb: deb.to_owned(),
            source,
        })?;
    Ok(converted(control, files))
}

/// The same facts as [`convert`] gives, without keeping a layer (for the dpkg database of a
/// layer reused from an earlier build). Path filters change no fact: dpkg lists and hashes a
/// path it leaves out as any other.
pub fn read_facts(deb: &Path, usr: &UsrMerge) -> Result<Converted, DebError> {
    let mut discarded = tar::Builder::new(std::io::sink());
    let (control, files) = read_into(deb, usr, &PathFilters::default(), &mut discarded)?;
    Ok(converted(control, files))
}

/// Reads `control.tar`, then streams `data.tar`'s entries into `layer`.
fn read_into<W: Write>(
    deb: &Path,
    usr: &UsrMerge,
    filters: &PathFilters,
    layer: &mut tar::Builder<W>,
) -> Result<(control_tar::ControlMembers, data::DataFacts), DebError> {
    let mut reader = archive::DebReader::open(deb)?;
    let control = control_tar::read(deb, reader.control_tar()?)?;
    let files = data::stream(deb, reader.data_tar()?, usr, filters, &control, layer)?;
    Ok((control, files))
}

fn converted(control: control_tar::ControlMembers, files: data::DataFacts) -> Converted {
    Converted {
        scripts: control.scripts(),
        control: control.paragraph,
        conffiles: files.conffiles,
        paths: files.paths,
    }
}

#[cfg(test)]
mod tests;
