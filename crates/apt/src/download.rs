//! `.deb` downloads into a directory keyed by SHA256: each distinct file fetched once, several
//! at a time, streamed to a temporary file while its size and SHA256 are checked against the
//! index, and renamed into place only when both match.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use futures_util::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};

use crate::fetch::{self, FetchError, Fetcher};
use crate::package::DebLocation;

/// A `.deb` that could not be downloaded or is not the one the index promised.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("{url}: {source}")]
    Body {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{url}: the download is {actual} bytes, the index says {expected}; the mirror is \
         inconsistent or the file was altered"
    )]
    Size {
        url: String,
        expected: u64,
        actual: u64,
    },
    #[error(
        "{url}: SHA256 {actual} does not match the index's {expected}; the mirror is \
         inconsistent or the file was altered"
    )]
    Sha256 {
        url: String,
        expected: String,
        actual: String,
    },
}

/// Downloads each distinct `.deb` of `debs` into `dir/<sha256>.deb` (`parallel` at a time) and
/// returns the path of each, in the order of `debs`. A file already there with the right size is
/// trusted by its name and not fetched again.
pub async fn download(
    debs: &[DebLocation],
    dir: &Path,
    parallel: usize,
    fetcher: &Fetcher,
) -> Result<Vec<PathBuf>, DownloadError> {
    std::fs::create_dir_all(dir).map_err(|source| DownloadError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut distinct: BTreeMap<&str, &DebLocation> = BTreeMap::new();
    for deb in debs {
        distinct.entry(deb.sha256.as_str()).or_insert(deb);
    }
    futures_util::stream::iter(distinct.into_values())
        .map(|deb| download_one(deb, dir, fetcher))
        .buffer_unordered(parallel.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    Ok(debs.iter().map(|deb| deb_path(dir, deb)).collect())
}

fn deb_path(dir: &Path, deb: &DebLocation) -> PathBuf {
    dir.join(format!("{}.deb", deb.sha256))
}

async fn download_one(
    deb: &DebLocation,
    dir: &Path,
    fetcher: &Fetcher,
) -> Result<(), DownloadError> {
    let target = deb_path(dir, deb);
    if std::fs::metadata(&target).is_ok_and(|meta| meta.is_file() && meta.len() == deb.size) {
        // A use, for `layerize cache clean`.
        layerize_basefs::touch_if_present(&target);
        return Ok(());
    }
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| DownloadError::Io { path, source }
    };
    let mut temp = tempfile::Builder::new()
        .prefix(".download-")
        .suffix(".deb")
        .tempfile_in(dir)
        .map_err(io(dir))?;
    let mut check = Check::new(deb);
    if let Some(path) = fetch::file_path(&deb.url) {
        let mut file = std::fs::File::open(path).map_err(io(path))?;
        let mut buffer = vec![0; 1 << 16];
        loop {
            let read = std::io::Read::read(&mut file, &mut buffer).map_err(io(path))?;
            if read == 0 {
                break;
            }
            check.update(&buffer[..read])?;
            temp.write_all(&buffer[..read]).map_err(io(temp.path()))?;
        }
    } else {
        let mut body = fetcher.open(&deb.url).await?.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|source| DownloadError::Body {
                url: deb.url.clone(),
                source,
            })?;
            check.update(&chunk)?;
            temp.write_all(&chunk).map_err(io(temp.path()))?;
        }
    }
    check.finish()?;
    temp.as_file().sync_all().map_err(io(temp.path()))?;
    temp.persist(&target).map_err(|e| DownloadError::Io {
        path: target.clone(),
        source: e.error,
    })?;
    Ok(())
}

/// Size and SHA256 of a download as it streams; too many bytes fail at once.
struct Check<'a> {
    deb: &'a DebLocation,
    hasher: Sha256,
    size: u64,
}

impl<'a> Check<'a> {
    fn new(deb: &'a DebLocation) -> Self {
        Check {
            deb,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    fn update(&mut self, chunk: &[u8]) -> Result<(), DownloadError> {
        self.size += chunk.len() as u64;
        if self.size > self.deb.size {
            return Err(self.size_error());
        }
        self.hasher.update(chunk);
        Ok(())
    }

    fn finish(self) -> Result<(), DownloadError> {
        if self.size != self.deb.size {
            return Err(self.size_error());
        }
        let actual = hex::encode(self.hasher.finalize());
        if actual != self.deb.sha256 {
            return Err(DownloadError::Sha256 {
                url: self.deb.url.clone(),
                expected: self.deb.sha256.clone(),
                actual,
            });
        }
        Ok(())
    }

    fn size_error(&self) -> DownloadError {
        DownloadError::Size {
            url: self.deb.url.clone(),
            expected: self.deb.size,
            actual: self.size,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(path: &Path, contents: &[u8]) -> DebLocation {
        DebLocation {
            url: format!("file://{}", path.display()),
            size: contents.len() as u64,
            sha256: hex::encode(Sha256::digest(contents)),
        }
    }

    #[tokio::test]
    async fn local_debs_are_copied_once_and_checked() {
        let work = tempfile::tempdir().unwrap();
        let source = work.path().join("a.deb");
        std::fs::write(&source, b"first deb").unwrap();
        let deb = location(&source, b"first deb");
        let cache = work.path().join("cache");
        let fetcher = Fetcher::new(None).unwrap();
        let paths = download(&[deb.clone(), deb.clone()], &cache, 2, &fetcher)
            .await
            .unwrap();
        assert_eq!(paths[0], cache.join(format!("{}.deb", deb.sha256)));
        assert_eq!(paths[0], paths[1]);
        assert_eq!(std::fs::read(&paths[0]).unwrap(), b"first deb");
        // Cached: the source may go away, and a use bumps the entry's mtime for `cache clean`.
        std::fs::remove_file(&source).unwrap();
        let long_ago = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1 << 30);
        let file = std::fs::File::options()
            .append(true)
            .open(&paths[0])
            .unwrap();
        file.set_modified(long_ago).unwrap();
        download(&[deb], &cache, 1, &fetcher).await.unwrap();
        let used = std::fs::metadata(&paths[0]).unwrap().modified().unwrap();
        assert!(used > long_ago);

        std::fs::write(&source, b"other deb").unwrap();
        let mut wrong = location(&source, b"first deb");
        wrong.sha256 = hex::encode(Sha256::digest(b"xxxxx deb"));
        let err = download(&[wrong.clone()], &cache, 1, &fetcher)
            .await
            .unwrap_err();
        assert!(matches!(err, DownloadError::Sha256 { .. }), "{err}");
        wrong.size = 3;
        let err = download(&[wrong], &cache, 1, &fetcher).await.unwrap_err();
        assert!(
            matches!(err, DownloadError::Size { actual: 9, .. }),
            "{err}"
        );
        let left: Vec<_> = std::fs::read_dir(&cache)
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 1, "no partial downloads left: {left:?}");
    }
}
