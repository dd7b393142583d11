//! What connections cost the `kage` binary: idle keep-alive clients hold no
//! buffer and hand their master connections back to the shared pool, and
//! a partial head costs a small buffer, not a whole one.

mod support;

use std::thread;
use std::time::Duration;

use kage::proxy::{DEFAULT_POOL_IDLE_PER_BACKEND, KEEP_BACKEND_WHILE_IDLE};
use support::process::Kage;
use support::*;

/// The proxy's resident memory in bytes.
fn rss(kage: &Kage) -> u64 {
    kage.status_field("VmRSS:") * 1024
}

/// Opens `n` keep-alive connections, each answered once; kept open.
fn idle_clients(kage: &Kage, n: usize) -> Vec<Client> {
    (0..n)
        .map(|i| {
            let mut c = Client::connect(kage.addr);
            c.send(GET);
            assert_eq!(c.get().status, 200, "connection {i}");
            c
        })
        .collect()
}

#[test]
fn idle_keepalive_connections_cost_under_4_kib_each_and_hold_no_master_connection() {
    const CONNS: usize = 2000;
    let master = TestBackend::ok("hi");
    let kage = Kage::start(&["--master", &master.addr.to_string(), "--max-connections", "4000"]);
    // Warm up: the first buffers, sessions and pool entries exist.
    drop(idle_clients(&kage, 20));
    thread::sleep(Duration::from_millis(300));
    let before = rss(&kage);
    let mut clients = idle_clients(&kage, CONNS);
    // Idle clients keep at most a pool's worth of master connections, and
    // the shared pool another.
    let fds = kage.fds();
    assert!(
        fds < CONNS + 2 * DEFAULT_POOL_IDLE_PER_BACKEND + 32,
        "{fds} descriptors for {CONNS} clients just answered"
    );
    // Past the time a parked client keeps its master connection.
    thread::sleep(KEEP_BACKEND_WHILE_IDLE + Duration::from_millis(700));
    let after = rss(&kage);
    let per_conn = after.saturating_sub(before) / CONNS as u64;
    eprintln!("RSS {before} -> {after} bytes: {per_conn} bytes per idle connection");
    assert!(
        per_conn < 4096,
        "an idle keep-alive connection costs {per_conn} bytes ({before} -> {after})"
    );
    // One descriptor per client, plus at most a pool of master connections.
    let fds = kage.fds();
    assert!(
        fds < CONNS + DEFAULT_POOL_IDLE_PER_BACKEND + 32,
        "{fds} descriptors for {CONNS} idle clients"
    );
    // Every idle client is still served, on a pooled or a fresh connection.
    for (i, c) in clients.iter_mut().enumerate().step_by(50) {
        c.send(GET);
        assert_eq!(c.get().status, 200, "connection {i} after its idle");
    }
}

#[test]
fn a_partial_head_holds_a_small_buffer() {
    const CONNS: usize = 1000;
    let master = TestBackend::ok("hi");
    let kage = Kage::start(&["--master", &master.addr.to_string(), "--client-timeout", "60s"]);
    drop(idle_clients(&kage, 20));
    thread::sleep(Duration::from_millis(300));
    let before = rss(&kage);
    let mut partial = b"GET /hello HTTP/1.1\r\nHost: test\r\nX-Pad: ".to_vec();
    partial.resize(300, b'a');
    let clients: Vec<Client> = (0..CONNS)
        .map(|_| {
            let mut c = Client::connect(kage.addr);
            c.send(&partial);
            c
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    let after = rss(&kage);
    let per_conn = after.saturating_sub(before) / CONNS as u64;
    eprintln!("RSS {before} -> {after} bytes: {per_conn} bytes per partial head");
    // A 4 KiB head buffer and a session, not the whole 80 KiB buffer.
    assert!(per_conn < 12 * 1024, "a partial head costs {per_conn} bytes");
    // The heads can still be finished and answered.
    for mut c in clients.into_iter().step_by(100) {
        c.send(b"\r\n\r\n");
        assert_eq!(c.get().status, 200);
    }
}
