//! A repository's `Release` file (the text of a verified `InRelease`): what the suite is, how
//! long the signature vouches for it (`Valid-Until`), and the SHA256 and size of every index it
//! covers.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::control;

/// The fields of a `Release` this crate uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    pub suite: Option<String>,
    pub codename: Option<String>,
    pub date: Option<SystemTime>,
    pub valid_until: Option<SystemTime>,
    /// `Acquire-By-Hash: yes`: indexes may be fetched from `by-hash/SHA256/<hash>`.
    pub acquire_by_hash: bool,
    pub components: Vec<String>,
    pub architectures: Vec<String>,
    /// Path relative to the Release's directory (`main/binary-amd64/Packages.xz`) ->
    /// (size, lower-case hex SHA256).
    pub sha256: BTreeMap<String, (u64, String)>,
}

/// A `Release` that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReleaseError {
    #[error("the Release file is not deb822: {0}")]
    Syntax(#[from] control::ControlError),
    #[error("the Release file is empty")]
    Empty,
    #[error("the Release file's {field} field {value:?} is not a date like `Sat, 10 Jun 2023 08:52:43 UTC`")]
    BadDate { field: &'static str, value: String },
    #[error("the Release file's SHA256 line {line:?} is not `HASH SIZE PATH`")]
    BadChecksumLine { line: String },
    #[error(
        "the Release file expired: Valid-Until is {valid_until} (now {now}); the mirror is stale \
         or the clock is wrong; a current mirror fixes it"
    )]
    Expired { valid_until: String, now: String },
}

/// Parses the text of a `Release` (already stripped of any signature).
pub fn parse(text: &str) -> Result<Release, ReleaseError> {
    let paragraph = control::parse(text)?
        .into_iter()
        .next()
        .ok_or(ReleaseError::Empty)?;
    let text_field = |name: &str| paragraph.get(name).map(|value| value.trim().to_owned());
    let words = |name: &str| -> Vec<String> {
        paragraph
            .get(name)
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    let date_field = |field: &'static str| -> Result<Option<SystemTime>, ReleaseError> {
        paragraph
            .get(field)
            .map(|value| {
                parse_date(value).ok_or_else(|| ReleaseError::BadDate {
                    field,
                    value: value.to_owned(),
                })
            })
            .transpose()
    };
    let mut sha256 = BTreeMap::new();
    for line in control::continuation_lines(paragraph.get("SHA256").unwrap_or_default()) {
        let bad = || ReleaseError::BadChecksumLine {
            line: line.to_owned(),
        };
        let mut parts = line.split_whitespace();
        let (Some(hash), Some(size), Some(path), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let size: u64 = size.parse().map_err(|_| bad())?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        sha256.insert(path.to_owned(), (size, hash.to_ascii_lowercase()));
    }
    Ok(Release {
        suite: text_field("Suite"),
        codename: text_field("Codename"),
        date: date_field("Date")?,
        valid_until: date_field("Valid-Until")?,
        acquire_by_hash: paragraph
            .get("Acquire-By-Hash")
            .is_some_and(|value| value.trim().eq_ignore_ascii_case("yes")),
        components: words("Components"),
        architectures: words("Architectures"),
        sha256,
    })
}

impl Release {
    /// Refuses a Release whose `Valid-Until` is not after `now`.
    pub fn check_valid_at(&self, now: SystemTime) -> Result<(), ReleaseError> {
        match self.valid_until {
            Some(valid_until) if valid_until <= now => Err(ReleaseError::Expired {
                valid_until: httpdate::fmt_http_date(valid_until),
                now: httpdate::fmt_http_date(now),
            }),
            _ => Ok(()),
        }
    }
}

/// An RFC 2822 date as Release files write it: `Sat, 10 Jun 2023 08:52:43 UTC` (also `GMT`,
/// `Z`, `+0000`-style offsets, and without the weekday).
pub fn parse_date(value: &str) -> Option<SystemTime> {
    let value = value.trim();
    let value = value.split_once(',').map_or(value, |(_, rest)| rest).trim();
    let mut parts = value.split_whitespace();
    let day: u32 = parts.next()?.parse().ok()?;
    let month = parts.next()?;
    let year: i64 = parts.next()?.parse().ok()?;
    let time = parts.next()?;
    let zone = parts.next().unwrap_or("UTC");
    if parts.next().is_some() {
        return None;
    }
    let month = 1 + [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|name| name.eq_ignore_ascii_case(month))? as u32;
    let mut clock = time.split(':');
    let hour: i64 = clock.next()?.parse().ok()?;
    let minute: i64 = clock.next()?.parse().ok()?;
    let second: i64 = clock.next().unwrap_or("0").parse().ok()?;
    if !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let offset_seconds: i64 = match zone {
        "UTC" | "GMT" | "Z" | "UT" => 0,
        _ => {
            let (sign, digits) = match zone.split_at_checked(1)? {
                ("+", digits) => (1, digits),
                ("-", digits) => (-1, digits),
                _ => return None,
            };
            if digits.len() != 4 {
                return None;
            }
            let hours: i64 = digits[..2].parse().ok()?;
            let minutes: i64 = digits[2..].parse().ok()?;
            sign * (hours * 3600 + minutes * 60)
        }
    };
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset_seconds;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).ok()?))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOKWORM: &str = "\
Origin: Debian
Label: Debian
Suite: stable
Version: 12.11
Codename: bookworm
Changelogs: https://metadata.ftp-master.debian.org/changelogs/@CHANGEPATH@_changelog
Date: Sat, 17 May 2025 09:38:16 UTC
Acquire-By-Hash: yes
No-Support-for-Architecture-all: Packages
Architectures: all amd64 arm64
Components: main contrib non-free-firmware non-free
Description: Debian 12.11 Released 17 May 2025
MD5Sum:
 0ed6d4c8891eb86358b94bb35d9e4da4  1484322 contrib/Contents-all
