//! The proxy's slab of client connections: accepting, waking a parked
//! one into a session, pumping, parking it again, closing.

use std::time::Instant;

use log::{debug, warn};
use mio::{Interest, Registry};

use super::parked::Parked;
use super::session::{Cx, Session};
use super::{Config, Hooks, MAX_SPARE_SESSIONS, MIN_KEPT_PER_BACKEND, Proxy};
use crate::runtime::tokens::Tokens;
use crate::runtime::transport::Stream;

/// What a slot of the proxy's slab holds: a client connection waiting with
/// nothing buffered (a hundred bytes or so), or one being served.
pub(super) enum Slot {
    Parked(Parked),
    Live(Box<Session>),
}

impl Slot {
    pub(super) fn deadline(&self, cfg: &Config) -> Option<Instant> {
        match self {
            Slot::Parked(p) => Some(p.deadline(cfg)),
            Slot::Live(s) => s.deadline(cfg),
        }
    }
}

impl<H: Hooks> Proxy<H> {
    pub(super) fn accept(&mut self, registry: &Registry, now: Instant) {
        let Some(tokens) = self.tokens else { return };
        // Past the cap, accepting resumes when a session ends.
        let cap = self.cfg.max_connections.min(tokens.slots());
        loop {
            if self.sessions.len() >= cap {
                self.acceptor.at_cap(cap, now);
                return;
            }
            let Some((sock, peer)) = self.acceptor.accept(now) else {
                return;
            };
            let mut sock = match &self.tls {
                None => Stream::Plain(sock),
                Some(tls) => match tls.accept(sock) {
                    Ok(s) => s,
                    Err(e) => {
                        warn!("{peer}: cannot start TLS: {e}");
                        continue;
                    }
                },
            };
            let entry = self.sessions.vacant_entry();
            let slot = entry.key();
            if let Err(e) = registry.register(&mut sock, tokens.client(slot), Interest::READABLE | Interest::WRITABLE) {
                warn!("{peer}: cannot register the connection: {e}");
                continue;
            }
            debug!("{peer}: accepted");
            entry.insert(Slot::Parked(Parked::accepted(sock, peer, now)));
            self.stats.set_connections(self.sessions.len());
            self.after_pump(registry, slot, now);
        }
    }

    pub(super) fn pump(&mut self, registry: &Registry, slot: usize, now: Instant) {
        self.wake(slot, now);
        self.with_session(registry, slot, now, |s, cx| s.pump(cx));
        self.after_pump(registry, slot, now);
    }

    /// Brings a parked connection back into a session (a spare one when
    /// there is one).
    pub(super) fn wake(&mut self, slot: usize, now: Instant) {
        let Some(conn) = self.sessions.get_mut(slot) else {
            return;
        };
        if matches!(conn, Slot::Live(_)) {
            return;
        }
        let session = self
            .spare
            .pop()
            .unwrap_or_else(|| Box::new(Session::new(&self.cfg, now, &self.stats)));
        if let Slot::Parked(p) = std::mem::replace(conn, Slot::Live(session)) {
            uncount(&mut self.kept, p.kept_backend());
            if let Slot::Live(s) = conn {
                s.revive(p, &self.cfg);
            }
        }
    }

    /// Drops connection `slot` and closes it.
    pub(super) fn remove(&mut self, registry: &Registry, slot: usize, now: Instant) {
        let conn = self.sessions.remove(slot);
        self.stats.set_connections(self.sessions.len());
        self.close_conn(registry, conn, now);
        if self.acceptor.may_accept() {
            self.accept(registry, now);
        }
    }

    pub(super) fn close_conn(&mut self, registry: &Registry, conn: Slot, now: Instant) {
        match conn {
            Slot::Parked(p) => {
                uncount(&mut self.kept, p.kept_backend());
                p.close(&self.cfg, registry, &mut self.pools, now)
            }
            Slot::Live(s) => s.close_all(
                registry,
                &mut self.pool,
                &mut self.pools,
                &mut self.pipes,
                &mut self.backlog,
                now,
            ),
        }
    }

