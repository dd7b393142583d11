//! The `kage` command line.

use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use kage::access::AccessLog;
use kage::app::cli::{self, Command, LogFormat, ProxyArgs, ReplayArgs, RouteArgs};
use kage::app::policy::Policy;
use kage::compare::{Compare, CompareStats, DiffLog, Summary};
use kage::metrics::{Endpoint, Source};
use kage::proxy::{Config, Outcome, Proxy, Stats, TlsReload};
use kage::route::Relay;
use kage::runtime::server::{Server, Service, ShutdownMode, StopHandle};
use log::{info, warn};
use mio::event::Event;
use mio::{Interest, Registry, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

/// The log filter when `RUST_LOG` is unset: kage's own lines at info,
/// other crates' warnings. `RUST_LOG` replaces it entirely.
const DEFAULT_LOG_FILTER: &str = "warn,kage=info";

/// The filter for the one-shot commands (demo, replay, check), whose
/// output is on stdout: only what went wrong.
const QUIET_LOG_FILTER: &str = "warn";

fn main() -> ExitCode {
    // Before parsing: the default connection caps follow the raised limit.
    let fds = kage::runtime::fds::raise_to_hard();
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let topic = cli::topic_of(&args);
    let command = match cli::parse(args) {
        Ok(command) => command,
        Err(message) => {
            eprintln!("kage: {message}");
            eprintln!("Try '{} --help'.", topic.command());
            return ExitCode::from(2);
        }
    };
    match &command {
        Command::Proxy(p) => init_log(DEFAULT_LOG_FILTER, p.log_format),
        Command::Route(r) => init_log(DEFAULT_LOG_FILTER, r.log_format),
        _ => init_log(QUIET_LOG_FILTER, LogFormat::Text),
    }
    match command {
        Command::Help(topic) => {
            print!("{}", topic.page());
            ExitCode::SUCCESS
        }
        Command::Usage(topic) => {
            print!("{}", topic.usage());
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("kage {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Proxy(args) => exit(run(args, fds)),
        Command::Route(args) => exit(route(args, fds)),
        Command::Demo => exit(kage::app::demo::run(&mut io::stdout().lock())),
        Command::Replay(args) => replay(args),
        Command::Check(path) => match cli::check(&path) {
            Ok((verdict, warnings)) => {
                for w in warnings {
                    eprintln!("kage: warning: {w}");
                }
                println!("{verdict}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("kage: {e}");
                ExitCode::from(2)
            }
        },
    }
}

/// env_logger with `default` unless `RUST_LOG` is set; `json`: one object
/// per line (ts, level, target, msg) for log collectors.
fn init_log(default: &str, format: LogFormat) {
    let mut builder = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default));
    if format == LogFormat::Json {
        builder.format(|buf, record| {
            // Written by hand for a stable key order; serde_json escapes.
            let s = |v: String| serde_json::Value::String(v);
            let ts = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
            let line = format!(
                r#"{{"ts":{},"level":{},"target":{},"msg":{}}}"#,
                s(ts),
                s(record.level().as_str().to_string()),
                s(record.target().to_string()),
                s(record.args().to_string())
            );
            writeln!(buf, "{line}")
        });
    }
    builder.init();
}

fn log_limits(fds: Option<u64>, max_connections: usize) {
    match fds {
        Some(n) => info!("descriptor limit {n}; at most {max_connections} client connection(s)"),
        None => info!("at most {max_connections} client connection(s)"),
    }
}

fn exit(result: io::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Once, on stderr: a log line as well would say it twice.
            eprintln!("kage: {e}");
            ExitCode::FAILURE
        }
    }
}

