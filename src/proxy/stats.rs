//! What the proxy counts per backend: requests by outcome, a response time
//! histogram, shadow requests dropped; and the client connections open.
//! Fixed arrays and atomics: nothing is allocated per request.
//!
//! Readiness ([`Source::readiness`], `GET /readyz`) comes from here too: the
//! proxy notes when a connect to the master last succeeded and last failed,
//! and whether it is listening. It is ready while listening, with a success
//! within [`READY_WINDOW`] and no failure after it. A proxy with no traffic
//! would fall out of that window, so while `/readyz` is being asked (within
//! [`READY_WINDOW`] of the last ask) and no connect to the master was tried
//! for [`READY_PROBE_INTERVAL`], the proxy opens one non-blocking probe
//! connection to the master from its own loop (see `Proxy::on_timeout`), at
//! most one at a time; a proxy nobody asks is never probed. The first ask
//! after a quiet spell may therefore answer 503 ("not checked recently")
//! while its probe runs; the next one sees the probe's result.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::hooks::Outcome;
use crate::metrics::{Histogram, Source, label};

/// How recent a successful connect to the master must be for `/readyz`.
pub const READY_WINDOW: Duration = Duration::from_secs(30);
/// While `/readyz` is asked, the master is probed when no connect to it was
/// tried for this long.
pub const READY_PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// Why a shadow request was not sent (or not waited for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The shadow had its most requests in flight.
    Inflight,
    /// The shadow's requests-per-second budget was spent.
    Budget,
    /// No room in the backlog's token range.
    Backlog,
}

impl DropReason {
    /// Every reason, in declaration order.
    pub const ALL: [DropReason; 3] = [DropReason::Inflight, DropReason::Budget, DropReason::Backlog];

    /// Lower-case name for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Inflight => "inflight",
            DropReason::Budget => "budget",
            DropReason::Backlog => "backlog",
        }
    }
}

/// One backend's counters.
/// Shortest time between two log lines for failures of one backend; the
/// line says how many failures were not logged since the last one.
pub const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
struct PerBackend {
    outcomes: [AtomicU64; Outcome::ALL.len()],
    /// Clock value of the last failure line logged (0: never).
    failure_logged: AtomicU64,
    /// Failures since that line, not logged one by one.
    failures_unlogged: AtomicU64,
    /// Complete responses: request sent to last byte.
    latency: Histogram,
    dropped: [AtomicU64; DropReason::ALL.len()],
    /// A connect failed since the proxy last looked (it may look the
    /// backend's host name up again).
    connect_failed: AtomicBool,
}

/// The proxy's counters per backend (requests by outcome, response times,
/// drops) and the connections open; shared with a metrics endpoint through
/// [`Proxy::stats`](super::Proxy::stats).
#[derive(Debug)]
pub struct Stats {
    names: Vec<String>,
    per: Vec<PerBackend>,
    connections: AtomicU64,
    /// The master's index in `names`.
    master: usize,
    /// What the `*_us` clocks count from.
    epoch: Instant,
    /// Microseconds after `epoch` plus one (0: never) of the last
    /// successful connect to the master.
    master_ok_us: AtomicU64,
    /// The same for the last failed one.
    master_failed_us: AtomicU64,
    /// The same for the last `/readyz` asked.
    asked_us: AtomicU64,
    /// The listener is open (registered, not shutting down).
    listening: AtomicBool,
}

impl Stats {
    pub(crate) fn new(names: Vec<String>, master: usize, now: Instant) -> Self {
        Stats {
            per: names.iter().map(|_| PerBackend::default()).collect(),
            names,
            connections: AtomicU64::new(0),
            master,
            epoch: now,
            master_ok_us: AtomicU64::new(0),
            master_failed_us: AtomicU64::new(0),
            asked_us: AtomicU64::new(0),
            listening: AtomicBool::new(false),
        }
    }

    /// Whether a failure of backend `b` at `now` gets its own log line: the
    /// first in each [`FAILURE_LOG_INTERVAL`] does, with the number of
    /// failures since the last line; the others are only counted (a dead
    /// backend must not log a line per request).
    pub(crate) fn failure_to_log(&self, b: usize, now: Instant) -> Option<u64> {
        let p = self.per.get(b)?;
        let last = p.failure_logged.load(Ordering::Relaxed);
        let due = last == 0 || self.clock(now).saturating_sub(last) >= FAILURE_LOG_INTERVAL.as_micros() as u64;
        if due {
            p.failure_logged.store(self.clock(now), Ordering::Relaxed);
            Some(p.failures_unlogged.swap(0, Ordering::Relaxed))
        } else {
            p.failures_unlogged.fetch_add(1, Ordering::Relaxed);
            None
        }
    }

    /// `at` as a clock value: microseconds after the epoch plus one.
    fn clock(&self, at: Instant) -> u64 {
        let us = at.saturating_duration_since(self.epoch).as_micros();
        u64::try_from(us).unwrap_or(u64::MAX - 1).saturating_add(1)
    }

