//! Idle keep-alive connections to the backends, shared by all client
//! sessions: a session that ends leaves its reusable backend connections
//! here, and a session that needs a connection takes the newest one.
//!
//! Pooled sockets are deregistered, so a backend that closes one is only
//! seen when it is taken: a one-byte `peek` then tells a live connection
//! (WouldBlock) from a closed or unexpectedly talking one, which is
//! dropped. A connection that still turns out stale fails before any
//! response byte and is retried once on a fresh connection, for
//! idempotent requests only (the session's retry rule).
//!
//! The pools know each backend's address in use: when a backend's host
//! name resolves to another one ([`Pools::retarget`]), its idle
//! connections are closed, and a connection to the old address handed in
//! later (an exchange that was in flight) is closed instead of kept.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::runtime::net::Readiness;
use crate::runtime::transport::Stream;

/// Default for [`super::Config::pool_idle_per_backend`].
pub const DEFAULT_POOL_IDLE_PER_BACKEND: usize = 64;
/// Default for [`super::Config::pool_idle_timeout`].
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

struct Idle {
    sock: Stream,
    since: Instant,
}

/// One queue of idle connections per backend, oldest first.
pub(crate) struct Pools {
    idle: Vec<VecDeque<Idle>>,
    /// Each backend's address in use: only connections to it are kept.
    addrs: Vec<SocketAddr>,
    cap: usize,
    timeout: Duration,
    /// Shutting down: nothing is pooled any more.
    closed: bool,
}

impl Pools {
    /// Pools for backends at `addrs`.
    pub(crate) fn new(addrs: Vec<SocketAddr>, cap: usize, timeout: Duration) -> Self {
        Pools {
            idle: addrs.iter().map(|_| VecDeque::new()).collect(),
            addrs,
            cap,
            timeout,
            closed: false,
        }
    }

    /// Keeps an idle connection to backend `b` at `addr` (already
    /// deregistered); the oldest goes when the pool is full. One to an
    /// address the backend no longer has is closed.
    pub(crate) fn give(&mut self, b: usize, sock: Stream, addr: SocketAddr, now: Instant) {
        if self.closed || self.cap == 0 || self.addrs.get(b) != Some(&addr) {
            return;
        }
        let Some(q) = self.idle.get_mut(b) else { return };
        if q.len() >= self.cap {
            q.pop_front();
        }
        q.push_back(Idle { sock, since: now });
    }

    /// The newest live idle connection to backend `b`.
    pub(crate) fn take(&mut self, b: usize, now: Instant) -> Option<Stream> {
        let q = self.idle.get_mut(b)?;
        while let Some(mut idle) = q.pop_back() {
            if now.saturating_duration_since(idle.since) >= self.timeout {
                // Everything older has expired too.
                q.clear();
                return None;
            }
            // Closed, bytes nobody asked for, or an error: dropped.
            if idle.sock.idle_alive(&mut Readiness::default()) {
                return Some(idle.sock);
            }
        }
        None
    }

    /// Backend `b` is at `addr` from now on: its idle connections close.
    pub(crate) fn retarget(&mut self, b: usize, addr: SocketAddr) {
        if let (Some(a), Some(q)) = (self.addrs.get_mut(b), self.idle.get_mut(b)) {
            *a = addr;
            q.clear();
        }
    }

    /// Idle connections to backend `b` now.
    pub(crate) fn len(&self, b: usize) -> usize {
        self.idle.get(b).map_or(0, VecDeque::len)
    }

    /// When the oldest idle connection expires.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.idle
            .iter()
            .filter_map(|q| q.front())
            .map(|i| i.since + self.timeout)
            .min()
    }

    /// Closes the connections idle for the timeout.
    pub(crate) fn expire(&mut self, now: Instant) {
        for q in &mut self.idle {
            while q.front().is_some_and(|i| i.since + self.timeout <= now) {
                q.pop_front();
            }
        }
    }

    /// Closes every idle connection and pools no more.
    pub(crate) fn close(&mut self) {
        self.closed = true;
        self.idle.iter_mut().for_each(VecDeque::clear);
    }
}
