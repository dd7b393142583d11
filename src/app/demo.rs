//! `kage demo`: two sample backends, the proxy with comparison in front of
//! them, a few dozen requests, and a short summary. Everything on loopback
//! ports the system picks; nothing outlives the call.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, Sender};
use std::thread;
use std::time::{Duration, Instant};

use crate::compare::{Compare, Difference, PathPattern, PathRule, Rules, Tally, Verdict, compare, render_summary};
use crate::http::{BodyDecoder, HeadStatus, RequestContext, RequestHead, ResponseHead};
use crate::proxy::{Backend, Config, Exchange, Hooks, KeepAlive, Proxy, Role};
use crate::runtime::server::{Server, ShutdownMode};

/// Requests the demo sends through the proxy.
pub const DEMO_REQUESTS: usize = 40;
/// How much slower the "new version" answers.
pub const NEW_VERSION_DELAY: Duration = Duration::from_millis(2);
/// Longest wait for any one step of the demo.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// What the demo's hooks hand over per exchange: per backend, its name,
/// status and total time.
type Timings = Vec<(String, Option<u16>, Option<Duration>)>;

/// Records the timings of every exchange for the summary, and the first
/// counted difference as an example.
struct Recorder {
    tx: Sender<Timings>,
    rules: Rules,
    example: Option<Difference>,
}

impl Hooks for Recorder {
    fn backends_finished(&mut self, exchange: &Exchange<'_>) {
        let timings = exchange
            .iter()
            .map(|(b, r)| (b.name.clone(), r.status(), r.total))
            .collect();
        let _ = self.tx.send(timings);
        if self.example.is_none() {
            let reports: Vec<_> = exchange.iter().map(|(_, r)| r).collect();
            if let [master, new, ..] = reports[..] {
                self.example = compare(master, new, "new", &self.rules)
                    .into_iter()
                    .find(Difference::counts);
            }
        }
    }
}

/// Runs the demo and writes its summary to `out`.
pub fn run(out: &mut impl Write) -> io::Result<()> {
    let master = sample_backend(false)?;
    let new = sample_backend(true)?;
    let backends = vec![
        Backend::new("master", master, Role::Master),
        Backend::new("new", new, Role::Shadow),
    ];
    let mut cfg = Config::new("127.0.0.1:0".parse().expect("a literal address"), backends);
    cfg.keep_alive = KeepAlive::Always;
    let rules = Rules {
        paths: vec![(
            PathPattern::parse("/generated_at").map_err(io::Error::other)?,
            PathRule::Ignore,
        )],
        ..Rules::default()
    };
    let (tx, rx) = mpsc::channel();
    let recorder = Recorder {
        tx,
        rules: rules.clone(),
        example: None,
    };
    let hooks = Compare::new(recorder, rules);
    let mut proxy = Proxy::new(cfg, hooks)?;
    let addr = proxy.local_addr();
    let mut server = Server::new()?;
    let stop = server.stop_handle();
    let loop_thread = thread::spawn(move || {
        let result = server.run(&mut [&mut proxy], 1);
        result.map(|()| proxy)
    });
    writeln!(
        out,
        "kage demo: master on {master}, new version on {new} (answers {} ms later, one JSON field differs),\n\
         proxy on {addr} with --keep-alive always, ignoring /generated_at\n",
        NEW_VERSION_DELAY.as_millis()
    )?;
    let sent = send_requests(addr);
    let mut timings = Vec::new();
    for _ in 0..DEMO_REQUESTS {
        match rx.recv_timeout(STEP_TIMEOUT) {
            Ok(t) => timings.push(t),
            Err(_) => break,
        }
    }
    stop.stop(ShutdownMode::Graceful);
    let proxy = loop_thread
        .join()
        .map_err(|_| io::Error::other("the proxy thread panicked"))??;
    let client = sent?;
    writeln!(
        out,
        "sent {} requests through the proxy; the client got every answer from the master\n",
        DEMO_REQUESTS
    )?;
    write!(out, "{}", summary(client, &timings, proxy.hooks()))?;
    if let Some(d) = proxy.hooks().inner().example.as_ref() {
        writeln!(
            out,
            "\nfor example, {} {}: master {}, new {}",
            d.kind.as_str(),
            d.path.as_deref().unwrap_or(""),
            d.master.as_deref().unwrap_or("-"),
            d.shadow.as_deref().unwrap_or("-")
        )?;
    }
    writeln!(
        out,
        "ignored: every difference of the exchange was on an ignored path (/generated_at, by\n\
         --ignore-json), so it counts as equal. The client row is what the client saw\n\
         through the proxy; the shadow never slows it.\n\n\
         next, in front of your own backends:\n  \
         kage --listen 127.0.0.1:8080 --master 127.0.0.1:9000 --shadow new=127.0.0.1:9001 \\\n    \
         --keep-alive always --diff-log -\n\
         (kage --help for every option, kage help route for the TCP router)"
    )?;
    Ok(())
}

