//! `routes.toml`: the router's configuration file. Every error names the
//! file, the line and the key, and says what was expected.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::settings::Settings;
pub use super::settings::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_INACTIVITY_TIMEOUT, DEFAULT_MAX_PEEK, DEFAULT_PEEK_TIMEOUT, MAX_MAX_PEEK,
};
use super::{Action, Matcher, NamedTarget, Rule, Rules};
use crate::runtime::resolve::{DEFAULT_RESOLVE_INTERVAL, MIN_RESOLVE_INTERVAL};
use crate::values::{backend_dns_name, line_of, parse_duration, parse_size, resolve, toml_error};

/// A loaded router configuration.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// `listen` (the command line's `--listen` overrides it).
    pub listen: Option<SocketAddr>,
    /// Time to connect to one address of a rule.
    pub connect_timeout: Duration,
    /// Time with no byte either way before a spliced connection is closed.
    pub inactivity_timeout: Duration,
    /// Time without a decision before the default rule applies.
    pub peek_timeout: Duration,
    /// Bytes buffered before a decision; past it the default rule applies.
    pub max_peek: usize,
    /// How often `to` host names are looked up again.
    pub resolve_interval: Duration,
    /// The rules and the default.
    pub rules: Rules,
}

impl RouteConfig {
    /// The relay settings, listening on `listen` (the file's `listen` when
    /// the command line gave none).
    pub fn settings(&self, listen: SocketAddr) -> Settings {
        Settings {
            connect_timeout: self.connect_timeout,
            inactivity_timeout: self.inactivity_timeout,
            peek_timeout: self.peek_timeout,
            max_peek: self.max_peek,
            resolve_interval: self.resolve_interval,
            ..Settings::new(listen)
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<Spanned<String>>,
    connect_timeout: Option<Spanned<String>>,
    inactivity_timeout: Option<Spanned<String>>,
    peek_timeout: Option<Spanned<String>>,
    resolve_interval: Option<Spanned<String>>,
    /// A byte count or a size string (`"16KiB"`).
    max_peek: Option<Spanned<toml::Value>>,
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<Spanned<String>>,
    regex: Option<Spanned<String>>,
    http_host: Option<Spanned<String>>,
    tls_sni: Option<Spanned<String>>,
    prefix: Option<Spanned<String>>,
    default: Option<Spanned<bool>>,
    to: Option<Spanned<Vec<Spanned<String>>>>,
    reply: Option<Spanned<String>>,
}

/// Loads and checks a configuration file.
pub fn load(path: &Path) -> Result<RouteConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    parse(&text, &path.display().to_string())
}

/// Parses configuration `text`; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<RouteConfig, String> {
    let at = |span: std::ops::Range<usize>| format!("{file}:{}", line_of(text, span.start));
    let raw: RawConfig = toml::from_str(text).map_err(|e| toml_error(text, file, &e))?;
    let duration = |v: &Option<Spanned<String>>, key: &str, default: Duration| match v {
        None => Ok(default),
        Some(s) => parse_duration(s.get_ref()).map_err(|e| format!("{}: {key} = {:?}: {e}", at(s.span()), s.get_ref())),
    };
    let listen = match &raw.listen {
        None => None,
        Some(s) => {
            Some(resolve(s.get_ref()).map_err(|e| format!("{}: listen = {:?}: {e}", at(s.span()), s.get_ref()))?)
        }
    };
    let max_peek = match &raw.max_peek {
        None => DEFAULT_MAX_PEEK,
        Some(s) => {
            let bytes = match s.get_ref() {
                toml::Value::Integer(n) => usize::try_from(*n).ok(),
                toml::Value::String(v) => {
                    Some(parse_size(v).map_err(|e| format!("{}: max_peek = {v:?}: {e}", at(s.span())))?)
                }
                _ => None,
            };
            bytes.filter(|n| (1..=MAX_MAX_PEEK).contains(n)).ok_or_else(|| {
                format!(
                    "{}: max_peek: expected a byte count from 1 to {MAX_MAX_PEEK}, or a size like \"16KiB\"",
                    at(s.span())
                )
            })?
        }
    };
    let mut rules = Rules::default();
    for spanned in &raw.rule {
        let r = spanned.get_ref();
        let here = at(spanned.span());
        let name = r
            .name
            .as_ref()
            .map(|n| n.get_ref().clone())
            .unwrap_or_else(|| format!("rule{}", rules.rules.len() + 1));
        let action = rule_action(r, &name, &here, &at)?;
        let is_default = r.default.as_ref().is_some_and(|d| *d.get_ref());
        for (pos, a) in r.to.iter().flat_map(|to| to.get_ref().iter()).enumerate() {
            if let Some(host_port) = backend_dns_name(a.get_ref()) {
                rules.names.push(NamedTarget {
                    rule: (!is_default).then_some(rules.rules.len()),
                    pos,
                    host_port,
                });
            }
        }
        let matchers = [
            r.regex.is_some(),
            r.http_host.is_some(),
            r.tls_sni.is_some(),
            r.prefix.is_some(),
        ];
        let count = matchers.iter().filter(|m| **m).count() + usize::from(is_default);
        if count != 1 {
            return Err(format!(
                "{here}: rule {name:?}: expected exactly one of regex, http_host, tls_sni, prefix or default = true, found {count}"
            ));
        }
        if is_default {
            if rules.default.is_some() {
                return Err(format!("{here}: rule {name:?}: a second default rule; keep one"));
            }
            rules.default = Some(action);
            continue;
        }
        let matcher = if let Some(re) = &r.regex {
            Matcher::regex(re.get_ref()).map_err(|e| format!("{}: rule {name:?}: regex: {e}", at(re.span())))?
        } else if let Some(h) = &r.http_host {
            Matcher::HttpHost(h.get_ref().clone())
        } else if let Some(s) = &r.tls_sni {
            Matcher::TlsSni(s.get_ref().clone())
        } else if let Some(p) = &r.prefix {
            if p.get_ref().is_empty() {
                return Err(format!("{}: rule {name:?}: prefix is empty", at(p.span())));
            }
            Matcher::Prefix(p.get_ref().as_bytes().to_vec())
        } else {
            return Err(format!("{here}: rule {name:?}: no matcher"));
        };
        rules.rules.push(Rule { name, matcher, action });
    }
    Ok(RouteConfig {
        listen,
        connect_timeout: duration(&raw.connect_timeout, "connect_timeout", DEFAULT_CONNECT_TIMEOUT)?,
        inactivity_timeout: duration(
            &raw.inactivity_timeout,
            "inactivity_timeout",
            DEFAULT_INACTIVITY_TIMEOUT,
        )?,
        peek_timeout: duration(&raw.peek_timeout, "peek_timeout", DEFAULT_PEEK_TIMEOUT)?,
        max_peek,
        resolve_interval: match duration(&raw.resolve_interval, "resolve_interval", DEFAULT_RESOLVE_INTERVAL)? {
            d if d < MIN_RESOLVE_INTERVAL => {
                return Err(format!(
                    "{}: resolve_interval: expected at least {MIN_RESOLVE_INTERVAL:?}",
                    raw.resolve_interval.as_ref().map_or(String::new(), |s| at(s.span()))
                ));
            }
            d => d,
        },
        rules,
    })
}

