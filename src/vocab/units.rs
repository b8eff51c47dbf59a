//! Human units in scenario files: durations (`"250ms"`, `"10s"`) and memory
//! sizes (`"64mb"`). They deserialize straight from TOML strings, so a bad
//! value is reported by the TOML parser with its line and column.

use serde::{Deserialize, Deserializer};
use std::fmt;
use std::time::Duration;

/// A duration written as a humantime string such as `"1.5s"` or `"200ms"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_duration(&text)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

/// Parses `"10s"`, `"250ms"`, `"1.5s"`, `"2m"`, `"0s"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let hint = "write a number and a unit, such as 250ms, 10s or 2m";
    if t.is_empty() {
        return Err(format!("empty duration: {hint}"));
    }
    // humantime does not take fractions ("1.5s"), which users write often.
    if let Some((num, unit)) = split_number(t) {
        if num.contains('.') {
            let value: f64 = num
                .parse()
                .map_err(|_| format!("invalid duration `{text}`: {hint}"))?;
            let scale = match unit {
                "us" | "µs" => 1e-6,
                "ms" => 1e-3,
                "s" => 1.0,
                "m" | "min" => 60.0,
                "h" => 3600.0,
                _ => {
                    return Err(format!(
                        "invalid duration `{text}`: unknown unit `{unit}`; {hint}"
                    ))
                }
            };
            if !(value * scale).is_finite() || value < 0.0 {
                return Err(format!("invalid duration `{text}`: {hint}"));
            }
            return Ok(Duration::from_secs_f64(value * scale));
        }
    }
    humantime::parse_duration(t).map_err(|e| format!("invalid duration `{text}` ({e}): {hint}"))
}

fn split_number(t: &str) -> Option<(&str, &str)> {
    let end = t.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    Some((&t[..end], t[end..].trim()))
}

/// A memory size such as `"64mb"`, kept both as bytes and as the text Redis
/// accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_bytes(&text)
            .map(Bytes)
            .map_err(serde::de::Error::custom)
    }
}

/// Parses `"512"`, `"64kb"`, `"64mb"`, `"1gb"` (powers of 1024, as Redis does).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    let end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(end);
    let value: u64 = num
        .parse()
        .map_err(|_| format!("invalid size `{text}`: write a number and a unit, such as 64mb"))?;
    let scale: u64 = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        other => {
            return Err(format!(
                "invalid size `{text}`: unknown unit `{other}` (use b, kb, mb, gb)"
            ))
        }
    };
    value
        .checked_mul(scale)
        .ok_or_else(|| format!("size `{text}` is too large"))
}

/// Formats a duration the way users write them: `850us`, `12.5ms`, `3.2s`.
pub fn fmt_duration(d: Duration) -> String {
    fmt_micros(d.as_secs_f64() * 1e6)
}

/// Formats microseconds as `850us`, `12.5ms` or `3.20s`.
pub fn fmt_micros(us: f64) -> String {
    if !us.is_finite() {
        return "n/a".into();
    }
    if us < 1_000.0 {
        format!("{us:.0}us")
    } else if us < 1_000_000.0 {
        format!("{:.2}ms", us / 1e3)
    } else {
        format!("{:.2}s", us / 1e6)
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&fmt_duration(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_fractions_and_units() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert!(parse_duration("ten seconds").is_err());
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("1.5parsecs").is_err());
    }

    #[test]
    fn sizes_parse_in_powers_of_1024() {
        assert_eq!(parse_bytes("64mb").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("512").unwrap(), 512);
        assert_eq!(parse_bytes("1GB").unwrap(), 1 << 30);
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("5tb").is_err());
    }

    #[test]
    fn micros_format_readably() {
        assert_eq!(fmt_micros(850.0), "850us");
        assert_eq!(fmt_micros(12_500.0), "12.50ms");
        assert_eq!(fmt_micros(3_200_000.0), "3.20s");
    }
}
