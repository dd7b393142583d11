//! The `kage` command line: flags to a [`Config`]
//! and a shadow policy, `kage route` with its `routes.toml`, `kage replay`
//! and `kage demo`. Each subcommand parses its flags in its own file;
//! `help.txt` holds what `--help` prints ([`HELP`]).

mod args;
mod proxy;
mod replay;
mod route;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::app::config_file;
use crate::app::policy::Route;
use crate::compare;
use crate::proxy::Config;
use crate::route::{Rules, Settings};

/// The help text.
pub const HELP: &str = include_str!("help.txt");

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
        return replay::parse(args);
    }
    if args.peek().is_some_and(|a| a == "route") {
        args.next();
        return route::parse(args);
    }
    proxy::parse(args)
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
