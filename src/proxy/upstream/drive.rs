//! Driving one backend connection: connect, send the request (head, then
//! body bytes), read and parse the response into the buffer (small first,
//! grown when a response fills it), streamed or captured.

use super::*;

impl Upstream {
    /// Opens a connection unless a reusable one is there; `pooled` is an
    /// idle connection from the shared pool to use first. With `tls`, the
    /// new connection carries TLS (its handshake goes out with the
    /// request).
    pub(crate) fn connect(
        &mut self,
        addr: SocketAddr,
        tls: Option<&Connector>,
        registry: &Registry,
        token: Token,
        pooled: Option<Stream>,
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
                self.addr = Some(addr);
                self.ready.reset();
                self.reused = true;
                self.reusable = false;
                return Ok(());
            }
        }
        let tcp = TcpStream::connect(addr).map_err(|e| {
            self.stats.connected(self.report.backend, false, Instant::now());
            Failure::of(&e)
        })?;
        let _ = tcp.set_nodelay(true);
        let mut sock = match tls {
            None => Stream::Plain(tcp),
            Some(c) => c.connect(tcp).map_err(|e| {
                warn!("cannot start TLS to {addr}: {e}");
                Failure::Tls
            })?,
        };
        registry
            .register(&mut sock, token, Interest::READABLE | Interest::WRITABLE)
            .map_err(|e| Failure::of(&e))?;
        self.sock = Some(sock);
        self.addr = Some(addr);
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
        match net::connect_result(sock.tcp()) {
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
        // Sent bytes go, unless a reused connection may turn out stale: then
        // the request (a head alone) is sent again from here.
        if self.out_pos == self.out.len() && !(self.reused && self.retryable) {
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
    pub(super) fn out_flushed(&self) -> bool {
        self.out_pos >= self.out.len()
    }

    /// Reads once into the response buffer. `Ok(None)` at EOF.
    pub(super) fn read_in(&mut self, pool: &mut BufferPool) -> Result<Option<usize>, Failure> {
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
        match sock.read(&mut self.ready, space) {
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
        let (digester, coding) = (&mut self.digester, self.coding);
        let scanned = self.body.scan(input, |r| {
            if !capture {
                return;
            }
            let room = cap.saturating_sub(report.response_body.len());
            let keep = r.len().min(room);
            report.response_body.extend_from_slice(&input[r.start..r.start + keep]);
            if keep < r.len() {
                // Past the capture: the rest is digested as it streams
                // (starting with what was captured), never kept.
                report.truncated = true;
                let d = digester.get_or_insert_with(|| {
                    let mut d = Box::new(Digester::new(coding));
                    d.update(&report.response_body);
                    d
                });
                d.update(&input[r.start + keep..r.end]);
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
                Ok(true) => {
                    self.last_io = now;
                    self.stats.connected(self.report.backend, true, now);
                }
                Ok(false) => return (Step::Idle, 0),
                Err(f) => return (Step::Failed(outcome_of(f)), 0),
            },
            State::Active => {}
        }
        let mut progress = false;
        let mut sent = 0;
        // TLS records held (the handshake, encrypted request bytes) first.
        if let Some(sock) = self.sock.as_mut() {
            match sock.flush(&mut self.ready) {
                Ok(moved) => progress |= moved,
                Err(f) => return (self.io_failed(f), 0),
            }
        }
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
                if self.capture {
                    self.coding = Coding::of(self.head.header(&self.report.response_raw, "content-encoding"));
                }
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
    pub(super) fn retry_fresh(
        &mut self,
        addr: SocketAddr,
        tls: Option<&Connector>,
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
        self.connect(addr, tls, registry, token, None)
    }
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

/// Writes `data` while the socket takes it; returns how much went.
fn write_ready(sock: Option<&mut Stream>, ready: &mut Readiness, data: &[u8]) -> Result<usize, Failure> {
    let Some(sock) = sock else { return Ok(0) };
    let mut total = 0;
    while ready.writable && total < data.len() {
        match sock.write(ready, &data[total..]) {
            Io::Done(n) => total += n,
            Io::WouldBlock => break,
            Io::Closed => return Err(Failure::Reset),
            Io::Failed(f) => return Err(f),
        }
    }
    Ok(total)
}
