//! TLS on both sides, with real peers: curl and `openssl s_client` as
//! clients of kage's HTTPS listener, python `ssl` servers as HTTPS
//! backends. Certificates are made by `openssl` in a temporary directory.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use support::{Kage, QUICK, Reaped, TestBackend, free_port};

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("kage-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, file: &str) -> String {
        self.0.join(file).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn openssl(dir: &TempDir, args: &[&str]) {
    let out = Command::new("openssl").current_dir(&dir.0).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA (`ca.pem`) and leaves it signed: `NAME.pem` and `NAME.key`.
fn make_ca(dir: &TempDir) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=kage test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// A leaf certificate for `dns` (and 127.0.0.1), signed by the CA, or
/// self-signed (untrusted) when `signed` is false.
fn make_leaf(dir: &TempDir, name: &str, dns: &str, signed: bool) {
    let key = format!("{name}.key");
    let pem = format!("{name}.pem");
    let csr = format!("{name}.csr");
    let ext = format!("{name}.ext");
    std::fs::write(
        dir.0.join(&ext),
        format!(
            "subjectAltName=DNS:{dns},IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
        ),
    )
    .unwrap();
    let subj = format!("/CN={name}");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &subj,
        ],
    );
    if signed {
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
    } else {
        openssl(
            dir,
            &[
                "x509", "-req", "-in", &csr, "-signkey", &key, "-out", &pem, "-days", "2", "-extfile", &ext,
            ],
        );
    }
}

fn certs(name: &str) -> TempDir {
    let dir = TempDir::new(name);
    make_ca(&dir);
    make_leaf(&dir, "leaf", "localhost", true);
    dir
}

/// kage with an HTTPS listener (`leaf` of `dir`) in front of `args`.
fn https_kage(dir: &TempDir, args: &[&str]) -> Kage {
    let (cert, key) = (dir.path("leaf.pem"), dir.path("leaf.key"));
    let mut all = vec!["--tls-cert", &cert, "--tls-key", &key];
    all.extend_from_slice(args);
    Kage::start(&all)
}

/// curl through kage at `addr` as https://localhost; stdout and stderr.
fn curl(dir: &TempDir, addr: SocketAddr, extra: &[&str], paths: &[&str]) -> (String, String) {
    let resolve = format!("localhost:{}:127.0.0.1", addr.port());
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "-v",
        "--max-time",
        "10",
        "--cacert",
        &dir.path("ca.pem"),
        "--resolve",
        &resolve,
    ])
    .args(extra);
    for p in paths {
        cmd.arg(format!("https://localhost:{}{p}", addr.port()));
    }
    let out = cmd.output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn curl_gets_tls13_and_http11_by_alpn_with_keep_alive() {
    let dir = certs("curl");
    let backend = TestBackend::ok("hello");
    let kage = https_kage(&dir, &["--master", &backend.addr.to_string(), "--forward-client-ip"]);
    let (out, err) = curl(
        &dir,
        kage.addr,
        &["-w", " %{http_version} %{http_code}\n"],
        &["/a", "/b"],
    );
    assert_eq!(out, "hello 1.1 200\nhello 1.1 200\n", "{err}");
    assert!(err.contains("TLSv1.3"), "{err}");
    assert!(err.contains("ALPN: server accepted http/1.1"), "{err}");
    assert!(
        err.contains("Re-using existing connection"),
        "keep-alive over TLS: {err}"
    );
    assert_eq!(backend.seen.accepts(), 1, "one master connection for both");
    let forwarded = backend.requests()[0].header("forwarded").unwrap_or_default();
    assert!(forwarded.ends_with(";proto=https"), "{forwarded}");
    // TLS 1.2 too.
    let (out, err) = curl(
        &dir,
        kage.addr,
        &["--tlsv1.2", "--tls-max", "1.2", "-w", " %{http_code}\n"],
        &["/c"],
    );
    assert_eq!(out, "hello 200\n", "{err}");
    assert!(err.contains("TLSv1.2"), "{err}");
}

