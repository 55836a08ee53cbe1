//! Reading images and the local cache for people: what `layerize layers`, `layerize
//! export-chain` and `layerize cache clean` show and do. The CLI only parses flags and prints.
//!
//! - [`image`]: opening the image a reference names, as a build opens its base;
//! - [`chain`]: its layers with name, key, sizes, digests, origin and history;
//! - [`build_report`]: a build's `--report`, for the origin of layers and the cache hit rate;
//! - [`tree`]: the chain as a table;
//! - [`export`]: the chain as a JSON document with parents;
//! - [`analyze`]: sizes per layer and the bytes later layers waste, read by streaming blobs;
//! - [`cache_clean`]: removing cache entries unused for an age, then least recently used ones;
//! - [`units`]: durations and sizes as people write them; [`text`]: tables and byte counts.

pub mod analyze;
pub mod build_report;
pub mod cache_clean;
pub mod chain;
mod error;
pub mod export;
pub mod image;
pub mod text;
pub mod tree;
pub mod units;

pub use build_report::BuildReport;
pub use chain::{layer_chain, ChainLayer, Origin};
pub use error::InspectError;
pub use image::InspectedImage;
