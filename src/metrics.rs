//! Prometheus metrics: counters and fixed-bucket histograms that cost no
//! allocation per request, and [`Endpoint`], a [`Service`] answering
//! `GET /metrics` in the text exposition format from the same event loop,
//! with `GET /healthz` (200 `ok` while the process runs) and `GET /readyz`
//! (200 when every source that knows says ready, else 503 and why: see
//! [`Source::readiness`]). HEAD gets the same heads without a body; any
//! other method on these paths gets 405, any other path 404.
//!
//! Sources ([`Source`]) are shared with the endpoint through an `Arc` and
//! written with relaxed atomics: the loop is single-threaded, the atomics
//! only make the sources `Send` for hosts that build them on another
//! thread.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use log::{debug, warn};
use mio::event::Event;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use slab::Slab;

use crate::http::{HeadStatus, Method, RequestHead};
use crate::runtime::listen::Acceptor;
use crate::runtime::net::{self, Io};
use crate::runtime::server::{Service, ShutdownMode};

/// Upper bounds of the latency histogram buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Scrape connections served at once; more wait in the listen queue.
pub const MAX_SCRAPERS: usize = 16;
/// A scrape request head larger than this is refused.
pub const MAX_SCRAPE_REQUEST: usize = 8 * 1024;
/// How long a scrape connection may take.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// A latency histogram with [`LATENCY_BUCKETS`].
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    /// Sum in microseconds.
    sum_us: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|&b| s <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add(d.as_micros().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The smallest bucket bound under which a share `q` (0..=1) of the
    /// observations fall (`+Inf` as `f64::INFINITY`); `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let want = (q * count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= want {
                return Some(LATENCY_BUCKETS[i]);
            }
        }
        Some(f64::INFINITY)
    }

    /// Writes the `_bucket`, `_sum` and `_count` lines of `name` with
    /// `labels` (`key="value",...`, without braces).
    pub fn write(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            cumulative += b.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels},le=\"{}\"}} {cumulative}",
                LATENCY_BUCKETS[i]
            );
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// Quotes a label value for the text format.
pub fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Something with metrics to show.
pub trait Source: Send + Sync {
    /// Appends its metric families in the text exposition format.
    fn write_metrics(&self, out: &mut String);

    /// For `GET /readyz`: `None` when this source has no say, else ready or
    /// why not (one line). Called once per `/readyz` request.
    fn readiness(&self) -> Option<Result<(), String>> {
        None
    }
}

/// One scrape connection.
struct Scrape {
    sock: TcpStream,
    peer: SocketAddr,
    request: Vec<u8>,
    response: Vec<u8>,
    written: usize,
    since: Instant,
}

/// Serves `GET /metrics` from the sources, `/healthz` and `/readyz` (see
/// the [module docs](self)); any other path gets 404.
pub struct Endpoint {
    acceptor: Acceptor,
    sources: Vec<Arc<dyn Source>>,
    scrapes: Slab<Scrape>,
    first: Option<usize>,
    draining: bool,
}

impl Endpoint {
    /// Binds `addr`; `sources` are written in order on every scrape.
    pub fn bind(addr: SocketAddr, sources: Vec<Arc<dyn Source>>) -> io::Result<Self> {
        Ok(Endpoint {
            acceptor: Acceptor::bind(addr)?,
            sources,
            scrapes: Slab::new(),
            first: None,
            draining: false,
        })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.acceptor.local_addr()
    }

    fn accept(&mut self, registry: &Registry, now: Instant) {
        let Some(first) = self.first else { return };
        while self.scrapes.len() < MAX_SCRAPERS {
            let Some((mut sock, peer)) = self.acceptor.accept(now) else {
                return;
            };
            let slot = self.scrapes.vacant_key();
            let token = Token(first + 1 + slot);
            if let Err(e) = registry.register(&mut sock, token, Interest::READABLE | Interest::WRITABLE) {
                warn!("{peer}: cannot register the metrics connection: {e}");
                continue;
            }
            self.scrapes.insert(Scrape {
                sock,
                peer,
                request: Vec::new(),
                response: Vec::new(),
                written: 0,
                since: now,
            });
            self.drive(registry, slot);
        }
    }

