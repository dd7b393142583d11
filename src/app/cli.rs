//! The `kage` command line: flags to a [`Config`] and a shadow policy, or
//! `kage route` with its `routes.toml`.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::app::config_file::{self, FileConfig};
use crate::app::policy::Route;
use crate::compare::{self, PathPattern, PathRule};
use crate::proxy::{
    Backend, Config, DEFAULT_MAX_CONNECTIONS, DEFAULT_POOL_IDLE_PER_BACKEND, DEFAULT_SHADOW_METHODS, KeepAlive,
    MAX_CONNECTIONS_LIMIT, Role,
};
use crate::route::{Rules, Settings, config as route_config};
use crate::runtime::fds;
use crate::values::{parse_duration, resolve};

/// The help text.
pub const HELP: &str = "\
kage: an HTTP/1 shadow proxy and content-aware TCP router

Every request goes to the master, whose response goes back to the client.
Selected requests are also sent to the shadows; their responses are compared
with the master's (status, headers, body; JSON structurally), never sent to
the client. --diff-log writes one JSON line per shadowed exchange.
By default (Kage's rule) a request sent to shadows is answered with
Connection: close; with --keep-alive always the client connection stays open,
backend connections are pooled and shadows finish in the background.

`kage route` is a TCP router: it reads the first bytes of each connection,
picks a backend by the rules of a routes.toml (prefix, regex, HTTP Host,
TLS SNI, default), replays those bytes and splices both ways.

USAGE:
    kage [--config FILE] --listen ADDR --master [NAME=]HOST:PORT [--shadow [NAME=]HOST:PORT]...
         [--backend-timeout DUR] [--shadow-timeout DUR] [--client-timeout DUR]
         [--keepalive-timeout DUR] [--client-idle-timeout DUR]
         [--shadow-methods LIST|all] [--sample PERCENT] [--max-connections N]
         [--pool-idle N] [--pool-idle-timeout DUR]
         [--keep-alive master-only|always] [--shadow-max-inflight N]
         [--forward-client-ip] [--metrics ADDR] [--diff-log PATH|-] [--diff-log-bodies]
         [--control [NAME=]HOST:PORT]
         [--ignore-header NAME]...
         [--ignore-json PATH]... [--json-set PATH]... [--json-tolerance PATH=NUM]...
    kage route --config FILE [--listen ADDR] [--max-connections N]
    kage replay --log FILE --to HOST:PORT [--fail-on-mismatch] [--ignore-json PATH]...
                                  Send the requests a diff log recorded (with
                                  --diff-log-bodies) to a backend, compare its
                                  answers with the recorded master's, print a
                                  summary; exit 1 on a mismatch when asked
    kage demo                     Two sample backends, the proxy comparing them,
                                  40 requests and a summary; exits 0

OPTIONS:
    -c, --config FILE             A kage.toml (below): everything the flags say, plus
                                  per-backend rewrites and limits, routes with
                                  sampling, comparison rules; flags override it
                                  (--shadow/--control replace its shadows,
                                  --shadow-methods/--sample its routes)
    -l, --listen ADDR             Address to listen on, e.g. 127.0.0.1:8080
    -m, --master [NAME=]HOST:PORT The production backend (name: master)
    -s, --shadow [NAME=]HOST:PORT A shadow backend; repeat for more
                                  (names: shadow1, shadow2, ...)
        --backend-timeout DUR     Connect, first byte and idle limit for the
                                  master [default: 10s]
        --shadow-timeout DUR      The same for shadows [default: the backend timeout]
        --client-timeout DUR      Time for a client to send a whole request head,
                                  from its first byte (from accept for the first
                                  request), however it drips; then 408 [default: 10s]
        --keepalive-timeout DUR   Idle time between two requests on a kept-alive
                                  client connection; then closed [default: 75s]
        --client-idle-timeout DUR Time without progress while a client sends a
                                  request body or reads its response (or a tunnel
                                  is silent); then cut [default: 60s]
        --shadow-methods LIST|all Methods sent to shadows, comma-separated
                                  [default: GET,HEAD,OPTIONS]
        --sample PERCENT          Share of eligible requests shadowed, 0-100,
                                  picked uniformly [default: 100]
        --max-connections N       Client connections at once [default: from the
                                  descriptor limit, raised to its hard limit at
                                  start, less room for backend sockets]
        --pool-idle N             Idle keep-alive connections kept per backend
                                  for later clients; 0 keeps none [default: 64]
        --pool-idle-timeout DUR   How long a pooled connection may idle [default: 30s]
        --keep-alive MODE         master-only: a shadowed request closes the client
                                  connection (Kage's rule); always: every request
                                  may keep it [default: master-only]
        --shadow-max-inflight N   Most requests in flight to each shadow; past it
                                  shadow requests are dropped, counted [default: 64]
        --forward-client-ip       Append the client's address to X-Forwarded-For and
                                  add an RFC 7239 Forwarded element for every backend
        --metrics ADDR            Serve Prometheus metrics at GET /metrics on ADDR:
                                  kage_requests_total, kage_response_seconds,
                                  kage_comparisons_total, kage_differences_total,
                                  kage_shadow_dropped_total, kage_connections_open
        --diff-log-bodies         Also record the request and the master's response
                                  (base64, up to the capture cap) for kage replay
        --diff-log PATH|-         Append one JSON line per shadowed exchange (ts, id,
                                  method, target, backends, differences); - is
                                  stdout; SIGHUP reopens PATH (log rotation)
        --control [NAME=]HOST:PORT
                                  A second instance of the master's code, fed like a
                                  shadow: differences it shares with a shadow are
                                  noise, not mismatches (name: control)
        --ignore-header NAME      Also ignore this response header; always ignored:
                                  Date, Age, Expires, Server, Set-Cookie, Via,
                                  X-Request-Id and the framing fields
        --ignore-json PATH        Ignore JSON differences at PATH and under it, a
                                  JSON Pointer where * is any key or index
                                  (e.g. /items/*/updated_at)
        --json-set PATH           Compare the JSON array at PATH as a set
        --json-tolerance PATH=NUM Numbers at PATH are equal within NUM
    -h, --help                    Print this help and exit
    -V, --version                 Print the version and exit

ROUTE OPTIONS:
    -c, --config FILE             The rules and timeouts (routes.toml, below)
    -l, --listen ADDR             Address to listen on [default: listen in FILE]
        --max-connections N       Client connections at once [default: from the
                                  descriptor limit, raised to its hard limit at
                                  start, less room for backend sockets]

DUR is a number with a unit: 500ms, 2s, 1m, 1h.

ROUTES.TOML:
    listen = \"127.0.0.1:7000\"        # --listen overrides
    connect_timeout = \"2s\"           # per address, then the next one
    inactivity_timeout = \"5m\"        # no byte either way: close
    peek_timeout = \"1s\"              # no decision: the default rule
    max_peek = 16384                 # bytes without a decision: the default rule

    [[rule]]                         # tried in order; the first match wins
    name = \"git\"
    regex = '^[0-9a-f]{4}git-upload-pack /'   # anchored at the first byte
    to = [\"10.0.0.5:9418\", \"10.0.0.6:9418\"]   # failover order

    [[rule]]
    name = \"web\"
    http_host = \"app.example\"        # Host of an HTTP/1 request head
    to = [\"127.0.0.1:8080\"]

    [[rule]]
    name = \"tls\"
    tls_sni = \"*.example\"            # server_name of a TLS ClientHello
    to = [\"127.0.0.1:8443\"]

    [[rule]]
    name = \"ping\"
    prefix = \"PING\"                  # literal bytes at the start
    reply = \"PONG\\r\\n\"               # send this and close

    [[rule]]
    name = \"fallback\"
    default = true                   # no rule matched, or the peek gave up
    to = [\"127.0.0.1:9000\"]

SIGNALS:
    QUIT        Graceful: stop accepting, finish in-flight exchanges, exit 0
    TERM, INT   Fast: stop accepting, close what is left within 10 s, exit 0
    HUP         Reopen the --diff-log file (log rotation)

ENVIRONMENT:
    RUST_LOG    Log filter (env_logger syntax), e.g. RUST_LOG=kage=debug;
                default: warnings and errors, plus one line per failed
                shadow exchange at info level when enabled
";

/// The whole help: [`HELP`], then the `kage.toml` schema.
pub fn help() -> String {
    let mut text = String::from(HELP);
    text.push_str("\nKAGE.TOML (--config FILE):\n");
    for line in config_file::EXAMPLE.lines() {
        text.push_str("    ");
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Print the help.
    Help,
    /// Print the version.
    Version,
    /// Run the proxy.
    Proxy(ProxyArgs),
    /// Run the router.
    Route(RouteArgs),
    /// Run the demo.
    Demo,
    /// Replay a diff log to a backend.
    Replay(ReplayArgs),
}

/// A checked `kage replay` invocation.
#[derive(Debug)]
pub struct ReplayArgs {
    /// The diff log, written with `--diff-log-bodies`.
    pub log: PathBuf,
    /// The backend the requests go to.
    pub to: SocketAddr,
    /// Exit 1 when any answer differs.
    pub fail_on_mismatch: bool,
    /// What the comparison ignores and treats leniently.
    pub rules: compare::Rules,
}

/// A checked `kage route` invocation, its file loaded.
#[derive(Debug)]
pub struct RouteArgs {
    /// Listen address, limits and timeouts.
    pub settings: Settings,
    /// The rules.
    pub rules: Rules,
    /// The configuration file.
    pub config: PathBuf,
}

/// Which methods shadows get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShadowMethods {
    /// Every method.
    All,
    /// These method tokens (case-sensitive, as on the wire).
    List(Vec<String>),
}

impl ShadowMethods {
    /// Whether a request with this method token goes to shadows.
    pub fn allows(&self, method: &[u8]) -> bool {
        match self {
            ShadowMethods::All => true,
            ShadowMethods::List(list) => list.iter().any(|m| m.as_bytes() == method),
        }
    }
}

/// A checked proxy invocation.
#[derive(Debug)]
pub struct ProxyArgs {
    /// The proxy configuration.
    pub config: Config,
    /// Which requests go to which shadows.
    pub routes: Vec<Route>,
    /// What the comparison ignores and treats leniently.
    pub rules: compare::Rules,
    /// Where the diff log goes (`-`: stdout).
    pub diff_log: Option<PathBuf>,
    /// Record request and master response bodies in the diff log.
    pub diff_log_bodies: bool,
    /// The control backend's name, when there is one.
    pub control: Option<String>,
    /// Where `GET /metrics` is served.
    pub metrics: Option<SocketAddr>,
}

/// Parses the arguments (without the program name). The error names the
/// flag and says what was expected.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    let mut args = args.into_iter().peekable();
    if args.peek().is_some_and(|a| a == "demo") {
        args.next();
        return match args.next() {
            None => Ok(Command::Demo),
            Some(a) if a == "-h" || a == "--help" => Ok(Command::Help),
            Some(a) => Err(format!("kage demo takes no arguments, got {:?}", a.to_string_lossy())),
        };
    }
    if args.peek().is_some_and(|a| a == "replay") {
        args.next();
        return parse_replay(args);
    }
    if args.peek().is_some_and(|a| a == "route") {
        args.next();
        return parse_route(args);
    }
    parse_proxy(args)
}

fn parse_route(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let mut listen = None;
    let mut file = None;
    let mut max_connections = None;
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Short('V') | Long("version") => return Ok(Command::Version),
            Short('l') | Long("listen") => listen = Some(listen_arg(&mut p)?),
            Short('c') | Long("config") => file = Some(PathBuf::from(value(&mut p, "--config")?)),
            Long("max-connections") => max_connections = Some(max_connections_arg(&mut p)?),
            Value(v) => {
                return Err(format!(
                    "unexpected argument {:?}; kage route takes only flags",
                    v.to_string_lossy()
                ));
            }
            other => return Err(format!("{} (kage route)", other.unexpected())),
        }
    }
    let file = file.ok_or("kage route needs --config FILE (a routes.toml)")?;
    let loaded = route_config::load(&file)?;
    let listen = listen.or(loaded.listen).ok_or_else(|| {
        format!(
            "{}: no listen address: set listen = \"HOST:PORT\" there or give --listen ADDR",
            file.display()
        )
    })?;
    let mut settings = loaded.settings(listen);
    settings.max_connections = max_connections.unwrap_or_else(|| router_connections(fds::soft_limit()));
    settings.validate().map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(Command::Route(RouteArgs {
        settings,
        rules: loaded.rules,
        config: file,
    }))
}

fn parse_proxy(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let mut listen = None;
    let mut master = None;
    let mut shadows = Vec::new();
    let mut file = None;
    let mut backend_timeout = None;
    let mut shadow_timeout = None;
    let mut client_timeout = None;
    let mut keepalive_timeout = None;
    let mut client_idle_timeout = None;
    let mut methods = None;
    let mut sample = None;
    let mut max_connections = None;
    let mut pool_idle = None;
    let mut pool_idle_timeout = None;
    let mut keep_alive = None;
    let mut rules = compare::Rules {
        ignored_headers: Vec::new(),
        paths: Vec::new(),
    };
    let mut diff_log = None;
    let mut control = None;
    let mut forward_client_ip = None;
    let mut diff_log_bodies = None;
    let mut metrics = None;
    let mut max_inflight = None;
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Short('V') | Long("version") => return Ok(Command::Version),
            Short('l') | Long("listen") => listen = Some(listen_arg(&mut p)?),
            Short('c') | Long("config") => file = Some(PathBuf::from(value(&mut p, "--config")?)),
            Short('m') | Long("master") => {
                if master.is_some() {
                    return Err("--master is given twice; there is exactly one master".into());
                }
                master = Some(backend_arg(&value(&mut p, "--master")?, "--master", "master")?);
            }
            Short('s') | Long("shadow") => {
                let default = format!("shadow{}", shadows.len() + 1);
                shadows.push(backend_arg(&value(&mut p, "--shadow")?, "--shadow", &default)?);
            }
            Long("backend-timeout") => backend_timeout = Some(duration_arg(&mut p, "--backend-timeout")?),
            Long("shadow-timeout") => shadow_timeout = Some(duration_arg(&mut p, "--shadow-timeout")?),
            Long("client-timeout") => client_timeout = Some(duration_arg(&mut p, "--client-timeout")?),
            Long("keepalive-timeout") => keepalive_timeout = Some(duration_arg(&mut p, "--keepalive-timeout")?),
            Long("client-idle-timeout") => {
                client_idle_timeout = Some(duration_arg(&mut p, "--client-idle-timeout")?);
            }
            Long("shadow-methods") => {
                let v = value(&mut p, "--shadow-methods")?;
                methods = Some(parse_methods(&v).map_err(|e| format!("--shadow-methods {v}: {e}"))?);
            }
            Long("sample") => {
                let v = value(&mut p, "--sample")?;
                sample = v
                    .parse::<f64>()
                    .map(Some)
                    .ok()
                    .filter(|s| s.is_some_and(|s| (0.0..=100.0).contains(&s)))
                    .ok_or_else(|| format!("--sample {v}: expected a percentage from 0 to 100"))?;
            }
            Long("max-connections") => max_connections = Some(max_connections_arg(&mut p)?),
            Long("pool-idle") => {
                let v = value(&mut p, "--pool-idle")?;
                pool_idle = Some(
                    v.parse::<usize>()
                        .map_err(|_| format!("--pool-idle {v}: expected a whole number (0 keeps none)"))?,
                );
            }
            Long("pool-idle-timeout") => pool_idle_timeout = Some(duration_arg(&mut p, "--pool-idle-timeout")?),
            Long("keep-alive") => {
                let v = value(&mut p, "--keep-alive")?;
                keep_alive = Some(
                    KeepAlive::parse(&v).ok_or_else(|| format!("--keep-alive {v}: expected master-only or always"))?,
                );
            }
            Long("forward-client-ip") => forward_client_ip = Some(true),
            Long("metrics") => {
                let v = value(&mut p, "--metrics")?;
                metrics = Some(resolve(&v).map_err(|e| format!("--metrics {v}: {e}"))?);
            }
            Long("diff-log") => diff_log = Some(PathBuf::from(value(&mut p, "--diff-log")?)),
            Long(flag @ ("ignore-header" | "ignore-json" | "json-set" | "json-tolerance")) => {
                let flag = format!("--{flag}");
                rule_flag(&mut rules, &flag, value(&mut p, &flag)?)?;
            }
            Long("diff-log-bodies") => diff_log_bodies = Some(true),
            Long("control") => {
                if control.is_some() {
                    return Err("--control is given twice; there is at most one control".into());
                }
                control = Some(backend_arg(&value(&mut p, "--control")?, "--control", "control")?);
            }
            Long("shadow-max-inflight") => {
                let v = value(&mut p, "--shadow-max-inflight")?;
                max_inflight =
                    Some(v.parse::<usize>().map_err(|_| {
                        format!("--shadow-max-inflight {v}: expected a whole number (0 shadows nothing)")
                    })?);
            }
            Value(v) => {
                return Err(format!(
                    "unexpected argument {:?}; every option is a flag",
                    v.to_string_lossy()
                ));
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    // The file first, then what the flags say over it.
    let fc = match &file {
        Some(f) => config_file::load(f)?,
        None => FileConfig::default(),
    };
    let in_file = |what: &str| match &file {
        Some(f) => format!("{what} (or set it in {})", f.display()),
        None => format!("{what} (or give --config FILE)"),
    };
    let listen = listen
        .or(fc.listen)
        .ok_or_else(|| in_file("--listen ADDR is required"))?;
    let mut master = match master {
        Some((name, addr)) => Backend::new(name, addr, Role::Master),
        None => fc.master.ok_or_else(|| in_file("--master HOST:PORT is required"))?,
    };
    if let Some(t) = backend_timeout {
        master.timeout = t;
    }
    let mut backends = vec![master];
    let (flag_shadows, control_name) = if shadows.is_empty() && control.is_none() {
        (false, fc.control)
    } else {
        (true, control.as_ref().map(|(name, _)| name.clone()))
    };
    if flag_shadows {
        for (name, addr) in shadows.into_iter().chain(control) {
            backends.push(Backend::new(name, addr, Role::Shadow));
        }
    } else {
        backends.extend(fc.shadows);
    }
    for b in &mut backends[1..] {
        if let Some(t) = shadow_timeout.or(backend_timeout) {
            b.timeout = t;
        }
    }
    let mut config = Config::new(listen, backends);
    if let Some(t) = client_timeout.or(fc.client_timeout) {
        config.client_timeout = t;
    }
    if let Some(t) = keepalive_timeout.or(fc.keepalive_timeout) {
        config.keepalive_timeout = t;
    }
    if let Some(t) = client_idle_timeout.or(fc.client_idle_timeout) {
        config.client_idle_timeout = t;
    }
    config.max_connections = max_connections
        .or(fc.max_connections)
        .unwrap_or_else(|| proxy_connections(fds::soft_limit(), config.backends.len()));
    if let Some(n) = pool_idle.or(fc.pool_idle) {
        config.pool_idle_per_backend = n;
    }
    if let Some(t) = pool_idle_timeout.or(fc.pool_idle_timeout) {
        config.pool_idle_timeout = t;
    }
    if let Some(k) = keep_alive.or(fc.keep_alive) {
        config.keep_alive = k;
    }
    config.forward_client_ip = forward_client_ip.or(fc.forward_client_ip).unwrap_or(false);
    if let Some(n) = max_inflight.or(fc.shadow_max_inflight) {
        config.shadow_max_inflight = n;
    }
    config.validate().map_err(|e| {
        if flag_shadows {
            format!("{e}; give each --shadow a different NAME=")
        } else {
            in_file(&e)
        }
    })?;
    // --shadow-methods or --sample replace the file's routes with one.
    let routes = if methods.is_some() || sample.is_some() || fc.routes.is_empty() {
        let methods = match methods.unwrap_or_else(|| {
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
        vec![Route::all(methods, sample.unwrap_or(100.0))]
    } else {
        fc.routes
    };
    let mut all_rules = fc.rules;
    all_rules.ignored_headers.extend(rules.ignored_headers);
    all_rules.paths.extend(rules.paths);
    Ok(Command::Proxy(ProxyArgs {
        config,
        routes,
        rules: all_rules,
        diff_log: diff_log.or(fc.diff_log),
        diff_log_bodies: diff_log_bodies.or(fc.diff_log_bodies).unwrap_or(false),
        control: control_name,
        metrics: metrics.or(fc.metrics),
    }))
}

fn parse_replay(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let (mut log, mut to, mut fail_on_mismatch) = (None, None, false);
    let mut rules = compare::Rules::default();
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Long("log") => log = Some(PathBuf::from(value(&mut p, "--log")?)),
            Long("to") => {
                let v = value(&mut p, "--to")?;
                to = Some(resolve(&v).map_err(|e| format!("--to {v}: {e}"))?);
            }
            Long("fail-on-mismatch") => fail_on_mismatch = true,
            Long(flag @ ("ignore-header" | "ignore-json" | "json-set" | "json-tolerance")) => {
                let flag = format!("--{flag}");
                rule_flag(&mut rules, &flag, value(&mut p, &flag)?)?;
            }
            Value(v) => {
                return Err(format!(
                    "unexpected argument {:?}; kage replay takes only flags",
                    v.to_string_lossy()
                ));
            }
            other => return Err(format!("{} (kage replay)", other.unexpected())),
        }
    }
    Ok(Command::Replay(ReplayArgs {
        log: log.ok_or("kage replay needs --log FILE (a diff log written with --diff-log-bodies)")?,
        to: to.ok_or("kage replay needs --to HOST:PORT")?,
        fail_on_mismatch,
        rules,
    }))
}

/// Adds what one comparison flag says to `rules`.
fn rule_flag(rules: &mut compare::Rules, flag: &str, v: String) -> Result<(), String> {
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

fn value(p: &mut lexopt::Parser, flag: &str) -> Result<String, String> {
    let v = p.value().map_err(|_| format!("{flag} needs a value"))?;
    v.into_string()
        .map_err(|_| format!("{flag}: the value is not valid UTF-8"))
}

fn listen_arg(p: &mut lexopt::Parser) -> Result<SocketAddr, String> {
    let v = value(p, "--listen")?;
    resolve(&v).map_err(|e| format!("--listen {v}: {e}"))
}

fn max_connections_arg(p: &mut lexopt::Parser) -> Result<usize, String> {
    let v = value(p, "--max-connections")?;
    v.parse::<usize>()
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| format!("--max-connections {v}: expected a whole number of at least 1"))
}

fn duration_arg(p: &mut lexopt::Parser, flag: &str) -> Result<Duration, String> {
    let v = value(p, flag)?;
    parse_duration(&v).map_err(|e| format!("{flag} {v}: {e}"))
}

fn backend_arg(v: &str, flag: &str, default_name: &str) -> Result<(String, SocketAddr), String> {
    let (name, addr) = match v.split_once('=') {
        Some((n, a)) if !n.is_empty() => (n.to_string(), a),
        Some(_) => return Err(format!("{flag} {v}: the name before '=' is empty")),
        None => (default_name.to_string(), v),
    };
    let addr = resolve(addr).map_err(|e| format!("{flag} {v}: {e}"))?;
    Ok((name, addr))
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

/// The default router connection cap for `limit` descriptors: a client and
/// a backend socket each, with a quarter of the limit left to splice pipes.
fn router_connections(limit: Option<u64>) -> usize {
    let Some(limit) = limit else {
        return DEFAULT_MAX_CONNECTIONS;
    };
    let n = fds::connections_for(limit, 2, limit / 4);
    usize::try_from(n).unwrap_or(usize::MAX).min(MAX_CONNECTIONS_LIMIT)
}

fn parse_methods(v: &str) -> Result<ShadowMethods, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<OsString> {
        line.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn default_caps_leave_room_for_backends_and_pools() {
        // 1024 descriptors, a master and a shadow: 1024 - 64 - 128, by 3.
        assert_eq!(proxy_connections(Some(1024), 2), 277);
        assert_eq!(proxy_connections(Some(20_000), 1), (20_000 - 64 - 64) / 2);
        assert_eq!(proxy_connections(Some(10), 3), 1, "never zero");
        assert_eq!(proxy_connections(None, 2), DEFAULT_MAX_CONNECTIONS);
        assert_eq!(proxy_connections(Some(u64::MAX), 1), MAX_CONNECTIONS_LIMIT);
        assert_eq!(router_connections(Some(1024)), (1024 - 64 - 256) / 2);
    }

    #[test]
    fn full_command_line() {
        let cmd = parse(args(
            "--listen 127.0.0.1:0 --master prod=127.0.0.1:1 --shadow 127.0.0.1:2 --shadow new=127.0.0.1:3 \
             --backend-timeout 2s --shadow-timeout 500ms --client-timeout 1m --shadow-methods GET,POST \
             --sample 12.5 --max-connections 10 --pool-idle 3 --pool-idle-timeout 2s \
             --keep-alive always --shadow-max-inflight 7 --forward-client-ip --metrics 127.0.0.1:9 --diff-log - --control base=127.0.0.1:4 \
             --ignore-header X-Trace --ignore-json /items/*/at --json-set /tags --json-tolerance /total=0.5",
        ))
        .unwrap();
        let Command::Proxy(p) = cmd else {
            panic!("not a proxy command")
        };
        let names: Vec<_> = p.config.backends.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["prod", "shadow1", "new", "base"]);
        assert_eq!(p.config.backends[0].timeout, Duration::from_secs(2));
        assert_eq!(p.config.backends[1].timeout, Duration::from_millis(500));
        assert_eq!(p.config.client_timeout, Duration::from_secs(60));
        assert_eq!(p.config.max_connections, 10);
        assert_eq!(p.config.pool_idle_per_backend, 3);
        assert_eq!(p.config.pool_idle_timeout, Duration::from_secs(2));
        assert_eq!(p.config.keep_alive, KeepAlive::Always);
        assert_eq!(p.config.shadow_max_inflight, 7);
        assert!(p.config.forward_client_ip);
        assert_eq!(p.metrics, Some("127.0.0.1:9".parse().unwrap()));
        assert_eq!(p.diff_log.as_deref(), Some(std::path::Path::new("-")));
        assert_eq!(p.control.as_deref(), Some("base"));
        let control = p.config.backends.last().unwrap();
        assert_eq!((control.name.as_str(), control.role), ("base", Role::Shadow));
        assert!(!p.rules.compares_header("x-trace"));
        assert_eq!(p.rules.paths.len(), 3);
        assert_eq!(p.rules.paths[2].1, PathRule::Tolerance(0.5));
        assert_eq!(p.routes.len(), 1);
        assert_eq!(p.routes[0].sample, 12.5);
        assert_eq!(p.routes[0].methods, Some(vec!["GET".to_string(), "POST".to_string()]));
    }

    #[test]
    fn defaults_shadow_safe_methods_only() {
        let Command::Proxy(p) = parse(args("--listen 127.0.0.1:0 --master 127.0.0.1:1")).unwrap() else {
            panic!("not a proxy command")
        };
        let methods = p.routes[0].methods.clone().unwrap();
        assert_eq!(methods, ["GET", "HEAD", "OPTIONS"]);
        assert_eq!(p.routes[0].sample, 100.0);
    }

    #[test]
    fn flags_override_the_config_file() {
        let dir = std::env::temp_dir().join(format!("kage-cli-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("kage.toml");
        std::fs::write(&file, crate::app::config_file::EXAMPLE).unwrap();
        let f = file.to_str().unwrap();
        let Command::Proxy(p) = parse(args(&format!("--config {f}"))).unwrap() else {
            panic!("not a proxy command")
        };
        assert_eq!(p.config.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(p.config.backends.len(), 3);
        assert_eq!(p.routes.len(), 2);
        assert_eq!(p.control.as_deref(), Some("control"));
        let line = format!(
            "--config {f} --listen 127.0.0.1:1 --master 127.0.0.1:2 --shadow 127.0.0.1:3 --sample 5 --keep-alive master-only"
        );
        let Command::Proxy(p) = parse(args(&line)).unwrap() else {
            panic!("not a proxy command")
        };
        assert_eq!(p.config.listen, "127.0.0.1:1".parse().unwrap());
        let names: Vec<_> = p.config.backends.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["master", "shadow1"], "--shadow replaces the file's shadows");
        assert_eq!(p.control, None);
        assert_eq!((p.routes.len(), p.routes[0].sample), (1, 5.0));
        assert_eq!(p.config.keep_alive, KeepAlive::MasterOnly);
        assert_eq!(p.config.shadow_max_inflight, 64, "from the file");
        let err = parse(args("--config /nonexistent/kage.toml")).unwrap_err();
        assert!(err.contains("/nonexistent/kage.toml: cannot read"), "{err}");
        std::fs::write(&file, "[master]\naddress = \"127.0.0.1:1\"\n").unwrap();
        let err = parse(args(&format!("--config {f}"))).unwrap_err();
        assert!(
            err.contains(&format!("--listen ADDR is required (or set it in {f})")),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_routes_toml_in_the_help_is_valid() {
        // The settings paragraph and five rules, up to SIGNALS.
        let text: String = HELP
            .split("ROUTES.TOML:\n")
            .nth(1)
            .unwrap()
            .split("\n\n")
            .take(6)
            .flat_map(str::lines)
            .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
            .collect();
        let cfg = route_config::parse(&text, "help").unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(cfg.rules.rules.len(), 4);
        assert!(cfg.rules.default.is_some());
    }

    #[test]
    fn route_command_line() {
        let dir = std::env::temp_dir().join(format!("kage-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("routes.toml");
        std::fs::write(
            &file,
            "max_peek = 100\n[[rule]]\nname = \"d\"\ndefault = true\nto = [\"127.0.0.1:9\"]\n",
        )
        .unwrap();
        let line = format!(
            "route --config {} --listen 127.0.0.1:0 --max-connections 7",
            file.display()
        );
        let Command::Route(r) = parse(args(&line)).unwrap() else {
            panic!("not a route command")
        };
        assert_eq!(r.settings.max_peek, 100);
        assert_eq!(r.settings.max_connections, 7);
        let no_listen = parse(args(&format!("route --config {}", file.display()))).unwrap_err();
        assert!(no_listen.contains("--listen"), "{no_listen}");
        let missing = parse(args("route --config /nonexistent/routes.toml")).unwrap_err();
        assert!(missing.contains("/nonexistent/routes.toml"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn errors_name_the_flag() {
        for (line, needle) in [
            ("--master 127.0.0.1:1", "--listen"),
            ("--listen 127.0.0.1:0", "--master"),
            ("--listen nowhere --master 127.0.0.1:1", "--listen nowhere"),
            ("--listen 127.0.0.1:0 --master 127.0.0.1:1 --sample 101", "--sample 101"),
            (
                "--listen 127.0.0.1:0 --master 127.0.0.1:1 --backend-timeout 10",
                "--backend-timeout 10",
            ),
            (
                "--listen 127.0.0.1:0 --master 127.0.0.1:1 --shadow-methods G(T",
                "--shadow-methods",
            ),
            (
                "--listen 127.0.0.1:0 --master 127.0.0.1:1 --max-connections 0",
                "--max-connections 0",
            ),
            (
                "--listen 127.0.0.1:0 --master a=127.0.0.1:1 --shadow a=127.0.0.1:2",
                "NAME=",
            ),
            (
                "--listen 127.0.0.1:0 --master 127.0.0.1:1 --master 127.0.0.1:2",
                "twice",
            ),
            (
                "--listen 127.0.0.1:0 --master 127.0.0.1:1 --keep-alive sometimes",
                "--keep-alive sometimes: expected master-only or always",
            ),
            (
                "--listen 127.0.0.1:0 --master 127.0.0.1:1 --shadow-max-inflight -1",
                "--shadow-max-inflight -1",
            ),
            (
                "--listen 127.0.0.1:0 --master 127.0.0.1:1 --ignore-json items",
                "--ignore-json items: JSON path \"items\" must start with /",
            ),
            (
                "--listen 127.0.0.1:0 --master 127.0.0.1:1 --json-tolerance /total",
                "--json-tolerance /total: expected PATH=NUMBER",
            ),
            (
                "--listen 127.0.0.1:0 --master 127.0.0.1:1 --control c=127.0.0.1:2 --control 127.0.0.1:3",
                "--control is given twice",
            ),
            ("--bogus", "--bogus"),
        ] {
            let err = parse(args(line)).unwrap_err();
            assert!(err.contains(needle), "{line}: {err}");
        }
    }
}
