//! The backends of a session's exchange: driving each (the master
//! streamed to the client, shadows captured), what their outcomes mean for
//! the client, and the tunnel an upgrade turns into.

use super::*;

impl Session {
    pub(super) fn drive_upstream<H: Hooks>(&mut self, cx: &mut Cx<'_, H>, b: usize) -> bool {
        if self.ups[b].is_idle() {
            return self.check_idle(cx, b);
        }
        let ctx = RequestContext::of(&self.req);
        if self.answer.master() != Some(b) {
            let (step, _) = self.ups[b].drive(ctx, cx.pool, cx.now, &[], false, |_, _| {});
            return self.on_step(cx, b, step);
        }
        // The master: body bytes straight from the client's buffer, and its
        // heads rewritten for the client as they come.
        let (cout, scratch, response, account) =
            (&mut self.cout, &mut self.scratch, &mut self.response, &mut self.account);
        let answer = plan::KeepAnswer {
            client_asked: self.req.keep_alive(),
            master_allows: false,
            shadowed: self.selection.len() > 1,
            body_done: self.req_body.is_done(),
            ending: self.client_eof || cx.draining,
        };
        let rule = cx.cfg.keep_alive;
        let body = &self.cin.data()[..self.fwd];
        let (step, sent) = self.ups[b].drive(ctx, cx.pool, cx.now, body, true, |head, raw| {
            let connection = if head.is_interim() {
                Connection::Omit
            } else {
                let keep = plan::KeepAnswer {
                    master_allows: head.keep_alive(),
                    ..answer
                }
                .keep(rule);
                *response = Reply::Sending { keep };
                plan::client_connection(head.framing(), head.status(), keep)
            };
            let before = cout.len();
            queue_head(cout, scratch, head, raw, &HeadRewrite::new(connection));
            let status = (!head.is_interim()).then(|| head.status());
            account.head(status, cout.len() - before);
        });
        self.cin.consume(sent);
        self.fwd -= sent;
        self.on_step(cx, b, step)
    }

    /// A kept-alive master connection between requests: any byte or EOF
    /// means it is no longer usable.
    pub(super) fn check_idle<H: Hooks>(&mut self, cx: &mut Cx<'_, H>, b: usize) -> bool {
        let dropped = self.ups[b].check_idle(cx.registry, cx.pool);
        if dropped {
            debug!(
                "{}: idle connection to {} closed or sent bytes; dropping it",
                self.peer, cx.cfg.backends[b].name
            );
        }
        dropped
    }

    /// Acts on where driving backend `b` came to; true when something moved.
    pub(super) fn on_step<H: Hooks>(&mut self, cx: &mut Cx<'_, H>, b: usize, step: Step) -> bool {
        let request = Request::new(&self.req, &self.req_bytes, self.peer);
        let token = cx.tokens.backend(cx.slot, b);
        let tls = cx.connectors.get(b).and_then(Option::as_ref);
        match self.ups[b].settle(step, cx.registry, &cx.cfg.backends[b], tls, &request, token, cx.now) {
            Settled::Idle => return false,
            Settled::Progress => {}
            Settled::Tunnel => self.open_tunnel(cx, b),
            Settled::Completed => self.completed(b),
            Settled::Failed(outcome) => self.failed(cx, b, outcome),
        }
        true
    }

    /// Backend `b` has its whole response: without the master, the first
    /// complete answer goes to the client (Geest's rule).
    pub(super) fn completed(&mut self, b: usize) {
        let report = self.ups[b].report();
        if self.answer == Answer::First(None) && self.client.is_some() && !report.truncated {
            self.answer = Answer::First(Some(b));
            if let Some(head) = report.response.as_ref() {
                let raw = &report.response_raw;
                let before = self.cout.len();
                queue_head(
                    &mut self.cout,
                    &mut self.scratch,
                    head,
                    raw,
                    &HeadRewrite::new(Connection::Close),
                );
                self.account.head(Some(head.status()), self.cout.len() - before);
                self.cout.extend_from_slice(raw.get(head.len()..).unwrap_or_default());
            }
        }
    }

    /// Backend `b` is done with `outcome` other than Complete.
    pub(super) fn fail<H: Hooks>(&mut self, cx: &mut Cx<'_, H>, b: usize, outcome: Outcome) {
        if !self.ups[b].is_busy() {
            return;
        }
        let request = Request::new(&self.req, &self.req_bytes, self.peer);
        self.ups[b].fail(cx.registry, &cx.cfg.backends[b], &request, outcome, cx.now);
        self.failed(cx, b, outcome);
    }

