//! External tools the end-to-end tests drive: finding them on `PATH` (a missing tool is a test
//! failure with the fix in the message, never a skip) and running them, as children that die
//! with the test process, with failures that show the command line and its stderr.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The path of `tool` on `PATH`; panics with the fix when it is missing.
///
/// Missing tools fail the test both under `CI=true` and locally: a skipped end-to-end test
/// would look like a passing one.
pub fn require(tool: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| is_executable(candidate))
        .unwrap_or_else(|| {
            let where_ = if running_in_ci() { " (CI=true)" } else { "" };
            panic!("required tool {tool} missing{where_}: run scripts/install-deps")
        })
}

/// A `Command` for `tool`, checked with [`require`] first, whose process dies with the test
/// process ([`crate::children`]).
pub fn command(tool: &str) -> Command {
    let mut command = Command::new(require(tool));
    crate::children::die_with_test_process(&mut command);
    command
}

/// Runs `command` and returns its stdout as text; panics with the command line, exit status and
/// stderr when it fails.
pub fn run(command: &mut Command) -> String {
    String::from_utf8(run_bytes(command)).expect("command printed non-UTF-8 output")
}

/// Runs `command` and returns its stdout bytes; panics like [`run`].
pub fn run_bytes(command: &mut Command) -> Vec<u8> {
    let output = output(command);
    if !output.status.success() {
        panic!(
            "{} failed ({}):\n{}",
            describe(command),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        );
    }
    output.stdout
}

/// Runs `command` to completion whatever its exit status, for tests that expect a failure.
pub fn output(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|error| panic!("cannot start {}: {error}", describe(command)))
}

/// A finished command's status and both its outputs, for assertion messages.
pub fn describe_output(output: &Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The command line for messages, with the value of any `--*creds` flag hidden.
fn describe(command: &Command) -> String {
    let mut hide_next = false;
    let mut parts = vec![command.get_program().to_string_lossy().into_owned()];
    for arg in command.get_args().map(|arg| arg.to_string_lossy()) {
        let flag = arg.split('=').next().unwrap_or_default();
        let is_creds_flag = flag.starts_with("--") && flag.ends_with("creds");
        let has_value = arg.contains('=');
        parts.push(if hide_next || (is_creds_flag && has_value) {
            "<hidden>".to_owned()
        } else {
            arg.into_owned()
        });
        hide_next = is_creds_flag && !has_value;
    }
    parts.join(" ")
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

fn running_in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true")
}
