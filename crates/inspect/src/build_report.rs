//! A build's `--report` file as the inspecting commands read it: the digest of the manifest it
//! wrote and each layer's status, for the origin of layers and the cache hit rate of that build.
//! Only the fields read here are required; the rest of the report is ignored.

use std::path::{Path, PathBuf};

use layerize_manifest::Digest;
use serde::{Deserialize, Serialize};

use crate::chain::Origin;
use crate::{InspectError, InspectedImage};

/// The parts of a build report that inspecting reads.
#[derive(Clone, Debug, Deserialize)]
pub struct BuildReport {
    pub digest: Digest,
    pub layers: Vec<ReportLayer>,
    #[serde(skip)]
    path: PathBuf,
}

/// One layer of the build's result.
#[derive(Clone, Debug, Deserialize)]
pub struct ReportLayer {
    pub name: String,
    pub digest: Digest,
    pub status: Origin,
    #[serde(default)]
    pub key: Option<String>,
    /// For a reused layer: `local-cache`, `target`, or the `--cache-from` reference.
    #[serde(default)]
    pub reused_from: Option<String>,
}

/// How many of a build's own layers came from a cache.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct HitRate {
    pub reused: usize,
    pub built: usize,
    /// `reused / (reused + built)`; `None` when the build had no layers of its own.
    pub rate: Option<f64>,
}

impl BuildReport {
    pub fn read(path: &Path) -> Result<BuildReport, InspectError> {
        let bytes = std::fs::read(path).map_err(|error| InspectError::Report {
            path: path.to_owned(),
            message: error.to_string(),
        })?;
        BuildReport::from_json(&bytes, path)
    }

    /// The report in `bytes`, read from `path` (for errors).
    pub fn from_json(bytes: &[u8], path: &Path) -> Result<BuildReport, InspectError> {
        let mut report: BuildReport =
            serde_json::from_slice(bytes).map_err(|error| InspectError::Report {
                path: path.to_owned(),
                message: format!("not a layerize build report: {error}"),
            })?;
        report.path = path.to_owned();
        Ok(report)
    }

    /// The report's layers, one per layer of `image`, checked to be that image's: a report of
    /// another build would give its layers the wrong origins.
    pub fn layers_of(&self, image: &InspectedImage) -> Result<&[ReportLayer], InspectError> {
        if self.digest != image.manifest_digest {
            return Err(self.error(format!(
                "it describes the image {}, but {} is {}; pass the report of the build that wrote it",
                self.digest, image.name, image.manifest_digest
            )));
        }
        let layers = image.image.layers();
        let mismatch = self.layers.len() != layers.len()
            || self
                .layers
                .iter()
                .zip(&layers)
                .any(|(reported, layer)| reported.digest != layer.digest);
        if mismatch {
            return Err(self.error(format!(
                "its layers do not match the layers of {} ({})",
                image.name, image.manifest_digest
            )));
        }
        Ok(&self.layers)
    }

    /// The cache hit rate of the build: its reused layers among those it did not take from the
    /// base.
    pub fn hit_rate(&self) -> HitRate {
        let count = |origin| {
            self.layers
                .iter()
                .filter(|layer| layer.status == origin)
                .count()
        };
        let (reused, built) = (count(Origin::Reused), count(Origin::Built));
        let own = reused + built;
        HitRate {
            reused,
            built,
            rate: (own > 0).then(|| reused as f64 / own as f64),
        }
    }

    fn error(&self, message: String) -> InspectError {
        InspectError::Report {
            path: self.path.clone(),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(statuses: &[&str]) -> BuildReport {
        let layers: Vec<serde_json::Value> = statuses
            .iter()
            .enumerate()
            .map(|(index, status)| {
                serde_json::json!({
                    "name": format!("layer-{index}"),
                    "digest": Digest::sha256(&[index as u8]),
                    "diff_id": Digest::sha256(b"ignored"),
                    "size": 1,
                    "media_type": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "status": status,
                })
            })
            .collect();
        let json = serde_json::json!({
            "target": "oci:/x:y",
            "digest": Digest::sha256(b"manifest"),
            "layers": layers,
            "bytes_uploaded": 0,
        });
        BuildReport::from_json(json.to_string().as_bytes(), Path::new("r.json")).unwrap()
    }

    #[test]
    fn hit_rate_counts_reused_among_the_builds_own_layers() {
        let rate = report(&["base", "base", "reused", "built", "reused", "reused"]).hit_rate();
        assert_eq!((rate.reused, rate.built), (3, 1));
        assert_eq!(rate.rate, Some(0.75));
        assert_eq!(report(&["base"]).hit_rate().rate, None);
    }

    #[test]
    fn a_file_that_is_not_a_report_names_itself() {
        let error = BuildReport::from_json(b"{\"digest\": 3}", Path::new("/tmp/r.json"))
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("build report /tmp/r.json: not a layerize build report"),
            "{error}"
        );
    }
}
