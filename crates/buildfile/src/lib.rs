//! The `layerize.yaml` build file (docs/buildfile.md): parsed into typed values that keep the
//! line and column they were written at, and checked as a whole when it is loaded — unknown and
//! duplicate keys, layer names, kinds, host sources (present, inside the build file's
//! directory), image paths, modes, owners, config values, the layer budget, apt packages and
//! sources — so that a build
//! never starts on a file it would fail on half-way, and every refusal names the file, line and
//! column.
//!
//! What it gives the build: per layer entry its name and its packages (a group's members, or the
//! entry itself), each package's inputs as the builder's [`Input`]s with sources resolved
//! against the build file's directory; the config as [`ConfigEdit`]s plus annotations; the
//! image references and the optimization settings; the apt options.
//!
//! ```no_run
//! let file = layerize_buildfile::BuildFile::load("layerize.yaml")?;
//! for entry in file.layers() {
//!     for package in entry.members() {
//!         println!("{} / {}: {} inputs", entry.name(), package.name, package.inputs().len());
//!     }
//! }
//! # Ok::<(), layerize_buildfile::BuildFileError>(())
//! ```

mod apt_request;
mod apt_section;
mod apt_source;
mod config;
mod context;
mod dest;
mod error;
mod example;
mod image;
mod layers;
mod meta;
mod optimization;
mod position;
mod read;
mod script;
mod spec;
mod yaml;

use std::path::{Path, PathBuf};

pub use apt_request::check_apt_package;
pub use apt_source::check_apt_source;
pub use config::Config;
pub use error::{AptSyntaxError, BuildFileError, Found, Problem};
pub use example::EXAMPLE;
pub use image::Image;
pub use layerize_builder::build::apt::{AptOptions, AptRequest, AptScripts};
pub use layerize_builder::layer::recipe::Input;
pub use layerize_manifest::ConfigEdit;
pub use layers::{Kind, LayerEntry, Package};
pub use optimization::{Optimization, Parallel, MAX_LAYERS_LIMIT};
pub use position::{Located, Position};
pub use spec::apt_layer_spec;

use context::Context;
use error::{Fault, Problem as P};
use read::Fields;

/// The name `layerize build -c` and `layerize init` use when none is given.
pub const DEFAULT_FILE_NAME: &str = "layerize.yaml";

const TOP_KEYS: &[&str] = &["image", "apt", "layers", "config", "optimization"];

/// A loaded and checked build file.
#[derive(Clone, Debug)]
pub struct BuildFile {
    path: PathBuf,
    dir: PathBuf,
    image: Image,
    layers: Vec<LayerEntry>,
    config: Config,
    optimization: Optimization,
    apt: AptOptions,
}

impl BuildFile {
    /// Reads and checks the build file at `path`; relative sources resolve against its
    /// directory. Errors name `path` as given.
    pub fn load(path: impl AsRef<Path>) -> Result<BuildFile, BuildFileError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| BuildFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        BuildFile::parse(path, &text)
    }

    /// Checks `text` as the build file at `path`: sources resolve against `path`'s directory
    /// and are checked there.
    pub fn parse(path: impl AsRef<Path>, text: &str) -> Result<BuildFile, BuildFileError> {
        let path = path.as_ref();
        let context = Context::of(path)?;
        BuildFile::read(path, &context, text).map_err(|fault| BuildFileError::At {
            file: path.to_owned(),
            at: fault.at,
            problem: Box::new(fault.problem),
        })
    }

    fn read(path: &Path, context: &Context, text: &str) -> Result<BuildFile, Fault> {
        let start = Position { line: 1, column: 1 };
        let root = yaml::parse(text)?.ok_or(Fault::new(start, P::Empty))?;
        let fields = Fields::of(&root, "the build file", "the build file", TOP_KEYS)?;
        let image = fields
            .get("image")
            .map(|node| image::read(node, context))
            .transpose()?;
        let apt = fields
            .entry("apt")
            .map(|(key, node)| apt_section::read(key, node, context))
            .transpose()?;
        let (apt, leading) = match apt {
            Some(section) => (section.options, section.entry),
            None => (AptOptions::default(), None),
        };
        // The seed's `apt: [curl, git, vim]` is a whole build file with its base in `image`.
        let layers = match (fields.get("layers"), leading) {
            (Some(node), leading) => layers::read(node, leading, context)?,
            (None, Some(entry)) => vec![entry],
            (None, None) => {
                let problem = P::MissingKey {
                    key: "layers",
                    context: "the build file",
                };
                return Err(Fault::new(fields.at, problem));
            }
        };
        let config = fields.get("config").map(config::read).transpose()?;
        let optimization = fields
            .get("optimization")
            .map(optimization::read)
            .transpose()?;
        Ok(BuildFile {
            path: path.to_owned(),
            dir: context.dir().to_owned(),
            image: image.unwrap_or_default(),
            layers,
            config: config.unwrap_or_default(),
            optimization: optimization.unwrap_or_default(),
            apt,
        })
    }

    /// The build file as it was named to [`BuildFile::load`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory sources resolve against (canonical).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn image(&self) -> &Image {
        &self.image
    }

    /// The layer entries in file order: the image's new layers, bottom first.
    pub fn layers(&self) -> &[LayerEntry] {
        &self.layers
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The config section as edits to the base's config (see [`Config::edits`]).
    pub fn config_edits(&self) -> Vec<ConfigEdit> {
        self.config.edits()
    }

    /// Manifest annotations, in the order written.
    pub fn annotations(&self) -> &[(String, String)] {
        &self.config.annotations
    }

    pub fn optimization(&self) -> &Optimization {
        &self.optimization
    }

    /// The top-level `apt` section's options (the defaults without one): keys resolved against
    /// the build file's directory, and a source's `signed-by` that names one of them as written
    /// pointed at its resolved path.
    pub fn apt_options(&self) -> AptOptions {
        self.apt.clone()
    }

    /// `FILE:LINE:COLUMN` of a position in this file, for messages about what was written
    /// there (`layerize.yaml:12:7`).
    pub fn locate(&self, at: Position) -> String {
        format!("{}:{at}", self.path.display())
    }
}
