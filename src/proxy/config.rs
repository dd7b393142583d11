//! What the proxy is told: where to listen, the backends, limits, timeouts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::http::Method;
use crate::runtime::resolve::{DEFAULT_RESOLVE_INTERVAL, MIN_RESOLVE_INTERVAL};
use crate::tls::CertFiles;

/// Default for [`Config::client_timeout`] (nginx's `client_header_timeout`
/// is 60 s; a head takes a browser milliseconds).
pub const DEFAULT_CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for [`Config::keepalive_timeout`] (nginx: 75 s).
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(75);
/// Default for [`Config::client_idle_timeout`] (nginx's
/// `client_body_timeout` and `send_timeout`: 60 s).
pub const DEFAULT_CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default for [`Backend::timeout`].
pub const DEFAULT_BACKEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for [`Config::capture_cap`].
pub const DEFAULT_CAPTURE_CAP: usize = 1 << 20;
/// Default for [`Config::shadow_body_window`].
pub const DEFAULT_SHADOW_BODY_WINDOW: usize = 1 << 20;
/// Default for [`Config::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Most backends one proxy can have (a selection is a 64-bit set).
pub const MAX_BACKENDS: usize = 64;
/// Largest [`Config::max_connections`] and in-flight cap accepted (each
/// takes tokens; the sums must not overflow).
pub const MAX_CONNECTIONS_LIMIT: usize = 1 << 20;
/// Default for [`Backend::marker`].
pub const DEFAULT_SHADOW_MARKER: &str = "X-Kage-Shadow";
/// Default for [`Config::shadow_max_inflight`]: as many as the idle
/// connections a pool keeps per backend.
pub const DEFAULT_SHADOW_MAX_INFLIGHT: usize = 64;

/// Which exchanges keep the client connection open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KeepAlive {
    /// Kage's rule: only requests the master alone serves keep the client
    /// connection; a shadowed request closes the client and every backend
    /// connection after it.
    #[default]
    MasterOnly,
    /// Every request keeps the client connection when client and master
    /// allow it. Shadows get keep-alive requests too and their connections
    /// are pooled; a shadow still answering when the client's response is
    /// done finishes in the background (see
    /// [`Config::shadow_max_inflight`]).
    Always,
}

impl KeepAlive {
    /// `master-only` or `always`, as the flag takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            KeepAlive::MasterOnly => "master-only",
            KeepAlive::Always => "always",
        }
    }

    /// Parses the flag's value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "master-only" => Some(KeepAlive::MasterOnly),
            "always" => Some(KeepAlive::Always),
            _ => None,
        }
    }
}

/// Production or new code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The master: its response goes to the client.
    Master,
    /// A shadow: its response is captured and compared, never sent.
    Shadow,
}

impl Role {
    /// `master` or `shadow`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Shadow => "shadow",
        }
    }
}

/// One backend.
#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    /// Name used in logs, hooks and reports.
    pub name: String,
    /// Where it listens. With [`dns_name`](Self::dns_name) set, the proxy
    /// changes it when the name resolves to another address.
    pub addr: SocketAddr,
    /// The `HOST:PORT` it was given as, when HOST is a name (not an IP
    /// literal): looked up again every [`Config::resolve_interval`] and
    /// after connect failures (see [`crate::runtime::resolve`]). `None`
    /// keeps [`addr`](Self::addr) for good.
    pub dns_name: Option<String>,
    /// Master or shadow.
    pub role: Role,
    /// Connect, first response byte, and idle between reads.
    pub timeout: Duration,
    /// Header fields set on every request to it (replacing any of the name).
    pub set_headers: Vec<(String, String)>,
    /// Header fields removed from every request to it.
    pub remove_headers: Vec<String>,
    /// The Host sent to it instead of the client's.
    pub host: Option<String>,
    /// A path prefix replaced in the request target: `(from, to)`.
    pub path_prefix: Option<(String, String)>,
    /// For a shadow: a header field marking its requests, set to the
    /// exchange id (`X-Kage-Shadow: 17`); `None` sends no marker.
    pub marker: Option<String>,
    /// For a shadow: most requests in flight to it (instead of
    /// [`Config::shadow_max_inflight`]).
    pub max_inflight: Option<usize>,
    /// For a shadow: most requests sent per second, on average over one
    /// second (a token bucket); past it shadow requests are dropped.
    pub max_rps: Option<f64>,
    /// HTTPS (`https://HOST:PORT`): how its certificate is checked. `None`
    /// speaks plain HTTP.
    pub tls: Option<BackendTls>,
}

