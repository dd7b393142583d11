//! `kage check --config FILE`: load a kage.toml or a routes.toml as kage
//! would, without listening; and the warnings about settings that can do
//! nothing, which the proxy and the router also log at start.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::args::value;
use super::{Command, ProxyArgs, Topic, suggest};
use crate::app::config_file;
use crate::proxy::{Backend, Role};
use crate::route::Rules;
use crate::route::config as route_config;

pub(super) fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let mut file = None;
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Short('h') => return Ok(Command::Usage(Topic::Check)),
            Long("help") => return Ok(Command::Help(Topic::Check)),
            Short('c') | Long("config") => file = Some(PathBuf::from(value(&mut p, "--config")?)),
            Value(v) => {
                return Err(format!(
                    "unexpected argument {:?}; give the file as --config FILE",
                    v.to_string_lossy()
                ));
            }
            other => return Err(suggest::unexpected(other, Topic::Check)),
        }
    }
    Ok(Command::Check(file.ok_or(
        "kage check needs --config FILE (a kage.toml or a routes.toml)",
    )?))
}

/// Checks `path`: a routes.toml when it has a `[[rule]]` table, else a
/// kage.toml (so a kage.toml with a syntax error is reported as one).
/// `Ok` holds the one-line verdict and the warnings; `Err` the loader's
/// `FILE:LINE: key: ...` error.
pub fn check(path: &Path) -> Result<(String, Vec<String>), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let file = path.display().to_string();
    let is_routes = toml::from_str::<toml::Table>(&text).is_ok_and(|t| t.contains_key("rule"));
    if is_routes {
        let cfg = route_config::parse(&text, &file)?;
        let listen = cfg
            .listen
            .map_or("no listen (give --listen)".to_string(), |l| format!("listen {l}"));
        let verdict = format!(
            "{file}: ok (routes.toml: {listen}, {} rule(s), {})",
            cfg.rules.rules.len(),
            if cfg.rules.default.is_some() {
                "a default"
            } else {
                "no default"
            }
        );
        return Ok((verdict, route_warnings(&cfg.rules, path)));
    }
    let fc = config_file::parse(&text, &file)?;
    let listen = fc
        .listen
        .map_or("no listen (give --listen)".to_string(), |l| format!("listen {l}"));
    let master = fc.master.as_ref().map_or("no master (give --master)".to_string(), |m| {
        format!("master {} {}", m.name, m.addr)
    });
    let verdict = format!(
        "{file}: ok (kage.toml: {listen}, {master}, {} shadow(s), {} route(s))",
        fc.shadows.len(),
        fc.routes.len()
    );
    // What the proxy itself warns about at start (it is not started here).
    let unverified = fc
        .master
        .iter()
        .chain(&fc.shadows)
        .filter(|b| b.tls.as_ref().is_some_and(|t| t.insecure_skip_verify))
        .map(|b| {
            format!(
                "{file}: {} {:?}: insecure_skip_verify: its TLS certificate is not verified",
                b.role.as_str(),
                b.name
            )
        });
    let mut warnings: Vec<String> = unverified.collect();
    // With listen and master the file runs alone: check it whole, as `kage
    // --config FILE` would (backend names, limits).
    if fc.listen.is_some() && fc.master.is_some() {
        let args = [OsString::from("--config"), path.as_os_str().to_owned()];
        if let Command::Proxy(p) = super::proxy::parse(args)? {
            warnings.extend(proxy_warnings(&p));
            return Ok((verdict, warnings));
        }
    }
    let bodies = fc.diff_log_bodies.unwrap_or(false);
    warnings.extend(backend_warnings(
        fc.master.as_ref(),
        &fc.shadows,
        fc.diff_log.is_some(),
        bodies,
    ));
    Ok((verdict, warnings))
}

/// What in a proxy invocation can do nothing, one sentence each.
pub fn proxy_warnings(args: &ProxyArgs) -> Vec<String> {
    let backends = &args.config.backends;
    let master = backends.iter().find(|b| b.role == Role::Master);
    let shadows: Vec<Backend> = backends.iter().filter(|b| b.role == Role::Shadow).cloned().collect();
    backend_warnings(master, &shadows, args.diff_log.is_some(), args.diff_log_bodies)
}

fn backend_warnings(master: Option<&Backend>, shadows: &[Backend], diff_log: bool, bodies: bool) -> Vec<String> {
    let mut warnings = Vec::new();
    if diff_log && shadows.is_empty() {
        warnings.push(
            "--diff-log (diff_log) is set but there is no shadow: nothing is compared or logged; \
             add --shadow HOST:PORT"
                .to_string(),
        );
    }
    if bodies && !diff_log {
        warnings.push("--diff-log-bodies (diff_log_bodies) does nothing without --diff-log PATH".to_string());
    }
    if let Some(m) = master {
        for s in shadows.iter().filter(|s| s.addr == m.addr) {
            warnings.push(format!(
                "--shadow {} has the master's address {}: the master is compared with itself \
                 and gets every shadowed request twice",
                s.name, s.addr
            ));
        }
    }
    warnings
}

/// What in a routes.toml can do nothing, or surprise, one sentence each.
pub fn route_warnings(rules: &Rules, file: &Path) -> Vec<String> {
    let mut warnings = Vec::new();
    if rules.default.is_none() {
        warnings.push(format!(
            "{}: no [[rule]] has default = true: connections no rule matches are closed",
            file.display()
        ));
    }
    warnings
}
