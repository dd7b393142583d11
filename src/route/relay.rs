//! [`Relay`]: the router on a mio event loop, embeddable like the proxy.

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::{Duration, Instant};

use log::{debug, warn};
use mio::Registry;
use mio::event::Event;
use slab::Slab;

use super::Router;
use super::conn::{Conn, Cx};
use super::settings::Settings;
use crate::runtime::buffer::BufferPool;
use crate::runtime::hot::Hot;
use crate::runtime::listen::Acceptor;
use crate::runtime::net::Readiness;
use crate::runtime::pipe::{self, PipePool};
use crate::runtime::resolve::{self, Lookup, Names};
use crate::runtime::server::{FAST_SHUTDOWN_GRACE, Service, ShutdownMode};
use crate::runtime::sweep::Sweep;
use crate::runtime::tokens::{Target, Tokens};

/// The TCP router: a listener and a slab of routed connections, registered
/// on the host's [`Registry`] inside the token range the host gives it.
pub struct Relay<R: Router> {
    settings: Settings,
    router: R,
    acceptor: Acceptor,
    conns: Slab<Conn>,
    tokens: Option<Tokens>,
    sweep: Sweep,
    /// Connections whose pump yielded with work left.
    hot: Hot,
    /// A connection ended while accepting may be pending: accept once the
    /// current event is handled (not from inside a pump: no recursion).
    wants_accept: bool,
    pool: BufferPool,
    pipes: PipePool,
    draining: bool,
    force_close_at: Option<Instant>,
    /// The router's host names, looked up again on the resolver thread.
    names: Names,
    /// The address each of them has now.
    name_addrs: Vec<SocketAddr>,
    /// Addresses a connect to failed since the last tick.
    failed: Vec<SocketAddr>,
}

impl<R: Router> Relay<R> {
    /// Checks `settings` and binds its listen address. The router's
    /// backends given by host name ([`Router::names`]) are looked up again
    /// every [`Settings::resolve_interval`], on a thread of the relay's own.
    pub fn new(settings: Settings, router: R) -> io::Result<Self> {
        Self::with_lookup(settings, router, resolve::system_lookup())
    }

    /// Like [`new`](Self::new), with `lookup` to look the host names up
    /// again (a test's own resolver, say).
    pub fn with_lookup(settings: Settings, router: R, lookup: Lookup) -> io::Result<Self> {
        settings
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let acceptor = Acceptor::bind(settings.listen)?;
        let listed = router.names();
        let name_addrs = listed.iter().map(|(_, _, addr)| *addr).collect();
        let named = listed
            .into_iter()
            .enumerate()
            .map(|(index, (label, host_port, addr))| resolve::Name {
                index,
                label,
                host_port,
                addr,
            })
            .collect();
        let names = Names::new(named, settings.resolve_interval, lookup, Instant::now())?;
        Ok(Relay {
            names,
            name_addrs,
            failed: Vec::new(),
            settings,
            router,
            acceptor,
            conns: Slab::new(),
            tokens: None,
            sweep: Sweep::new(Instant::now()),
            hot: Hot::default(),
            wants_accept: false,
            pool: BufferPool::default(),
            pipes: PipePool::new(),
            draining: false,
            force_close_at: None,
        })
    }

    /// The address the listener is bound to (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.acceptor.local_addr()
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The router.
    pub fn router(&self) -> &R {
        &self.router
    }

    /// The router, mutably.
    pub fn router_mut(&mut self) -> &mut R {
        &mut self.router
    }

    /// Client connections open now.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Tokens for `max_connections`: the listener, then a client and a
    /// server token per connection.
    pub fn tokens_needed(&self) -> usize {
        1 + 2 * self.settings.max_connections
    }

