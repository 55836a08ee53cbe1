//! apt's source lists, as the base image has them: one-line `sources.list` syntax and deb822
//! `.sources` files, reduced to the enabled binary (`deb`) sources, one per URI and suite.

use crate::control::{self, Paragraph};

/// One enabled `deb` source: an archive URI and one suite of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// The archive's base URI, without a trailing `/` (`http://deb.debian.org/debian`).
    pub uri: String,
    /// `bookworm`, `bookworm-updates`; for a flat repository the path below `uri` (`./`).
    pub suite: String,
    /// Empty for a flat repository (a suite ending in `/`).
    pub components: Vec<String>,
    pub signed_by: SignedBy,
    /// `[arch=...]` / `Architectures:`: only these architectures are read from this source.
    pub architectures: Option<Vec<String>>,
    /// `[trusted=yes]` / `Trusted: yes`: the user's explicit opt-out of signature checks.
    pub allow_unsigned: bool,
}

impl Source {
    /// Whether the suite names a flat repository (`deb URI ./`): no `dists/`, no components.
    pub fn is_flat(&self) -> bool {
        self.suite.ends_with('/')
    }

    /// `URI suite`, as logs and errors name the source.
    pub fn describe(&self) -> String {
        format!("{} {}", self.uri, self.suite)
    }
}

/// Which keys may sign a source's `Release`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignedBy {
    /// No `Signed-By`: every keyring apt trusts globally (`/etc/apt/trusted.gpg` and
    /// `/etc/apt/trusted.gpg.d/*`).
    Default,
    /// Absolute paths of keyring files in the base image.
    Files(Vec<String>),
    /// An ASCII-armored public key block written into the `.sources` file itself.
    Inline(String),
}

/// A source list apt would also refuse, or one this reader cannot follow.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{file}:{line}: {problem}")]
pub struct SourcesError {
    pub file: String,
    /// 1-based.
    pub line: usize,
    pub problem: String,
}

/// A one-line source split into its words, nothing checked but the shape of its options:
/// `KIND [KEY=VALUE ...] URI SUITE [COMPONENT ...]`. Both the base's lists and the build's own
/// sources are read through it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OneLine<'a> {
    /// `deb`, `deb-src`, or whatever else the line starts with.
    pub kind: &'a str,
    /// `KEY=VALUE` inside the brackets, in order (`KEY` may end in `+` or `-`).
    pub options: Vec<(&'a str, &'a str)>,
    /// The URI, the suite and the components, in order.
    pub location: Vec<&'a str>,
}

/// Why a line does not split as a one-line source.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OneLineError {
    #[error("an option list `[` with no closing `]`")]
    UnclosedOptions,
    #[error("option {0:?} is not `name=value`")]
    OptionNotKeyValue(String),
}

