//! `KeepAlive::Always` with real sockets: shadowed requests keep the client
//! connection, shadows finish in the background and stay attributed to
//! their own request, the backlog is bounded.

mod support;

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use kage::proxy::{KeepAlive, Outcome, ShutdownMode};
use support::*;

/// The request target, from the request line.
fn target_of(req: &Received) -> String {
    req.head_str().split(' ').nth(1).unwrap_or_default().to_string()
}

/// A keep-alive backend whose body names the request it answers, after
/// `delay` (on a thread per connection, so answers may overtake each other
/// across connections).
fn naming_backend(tag: &'static str, delay: Duration) -> TestBackend {
    TestBackend::http(move |req| {
        thread::sleep(delay);
        ok_response(&format!("{tag} {}", target_of(req)))
    })
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").into_bytes()
}

fn always(spec: ProxySpec) -> ProxySpec {
    spec.tweak(|cfg| cfg.keep_alive = KeepAlive::Always)
}

#[test]
fn shadowed_requests_keep_the_client_and_backend_connections() {
    let master = naming_backend("master", Duration::ZERO);
    let shadow = naming_backend("shadow", Duration::ZERO);
    let proxy = always(ProxySpec::new(master.addr, &[shadow.addr])).start();
    let mut c = Client::connect(proxy.addr);
    for i in 0..10 {
        let path = format!("/r{i}");
        c.send(&get(&path));
        let r = c.get();
        assert_eq!((r.status, r.body_str()), (200, format!("master {path}")));
        assert_ne!(r.header("connection").as_deref(), Some("close"), "kept alive");
        let x = proxy.exchange();
        assert_eq!(x.target, path);
        assert_eq!(x.outcome("shadow1"), Outcome::Complete);
    }
    assert_eq!(master.seen.accepts(), 1, "one master connection for ten requests");
    assert_eq!(shadow.seen.accepts(), 1, "one shadow connection for ten requests");
    assert!(
        shadow
            .requests()
            .iter()
            .all(|r| r.header("connection").is_none_or(|v| v != "close")),
        "shadows are asked to keep the connection"
    );
}

#[test]
fn a_slow_shadow_never_delays_the_client() {
    let master = naming_backend("master", Duration::ZERO);
    let shadow = naming_backend("shadow", Duration::from_millis(300));
    let proxy = always(ProxySpec::new(master.addr, &[shadow.addr])).start();
    let mut c = Client::connect(proxy.addr);
    let t = Instant::now();
    for i in 0..5 {
        c.send(&get(&format!("/slow{i}")));
        assert_eq!(c.get().status, 200);
    }
    let took = t.elapsed();
    // Waiting for the shadow would take 5 × 300 ms.
    assert!(took < Duration::from_millis(1000), "5 requests took {took:?}");
    let mut targets = Vec::new();
    for _ in 0..5 {
        let x = proxy.exchange();
        assert_eq!(x.outcome("shadow1"), Outcome::Complete, "{x:?}");
        let shadow_body = &x.reports.iter().find(|r| r.0 == "shadow1").unwrap().3;
        assert_eq!(
            String::from_utf8_lossy(shadow_body),
            format!("shadow {}", x.target),
            "the late answer belongs to its own request"
        );
        targets.push(x.target);
    }
    targets.sort();
    assert_eq!(targets, ["/slow0", "/slow1", "/slow2", "/slow3", "/slow4"]);
    assert!(
        !c.is_closed_within(Duration::from_millis(200)),
        "the client stays connected"
    );
}