    /// Registers the listener; every token used lies in `tokens`.
    pub fn register(&mut self, registry: &Registry, tokens: Range<usize>) -> io::Result<()> {
        let layout = Tokens::new(tokens.start, tokens.end.saturating_sub(tokens.start), 1, 0);
        if layout.slots() == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "token range too small for one connection",
            ));
        }
        self.acceptor.register(registry, layout.listener())?;
        self.tokens = Some(layout);
        Ok(())
    }

    /// Handles one event; false when its token is not the router's.
    pub fn handle_event(&mut self, registry: &Registry, event: &Event) -> bool {
        let Some(target) = self.tokens.and_then(|t| t.decode(event.token())) else {
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
                if let Some(c) = self.conns.get_mut(slot) {
                    c.on_client_event(ready);
                    self.pump(registry, slot, now);
                }
            }
            Target::Backend(slot, _) => {
                if let Some(c) = self.conns.get_mut(slot) {
                    c.on_server_event(ready);
                    self.pump(registry, slot, now);
                }
            }
            // The router keeps no pending slots.
            Target::Pending(..) => return false,
        }
        self.accept_if_wanted(registry, now);
        true
    }

    /// The next moment [`on_timeout`](Self::on_timeout) has work (now, when
    /// a busy connection yielded to others).
    pub fn next_deadline(&self) -> Option<Instant> {
        if let Some(at) = self.hot.deadline() {
            return Some(at);
        }
        let failed = |i: usize| self.name_addrs.get(i).is_some_and(|a| self.failed.contains(a));
        let names = (!self.draining).then(|| self.names.deadline(failed)).flatten();
        [
            self.sweep.deadline(),
            self.acceptor.deadline(),
            self.force_close_at,
            names,
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

    /// Applies what is due at `now` and resumes connections that yielded.
    pub fn on_timeout(&mut self, registry: &Registry, now: Instant) {
        let hot = self.hot.take();
        for &slot in &hot {
            if let Some(c) = self.conns.get_mut(slot) {
                c.queued = false;
            }
            self.pump(registry, slot, now);
        }
        self.hot.put_back(hot);
        if self.acceptor.on_timeout(now) {
            self.accept(registry, now);
        }
        if !self.draining {
            // Connections made stay where they are; later decisions use
            // the new address.
            let (addrs, failed) = (&self.name_addrs, &self.failed);
            let changes = self
                .names
                .tick(now, |i| addrs.get(i).is_some_and(|a| failed.contains(a)));
            self.failed.clear();
            for change in changes {
                if let Some(a) = self.name_addrs.get_mut(change.index) {
                    *a = change.new;
                }
                self.router.readdress(change.index, change.new);
            }
        }
        if self.force_close_at.is_some_and(|t| t <= now) {
            self.force_close_at = None;
            if !self.conns.is_empty() {
                warn!("shutdown grace over: closing {} routed connection(s)", self.conns.len());
            }
            for c in self.conns.drain() {
                c.close_all(registry, &mut self.pool, &mut self.pipes);
            }
        }
        let settings = &self.settings;
        let due = self
            .sweep
            .take_due(now, self.conns.iter().map(|(slot, c)| (slot, c.deadline(settings))));
        for &slot in &due {
            self.with_conn(registry, slot, now, |c, cx| c.on_timeout(cx));
        }
        self.sweep.put_back(due);
        self.accept_if_wanted(registry, now);
    }

    /// Stops accepting. Graceful: routed connections run until they end.
    /// Fast: whatever is open after [`FAST_SHUTDOWN_GRACE`] is closed.
    pub fn shutdown(&mut self, registry: &Registry, mode: ShutdownMode, now: Instant) {
        self.acceptor.close(registry, self.conns.len());
        self.draining = true;
        if mode == ShutdownMode::Fast && self.force_close_at.is_none() {
            self.force_close_at = Some(now + FAST_SHUTDOWN_GRACE);
        }
    }

    /// Shut down and every connection closed.
    pub fn is_done(&self) -> bool {
        self.draining && self.conns.is_empty()
    }

    fn accept(&mut self, registry: &Registry, now: Instant) {
        let Some(tokens) = self.tokens else { return };
        let cap = self.settings.max_connections.min(tokens.slots());
        loop {
            if self.conns.len() >= cap {
                self.acceptor.at_cap(cap, now);
                return;
            }
            let Some((mut sock, peer)) = self.acceptor.accept(now) else {
                return;
            };
            let entry = self.conns.vacant_entry();
            let slot = entry.key();
            if let Err(e) = registry.register(&mut sock, tokens.client(slot), pipe::interest()) {
                warn!("{peer}: cannot register the connection: {e}");
                continue;
            }
            debug!("{peer}: accepted");
            let conn = Conn::new(sock, peer, &self.settings, now);
            entry.insert(conn);
            // The router may decide on no bytes at all (a zero peek).
            self.pump(registry, slot, now);
        }
    }

    fn accept_if_wanted(&mut self, registry: &Registry, now: Instant) {
        while std::mem::take(&mut self.wants_accept) && self.acceptor.may_accept() {
            self.accept(registry, now);
        }
    }

    fn pump(&mut self, registry: &Registry, slot: usize, now: Instant) {
        self.with_conn(registry, slot, now, |c, cx| c.pump(cx));
    }

    /// Runs `f` on connection `slot`, then drops it if it is done or folds
    /// its deadline into the sweep.
    fn with_conn(&mut self, registry: &Registry, slot: usize, now: Instant, f: impl FnOnce(&mut Conn, &mut Cx<'_, R>)) {
        let Some(tokens) = self.tokens else { return };
        let Some(c) = self.conns.get_mut(slot) else { return };
        let mut cx = Cx {
            router: &mut self.router,
            settings: &self.settings,
            registry,
            tokens,
            slot,
            now,
            pool: &mut self.pool,
            pipes: &mut self.pipes,
            failed: &mut self.failed,
        };
        f(c, &mut cx);
        if c.is_done() {
            let c = self.conns.remove(slot);
            c.close_all(registry, &mut self.pool, &mut self.pipes);
            self.wants_accept = true;
            return;
        }
        if c.yielded && !c.queued {
            c.queued = true;
            self.hot.push(slot, now);
        }
        self.sweep.note(c.deadline(&self.settings));
    }
}

impl<R: Router> Service for Relay<R> {
    fn tokens_needed(&self) -> usize {
        Relay::tokens_needed(self)
    }

    fn register(&mut self, registry: &Registry, tokens: Range<usize>) -> io::Result<()> {
        Relay::register(self, registry, tokens)
    }

    fn handle_event(&mut self, registry: &Registry, event: &Event) -> bool {
        Relay::handle_event(self, registry, event)
    }

    fn next_deadline(&self) -> Option<Instant> {
        Relay::next_deadline(self)
    }

    fn on_timeout(&mut self, registry: &Registry, now: Instant) {
        Relay::on_timeout(self, registry, now)
    }

    fn shutdown(&mut self, registry: &Registry, mode: ShutdownMode, now: Instant) {
        Relay::shutdown(self, registry, mode, now)
    }

    fn is_done(&self) -> bool {
        Relay::is_done(self)
    }
}