    /// Reads the request, answers, writes; closes when done or failed.
    fn drive(&mut self, registry: &Registry, slot: usize) {
        let Some(s) = self.scrapes.get_mut(slot) else { return };
        let mut done = false;
        if s.response.is_empty() {
            let mut buf = [0u8; 2048];
            loop {
                match net::fold(|| s.sock.read(&mut buf)) {
                    Io::Done(n) => s.request.extend_from_slice(&buf[..n]),
                    Io::WouldBlock => break,
                    Io::Closed | Io::Failed(_) => {
                        done = true;
                        break;
                    }
                }
                if s.request.len() > MAX_SCRAPE_REQUEST {
                    break;
                }
            }
            let mut head = RequestHead::new();
            let parsed = match head.parse(&s.request) {
                Ok(HeadStatus::Complete(_)) => true,
                Ok(HeadStatus::Partial) if s.request.len() <= MAX_SCRAPE_REQUEST && !done => return,
                _ => false,
            };
            let path = if parsed { head.path(&s.request) } else { b"" };
            let method = head.method();
            let known = matches!(path, b"/metrics" | b"/healthz" | b"/readyz");
            let mut body = String::new();
            let mut content_type = "text/plain; charset=utf-8";
            let status = if !parsed {
                400
            } else if !known {
                body.push_str("GET /metrics, /healthz or /readyz\n");
                404
            } else if !matches!(method, Method::Get | Method::Head) {
                body.push_str("GET or HEAD only\n");
                405
            } else if path == b"/metrics" {
                content_type = "text/plain; version=0.0.4; charset=utf-8";
                for source in &self.sources {
                    source.write_metrics(&mut body);
                }
                200
            } else if path == b"/healthz" {
                body.push_str("ok\n");
                200
            } else {
                let why: Vec<String> = self
                    .sources
                    .iter()
                    .filter_map(|src| src.readiness())
                    .filter_map(Result::err)
                    .collect();
                if why.is_empty() {
                    body.push_str("ready\n");
                    200
                } else {
                    let _ = writeln!(body, "{}", why.join("; "));
                    503
                }
            };
            if status != 200 {
                debug!("{}: metrics request answered {status}: {}", s.peer, body.trim_end());
            }
            let reason = match status {
                200 => "OK",
                404 => "Not Found",
                405 => "Method Not Allowed",
                503 => "Service Unavailable",
                _ => "Bad Request",
            };
            let allow = if status == 405 { "Allow: GET, HEAD\r\n" } else { "" };
            let mut response = format!(
                "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n{allow}\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            if !(parsed && method == Method::Head) {
                response.push_str(&body);
            }
            s.response = response.into_bytes();
            done = false;
        }
        while s.written < s.response.len() {
            match net::fold(|| s.sock.write(&s.response[s.written..])) {
                Io::Done(n) => s.written += n,
                Io::WouldBlock => return,
                Io::Closed | Io::Failed(_) => {
                    done = true;
                    break;
                }
            }
        }
        if done || s.written >= s.response.len() {
            self.close(registry, slot);
        }
    }

    fn close(&mut self, registry: &Registry, slot: usize) {
        if self.scrapes.contains(slot) {
            let mut s = self.scrapes.remove(slot);
            let _ = s.sock.shutdown(std::net::Shutdown::Write);
            let _ = registry.deregister(&mut s.sock);
        }
    }
}

impl Service for Endpoint {
    fn tokens_needed(&self) -> usize {
        1 + MAX_SCRAPERS
    }

    fn register(&mut self, registry: &Registry, tokens: Range<usize>) -> io::Result<()> {
        if tokens.len() < 1 + MAX_SCRAPERS {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "token range too small"));
        }
        self.acceptor.register(registry, Token(tokens.start))?;
        self.first = Some(tokens.start);
        Ok(())
    }

    fn handle_event(&mut self, registry: &Registry, event: &Event) -> bool {
        let Some(first) = self.first else { return false };
        let t = event.token().0;
        if t == first {
            self.acceptor.on_ready();
            self.accept(registry, Instant::now());
            return true;
        }
        match t.checked_sub(first + 1) {
            Some(slot) if slot < MAX_SCRAPERS => {
                self.drive(registry, slot);
                if self.acceptor.may_accept() {
                    self.accept(registry, Instant::now());
                }
                true
            }
            _ => false,
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let oldest = self.scrapes.iter().map(|(_, s)| s.since + SCRAPE_TIMEOUT).min();
        [oldest, self.acceptor.deadline()].into_iter().flatten().min()
    }

    fn on_timeout(&mut self, registry: &Registry, now: Instant) {
        let late: Vec<usize> = self
            .scrapes
            .iter()
            .filter(|(_, s)| now >= s.since + SCRAPE_TIMEOUT)
            .map(|(k, _)| k)
            .collect();
        for slot in late {
            self.close(registry, slot);
        }
        // A freed slot may take a connection queued while all were busy.
        let resumed = self.acceptor.on_timeout(now);
        if !self.draining && (resumed || self.acceptor.may_accept()) {
            self.accept(registry, now);
        }
    }

    fn shutdown(&mut self, registry: &Registry, _: ShutdownMode, _: Instant) {
        self.draining = true;
        self.acceptor.close(registry, 0);
        let slots: Vec<usize> = self.scrapes.iter().map(|(k, _)| k).collect();
        for slot in slots {
            self.close(registry, slot);
        }
    }

    fn is_done(&self) -> bool {
        self.draining
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(30));
        let mut out = String::new();
        h.write(&mut out, "x_seconds", "backend=\"m\"");
        assert!(
            out.contains("x_seconds_bucket{backend=\"m\",le=\"0.0005\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{backend=\"m\",le=\"0.005\"} 2\n"),
            "{out}"
        );
        assert!(out.contains("x_seconds_bucket{backend=\"m\",le=\"10\"} 2\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{backend=\"m\",le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_seconds_count{backend=\"m\"} 3\n"), "{out}");
        assert_eq!(h.quantile(0.5), Some(0.005));
        assert_eq!(h.quantile(0.99), Some(f64::INFINITY));
        assert_eq!(Histogram::default().quantile(0.5), None);
        assert_eq!(label("a\"b\\"), "a\\\"b\\\\");
    }
}
