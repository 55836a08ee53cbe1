//! Image metadata for layerize: digests, media types, descriptors, platforms, manifests,
//! indexes and configs. Pure data, no I/O.
//!
//! Manifests and configs are edited as `serde_json::Value`s with key order preserved, so every
//! field layerize does not touch survives byte-for-byte in meaning (`container_config`,
//! `Healthcheck`, unknown keys).

pub mod descriptor;
pub mod digest;
pub mod edit;
pub mod error;
pub mod image;
pub mod index;
pub mod layer_record;
pub mod media_type;
pub mod platform;
pub mod time;

pub use descriptor::Descriptor;
pub use digest::Digest;
pub use edit::ConfigEdit;
pub use error::ManifestError;
pub use image::{FinishedImage, History, Image};
pub use index::select_manifest;
pub use layer_record::{empty_step_records, layer_records, LayerRecord};
pub use media_type::{layer_media_type, Compression, Family, ManifestKind};
pub use platform::Platform;
pub use time::utc_rfc3339;
