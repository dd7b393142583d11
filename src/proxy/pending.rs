//! Exchanges whose client has moved on while shadows still answer.
//!
//! With [`KeepAlive::Always`](super::KeepAlive::Always) a session does not
//! wait for its shadows: once the client has its whole response, the
//! shadows still at work move here with the request and the reports of the
//! backends already done, and the session reads the next request. Their
//! sockets are re-registered on this backlog's own tokens, so an answer
//! arriving late is still matched to its own request: every shadow
//! connection carries one request at a time. When the last shadow is done
//! the hooks see the whole exchange and reusable connections go to the
//! pools.
//!
//! The backlog also counts the requests in flight to each shadow, in
//! sessions and here: past [`Config::shadow_max_inflight`] sessions send no
//! new shadow request (it is reported as dropped and counted per backend),
//! so the backlog stays within its token range.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use log::warn;
use mio::Registry;
use slab::Slab;

use super::config::{Backend, Config};

/// Most requests in flight to `backend`: its own cap or the configuration's.
pub(crate) fn max_inflight(cfg: &Config, backend: &Backend) -> usize {
    backend.max_inflight.unwrap_or(cfg.shadow_max_inflight)
}
use super::hooks::{BackendReport, Exchange, Hooks, Outcome, Request};
use super::pool::Pools;
use super::stats::{DropReason, Stats};
use super::upstream::{PUMP_BUDGET, Settled, Upstream};
use crate::http::{RequestContext, RequestHead};
use crate::runtime::buffer::BufferPool;
use crate::runtime::net::Readiness;
use crate::runtime::sweep::Sweep;
use crate::runtime::tokens::Tokens;
use crate::tls::Connector;

/// One exchange waiting for its shadows.
pub(crate) struct Pending {
    pub(crate) id: u64,
    pub(crate) peer: SocketAddr,
    pub(crate) req: RequestHead,
    pub(crate) req_bytes: Vec<u8>,
    /// Reports of the backends that were done when the client moved on.
    pub(crate) done: Vec<BackendReport>,
    /// The shadows still at work.
    pub(crate) ups: Vec<Upstream>,
}

impl Pending {
    fn on_event(&mut self, backend: usize, ready: Readiness) {
        if let Some(up) = self.ups.iter_mut().find(|u| u.backend() == backend) {
            up.on_event(ready);
        }
    }

    /// Makes every move the shadows' readiness allows.
    #[allow(clippy::too_many_arguments)]
    fn pump(
        &mut self,
        cfg: &Config,
        registry: &Registry,
        tokens: Tokens,
        slot: usize,
        pool: &mut BufferPool,
        connectors: &[Option<Connector>],
        now: Instant,
    ) {
        let ctx = RequestContext::of(&self.req);
        let request = Request::new(&self.req, &self.req_bytes, self.peer);
        for _ in 0..PUMP_BUDGET {
            let mut progress = false;
            for up in &mut self.ups {
                let b = up.backend();
                let (step, _) = up.drive(ctx, pool, now, &[], false, |_, _| {});
                let token = tokens.pending(slot, b);
                let tls = connectors.get(b).and_then(Option::as_ref);
                progress |= up.settle(step, registry, &cfg.backends[b], tls, &request, token, now) != Settled::Idle;
            }
            if !progress {
                // A shadow waiting for more of its answer holds no empty buffer.
                for up in &mut self.ups {
                    up.release_buffer(pool);
                }
                return;
            }
        }
        warn!(
            "{}: pending exchange {} made no stable progress after {PUMP_BUDGET} passes; closing",
            self.peer, self.id
        );
        for up in &mut self.ups {
            up.fail(registry, &cfg.backends[up.backend()], &request, Outcome::Reset, now);
        }
    }

    fn is_done(&self) -> bool {
        self.ups.iter().all(Upstream::is_done)
    }

    /// The earliest moment a shadow times out.
    fn deadline(&self) -> Option<Instant> {
        self.ups.iter().filter(|u| u.is_busy()).map(Upstream::deadline).min()
    }

    fn on_timeout(&mut self, cfg: &Config, registry: &Registry, now: Instant) {
        let request = Request::new(&self.req, &self.req_bytes, self.peer);
        for up in &mut self.ups {
            if up.is_busy() && now >= up.deadline() {
                up.fail(registry, &cfg.backends[up.backend()], &request, Outcome::Timeout, now);
            }
        }
    }

