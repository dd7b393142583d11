//! The user's callbacks, and what they are shown.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::config::{Backend, DEFAULT_SHADOW_METHODS, Role};
use crate::http::{HeadRewrite, Method, RequestHead, ResponseHead, Version};

/// A request head as the hooks see it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    head: &'a RequestHead,
    bytes: &'a [u8],
    peer: SocketAddr,
}

impl<'a> Request<'a> {
    /// A view of `head`, parsed from `bytes`, sent by `peer`.
    pub fn new(head: &'a RequestHead, bytes: &'a [u8], peer: SocketAddr) -> Self {
        Request { head, bytes, peer }
    }

    /// The parsed head.
    pub fn head(&self) -> &'a RequestHead {
        self.head
    }

    /// The head's bytes as the client sent them.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes.get(..self.head.len()).unwrap_or(self.bytes)
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The method.
    pub fn method(&self) -> Method {
        self.head.method()
    }

    /// The method token as sent.
    pub fn method_bytes(&self) -> &'a [u8] {
        self.head.method_bytes(self.bytes)
    }

    /// The request target as sent.
    pub fn target(&self) -> &'a [u8] {
        self.head.target(self.bytes)
    }

    /// Path and query (origin form).
    pub fn path(&self) -> &'a [u8] {
        self.head.path(self.bytes)
    }

    /// The HTTP version.
    pub fn version(&self) -> Version {
        self.head.version()
    }

    /// The value of the first field named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.head.header(self.bytes, name)
    }

    /// The host the request is for.
    pub fn host(&self) -> Option<&'a [u8]> {
        self.head.host(self.bytes)
    }
}

/// Which backends a request goes to: a set of backend indices (positions in
/// [`Config::backends`](super::Config::backends)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Selection(u64);

impl Selection {
    /// No backend.
    pub const fn none() -> Self {
        Selection(0)
    }

    /// Only backend `index`.
    pub const fn only(index: usize) -> Self {
        Selection::none().with(index)
    }

    /// The master of `backends` alone.
    pub fn master_only(backends: &[Backend]) -> Self {
        backends
            .iter()
            .position(|b| b.role == Role::Master)
            .map_or(Selection::none(), Selection::only)
    }

    /// Every backend of `backends`.
    pub fn all(backends: &[Backend]) -> Self {
        (0..backends.len()).fold(Selection::none(), Selection::with)
    }

    /// This set and backend `index` (ignored past the 64th).
    pub const fn with(self, index: usize) -> Self {
        if index < 64 {
            Selection(self.0 | 1 << index)
        } else {
            self
        }
    }

    /// This set without backend `index`.
    pub const fn without(self, index: usize) -> Self {
        if index < 64 {
            Selection(self.0 & !(1 << index))
        } else {
            self
        }
    }

    /// Whether backend `index` is in the set.
    pub const fn contains(self, index: usize) -> bool {
        index < 64 && self.0 & (1 << index) != 0
    }

    /// How many backends are in the set.
    pub const fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// True when no backend is in the set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The indices in the set, in order.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..64).filter(move |&i| self.contains(i))
    }
}

/// How one backend's part of an exchange ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A complete response was read.
    Complete,
    /// The connection was refused.
    Refused,
    /// No connection, no response head, or no progress within its timeout.
    Timeout,
    /// The connection was reset.
    Reset,
    /// The response was not valid HTTP/1 (or its framing was ambiguous).
    Invalid,
    /// The backend closed before its response was complete.
    Truncated,
    /// The shadow fell more than
    /// [`Config::shadow_body_window`](super::Config::shadow_body_window)
    /// bytes behind the request body; it was cut for this request.
    TooSlow,
    /// Selected but never sent (the client went away first, or shutdown).
    Skipped,
    /// A shadow request not sent because the shadow had
    /// [`Config::shadow_max_inflight`](super::Config::shadow_max_inflight)
    /// requests in flight (or, with a token range too small for the
    /// backlog, its answer not waited for). Reported when another shadow of
    /// the exchange was sent; a request that lost every shadow is served
    /// as master-only and only counted
    /// ([`Proxy::dropped`](super::Proxy::dropped)).
    Dropped,
    /// The TLS handshake with an HTTPS backend failed (an untrusted or
    /// wrong certificate, no common version or cipher), or a TLS record
    /// was refused; the reason is logged.
    Tls,
}

impl Outcome {
    /// Every outcome, in declaration order.
    pub const ALL: [Outcome; 10] = [
        Outcome::Complete,
        Outcome::Refused,
        Outcome::Timeout,
        Outcome::Reset,
        Outcome::Invalid,
        Outcome::Truncated,
        Outcome::TooSlow,
        Outcome::Skipped,
        Outcome::Dropped,
        Outcome::Tls,
    ];

    /// Position in [`Outcome::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Lower-case name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Complete => "complete",
            Outcome::Refused => "refused",
            Outcome::Timeout => "timeout",
            Outcome::Reset => "reset",
            Outcome::Invalid => "invalid",
            Outcome::Truncated => "truncated",
            Outcome::TooSlow => "too_slow",
            Outcome::Skipped => "skipped",
            Outcome::Dropped => "dropped",
            Outcome::Tls => "tls",
        }
    }
}

