//! The shadow proxy with real sockets on 127.0.0.1 and backends the tests
//! start themselves: what clients get, what backends receive, what the hooks
//! are told.

mod support;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::thread;
use std::time::{Duration, Instant};

use kage::http::{Method, RequestContext};
use kage::proxy::{Outcome, Role, Selection};
use kage::runtime::server::ShutdownMode;
use support::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn master_only_requests_keep_the_connection_and_reuse_the_master() {
    let master = TestBackend::ok("hello");
    let proxy = ProxySpec::new(master.addr, &[]).start();
    let mut c = Client::connect(proxy.addr);
    for _ in 0..3 {
        c.send(GET);
        let r = c.get();
        assert_eq!((r.status, r.body_str().as_str()), (200, "hello"));
        assert_eq!(r.header("connection").as_deref(), Some("keep-alive"));
    }
    assert_eq!(master.seen.accepts(), 1, "one master connection for three requests");
    assert_eq!(
        proxy.selections.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "select_backends for every request"
    );
    let sent = master.requests();
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[0].header("connection").as_deref(), Some("keep-alive"));
}

#[test]
fn shadowed_request_goes_to_both_and_closes() {
    let master = TestBackend::ok("from master");
    let shadow = TestBackend::ok("from shadow");
    let proxy = ProxySpec::new(master.addr, &[shadow.addr]).start();
    let mut c = Client::connect(proxy.addr);
    c.send(GET);
    let r = c.get();
    assert_eq!((r.status, r.body_str().as_str()), (200, "from master"));
    assert_eq!(r.header("connection").as_deref(), Some("close"));
    assert!(c.is_closed(), "a shadowed request ends the client connection");
    let x = proxy.exchange();
    assert_eq!(x.target, "/hello");
    assert_eq!(x.outcome("master"), Outcome::Complete);
    assert_eq!(x.outcome("shadow1"), Outcome::Complete);
    assert_eq!(x.reports[1].3, b"from shadow");
    for backend in [&master, &shadow] {
        let got = backend.requests();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].header("connection").as_deref(), Some("close"));
        assert!(got[0].head_str().starts_with("GET /hello HTTP/1.1\r\n"));
    }
}

#[test]
fn unsafe_methods_are_not_shadowed_by_default() {
    let master = TestBackend::ok("m");
    let shadow = TestBackend::ok("s");
    let proxy = ProxySpec::new(master.addr, &[shadow.addr]).start();
    let r = roundtrip(
        proxy.addr,
        b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc",
    );
    assert_eq!(r.status, 200);
    assert_eq!(master.requests()[0].body, b"abc");
    thread::sleep(ms(100));
    assert_eq!(shadow.seen.accepts(), 0);
}

/// The client gets the master's answer quickly and intact whatever the shadow does.
fn shadow_misbehaves(shadow: TestBackend, expect: Outcome) {
    let master = TestBackend::ok("intact");
    let proxy = ProxySpec::new(master.addr, &[shadow.addr])
        .tweak(|c| c.backends[1].timeout = ms(300))
        .shadow_everything()
        .start();
    let t = Instant::now();
    let r = roundtrip(proxy.addr, GET);
    let took = t.elapsed();
    assert_eq!((r.status, r.body_str().as_str()), (200, "intact"));
    assert!(took < ms(250), "the client waited {took:?} for a misbehaving shadow");
    let x = proxy.exchange();
    assert_eq!(x.outcome("master"), Outcome::Complete);
    assert_eq!(x.outcome("shadow1"), expect);
}

#[test]
fn shadow_refused() {
    let shadow = TestBackend {
        addr: closed_port(),
        seen: Default::default(),
    };
    shadow_misbehaves(shadow, Outcome::Refused);
}

#[test]
fn shadow_never_answers() {
    let shadow = TestBackend::start(|conn, _| {
        let mut buf = [0u8; 1024];
        let _ = conn.read(&mut buf);
        thread::sleep(Duration::from_secs(3));
    });
    shadow_misbehaves(shadow, Outcome::Timeout);
}

#[test]
fn shadow_answers_slowly() {
    let shadow = TestBackend::http(|_| {
        thread::sleep(ms(200));
        ok_response("late")
    });
    let master = TestBackend::ok("intact");
    let proxy = ProxySpec::new(master.addr, &[shadow.addr]).start();
    let t = Instant::now();
    let r = roundtrip(proxy.addr, GET);
    assert_eq!(r.body_str(), "intact");
    assert!(
        t.elapsed() < ms(150),
        "client waited {:?} for a slow shadow",
        t.elapsed()
    );
    let x = proxy.exchange();
    assert_eq!(x.outcome("shadow1"), Outcome::Complete);
    assert_eq!(x.reports[1].3, b"late");
}

