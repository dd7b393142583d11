//! The proxy's flags (`kage --listen ... --master ...`): read into
//! [`ProxyFlags`], then [`merge`]d over the kage.toml they may name.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Duration;

use super::args::{
    backend_arg, duration_arg, listen_arg, log_format_arg, max_connections_arg, parse_methods, resolve_interval_arg,
    rule_flag, size_arg, value,
};
use super::{Command, LogFormat, ProxyArgs, ShadowMethods, Topic, suggest};
use crate::access::AccessFormat;
use crate::app::config_file::{self, FileConfig};
use crate::app::policy::Route;
use crate::compare;
use crate::proxy::{
    Backend, Config, DEFAULT_MAX_CONNECTIONS, DEFAULT_POOL_IDLE_PER_BACKEND, DEFAULT_SHADOW_METHODS, KeepAlive,
    MAX_CONNECTIONS_LIMIT, Role,
};
use crate::runtime::fds;
use crate::tls::{CertFiles, ServerTls};
use crate::values::resolve;

/// What the proxy's flags said, each `None` (or empty) when not given.
#[derive(Debug, Default)]
pub(super) struct ProxyFlags {
    listen: Option<SocketAddr>,
    master: Option<Backend>,
    shadows: Vec<Backend>,
    control: Option<Backend>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    backend_ca: Vec<PathBuf>,
    file: Option<PathBuf>,
    backend_timeout: Option<Duration>,
    shadow_timeout: Option<Duration>,
    client_timeout: Option<Duration>,
    keepalive_timeout: Option<Duration>,
    client_idle_timeout: Option<Duration>,
    methods: Option<ShadowMethods>,
    sample: Option<f64>,
    max_connections: Option<usize>,
    pool_idle: Option<usize>,
    pool_idle_timeout: Option<Duration>,
    resolve_interval: Option<Duration>,
    keep_alive: Option<KeepAlive>,
    max_inflight: Option<usize>,
    shadow_body_window: Option<usize>,
    capture_cap: Option<usize>,
    forward_client_ip: Option<bool>,
    metrics: Option<SocketAddr>,
    diff_log: Option<PathBuf>,
    diff_log_bodies: Option<bool>,
    access_log: Option<PathBuf>,
    access_log_format: Option<AccessFormat>,
    rules: compare::Rules,
    log_format: Option<LogFormat>,
}

/// Parses the proxy's flags and merges them over the kage.toml they name.
pub(super) fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    let flags = match read(args)? {
        ControlFlow::Continue(flags) => flags,
        ControlFlow::Break(command) => return Ok(command),
    };
    let file = match &flags.file {
        Some(f) => config_file::load(f)?,
        None => FileConfig::default(),
    };
    merge(flags, file).map(Command::Proxy)
}