fn replay(args: ReplayArgs) -> ExitCode {
    match kage::app::replay::run(&args.log, args.to, &args.rules) {
        Err(e) => {
            eprintln!("kage: {e}");
            ExitCode::FAILURE
        }
        Ok(found) if found.sent == 0 => {
            eprintln!(
                "kage: {} has no recorded request to replay ({} line(s) without recorded bodies): \
                 record with --diff-log-bodies; nothing was compared",
                args.log.display(),
                found.skipped
            );
            ExitCode::from(2)
        }
        Ok(found) => {
            for line in &found.failures {
                println!("{line}");
            }
            println!(
                "replayed {} request(s) from {} to {}{}\n",
                found.sent,
                args.log.display(),
                args.to,
                if found.skipped > 0 {
                    format!(" ({} line(s) without recorded bodies skipped)", found.skipped)
                } else {
                    String::new()
                }
            );
            print!("{}", found.summary);
            if args.fail_on_mismatch && found.mismatches() > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}

fn route(args: RouteArgs, fds: Option<u64>) -> io::Result<()> {
    let listen = args.settings.listen;
    let mut server = Server::new()?;
    let mut relay = Relay::new(args.settings, args.rules).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot listen on {listen} (--listen or listen in {}): {e}",
                args.config.display()
            ),
        )
    })?;
    let names: Vec<&str> = relay.router().rules.iter().map(|r| r.name.as_str()).collect();
    for w in cli::route_warnings(relay.router(), &args.config) {
        warn!("{w}");
    }
    info!(
        "routing on {}: rules [{}]{}",
        relay.local_addr(),
        names.join(", "),
        if relay.router().default.is_some() {
            " and a default"
        } else {
            ""
        }
    );
    log_limits(fds, relay.settings().max_connections);
    let mut signals = signal_service(&server, Vec::new())?;
    server.run(&mut [&mut signals, &mut relay], 1)?;
    info!("stopped routing on {}", relay.local_addr());
    Ok(())
}

fn signal_service(server: &Server, reopen: Vec<Arc<AtomicBool>>) -> io::Result<SignalService> {
    Ok(SignalService {
        signals: Signals::new([SIGQUIT, SIGTERM, SIGINT, SIGHUP])?,
        token: None,
        stop: server.stop_handle(),
        reopen,
        tls: None,
    })
}

fn run(args: ProxyArgs, fds: Option<u64>) -> io::Result<()> {
    for w in cli::proxy_warnings(&args) {
        warn!("{w}");
    }
    let listen = args.config.listen;
    let policy = Policy::new(args.routes);
    let mut hooks = Compare::new(policy, args.rules);
    if let Some(name) = args.control {
        hooks = hooks.with_control(name);
    }
    let mut reopen = Vec::new();
    if let Some(path) = &args.diff_log {
        let log = DiffLog::open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot open {} (--diff-log): {e}", path.display())))?;
        reopen.push(log.reopen_flag());
        hooks = hooks.with_log(log);
    }
    if let Some(path) = &args.access_log {
        let log = AccessLog::open(path, args.access_log_format)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot open {} (--access-log): {e}", path.display())))?;
        reopen.push(log.reopen_flag());
        hooks = hooks.with_access_log(log);
    }
    if args.diff_log_bodies {
        hooks = hooks.with_bodies();
    }
    let mut server = Server::new()?;
    let mut proxy = Proxy::new(args.config, hooks).map_err(|e| match e.kind() {
        // A configuration error (a certificate file): it says what it is.
        io::ErrorKind::InvalidInput => e,
        _ => io::Error::new(e.kind(), format!("cannot listen on {listen} (--listen): {e}")),
    })?;
    let https = if proxy.config().tls.is_empty() { "" } else { " (HTTPS)" };
    info!(
        "listening on {}{https}: {}",
        proxy.local_addr(),
        describe(proxy.config())
    );
    log_limits(fds, proxy.config().max_connections);
    let mut signals = signal_service(&server, reopen)?;
    signals.tls = proxy.tls_reloader();
    match args.metrics {
        Some(addr) => {
            let sources: Vec<Arc<dyn Source>> = vec![proxy.stats(), proxy.hooks().stats()];
            let mut endpoint = Endpoint::bind(addr, sources)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr} (--metrics): {e}")))?;
            info!("metrics at http://{}/metrics", endpoint.local_addr());
            server.run(&mut [&mut signals, &mut proxy, &mut endpoint], 1)?;
        }
        None => server.run(&mut [&mut signals, &mut proxy], 1)?,
    }
    log_summary(&proxy.hooks().stats(), proxy.hooks().summary());
    info!("stopped: {}", served(&proxy.stats(), proxy.config()));
    Ok(())
}

