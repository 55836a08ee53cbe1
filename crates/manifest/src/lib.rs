//! Image metadata for layerize: digests, media types, descriptors, platforms, manifests,
//! indexes and configs. Pure data, no I/O.
//!
//! Manifests and configs are edited as `serde_json::Value`s with key order preserved, so every
//! field layerize does not touch survives byte-for-byte in meaning (`container_config`,
//! `Healthcheck`, unknown keys).

pub mod digest;

pub use digest::Digest;
