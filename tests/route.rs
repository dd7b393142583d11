//! The TCP router with real peers: git daemon, python's http.server,
//! openssl s_server, curl, and scripted backends on 127.0.0.1.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use kage::route::{Decision, Relay, Router, config};
use kage::runtime::server::{Server, ShutdownMode, StopHandle};
use support::{QUICK, TestBackend, closed_port};

/// A relay on its own thread, stopped when dropped.
struct TestRelay {
    addr: SocketAddr,
    stop: StopHandle,
    thread: Option<JoinHandle<()>>,
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        self.stop.stop(ShutdownMode::Fast);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start<R: Router + Send + 'static>(settings: kage::route::Settings, router: R) -> TestRelay {
    start_relay(Relay::new(settings, router).expect("relay"))
}

fn start_relay<R: Router + Send + 'static>(mut relay: Relay<R>) -> TestRelay {
    let addr = relay.local_addr();
    let mut server = Server::new().unwrap();
    let stop = server.stop_handle();
    let thread = thread::spawn(move || server.run(&mut [&mut relay], 1).expect("relay loop"));
    TestRelay {
        addr,
        stop,
        thread: Some(thread),
    }
}

/// A relay running `routes.toml` text whose host names all resolve to
/// `to` now, and how often they were looked up.
fn routes_resolving_to(toml: &str, to: SocketAddr) -> (TestRelay, Arc<AtomicUsize>) {
    let cfg = config::parse(toml, "routes.toml").expect("routes.toml");
    assert_eq!(cfg.rules.names.len(), 1, "localhost is a name, looked up again");
    let asked = Arc::new(AtomicUsize::new(0));
    let seen = asked.clone();
    let lookup: kage::runtime::resolve::Lookup = Arc::new(move |host_port: &str| {
        assert!(host_port.starts_with("localhost:"), "{host_port}");
        seen.fetch_add(1, Ordering::SeqCst);
        Ok(vec![to])
    });
    let settings = cfg.settings("127.0.0.1:0".parse().unwrap());
    let relay = Relay::with_lookup(settings, cfg.rules, lookup).expect("relay");
    (start_relay(relay), asked)
}

/// A relay on an ephemeral port running `routes.toml` text.
fn routes(toml: &str) -> TestRelay {
    let cfg = config::parse(toml, "routes.toml").expect("routes.toml");
    start(cfg.settings("127.0.0.1:0".parse().unwrap()), cfg.rules)
}

/// A relay whose only rule is a default to `addr`, after these settings.
fn default_to(addr: SocketAddr, settings: &str) -> TestRelay {
    routes(&format!(
        "{settings}[[rule]]\nname = \"all\"\ndefault = true\nto = [\"{addr}\"]\n"
    ))
}

/// Sends back what it reads; passes the end on.
fn echo() -> TestBackend {
    TestBackend::start(|conn, _| {
        let mut buf = [0u8; 64 * 1024];
        loop {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if conn.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = conn.shutdown(Shutdown::Write);
    })
}

fn connect(addr: SocketAddr) -> TcpStream {
    let c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(QUICK)).unwrap();
    c
}

fn read_exact(c: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    c.read_exact(&mut buf).expect("read");
    buf
}

/// Everything until the peer closes (a reset counts as closed).
fn read_to_close(c: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("read: {e} after {} bytes", out.len()),
        }
    }
}

// ---- external peers --------------------------------------------------

/// A child process in its own process group, the whole group killed when
/// dropped: `git daemon` is a child of the `git` wrapper, and killing the
/// wrapper alone left the daemon running after every `cargo test`.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        // The group's id is the leader's pid (process_group(0) at spawn),
        // ours as long as the leader is not reaped.
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.0.id())])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Spawns `cmd` and waits until `port` accepts.
fn spawn_listening(cmd: &mut Command, port: u16) -> Peer {
    let child = cmd
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e} (.ci/run installs it)"));
    let peer = Peer(child);
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "{cmd:?} did not listen on {port}"
        );
        thread::sleep(Duration::from_millis(25));
    }
    peer
}

