//! A one-line apt source, `deb [OPTION=VALUE …] URI SUITE [COMPONENT …]` as sources.list(5)
//! writes it, checked for its shape when the build file is loaded or the flag is read. A
//! `signed-by` that names a key of the build file as written there is pointed at that key's
//! resolved path, the one the build is handed (the build does not run in the file's directory).

use std::path::PathBuf;

use layerize_apt::sources::{split_one_line, OneLine, OneLineError};

use crate::error::AptSyntaxError;

/// Checks that `line` is a one-line `deb` source.
pub fn check_apt_source(line: &str) -> Result<(), AptSyntaxError> {
    SourceLine::parse(line)
        .map(|_| ())
        .map_err(|reason| AptSyntaxError::Source {
            line: line.to_owned(),
            reason,
        })
}

/// A checked one-line source, split into its parts.
struct SourceLine<'a>(OneLine<'a>);

impl<'a> SourceLine<'a> {
    fn parse(line: &'a str) -> Result<SourceLine<'a>, &'static str> {
        if line.contains(['\n', '\r']) {
            return Err("a source is one line");
        }
        const OPTION: &str =
            "each option in [...] is KEY=VALUE, e.g. signed-by=/usr/share/keyrings/repo.gpg";
        let parts = split_one_line(line).map_err(|error| match error {
            OneLineError::UnclosedOptions => "the \"[\" of its options is not closed",
            OneLineError::OptionNotKeyValue(_) => OPTION,
        })?;
        match parts.kind {
            "deb" => {}
            "deb-src" => return Err(
                "deb-src is for source packages, which layerize does not install; give a deb line",
            ),
            _ => {
                return Err(
                    "a one-line source starts with \"deb\": deb [OPTIONS] URI SUITE [COMPONENT...]",
                )
            }
        }
        if parts
            .options
            .iter()
            .any(|(key, value)| key.is_empty() || value.is_empty())
        {
            return Err(OPTION);
        }
        let Some((uri, after)) = parts.location.split_first() else {
            return Err("a URI follows \"deb\" and its options, e.g. http://deb.debian.org/debian");
        };
        if !has_scheme(uri) {
            return Err(
                "the URI needs a scheme, e.g. http://deb.debian.org/debian or file:/srv/repo",
            );
        }
        match after {
            [] => Err("a suite follows the URI, e.g. bookworm (or ./ for a flat repository)"),
            [suite, components @ ..] if suite.ends_with('/') && !components.is_empty() => {
                Err("a suite that is a path (ending in /) takes no components")
            }
            [suite] if !suite.ends_with('/') => {
                Err("at least one component follows the suite, e.g. main")
            }
            _ => Ok(SourceLine(parts)),
        }
    }

    /// The line with `signed-by` set to `path`, options in their order.
    fn with_signed_by(&self, path: &str) -> String {
        let options: Vec<String> = self
            .0
            .options
            .iter()
            .map(|(key, value)| match *key {
                "signed-by" => format!("signed-by={path}"),
                _ => format!("{key}={value}"),
            })
            .collect();
        format!("deb [{}] {}", options.join(" "), self.0.location.join(" "))
    }
}

/// `scheme:` with a scheme of RFC 3986's letters (`http:`, `file:`, `mirror+file:`).
fn has_scheme(uri: &str) -> bool {
    uri.split_once(':').is_some_and(|(scheme, _)| {
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+.-".contains(&b))
    })
}

/// `line` (already checked) with a `signed-by` that names one of `keys` as written (the text,
/// the resolved path) pointed at the resolved path; any other line as it is.
pub(crate) fn link_signed_by(line: &str, keys: &[(String, PathBuf)]) -> String {
    let Ok(source) = SourceLine::parse(line) else {
        return line.to_owned();
    };
    let named = source
        .0
        .options
        .iter()
        .find(|(key, _)| *key == "signed-by")
        .and_then(|(_, value)| keys.iter().find(|(written, _)| written == value));
    match named {
        Some((_, resolved)) => source.with_signed_by(&resolved.to_string_lossy()),
        None => line.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_sources_have_deb_a_uri_a_suite_and_components() {
        for ok in [
            "deb http://deb.debian.org/debian bookworm main",
            "deb [signed-by=/usr/share/keyrings/x.gpg arch=amd64] http://deb.debian.org/debian bookworm main contrib",
            "deb [ trusted=yes ] file:/srv/repo ./",
            "  deb   http://127.0.0.1:8080/repo stable main  ",
            "deb mirror+file:/etc/apt/mirrors.txt bookworm main",
        ] {
            assert_eq!(check_apt_source(ok), Ok(()), "{ok}");
        }
        for (bad, says) in [
            (
                "deb-src http://deb.debian.org/debian bookworm main",
                "deb-src",
            ),
            (
                "http://deb.debian.org/debian bookworm main",
                "starts with \"deb\"",
            ),
            ("deb", "a URI follows"),
            ("deb [arch=amd64 http://x bookworm main", "not closed"),
            ("deb [arch] http://x bookworm main", "KEY=VALUE"),
            ("deb []", "a URI follows"),
            ("deb deb.debian.org/debian bookworm main", "scheme"),
            ("deb http://x", "a suite follows"),
            ("deb http://x bookworm", "at least one component"),
            ("deb file:/srv/repo ./ main", "takes no components"),
            (
                "deb http://x bookworm main\ndeb http://y bookworm main",
                "one line",
            ),
        ] {
            let error = check_apt_source(bad).unwrap_err().to_string();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    #[test]
    fn signed_by_naming_a_listed_key_points_at_its_resolved_path() {
        let keys = vec![(
            "keys/repo.asc".to_owned(),
            PathBuf::from("/ctx/keys/repo.asc"),
        )];
        assert_eq!(
            link_signed_by(
                "deb [arch=amd64  signed-by=keys/repo.asc] http://127.0.0.1/repo stable main",
                &keys
            ),
            "deb [arch=amd64 signed-by=/ctx/keys/repo.asc] http://127.0.0.1/repo stable main"
        );
        for unchanged in [
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://x bookworm main",
            "deb  http://x bookworm main",
        ] {
            assert_eq!(link_signed_by(unchanged, &keys), unchanged);
        }
    }
}
