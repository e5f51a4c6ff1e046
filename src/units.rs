//! Durations and sizes as administrators write them and read them: `30m`, `7d`, `1.5 GiB`.

use std::time::Duration;

/// Parse a duration as administrators write it (`30m`, `1h`, `7d`); `0` means none.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 30m, 1h, 7d, 0)"))?;
    // Every duration is added to or taken from a clock; past a century that overflows and
    // means nothing anyway.
    if d > MAX_DURATION {
        return Err(format!("{s} is longer than 100 years"));
    }
    Ok(d)
}

/// The longest duration any flag takes.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Parse an age that may be switched off: `off` (or `never`) is `None`, anything else as
/// [`parse_duration`].
pub fn parse_age_or_off(s: &str) -> std::result::Result<Option<Duration>, String> {
    match s.trim() {
        "off" | "never" => Ok(None),
        other => parse_duration(other).map(Some),
    }
}

/// Sizes in binary units, as `du -h` and registries' UIs show them.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A `--min-age` for a summary: `0` is said to switch the check off.
pub fn age(seconds: u64) -> String {
    if seconds == 0 {
        "0 (disabled)".to_string()
    } else {
        humantime::format_duration(std::time::Duration::from_secs(seconds)).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 << 30), "5.0 GiB");
    }

    #[test]
    fn durations_past_a_century_are_refused_not_overflowed() {
        assert!(parse_duration("100000y").unwrap_err().contains("100 years"));
        assert!(parse_duration("99y").is_ok());
    }
}