/// A fresh directory under the target dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("route-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Deterministic bytes that do not compress.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[test]
fn git_clone_through_the_router() {
    let tmp = TempDir::new("git");
    let work = tmp.0.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let big = noise(5 << 20, 0x9e37_79b9_7f4a_7c15);
    std::fs::write(work.join("big.bin"), &big).unwrap();
    std::fs::write(work.join("README"), "routed by kage\n").unwrap();
    let git = |dir: &Path| {
        let mut c = Command::new("git");
        c.current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", &tmp.0)
            .args(["-c", "user.name=kage", "-c", "user.email=kage@test.invalid"]);
        c
    };
    run(git(&work).args(["init", "-q"]));
    run(git(&work).args(["add", "."]));
    run(git(&work).args(["commit", "-q", "-m", "a multi-MiB file"]));
    let repos = tmp.0.join("repos");
    std::fs::create_dir_all(&repos).unwrap();
    run(git(&tmp.0).args(["clone", "-q", "--bare", "work", "repos/repo.git"]));

    let port = free_port();
    let _daemon = spawn_listening(
        git(&tmp.0)
            .arg("daemon")
            .arg("--reuseaddr")
            .arg("--export-all")
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", repos.display()))
            .arg(&repos),
        port,
    );
    let relay = routes(&format!(
        r#"
        [[rule]]
        name = "git"
        regex = '^[0-9a-f]{{4}}git-upload-pack /'
        to = ["127.0.0.1:{port}"]

        [[rule]]
        name = "fallback"
        default = true
        to = ["{}"]
        "#,
        closed_port()
    ));
    let url = format!("git://127.0.0.1:{}/repo.git", relay.addr.port());
    run(git(&tmp.0).args(["clone", "-q", &url, "clone"]));
    let cloned = std::fs::read(tmp.0.join("clone/big.bin")).unwrap();
    assert!(cloned == big, "the 5 MiB file differs after the clone");
    let readme = std::fs::read_to_string(tmp.0.join("clone/README")).unwrap();
    assert_eq!(readme, "routed by kage\n");
}

#[test]
fn http_host_routes_curl_to_the_right_python_http_server() {
    let tmp = TempDir::new("http");
    let mut servers = Vec::new();
    let mut ports = Vec::new();
    for name in ["alpha", "beta"] {
        let dir = tmp.0.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), format!("this is {name}\n")).unwrap();
        let port = free_port();
        servers.push(spawn_listening(
            Command::new("python3")
                .args([
                    "-m",
                    "http.server",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--directory",
                ])
                .arg(&dir),
            port,
        ));
        ports.push(port);
    }
    let relay = routes(&format!(
        r#"
        [[rule]]
        name = "alpha"
        http_host = "alpha.example"
        to = ["127.0.0.1:{}"]

        [[rule]]
        name = "beta"
        http_host = "Beta.Example"
        to = ["127.0.0.1:{}"]

        [[rule]]
        name = "fallback"
        default = true
        to = ["{}"]
        "#,
        ports[0],
        ports[1],
        closed_port()
    ));
    let rp = relay.addr.port();
    let curl = |host: &str| {
        Command::new("curl")
            .args(["-s", "--max-time", "10", "--resolve"])
            .arg(format!("{host}:{rp}:127.0.0.1"))
            .arg(format!("http://{host}:{rp}/index.html"))
            .output()
            .expect("curl (.ci/run installs it)")
    };
    for _ in 0..3 {
        let a = curl("alpha.example");
        assert_eq!(String::from_utf8_lossy(&a.stdout), "this is alpha\n");
        let b = curl("beta.example");
        assert_eq!(String::from_utf8_lossy(&b.stdout), "this is beta\n");
    }
    // No rule: the default goes to a closed port, so curl gets nothing.
    let other = curl("other.example");
    assert!(!other.status.success(), "unrouted host should fail");
    assert!(other.stdout.is_empty());
}

