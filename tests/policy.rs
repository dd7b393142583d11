//! Selection with real sockets: sampling within statistical bounds, sticky
//! sampling, the per-shadow budget under load, per-backend rewrites; and
//! the binary with a kage.toml.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use kage::app::policy::{Policy, Route, Sticky};
use kage::proxy::{Backend, Config, KeepAlive, Proxy, Role};
use kage::runtime::server::{Server, ShutdownMode, StopHandle};
use support::*;

struct Running {
    addr: SocketAddr,
    stop: StopHandle,
    thread: Option<JoinHandle<Proxy<Policy>>>,
}

impl Running {
    fn start(backends: Vec<Backend>, routes: Vec<Route>) -> Running {
        let mut cfg = Config::new("127.0.0.1:0".parse().unwrap(), backends);
        cfg.keep_alive = KeepAlive::Always;
        let mut proxy = Proxy::new(cfg, Policy::new(routes)).unwrap();
        let addr = proxy.local_addr();
        let mut server = Server::new().unwrap();
        let stop = server.stop_handle();
        let thread = thread::spawn(move || {
            server.run(&mut [&mut proxy], 1).unwrap();
            proxy
        });
        Running {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops gracefully (pending shadows finish) and gives the proxy back.
    fn finish(mut self) -> Proxy<Policy> {
        self.stop.stop(ShutdownMode::Graceful);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.stop.stop(ShutdownMode::Fast);
            let _ = t.join();
        }
    }
}

fn backends(master: SocketAddr, shadow: SocketAddr) -> Vec<Backend> {
    vec![
        Backend::new("master", master, Role::Master),
        Backend::new("new", shadow, Role::Shadow),
    ]
}

/// Sends `n` requests on one keep-alive connection, `extra` header lines
/// chosen per request.
fn send(addr: SocketAddr, n: usize, extra: impl Fn(usize) -> String) {
    let mut c = Client::connect(addr);
    for i in 0..n {
        c.send(format!("GET /r{i} HTTP/1.1\r\nHost: t\r\n{}\r\n", extra(i)).as_bytes());
        assert_eq!(c.get().status, 200);
    }
}

#[test]
fn sampling_stays_within_statistical_bounds() {
    let master = TestBackend::ok("m");
    let shadow = TestBackend::ok("s");
    let p = Running::start(backends(master.addr, shadow.addr), vec![Route::all(None, 30.0)]);
    send(p.addr, 1000, |_| String::new());
    p.finish();
    let n = shadow.requests().len();
    // Binomial(1000, 0.3): mean 300, standard deviation 14.5; 5 of them.
    assert!((228..=372).contains(&n), "{n} of 1000 shadowed at 30 %");
    assert_eq!(master.requests().len(), 1000);
}

#[test]
fn sticky_sampling_keeps_each_user_in_or_out() {
    let master = TestBackend::ok("m");
    let shadow = TestBackend::ok("s");
    let mut route = Route::all(None, 50.0);
    route.sticky = Some(Sticky::Header("X-User".into()));
    let p = Running::start(backends(master.addr, shadow.addr), vec![route]);
    send(p.addr, 200, |i| format!("X-User: u{}\r\n", i % 40));
    p.finish();
    let mut per_user: BTreeMap<String, usize> = BTreeMap::new();
    for r in shadow.requests() {
        *per_user.entry(r.header("x-user").unwrap()).or_default() += 1;
    }
    assert!(
        per_user.values().all(|&n| n == 5),
        "all or nothing per user: {per_user:?}"
    );
    // Binomial(40, 0.5): 5 standard deviations is about 16.
    assert!((4..=36).contains(&per_user.len()), "{} of 40 users in", per_user.len());
}

#[test]
fn the_shadow_budget_holds_under_load() {
    let master = TestBackend::ok("m");
    let shadow = TestBackend::ok("s");
    let mut b = backends(master.addr, shadow.addr);
    b[1].max_rps = Some(20.0);
    let p = Running::start(b, vec![Route::all(None, 100.0)]);
    let t = Instant::now();
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let addr = p.addr;
            thread::spawn(move || send(addr, 150, |_| String::new()))
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let elapsed = t.elapsed().as_secs_f64();
    let proxy = p.finish();
    let sent = shadow.requests().len();
    // A burst of one second's worth, then 20 a second.
    let most = 20.0 + 20.0 * elapsed + 2.0;
    assert!((sent as f64) <= most, "{sent} sent in {elapsed:.2} s");
    assert!(sent >= 15, "{sent} sent");
    assert_eq!(
        proxy.dropped(1),
        600 - sent as u64,
        "every other one dropped and counted"
    );
    assert_eq!(master.requests().len(), 600, "the client never waits for the budget");
}

#[test]
fn shadows_get_their_rewrites_and_a_marker() {
    let master = TestBackend::ok("m");
    let shadow = TestBackend::ok("s");
    let mut b = backends(master.addr, shadow.addr);
    b[1].host = Some("new.internal".into());
    b[1].path_prefix = Some(("/api/".into(), "/v2/api/".into()));
    let p = Running::start(b, vec![Route::all(None, 100.0)]);
    let r = roundtrip(p.addr, b"GET /api/items?x=1 HTTP/1.1\r\nHost: shop\r\n\r\n");
    assert_eq!(r.status, 200);
    p.finish();
    let m = &master.requests()[0];
    assert!(m.head_str().starts_with("GET /api/items?x=1 HTTP/1.1\r\n"));
    assert_eq!(m.header("host").as_deref(), Some("shop"));
    assert_eq!(m.header("x-kage-shadow"), None);
    let s = &shadow.requests()[0];
    assert!(
        s.head_str().starts_with("GET /v2/api/items?x=1 HTTP/1.1\r\n"),
        "{}",
        s.head_str()
    );
    assert_eq!(s.header("host").as_deref(), Some("new.internal"));
    assert!(s.header("x-kage-shadow").unwrap().parse::<u64>().is_ok());
}

#[test]
fn the_binary_reads_a_kage_toml_and_names_the_line_of_an_error() {
    let master = TestBackend::ok("from the file");
    let dir = std::env::temp_dir().join(format!("kage-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "listen = \"127.0.0.1:0\"\n\n[[route]]\nsample = 101.0\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kage"))
        .args(["--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("{}:4: route \"route1\": sample", bad.display())),
        "{err}"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let good = dir.join("kage.toml");
    std::fs::write(
        &good,
        format!(
            "listen = \"127.0.0.1:{port}\"\n[master]\naddress = \"{}\"\n",
            master.addr
        ),
    )
    .unwrap();
    let mut child = Reaped(
        Command::new(env!("CARGO_BIN_EXE_kage"))
            .args(["--config", good.to_str().unwrap()])
            .spawn()
            .unwrap(),
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let t = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(t.elapsed() < QUICK, "kage did not listen");
        thread::sleep(Duration::from_millis(20));
    }
    let r = roundtrip(addr, GET);
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!((r.status, r.body_str().as_str()), (200, "from the file"));
}