/// What happened with one backend in an exchange.
#[derive(Debug, Clone)]
pub struct BackendReport {
    /// Index of the backend in the configuration.
    pub backend: usize,
    /// The request head as sent to it (after munging).
    pub request_head: Vec<u8>,
    /// The request body as sent (raw framing), up to the capture cap.
    pub request_body: Vec<u8>,
    /// The final response head, parsed from `response_raw`.
    pub response: Option<ResponseHead>,
    /// The response as received: head and raw body, up to the capture cap.
    pub response_raw: Vec<u8>,
    /// The body with chunked framing removed, up to the capture cap.
    pub response_body: Vec<u8>,
    /// The capture was cut at the cap.
    pub truncated: bool,
    /// A captured body longer than the capture: the whole decoded body's
    /// length and digest, taken as it streamed (`None` otherwise, or when
    /// its content coding could not be undone). See
    /// [`body_digest`](Self::body_digest).
    pub digest: Option<super::BodyDigest>,
    /// From sending the request to the first response byte.
    pub ttfb: Option<Duration>,
    /// From sending the request to the last response byte.
    pub total: Option<Duration>,
    /// Response bytes received.
    pub bytes: u64,
    /// How it ended.
    pub outcome: Outcome,
}

impl BackendReport {
    /// The response status, if a head was received.
    pub fn status(&self) -> Option<u16> {
        self.response.as_ref().map(ResponseHead::status)
    }

    /// The whole decoded body's digest, however much of it was captured:
    /// taken while it streamed, or made now from a body captured whole.
    /// `None` for an incomplete response, or a content coding that could
    /// not be undone.
    pub fn body_digest(&self) -> Option<std::borrow::Cow<'_, super::BodyDigest>> {
        if self.outcome != Outcome::Complete {
            return None;
        }
        match &self.digest {
            Some(d) => Some(std::borrow::Cow::Borrowed(d)),
            None if !self.truncated => {
                super::BodyDigest::of(&self.response_body, self.header("content-encoding")).map(std::borrow::Cow::Owned)
            }
            None => None,
        }
    }

    /// The value of the first response field named `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.response.as_ref().and_then(|h| h.header(&self.response_raw, name))
    }
}

/// One request and what every selected backend did with it.
#[derive(Debug)]
pub struct Exchange<'a> {
    /// Unique within the process run.
    pub id: u64,
    /// The client's request.
    pub request: Request<'a>,
    /// The configured backends (reports name them by index).
    pub backends: &'a [Backend],
    /// One report per selected backend, in configuration order.
    pub reports: &'a [BackendReport],
}

impl Exchange<'_> {
    /// Each report with its backend.
    pub fn iter(&self) -> impl Iterator<Item = (&Backend, &BackendReport)> {
        self.reports
            .iter()
            .filter_map(|r| self.backends.get(r.backend).map(|b| (b, r)))
    }

    /// The master's report, if the master was selected.
    pub fn master(&self) -> Option<&BackendReport> {
        self.iter().find(|(b, _)| b.role == Role::Master).map(|(_, r)| r)
    }
}

/// How one request ended for its client: what an access log line says.
#[derive(Debug, Clone, Copy)]
pub struct Served<'a> {
    /// The exchange id (as in [`Exchange::id`]); 0 when no request head
    /// was read (a bad head, or a 408).
    pub id: u64,
    /// The request, when its head was read.
    pub request: Option<Request<'a>>,
    /// The client's address.
    pub peer: SocketAddr,
    /// The status sent to the client; `None` when no response head was
    /// sent (the client left first).
    pub status: Option<u16>,
    /// Response body bytes written to the client (heads not counted).
    pub body_bytes: u64,
    /// From the first byte of the request head (or the accept, for a
    /// connection's first request) to its last response byte written.
    pub duration: Duration,
    /// The whole response reached the client (false: it left, or the
    /// backend failed partway).
    pub complete: bool,
    /// Shadows were sent this request: [`Hooks::backends_finished`] comes
    /// with the same id, before or after this.
    pub shadowed: bool,
}

/// The user's callbacks. Every method has a default.
pub trait Hooks {
    /// Which backends a request goes to; called for every request. The
    /// default: the master, plus every shadow for GET, HEAD and OPTIONS.
    fn select_backends(&mut self, request: &Request<'_>, backends: &[Backend]) -> Selection {
        default_selection(request, backends)
    }

    /// Edits the head sent to `backend`; each backend starts from its own
    /// copy. The backend's configured header rules are already applied.
    fn munge_request(&mut self, backend: &Backend, request: &Request<'_>, rewrite: &mut HeadRewrite) {
        let _ = (backend, request, rewrite);
    }

    /// Called once every selected backend is done (complete, failed or timed
    /// out), for every exchange with more than one backend.
    fn backends_finished(&mut self, exchange: &Exchange<'_>) {
        let _ = exchange;
    }

    /// Called once per request when the client's response is over (sent
    /// whole, cut, or answered by the proxy itself), for an access log.
    fn request_done(&mut self, served: &Served<'_>) {
        let _ = served;
    }

    /// When the hooks want [`on_deadline`](Self::on_deadline) called (to
    /// flush a buffered log, say); folded into the proxy's next deadline.
    fn next_deadline(&self) -> Option<Instant> {
        None
    }

    /// Called once [`next_deadline`](Self::next_deadline) has passed.
    fn on_deadline(&mut self, now: Instant) {
        let _ = now;
    }
}

/// The default selection: the master, plus the shadows for safe methods.
pub fn default_selection(request: &Request<'_>, backends: &[Backend]) -> Selection {
    let shadow = DEFAULT_SHADOW_METHODS.contains(&request.method());
    backends
        .iter()
        .enumerate()
        .filter(|(_, b)| b.role == Role::Master || shadow)
        .fold(Selection::none(), |s, (i, _)| s.with(i))
}

/// Hooks that keep every default.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultHooks;

impl Hooks for DefaultHooks {}
