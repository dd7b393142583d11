//! Hostile and careless clients against the `kage` binary: a client that
//! stops reading a large download, heads dripped byte by byte, bodies that
//! never finish. Other clients must not notice, and the proxy must not spin.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use support::*;

/// Clock ticks per second of `/proc/PID/stat` (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: u64 = 100;

/// A master answering `/big` with `size` bytes and anything else with "ok".
fn big_file_master(size: usize) -> TestBackend {
    TestBackend::http(move |req| {
        if req.head_str().starts_with("GET /big ") {
            let mut out = format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n").into_bytes();
            out.resize(out.len() + size, b'k');
            out
        } else {
            ok_response("ok")
        }
    })
}

/// A client socket with a 4 KiB receive buffer, as a slow phone has.
fn small_window_client(addr: SocketAddr) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&addr.into()).unwrap();
    sock.into()
}

/// One GET on a fresh connection: the status and how long it took.
fn probe(addr: SocketAddr) -> (u16, Duration) {
    let t = Instant::now();
    let mut c = Client::connect(addr);
    c.conn.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    c.send(GET);
    let status = c.response(Default::default()).map_or(0, |r| r.status);
    (status, t.elapsed())
}

#[test]
fn a_client_that_stops_reading_a_large_download_stalls_nobody() {
    const SIZE: usize = 32 << 20;
    let master = big_file_master(SIZE);
    let kage = Kage::start(&["--master", &master.addr.to_string()]);
    let mut slow = small_window_client(kage.addr);
    slow.write_all(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    // Let the proxy fill the slow client's socket and its own buffers.
    thread::sleep(Duration::from_millis(300));

    let cpu_before = kage.cpu_ticks();
    let t = Instant::now();
    let mut worst = Duration::ZERO;
    for i in 0..20 {
        let (status, took) = probe(kage.addr);
        assert_eq!(status, 200, "probe {i} while a client stalls a download");
        worst = worst.max(took);
        thread::sleep(Duration::from_millis(100));
    }
    let wall = t.elapsed();
    let cpu = kage.cpu_ticks() - cpu_before;
    assert!(worst < Duration::from_secs(1), "slowest probe took {worst:?}");
    // Waiting for a full socket costs nothing; spinning on it costs a core.
    let busy = cpu as f64 / (wall.as_secs_f64() * TICKS_PER_SECOND as f64);
    assert!(
        busy < 0.25,
        "proxy CPU {busy:.2} of a core while a client stalls ({cpu} ticks in {wall:?})"
    );

    // The stalled client still gets every byte once it reads.
    slow.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut total = 0usize;
    let mut buf = vec![0u8; 256 * 1024];
    let mut head_seen = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let n = slow.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        let mut chunk = &buf[..n];
        if !head_seen {
            let end = memchr::memmem::find(chunk, b"\r\n\r\n").expect("the head comes in the first read") + 4;
            assert!(
                chunk.starts_with(b"HTTP/1.1 200"),
                "{:?}",
                String::from_utf8_lossy(&chunk[..end])
            );
            chunk = &chunk[end..];
            head_seen = true;
        }
        assert!(chunk.iter().all(|&b| b == b'k'), "body bytes are the master's");
        total += chunk.len();
        if total >= SIZE {
            break;
        }
    }
    assert_eq!(total, SIZE, "the stalled client got the whole body");
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Waits for the proxy to answer or close; the status (0: closed without
/// an answer) and when it came.
fn answer_within(c: &mut Client, wait: Duration) -> (u16, Instant) {
    c.conn.set_read_timeout(Some(wait)).unwrap();
    let status = c.response(Default::default()).map_or(0, |r| r.status);
    (status, Instant::now())
}

#[test]
fn a_head_dripped_byte_by_byte_gets_408_on_time() {
    let master = TestBackend::ok("x");
    let proxy = ProxySpec::new(master.addr, &[])
        .tweak(|c| c.client_timeout = ms(600))
        .start();
    let mut c = Client::connect(proxy.addr);
    let start = Instant::now();
    // One byte every 50 ms, never the end of the head: each byte is
    // progress, and still the whole head has 600 ms.
    let mut dripper = c.conn.try_clone().unwrap();
    let drip = thread::spawn(move || {
        for b in b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: "
            .iter()
            .chain([b'a'; 200].iter())
        {
            if dripper.write_all(&[*b]).is_err() {
                return;
            }
            thread::sleep(ms(50));
        }
    });
    let (status, at) = answer_within(&mut c, Duration::from_secs(5));
    let took = at - start;
    assert_eq!(status, 408);
    assert!(took >= ms(550) && took < ms(1500), "408 after {took:?}");
    assert!(c.is_closed(), "closed after the 408");
    drip.join().unwrap();
    assert!(master.requests().is_empty(), "nothing was forwarded");
}

#[test]
fn an_idle_keep_alive_connection_closes_after_the_keepalive_timeout() {
    let master = TestBackend::ok("x");
    let proxy = ProxySpec::new(master.addr, &[])
        .tweak(|c| {
            c.keepalive_timeout = ms(400);
            c.client_timeout = Duration::from_secs(5);
        })
        .start();
    let mut c = Client::connect(proxy.addr);
    c.send(GET);
    assert_eq!(c.get().status, 200);
    // Idle for less than the timeout: still served.
    thread::sleep(ms(200));
    c.send(GET);
    assert_eq!(c.get().status, 200);
    let t = Instant::now();
    assert!(c.is_closed(), "an idle connection is closed");
    let took = t.elapsed();
    assert!(took >= ms(350) && took < ms(2000), "closed after {took:?}");
}

#[test]
fn a_head_after_a_keep_alive_idle_is_timed_from_its_first_byte() {
    let master = TestBackend::ok("x");
    let proxy = ProxySpec::new(master.addr, &[])
        .tweak(|c| {
            c.keepalive_timeout = Duration::from_secs(5);
            c.client_timeout = ms(400);
        })
        .start();
    let mut c = Client::connect(proxy.addr);
    c.send(GET);
    assert_eq!(c.get().status, 200);
    // Idle for longer than the head timeout: the idle is not the head's.
    thread::sleep(ms(700));
    c.send(GET);
    assert_eq!(c.get().status, 200, "the idle did not count against the next head");
    thread::sleep(ms(700));
    let start = Instant::now();
    c.send(b"GET / HTTP/1.1\r\nHo");
    let (status, at) = answer_within(&mut c, Duration::from_secs(5));
    let took = at - start;
    assert_eq!(status, 408);
    assert!(took >= ms(350) && took < ms(1500), "408 after {took:?}");
}

#[test]
fn a_request_body_that_stops_gets_408_after_the_idle_timeout() {
    // The master waits for the whole body before answering.
    let master = TestBackend::http(|_| ok_response("got it"));
    let proxy = ProxySpec::new(master.addr, &[])
        .tweak(|c| c.client_idle_timeout = ms(400))
        .start();
    let mut c = Client::connect(proxy.addr);
    let start = Instant::now();
    c.send(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789");
    let (status, at) = answer_within(&mut c, Duration::from_secs(5));
    let took = at - start;
    assert_eq!(status, 408);
    assert!(took >= ms(350) && took < ms(1500), "408 after {took:?}");
    assert!(c.is_closed());

    // A body that keeps moving, however slowly, is not cut.
    let mut c = Client::connect(proxy.addr);
    c.send(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 8\r\n\r\n");
    for b in b"12345678" {
        thread::sleep(ms(150));
        c.send(&[*b]);
    }
    let r = c.get();
    assert_eq!((r.status, r.body_str().as_str()), (200, "got it"));
}

#[test]
fn a_client_that_reads_nothing_of_its_response_is_cut_after_the_idle_timeout() {
    const SIZE: usize = 32 << 20;
    let master = big_file_master(SIZE);
    let proxy = ProxySpec::new(master.addr, &[])
        .tweak(|c| c.client_idle_timeout = ms(400))
        .start();
    let mut slow = small_window_client(proxy.addr);
    slow.write_all(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    thread::sleep(ms(1200));
    // What the socket holds is there to read, then the end: the proxy let
    // go instead of holding the master and its buffers for the client.
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut total = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match slow.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
    assert!(total < SIZE / 2, "{total} bytes arrived: the client was not cut");
}

/// A master for slowhttptest: `/big` streams `BIG` bytes, anything else is
/// answered "ok" once its request (body included) has arrived.
fn attack_master() -> TestBackend {
    const BIG: usize = 32 << 20;
    let block: std::sync::Arc<[u8]> = vec![b'k'; 1 << 20].into();
    TestBackend::start(move |conn, _| {
        let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
        let mut buf = Vec::new();
        while let Some(req) = read_request(conn, &mut buf) {
            let ok = if req.head_str().starts_with("GET /big ") {
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n");
                conn.write_all(head.as_bytes()).is_ok() && (0..BIG >> 20).all(|_| conn.write_all(&block).is_ok())
            } else {
                conn.write_all(&ok_response("ok")).is_ok()
            };
            if !ok {
                return;
            }
        }
    })
}

/// What one slowhttptest run left the other clients.
struct Siege {
    ok: usize,
    probes: usize,
    cpu_seconds: f64,
}

/// Runs slowhttptest with `args` (500 connections for 20 s) against a fresh
/// kage while a probe fetches a page every 250 ms on a fresh connection.
fn siege(mode: &str, args: &[&str], path: &str) -> Siege {
    const SECONDS: u64 = 20;
    // Our own sockets (the test master's) need descriptors too.
    kage::runtime::fds::raise_to_hard();
    let master = attack_master();
    let kage = Kage::start(&["--master", &master.addr.to_string()]);
    let url = format!("http://{}{path}", kage.addr);
    let seconds = SECONDS.to_string();
    let attack = std::process::Command::new("slowhttptest")
        .args(["-c", "500", "-r", "200", "-l", &seconds, "-p", "3", mode])
        .args(args)
        .args(["-u", &url])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("slowhttptest runs (apt-get install slowhttptest)");
    let attack = Reaped(attack);
    let cpu_before = kage.cpu_ticks();
    let start = Instant::now();
    let (mut ok, mut probes) = (0, 0);
    // The first seconds open the attack's connections; probe throughout.
    while start.elapsed() < Duration::from_secs(SECONDS) {
        let next = Instant::now() + ms(250);
        let (status, took) = probe(kage.addr);
        probes += 1;
        if status == 200 && took < Duration::from_secs(1) {
            ok += 1;
        }
        thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let cpu_seconds = (kage.cpu_ticks() - cpu_before) as f64 / TICKS_PER_SECOND as f64;
    drop(attack);
    let s = Siege {
        ok,
        probes,
        cpu_seconds,
    };
    eprintln!(
        "slowhttptest {mode}: {}/{} probes answered 200 within 1 s; kage CPU {:.2} s in {SECONDS} s",
        s.ok, s.probes, s.cpu_seconds
    );
    s
}

#[test]
fn slowhttptest_in_every_mode_leaves_other_clients_served() {
    let modes: [(&str, &[&str], &str); 3] = [
        ("-H", &["-t", "GET", "-i", "10", "-x", "24"], "/small"),
        (
            "-B",
            &[
                "-t",
                "POST",
                "-i",
                "10",
                "-x",
                "24",
                "-s",
                "1048576",
                "-f",
                "application/x-www-form-urlencoded",
            ],
            "/post",
        ),
        (
            "-X",
            &["-t", "GET", "-w", "512", "-y", "1024", "-n", "5", "-z", "32", "-k", "1"],
            "/big",
        ),
    ];
    for (mode, args, path) in modes {
        let s = siege(mode, args, path);
        assert!(s.probes >= 60, "{mode}: only {} probes in 20 s", s.probes);
        assert!(
            s.ok * 100 >= s.probes * 95,
            "{mode}: {} of {} probes answered 200 within 1 s",
            s.ok,
            s.probes
        );
        // Waiting on slow clients is cheap: far from a busy core.
        assert!(s.cpu_seconds < 10.0, "{mode}: kage used {:.1} s of CPU", s.cpu_seconds);
    }
}

#[test]
fn a_slow_request_body_is_the_clients_wait_not_the_masters() {
    // The master waits for the whole body; between two of the client's
    // bytes more than the backend timeout passes.
    let master = TestBackend::http(|req| ok_response(&format!("{} bytes", req.body.len())));
    let shadow = TestBackend::http(|req| ok_response(&format!("{} bytes", req.body.len())));
    let proxy = ProxySpec::new(master.addr, &[shadow.addr])
        .shadow_everything()
        .tweak(|c| {
            for b in &mut c.backends {
                b.timeout = ms(200);
            }
            c.client_idle_timeout = Duration::from_secs(5);
        })
        .start();
    let mut c = Client::connect(proxy.addr);
    c.send(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\n");
    for b in b"abcd" {
        thread::sleep(ms(350));
        c.send(&[*b]);
    }
    let r = c.get();
    assert_eq!((r.status, r.body_str().as_str()), (200, "4 bytes"));
    let x = proxy.exchange();
    assert_eq!(
        x.outcome("shadow1"),
        kage::proxy::Outcome::Complete,
        "the shadow waited for the client too"
    );
}

/// The head a backend received, its framing fields only, in order.
fn framing_fields(received: &Received) -> Vec<String> {
    received
        .head_str()
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.starts_with("content-length:") || l.starts_with("transfer-encoding:")
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn ambiguous_framing_reaches_the_master_and_shadow_in_one_canonical_form() {
    let master = TestBackend::ok("ok");
    let shadow = TestBackend::ok("ok");
    let proxy = ProxySpec::new(master.addr, &[shadow.addr]).shadow_everything().start();
    const CHUNKED: &[u8] = b"5\r\nhello\r\n0\r\n\r\n";
    let cases: [(&[u8], &str, &[u8]); 4] = [
        (
            b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 005\r\n\r\nhello",
            "Content-Length: 5",
            b"hello",
        ),
        (
            b"POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\nhello",
            "Content-Length: 5",
            b"hello",
        ),
        (
            b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: ,chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "Transfer-Encoding: chunked",
            CHUNKED,
        ),
        (
            b"POST /d HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, \r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "Transfer-Encoding: chunked",
            CHUNKED,
        ),
    ];
    for (request, want, body) in cases {
        let r = roundtrip(proxy.addr, request);
        assert_eq!((r.status, r.body_str().as_str()), (200, "ok"));
        let _ = proxy.exchange();
        for (name, backend) in [("master", &master), ("shadow", &shadow)] {
            let got = backend.requests().pop().expect("the backend got the request");
            assert_eq!(framing_fields(&got), [want], "{name} got {:?}", got.head_str());
            assert_eq!(got.body, body, "{name}: the body as sent");
        }
    }
    // Refused before anything is forwarded.
    let before = master.requests().len();
    for (request, status) in [
        (
            &b"POST /e HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            501,
        ),
        (
            b"POST /f HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
            400,
        ),
        (b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ] {
        assert_eq!(roundtrip(proxy.addr, request).status, status);
    }
    assert_eq!(master.requests().len(), before, "nothing refused was forwarded");
}

#[test]
fn a_master_that_never_answers_100_continue_is_the_masters_timeout() {
    // The master reads the head and says nothing: the client waits for 100.
    let master = TestBackend::start(|conn, _| {
        let mut buf = [0u8; 4096];
        let _ = conn.read(&mut buf);
        thread::sleep(Duration::from_secs(5));
    });
    let proxy = ProxySpec::new(master.addr, &[])
        .tweak(|c| {
            c.backends[0].timeout = ms(300);
            c.client_idle_timeout = Duration::from_secs(30);
        })
        .start();
    let mut c = Client::connect(proxy.addr);
    let start = Instant::now();
    c.send(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    let (status, at) = answer_within(&mut c, Duration::from_secs(5));
    let took = at - start;
    assert_eq!(status, 504, "the master did not answer in time");
    assert!(took >= ms(250) && took < ms(2000), "504 after {took:?}");
}
