//! Request heads: parsed once when complete, validated, viewed by offsets.

use std::mem::MaybeUninit;

use super::error::{Error, ErrorKind, fail};
use super::fields::is_valid_host;
use super::head::{self, Field, Fields, Framing, HeadStatus, Kind, Span, Version};
use super::limits::{MAX_HEAD_LEN, MAX_HEADERS, MAX_REQUEST_FIELDS, MAX_REQUEST_LINE_LEN, MAX_TARGET_LEN};
use super::scan::{HeadScanner, Scan};

/// The request method, with the ones framing and policy care about named.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Method {
    /// GET.
    #[default]
    Get,
    /// HEAD: its response never has a body.
    Head,
    /// POST.
    Post,
    /// PUT.
    Put,
    /// DELETE.
    Delete,
    /// CONNECT: authority-form target; a 2xx answer turns into a tunnel.
    Connect,
    /// OPTIONS: the only method allowed the `*` target.
    Options,
    /// TRACE.
    Trace,
    /// PATCH.
    Patch,
    /// Any other token.
    Other,
}

impl Method {
    /// Names a method by its exact (case-sensitive) token.
    pub fn from_bytes(token: &[u8]) -> Method {
        match token {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"CONNECT" => Method::Connect,
            b"OPTIONS" => Method::Options,
            b"TRACE" => Method::Trace,
            b"PATCH" => Method::Patch,
            _ => Method::Other,
        }
    }

    /// The token of a named method; `None` for [`Method::Other`].
    pub fn as_token(self) -> Option<&'static str> {
        Some(match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Connect => "CONNECT",
            Method::Options => "OPTIONS",
            Method::Trace => "TRACE",
            Method::Patch => "PATCH",
            Method::Other => return None,
        })
    }

    /// Safe methods (RFC 9110 §9.2.1): GET, HEAD, OPTIONS, TRACE.
    pub fn is_safe(self) -> bool {
        matches!(self, Method::Get | Method::Head | Method::Options | Method::Trace)
    }

    /// Idempotent methods (RFC 9110 §9.2.2): the safe ones, PUT and DELETE.
    pub fn is_idempotent(self) -> bool {
        self.is_safe() || matches!(self, Method::Put | Method::Delete)
    }
}

/// The form of a request target (RFC 9112 §3.2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum TargetForm {
    /// `/path?query`.
    #[default]
    Origin,
    /// `http://authority/path?query`, as sent to proxies.
    Absolute,
    /// `host:port`, for CONNECT.
    Authority,
    /// `*`, for OPTIONS.
    Asterisk,
}

/// A request head, parsed incrementally and viewed by offsets into the
/// caller's buffer.
///
/// Feed [`parse`](Self::parse) the buffer as it grows; the end of the head is
/// looked for in new bytes only and the head is parsed once, when complete.
/// Reuse one value per connection with [`clear`](Self::clear): the field list
/// keeps its allocation.
///
/// ```
/// use kage::http::{HeadStatus, Method, RequestHead};
/// let buf = b"GET /a HTTP/1.1\r\nHost: example.com\r\n\r\n";
/// let mut head = RequestHead::new();
/// assert_eq!(head.parse(&buf[..10]).unwrap(), HeadStatus::Partial);
/// assert_eq!(head.parse(buf).unwrap(), HeadStatus::Complete(buf.len()));
/// assert_eq!(head.method(), Method::Get);
/// assert_eq!(head.target(buf), b"/a");
/// assert_eq!(head.host(buf), Some(&b"example.com"[..]));
/// ```
#[derive(Debug, Clone, Default)]
pub struct RequestHead {
    scanner: HeadScanner,
    len: usize,
    method: Method,
    method_span: Span,
    target: Span,
    form: TargetForm,
    authority: Option<Span>,
    version: Version,
    fields: Fields,
    framing: Framing,
    keep_alive: bool,
    upgrade: bool,
}

impl RequestHead {
    /// An empty head, ready to parse.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets the last head, keeping allocations, to parse the next one.
    pub fn clear(&mut self) {
        let fields = std::mem::take(&mut self.fields);
        *self = RequestHead {
            fields,
            ..RequestHead::default()
        };
    }

