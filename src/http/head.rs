//! What request and response heads share: byte spans into the caller's
//! buffer, the version, the field list and the one pass over it that finds the
//! fields framing depends on.

use std::ops::Range;

use super::error::{Error, ErrorKind, fail};
use super::fields::{Codings, ConnectionOptions, eq_lower, is_ows, is_tchar, parse_content_length};

/// A byte range of the buffer a head was parsed from.
///
/// Heads are at most [`MAX_HEAD_LEN`](super::limits::MAX_HEAD_LEN) bytes, so
/// `u32` offsets are plenty and keep a field at 16 bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// The span of `part`, a subslice of `base`. An empty `part` may point
    /// anywhere (httparse gives a static `""` for a missing reason phrase), so
    /// anything outside `base` is the empty span.
    #[inline]
    pub(crate) fn of(base: &[u8], part: &[u8]) -> Span {
        let start = (part.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
        match start.checked_add(part.len()) {
            Some(end) if end <= base.len() && !part.is_empty() => Span::new(start, end),
            _ => Span::default(),
        }
    }

    pub(crate) fn new(start: usize, end: usize) -> Span {
        // Heads are far below 4 GiB, see MAX_HEAD_LEN.
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    /// The bytes of the span in `buf`, or empty if `buf` is too short (the
    /// caller passed another buffer than the head was parsed from).
    pub fn get(self, buf: &[u8]) -> &[u8] {
        buf.get(self.range()).unwrap_or_default()
    }

    /// The span as a range of offsets.
    pub fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }

    /// Its length in bytes.
    pub fn len(self) -> usize {
        (self.end - self.start) as usize
    }

    /// True when it covers no byte.
    pub fn is_empty(self) -> bool {
        self.start == self.end
    }
}

/// The HTTP version of a message; only 1.0 and 1.1 are accepted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Version {
    /// HTTP/1.0.
    Http10,
    /// HTTP/1.1.
    #[default]
    Http11,
}

impl Version {
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            Version::Http10 => b"HTTP/1.0",
            Version::Http11 => b"HTTP/1.1",
        }
    }

    fn from_minor(minor: u8) -> Version {
        if minor == 0 { Version::Http10 } else { Version::Http11 }
    }
}

/// One field line: name and value (without surrounding whitespace).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Field {
    /// The field name as sent (compare case-insensitively).
    pub name: Span,
    /// The field value, OWS trimmed.
    pub value: Span,
}

/// How a message's body is delimited (RFC 9112 §6).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Framing {
    /// No body: no length given, a length of 0, or a response that has none
    /// (to HEAD; 1xx, 204, 304).
    #[default]
    Empty,
    /// Exactly this many bytes (more than zero).
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// A response read until the server closes.
    UntilClose,
    /// No HTTP after the head: both ways are spliced raw (101 to an upgrade,
    /// 2xx to CONNECT).
    Tunnel,
}

/// Whether a head is complete yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadStatus {
    /// More bytes are needed; call again with them appended.
    Partial,
    /// The head is complete and is this many bytes long.
    Complete(usize),
}

/// Bit `n` is set when a field name of length `n` may be one `collect` looks
/// at: Host (4), Expect (6), Upgrade (7), Connection (10), Content-Length
/// (14), Transfer-Encoding (17).
const INTERESTING_LENGTHS: u32 = 1 << 4 | 1 << 6 | 1 << 7 | 1 << 10 | 1 << 14 | 1 << 17;

/// The fields of a head and what the framing-relevant ones say.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fields {
    pub(crate) list: Vec<Field>,
    pub(crate) content_length: Option<u64>,
    pub(crate) codings: Codings,
    pub(crate) connection: ConnectionOptions,
    pub(crate) host: Option<Span>,
    pub(crate) host_count: usize,
    pub(crate) upgrade: bool,
    pub(crate) expect_continue: bool,
}

