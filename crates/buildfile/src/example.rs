//! The commented example build file that `layerize init` writes: every kind and every config
//! key, each said what it does. It loads as it is once its sources exist (tests/example.rs).

/// The text of the example build file.
pub const EXAMPLE: &str = include_str!("example.yaml");