    /// Parses as much of the head as `buf` holds. `buf` starts where the head
    /// starts and holds every byte passed before. Once complete, the head is
    /// `buf[..len]` and later calls return the same length.
    pub fn parse(&mut self, buf: &[u8]) -> Result<HeadStatus, Error> {
        if self.len != 0 {
            return Ok(HeadStatus::Complete(self.len));
        }
        let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        // The usual case: the whole head came in the first read. httparse
        // finds its end itself, and the scanner is skipped when that end is
        // one it would have found: no leading empty line, CRLF CRLF, within
        // MAX_HEAD_LEN. Then the first LF CRLF of `buf` is that end (an
        // earlier one would be an earlier empty line, which httparse would
        // have ended the head at), the scanner would have returned it at once
        // and the same checks follow, so the verdict is the same. Anything
        // else (partial, an error, another ending) takes the scanner's path,
        // which tries again only on new bytes.
        if self.scanner.is_fresh() && !matches!(buf.first(), None | Some(b'\r' | b'\n')) {
            let mut req = httparse::Request::new(&mut []);
            if let Ok(httparse::Status::Complete(n)) =
                httparse::ParserConfig::default().parse_request_with_uninit_headers(&mut req, buf, &mut headers)
                && n <= MAX_HEAD_LEN
                && buf[..n].ends_with(b"\r\n\r\n")
            {
                return self.finish(buf, &req, n);
            }
        }
        let (start, end) = match self.scanner.scan(buf, true)? {
            Scan::Partial => return Ok(HeadStatus::Partial),
            Scan::Complete { start, end } => (start, end),
        };
        let head = &buf[start..end];
        let mut req = httparse::Request::new(&mut []);
        match httparse::ParserConfig::default().parse_request_with_uninit_headers(&mut req, head, &mut headers) {
            Ok(httparse::Status::Complete(n)) if n == head.len() => {}
            // httparse ended the head at a bare LF before our CRLF CRLF.
            Ok(_) if request_line_too_long(head) => return fail(ErrorKind::TargetTooLong),
            Ok(_) => return fail(ErrorKind::BareLf),
            Err(_) if request_line_too_long(head) => return fail(ErrorKind::TargetTooLong),
            Err(e) => return fail(head::classify(e, head, Kind::Request)),
        }
        self.finish(buf, &req, end)
    }

    /// Validates a head httparse parsed completely; `end` is where it ends in
    /// `buf`.
    fn finish(&mut self, buf: &[u8], req: &httparse::Request<'_, '_>, end: usize) -> Result<HeadStatus, Error> {
        let (Some(method), Some(target)) = (req.method, req.path) else {
            return fail(ErrorKind::InvalidRequestLine);
        };
        // method SP target SP HTTP/1.x CR: the scanner's measure of the line.
        if method.len() + target.len() + 11 > MAX_REQUEST_LINE_LEN {
            return fail(ErrorKind::TargetTooLong);
        }
        // Room for the fields the rewrite adds (see MAX_REQUEST_FIELDS).
        if req.headers.len() > MAX_REQUEST_FIELDS {
            return fail(ErrorKind::TooManyHeaders);
        }
        self.method_span = Span::of(buf, method.as_bytes());
        self.method = Method::from_bytes(method.as_bytes());
        self.target = Span::of(buf, target.as_bytes());
        self.version = head::version(req.version);
        self.fields.collect(buf, req.headers)?;
        self.check_target(buf)?;
        self.check_host(buf)?;
        self.fields.check_codings(self.version)?;
        self.framing = if self.fields.codings.count > 0 {
            // Only chunked is forwarded (see UnsupportedTransferCoding).
            if self.fields.codings.other {
                return fail(ErrorKind::UnsupportedTransferCoding);
            }
            if !self.fields.codings.chunked_last {
                return fail(ErrorKind::ChunkedNotLast);
            }
            Framing::Chunked
        } else {
            match self.fields.content_length {
                None | Some(0) => Framing::Empty,
                Some(n) => Framing::Length(n),
            }
        };
        self.keep_alive = self.fields.persistent(self.version);
        // RFC 9110 §7.8 and §10.1.1: ignored in HTTP/1.0 requests.
        self.upgrade = self.version == Version::Http11 && self.fields.connection.upgrade && self.fields.upgrade;
        self.fields.expect_continue &= self.version == Version::Http11;
        self.len = end;
        Ok(HeadStatus::Complete(end))
    }