#[test]
fn no_cross_talk_between_clients_under_concurrent_load() {
    const CLIENTS: usize = 8;
    const REQUESTS: usize = 40;
    let master = naming_backend("master", Duration::ZERO);
    // Uneven shadow delays: answers arrive after later requests began.
    let shadow = TestBackend::http(|req| {
        let target = target_of(req);
        let n: u64 = target.bytes().map(u64::from).sum();
        thread::sleep(Duration::from_millis(n % 7));
        ok_response(&format!("shadow {target}"))
    });
    let proxy = always(ProxySpec::new(master.addr, &[shadow.addr])).start();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|ci| {
            let addr = proxy.addr;
            thread::spawn(move || {
                let mut c = Client::connect(addr);
                for ri in 0..REQUESTS {
                    let path = format!("/c{ci}/r{ri}");
                    c.send(&get(&path));
                    let r = c.get();
                    assert_eq!((r.status, r.body_str()), (200, format!("master {path}")));
                }
            })
        })
        .collect();
    for t in clients {
        t.join().expect("client thread");
    }
    let mut targets = Vec::new();
    for _ in 0..CLIENTS * REQUESTS {
        let x = proxy.exchange();
        for (name, outcome, status, body) in &x.reports {
            assert_eq!((*outcome, *status), (Outcome::Complete, Some(200)), "{name}: {x:?}");
            let tag = if name == "master" { "master" } else { "shadow" };
            assert_eq!(String::from_utf8_lossy(body), format!("{tag} {}", x.target));
        }
        targets.push(x.target);
    }
    targets.sort();
    targets.dedup();
    assert_eq!(targets.len(), CLIENTS * REQUESTS, "every exchange reported once");
    assert_eq!(master.seen.accepts(), CLIENTS, "one master connection per client");
    let shadow_conns = shadow.seen.accepts();
    assert!(
        shadow_conns < CLIENTS * REQUESTS / 4,
        "shadow connections are reused: {shadow_conns} for {} requests",
        CLIENTS * REQUESTS
    );
}

#[test]
fn a_shadow_at_its_in_flight_cap_is_dropped_and_the_client_served() {
    let master = naming_backend("master", Duration::ZERO);
    let shadow = naming_backend("shadow", Duration::from_millis(400));
    let proxy = always(ProxySpec::new(master.addr, &[shadow.addr]))
        .tweak(|cfg| {
            cfg.keep_alive = KeepAlive::Always;
            cfg.shadow_max_inflight = 1;
        })
        .start();
    let mut c = Client::connect(proxy.addr);
    let t = Instant::now();
    for i in 0..3 {
        c.send(&get(&format!("/b{i}")));
        assert_eq!(c.get().status, 200, "the client is served whatever the shadows do");
    }
    assert!(t.elapsed() < Duration::from_millis(300), "took {:?}", t.elapsed());
    let x = proxy.exchange();
    assert_eq!((x.target.as_str(), x.outcome("shadow1")), ("/b0", Outcome::Complete));
    // The others lost their only shadow: served as master-only, only counted.
    assert!(proxy.exchanges.recv_timeout(Duration::from_millis(300)).is_err());
    assert_eq!(shadow.requests().len(), 1, "dropped shadows were never sent");
    assert_eq!(master.requests().len(), 3);
}

#[test]
fn a_dropped_shadow_is_reported_beside_one_that_was_sent() {
    let master = naming_backend("master", Duration::ZERO);
    let slow = naming_backend("slow", Duration::from_millis(500));
    let fast = naming_backend("fast", Duration::ZERO);
    let proxy = always(ProxySpec::new(master.addr, &[slow.addr, fast.addr]))
        .tweak(|cfg| {
            cfg.keep_alive = KeepAlive::Always;
            cfg.shadow_max_inflight = 1;
        })
        .start();
    let mut c = Client::connect(proxy.addr);
    for i in 0..3 {
        c.send(&get(&format!("/d{i}")));
        assert_eq!(c.get().status, 200);
        // The fast shadow is done before the next request.
        thread::sleep(Duration::from_millis(50));
    }
    let mut seen: Vec<_> = (0..3).map(|_| proxy.exchange()).collect();
    seen.sort_by(|a, b| a.target.cmp(&b.target));
    assert_eq!(seen[0].outcome("shadow1"), Outcome::Complete, "{:?}", seen[0]);
    for x in &seen[1..] {
        assert_eq!(x.outcome("shadow1"), Outcome::Dropped, "{x:?}");
        assert_eq!(x.outcome("shadow2"), Outcome::Complete, "{x:?}");
    }
    assert_eq!(slow.requests().len(), 1);
    assert_eq!(fast.requests().len(), 3);
}

