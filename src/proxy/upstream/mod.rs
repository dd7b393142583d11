//! One backend connection of a session: the request going out, the response
//! coming back, and what is captured of it for the hooks. Its fields are its
//! own: the session and the backlog ask through methods. `drive.rs` moves
//! the bytes (connect, send, read, parse); this file starts an exchange and
//! takes it to its end states ([`Upstream::settle`], [`Upstream::end`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use log::{debug, info, warn};

use super::config::{Backend, Role};
use super::digest::{Coding, Digester};
use super::hooks::{BackendReport, Outcome, Request};
use super::pool::Pools;
use super::stats::Stats;
use crate::http::{BodyDecoder, Framing, HeadStatus, RequestContext, ResponseHead};
use crate::runtime::buffer::{Buffer, BufferPool, SMALL_BUFFER};
use crate::runtime::net::{self, Failure, Io, Readiness};
use crate::runtime::transport::Stream;
use crate::tls::Connector;

mod drive;

/// Response bytes read from a backend before the proxy stops reading it (the
/// master's are spliced to the client from here). At least a maximal head.
pub const BACKEND_BUFFER: usize = crate::http::limits::MAX_HEAD_LEN;

/// Sent request bytes a copy drops from its front once there are this many
/// (one move of what is unsent, at most the window).
const COMPACT_SENT: usize = 64 * 1024;

/// Most passes of one pump of a session or a pending exchange (one
/// wake-up); past it the session is closed and
/// logged (a loop that never settles is a bug, not traffic).
pub const PUMP_BUDGET: usize = 4096;

/// Where a backend stands in the current exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not part of the current exchange.
    Idle,
    /// Connect under way.
    Connecting,
    /// Request going out and/or response coming in.
    Active,
    /// Finished: `report.outcome` says how.
    Done,
}

/// One backend's connection and exchange state.
#[derive(Debug)]
pub(crate) struct Upstream {
    sock: Option<Stream>,
    /// Where `sock` goes: a connection to an address the backend no longer
    /// has (its name resolved anew) is not reused.
    addr: Option<SocketAddr>,
    state: State,
    ready: Readiness,
    /// The connection came from an earlier exchange (may be stale).
    reused: bool,
    /// The connection may carry another request after this exchange.
    reusable: bool,
    /// The request sent asks the backend to keep the connection.
    asked_keep_alive: bool,
    /// The request may be sent again on a fresh connection when a reused one
    /// turns out stale (idempotent, no body).
    retryable: bool,
    /// Holds one of the backend's in-flight places (shadows): given back
    /// when its part of the exchange is over.
    reserved: bool,
    /// Request bytes to send: the head, then (for copies) the body.
    out: Vec<u8>,
    out_pos: usize,
    /// The request copy in `out` is complete.
    out_complete: bool,
    inb: Option<Buffer>,
    head: ResponseHead,
    body: BodyDecoder,
    /// Bytes at the front of `inb` that belong to the client (direct master).
    splice: usize,
    /// Keep response bytes for the hooks.
    capture: bool,
    /// The digest of a captured body longer than the capture, under way.
    digester: Option<Box<Digester>>,
    /// The captured response's content coding (for its digest).
    coding: Coding,
    capture_cap: usize,
    report: BackendReport,
    sent_at: Instant,
    last_io: Instant,
    timeout: Duration,
    /// The response head was sent on to the client.
    head_forwarded: bool,
    stats: Arc<Stats>,
}

impl Upstream {
    pub(crate) fn new(index: usize, timeout: Duration, now: Instant, stats: Arc<Stats>) -> Self {
        Upstream {
            sock: None,
            addr: None,
            state: State::Idle,
            ready: Readiness::default(),
            reused: false,
            reusable: false,
            asked_keep_alive: false,
            retryable: false,
            reserved: false,
            out: Vec::new(),
            out_pos: 0,
            out_complete: false,
            inb: None,
            head: ResponseHead::new(),
            body: BodyDecoder::Done,
            splice: 0,
            capture: false,
            digester: None,
            coding: Coding::None,
            capture_cap: 0,
            report: empty_report(index),
            sent_at: now,
            last_io: now,
            timeout,
            head_forwarded: false,
            stats,
        }
    }

