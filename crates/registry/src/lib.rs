//! Where images live. One small trait, [`Store`], for a home of blobs and manifests, with two
//! implementations: an OCI image layout on disk ([`layout`]) and a remote registry ([`remote`]).
//! The builder only ever talks to a `dyn Store`.

pub mod credentials;
pub mod layout;
pub mod open;
pub mod reference;
pub mod remote;
pub mod store;

pub use layout::OciLayout;
pub use reference::{ImageRef, Reference, ReferenceError};
pub use store::{read_blob, BlobBody, BlobStream, FetchedManifest, PutOutcome, Store, StoreError};
