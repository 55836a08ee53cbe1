//! Debian package versions (`[epoch:]upstream[-revision]`) and their ordering, exactly as dpkg
//! orders them: epochs numerically, then upstream and revision by dpkg's alternating comparison
//! of non-digit runs (`~` before everything, even the end; letters before other characters)
//! and digit runs (numerically).

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

/// A version that does not follow Debian policy's syntax.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{version:?} is not a Debian version: {problem}")]
pub struct VersionError {
    pub version: String,
    pub problem: &'static str,
}

/// A Debian version. Equality, hashing and ordering are dpkg's: `1.01` equals `1.1` and `1.0`
/// equals `1.0-0`, as `dpkg --compare-versions` says; [`fmt::Display`] gives the text parsed.
#[derive(Clone, Debug)]
pub struct Version {
    text: String,
    epoch: u32,
    /// Byte range of the upstream part in `text`.
    upstream: (usize, usize),
    /// Byte range of the revision in `text` (empty when there is none).
    revision: (usize, usize),
}

impl Version {
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    pub fn upstream(&self) -> &str {
        &self.text[self.upstream.0..self.upstream.1]
    }

    /// The Debian revision, empty when the version has none.
    pub fn revision(&self) -> &str {
        &self.text[self.revision.0..self.revision.1]
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for Version {
    type Err = VersionError;

    fn from_str(text: &str) -> Result<Version, VersionError> {
        let error = |problem| VersionError {
            version: text.to_owned(),
            problem,
        };
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(error("it is empty"));
        }
        if trimmed.contains(char::is_whitespace) {
            return Err(error("it contains white space"));
        }
        let (epoch, upstream_start) = match trimmed.split_once(':') {
            Some((epoch, _)) => {
                if epoch.is_empty() || !epoch.bytes().all(|byte| byte.is_ascii_digit()) {
                    return Err(error("the epoch (before `:`) is not a number"));
                }
                let epoch = epoch
                    .parse::<u32>()
                    .map_err(|_| error("the epoch (before `:`) is too large"))?;
                (epoch, trimmed.find(':').map_or(0, |colon| colon + 1))
            }
            None => (0, 0),
        };
        let rest = &trimmed[upstream_start..];
        let (upstream_len, revision) = match rest.rfind('-') {
            Some(dash) => {
                let revision = &rest[dash + 1..];
                if revision.is_empty() {
                    return Err(error("the revision (after the last `-`) is empty"));
                }
                if !revision
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || b".+~".contains(&byte))
                {
                    return Err(error(
                        "the revision may only contain letters, digits and `.+~`",
                    ));
                }
                (dash, dash + 1..rest.len())
            }
            None => (rest.len(), rest.len()..rest.len()),
        };
        let upstream = &rest[..upstream_len];
        if upstream.is_empty() {
            return Err(error("the upstream version is empty"));
        }
        if !upstream.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(error("the upstream version does not start with a digit"));
        }
        if !upstream
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b".+~-:".contains(&byte))
        {
            return Err(error(
                "the upstream version may only contain letters, digits and `.+~-:`",
            ));
        }
        Ok(Version {
            text: trimmed.to_owned(),
            epoch,
            upstream: (upstream_start, upstream_start + upstream_len),
            revision: (
                revision.start + upstream_start,
                revision.end + upstream_start,
            ),
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Version) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| compare_part(self.upstream(), other.upstream()))
            .then_with(|| compare_part(self.revision(), other.revision()))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Version) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Version) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

/// Hashes what the ordering compares, so that versions dpkg calls equal hash equal.
impl Hash for Version {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.epoch.hash(state);
        hash_part(self.upstream(), state);
        hash_part(self.revision(), state);
    }
}

/// The weight dpkg gives a character of a non-digit run; `None` is the end of the run (a digit
/// or the end of the string), which sorts after `~` and before everything else.
fn weight(byte: Option<u8>) -> i32 {
    match byte {
        None => 0,
        Some(b'~') => -1,
        Some(byte) if byte.is_ascii_digit() => 0,
        Some(byte) if byte.is_ascii_alphabetic() => i32::from(byte),
        Some(byte) => i32::from(byte) + 256,
    }
}