    /// Starts a new exchange: a connection that may not carry it is closed
    /// (an idle reusable one is kept), `head` writes the request head to
    /// send. Connect with [`connect`](Self::connect) next.
    pub(crate) fn begin(&mut self, send: Send, registry: &Registry, now: Instant, head: impl FnOnce(&mut Vec<u8>)) {
        if self.sock.is_some() && !self.reusable {
            self.close(registry);
        }
        self.reset(send.capture, send.capture_cap, now);
        self.asked_keep_alive = send.keep_alive;
        self.retryable = send.retryable;
        head(&mut self.out);
        if send.record {
            self.report.request_head.clone_from(&self.out);
        }
    }

    /// Counts a request not sent to this backend ([`Outcome::Dropped`]).
    pub(crate) fn drop_request(&mut self, now: Instant) {
        self.reset(false, 0, now);
        self.finish(Outcome::Dropped, now);
    }

    /// Gets ready for a new exchange; keeps an idle connection that may be
    /// reused.
    fn reset(&mut self, capture: bool, capture_cap: usize, now: Instant) {
        self.state = State::Active;
        self.asked_keep_alive = false;
        self.retryable = false;
        self.out.clear();
        self.out_pos = 0;
        self.out_complete = false;
        self.head.clear();
        self.body = BodyDecoder::Done;
        self.splice = 0;
        self.capture = capture;
        self.digester = None;
        self.coding = Coding::None;
        self.capture_cap = capture_cap;
        self.report = empty_report(self.report.backend);
        self.sent_at = now;
        self.last_io = now;
        self.head_forwarded = false;
        if let Some(inb) = self.inb.as_mut() {
            inb.clear();
        }
        self.reused = self.sock.is_some();
    }

    /// Logs a failure (the master's as a warning, a shadow's at info) and
    /// ends this backend's part of the exchange with `outcome`.
    pub(crate) fn fail(
        &mut self,
        registry: &Registry,
        backend: &Backend,
        request: &Request<'_>,
        outcome: Outcome,
        now: Instant,
    ) {
        if matches!(self.state, State::Done | State::Idle) {
            return;
        }
        if let Some(unlogged) = self.stats.failure_to_log(self.report.backend, now) {
            let more = match unlogged {
                0 => String::new(),
                n => format!(
                    " ({n} more failure(s) of {} not logged since the last line)",
                    backend.name
                ),
            };
            let why = match self.sock.as_ref().and_then(Stream::tls_error) {
                Some(why) => format!(" ({why})"),
                None => String::new(),
            };
            let line = format!(
                "{}: {} {} {} {}: {}{why}{more}",
                request.peer(),
                backend.role.as_str(),
                backend.name,
                String::from_utf8_lossy(request.method_bytes()),
                String::from_utf8_lossy(request.target()),
                outcome.as_str()
            );
            if backend.role == Role::Master {
                warn!("{line}")
            } else {
                info!("{line}")
            }
        }
        self.finish(outcome, now);
        self.close(registry);
    }