    /// How long before `now` a clock value was, if ever.
    fn age(&self, value: &AtomicU64, now: Instant) -> Option<Duration> {
        match value.load(Ordering::Relaxed) {
            0 => None,
            v => Some(Duration::from_micros(self.clock(now).saturating_sub(v))),
        }
    }

    /// Notes how a connect to backend `b` ended (only the master's count
    /// for readiness).
    pub(crate) fn connected(&self, b: usize, ok: bool, now: Instant) {
        if !ok {
            if let Some(p) = self.per.get(b) {
                p.connect_failed.store(true, Ordering::Relaxed);
            }
        }
        if b != self.master {
            return;
        }
        let at = self.clock(now);
        let slot = if ok { &self.master_ok_us } else { &self.master_failed_us };
        slot.fetch_max(at, Ordering::Relaxed);
    }

    /// A connect to backend `b` failed since the last
    /// [`take_connect_failed`](Self::take_connect_failed).
    pub(crate) fn connect_failed(&self, b: usize) -> bool {
        self.per
            .get(b)
            .is_some_and(|p| p.connect_failed.load(Ordering::Relaxed))
    }

    /// The same, forgotten.
    pub(crate) fn take_connect_failed(&self, b: usize) -> bool {
        self.per
            .get(b)
            .is_some_and(|p| p.connect_failed.swap(false, Ordering::Relaxed))
    }

    pub(crate) fn set_listening(&self, on: bool) {
        self.listening.store(on, Ordering::Relaxed);
    }

    /// The master should be probed: `/readyz` was asked lately and no
    /// connect to it was tried for [`READY_PROBE_INTERVAL`].
    pub(crate) fn probe_wanted(&self, now: Instant) -> bool {
        let asked = self.age(&self.asked_us, now).is_some_and(|a| a < READY_WINDOW);
        let tried = [&self.master_ok_us, &self.master_failed_us]
            .into_iter()
            .filter_map(|v| self.age(v, now))
            .min();
        asked && self.listening.load(Ordering::Relaxed) && tried.is_none_or(|t| t >= READY_PROBE_INTERVAL)
    }

    /// Ready to serve at `now`, or why not (one line).
    pub fn ready_at(&self, now: Instant) -> Result<(), String> {
        if !self.listening.load(Ordering::Relaxed) {
            return Err("not listening (shutting down)".into());
        }
        let ok = self.master_ok_us.load(Ordering::Relaxed);
        let failed = self.master_failed_us.load(Ordering::Relaxed);
        let master = self.names.get(self.master).map_or("master", |n| n.as_str());
        if failed > ok {
            let ago = self.age(&self.master_failed_us, now).unwrap_or_default();
            return Err(format!(
                "master {master}: last connect failed {} ms ago",
                ago.as_millis()
            ));
        }
        match self.age(&self.master_ok_us, now) {
            Some(ago) if ago <= READY_WINDOW => Ok(()),
            Some(_) | None => Err(format!(
                "master {master}: not checked recently (no connect within {} s)",
                READY_WINDOW.as_secs()
            )),
        }
    }

    /// Counts how backend `b`'s part of an exchange ended.
    pub(crate) fn record(&self, b: usize, outcome: Outcome, total: Option<Duration>) {
        let Some(p) = self.per.get(b) else { return };
        p.outcomes[outcome.index()].fetch_add(1, Ordering::Relaxed);
        if let Some(t) = total {
            p.latency.observe(t);
        }
    }

