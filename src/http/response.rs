//! Response heads: framing depends on the request they answer.

use std::mem::MaybeUninit;

use super::error::{Error, ErrorKind, fail};
use super::head::{self, Field, Fields, Framing, HeadStatus, Kind, Span, Version};
use super::limits::MAX_HEADERS;
use super::request::{Method, RequestHead};
use super::scan::{HeadScanner, Scan};

/// What a response's framing depends on from the request it answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestContext {
    /// The request method (HEAD and CONNECT change the framing).
    pub method: Method,
    /// The request asked for a protocol upgrade, so a 101 is allowed.
    pub upgrade: bool,
}

impl RequestContext {
    /// The context of a parsed request.
    pub fn of(request: &RequestHead) -> Self {
        RequestContext {
            method: request.method(),
            upgrade: request.upgrade(),
        }
    }
}

/// A response head, parsed incrementally and viewed by offsets into the
/// caller's buffer. Works like [`RequestHead`]; the framing follows RFC 9112
/// §6.3 given the request's [`RequestContext`].
///
/// ```
/// use kage::http::{Framing, HeadStatus, RequestContext, ResponseHead};
/// let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
/// let mut head = ResponseHead::new();
/// assert_eq!(head.parse(buf, RequestContext::default()).unwrap(), HeadStatus::Complete(38));
/// assert_eq!(head.status(), 200);
/// assert_eq!(head.framing(), Framing::Length(5));
/// ```
#[derive(Debug, Clone, Default)]
pub struct ResponseHead {
    scanner: HeadScanner,
    len: usize,
    version: Version,
    status: u16,
    reason: Span,
    fields: Fields,
    framing: Framing,
    keep_alive: bool,
}

impl ResponseHead {
    /// An empty head, ready to parse.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets the last head, keeping allocations, to parse the next one.
    pub fn clear(&mut self) {
        let fields = std::mem::take(&mut self.fields);
        *self = ResponseHead {
            fields,
            ..ResponseHead::default()
        };
    }

    /// Parses as much of the head as `buf` holds; see [`RequestHead::parse`].
    pub fn parse(&mut self, buf: &[u8], request: RequestContext) -> Result<HeadStatus, Error> {
        if self.len != 0 {
            return Ok(HeadStatus::Complete(self.len));
        }
        let (start, end) = match self.scanner.scan(buf, false)? {
            Scan::Partial => return Ok(HeadStatus::Partial),
            Scan::Complete { start, end } => (start, end),
        };
        let head = &buf[start..end];
        let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut res = httparse::Response::new(&mut []);
        match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut res, head, &mut headers) {
            Ok(httparse::Status::Complete(n)) if n == head.len() => {}
            // httparse ended the head at a bare LF before our CRLF CRLF.
            Ok(_) => return fail(ErrorKind::BareLf),
            Err(e) => return fail(head::classify(e, head, Kind::Response)),
        }
        let Some(status) = res.code.filter(|c| (100..=599).contains(c)) else {
            return fail(ErrorKind::InvalidStatusLine);
        };
        self.status = status;
        self.reason = res.reason.map_or_else(Span::default, |r| Span::of(buf, r.as_bytes()));
        self.version = head::version(res.version);
        self.fields.collect(buf, res.headers)?;
        self.fields.check_codings(self.version)?;
        self.framing = self.framing_for(request)?;
        self.keep_alive =
            self.fields.persistent(self.version) && !matches!(self.framing, Framing::UntilClose | Framing::Tunnel);
        self.len = end;
        Ok(HeadStatus::Complete(end))
    }

    fn framing_for(&self, request: RequestContext) -> Result<Framing, Error> {
        let status = self.status;
        Ok(match status {
            101 if request.upgrade => Framing::Tunnel,
            101 => return fail(ErrorKind::UnrequestedUpgrade),
            100..=199 | 204 | 304 => Framing::Empty,
            _ if request.method == Method::Head => Framing::Empty,
            200..=299 if request.method == Method::Connect => Framing::Tunnel,
            _ if self.fields.codings.count > 0 => {
                if self.fields.codings.chunked_last {
                    Framing::Chunked
                } else {
                    Framing::UntilClose
                }
            }
            _ => match self.fields.content_length {
                Some(0) => Framing::Empty,
                Some(n) => Framing::Length(n),
                None => Framing::UntilClose,
            },
        })
    }

    /// True once [`parse`](Self::parse) has returned `Complete`.
    pub fn is_complete(&self) -> bool {
        self.len != 0
    }

    /// Length of the complete head in bytes (0 before).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True while no complete head was parsed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The status code, 100 to 599.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// An interim (1xx other than 101) response: the final one follows it.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }

    /// The reason phrase as sent (may be empty).
    pub fn reason<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        self.reason.get(buf)
    }

    /// The version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// All field lines in order.
    pub fn fields(&self) -> &[Field] {
        &self.fields.list
    }

    /// The value of the first field named `name` (case-insensitive).
    pub fn header<'b>(&self, buf: &'b [u8], name: &str) -> Option<&'b [u8]> {
        self.fields.get(buf, name)
    }

    /// How the body is delimited.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Whether the server allows another request on the connection after
    /// this response.
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }
}