#[test]
fn the_in_flight_cap_holds_with_kages_rule_too() {
    let master = naming_backend("master", Duration::ZERO);
    let shadow = naming_backend("shadow", Duration::from_millis(400));
    let proxy = ProxySpec::new(master.addr, &[shadow.addr])
        .tweak(|cfg| cfg.shadow_max_inflight = 1)
        .start();
    let first = roundtrip(proxy.addr, &get("/k0"));
    assert_eq!(first.header("connection").as_deref(), Some("close"));
    let mut c = Client::connect(proxy.addr);
    c.send(&get("/k1"));
    let r = c.get();
    assert_eq!(r.status, 200);
    assert_ne!(
        r.header("connection").as_deref(),
        Some("close"),
        "without its shadow the request is master-only: kept alive"
    );
    assert_eq!(proxy.exchange().target, "/k0");
    assert_eq!(shadow.requests().len(), 1);
}

#[test]
fn a_stale_shadow_connection_is_retried_on_a_fresh_one() {
    let master = naming_backend("master", Duration::ZERO);
    // Answers one request per connection and closes when the next comes.
    let shadow = TestBackend::start(|conn, seen| {
        let mut buf = Vec::new();
        if let Some(req) = read_request(conn, &mut buf) {
            let body = format!("shadow {}", target_of(&req));
            seen.requests.lock().unwrap().push(req);
            let _ = conn.write_all(&ok_response(&body));
        }
        let _ = read_request(conn, &mut buf);
    });
    let proxy = always(ProxySpec::new(master.addr, &[shadow.addr])).start();
    let mut c = Client::connect(proxy.addr);
    for i in 0..3 {
        let path = format!("/s{i}");
        c.send(&get(&path));
        assert_eq!(c.get().status, 200);
        let x = proxy.exchange();
        assert_eq!(x.outcome("shadow1"), Outcome::Complete, "{x:?}");
    }
    assert_eq!(shadow.requests().len(), 3);
    assert_eq!(shadow.seen.accepts(), 3, "each stale connection replaced once");
}

#[test]
fn a_graceful_stop_waits_for_pending_shadows() {
    let master = naming_backend("master", Duration::ZERO);
    let shadow = naming_backend("shadow", Duration::from_millis(300));
    let mut proxy = always(ProxySpec::new(master.addr, &[shadow.addr])).start();
    let mut c = Client::connect(proxy.addr);
    c.send(&get("/last"));
    assert_eq!(c.get().status, 200);
    drop(c);
    let took = proxy.stop(ShutdownMode::Graceful);
    assert!(took >= Duration::from_millis(150), "stopped after {took:?}");
    let x = proxy.exchange();
    assert_eq!((x.target.as_str(), x.outcome("shadow1")), ("/last", Outcome::Complete));
}

#[test]
fn master_only_stays_the_default() {
    let master = naming_backend("master", Duration::ZERO);
    let shadow = naming_backend("shadow", Duration::ZERO);
    let proxy = ProxySpec::new(master.addr, &[shadow.addr]).start();
    let mut c = Client::connect(proxy.addr);
    c.send(&get("/once"));
    let r = c.get();
    assert_eq!(r.header("connection").as_deref(), Some("close"));
    assert!(c.is_closed());
    assert_eq!(proxy.exchange().outcome("shadow1"), Outcome::Complete);
    assert_eq!(shadow.requests()[0].header("connection").as_deref(), Some("close"));
}