#[test]
fn tls_sni_routes_curl_to_openssl_s_server_end_to_end() {
    let tmp = TempDir::new("tls");
    let (cert, key) = (tmp.0.join("cert.pem"), tmp.0.join("key.pem"));
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ])
        .args(["-days", "1", "-subj", "/CN=secure.example"])
        .args(["-addext", "subjectAltName=DNS:secure.example"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    let port = free_port();
    let _s_server = spawn_listening(
        Command::new("openssl")
            .args(["s_server", "-www", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key),
        port,
    );
    let relay = routes(&format!(
        r#"
        [[rule]]
        name = "tls"
        tls_sni = "secure.example"
        to = ["127.0.0.1:{port}"]

        [[rule]]
        name = "fallback"
        default = true
        to = ["{}"]
        "#,
        closed_port()
    ));
    let rp = relay.addr.port();
    let curl = |host: &str| {
        Command::new("curl")
            .args(["-s", "--max-time", "10", "--cacert"])
            .arg(&cert)
            .arg("--resolve")
            .arg(format!("{host}:{rp}:127.0.0.1"))
            .arg(format!("https://{host}:{rp}/"))
            .output()
            .expect("curl")
    };
    let ok = curl("secure.example");
    let page = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(page.contains("s_server"), "not s_server's page: {page}");
    let other = curl("other.example");
    assert!(!other.status.success(), "another server name must not reach s_server");
}

#[test]
fn failover_skips_a_refusing_address() {
    let backend = echo();
    let relay = routes(&format!(
        r#"
        [[rule]]
        name = "any"
        default = true
        to = ["{}", "{}"]
        "#,
        closed_port(),
        backend.addr
    ));
    for i in 0..3 {
        let mut c = connect(relay.addr);
        let msg = format!("hello {i}");
        c.write_all(msg.as_bytes()).unwrap();
        assert_eq!(read_exact(&mut c, msg.len()), msg.as_bytes());
    }
    assert_eq!(backend.seen.accepts(), 3);
}

#[test]
fn failover_on_connect_timeout() {
    // A listener whose backlog is full does not answer SYNs: connects hang.
    let stuck = TcpListener::bind("127.0.0.1:0").unwrap();
    let stuck_addr = stuck.local_addr().unwrap();
    let socket = socket2::Socket::from(stuck.try_clone().unwrap());
    socket.listen(0).unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(&stuck_addr.into());
        fillers.push(s);
    }
    thread::sleep(Duration::from_millis(100));
    let backend = echo();
    let relay = routes(&format!(
        r#"
        connect_timeout = "300ms"
        [[rule]]
        name = "any"
        default = true
        to = ["{stuck_addr}", "{}"]
        "#,
        backend.addr
    ));
    let t = Instant::now();
    let mut c = connect(relay.addr);
    c.write_all(b"late").unwrap();
    assert_eq!(read_exact(&mut c, 4), b"late");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < QUICK,
        "took {took:?} (connect_timeout 300ms, then the next address)"
    );
}

#[test]
fn reply_rule_answers_and_closes() {
    let relay = routes(
        r#"
        [[rule]]
        name = "ping"
        prefix = "PING"
        reply = "PONG\r\n"
        "#,
    );
    for _ in 0..3 {
        let mut c = connect(relay.addr);
        c.write_all(b"PI").unwrap();
        thread::sleep(Duration::from_millis(30));
        c.write_all(b"NG\r\nand more\r\n").unwrap();
        assert_eq!(read_to_close(&mut c), b"PONG\r\n");
    }
}

#[test]
fn default_rule_takes_what_no_rule_matches() {
    let backend = echo();
    let relay = routes(&format!(
        r#"
        [[rule]]
        name = "ping"
        prefix = "PING"
        reply = "PONG\r\n"

        [[rule]]
        name = "fallback"
        default = true
        to = ["{}"]
        "#,
        backend.addr
    ));
    let mut c = connect(relay.addr);
    c.write_all(b"HELO there").unwrap();
    assert_eq!(read_exact(&mut c, 10), b"HELO there");
    c.write_all(b", again").unwrap();
    assert_eq!(read_exact(&mut c, 7), b", again");
}

/// A backend that speaks first, then echoes.
fn greeter() -> TestBackend {
    TestBackend::start(|conn, _| {
        if conn.write_all(b"220 ready\r\n").is_err() {
            return;
        }
        let mut buf = [0u8; 4096];
        while let Ok(n) = conn.read(&mut buf) {
            if n == 0 || conn.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    })
}

#[test]
fn peek_timeout_sends_a_silent_client_to_the_default() {
    let backend = greeter();
    let relay = routes(&format!(
        r#"
        peek_timeout = "300ms"
        [[rule]]
        name = "ping"
        prefix = "PING"
        reply = "PONG\r\n"

        [[rule]]
        name = "smtp"
        default = true
        to = ["{}"]
        "#,
        backend.addr
    ));
    let t = Instant::now();
    let mut c = connect(relay.addr);
    assert_eq!(read_exact(&mut c, 11), b"220 ready\r\n");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < QUICK,
        "greeting after {took:?}, expected the 300ms peek timeout"
    );
    c.write_all(b"EHLO x\r\n").unwrap();
    assert_eq!(read_exact(&mut c, 8), b"EHLO x\r\n");
}

