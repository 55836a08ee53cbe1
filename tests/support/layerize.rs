//! Running the `layerize` binary under test: found next to the test executable
//! (`target/PROFILE/layerize`; `scripts/test` builds it before the tests, since `cargo test` does
//! not build another package's binary), with helpers for the report.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

use serde_json::Value;

/// The `layerize` binary of this build; panics with the fix when it is missing or older than the
/// sources it is built from, so a test never passes or fails on a stale binary.
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test executable");
    let profile_dir = exe
        .ancestors()
        .find(|dir| dir.file_name().is_some_and(|name| name == "deps"))
        .and_then(|deps| deps.parent())
        .unwrap_or_else(|| panic!("{} is not under target/*/deps", exe.display()));
    let binary = profile_dir.join("layerize");
    let fix = "run `cargo build -p layerize-cli` first (scripts/test does)";
    let built = std::fs::metadata(&binary)
        .and_then(|meta| meta.modified())
        .unwrap_or_else(|_| panic!("{} is missing: {fix}", binary.display()));
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates");
    let newest_source = ["builder", "manifest", "registry", "layerize-cli"]
        .iter()
        .map(|name| newest_modification(&crates.join(name).join("src")))
        .max()
        .expect("four crates");
    assert!(
        built >= newest_source,
        "{} is older than the sources in crates/*/src: {fix}",
        binary.display()
    );
    binary
}

/// The latest modification time of any file below `dir`.
fn newest_modification(dir: &Path) -> SystemTime {
    std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("read {}: {err}", dir.display()))
        .map(|entry| {
            let entry = entry.expect("directory entry");
            let meta = entry.metadata().expect("metadata of a source file");
            if meta.is_dir() {
                newest_modification(&entry.path())
            } else {
                meta.modified().expect("modification time")
            }
        })
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// A `layerize` command with a clean, deterministic environment: no SOURCE_DATE_EPOCH, no
/// ambient Docker/podman credentials from the developer's home.
pub fn command() -> Command {
    let mut command = Command::new(binary());
    command
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("LAYERIZE_LOG")
        .env("DOCKER_CONFIG", "/nonexistent/layerize-tests")
        .env(
            "REGISTRY_AUTH_FILE",
            "/nonexistent/layerize-tests/auth.json",
        );
    command
}

/// Runs `command`, which must succeed; returns its output.
pub fn run_ok(command: &mut Command) -> Output {
    let output = command.output().expect("start layerize");
    assert!(
        output.status.success(),
        "layerize failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs `command`, which must fail; returns its stderr.
pub fn run_err(command: &mut Command) -> String {
    let output = command.output().expect("start layerize");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "layerize succeeded but should have failed:\nstdout: {}\nstderr: {stderr}",
        String::from_utf8_lossy(&output.stdout)
    );
    stderr
}

/// Reads a `--report` file.
pub fn read_report(path: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("read the report")).expect("report is JSON")
}

/// The layers of a report that the build made itself (status `built`), in order.
pub fn built_layers(report: &Value) -> Vec<&Value> {
    report["layers"]
        .as_array()
        .expect("the report lists layers")
        .iter()
        .filter(|layer| layer["status"] == "built")
        .collect()
}

/// The one `error:` line of a failed run's stderr; panics unless there is exactly one.
pub fn error_line(stderr: &str) -> &str {
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "expected one error line in: {stderr}");
    errors[0]
}
