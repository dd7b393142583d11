//! The `kage` command line: flags to a [`Config`]
//! and a shadow policy, `kage route` with its `routes.toml`, `kage replay`,
//! `kage demo` and `kage check`. Each subcommand parses its flags in its
//! own file and has its own help page in `help/` ([`Topic::page`]).

mod args;
mod check;
mod proxy;
mod replay;
mod route;
mod suggest;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::access::AccessFormat;
use crate::app::config_file;
use crate::app::policy::Route;
use crate::compare;
use crate::proxy::Config;
use crate::route::{Rules, Settings};

pub use check::{check, proxy_warnings, route_warnings};

/// The proxy's help page (`kage --help`), without the kage.toml schema.
pub const HELP: &str = include_str!("help/proxy.txt");
/// `kage route --help`.
pub const ROUTE_HELP: &str = include_str!("help/route.txt");
/// `kage replay --help`.
pub const REPLAY_HELP: &str = include_str!("help/replay.txt");
/// `kage demo --help`.
pub const DEMO_HELP: &str = include_str!("help/demo.txt");
/// `kage check --help`.
pub const CHECK_HELP: &str = include_str!("help/check.txt");

/// A subcommand, as far as help and usage errors go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// `kage` itself: the proxy.
    Proxy,
    /// `kage route`.
    Route,
    /// `kage replay`.
    Replay,
    /// `kage demo`.
    Demo,
    /// `kage check`.
    Check,
}

impl Topic {
    /// Every subcommand with a name, for `kage help COMMAND`.
    pub const NAMED: [Topic; 4] = [Topic::Route, Topic::Replay, Topic::Demo, Topic::Check];

    /// The subcommand's name (`""` for the proxy).
    pub fn name(self) -> &'static str {
        match self {
            Topic::Proxy => "",
            Topic::Route => "route",
            Topic::Replay => "replay",
            Topic::Demo => "demo",
            Topic::Check => "check",
        }
    }

    /// The subcommand a first argument names, if any (`proxy` too).
    pub fn from_name(name: &str) -> Option<Topic> {
        match name {
            "proxy" => Some(Topic::Proxy),
            _ => Topic::NAMED.into_iter().find(|t| t.name() == name),
        }
    }

    /// How to invoke it, as the user types it: `kage`, `kage route`.
    pub fn command(self) -> String {
        match self {
            Topic::Proxy => "kage".into(),
            t => format!("kage {}", t.name()),
        }
    }

    /// The page `--help` prints; the proxy's ends with the kage.toml schema.
    pub fn page(self) -> String {
        match self {
            Topic::Proxy => {
                let mut text = String::from(HELP);
                text.push_str("\nKAGE.TOML (--config FILE):\n");
                for line in config_file::EXAMPLE.lines() {
                    text.push_str("    ");
                    text.push_str(line);
                    text.push('\n');
                }
                text
            }
            Topic::Route => ROUTE_HELP.into(),
            Topic::Replay => REPLAY_HELP.into(),
            Topic::Demo => DEMO_HELP.into(),
            Topic::Check => CHECK_HELP.into(),
        }
    }

    /// What `-h` prints: the page's USAGE paragraph and where the rest is.
    pub fn usage(self) -> String {
        let page = self.page();
        let usage = page.split("\n\n").find(|p| p.starts_with("USAGE:")).unwrap_or("USAGE:");
        format!(
            "{}\n\nSee '{} --help' for every option.\n",
            usage.trim_end(),
            self.command()
        )
    }

    /// The long flags its page names (without `--`), for suggestions.
    pub fn flags(self) -> Vec<String> {
        suggest::long_flags(&self.page())
    }
}

/// The whole proxy help: [`HELP`], then the `kage.toml` schema.
pub fn help() -> String {
    Topic::Proxy.page()
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// env_logger's text lines.
    #[default]
    Text,
    /// One JSON object per line: `ts`, `level`, `target`, `msg`.
    Json,
}

