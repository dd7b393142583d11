//! Re-serializing a head for the next hop: hop-by-hop fields dropped, the
//! Connection field the proxy wants, per-destination field edits, and an
//! absolute-form target turned into origin form.

use std::fmt;

use super::fields::{eq_lower, is_field_vchar, is_token, list_items};
use super::head::Field;
use super::limits::MAX_TARGET_LEN;
use super::request::{RequestHead, TargetForm};
use super::response::ResponseHead;

/// The Connection field a rewritten head carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Connection {
    /// `Connection: close`.
    #[default]
    Close,
    /// `Connection: keep-alive`.
    KeepAlive,
    /// `Connection: upgrade`, and the Upgrade field is kept.
    Upgrade,
    /// No Connection field (for interim responses).
    Omit,
}

/// A field edit a [`HeadRewrite`] refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidEdit {
    reason: &'static str,
}

impl fmt::Display for InvalidEdit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason)
    }
}

impl std::error::Error for InvalidEdit {}

/// Fields that frame the message or that the proxy itself manages: a rewrite
/// may not touch them, and a Connection field naming them does not remove
/// them (that would let a client change how the next hop frames the body).
const PROTECTED: [&[u8]; 3] = [b"content-length", b"transfer-encoding", b"connection"];

/// Hop-by-hop fields (RFC 9110 §7.6.1), dropped whatever Connection says.
const HOP_BY_HOP: [&[u8]; 6] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"te",
    b"trailer",
    b"upgrade",
];

/// How to rewrite a head for one destination.
///
/// ```
/// use kage::http::{Connection, HeadRewrite, RequestHead, write_request};
/// let buf = b"GET http://a.example/x HTTP/1.1\r\nHost: a.example\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nAccept: */*\r\n\r\n";
/// let mut head = RequestHead::new();
/// head.parse(buf).unwrap();
/// let mut rw = HeadRewrite::new(Connection::KeepAlive);
/// rw.set("X-Shadow", "1").unwrap();
/// let mut out = Vec::new();
/// write_request(&head, buf, &rw, &mut out);
/// assert_eq!(out, b"GET /x HTTP/1.1\r\nHost: a.example\r\nAccept: */*\r\nX-Shadow: 1\r\nConnection: keep-alive\r\n\r\n");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeadRewrite {
    connection: Connection,
    /// Names whose original fields are dropped (lower case).
    removed: Vec<Vec<u8>>,
    /// Fields added after the original ones, in order.
    added: Vec<(Vec<u8>, Vec<u8>)>,
    target: Option<Vec<u8>>,
}

impl HeadRewrite {
    /// No edits; the given Connection field.
    pub fn new(connection: Connection) -> Self {
        HeadRewrite {
            connection,
            ..HeadRewrite::default()
        }
    }

    /// The Connection field the head will carry.
    pub fn connection(&self) -> Connection {
        self.connection
    }

    /// Changes the Connection field the head will carry.
    pub fn set_connection(&mut self, connection: Connection) -> &mut Self {
        self.connection = connection;
        self
    }

