//! The plan of one exchange, sans-IO: which backends a request goes to, the
//! head each of them gets, and what the client is told about keep-alive.
//! Nothing here touches a socket; the session carries the plan out.

use super::config::{Backend, Config, KeepAlive, Role};
use super::hooks::{Request, Selection};
use crate::http::{Connection, Framing, HeadRewrite};

/// The backends a request goes to: what the hooks picked, less indices
/// past `backends`; the master alone when that leaves none, and for an
/// upgrade or CONNECT (a tunnel is the master's alone).
pub(crate) fn selection(picked: Selection, backends: usize, master: usize, tunnel: bool) -> Selection {
    let valid = picked
        .iter()
        .filter(|&i| i < backends)
        .fold(Selection::none(), Selection::with);
    if valid.is_empty() || tunnel {
        Selection::only(master)
    } else {
        valid
    }
}

/// The Connection field a backend's request carries. `direct`: the
/// backend answers the client (the master); `multi`: others get the
/// request too; `upgrade`: the client asked for one.
pub(crate) fn backend_connection(direct: bool, multi: bool, upgrade: bool, keep_alive: KeepAlive) -> Connection {
    if direct && !multi && upgrade {
        Connection::Upgrade
    } else if keep_alive == KeepAlive::Always || (direct && !multi) {
        Connection::KeepAlive
    } else {
        // Kage's rule: a shadowed request closes every connection after it.
        Connection::Close
    }
}

/// The head rewrite for `backend`, before the hooks' `munge_request`:
/// its header rules, the client's address when asked, the Host and path
/// rewrites, the shadow marker (`exchange_id`), and no `Expect` on copies.
pub(crate) fn backend_rewrite(
    cfg: &Config,
    backend: &Backend,
    request: &Request<'_>,
    connection: Connection,
    direct: bool,
    exchange_id: u64,
) -> HeadRewrite {
    // Edits the operator configured were checked when the config was read;
    // one a rewrite still refuses is skipped rather than sent half-made.
    let mut rw = HeadRewrite::new(connection);
    for name in &backend.remove_headers {
        let _ = rw.remove(name);
    }
    for (name, value) in &backend.set_headers {
        let _ = rw.set(name, value);
    }
    if cfg.forward_client_ip {
        super::forwarded::add(request, &mut rw, !cfg.tls.is_empty());
    }
    if let Some(host) = &backend.host {
        let _ = rw.set("host", host);
    }
    if let Some((from, to)) = &backend.path_prefix {
        if let Some(rest) = request.target().strip_prefix(from.as_bytes()) {
            let _ = rw.set_target([to.as_bytes(), rest].concat());
        }
    }
    if !direct && backend.role == Role::Shadow {
        if let Some(marker) = &backend.marker {
            let _ = rw.set(marker, exchange_id.to_string());
        }
    }
    if !direct {
        // Copies carry the whole body; nobody will answer 100 to them.
        let _ = rw.remove("expect");
    }
    rw
}

/// What the client connection may do after this exchange, as far as its
/// request and the master's answer say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeepAnswer {
    /// The client asked for keep-alive (version and Connection).
    pub(crate) client_asked: bool,
    /// The master's response allows another request.
    pub(crate) master_allows: bool,
    /// Shadows get the request too.
    pub(crate) shadowed: bool,
    /// The request body was all read (else the connection is out of step).
    pub(crate) body_done: bool,
    /// The client already closed its side, or the proxy is shutting down.
    pub(crate) ending: bool,
}

impl KeepAnswer {
    /// Whether the client connection stays open: Kage's rule (a shadowed
    /// request closes it) unless `keep_alive` is `Always`.
    pub(crate) fn keep(self, keep_alive: KeepAlive) -> bool {
        self.client_asked
            && self.master_allows
            && (!self.shadowed || keep_alive == KeepAlive::Always)
            && self.body_done
            && !self.ending
    }
}

