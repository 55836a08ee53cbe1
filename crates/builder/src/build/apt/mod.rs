//! apt packages as layers: what a build asks for (requests and options), and how planning turns
//! it into layers — one per resolved `.deb` (keyed by the `.deb`'s sha256, so a package's layer
//! never changes when its neighbours do), a dpkg database layer, and a configure layer that runs
//! the maintainer scripts in the sandbox.

pub(crate) mod make;
pub mod plan;

use std::path::PathBuf;

use layerize_apt::deb::UsrMerge;
use layerize_apt::package::ArchivePackage;
use layerize_apt::path_filter::PathFilters;

/// Settings for every apt entry of a build.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AptOptions {
    /// One-line sources (`deb [signed-by=PATH] URI SUITE COMPONENT…`), read after the base's.
    pub sources: Vec<String>,
    /// Use only `sources`, not the base's own.
    pub replace_sources: bool,
    /// Host files with OpenPGP public keys (binary or armored). A source's `signed-by` may name
    /// one by the path given here; the others join the default keyring.
    pub keys: Vec<PathBuf>,
    pub scripts: AptScripts,
    /// Install `Recommends` too (apt's default; off here, as in most image builds).
    pub recommends: bool,
}

/// Whether the packages' maintainer scripts run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AptScripts {
    /// `dpkg --configure -a` in the sandbox, as one configure layer.
    #[default]
    Run,
    /// Left out; the report lists every package whose scripts did not run.
    Skip,
}

/// What an apt entry asks for: packages as `name`, `name=version`, `name/suite`, `name:arch`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AptRequest {
    pub packages: Vec<String>,
    /// One layer for the requested packages and what only they pull in (else one per package).
    pub group: bool,
}

/// An apt layer of the build: asked for, or made by planning.
#[derive(Clone, Debug)]
pub enum AptSpec {
    /// An entry of the build file or `--apt`: expanded while planning.
    Request(AptRequest),
    /// Resolved `.deb`s as one layer (one, unless grouped or batched).
    Packages(PackageLayer),
    /// The dpkg database over the base's: `status`, `extended_states`, upgrade whiteouts.
    Database(Box<Database>),
}

/// The `.deb`s of one layer, where the base's merged /usr sends their files, and which of them
/// the base's dpkg leaves out.
#[derive(Clone, Debug)]
pub struct PackageLayer {
    pub debs: Vec<DebPackage>,
    /// The base's top-level directories that are symlinks into /usr (`bin` -> `usr/bin`).
    pub usr: UsrMerge,
    /// The base's `path-exclude` and `path-include` rules.
    pub filters: PathFilters,
}

/// One resolved package of the build.
#[derive(Clone, Debug)]
pub struct DebPackage {
    pub package: ArchivePackage,
    /// Named by a request (apt's manual), else auto-installed.
    pub requested: bool,
    /// The requested packages that pulled it in.
    pub pulled_by: Vec<String>,
    /// The base's version it replaces, for an upgrade.
    pub upgrades: Option<String>,
}

/// What the dpkg database layer is made from.
#[derive(Clone, Debug)]
pub struct Database {
    pub base_status: String,
    pub base_extended_states: Option<String>,
    pub packages: Vec<DebPackage>,
    /// Whether the configure layer follows (new packages are then `unpacked` until it runs).
    pub configure: bool,
    pub usr: UsrMerge,
    /// For each upgraded base package (its dpkg name): its old `.list`, whose paths the new
    /// version no longer ships become whiteouts.
    pub old_lists: Vec<(String, String)>,
}
