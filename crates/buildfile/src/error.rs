//! Why a build file was refused: the file, the line and column, and what is wrong there.

use std::fmt;
use std::path::PathBuf;

use crate::position::Position;

/// Why a build file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BuildFileError {
    /// The file (or its directory) cannot be read at all.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Something at a place in the file: `layerize.yaml:12:7: unknown key ...`.
    #[error("{}:{at}: {problem}", file.display())]
    At {
        /// The build file as it was named to [`crate::BuildFile::load`].
        file: PathBuf,
        at: Position,
        problem: Box<Problem>,
    },
}

impl BuildFileError {
    /// Where in the file the problem is, when it is in the file.
    pub fn position(&self) -> Option<Position> {
        match self {
            BuildFileError::Read { .. } => None,
            BuildFileError::At { at, .. } => Some(*at),
        }
    }

    pub fn problem(&self) -> Option<&Problem> {
        match self {
            BuildFileError::Read { .. } => None,
            BuildFileError::At { problem, .. } => Some(problem),
        }
    }
}

/// What is wrong at a place in a build file.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("YAML syntax error: {0}")]
    Syntax(String),
    #[error("the build file holds no YAML document; it needs at least a layers list")]
    Empty,
    #[error("a build file holds one YAML document, but a second one starts here")]
    SeveralDocuments,
    #[error("YAML aliases (*name) are not supported in a build file: write the value out")]
    Alias,
    #[error("YAML tags (!name, !!type) are not supported in a build file: quote a value to make it a string")]
    Tag,
    #[error("a key must be a string, not a list or a mapping")]
    ComplexKey,
    #[error("duplicate key \"{key}\" (first given at line {}, column {})", first.line, first.column)]
    DuplicateKey { key: String, first: Position },
    #[error("unknown key \"{key}\" in {context} (expected one of: {})", expected.join(", "))]
    UnknownKey {
        key: String,
        context: &'static str,
        expected: &'static [&'static str],
    },
    #[error("{context} needs \"{key}\"")]
    MissingKey {
        key: &'static str,
        context: &'static str,
    },
    /// `what`: a quoted key (`"src"`) or what the value is (`a layer entry`).
    #[error("{what} must be {expected}, found {found}")]
    WrongType {
        what: String,
        expected: &'static str,
        found: Found,
    },
    #[error("\"{key}\" is an empty list; give at least one {item}")]
    EmptyList {
        key: &'static str,
        item: &'static str,
    },
    #[error("the layers list is empty; a build file needs at least one layer")]
    NoLayers,
    #[error("invalid layer name \"{0}\": a name starts with a letter or digit and holds only letters, digits, '.', '_', '+' and '-'")]
    InvalidName(String),
    #[error("duplicate layer name \"{name}\" (first used at line {}, column {}); names are unique across the file, group members included", first.line, first.column)]
    DuplicateName { name: String, first: Position },
    #[error("{context} \"{name}\" has no kind: give one of {}", kinds.join(", "))]
    NoKind {
        context: &'static str,
        name: String,
        kinds: &'static [&'static str],
    },
    #[error("{context} \"{name}\" has two kinds, \"{first}\" and \"{second}\"; it takes exactly one (put the other in an entry of its own{})", if *in_group { "" } else { ", or both in a group" })]
    TwoKinds {
        context: &'static str,
        name: String,
        first: String,
        second: String,
        in_group: bool,
    },
    #[error("a group member cannot be a group itself; list its packages in the outer group")]
    NestedGroup,
    #[error("a script cannot be a group member: its layer is what it changes, so it is a layer entry of its own")]
    ScriptInGroup,
    #[error("needs \"{0}\", which is not a layer written before this one; a step runs on top of earlier layers only")]
    UnknownNeed(String),
    #[error("an apt entry cannot be a group member: its packages become layers of their own (or one layer with `apt: {{group: [...]}}`), so it is a layer entry of its own")]
    AptInGroup,
    #[error(transparent)]
    AptSyntax(AptSyntaxError),
    #[error("apt package \"{name}\" is listed twice in one entry (first at line {}, column {})", first.line, first.column)]
    AptPackageTwice { name: String, first: Position },
    #[error("the apt packages are given twice, as \"group\" and as \"packages\": write `group: [...]` alone, or `packages: [...]` with `group: true`")]
    AptGroupAndPackages,
    #[error(
        "{context} names no packages: give `packages: [...]`, or `group: [...]` for one layer"
    )]
    AptNoPackages { context: &'static str },
    #[error(
        "a files entry has both \"src\" and \"content\"; give one: a host file or the file's text"
    )]
    SourceAndContent,
    #[error("a files entry needs \"src\" (a host file) or \"content\" (the file's text)")]
    NoSourceOrContent,
    #[error("source \"{src}\" does not exist (looked for {})", resolved.display())]
    SourceMissing { src: String, resolved: PathBuf },
    #[error("source \"{src}\" is not {expected} ({})", resolved.display())]
    SourceKind {
        src: String,
        expected: &'static str,
        resolved: PathBuf,
    },
    #[error("source \"{src}\" is outside the build file's directory {}: sources must be inside it, as in a Docker build context", dir.display())]
    SourceEscapes { src: String, dir: PathBuf },
    #[error("source \"{src}\" leads through a symlink to {}, outside the build file's directory {}: sources must be inside it, as in a Docker build context", target.display(), dir.display())]
    SourceEscapesThroughSymlink {
        src: String,
        target: PathBuf,
        dir: PathBuf,
    },
    #[error("cannot read source \"{src}\" ({}): {error}", resolved.display())]
    SourceUnreadable {
        src: String,
        resolved: PathBuf,
        error: std::io::Error,
    },
    #[error("destination \"{0}\" is relative; paths in the image are absolute (start with /)")]
    RelativeDestination(String),
    #[error("destination \"{0}\" climbs above the image root")]
    DestinationEscapes(String),
    #[error("\"{0}\" is the image root, which {1}")]
    RootDestination(String, &'static str),
    #[error("{0}")]
    InvalidPath(&'static str),
    #[error("mode {text}: {reason}")]
    InvalidMode { text: String, reason: &'static str },
    #[error("owner \"{0}\" must be UID:GID with numeric ids, e.g. \"1000:1000\"")]
    InvalidOwner(String),
    #[error("max_layers {0} is out of range: at least 1 and at most 125 (Docker's limit on the layers of one image, base included)")]
    MaxLayers(i64),
    #[error(
        "parallel must be true, false or a number of layers built at once (at least 1), found {0}"
    )]
    Parallel(String),
    /// A value refused by the part of layerize that will use it (a reference, a platform, a
    /// config setting); the message is that part's.
    #[error("{key}: {message}")]
    InvalidValue { key: String, message: String },
}

/// An apt package or a one-line source that apt would not read, from the build file or a flag.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AptSyntaxError {
    #[error("invalid apt package \"{text}\": {reason}")]
    Package { text: String, reason: &'static str },
    #[error("invalid apt source \"{line}\": {reason}")]
    Source { line: String, reason: &'static str },
}

/// What a value of the wrong type was, for [`Problem::WrongType`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    Null,
    Boolean,
    Number,
    String,
    List,
    Mapping,
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Found::Null => "nothing (null)",
            Found::Boolean => "a boolean",
            Found::Number => "a number",
            Found::String => "a string",
            Found::List => "a list",
            Found::Mapping => "a mapping",
        })
    }
}

/// A problem and where it is, before the file's name is known to it.
#[derive(Debug)]
pub(crate) struct Fault {
    pub at: Position,
    pub problem: Problem,
}

impl Fault {
    pub(crate) fn new(at: Position, problem: Problem) -> Self {
        Fault { at, problem }
    }
}