/// TLS to one backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendTls {
    /// The name sent as SNI and verified in the backend's certificate
    /// (the host of its address, unless set otherwise).
    pub server_name: String,
    /// CA certificate files (PEM) trusted for this backend, besides the
    /// system's roots and [`Config::backend_ca`].
    pub ca: Vec<PathBuf>,
    /// Takes any certificate (its handshake signature is still checked).
    pub insecure_skip_verify: bool,
}

impl BackendTls {
    /// Verified against the roots as `server_name`.
    pub fn new(server_name: impl Into<String>) -> Self {
        BackendTls {
            server_name: server_name.into(),
            ca: Vec::new(),
            insecure_skip_verify: false,
        }
    }
}

impl Backend {
    /// A backend with the default timeout and no header rules.
    pub fn new(name: impl Into<String>, addr: SocketAddr, role: Role) -> Self {
        Backend {
            name: name.into(),
            addr,
            dns_name: None,
            role,
            timeout: DEFAULT_BACKEND_TIMEOUT,
            set_headers: Vec::new(),
            remove_headers: Vec::new(),
            host: None,
            path_prefix: None,
            marker: Some(DEFAULT_SHADOW_MARKER.to_string()),
            max_inflight: None,
            max_rps: None,
            tls: None,
        }
    }
}

/// Everything the proxy needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where clients connect.
    pub listen: SocketAddr,
    /// The backends; exactly one must be the master.
    pub backends: Vec<Backend>,
    /// How long a client may take to send a whole request head, counted
    /// from its first byte (from accept for a connection's first request),
    /// however it keeps dripping; then 408 and close.
    pub client_timeout: Duration,
    /// How long a kept-alive client connection may stay idle between two
    /// requests; then it is closed quietly.
    pub keepalive_timeout: Duration,
    /// How long a client may make no progress sending a request body or
    /// reading its response (also a tunnel with no byte either way); then it
    /// is cut (408 when nothing was answered yet).
    pub client_idle_timeout: Duration,
    /// Most request bytes held for one shadow that it has not taken yet.
    /// Request bodies of any length stream to the shadows as the master
    /// gets them; a shadow falling further behind is cut for the request
    /// ([`Outcome::TooSlow`](super::Outcome::TooSlow)).
    pub shadow_body_window: usize,
    /// Most bytes of each response kept for [`Hooks::backends_finished`](super::Hooks::backends_finished).
    pub capture_cap: usize,
    /// Most client connections at once; past it, accepting waits.
    pub max_connections: usize,
    /// Idle keep-alive backend connections kept per backend for later
    /// client connections (0: none are kept past their session). Besides,
    /// up to the larger of this and [`MIN_KEPT_PER_BACKEND`](super::MIN_KEPT_PER_BACKEND)
    /// idle clients keep their own for their next request, for
    /// [`KEEP_BACKEND_WHILE_IDLE`](super::KEEP_BACKEND_WHILE_IDLE).
    pub pool_idle_per_backend: usize,
    /// How long a pooled backend connection may stay idle.
    pub pool_idle_timeout: Duration,
    /// Which exchanges keep the client connection open.
    pub keep_alive: KeepAlive,
    /// Append the client's address to `X-Forwarded-For` and add an
    /// RFC 7239 `Forwarded` element in what every backend receives.
    pub forward_client_ip: bool,
    /// Most requests in flight to each shadow, from being sent until the
    /// shadow's part of the exchange is over (with [`KeepAlive::Always`],
    /// also while the client has moved on). Past it shadow requests are not
    /// sent: they are counted ([`Proxy::dropped`](super::Proxy::dropped))
    /// and reported as [`Outcome::Dropped`](super::Outcome::Dropped) when
    /// another shadow was sent, never queued in front of the client. A slow
    /// shadow thus gets a bounded share of the traffic instead of slowing
    /// the proxy. Applies when the master is selected.
    pub shadow_max_inflight: usize,
    /// How often the backends' host names ([`Backend::dns_name`]) are
    /// looked up again (at least
    /// [`MIN_RESOLVE_INTERVAL`](crate::runtime::resolve::MIN_RESOLVE_INTERVAL)).
    pub resolve_interval: Duration,
    /// The listener's certificates (HTTPS; empty: plain HTTP). The first is
    /// offered when the client's SNI matches none.
    pub tls: Vec<CertFiles>,
    /// CA certificate files (PEM) every HTTPS backend is verified against,
    /// besides the system's roots.
    pub backend_ca: Vec<PathBuf>,
}

