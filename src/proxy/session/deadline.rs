//! A session's deadlines: the client's (per phase) and each backend's,
//! folded into one instant for the sweep, and what is done when one
//! passes.

use super::*;

impl Session {
    /// The earliest moment something times out.
    pub(crate) fn deadline(&self, cfg: &Config) -> Option<Instant> {
        let mut at: Option<Instant> = None;
        let mut earliest = |t: Instant| at = Some(at.map_or(t, |a| a.min(t)));
        if let Some((t, _)) = self.client_deadline(cfg) {
            earliest(t);
        }
        for (b, up) in self.ups.iter().enumerate() {
            if self.backend_clock_runs(b) {
                earliest(up.deadline());
            }
        }
        at
    }

    /// Whether backend `b`'s own timeout runs: it is connecting or owes a
    /// response, and the client is not what holds it back (a full buffer
    /// the client is slow to take, or request body bytes the client has not
    /// sent yet: those are the client's deadlines).
    pub(super) fn backend_clock_runs(&self, b: usize) -> bool {
        let up = &self.ups[b];
        if !up.is_busy() || self.phase == Phase::Tunnel {
            return false;
        }
        let direct = self.answer.master() == Some(b);
        let held_by_reader = direct && up.buffer_full();
        // A client that sent Expect: 100-continue waits for the master's
        // answer before its body: until the master sends a byte, the wait
        // is the master's.
        let master_owes_100 = direct && self.req.expect_continue() && up.report().bytes == 0;
        let waiting_for_body = up.waits_for_body() && (!direct || self.fwd == 0) && !master_owes_100;
        !held_by_reader && !waiting_for_body
    }

    /// When the client will have taken too long, and at what.
    pub(super) fn client_deadline(&self, cfg: &Config) -> Option<(Instant, ClientWait)> {
        if let Some(tunnel) = self.tunnel.as_ref() {
            return Some((tunnel.since() + cfg.client_idle_timeout, ClientWait::Tunnel));
        }
        self.client.as_ref()?;
        let wait = match self.phase {
            Phase::Head if self.served && self.cin.is_empty() => ClientWait::Idle,
            Phase::Head => ClientWait::Head,
            // A full buffer waits for the master, not for the client.
            Phase::Exchange if !self.req_body.is_done() && self.cin.len() < CLIENT_BUFFER => ClientWait::Body,
            Phase::Exchange if !self.client_flushed() => ClientWait::Reading,
            Phase::Exchange => return None,
            Phase::Tunnel => return None,
            Phase::Closing => ClientWait::Reply,
        };
        let at = match wait {
            ClientWait::Head => self.head_since + cfg.client_timeout,
            ClientWait::Idle => self.head_since + cfg.keepalive_timeout,
            ClientWait::Body | ClientWait::Reading | ClientWait::Tunnel => {
                self.last_client_io + cfg.client_idle_timeout
            }
            ClientWait::Reply => self.last_client_io + cfg.client_timeout,
        };
        Some((at, wait))
    }

    /// The client took too long at `wait`.
    pub(super) fn client_timed_out<H: Hooks>(&mut self, cx: &mut Cx<'_, H>, wait: ClientWait) {
        match wait {
            ClientWait::Head if self.cin.is_empty() => {
                debug!("{}: no request within the client timeout; closing", self.peer);
                self.close_client(cx.registry);
            }
            ClientWait::Head => {
                info!(
                    "{}: no complete request head within {:?} of its start; 408",
                    self.peer, cx.cfg.client_timeout
                );
                self.reply(cx, 408, "request head not received in time");
                // One more chance to flush the 408, then it is closed.
                self.last_client_io = cx.now;
            }
            ClientWait::Idle => {
                debug!("{}: idle keep-alive connection past its timeout; closing", self.peer);
                self.close_client(cx.registry);
            }
            ClientWait::Body => {
                info!(
                    "{}: request body made no progress for {:?}; cut",
                    self.peer, cx.cfg.client_idle_timeout
                );
                let answered =
                    self.answer.master().is_some_and(|m| self.ups[m].head_forwarded()) || !self.cout.is_empty();
                self.abort_backends(cx);
                if answered {
                    self.account_done(cx, false);
                    self.close_client(cx.registry);
                } else {
                    self.reply(cx, 408, "request body not received in time");
                    self.last_client_io = cx.now;
                }
            }
            ClientWait::Reading => {
                info!(
                    "{}: client read nothing of its response for {:?}; closing",
                    self.peer, cx.cfg.client_idle_timeout
                );
                self.client_gone(cx);
            }
            ClientWait::Tunnel => {
                debug!("{}: tunnel idle past the client idle timeout; closing", self.peer);
                self.end_tunnel(cx, Outcome::Skipped);
            }
            ClientWait::Reply => {
                debug!(
                    "{}: final answer not taken within the client timeout; closing",
                    self.peer
                );
                self.account_done(cx, false);
                self.close_client(cx.registry);
            }
        }
    }

    /// Applies every timeout due at `now`.
    pub(crate) fn on_timeout<H: Hooks>(&mut self, cx: &mut Cx<'_, H>) {
        let now = cx.now;
        for b in 0..self.ups.len() {
            if self.backend_clock_runs(b) && now >= self.ups[b].deadline() {
                self.fail(cx, b, Outcome::Timeout);
            }
        }
        match self.client_deadline(cx.cfg) {
            Some((at, wait)) if now >= at => self.client_timed_out(cx, wait),
            _ => {}
        }
        self.pump(cx);
    }
}
