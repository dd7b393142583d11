//! The client side of a session: reading and writing the client socket,
//! the request head and body, and final answers (errors).

use super::*;

impl Session {
    pub(super) fn read_client<H: Hooks>(&mut self, cx: &mut Cx<'_, H>) -> bool {
        if !self.ready.readable || self.client_eof || self.phase == Phase::Closing {
            return false;
        }
        let Some(client) = self.client.as_mut() else {
            return false;
        };
        // The first byte of a head after a keep-alive idle starts its clock.
        let head_starts = self.phase == Phase::Head && self.served && self.cin.is_empty();
        // A head is read into a small buffer first and grows only when it
        // fills it; a body streams through a whole one.
        if self.cin.capacity() == 0 {
            let size = if self.phase == Phase::Head {
                SMALL_BUFFER
            } else {
                CLIENT_BUFFER
            };
            self.cin = cx.pool.take(size);
        } else if self.cin.is_full() {
            cx.pool.grow(&mut self.cin, CLIENT_BUFFER);
        }
        let space = self.cin.space();
        if space.is_empty() {
            return false;
        }
        match client.read(&mut self.ready, space) {
            Io::Done(n) => {
                self.cin.fill(n);
                self.last_client_io = cx.now;
                if head_starts {
                    self.head_since = cx.now;
                }
                true
            }
            Io::WouldBlock => false,
            Io::Closed => {
                self.client_eof = true;
                true
            }
            Io::Failed(f) => {
                let why = client.tls_error().map(|e| format!(" ({e})")).unwrap_or_default();
                debug!("{}: client connection failed: {f:?}{why}", self.peer);
                self.client_gone(cx);
                true
            }
        }
    }

    pub(super) fn write_client<H: Hooks>(&mut self, cx: &mut Cx<'_, H>) -> bool {
        // TLS records held for the client (the handshake, a response's
        // last bytes) go first.
        let mut progress = match self.client.as_mut().map(|c| c.flush(&mut self.ready)) {
            Some(Ok(moved)) => moved,
            Some(Err(f)) => {
                debug!("{}: client connection failed: {f:?}", self.peer);
                self.client_gone(cx);
                return true;
            }
            None => false,
        };
        while self.ready.writable {
            let Some(client) = self.client.as_mut() else {
                return progress;
            };
            // What is owed, in order: proxy-written bytes (heads, answers),
            // then body bytes spliced from the direct master's buffer.
            let head = &self.cout[self.cout_pos.min(self.cout.len())..];
            let up = self.answer.master().and_then(|m| self.ups.get_mut(m));
            let body: &[u8] = up.as_deref().map_or(&[], Upstream::owed);
            if head.is_empty() && body.is_empty() {
                break;
            }
            // Head and body in one syscall when both are waiting; a full
            // socket clears writable and the loop ends until the next edge.
            match client.write2(&mut self.ready, head, body) {
                Io::Done(n) => {
                    self.account.sent(n);
                    let from_head = n.min(head.len());
                    self.cout_pos += from_head;
                    if self.cout_pos >= self.cout.len() {
                        self.cout.clear();
                        self.cout_pos = 0;
                    }
                    if let Some(up) = up {
                        up.took(n - from_head);
                    }
                    progress = true;
                    self.last_client_io = cx.now;
                }
                Io::WouldBlock => break,
                Io::Closed | Io::Failed(_) => {
                    debug!("{}: client went away while being written to", self.peer);
                    self.client_gone(cx);
                    return true;
                }
            }
        }
        progress
    }

    /// Bytes owed to the client are all written.
    pub(super) fn client_flushed(&self) -> bool {
        self.cout_pos >= self.cout.len()
            && !self.client.as_ref().is_some_and(Stream::wants_flush)
            && self
                .answer
                .master()
                .and_then(|m| self.ups.get(m))
                .is_none_or(|u| u.owed().is_empty())
    }

    pub(super) fn advance_client<H: Hooks>(&mut self, cx: &mut Cx<'_, H>) -> bool {
        match self.phase {
            Phase::Head => self.read_head(cx),
            Phase::Exchange => self.feed_body(cx),
            Phase::Tunnel | Phase::Closing => false,
        }
    }

