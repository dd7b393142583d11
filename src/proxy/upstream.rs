//! One backend connection of a session: the request going out, the response
//! coming back, and what is captured of it for the hooks.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::hooks::{BackendReport, Outcome};
use crate::buffer::{Buffer, BufferPool};
use crate::http::{BodyDecoder, HeadStatus, RequestContext, ResponseHead};
use crate::net::{self, Failure, Io, Readiness};

/// Response bytes read from a backend before the proxy stops reading it (the
/// master's are spliced to the client from here). At least a maximal head.
pub const BACKEND_BUFFER: usize = crate::http::limits::MAX_HEAD_LEN;

/// Where a backend stands in the current exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
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
    pub(crate) sock: Option<TcpStream>,
    pub(crate) state: State,
    pub(crate) ready: Readiness,
    /// The connection came from an earlier exchange (may be stale).
    pub(crate) reused: bool,
    /// The connection may carry another request after this exchange.
    pub(crate) reusable: bool,
    /// Request bytes to send: the head, then (for copies) the body.
    pub(crate) out: Vec<u8>,
    pub(crate) out_pos: usize,
    /// The request copy in `out` is complete.
    pub(crate) out_complete: bool,
    /// Body bytes copied into `out` for this request.
    pub(crate) copied: usize,
    pub(crate) inb: Option<Buffer>,
    pub(crate) head: ResponseHead,
    pub(crate) body: BodyDecoder,
    /// Bytes at the front of `inb` that belong to the client (direct master).
    pub(crate) splice: usize,
    /// Keep response bytes for the hooks.
    pub(crate) capture: bool,
    pub(crate) capture_cap: usize,
    pub(crate) report: BackendReport,
    pub(crate) sent_at: Instant,
    pub(crate) last_io: Instant,
    pub(crate) timeout: Duration,
    /// The response head was sent on to the client.
    pub(crate) head_forwarded: bool,
}

impl Upstream {
    pub(crate) fn new(index: usize, timeout: Duration, now: Instant) -> Self {
        Upstream {
            sock: None,
            state: State::Idle,
            ready: Readiness::default(),
            reused: false,
            reusable: false,
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
        }
    }

    /// Gets ready for a new exchange; keeps an idle connection that may be
    /// reused. The request head must be put in `out` afterwards.
    pub(crate) fn begin(&mut self, capture: bool, capture_cap: usize, now: Instant) {
        self.state = State::Active;
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
    pub(crate) fn poll_connect(&mut self) -> Result<bool, Failure> {
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
    pub(crate) fn write_out(&mut self) -> Result<usize, Failure> {
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
    pub(crate) fn write_slice(&mut self, data: &[u8]) -> Result<usize, Failure> {
        write_ready(self.sock.as_mut(), &mut self.ready, data)
    }

    /// All request bytes that are in `out` were written.
    pub(crate) fn out_flushed(&self) -> bool {
        self.out_pos >= self.out.len()
    }

    /// Reads once into the response buffer. `Ok(None)` at EOF.
    pub(crate) fn read_in(&mut self, pool: &mut BufferPool) -> Result<Option<usize>, Failure> {
        if !self.ready.readable {
            return Ok(Some(0));
        }
        let inb = self.inb.get_or_insert_with(|| pool.take(BACKEND_BUFFER));
        let space = inb.space();
        if space.is_empty() {
            return Ok(Some(0));
        }
        let Some(sock) = self.sock.as_mut() else {
            return Ok(Some(0));
        };
        let room = space.len();
        let io = net::read(sock, space);
        self.ready.after_read(io, room);
        match io {
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

    /// Parses a response head from the front of the buffer.
    pub(crate) fn parse_head(&mut self, ctx: RequestContext) -> Result<Option<usize>, crate::http::Error> {
        let Some(inb) = self.inb.as_ref() else { return Ok(None) };
        match self.head.parse(inb.data(), ctx)? {
            HeadStatus::Partial => Ok(None),
            HeadStatus::Complete(len) => Ok(Some(len)),
        }
    }

    /// Keeps head bytes for the report (the final head only: its spans are
    /// offsets into `response_raw`).
    pub(crate) fn capture_head(&mut self, len: usize) {
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
    pub(crate) fn scan_body(&mut self, from: usize) -> Result<usize, crate::http::Error> {
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

    /// Ends this backend's part of the exchange.
    pub(crate) fn finish(&mut self, outcome: Outcome, now: Instant) {
        if self.state == State::Done || self.state == State::Idle {
            return;
        }
        self.state = State::Done;
        self.report.outcome = outcome;
        if outcome == Outcome::Complete {
            self.report.total = Some(now.saturating_duration_since(self.sent_at));
            self.report.response = Some(std::mem::take(&mut self.head));
        } else if self.head.is_complete() {
            self.report.response = Some(std::mem::take(&mut self.head));
        }
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

/// Writes `data` while the socket takes it; returns how much went.
fn write_ready(sock: Option<&mut TcpStream>, ready: &mut Readiness, data: &[u8]) -> Result<usize, Failure> {
    let Some(sock) = sock else { return Ok(0) };
    let mut total = 0;
    while ready.writable && total < data.len() {
        let io = net::write(sock, &data[total..]);
        ready.after_write(io, data.len() - total);
        match io {
            Io::Done(n) => total += n,
            Io::WouldBlock => {}
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
