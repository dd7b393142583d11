//! The `kage` binary as a user runs it.

mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;

use support::*;

/// A scratch directory for this test's files, removed by the caller.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kage-cli-bin-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn kage(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kage"))
        .args(args)
        .output()
        .expect("run kage");
    let text = |b: Vec<u8>| String::from_utf8(b).expect("utf-8 output");
    (out.status.code().unwrap_or(-1), text(out.stdout), text(out.stderr))
}

#[test]
fn help_describes_usage_and_exits_zero() {
    let (code, out, _) = kage(&["--help"]);
    assert_eq!(code, 0);
    for needle in ["USAGE", "--master", "--shadow", "RUST_LOG"] {
        assert!(out.contains(needle), "--help lacks {needle}:\n{out}");
    }
}

#[test]
fn version() {
    let (code, out, _) = kage(&["-V"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("kage {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn unknown_flag_is_named_and_exits_two() {
    let (code, _, err) = kage(&["--bogus"]);
    assert_eq!(code, 2);
    assert!(err.contains("--bogus") && err.contains("--help"), "{err}");
}

#[test]
fn the_demo_compares_two_sample_backends_and_exits_zero() {
    let (code, out, err) = kage(&["demo"]);
    assert_eq!(code, 0, "{out}{err}");
    for needle in [
        "sent 40 requests",
        "comparisons of new with the master: 0 match, 30 mismatch, 10 ignored",
        "  new      body    /price               30",
        "for example, body /price: master ",
        "ignored: every difference of the exchange was on an ignored path",
        "next, in front of your own backends:",
    ] {
        assert!(out.contains(needle), "no {needle:?} in:\n{out}");
    }
    let rows: Vec<&str> = out.lines().filter(|l| l.contains("200 x40")).collect();
    assert_eq!(rows.len(), 3, "client, master and new: {out}");
    assert!(rows[0].starts_with("client "), "{out}");
    let (code, _, err) = kage(&["demo", "--now"]);
    assert_eq!(code, 2);
    assert!(err.contains("kage demo takes no arguments"), "{err}");
}

#[test]
fn each_subcommand_has_its_own_help_page() {
    let page = |args: &[&str]| {
        let (code, out, err) = kage(args);
        assert_eq!(code, 0, "{args:?}: {err}");
        out
    };
    let proxy = page(&["--help"]);
    let route = page(&["route", "--help"]);
    let replay = page(&["replay", "--help"]);
    let demo = page(&["demo", "--help"]);
    let check = page(&["check", "--help"]);
    assert!(
        proxy.contains("--shadow-timeout") && proxy.contains("KAGE.TOML"),
        "{proxy}"
    );
    assert!(!proxy.contains("ROUTES.TOML"), "{proxy}");
    assert!(
        route.contains("ROUTES.TOML") && route.contains("--max-connections"),
        "{route}"
    );
    assert!(!route.contains("--shadow"), "{route}");
    assert!(
        replay.contains("--fail-on-mismatch") && replay.contains("--to HOST:PORT"),
        "{replay}"
    );
    assert!(demo.contains("kage demo"), "{demo}");
    assert!(check.contains("kage check --config FILE"), "{check}");
    let pages = [&proxy, &route, &replay, &demo, &check];
    for (i, a) in pages.iter().enumerate() {
        for b in &pages[i + 1..] {
            assert_ne!(a, b);
        }
    }
    assert_eq!(page(&["help", "route"]), route);
    assert_eq!(page(&["help"]), proxy);
    let short = page(&["-h"]);
    assert!(short.contains("USAGE") && short.contains("kage --help"), "{short}");
    assert!(short.lines().count() < 20, "{short}");
    let short = page(&["route", "-h"]);
    assert!(short.contains("kage route --config FILE") && short.contains("kage route --help"));
    let (code, _, err) = kage(&["help", "rout"]);
    assert_eq!(code, 2);
    assert!(err.contains("did you mean route?"), "{err}");
}

#[test]
fn version_command() {
    for args in [&["version"][..], &["--version"], &["-V"]] {
        let (code, out, _) = kage(args);
        assert_eq!(code, 0);
        assert_eq!(out.trim(), format!("kage {}", env!("CARGO_PKG_VERSION")));
    }
}

#[test]
fn a_mistyped_flag_gets_a_suggestion() {
    let (code, _, err) = kage(&["--shadwo", "127.0.0.1:1"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--shadwo") && err.contains("did you mean --shadow?"),
        "{err}"
    );
    let (code, _, err) = kage(&["route", "--lisen", "x"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("did you mean --listen?") && err.contains("kage route --help"),
        "{err}"
    );
}

#[test]
fn http_backends_are_accepted_and_paths_refused() {
    let master = TestBackend::ok("through http://");
    let url = format!("http://{}/", master.addr);
    let kage_proc = Kage::start(&["--master", &url]);
    let response = roundtrip(kage_proc.addr, GET);
    assert_eq!(response.body_str(), "through http://");
    let (code, _, err) = kage(&["--listen", "127.0.0.1:0", "--master", "https://127.0.0.1:1/api"]);
    assert_eq!(code, 2);
    assert!(
        err.contains(
            "--master https://127.0.0.1:1/api: expected [http:// or https://]HOST:PORT; a backend address has no path"
        ),
        "{err}"
    );
    let (code, _, err) = kage(&[
        "--listen",
        "127.0.0.1:0",
        "--master",
        "127.0.0.1:1",
        "--tls-cert",
        "/nonexistent",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("--tls-cert FILE needs --tls-key FILE"), "{err}");
    let (code, _, err) = kage(&["--listen", "127.0.0.1:0", "--master", "nohost.invalid:80"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--master nohost.invalid:80: cannot resolve the host"),
        "{err}"
    );
}

#[test]
fn check_validates_both_kinds_of_file() {
    let dir = scratch("check");
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let good = write(
        "kage.toml",
        "listen = \"127.0.0.1:0\"\n[master]\naddress = \"127.0.0.1:9000\"\n",
    );
    let (code, out, err) = kage(&["check", "--config", &good]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("{good}: ok (kage.toml:")), "{out}");
    assert!(out.contains("master master 127.0.0.1:9000, 0 shadow(s)"), "{out}");
    // An HTTPS shadow taking any certificate: valid, with its warning.
    let unverified = write(
        "unverified.toml",
        "[master]\naddress = \"127.0.0.1:9000\"\n[[shadow]]\nname = \"staging\"\naddress = \"https://127.0.0.1:9443\"\ninsecure_skip_verify = true\n",
    );
    let (code, _, err) = kage(&["check", "--config", &unverified]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("shadow \"staging\": insecure_skip_verify: its TLS certificate is not verified"),
        "{err}"
    );
    let bad = write("bad.toml", "listen = \"127.0.0.1:0\"\nmax_connections = \"4096\"\n");
    let (code, _, err) = kage(&["check", "--config", &bad]);
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!(
            "{bad}:2: max_connections: expected a whole number, got a string"
        )),
        "{err}"
    );
    let routes = write(
        "routes.toml",
        "[[rule]]\nname = \"d\"\ndefault = true\nto = [\"127.0.0.1:9\"]\n",
    );
    let (code, out, err) = kage(&["check", "-c", &routes]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("ok (routes.toml:") && out.contains("0 rule(s), a default"),
        "{out}"
    );
    let bad_routes = write("bad-routes.toml", "[[rule]]\nname = \"x\"\nprefix = \"A\"\nto = 5\n");
    let (code, _, err) = kage(&["check", "-c", &bad_routes]);
    assert_eq!(code, 2);
    assert!(err.contains(&format!("{bad_routes}:4: to: expected")), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_start_line_and_warnings_reach_stderr_without_rust_log() {
    let master = TestBackend::ok("m");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let m = master.addr.to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kage"))
        .args(["--listen", &listen, "--master", &m, "--diff-log-bodies"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kage");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let want = format!("listening on {listen}: master master {m} (keep-alive master-only)");
    while !seen.iter().any(|l: &String| l.contains(&want)) {
        match rx.recv_timeout(QUICK) {
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = seen.join("\n");
    assert!(text.contains(&want), "{text}");
    assert!(
        text.contains("WARN") && text.contains("--diff-log-bodies (diff_log_bodies) does nothing without --diff-log"),
        "{text}"
    );
}

#[test]
fn a_master_given_by_name_is_looked_up_again_quietly_while_it_does_not_move() {
    use std::net::ToSocketAddrs;
    // Listen where kage will find "localhost" (127.0.0.1 or ::1).
    let first = ("localhost", 0)
        .to_socket_addrs()
        .unwrap()
        .next()
        .expect("localhost resolves");
    let master = TestBackend::start_at(first, |conn, seen| {
        let mut buf = Vec::new();
        while let Some(req) = read_request(conn, &mut buf) {
            seen.requests.lock().unwrap().push(req);
            if std::io::Write::write_all(conn, &ok_response("by name")).is_err() {
                return;
            }
        }
    });
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let by_name = format!("localhost:{}", master.addr.port());
    let child = Command::new(env!("CARGO_BIN_EXE_kage"))
        .args(["--listen", &listen, "--master", &by_name, "--resolve-interval", "100ms"])
        .env("RUST_LOG", "kage=info,kage::runtime::resolve=debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kage");
    let mut child = Reaped(child);
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let addr: std::net::SocketAddr = listen.parse().unwrap();
    let t = std::time::Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(t.elapsed() < QUICK, "kage did not start listening");
        thread::sleep(std::time::Duration::from_millis(20));
    }
    // Several intervals, requests all along.
    for _ in 0..8 {
        let r = roundtrip(addr, GET);
        assert_eq!((r.status, r.body_str().as_str()), (200, "by name"));
        thread::sleep(std::time::Duration::from_millis(100));
    }
    let ok = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(ok.success());
    let t = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            t.elapsed() < QUICK,
            "kage did not exit on SIGTERM (a resolver thread holding it?)"
        );
        thread::sleep(std::time::Duration::from_millis(20));
    }
    let text: Vec<String> = rx.try_iter().collect();
    let text = text.join("\n");
    assert!(
        text.contains(&format!("master master {by_name} ({})", master.addr)),
        "the start line names the host and its address: {text}"
    );
    let lookups = text.matches(&format!("looking up {by_name} again")).count();
    assert!(lookups >= 3, "looked up again {lookups} times: {text}");
    assert!(text.contains("localhost still resolves to"), "{text}");
    // Nothing above debug says anything about it.
    for line in text
        .lines()
        .filter(|l| l.contains("resolve") || l.contains("looking up"))
    {
        assert!(line.contains("DEBUG"), "{line}");
    }
    assert_eq!(master.requests().len(), 8);
}