SHA256:
 d6c9c82f4e61b4662f752f8f8e2d3b6d4a7f3c7e9ab2b76a34b2ef7c4b1f5e9a   738242 contrib/Contents-all
 3957f28db16e3f28c7b34ae84f1c929c567de6970f3f1b95dac9b498dd80fe63 8978000 main/binary-amd64/Packages.xz
";

    #[test]
    fn parses_the_fields_and_the_sha256_list() {
        let release = parse(BOOKWORM).unwrap();
        assert_eq!(release.suite.as_deref(), Some("stable"));
        assert_eq!(release.codename.as_deref(), Some("bookworm"));
        assert!(release.acquire_by_hash);
        assert_eq!(release.architectures, ["all", "amd64", "arm64"]);
        assert_eq!(release.components.len(), 4);
        assert_eq!(
            release.sha256.get("main/binary-amd64/Packages.xz"),
            Some(&(
                8_978_000,
                "3957f28db16e3f28c7b34ae84f1c929c567de6970f3f1b95dac9b498dd80fe63".to_owned()
            ))
        );
        assert_eq!(release.sha256.len(), 2);
        // 2025-05-17T09:38:16Z
        assert_eq!(
            release.date,
            Some(UNIX_EPOCH + Duration::from_secs(1_747_474_696))
        );
        assert_eq!(release.valid_until, None);
        release.check_valid_at(SystemTime::now()).unwrap();
    }

    #[test]
    fn dates_in_the_forms_archives_write() {
        let epoch = |value: &str| {
            parse_date(value).map(|time| time.duration_since(UNIX_EPOCH).unwrap().as_secs())
        };
        assert_eq!(epoch("Thu, 01 Jan 1970 00:00:00 UTC"), Some(0));
        assert_eq!(epoch("Sat, 10 Jun 2023 08:52:43 UTC"), Some(1_686_387_163));
        assert_eq!(epoch("10 Jun 2023 08:52:43 GMT"), Some(1_686_387_163));
        assert_eq!(
            epoch("Sat, 10 Jun 2023 10:52:43 +0200"),
            Some(1_686_387_163)
        );
        assert_eq!(epoch("Thu, 29 Feb 2024 12:00:00 UTC"), Some(1_709_208_000));
        assert_eq!(epoch("Sat, 10 Foo 2023 08:52:43 UTC"), None);
        assert_eq!(epoch("yesterday"), None);
        assert_eq!(epoch("Sat, 10 Jun 2023 25:52:43 UTC"), None);
    }

    #[test]
    fn an_expired_valid_until_is_refused_with_its_date() {
        let text = "Suite: x\nValid-Until: Sat, 10 Jun 2023 08:52:43 UTC\n";
        let release = parse(text).unwrap();
        let before = UNIX_EPOCH + Duration::from_secs(1_686_387_000);
        release.check_valid_at(before).unwrap();
        let after = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let err = release.check_valid_at(after).unwrap_err();
        assert!(
            err.to_string()
                .contains("Valid-Until is Sat, 10 Jun 2023 08:52:43 GMT"),
            "{err}"
        );
    }

    #[test]
    fn malformed_releases_are_refused() {
        assert!(matches!(
            parse("Valid-Until: soon\n"),
            Err(ReleaseError::BadDate {
                field: "Valid-Until",
                ..
            })
        ));
        assert!(matches!(
            parse("SHA256:\n abc 12 main/x\n"),
            Err(ReleaseError::BadChecksumLine { .. })
        ));
        assert_eq!(parse("\n\n"), Err(ReleaseError::Empty));
    }
}