    /// Replaces every field named `name` (original or added) with one.
    pub fn set(&mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<&mut Self, InvalidEdit> {
        let (name, value) = (name.as_ref(), value.as_ref());
        check_value(value)?;
        self.remove(name)?;
        self.added.push((name.to_vec(), value.to_vec()));
        Ok(self)
    }

    /// Adds a field after the others, keeping any of the same name.
    pub fn append(&mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<&mut Self, InvalidEdit> {
        let (name, value) = (name.as_ref(), value.as_ref());
        check_name(name)?;
        check_value(value)?;
        self.added.push((name.to_vec(), value.to_vec()));
        Ok(self)
    }

    /// Drops every field named `name` (original or added).
    pub fn remove(&mut self, name: impl AsRef<[u8]>) -> Result<&mut Self, InvalidEdit> {
        let name = name.as_ref();
        check_name(name)?;
        self.added.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        if !self.removed.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            self.removed.push(name.to_ascii_lowercase());
        }
        Ok(self)
    }

    /// Sends this origin-form target (`/path?query`) instead of the original.
    pub fn set_target(&mut self, target: impl AsRef<[u8]>) -> Result<&mut Self, InvalidEdit> {
        let target = target.as_ref();
        if target.first() != Some(&b'/')
            || target.len() > MAX_TARGET_LEN
            || !target.iter().all(|&b| b > b' ' && b < 0x7f)
        {
            return Err(InvalidEdit {
                reason: "a target must start with '/' and hold only visible ASCII",
            });
        }
        self.target = Some(target.to_vec());
        Ok(self)
    }

    /// The fields this rewrite adds, in order.
    pub fn added(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.added.iter().map(|(n, v)| (n.as_slice(), v.as_slice()))
    }

    fn removes(&self, name: &[u8]) -> bool {
        self.removed.iter().any(|n| n.eq_ignore_ascii_case(name))
    }
}

fn check_name(name: &[u8]) -> Result<(), InvalidEdit> {
    if !is_token(name) {
        return Err(InvalidEdit {
            reason: "a field name must be a non-empty token",
        });
    }
    if PROTECTED.iter().any(|p| name.eq_ignore_ascii_case(p)) {
        return Err(InvalidEdit {
            reason: "Content-Length, Transfer-Encoding and Connection are managed by the proxy",
        });
    }
    Ok(())
}

fn check_value(value: &[u8]) -> Result<(), InvalidEdit> {
    if !value.iter().all(|&b| is_field_vchar(b)) {
        return Err(InvalidEdit {
            reason: "a field value may not hold CR, LF, NUL or other controls",
        });
    }
    Ok(())
}

/// Writes `head` (parsed from `buf`) as the next hop should receive it,
/// replacing the contents of `out` with at most one allocation.
///
/// The framing goes out in one canonical field, whatever the client sent
/// (empty list elements, `CHUNKED`, leading zeros, a repeated
/// Content-Length): every Content-Length and Transfer-Encoding field is
/// dropped and, in place of the first of them and with its name as spelled,
/// one `Transfer-Encoding: chunked` or `Content-Length: <decimal>` (no
/// leading zeros; `0` when 0 was sent) is written. A field that was already
/// canonical goes out byte for byte.
pub fn write_request(head: &RequestHead, buf: &[u8], rw: &HeadRewrite, out: &mut Vec<u8>) {
    let original = head.target(buf);
    let (target, slash): (&[u8], bool) = match (&rw.target, head.target_form()) {
        (Some(t), _) => (t, false),
        (None, TargetForm::Absolute) => {
            let path = head.path(buf);
            (path, path.first() != Some(&b'/'))
        }
        (None, _) => (original, false),
    };
    // An absolute-form target names the host; Host must agree (RFC 9112 §3.2.2).
    let host = match head.target_form() {
        TargetForm::Absolute if !rw.removes(b"host") => head.host(buf),
        _ => None,
    };
    let start: [&[u8]; 7] = [
        head.method_bytes(buf),
        b" ",
        if slash { b"/" } else { b"" },
        target,
        b" ",
        head.version().as_bytes(),
        b"\r\n",
    ];
    let mut digits = [0u8; 20];
    let framing = head.framing_value(&mut digits);
    write_head(&start, host, framing, head.fields(), buf, rw, out);
}

/// Writes a response head like [`write_request`] writes a request head.
pub fn write_response(head: &ResponseHead, buf: &[u8], rw: &HeadRewrite, out: &mut Vec<u8>) {
    let mut code = [0u8; 3];
    let status = head.status();
    for (i, d) in code.iter_mut().enumerate() {
        *d = b'0' + (status / 10u16.pow(2 - i as u32) % 10) as u8;
    }
    let start: [&[u8]; 7] = [
        head.version().as_bytes(),
        b" ",
        &code,
        b" ",
        head.reason(buf),
        b"\r\n",
        b"",
    ];
    write_head(&start, None, None, head.fields(), buf, rw, out);
}

/// Content-Length or Transfer-Encoding (a name httparse checked is a token).
fn is_framing_name(name: &[u8]) -> bool {
    eq_lower(name, b"content-length") || eq_lower(name, b"transfer-encoding")
}

/// `framing`: the value of the one canonical framing field that replaces
/// every Content-Length and Transfer-Encoding field (requests), or `None` to
/// keep those fields as they are (responses).
fn write_head(
    start: &[&[u8]],
    host: Option<&[u8]>,
    framing: Option<&[u8]>,
    fields: &[Field],
    buf: &[u8],
    rw: &HeadRewrite,
    out: &mut Vec<u8>,
) {
    let keep = |f: &Field| -> bool {
        let name = f.name.get(buf);
        if host.is_some() && name.eq_ignore_ascii_case(b"host") {
            return false;
        }
        if rw.removes(name) {
            return false;
        }
        if HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h)) {
            return rw.connection == Connection::Upgrade && name.eq_ignore_ascii_case(b"upgrade");
        }
        !named_by_connection(name, fields, buf)
    };
    let connection: &[u8] = match rw.connection {
        Connection::Close => b"Connection: close\r\n",
        Connection::KeepAlive => b"Connection: keep-alive\r\n",
        Connection::Upgrade => b"Connection: upgrade\r\n",
        Connection::Omit => b"",
    };
    let mut kept = [false; super::limits::MAX_HEADERS];
    let mut len = start.iter().map(|s| s.len()).sum::<usize>() + connection.len() + 2;
    if let Some(h) = host {
        len += 8 + h.len();
    }
    // The index of the field the canonical framing field replaces.
    let mut framing_at = None;
    for (i, (f, k)) in fields.iter().zip(kept.iter_mut()).enumerate() {
        if let Some(value) = framing
            && is_framing_name(f.name.get(buf))
        {
            if framing_at.is_none() {
                framing_at = Some(i);
                len += f.name.len() + value.len() + 4;
            }
            continue;
        }
        *k = keep(f);
        if *k {
            len += f.name.len() + f.value.len() + 4;
        }
    }
    len += rw.added.iter().map(|(n, v)| n.len() + v.len() + 4).sum::<usize>();
    out.clear();
    out.reserve(len);
    for s in start {
        out.extend_from_slice(s);
    }
    if let Some(h) = host {
        put_field(out, b"Host", h);
    }
    for (i, (f, k)) in fields.iter().zip(kept).enumerate() {
        if k {
            put_field(out, f.name.get(buf), f.value.get(buf));
        } else if let (Some(value), true) = (framing, framing_at == Some(i)) {
            put_field(out, f.name.get(buf), value);
        }
    }
    for (n, v) in &rw.added {
        put_field(out, n, v);
    }
    out.extend_from_slice(connection);
    out.extend_from_slice(b"\r\n");
    debug_assert_eq!(out.len(), len);
}

fn put_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// True when a Connection field lists `name` and `name` is not one the
/// proxy must keep.
fn named_by_connection(name: &[u8], fields: &[Field], buf: &[u8]) -> bool {
    if PROTECTED.iter().any(|p| name.eq_ignore_ascii_case(p)) || name.eq_ignore_ascii_case(b"host") {
        return false;
    }
    fields
        .iter()
        .filter(|f| f.name.get(buf).eq_ignore_ascii_case(b"connection"))
        .any(|f| list_items(f.value.get(buf)).any(|o| o.eq_ignore_ascii_case(name)))
}
