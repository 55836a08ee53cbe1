//! RFC 3339 timestamps from Unix time, for `created` fields and `SOURCE_DATE_EPOCH`.

/// `epoch_seconds` as an RFC 3339 UTC timestamp with second precision,
/// e.g. `0` -> `"1970-01-01T00:00:00Z"`.
pub fn utc_rfc3339(epoch_seconds: u64) -> String {
    let days = epoch_seconds / 86_400;
    let second_of_day = epoch_seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

/// The proleptic Gregorian (year, month, day) of a day count since 1970-01-01, after Howard
/// Hinnant's `civil_from_days`: shift the epoch to 0000-03-01 so leap days end each 400-year
/// era, then split eras into years and March-based months.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    const DAYS_0000_03_01_TO_1970_01_01: u64 = 719_468;
    let z = days + DAYS_0000_03_01_TO_1970_01_01;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_timestamps() {
        for (epoch, expected) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (951_868_799, "2000-02-29T23:59:59Z"),
            (1_700_000_000, "2023-11-14T22:13:20Z"),
            (4_107_542_400, "2100-03-01T00:00:00Z"),
            (253_402_300_799, "9999-12-31T23:59:59Z"),
        ] {
            assert_eq!(utc_rfc3339(epoch), expected, "{epoch}");
        }
    }

    /// Days since the epoch counted the slow way, year by year and month by month.
    fn days_from_civil_naive(year: u64, month: u64, day: u64) -> u64 {
        let leap = |y: u64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let month_lengths = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        let mut days = (1970..year)
            .map(|y| if leap(y) { 366 } else { 365 })
            .sum::<u64>();
        days += (1..month)
            .map(|m| month_lengths[(m - 1) as usize] + u64::from(m == 2 && leap(year)))
            .sum::<u64>();
        days + day - 1
    }

    proptest! {
        #[test]
        fn civil_from_days_inverts_the_naive_count(days in 0u64..1_200_000) {
            let (year, month, day) = civil_from_days(days);
            prop_assert!((1..=12).contains(&month));
            prop_assert!((1..=31).contains(&day));
            prop_assert_eq!(days_from_civil_naive(year, month, day), days);
        }
    }
}