/// The backends and the keep-alive rule, for the start line:
/// `master prod 127.0.0.1:9000, shadow new new.internal:9001 (10.0.0.7:9001)
/// (keep-alive master-only)`.
fn describe(config: &Config) -> String {
    let names: Vec<String> = config
        .backends
        .iter()
        .map(|b| {
            let scheme = if b.tls.is_some() { "https://" } else { "" };
            match &b.dns_name {
                Some(host) => format!("{} {} {scheme}{host} ({})", b.role.as_str(), b.name, b.addr),
                None => format!("{} {} {scheme}{}", b.role.as_str(), b.name, b.addr),
            }
        })
        .collect();
    format!("{} (keep-alive {})", names.join(", "), config.keep_alive.as_str())
}

/// What each backend answered, for the stop line: `master prod: 12
/// request(s), 12 complete; shadow new: ...`.
fn served(stats: &Stats, config: &Config) -> String {
    let parts: Vec<String> = config
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let counts: Vec<(Outcome, u64)> = Outcome::ALL
                .iter()
                .map(|o| (*o, stats.requests(i, *o)))
                .filter(|(_, n)| *n > 0)
                .collect();
            let total: u64 = counts.iter().map(|(_, n)| n).sum();
            let detail: Vec<String> = counts.iter().map(|(o, n)| format!("{n} {}", o.as_str())).collect();
            let detail = if detail.is_empty() {
                String::new()
            } else {
                format!(" ({})", detail.join(", "))
            };
            format!("{} {}: {total} request(s){detail}", b.role.as_str(), b.name)
        })
        .collect();
    parts.join("; ")
}

/// One paragraph per shadow: its verdicts and the paths that differed most.
fn log_summary(stats: &CompareStats, summary: &Summary) {
    for (shadow, verdicts) in stats.verdicts() {
        let counts: Vec<String> = verdicts.iter().map(|(v, n)| format!("{n} {v}")).collect();
        let mut top: Vec<_> = summary
            .differences
            .iter()
            .filter(|((s, _, _), _)| *s == shadow)
            .collect();
        top.sort_by(|a, b| b.1.cmp(a.1));
        let paths: Vec<String> = top
            .iter()
            .take(5)
            .map(|((_, kind, path), n)| format!("{kind:?} {path} ({n})").to_lowercase())
            .collect();
        info!(
            "summary {shadow}: {}{}",
            counts.join(", "),
            if paths.is_empty() {
                String::new()
            } else {
                format!("; most differences: {}", paths.join(", "))
            }
        );
    }
}

/// QUIT: graceful stop; TERM and INT: fast stop; HUP: reopen the logs and
/// reload the listener's certificates.
struct SignalService {
    signals: Signals,
    token: Option<Token>,
    stop: StopHandle,
    /// Set on HUP: each log reopens its file at its next write.
    reopen: Vec<Arc<AtomicBool>>,
    tls: Option<TlsReload>,
}

impl Service for SignalService {
    fn tokens_needed(&self) -> usize {
        1
    }

    fn register(&mut self, registry: &Registry, tokens: std::ops::Range<usize>) -> io::Result<()> {
        let token = Token(tokens.start);
        registry.register(&mut self.signals, token, Interest::READABLE)?;
        self.token = Some(token);
        Ok(())
    }

    fn handle_event(&mut self, _: &Registry, event: &Event) -> bool {
        if Some(event.token()) != self.token {
            return false;
        }
        for signal in self.signals.pending() {
            if signal == SIGHUP {
                if !self.reopen.is_empty() {
                    info!("signal {signal}: the log files are reopened at their next write");
                } else if self.tls.is_none() {
                    info!("signal {signal}: no log file to reopen, no certificate to reload");
                }
                for flag in &self.reopen {
                    flag.store(true, Ordering::Relaxed);
                }
                if let Some(tls) = &self.tls {
                    kage::proxy::reload(tls);
                }
                continue;
            }
            let mode = if signal == SIGQUIT {
                ShutdownMode::Graceful
            } else {
                ShutdownMode::Fast
            };
            info!("signal {signal}: {mode:?} shutdown");
            self.stop.stop(mode);
        }
        true
    }

    fn next_deadline(&self) -> Option<Instant> {
        None
    }

    fn on_timeout(&mut self, _: &Registry, _: Instant) {}

    fn shutdown(&mut self, _: &Registry, _: ShutdownMode, _: Instant) {}

    fn is_done(&self) -> bool {
        true
    }
}
