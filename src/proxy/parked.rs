//! A client connection with nothing to do: accepted and waiting for its
//! first byte, or kept alive between requests. It holds its socket, a few
//! instants and the master connection kept for its next request: no buffer
//! and no exchange state (104 bytes in the slab: the test in
//! `proxy/mod.rs`; `tests/economy.rs` measures the RSS).
//!
//! The proxy's slab holds either a parked connection or a live
//! [`Session`](super::session::Session) (boxed). A session parks as soon as
//! it waits for the next request with nothing buffered; a readable event
//! revives it into a session taken from a small list of spare ones.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::debug;
use mio::Registry;

use super::config::Config;
use super::pool::Pools;
use crate::runtime::net::Readiness;
use crate::runtime::transport::Stream;

/// How long a parked connection keeps its master connection for its own
/// next request; after that the master connection goes to the shared pool
/// (bounded, so ten thousand idle clients do not hold ten thousand
/// connections to the master). At most the larger of
/// [`Config::pool_idle_per_backend`] and [`MIN_KEPT_PER_BACKEND`] parked
/// connections keep one at a time; past that a parking client's connection
/// goes to the pool at once.
pub const KEEP_BACKEND_WHILE_IDLE: Duration = Duration::from_secs(1);

/// Idle clients that may keep their own backend connection at once, per
/// backend, however small the shared pool (`--pool-idle 0` still lets a
/// keep-alive client reuse its connection).
pub const MIN_KEPT_PER_BACKEND: usize = 64;

/// A backend connection a parked client keeps for its next request (still
/// registered on the session's token for that backend).
#[derive(Debug)]
pub(crate) struct Kept {
    pub(crate) backend: usize,
    pub(crate) sock: Stream,
    pub(crate) ready: Readiness,
}

/// A client connection waiting with nothing buffered.
#[derive(Debug)]
pub(crate) struct Parked {
    pub(crate) client: Stream,
    pub(crate) peer: SocketAddr,
    pub(crate) ready: Readiness,
    /// Accepted, or the end of the last response.
    pub(crate) since: Instant,
    /// A request was served on it: the wait is a keep-alive idle, not the
    /// wait for a first head.
    pub(crate) served: bool,
    pub(crate) kept: Option<Kept>,
}

impl Parked {
    /// A connection just accepted.
    pub(crate) fn accepted(client: Stream, peer: SocketAddr, now: Instant) -> Self {
        Parked {
            client,
            peer,
            ready: Readiness::default(),
            since: now,
            served: false,
            kept: None,
        }
    }

    /// The backend of the connection it keeps, if it keeps one.
    pub(crate) fn kept_backend(&self) -> Option<usize> {
        self.kept.as_ref().map(|k| k.backend)
    }

    /// Takes in an event for the client socket; true when the session must
    /// come back to read (a write-only event changes nothing).
    pub(crate) fn on_client_event(&mut self, ready: Readiness) -> bool {
        self.ready.merge(ready);
        self.ready.readable
    }

    /// An event for a kept backend connection: a backend has nothing to say
    /// on an idle connection, so a readable one is closed or broken (but
    /// for records without data on a TLS one: session tickets).
    pub(crate) fn on_backend_event(&mut self, backend: usize, ready: Readiness, registry: &Registry) {
        let Some(kept) = self.kept.as_mut().filter(|k| k.backend == backend) else {
            return;
        };
        kept.ready.merge(ready);
        if !ready.readable || (kept.sock.is_tls() && kept.sock.idle_alive(&mut kept.ready)) {
            return;
        }
        if let Some(mut kept) = self.kept.take() {
            debug!(
                "{}: kept backend connection closed, broke or talked; dropped",
                self.peer
            );
            let _ = registry.deregister(&mut kept.sock);
        }
    }

    /// When something is due: the wait's end, or handing the kept
    /// connection to the shared pool.
    pub(crate) fn deadline(&self, cfg: &Config) -> Instant {
        let end = self.since + self.timeout(cfg);
        match self.kept {
            Some(_) => end.min(self.since + KEEP_BACKEND_WHILE_IDLE),
            None => end,
        }
    }

    fn timeout(&self, cfg: &Config) -> Duration {
        if self.served {
            cfg.keepalive_timeout
        } else {
            cfg.client_timeout
        }
    }

    /// Hands the kept connection back when that is due at `now`; true when
    /// the client's wait is over too: the caller revives the session, whose
    /// own deadlines close it (the same instant, the same log line).
    pub(crate) fn on_timeout(&mut self, cfg: &Config, registry: &Registry, pools: &mut Pools, now: Instant) -> bool {
        if now >= self.since + KEEP_BACKEND_WHILE_IDLE {
            self.hand_back(cfg, registry, pools, now);
        }
        now >= self.since + self.timeout(cfg)
    }

    /// Gives the kept backend connection to the shared pool (at
    /// `cfg`'s address of its backend: a kept connection is always there,
    /// see [`drop_kept`](Self::drop_kept)).
    pub(crate) fn hand_back(&mut self, cfg: &Config, registry: &Registry, pools: &mut Pools, now: Instant) {
        if let Some(mut kept) = self.kept.take() {
            let _ = registry.deregister(&mut kept.sock);
            if let Some(b) = cfg.backends.get(kept.backend) {
                pools.give(kept.backend, kept.sock, b.addr, now);
            }
        }
    }

    /// Closes the kept connection when it goes to `backend` (whose address
    /// just changed); true when it did.
    pub(crate) fn drop_kept(&mut self, backend: usize, registry: &Registry) -> bool {
        match self.kept.take_if(|k| k.backend == backend) {
            Some(mut kept) => {
                let _ = registry.deregister(&mut kept.sock);
                true
            }
            None => false,
        }
    }

    /// Closes the client (and the kept connection, which goes to the pool).
    pub(crate) fn close(mut self, cfg: &Config, registry: &Registry, pools: &mut Pools, now: Instant) {
        self.hand_back(cfg, registry, pools, now);
        let _ = registry.deregister(&mut self.client);
    }
}
