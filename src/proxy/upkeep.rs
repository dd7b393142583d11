//! What the proxy does beside client traffic: the readiness probe of the
//! master for `GET /readyz`, and backends that moved to a new address.

use std::time::{Duration, Instant};

use log::debug;
use mio::Registry;

use super::slots::{Slot, uncount};
use super::{Hooks, Proxy};
use crate::runtime::net;
use crate::runtime::resolve::Change;

/// How often a proxy with no probe under way looks whether `/readyz` wants
/// one ([`Stats`](super::Stats): asked lately, no connect to the master tried for
/// [`READY_PROBE_INTERVAL`](super::READY_PROBE_INTERVAL)).
pub const READY_PROBE_CHECK: Duration = Duration::from_secs(1);
/// How often a probe connection under way is looked at.
pub const READY_PROBE_POLL: Duration = Duration::from_millis(50);
/// A probe connect not finished by then counts as a failure.
pub const READY_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// A non-blocking connect to the master for `/readyz`. Never registered:
/// the proxy looks at it every [`READY_PROBE_POLL`] from `on_timeout`, and
/// closes it as soon as it has its answer.
pub(super) struct Probe {
    pub(super) sock: mio::net::TcpStream,
    pub(super) started: Instant,
}

impl<H: Hooks> Proxy<H> {
    /// Backend `change.index` is at `change.new` from now on. Exchanges in
    /// flight finish on their connections; idle ones to the old address
    /// close: pooled and kept ones now, a session's own when it is met.
    pub(super) fn retarget(&mut self, registry: &Registry, change: Change) {
        let b = change.index;
        let Some(backend) = self.cfg.backends.get_mut(b) else {
            return;
        };
        backend.addr = change.new;
        self.pools.retarget(b, change.new);
        let mut dropped = 0;
        for (_, conn) in self.sessions.iter_mut() {
            if let Slot::Parked(p) = conn {
                if p.drop_kept(b, registry) {
                    uncount(&mut self.kept, Some(b));
                    dropped += 1;
                }
            }
        }
        if dropped > 0 {
            debug!(
                "backend {}: {dropped} kept connection(s) to {} closed",
                self.cfg.backends[b].name, change.old
            );
        }
    }

    /// Looks at the readiness probe under way, or opens one when `/readyz`
    /// wants it (see [`Stats`]); never blocks.
    pub(super) fn probe_master(&mut self, now: Instant) {
        if self.draining || now < self.probe_at {
            return;
        }
        let master = self.cfg.master();
        if let Some(p) = &self.probe {
            let result = match net::connect_result(&p.sock) {
                None if now.saturating_duration_since(p.started) < READY_PROBE_TIMEOUT => None,
                None => Some(false),
                Some(r) => Some(r.is_ok()),
            };
            match result {
                Some(ok) => {
                    debug!(
                        "readiness probe of the master: {}",
                        if ok { "connected" } else { "failed" }
                    );
                    self.stats.connected(master, ok, now);
                    self.probe = None;
                    self.probe_at = now + READY_PROBE_CHECK;
                }
                None => self.probe_at = now + READY_PROBE_POLL,
            }
            return;
        }
        self.probe_at = now + READY_PROBE_CHECK;
        if !self.stats.probe_wanted(now) {
            return;
        }
        let Some(backend) = self.cfg.backends.get(master) else {
            return;
        };
        match mio::net::TcpStream::connect(backend.addr) {
            Ok(sock) => {
                self.probe = Some(Probe { sock, started: now });
                self.probe_at = now + READY_PROBE_POLL;
            }
            Err(e) => {
                debug!("readiness probe of the master: {e}");
                self.stats.connected(master, false, now);
            }
        }
    }
}