fn summary(client: Tally, timings: &[Timings], compare: &Compare<Recorder>) -> String {
    let mut tallies = vec![client, Tally::new("master"), Tally::new("new")];
    for (name, status, total) in timings.iter().flatten() {
        if let Some(t) = tallies.iter_mut().find(|t| &t.name == name) {
            t.add(*status, *total);
        }
    }
    let stats = compare.stats();
    let verdicts: Vec<(&'static str, u64)> = [Verdict::Match, Verdict::Mismatch, Verdict::Ignored]
        .iter()
        .map(|v| (v.as_str(), stats.comparisons(1, *v)))
        .collect();
    render_summary(&tallies, &[("new".into(), verdicts)], &compare.summary().differences)
}

/// Sends the demo's requests on one keep-alive connection; the statuses
/// and times the client saw.
fn send_requests(addr: SocketAddr) -> io::Result<Tally> {
    let mut conn = TcpStream::connect(addr)?;
    conn.set_read_timeout(Some(STEP_TIMEOUT))?;
    let mut buf = Vec::new();
    let mut client = Tally::new("client");
    for i in 0..DEMO_REQUESTS {
        let req = format!("GET /api/items/{i} HTTP/1.1\r\nHost: demo\r\nAccept: application/json\r\n\r\n");
        let t = Instant::now();
        conn.write_all(req.as_bytes())?;
        let status = read_response(&mut conn, &mut buf)?;
        client.add(Some(status), Some(t.elapsed()));
    }
    Ok(client)
}

/// Reads one response (head and body) with the crate's own parser.
fn read_response(conn: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<u16> {
    let mut head = ResponseHead::new();
    let mut chunk = [0u8; 4096];
    let len = loop {
        match head.parse(buf, RequestContext::default()) {
            Ok(HeadStatus::Complete(len)) => break len,
            Ok(HeadStatus::Partial) => fill(conn, buf, &mut chunk)?,
            Err(e) => return Err(io::Error::other(format!("invalid response: {e}"))),
        }
    };
    let mut body = BodyDecoder::new(head.framing());
    let mut pos = len;
    loop {
        let scanned = body
            .scan(&buf[pos..], |_| {})
            .map_err(|e| io::Error::other(format!("invalid response body: {e}")))?;
        pos += scanned.consumed;
        if scanned.done {
            break;
        }
        fill(conn, buf, &mut chunk)?;
    }
    buf.drain(..pos);
    Ok(head.status())
}

fn fill(conn: &mut TcpStream, buf: &mut Vec<u8>, chunk: &mut [u8]) -> io::Result<()> {
    let n = conn.read(chunk)?;
    if n == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"));
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

/// A sample JSON API on an ephemeral port, a thread per connection. The
/// new version includes tax in its price and is a little slower.
fn sample_backend(new_version: bool) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            thread::spawn(move || serve(conn, new_version));
        }
    });
    Ok(addr)
}

fn serve(mut conn: TcpStream, new_version: bool) {
    let _ = conn.set_read_timeout(Some(STEP_TIMEOUT));
    let (mut buf, mut chunk) = (Vec::new(), [0u8; 4096]);
    let mut served = 0u64;
    loop {
        let mut head = RequestHead::new();
        let len = loop {
            match head.parse(&buf) {
                Ok(HeadStatus::Complete(len)) => break len,
                Ok(HeadStatus::Partial) if fill(&mut conn, &mut buf, &mut chunk).is_ok() => {}
                _ => return,
            }
        };
        let path = String::from_utf8_lossy(head.path(&buf)).into_owned();
        buf.drain(..len);
        let id: u64 = path.rsplit('/').next().and_then(|s| s.parse().ok()).unwrap_or(0);
        let cents = 1000 + id * 25;
        // Every fourth item is tax-exempt: the versions agree there.
        let price = if new_version && id % 4 != 0 {
            cents * 6 / 5
        } else {
            cents
        };
        if new_version {
            thread::sleep(NEW_VERSION_DELAY);
        }
        served += 1;
        let body = format!(
            r#"{{"id":{id},"name":"item {id}","price":{price},"currency":"EUR","generated_at":"{}-{served}"}}"#,
            if new_version { "new" } else { "master" }
        );
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if conn.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}