/// Reads the flags, checking each value; `Break` for `--help` and
/// `--version`.
fn read(args: impl IntoIterator<Item = OsString>) -> Result<ControlFlow<Command, ProxyFlags>, String> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let mut f = ProxyFlags::default();
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Short('h') => return Ok(ControlFlow::Break(Command::Usage(Topic::Proxy))),
            Long("help") => return Ok(ControlFlow::Break(Command::Help(Topic::Proxy))),
            Short('V') | Long("version") => return Ok(ControlFlow::Break(Command::Version)),
            Short('l') | Long("listen") => f.listen = Some(listen_arg(&mut p)?),
            Short('c') | Long("config") => f.file = Some(PathBuf::from(value(&mut p, "--config")?)),
            Short('m') | Long("master") => {
                if f.master.is_some() {
                    return Err("--master is given twice; there is exactly one master".into());
                }
                f.master = Some(backend_arg(
                    &value(&mut p, "--master")?,
                    "--master",
                    "master",
                    Role::Master,
                )?);
            }
            Short('s') | Long("shadow") => {
                let default = format!("shadow{}", f.shadows.len() + 1);
                f.shadows.push(backend_arg(
                    &value(&mut p, "--shadow")?,
                    "--shadow",
                    &default,
                    Role::Shadow,
                )?);
            }
            Long("backend-timeout") => f.backend_timeout = Some(duration_arg(&mut p, "--backend-timeout")?),
            Long("shadow-timeout") => f.shadow_timeout = Some(duration_arg(&mut p, "--shadow-timeout")?),
            Long("client-timeout") => f.client_timeout = Some(duration_arg(&mut p, "--client-timeout")?),
            Long("keepalive-timeout") => f.keepalive_timeout = Some(duration_arg(&mut p, "--keepalive-timeout")?),
            Long("client-idle-timeout") => {
                f.client_idle_timeout = Some(duration_arg(&mut p, "--client-idle-timeout")?);
            }
            Long("shadow-methods") => {
                let v = value(&mut p, "--shadow-methods")?;
                f.methods = Some(parse_methods(&v).map_err(|e| format!("--shadow-methods {v}: {e}"))?);
            }
            Long("sample") => {
                let v = value(&mut p, "--sample")?;
                f.sample = v
                    .parse::<f64>()
                    .map(Some)
                    .ok()
                    .filter(|s| s.is_some_and(|s| (0.0..=100.0).contains(&s)))
                    .ok_or_else(|| format!("--sample {v}: expected a percentage from 0 to 100"))?;
            }
            Long("max-connections") => f.max_connections = Some(max_connections_arg(&mut p)?),
            Long("pool-idle") => {
                let v = value(&mut p, "--pool-idle")?;
                f.pool_idle = Some(
                    v.parse::<usize>()
                        .map_err(|_| format!("--pool-idle {v}: expected a whole number (0 keeps none)"))?,
                );
            }
            Long("shadow-body-window") => f.shadow_body_window = Some(size_arg(&mut p, "--shadow-body-window")?),
            Long("capture-cap") => f.capture_cap = Some(size_arg(&mut p, "--capture-cap")?),
            Long("pool-idle-timeout") => f.pool_idle_timeout = Some(duration_arg(&mut p, "--pool-idle-timeout")?),
            Long("resolve-interval") => f.resolve_interval = Some(resolve_interval_arg(&mut p)?),
            Long("keep-alive") => {
                let v = value(&mut p, "--keep-alive")?;
                f.keep_alive = Some(
                    KeepAlive::parse(&v).ok_or_else(|| format!("--keep-alive {v}: expected master-only or always"))?,
                );
            }
            Long("forward-client-ip") => f.forward_client_ip = Some(true),
            Long("tls-cert") => f.tls_cert = Some(PathBuf::from(value(&mut p, "--tls-cert")?)),
            Long("tls-key") => f.tls_key = Some(PathBuf::from(value(&mut p, "--tls-key")?)),
            Long("backend-ca") => {
                let path = PathBuf::from(value(&mut p, "--backend-ca")?);
                crate::tls::read_certs(&path).map_err(|e| format!("--backend-ca: {e}"))?;
                f.backend_ca.push(path);
            }
            Long("metrics") => {
                let v = value(&mut p, "--metrics")?;
                f.metrics = Some(resolve(&v).map_err(|e| format!("--metrics {v}: {e}"))?);
            }
            Long("diff-log") => f.diff_log = Some(PathBuf::from(value(&mut p, "--diff-log")?)),
            Long(flag @ ("ignore-header" | "ignore-json" | "json-set" | "json-tolerance")) => {
                let flag = format!("--{flag}");
                rule_flag(&mut f.rules, &flag, value(&mut p, &flag)?)?;
            }
            Long("diff-log-bodies") => f.diff_log_bodies = Some(true),
            Long("access-log") => f.access_log = Some(PathBuf::from(value(&mut p, "--access-log")?)),
            Long("access-log-format") => {
                let v = value(&mut p, "--access-log-format")?;
                f.access_log_format = Some(
                    AccessFormat::parse(&v)
                        .ok_or_else(|| format!("--access-log-format {v}: expected combined or json"))?,
                );
            }
            Long("log-format") => f.log_format = Some(log_format_arg(&mut p)?),
            Long("control") => {
                if f.control.is_some() {
                    return Err("--control is given twice; there is at most one control".into());
                }
                f.control = Some(backend_arg(
                    &value(&mut p, "--control")?,
                    "--control",
                    "control",
                    Role::Shadow,
                )?);
            }
            Long("shadow-max-inflight") => {
                let v = value(&mut p, "--shadow-max-inflight")?;
                f.max_inflight =
                    Some(v.parse::<usize>().map_err(|_| {
                        format!("--shadow-max-inflight {v}: expected a whole number (0 shadows nothing)")
                    })?);
            }
            Value(v) => {
                let v = v.to_string_lossy();
                let commands = Topic::NAMED.map(Topic::name);
                return Err(format!(
                    "unexpected argument {v:?}; every option is a flag{}",
                    suggest::did_you_mean(&v, commands, "kage ")
                ));
            }
            other => return Err(suggest::unexpected(other, Topic::Proxy)),
        }
    }
    Ok(ControlFlow::Continue(f))
}

