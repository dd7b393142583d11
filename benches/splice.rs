//! 1 GiB through the router against 1 GiB over a direct connection, in the
//! same run, both directions, on loopback. Reports throughput, the ratio to
//! direct, and the relay thread's CPU seconds per GiB.
//!
//! `cargo bench --bench splice` (or `-- --gib N` for another size).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use kage::route::{Decision, Relay, Router, Settings};
use kage::runtime::server::{Server, ShutdownMode};

const GIB: u64 = 1 << 30;
/// Bytes per read or write of the client and the backend.
const IO_CHUNK: usize = 256 * 1024;
/// Runs of each case; the table shows the median.
const ROUNDS: usize = 5;

#[derive(Clone, Copy, PartialEq)]
enum Direction {
    /// Client to backend.
    Up,
    /// Backend to client.
    Down,
}

/// Routes everything to one address, at once.
struct To(SocketAddr);

impl Router for To {
    fn route(&mut self, _: &[u8], _: SocketAddr) -> Decision {
        Decision::Remote(vec![self.0])
    }
}

/// A backend for one connection: it sinks `total` bytes (Up) or sends them
/// (Down), then closes.
fn backend(dir: Direction, total: u64) -> (SocketAddr, thread::JoinHandle<u64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let t = thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        move_bytes(&mut conn, dir == Direction::Down, total)
    });
    (addr, t)
}

/// Writes `total` bytes then shuts down, or reads until the end.
fn move_bytes(conn: &mut TcpStream, send: bool, total: u64) -> u64 {
    let mut buf = vec![0x5a_u8; IO_CHUNK];
    let mut moved = 0u64;
    if send {
        while moved < total {
            let n = (total - moved).min(IO_CHUNK as u64) as usize;
            conn.write_all(&buf[..n]).unwrap();
            moved += n as u64;
        }
        conn.shutdown(Shutdown::Write).unwrap();
        // Wait for the other side's end so that close does not reset.
        let _ = conn.read(&mut buf);
    } else {
        loop {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => moved += n as u64,
            }
        }
    }
    moved
}

/// One transfer through `via`; the seconds it took.
fn transfer(dir: Direction, total: u64, via: Option<SocketAddr>, backend_addr: SocketAddr) -> f64 {
    let mut conn = TcpStream::connect(via.unwrap_or(backend_addr)).unwrap();
    let start = Instant::now();
    let moved = move_bytes(&mut conn, dir == Direction::Up, total);
    assert_eq!(moved, total, "short transfer");
    drop(conn);
    start.elapsed().as_secs_f64()
}

/// The backend moved every byte.
fn check(dir: Direction, total: u64, backend: thread::JoinHandle<u64>) {
    let moved = backend.join().unwrap();
    if dir == Direction::Up {
        assert_eq!(moved, total, "the backend got a short transfer");
    }
}

/// User + system CPU seconds of the calling thread.
fn thread_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return 0.0;
    };
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 =
        f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0) + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    // USER_HZ is 100 on Linux.
    ticks as f64 / 100.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let gib = args
        .iter()
        .position(|a| a == "--gib")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(1.0);
    let total = (gib * GIB as f64) as u64;
    println!("splice: {gib} GiB per transfer, median of {ROUNDS}, loopback");
    println!(
        "{:<6} {:>12} {:>12} {:>7} {:>14}",
        "dir", "direct GB/s", "routed GB/s", "ratio", "relay CPU s/GiB"
    );
    for dir in [Direction::Up, Direction::Down] {
        let mut direct = Vec::new();
        let mut routed = Vec::new();
        let mut cpu = Vec::new();
        for _ in 0..ROUNDS {
            let (addr, t) = backend(dir, total);
            direct.push(transfer(dir, total, None, addr));
            check(dir, total, t);

            let (addr, t) = backend(dir, total);
            let mut settings = Settings::new("127.0.0.1:0".parse().unwrap());
            settings.inactivity_timeout = Duration::from_secs(60);
            let mut relay = Relay::new(settings, To(addr)).unwrap();
            let via = relay.local_addr();
            let mut server = Server::new().unwrap();
            let stop = server.stop_handle();
            let loop_thread = thread::spawn(move || {
                let before = thread_cpu();
                server.run(&mut [&mut relay], 1).unwrap();
                thread_cpu() - before
            });
            routed.push(transfer(dir, total, Some(via), addr));
            check(dir, total, t);
            stop.stop(ShutdownMode::Graceful);
            cpu.push(loop_thread.join().unwrap());
        }
        let gbps = |secs: f64| total as f64 / secs / 1e9;
        let (d, r) = (median(direct), median(routed));
        println!(
            "{:<6} {:>12.2} {:>12.2} {:>7.2} {:>14.3}",
            if dir == Direction::Up { "up" } else { "down" },
            gbps(d),
            gbps(r),
            d / r,
            median(cpu) / gib
        );
    }
}
