//! The comparator with real backends: the diff log's schema, JSON paths and
//! ignore rules, gzip and chunked bodies, noise cancellation with a control,
//! failed shadows.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::GzEncoder;
use kage::compare::{Compare, DiffLog, PathPattern, PathRule, Rules};
use kage::proxy::{Backend, Config, DefaultHooks, Proxy, Role};
use kage::runtime::server::{Server, ShutdownMode, StopHandle};
use serde_json::Value;
use support::*;

/// A unique scratch file name.
fn scratch(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    std::env::temp_dir().join(format!("kage-compare-{}-{n}-{name}", std::process::id()))
}

/// A proxy with the comparator writing to a diff log file.
struct Running {
    addr: SocketAddr,
    log: PathBuf,
    stop: StopHandle,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    fn start(master: SocketAddr, shadows: &[(&str, SocketAddr)], rules: Rules, control: Option<&str>) -> Running {
        let mut backends = vec![Backend::new("master", master, Role::Master)];
        for (name, addr) in shadows {
            backends.push(Backend::new(*name, *addr, Role::Shadow));
        }
        let cfg = Config::new("127.0.0.1:0".parse().unwrap(), backends);
        let log = scratch("diff.jsonl");
        let mut hooks = Compare::new(DefaultHooks, rules).with_log(DiffLog::open(&log).unwrap());
        if let Some(c) = control {
            hooks = hooks.with_control(c);
        }
        let mut proxy = Proxy::new(cfg, hooks).unwrap();
        let addr = proxy.local_addr();
        let mut server = Server::new().unwrap();
        let stop = server.stop_handle();
        let thread = thread::spawn(move || server.run(&mut [&mut proxy], 1).unwrap());
        Running {
            addr,
            log,
            stop,
            thread: Some(thread),
        }
    }