impl LogFormat {
    /// `text` or `json`.
    pub fn parse(v: &str) -> Option<LogFormat> {
        match v {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Print a subcommand's whole help page (`--help`, `kage help`).
    Help(Topic),
    /// Print a subcommand's short usage (`-h`).
    Usage(Topic),
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
    /// Validate a kage.toml or a routes.toml.
    Check(PathBuf),
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
    /// How log lines are written.
    pub log_format: LogFormat,
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
    /// Where the access log goes (`-`: stdout).
    pub access_log: Option<PathBuf>,
    /// How its lines look.
    pub access_log_format: AccessFormat,
    /// The control backend's name, when there is one.
    pub control: Option<String>,
    /// Where `GET /metrics` is served.
    pub metrics: Option<SocketAddr>,
    /// How log lines are written.
    pub log_format: LogFormat,
}

/// Parses the arguments (without the program name). The error names the
/// flag and says what was expected.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    let mut args = args.into_iter().peekable();
    let first = args.peek().and_then(|a| a.to_str()).map(str::to_string);
    match first.as_deref() {
        Some("help") => {
            args.next();
            let topic = match args.next() {
                None => Topic::Proxy,
                Some(a) => {
                    let name = a.to_string_lossy();
                    Topic::from_name(&name).ok_or_else(|| {
                        format!(
                            "kage help {name}: no such command; expected one of proxy, {}{}",
                            Topic::NAMED.map(Topic::name).join(", "),
                            suggest::did_you_mean(&name, Topic::NAMED.map(Topic::name), "")
                        )
                    })?
                }
            };
            match args.next() {
                None => Ok(Command::Help(topic)),
                Some(a) => Err(format!(
                    "kage help takes one COMMAND, got also {:?}",
                    a.to_string_lossy()
                )),
            }
        }
        Some("version") => {
            args.next();
            Ok(Command::Version)
        }
        Some("demo") => {
            args.next();
            match args.next() {
                None => Ok(Command::Demo),
                Some(a) if a == "-h" => Ok(Command::Usage(Topic::Demo)),
                Some(a) if a == "--help" => Ok(Command::Help(Topic::Demo)),
                Some(a) => Err(format!("kage demo takes no arguments, got {:?}", a.to_string_lossy())),
            }
        }
        Some("replay") => {
            args.next();
            replay::parse(args)
        }
        Some("route") => {
            args.next();
            route::parse(args)
        }
        Some("check") => {
            args.next();
            check::parse(args)
        }
        _ => proxy::parse(args),
    }
}

/// The subcommand the arguments name, for pointing a usage error at its
/// help page.
pub fn topic_of(args: &[OsString]) -> Topic {
    args.first()
        .and_then(|a| a.to_str())
        .and_then(Topic::from_name)
        .unwrap_or(Topic::Proxy)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::compare::PathRule;
    use crate::proxy::{KeepAlive, Role};
    use crate::route::config as route_config;

    fn args(line: &str) -> Vec<OsString> {
        line.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn full_command_line() {
        let cmd = parse(args(
            "--listen 127.0.0.1:0 --master prod=127.0.0.1:1 --shadow 127.0.0.1:2 --shadow new=127.0.0.1:3 \
             --backend-timeout 2s --shadow-timeout 500ms --client-timeout 1m --shadow-methods GET,POST \
             --sample 12.5 --max-connections 10 --pool-idle 3 --pool-idle-timeout 2s --resolve-interval 5s \
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
        assert_eq!(p.config.resolve_interval, Duration::from_secs(5));
        assert!(p.config.backends.iter().all(|b| b.dns_name.is_none()), "IP literals");
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
        let text: String = ROUTE_HELP
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
    fn a_backend_by_name_is_looked_up_again() {
        let Command::Proxy(p) = parse(args("--listen 127.0.0.1:0 --master http://localhost:1/")).unwrap() else {
            panic!("not a proxy command")
        };
        assert_eq!(p.config.backends[0].dns_name.as_deref(), Some("localhost:1"));
        assert_eq!(
            p.config.resolve_interval,
            crate::runtime::resolve::DEFAULT_RESOLVE_INTERVAL
        );
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
                "--listen 127.0.0.1:0 --master 127.0.0.1:1 --resolve-interval 10ms",
                "--resolve-interval 10ms: expected at least 100ms",
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