    /// Acts on where driving came to, for sessions and the backlog alike:
    /// a complete response ends the exchange (the connection kept when it
    /// may carry another), a failure or an invalid response is logged and
    /// ends it, a stale reused connection is retried once on a fresh one
    /// (registered on `token`). Says what the caller may still have to do.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn settle(
        &mut self,
        step: Step,
        registry: &Registry,
        backend: &Backend,
        tls: Option<&Connector>,
        request: &Request<'_>,
        token: Token,
        now: Instant,
    ) -> Settled {
        match step {
            Step::Idle => Settled::Idle,
            Step::Progress => Settled::Progress,
            Step::Tunnel => Settled::Tunnel,
            Step::Complete => {
                self.complete(registry, now);
                Settled::Completed
            }
            Step::Failed(outcome) => {
                self.fail(registry, backend, request, outcome, now);
                Settled::Failed(outcome)
            }
            Step::Invalid(e) => {
                warn!(
                    "{}: invalid response from {}: {}",
                    request.peer(),
                    backend.name,
                    e.reason()
                );
                self.fail(registry, backend, request, Outcome::Invalid, now);
                Settled::Failed(Outcome::Invalid)
            }
            Step::Stale => {
                debug!(
                    "{}: reused connection to {} was stale; retrying once",
                    request.peer(),
                    backend.name
                );
                match self.retry_fresh(backend.addr, tls, registry, token, now) {
                    Ok(()) => Settled::Progress,
                    Err(f) => {
                        let outcome = outcome_of(f);
                        self.fail(registry, backend, request, outcome, now);
                        Settled::Failed(outcome)
                    }
                }
            }
        }
    }

    /// Ends the exchange with a complete response; the connection stays
    /// only when it may carry another request.
    fn complete(&mut self, registry: &Registry, now: Instant) {
        let leftover = self.inb.as_ref().is_some_and(|i| i.len() > self.splice);
        self.finish(Outcome::Complete, now);
        if !self.reusable || leftover || !self.out_flushed() {
            self.close(registry);
        }
    }

    /// Ends this backend's part of the exchange.
    fn finish(&mut self, outcome: Outcome, now: Instant) {
        if self.state == State::Done || self.state == State::Idle {
            return;
        }
        // Readiness: a connect that did not finish, or a complete response.
        if self.state == State::Connecting && matches!(outcome, Outcome::Refused | Outcome::Timeout | Outcome::Reset) {
            self.stats.connected(self.report.backend, false, now);
        } else if outcome == Outcome::Complete {
            self.stats.connected(self.report.backend, true, now);
        }
        self.state = State::Done;
        self.report.outcome = outcome;
        let total = (outcome == Outcome::Complete).then(|| now.saturating_duration_since(self.sent_at));
        // A request never sent is counted as dropped, not as an exchange.
        if outcome != Outcome::Dropped {
            self.stats.record(self.report.backend, outcome, total);
        }
        if outcome == Outcome::Complete {
            self.report.digest = self.digester.take().and_then(|d| d.finish());
            self.report.total = Some(now.saturating_duration_since(self.sent_at));
            self.report.response = Some(std::mem::take(&mut self.head));
        } else if self.head.is_complete() {
            self.report.response = Some(std::mem::take(&mut self.head));
        }
    }

    /// Takes the report, leaving an empty one.
    pub(crate) fn take_report(&mut self) -> BackendReport {
        let empty = empty_report(self.report.backend);
        std::mem::replace(&mut self.report, empty)
    }

    /// Lets go of the connection: a reusable one (idle, or done with a
    /// complete response) goes to the pools, any other closes; the buffer
    /// goes back.
    pub(crate) fn release(&mut self, registry: &Registry, pool: &mut BufferPool, pools: &mut Pools, now: Instant) {
        if matches!(self.state, State::Idle | State::Done) && self.reusable {
            if let (Some(mut sock), Some(addr)) = (self.sock.take(), self.addr) {
                let _ = registry.deregister(&mut sock);
                pools.give(self.report.backend, sock, addr, now);
            }
        }
        self.close(registry);
        if let Some(inb) = self.inb.take() {
            pool.give(inb);
        }
    }

    /// Not part of an exchange.
    pub(crate) fn is_idle(&self) -> bool {
        self.state == State::Idle
    }

    /// Its part of the exchange is over ([`report`](Self::report) says how).
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Connecting, or sending and receiving: its own timeout may run.
    pub(crate) fn is_busy(&self) -> bool {
        matches!(self.state, State::Connecting | State::Active)
    }

    /// The backend's index.
    pub(crate) fn backend(&self) -> usize {
        self.report.backend
    }

    /// What is known of this backend's exchange so far.
    pub(crate) fn report(&self) -> &BackendReport {
        &self.report
    }

    /// The report, the upstream gone.
    pub(crate) fn into_report(self) -> BackendReport {
        self.report
    }

    /// Takes in what an event says about the socket.
    pub(crate) fn on_event(&mut self, ready: Readiness) {
        self.ready.merge(ready);
    }

    /// When the backend will have been silent for its timeout.
    pub(crate) fn deadline(&self) -> Instant {
        self.last_io + self.timeout
    }

    /// A connection is open (or opening).
    pub(crate) fn has_connection(&self) -> bool {
        self.sock.is_some()
    }

    /// Takes one of the backend's in-flight places.
    pub(crate) fn reserve(&mut self) {
        self.reserved = true;
    }

    /// Gives the in-flight place back; true when it held one.
    pub(crate) fn unreserve(&mut self) -> bool {
        std::mem::take(&mut self.reserved)
    }

    /// The response head went on to the client.
    pub(crate) fn head_forwarded(&self) -> bool {
        self.head_forwarded
    }

    /// Response bytes waiting in the buffer for the client (the master's).
    pub(crate) fn owed(&self) -> &[u8] {
        match self.inb.as_ref() {
            Some(inb) => &inb.data()[..self.splice.min(inb.len())],
            None => &[],
        }
    }

    /// The client took `n` of the [`owed`](Self::owed) bytes.
    pub(crate) fn took(&mut self, n: usize) {
        let n = n.min(self.splice);
        if let Some(inb) = self.inb.as_mut() {
            inb.consume(n);
        }
        self.splice -= n;
    }

    /// Nothing more goes to the client from here (it gets an error answer).
    pub(crate) fn forget_owed(&mut self) {
        self.splice = 0;
    }

    /// Appends request body bytes to this backend's copy; false when more
    /// than `window` bytes would wait unsent (nothing is appended: the
    /// backend is too slow, end its part).
    pub(crate) fn copy_body(&mut self, chunk: &[u8], window: usize) -> bool {
        let unsent = self.out.len() - self.out_pos.min(self.out.len());
        if unsent.saturating_add(chunk.len()) > window {
            return false;
        }
        if self.out_pos >= COMPACT_SENT {
            // Sent bytes go: the copy holds the window, not the body.
            self.out.drain(..self.out_pos.min(self.out.len()));
            self.out_pos = 0;
        }
        self.out.extend_from_slice(chunk);
        true
    }

    /// Keeps request body bytes for the report, up to `cap` in all.
    pub(crate) fn record_body(&mut self, chunk: &[u8], cap: usize) {
        let room = cap.saturating_sub(self.report.request_body.len());
        self.report
            .request_body
            .extend_from_slice(&chunk[..chunk.len().min(room)]);
    }

    /// The whole request is queued (no more body bytes will come).
    pub(crate) fn request_complete(&mut self) {
        self.out_complete = true;
    }

    /// Missing body bytes of the request it is sending.
    pub(crate) fn request_incomplete(&self) -> bool {
        !self.out_complete
    }

    /// Sent all it has and waits for request body bytes the client has not
    /// sent yet (that wait is the client's, not the backend's).
    pub(crate) fn waits_for_body(&self) -> bool {
        self.state == State::Active && !self.out_complete && self.out_flushed()
    }

    /// Ends its part of the exchange with `outcome` (no log) and closes.
    pub(crate) fn end(&mut self, outcome: Outcome, registry: &Registry, now: Instant) {
        self.finish(outcome, now);
        self.close(registry);
    }

    /// After the exchange: ready for the next request, the connection kept
    /// only when it may carry it.
    pub(crate) fn end_exchange(&mut self, registry: &Registry) {
        self.state = State::Idle;
        if self.sock.is_some() && !self.reusable {
            self.close(registry);
        }
    }

    /// A kept connection between exchanges: any byte or EOF means it is no
    /// longer usable, and it is closed. True when it was.
    pub(crate) fn check_idle(&mut self, registry: &Registry, pool: &mut BufferPool) -> bool {
        if self.sock.is_none() || !self.ready.readable {
            return false;
        }
        match self.read_in(pool) {
            Ok(Some(0)) => false,
            _ => {
                self.close(registry);
                true
            }
        }
    }

    /// Moves the socket onto `token` (the backlog's).
    pub(crate) fn move_to(&mut self, registry: &Registry, token: Token) -> std::io::Result<()> {
        match self.sock.as_mut() {
            Some(sock) => registry.reregister(sock, token, Interest::READABLE | Interest::WRITABLE),
            None => Ok(()),
        }
    }

    /// Hands the connection to a tunnel: the socket, its readiness and what
    /// was read past the head (a whole buffer).
    pub(crate) fn take_tunnel(&mut self, pool: &mut BufferPool) -> Option<(Stream, Readiness, Buffer)> {
        let sock = self.sock.take()?;
        let ready = std::mem::take(&mut self.ready);
        let mut buf = self.inb.take().unwrap_or_default();
        pool.grow(&mut buf, BACKEND_BUFFER);
        self.splice = 0;
        Some((sock, ready, buf))
    }

    /// The tunnel it became is over.
    pub(crate) fn end_tunnel(&mut self, outcome: Outcome, registry: &Registry, now: Instant) {
        self.finish(outcome, now);
        self.close(registry);
        self.state = State::Idle;
    }

    /// Closes the connection and gives the buffer back (forced shutdown).
    pub(crate) fn discard(&mut self, registry: &Registry, pool: &mut BufferPool) {
        self.close(registry);
        if let Some(inb) = self.inb.take() {
            pool.give(inb);
        }
    }

    /// Takes the connection out, still registered, when it may carry the
    /// client's next request (a parked client keeps it).
    pub(crate) fn keep(&mut self) -> Option<(Stream, Readiness)> {
        if self.state != State::Idle || !self.reusable {
            return None;
        }
        let sock = self.sock.take()?;
        let ready = std::mem::take(&mut self.ready);
        self.reusable = false;
        Some((sock, ready))
    }

    /// Takes back a connection [`keep`](Self::keep) gave out, to `addr`.
    pub(crate) fn adopt(&mut self, sock: Stream, ready: Readiness, addr: SocketAddr) {
        self.sock = Some(sock);
        self.addr = Some(addr);
        self.ready = ready;
        self.reusable = true;
    }

    /// Closes an idle connection that does not go to `addr` (the
    /// backend's address changed since it was opened).
    pub(crate) fn drop_if_moved(&mut self, addr: SocketAddr, registry: &Registry) {
        if self.sock.is_some() && matches!(self.state, State::Idle | State::Done) && self.addr != Some(addr) {
            debug!(
                "backend {}: idle connection to {:?} closed: the backend is at {addr} now",
                self.report.backend, self.addr
            );
            self.close(registry);
        }
    }

    /// Readies an idle upstream (no connection, no buffer) for another
    /// client: nothing of the last exchange stays, and request bytes keep
    /// at most `max_room` of room.
    pub(crate) fn recycle(&mut self, max_room: usize) {
        debug_assert!(!self.reserved, "an upstream holding an in-flight place is recycled");
        self.state = State::Idle;
        self.out.clear();
        self.out_pos = 0;
        if self.out.capacity() > max_room {
            self.out = Vec::new();
        }
        self.report = empty_report(self.report.backend);
        self.head.clear();
        self.body = BodyDecoder::Done;
        self.splice = 0;
        self.head_forwarded = false;
    }

    /// Closes the connection.
    pub(crate) fn close(&mut self, registry: &Registry) {
        if let Some(mut sock) = self.sock.take() {
            let _ = registry.deregister(&mut sock);
        }
        self.ready.reset();
        self.reusable = false;
        self.reused = false;
    }
}

