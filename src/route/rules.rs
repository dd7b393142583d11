//! Declarative routing rules: each looks at the bytes a connection has sent
//! so far and says Match, NoMatch or NeedMore.

use std::net::SocketAddr;

use log::debug;
use regex_automata::Anchored;
use regex_automata::dfa::dense::{self, DFA};
use regex_automata::dfa::{Automaton, StartKind};
use regex_automata::util::start;

use super::sni::{self, Sni};
use super::{Decision, Router};
use crate::http::{HeadStatus, RequestHead};

/// What one rule says about the bytes so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The rule applies.
    Match,
    /// It cannot apply, whatever comes next.
    NoMatch,
    /// More bytes are needed to tell.
    NeedMore,
}

/// What a rule looks for.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// These literal bytes at the start of the stream.
    Prefix(Vec<u8>),
    /// A regular expression anchored at the first byte of the stream.
    Regex(Box<DFA<Vec<u32>>>),
    /// The Host of an HTTP/1 request head (case-insensitive, port ignored).
    HttpHost(String),
    /// The server name of a TLS ClientHello; `*.example` matches one label.
    TlsSni(String),
}

impl Matcher {
    /// A regex matcher; the error says what is wrong with the pattern.
    pub fn regex(pattern: &str) -> Result<Matcher, String> {
        let dfa = dense::Builder::new()
            .configure(DFA::config().start_kind(StartKind::Anchored))
            .build(pattern)
            .map_err(|e| {
                // The cause (the syntax error) is in the source chain.
                let mut msg = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    msg = format!("{msg}: {s}");
                    source = s.source();
                }
                msg
            })?;
        Ok(Matcher::Regex(Box::new(dfa)))
    }

    /// Judges the bytes a connection has sent so far.
    pub fn verdict(&self, buf: &[u8]) -> Verdict {
        match self {
            Matcher::Prefix(p) if buf.starts_with(p) => Verdict::Match,
            Matcher::Prefix(p) if p.starts_with(buf) => Verdict::NeedMore,
            Matcher::Prefix(_) => Verdict::NoMatch,
            Matcher::Regex(dfa) => regex_verdict(dfa, buf),
            Matcher::HttpHost(host) => host_verdict(host, buf),
            Matcher::TlsSni(pattern) => match sni::server_name(buf) {
                Sni::NeedMore => Verdict::NeedMore,
                Sni::NotTls | Sni::Name(None) => Verdict::NoMatch,
                Sni::Name(Some(name)) if name_matches(pattern, &name) => Verdict::Match,
                Sni::Name(Some(_)) => Verdict::NoMatch,
            },
        }
    }
}

/// Walks the DFA over the bytes: a dead state means no continuation can
/// match; a match state (also at the end of the bytes so far) is a match.
fn regex_verdict(dfa: &DFA<Vec<u32>>, buf: &[u8]) -> Verdict {
    let Ok(mut state) = dfa.start_state(&start::Config::new().anchored(Anchored::Yes)) else {
        return Verdict::NoMatch;
    };
    for &b in buf {
        state = dfa.next_state(state, b);
        if dfa.is_match_state(state) {
            return Verdict::Match;
        }
        if dfa.is_dead_state(state) || dfa.is_quit_state(state) {
            return Verdict::NoMatch;
        }
    }
    if dfa.is_match_state(dfa.next_eoi_state(state)) {
        Verdict::Match
    } else {
        Verdict::NeedMore
    }
}

/// A complete request head whose host (port ignored) is `host`.
fn host_verdict(host: &str, buf: &[u8]) -> Verdict {
    if !could_be_request_line(buf) {
        return Verdict::NoMatch;
    }
    let mut head = RequestHead::new();
    match head.parse(buf) {
        Ok(HeadStatus::Partial) => Verdict::NeedMore,
        Err(_) => Verdict::NoMatch,
        Ok(HeadStatus::Complete(_)) => {
            let sent = head.host(buf).unwrap_or_default();
            let name = match sent {
                [b'[', ..] => sent.iter().position(|&b| b == b']').map_or(sent, |i| &sent[..=i]),
                _ => sent.split(|&b| b == b':').next().unwrap_or_default(),
            };
            if name.eq_ignore_ascii_case(host.as_bytes()) {
                Verdict::Match
            } else {
                Verdict::NoMatch
            }
        }
    }
}

