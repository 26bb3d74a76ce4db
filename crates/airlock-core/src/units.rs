//! Human-readable durations ("10m", "500ms") and sizes ("64KiB", "10MiB") as written in
//! `airlock.toml`, parsed strictly so a typo is an error rather than a surprise.

use std::time::Duration;

/// Parses `<integer><unit>` with unit `ms`, `s`, `m`, `h` or `d` (24 hours). Zero is accepted; the caller
/// decides whether zero makes sense for its key.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(|| {
        format!(
            "`{text}` has no unit; accepted: a whole number followed by ms, s, m, h or d, e.g. \"10m\""
        )
    })?;
    let (number, unit) = text.split_at(split);
    let value: u64 = number.parse().map_err(|_| {
        format!(
            "`{text}` does not start with a whole number; accepted e.g. \"30s\", \"10m\", \"1h\""
        )
    })?;
    let millis = match unit {
        "ms" => Some(value),
        "s" => value.checked_mul(1_000),
        "m" => value.checked_mul(60_000),
        "h" => value.checked_mul(3_600_000),
        "d" => value.checked_mul(86_400_000),
        _ => {
            return Err(format!(
                "`{text}` has unknown unit `{unit}`; accepted units: ms, s, m, h, d"
            ));
        }
    };
    millis
        .map(Duration::from_millis)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// Parses a byte size: a bare integer, or `<integer><unit>` with unit B, KiB, MiB, GiB
/// (powers of 1024) or KB, MB, GB (powers of 1000).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number.parse().map_err(|_| {
        format!(
            "`{text}` does not start with a whole number; accepted e.g. 65536, \"64KiB\", \"10MiB\""
        )
    })?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "`{text}` has unknown unit `{other}`; accepted units: B, KiB, MiB, GiB, KB, MB, GB"
            ));
        }
    };
    value
        .checked_mul(factor)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// Formats a duration the way `parse_duration` reads it, choosing the largest exact unit.
pub fn format_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms != 0 && ms.is_multiple_of(86_400_000) {
        format!("{}d", ms / 86_400_000)
    } else if ms != 0 && ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms != 0 && ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1_000) {
        format!("{}s", ms / 1_000)
    } else {
        format!("{ms}ms")
    }
}

/// `YYYY-MM-DDThh:mm:ssZ` for milliseconds since the Unix epoch (whole seconds, UTC).
pub fn rfc3339_utc(unix_ms: i64) -> String {
    let seconds = unix_ms.div_euclid(1000);
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    // Dates before 1970 are not airlock's: they print as 1970-01-01.
    let (year, month, day) = airlock_sinks::civil_from_days(days.max(0) as u64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let check = |text: &str, expected: Option<u64>| {
            assert_eq!(
                parse_duration(text).ok().map(|d| d.as_millis() as u64),
                expected,
                "{text}"
            );
        };
        check("10m", Some(600_000));
        check("500ms", Some(500));
        check("1h", Some(3_600_000));
        check("0s", Some(0));
        check("10", None);
        check("m", None);
        check("10 minutes", None);
        check("-1s", None);
        check("99999999999999999999h", None);
    }

    #[test]
    fn sizes() {
        let check = |text: &str, expected: Option<u64>| {
            assert_eq!(parse_size(text).ok(), expected, "{text}")
        };
        check("65536", Some(65_536));
        check("64KiB", Some(65_536));
        check("10MiB", Some(10 << 20));
        check("1KB", Some(1_000));
        check("10mb", None);
        check("KiB", None);
        check("1.5MiB", None);
    }

    #[test]
    fn format_round_trips() {
        for text in ["10m", "4h", "2d", "30s", "250ms", "0s"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }
}
