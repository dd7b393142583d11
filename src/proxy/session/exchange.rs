//! One exchange from start to end: the plan carried out (backends
//! selected, heads rewritten, requests sent), then completion: the hooks,
//! the backlog for late shadows, and the next request.

use super::*;

impl Session {
    pub(super) fn start_exchange<H: Hooks>(&mut self, cx: &mut Cx<'_, H>, len: usize) {
        self.req_bytes.clear();
        self.req_bytes.extend_from_slice(&self.cin.data()[..len]);
        self.cin.consume(len);
        *cx.next_id += 1;
        self.exchange_id = *cx.next_id;
        self.served = true;
        let backends = &cx.cfg.backends;
        let master = cx.cfg.master();
        let request = Request::new(&self.req, &self.req_bytes, self.peer);
        let tunnel = self.req.upgrade() || self.req.method() == Method::Connect;
        let picked = cx.hooks.select_backends(&request, backends);
        let mut selection = plan::selection(picked, backends.len(), master, tunnel);
        self.answer = if selection.contains(master) {
            Answer::Master(master)
        } else {
            Answer::First(None)
        };
        // Shadows at their in-flight cap are dropped before anything is
        // sent, never queued in front of the client; a request that loses
        // every shadow is served as master-only (only counted).
        let mut dropped = Selection::none();
        if self.answer.master().is_some() {
            for b in selection.iter().filter(|&b| b != master) {
                if !cx.backlog.reserve(b, &mut self.ups[b], cx.now) {
                    debug!(
                        "{}: {} has too many requests in flight; dropped",
                        self.peer, backends[b].name
                    );
                    dropped = dropped.with(b);
                }
            }
            if dropped.len() + 1 == selection.len() {
                selection = Selection::only(master);
            }
        }
        self.selection = selection;
        self.response = Reply::Owed;
        let multi = selection.len() > 1;
        let capture = multi || self.answer.master().is_none();
        let retryable = self.retryable();
        // Set before dispatching: a backend failing at once may answer the
        // client (and move to Closing) right away.
        self.req_body = BodyDecoder::new(self.req.framing());
        self.fwd = 0;
        self.phase = Phase::Exchange;
        let mut failed = Vec::new();
        for b in selection.iter() {
            let backend = &backends[b];
            let direct = self.answer.master() == Some(b);
            if dropped.contains(b) {
                self.ups[b].drop_request(cx.now);
                continue;
            }
            let connection = plan::backend_connection(direct, multi, self.req.upgrade(), cx.cfg.keep_alive);
            let mut rw = plan::backend_rewrite(cx.cfg, backend, &request, connection, direct, self.exchange_id);
            cx.hooks.munge_request(backend, &request, &mut rw);
            let send = Send {
                capture,
                capture_cap: cx.cfg.capture_cap,
                keep_alive: connection == Connection::KeepAlive && self.req.keep_alive(),
                retryable,
                record: multi,
            };
            let up = &mut self.ups[b];
            up.drop_if_moved(backend.addr, cx.registry);
            up.begin(send, cx.registry, cx.now, |out| {
                write_request(&self.req, &self.req_bytes, &rw, out)
            });
            let pooled = if up.has_connection() {
                None
            } else {
                cx.pools.take(b, cx.now)
            };
            let tls = cx.connectors.get(b).and_then(Option::as_ref);
            if let Err(f) = up.connect(backend.addr, tls, cx.registry, cx.tokens.backend(cx.slot, b), pooled) {
                failed.push((b, outcome_of(f)));
            }
        }
        self.account_request(selection.len() > 1);
        if self.req_body.is_done() {
            self.copies_complete();
        }
        for (b, outcome) in failed {
            self.fail(cx, b, outcome);
        }
        debug!(
            "{}: exchange {} {} {} to {} backend(s)",
            self.peer,
            self.exchange_id,
            String::from_utf8_lossy(self.req.method_bytes(&self.req_bytes)),
            String::from_utf8_lossy(self.req.target(&self.req_bytes)),
            selection.len()
        );
    }

    /// A request that may be sent again: idempotent, no body bytes sent yet.
    pub(super) fn retryable(&self) -> bool {
        self.req.method().is_idempotent() && self.req.framing() == Framing::Empty
    }