    /// Backend `b` failed with `outcome` (already logged and closed): what
    /// the client gets instead.
    pub(super) fn failed<H: Hooks>(&mut self, cx: &mut Cx<'_, H>, b: usize, outcome: Outcome) {
        let head_forwarded = self.ups[b].head_forwarded();
        if self.answer.master() == Some(b) {
            if head_forwarded || self.phase == Phase::Tunnel {
                // Part of the response went out: never pad or fake the rest.
                self.response = Reply::Sent { keep: false };
                if self.client_flushed() {
                    self.account_done(cx, false);
                    self.close_client(cx.registry);
                }
            } else {
                let (status, reason) = if outcome == Outcome::Timeout {
                    (504, "the backend did not answer in time")
                } else {
                    (502, "the backend failed to answer")
                };
                self.reply(cx, status, reason);
            }
        } else if self.answer == Answer::First(None) && self.selection.iter().all(|i| self.ups[i].is_done()) {
            self.reply(cx, 502, "no backend answered");
        }
    }

    /// The master answered an upgrade: both sockets, and the bytes each is
    /// still owed, go to a [`Tunnel`].
    pub(super) fn open_tunnel<H: Hooks>(&mut self, cx: &mut Cx<'_, H>, m: usize) {
        if self.client.is_none() {
            self.abort_all(cx);
            return;
        }
        let (Some((master, master_ready, master_buf)), Some(client)) =
            (self.ups[m].take_tunnel(cx.pool), self.client.take())
        else {
            self.abort_all(cx);
            return;
        };
        let mut to_client = self.cout.split_off(self.cout_pos.min(self.cout.len()));
        to_client.extend_from_slice(master_buf.data());
        // A tunnel streams both ways: whole buffers, whatever the heads took.
        cx.pool.grow(&mut self.cin, CLIENT_BUFFER);
        let client_end = End {
            sock: client,
            token: cx.tokens.client(cx.slot),
            ready: self.ready,
            eof: self.client_eof,
            owed: to_client,
            buffer: std::mem::take(&mut self.cin),
        };
        let master_end = End {
            sock: master,
            token: cx.tokens.backend(cx.slot, m),
            ready: master_ready,
            eof: false,
            owed: client_end.buffer.data().to_vec(),
            buffer: master_buf,
        };
        self.cout.clear();
        self.cout_pos = 0;
        self.fwd = 0;
        self.ready.reset();
        self.tunnel = Some(Box::new(Tunnel::open(client_end, master_end, cx.registry, cx.now)));
        self.phase = Phase::Tunnel;
        self.account_done(cx, true);
        debug!("{}: tunnel to {} open", self.peer, cx.cfg.backends[m].name);
    }

    /// Moves tunnel bytes; ends the exchange when both ends were passed on
    /// or a side failed.
    pub(super) fn pump_tunnel<H: Hooks>(&mut self, cx: &mut Cx<'_, H>) -> bool {
        let Some(tunnel) = self.tunnel.as_mut() else {
            return false;
        };
        match tunnel.pass(cx.pool, cx.pipes, cx.now) {
            Ok(_) if tunnel.is_over() => {
                let (up, down) = tunnel.bytes();
                debug!("{}: tunnel closed both ways ({up} bytes up, {down} down)", self.peer);
                self.end_tunnel(cx, Outcome::Complete);
                true
            }
            Ok(progress) => progress,
            Err(why) => {
                debug!("{}: tunnel: {why}; closing both sides", self.peer);
                self.end_tunnel(cx, Outcome::Reset);
                true
            }
        }
    }

    pub(super) fn end_tunnel<H: Hooks>(&mut self, cx: &mut Cx<'_, H>, outcome: Outcome) {
        if let Some(tunnel) = self.tunnel.take() {
            tunnel.close(cx.registry, cx.pool, cx.pipes);
        }
        if let Some(m) = self.answer.master() {
            self.ups[m].end_tunnel(outcome, cx.registry, cx.now);
        }
        self.selection = Selection::none();
    }
}

/// Appends a rewritten response head to what the client is owed.
fn queue_head(cout: &mut Vec<u8>, scratch: &mut Vec<u8>, head: &ResponseHead, buf: &[u8], rw: &HeadRewrite) {
    if cout.is_empty() {
        write_response(head, buf, rw, cout);
    } else {
        write_response(head, buf, rw, scratch);
        cout.extend_from_slice(scratch);
    }
}
