//! Why inspecting an image failed; every variant names what it was reading. Messages carry
//! their whole chain (the inner errors already name the store and blob), so no variant is also
//! given as a source, which would print it twice.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The reference, its manifest or its config could not be read; the error names the store.
    #[error(transparent)]
    Open(Box<layerize_builder::BuildError>),
    #[error("{image}: layer {index}: {error}")]
    Layer {
        image: String,
        index: usize,
        error: Box<layerize_basefs::BaseFsError>,
    },
    #[error("build report {}: {message}", path.display())]
    Report { path: PathBuf, message: String },
}
