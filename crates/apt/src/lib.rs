//! Debian and Ubuntu archives without apt, for layers that land on a full distribution base.
//!
//! The path of one build, top to bottom:
//! - [`base`]: what the base image says about itself (os-release, apt sources, keyrings, dpkg
//!   status, foreign architectures, merged /usr), read through the base filesystem index;
//! - [`sources`], [`keyring`], [`release`], [`index`], [`fetch`]: the archive's signed
//!   `InRelease`, verified, and the `Packages` indexes it vouches for, cached locally;
//! - [`version`], [`relation`], [`resolve`]: the requested packages resolved against the index
//!   and the base's dpkg status with a real solver;
//! - [`download`]: each `.deb` once, verified against the index;
//! - [`deb`]: a `.deb`'s files re-streamed as a layer's tar, with its own dpkg `info/` files;
//! - [`dpkg_db`]: the dpkg database (`status`, `extended_states`) the final layer holds.
//!
//! [`control`] (deb822 paragraphs) and [`package`] (an archive's package) are shared by all.

pub mod base;
mod cleartext;
pub mod control;
pub mod deb;
pub mod download;
pub mod dpkg_db;
pub mod fetch;
pub mod index;
mod index_cache;
pub mod keyring;
pub mod package;
mod packages_file;
mod parallel;
pub mod path_filter;
pub mod relation;
pub mod release;
pub mod resolve;
pub mod sources;
mod stanza_table;
pub mod version;
