//! The `kage` binary as users run it: real processes, signals, curl, and
//! what the kernel says about its memory and descriptors.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use support::*;

/// Kage in front of `master` and one `shadow`, with `extra` flags.
fn shadowed(master: &TestBackend, shadow: &TestBackend, extra: &[&str]) -> Kage {
    let (m, sh) = (master.addr.to_string(), shadow.addr.to_string());
    let mut args = vec!["--master", m.as_str(), "--shadow", sh.as_str()];
    args.extend_from_slice(extra);
    Kage::start(&args)
}

#[test]
fn curl_through_the_proxy() {
    let master = TestBackend::ok("hello curl");
    let shadow = TestBackend::ok("shadow");
    let kage = shadowed(&master, &shadow, &[]);
    let out = Command::new("curl")
        .args(["-sS", "-D", "-", "-H", "X-Test: 1"])
        .arg(format!("http://{}/path?q=1", kage.addr))
        .output()
        .expect("curl is installed (.ci/run installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.ends_with("hello curl"), "{text}");
    thread::sleep(Duration::from_millis(100));
    for b in [&master, &shadow] {
        let r = &b.requests()[0];
        assert!(r.head_str().starts_with("GET /path?q=1 HTTP/1.1\r\n"));
        assert_eq!(r.header("x-test").as_deref(), Some("1"));
    }
}

#[test]
fn curl_keeps_its_connection_through_a_shadowed_proxy_with_keep_alive_always() {
    let master = TestBackend::ok("kept");
    let shadow = TestBackend::ok("shadow");
    let kage = shadowed(&master, &shadow, &["--keep-alive", "always"]);
    // One curl, three URLs: curl reuses its connection when the proxy keeps it.
    let out = Command::new("curl")
        .args(["-sS", "-v"])
        .args((0..3).map(|i| format!("http://{}/k{i}", kage.addr)))
        .output()
        .expect("curl is installed (.ci/run installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "keptkeptkept");
    let verbose = String::from_utf8_lossy(&out.stderr);
    let reused = verbose.matches("Re-using existing connection").count() + verbose.matches("Reusing existing").count();
    assert_eq!(reused, 2, "{verbose}");
    thread::sleep(Duration::from_millis(200));
    assert_eq!(shadow.requests().len(), 3, "every request was shadowed");
    assert_eq!(master.seen.accepts(), 1);
}

#[test]
fn the_diff_log_is_reopened_on_sighup() {
    let master = TestBackend::ok("one");
    let shadow = TestBackend::ok("two");
    let log = std::env::temp_dir().join(format!("kage-hup-{}.jsonl", std::process::id()));
    let rotated = log.with_extension("jsonl.1");
    let _ = std::fs::remove_file(&log);
    let kage = shadowed(&master, &shadow, &["--diff-log", log.to_str().unwrap()]);
    let lines = |path: &std::path::Path, n: usize| -> Vec<serde_json::Value> {
        lines_within(path, n, QUICK)
            .iter()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    };
    assert_eq!(roundtrip(kage.addr, GET).status, 200);
    assert_eq!(lines(&log, 1)[0]["backends"][1]["outcome"], "mismatch");
    std::fs::rename(&log, &rotated).unwrap();
    kage.signal("HUP");
    thread::sleep(Duration::from_millis(100));
    assert_eq!(roundtrip(kage.addr, GET).status, 200, "SIGHUP does not stop the proxy");
    let fresh = lines(&log, 1);
    assert_eq!(fresh.len(), 1);
    assert_eq!(lines(&rotated, 1).len(), 1, "the rotated file got no more lines");
    assert!(fresh[0]["id"].as_u64() > lines(&rotated, 1)[0]["id"].as_u64());
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_file(&rotated);
}

/// The lines of `path` once it has at least `n`, waiting at most `within`.
fn lines_within(path: &std::path::Path, n: usize, within: Duration) -> Vec<String> {
    let t = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().count() >= n {
            return text.lines().map(str::to_string).collect();
        }
        assert!(
            t.elapsed() < within,
            "{} has, after {:?}: {text}",
            path.display(),
            t.elapsed()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_access_log_has_one_line_per_request_within_a_second_and_reopens_on_sighup() {
    let master = TestBackend::ok("one");
    let shadow = TestBackend::ok("two");
    let log = std::env::temp_dir().join(format!("kage-access-{}.log", std::process::id()));
    let rotated = log.with_extension("log.1");
    let _ = std::fs::remove_file(&log);
    let kage = shadowed(&master, &shadow, &["--access-log", log.to_str().unwrap()]);
    const GETS: usize = 20;
    for _ in 0..GETS {
        assert_eq!(roundtrip(kage.addr, GET).status, 200);
    }
    // Not shadowed by default (POST), and a head the proxy answers itself.
    let post = b"POST /form HTTP/1.1\r\nHost: test\r\nContent-Length: 2\r\nUser-Agent: t \"q\"\r\n\r\nhi";
    assert_eq!(roundtrip(kage.addr, post).status, 200);
    assert_eq!(roundtrip(kage.addr, b"BAD\r\n\r\n").status, 400);
    let written = Instant::now();
    let lines = lines_within(&log, GETS + 2, Duration::from_millis(2500));
    assert!(
        written.elapsed() < Duration::from_millis(2000),
        "flushed within a second"
    );
    assert_eq!(lines.len(), GETS + 2, "one line per request: {lines:#?}");
    let gets: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("\"GET /hello HTTP/1.1\" 200 3 "))
        .collect();
    assert_eq!(gets.len(), GETS, "{lines:#?}");
    for l in &gets {
        assert!(l.starts_with("127.0.0.1 - - ["), "{l}");
        assert!(l.ends_with(" shadow1=mismatch"), "the shadow's verdict: {l}");
    }
    let post = lines.iter().find(|l| l.contains("POST")).unwrap();
    assert!(
        post.contains("\"POST /form HTTP/1.1\" 200 3 \"-\" \"t \\x22q\\x22\" "),
        "quotes escaped, no verdict: {post}"
    );
    assert!(!post.contains('='), "{post}");
    let bad = lines.iter().find(|l| l.contains(" 400 ")).unwrap();
    assert!(bad.contains("\"-\" 400 "), "no request line to show: {bad}");

    std::fs::rename(&log, &rotated).unwrap();
    kage.signal("HUP");
    // A quiet log lets go of the rotated file at once.
    let t = Instant::now();
    while !log.exists() {
        assert!(t.elapsed() < QUICK, "SIGHUP reopened {}", log.display());
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(roundtrip(kage.addr, GET).status, 200);
    assert_eq!(lines_within(&log, 1, QUICK).len(), 1);
    assert_eq!(
        lines_within(&rotated, 1, QUICK).len(),
        GETS + 2,
        "the rotated file got no more lines"
    );
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_file(&rotated);
}

#[test]
fn the_json_access_log_is_written_at_exit_with_verdicts() {
    let master = TestBackend::ok("same");
    let shadow = TestBackend::ok("same");
    let log = std::env::temp_dir().join(format!("kage-access-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let mut kage = shadowed(
        &master,
        &shadow,
        &["--access-log", log.to_str().unwrap(), "--access-log-format", "json"],
    );
    for _ in 0..3 {
        assert_eq!(roundtrip(kage.addr, GET).status, 200);
    }
    // Stopped before the second is up: the lines are written at exit.
    kage.signal("TERM");
    assert_eq!(kage.wait_exit(QUICK), Some(0));
    let lines = lines_within(&log, 3, Duration::from_millis(100));
    assert_eq!(lines.len(), 3);
    for (i, l) in lines.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
        assert_eq!(v["id"], i as u64 + 1, "{l}");
        assert_eq!(v["method"], "GET");
        assert_eq!(v["target"], "/hello");
        assert_eq!(v["status"], 200);
        assert_eq!(v["bytes"], 4);
        assert_eq!(v["complete"], true);
        assert_eq!(v["shadows"]["shadow1"], "match", "{l}");
        assert!(
            v["duration_us"].as_u64().is_some() && v["ts"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{l}"
        );
        assert!(v["client"].as_str().is_some_and(|c| c.starts_with("127.0.0.1:")), "{l}");
    }
    let _ = std::fs::remove_file(&log);
}

#[test]
fn metrics_are_scraped_by_curl() {
    let master = TestBackend::ok("one");
    let shadow = TestBackend::ok("two");
    let metrics = format!("127.0.0.1:{}", free_port());
    let kage = shadowed(&master, &shadow, &["--keep-alive", "always", "--metrics", &metrics]);
    let mut c = Client::connect(kage.addr);
    for _ in 0..3 {
        c.send(GET);
        assert_eq!(c.get().status, 200);
    }
    thread::sleep(Duration::from_millis(200));
    let curl = |path: &str| curl_status(&metrics, path, &[]);
    let text = curl("/metrics");
    assert!(text.ends_with("\n200"), "{text}");
    for line in [
        "kage_requests_total{backend=\"master\",outcome=\"complete\"} 3",
        "kage_requests_total{backend=\"shadow1\",outcome=\"complete\"} 3",
        "kage_response_seconds_count{backend=\"master\"} 3",
        "kage_response_seconds_bucket{backend=\"shadow1\",le=\"+Inf\"} 3",
        "kage_comparisons_total{backend=\"shadow1\",result=\"mismatch\"} 3",
        "kage_differences_total{backend=\"shadow1\",kind=\"body\"} 3",
        "kage_shadow_dropped_total{backend=\"shadow1\",reason=\"inflight\"} 0",
        "kage_connections_open 1",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line} in:\n{text}");
    }
    // The master is no shadow: no dropped series for it.
    assert!(!text.contains("kage_shadow_dropped_total{backend=\"master\""), "{text}");
    assert!(curl("/other").ends_with("\n404"));
    assert_eq!(curl("/healthz"), "ok\n\n200");
    // Requests went through a live master just now.
    assert_eq!(curl("/readyz"), "ready\n\n200");
    assert!(curl_status(&metrics, "/readyz", &["-X", "POST"]).ends_with("\n405"));
    assert_eq!(
        curl_status(&metrics, "/healthz", &["-I"]).rsplit('\n').next(),
        Some("200")
    );
}

/// Body and status code (last line) of `GET http://{addr}{path}` by curl.
fn curl_status(addr: &str, path: &str, extra: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}"])
        .args(extra)
        .arg(format!("http://{addr}{path}"))
        .output()
        .expect("curl is installed (.ci/run installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asks `/readyz` until its answer ends with `want`; returns every answer.
fn readyz_until(metrics: &str, want: &str) -> Vec<String> {
    let t = Instant::now();
    let mut seen = Vec::new();
    loop {
        let answer = curl_status(metrics, "/readyz", &[]);
        let done = answer.ends_with(want);
        seen.push(answer);
        if done {
            return seen;
        }
        assert!(t.elapsed() < QUICK, "/readyz never answered {want}: {seen:?}");
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn readyz_is_503_once_a_connect_to_the_master_failed() {
    let dead = closed_port();
    let metrics = format!("127.0.0.1:{}", free_port());
    let kage = Kage::start(&["--master", &dead.to_string(), "--metrics", &metrics]);
    assert_eq!(curl_status(&metrics, "/healthz", &[]), "ok\n\n200");
    assert_eq!(roundtrip(kage.addr, GET).status, 502);
    let answer = curl_status(&metrics, "/readyz", &[]);
    assert!(answer.ends_with("\n503"), "{answer}");
    assert!(answer.contains("last connect failed"), "{answer}");
}

#[test]
fn an_idle_proxy_probes_the_master_while_readyz_is_asked() {
    let master = TestBackend::ok("fine");
    let metrics = format!("127.0.0.1:{}", free_port());
    let kage = Kage::start(&["--master", &master.addr.to_string(), "--metrics", &metrics]);
    // No request went through yet: not ready until the probe connected.
    let seen = readyz_until(&metrics, "\n200");
    assert!(seen[0].contains("not checked recently"), "{seen:?}");
    drop(master);
    drop(kage);

    // A master that is down: the probe fails and says so.
    let dead = closed_port();
    let metrics = format!("127.0.0.1:{}", free_port());
    let _kage = Kage::start(&["--master", &dead.to_string(), "--metrics", &metrics]);
    let seen = readyz_until(&metrics, "\n503");
    assert!(seen.iter().all(|a| a.ends_with("\n503")), "{seen:?}");
    let t = Instant::now();
    while !curl_status(&metrics, "/readyz", &[]).contains("last connect failed") {
        assert!(t.elapsed() < QUICK, "the probe of a closed port never failed");
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn replay_sends_recorded_requests_and_compares_with_the_recorded_master() {
    fn api(version: u32) -> TestBackend {
        TestBackend::http(move |req| {
            let target = req.head_str().split(' ').nth(1).unwrap_or_default().to_string();
            let body = format!(
                r#"{{"target":"{target}","got":{},"version":{version}}}"#,
                req.body.len()
            );
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        })
    }
    let (master, shadow) = (api(1), api(1));
    let log = std::env::temp_dir().join(format!("kage-replay-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let kage = shadowed(
        &master,
        &shadow,
        &[
            "--shadow-methods",
            "all",
            "--diff-log",
            log.to_str().unwrap(),
            "--diff-log-bodies",
        ],
    );
    assert_eq!(roundtrip(kage.addr, b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n").status, 200);
    assert_eq!(roundtrip(kage.addr, b"GET /b HTTP/1.1\r\nHost: t\r\n\r\n").status, 200);
    let post = b"POST /c HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello";
    assert_eq!(roundtrip(kage.addr, post).status, 200);
    let t = Instant::now();
    while std::fs::read_to_string(&log).unwrap_or_default().lines().count() < 3 {
        assert!(t.elapsed() < QUICK, "three lines in the diff log");
        thread::sleep(Duration::from_millis(20));
    }
    drop(kage);
    let replay = |to: SocketAddr, extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_kage"))
            .args(["replay", "--log", log.to_str().unwrap(), "--to", &to.to_string()])
            .args(extra)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let same = api(1);
    let (code, text) = replay(same.addr, &["--fail-on-mismatch"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("replayed 3 request(s)"), "{text}");
    assert!(
        text.contains("comparisons of target with the master: 3 match"),
        "{text}"
    );
    let got = same.requests();
    assert_eq!(got.len(), 3);
    // In the order the diff log has them: a shadow's answer may come late.
    let post = got
        .iter()
        .find(|r| r.head_str().starts_with("POST /c "))
        .expect("the POST is replayed");
    assert_eq!(post.body, b"hello", "the recorded body is sent again");
    let newer = api(2);
    let (code, text) = replay(newer.addr, &["--fail-on-mismatch"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("3 mismatch") && text.contains("/version"), "{text}");
    let (code, text) = replay(newer.addr, &["--ignore-json", "/version"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("3 ignored"), "{text}");
    let _ = std::fs::remove_file(&log);
}

/// `kage replay --log LOG --to TO [extra]`: exit code, stdout, stderr.
fn run_replay(log: &std::path::Path, to: SocketAddr, extra: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kage"))
        .args(["replay", "--log", log.to_str().unwrap(), "--to", &to.to_string()])
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn replay_compares_long_recordings_by_digest_and_refuses_to_compare_nothing() {
    const SIZE: usize = 5 << 20;
    fn big(flip: Option<usize>) -> TestBackend {
        let mut body: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
        if let Some(at) = flip {
            body[at] ^= 1;
        }
        let body = std::sync::Arc::new(body);
        TestBackend::http(move |_| {
            let mut out = format!("HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\n\r\n").into_bytes();
            out.extend_from_slice(&body);
            out
        })
    }
    let (master, shadow) = (big(None), big(None));
    let log = std::env::temp_dir().join(format!("kage-replay-big-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let kage = shadowed(
        &master,
        &shadow,
        &["--diff-log", log.to_str().unwrap(), "--diff-log-bodies"],
    );
    let r = roundtrip(kage.addr, b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((r.status, r.body.len()), (200, SIZE));
    let t = Instant::now();
    while std::fs::read_to_string(&log).unwrap_or_default().lines().count() < 1 {
        assert!(t.elapsed() < QUICK, "a line in the diff log");
        thread::sleep(Duration::from_millis(20));
    }
    drop(kage);
    // Recorded cut at the capture (1 MiB): the digest decides.
    let same = big(None);
    let (code, text, err) = run_replay(&log, same.addr, &["--fail-on-mismatch"]);
    assert_eq!(code, Some(0), "{text}{err}");
    assert!(text.contains("1 match"), "{text}");
    let late = big(Some(3 << 20));
    let (code, text, err) = run_replay(&log, late.addr, &["--fail-on-mismatch"]);
    assert_eq!(code, Some(1), "{text}{err}");
    let first = text.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("mismatch GET /big: body: differs beyond the first ")
            && first.contains("bytes captured; 5242880 bytes, xxh3 "),
        "one line per request that did not match: {text}"
    );
    // Nothing to compare is not a pass.
    let bare = std::env::temp_dir().join(format!("kage-replay-bare-{}.jsonl", std::process::id()));
    std::fs::write(
        &bare,
        "{\"id\":1,\"method\":\"GET\",\"target\":\"/\",\"backends\":[],\"differences\":[]}\n",
    )
    .unwrap();
    for extra in [&[][..], &["--fail-on-mismatch"][..]] {
        let (code, _, err) = run_replay(&bare, same.addr, extra);
        assert_eq!(code, Some(2), "{err}");
        assert!(
            err.contains("no recorded request") && err.contains("--diff-log-bodies"),
            "{err}"
        );
    }
    // A target nothing listens on is named.
    let dead = closed_port();
    let (code, _, err) = run_replay(&log, dead, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&format!("cannot connect to {dead}")), "{err}");
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_file(&bare);
}

#[test]
fn memory_stays_bounded_for_a_64_mib_response_to_a_slow_reader() {
    const SIZE: usize = 64 << 20;
    let master = TestBackend::start(|conn, _| {
        let mut buf = [0u8; 4096];
        let _ = conn.read(&mut buf);
        let _ = conn.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\n\r\n").as_bytes());
        let block = vec![b'k'; 1 << 20];
        for _ in 0..SIZE >> 20 {
            if conn.write_all(&block).is_err() {
                return;
            }
        }
    });
    let kage = Kage::start(&["--master", &master.addr.to_string()]);
    let rss_before = kage.status_field("VmRSS:");
    let mut c = TcpStream::connect(kage.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(GET).unwrap();
    let mut total = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    let mut peak = 0;
    let t = Instant::now();
    while total < SIZE {
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0, "closed early after {total} bytes");
        total += n;
        // Slower than the backend: a pause every 4 MiB.
        if total % (4 << 20) < n {
            thread::sleep(Duration::from_millis(50));
            peak = peak.max(kage.status_field("VmRSS:"));
        }
    }
    assert!(t.elapsed() < Duration::from_secs(30));
    let hwm = kage.status_field("VmHWM:");
    assert!(total >= SIZE);
    // The proxy holds at most a few buffers, not the response.
    assert!(
        hwm < rss_before + 16 * 1024,
        "peak RSS {hwm} KiB (started at {rss_before} KiB, sampled {peak} KiB)"
    );
}

#[test]
fn descriptors_do_not_leak_after_many_failing_connections() {
    let dead = closed_port();
    let kage = Kage::start(&["--master", &dead.to_string(), "--shadow", &closed_port().to_string()]);
    // Warm up whatever the process opens once.
    assert_eq!(roundtrip(kage.addr, GET).status, 502);
    thread::sleep(Duration::from_millis(100));
    let before = kage.fds();
    for i in 0..200 {
        let mut c = TcpStream::connect(kage.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let req: &[u8] = match i % 4 {
            0 => GET,
            1 => b"GET / HTTP/1.1\r\n\r\n",
            2 => b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nab",
            _ => b"",
        };
        c.write_all(req).unwrap();
        if i % 4 < 2 {
            let mut out = Vec::new();
            let _ = c.read_to_end(&mut out);
            assert!(out.starts_with(b"HTTP/1.1 "), "{:?}", String::from_utf8_lossy(&out));
        }
    }
    let t = Instant::now();
    while kage.fds() > before && t.elapsed() < QUICK {
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(kage.fds(), before, "descriptors after 200 failing connections");
}

#[test]
fn sigquit_finishes_in_flight_work_and_exits_zero() {
    let master = TestBackend::http(|_| {
        thread::sleep(Duration::from_millis(300));
        ok_response("finished")
    });
    let mut kage = Kage::start(&["--master", &master.addr.to_string()]);
    let mut c = TcpStream::connect(kage.addr).unwrap();
    c.set_read_timeout(Some(QUICK)).unwrap();
    c.write_all(GET).unwrap();
    thread::sleep(Duration::from_millis(50));
    kage.signal("QUIT");
    let mut out = Vec::new();
    c.read_to_end(&mut out).unwrap();
    assert!(out.ends_with(b"finished"), "{:?}", String::from_utf8_lossy(&out));
    assert_eq!(kage.wait_exit(QUICK), Some(0));
}

#[test]
fn sigterm_exits_zero_promptly() {
    let master = TestBackend::ok("x");
    let mut kage = Kage::start(&["--master", &master.addr.to_string()]);
    // An idle keep-alive client does not hold the exit up.
    let mut idle = Client::connect(kage.addr);
    idle.send(GET);
    assert_eq!(idle.get().status, 200);
    kage.signal("TERM");
    assert_eq!(kage.wait_exit(Duration::from_secs(3)), Some(0));
}

#[test]
fn accept_errors_pause_instead_of_spinning() {
    let master = TestBackend::ok("ok");
    // Room for a handful of connections only.
    let kage = Kage::start_with(&["--master", &master.addr.to_string()], Some(16));
    let mut held = Vec::new();
    for _ in 0..24 {
        if let Ok(c) = TcpStream::connect(kage.addr) {
            held.push(c);
        }
    }
    thread::sleep(Duration::from_millis(200));
    let ticks = kage.cpu_ticks();
    thread::sleep(Duration::from_secs(1));
    let used = kage.cpu_ticks() - ticks;
    assert!(used < 30, "{used} ticks of CPU in 1 s while out of descriptors");
    drop(held);
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        roundtrip(kage.addr, GET).status,
        200,
        "serves again once descriptors are free"
    );
}

#[test]
fn usage_errors_exit_two_and_name_the_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_kage"))
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--master"));
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kage"))
        .args([
            "--listen",
            &taken.local_addr().unwrap().to_string(),
            "--master",
            "127.0.0.1:2",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--listen"),
        "bind errors name the flag"
    );
}

#[test]
fn failed_backend_exchanges_are_logged() {
    let master = TestBackend::ok("fine");
    let dead = closed_port();
    let mut child = Reaped(
        Command::new(env!("CARGO_BIN_EXE_kage"))
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--master", &master.addr.to_string(), "--shadow", &format!("new={dead}")])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let addr: SocketAddr = {
        // The first log line names the listen address.
        let mut err = child.stderr.take().unwrap();
        let mut seen = Vec::new();
        let mut byte = [0u8; 1];
        while !seen.ends_with(b"\n") {
            err.read_exact(&mut byte).unwrap();
            seen.push(byte[0]);
        }
        let line = String::from_utf8_lossy(&seen).into_owned();
        child.stderr = Some(err);
        let at = line.find("listening on ").expect(&line) + "listening on ".len();
        line[at..].split(": ").next().unwrap().parse().unwrap()
    };
    for _ in 0..20 {
        assert_eq!(roundtrip(addr, GET).status, 200);
    }
    thread::sleep(Duration::from_millis(200));
    let _ = child.kill();
    let mut log = String::new();
    child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    let _ = child.wait();
    assert!(log.contains("shadow new GET /hello: refused"), "{log}");
    // A dead shadow is one line per FAILURE_LOG_INTERVAL, not one per request.
    assert_eq!(log.matches(": refused").count(), 1, "{log}");
}

#[test]
fn the_descriptor_limit_and_the_connection_cap_are_logged() {
    let master = TestBackend::ok("fine");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // A soft limit below the hard one: kage raises it and says so.
    let mut child = Reaped(
        Command::new("sh")
            .arg("-c")
            .arg("ulimit -S -n 512 && exec \"$0\" \"$@\"")
            .arg(env!("CARGO_BIN_EXE_kage"))
            .args(["--listen", &addr.to_string(), "--master", &master.addr.to_string()])
            .args(["--max-connections", "1"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let t = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(t.elapsed() < QUICK, "kage did not start listening");
        thread::sleep(Duration::from_millis(20));
    }
    // The probe above may still hold the one place; two more wait.
    let held = TcpStream::connect(addr).unwrap();
    let waiting = TcpStream::connect(addr).unwrap();
    thread::sleep(Duration::from_millis(300));
    let _ = child.kill();
    let mut log = String::new();
    child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    let _ = child.wait();
    drop((held, waiting));
    // A hard limit that is a number (not "unlimited") is what kage raises to.
    let hard = String::from_utf8(
        Command::new("sh")
            .arg("-c")
            .arg("ulimit -H -n")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .parse::<u64>()
    .ok();
    if let Some(hard) = hard.filter(|&h| h > 512) {
        assert!(log.contains(&format!("descriptor limit {hard};")), "{log}");
    }
    assert!(log.contains("at most 1 client connection(s)"), "{log}");
    let capped = log.matches("accepting paused until one closes").count();
    assert_eq!(capped, 1, "one line at the cap, not one per attempt:\n{log}");
}
