//! The shadow proxy on a mio event loop.
//!
//! [`Proxy`] owns a listener and a slab of sessions. It registers its
//! sockets on the host's [`Registry`] with tokens inside the range the host
//! gives it, handles the events the host passes it, and tells the host its
//! next deadline. No threads, no globals: [`crate::runtime::server::Server`] is a
//! ready-made host.

mod config;
pub(crate) mod digest;
mod forwarded;
mod hooks;
mod https;
mod parked;
mod pending;
mod plan;
mod pool;
mod reply;
mod session;
mod slots;
mod stats;
mod tunnel;
mod upkeep;
mod upstream;

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{info, warn};
use mio::Registry;
use mio::event::Event;
use slab::Slab;

use crate::runtime::buffer::BufferPool;
use crate::runtime::hot::Hot;
use crate::runtime::listen::Acceptor;
pub use crate::runtime::listen::{ACCEPT_PAUSE, LISTEN_BACKLOG};
use crate::runtime::pipe::PipePool;
use crate::runtime::resolve::{self, Lookup, Names};
pub use crate::runtime::server::FAST_SHUTDOWN_GRACE;
pub use crate::runtime::sweep::SWEEP_INTERVAL;
use crate::runtime::sweep::Sweep;
use crate::tls::{Connector, ServerTls};
use https::connectors;
pub use https::reload;

pub use crate::tls::{CertFiles, TlsReload};
pub use config::{
    Backend, BackendTls, Config, DEFAULT_BACKEND_TIMEOUT, DEFAULT_CAPTURE_CAP, DEFAULT_CLIENT_IDLE_TIMEOUT,
    DEFAULT_CLIENT_TIMEOUT, DEFAULT_KEEPALIVE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_SHADOW_MARKER,
    DEFAULT_SHADOW_MAX_INFLIGHT, DEFAULT_SHADOW_METHODS, KeepAlive, MAX_BACKENDS, MAX_CONNECTIONS_LIMIT, Role,
};
pub use digest::{BodyDigest, DIGEST_BLOCK, MAX_DIGEST_BLOCKS, MAX_INFLATED};
pub use hooks::{BackendReport, DefaultHooks, Exchange, Hooks, Outcome, Request, Selection, Served, default_selection};
pub use parked::{KEEP_BACKEND_WHILE_IDLE, MIN_KEPT_PER_BACKEND};
pub use pool::{DEFAULT_POOL_IDLE_PER_BACKEND, DEFAULT_POOL_IDLE_TIMEOUT};
pub use session::{CLIENT_BUFFER, MAX_SPARE_SESSIONS};
pub use stats::{DropReason, FAILURE_LOG_INTERVAL, READY_PROBE_INTERVAL, READY_WINDOW, Stats};
pub use tunnel::TUNNEL_PASSES;
pub use upstream::{BACKEND_BUFFER, PUMP_BUDGET};

use crate::runtime::net::Readiness;
use crate::runtime::server::Service;
pub use crate::runtime::server::ShutdownMode;
use crate::runtime::tokens::{Target, Tokens};
use pending::Backlog;
use pool::Pools;
use session::Session;
use slots::{Slot, with_parked};
use upkeep::Probe;
pub use upkeep::{READY_PROBE_CHECK, READY_PROBE_POLL, READY_PROBE_TIMEOUT};

/// The shadow proxy: see the [module docs](self).
pub struct Proxy<H: Hooks = DefaultHooks> {
    cfg: Config,
    hooks: H,
    acceptor: Acceptor,
    sessions: Slab<Slot>,
    /// Emptied sessions for parked connections that come back (boxed: they
    /// move in and out of the slab as a pointer).
    #[allow(clippy::vec_box)]
    spare: Vec<Box<Session>>,
    /// Backend connections parked clients keep, per backend (at most
    /// [`Config::pool_idle_per_backend`] each).
    kept: Vec<usize>,
    tokens: Option<Tokens>,
    sweep: Sweep,
    next_id: u64,
    draining: bool,
    force_close_at: Option<Instant>,
    pool: BufferPool,
    pools: Pools,
    pipes: PipePool,
    /// Sessions whose pump (a busy tunnel) yielded with work left.
    hot: Hot,
    backlog: Backlog,
    stats: Arc<Stats>,
    /// The readiness probe under way, at most one.
    probe: Option<Probe>,
    /// When to look at the probe (or whether one is wanted) next.
    probe_at: Instant,
    /// The backends' host names, looked up again on the resolver thread.
    names: Names,
    /// The listener's TLS, when it speaks HTTPS.
    tls: Option<ServerTls>,
    /// Per backend, how to open TLS to it (HTTPS backends).
    connectors: Vec<Option<Connector>>,
}