    /// The diff log's lines once it has `n`, each parsed as JSON.
    fn lines(&self, n: usize) -> Vec<Value> {
        let t = Instant::now();
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
                .collect();
            if lines.len() >= n {
                return lines;
            }
            assert!(t.elapsed() < QUICK, "the diff log has {} lines: {text}", lines.len());
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.stop(ShutdownMode::Fast);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

fn json_response(body: &str, extra: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn json_backend(body: &'static str, extra: &'static str) -> TestBackend {
    TestBackend::http(move |_| json_response(body, extra))
}

fn differences(line: &Value) -> Vec<(String, String)> {
    line["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let flag = if d["noise"] == true {
                " noise"
            } else if d["ignored"] == true {
                " ignored"
            } else {
                ""
            };
            let path = d["path"].as_str().unwrap_or("");
            (
                format!("{} {}{flag}", d["kind"].as_str().unwrap(), path),
                d["shadow"].to_string(),
            )
        })
        .collect()
}

fn outcome(line: &Value, name: &str) -> String {
    line["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name)
        .map(|b| b["outcome"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no backend {name} in {line}"))
}

#[test]
fn the_diff_log_names_json_differences_by_path() {
    let master = json_backend(r#"{"items":[{"id":1,"price":10}],"generated":"t1"}"#, "Date: a\r\n");
    let shadow = json_backend(r#"{"items":[{"id":1,"price":12}],"generated":"t2"}"#, "Date: b\r\n");
    let rules = Rules {
        paths: vec![(PathPattern::parse("/generated").unwrap(), PathRule::Ignore)],
        ..Rules::default()
    };
    let p = Running::start(master.addr, &[("new", shadow.addr)], rules, None);
    assert_eq!(
        roundtrip(p.addr, b"GET /cart?x=1 HTTP/1.1\r\nHost: t\r\n\r\n").status,
        200
    );
    let line = &p.lines(1)[0];
    assert_eq!(line["method"], "GET");
    assert_eq!(line["target"], "/cart?x=1");
    assert!(line["id"].as_u64().unwrap() > 0);
    let ts = line["ts"].as_str().unwrap();
    assert!(humantime::parse_rfc3339(ts).is_ok() && ts.ends_with('Z'), "{ts}");
    let backends = line["backends"].as_array().unwrap();
    assert_eq!(backends.len(), 2);
    for b in backends {
        assert_eq!(b["status"], 200);
        assert!(b["ttfb_ms"].as_f64().unwrap() >= 0.0);
        assert!(b["total_ms"].as_f64().unwrap() >= b["ttfb_ms"].as_f64().unwrap());
        assert!(b["bytes"].as_u64().unwrap() > 0);
    }
    assert_eq!(backends[0]["role"], "master");
    assert_eq!(backends[1]["role"], "shadow");
    assert_eq!(outcome(line, "master"), "complete");
    assert_eq!(outcome(line, "new"), "mismatch");
    assert_eq!(
        differences(line),
        [
            ("body /generated ignored".to_string(), "\"\\\"t2\\\"\"".to_string()),
            ("body /items/0/price".to_string(), "\"12\"".to_string()),
        ]
    );
    let price = &line["differences"][1];
    assert_eq!(
        (price["backend"].as_str(), price["master"].as_str()),
        (Some("new"), Some("10"))
    );
}

#[test]
fn equal_answers_match_and_only_ignored_differences_are_ignored() {
    let master = json_backend(r#"{"a":1,"at":"x"}"#, "Server: one\r\n");
    let same = json_backend(r#"{"a":1,"at":"x"}"#, "Server: two\r\n");
    let noisy = json_backend(r#"{"a":1,"at":"y"}"#, "");
    let rules = Rules {
        paths: vec![(PathPattern::parse("/at").unwrap(), PathRule::Ignore)],
        ..Rules::default()
    };
    let p = Running::start(master.addr, &[("same", same.addr), ("noisy", noisy.addr)], rules, None);
    assert_eq!(roundtrip(p.addr, GET).status, 200);
    let line = &p.lines(1)[0];
    assert_eq!(outcome(line, "same"), "match");
    assert_eq!(outcome(line, "noisy"), "ignored");
    assert_eq!(differences(line).len(), 1, "{line}");
    // Bodies captured whole carry their length and digest too.
    let b = line["backends"].as_array().unwrap();
    assert_eq!(b[0]["body_len"], 16, "{line}");
    assert_eq!(b[0]["body_digest"].as_str().map(str::len), Some(32), "{line}");
    assert_eq!(b[0]["body_digest"], b[1]["body_digest"], "equal bodies: {line}");
    assert_ne!(b[0]["body_digest"], b[2]["body_digest"], "{line}");
}

#[test]
fn gzip_and_chunked_bodies_are_compared_decoded() {
    let body = r#"{"z":[1,2,3]}"#;
    let master = TestBackend::http(move |_| {
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        std::io::Write::write_all(&mut gz, body.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        let mut out = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
            gz.len()
        )
        .into_bytes();
        out.extend_from_slice(&gz);
        out
    });
    let chunked = TestBackend::http(move |_| {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n",
            &body[..4],
            body.len() - 4,
            &body[4..]
        )
        .into_bytes()
    });
    let different = json_backend(r#"{"z":[1,2,4]}"#, "");
    let p = Running::start(
        master.addr,
        &[("chunked", chunked.addr), ("different", different.addr)],
        Rules::default(),
        None,
    );
    assert_eq!(roundtrip(p.addr, GET).status, 200);
    let line = &p.lines(1)[0];
    assert_eq!(outcome(line, "chunked"), "match", "{line}");
    assert_eq!(outcome(line, "different"), "mismatch");
    assert_eq!(differences(line), [("body /z/2".to_string(), "\"4\"".to_string())]);
}

#[test]
fn a_control_turns_shared_differences_into_noise() {
    // Every instance stamps its own time; only the shadow changes "v".
    fn stamped(clock: usize, v: u32) -> TestBackend {
        let n = AtomicUsize::new(clock);
        TestBackend::http(move |req| {
            let t = n.fetch_add(1, Ordering::SeqCst);
            let v = if req.head_str().contains("/same") { 1 } else { v };
            json_response(&format!(r#"{{"t":{t},"v":{v}}}"#), "")
        })
    }
    let (master, control, shadow) = (stamped(1000, 1), stamped(2000, 1), stamped(3000, 2));
    let p = Running::start(
        master.addr,
        &[("new", shadow.addr), ("control", control.addr)],
        Rules::default(),
        Some("control"),
    );
    assert_eq!(
        roundtrip(p.addr, b"GET /differs HTTP/1.1\r\nHost: t\r\n\r\n").status,
        200
    );
    assert_eq!(roundtrip(p.addr, b"GET /same HTTP/1.1\r\nHost: t\r\n\r\n").status, 200);
    let lines = p.lines(2);
    let by_target = |t: &str| lines.iter().find(|l| l["target"] == t).unwrap().clone();
    let differs = by_target("/differs");
    assert_eq!(outcome(&differs, "new"), "mismatch");
    assert_eq!(outcome(&differs, "control"), "complete");
    let roles: Vec<&str> = differs["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["master", "shadow", "control"]);
    let d = differences(&differs);
    assert_eq!(
        d.iter().map(|d| d.0.as_str()).collect::<Vec<_>>(),
        ["body /t noise", "body /v"]
    );
    let same = by_target("/same");
    assert_eq!(outcome(&same, "new"), "ignored", "only noise: {same}");
}

#[test]
fn status_headers_and_failures_are_differences() {
    let master = TestBackend::http(|_| b"HTTP/1.1 200 OK\r\nX-Version: 1\r\nContent-Length: 2\r\n\r\nok".to_vec());
    let broken = TestBackend::http(|_| {
        b"HTTP/1.1 500 Internal Server Error\r\nX-Version: 2\r\nContent-Length: 4\r\n\r\noops".to_vec()
    });
    let dead = closed_port();
    let p = Running::start(
        master.addr,
        &[("broken", broken.addr), ("dead", dead)],
        Rules::default(),
        None,
    );
    assert_eq!(roundtrip(p.addr, GET).status, 200);
    let line = &p.lines(1)[0];
    assert_eq!(outcome(line, "broken"), "mismatch");
    assert_eq!(outcome(line, "dead"), "refused");
    let d = differences(line);
    let kinds: Vec<&str> = d.iter().map(|d| d.0.as_str()).collect();
    assert_eq!(kinds, ["status ", "header x-version", "body ", "outcome "], "{line}");
    let body = &line["differences"][2];
    assert_eq!(body["master"], "at byte 1: ok");
    assert_eq!(body["shadow"], "at byte 1: oops");
    assert_eq!(line["differences"][3]["shadow"], "refused");
}

/// A backend answering `body` (shared, 50 MiB) to every request.
fn big_backend(body: std::sync::Arc<Vec<u8>>) -> TestBackend {
    TestBackend::http(move |_| {
        let mut out = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(&body);
        out
    })
}

fn big_body() -> Vec<u8> {
    (0..50u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

#[test]
fn bodies_longer_than_the_capture_are_compared_to_the_last_byte() {
    let body = big_body();
    let mut other = body.clone();
    other[10 << 20] ^= 0x55;
    let master = big_backend(std::sync::Arc::new(body.clone()));
    let same = big_backend(std::sync::Arc::new(body));
    let late = big_backend(std::sync::Arc::new(other));
    let run = Running::start(
        master.addr,
        &[("same", same.addr), ("late", late.addr)],
        Rules::default(),
        None,
    );
    let mut c = Client::connect(run.addr);
    c.send(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.get();
    assert_eq!((r.status, r.body.len()), (200, 50 << 20));
    let line = &run.lines(1)[0];
    assert_eq!(outcome(line, "same"), "match", "{line}");
    assert_eq!(outcome(line, "late"), "mismatch", "{line}");
    let diffs = differences(line);
    assert_eq!(diffs.len(), 1, "{diffs:?}");
    assert_eq!(diffs[0].0, "body ");
    assert!(
        diffs[0]
            .1
            .contains("differs in bytes 10485760..10551296, beyond the first 1048576 bytes captured"),
        "{}",
        diffs[0].1
    );
    let backends = line["backends"].as_array().unwrap();
    let digests: Vec<_> = backends
        .iter()
        .map(|b| (b["body_len"].clone(), b["body_digest"].clone()))
        .collect();
    assert_eq!(digests[0], digests[1], "master and the equal shadow: {line}");
    assert_ne!(digests[0].1, digests[2].1);
    assert_eq!(digests[0].0, 52428800);
}