/// `openssl s_client` with `input` on stdin (kept open until the answer
/// is in); its stdout.
fn s_client(addr: SocketAddr, dir: &TempDir, extra: &[&str], input: &str) -> String {
    let connect = addr.to_string();
    let ca = dir.path("ca.pem");
    let mut child = Reaped(
        Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &connect,
                "-servername",
                "localhost",
                "-CAfile",
                &ca,
            ])
            .args(["-alpn", "http/1.1", "-ign_eof"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    out
}

#[test]
fn openssl_s_client_pipelines_and_resumes_with_a_ticket() {
    let dir = certs("sclient");
    let backend = TestBackend::ok("hi");
    let kage = https_kage(&dir, &["--master", &backend.addr.to_string()]);
    let session = dir.path("session.pem");
    let two = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    let out = s_client(kage.addr, &dir, &["-sess_out", &session], two);
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    assert!(out.contains("ALPN protocol: http/1.1"), "{out}");
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 2, "pipelined: {out}");
    let out = s_client(
        kage.addr,
        &dir,
        &["-sess_in", &session],
        "GET /3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert!(out.contains("Reused, TLSv1.3"), "resumed by ticket: {out}");
    assert!(out.contains("HTTP/1.1 200 OK"), "{out}");
}

#[test]
fn a_bad_handshake_or_garbage_does_not_disturb_other_clients() {
    let dir = certs("garbage");
    let backend = TestBackend::ok("fine");
    let kage = https_kage(&dir, &["--master", &backend.addr.to_string()]);
    // Plain HTTP to the TLS port: refused by the TLS layer, closed.
    let mut plain = TcpStream::connect(kage.addr).unwrap();
    plain.set_read_timeout(Some(QUICK)).unwrap();
    plain.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let _ = plain.read_to_end(&mut buf);
    assert!(!String::from_utf8_lossy(&buf).contains("fine"), "{buf:?}");
    // A client that stops half-way through its handshake stays open...
    let mut stalled = TcpStream::connect(kage.addr).unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01, 0x00, 0x40, 0x01]).unwrap();
    // ...and one that does not trust the certificate fails its own.
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5"])
        .arg(format!("https://127.0.0.1:{}/", kage.addr.port()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    // Others are served the whole time.
    for _ in 0..3 {
        let (out, err) = curl(&dir, kage.addr, &[], &["/"]);
        assert_eq!(out, "fine", "{err}");
    }
    drop(stalled);
}

/// A python HTTPS server answering `name` to every GET (HTTP/1.1,
/// keep-alive), with `cert`/`key`; killed when dropped.
fn python_https(dir: &TempDir, name: &str, cert: &str) -> (Reaped, u16) {
    let port = free_port();
    let script = format!(
        r#"
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = b"{name}"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Peer-Port", str(self.client_address[1]))
        self.send_header("X-Reused", str(self.connection.session_reused))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", {port}), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("{pem}", "{key}")
s.socket = ctx.wrap_socket(s.socket, server_side=True)
s.serve_forever()
"#,
        pem = dir.path(&format!("{cert}.pem")),
        key = dir.path(&format!("{cert}.key")),
    );
    let child = Reaped(
        Command::new("python3")
            .arg("-c")
            .arg(script)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t.elapsed() < QUICK, "python did not start");
        thread::sleep(Duration::from_millis(20));
    }
    (child, port)
}

