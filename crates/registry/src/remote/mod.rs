//! Remote registries over the OCI distribution API: one [`Registry`] client per host (connection
//! pool, token cache) and a [`RemoteRepository`] per repository implementing [`crate::Store`].

mod auth;
mod challenge;
mod client;
mod repository;
mod retry;
mod token;
mod transport;
mod upload;
mod verify;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

pub use client::{LoginCheck, Registry};
pub use repository::RemoteRepository;
pub use retry::RetryPolicy;

/// How layerize talks to registries.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// Hosts (`host` or `host:port`) that may be spoken to over plain HTTP or unverified TLS;
    /// a token realm, redirect target or upload location on any other host is held to the
    /// usual rules.
    pub insecure_hosts: Vec<String>,
    /// PEM files of extra certificate authorities to trust.
    pub ca_certs: Vec<PathBuf>,
    /// How many blobs the caller moves at once; sizes the connection pool.
    pub jobs: usize,
    pub retry: RetryPolicy,
    pub user_agent: String,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            insecure_hosts: Vec::new(),
            ca_certs: Vec::new(),
            jobs: 4,
            retry: RetryPolicy::default(),
            user_agent: concat!("layerize/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// What a repository client has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RequestStats {
    /// HTTP requests sent, retries, pings and token requests included.
    pub requests: u64,
    /// Bytes of blobs uploaded (each blob counted once, at its size).
    pub bytes_uploaded: u64,
    pub blobs_uploaded: u64,
    pub blobs_mounted: u64,
    /// Blobs not sent because the registry already held them.
    pub blobs_skipped: u64,
}

/// The live counters behind [`RequestStats`], shared by concurrent operations.
#[derive(Debug, Default)]
pub(crate) struct RequestCounters {
    requests: AtomicU64,
    bytes_uploaded: AtomicU64,
    blobs_uploaded: AtomicU64,
    blobs_mounted: AtomicU64,
    blobs_skipped: AtomicU64,
}

impl RequestCounters {
    pub fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_upload(&self, bytes: u64) {
        self.blobs_uploaded.fetch_add(1, Ordering::Relaxed);
        self.bytes_uploaded.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn count_mount(&self) {
        self.blobs_mounted.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_skip(&self) {
        self.blobs_skipped.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> RequestStats {
        RequestStats {
            requests: self.requests.load(Ordering::Relaxed),
            bytes_uploaded: self.bytes_uploaded.load(Ordering::Relaxed),
            blobs_uploaded: self.blobs_uploaded.load(Ordering::Relaxed),
            blobs_mounted: self.blobs_mounted.load(Ordering::Relaxed),
            blobs_skipped: self.blobs_skipped.load(Ordering::Relaxed),
        }
    }
}
