//! The `layerize` binary: argument parsing and logging only; the work lives in the library crates.

fn main() {}
