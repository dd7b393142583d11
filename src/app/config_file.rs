//! `kage.toml`: the proxy's configuration file (`kage --config FILE`).
//! Everything the flags say, plus per-backend rewrites and limits,
//! selection routes and comparison rules. Every error names the file, the
//! line and the key, and says what was expected; flags override the file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::access::AccessFormat;
use crate::app::policy::{Route, Sticky};
use crate::compare::{PathPattern, PathRule, Rules};
use crate::proxy::{Backend, BackendTls, DEFAULT_BACKEND_TIMEOUT, KeepAlive, Role};
use crate::route::Matcher;
use crate::runtime::resolve::MIN_RESOLVE_INTERVAL;
use crate::tls::{CertFiles, ServerTls, read_certs};
use crate::values::{
    backend_dns_name, backend_tls_host, line_of, parse_duration, parse_size, resolve, resolve_backend, toml_error,
};

/// What a `kage.toml` says; `None` where it says nothing.
#[derive(Debug, Clone, Default)]
pub struct FileConfig {
    /// `listen`.
    pub listen: Option<SocketAddr>,
    /// `[master]`.
    pub master: Option<Backend>,
    /// `[[shadow]]` entries, the control (if any) last.
    pub shadows: Vec<Backend>,
    /// The name of the `[[shadow]]` with `control = true`.
    pub control: Option<String>,
    /// `client_timeout`.
    pub client_timeout: Option<Duration>,
    /// `keepalive_timeout`.
    pub keepalive_timeout: Option<Duration>,
    /// `client_idle_timeout`.
    pub client_idle_timeout: Option<Duration>,
    /// `max_connections`.
    pub max_connections: Option<usize>,
    /// `keep_alive`.
    pub keep_alive: Option<KeepAlive>,
    /// `shadow_max_inflight`.
    pub shadow_max_inflight: Option<usize>,
    /// `forward_client_ip`.
    pub forward_client_ip: Option<bool>,
    /// `pool_idle`.
    pub pool_idle: Option<usize>,
    /// `shadow_body_window`.
    pub shadow_body_window: Option<usize>,
    /// `capture_cap`.
    pub capture_cap: Option<usize>,
    /// `pool_idle_timeout`.
    pub pool_idle_timeout: Option<Duration>,
    /// `resolve_interval`.
    pub resolve_interval: Option<Duration>,
    /// `diff_log`.
    pub diff_log: Option<PathBuf>,
    /// `diff_log_bodies`.
    pub diff_log_bodies: Option<bool>,
    /// `access_log`.
    pub access_log: Option<PathBuf>,
    /// `access_log_format`.
    pub access_log_format: Option<AccessFormat>,
    /// `metrics`.
    pub metrics: Option<SocketAddr>,
    /// `[[route]]` entries, in order.
    pub routes: Vec<Route>,
    /// `[compare]`.
    pub rules: Rules,
    /// `[[tls]]` entries (`cert`, `key`), in order.
    pub tls: Vec<CertFiles>,
    /// `backend_ca`.
    pub backend_ca: Vec<PathBuf>,
}

/// One file name or a list of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum Files {
    One(String),
    Many(Vec<String>),
}