/// The bytes can still start `METHOD SP target`: a token, then visible ASCII.
fn could_be_request_line(buf: &[u8]) -> bool {
    /// Longer method tokens than this are not taken for HTTP.
    const MAX_METHOD: usize = 32;
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    let method_end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    let method = &line[..method_end];
    if method.len() > MAX_METHOD || (!method.is_empty() && !crate::http::is_method_token(method)) {
        return false;
    }
    let rest = line.get(method_end + 1..).unwrap_or_default();
    rest.iter().all(|&b| (b' '..0x7f).contains(&b) || b == b'\r')
}

/// `name` is `pattern`, or `pattern` is `*.rest` and `name` is one label
/// followed by `.rest` (case-insensitive).
fn name_matches(pattern: &str, name: &[u8]) -> bool {
    match pattern.strip_prefix("*.") {
        Some(rest) => match name.iter().position(|&b| b == b'.') {
            Some(dot) if dot > 0 => name[dot + 1..].eq_ignore_ascii_case(rest.as_bytes()),
            _ => false,
        },
        None => name.eq_ignore_ascii_case(pattern.as_bytes()),
    }
}

/// What a rule does when it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Connect to these, in failover order.
    To(Vec<SocketAddr>),
    /// Send these bytes and close; no backend.
    Reply(Vec<u8>),
}

/// One named rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Name for logs.
    pub name: String,
    /// What it looks for.
    pub matcher: Matcher,
    /// What it does.
    pub action: Action,
}

/// Rules tried in order (the first Match wins), and a default for when every
/// rule says NoMatch, the peek timeout passes, or `max_peek` is reached.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// The rules, in order.
    pub rules: Vec<Rule>,
    /// The default action, if any (else such connections are closed).
    pub default: Option<Action>,
    /// The `to` addresses given by host name, looked up again while
    /// routing ([`Router::names`]).
    pub names: Vec<NamedTarget>,
}

/// One `to` address given as `HOST:PORT` with a host name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedTarget {
    /// The rule's index in [`Rules::rules`]; `None`: the default.
    pub rule: Option<usize>,
    /// Its place in the rule's `to` list.
    pub pos: usize,
    /// `HOST:PORT` as given.
    pub host_port: String,
}

impl Rules {
    /// The first matching rule's index, NeedMore while an earlier rule cannot
    /// tell yet, or NoMatch when every rule said so.
    pub fn evaluate(&self, buf: &[u8]) -> Result<usize, Verdict> {
        for (i, rule) in self.rules.iter().enumerate() {
            match rule.matcher.verdict(buf) {
                Verdict::Match => return Ok(i),
                Verdict::NeedMore => return Err(Verdict::NeedMore),
                Verdict::NoMatch => {}
            }
        }
        Err(Verdict::NoMatch)
    }

    /// The address list `target` is in.
    fn addrs_mut(&mut self, target: &NamedTarget) -> Option<&mut SocketAddr> {
        let action = match target.rule {
            Some(i) => self.rules.get_mut(i).map(|r| &mut r.action),
            None => self.default.as_mut(),
        };
        match action {
            Some(Action::To(addrs)) => addrs.get_mut(target.pos),
            _ => None,
        }
    }

    fn decision(action: Option<&Action>) -> Decision {
        match action {
            Some(Action::To(addrs)) => Decision::Remote(addrs.clone()),
            Some(Action::Reply(bytes)) => Decision::CloseWith(bytes.clone()),
            None => Decision::Close,
        }
    }
}