/// `to` (addresses in failover order) or `reply` (bytes), exactly one.
fn rule_action(
    r: &RawRule,
    name: &str,
    here: &str,
    at: &dyn Fn(std::ops::Range<usize>) -> String,
) -> Result<Action, String> {
    match (&r.to, &r.reply) {
        (Some(to), None) => {
            if to.get_ref().is_empty() {
                return Err(format!(
                    "{}: rule {name:?}: to is empty; give at least one HOST:PORT",
                    at(to.span())
                ));
            }
            let addrs = to
                .get_ref()
                .iter()
                .map(|a| {
                    resolve(a.get_ref())
                        .map_err(|e| format!("{}: rule {name:?}: to {:?}: {e}", at(a.span()), a.get_ref()))
                })
                .collect::<Result<_, _>>()?;
            Ok(Action::To(addrs))
        }
        (None, Some(reply)) => Ok(Action::Reply(reply.get_ref().as_bytes().to_vec())),
        _ => Err(format!(
            "{here}: rule {name:?}: expected exactly one of to = [...] or reply = \"...\""
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"listen = "127.0.0.1:7000"          # --listen overrides
connect_timeout = "2s"
inactivity_timeout = "5m"
peek_timeout = "1s"
max_peek = 16384

[[rule]]                           # rules are tried in order; first Match wins
name = "git"
regex = '^[0-9a-f]{4}git-upload-pack /'
to = ["127.0.0.5:9418", "127.0.0.6:9418"]

[[rule]]
name = "web"
http_host = "app.example"
to = ["127.0.0.1:8080"]

[[rule]]
name = "tls"
tls_sni = "secure.example"
to = ["127.0.0.1:8443"]

[[rule]]
name = "ping"
prefix = "PING"
reply = "PONG\r\n"

[[rule]]
name = "fallback"
default = true
to = ["127.0.0.1:9000"]
"#;

    #[test]
    fn the_schema_from_the_issue_loads() {
        let c = parse(EXAMPLE, "routes.toml").unwrap();
        assert_eq!(c.listen, Some("127.0.0.1:7000".parse().unwrap()));
        assert_eq!(c.inactivity_timeout, Duration::from_secs(300));
        assert_eq!(c.max_peek, 16384);
        let names: Vec<_> = c.rules.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["git", "web", "tls", "ping"]);
        assert_eq!(
            c.rules.rules[0].action,
            Action::To(vec![
                "127.0.0.5:9418".parse().unwrap(),
                "127.0.0.6:9418".parse().unwrap()
            ])
        );
        assert_eq!(c.rules.rules[3].action, Action::Reply(b"PONG\r\n".to_vec()));
        assert_eq!(
            c.rules.default,
            Some(Action::To(vec!["127.0.0.1:9000".parse().unwrap()]))
        );
    }

    #[test]
    fn max_peek_takes_a_size() {
        let c = parse("max_peek = \"16KiB\"\n", "routes.toml").unwrap();
        assert_eq!(c.max_peek, 16 * 1024);
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let cases: &[(&str, &str)] = &[
            ("connect_timeout = \"2\"\n", "routes.toml:1: connect_timeout"),
            ("\n\nmax_peek = 0\n", "routes.toml:3: max_peek"),
            (
                "\nmax_peek = \"lots\"\n",
                "routes.toml:2: max_peek = \"lots\": expected a size like",
            ),
            (
                "max_peek = \"2MiB\"\n",
                "routes.toml:1: max_peek: expected a byte count from 1 to",
            ),
            ("max_peek = true\n", "routes.toml:1: max_peek: expected a byte count"),
            ("listen = \"nowhere\"\n", "routes.toml:1: listen"),
            (
                "[[rule]]\nname = \"x\"\nregex = '('\nto = [\"127.0.0.1:1\"]\n",
                "routes.toml:3: rule \"x\": regex",
            ),
            (
                "[[rule]]\nname = \"x\"\nregex = '('\nto = [\"127.0.0.1:1\"]\n",
                "unclosed group",
            ),
            (
                "[[rule]]\nname = \"x\"\nprefix = \"P\"\n",
                "rule \"x\": expected exactly one of to",
            ),
            (
                "[[rule]]\nname = \"x\"\nprefix = \"P\"\nhttp_host = \"h\"\nto = [\"127.0.0.1:1\"]\n",
                "found 2",
            ),
            (
                "[[rule]]\nname = \"x\"\nprefix = \"P\"\nto = [\"127.0.0.1:1\", \"bad\"]\n",
                "routes.toml:4: rule \"x\": to \"bad\"",
            ),
            ("[[rule]]\nnmae = \"typo\"\n", "routes.toml:2"),
            ("listen = \n", "routes.toml:1"),
        ];
        for (text, want) in cases {
            let err = parse(text, "routes.toml").unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
