//! Backends by name: a proxy whose master is a host name looked up again
//! while it runs. The proxy, its backends and clients are real sockets on
//! 127.0.0.1; only the resolver is the test's own (names in /etc/hosts
//! cannot be changed by a test), given through `Proxy::with_lookup`.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::thread;
use std::time::{Duration, Instant};

use kage::runtime::resolve::{Lookup, RESOLVE_RETRY_GAP};
use support::*;

/// Every log line of this test process, to look for the proxy's.
static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Info
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            LINES.lock().unwrap().push(format!("{} {}", r.level(), r.args()));
        }
    }
    fn flush(&self) {}
}

fn capture_logs() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        log::set_logger(&Capture).expect("no other logger");
        log::set_max_level(log::LevelFilter::Info);
    });
}

/// The log lines so far that contain `text`.
fn lines_with(text: &str) -> Vec<String> {
    LINES
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(text))
        .cloned()
        .collect()
}

/// Waits until `f` holds, for up to `QUICK`.
fn eventually(what: &str, f: impl Fn() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < QUICK, "never: {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// A resolver answering what the test says, and how often it was asked.
struct Dns {
    answer: Arc<Mutex<std::io::Result<Vec<SocketAddr>>>>,
    asked: Arc<Mutex<usize>>,
}

impl Dns {
    fn new(first: SocketAddr) -> Self {
        Dns {
            answer: Arc::new(Mutex::new(Ok(vec![first]))),
            asked: Arc::new(Mutex::new(0)),
        }
    }

    fn lookup(&self) -> Lookup {
        let (answer, asked) = (self.answer.clone(), self.asked.clone());
        Arc::new(move |_: &str| {
            *asked.lock().unwrap() += 1;
            match &*answer.lock().unwrap() {
                Ok(addrs) => Ok(addrs.clone()),
                Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
            }
        })
    }

    fn answer(&self, a: std::io::Result<Vec<SocketAddr>>) {
        *self.answer.lock().unwrap() = a;
    }

    fn asked(&self) -> usize {
        *self.asked.lock().unwrap()
    }
}

fn path_of(r: &Received) -> String {
    r.head_str().split_whitespace().nth(1).unwrap_or("").to_string()
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").into_bytes()
}

/// A proxy whose master `name` is at `start`, looked up with `dns`.
fn named_proxy(name: &'static str, start: SocketAddr, dns: &Dns, interval: Duration) -> TestProxy {
    ProxySpec::new(start, &[])
        .tweak(move |cfg| {
            cfg.backends[0].name = name.to_string();
            cfg.backends[0].dns_name = Some(format!("{name}.test:80"));
            cfg.resolve_interval = interval;
        })
        .lookup(dns.lookup())
        .start()
}

#[test]
fn a_new_address_takes_new_requests_while_the_old_one_finishes_its_own() {
    capture_logs();
    let release = Arc::new(AtomicBool::new(false));
    let r = release.clone();
    let old = TestBackend::http(move |req| {
        if path_of(req) == "/slow" {
            while !r.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(5));
            }
        }
        ok_response(&format!("old {}", path_of(req)))
    });
    let new = TestBackend::http(|req| ok_response(&format!("new {}", path_of(req))));
    let dns = Dns::new(old.addr);
    let proxy = named_proxy("moving", old.addr, &dns, Duration::from_millis(200));

    // A keep-alive client whose master connection stays kept for it.
    let mut kept = Client::connect(proxy.addr);
    kept.send(&get("/a"));
    assert_eq!(kept.get().body_str(), "old /a");
    // A request in flight on the old address when it changes.
    let mut slow = Client::connect(proxy.addr);
    slow.send(&get("/slow"));
    eventually("the old backend has the slow request", || {
        old.requests().iter().any(|r| path_of(r) == "/slow")
    });
    // A client that leaves its master connection in the shared pool when
    // the proxy sees it go.
    assert_eq!(roundtrip(proxy.addr, &get("/pooled")).body_str(), "old /pooled");
    thread::sleep(Duration::from_millis(100));

    dns.answer(Ok(vec![new.addr]));
    let line = format!(
        "backend moving: moving.test now resolves to {} (was {})",
        new.addr, old.addr
    );
    eventually("the change is logged", || !lines_with(&line).is_empty());

    kept.send(&get("/b"));
    assert_eq!(
        kept.get().body_str(),
        "new /b",
        "no connection to the old address is reused (kept or pooled)"
    );
    assert_eq!(
        roundtrip(proxy.addr, &get("/c")).body_str(),
        "new /c",
        "nor a pooled one"
    );
    release.store(true, Ordering::SeqCst);
    let r = slow.get();
    assert_eq!((r.status, r.body_str().as_str()), (200, "old /slow"));

    let old_paths: Vec<String> = old.requests().iter().map(path_of).collect();
    assert_eq!(old_paths, ["/a", "/slow", "/pooled"]);
    let new_paths: Vec<String> = new.requests().iter().map(path_of).collect();
    assert_eq!(new_paths, ["/b", "/c"]);
    assert_eq!(lines_with(&line).len(), 1, "logged once");
}

