//! Value parsers every config reader shares (flags, kage.toml,
//! routes.toml): durations, sizes, addresses, and `file:line` positions.
//! Below every reader, importing none of them.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// `HOST:PORT` to one address (the first the resolver gives).
pub fn resolve(v: &str) -> Result<SocketAddr, String> {
    let mut addrs = v.to_socket_addrs().map_err(|e| format!("expected HOST:PORT ({e})"))?;
    addrs
        .next()
        .ok_or_else(|| "the host name resolves to no address".to_string())
}

/// `500ms`, `2s`, `1m`, `1h` (a whole number and a unit).
pub fn parse_duration(v: &str) -> Result<Duration, String> {
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (digits, unit) = v.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| "expected a whole number and a unit, like 500ms, 2s, 1m".to_string())?;
    let ms_per = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "" => return Err("the unit is missing: use ms, s, m or h".into()),
        _ => return Err(format!("unknown unit {unit:?}: use ms, s, m or h")),
    };
    n.checked_mul(ms_per)
        .map(Duration::from_millis)
        .ok_or_else(|| "too large".to_string())
}

/// The units [`parse_size`] knows, for its errors.
const SIZE_UNITS: &str = "B, KiB, MiB, GiB (1024-based) or K, KB, M, MB, G, GB (1000-based)";

/// `16384`, `64KiB`, `16 KiB`, `1MB`: a whole number of bytes, optionally
/// with a unit (case ignored). One rule, as IEC and SI define them: with an
/// `i` 1024-based (KiB, MiB, GiB), without 1000-based (K, KB, M, MB, G, GB),
/// so `16K` is 16000 bytes.
pub fn parse_size(v: &str) -> Result<usize, String> {
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (digits, unit) = v.split_at(split);
    if digits.is_empty() {
        return Err(format!(
            "expected a size like 16384, 64KiB or 1MiB: a whole number, optionally with a unit: {SIZE_UNITS}"
        ));
    }
    let too_large = || format!("too large: at most {} bytes", usize::MAX);
    let n: usize = digits.parse().map_err(|_| too_large())?;
    let unit = unit.trim_start();
    let per: usize = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return Err(format!("unknown unit {unit:?}: use {SIZE_UNITS}")),
    };
    n.checked_mul(per).ok_or_else(too_large)
}

/// 1-based line number of byte `offset`.
pub fn line_of(text: &str, offset: usize) -> usize {
    1 + text.as_bytes().iter().take(offset).filter(|&&b| b == b'\n').count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("5").unwrap_err().contains("unit"));
        assert!(parse_duration("1.5s").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("3d").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16384"), Ok(16384));
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("5B"), Ok(5));
        assert_eq!(parse_size("16KiB"), Ok(16 * 1024));
        assert_eq!(parse_size("16 KiB"), Ok(16 * 1024));
        assert_eq!(parse_size("2MiB"), Ok(2 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("16k"), Ok(16_000));
        assert_eq!(parse_size("16K"), Ok(16_000));
        assert_eq!(parse_size("16KB"), Ok(16_000));
        assert_eq!(parse_size("3M"), Ok(3_000_000));
        assert_eq!(parse_size("3mb"), Ok(3_000_000));
        assert_eq!(parse_size("1G"), Ok(1_000_000_000));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
    }

    #[test]
    fn bad_sizes_say_what_is_expected() {
        for bad in ["", "lots", "-5", "+5", " 5", "KiB"] {
            assert!(parse_size(bad).unwrap_err().contains("expected a size like"), "{bad:?}");
        }
        for bad in ["1.5KiB", "5 XB", "5KiB!", "5TiB"] {
            assert!(parse_size(bad).unwrap_err().contains("unknown unit"), "{bad:?}");
        }
        assert!(parse_size("99999999999999GiB").unwrap_err().contains("too large"));
        assert!(parse_size("99999999999999999999999").unwrap_err().contains("too large"));
    }

    #[test]
    fn lines() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 99), 3);
    }
}