/// The flags over the file: a flag given wins, the file fills the rest,
/// the defaults what neither says. `--shadow`/`--control` replace the
/// file's shadows, `--shadow-methods`/`--sample` its routes.
fn merge(f: ProxyFlags, fc: FileConfig) -> Result<ProxyArgs, String> {
    let in_file = |what: &str| match &f.file {
        Some(file) => format!("{what} (or set it in {})", file.display()),
        None => format!("{what} (or give --config FILE)"),
    };
    let listen = f
        .listen
        .or(fc.listen)
        .ok_or_else(|| in_file("--listen ADDR is required"))?;
    let mut master = match f.master {
        Some(master) => master,
        None => fc.master.ok_or_else(|| in_file("--master HOST:PORT is required"))?,
    };
    if let Some(t) = f.backend_timeout {
        master.timeout = t;
    }
    let mut backends = vec![master];
    let flag_shadows = !f.shadows.is_empty() || f.control.is_some();
    let control_name = if flag_shadows {
        f.control.as_ref().map(|b| b.name.clone())
    } else {
        fc.control
    };
    if flag_shadows {
        backends.extend(f.shadows.into_iter().chain(f.control));
    } else {
        backends.extend(fc.shadows);
    }
    for b in &mut backends[1..] {
        if let Some(t) = f.shadow_timeout.or(f.backend_timeout) {
            b.timeout = t;
        }
    }
    let mut config = Config::new(listen, backends);
    let or = |flag: Option<Duration>, file: Option<Duration>, default: Duration| flag.or(file).unwrap_or(default);
    config.client_timeout = or(f.client_timeout, fc.client_timeout, config.client_timeout);
    config.keepalive_timeout = or(f.keepalive_timeout, fc.keepalive_timeout, config.keepalive_timeout);
    config.client_idle_timeout = or(
        f.client_idle_timeout,
        fc.client_idle_timeout,
        config.client_idle_timeout,
    );
    config.pool_idle_timeout = or(f.pool_idle_timeout, fc.pool_idle_timeout, config.pool_idle_timeout);
    config.resolve_interval = or(f.resolve_interval, fc.resolve_interval, config.resolve_interval);
    config.max_connections = f
        .max_connections
        .or(fc.max_connections)
        .unwrap_or_else(|| proxy_connections(fds::soft_limit(), config.backends.len()));
    config.pool_idle_per_backend = f.pool_idle.or(fc.pool_idle).unwrap_or(config.pool_idle_per_backend);
    config.shadow_body_window = f
        .shadow_body_window
        .or(fc.shadow_body_window)
        .unwrap_or(config.shadow_body_window);
    config.capture_cap = f.capture_cap.or(fc.capture_cap).unwrap_or(config.capture_cap);
    config.keep_alive = f.keep_alive.or(fc.keep_alive).unwrap_or(config.keep_alive);
    config.forward_client_ip = f.forward_client_ip.or(fc.forward_client_ip).unwrap_or(false);
    config.tls = match (f.tls_cert, f.tls_key) {
        (Some(cert), Some(key)) => {
            let pair = CertFiles { cert, key };
            ServerTls::load(std::slice::from_ref(&pair)).map_err(|e| format!("--tls-cert/--tls-key: {e}"))?;
            vec![pair]
        }
        (None, None) => fc.tls,
        (Some(_), None) => return Err("--tls-cert FILE needs --tls-key FILE (the certificate's private key)".into()),
        (None, Some(_)) => return Err("--tls-key FILE needs --tls-cert FILE (the certificate chain)".into()),
    };
    config.backend_ca = if f.backend_ca.is_empty() {
        fc.backend_ca
    } else {
        f.backend_ca
    };
    config.shadow_max_inflight = f
        .max_inflight
        .or(fc.shadow_max_inflight)
        .unwrap_or(config.shadow_max_inflight);
    config.validate().map_err(|e| {
        if flag_shadows {
            format!("{e}; give each --shadow a different NAME=")
        } else {
            in_file(&e)
        }
    })?;
    // --shadow-methods or --sample replace the file's routes with one.
    let routes = if f.methods.is_some() || f.sample.is_some() || fc.routes.is_empty() {
        let methods = match f.methods.unwrap_or_else(|| {
            ShadowMethods::List(
                DEFAULT_SHADOW_METHODS
                    .iter()
                    .filter_map(|m| m.as_token())
                    .map(str::to_string)
                    .collect(),
            )
        }) {
            ShadowMethods::All => None,
            ShadowMethods::List(list) => Some(list),
        };
        vec![Route::all(methods, f.sample.unwrap_or(100.0))]
    } else {
        fc.routes
    };
    let mut rules = fc.rules;
    rules.ignored_headers.extend(f.rules.ignored_headers);
    rules.paths.extend(f.rules.paths);
    Ok(ProxyArgs {
        config,
        routes,
        rules,
        diff_log: f.diff_log.or(fc.diff_log),
        diff_log_bodies: f.diff_log_bodies.or(fc.diff_log_bodies).unwrap_or(false),
        access_log: f.access_log.or(fc.access_log),
        access_log_format: f.access_log_format.or(fc.access_log_format).unwrap_or_default(),
        control: control_name,
        metrics: f.metrics.or(fc.metrics),
        log_format: f.log_format.unwrap_or_default(),
    })
}

