//! Backend connections pooled across client connections, with real sockets:
//! reuse counted by the backend's accepts, stale connections, bounds and the
//! idle timeout.

mod support;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use support::*;

/// A client connection that makes one request and closes; the proxy then
/// ends its session, which pools the master connection.
fn one_request(addr: std::net::SocketAddr, request: &[u8]) -> Response {
    let r = roundtrip(addr, request);
    // Let the proxy see the client's end before the next client comes.
    thread::sleep(Duration::from_millis(100));
    r
}

/// Waits until `f` holds, for up to `QUICK`.
fn eventually(what: &str, f: impl Fn() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < QUICK, "never: {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// A keep-alive backend that counts the connections it has open.
fn counting_backend() -> (TestBackend, Arc<AtomicUsize>) {
    let open = Arc::new(AtomicUsize::new(0));
    let o = open.clone();
    let backend = TestBackend::start(move |conn, seen| {
        o.fetch_add(1, Ordering::SeqCst);
        let mut buf = Vec::new();
        while let Some(req) = read_request(conn, &mut buf) {
            seen.requests.lock().unwrap().push(req);
            if conn.write_all(&ok_response("pooled")).is_err() {
                break;
            }
        }
        o.fetch_sub(1, Ordering::SeqCst);
    });
    (backend, open)
}

#[test]
fn later_clients_reuse_the_master_connection() {
    let (master, _) = counting_backend();
    let proxy = ProxySpec::new(master.addr, &[]).start();
    for _ in 0..5 {
        let r = one_request(proxy.addr, GET);
        assert_eq!((r.status, r.body_str().as_str()), (200, "pooled"));
    }
    assert_eq!(
        master.seen.accepts(),
        1,
        "five client connections, one master connection"
    );
    assert_eq!(master.requests().len(), 5);
}

#[test]
fn a_pooled_connection_the_backend_closed_is_not_used() {
    // Answers one request per connection, then waits 100 ms for another and closes.
    let master = TestBackend::start(|conn, seen| {
        let mut buf = Vec::new();
        if let Some(req) = read_request(conn, &mut buf) {
            seen.requests.lock().unwrap().push(req);
            let _ = conn.write_all(&ok_response("fresh"));
        }
        let _ = conn.set_read_timeout(Some(Duration::from_millis(100)));
        let _ = read_request(conn, &mut buf);
    });
    let proxy = ProxySpec::new(master.addr, &[]).start();
    assert_eq!(one_request(proxy.addr, GET).status, 200);
    thread::sleep(Duration::from_millis(300));
    let r = one_request(proxy.addr, GET);
    assert_eq!((r.status, r.body_str().as_str()), (200, "fresh"));
    assert_eq!(master.seen.accepts(), 2);
}

/// Answers the first request of each connection; a connection's second
/// request makes it close without an answer (a stale keep-alive that still
/// looked alive).
fn one_answer_per_connection() -> TestBackend {
    TestBackend::start(|conn, seen| {
        let mut buf = Vec::new();
        if let Some(req) = read_request(conn, &mut buf) {
            seen.requests.lock().unwrap().push(req);
            let _ = conn.write_all(&ok_response("first"));
        }
        let _ = read_request(conn, &mut buf);
    })
}

#[test]
fn a_stale_pooled_connection_is_retried_once_for_an_idempotent_request() {
    let master = one_answer_per_connection();
    let proxy = ProxySpec::new(master.addr, &[]).start();
    assert_eq!(one_request(proxy.addr, GET).status, 200);
    let r = one_request(proxy.addr, GET);
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (200, "first"),
        "retried on a fresh connection"
    );
    assert_eq!(master.seen.accepts(), 2);
}

#[test]
fn a_stale_pooled_connection_is_not_retried_for_a_post() {
    let master = one_answer_per_connection();
    let proxy = ProxySpec::new(master.addr, &[]).start();
    assert_eq!(one_request(proxy.addr, GET).status, 200);
    let post = b"POST /order HTTP/1.1\r\nHost: test\r\nContent-Length: 2\r\n\r\nhi";
    let r = one_request(proxy.addr, post);
    assert_eq!(r.status, 502, "a POST may have had effects: never sent twice");
    assert_eq!(master.seen.accepts(), 1);
}

#[test]
fn the_pool_keeps_at_most_its_cap_and_drops_idle_connections_in_time() {
    let (master, open) = counting_backend();
    let proxy = ProxySpec::new(master.addr, &[])
        .tweak(|cfg| {
            cfg.pool_idle_per_backend = 2;
            cfg.pool_idle_timeout = Duration::from_millis(500);
        })
        .start();
    // Five clients at once: five master connections.
    let mut clients: Vec<Client> = (0..5).map(|_| Client::connect(proxy.addr)).collect();
    for c in &mut clients {
        c.send(GET);
    }
    for c in &mut clients {
        assert_eq!(c.get().status, 200);
    }
    eventually("five master connections open", || open.load(Ordering::SeqCst) == 5);
    drop(clients);
    eventually("two kept, three closed", || open.load(Ordering::SeqCst) == 2);
    let t = Instant::now();
    eventually("the idle ones closed after the idle timeout", || {
        open.load(Ordering::SeqCst) == 0
    });
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "closed after {:?}",
        t.elapsed()
    );
}

#[test]
fn shadowed_requests_do_not_leave_connections_in_the_pool() {
    let (master, open) = counting_backend();
    let shadow = TestBackend::ok("shadow");
    let proxy = ProxySpec::new(master.addr, &[shadow.addr]).shadow_everything().start();
    let r = one_request(proxy.addr, GET);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection").as_deref(), Some("close"));
    eventually("the master connection closed (Kage's rule)", || {
        open.load(Ordering::SeqCst) == 0
    });
}

#[test]
fn a_stale_connection_kept_by_the_session_is_retried_too() {
    let master = one_answer_per_connection();
    let proxy = ProxySpec::new(master.addr, &[]).start();
    let mut c = Client::connect(proxy.addr);
    for _ in 0..3 {
        c.send(GET);
        let r = c.get();
        assert_eq!((r.status, r.body_str().as_str()), (200, "first"));
    }
    assert_eq!(
        master.seen.accepts(),
        3,
        "each later request found the connection stale"
    );
}
