//! What the subcommands' flag parsers share: values, addresses,
//! durations, backends, comparison rules.

use std::net::SocketAddr;
use std::time::Duration;

use super::{LogFormat, ShadowMethods};
use crate::compare::{self, PathPattern, PathRule};
use crate::proxy::{Backend, BackendTls, Role};
use crate::runtime::resolve::MIN_RESOLVE_INTERVAL;
use crate::values::{backend_dns_name, backend_tls_host, parse_duration, parse_size, resolve, resolve_backend};

/// Adds what one comparison flag says to `rules`.
pub(super) fn rule_flag(rules: &mut compare::Rules, flag: &str, v: String) -> Result<(), String> {
    let path = |s: &str| PathPattern::parse(s).map_err(|e| format!("{flag} {v}: {e}"));
    match flag {
        "--ignore-header" => rules.ignored_headers.push(v.to_ascii_lowercase()),
        "--ignore-json" => rules.paths.push((path(&v)?, PathRule::Ignore)),
        "--json-set" => rules.paths.push((path(&v)?, PathRule::Set)),
        _ => {
            let bad = || format!("{flag} {v}: expected PATH=NUMBER, like /total=0.01");
            let (p, tol) = v.rsplit_once('=').ok_or_else(bad)?;
            let tol: f64 = tol
                .parse()
                .ok()
                .filter(|t: &f64| t.is_finite() && *t >= 0.0)
                .ok_or_else(bad)?;
            rules.paths.push((path(p)?, PathRule::Tolerance(tol)));
        }
    }
    Ok(())
}

pub(super) fn value(p: &mut lexopt::Parser, flag: &str) -> Result<String, String> {
    let v = p.value().map_err(|_| format!("{flag} needs a value"))?;
    v.into_string()
        .map_err(|_| format!("{flag}: the value is not valid UTF-8"))
}

pub(super) fn listen_arg(p: &mut lexopt::Parser) -> Result<SocketAddr, String> {
    let v = value(p, "--listen")?;
    resolve(&v).map_err(|e| format!("--listen {v}: {e}"))
}

pub(super) fn log_format_arg(p: &mut lexopt::Parser) -> Result<LogFormat, String> {
    let v = value(p, "--log-format")?;
    LogFormat::parse(&v).ok_or_else(|| format!("--log-format {v}: expected text or json"))
}

pub(super) fn max_connections_arg(p: &mut lexopt::Parser) -> Result<usize, String> {
    let v = value(p, "--max-connections")?;
    v.parse::<usize>()
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| format!("--max-connections {v}: expected a whole number of at least 1"))
}

/// A byte size of at least 1 (`65536`, `64KiB`, `1MiB`).
pub(super) fn size_arg(p: &mut lexopt::Parser, flag: &str) -> Result<usize, String> {
    let v = value(p, flag)?;
    match parse_size(&v) {
        Ok(0) => Err(format!("{flag} {v}: expected a size of at least 1 byte")),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{flag} {v}: {e}")),
    }
}

pub(super) fn duration_arg(p: &mut lexopt::Parser, flag: &str) -> Result<Duration, String> {
    let v = value(p, flag)?;
    parse_duration(&v).map_err(|e| format!("{flag} {v}: {e}"))
}

/// `[NAME=]ADDRESS` as a backend with `role` (named `default_name`
/// without a NAME), with TLS for an `https://` one.
pub(super) fn backend_arg(v: &str, flag: &str, default_name: &str, role: Role) -> Result<Backend, String> {
    let (name, given) = match v.split_once('=') {
        Some((n, a)) if !n.is_empty() => (n.to_string(), a),
        Some(_) => return Err(format!("{flag} {v}: the name before '=' is empty")),
        None => (default_name.to_string(), v),
    };
    let addr = resolve_backend(given).map_err(|e| format!("{flag} {v}: {e}"))?;
    let mut backend = Backend::new(name, addr, role);
    backend.dns_name = backend_dns_name(given);
    backend.tls = backend_tls_host(given).map(BackendTls::new);
    Ok(backend)
}

pub(super) fn parse_methods(v: &str) -> Result<ShadowMethods, String> {
    if v.eq_ignore_ascii_case("all") {
        return Ok(ShadowMethods::All);
    }
    let list: Vec<String> = v
        .split(',')
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect();
    if list.is_empty() {
        return Err("expected a comma-separated list of methods, or all".into());
    }
    if let Some(bad) = list.iter().find(|m| !crate::http::is_method_token(m.as_bytes())) {
        return Err(format!("{bad:?} is not a method token"));
    }
    Ok(ShadowMethods::List(list))
}

/// `--resolve-interval DUR`: at least [`MIN_RESOLVE_INTERVAL`].
pub(super) fn resolve_interval_arg(p: &mut lexopt::Parser) -> Result<Duration, String> {
    let d = duration_arg(p, "--resolve-interval")?;
    if d < MIN_RESOLVE_INTERVAL {
        return Err(format!(
            "--resolve-interval {d:?}: expected at least {MIN_RESOLVE_INTERVAL:?}"
        ));
    }
    Ok(d)
}
