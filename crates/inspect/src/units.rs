//! Durations and sizes as people write them on the command line.
//!
//! - Durations: a whole number and one unit, `30s`, `15m`, `12h`, `7d`, `2w` (a day is 24 hours,
//!   a week 7 days).
//! - Sizes: a number (decimals allowed) and an optional unit, in binary multiples whatever the
//!   spelling: `K`, `KB` and `KiB` all mean 1024 bytes, `M`/`MB`/`MiB` 1024², `G`/`GB`/`GiB`
//!   1024³, `T`/`TB`/`TiB` 1024⁴; `B` or no unit means bytes. Case does not matter.

use std::time::Duration;

/// Why a duration or size was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("duration {0:?}: expected a whole number and a unit (s, m, h, d, w), e.g. 7d")]
    Duration(String),
    #[error("size {0:?}: expected a number and an optional unit (B, K, M, G, T; binary: 1K = 1024 bytes), e.g. 2GiB")]
    Size(String),
}

pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let error = || UnitError::Duration(text.to_owned());
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(error)?;
    let (number, unit) = trimmed.split_at(split);
    let number: u64 = number.parse().map_err(|_| error())?;
    let seconds: u64 = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 60 * 60,
        "d" => 24 * 60 * 60,
        "w" => 7 * 24 * 60 * 60,
        _ => return Err(error()),
    };
    number
        .checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(error)
}

pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let error = || UnitError::Size(text.to_owned());
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return Err(error());
    }
    let power = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 1,
        "m" | "mb" | "mib" => 2,
        "g" | "gb" | "gib" => 3,
        "t" | "tb" | "tib" => 4,
        _ => return Err(error()),
    };
    let multiplier = 1024u64.pow(power);
    if let Ok(whole) = number.parse::<u64>() {
        return whole.checked_mul(multiplier).ok_or_else(error);
    }
    let value: f64 = number.parse().map_err(|_| error())?;
    let bytes = value * multiplier as f64;
    if bytes >= u64::MAX as f64 {
        return Err(error());
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_one_unit() {
        for (text, seconds) in [
            ("30s", 30),
            ("15m", 900),
            ("12h", 43_200),
            ("7d", 604_800),
            ("2w", 1_209_600),
            ("0s", 0),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(seconds)),
                "{text}"
            );
        }
        for bad in [
            "7",
            "d",
            "7x",
            "1.5d",
            "-1d",
            "",
            "7d1h",
            "99999999999999999999w",
        ] {
            assert_eq!(
                parse_duration(bad),
                Err(UnitError::Duration(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn sizes_are_binary_whatever_the_spelling() {
        for (text, bytes) in [
            ("512", 512),
            ("512B", 512),
            ("512K", 512 << 10),
            ("512kb", 512 << 10),
            ("100MiB", 100 << 20),
            ("2GiB", 2 << 30),
            ("1G", 1 << 30),
            ("1.5G", 3 << 29),
            ("1T", 1 << 40),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        for bad in ["", "G", "1X", "1.G", ".5G", "1..5G", "-1G", "99999999999T"] {
            assert_eq!(parse_size(bad), Err(UnitError::Size(bad.into())), "{bad}");
        }
    }
}
