//! Where a value of a build file was written, and values that carry it.

use std::fmt;

use saphyr_parser::Marker;

/// Where something was written: 1-based line and column (columns count characters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// `LINE:COLUMN`.
impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

impl From<&Marker> for Position {
    fn from(marker: &Marker) -> Self {
        Position {
            line: marker.line(),
            column: marker.col() + 1,
        }
    }
}

/// A value of the build file and where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located<T> {
    pub value: T,
    pub at: Position,
}