    pub(super) fn read_head<H: Hooks>(&mut self, cx: &mut Cx<'_, H>) -> bool {
        if self.client.is_none() {
            return false;
        }
        if !self.selection.is_empty() && !self.cin.is_empty() {
            // The next request is coming while shadows of the last one still
            // answer: what has arrived from them is taken first, the rest
            // finish in the backlog.
            for b in self.selection.iter() {
                self.drive_upstream(cx, b);
            }
            if !self.finish_exchange(cx) {
                self.detach(cx);
            }
        }
        if self.cin.is_empty() {
            if self.client_eof {
                self.close_client(cx.registry);
                return true;
            }
            if cx.draining {
                debug!("{}: closing idle connection for shutdown", self.peer);
                self.close_client(cx.registry);
                return true;
            }
            return false;
        }
        match self.req.parse(self.cin.data()) {
            Ok(HeadStatus::Partial) => {
                if self.client_eof {
                    info!("{}: client closed in the middle of a request head", self.peer);
                    self.close_client(cx.registry);
                    return true;
                }
                false
            }
            Ok(HeadStatus::Complete(len)) => {
                self.start_exchange(cx, len);
                true
            }
            Err(e) => {
                warn!("{}: bad request: {} ({})", self.peer, e.reason(), e.status());
                self.reply(cx, e.status(), e.reason());
                true
            }
        }
    }

    /// Scans request body bytes: owed to the direct master, copied to the rest.
    pub(super) fn feed_body<H: Hooks>(&mut self, cx: &mut Cx<'_, H>) -> bool {
        if self.req_body.is_done() || self.client.is_none() {
            return false;
        }
        let input = &self.cin.data()[self.fwd..];
        if input.is_empty() {
            if self.client_eof {
                info!("{}: client closed in the middle of a request body", self.peer);
                self.abort_all(cx);
                return true;
            }
            return false;
        }
        let scanned = match self.req_body.scan(input, |_| {}) {
            Ok(s) => s,
            Err(e) => {
                warn!("{}: bad request body: {} ({})", self.peer, e.reason(), e.status());
                self.abort_backends(cx);
                if self.answer.master().is_some_and(|m| self.ups[m].head_forwarded()) || !self.cout.is_empty() {
                    self.account_done(cx, false);
                    self.close_client(cx.registry);
                } else {
                    self.reply(cx, e.status(), e.reason());
                }
                return true;
            }
        };
        let n = scanned.consumed;
        let chunk = &input[..n];
        let cap = cx.cfg.capture_cap;
        let window = cx.cfg.shadow_body_window;
        let multi = self.selection.len() > 1;
        for b in self.selection.iter() {
            let up = &mut self.ups[b];
            if !up.is_busy() {
                continue;
            }
            if multi {
                up.record_body(chunk, cap);
            }
            if Some(b) == self.answer.master() {
                continue;
            }
            if !up.copy_body(chunk, window) {
                // Rate-limited like every backend failure.
                if let Some(unlogged) = cx.backlog.stats().failure_to_log(b, cx.now) {
                    let name = &cx.cfg.backends[b].name;
                    info!(
                        "{}: {name} fell more than {window} bytes behind the request body; cut for this request (too_slow; {unlogged} failure(s) of {name} not logged since the last line)",
                        self.peer
                    );
                }
                up.end(Outcome::TooSlow, cx.registry, cx.now);
            }
        }
        if self.answer.master().is_some() {
            self.fwd += n;
        } else {
            self.cin.consume(n);
        }
        if scanned.done {
            self.copies_complete();
        }
        n > 0
    }

    pub(super) fn copies_complete(&mut self) {
        for b in self.selection.iter() {
            self.ups[b].request_complete();
        }
    }

    /// Answers the client with an error and closes after it.
    pub(super) fn reply<H: Hooks>(&mut self, cx: &mut Cx<'_, H>, status: u16, reason: &str) {
        self.cout.clear();
        self.cout_pos = 0;
        reply::error(status, reason, &mut self.cout);
        self.account_reply(status, self.cout.len() - reply::body_len(reason));
        self.phase = Phase::Closing;
        self.response = Reply::Sending { keep: false };
        self.fwd = 0;
        if let Some(m) = self.answer.master() {
            self.ups[m].forget_owed();
        }
        let _ = cx;
    }
}