fn metrics(addr: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5"])
        .arg(format!("http://{addr}/metrics"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls the metrics until `line` is there.
fn wait_metric(addr: &str, line: &str) -> String {
    let t = Instant::now();
    loop {
        let text = metrics(addr);
        if text.contains(line) || t.elapsed() > QUICK {
            return text;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn python_https_master_and_shadow_are_pooled() {
    let dir = certs("python");
    let (_master, mp) = python_https(&dir, "same", "leaf");
    let (_shadow, sp) = python_https(&dir, "same", "leaf");
    let m = format!("https://localhost:{mp}");
    let s = format!("https://localhost:{sp}");
    let metrics_at = format!("127.0.0.1:{}", free_port());
    let log = dir.path("diff.log");
    let kage = https_kage(
        &dir,
        &[
            "--master",
            &m,
            "--shadow",
            &s,
            "--backend-ca",
            &dir.path("ca.pem"),
            "--keep-alive",
            "always",
            "--metrics",
            &metrics_at,
            "--diff-log",
            &log,
            "--forward-client-ip",
        ],
    );
    let mut ports = Vec::new();
    for _ in 0..3 {
        let (out, err) = curl(&dir, kage.addr, &["-D", "-"], &["/x"]);
        assert!(out.ends_with("\r\n\r\nsame"), "{out} {err}");
        let port = out
            .lines()
            .find_map(|l| l.strip_prefix("X-Peer-Port: "))
            .map(str::to_string);
        ports.push(port.unwrap());
    }
    assert!(
        ports.windows(2).all(|w| w[0] == w[1]),
        "one pooled TLS connection to the master: {ports:?}"
    );
    // Without pooling, a new connection per request: resumed.
    let direct = https_kage(
        &dir,
        &["--master", &m, "--backend-ca", &dir.path("ca.pem"), "--pool-idle", "0"],
    );
    let reused: Vec<String> = (0..3)
        .map(|_| {
            let (out, err) = curl(&dir, direct.addr, &["-D", "-"], &["/r"]);
            let reused = out.lines().find_map(|l| l.strip_prefix("X-Reused: "));
            reused.map(str::to_string).unwrap_or(err)
        })
        .collect();
    assert_eq!(
        reused[1..],
        ["True", "True"],
        "TLS sessions to the backend resumed: {reused:?}"
    );
    let text = wait_metric(
        &metrics_at,
        "kage_requests_total{backend=\"shadow1\",outcome=\"complete\"} 3",
    );
    assert!(
        text.contains("kage_requests_total{backend=\"master\",outcome=\"complete\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("kage_requests_total{backend=\"shadow1\",outcome=\"complete\"} 3"),
        "{text}"
    );
}

#[test]
fn an_untrusted_master_is_a_502_and_an_untrusted_shadow_is_invisible() {
    let dir = certs("untrusted");
    make_leaf(&dir, "rogue", "localhost", false);
    let (_good, gp) = python_https(&dir, "good", "leaf");
    let (_rogue, rp) = python_https(&dir, "rogue", "rogue");
    let ca = dir.path("ca.pem");
    // An untrusted master: 502.
    let rogue = format!("https://localhost:{rp}");
    let kage = https_kage(&dir, &["--master", &rogue, "--backend-ca", &ca]);
    let (out, err) = curl(&dir, kage.addr, &["-o", "/dev/null", "-w", "%{http_code}"], &["/"]);
    assert_eq!(out, "502", "{err}");
    drop(kage);
    // An untrusted shadow: the client sees the master's answer; the
    // shadow's outcome is tls.
    let good = format!("https://localhost:{gp}");
    let metrics_at = format!("127.0.0.1:{}", free_port());
    let log = dir.path("diff.log");
    let kage = https_kage(
        &dir,
        &[
            "--master",
            &good,
            "--shadow",
            &rogue,
            "--backend-ca",
            &ca,
            "--metrics",
            &metrics_at,
            "--diff-log",
            &log,
        ],
    );
    let (out, err) = curl(&dir, kage.addr, &["-w", " %{http_code}"], &["/"]);
    assert_eq!(out, "good 200", "{err}");
    let line = "kage_requests_total{backend=\"shadow1\",outcome=\"tls\"} 1";
    let text = wait_metric(&metrics_at, line);
    assert!(text.contains(line), "{text}");
    let diff = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(diff.contains("\"outcome\":\"tls\""), "{diff}");
}

#[test]
fn sni_picks_the_certificate_and_sighup_reloads_it() {
    let dir = certs("sni");
    make_leaf(&dir, "other", "other.test", true);
    let backend = TestBackend::ok("ok");
    let file = dir.path("kage.toml");
    let (cert, key) = (dir.path("live.pem"), dir.path("live.key"));
    std::fs::copy(dir.path("leaf.pem"), &cert).unwrap();
    std::fs::copy(dir.path("leaf.key"), &key).unwrap();
    std::fs::write(
        &file,
        format!(
            "[master]\naddress = \"{}\"\n\n[[tls]]\ncert = \"{cert}\"\nkey = \"{key}\"\n\n[[tls]]\ncert = \"{}\"\nkey = \"{}\"\n",
            backend.addr,
            dir.path("other.pem"),
            dir.path("other.key")
        ),
    )
    .unwrap();
    let kage = Kage::start(&["--config", &file]);
    let port = kage.addr.port();
    let via = |host: &str| {
        let resolve = format!("{host}:{port}:127.0.0.1");
        let out = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "5",
                "--cacert",
                &dir.path("ca.pem"),
                "--resolve",
                &resolve,
            ])
            .arg(format!("https://{host}:{port}/"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    assert_eq!(via("localhost"), "ok");
    assert_eq!(via("other.test"), "ok", "the other certificate by SNI");

    // A connection held open across the reload.
    let mut held = Held::connect(kage.addr, &dir);
    assert!(held.get("/before").contains("200 OK"));
    let before = peer_cert(kage.addr, &dir);
    // New certificate in place of the first; SIGHUP.
    make_leaf(&dir, "fresh", "localhost", true);
    std::fs::copy(dir.path("fresh.pem"), &cert).unwrap();
    std::fs::copy(dir.path("fresh.key"), &key).unwrap();
    kage.signal("HUP");
    let t = Instant::now();
    let fresh = std::fs::read(dir.path("fresh.pem")).unwrap();
    while peer_cert(kage.addr, &dir) == before {
        assert!(t.elapsed() < QUICK, "the reloaded certificate is not offered");
        thread::sleep(Duration::from_millis(50));
    }
    assert!(pem_holds(&fresh, &peer_cert(kage.addr, &dir)));
    assert!(
        held.get("/after").contains("200 OK"),
        "the held connection keeps working"
    );
    // A broken file is refused: the certificate loaded before stays.
    std::fs::write(&cert, "not a certificate").unwrap();
    kage.signal("HUP");
    thread::sleep(Duration::from_millis(300));
    assert!(pem_holds(&fresh, &peer_cert(kage.addr, &dir)));
    assert_eq!(via("localhost"), "ok");
}

/// The DER of the certificate kage offers to `localhost`.
fn peer_cert(addr: SocketAddr, dir: &TempDir) -> Vec<u8> {
    let held = Held::connect(addr, dir);
    held.0
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap()
}

/// Whether PEM text holds `der`.
fn pem_holds(pem: &[u8], der: &[u8]) -> bool {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem).any(|c| c.is_ok_and(|c| c.as_ref() == der))
}

/// A blocking rustls client connection to kage, kept open.
struct Held(rustls::StreamOwned<rustls::ClientConnection, TcpStream>);

impl Held {
    fn connect(addr: SocketAddr, dir: &TempDir) -> Held {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(dir.path("ca.pem")).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let conn = rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
        let sock = TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(QUICK)).unwrap();
        let mut s = rustls::StreamOwned::new(conn, sock);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock).unwrap();
        }
        Held(s)
    }

    /// One request on the held connection; the response head and body.
    fn get(&mut self, path: &str) -> String {
        write!(self.0, "GET {path} HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        self.0.flush().unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).ends_with("ok") {
            let n = self.0.read(&mut buf).unwrap();
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&got).into_owned()
    }
}

#[test]
fn an_upgrade_tunnels_over_tls() {
    let dir = certs("upgrade");
    // Answers 101, then echoes what comes.
    let backend = TestBackend::start(|conn, _| {
        let mut buf = Vec::new();
        if support::read_request(conn, &mut buf).is_none() {
            return;
        }
        let _ = conn.write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n");
        let mut chunk = [0u8; 4096];
        while let Ok(n) = conn.read(&mut chunk) {
            if n == 0 || conn.write_all(&chunk[..n]).is_err() {
                return;
            }
        }
    });
    let kage = https_kage(&dir, &["--master", &backend.addr.to_string()]);
    let mut held = Held::connect(kage.addr, &dir);
    write!(
        held.0,
        "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"
    )
    .unwrap();
    held.0.flush().unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(b"\r\n\r\n") {
        let n = held.0.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 101"), "{got:?}");
    // A large message both ways, through the copy path.
    let message: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    held.0.write_all(&message).unwrap();
    held.0.flush().unwrap();
    let mut echoed = Vec::new();
    while echoed.len() < message.len() {
        let n = held.0.read(&mut buf).unwrap();
        assert!(n > 0, "tunnel closed after {} bytes", echoed.len());
        echoed.extend_from_slice(&buf[..n]);
    }
    assert!(echoed == message, "echoed bytes differ");
}

#[test]
fn a_stalled_handshake_is_cut_at_the_client_timeout() {
    let dir = certs("stalled");
    let backend = TestBackend::ok("x");
    let kage = https_kage(&dir, &["--master", &backend.addr.to_string(), "--client-timeout", "1s"]);
    let mut stalled = TcpStream::connect(kage.addr).unwrap();
    stalled.set_read_timeout(Some(QUICK)).unwrap();
    let t = Instant::now();
    let mut got = Vec::new();
    stalled.read_to_end(&mut got).unwrap();
    assert!(!String::from_utf8_lossy(&got).contains("HTTP/1.1"), "{got:?}");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

#[test]
fn large_bodies_both_ways_cross_the_tls_listener_whole() {
    let dir = certs("large");
    // Answers each request with its body length, then 3 MB of a pattern.
    const DOWN: usize = 3_000_000;
    let backend = TestBackend::http(|req| {
        let body: Vec<u8> = (0..DOWN).map(|i| (i % 253) as u8).collect();
        let mut out = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Got: {}\r\n\r\n",
            body.len(),
            req.body.len()
        )
        .into_bytes();
        out.extend_from_slice(&body);
        out
    });
    let kage = https_kage(&dir, &["--master", &backend.addr.to_string()]);
    let upload = dir.path("up.bin");
    let up: Vec<u8> = (0..2_500_000u32).map(|i| (i % 241) as u8).collect();
    std::fs::write(&upload, &up).unwrap();
    let down = dir.path("down.bin");
    let data = format!("@{upload}");
    let (out, err) = curl(
        &dir,
        kage.addr,
        &["--data-binary", &data, "-o", &down, "-D", "-", "-w", "%{http_code}"],
        &["/up"],
    );
    assert!(out.ends_with("200"), "{out} {err}");
    assert!(
        out.contains("X-Got: 2500000\r\n"),
        "the whole upload reached the master: {out}"
    );
    let got = std::fs::read(&down).unwrap();
    assert_eq!(got.len(), DOWN);
    assert!(
        got.iter().enumerate().all(|(i, b)| *b == (i % 253) as u8),
        "the download arrived whole"
    );
    assert_eq!(backend.requests()[0].body, up);
}

#[test]
fn a_slow_tls_reader_is_backpressure_not_a_spin() {
    let dir = certs("slow");
    const DOWN: usize = 1_500_000;
    let backend = TestBackend::http(|_| {
        let mut out = format!("HTTP/1.1 200 OK\r\nContent-Length: {DOWN}\r\n\r\n").into_bytes();
        out.extend((0..DOWN).map(|i| (i % 249) as u8));
        out
    });
    let kage = https_kage(&dir, &["--master", &backend.addr.to_string()]);
    let mut held = Held::connect(kage.addr, &dir);
    write!(held.0, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    held.0.flush().unwrap();
    let before = kage.cpu_ticks();
    let t = Instant::now();
    // 16 KiB every 10 ms: about a second for the whole answer.
    let mut got = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let body_start = |got: &[u8]| got.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
    while body_start(&got).is_none_or(|start| got.len() < start + DOWN) {
        let n = held.0.read(&mut buf).unwrap();
        assert!(n > 0, "closed after {} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
        thread::sleep(Duration::from_millis(10));
    }
    let (took, ticks) = (t.elapsed(), kage.cpu_ticks() - before);
    let body = &got[body_start(&got).unwrap_or(0)..];
    assert_eq!(body.len(), DOWN);
    assert!(String::from_utf8_lossy(&got[..20]).starts_with("HTTP/1.1 200"));
    assert!(
        body.iter().enumerate().all(|(i, b)| *b == (i % 249) as u8),
        "the answer arrived whole"
    );
    // Waiting for a slow reader costs nothing between its reads.
    assert!(ticks < 50, "{ticks} ticks of CPU over {took:?}");
}