    /// Runs `f` on session `slot` with the context sessions work in.
    pub(super) fn with_session(
        &mut self,
        registry: &Registry,
        slot: usize,
        now: Instant,
        f: impl FnOnce(&mut Session, &mut Cx<'_, H>),
    ) {
        let Some(tokens) = self.tokens else { return };
        let Some(Slot::Live(s)) = self.sessions.get_mut(slot) else {
            return;
        };
        let mut cx = Cx {
            cfg: &self.cfg,
            hooks: &mut self.hooks,
            registry,
            tokens,
            slot,
            now,
            next_id: &mut self.next_id,
            draining: self.draining,
            pool: &mut self.pool,
            pools: &mut self.pools,
            pipes: &mut self.pipes,
            backlog: &mut self.backlog,
            connectors: &self.connectors,
        };
        f(s, &mut cx);
        self.pump_fresh(registry, tokens, now);
    }

    /// Pumps the exchanges a session just left in the backlog: readiness
    /// seen before they moved travels with them.
    pub(super) fn pump_fresh(&mut self, registry: &Registry, tokens: Tokens, now: Instant) {
        let fresh = self.backlog.take_fresh();
        for &slot in &fresh {
            self.pump_pending(registry, tokens, slot, now);
        }
        self.backlog.put_back_fresh(fresh);
    }

    pub(super) fn pump_pending(&mut self, registry: &Registry, tokens: Tokens, slot: usize, now: Instant) {
        self.backlog.pump(
            slot,
            &self.cfg,
            &mut self.hooks,
            registry,
            tokens,
            &mut self.pool,
            &mut self.pools,
            now,
        );
    }

    /// Drops a finished session, parks one waiting with nothing to do, or
    /// folds its next deadline into the sweep.
    pub(super) fn after_pump(&mut self, registry: &Registry, slot: usize, now: Instant) {
        let conn = match self.sessions.get_mut(slot) {
            Some(conn) => conn,
            None => return,
        };
        let s = match conn {
            Slot::Live(s) => s,
            Slot::Parked(p) => {
                self.sweep.note(Some(p.deadline(&self.cfg)));
                return;
            }
        };
        if s.is_finished() {
            self.remove(registry, slot, now);
            return;
        }
        s.release_buffers(&mut self.pool);
        if !self.draining && s.can_park() {
            let master = self.cfg.master();
            let master_addr = self.cfg.backends[master].addr;
            if let Some(mut p) = s.park(master, master_addr, registry, &mut self.pool, &mut self.pools, now) {
                if let Some(b) = p.kept_backend() {
                    if self.kept[b] < self.cfg.pool_idle_per_backend.max(MIN_KEPT_PER_BACKEND) {
                        self.kept[b] += 1;
                    } else {
                        p.hand_back(&self.cfg, registry, &mut self.pools, now);
                    }
                }
                self.sweep.note(Some(p.deadline(&self.cfg)));
                if let Slot::Live(emptied) = std::mem::replace(conn, Slot::Parked(p)) {
                    if self.spare.len() < MAX_SPARE_SESSIONS {
                        self.spare.push(emptied);
                    }
                }
                return;
            }
        }
        if s.yielded && !s.queued {
            s.queued = true;
            self.hot.push(slot, now);
        }
        self.sweep.note(s.deadline(&self.cfg));
    }
}

/// Runs `f` on a parked connection and counts a kept backend connection
/// it let go of.
pub(super) fn with_parked<T>(kept: &mut [usize], p: &mut Parked, f: impl FnOnce(&mut Parked) -> T) -> T {
    let before = p.kept_backend();
    let out = f(p);
    if p.kept_backend().is_none() {
        uncount(kept, before);
    }
    out
}

/// One kept connection to backend `b` fewer.
pub(super) fn uncount(kept: &mut [usize], b: Option<usize>) {
    if let Some(n) = b.and_then(|b| kept.get_mut(b)) {
        *n = n.saturating_sub(1);
    }
}
