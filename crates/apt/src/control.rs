//! deb822 paragraphs (control files, `Packages`, `Release`, dpkg `status`, `.sources`): fields in
//! the order written, continuation lines kept, so that a paragraph written back reads the same.

use std::fmt;

/// A malformed deb822 text.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {problem}")]
pub struct ControlError {
    /// 1-based line of the text.
    pub line: usize,
    pub problem: String,
}

/// One paragraph: `Name: value` fields in order. A multi-line value keeps its continuation
/// lines (each starting with a space or tab) after a `\n`, exactly as written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Paragraph {
    fields: Vec<(String, String)>,
}

impl Paragraph {
    pub fn new() -> Paragraph {
        Paragraph::default()
    }

    /// The value of field `name` (field names are case-insensitive), trimmed of the space after
    /// the colon; a multi-line value keeps its continuation lines.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Sets `name` to `value`, in place if present, else at the end.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self
            .fields
            .iter_mut()
            .find(|(field, _)| field.eq_ignore_ascii_case(name))
        {
            Some((_, old)) => *old = value,
            None => self.fields.push((name.to_owned(), value)),
        }
    }

    /// Sets `name` to `value` right after field `after` (or at the end when `after` is absent),
    /// replacing an existing `name`.
    pub fn insert_after(&mut self, after: &str, name: &str, value: impl Into<String>) {
        self.remove(name);
        let at = self
            .fields
            .iter()
            .position(|(field, _)| field.eq_ignore_ascii_case(after))
            .map_or(self.fields.len(), |index| index + 1);
        self.fields.insert(at, (name.to_owned(), value.into()));
    }

    /// Removes field `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let index = self
            .fields
            .iter()
            .position(|(field, _)| field.eq_ignore_ascii_case(name))?;
        Some(self.fields.remove(index).1)
    }

    /// The fields in order.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

/// Written back as deb822: `Name: value` lines (continuation lines as kept), no blank line.
impl fmt::Display for Paragraph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, value) in &self.fields {
            if value.is_empty() || value.starts_with('\n') {
                writeln!(f, "{name}:{value}")?;
            } else {
                writeln!(f, "{name}: {value}")?;
            }
        }
        Ok(())
    }
}

/// Parses deb822 text into its paragraphs. Blank lines separate paragraphs; lines starting
/// with `#` are comments (as in `.sources` files and control files); a line starting with a
/// space or tab continues the field before it. A cleartext-signed text must be stripped of
/// its armor first (see [`crate::keyring`]).
pub fn parse(text: &str) -> Result<Vec<Paragraph>, ControlError> {
    parse_keeping(text, |_| true)
}

/// Like [`parse`], keeping only the fields `keep` accepts (by name): a `Packages` index is
/// mostly descriptions nobody here reads, and not copying them is most of parsing it.
pub fn parse_keeping(
    text: &str,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<Paragraph>, ControlError> {
    let mut paragraphs = Vec::new();
    let mut current = Paragraph::new();
    // Whether the field being read (and so its continuation lines) is left out.
    let mut dropping = false;
    // Whether the paragraph being read has any line at all, kept or not.
    let mut started = false;
    for (number, line) in text.lines().enumerate() {
        let line_number = number + 1;
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            if started {
                paragraphs.push(std::mem::take(&mut current));
                started = false;
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            if !started {
                return Err(ControlError {
                    line: line_number,
                    problem: "a continuation line with no field before it".into(),
                });
            }
            if dropping {
                continue;
            }
            let Some((_, value)) = current.fields.last_mut() else {
                return Err(ControlError {
                    line: line_number,
                    problem: "a continuation line with no field before it".into(),
                });
            };
            value.push('\n');
            value.push_str(line);
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(ControlError {
                line: line_number,
                problem: format!("{line:?} is neither `Field: value` nor a continuation line"),
            });
        };
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(ControlError {
                line: line_number,
                problem: format!("{name:?} is not a field name"),
            });
        }
        started = true;
        dropping = !keep(name);
        if !dropping {
            current
                .fields
                .push((name.to_owned(), value.trim_start().trim_end().to_owned()));
        }
    }
    if started {
        paragraphs.push(current);
    }
    Ok(paragraphs)
}

/// The least text [`parse_keeping_in_parts`] gives a thread of its own.
const MIN_PIECE_BYTES: usize = 1 << 20;

