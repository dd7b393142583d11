//! What the proxy counts per backend: requests by outcome, a response time
//! histogram, shadow requests dropped; and the client connections open.
//! Fixed arrays and atomics: nothing is allocated per request.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::hooks::Outcome;
use crate::metrics::{Histogram, Source, label};

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
#[derive(Debug, Default)]
struct PerBackend {
    outcomes: [AtomicU64; Outcome::ALL.len()],
    /// Complete responses: request sent to last byte.
    latency: Histogram,
    dropped: [AtomicU64; DropReason::ALL.len()],
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
}

impl Stats {
    pub(crate) fn new(names: Vec<String>, master: usize) -> Self {
        Stats {
            per: names.iter().map(|_| PerBackend::default()).collect(),
            names,
            connections: AtomicU64::new(0),
            master,
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
        // Only shadows drop requests: the master gets no series.
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
    use super::*;

    #[test]
    fn the_master_has_no_dropped_series() {
        let s = Stats::new(vec!["m".into(), "s".into()], 0);
        let mut out = String::new();
        s.write_metrics(&mut out);
        assert!(out.contains("kage_shadow_dropped_total{backend=\"s\",reason=\"inflight\"} 0"));
        assert!(!out.contains("kage_shadow_dropped_total{backend=\"m\""), "{out}");
    }
}
