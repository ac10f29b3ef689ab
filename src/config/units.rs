//! Durations (`"500ms"`, `"30s"`, `"30m"`, `"12h"`, `"14d"`) and sizes
//! (`"64KiB"`, `"1MiB"`) as written in the config file.

use std::time::Duration;

/// Why a duration or size is not one. The text says what was written and
/// what would do; validation puts it under the key path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("`{0}` has no unit (use ms, s, m, h or d, e.g. \"30s\")")]
    NoDurationUnit(String),
    #[error("`{0}` is not a duration (e.g. \"500ms\", \"30s\", \"12h\")")]
    NotADuration(String),
    #[error("`{text}`: unknown unit `{unit}` (use ms, s, m, h or d)")]
    UnknownDurationUnit { text: String, unit: String },
    #[error("`{0}` is not a size (e.g. \"64KiB\", \"1MiB\")")]
    NotASize(String),
    #[error("`{text}`: unknown unit `{unit}` (use B, KiB, MiB or GiB)")]
    UnknownSizeUnit { text: String, unit: String },
    #[error("`{0}` is too large")]
    TooLarge(String),
}

/// Parses `<integer><unit>` with unit one of `ms`, `s`, `m`, `h`, `d`.
/// A bare `0` is accepted as zero; any other bare number is refused so that
/// nobody has to guess whether `30` means seconds or milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let t = text.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let split = t
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| UnitError::NoDurationUnit(text.into()))?;
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| UnitError::NotADuration(text.into()))?;
    let ms = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        _ => {
            return Err(UnitError::UnknownDurationUnit {
                text: text.into(),
                unit: unit.into(),
            })
        }
    };
    ms.map(Duration::from_millis)
        .ok_or_else(|| UnitError::TooLarge(text.into()))
}

/// Parses `<integer><unit>` with unit one of `B`, `KiB`, `MiB`, `GiB`
/// (also `KB`/`MB`/`GB`, read as powers of 1000).
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| UnitError::NotASize(text.into()))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(UnitError::UnknownSizeUnit {
                text: text.into(),
                unit: other.into(),
            })
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| UnitError::TooLarge(text.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("12h").unwrap(), Duration::from_secs(43200));
        assert_eq!(
            parse_duration("14d").unwrap(),
            Duration::from_secs(14 * 86400)
        );
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
    }

    #[test]
    fn durations_without_unit_or_with_unknown_unit_are_refused() {
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("30x").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("99999999999999999d").is_err());
    }

    #[test]
    fn sizes_parse_binary_and_decimal_units() {
        assert_eq!(parse_size("64KiB").unwrap(), 65536);
        assert_eq!(parse_size("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert_eq!(parse_size("2KB").unwrap(), 2000);
        assert!(parse_size("1PiB").is_err());
        assert!(parse_size("lots").is_err());
    }
}