/// The Connection field of the response head the client gets.
pub(crate) fn client_connection(framing: Framing, status: u16, keep: bool) -> Connection {
    match framing {
        Framing::Tunnel if status == 101 => Connection::Upgrade,
        Framing::Tunnel => Connection::Omit,
        _ if keep => Connection::KeepAlive,
        _ => Connection::Close,
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::http::{RequestHead, write_request};

    const MASTER: usize = 0;

    fn backends() -> Vec<Backend> {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut shadow = Backend::new("new", addr, Role::Shadow);
        shadow.set_headers.push(("X-Env".into(), "shadow".into()));
        shadow.remove_headers.push("Authorization".into());
        shadow.host = Some("new.internal".into());
        shadow.path_prefix = Some(("/api/".into(), "/v2/".into()));
        vec![Backend::new("master", addr, Role::Master), shadow]
    }

    #[test]
    fn selection_keeps_valid_backends_and_gives_tunnels_to_the_master() {
        let both = Selection::only(0).with(1);
        assert_eq!(selection(both, 2, MASTER, false), both);
        assert_eq!(
            selection(Selection::only(1).with(7), 2, MASTER, false),
            Selection::only(1)
        );
        assert_eq!(selection(Selection::only(9), 2, MASTER, false), Selection::only(MASTER));
        assert_eq!(selection(Selection::none(), 2, MASTER, false), Selection::only(MASTER));
        assert_eq!(selection(both, 2, MASTER, true), Selection::only(MASTER));
    }

    #[test]
    fn backend_connection_follows_kages_rule_unless_always() {
        let (only, always) = (KeepAlive::MasterOnly, KeepAlive::Always);
        assert_eq!(backend_connection(true, false, false, only), Connection::KeepAlive);
        assert_eq!(backend_connection(true, false, true, only), Connection::Upgrade);
        assert_eq!(backend_connection(true, true, false, only), Connection::Close);
        assert_eq!(backend_connection(false, true, false, only), Connection::Close);
        assert_eq!(backend_connection(false, true, false, always), Connection::KeepAlive);
        assert_eq!(
            backend_connection(true, true, true, always),
            Connection::KeepAlive,
            "no upgrade when shadowed"
        );
    }

    #[test]
    fn a_shadow_gets_its_rules_the_marker_and_no_expect() {
        let backends = backends();
        let mut cfg = Config::new("127.0.0.1:0".parse().unwrap(), backends.clone());
        cfg.forward_client_ip = true;
        let buf = b"POST /api/x HTTP/1.1\r\nHost: a\r\nAuthorization: secret\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n";
        let mut head = RequestHead::new();
        head.parse(buf).unwrap();
        let request = Request::new(&head, buf, "192.0.2.7:5000".parse().unwrap());
        let mut out = Vec::new();
        let rw = backend_rewrite(&cfg, &backends[1], &request, Connection::Close, false, 17);
        write_request(&head, buf, &rw, &mut out);
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "POST /v2/x HTTP/1.1\r\nContent-Length: 1\r\nX-Env: shadow\r\nX-Forwarded-For: 192.0.2.7\r\n\
             Forwarded: for=192.0.2.7;proto=http\r\nhost: new.internal\r\nX-Kage-Shadow: 17\r\nConnection: close\r\n\r\n"
        );
        // The master answers the client: it keeps Expect, gets no marker.
        let rw = backend_rewrite(&cfg, &backends[0], &request, Connection::KeepAlive, true, 17);
        write_request(&head, buf, &rw, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("Expect: 100-continue\r\n") && !text.contains("X-Kage-Shadow"),
            "{text}"
        );
    }

    #[test]
    fn the_client_keeps_its_connection_only_when_everything_allows() {
        let all = KeepAnswer {
            client_asked: true,
            master_allows: true,
            shadowed: false,
            body_done: true,
            ending: false,
        };
        assert!(all.keep(KeepAlive::MasterOnly));
        let shadowed = KeepAnswer { shadowed: true, ..all };
        assert!(!shadowed.keep(KeepAlive::MasterOnly), "Kage's rule");
        assert!(shadowed.keep(KeepAlive::Always));
        for off in [
            KeepAnswer {
                client_asked: false,
                ..all
            },
            KeepAnswer {
                master_allows: false,
                ..all
            },
            KeepAnswer {
                body_done: false,
                ..all
            },
            KeepAnswer { ending: true, ..all },
        ] {
            assert!(!off.keep(KeepAlive::Always), "{off:?}");
        }
        assert_eq!(client_connection(Framing::Tunnel, 101, true), Connection::Upgrade);
        assert_eq!(client_connection(Framing::Tunnel, 200, true), Connection::Omit);
        assert_eq!(client_connection(Framing::Length(3), 200, true), Connection::KeepAlive);
        assert_eq!(client_connection(Framing::Chunked, 200, false), Connection::Close);
    }
}