/// How an exchange's request goes to one backend ([`Upstream::begin`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Send {
    /// Keep response bytes for the hooks, up to `capture_cap`.
    pub(crate) capture: bool,
    pub(crate) capture_cap: usize,
    /// The request asks the backend to keep the connection.
    pub(crate) keep_alive: bool,
    /// May be sent again on a fresh connection if a reused one is stale.
    pub(crate) retryable: bool,
    /// Keep the request head sent for the report.
    pub(crate) record: bool,
}

/// What [`Upstream::settle`] left for its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    /// Nothing moved.
    Idle,
    /// Bytes moved (or a retry started); the exchange goes on.
    Progress,
    /// The connection is a tunnel now: the caller takes it over.
    Tunnel,
    /// The response is complete.
    Completed,
    /// The backend's part ended with this outcome (logged).
    Failed(Outcome),
}

/// Where driving a captured backend came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Nothing moved; wait for the next event.
    Idle,
    /// Bytes moved; the response is not complete yet.
    Progress,
    /// The response is complete ([`Upstream::settle`] ends the exchange).
    Complete,
    /// The backend failed.
    Failed(Outcome),
    /// The response is not valid HTTP/1.
    Invalid(crate::http::Error),
    /// A reused connection closed before any response byte
    /// ([`Upstream::settle`] retries once on a fresh one).
    Stale,
    /// A streamed response turned the connection into a tunnel (101, or a
    /// 2xx to CONNECT).
    Tunnel,
}

fn empty_report(backend: usize) -> BackendReport {
    BackendReport {
        digest: None,
        backend,
        request_head: Vec::new(),
        request_body: Vec::new(),
        response: None,
        response_raw: Vec::new(),
        response_body: Vec::new(),
        truncated: false,
        ttfb: None,
        total: None,
        bytes: 0,
        outcome: Outcome::Skipped,
    }
}

/// The outcome an I/O failure stands for.
pub(crate) fn outcome_of(f: Failure) -> Outcome {
    match f {
        Failure::Refused => Outcome::Refused,
        Failure::Reset | Failure::Other => Outcome::Reset,
        Failure::Tls => Outcome::Tls,
    }
}