impl Fields {
    /// Records `headers` (slices of `base`) and validates the framing fields.
    /// Also checks that every line before a field line ends in CRLF, which
    /// httparse does not (it accepts a bare LF).
    pub(crate) fn collect(&mut self, base: &[u8], headers: &[httparse::Header<'_>]) -> Result<(), Error> {
        *self = Fields {
            list: std::mem::take(&mut self.list),
            ..Fields::default()
        };
        self.list.clear();
        self.list.reserve(headers.len());
        let origin = base.as_ptr() as usize;
        for h in headers {
            let name = h.name.as_bytes();
            let value = h.value;
            // Both are inside `base` (httparse hands out subslices of it).
            let name_at = (name.as_ptr() as usize).wrapping_sub(origin);
            // httparse rejects a bare CR, so LF preceded by CR is all to check.
            if name_at < 2 || base.get(name_at - 2) != Some(&b'\r') {
                return fail(ErrorKind::BareLf);
            }
            let value_span = Span::of(base, value);
            self.list.push(Field {
                name: Span::new(name_at, name_at + name.len()),
                value: value_span,
            });
            // Most fields are none of the ones below: one predictable test on
            // the name's length skips them.
            if name.len() >= 32 || INTERESTING_LENGTHS & (1 << name.len()) == 0 {
                continue;
            }
            // httparse checked that names are tokens: `eq_lower` applies.
            match name.len() {
                4 if eq_lower(name, b"host") => {
                    self.host_count += 1;
                    self.host = Some(value_span);
                }
                6 if eq_lower(name, b"expect") => {
                    self.expect_continue |= value.eq_ignore_ascii_case(b"100-continue");
                }
                7 if eq_lower(name, b"upgrade") => self.upgrade = true,
                10 if eq_lower(name, b"connection") => self.connection.add(value),
                14 if eq_lower(name, b"content-length") => {
                    let n = parse_content_length(value)?;
                    if self.content_length.is_some_and(|old| old != n) {
                        return fail(ErrorKind::ConflictingContentLength);
                    }
                    self.content_length = Some(n);
                }
                17 if eq_lower(name, b"transfer-encoding") => self.codings.add(value)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// Transfer-Encoding checks both kinds of message share.
    pub(crate) fn check_codings(&self, version: Version) -> Result<(), Error> {
        if self.codings.count > 0 {
            if version == Version::Http10 {
                return fail(ErrorKind::TransferEncodingInHttp10);
            }
            if self.content_length.is_some() {
                return fail(ErrorKind::ContentLengthWithTransferEncoding);
            }
        }
        Ok(())
    }

    /// Whether the connection may carry another message after this one, by
    /// version and Connection options alone.
    pub(crate) fn persistent(&self, version: Version) -> bool {
        !self.connection.close && (version == Version::Http11 || self.connection.keep_alive)
    }

    /// The value of the first field named `name`.
    pub(crate) fn get<'b>(&self, buf: &'b [u8], name: &str) -> Option<&'b [u8]> {
        self.list
            .iter()
            .find(|f| f.name.get(buf).eq_ignore_ascii_case(name.as_bytes()))
            .map(|f| f.value.get(buf))
    }
}

/// Converts an httparse version (`0` or `1`).
pub(crate) fn version(minor: Option<u8>) -> Version {
    Version::from_minor(minor.unwrap_or(1))
}

/// Which start line a head has, for naming errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Request,
    Response,
}

/// Names the rule an httparse error stands for, looking at the head again
/// (only on this error path) to tell the cases apart.
pub(crate) fn classify(err: httparse::Error, head: &[u8], kind: Kind) -> ErrorKind {
    use httparse::Error as H;
    let bad_line = match kind {
        Kind::Request => ErrorKind::InvalidRequestLine,
        Kind::Response => ErrorKind::InvalidStatusLine,
    };
    // The scanner rejects LF LF before the end of a head has arrived; name it
    // the same when the whole head came at once.
    if memchr::memmem::find(head, b"\n\n").is_some() {
        return ErrorKind::BareLf;
    }
    if has_bare_cr(head) {
        return ErrorKind::BareCr;
    }
    let first_line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let first_line = first_line.strip_suffix(b"\r").unwrap_or(first_line);
    let parts: Vec<&[u8]> = first_line.split(|&b| b == b' ').collect();
    match err {
        H::TooManyHeaders => ErrorKind::TooManyHeaders,
        H::HeaderName => classify_field_line(head),
        H::HeaderValue => ErrorKind::InvalidHeaderValue,
        H::Version => {
            let version = match kind {
                Kind::Request if parts.len() == 3 => parts[2],
                Kind::Response => parts[0],
                Kind::Request => b"",
            };
            match version {
                [b'H', b'T', b'T', b'P', b'/', a, b'.', b] if a.is_ascii_digit() && b.is_ascii_digit() => {
                    ErrorKind::UnsupportedVersion
                }
                _ => bad_line,
            }
        }
        H::Token if kind == Kind::Request => {
            let method = parts[0];
            if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
                ErrorKind::InvalidMethod
            } else if parts.len() == 3 && parts.iter().all(|p| !p.is_empty()) {
                ErrorKind::InvalidTarget
            } else {
                bad_line
            }
        }
        _ => bad_line,
    }
}

/// Tells obs-fold, whitespace before the first field, whitespace before a
/// colon and a bad name character apart: finds the first field line that is
/// not `token ":"`.
fn classify_field_line(head: &[u8]) -> ErrorKind {
    for (i, line) in head.split(|&b| b == b'\n').skip(1).enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if is_ows(line[0]) {
            return if i == 0 {
                ErrorKind::WhitespaceBeforeFirstHeader
            } else {
                ErrorKind::ObsFold
            };
        }
        let name_len = line.iter().position(|&b| !is_tchar(b)).unwrap_or(line.len());
        match line.get(name_len) {
            Some(b':') if name_len > 0 => continue,
            Some(b' ' | b'\t') if name_len > 0 => return ErrorKind::WhitespaceBeforeColon,
            _ => return ErrorKind::InvalidHeaderName,
        }
    }
    ErrorKind::InvalidHeaderName
}

/// A CR anywhere that is not followed by LF.
pub(crate) fn has_bare_cr(bytes: &[u8]) -> bool {
    memchr::memchr_iter(b'\r', bytes).any(|i| bytes.get(i + 1) != Some(&b'\n'))
}