#[test]
fn shadow_answers_garbage() {
    let shadow = TestBackend::http(|_| b"SPDY/3 hello\r\n\r\n".to_vec());
    shadow_misbehaves(shadow, Outcome::Invalid);
}

#[test]
fn shadow_resets() {
    // Closing with unread request bytes in the socket makes the kernel send RST.
    let shadow = TestBackend::start(|conn, _| {
        thread::sleep(ms(50));
        let _ = conn.shutdown(Shutdown::Both);
    });
    let master = TestBackend::ok("intact");
    let proxy = ProxySpec::new(master.addr, &[shadow.addr]).shadow_everything().start();
    let r = roundtrip(proxy.addr, GET);
    assert_eq!(r.body_str(), "intact");
    let x = proxy.exchange();
    assert!(
        matches!(x.outcome("shadow1"), Outcome::Reset | Outcome::Truncated),
        "{:?}",
        x.outcome("shadow1")
    );
}

#[test]
fn shadow_that_never_reads_a_large_body_is_cut_too_slow() {
    let shadow = TestBackend::start(|_, _| thread::sleep(Duration::from_secs(5)));
    let master = TestBackend::http(|req| ok_response(&req.body.len().to_string()));
    let proxy = ProxySpec::new(master.addr, &[shadow.addr])
        .tweak(|c| c.shadow_body_window = 256 * 1024)
        .shadow_everything()
        .start();
    // Past what the kernel's socket buffers on both sides absorb (about
    // 10 MiB on loopback) and the window.
    let body = vec![b'x'; 32 << 20];
    let mut c = Client::connect(proxy.addr);
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let t = Instant::now();
    c.send(head.as_bytes());
    c.send(&body);
    let r = c.get();
    assert_eq!(
        (r.status, r.body_str()),
        (200, (32 << 20).to_string()),
        "the master got the whole body"
    );
    assert!(t.elapsed() < Duration::from_secs(3));
    assert_eq!(proxy.exchange().outcome("shadow1"), Outcome::TooSlow);
}

#[test]
fn master_refused_is_502() {
    let proxy = ProxySpec::new(closed_port(), &[]).start();
    let mut c = Client::connect(proxy.addr);
    c.send(GET);
    let r = c.get();
    assert_eq!(r.status, 502);
    assert_eq!(r.header("connection").as_deref(), Some("close"));
    assert!(c.is_closed());
}