/// Splits one line (comments already removed, not blank).
pub fn split_one_line(line: &str) -> Result<OneLine<'_>, OneLineError> {
    let line = line.trim();
    let (kind, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let rest = rest.trim_start();
    let (options, rest) = match rest.strip_prefix('[') {
        Some(bracketed) => {
            let (inside, rest) = bracketed
                .split_once(']')
                .ok_or(OneLineError::UnclosedOptions)?;
            let options = inside
                .split_whitespace()
                .map(|option| {
                    option
                        .split_once('=')
                        .ok_or_else(|| OneLineError::OptionNotKeyValue(option.to_owned()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            (options, rest)
        }
        None => (Vec::new(), rest),
    };
    Ok(OneLine {
        kind,
        options,
        location: rest.split_whitespace().collect(),
    })
}

/// Parses one-line sources (`/etc/apt/sources.list`, `sources.list.d/*.list`):
/// `deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg trusted=yes] URI SUITE COMPONENT...`.
/// `deb-src` lines, comments and blank lines are skipped. `file` names the file in errors.
pub fn parse_one_line(text: &str, file: &str) -> Result<Vec<Source>, SourcesError> {
    let mut sources = Vec::new();
    for (number, raw) in text.lines().enumerate() {
        let error = |problem: String| SourcesError {
            file: file.to_owned(),
            line: number + 1,
            problem,
        };
        let line = raw.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        // deb-src lines are skipped whatever they say, before they are split.
        match line.split_whitespace().next().unwrap_or_default() {
            "deb" => {}
            "deb-src" => continue,
            other => {
                return Err(error(format!(
                    "unknown source type {other:?} (expected `deb` or `deb-src`)"
                )))
            }
        }
        let parts = split_one_line(line).map_err(|problem| error(problem.to_string()))?;
        let [uri, suite, components @ ..] = parts.location.as_slice() else {
            return Err(error(format!(
                "{line:?} needs a URI and a suite: `deb URI SUITE [COMPONENT...]`"
            )));
        };
        let components: Vec<String> = components.iter().map(|&word| word.to_owned()).collect();
        let mut source = new_source(uri, suite, components).map_err(error)?;
        for (name, value) in parts.options {
            let values = || value.split(',').map(str::to_owned).collect::<Vec<_>>();
            match name {
                "arch" => source.architectures = Some(values()),
                "signed-by" => source.signed_by = signed_by_files(&values()).map_err(error)?,
                "trusted" => source.allow_unsigned = yes(value).map_err(error)?,
                // lang=, target=, pdiffs=, by-hash=, ...: nothing this reader does depends on them.
                _ => {}
            }
        }
        sources.push(source);
    }
    Ok(sources)
}

/// Parses a deb822 `.sources` file: paragraphs with `Types`, `URIs`, `Suites`, `Components`,
/// `Signed-By` (keyring paths, or an armored key as a multi-line value), `Architectures`,
/// `Trusted` and `Enabled`. One [`Source`] per URI and suite of each enabled `deb` paragraph.
pub fn parse_deb822(text: &str, file: &str) -> Result<Vec<Source>, SourcesError> {
    let paragraphs = control::parse(text).map_err(|error| SourcesError {
        file: file.to_owned(),
        line: error.line,
        problem: error.problem,
    })?;
    let mut sources = Vec::new();
    for (paragraph, line) in paragraphs.iter().zip(paragraph_lines(text)) {
        let error = |problem: String| SourcesError {
            file: file.to_owned(),
            line,
            problem,
        };
        sources.extend(paragraph_sources(paragraph).map_err(error)?);
    }
    Ok(sources)
}

fn paragraph_sources(paragraph: &Paragraph) -> Result<Vec<Source>, String> {
    if let Some(enabled) = paragraph.get("Enabled") {
        if !yes(enabled)? {
            return Ok(Vec::new());
        }
    }
    let words = |field: &str| -> Vec<String> {
        paragraph
            .get(field)
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    let types = words("Types");
    if types.is_empty() {
        return Err("a paragraph without `Types:` (add `Types: deb`)".into());
    }
    if let Some(unknown) = types.iter().find(|t| *t != "deb" && *t != "deb-src") {
        return Err(format!(
            "unknown source type {unknown:?} (expected `deb` or `deb-src`)"
        ));
    }
    if !types.iter().any(|t| t == "deb") {
        return Ok(Vec::new());
    }
    let (uris, suites, components) = (words("URIs"), words("Suites"), words("Components"));
    if uris.is_empty() {
        return Err("a `deb` paragraph without `URIs:`".into());
    }
    if suites.is_empty() {
        return Err("a `deb` paragraph without `Suites:`".into());
    }
    let signed_by = match paragraph.get("Signed-By") {
        None => SignedBy::Default,
        Some(value) if value.contains("-----BEGIN PGP PUBLIC KEY BLOCK-----") => {
            SignedBy::Inline(inline_key(value))
        }
        Some(value) => {
            let paths: Vec<String> = value
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|word| !word.is_empty())
                .map(str::to_owned)
                .collect();
            signed_by_files(&paths)?
        }
    };
    let architectures = paragraph
        .get("Architectures")
        .map(|_| words("Architectures"));
    let allow_unsigned = match paragraph.get("Trusted") {
        Some(value) => yes(value)?,
        None => false,
    };
    let mut sources = Vec::new();
    for uri in &uris {
        for suite in &suites {
            let mut source = new_source(uri, suite, components.clone())?;
            source.signed_by = signed_by.clone();
            source.architectures = architectures.clone();
            source.allow_unsigned = allow_unsigned;
            sources.push(source);
        }
    }
    Ok(sources)
}

fn new_source(uri: &str, suite: &str, components: Vec<String>) -> Result<Source, String> {
    if !uri.contains(':') {
        return Err(format!("{uri:?} is not a URI (expected http://HOST/PATH)"));
    }
    let flat = suite.ends_with('/');
    if flat && !components.is_empty() {
        return Err(format!(
            "suite {suite:?} ends with `/` (a flat repository), which takes no components"
        ));
    }
    if !flat && components.is_empty() {
        return Err(format!(
            "suite {suite:?} needs at least one component (such as `main`)"
        ));
    }
    Ok(Source {
        uri: uri.trim_end_matches('/').to_owned(),
        suite: suite.to_owned(),
        components,
        signed_by: SignedBy::Default,
        architectures: None,
        allow_unsigned: false,
    })
}

/// `Signed-By` paths; apt also takes key fingerprints there, which name keys of the global
/// keyrings, and this reader does not.
fn signed_by_files(values: &[String]) -> Result<SignedBy, String> {
    if values.is_empty() {
        return Err("`signed-by` is empty (give the keyring's path)".into());
    }
    if let Some(other) = values.iter().find(|value| !value.starts_with('/')) {
        return Err(format!(
            "signed-by {other:?} is not an absolute keyring path (key fingerprints are not \
             supported here: name the keyring file that holds the key)"
        ));
    }
    Ok(SignedBy::Files(values.to_vec()))
}

fn yes(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "yes" | "true" | "1" => Ok(true),
        "no" | "false" | "0" => Ok(false),
        other => Err(format!("{other:?} is neither `yes` nor `no`")),
    }
}

/// The armored key of a multi-line `Signed-By:` value: continuation lines unindented, deb822's
/// `.` lines back to the blank lines of the armor.
fn inline_key(value: &str) -> String {
    let mut key = String::new();
    for line in value.lines().map(str::trim).filter(|line| !line.is_empty()) {
        if line != "." {
            key.push_str(line);
        }
        key.push('\n');
    }
    key
}

/// The 1-based line where each paragraph of `text` starts, as [`control::parse`] splits them.
fn paragraph_lines(text: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut in_paragraph = false;
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            in_paragraph = false;
        } else if !line.starts_with('#') && !in_paragraph {
            in_paragraph = true;
            starts.push(number + 1);
        }
    }
    starts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_sources_with_options_comments_and_deb_src() {
        let text = "\
# the main archive
deb http://deb.debian.org/debian/ bookworm main contrib
deb-src http://deb.debian.org/debian bookworm main
deb [arch=amd64,arm64 signed-by=/usr/share/keyrings/extra.gpg] https://repo.example/apt stable main # trailing
deb [ trusted=yes ] http://127.0.0.1:8080/flat ./

";
        let sources = parse_one_line(text, "etc/apt/sources.list").unwrap();
        assert_eq!(sources.len(), 3);
        assert_eq!(
            sources[0],
            Source {
                uri: "http://deb.debian.org/debian".into(),
                suite: "bookworm".into(),
                components: vec!["main".into(), "contrib".into()],
                signed_by: SignedBy::Default,
                architectures: None,
                allow_unsigned: false,
            }
        );
        assert_eq!(
            sources[1].signed_by,
            SignedBy::Files(vec!["/usr/share/keyrings/extra.gpg".into()])
        );
        assert_eq!(
            sources[1].architectures,
            Some(vec!["amd64".into(), "arm64".into()])
        );
        assert!(!sources[1].allow_unsigned);
        assert!(sources[2].allow_unsigned);
        assert!(sources[2].is_flat());
        assert!(sources[2].components.is_empty());
    }

    #[test]
    fn one_line_errors_name_file_and_line() {
        let err = parse_one_line(
            "deb http://x/debian bookworm main\ndeb http://x\n",
            "a.list",
        )
        .unwrap_err();
        assert_eq!(err.file, "a.list");
        assert_eq!(err.line, 2);
        assert!(err.to_string().starts_with("a.list:2: "), "{err}");
        let err = parse_one_line("deb [arch=amd64 http://x bookworm main", "b.list").unwrap_err();
        assert!(err.problem.contains("closing `]`"), "{err}");
        let err = parse_one_line("deb http://x bookworm\n", "c.list").unwrap_err();
        assert!(err.problem.contains("component"), "{err}");
        let err = parse_one_line("rpm http://x bookworm main\n", "d.list").unwrap_err();
        assert!(err.problem.contains("unknown source type"), "{err}");
        let err = parse_one_line(
            "deb [signed-by=0123ABCD] http://x bookworm main\n",
            "e.list",
        )
        .unwrap_err();
        assert!(err.problem.contains("absolute keyring path"), "{err}");
        let err =
            parse_one_line("deb [trusted=maybe] http://x bookworm main\n", "f.list").unwrap_err();
        assert!(err.problem.contains("neither `yes` nor `no`"), "{err}");
    }

    #[test]
    fn deb822_sources_expand_uris_and_suites_and_skip_disabled() {
        let text = "\
# Debian
Types: deb deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://disabled.example/debian
Suites: bookworm
Components: main
Enabled: no

Types: deb
URIs: http://127.0.0.1:1/a http://127.0.0.1:1/b/
Suites: stable
Components: main extra
Architectures: amd64
Trusted: yes
";
        let sources = parse_deb822(text, "etc/apt/sources.list.d/debian.sources").unwrap();
        let described: Vec<String> = sources.iter().map(Source::describe).collect();
        assert_eq!(
            described,
            [
                "http://deb.debian.org/debian bookworm",
                "http://deb.debian.org/debian bookworm-updates",
                "http://127.0.0.1:1/a stable",
                "http://127.0.0.1:1/b stable",
            ]
        );
        assert_eq!(
            sources[1].signed_by,
            SignedBy::Files(vec!["/usr/share/keyrings/debian-archive-keyring.gpg".into()])
        );
        assert_eq!(sources[3].components, ["main", "extra"]);
        assert_eq!(sources[3].architectures, Some(vec!["amd64".into()]));
        assert!(sources[3].allow_unsigned);
        assert!(!sources[0].allow_unsigned);
    }

    #[test]
    fn deb822_inline_signed_by_is_an_armored_key() {
        let text = "\
Types: deb
URIs: https://repo.example/apt
Suites: stable
Components: main
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 mDMEZABCDEFGHIJ
 =abcd
 -----END PGP PUBLIC KEY BLOCK-----
";
        let sources = parse_deb822(text, "x.sources").unwrap();
        assert_eq!(
            sources[0].signed_by,
            SignedBy::Inline(
                "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEZABCDEFGHIJ\n=abcd\n\
                 -----END PGP PUBLIC KEY BLOCK-----\n"
                    .into()
            )
        );
    }

    #[test]
    fn deb822_errors_name_the_paragraph_line() {
        let text = "\
Types: deb
URIs: http://a/debian
Suites: bookworm
Components: main

# second
Types: deb
Suites: bookworm
Components: main
";
        let err = parse_deb822(text, "y.sources").unwrap_err();
        assert_eq!((err.file.as_str(), err.line), ("y.sources", 7));
        assert!(err.problem.contains("without `URIs:`"), "{err}");
        let err = parse_deb822("Types: deb\n bad\nnot a field\n", "z.sources").unwrap_err();
        assert_eq!(err.line, 3);
        let err =
            parse_deb822("URIs: http://a\nSuites: x\nComponents: main\n", "w.sources").unwrap_err();
        assert!(err.problem.contains("without `Types:`"), "{err}");
    }
}
