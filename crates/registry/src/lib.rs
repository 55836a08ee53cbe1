//! Where images live. One small trait, [`Store`], for a home of blobs and manifests, with two
//! implementations: an OCI image layout on disk ([`layout`]) and a remote registry ([`remote`]).
//! The builder only ever talks to a `dyn Store`.

pub mod store;

pub use store::{BlobBody, BlobStream, FetchedManifest, PutOutcome, Store, StoreError};