#[test]
fn master_silent_is_504() {
    let master = TestBackend::start(|conn, _| {
        let mut buf = [0u8; 1024];
        let _ = conn.read(&mut buf);
        thread::sleep(Duration::from_secs(3));
    });
    let proxy = ProxySpec::new(master.addr, &[])
        .tweak(|c| c.backends[0].timeout = ms(200))
        .start();
    let t = Instant::now();
    let r = roundtrip(proxy.addr, GET);
    assert_eq!(r.status, 504);
    assert!(
        t.elapsed() >= ms(190) && t.elapsed() < Duration::from_secs(2),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn master_garbage_is_502() {
    let master = TestBackend::http(|_| b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".to_vec());
    let proxy = ProxySpec::new(master.addr, &[]).start();
    assert_eq!(roundtrip(proxy.addr, GET).status, 502);
}

#[test]
fn master_closing_mid_body_closes_the_client_without_padding() {
    let master = TestBackend::start(|conn, _| {
        let mut buf = [0u8; 1024];
        let _ = conn.read(&mut buf);
        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this");
    });
    let proxy = ProxySpec::new(master.addr, &[]).start();
    let mut c = Client::connect(proxy.addr);
    c.send(GET);
    let r = c.get();
    assert_eq!(r.status, 200);
    assert!(
        r.head.ends_with("[TRUNCATED]"),
        "the client sees the connection end early"
    );
    assert_eq!(r.body_str(), "only this");
}

#[test]
fn bad_requests_are_answered_and_never_forwarded() {
    let master = TestBackend::ok("x");
    let proxy = ProxySpec::new(master.addr, &[]).start();
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9000));
    let many_fields = format!("GET / HTTP/1.1\r\nHost: t\r\n{}\r\n", "X-A: b\r\n".repeat(101));
    let cases: Vec<(&[u8], u16)> = vec![
        (
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
        (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: br\r\n\r\n", 501),
        (long_target.as_bytes(), 414),
        (many_fields.as_bytes(), 431),
        (b"GET / HTTP/1.1\nHost: t\n\n", 400),
    ];
    for (raw, status) in cases {
        let mut c = Client::connect(proxy.addr);
        c.send(raw);
        let r = c.get();
        assert_eq!(
            r.status,
            status,
            "{:?}",
            String::from_utf8_lossy(&raw[..raw.len().min(60)])
        );
        assert!(c.is_closed());
    }
    assert_eq!(master.seen.accepts(), 0, "nothing of a bad request reaches a backend");
}

#[test]
fn bad_chunked_body_is_400() {
    let master = TestBackend::start(|_, _| thread::sleep(Duration::from_secs(2)));
    let proxy = ProxySpec::new(master.addr, &[]).start();
    let mut c = Client::connect(proxy.addr);
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
    assert_eq!(c.get().status, 400);
}

#[test]
fn slow_client_head_gets_408_and_idle_connections_close() {
    let master = TestBackend::ok("x");
    let proxy = ProxySpec::new(master.addr, &[])
        .tweak(|c| c.client_timeout = ms(200))
        .start();
    let mut c = Client::connect(proxy.addr);
    c.send(b"GET / HTTP/1.1\r\nHo");
    let t = Instant::now();
    assert_eq!(c.get().status, 408);
    assert!(t.elapsed() >= ms(150), "{:?}", t.elapsed());
    let mut idle = Client::connect(proxy.addr);
    let t = Instant::now();
    assert!(idle.is_closed());
    assert!(t.elapsed() >= ms(150) && t.elapsed() < Duration::from_secs(3));
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let master = TestBackend::http(|req| {
        let target = req.head_str().split(' ').nth(1).unwrap_or("").to_string();
        ok_response(&target)
    });
    let proxy = ProxySpec::new(master.addr, &[]).start();
    let mut c = Client::connect(proxy.addr);
    c.send(b"GET /1 HTTP/1.1\r\nHost: t\r\n\r\nGET /2 HTTP/1.1\r\nHost: t\r\n\r\nGET /3 HTTP/1.1\r\nHost: t\r\n\r\n");
    for want in ["/1", "/2", "/3"] {
        assert_eq!(c.get().body_str(), want);
    }
}

#[test]
fn chunked_request_body_reaches_master_and_shadow_unchanged() {
    let echo = |req: &Received| ok_response(&String::from_utf8_lossy(&req.body));
    let master = TestBackend::http(echo);
    let shadow = TestBackend::http(echo);
    let proxy = ProxySpec::new(master.addr, &[shadow.addr]).shadow_everything().start();
    let wire = "5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nX-T: 1\r\n\r\n";
    let r = roundtrip(
        proxy.addr,
        format!("POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{wire}").as_bytes(),
    );
    assert_eq!(r.body_str(), wire);
    proxy.exchange();
    assert_eq!(shadow.requests()[0].body, wire.as_bytes());
}

/// A backend that answers 100 Continue to a head, then reads a 4-byte body.
fn continue_backend() -> TestBackend {
    TestBackend::start(|conn, seen| {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut chunk).unwrap_or(0);
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").unwrap();
        // A proxy may send the body before it sees the 100: it may have
        // come with the head.
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let mut body = buf.split_off(end);
        while body.len() < 4 {
            let n = conn.read(&mut chunk).unwrap_or(0);
            if n == 0 {
                return;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        seen.requests.lock().unwrap().push(Received { head: buf, body });
        conn.write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
            .unwrap();
    })
}

/// A PUT with Expect: 100-continue: the 100, then the body, then 201.
fn put_with_expect(addr: std::net::SocketAddr) {
    let mut c = Client::connect(addr);
    c.send(b"PUT /f HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
    let ctx = RequestContext {
        method: Method::Put,
        upgrade: false,
    };
    assert_eq!(c.response(ctx).unwrap().status, 100);
    c.send(b"data");
    let r = c.response(ctx).unwrap();
    assert_eq!((r.status, r.body_str().as_str()), (201, "ok"));
}

#[test]
fn expect_continue() {
    let master = continue_backend();
    let proxy = ProxySpec::new(master.addr, &[]).start();
    put_with_expect(proxy.addr);
    assert_eq!(master.requests()[0].body, b"data");
}

#[test]
fn expect_continue_with_a_shadow_streams_the_body_to_both() {
    let (master, shadow) = (continue_backend(), continue_backend());
    let proxy = ProxySpec::new(master.addr, &[shadow.addr]).shadow_everything().start();
    put_with_expect(proxy.addr);
    assert_eq!(proxy.exchange().outcome("shadow1"), Outcome::Complete);
    assert_eq!(master.requests()[0].body, b"data");
    assert_eq!(shadow.requests()[0].body, b"data");
}

#[test]
fn upgrade_becomes_a_tunnel_with_the_master() {
    let master = TestBackend::start(|conn, _| {
        let mut buf = [0u8; 2048];
        let _ = conn.read(&mut buf);
        conn.write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
            .unwrap();
        let mut chunk = [0u8; 1024];
        while let Ok(n) = conn.read(&mut chunk) {
            if n == 0 || conn.write_all(&chunk[..n]).is_err() {
                break;
            }
        }
    });
    let shadow = TestBackend::ok("never");
    let proxy = ProxySpec::new(master.addr, &[shadow.addr]).shadow_everything().start();
    let mut c = Client::connect(proxy.addr);
    c.send(b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n");
    let r = c
        .response(RequestContext {
            method: Method::Get,
            upgrade: true,
        })
        .unwrap();
    assert_eq!(r.status, 101);
    assert_eq!(r.header("upgrade").as_deref(), Some("echo"));
    c.send(b"ping-pong");
    let mut got = [0u8; 9];
    c.conn.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping-pong");
    c.shutdown_write();
    assert!(c.is_closed(), "half-close travels through the tunnel and back");
    assert_eq!(shadow.seen.accepts(), 0, "upgrades are the master's alone");
}

#[test]
fn munging_is_per_backend() {
    let master = TestBackend::ok("m");
    let shadow = TestBackend::ok("s");
    let proxy = ProxySpec::new(master.addr, &[shadow.addr])
        .munge(|backend, rw| {
            if backend.role == Role::Shadow {
                rw.set("X-Kage-Shadow", "1").unwrap();
            }
        })
        .start();
    roundtrip(proxy.addr, GET);
    proxy.exchange();
    assert_eq!(master.requests()[0].header("x-kage-shadow"), None);
    assert_eq!(shadow.requests()[0].header("x-kage-shadow").as_deref(), Some("1"));
}

#[test]
fn without_the_master_the_first_complete_answer_wins() {
    let slow = TestBackend::http(|_| {
        thread::sleep(ms(150));
        ok_response("slow")
    });
    let fast = TestBackend::ok("fast");
    let master = TestBackend::ok("master");
    let proxy = ProxySpec::new(master.addr, &[slow.addr, fast.addr])
        .select(|_, _| Selection::only(1).with(2))
        .start();
    let r = roundtrip(proxy.addr, GET);
    assert_eq!(r.body_str(), "fast");
    assert_eq!(master.seen.accepts(), 0);
    let x = proxy.exchange();
    assert_eq!(x.outcome("shadow1"), Outcome::Complete);
}

#[test]
fn large_response_streams_through() {
    let big: &'static str = Box::leak("0123456789abcdef".repeat(1 << 16).into_boxed_str());
    let master = TestBackend::ok(big);
    let proxy = ProxySpec::new(master.addr, &[]).start();
    let r = roundtrip(proxy.addr, GET);
    assert_eq!(r.body.len(), big.len());
    assert!(r.body == big.as_bytes());
}

#[test]
fn graceful_shutdown_finishes_in_flight_exchanges() {
    let master = TestBackend::http(|_| {
        thread::sleep(ms(300));
        ok_response("done")
    });
    let mut proxy = ProxySpec::new(master.addr, &[]).start();
    let mut c = Client::connect(proxy.addr);
    c.send(GET);
    thread::sleep(ms(50));
    let addr = proxy.addr;
    let waiter = thread::spawn(move || c.get());
    let took = proxy.stop(ShutdownMode::Graceful);
    let r = waiter.join().unwrap();
    assert_eq!((r.status, r.body_str().as_str()), (200, "done"));
    assert_eq!(r.header("connection").as_deref(), Some("close"));
    assert!(took >= ms(200), "stopped before the exchange finished: {took:?}");
    assert!(std::net::TcpStream::connect(addr).is_err(), "no longer accepting");
}

#[test]
fn client_half_close_still_gets_the_response() {
    let master = TestBackend::ok("still here");
    let proxy = ProxySpec::new(master.addr, &[]).start();
    let mut c = Client::connect(proxy.addr);
    c.send(GET);
    c.shutdown_write();
    let r = c.get();
    assert_eq!(r.body_str(), "still here");
    assert!(
        c.is_closed(),
        "closed after the response once the client said it is done"
    );
}

#[test]
fn connect_becomes_a_tunnel_with_the_master() {
    let master = TestBackend::start(|conn, _| {
        let mut buf = [0u8; 2048];
        let _ = conn.read(&mut buf);
        conn.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n").unwrap();
        let mut chunk = [0u8; 1024];
        while let Ok(n) = conn.read(&mut chunk) {
            if n == 0 || conn.write_all(&chunk[..n]).is_err() {
                break;
            }
        }
    });
    let proxy = ProxySpec::new(master.addr, &[]).start();
    let mut c = Client::connect(proxy.addr);
    c.send(b"CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\n");
    let r = c
        .response(RequestContext {
            method: Method::Connect,
            upgrade: false,
        })
        .unwrap();
    assert_eq!(r.status, 200);
    c.send(b"\x00\x01binary\xff");
    let mut got = [0u8; 9];
    c.conn.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"\x00\x01binary\xff");
}

#[test]
fn max_connections_makes_new_clients_wait() {
    let master = TestBackend::ok("ok");
    let proxy = ProxySpec::new(master.addr, &[])
        .tweak(|c| c.max_connections = 1)
        .start();
    let mut first = Client::connect(proxy.addr);
    first.send(GET);
    assert_eq!(first.get().status, 200);
    // The first connection is still open (keep-alive): the second waits.
    let mut second = Client::connect(proxy.addr);
    second.send(GET);
    second.conn.set_read_timeout(Some(ms(300))).unwrap();
    let mut b = [0u8; 1];
    assert!(second.conn.read(&mut b).is_err(), "served beyond max_connections");
    drop(first);
    second.conn.set_read_timeout(Some(QUICK)).unwrap();
    assert_eq!(second.get().status, 200, "served once a slot is free");
}

#[test]
fn a_master_still_taking_the_upload_is_not_idle() {
    // 48 MiB read at about 25 MiB/s: about 2 s of upload, far more than the
    // kernel buffers hold, against a 1 s idle timeout that only write
    // progress keeps from firing.
    const SIZE: usize = 48 << 20;
    let master = TestBackend::start(|conn, _| {
        let mut buf = vec![0u8; 256 * 1024];
        let mut head = Vec::new();
        let mut body = 0usize;
        while body < SIZE {
            let n = conn.read(&mut buf).unwrap_or(0);
            if n == 0 {
                return;
            }
            match head.windows(4).position(|w| w == b"\r\n\r\n") {
                Some(_) => body += n,
                None => {
                    head.extend_from_slice(&buf[..n]);
                    if let Some(at) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                        body = head.len() - at - 4;
                    }
                }
            }
            thread::sleep(ms(10));
        }
        let _ = conn.write_all(&ok_response("got it"));
    });
    let proxy = ProxySpec::new(master.addr, &[])
        .tweak(|c| c.backends[0].timeout = ms(1000))
        .start();
    let mut c = Client::connect(proxy.addr);
    let head = format!("PUT /big HTTP/1.1\r\nHost: t\r\nContent-Length: {SIZE}\r\n\r\n");
    c.send(head.as_bytes());
    let writer = {
        let mut conn = c.conn.try_clone().unwrap();
        thread::spawn(move || conn.write_all(&vec![b'u'; SIZE]))
    };
    let t = Instant::now();
    let r = c.get();
    writer.join().unwrap().unwrap();
    assert_eq!((r.status, r.body_str().as_str()), (200, "got it"));
    assert!(
        t.elapsed() > Duration::from_millis(1200),
        "the upload was meant to outlast the timeout"
    );
}

#[test]
fn close_delimited_response_ends_at_the_backend_fin() {
    // Head, body and FIN leave together: the proxy must still see the EOF.
    for _ in 0..20 {
        let master = TestBackend::start(|conn, _| {
            let mut buf = [0u8; 2048];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end");
            let _ = conn.shutdown(Shutdown::Both);
        });
        let proxy = ProxySpec::new(master.addr, &[]).start();
        let mut c = Client::connect(proxy.addr);
        c.send(GET);
        let t = Instant::now();
        let r = c.get();
        assert_eq!(r.body_str(), "until the end");
        assert!(
            t.elapsed() < ms(500),
            "the response waited {:?} for an EOF already sent",
            t.elapsed()
        );
        assert_eq!(r.header("connection").as_deref(), Some("close"));
    }
}

#[test]
fn a_close_delimited_body_reaches_a_small_window_client_whole() {
    // The master sends 64 MiB and closes; the client has a 4 KiB receive
    // buffer. Every byte must arrive after the master connection is gone.
    // (Meant to catch buffers released while bytes are still owed; Linux
    // signals writability late enough that the proxy always flushes the
    // tail in the same pass, so it does not fail without that fix.)
    const SIZE: usize = 64 << 20;
    let master = TestBackend::start(|conn, _| {
        let mut buf = [0u8; 2048];
        let _ = conn.read(&mut buf);
        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
        let _ = conn.write_all(&vec![b'z'; SIZE]);
    });
    let proxy = ProxySpec::new(master.addr, &[]).start();
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&proxy.addr.into()).unwrap();
    let mut conn: std::net::TcpStream = sock.into();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    conn.write_all(GET).unwrap();
    let mut got = 0;
    let mut buf = vec![0u8; 4096];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => panic!("read failed after {got} bytes: {e}"),
        }
    }
    let head = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".len();
    assert_eq!(got, head + SIZE, "every byte of the close-delimited body arrived");
}

#[test]
fn bodiless_responses_keep_the_connection_in_step() {
    // HEAD gets a Content-Length but no body; 204 and 304 have none either.
    // A proxy that waited for those bytes would hang or shift every later
    // response on the connection by one.
    let master = TestBackend::http(|req| {
        let head = req.head_str();
        if head.starts_with("HEAD ") {
            b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n".to_vec()
        } else if head.starts_with("GET /204 ") {
            b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()
        } else if head.starts_with("GET /304 ") {
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\nETag: \"e\"\r\n\r\n".to_vec()
        } else {
            ok_response("after")
        }
    });
    let proxy = ProxySpec::new(master.addr, &[]).start();
    let mut c = Client::connect(proxy.addr);
    c.send(b"HEAD /h HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c
        .response(RequestContext {
            method: Method::Head,
            upgrade: false,
        })
        .unwrap();
    assert_eq!((r.status, r.header("content-length").as_deref()), (200, Some("1000")));
    for path in ["/204", "/304"] {
        c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let r = c.get();
        assert_eq!(r.status, path[1..].parse::<u16>().unwrap());
        assert!(r.body.is_empty());
    }
    c.send(GET);
    assert_eq!(c.get().body_str(), "after", "the connection is still in step");
    assert_eq!(master.seen.accepts(), 1);
}

#[test]
fn the_client_address_is_forwarded_to_every_backend_when_asked() {
    let master = TestBackend::ok("m");
    let shadow = TestBackend::ok("s");
    let proxy = ProxySpec::new(master.addr, &[shadow.addr])
        .tweak(|cfg| cfg.forward_client_ip = true)
        .start();
    let r = roundtrip(
        proxy.addr,
        b"GET /ip HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    proxy.exchange();
    for b in [&master, &shadow] {
        let req = &b.requests()[0];
        assert_eq!(req.header("x-forwarded-for").as_deref(), Some("203.0.113.9, 127.0.0.1"));
        assert_eq!(req.header("forwarded").as_deref(), Some("for=127.0.0.1;proto=http"));
    }
}

#[test]
fn a_tunnel_carries_bulk_streams_both_ways_with_bytes_sent_early() {
    const SIZE: usize = 8 << 20;
    // The master sends bytes right after its 101 (in the same write), then
    // echoes everything until the client's end, then ends too.
    let master = TestBackend::start(|conn, _| {
        let mut buf = [0u8; 4096];
        let mut head = Vec::new();
        while memchr::memmem::find(&head, b"\r\n\r\n").is_none() {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        conn.write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nhello")
            .unwrap();
        // Tunnel bytes that came with the head are echoed first.
        let end = memchr::memmem::find(&head, b"\r\n\r\n").unwrap() + 4;
        if conn.write_all(&head[end..]).is_err() {
            return;
        }
        let mut chunk = vec![0u8; 64 * 1024];
        while let Ok(n) = conn.read(&mut chunk) {
            if n == 0 || conn.write_all(&chunk[..n]).is_err() {
                break;
            }
        }
    });
    let proxy = ProxySpec::new(master.addr, &[]).start();
    let mut conn = std::net::TcpStream::connect(proxy.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // Bytes for the tunnel in the same write as the request head.
    conn.write_all(b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nearly")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = memchr::memmem::find(&got, b"\r\n\r\n") {
            break at + 4;
        }
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the 101");
        got.extend_from_slice(&buf[..n]);
    };
    assert!(got.starts_with(b"HTTP/1.1 101 "), "{:?}", String::from_utf8_lossy(&got));
    let mut echoed = got.split_off(head_end);
    let mut writer = conn.try_clone().unwrap();
    let send = thread::spawn(move || {
        let block: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
        for _ in 0..SIZE / block.len() {
            writer.write_all(&block).unwrap();
        }
        writer.shutdown(Shutdown::Write).unwrap();
    });
    conn.read_to_end(&mut echoed).unwrap();
    send.join().unwrap();
    assert!(
        echoed.starts_with(b"hello"),
        "bytes the master sent with its 101 arrive first"
    );
    assert_eq!(&echoed[5..10], b"early", "then the bytes sent with the head, echoed");
    let echoed = &echoed[10..];
    assert_eq!(echoed.len(), SIZE, "every byte came back, then the end");
    assert!(
        echoed
            .iter()
            .enumerate()
            .all(|(i, &b)| b == ((i % (64 * 1024)) % 251) as u8),
        "in order"
    );
}

#[test]
fn request_done_is_told_once_per_request_however_it_ends() {
    use kage::proxy::KeepAlive;
    let slow_shadow = TestBackend::http(|_| {
        thread::sleep(Duration::from_millis(300));
        ok_response("late")
    });
    let master = TestBackend::ok("abc");
    let proxy = ProxySpec::new(master.addr, &[slow_shadow.addr])
        .tweak(|c| c.keep_alive = KeepAlive::Always)
        .start();
    // Kept alive, shadows late: each request's end comes before its verdicts.
    let mut c = Client::connect(proxy.addr);
    for i in 1..=3u64 {
        c.send(GET);
        assert_eq!(c.get().status, 200);
        let s = proxy.served();
        assert_eq!(
            s,
            ServedSeen {
                id: i,
                target: Some("/hello".into()),
                status: Some(200),
                body_bytes: 3,
                complete: true,
                shadowed: true
            }
        );
    }
    for _ in 0..3 {
        proxy.exchange();
    }
    assert!(proxy.served.try_recv().is_err(), "once per request");

    // The master refuses: the client's 502 is what is told.
    let dead = ProxySpec::new(closed_port(), &[]).start();
    assert_eq!(roundtrip(dead.addr, GET).status, 502);
    let s = dead.served();
    assert_eq!((s.status, s.complete, s.shadowed), (Some(502), true, false));

    // The master dies halfway through its body: what was sent, not complete.
    let cut = TestBackend::start(|conn, _| {
        let mut buf = Vec::new();
        read_request(conn, &mut buf);
        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf");
    });
    let p = ProxySpec::new(cut.addr, &[]).start();
    let mut c = Client::connect(p.addr);
    c.send(GET);
    let s = p.served();
    assert_eq!((s.status, s.body_bytes, s.complete), (Some(200), 4, false));

    // A client that stops reading a large answer is cut: what reached it.
    const BIG: usize = 32 << 20;
    let big = TestBackend::http(|_| {
        let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n").into_bytes();
        r.resize(r.len() + BIG, b'x');
        r
    });
    let p = ProxySpec::new(big.addr, &[])
        .tweak(|c| c.client_idle_timeout = Duration::from_millis(300))
        .start();
    let mut c = Client::connect(p.addr);
    c.send(GET);
    let s = p.served();
    assert_eq!((s.status, s.complete), (Some(200), false));
    assert!(s.body_bytes < BIG as u64, "{s:?}");
    drop(c);

    // A head the proxy rejects: no request, its 400.
    assert_eq!(roundtrip(p.addr, b"BAD\r\n\r\n").status, 400);
    let s = p.served();
    assert_eq!((s.id, s.target, s.status, s.complete), (0, None, Some(400), true));
}
