//! The shadow proxy on a mio event loop.
//!
//! [`Proxy`] owns a listener and a slab of sessions. It registers its
//! sockets on the host's [`Registry`] with tokens inside the range the host
//! gives it, handles the events the host passes it, and tells the host its
//! next deadline. No threads, no globals: [`crate::server::Server`] is a
//! ready-made host.

mod config;
mod hooks;
mod reply;
mod session;
mod tokens;
mod upstream;

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::event::Event;
use mio::net::TcpListener;
use mio::{Interest, Registry};
use slab::Slab;

use crate::buffer::BufferPool;

/// Shortest time between two sweeps of session deadlines: deadlines are
/// applied at most this late, and a crowd of them costs one pass each time.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(10);

pub use config::{
    ACCEPT_PAUSE, Backend, Config, DEFAULT_BACKEND_TIMEOUT, DEFAULT_CAPTURE_CAP, DEFAULT_CLIENT_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_SHADOW_METHODS, FAST_SHUTDOWN_GRACE, MAX_BACKENDS, Role,
};
pub use hooks::{BackendReport, DefaultHooks, Exchange, Hooks, Outcome, Request, Selection, default_selection};
pub use session::{CLIENT_BUFFER, PUMP_BUDGET};
pub use upstream::BACKEND_BUFFER;

use crate::net::{AcceptError, Readiness, accept_error};
use crate::server::Service;
pub use crate::server::ShutdownMode;
use session::{Cx, Session};
use tokens::{Target, Tokens};

/// The shadow proxy: see the [module docs](self).
pub struct Proxy<H: Hooks = DefaultHooks> {
    cfg: Config,
    hooks: H,
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    sessions: Slab<Session>,
    tokens: Option<Tokens>,
    /// The earliest session deadline known (a sweep applies what is due).
    next_sweep: Option<Instant>,
    last_sweep: Instant,
    /// Slots found due by a sweep (kept to reuse its allocation).
    due: Vec<usize>,
    next_id: u64,
    listener_ready: bool,
    accept_paused_until: Option<Instant>,
    draining: bool,
    force_close_at: Option<Instant>,
    pool: BufferPool,
}

impl<H: Hooks> Proxy<H> {
    /// Checks `cfg` and binds its listen address.
    pub fn new(cfg: Config, hooks: H) -> io::Result<Self> {
        cfg.validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let listener = TcpListener::bind(cfg.listen)?;
        let local_addr = listener.local_addr()?;
        Ok(Proxy {
            cfg,
            hooks,
            listener: Some(listener),
            local_addr,
            sessions: Slab::new(),
            tokens: None,
            next_sweep: None,
            last_sweep: Instant::now(),
            due: Vec::new(),
            next_id: 0,
            listener_ready: false,
            accept_paused_until: None,
            draining: false,
            force_close_at: None,
            pool: BufferPool::default(),
        })
    }

    /// The address the listener is bound to (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
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

    /// How many tokens the proxy needs for its configured
    /// `max_connections`: one for the listener, then one per client and
    /// backend connection of each session.
    pub fn tokens_needed(&self) -> usize {
        1 + self.cfg.max_connections * (1 + self.cfg.backends.len())
    }