/// [`parse_keeping`] of `text` cut into up to `parts` pieces at blank lines, parsed at once on that
/// many threads: the same paragraphs in the same order, and an error on the same line. A
/// `Packages` index has tens of thousands of paragraphs, and every build reads one.
pub fn parse_keeping_in_parts(
    text: &str,
    parts: usize,
    keep: impl Fn(&str) -> bool + Sync,
) -> Result<Vec<Paragraph>, ControlError> {
    // A thread is worth it only for a large piece.
    let parts = parts.min(text.len() / MIN_PIECE_BYTES + 1);
    let pieces: Vec<&str> = crate::parallel::paragraph_aligned_parts(text, parts)
        .into_iter()
        .map(|part| &text[part])
        .collect();
    let parsed = crate::parallel::in_order(pieces.clone(), |piece| parse_keeping(piece, &keep));
    let mut paragraphs = Vec::new();
    let mut lines_before = 0;
    for (piece, parsed) in pieces.iter().zip(parsed) {
        match parsed {
            Ok(parsed) => paragraphs.extend(parsed),
            Err(error) => {
                return Err(ControlError {
                    line: lines_before + error.line,
                    problem: error.problem,
                })
            }
        }
        lines_before += piece.matches('\n').count();
    }
    Ok(paragraphs)
}

/// The lines of a multi-line value after the first (the first line is often empty), trimmed;
/// `.` lines (deb822's empty line) are kept as `.`.
pub fn continuation_lines(value: &str) -> impl Iterator<Item = &str> {
    value
        .lines()
        .skip(1)
        .map(str::trim)
        .filter(|line| !line.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing_in_parts_gives_the_same_paragraphs_and_error_lines() {
        let stanza = |n: usize| format!("Package: p{n}\nVersion: 1.{n}\nDescription: é\n long\n");
        // Over two MiB, so that it is cut in up to three pieces.
        let stanzas = 40_000;
        let text: String = (0..stanzas).map(|n| stanza(n) + "\n").collect();
        assert!(text.len() > 2 * MIN_PIECE_BYTES);
        let keep = |name: &str| name != "Description";
        let whole = parse_keeping(&text, keep).unwrap();
        assert_eq!(whole.len(), stanzas);
        for parts in [1, 2, 3, 7, 200] {
            assert_eq!(
                parse_keeping_in_parts(&text, parts, keep).unwrap(),
                whole,
                "{parts}"
            );
        }
        let broken = format!("{text}Package: q\nnot a field\n");
        let line = parse_keeping(&broken, keep).unwrap_err().line;
        assert_eq!(line, stanzas * 5 + 2);
        for parts in [2, 3, 7] {
            assert_eq!(
                parse_keeping_in_parts(&broken, parts, keep)
                    .unwrap_err()
                    .line,
                line
            );
        }
    }

    #[test]
    fn paragraphs_keep_order_and_continuation_lines() {
        let text = "Package: a\nVersion: 1.0\nDescription: short\n long line\n .\n more\n\n\n# comment\nPackage: b\nConffiles:\n /etc/b 0123\n";
        let paragraphs = parse(text).unwrap();
        assert_eq!(paragraphs.len(), 2);
        assert_eq!(paragraphs[0].get("package"), Some("a"));
        assert_eq!(
            paragraphs[0].get("Description"),
            Some("short\n long line\n .\n more")
        );
        assert_eq!(paragraphs[1].get("Conffiles"), Some("\n /etc/b 0123"));
        assert_eq!(
            continuation_lines(paragraphs[1].get("Conffiles").unwrap()).collect::<Vec<_>>(),
            vec!["/etc/b 0123"]
        );
        let written: String = paragraphs
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(parse(&written).unwrap(), paragraphs);
        assert!(written.contains("Conffiles:\n /etc/b 0123\n"));
    }

    #[test]
    fn left_out_fields_take_their_continuation_lines_with_them() {
        let text = "Package: a\nDescription: short\n long\nDepends: b\n\nPackage: c\n";
        let paragraphs = parse_keeping(text, |name| name != "Description").unwrap();
        assert_eq!(paragraphs.len(), 2);
        assert_eq!(paragraphs[0].to_string(), "Package: a\nDepends: b\n");
        assert_eq!(paragraphs[1].to_string(), "Package: c\n");
        assert_eq!(parse_keeping(" orphan\n", |_| false).unwrap_err().line, 1);
    }

    #[test]
    fn malformed_lines_are_errors_with_their_line() {
        assert_eq!(parse(" orphan\n").unwrap_err().line, 1);
        assert_eq!(parse("A: 1\nnot a field\n").unwrap_err().line, 2);
    }

    #[test]
    fn fields_can_be_set_inserted_and_removed() {
        let mut p = parse("Package: a\nVersion: 1\n").unwrap().remove(0);
        p.insert_after("Package", "Status", "install ok installed");
        p.set("Version", "2");
        assert_eq!(
            p.to_string(),
            "Package: a\nStatus: install ok installed\nVersion: 2\n"
        );
        assert_eq!(p.remove("Status").as_deref(), Some("install ok installed"));
    }
}
