//! Value parsers every config reader shares (flags, kage.toml,
//! routes.toml): durations, sizes, addresses, and `file:line` positions.
//! Below every reader, importing none of them.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// `HOST:PORT` to one address (the first the resolver gives). The error
/// says which part is wrong: the port, or the host that does not resolve.
pub fn resolve(v: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = v.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let Some((host, port)) = v.rsplit_once(':') else {
        return Err("expected HOST:PORT, like 127.0.0.1:9000; the port is missing".into());
    };
    if port.parse::<u16>().is_err() {
        return Err(format!(
            "expected HOST:PORT; the port {port:?} is not a number from 0 to 65535"
        ));
    }
    let mut addrs = v.to_socket_addrs().map_err(|e| {
        format!("cannot resolve the host {host:?} ({e}); give an IP address or a host name that resolves")
    })?;
    addrs
        .next()
        .ok_or_else(|| format!("the host name {host:?} resolves to no address"))
}

/// A backend address: `HOST:PORT`, or `http://HOST:PORT` or
/// `https://HOST:PORT` with an optional trailing `/` (as people copy it
/// from a browser). Whether it is HTTPS is [`backend_tls_host`]'s answer.
pub fn resolve_backend(v: &str) -> Result<SocketAddr, String> {
    resolve(backend_authority(v)?.0)
}

/// For an `https://` backend address, its host (the name TLS sends and
/// verifies, without brackets for an IPv6 address); `None` for plain HTTP.
pub fn backend_tls_host(v: &str) -> Option<String> {
    let (authority, https) = backend_authority(v).ok()?;
    if !https {
        return None;
    }
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    Some(host.to_string())
}

/// `HOST:PORT` without the scheme and trailing `/`, and whether the
/// scheme was `https`.
fn backend_authority(v: &str) -> Result<(&str, bool), String> {
    let lower = v.to_ascii_lowercase();
    let (bare, https) = if lower.starts_with("https://") {
        (&v["https://".len()..], true)
    } else if lower.starts_with("http://") {
        (&v["http://".len()..], false)
    } else {
        (v, false)
    };
    let bare = bare.strip_suffix('/').unwrap_or(bare);
    if bare.contains('/') {
        return Err("expected [http:// or https://]HOST:PORT; a backend address has no path".into());
    }
    Ok((bare, https))
}

/// The `HOST:PORT` of a backend address as [`resolve_backend`] takes it
/// (scheme and trailing `/` left out) when HOST is a name, to look up again
/// while running; `None` for an IP literal.
pub fn backend_dns_name(v: &str) -> Option<String> {
    let bare = match v.find("://") {
        Some(i) => &v[i + "://".len()..],
        None => v,
    };
    let bare = bare.strip_suffix('/').unwrap_or(bare);
    (bare.parse::<SocketAddr>().is_err()).then(|| bare.to_string())
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

/// A TOML loader's error as `FILE:LINE: message`; a wrong type as
/// `FILE:LINE: key: expected a whole number, got a string`, the key read
/// from the line the error points at.
pub fn toml_error(text: &str, file: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim();
    let Some(span) = e.span() else {
        return format!("{file}: {message}");
    };
    let line = line_of(text, span.start);
    let Some((got, expected)) = message
        .strip_prefix("invalid type: ")
        .and_then(|m| m.split_once(", expected "))
    else {
        return format!("{file}:{line}: {message}");
    };
    let got = match got.split(' ').next().unwrap_or(got) {
        "string" => "a string",
        "integer" => "a whole number",
        "floating" => "a number with a fraction",
        "boolean" => "a boolean",
        "sequence" => "an array",
        "map" => "a table",
        other => other,
    };
    let expected = match expected.trim() {
        "i64" | "u64" | "i32" | "u32" | "usize" | "an integer" => "a whole number",
        "f64" | "f32" | "a float" => "a number",
        "a boolean" | "bool" => "true or false",
        "a sequence" => "an array",
        e if e.starts_with("struct ") || e.starts_with("a map") => "a table",
        e => e,
    };
    match key_at(text, span.start) {
        Some(key) => format!("{file}:{line}: {key}: expected {expected}, got {got}"),
        None => format!("{file}:{line}: expected {expected}, got {got}"),
    }
}

/// The key of the `key = value` line holding byte `offset`.
fn key_at(text: &str, offset: usize) -> Option<&str> {
    let start = text.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
    let line = text.get(start..)?.lines().next()?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches(|c| c == '"' || c == '\'');
    (!key.is_empty() && !key.starts_with('[')).then_some(key)
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
    fn backend_addresses_take_http_and_https() {
        let addr: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        for v in [
            "127.0.0.1:9000",
            "http://127.0.0.1:9000",
            "HTTP://127.0.0.1:9000/",
            "https://127.0.0.1:9000",
        ] {
            assert_eq!(resolve_backend(v), Ok(addr), "{v}");
        }
        assert_eq!(backend_tls_host("127.0.0.1:9000"), None);
        assert_eq!(backend_tls_host("http://localhost:9000"), None);
        assert_eq!(
            backend_tls_host("HTTPS://localhost:9000/").as_deref(),
            Some("localhost")
        );
        assert_eq!(backend_tls_host("https://[::1]:9000").as_deref(), Some("::1"));
        assert!(
            resolve_backend("http://127.0.0.1:9000/api")
                .unwrap_err()
                .contains("no path")
        );
        assert!(resolve("127.0.0.1").unwrap_err().contains("the port is missing"));
        assert!(
            resolve("127.0.0.1:http")
                .unwrap_err()
                .contains("\"http\" is not a number")
        );
        assert!(
            resolve("nohost.invalid:80")
                .unwrap_err()
                .contains("cannot resolve the host \"nohost.invalid\"")
        );
    }

    #[test]
    fn backend_dns_names_are_names_not_literals() {
        assert_eq!(backend_dns_name("127.0.0.1:9000"), None);
        assert_eq!(backend_dns_name("http://[::1]:9000/"), None);
        assert_eq!(backend_dns_name("localhost:9000"), Some("localhost:9000".into()));
        assert_eq!(
            backend_dns_name("HTTP://api.internal:80/"),
            Some("api.internal:80".into())
        );
    }

    #[test]
    fn toml_type_errors_name_the_key() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        #[serde(deny_unknown_fields)]
        struct T {
            n: Option<i64>,
            b: Option<bool>,
        }
        for (text, want) in [
            ("n = \"4096\"", "f:1: n: expected a whole number, got a string"),
            ("\nb = 1", "f:2: b: expected true or false, got a whole number"),
            ("x = 1", "f:1: unknown field `x`"),
        ] {
            let e = toml::from_str::<T>(text).unwrap_err();
            let got = toml_error(text, "f", &e);
            assert!(got.starts_with(want), "{text:?}: {got}");
        }
    }

    #[test]
    fn lines() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 99), 3);
    }
}
