//! One backend connection of a session: the request going out, the response
//! coming back, and what is captured of it for the hooks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use log::{debug, info, warn};

use super::config::{Backend, Role};
use super::hooks::{BackendReport, Outcome, Request};
use super::pool::Pools;
use super::stats::Stats;
use crate::http::{BodyDecoder, Framing, HeadStatus, RequestContext, ResponseHead};
use crate::runtime::buffer::{Buffer, BufferPool, SMALL_BUFFER};
use crate::runtime::net::{self, Failure, Io, Readiness};

/// Response bytes read from a backend before the proxy stops reading it (the
/// master's are spliced to the client from here). At least a maximal head.
pub const BACKEND_BUFFER: usize = crate::http::limits::MAX_HEAD_LEN;

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
    sock: Option<TcpStream>,
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
    /// Body bytes copied into `out` for this request.
    copied: usize,
    inb: Option<Buffer>,
    head: ResponseHead,
    body: BodyDecoder,
    /// Bytes at the front of `inb` that belong to the client (direct master).
    splice: usize,
    /// Keep response bytes for the hooks.
    capture: bool,
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
            copied: 0,
            inb: None,
            head: ResponseHead::new(),
            body: BodyDecoder::Done,
            splice: 0,
            capture: false,
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
        self.copied = 0;
        self.head.clear();
        self.body = BodyDecoder::Done;
        self.splice = 0;
        self.capture = capture;
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

    /// Opens a connection unless a reusable one is there; `pooled` is an
    /// idle connection from the shared pool to use first.
    pub(crate) fn connect(
        &mut self,
        addr: SocketAddr,
        registry: &Registry,
        token: Token,
        pooled: Option<TcpStream>,
    ) -> Result<(), Failure> {
        if self.sock.is_some() {
            return Ok(());
        }
        if let Some(mut sock) = pooled {
            if registry
                .register(&mut sock, token, Interest::READABLE | Interest::WRITABLE)
                .is_ok()
            {
                self.sock = Some(sock);
                self.ready.reset();
                self.reused = true;
                self.reusable = false;
                return Ok(());
            }
        }
        let mut sock = TcpStream::connect(addr).map_err(|e| Failure::of(&e))?;
        registry
            .register(&mut sock, token, Interest::READABLE | Interest::WRITABLE)
            .map_err(|e| Failure::of(&e))?;
        let _ = sock.set_nodelay(true);
        self.sock = Some(sock);
        self.state = State::Connecting;
        self.ready.reset();
        self.reused = false;
        self.reusable = false;
        Ok(())
    }

    /// Checks a connect under way; true when it just finished.
    fn poll_connect(&mut self) -> Result<bool, Failure> {
        if self.state != State::Connecting || !(self.ready.writable || self.ready.readable) {
            return Ok(false);
        }
        let Some(sock) = self.sock.as_ref() else {
            return Err(Failure::Other);
        };
        match net::connect_result(sock) {
            None => {
                self.ready.writable = false;
                Ok(false)
            }
            Some(Ok(())) => {
                self.state = State::Active;
                Ok(true)
            }
            Some(Err(f)) => Err(f),
        }
    }

    /// Writes from `out`; returns bytes written, or the failure.
    fn write_out(&mut self) -> Result<usize, Failure> {
        let n = write_ready(
            self.sock.as_mut(),
            &mut self.ready,
            &self.out[self.out_pos.min(self.out.len())..],
        )?;
        self.out_pos += n;
        // Free what a large copy took, unless the connection was reused: if
        // it turns out stale the request is sent again from here.
        if self.out_pos == self.out.len() && self.out_complete && !self.reused {
            self.out.clear();
            self.out_pos = 0;
        }
        Ok(n)
    }

    /// Writes `data` (bytes owned by someone else); returns how many went.
    fn write_slice(&mut self, data: &[u8]) -> Result<usize, Failure> {
        write_ready(self.sock.as_mut(), &mut self.ready, data)
    }

    /// All request bytes that are in `out` were written.
    fn out_flushed(&self) -> bool {
        self.out_pos >= self.out.len()
    }

    /// Reads once into the response buffer. `Ok(None)` at EOF.
    fn read_in(&mut self, pool: &mut BufferPool) -> Result<Option<usize>, Failure> {
        if !self.ready.readable {
            return Ok(Some(0));
        }
        // A head is read into a small buffer first; a response that fills
        // it goes on in a whole one.
        let inb = self.inb.get_or_insert_with(|| pool.take(SMALL_BUFFER));
        if inb.is_full() {
            pool.grow(inb, BACKEND_BUFFER);
        }
        let space = inb.space();
        if space.is_empty() {
            return Ok(Some(0));
        }
        let Some(sock) = self.sock.as_mut() else {
            return Ok(Some(0));
        };
        match self.ready.read(sock, space) {
            Io::Done(n) => {
                inb.fill(n);
                self.report.bytes += n as u64;
                Ok(Some(n))
            }
            Io::WouldBlock => Ok(Some(0)),
            Io::Closed => Ok(None),
            Io::Failed(f) => Err(f),
        }
    }

    /// The response buffer is full at its largest: the reader of what it
    /// holds (the client, for the master) is what holds the backend back.
    pub(crate) fn buffer_full(&self) -> bool {
        self.inb.as_ref().is_some_and(|b| b.len() >= BACKEND_BUFFER)
    }

    /// Gives the response buffer back when it holds nothing.
    pub(crate) fn release_buffer(&mut self, pool: &mut BufferPool) {
        if self.inb.as_ref().is_some_and(Buffer::is_empty) {
            if let Some(inb) = self.inb.take() {
                pool.give(inb);
            }
        }
    }

    /// Parses a response head from the front of the buffer.
    fn parse_head(&mut self, ctx: RequestContext) -> Result<Option<usize>, crate::http::Error> {
        let Some(inb) = self.inb.as_ref() else { return Ok(None) };
        match self.head.parse(inb.data(), ctx)? {
            HeadStatus::Partial => Ok(None),
            HeadStatus::Complete(len) => Ok(Some(len)),
        }
    }

    /// Keeps head bytes for the report (the final head only: its spans are
    /// offsets into `response_raw`).
    fn capture_head(&mut self, len: usize) {
        if !self.capture {
            return;
        }
        if let Some(inb) = self.inb.as_ref() {
            self.report.response_raw.clear();
            self.report
                .response_raw
                .extend_from_slice(&inb.data()[..len.min(inb.len())]);
        }
    }

    /// Scans response body bytes from `from` in the buffer; returns how many
    /// belong to the body. Captures raw and decoded bytes up to the cap.
    fn scan_body(&mut self, from: usize) -> Result<usize, crate::http::Error> {
        let Some(inb) = self.inb.as_ref() else { return Ok(0) };
        let input = inb.data().get(from..).unwrap_or_default();
        let cap = self.capture_cap;
        let capture = self.capture;
        let report = &mut self.report;
        let scanned = self.body.scan(input, |r| {
            if capture {
                let room = cap.saturating_sub(report.response_body.len());
                report.truncated |= r.len() > room;
                report
                    .response_body
                    .extend_from_slice(&input[r.start..r.start + r.len().min(room)]);
            }
        })?;
        if capture {
            let room = cap.saturating_sub(report.response_raw.len());
            let n = scanned.consumed.min(room);
            report.truncated |= scanned.consumed > room;
            report.response_raw.extend_from_slice(&input[..n]);
        }
        Ok(scanned.consumed)
    }

    /// Drives the backend's exchange as far as readiness allows: connect,
    /// send the request (then `body`, bytes owed from the client's buffer,
    /// for the master), read and parse the response. A `streamed` response
    /// (the master's) stays in the buffer for the client, its heads handed
    /// to `on_head` with the bytes they were parsed from; any other is
    /// captured and dropped from the buffer. Says where it came to, and how
    /// many bytes of `body` went.
    pub(crate) fn drive(
        &mut self,
        ctx: RequestContext,
        pool: &mut BufferPool,
        now: Instant,
        body: &[u8],
        streamed: bool,
        mut on_head: impl FnMut(&ResponseHead, &[u8]),
    ) -> (Step, usize) {
        match self.state {
            State::Idle | State::Done => return (Step::Idle, 0),
            State::Connecting => match self.poll_connect() {
                Ok(true) => self.last_io = now,
                Ok(false) => return (Step::Idle, 0),
                Err(f) => return (Step::Failed(outcome_of(f)), 0),
            },
            State::Active => {}
        }
        let mut progress = false;
        let mut sent = 0;
        match self.write_out() {
            Ok(n) => progress |= n > 0,
            Err(f) => return (self.io_failed(f), 0),
        }
        if !body.is_empty() && self.out_flushed() {
            match self.write_slice(body) {
                Ok(n) => sent = n,
                Err(f) => return (self.io_failed(f), 0),
            }
        }
        if progress || sent > 0 {
            // A backend taking request bytes is not idle.
            progress = true;
            self.last_io = now;
        }
        loop {
            match self.read_in(pool) {
                Ok(Some(0)) => break,
                Ok(Some(_)) => {
                    progress = true;
                    self.last_io = now;
                    if self.report.ttfb.is_none() {
                        self.report.ttfb = Some(now.saturating_duration_since(self.sent_at));
                    }
                    match self.take_response(ctx, streamed, &mut on_head) {
                        Ok(Taken::More) => {}
                        Ok(Taken::Complete) => return (Step::Complete, sent),
                        Ok(Taken::Tunnel) => return (Step::Tunnel, sent),
                        Err(e) => return (Step::Invalid(e), sent),
                    }
                }
                Ok(None) => return (self.at_eof(), sent),
                Err(f) => return (self.io_failed(f), sent),
            }
        }
        // Streamed bytes may be waiting from before the client made room.
        if streamed && self.inb.as_ref().is_some_and(|i| i.len() > self.splice) {
            let before = (self.splice, self.inb.as_ref().map_or(0, Buffer::len));
            match self.take_response(ctx, streamed, &mut on_head) {
                Ok(Taken::More) => progress |= (self.splice, self.inb.as_ref().map_or(0, Buffer::len)) != before,
                Ok(Taken::Complete) => return (Step::Complete, sent),
                Ok(Taken::Tunnel) => return (Step::Tunnel, sent),
                Err(e) => return (Step::Invalid(e), sent),
            }
        }
        (if progress { Step::Progress } else { Step::Idle }, sent)
    }

    /// Parses and scans what is buffered: interim heads, the final head
    /// (captured, and for a streamed response handed to `on_head` first),
    /// then body bytes.
    fn take_response(
        &mut self,
        ctx: RequestContext,
        streamed: bool,
        on_head: &mut impl FnMut(&ResponseHead, &[u8]),
    ) -> Result<Taken, crate::http::Error> {
        loop {
            if !self.head.is_complete() {
                let Some(len) = self.parse_head(ctx)? else {
                    return Ok(Taken::More);
                };
                if streamed {
                    if let Some(inb) = self.inb.as_ref() {
                        on_head(&self.head, inb.data());
                    }
                }
                if self.head.is_interim() {
                    self.consume(len);
                    self.head.clear();
                    continue;
                }
                self.capture_head(len);
                let framing = self.head.framing();
                self.body = BodyDecoder::new(framing);
                self.reusable = self.asked_keep_alive && self.head.keep_alive() && framing != Framing::Tunnel;
                self.head_forwarded = streamed;
                self.consume(len);
                if streamed && framing == Framing::Tunnel {
                    return Ok(Taken::Tunnel);
                }
            }
            // Streamed bytes stay for the client: `splice` counts them.
            let from = if streamed { self.splice } else { 0 };
            let n = self.scan_body(from)?;
            if streamed {
                self.splice += n;
            } else {
                self.consume(n);
            }
            return Ok(if self.body.is_done() {
                Taken::Complete
            } else {
                Taken::More
            });
        }
    }

    fn consume(&mut self, n: usize) {
        if let Some(inb) = self.inb.as_mut() {
            inb.consume(n);
        }
    }

    /// What the backend closing its connection means now.
    fn at_eof(&mut self) -> Step {
        if self.head.is_complete() {
            return match self.body.finish() {
                Ok(()) => {
                    self.reusable = false;
                    Step::Complete
                }
                Err(_) => Step::Failed(Outcome::Truncated),
            };
        }
        if self.report.bytes > 0 {
            Step::Failed(Outcome::Truncated)
        } else if self.reused && self.retryable {
            Step::Stale
        } else {
            Step::Failed(Outcome::Reset)
        }
    }

    /// What an I/O failure means now: a reset before any response byte on a
    /// reused connection is a stale connection.
    fn io_failed(&self, f: Failure) -> Step {
        if f == Failure::Reset && self.report.bytes == 0 && self.reused && self.retryable {
            Step::Stale
        } else {
            Step::Failed(outcome_of(f))
        }
    }

    /// Sends the request again on a fresh connection (a reused one was
    /// stale). The report keeps the request it carries.
    fn retry_fresh(
        &mut self,
        addr: SocketAddr,
        registry: &Registry,
        token: Token,
        now: Instant,
    ) -> Result<(), Failure> {
        let out = std::mem::take(&mut self.out);
        let request_head = std::mem::take(&mut self.report.request_head);
        let request_body = std::mem::take(&mut self.report.request_body);
        let (asked_keep_alive, retryable) = (self.asked_keep_alive, self.retryable);
        self.close(registry);
        self.reset(self.capture, self.capture_cap, now);
        self.out = out;
        self.out_complete = true;
        self.report.request_head = request_head;
        self.report.request_body = request_body;
        self.asked_keep_alive = asked_keep_alive;
        self.retryable = retryable;
        // A fresh connection: a second stale one is not tried.
        self.connect(addr, registry, token, None)
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
        let line = format!(
            "{}: {} {} {} {}: {}",
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
        self.finish(outcome, now);
        self.close(registry);
    }

    /// Acts on where driving came to, for sessions and the backlog alike:
    /// a complete response ends the exchange (the connection kept when it
    /// may carry another), a failure or an invalid response is logged and
    /// ends it, a stale reused connection is retried once on a fresh one
    /// (registered on `token`). Says what the caller may still have to do.
    pub(crate) fn settle(
        &mut self,
        step: Step,
        registry: &Registry,
        backend: &Backend,
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
                match self.retry_fresh(backend.addr, registry, token, now) {
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
        self.state = State::Done;
        self.report.outcome = outcome;
        let total = (outcome == Outcome::Complete).then(|| now.saturating_duration_since(self.sent_at));
        // A request never sent is counted as dropped, not as an exchange.
        if outcome != Outcome::Dropped {
            self.stats.record(self.report.backend, outcome, total);
        }
        if outcome == Outcome::Complete {
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
            if let Some(mut sock) = self.sock.take() {
                let _ = registry.deregister(&mut sock);
                pools.give(self.report.backend, sock, now);
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

    /// Appends request body bytes to this backend's copy; false when the
    /// copy passed `cap` (nothing more is appended: end the backend's part).
    pub(crate) fn copy_body(&mut self, chunk: &[u8], cap: usize) -> bool {
        self.copied += chunk.len();
        if self.copied > cap {
            return false;
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
    pub(crate) fn take_tunnel(&mut self, pool: &mut BufferPool) -> Option<(TcpStream, Readiness, Buffer)> {
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
    pub(crate) fn keep(&mut self) -> Option<(TcpStream, Readiness)> {
        if self.state != State::Idle || !self.reusable {
            return None;
        }
        let sock = self.sock.take()?;
        let ready = std::mem::take(&mut self.ready);
        self.reusable = false;
        Some((sock, ready))
    }

    /// Takes back a connection [`keep`](Self::keep) gave out.
    pub(crate) fn adopt(&mut self, sock: TcpStream, ready: Readiness) {
        self.sock = Some(sock);
        self.ready = ready;
        self.reusable = true;
    }

    /// Readies an idle upstream (no connection, no buffer) for another
    /// client: nothing of the last exchange stays, and request bytes keep
    /// at most `max_room` of room.
    pub(crate) fn recycle(&mut self, max_room: usize) {
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

/// What the buffered response bytes came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Taken {
    /// More bytes are needed.
    More,
    /// The response is complete.
    Complete,
    /// The head opened a tunnel (streamed responses only).
    Tunnel,
}

/// The outcome an I/O failure stands for.
pub(crate) fn outcome_of(f: Failure) -> Outcome {
    match f {
        Failure::Refused => Outcome::Refused,
        Failure::Reset | Failure::Other => Outcome::Reset,
    }
}

/// Writes `data` while the socket takes it; returns how much went.
fn write_ready(sock: Option<&mut TcpStream>, ready: &mut Readiness, data: &[u8]) -> Result<usize, Failure> {
    let Some(sock) = sock else { return Ok(0) };
    let mut total = 0;
    while ready.writable && total < data.len() {
        match ready.write(sock, &data[total..]) {
            Io::Done(n) => total += n,
            Io::WouldBlock => break,
            Io::Closed => return Err(Failure::Reset),
            Io::Failed(f) => return Err(f),
        }
    }
    Ok(total)
}

fn empty_report(backend: usize) -> BackendReport {
    BackendReport {
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