impl Files {
    fn paths(&self) -> Vec<PathBuf> {
        match self {
            Files::One(f) => vec![PathBuf::from(f)],
            Files::Many(fs) => fs.iter().map(PathBuf::from).collect(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: String,
    key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    listen: Option<Spanned<String>>,
    client_timeout: Option<Spanned<String>>,
    keepalive_timeout: Option<Spanned<String>>,
    client_idle_timeout: Option<Spanned<String>>,
    max_connections: Option<Spanned<i64>>,
    keep_alive: Option<Spanned<String>>,
    shadow_max_inflight: Option<Spanned<i64>>,
    forward_client_ip: Option<bool>,
    pool_idle: Option<Spanned<i64>>,
    pool_idle_timeout: Option<Spanned<String>>,
    resolve_interval: Option<Spanned<String>>,
    /// A byte count or a size string (`"1MiB"`).
    shadow_body_window: Option<Spanned<toml::Value>>,
    capture_cap: Option<Spanned<toml::Value>>,
    diff_log: Option<String>,
    diff_log_bodies: Option<bool>,
    access_log: Option<String>,
    access_log_format: Option<Spanned<String>>,
    metrics: Option<Spanned<String>>,
    master: Option<Spanned<RawBackend>>,
    #[serde(default)]
    shadow: Vec<Spanned<RawBackend>>,
    #[serde(default)]
    route: Vec<Spanned<RawRoute>>,
    compare: Option<RawCompare>,
    #[serde(default)]
    tls: Vec<Spanned<RawTls>>,
    backend_ca: Option<Spanned<Files>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    name: Option<String>,
    address: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    #[serde(default)]
    set_headers: BTreeMap<String, String>,
    #[serde(default)]
    remove_headers: Vec<String>,
    host: Option<String>,
    path_prefix: Option<Spanned<Vec<String>>>,
    marker: Option<String>,
    max_inflight: Option<Spanned<i64>>,
    max_rps: Option<Spanned<f64>>,
    #[serde(default)]
    control: bool,
    sni: Option<String>,
    ca: Option<Spanned<Files>>,
    insecure_skip_verify: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: Option<String>,
    methods: Option<Vec<String>>,
    path_prefix: Option<String>,
    path_regex: Option<Spanned<String>>,
    header: Option<String>,
    sample: Option<Spanned<f64>>,
    sticky: Option<Spanned<String>>,
    shadows: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCompare {
    #[serde(default)]
    ignore_headers: Vec<String>,
    #[serde(default)]
    ignore_json: Vec<Spanned<String>>,
    #[serde(default)]
    json_set: Vec<Spanned<String>>,
    #[serde(default)]
    json_tolerance: BTreeMap<String, Spanned<f64>>,
}

/// Loads and checks a configuration file.
pub fn load(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    parse(&text, &path.display().to_string())
}

/// Parses configuration `text`; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<FileConfig, String> {
    let at = |span: Range<usize>| format!("{file}:{}", line_of(text, span.start));
    let raw: Raw = toml::from_str(text).map_err(|e| toml_error(text, file, &e))?;
    let duration = |v: &Option<Spanned<String>>, key: &str| -> Result<Option<Duration>, String> {
        v.as_ref()
            .map(|s| {
                parse_duration(s.get_ref()).map_err(|e| format!("{}: {key} = {:?}: {e}", at(s.span()), s.get_ref()))
            })
            .transpose()
    };
    let address = |v: &Option<Spanned<String>>, key: &str| -> Result<Option<SocketAddr>, String> {
        v.as_ref()
            .map(|s| resolve(s.get_ref()).map_err(|e| format!("{}: {key} = {:?}: {e}", at(s.span()), s.get_ref())))
            .transpose()
    };
    let count = |v: &Option<Spanned<i64>>, key: &str, min: usize| -> Result<Option<usize>, String> {
        v.as_ref()
            .map(|s| {
                usize::try_from(*s.get_ref())
                    .ok()
                    .filter(|n| *n >= min)
                    .ok_or_else(|| format!("{}: {key}: expected a whole number of at least {min}", at(s.span())))
            })
            .transpose()
    };
    let size = |v: &Option<Spanned<toml::Value>>, key: &str| -> Result<Option<usize>, String> {
        let Some(s) = v.as_ref() else { return Ok(None) };
        let bytes = match s.get_ref() {
            toml::Value::Integer(n) => usize::try_from(*n).ok(),
            toml::Value::String(v) => Some(parse_size(v).map_err(|e| format!("{}: {key} = {v:?}: {e}", at(s.span())))?),
            _ => None,
        };
        match bytes {
            Some(n) if n >= 1 => Ok(Some(n)),
            _ => Err(format!(
                "{}: {key}: expected a size of at least 1 byte, as a number or a string like \"1MiB\"",
                at(s.span())
            )),
        }
    };
    let access_log_format = match &raw.access_log_format {
        Some(s) => Some(AccessFormat::parse(s.get_ref()).ok_or_else(|| {
            format!(
                "{}: access_log_format = {:?}: expected \"combined\" or \"json\"",
                at(s.span()),
                s.get_ref()
            )
        })?),
        None => None,
    };
    let keep_alive = raw
        .keep_alive
        .as_ref()
        .map(|s| {
            KeepAlive::parse(s.get_ref()).ok_or_else(|| {
                format!(
                    "{}: keep_alive = {:?}: expected \"master-only\" or \"always\"",
                    at(s.span()),
                    s.get_ref()
                )
            })
        })
        .transpose()?;
    let backend = |raw: &Spanned<RawBackend>, role: Role, default_name: String| -> Result<Backend, String> {
        let r = raw.get_ref();
        let table = if role == Role::Master { "[master]" } else { "[[shadow]]" };
        let name = r.name.clone().unwrap_or(default_name);
        let addr = r
            .address
            .as_ref()
            .map(|s| {
                resolve_backend(s.get_ref())
                    .map_err(|e| format!("{}: {table} {name:?}: address = {:?}: {e}", at(s.span()), s.get_ref()))
            })
            .transpose()?
            .ok_or_else(|| {
                format!(
                    "{}: {table} {name:?}: address = \"HOST:PORT\" is missing",
                    at(raw.span())
                )
            })?;
        let mut b = Backend::new(name.clone(), addr, role);
        b.dns_name = r.address.as_ref().and_then(|s| backend_dns_name(s.get_ref()));
        let https = r.address.as_ref().and_then(|a| backend_tls_host(a.get_ref()));
        match https {
            Some(host) => {
                let mut tls = BackendTls::new(r.sni.clone().unwrap_or(host));
                if let Some(ca) = &r.ca {
                    tls.ca = ca.get_ref().paths();
                    for path in &tls.ca {
                        read_certs(path).map_err(|e| format!("{}: {table} {name:?}: ca: {e}", at(ca.span())))?;
                    }
                }
                tls.insecure_skip_verify = r.insecure_skip_verify.as_ref().is_some_and(|v| *v.get_ref());
                b.tls = Some(tls);
            }
            None if r.sni.is_some() || r.ca.is_some() || r.insecure_skip_verify.is_some() => {
                return Err(format!(
                    "{}: {table} {name:?}: sni, ca and insecure_skip_verify are for an https:// address",
                    at(raw.span())
                ));
            }
            None => {}
        }
        b.timeout = duration(&r.timeout, "timeout")?.unwrap_or(DEFAULT_BACKEND_TIMEOUT);
        b.set_headers = r.set_headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        b.remove_headers = r.remove_headers.clone();
        b.host = r.host.clone();
        if let Some(p) = &r.path_prefix {
            match p.get_ref().as_slice() {
                [from, to] if from.starts_with('/') && to.starts_with('/') => {
                    b.path_prefix = Some((from.clone(), to.clone()));
                }
                _ => {
                    return Err(format!(
                        "{}: {table} {name:?}: path_prefix: expected [\"/from/\", \"/to/\"]",
                        at(p.span())
                    ));
                }
            }
        }
        if let Some(m) = &r.marker {
            b.marker = (!m.is_empty()).then(|| m.clone());
        }
        b.max_inflight = count(&r.max_inflight, "max_inflight", 0)?;
        if let Some(rps) = &r.max_rps {
            let v = *rps.get_ref();
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("{}: max_rps: expected a positive number", at(rps.span())));
            }
            b.max_rps = Some(v);
        }
        if role == Role::Master && (r.control || r.max_inflight.is_some() || r.max_rps.is_some()) {
            return Err(format!(
                "{}: [master]: control, max_inflight and max_rps are for shadows",
                at(raw.span())
            ));
        }
        Ok(b)
    };
    let master = raw
        .master
        .as_ref()
        .map(|m| backend(m, Role::Master, "master".into()))
        .transpose()?;
    let mut shadows = Vec::new();
    let mut control = None;
    let mut control_backend = None;
    for (i, s) in raw.shadow.iter().enumerate() {
        let b = backend(s, Role::Shadow, format!("shadow{}", i + 1))?;
        if s.get_ref().control {
            if control.is_some() {
                return Err(format!("{}: a second control = true; keep one", at(s.span())));
            }
            control = Some(b.name.clone());
            control_backend = Some(b);
        } else {
            shadows.push(b);
        }
    }
    shadows.extend(control_backend);
    let mut routes = Vec::new();
    for (i, spanned) in raw.route.iter().enumerate() {
        let r = spanned.get_ref();
        let name = r.name.clone().unwrap_or_else(|| format!("route{}", i + 1));
        let mut route = Route::all(r.methods.clone(), 100.0);
        route.name = name.clone();
        route.path_prefix = r.path_prefix.clone();
        if let Some(re) = &r.path_regex {
            route.path_regex = Some(
                Matcher::regex(re.get_ref())
                    .map_err(|e| format!("{}: route {name:?}: path_regex: {e}", at(re.span())))?,
            );
        }
        route.header = r.header.as_ref().map(|h| match h.split_once(':') {
            Some((n, v)) => (n.trim().to_string(), Some(v.trim().to_string())),
            None => (h.trim().to_string(), None),
        });
        if let Some(s) = &r.sample {
            let v = *s.get_ref();
            if !(0.0..=100.0).contains(&v) {
                return Err(format!(
                    "{}: route {name:?}: sample: expected a percentage from 0 to 100",
                    at(s.span())
                ));
            }
            route.sample = v;
        }
        if let Some(s) = &r.sticky {
            route.sticky =
                Some(Sticky::parse(s.get_ref()).map_err(|e| format!("{}: route {name:?}: {e}", at(s.span())))?);
        }
        if let Some(names) = &r.shadows {
            if let Some(unknown) = names.iter().find(|n| !shadows.iter().any(|b| &b.name == *n)) {
                return Err(format!(
                    "{}: route {name:?}: shadows: no [[shadow]] is named {unknown:?}",
                    at(spanned.span())
                ));
            }
            route.shadows = Some(names.clone());
        }
        routes.push(route);
    }
    let mut rules = Rules::default();
    if let Some(c) = &raw.compare {
        rules
            .ignored_headers
            .extend(c.ignore_headers.iter().map(|h| h.to_ascii_lowercase()));
        let path = |s: &Spanned<String>, key: &str| {
            PathPattern::parse(s.get_ref()).map_err(|e| format!("{}: [compare] {key}: {e}", at(s.span())))
        };
        for p in &c.ignore_json {
            rules.paths.push((path(p, "ignore_json")?, PathRule::Ignore));
        }
        for p in &c.json_set {
            rules.paths.push((path(p, "json_set")?, PathRule::Set));
        }
        for (p, tol) in &c.json_tolerance {
            let pattern =
                PathPattern::parse(p).map_err(|e| format!("{}: [compare] json_tolerance: {e}", at(tol.span())))?;
            let t = *tol.get_ref();
            if !(t.is_finite() && t >= 0.0) {
                return Err(format!(
                    "{}: [compare] json_tolerance {p:?}: expected a number of at least 0",
                    at(tol.span())
                ));
            }
            rules.paths.push((pattern, PathRule::Tolerance(t)));
        }
    }
    let mut tls = Vec::new();
    for t in &raw.tls {
        let pair = CertFiles {
            cert: PathBuf::from(&t.get_ref().cert),
            key: PathBuf::from(&t.get_ref().key),
        };
        ServerTls::load(std::slice::from_ref(&pair)).map_err(|e| format!("{}: [[tls]]: {e}", at(t.span())))?;
        tls.push(pair);
    }
    let mut backend_ca = Vec::new();
    if let Some(ca) = &raw.backend_ca {
        for path in ca.get_ref().paths() {
            read_certs(&path).map_err(|e| format!("{}: backend_ca: {e}", at(ca.span())))?;
            backend_ca.push(path);
        }
    }
    Ok(FileConfig {
        tls,
        backend_ca,
        listen: address(&raw.listen, "listen")?,
        master,
        shadows,
        control,
        client_timeout: duration(&raw.client_timeout, "client_timeout")?,
        keepalive_timeout: duration(&raw.keepalive_timeout, "keepalive_timeout")?,
        client_idle_timeout: duration(&raw.client_idle_timeout, "client_idle_timeout")?,
        max_connections: count(&raw.max_connections, "max_connections", 1)?,
        keep_alive,
        shadow_max_inflight: count(&raw.shadow_max_inflight, "shadow_max_inflight", 0)?,
        forward_client_ip: raw.forward_client_ip,
        pool_idle: count(&raw.pool_idle, "pool_idle", 0)?,
        shadow_body_window: size(&raw.shadow_body_window, "shadow_body_window")?,
        capture_cap: size(&raw.capture_cap, "capture_cap")?,
        pool_idle_timeout: duration(&raw.pool_idle_timeout, "pool_idle_timeout")?,
        resolve_interval: match (
            duration(&raw.resolve_interval, "resolve_interval")?,
            &raw.resolve_interval,
        ) {
            (Some(d), Some(s)) if d < MIN_RESOLVE_INTERVAL => {
                return Err(format!(
                    "{}: resolve_interval = {:?}: expected at least {MIN_RESOLVE_INTERVAL:?}",
                    at(s.span()),
                    s.get_ref()
                ));
            }
            (d, _) => d,
        },
        diff_log: raw.diff_log.map(PathBuf::from),
        diff_log_bodies: raw.diff_log_bodies,
        access_log: raw.access_log.map(PathBuf::from),
        access_log_format,
        metrics: address(&raw.metrics, "metrics")?,
        routes,
        rules,
    })
}

/// The example in `kage --help`, also checked by the tests.
pub const EXAMPLE: &str = r#"listen = "127.0.0.1:8080"          # every key is optional; flags override
keep_alive = "always"               # or "master-only" (Kage's rule)
client_timeout = "10s"              # a whole request head, from its first byte
keepalive_timeout = "75s"           # idle between two requests
client_idle_timeout = "60s"         # no progress on a body, or a client not reading
max_connections = 4096              # default: from the descriptor limit
shadow_max_inflight = 64
forward_client_ip = true
pool_idle = 64
pool_idle_timeout = "30s"
resolve_interval = "30s"            # backend host names looked up again
shadow_body_window = "1MiB"         # a shadow further behind the request body is cut
capture_cap = "1MiB"                # response bytes kept for comparison and the log
diff_log = "/var/log/kage/diff.jsonl"
diff_log_bodies = false             # true: record bodies for kage replay
access_log = "/var/log/kage/access.log"
access_log_format = "combined"      # or "json"
metrics = "127.0.0.1:9100"
# backend_ca = "/etc/kage/internal-ca.pem" # trusted for every https:// backend

# HTTPS: one [[tls]] per certificate, chosen by the client's SNI among the
# certificates' names (the first is the default); SIGHUP reloads the files.
# [[tls]]
# cert = "/etc/kage/example.com.pem"  # the chain, server certificate first
# key = "/etc/kage/example.com.key"

[master]
name = "prod"
address = "127.0.0.1:9000"          # or "https://prod.internal:443"
timeout = "10s"
# sni = "prod.example.com"          # https://: the name sent and verified
# ca = "/etc/kage/prod-ca.pem"      # https://: more CA files for it
# insecure_skip_verify = false      # https://: true takes any certificate

[[shadow]]
name = "new"
address = "127.0.0.1:9001"
timeout = "2s"
max_inflight = 32                   # requests in flight to it; past it: dropped
max_rps = 200.0                     # requests a second; past it: dropped
host = "new.internal"               # Host sent to it
path_prefix = ["/api/", "/v2/api/"] # target prefix replaced
marker = "X-Kage-Shadow"            # set to the exchange id; "" sends none
set_headers = { "X-Env" = "shadow" }
remove_headers = ["Authorization"]

[[shadow]]
name = "control"                    # the master's code, fed like a shadow:
address = "127.0.0.1:9002"          # what it differs in is noise
control = true

[[route]]                           # the first matching route decides;
name = "api"                        # none: the master alone
methods = ["GET", "HEAD"]
path_prefix = "/api/"
sample = 25.0                       # percent
sticky = "header:X-User-Id"         # or "cookie:NAME", "client_ip"
shadows = ["new", "control"]

[[route]]
name = "debug"
header = "X-Shadow: yes"            # or just a name: present

[compare]
ignore_headers = ["X-Trace"]
ignore_json = ["/generated_at", "/items/*/updated_at"]
json_set = ["/tags"]
json_tolerance = { "/total" = 0.01 }
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_loads() {
        let c = parse(EXAMPLE, "kage.toml").unwrap();
        let http = parse("[master]\naddress = \"http://127.0.0.1:9000/\"", "kage.toml").unwrap();
        assert_eq!(http.master.unwrap().addr, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(c.resolve_interval, Some(Duration::from_secs(30)));
        let named = parse("[master]\naddress = \"http://localhost:9000/\"", "kage.toml").unwrap();
        assert_eq!(named.master.unwrap().dns_name.as_deref(), Some("localhost:9000"));
        assert_eq!(c.listen, Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(c.keep_alive, Some(KeepAlive::Always));
        let master = c.master.unwrap();
        assert_eq!((master.name.as_str(), master.role), ("prod", Role::Master));
        let names: Vec<_> = c.shadows.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["new", "control"]);
        assert_eq!(c.control.as_deref(), Some("control"));
        let new = &c.shadows[0];
        assert_eq!(new.timeout, Duration::from_secs(2));
        assert_eq!((new.max_inflight, new.max_rps), (Some(32), Some(200.0)));
        assert_eq!(new.path_prefix, Some(("/api/".into(), "/v2/api/".into())));
        assert_eq!(new.set_headers, [("X-Env".to_string(), "shadow".to_string())]);
        assert_eq!(c.routes.len(), 2);
        assert_eq!(c.routes[0].sticky, Some(Sticky::Header("X-User-Id".into())));
        assert_eq!(c.routes[1].header, Some(("X-Shadow".into(), Some("yes".into()))));
        assert_eq!(c.rules.paths.len(), 4);
        assert!(!c.rules.compares_header("x-trace"));
    }

    #[test]
    fn errors_name_file_line_and_key() {
        for (text, needle) in [
            (
                "listen = 5",
                "kage.toml:1: listen: expected a string, got a whole number",
            ),
            (
                "\nmax_connections = \"4096\"",
                "kage.toml:2: max_connections: expected a whole number, got a string",
            ),
            (
                "[master]\naddress = \"http://127.0.0.1:1\"\nsni = \"a\"",
                "kage.toml:1: [master] \"master\": sni, ca and insecure_skip_verify are for an https:// address",
            ),
            (
                "[master]\naddress = \"https://127.0.0.1:1\"\nca = \"/nonexistent.pem\"",
                "kage.toml:3: [master] \"master\": ca: cannot read /nonexistent.pem",
            ),
            (
                "[[tls]]\ncert = \"/nonexistent.pem\"\nkey = \"/k.pem\"",
                "kage.toml:1: [[tls]]: cannot read /nonexistent.pem",
            ),
            ("bogus = 1", "kage.toml:1: unknown field `bogus`"),
            (
                "\n\nkeep_alive = \"sometimes\"",
                "kage.toml:3: keep_alive = \"sometimes\": expected",
            ),
            (
                "[master]\nname = \"m\"",
                "kage.toml:1: [master] \"m\": address = \"HOST:PORT\" is missing",
            ),
            (
                "[[shadow]]\naddress = \"127.0.0.1:1\"\nmax_rps = -1.0",
                "kage.toml:3: max_rps: expected a positive",
            ),
            (
                "[[route]]\nsample = 150.0",
                "kage.toml:2: route \"route1\": sample: expected a percentage",
            ),
            (
                "[[route]]\nsticky = \"user\"",
                "kage.toml:2: route \"route1\": sticky = \"user\": expected",
            ),
            (
                "[[route]]\nshadows = [\"x\"]",
                "kage.toml:1: route \"route1\": shadows: no [[shadow]] is named \"x\"",
            ),
            (
                "[compare]\nignore_json = [\"items\"]",
                "kage.toml:2: [compare] ignore_json: JSON path",
            ),
            (
                "\nresolve_interval = \"50ms\"",
                "kage.toml:2: resolve_interval = \"50ms\": expected at least 100ms",
            ),
            (
                "client_timeout = \"5\"",
                "kage.toml:1: client_timeout = \"5\": the unit is missing",
            ),
            (
                "[[route]]\npath_regex = \"(\"",
                "kage.toml:2: route \"route1\": path_regex:",
            ),
        ] {
            let err = parse(text, "kage.toml").unwrap_err();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }
}
