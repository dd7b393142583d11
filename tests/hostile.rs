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