impl Config {
    /// A configuration with the defaults.
    pub fn new(listen: SocketAddr, backends: Vec<Backend>) -> Self {
        Config {
            listen,
            backends,
            client_timeout: DEFAULT_CLIENT_TIMEOUT,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            client_idle_timeout: DEFAULT_CLIENT_IDLE_TIMEOUT,
            shadow_body_window: DEFAULT_SHADOW_BODY_WINDOW,
            capture_cap: DEFAULT_CAPTURE_CAP,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            pool_idle_per_backend: super::pool::DEFAULT_POOL_IDLE_PER_BACKEND,
            pool_idle_timeout: super::pool::DEFAULT_POOL_IDLE_TIMEOUT,
            keep_alive: KeepAlive::MasterOnly,
            forward_client_ip: false,
            shadow_max_inflight: DEFAULT_SHADOW_MAX_INFLIGHT,
            resolve_interval: DEFAULT_RESOLVE_INTERVAL,
            tls: Vec::new(),
            backend_ca: Vec::new(),
        }
    }

    /// Checks the rules a configuration must follow; the error says which.
    pub fn validate(&self) -> Result<(), String> {
        let masters = self.backends.iter().filter(|b| b.role == Role::Master).count();
        if masters != 1 {
            return Err(format!("exactly one master backend is needed, {masters} given"));
        }
        if self.backends.len() > MAX_BACKENDS {
            return Err(format!(
                "at most {MAX_BACKENDS} backends, {} given",
                self.backends.len()
            ));
        }
        for (i, b) in self.backends.iter().enumerate() {
            if self.backends[..i].iter().any(|o| o.name == b.name) {
                return Err(format!("backend name {:?} is used twice", b.name));
            }
        }
        if self.max_connections == 0 || self.max_connections > MAX_CONNECTIONS_LIMIT {
            return Err(format!(
                "max_connections must be from 1 to {MAX_CONNECTIONS_LIMIT}, {} given",
                self.max_connections
            ));
        }
        let caps = std::iter::once(self.shadow_max_inflight).chain(self.backends.iter().filter_map(|b| b.max_inflight));
        for cap in caps {
            if cap > MAX_CONNECTIONS_LIMIT {
                return Err(format!(
                    "an in-flight cap must be at most {MAX_CONNECTIONS_LIMIT}, {cap} given"
                ));
            }
        }
        if let Some(b) = self
            .backends
            .iter()
            .find(|b| b.max_rps.is_some_and(|r| !(r.is_finite() && r > 0.0)))
        {
            return Err(format!("max_rps of {:?} must be a positive number", b.name));
        }
        if self.resolve_interval < MIN_RESOLVE_INTERVAL {
            return Err(format!(
                "resolve_interval must be at least {MIN_RESOLVE_INTERVAL:?}, {:?} given",
                self.resolve_interval
            ));
        }
        Ok(())
    }

    /// Index of the master backend.
    pub fn master(&self) -> usize {
        self.backends.iter().position(|b| b.role == Role::Master).unwrap_or(0)
    }
}

/// Methods shadows get unless told otherwise: the safe ones without side
/// effects on a well-behaved server.
pub const DEFAULT_SHADOW_METHODS: [Method; 3] = [Method::Get, Method::Head, Method::Options];
