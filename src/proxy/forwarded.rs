//! The client's address for the backends: `X-Forwarded-For` and an
//! RFC 7239 `Forwarded` element, each appended to what the client sent.

use std::net::IpAddr;

use super::hooks::Request;
use crate::http::HeadRewrite;

/// Adds the client's address of `request` to both fields in `rw`; `https`:
/// the client came over TLS (`proto=https`).
pub(crate) fn add(request: &Request<'_>, rw: &mut HeadRewrite, https: bool) {
    let ip = request.peer().ip();
    let xff = joined(request, "x-forwarded-for", &ip.to_string());
    let node = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        // RFC 7239 §6: an IPv6 node is bracketed and quoted.
        IpAddr::V6(v6) => format!("\"[{v6}]\""),
    };
    let proto = if https { "https" } else { "http" };
    let forwarded = joined(request, "forwarded", &format!("for={node};proto={proto}"));
    // The client's own values are valid field values already; ours are too.
    let _ = rw.set("X-Forwarded-For", xff);
    let _ = rw.set("Forwarded", forwarded);
}

/// Every value of field `name` in the request, then `ours`, comma-separated.
fn joined(request: &Request<'_>, name: &str, ours: &str) -> String {
    let head = request.head();
    let bytes = request.bytes();
    let mut out = String::new();
    for f in head
        .fields()
        .iter()
        .filter(|f| f.name.get(bytes).eq_ignore_ascii_case(name.as_bytes()))
    {
        let value = String::from_utf8_lossy(f.value.get(bytes));
        if !value.is_empty() {
            out.push_str(&value);
            out.push_str(", ");
        }
    }
    out.push_str(ours);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Connection, HeadStatus, RequestHead, write_request};

    fn rewritten(raw: &[u8], peer: &str) -> String {
        let mut head = RequestHead::new();
        assert!(matches!(head.parse(raw), Ok(HeadStatus::Complete(_))));
        let request = Request::new(&head, raw, peer.parse().unwrap());
        let mut rw = HeadRewrite::new(Connection::KeepAlive);
        add(&request, &mut rw, false);
        let mut out = Vec::new();
        write_request(&head, raw, &rw, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn appends_to_what_the_client_sent() {
        let out = rewritten(
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2\r\nForwarded: for=10.0.0.1\r\n\r\n",
            "192.0.2.7:5000",
        );
        assert!(
            out.contains("X-Forwarded-For: 10.0.0.1, 10.0.0.2, 192.0.2.7\r\n"),
            "{out}"
        );
        assert!(
            out.contains("Forwarded: for=10.0.0.1, for=192.0.2.7;proto=http\r\n"),
            "{out}"
        );
        assert_eq!(out.matches("X-Forwarded-For").count(), 1, "{out}");
    }

    #[test]
    fn ipv6_nodes_are_quoted() {
        let out = rewritten(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "[2001:db8::1]:80");
        assert!(out.contains("X-Forwarded-For: 2001:db8::1\r\n"), "{out}");
        assert!(out.contains("Forwarded: for=\"[2001:db8::1]\";proto=http\r\n"), "{out}");
    }
}