    /// Shows the exchange to the hooks and lets go of its connections.
    fn finish<H: Hooks>(
        self,
        hooks: &mut H,
        cfg: &Config,
        registry: &Registry,
        pool: &mut BufferPool,
        pools: &mut Pools,
        now: Instant,
    ) {
        let Pending {
            id,
            peer,
            req,
            req_bytes,
            mut done,
            ups,
        } = self;
        for mut up in ups {
            up.release(registry, pool, pools, now);
            done.push(up.into_report());
        }
        done.sort_by_key(|r| r.backend);
        let exchange = Exchange {
            id,
            request: Request::new(&req, &req_bytes, peer),
            backends: &cfg.backends,
            reports: &done,
        };
        hooks.backends_finished(&exchange);
    }

    /// Closes every connection without asking the hooks (forced shutdown).
    fn close(self, registry: &Registry, pool: &mut BufferPool) {
        for mut up in self.ups {
            up.discard(registry, pool);
        }
    }
}

/// Every pending exchange, their deadlines, and the shadows dropped for
/// want of room.
pub(crate) struct Backlog {
    slab: Slab<Pending>,
    /// Most pending exchanges: the configured cap within the token range.
    cap: usize,
    /// Adopted since the proxy last looked: pumped once there.
    fresh: Vec<usize>,
    sweep: Sweep,
    /// Where drops are counted.
    stats: Arc<Stats>,
    /// Shadow requests in flight, per backend.
    inflight: Vec<usize>,
    /// Most requests in flight, per backend.
    max_inflight: Vec<usize>,
    /// Requests-per-second budgets, per backend.
    budgets: Vec<Option<Budget>>,
    /// How to open TLS to each backend (a stale connection is retried on a
    /// fresh one from here too).
    connectors: Vec<Option<Connector>>,
}