/// The default proxy connection cap for `limit` descriptors and `backends`
/// backends: each client connection may hold one connection per backend,
/// and the pools keep [`DEFAULT_POOL_IDLE_PER_BACKEND`] each.
fn proxy_connections(limit: Option<u64>, backends: usize) -> usize {
    let Some(limit) = limit else {
        return DEFAULT_MAX_CONNECTIONS;
    };
    let backends = backends as u64;
    let n = fds::connections_for(limit, 1 + backends, DEFAULT_POOL_IDLE_PER_BACKEND as u64 * backends);
    usize::try_from(n).unwrap_or(usize::MAX).min(MAX_CONNECTIONS_LIMIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_caps_leave_room_for_backends_and_pools() {
        // 1024 descriptors, a master and a shadow: 1024 - 64 - 128, by 3.
        assert_eq!(proxy_connections(Some(1024), 2), 277);
        assert_eq!(proxy_connections(Some(20_000), 1), (20_000 - 64 - 64) / 2);
        assert_eq!(proxy_connections(Some(10), 3), 1, "never zero");
        assert_eq!(proxy_connections(None, 2), DEFAULT_MAX_CONNECTIONS);
        assert_eq!(proxy_connections(Some(u64::MAX), 1), MAX_CONNECTIONS_LIMIT);
    }
}