#[test]
fn a_lone_default_decides_without_waiting_for_bytes() {
    let backend = greeter();
    let relay = default_to(backend.addr, "peek_timeout = \"10s\"\n");
    let t = Instant::now();
    let mut c = connect(relay.addr);
    assert_eq!(read_exact(&mut c, 11), b"220 ready\r\n");
    assert!(t.elapsed() < Duration::from_secs(3), "waited {:?}", t.elapsed());
}

#[test]
fn max_peek_gives_up_to_the_default_or_closes() {
    let long_prefix = "A".repeat(100);
    let backend = echo();
    let with_default = routes(&format!(
        r#"
        max_peek = 64
        [[rule]]
        name = "long"
        prefix = "{long_prefix}"
        reply = "never"

        [[rule]]
        name = "fallback"
        default = true
        to = ["{}"]
        "#,
        backend.addr
    ));
    let sent = "A".repeat(80);
    let mut c = connect(with_default.addr);
    c.write_all(sent.as_bytes()).unwrap();
    assert_eq!(read_exact(&mut c, 80), sent.as_bytes(), "64 replayed, 16 spliced");

    let without = routes(&format!(
        r#"
        max_peek = 64
        [[rule]]
        name = "long"
        prefix = "{long_prefix}"
        reply = "never"
        "#
    ));
    let mut c = connect(without.addr);
    c.write_all(sent.as_bytes()).unwrap();
    assert_eq!(read_to_close(&mut c), b"", "closed without an answer");
}

#[test]
fn inactivity_timeout_closes_an_idle_splice() {
    let backend = echo();
    let relay = default_to(backend.addr, "inactivity_timeout = \"300ms\"\n");
    let mut c = connect(relay.addr);
    // Traffic keeps it open past the timeout.
    for _ in 0..4 {
        c.write_all(b"tick").unwrap();
        assert_eq!(read_exact(&mut c, 4), b"tick");
        thread::sleep(Duration::from_millis(150));
    }
    let t = Instant::now();
    assert_eq!(read_to_close(&mut c), b"");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(100) && took < QUICK,
        "closed after {took:?} idle"
    );
}

#[test]
fn half_close_passes_the_end_on_and_the_answer_back() {
    let answer = Arc::new(noise(3 << 20, 7));
    let a = answer.clone();
    // Reads the request to its end, then answers and closes.
    let backend = TestBackend::start(move |conn, seen| {
        let mut req = Vec::new();
        if conn.read_to_end(&mut req).is_err() {
            return;
        }
        seen.requests.lock().unwrap().push(support::Received {
            head: req,
            body: Vec::new(),
        });
        let _ = conn.write_all(&a);
    });
    let relay = default_to(backend.addr, "");
    let mut c = connect(relay.addr);
    c.write_all(b"the whole question").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let got = read_to_close(&mut c);
    assert_eq!(got.len(), answer.len());
    assert!(got == *answer, "the answer arrived corrupted");
    assert_eq!(backend.requests()[0].head, b"the whole question");
}