/// A token bucket: `rate` requests a second, bursts of up to one second's.
#[derive(Debug, Clone, Copy)]
struct Budget {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl Budget {
    fn new(rate: f64, now: Instant) -> Self {
        Budget {
            rate,
            tokens: rate.max(1.0),
            last: now,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate.max(1.0));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Backlog {
    pub(crate) fn new(stats: Arc<Stats>, cfg: &Config, now: Instant) -> Self {
        Backlog {
            slab: Slab::new(),
            cap: 0,
            fresh: Vec::new(),
            sweep: Sweep::new(now),
            stats,
            inflight: vec![0; cfg.backends.len()],
            max_inflight: cfg.backends.iter().map(|b| max_inflight(cfg, b)).collect(),
            budgets: cfg
                .backends
                .iter()
                .map(|b| b.max_rps.map(|r| Budget::new(r, now)))
                .collect(),
            connectors: Vec::new(),
        }
    }

    /// The connectors of the HTTPS backends, by backend.
    pub(crate) fn set_connectors(&mut self, connectors: Vec<Option<Connector>>) {
        self.connectors = connectors;
    }

    /// Takes one of backend `b`'s in-flight places for `up`, and a token of
    /// its budget; false (and the drop counted) when it may not be sent.
    pub(crate) fn reserve(&mut self, b: usize, up: &mut Upstream, now: Instant) -> bool {
        let Some(n) = self.inflight.get_mut(b) else {
            return false;
        };
        if *n >= self.max_inflight[b] {
            self.stats.count_drop(b, DropReason::Inflight);
            return false;
        }
        if let Some(budget) = self.budgets[b].as_mut() {
            if !budget.take(now) {
                self.stats.count_drop(b, DropReason::Budget);
                return false;
            }
        }
        *n += 1;
        up.reserve();
        true
    }

    /// Gives back `up`'s in-flight place, if it holds one.
    pub(crate) fn unreserve(&mut self, up: &mut Upstream) {
        if up.unreserve() {
            Self::give_place(&mut self.inflight, up.backend());
        }
    }

    fn give_place(inflight: &mut [usize], b: usize) {
        if let Some(n) = inflight.get_mut(b) {
            *n = n.saturating_sub(1);
        }
    }

    /// Sets the cap (known once the token range is).
    pub(crate) fn set_cap(&mut self, cap: usize) {
        self.cap = cap;
    }

    /// Pending exchanges now.
    pub(crate) fn len(&self) -> usize {
        self.slab.len()
    }

    /// No room for another pending exchange.
    pub(crate) fn is_full(&self) -> bool {
        self.slab.len() >= self.cap
    }

    /// Counts a shadow request to backend `b` dropped for want of room
    /// in the backlog.
    pub(crate) fn count_drop(&mut self, b: usize) {
        self.stats.count_drop(b, DropReason::Backlog);
    }

    /// The counters, for a fresh upstream.
    pub(crate) fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Takes `p` in, its sockets moved onto the slot's tokens. Check
    /// [`is_full`](Self::is_full) first: past the cap it is closed (its
    /// slot would have no tokens).
    pub(crate) fn adopt(&mut self, mut p: Pending, registry: &Registry, tokens: Tokens, pool: &mut BufferPool) {
        if self.is_full() {
            warn!("{}: pending exchange {} past the cap; closed", p.peer, p.id);
            p.close(registry, pool);
            return;
        }
        let slot = self.slab.vacant_key();
        let now = Instant::now();
        for up in &mut p.ups {
            if let Err(e) = up.move_to(registry, tokens.pending(slot, up.backend())) {
                warn!("{}: cannot move a shadow connection: {e}", p.peer);
                up.end(Outcome::Reset, registry, now);
            }
        }
        self.slab.insert(p);
        self.fresh.push(slot);
    }

    /// Passes an event to pending exchange `slot`; false when there is none.
    pub(crate) fn on_event(&mut self, slot: usize, backend: usize, ready: Readiness) -> bool {
        match self.slab.get_mut(slot) {
            Some(p) => {
                p.on_event(backend, ready);
                true
            }
            None => false,
        }
    }

    /// Drives pending exchange `slot`; a finished one is shown to the hooks
    /// and removed.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn pump<H: Hooks>(
        &mut self,
        slot: usize,
        cfg: &Config,
        hooks: &mut H,
        registry: &Registry,
        tokens: Tokens,
        pool: &mut BufferPool,
        pools: &mut Pools,
        now: Instant,
    ) {
        let Some(p) = self.slab.get_mut(slot) else { return };
        p.pump(cfg, registry, tokens, slot, pool, &self.connectors, now);
        self.settle(slot, cfg, hooks, registry, pool, pools, now);
    }

    #[allow(clippy::too_many_arguments)]
    fn settle<H: Hooks>(
        &mut self,
        slot: usize,
        cfg: &Config,
        hooks: &mut H,
        registry: &Registry,
        pool: &mut BufferPool,
        pools: &mut Pools,
        now: Instant,
    ) {
        let Some(p) = self.slab.get_mut(slot) else { return };
        for up in &mut p.ups {
            if up.is_done() && up.unreserve() {
                Self::give_place(&mut self.inflight, up.backend());
            }
        }
        if p.is_done() {
            self.slab.remove(slot).finish(hooks, cfg, registry, pool, pools, now);
        } else {
            self.sweep.note(p.deadline());
        }
    }

    /// Exchanges adopted since the last call (give the list back with
    /// [`put_back_fresh`](Self::put_back_fresh)).
    pub(crate) fn take_fresh(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.fresh)
    }

    pub(crate) fn put_back_fresh(&mut self, mut fresh: Vec<usize>) {
        fresh.clear();
        if self.fresh.is_empty() {
            self.fresh = fresh;
        }
    }

    /// When the next sweep is due.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.sweep.deadline()
    }

    /// Applies the timeouts due at `now`.
    pub(crate) fn on_timeout<H: Hooks>(
        &mut self,
        cfg: &Config,
        hooks: &mut H,
        registry: &Registry,
        pool: &mut BufferPool,
        pools: &mut Pools,
        now: Instant,
    ) {
        let due = self
            .sweep
            .take_due(now, self.slab.iter().map(|(slot, p)| (slot, p.deadline())));
        for &slot in &due {
            if let Some(p) = self.slab.get_mut(slot) {
                p.on_timeout(cfg, registry, now);
                self.settle(slot, cfg, hooks, registry, pool, pools, now);
            }
        }
        self.sweep.put_back(due);
    }

    /// Closes every pending exchange without asking the hooks.
    pub(crate) fn close(&mut self, registry: &Registry, pool: &mut BufferPool) {
        for mut p in self.slab.drain() {
            for up in &mut p.ups {
                if up.unreserve() {
                    Self::give_place(&mut self.inflight, up.backend());
                }
            }
            p.close(registry, pool);
        }
        self.fresh.clear();
    }
}
