//! A build file's directory with the sources the tests' files name, and shortcuts to load a
//! file there and take its error apart.

#![allow(dead_code)] // each test binary uses its own part

use std::path::{Path, PathBuf};

use layerize_buildfile::{BuildFile, BuildFileError};

/// A directory holding `target/release/app`, `static/` (with `index.html`), `vendor.tar.gz`,
/// `bin/jq`, `yq/` (with `yq`) and `keys/internal.asc`: the sources of the shape in
/// docs/buildfile.md and of the example.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for sub in ["target/release", "static", "bin", "yq", "keys"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        for (file, content) in [
            ("target/release/app", "app"),
            ("static/index.html", "<html>"),
            ("vendor.tar.gz", "not read at load time"),
            ("bin/jq", "jq"),
            ("yq/yq", "yq"),
            ("keys/internal.asc", "a key, not read at load time"),
        ] {
            std::fs::write(root.join(file), content).unwrap();
        }
        Fixture { dir }
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// The canonical path of a source, as the build file hands it on.
    pub fn real(&self, relative: &str) -> PathBuf {
        std::fs::canonicalize(self.path(relative)).unwrap()
    }

    /// Writes `yaml` as `layerize.yaml` and loads it.
    pub fn load(&self, yaml: &str) -> Result<BuildFile, BuildFileError> {
        let path = self.path("layerize.yaml");
        std::fs::write(&path, yaml).unwrap();
        BuildFile::load(&path)
    }

    /// The refusal of `yaml`: `(line, column, message)`, after checking that the error's text is
    /// `FILE:LINE:COLUMN: message`.
    pub fn error(&self, yaml: &str) -> (usize, usize, String) {
        let error = self
            .load(yaml)
            .expect_err("the build file should be refused");
        located(&self.path("layerize.yaml"), &error)
    }
}

pub fn located(file: &Path, error: &BuildFileError) -> (usize, usize, String) {
    let at = error.position().expect("an error at a place in the file");
    let message = error.problem().unwrap().to_string();
    assert_eq!(
        error.to_string(),
        format!("{}:{}:{}: {message}", file.display(), at.line, at.column)
    );
    (at.line, at.column, message)
}
