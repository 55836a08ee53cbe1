//! HTTP GETs of archive files with a local cache revalidated by conditional requests (ETag and
//! Last-Modified), retries of transient failures, and `file:` URIs read from disk.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

/// Attempts of one request when the connection fails or the server answers 5xx.
const ATTEMPTS: u32 = 3;

/// Fetches URLs, caching bodies in a directory when given one.
#[derive(Clone, Debug)]
pub struct Fetcher {
    client: reqwest::Client,
    cache_dir: Option<PathBuf>,
}

/// A URL that could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot set up the HTTP client: {0}")]
    Client(reqwest::Error),
    #[error("GET {url}: {source}")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("GET {url}: the server answered {status}")]
    Status { url: String, status: StatusCode },
    #[error("{url}: {source}")]
    File {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the fetch cache {path}: {source}")]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What the cache remembers about a body, to ask the server whether it changed.
#[derive(Debug, Default)]
struct Validators {
    etag: Option<String>,
    last_modified: Option<String>,
}

impl Fetcher {
    /// A fetcher caching in `cache_dir` (created when missing), or not caching at all.
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Fetcher, FetchError> {
        if let Some(dir) = &cache_dir {
            std::fs::create_dir_all(dir).map_err(|source| FetchError::Cache {
                path: dir.clone(),
                source,
            })?;
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("layerize/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .build()
            .map_err(FetchError::Client)?;
        Ok(Fetcher { client, cache_dir })
    }

    /// The directory the fetcher caches in, if any: other caches of archive files (by hash)
    /// live beside its bodies.
    pub fn cache_dir(&self) -> Option<&Path> {
        self.cache_dir.as_deref()
    }

    /// The body at `url`; a cached copy is revalidated and reused when the server says it has
    /// not changed (304).
    pub async fn get(&self, url: &str) -> Result<Bytes, FetchError> {
        match self.get_optional(url).await? {
            Some(body) => Ok(body),
            None => Err(FetchError::Status {
                url: url.to_owned(),
                status: StatusCode::NOT_FOUND,
            }),
        }
    }

    /// Like [`Fetcher::get`], with a missing file (404, 410; for `file:` URIs, no such file) as
    /// `None`.
    pub async fn get_optional(&self, url: &str) -> Result<Option<Bytes>, FetchError> {
        if let Some(path) = file_path(url) {
            return read_local(url, path);
        }
        let cached = self.cache_paths(url);
        let validators = match &cached {
            Some((_, meta)) => read_validators(meta),
            None => Validators::default(),
        };
        let response = self
            .send(url, |request| {
                let request = match &validators.etag {
                    Some(etag) => request.header(IF_NONE_MATCH, etag),
                    None => request,
                };
                match &validators.last_modified {
                    Some(date) => request.header(IF_MODIFIED_SINCE, date),
                    None => request,
                }
            })
            .await?;
        let status = response.status();
        if status == StatusCode::NOT_MODIFIED {
            if let Some((body_path, _)) = &cached {
                if let Ok(body) = std::fs::read(body_path) {
                    return Ok(Some(Bytes::from(body)));
                }
            }
            // The cached body vanished under us: ask again without validators.
            let response = self.send(url, |request| request).await?;
            return self.finish(url, response, None).await;
        }
        self.finish(url, response, cached.as_ref()).await
    }

    /// A streaming GET of `url` without the cache (for `.deb` files, cached by their hash).
    pub(crate) async fn open(&self, url: &str) -> Result<reqwest::Response, FetchError> {
        let response = self.send(url, |request| request).await?;
        if !response.status().is_success() {
            return Err(FetchError::Status {
                url: url.to_owned(),
                status: response.status(),
            });
        }
        Ok(response)
    }

    async fn finish(
        &self,
        url: &str,
        response: reqwest::Response,
        cached: Option<&(PathBuf, PathBuf)>,
    ) -> Result<Option<Bytes>, FetchError> {
        let status = response.status();
        if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(FetchError::Status {
                url: url.to_owned(),
                status,
            });
        }
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|value: &reqwest::header::HeaderValue| value.to_str().ok())
                .map(str::to_owned)
        };
        let validators = Validators {
            etag: header(ETAG),
            last_modified: header(LAST_MODIFIED),
        };
        let body = response
            .bytes()
            .await
            .map_err(|source| FetchError::Request {
                url: url.to_owned(),
                source,
            })?;
        if let Some((body_path, meta_path)) = cached {
            store(body_path, meta_path, &body, &validators)?;
        }
        Ok(Some(body))
    }

    /// Sends a GET built by `build`, retrying connection failures and 5xx answers.
    async fn send(
        &self,
        url: &str,
        build: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, FetchError> {
        let mut attempt = 1;
        loop {
            let result = build(self.client.get(url)).send().await;
            let retry = match &result {
                Ok(response) => response.status().is_server_error(),
                Err(error) => error.is_connect() || error.is_timeout() || error.is_request(),
            };
            if !retry || attempt == ATTEMPTS {
                return result.map_err(|source| FetchError::Request {
                    url: url.to_owned(),
                    source,
                });
            }
            tracing::debug!(url, attempt, "retrying a failed GET");
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            attempt += 1;
        }
    }

    /// The cache's body and validator files for `url`.
    fn cache_paths(&self, url: &str) -> Option<(PathBuf, PathBuf)> {
        let dir = self.cache_dir.as_ref()?;
        let key = hex::encode(Sha256::digest(url.as_bytes()));
        Some((dir.join(&key), dir.join(format!("{key}.validators"))))
    }
}

/// The local path of a `file:` URI.
pub(crate) fn file_path(url: &str) -> Option<&Path> {
    let rest = url.strip_prefix("file:")?;
    Some(Path::new(rest.strip_prefix("//").unwrap_or(rest)))
}

fn read_local(url: &str, path: &Path) -> Result<Option<Bytes>, FetchError> {
    match std::fs::read(path) {
        Ok(body) => Ok(Some(Bytes::from(body))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(FetchError::File {
            url: url.to_owned(),
            source,
        }),
    }
}

/// Validators of a cached body: `etag` and `last-modified` lines. Anything unreadable is
/// treated as no cache.
fn read_validators(meta: &Path) -> Validators {
    let Ok(text) = std::fs::read_to_string(meta) else {
        return Validators::default();
    };
    let mut validators = Validators::default();
    for line in text.lines() {
        match line.split_once(' ') {
            Some(("etag", value)) => validators.etag = Some(value.to_owned()),
            Some(("last-modified", value)) => validators.last_modified = Some(value.to_owned()),
            _ => {}
        }
    }
    validators
}

/// Stores a body and its validators, each by rename so that a reader never sees half of one.
/// The body goes first: validators never describe a body that is not there.
fn store(
    body_path: &Path,
    meta_path: &Path,
    body: &[u8],
    validators: &Validators,
) -> Result<(), FetchError> {
    let _ = std::fs::remove_file(meta_path);
    if validators.etag.is_none() && validators.last_modified.is_none() {
        return Ok(());
    }
    write_atomically(body_path, body)?;
    let mut meta = String::new();
    if let Some(etag) = &validators.etag {
        meta.push_str(&format!("etag {etag}\n"));
    }
    if let Some(date) = &validators.last_modified {
        meta.push_str(&format!("last-modified {date}\n"));
    }
    write_atomically(meta_path, meta.as_bytes())
}

/// Writes `contents` to `path` by rename, so that a reader never sees half of it.
pub(crate) fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), FetchError> {
    let error = |source| FetchError::Cache {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(error)?;
    std::io::Write::write_all(&mut temp, contents).map_err(error)?;
    temp.persist(path).map_err(|e| error(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_uris_name_local_paths() {
        assert_eq!(file_path("file:///srv/repo"), Some(Path::new("/srv/repo")));
        assert_eq!(file_path("file:/srv/repo"), Some(Path::new("/srv/repo")));
        assert_eq!(file_path("http://x/y"), None);
    }
}