impl Router for Rules {
    fn route(&mut self, buffered: &[u8], peer: SocketAddr) -> Decision {
        match self.evaluate(buffered) {
            Ok(i) => {
                let rule = self.rules.get(i);
                debug!("{peer}: rule {:?} matched", rule.map_or("", |r| r.name.as_str()));
                Rules::decision(rule.map(|r| &r.action))
            }
            Err(Verdict::NeedMore) => Decision::Wait,
            Err(_) => {
                debug!("{peer}: no rule matched; default");
                Rules::decision(self.default.as_ref())
            }
        }
    }

    fn on_give_up(&mut self, _buffered: &[u8], peer: SocketAddr) -> Decision {
        debug!("{peer}: default rule (peek gave up)");
        Rules::decision(self.default.as_ref())
    }

    fn names(&self) -> Vec<(String, String, SocketAddr)> {
        self.names
            .iter()
            .filter_map(|t| {
                let label = match t.rule {
                    Some(i) => self.rules.get(i)?.name.clone(),
                    None => "default".to_string(),
                };
                let addr = match t
                    .rule
                    .map_or(self.default.as_ref(), |i| self.rules.get(i).map(|r| &r.action))
                {
                    Some(Action::To(addrs)) => *addrs.get(t.pos)?,
                    _ => return None,
                };
                Some((label, t.host_port.clone(), addr))
            })
            .collect()
    }