impl<H: Hooks> Proxy<H> {
    /// Checks `cfg` and binds its listen address. Backends with a
    /// [`Backend::dns_name`] are looked up again with the system's resolver
    /// on a thread of the proxy's own (see [`crate::runtime::resolve`]).
    pub fn new(cfg: Config, hooks: H) -> io::Result<Self> {
        Self::with_lookup(cfg, hooks, resolve::system_lookup())
    }

    /// Like [`new`](Self::new), with `lookup` to look the backends' host
    /// names up again (a test's own resolver, say).
    pub fn with_lookup(cfg: Config, hooks: H, lookup: Lookup) -> io::Result<Self> {
        cfg.validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidInput, e);
        let tls = match cfg.tls.is_empty() {
            true => None,
            false => Some(ServerTls::load(&cfg.tls).map_err(invalid)?),
        };
        let connectors = connectors(&cfg).map_err(invalid)?;
        let acceptor = Acceptor::bind(cfg.listen)?;
        let addrs = cfg.backends.iter().map(|b| b.addr).collect();
        let pools = Pools::new(addrs, cfg.pool_idle_per_backend, cfg.pool_idle_timeout);
        let now = Instant::now();
        let named = cfg
            .backends
            .iter()
            .enumerate()
            .filter_map(|(index, b)| {
                Some(resolve::Name {
                    index,
                    label: b.name.clone(),
                    host_port: b.dns_name.clone()?,
                    addr: b.addr,
                })
            })
            .collect();
        let resolver = Names::new(named, cfg.resolve_interval, lookup, now)?;
        let names = cfg.backends.iter().map(|b| b.name.clone()).collect();
        let stats = Arc::new(Stats::new(names, cfg.master(), now));
        let mut backlog = Backlog::new(stats.clone(), &cfg, now);
        backlog.set_connectors(connectors.clone());
        Ok(Proxy {
            tls,
            connectors,
            kept: vec![0; cfg.backends.len()],
            pools,
            pipes: PipePool::new(),
            hot: Hot::default(),
            backlog,
            stats,
            cfg,
            hooks,
            acceptor,
            sessions: Slab::new(),
            spare: Vec::new(),
            tokens: None,
            sweep: Sweep::new(now),
            next_id: 0,
            draining: false,
            force_close_at: None,
            pool: BufferPool::default(),
            probe: None,
            probe_at: now + READY_PROBE_CHECK,
            names: resolver,
        })
    }

    /// The address the listener is bound to (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.acceptor.local_addr()
    }

    /// What reloads the listener's certificate files in place (for a
    /// signal handler); `None` when it speaks plain HTTP.
    pub fn tls_reloader(&self) -> Option<TlsReload> {
        self.tls.as_ref().map(ServerTls::reloader)
    }

    /// Reloads the listener's certificate files: new handshakes get the
    /// new certificates, open connections keep theirs; a pair that fails
    /// to load keeps its old certificate and is logged. Returns how many
    /// pairs were replaced.
    pub fn reload_tls(&self) -> usize {
        self.tls_reloader().map_or(0, |r| reload(&r))
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The hooks.
    pub fn hooks(&self) -> &H {
        &self.hooks
    }

    /// The hooks, mutably.
    pub fn hooks_mut(&mut self) -> &mut H {
        &mut self.hooks
    }

    /// Client connections open now.
    pub fn connections(&self) -> usize {
        self.sessions.len()
    }

    /// Idle connections to backend `index` kept for later clients.
    pub fn pooled(&self, index: usize) -> usize {
        self.pools.len(index)
    }

    /// Exchanges whose client has moved on while shadows still answer
    /// (with [`KeepAlive::Always`]).
    pub fn pending(&self) -> usize {
        self.backlog.len()
    }

    /// Shadow requests to backend `index` dropped so far
    /// ([`Outcome::Dropped`]): not sent past
    /// [`Config::shadow_max_inflight`].
    pub fn dropped(&self, index: usize) -> u64 {
        self.stats.dropped(index)
    }

    /// Where backend `index` is reached now (its host name may have
    /// resolved anew since start).
    pub fn backend_addr(&self, index: usize) -> Option<SocketAddr> {
        self.cfg.backends.get(index).map(|b| b.addr)
    }

    /// The counters, to share with a [`crate::metrics::Endpoint`].
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// How many tokens the proxy needs for its configured
    /// `max_connections`: one for the listener, then one per client and
    /// backend connection of each session, then (with
    /// [`KeepAlive::Always`]) one per backend of each pending exchange.
    pub fn tokens_needed(&self) -> usize {
        let backends = self.cfg.backends.len();
        1 + self.cfg.max_connections * (1 + backends) + self.pending_wanted() * backends
    }

    fn pending_wanted(&self) -> usize {
        match self.cfg.keep_alive {
            // Each pending exchange holds at least one shadow request.
            KeepAlive::Always => self
                .cfg
                .backends
                .iter()
                .filter(|b| b.role == Role::Shadow)
                .map(|b| pending::max_inflight(&self.cfg, b))
                .fold(0, usize::saturating_add),
            KeepAlive::MasterOnly => 0,
        }
    }

    /// Registers the listener. Every token the proxy uses lies in `tokens`;
    /// a smaller range than [`tokens_needed`](Self::tokens_needed) lowers the
    /// number of connections served at once.
    pub fn register(&mut self, registry: &Registry, tokens: Range<usize>) -> io::Result<()> {
        let layout = Tokens::new(
            tokens.start,
            tokens.end.saturating_sub(tokens.start),
            self.cfg.backends.len(),
            self.pending_wanted(),
        );
        if layout.slots() == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "token range too small for one connection",
            ));
        }
        self.acceptor.register(registry, layout.listener())?;
        self.backlog.set_cap(layout.pending_slots());
        self.tokens = Some(layout);
        self.stats.set_listening(true);
        Ok(())
    }

    /// Handles one event; false when its token is not the proxy's.
    pub fn handle_event(&mut self, registry: &Registry, event: &Event) -> bool {
        let Some(tokens) = self.tokens else { return false };
        let Some(target) = tokens.decode(event.token()) else {
            return false;
        };
        let now = Instant::now();
        let ready = Readiness::of(event);
        match target {
            Target::Listener => {
                self.acceptor.on_ready();
                self.accept(registry, now);
            }
            Target::Client(slot) => {
                let wake = match self.sessions.get_mut(slot) {
                    Some(Slot::Live(s)) => {
                        s.on_client_event(ready);
                        true
                    }
                    Some(Slot::Parked(p)) => p.on_client_event(ready),
                    None => false,
                };
                if wake {
                    self.pump(registry, slot, now);
                }
            }
            Target::Backend(slot, b) => match self.sessions.get_mut(slot) {
                Some(Slot::Live(s)) => {
                    s.on_backend_event(b, ready);
                    self.pump(registry, slot, now);
                }
                Some(Slot::Parked(p)) => with_parked(&mut self.kept, p, |p| p.on_backend_event(b, ready, registry)),
                None => {}
            },
            Target::Pending(slot, b) => {
                if self.backlog.on_event(slot, b, ready) {
                    self.pump_pending(registry, tokens, slot, now);
                }
            }
        }
        true
    }

    /// The next moment [`on_timeout`](Self::on_timeout) has work (now,
    /// when a busy tunnel yielded to others).
    pub fn next_deadline(&self) -> Option<Instant> {
        if let Some(at) = self.hot.deadline() {
            return Some(at);
        }
        [
            self.sweep.deadline(),
            self.acceptor.deadline(),
            self.force_close_at,
            self.pools.deadline(),
            self.backlog.deadline(),
            self.hooks.next_deadline(),
            (!self.draining).then_some(self.probe_at),
            match self.draining {
                false => self.names.deadline(|b| self.stats.connect_failed(b)),
                true => None,
            },
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// How long the host may wait for events before calling
    /// [`on_timeout`](Self::on_timeout).
    pub fn next_timeout(&self) -> Option<Duration> {
        self.next_deadline()
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Applies every deadline due at `now`. Call it once
    /// [`next_deadline`](Self::next_deadline) has passed (poll timeouts are
    /// in milliseconds: round up); calling it more often is harmless.
    pub fn on_timeout(&mut self, registry: &Registry, now: Instant) {
        let hot = self.hot.take();
        for &slot in &hot {
            if let Some(Slot::Live(s)) = self.sessions.get_mut(slot) {
                s.queued = false;
                self.pump(registry, slot, now);
            }
        }
        self.hot.put_back(hot);
        if self.acceptor.on_timeout(now) {
            self.accept(registry, now);
        }
        self.pools.expire(now);
        self.probe_master(now);
        if self.hooks.next_deadline().is_some_and(|t| t <= now) {
            self.hooks.on_deadline(now);
        }
        let stats = &self.stats;
        for change in self.names.tick(now, |b| stats.take_connect_failed(b)) {
            self.retarget(registry, change);
        }
        if self.force_close_at.is_some_and(|t| t <= now) {
            self.force_close_at = None;
            let open = self.sessions.len();
            if open > 0 {
                warn!("shutdown grace over: closing {open} connection(s)");
            }
            let conns: Vec<Slot> = self.sessions.drain().collect();
            for conn in conns {
                self.close_conn(registry, conn, now);
            }
            self.stats.set_connections(0);
            self.backlog.close(registry, &mut self.pool);
        }
        let cfg = &self.cfg;
        let due = self
            .sweep
            .take_due(now, self.sessions.iter().map(|(slot, c)| (slot, c.deadline(cfg))));
        for &slot in &due {
            match self.sessions.get_mut(slot) {
                Some(Slot::Parked(p)) => {
                    let (cfg, pools) = (&self.cfg, &mut self.pools);
                    if with_parked(&mut self.kept, p, |p| p.on_timeout(cfg, registry, pools, now)) {
                        self.wake(slot, now);
                        self.with_session(registry, slot, now, |s, cx| s.on_timeout(cx));
                        self.after_pump(registry, slot, now);
                    } else {
                        self.sweep.note(Some(p.deadline(&self.cfg)));
                    }
                }
                Some(Slot::Live(_)) => {
                    self.with_session(registry, slot, now, |s, cx| s.on_timeout(cx));
                    self.after_pump(registry, slot, now);
                }
                None => {}
            }
        }
        self.sweep.put_back(due);
        self.backlog.on_timeout(
            &self.cfg,
            &mut self.hooks,
            registry,
            &mut self.pool,
            &mut self.pools,
            now,
        );
    }

    /// Stops accepting. Graceful: in-flight exchanges finish, idle and
    /// finished connections close. Fast: the same, but whatever is still open
    /// after [`FAST_SHUTDOWN_GRACE`] is closed.
    pub fn shutdown(&mut self, registry: &Registry, mode: ShutdownMode, now: Instant) {
        if !self.draining {
            for (b, backend) in self.cfg.backends.iter().enumerate() {
                let n = self.stats.dropped(b);
                if n > 0 {
                    let why: Vec<String> = DropReason::ALL
                        .iter()
                        .map(|r| (r, self.stats.dropped_for(b, *r)))
                        .filter(|(_, n)| *n > 0)
                        .map(|(r, n)| format!("{n} {}", r.as_str()))
                        .collect();
                    info!(
                        "{}: {n} shadow request(s) dropped ({}; in-flight cap {})",
                        backend.name,
                        why.join(", "),
                        pending::max_inflight(&self.cfg, backend)
                    );
                }
            }
        }
        self.acceptor.close(registry, self.sessions.len());
        self.pools.close();
        self.draining = true;
        self.stats.set_listening(false);
        self.probe = None;
        if mode == ShutdownMode::Fast && self.force_close_at.is_none() {
            self.force_close_at = Some(now + FAST_SHUTDOWN_GRACE);
        }
        let slots: Vec<usize> = self.sessions.iter().map(|(k, _)| k).collect();
        for slot in slots {
            self.pump(registry, slot, now);
        }
    }

    /// Shut down and every connection closed.
    pub fn is_done(&self) -> bool {
        self.draining && self.sessions.is_empty() && self.backlog.len() == 0
    }
}

impl<H: Hooks> Service for Proxy<H> {
    fn tokens_needed(&self) -> usize {
        Proxy::tokens_needed(self)
    }

    fn register(&mut self, registry: &Registry, tokens: Range<usize>) -> io::Result<()> {
        Proxy::register(self, registry, tokens)
    }

    fn handle_event(&mut self, registry: &Registry, event: &Event) -> bool {
        Proxy::handle_event(self, registry, event)
    }

    fn next_deadline(&self) -> Option<Instant> {
        Proxy::next_deadline(self)
    }

    fn on_timeout(&mut self, registry: &Registry, now: Instant) {
        Proxy::on_timeout(self, registry, now)
    }

    fn shutdown(&mut self, registry: &Registry, mode: ShutdownMode, now: Instant) {
        Proxy::shutdown(self, registry, mode, now)
    }

    fn is_done(&self) -> bool {
        Proxy::is_done(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a parked (idle) connection costs in the slab: the goal
    /// is under nginx's ~0.5 KiB per idle keep-alive connection.
    #[test]
    fn a_parked_connection_is_small() {
        let conn = std::mem::size_of::<Slot>();
        eprintln!(
            "Slot {conn} B (Parked {} B), Session {} B, Upstream {} B",
            std::mem::size_of::<parked::Parked>(),
            std::mem::size_of::<Session>(),
            std::mem::size_of::<upstream::Upstream>()
        );
        assert!(conn <= 128, "a slab entry is {conn} bytes");
    }
}