    /// Registers the listener. Every token the proxy uses lies in `tokens`;
    /// a smaller range than [`tokens_needed`](Self::tokens_needed) lowers the
    /// number of connections served at once.
    pub fn register(&mut self, registry: &Registry, tokens: Range<usize>) -> io::Result<()> {
        let layout = Tokens::new(
            tokens.start,
            tokens.end.saturating_sub(tokens.start),
            self.cfg.backends.len(),
        );
        if layout.slots() == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "token range too small for one connection",
            ));
        }
        if let Some(listener) = self.listener.as_mut() {
            registry.register(listener, layout.listener(), Interest::READABLE)?;
        }
        self.tokens = Some(layout);
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
                self.listener_ready = true;
                self.accept(registry, now);
            }
            Target::Client(slot) => {
                if let Some(s) = self.sessions.get_mut(slot) {
                    s.on_client_event(ready);
                    self.pump(registry, slot, now);
                }
            }
            Target::Backend(slot, b) => {
                if let Some(s) = self.sessions.get_mut(slot) {
                    s.on_backend_event(b, ready);
                    self.pump(registry, slot, now);
                }
            }
        }
        true
    }

    /// The next moment [`on_timeout`](Self::on_timeout) has work.
    pub fn next_deadline(&self) -> Option<Instant> {
        let sweep = self.next_sweep.map(|at| at.max(self.last_sweep + SWEEP_INTERVAL));
        [sweep, self.accept_paused_until, self.force_close_at]
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
        if self.accept_paused_until.is_some_and(|t| t <= now) {
            self.accept_paused_until = None;
            self.accept(registry, now);
        }
        if self.force_close_at.is_some_and(|t| t <= now) {
            self.force_close_at = None;
            let open = self.sessions.len();
            if open > 0 {
                warn!("shutdown grace over: closing {open} connection(s)");
            }
            for s in self.sessions.drain() {
                s.close_all(registry, &mut self.pool);
            }
        }
        if self.next_sweep.is_some_and(|at| at <= now) && now >= self.last_sweep + SWEEP_INTERVAL {
            self.sweep(registry, now);
        }
    }

    /// Applies the deadlines due at `now` and finds the next one.
    fn sweep(&mut self, registry: &Registry, now: Instant) {
        self.last_sweep = now;
        self.next_sweep = None;
        let mut due = std::mem::take(&mut self.due);
        for (slot, s) in self.sessions.iter() {
            match s.deadline(&self.cfg) {
                Some(at) if at <= now => due.push(slot),
                Some(at) => self.next_sweep = Some(self.next_sweep.map_or(at, |n| n.min(at))),
                None => {}
            }
        }
        for &slot in &due {
            self.with_session(registry, slot, now, |s, cx| s.on_timeout(cx));
            self.after_pump(registry, slot, now);
        }
        due.clear();
        self.due = due;
    }

    /// Stops accepting. Graceful: in-flight exchanges finish, idle and
    /// finished connections close. Fast: the same, but whatever is still open
    /// after [`FAST_SHUTDOWN_GRACE`] is closed.
    pub fn shutdown(&mut self, registry: &Registry, mode: ShutdownMode, now: Instant) {
        if let Some(mut listener) = self.listener.take() {
            let _ = registry.deregister(&mut listener);
            info!(
                "stopped accepting on {}; {} connection(s) open",
                self.local_addr,
                self.sessions.len()
            );
        }
        self.draining = true;
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
        self.draining && self.sessions.is_empty()
    }

    fn accept(&mut self, registry: &Registry, now: Instant) {
        let Some(tokens) = self.tokens else { return };
        while self.listener_ready && self.accept_paused_until.is_none() {
            if self.sessions.len() >= self.cfg.max_connections.min(tokens.slots()) {
                // Resumed when a session ends.
                return;
            }
            let Some(listener) = self.listener.as_ref() else { return };
            match listener.accept() {
                Ok((mut sock, peer)) => {
                    let _ = sock.set_nodelay(true);
                    let entry = self.sessions.vacant_entry();
                    let slot = entry.key();
                    let token = tokens.client(slot);
                    if let Err(e) = registry.register(&mut sock, token, Interest::READABLE | Interest::WRITABLE) {
                        warn!("{peer}: cannot register the connection: {e}");
                        continue;
                    }
                    debug!("{peer}: accepted");
                    entry.insert(Session::new(sock, peer, &self.cfg, now, &mut self.pool));
                    self.after_pump(registry, slot, now);
                }
                Err(e) => match accept_error(&e) {
                    AcceptError::WouldBlock => self.listener_ready = false,
                    AcceptError::Retry => {}
                    AcceptError::Pause => {
                        warn!(
                            "accept on {} failed: {e}; pausing accepts for {ACCEPT_PAUSE:?}",
                            self.local_addr
                        );
                        self.accept_paused_until = Some(now + ACCEPT_PAUSE);
                    }
                },
            }
        }
    }

    fn pump(&mut self, registry: &Registry, slot: usize, now: Instant) {
        self.with_session(registry, slot, now, |s, cx| s.pump(cx));
        self.after_pump(registry, slot, now);
    }

    /// Runs `f` on session `slot` with the context sessions work in.
    fn with_session(
        &mut self,
        registry: &Registry,
        slot: usize,
        now: Instant,
        f: impl FnOnce(&mut Session, &mut Cx<'_, H>),
    ) {
        let Some(tokens) = self.tokens else { return };
        let Some(s) = self.sessions.get_mut(slot) else { return };
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
        };
        f(s, &mut cx);
    }

    /// Drops a finished session, or folds its next deadline into the sweep.
    fn after_pump(&mut self, registry: &Registry, slot: usize, now: Instant) {
        let Some(s) = self.sessions.get_mut(slot) else { return };
        if s.is_finished() {
            let s = self.sessions.remove(slot);
            s.close_all(registry, &mut self.pool);
            if self.listener_ready {
                self.accept(registry, now);
            }
            return;
        }
        s.release_buffers(&mut self.pool);
        if let Some(at) = s.deadline(&self.cfg) {
            self.next_sweep = Some(self.next_sweep.map_or(at, |n| n.min(at)));
        }
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
