//! Timestamps are microseconds since the Unix epoch (UTC) everywhere inside Quiver.

use crate::{Error, Result};

pub const MICROS_PER_SEC: i64 = 1_000_000;
pub const DAY_MICROS: i64 = 86_400 * MICROS_PER_SEC;
/// Wall-clock microseconds since the Unix epoch (0 before it). Never called by a state
/// machine's apply, which takes the time its entry carries.
pub fn now_micros() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(now.as_micros()).unwrap_or(i64::MAX)
}

/// The UTC day (days since the epoch) that `micros` falls in; times before 1970 too.
pub fn day_of(micros: i64) -> i64 {
    micros.div_euclid(DAY_MICROS)
}

/// The whole UTC days covering the time range `[from, to)`, as `[first, end)` day numbers;
/// an open side is unbounded.
pub fn day_range(from: Option<i64>, to: Option<i64>) -> (i64, i64) {
    let first = from.map_or(i64::MIN / 2, day_of);
    let end = to.map_or(i64::MAX / 2, |t| day_of(t.saturating_add(DAY_MICROS - 1)));
    (first, end)
}

/// Day `day` (days since the epoch) as `yyyy-mm-dd`.
pub fn format_day(day: i64) -> String {
    let ts = format_timestamp(day.saturating_mul(DAY_MICROS));
    ts.get(..10).unwrap_or(&ts).to_string()
}

/// Parses an RFC 3339 string (any offset) or an integer count of microseconds.
pub fn parse_timestamp(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(micros) = text.parse::<i64>() {
        return Ok(micros);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_micros())
        .map_err(|e| format!("'{text}' is neither an RFC 3339 time nor integer microseconds ({e})"))
}

/// A time given as RFC 3339, a date (`2026-11-28`, midnight UTC) or integer microseconds.
pub fn parse_time_or_date(text: &str) -> Result<i64, String> {
    match chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d") {
        Ok(date) => Ok(date.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp_micros()).unwrap_or_default()),
        Err(_) => parse_timestamp(text),
    }
}

/// `FROM..TO` with times as in `parse_time_or_date`; either side may be left out.
pub fn parse_range(text: &str) -> Result<(Option<i64>, Option<i64>), String> {
    let (from, to) = text
        .split_once("..")
        .ok_or_else(|| format!("'{text}': expected FROM..TO (dates, RFC 3339 times or µs; a side may be empty)"))?;
    let side = |t: &str| if t.trim().is_empty() { Ok(None) } else { parse_time_or_date(t).map(Some) };
    Ok((side(from)?, side(to)?))
}

/// Formats microseconds since the epoch as RFC 3339 UTC, e.g. `2026-11-28T10:00:00Z`.
pub fn format_timestamp(micros: i64) -> String {
    match chrono::DateTime::from_timestamp_micros(micros) {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        None => format!("{micros}us"),
    }
}

/// Parses a TTL such as `7d`, `12h`, `90m`, `1d 12h` or `0` (never expires) into seconds.
pub fn parse_ttl(text: &str) -> Result<u64> {
    let text = text.trim();
    if text == "0" || text.is_empty() {
        return Ok(0);
    }
    humantime::parse_duration(text)
        .map(|d| d.as_secs())
        .map_err(|e| Error::InvalidDefinition(format!("ttl '{text}': {e}")))
}

/// Formats a TTL in seconds the way `parse_ttl` reads it back.
pub fn format_ttl(secs: u64) -> String {
    if secs == 0 {
        return "none".into();
    }
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_ranges_cover_the_range_and_open_sides_are_unbounded() {
        assert_eq!(day_range(Some(DAY_MICROS + 1), Some(3 * DAY_MICROS + 1)), (1, 4));
        assert_eq!(day_range(Some(DAY_MICROS), Some(3 * DAY_MICROS)), (1, 3));
        assert_eq!(day_range(Some(-1), Some(0)), (-1, 0));
        let open = day_range(None, None);
        assert!(open.0 < -1_000_000 && open.1 > 1_000_000);
    }

    #[test]
    fn timestamps_parse_from_rfc3339_with_offsets_and_from_micros() {
        let utc = parse_timestamp("2026-01-01T00:00:00Z").unwrap();
        assert_eq!(parse_timestamp("2026-01-01T01:00:00+01:00").unwrap(), utc);
        assert_eq!(parse_timestamp(&utc.to_string()).unwrap(), utc);
        assert_eq!(parse_timestamp(&format_timestamp(utc)).unwrap(), utc);
        assert!(parse_timestamp("yesterday").unwrap_err().contains("yesterday"));
    }

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("7d").unwrap(), 7 * 86_400);
        assert_eq!(parse_ttl("1d 12h").unwrap(), 36 * 3_600);
        assert_eq!(parse_ttl("0").unwrap(), 0);
        assert!(parse_ttl("seven days").is_err());
    }
}