    pub(crate) fn count_drop(&self, b: usize, reason: DropReason) {
        if let Some(p) = self.per.get(b) {
            p.dropped[reason as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn set_connections(&self, n: usize) {
        self.connections.store(n as u64, Ordering::Relaxed);
    }

    /// Exchanges of backend `b` that ended with `outcome`.
    pub fn requests(&self, b: usize, outcome: Outcome) -> u64 {
        self.per
            .get(b)
            .map_or(0, |p| p.outcomes[outcome.index()].load(Ordering::Relaxed))
    }

    /// Shadow requests to backend `b` dropped, for every reason.
    pub fn dropped(&self, b: usize) -> u64 {
        DropReason::ALL.iter().map(|r| self.dropped_for(b, *r)).sum()
    }

    /// Shadow requests to backend `b` dropped for `reason`.
    pub fn dropped_for(&self, b: usize, reason: DropReason) -> u64 {
        self.per
            .get(b)
            .map_or(0, |p| p.dropped[reason as usize].load(Ordering::Relaxed))
    }

    /// Backend `b`'s response time histogram (complete responses).
    pub fn latency(&self, b: usize) -> Option<&Histogram> {
        self.per.get(b).map(|p| &p.latency)
    }
}

impl Source for Stats {
    fn readiness(&self) -> Option<Result<(), String>> {
        let now = Instant::now();
        self.asked_us.store(self.clock(now), Ordering::Relaxed);
        Some(self.ready_at(now))
    }

    fn write_metrics(&self, out: &mut String) {
        out.push_str("# HELP kage_requests_total Exchanges per backend by how they ended.\n");
        out.push_str("# TYPE kage_requests_total counter\n");
        for (name, p) in self.names.iter().zip(&self.per) {
            for o in Outcome::ALL {
                let n = p.outcomes[o.index()].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "kage_requests_total{{backend=\"{}\",outcome=\"{}\"}} {n}",
                    label(name),
                    o.as_str()
                );
            }
        }
        out.push_str("# HELP kage_response_seconds From request sent to last response byte, complete responses.\n");
        out.push_str("# TYPE kage_response_seconds histogram\n");
        for (name, p) in self.names.iter().zip(&self.per) {
            p.latency
                .write(out, "kage_response_seconds", &format!("backend=\"{}\"", label(name)));
        }
        out.push_str("# HELP kage_shadow_dropped_total Shadow requests not sent.\n");
        out.push_str("# TYPE kage_shadow_dropped_total counter\n");
        let shadows = self.names.iter().zip(&self.per).enumerate();
        for (_, (name, p)) in shadows.filter(|(b, _)| *b != self.master) {
            for r in DropReason::ALL {
                let n = p.dropped[r as usize].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "kage_shadow_dropped_total{{backend=\"{}\",reason=\"{}\"}} {n}",
                    label(name),
                    r.as_str()
                );
            }
        }
        out.push_str("# HELP kage_connections_open Client connections open.\n");
        out.push_str("# TYPE kage_connections_open gauge\n");
        let _ = writeln!(
            out,
            "kage_connections_open {}",
            self.connections.load(Ordering::Relaxed)
        );
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn failures_are_logged_once_per_interval_with_the_count_between() {
        let t0 = Instant::now();
        let stats = Stats::new(vec!["master".into(), "shadow".into()], 0, t0);
        assert_eq!(stats.failure_to_log(1, t0), Some(0), "the first is logged");
        for k in 1..=5 {
            assert_eq!(stats.failure_to_log(1, t0 + Duration::from_millis(k)), None);
        }
        assert_eq!(stats.failure_to_log(0, t0), Some(0), "each backend has its own clock");
        let later = t0 + FAILURE_LOG_INTERVAL + Duration::from_millis(1);
        assert_eq!(stats.failure_to_log(1, later), Some(5), "the next line counts the five");
        assert_eq!(stats.failure_to_log(1, later), None);
        assert_eq!(stats.failure_to_log(7, later), None, "no such backend");
    }

    use super::*;

    #[test]
    fn ready_needs_a_recent_success_and_no_failure_after_it() {
        let t0 = Instant::now();
        let s = Stats::new(vec!["master".into(), "shadow".into()], 0, t0);
        assert!(s.ready_at(t0).unwrap_err().contains("not listening"));
        s.set_listening(true);
        assert!(s.ready_at(t0).unwrap_err().contains("not checked recently"));
        let t1 = t0 + Duration::from_secs(1);
        s.connected(1, false, t1);
        assert!(s.ready_at(t1).is_err(), "a shadow's connect says nothing");
        s.connected(0, true, t1);
        assert_eq!(s.ready_at(t1), Ok(()));
        assert_eq!(s.ready_at(t1 + READY_WINDOW), Ok(()));
        assert!(s.ready_at(t1 + READY_WINDOW + Duration::from_secs(1)).is_err());
        let t2 = t1 + Duration::from_secs(2);
        s.connected(0, false, t2);
        assert!(s.ready_at(t2).unwrap_err().contains("last connect failed"));
        s.connected(0, true, t2 + Duration::from_secs(1));
        assert_eq!(s.ready_at(t2 + Duration::from_secs(1)), Ok(()));
        // Probes: only while /readyz is asked, and not right after a connect.
        assert!(!s.probe_wanted(t2 + READY_PROBE_INTERVAL * 2));
        s.asked_us.store(s.clock(t2), Ordering::Relaxed);
        assert!(!s.probe_wanted(t2 + Duration::from_secs(2)));
        assert!(s.probe_wanted(t2 + Duration::from_secs(1) + READY_PROBE_INTERVAL));
        s.set_listening(false);
        assert!(!s.probe_wanted(t2 + Duration::from_secs(1) + READY_PROBE_INTERVAL));
    }

    #[test]
    fn the_master_has_no_dropped_series() {
        let s = Stats::new(vec!["m".into(), "s".into()], 0, Instant::now());
        let mut out = String::new();
        s.write_metrics(&mut out);
        assert!(out.contains("kage_shadow_dropped_total{backend=\"s\",reason=\"inflight\"} 0"));
        assert!(!out.contains("kage_shadow_dropped_total{backend=\"m\""), "{out}");
    }
}