/// One part (upstream or revision) compared as dpkg's `verrevcmp` does.
fn compare_part(left: &str, right: &str) -> Ordering {
    let (left, right) = (left.as_bytes(), right.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < left.len() || j < right.len() {
        while left.get(i).is_some_and(|byte| !byte.is_ascii_digit())
            || right.get(j).is_some_and(|byte| !byte.is_ascii_digit())
        {
            let (a, b) = (weight(left.get(i).copied()), weight(right.get(j).copied()));
            if a != b {
                return a.cmp(&b);
            }
            i += 1;
            j += 1;
        }
        let (a, next_i) = digit_run(left, i);
        let (b, next_j) = digit_run(right, j);
        let by_number = a.len().cmp(&b.len()).then_with(|| a.cmp(b));
        if by_number != Ordering::Equal {
            return by_number;
        }
        i = next_i;
        j = next_j;
    }
    Ordering::Equal
}

/// The digit run starting at `start`, without leading zeros, and where it ends.
fn digit_run(bytes: &[u8], start: usize) -> (&[u8], usize) {
    let end = bytes[start.min(bytes.len())..]
        .iter()
        .position(|byte| !byte.is_ascii_digit())
        .map_or(bytes.len(), |length| start + length);
    let run = &bytes[start.min(end)..end];
    let zeros = run.iter().take_while(|&&byte| byte == b'0').count();
    (&run[zeros..], end)
}

/// Hashes a part as the runs [`compare_part`] compares: each non-digit run and each digit run
/// without leading zeros, with trailing empty pairs (which compare equal to nothing) left out.
fn hash_part<H: Hasher>(part: &str, state: &mut H) {
    let bytes = part.as_bytes();
    let mut runs: Vec<(&[u8], &[u8])> = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let text_end = bytes[at..]
            .iter()
            .position(u8::is_ascii_digit)
            .map_or(bytes.len(), |length| at + length);
        let (digits, next) = digit_run(bytes, text_end);
        runs.push((&bytes[at..text_end], digits));
        at = next;
    }
    while runs
        .last()
        .is_some_and(|(text, digits)| text.is_empty() && digits.is_empty())
    {
        runs.pop();
    }
    runs.hash(state);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::hash_map::DefaultHasher;
    use std::process::Command;

    fn version(text: &str) -> Version {
        text.parse().unwrap()
    }

    /// (left, expected ordering, right), as dpkg orders them.
    const CASES: &[(&str, Ordering, &str)] = &[
        ("1.0", Ordering::Equal, "1.0"),
        ("1.0", Ordering::Less, "1.1"),
        ("1.0", Ordering::Equal, "1.0-0"),
        ("1.01", Ordering::Equal, "1.1"),
        ("1.0~rc1", Ordering::Less, "1.0"),
        ("1.0~rc1", Ordering::Less, "1.0~rc2"),
        ("1.0~~", Ordering::Less, "1.0~"),
        ("1.0~", Ordering::Less, "1.0"),
        ("1.0", Ordering::Less, "1.0a"),
        ("1.0a", Ordering::Less, "1.0+"),
        ("1.0+", Ordering::Less, "1.0."),
        ("1.0", Ordering::Less, "1.0.0"),
        ("1.0.0", Ordering::Equal, "1.0.00"),
        ("1:0.1", Ordering::Greater, "9.9"),
        ("0:1.0", Ordering::Equal, "1.0"),
        ("2.30-1", Ordering::Less, "2.30-1+deb12u1"),
        ("7.88.1-10+deb12u5", Ordering::Less, "7.88.1-10+deb12u8"),
        ("1:2.39.2-1.1", Ordering::Greater, "2.39.2-1.1"),
        ("2:9.0.1378-2", Ordering::Less, "2:9.0.1378-2+deb12u1"),
        ("1.2-3", Ordering::Less, "1.2-10"),
        ("1.2-3~bpo1", Ordering::Less, "1.2-3"),
        ("1.10", Ordering::Greater, "1.9"),
        ("a1", Ordering::Greater, "1"),
        ("1-a", Ordering::Less, "1-b"),
        ("1.0-1-2", Ordering::Greater, "1.0-1-1"),
        ("20230311", Ordering::Less, "20230311ubuntu1"),
        ("1.2.3+dfsg", Ordering::Greater, "1.2.3"),
        ("1.2.3+dfsg", Ordering::Less, "1.2.3+dfsg1"),
        ("5.2.15-2+b2", Ordering::Greater, "5.2.15-2"),
        ("0", Ordering::Equal, "00"),
    ];

    #[test]
    fn orders_as_the_table_says() {
        for &(left, expected, right) in CASES {
            if left.starts_with(|c: char| c.is_ascii_digit()) {
                assert_eq!(
                    version(left).cmp(&version(right)),
                    expected,
                    "{left} {right}"
                );
                assert_eq!(
                    version(right).cmp(&version(left)),
                    expected.reverse(),
                    "{right} {left}"
                );
            }
            assert_eq!(compare_whole(left, right), expected, "{left} vs {right}");
        }
    }

    /// The table is dpkg's own verdict, asked of `dpkg --compare-versions` (on every Debian host).
    #[test]
    fn table_agrees_with_dpkg() {
        for &(left, expected, right) in CASES {
            let operator = match expected {
                Ordering::Less => "lt",
                Ordering::Equal => "eq",
                Ordering::Greater => "gt",
            };
            let status = Command::new(layerize_test_support::tools::require("dpkg"))
                .args(["--compare-versions", left, operator, right])
                .status()
                .unwrap();
            assert!(
                status.success(),
                "dpkg disagrees: {left} {operator} {right}"
            );
        }
    }

    /// Compares without the syntax checks (`a1` is a valid comparison for dpkg, not a valid
    /// version for policy).
    fn compare_whole(left: &str, right: &str) -> Ordering {
        compare_part(left, right)
    }

    #[test]
    fn equal_versions_hash_equal() {
        let hash = |text: &str| {
            let mut hasher = DefaultHasher::new();
            version(text).hash(&mut hasher);
            hasher.finish()
        };
        for &(left, expected, right) in CASES {
            if expected == Ordering::Equal && left.starts_with(|c: char| c.is_ascii_digit()) {
                assert_eq!(hash(left), hash(right), "{left} {right}");
            }
        }
        assert_ne!(hash("1.0"), hash("1.1"));
    }

    #[test]
    fn parts_and_display() {
        let v = version("1:2.39.2-1.1");
        assert_eq!(
            (v.epoch(), v.upstream(), v.revision()),
            (1, "2.39.2", "1.1")
        );
        assert_eq!(v.to_string(), "1:2.39.2-1.1");
        let v = version("1.0-1-2");
        assert_eq!((v.upstream(), v.revision()), ("1.0-1", "2"));
        let v = version("3.0");
        assert_eq!((v.epoch(), v.upstream(), v.revision()), (0, "3.0", ""));
    }

    #[test]
    fn bad_syntax_is_refused_with_the_reason() {
        for (text, problem) in [
            ("", "it is empty"),
            ("1 .0", "it contains white space"),
            ("a:1.0", "the epoch (before `:`) is not a number"),
            ("1.0-", "the revision (after the last `-`) is empty"),
            ("abc", "the upstream version does not start with a digit"),
            (
                "1.0_2",
                "the upstream version may only contain letters, digits and `.+~-:`",
            ),
            (
                "1.0-2_3",
                "the revision may only contain letters, digits and `.+~`",
            ),
        ] {
            assert_eq!(
                text.parse::<Version>().unwrap_err().problem,
                problem,
                "{text:?}"
            );
        }
    }
}