#[test]
fn a_backend_that_does_not_read_stops_the_client_instead_of_filling_memory() {
    let backend = TestBackend::start(|_conn, _| thread::sleep(Duration::from_secs(10)));
    let relay = default_to(backend.addr, "");
    let mut c = connect(relay.addr);
    c.set_nonblocking(true).unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    let cap = 256usize << 20;
    let mut sent = 0;
    let mut blocked_since: Option<Instant> = None;
    while sent < cap {
        match c.write(&chunk) {
            Ok(n) => {
                sent += n;
                blocked_since = None;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let since = *blocked_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_millis(500) {
                    break;
                }
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("write: {e}"),
        }
    }
    // Kernel socket buffers on the three hops, plus two 64 KiB buffers.
    assert!(sent < 96 << 20, "{sent} bytes taken: the router does not push back");
}

/// Replaces a greeting, and fails over through `on_connect_error`.
struct Rewriter {
    dead: SocketAddr,
    live: SocketAddr,
    connect_errors: Arc<AtomicUsize>,
}

impl Router for Rewriter {
    fn route(&mut self, buffered: &[u8], _peer: SocketAddr) -> Decision {
        if buffered.len() < 5 {
            return Decision::Wait;
        }
        if buffered.starts_with(b"HELLO") {
            Decision::RemoteWith(vec![self.dead], b"BONJOUR".to_vec())
        } else {
            Decision::Close
        }
    }

    fn on_connect_error(&mut self, _buffered: &[u8], _peer: SocketAddr) -> Decision {
        self.connect_errors.fetch_add(1, Ordering::SeqCst);
        Decision::RemoteWith(vec![self.live], b"BONJOUR".to_vec())
    }
}

#[test]
fn a_library_router_replaces_bytes_and_fails_over_from_its_callback() {
    let backend = echo();
    let errors = Arc::new(AtomicUsize::new(0));
    let relay = start(
        kage::route::Settings::new("127.0.0.1:0".parse().unwrap()),
        Rewriter {
            dead: closed_port(),
            live: backend.addr,
            connect_errors: errors.clone(),
        },
    );
    let mut c = connect(relay.addr);
    c.write_all(b"HELLO").unwrap();
    assert_eq!(read_exact(&mut c, 7), b"BONJOUR");
    c.write_all(b" again").unwrap();
    assert_eq!(read_exact(&mut c, 6), b" again");
    assert_eq!(errors.load(Ordering::SeqCst), 1);
    let mut other = connect(relay.addr);
    other.write_all(b"GOODBYE").unwrap();
    assert_eq!(read_to_close(&mut other), b"");
}

// ---- the binary ----------------------------------------------------

/// `kage route` running `toml`, killed when dropped.
fn kage_route(dir: &Path, toml: &str) -> (Peer, SocketAddr) {
    let port = free_port();
    let file = dir.join("routes.toml");
    std::fs::write(&file, format!("listen = \"127.0.0.1:{port}\"\n{toml}")).unwrap();
    let peer = spawn_listening(
        Command::new(env!("CARGO_BIN_EXE_kage"))
            .args(["route", "--config"])
            .arg(&file)
            .env("RUST_LOG", "error"),
        port,
    );
    (peer, SocketAddr::from(([127, 0, 0, 1], port)))
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

#[test]
fn kage_route_keeps_its_descriptor_count_after_many_connections() {
    let tmp = TempDir::new("fds");
    let backend = echo();
    let (kage, addr) = kage_route(
        &tmp.0,
        &format!(
            r#"
            [[rule]]
            name = "ping"
            prefix = "PING"
            reply = "PONG"
            [[rule]]
            name = "dead"
            prefix = "DEAD"
            to = ["{}"]
            [[rule]]
            name = "echo"
            default = true
            to = ["{}"]
            "#,
            closed_port(),
            backend.addr
        ),
    );
    let pid = kage.0.id();
    // Warm up, so that lazily opened descriptors are counted in the baseline.
    let mut c = connect(addr);
    c.write_all(b"warm").unwrap();
    assert_eq!(read_exact(&mut c, 4), b"warm");
    drop(c);
    thread::sleep(Duration::from_millis(200));
    let before = fds(pid);
    for i in 0..300 {
        let mut c = connect(addr);
        match i % 4 {
            0 => {
                c.write_all(b"PING").unwrap();
                assert_eq!(read_to_close(&mut c), b"PONG");
            }
            1 => {
                c.write_all(b"DEAD").unwrap();
                assert_eq!(read_to_close(&mut c), b"");
            }
            2 => {
                c.write_all(b"echo").unwrap();
                assert_eq!(read_exact(&mut c, 4), b"echo");
            }
            _ => {} // connect and leave at once
        }
    }
    let t = Instant::now();
    let mut now = fds(pid);
    while now != before && t.elapsed() < QUICK {
        thread::sleep(Duration::from_millis(50));
        now = fds(pid);
    }
    assert_eq!(now, before, "descriptors before and after 300 connections");
}

#[test]
fn kage_route_config_errors_name_file_and_line_and_exit_two() {
    let tmp = TempDir::new("cfg");
    let file = tmp.0.join("routes.toml");
    std::fs::write(&file, "[[rule]]\nname = \"bad\"\nregex = '('\nto = [\"127.0.0.1:1\"]\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kage"))
        .args(["route", "--listen", "127.0.0.1:0", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("routes.toml:3"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_kage")).arg("route").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config"));
}

#[test]
fn kage_route_stops_on_sigterm() {
    let tmp = TempDir::new("sig");
    let backend = echo();
    let (mut kage, addr) = kage_route(
        &tmp.0,
        &format!(
            "[[rule]]\nname = \"all\"\ndefault = true\nto = [\"{}\"]\n",
            backend.addr
        ),
    );
    let mut c = connect(addr);
    c.write_all(b"x").unwrap();
    assert_eq!(read_exact(&mut c, 1), b"x");
    let ok = Command::new("kill")
        .args(["-TERM", &kage.0.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    // It stops accepting; the open splice ends when its client leaves.
    thread::sleep(Duration::from_millis(200));
    assert!(TcpStream::connect(addr).is_err(), "still accepting after SIGTERM");
    c.write_all(b"y").unwrap();
    assert_eq!(read_exact(&mut c, 1), b"y");
    drop(c);
    let t = Instant::now();
    loop {
        if let Some(status) = kage.0.try_wait().unwrap() {
            assert_eq!(status.code(), Some(0));
            break;
        }
        assert!(t.elapsed() < QUICK, "kage route did not exit");
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn bulk_both_ways_at_once_through_a_busy_connection() {
    // Enough bytes that the connection yields to the loop between passes.
    const TOTAL: usize = 96 << 20;
    let backend = echo();
    let relay = default_to(backend.addr, "");
    let mut c = connect(relay.addr);
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut writer = c.try_clone().unwrap();
    let sent = thread::spawn(move || {
        let block = noise(1 << 20, 3);
        for _ in 0..TOTAL / block.len() {
            writer.write_all(&block).unwrap();
        }
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let got = read_to_close(&mut c);
    sent.join().unwrap();
    assert_eq!(got.len(), TOTAL);
    let block = noise(1 << 20, 3);
    assert!(got.chunks(1 << 20).all(|c| c == block), "bytes corrupted on the way");
}

#[test]
fn a_fast_upload_is_delivered_whole_after_the_client_has_finished() {
    // The client is done long before the router: what is left in the
    // kernel must still be moved, with no new event to say so.
    const TOTAL: usize = 1 << 30;
    let sink = TestBackend::start(|conn, _| {
        let mut buf = vec![0u8; 256 * 1024];
        let mut n = 0;
        loop {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
        }
        let _ = conn.write_all(format!("{n}").as_bytes());
    });
    let relay = default_to(sink.addr, "");
    let mut c = connect(relay.addr);
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let block = vec![7u8; 1 << 20];
    for _ in 0..TOTAL / block.len() {
        c.write_all(&block).unwrap();
    }
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_close(&mut c), TOTAL.to_string().as_bytes());
}

#[test]
fn one_server_runs_the_router_in_front_of_the_proxy() {
    use kage::proxy::{Backend, Config, DefaultHooks, Proxy, Role};
    let backend = TestBackend::ok("through both");
    let mut proxy = Proxy::new(
        Config::new(
            "127.0.0.1:0".parse().unwrap(),
            vec![Backend::new("master", backend.addr, Role::Master)],
        ),
        DefaultHooks,
    )
    .unwrap();
    let cfg = config::parse(
        &format!(
            "[[rule]]\nname = \"web\"\nhttp_host = \"app.example\"\nto = [\"{}\"]\n",
            proxy.local_addr()
        ),
        "routes.toml",
    )
    .unwrap();
    let mut relay = Relay::new(cfg.settings("127.0.0.1:0".parse().unwrap()), cfg.rules).unwrap();
    let addr = relay.local_addr();
    let mut server = Server::new().unwrap();
    let stop = server.stop_handle();
    let loop_thread = thread::spawn(move || {
        server.run(&mut [&mut relay, &mut proxy], 1).unwrap();
    });
    let mut c = connect(addr);
    c.write_all(b"GET / HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n")
        .unwrap();
    let answer = String::from_utf8(read_to_close(&mut c)).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("through both"), "{answer}");
    // A graceful stop waits for open connections: this one ends with the client.
    drop(c);
    stop.stop(ShutdownMode::Graceful);
    loop_thread.join().unwrap();
}

#[test]
fn urgent_data_does_not_cut_a_spliced_stream() {
    // splice(2) stops at TCP urgent data; the router must notice and copy.
    let sink = TestBackend::start(|conn, _| {
        let mut buf = vec![0u8; 256 * 1024];
        let mut n = 0;
        loop {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
        }
        let _ = conn.write_all(format!("{n}").as_bytes());
    });
    let relay = default_to(sink.addr, "");
    let c = connect(relay.addr);
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let block = vec![1u8; 1 << 20];
    let mut w = &c;
    for _ in 0..4 {
        w.write_all(&block).unwrap();
    }
    let sock = socket2::SockRef::from(&c);
    assert_eq!(sock.send_out_of_band(b"!").unwrap(), 1);
    w.write_all(&block).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut c = c;
    // The urgent byte travels out of band: the backend reads the rest.
    assert_eq!(read_to_close(&mut c), (5usize << 20).to_string().as_bytes());
}

/// Closes every connection before it sends a byte.
struct Refuser;

impl Router for Refuser {
    fn route(&mut self, _: &[u8], _: SocketAddr) -> Decision {
        Decision::Close
    }
}

#[test]
fn a_backlog_of_connections_closed_at_once_is_accepted_without_recursion() {
    let mut relay = Relay::new(kage::route::Settings::new("127.0.0.1:0".parse().unwrap()), Refuser).unwrap();
    let addr = relay.local_addr();
    // Queued in the backlog before the loop runs (more than the standard
    // library's backlog of 128 would take): accepted in one go.
    let clients: Vec<TcpStream> = (0..400).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut server = Server::new().unwrap();
    let stop = server.stop_handle();
    // A small stack: accepting must not nest a call per closed connection.
    let loop_thread = thread::Builder::new()
        .stack_size(64 * 1024)
        .spawn(move || server.run(&mut [&mut relay], 1).unwrap())
        .unwrap();
    for mut c in clients {
        c.set_read_timeout(Some(QUICK)).unwrap();
        assert_eq!(read_to_close(&mut c), b"");
    }
    stop.stop(ShutdownMode::Graceful);
    loop_thread.join().unwrap();
}

#[test]
fn a_to_host_name_is_looked_up_again_and_later_connections_follow_it() {
    let (old, new) = (echo(), greeter());
    // The test's resolver: the name has moved to the greeter.
    let (relay, asked) = routes_resolving_to(
        &format!(
            "resolve_interval = \"100ms\"\n[[rule]]\nname = \"all\"\ndefault = true\nto = [\"localhost:{}\"]\n",
            old.addr.port()
        ),
        new.addr,
    );
    let addr = relay.addr;
    // Routed before the move: the echo.
    let mut before = connect(addr);
    before.write_all(b"one").unwrap();
    assert_eq!(read_exact(&mut before, 3), b"one");
    let t = Instant::now();
    while asked.load(Ordering::SeqCst) == 0 {
        assert!(t.elapsed() < QUICK, "the name was looked up again");
        thread::sleep(Duration::from_millis(20));
    }
    // A new connection goes to the new address (it greets first)...
    let t = Instant::now();
    loop {
        let mut after = connect(addr);
        after.write_all(b"x").unwrap();
        if read_exact(&mut after, 1) == b"2" {
            break;
        }
        assert!(t.elapsed() < QUICK, "later connections follow the new address");
        thread::sleep(Duration::from_millis(50));
    }
    // ...while the one routed before stays where it is.
    before.write_all(b"two").unwrap();
    assert_eq!(read_exact(&mut before, 3), b"two");
}

#[test]
fn a_failed_connect_looks_a_to_host_name_up_again_without_waiting_for_the_interval() {
    let dead = closed_port();
    let alive = echo();
    let (relay, asked) = routes_resolving_to(
        &format!(
            "resolve_interval = \"1h\"\n[[rule]]\nname = \"all\"\ndefault = true\nto = [\"localhost:{}\"]\n",
            dead.port()
        ),
        alive.addr,
    );
    let addr = relay.addr;
    // The first connection finds the old address refusing: closed.
    let mut first = connect(addr);
    let _ = first.write_all(b"x");
    assert!(read_to_close(&mut first).is_empty());
    let t = Instant::now();
    while asked.load(Ordering::SeqCst) == 0 {
        assert!(
            t.elapsed() < QUICK,
            "a failed connect asked for a lookup (the interval is an hour)"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let t = Instant::now();
    loop {
        let mut c = connect(addr);
        let _ = c.write_all(b"ping");
        let mut got = [0u8; 4];
        if c.read_exact(&mut got).is_ok() && &got == b"ping" {
            break;
        }
        assert!(t.elapsed() < QUICK, "later connections reach the new address");
        thread::sleep(Duration::from_millis(50));
    }
}