    fn readdress(&mut self, index: usize, addr: SocketAddr) {
        if let Some(target) = self.names.get(index).cloned() {
            if let Some(slot) = self.addrs_mut(&target) {
                *slot = addr;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::sni::tests::client_hello;

    /// The verdict on every prefix of `wire`, checked to be NeedMore until a
    /// final answer and that answer from then on.
    fn verdicts(m: &Matcher, wire: &[u8]) -> Verdict {
        let last = m.verdict(wire);
        let mut decided_at = None;
        for cut in 0..=wire.len() {
            let v = m.verdict(&wire[..cut]);
            match (decided_at, v) {
                (None, Verdict::NeedMore) => {}
                (None, v) => {
                    decided_at = Some(cut);
                    assert_eq!(v, last, "prefix of {cut} bytes decided differently");
                }
                (Some(at), v) => assert_eq!(v, last, "changed its mind at {cut} after deciding at {at}"),
            }
        }
        last
    }

    #[test]
    fn prefix() {
        let m = Matcher::Prefix(b"PING".to_vec());
        assert_eq!(verdicts(&m, b"PING now"), Verdict::Match);
        assert_eq!(verdicts(&m, b"PONG"), Verdict::NoMatch);
        assert_eq!(m.verdict(b"PI"), Verdict::NeedMore);
    }

    #[test]
    fn regex_says_no_as_soon_as_it_cannot_match() {
        let m = Matcher::regex("^[0-9a-f]{4}git-upload-pack /").unwrap();
        let git = b"003egit-upload-pack /project.git\0host=example.com\0";
        assert_eq!(verdicts(&m, git), Verdict::Match);
        assert_eq!(m.verdict(b"003e"), Verdict::NeedMore);
        assert_eq!(m.verdict(b"003x"), Verdict::NoMatch, "dead after the fourth byte");
        assert_eq!(m.verdict(b"GET / HTTP/1.1\r\n"), Verdict::NoMatch);
        assert!(Matcher::regex("(").is_err());
    }

    #[test]
    fn http_host() {
        let m = Matcher::HttpHost("app.example".into());
        assert_eq!(
            verdicts(&m, b"GET / HTTP/1.1\r\nHost: App.Example:8080\r\n\r\n"),
            Verdict::Match
        );
        assert_eq!(
            verdicts(&m, b"GET / HTTP/1.1\r\nHost: other.example\r\n\r\n"),
            Verdict::NoMatch
        );
        assert_eq!(m.verdict(b"GET / HTTP/1.1\r\nHo"), Verdict::NeedMore);
        assert_eq!(
            m.verdict(&client_hello(Some("app.example"))),
            Verdict::NoMatch,
            "TLS is not HTTP"
        );
        assert_eq!(m.verdict(b"\x00\x01binary"), Verdict::NoMatch);
    }

    #[test]
    fn tls_sni() {
        let exact = Matcher::TlsSni("secure.example".into());
        let wild = Matcher::TlsSni("*.example".into());
        assert_eq!(verdicts(&exact, &client_hello(Some("SECURE.example"))), Verdict::Match);
        assert_eq!(verdicts(&wild, &client_hello(Some("a.example"))), Verdict::Match);
        assert_eq!(verdicts(&wild, &client_hello(Some("a.b.example"))), Verdict::NoMatch);
        assert_eq!(verdicts(&wild, &client_hello(Some("example"))), Verdict::NoMatch);
        assert_eq!(verdicts(&exact, &client_hello(None)), Verdict::NoMatch);
        assert_eq!(exact.verdict(b"GET / HTTP/1.1\r\n"), Verdict::NoMatch);
    }

    fn rule(name: &str, matcher: Matcher, action: Action) -> Rule {
        Rule {
            name: name.into(),
            matcher,
            action,
        }
    }

    #[test]
    fn a_readdressed_name_changes_later_decisions_only_at_its_place() {
        let (a, b, c): (SocketAddr, SocketAddr, SocketAddr) = (
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
            "127.0.0.1:3".parse().unwrap(),
        );
        let mut rules = Rules {
            rules: vec![rule("web", Matcher::Prefix(b"G".to_vec()), Action::To(vec![a, b]))],
            default: Some(Action::To(vec![b])),
            names: vec![
                NamedTarget {
                    rule: Some(0),
                    pos: 1,
                    host_port: "web2.test:80".into(),
                },
                NamedTarget {
                    rule: None,
                    pos: 0,
                    host_port: "fallback.test:80".into(),
                },
            ],
        };
        assert_eq!(
            rules.names(),
            vec![
                ("web".into(), "web2.test:80".into(), b),
                ("default".into(), "fallback.test:80".into(), b)
            ]
        );
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        rules.readdress(0, c);
        assert_eq!(rules.route(b"GET", peer), Decision::Remote(vec![a, c]));
        assert_eq!(
            rules.route(b"X", peer),
            Decision::Remote(vec![b]),
            "the default's own entry is apart"
        );
        rules.readdress(1, a);
        rules.readdress(7, a);
        assert_eq!(rules.route(b"X", peer), Decision::Remote(vec![a]));
    }

    #[test]
    fn first_match_wins_and_an_undecided_rule_waits() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let mut rules = Rules {
            rules: vec![
                rule(
                    "ping",
                    Matcher::Prefix(b"PING".to_vec()),
                    Action::Reply(b"PONG\r\n".to_vec()),
                ),
                rule("web", Matcher::HttpHost("app.example".into()), Action::To(vec![a])),
            ],
            default: Some(Action::To(vec![b])),
            names: Vec::new(),
        };
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(rules.route(b"PING", peer), Decision::CloseWith(b"PONG\r\n".to_vec()));
        assert_eq!(rules.route(b"P", peer), Decision::Wait, "ping might still match");
        assert_eq!(
            rules.route(b"GET / HTTP/1.1\r\nHost: app.example\r\n\r\n", peer),
            Decision::Remote(vec![a])
        );
        assert_eq!(rules.route(b"GET / HTTP/1.1\r\nHost: app.ex", peer), Decision::Wait);
        assert_eq!(
            rules.route(b"SSH-2.0-OpenSSH\r\n", peer),
            Decision::Remote(vec![b]),
            "default"
        );
        assert_eq!(rules.on_give_up(b"GET / HTTP/1.1\r\n", peer), Decision::Remote(vec![b]));
    }
}