#[test]
fn a_connect_failure_looks_the_name_up_again_without_waiting_for_the_interval() {
    capture_logs();
    let gone = closed_port();
    let new = TestBackend::ok("moved");
    let dns = Dns::new(gone);
    // An interval far longer than the test: only the failure can ask.
    let proxy = named_proxy("failing", gone, &dns, Duration::from_secs(3600));
    dns.answer(Ok(vec![new.addr]));
    assert_eq!(roundtrip(proxy.addr, GET).status, 502);
    let line = format!(
        "backend failing: failing.test now resolves to {} (was {gone})",
        new.addr
    );
    eventually("the change is logged", || !lines_with(&line).is_empty());
    let r = roundtrip(proxy.addr, GET);
    assert_eq!((r.status, r.body_str().as_str()), (200, "moved"));
    assert_eq!(dns.asked(), 1);
}

#[test]
fn connect_failures_look_a_name_up_at_most_once_per_retry_gap() {
    capture_logs();
    let gone = closed_port();
    let dns = Dns::new(gone);
    let proxy = named_proxy("dead", gone, &dns, Duration::from_secs(3600));
    let t = Instant::now();
    let mut requests = 0;
    while t.elapsed() < RESOLVE_RETRY_GAP * 2 {
        assert_eq!(roundtrip(proxy.addr, GET).status, 502);
        requests += 1;
        thread::sleep(Duration::from_millis(20));
    }
    // Counted before the time is taken: lookups so far are bounded by it.
    let asked = dns.asked();
    let elapsed = t.elapsed();
    let most = 1 + (elapsed.as_millis() / RESOLVE_RETRY_GAP.as_millis()) as usize;
    assert!(asked >= 2, "{asked} lookups for {requests} failed requests");
    assert!(
        asked <= most,
        "{asked} lookups in {elapsed:?} for {requests} failed requests"
    );
    assert!(lines_with("dead.test now resolves").is_empty());
}

#[test]
fn a_name_that_stops_resolving_keeps_its_last_address() {
    capture_logs();
    let backend = TestBackend::ok("still here");
    let dns = Dns::new(backend.addr);
    dns.answer(Err(std::io::Error::other("no such host")));
    let proxy = named_proxy("lost", backend.addr, &dns, Duration::from_millis(100));
    eventually("looked up a few times", || dns.asked() >= 3);
    let r = roundtrip(proxy.addr, GET);
    assert_eq!((r.status, r.body_str().as_str()), (200, "still here"));
    let warned = lines_with("backend lost: cannot resolve lost.test (no such host); keeping");
    assert_eq!(warned.len(), 1, "one warning per interval, not per lookup: {warned:?}");
    assert!(warned[0].starts_with("WARN"), "{warned:?}");
}
