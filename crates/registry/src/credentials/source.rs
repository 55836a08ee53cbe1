//! Explicit credentials for CI (`--base-creds`, `--target-creds`): `USER:PASS` read from an
//! environment variable (`env:VARIABLE`) or a file (`file:PATH`), never from the command line.

use std::ffi::OsString;
use std::fs;

use super::{Credential, CredentialsError};

/// Reads the credential that `spec` points to: `env:VARIABLE` or `file:PATH`, holding
/// `USER:PASS` (one trailing newline is ignored; the password may contain `:`).
///
/// A bare path is refused rather than guessed at: the value might be the secret itself typed on
/// the command line, and it would then be tried as a path and shown in an error.
pub fn credential_from_source(spec: &str) -> Result<Credential, CredentialsError> {
    from_source(spec, |name| std::env::var_os(name))
}

fn from_source(
    spec: &str,
    getenv: impl Fn(&str) -> Option<OsString>,
) -> Result<Credential, CredentialsError> {
    let failed = |reason: String| CredentialsError::Source {
        spec: spec.to_string(),
        reason,
    };
    let content = if let Some(name) = spec.strip_prefix("env:") {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return Err(failed("not a valid environment variable name".into()));
        }
        getenv(name)
            .ok_or_else(|| failed("the environment variable is not set".into()))?
            .into_string()
            .map_err(|_| failed("the environment variable is not UTF-8".into()))?
    } else if let Some(path) = spec.strip_prefix("file:") {
        fs::read_to_string(path)
            .map_err(|error| failed(format!("cannot read the file: {error}")))?
    } else {
        return Err(CredentialsError::SourceForm);
    };
    parse_user_pass(&content).map_err(|reason| failed(reason.into()))
}

fn parse_user_pass(content: &str) -> Result<Credential, &'static str> {
    let line = content
        .strip_suffix('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .unwrap_or(content);
    if line.contains('\n') {
        return Err("holds more than one line; expected USER:PASS");
    }
    let (username, password) = line.split_once(':').ok_or("does not hold USER:PASS")?;
    if username.is_empty() {
        return Err("the username before ':' is empty");
    }
    if password.is_empty() {
        return Err("the password after ':' is empty");
    }
    Ok(Credential::Basic {
        username: username.to_string(),
        password: password.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cr3t:with-colon";

    fn env_with(name: &'static str, value: &'static str) -> impl Fn(&str) -> Option<OsString> {
        move |asked| (asked == name).then(|| OsString::from(value))
    }

    fn basic(username: &str, password: &str) -> Credential {
        Credential::Basic {
            username: username.into(),
            password: password.into(),
        }
    }

    #[test]
    fn credentials_from_env_variable_keep_colons_in_the_password() {
        let credential = from_source(
            "env:CI_CREDS",
            env_with("CI_CREDS", "ci:s3cr3t:with-colon\n"),
        )
        .unwrap();
        assert_eq!(credential, basic("ci", SECRET));
    }

    #[test]
    fn credentials_from_file_trim_one_trailing_newline_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("creds");
        fs::write(&path, "ci:pass\r\n").unwrap();
        let credential = from_source(&format!("file:{}", path.display()), |_| None).unwrap();
        assert_eq!(credential, basic("ci", "pass"));

        fs::write(&path, "ci:pass\n\n").unwrap();
        let error = from_source(&format!("file:{}", path.display()), |_| None).unwrap_err();
        assert!(error.to_string().contains("more than one line"), "{error}");
    }

    #[test]
    fn credentials_source_errors_name_the_source_but_never_the_secret() {
        let unset = from_source("env:MISSING", |_| None)
            .unwrap_err()
            .to_string();
        assert!(
            unset.contains("env:MISSING") && unset.contains("not set"),
            "{unset}"
        );

        let missing = from_source("file:/nonexistent/creds", |_| None)
            .unwrap_err()
            .to_string();
        assert!(missing.contains("/nonexistent/creds"), "{missing}");

        let no_colon = from_source("env:V", env_with("V", "s3cr3t-without-colon"))
            .unwrap_err()
            .to_string();
        assert!(
            no_colon.contains("USER:PASS") && !no_colon.contains("s3cr3t"),
            "{no_colon}"
        );

        let empty_password = from_source("env:V", env_with("V", "ci:\n"))
            .unwrap_err()
            .to_string();
        assert!(empty_password.contains("password"), "{empty_password}");

        // A secret passed on the command line is refused without being echoed.
        let bare = from_source(&format!("ci:{SECRET}"), |_| None).unwrap_err();
        assert!(matches!(bare, CredentialsError::SourceForm));
        assert!(!bare.to_string().contains("s3cr3t"), "{bare}");
    }
}
