//! Runs the compiled `embed` example as a user would: HTTP through its proxy
//! port, the line protocol on its own port, and `quit` for a graceful exit.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Read and write timeout on every socket of the test.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Kills the child on drop unless it has already exited, so a failing
/// assertion never leaves the example running.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The example binary next to the test binary: `target/<profile>/deps/` holds
/// the test, `target/<profile>/examples/` the examples.
///
/// A plain `cargo test` builds the examples first, but a filtered
/// `cargo test --test examples` does not (and would run a stale or missing
/// binary), so the example is built here too; that is a no-op when fresh.
fn example_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test binary directory");
    let profile_dir = deps.parent().expect("target profile directory");
    let mut cargo = Command::new(env!("CARGO"));
    cargo.args(["build", "--quiet", "--example", name, "--manifest-path"]);
    cargo.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            cargo.arg("--release");
        }
        Some(profile) => {
            cargo.args(["--profile", profile]);
        }
    }
    let status = cargo.status().expect("run cargo build --example");
    assert!(status.success(), "cargo build --example {name} failed");
    let path = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(path.exists(), "example binary not found at {}", path.display());
    path
}

/// A tiny keep-alive HTTP backend answering every request with `hello`.
fn start_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind backend");
    let addr = listener.local_addr().expect("backend addr");
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            thread::spawn(move || serve_backend_conn(stream));
        }
    });
    addr
}

/// Answers each request head (no request bodies expected) until EOF.
fn serve_backend_conn(mut stream: TcpStream) {
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("read timeout");
    stream.set_write_timeout(Some(IO_TIMEOUT)).expect("write timeout");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(end) = find(&buf, b"\r\n\r\n") {
            buf.drain(..end + 4);
            if stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
                .is_err()
            {
                return;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Position of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads one HTTP/1.1 response framed by Content-Length: (status line, body).
fn read_response(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            break end + 4;
        }
        let n = stream.read(&mut chunk).expect("read response head");
        assert!(n > 0, "proxy closed before a full response head: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).expect("utf-8 head");
    let status_line = head.lines().next().unwrap_or_default().to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .expect("response has a Content-Length");
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).expect("read response body");
        assert!(n > 0, "proxy closed in the middle of the body");
        body.extend_from_slice(&chunk[..n]);
    }
    (status_line, body)
}

/// A client socket with the test's timeouts.
fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("read timeout");
    stream.set_write_timeout(Some(IO_TIMEOUT)).expect("write timeout");
    stream
}

/// Parses `proxy=<addr> line=<addr>`.
fn parse_addresses(line: &str) -> (SocketAddr, SocketAddr) {
    let mut proxy = None;
    let mut line_addr = None;
    for part in line.split_whitespace() {
        match part.split_once('=') {
            Some(("proxy", v)) => proxy = v.parse().ok(),
            Some(("line", v)) => line_addr = v.parse().ok(),
            _ => {}
        }
    }
    (
        proxy.unwrap_or_else(|| panic!("no proxy address in {line:?}")),
        line_addr.unwrap_or_else(|| panic!("no line address in {line:?}")),
    )
}

/// The example proxies HTTP, echoes lines, and exits 0 on `quit`.
#[test]
fn embed_serves_http_and_lines_then_quits() {
    let backend = start_backend();
    let child = Command::new(example_path("embed"))
        .args([
            "--proxy-listen",
            "127.0.0.1:0",
            "--line-listen",
            "127.0.0.1:0",
            "--master",
        ])
        .arg(backend.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the embed example");
    let mut child = ChildGuard(child);

    // The addresses line, read in a thread so a silent child cannot hang the test.
    let stdout = child.0.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the example printed its addresses");
    let (proxy, line_addr) = parse_addresses(line.trim_end());

    // (a) HTTP through the proxy reaches the master.
    let mut http = connect(proxy);
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send request");
    let (status, body) = read_response(&mut http);
    assert!(status.starts_with("HTTP/1.1 200"), "status line: {status:?}");
    assert_eq!(body, b"hello");

    // (b) The host's own line protocol on the same loop.
    let mut lines = connect(line_addr);
    lines.write_all(b"ping\n").expect("send ping");
    let mut reader = BufReader::new(lines.try_clone().expect("clone line stream"));
    let mut reply = String::new();
    reader.read_line(&mut reply).expect("read echo");
    assert_eq!(reply, "echo: ping\n");

    // (c) quit: graceful stop, exit 0 within 5 s (the idle keep-alive HTTP
    // connection above is still open and must be closed by the proxy).
    lines.write_all(b"quit\n").expect("send quit");
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the example did not exit within 5 s of quit");
        thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "the example exited with {status}");
    drop(http);
}