    fn check_target(&mut self, buf: &[u8]) -> Result<(), Error> {
        let target = self.target.get(buf);
        if target.len() > MAX_TARGET_LEN {
            return fail(ErrorKind::TargetTooLong);
        }
        // RFC 9112 §3.2: visible ASCII only. httparse already refused
        // controls, SP and DEL, but lets bytes of 0x80 and above through
        // (as UTF-8), which origins decode in different ways.
        if !target.is_ascii() {
            return fail(ErrorKind::InvalidTarget);
        }
        self.form = match (self.method, target) {
            (Method::Connect, _) => {
                // host ":" port, port required.
                let has_port = target
                    .iter()
                    .rposition(|&b| b == b':')
                    .is_some_and(|c| c + 1 < target.len());
                if !has_port || !is_valid_host(target) {
                    return fail(ErrorKind::InvalidTarget);
                }
                self.authority = Some(self.target);
                TargetForm::Authority
            }
            (Method::Options, b"*") => TargetForm::Asterisk,
            (_, [b'/', ..]) => TargetForm::Origin,
            _ => {
                let authority = absolute_authority(target).ok_or(Error::new(ErrorKind::InvalidTarget))?;
                self.authority = Some(Span::of(buf, authority));
                TargetForm::Absolute
            }
        };
        Ok(())
    }

    fn check_host(&self, buf: &[u8]) -> Result<(), Error> {
        match (self.fields.host_count, self.fields.host) {
            (0, _) if self.version == Version::Http11 => fail(ErrorKind::MissingHost),
            (2.., _) => fail(ErrorKind::DuplicateHost),
            (_, Some(host)) if !is_valid_host(host.get(buf)) => fail(ErrorKind::InvalidHost),
            _ => Ok(()),
        }
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

    /// The method.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The method token as sent.
    pub fn method_bytes<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        self.method_span.get(buf)
    }

    /// The request target as sent.
    pub fn target<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        self.target.get(buf)
    }

    /// The form of the target.
    pub fn target_form(&self) -> TargetForm {
        self.form
    }

    /// The target's path and query: the target itself in origin form, the
    /// part after the authority in absolute form (`/` when empty).
    pub fn path<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        let target = self.target.get(buf);
        match (self.form, self.authority) {
            (TargetForm::Absolute, Some(a)) => match target.get(a.range().end - self.target.range().start..) {
                Some([]) | None => b"/",
                Some(rest) => rest,
            },
            _ => target,
        }
    }

    /// The version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The host the request is for: the authority of an absolute-form or
    /// CONNECT target, else the Host field (RFC 9112 §3.2.2).
    pub fn host<'b>(&self, buf: &'b [u8]) -> Option<&'b [u8]> {
        self.authority.or(self.fields.host).map(|s| s.get(buf))
    }

    /// All field lines in order.
    pub fn fields(&self) -> &[Field] {
        &self.fields.list
    }

    /// The value of the first field named `name` (case-insensitive).
    pub fn header<'b>(&self, buf: &'b [u8], name: &str) -> Option<&'b [u8]> {
        self.fields.get(buf, name)
    }

    /// How the body is delimited: [`Framing::Empty`], `Length` or `Chunked`.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// The value of the one framing field the next hop gets, if the request
    /// had Content-Length or Transfer-Encoding: `chunked`, or the length in
    /// decimal without leading zeros (written into `digits`).
    pub(crate) fn framing_value<'d>(&self, digits: &'d mut [u8; 20]) -> Option<&'d [u8]> {
        if self.framing == Framing::Chunked {
            let chunked = b"chunked";
            digits[..chunked.len()].copy_from_slice(chunked);
            return Some(&digits[..chunked.len()]);
        }
        let mut n = self.fields.content_length?;
        // 20 digits hold any u64.
        let mut len = 0;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
            len += 1;
            if n == 0 {
                break;
            }
        }
        digits.get(digits.len() - len..)
    }

    /// Whether the client allows another request on the connection.
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// `Expect: 100-continue` in an HTTP/1.1 request.
    pub fn expect_continue(&self) -> bool {
        self.fields.expect_continue
    }

    /// An HTTP/1.1 request with `Connection: upgrade` and an Upgrade field.
    pub fn upgrade(&self) -> bool {
        self.upgrade
    }
}

/// The first line, CR included, is longer than the scanner allows while
/// waiting for it (checked here when the whole head came at once).
fn request_line_too_long(head: &[u8]) -> bool {
    memchr::memchr(b'\n', head).unwrap_or(head.len()) > MAX_REQUEST_LINE_LEN
}

/// The authority of an absolute-form `http` or `https` target, if it is one.
fn absolute_authority(target: &[u8]) -> Option<&[u8]> {
    let sep = memchr::memmem::find(target, b"://")?;
    let scheme = &target[..sep];
    if !scheme.eq_ignore_ascii_case(b"http") && !scheme.eq_ignore_ascii_case(b"https") {
        return None;
    }
    let rest = &target[sep + 3..];
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let authority = &rest[..end];
    (!authority.is_empty() && is_valid_host(authority)).then_some(authority)
}