    pub(super) fn settle<H: Hooks>(&mut self, cx: &mut Cx<'_, H>) -> bool {
        match self.phase {
            // Shadows of the last exchange may still be answering.
            Phase::Head => !self.selection.is_empty() && self.finish_exchange(cx),
            Phase::Closing => {
                if self.client.is_some() && self.client_flushed() {
                    self.account_done(cx, true);
                    self.close_client(cx.registry);
                    return true;
                }
                self.finish_exchange(cx)
            }
            Phase::Tunnel => false,
            Phase::Exchange => {
                let mut progress = false;
                if !self.response.is_sent() && self.response_sent() {
                    let keep = self.response.keep();
                    self.response = Reply::Sent { keep };
                    self.account_done(cx, true);
                    progress = true;
                    if !keep || !self.req_body.is_done() {
                        self.close_client(cx.registry);
                    }
                }
                if self.response.is_sent() && self.client.is_some() && cx.cfg.keep_alive == KeepAlive::Always {
                    // Shadows may go on answering while the client is idle;
                    // they move to the backlog only if a next request comes
                    // first (no syscall for the common case).
                    self.phase = Phase::Head;
                    self.head_since = cx.now;
                    progress = true;
                }
                if self.response.is_sent() || self.client.is_none() {
                    progress |= self.finish_exchange(cx);
                }
                progress
            }
        }
    }

    /// The client has its whole response.
    pub(super) fn response_sent(&self) -> bool {
        let flushed = self.client_flushed();
        match self.answer {
            Answer::Master(m) => self.ups[m].is_done() && flushed,
            Answer::First(Some(_)) => flushed,
            Answer::First(None) | Answer::Nobody => false,
        }
    }

    /// When every selected backend is done: the hooks, then the next request
    /// or the end.
    pub(super) fn finish_exchange<H: Hooks>(&mut self, cx: &mut Cx<'_, H>) -> bool {
        if self.selection.is_empty() || self.selection.iter().any(|b| !self.ups[b].is_done()) {
            return false;
        }
        if self.selection.len() > 1 {
            let reports: Vec<_> = self.selection.iter().map(|b| self.ups[b].take_report()).collect();
            let exchange = Exchange {
                id: self.exchange_id,
                request: Request::new(&self.req, &self.req_bytes, self.peer),
                backends: &cx.cfg.backends,
                reports: &reports,
            };
            cx.hooks.backends_finished(&exchange);
        }
        self.next_request(cx);
        true
    }

    /// The client has its response while shadows still answer: they move
    /// to the backlog with the request, and the client's next request may
    /// start. With the backlog full they are dropped (counted).
    pub(super) fn detach<H: Hooks>(&mut self, cx: &mut Cx<'_, H>) -> bool {
        let waiting = self
            .selection
            .iter()
            .filter(|&b| !self.ups[b].is_done())
            .fold(Selection::none(), Selection::with);
        if waiting.is_empty() || self.answer.master().is_none_or(|m| waiting.contains(m)) {
            return false;
        }
        if cx.backlog.is_full() {
            // Never waited for in front of the client: dropped, counted.
            debug!("{}: too many exchanges pending; shadow answers dropped", self.peer);
            for b in waiting.iter() {
                self.ups[b].end(Outcome::Dropped, cx.registry, cx.now);
                cx.backlog.count_drop(b);
            }
            return true;
        }
        let mut ups = Vec::with_capacity(waiting.len());
        for b in waiting.iter() {
            let fresh = Upstream::new(b, cx.cfg.backends[b].timeout, cx.now, cx.backlog.stats().clone());
            ups.push(std::mem::replace(&mut self.ups[b], fresh));
        }
        let done = self
            .selection
            .iter()
            .filter(|&b| !waiting.contains(b))
            .map(|b| self.ups[b].take_report())
            .collect();
        let pending = Pending {
            id: self.exchange_id,
            peer: self.peer,
            req: std::mem::take(&mut self.req),
            req_bytes: std::mem::take(&mut self.req_bytes),
            done,
            ups,
        };
        cx.backlog.adopt(pending, cx.registry, cx.tokens, cx.pool);
        self.next_request(cx);
        true
    }

    /// Readies the session for the client's next request.
    pub(super) fn next_request<H: Hooks>(&mut self, cx: &mut Cx<'_, H>) {
        // Any way out not accounted for on the client's side.
        self.account_done(cx, false);
        for b in self.selection.iter() {
            let up = &mut self.ups[b];
            up.end_exchange(cx.registry);
            cx.backlog.unreserve(up);
        }
        self.selection = Selection::none();
        self.answer = Answer::Nobody;
        self.req.clear();
        if self.client.is_some() && self.phase == Phase::Exchange {
            self.phase = Phase::Head;
            self.head_since = cx.now;
        }
    }
}
