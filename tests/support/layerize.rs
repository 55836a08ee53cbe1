//! Running the `layerize` binary under test: the one cargo built for the calling test target
//! (its path comes from `CARGO_BIN_EXE_layerize`, through [`layerize!`](crate::layerize!)), in a
//! clean environment, with helpers for its output and report.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// A `layerize` [`Command`] (see [`command`]) for the binary cargo built for this test target.
///
/// Cargo sets `CARGO_BIN_EXE_layerize` while compiling the tests of the `layerize-cli` package,
/// which the end-to-end tests belong to, and builds the binary before running them; `env!`
/// reads it where the macro is used.
#[macro_export]
macro_rules! layerize {
    () => {
        $crate::layerize::command(::std::path::Path::new(env!("CARGO_BIN_EXE_layerize")))
    };
}

/// A command running the `layerize` binary at `binary`, dying with the test process, with a
/// clean, deterministic environment: no SOURCE_DATE_EPOCH, no ambient Docker/podman credentials
/// from the developer's home.
pub fn command(binary: &Path) -> Command {
    let mut command = Command::new(binary);
    crate::children::die_with_test_process(&mut command);
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
pub fn read_report(path: &Path) -> Value {
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

/// What a successful `layerize build` printed and reported.
pub struct Built {
    pub stdout: String,
    pub report: Value,
}

/// Runs `command`, a `layerize build ...` that must succeed, with `--report` into a temp file.
pub fn run_with_report(command: &mut Command) -> Built {
    let scratch = crate::scratch_dir();
    let report = scratch.path().join("report.json");
    let output = run_ok(command.arg("--report").arg(&report));
    Built {
        stdout: String::from_utf8(output.stdout).expect("layerize printed UTF-8"),
        report: read_report(&report),
    }
}
