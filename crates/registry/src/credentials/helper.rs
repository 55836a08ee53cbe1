//! The docker credential helper protocol: `docker-credential-NAME get` reads a server URL on
//! stdin and prints `{"ServerURL","Username","Secret"}`; `store` reads that JSON on stdin.

use std::ffi::OsStr;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

use super::{Credential, CredentialsError};

/// The username a helper returns with an identity token instead of a password.
const TOKEN_USERNAME: &str = "<token>";
/// Longest helper message quoted in an error.
const MESSAGE_LIMIT: usize = 300;

/// Asks helper `name` for the credential of `server_url`; `None` when it has none.
pub(super) fn get(
    name: &str,
    server_url: &str,
    search_path: Option<&OsStr>,
) -> Result<Option<Credential>, CredentialsError> {
    let output = run(name, "get", server_url, server_url.as_bytes(), search_path)?;
    let failed = |reason: String| CredentialsError::Helper {
        helper: name.to_string(),
        server: server_url.to_string(),
        reason,
    };
    if !output.status.success() {
        let message = message(&output);
        if message
            .to_ascii_lowercase()
            .contains("credentials not found")
        {
            return Ok(None);
        }
        return Err(failed(format!("{}: {message}", output.status)));
    }
    // Untyped parsing, and no detail in the error: the output holds the secret.
    let reply: Value = serde_json::from_slice(&output.stdout)
        .map_err(|_| failed("its output is not JSON with ServerURL, Username and Secret".into()))?;
    let text = |key: &str| {
        reply
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (username, secret) = (text("Username"), text("Secret"));
    Ok(match (username.as_str(), secret.is_empty()) {
        (_, true) => None,
        (TOKEN_USERNAME, false) => Some(Credential::IdentityToken {
            username: String::new(),
            token: secret,
        }),
        _ => Some(Credential::Basic {
            username,
            password: secret,
        }),
    })
}

/// Hands `username`/`password` for `server_url` to helper `name` to keep.
pub(super) fn store(
    name: &str,
    server_url: &str,
    username: &str,
    password: &str,
    search_path: Option<&OsStr>,
) -> Result<(), CredentialsError> {
    let input =
        json!({ "ServerURL": server_url, "Username": username, "Secret": password }).to_string();
    let output = run(name, "store", server_url, input.as_bytes(), search_path)?;
    if output.status.success() {
        return Ok(());
    }
    Err(CredentialsError::Helper {
        helper: name.to_string(),
        server: server_url.to_string(),
        reason: format!("{}: {}", output.status, message(&output)),
    })
}

fn run(
    name: &str,
    action: &str,
    server_url: &str,
    input: &[u8],
    search_path: Option<&OsStr>,
) -> Result<Output, CredentialsError> {
    let failed = |reason: String| CredentialsError::Helper {
        helper: name.to_string(),
        server: server_url.to_string(),
        reason,
    };
    // The name comes from a config file and becomes part of a program name: no paths.
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(failed("not a valid helper name".into()));
    }
    let program = format!("docker-credential-{name}");
    let path = search_path
        .and_then(|dirs| find_executable(&program, dirs))
        .ok_or_else(|| CredentialsError::HelperMissing {
            helper: name.to_string(),
        })?;
    let mut child = Command::new(&path)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| failed(format!("cannot run {}: {error}", path.display())))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper may exit without reading its input; its exit status tells what happened.
        match stdin.write_all(input) {
            Err(error) if error.kind() != io::ErrorKind::BrokenPipe => {
                return Err(failed(format!("cannot write to it: {error}")));
            }
            _ => {}
        }
    }
    child
        .wait_with_output()
        .map_err(|error| failed(format!("cannot wait for it: {error}")))
}

fn find_executable(program: &str, search_path: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(search_path)
        .map(|dir| dir.join(program))
        .find(|path| is_executable(path))
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// What a failing helper said: stdout (where docker's helpers write errors) and stderr, on one
/// line, shortened.
fn message(output: &Output) -> String {
    let text = [&output.stdout, &output.stderr]
        .iter()
        .map(|bytes| String::from_utf8_lossy(bytes).trim().to_string())
        .filter(|text| !text.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(MESSAGE_LIMIT) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None if line.is_empty() => "no message".into(),
        None => line,
    }
}
