//! Real sockets on 127.0.0.1: scripted backends, an in-process proxy on its
//! own thread, and a raw client.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use kage::http::{BodyDecoder, HeadRewrite, HeadStatus, RequestContext, RequestHead, ResponseHead};
use kage::proxy::{
    Backend, Config, Exchange, Hooks, Outcome, Proxy, Request, Role, Selection, Served, default_selection,
};
use kage::runtime::resolve::Lookup;
use kage::runtime::server::{Server, ShutdownMode, StopHandle};

pub mod process;
#[allow(unused_imports)]
pub use process::{Kage, Reaped, free_port};

/// Generous bound for anything that should be quick.
pub const QUICK: Duration = Duration::from_secs(5);

/// A request as a test backend received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub head: Vec<u8>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn head_str(&self) -> String {
        String::from_utf8_lossy(&self.head).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        let text = self.head_str();
        text.lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    }
}

/// What a test backend does with a connection.
pub type Script = dyn Fn(&mut TcpStream, &Seen) + Send + Sync;

/// What a backend saw.
#[derive(Default)]
pub struct Seen {
    pub accepts: AtomicUsize,
    pub requests: Mutex<Vec<Received>>,
}

impl Seen {
    pub fn requests(&self) -> Vec<Received> {
        self.requests.lock().unwrap().clone()
    }
    pub fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }
}

/// A backend on 127.0.0.1 running a script per connection, each on a thread.
pub struct TestBackend {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
}

impl TestBackend {
    pub fn start(script: impl Fn(&mut TcpStream, &Seen) + Send + Sync + 'static) -> Self {
        Self::start_at("127.0.0.1:0".parse().unwrap(), script)
    }

    /// The same, listening on `bind`.
    pub fn start_at(bind: SocketAddr, script: impl Fn(&mut TcpStream, &Seen) + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind(bind).unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let script: Arc<Script> = Arc::new(script);
        let s = seen.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                s.accepts.fetch_add(1, Ordering::SeqCst);
                let (s, script) = (s.clone(), script.clone());
                thread::spawn(move || script(&mut conn, &s));
            }
        });
        TestBackend { addr, seen }
    }

    /// Answers every request on the connection with `respond(request)`,
    /// keeping the connection while the request allows.
    pub fn http(respond: impl Fn(&Received) -> Vec<u8> + Send + Sync + 'static) -> Self {
        Self::start(move |conn, seen| {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
            let mut buf = Vec::new();
            while let Some(req) = read_request(conn, &mut buf) {
                seen.requests.lock().unwrap().push(req.clone());
                let out = respond(&req);
                if conn.write_all(&out).is_err() {
                    return;
                }
                if req
                    .header("connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("close"))
                {
                    return;
                }
            }
        })
    }

    /// `200 OK` with `body`, keep-alive.
    pub fn ok(body: &'static str) -> Self {
        Self::http(move |_| ok_response(body))
    }

    pub fn requests(&self) -> Vec<Received> {
        self.seen.requests()
    }
}

pub fn ok_response(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Backend: test\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Reads one request (head and body) with the crate's own parser.
pub fn read_request(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Received> {
    let mut head = RequestHead::new();
    let len = loop {
        if let Ok(HeadStatus::Complete(len)) = head.parse(buf) {
            break len;
        }
        if head.parse(buf).is_err() {
            return None;
        }
        read_more(conn, buf)?;
    };
    let mut body = Vec::new();
    let mut dec = BodyDecoder::new(head.framing());
    let mut pos = len;
    loop {
        let s = dec.scan(&buf[pos..], |_| {}).ok()?;
        body.extend_from_slice(&buf[pos..pos + s.consumed]);
        pos += s.consumed;
        if s.done {
            break;
        }
        read_more(conn, buf)?;
    }
    let received = Received {
        head: buf[..len].to_vec(),
        body,
    };
    buf.drain(..pos);
    Some(received)
}

fn read_more(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 16 * 1024];
    match conn.read(&mut chunk) {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Some(())
        }
    }
}

/// A port nothing listens on.
pub fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// One exchange as the recording hooks saw it.
#[derive(Debug, Clone)]
pub struct Seenx {
    pub target: String,
    pub reports: Vec<(String, Outcome, Option<u16>, Vec<u8>)>,
}

impl Seenx {
    pub fn outcome(&self, name: &str) -> Outcome {
        self.reports
            .iter()
            .find(|r| r.0 == name)
            .map(|r| r.1)
            .unwrap_or_else(|| panic!("no report for {name}"))
    }
}

/// One request's end as `request_done` saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedSeen {
    pub id: u64,
    pub target: Option<String>,
    pub status: Option<u16>,
    pub body_bytes: u64,
    pub complete: bool,
    pub shadowed: bool,
}

/// A selection policy as a closure.
pub type SelectFn = Box<dyn FnMut(&Request<'_>, &[Backend]) -> Selection + Send>;
/// A munging policy as a closure.
pub type MungeFn = Box<dyn FnMut(&Backend, &mut HeadRewrite) + Send>;

/// Hooks that select with a closure and send every exchange to a channel.
pub struct Recorder {
    pub select: SelectFn,
    pub munge: MungeFn,
    pub tx: Sender<Seenx>,
    pub served: Sender<ServedSeen>,
    pub selections: Arc<AtomicUsize>,
}

impl Hooks for Recorder {
    fn select_backends(&mut self, request: &Request<'_>, backends: &[Backend]) -> Selection {
        self.selections.fetch_add(1, Ordering::SeqCst);
        (self.select)(request, backends)
    }

    fn munge_request(&mut self, backend: &Backend, _: &Request<'_>, rewrite: &mut HeadRewrite) {
        (self.munge)(backend, rewrite)
    }

    fn backends_finished(&mut self, exchange: &Exchange<'_>) {
        let reports = exchange
            .iter()
            .map(|(b, r)| (b.name.clone(), r.outcome, r.status(), r.response_body.clone()))
            .collect();
        let target = String::from_utf8_lossy(exchange.request.target()).into_owned();
        let _ = self.tx.send(Seenx { target, reports });
    }

    fn request_done(&mut self, s: &Served<'_>) {
        let _ = self.served.send(ServedSeen {
            id: s.id,
            target: s.request.map(|r| String::from_utf8_lossy(r.target()).into_owned()),
            status: s.status,
            body_bytes: s.body_bytes,
            complete: s.complete,
            shadowed: s.shadowed,
        });
    }
}

/// A proxy running on its own thread.
pub struct TestProxy {
    pub addr: SocketAddr,
    pub exchanges: Receiver<Seenx>,
    pub served: Receiver<ServedSeen>,
    pub selections: Arc<AtomicUsize>,
    stop: StopHandle,
    thread: Option<JoinHandle<()>>,
}

/// Builder for a test proxy.
pub struct ProxySpec {
    pub master: SocketAddr,
    pub shadows: Vec<SocketAddr>,
    pub tweak: Box<dyn FnOnce(&mut Config)>,
    pub select: SelectFn,
    pub munge: MungeFn,
    /// The proxy's resolver for backends with a `dns_name` (the system's
    /// when `None`).
    pub lookup: Option<Lookup>,
}

impl ProxySpec {
    pub fn new(master: SocketAddr, shadows: &[SocketAddr]) -> Self {
        ProxySpec {
            master,
            shadows: shadows.to_vec(),
            tweak: Box::new(|_| {}),
            select: Box::new(default_selection),
            munge: Box::new(|_, _| {}),
            lookup: None,
        }
    }

    pub fn tweak(mut self, f: impl FnOnce(&mut Config) + 'static) -> Self {
        self.tweak = Box::new(f);
        self
    }

    pub fn select(mut self, f: impl FnMut(&Request<'_>, &[Backend]) -> Selection + Send + 'static) -> Self {
        self.select = Box::new(f);
        self
    }

    /// Every backend for every method.
    pub fn shadow_everything(self) -> Self {
        self.select(|_, backends| Selection::all(backends))
    }

    pub fn munge(mut self, f: impl FnMut(&Backend, &mut HeadRewrite) + Send + 'static) -> Self {
        self.munge = Box::new(f);
        self
    }

    /// Looks backend host names up with `lookup`.
    pub fn lookup(mut self, lookup: Lookup) -> Self {
        self.lookup = Some(lookup);
        self
    }

    pub fn start(self) -> TestProxy {
        let mut backends = vec![Backend::new("master", self.master, Role::Master)];
        for (i, s) in self.shadows.iter().enumerate() {
            backends.push(Backend::new(format!("shadow{}", i + 1), *s, Role::Shadow));
        }
        let mut cfg = Config::new("127.0.0.1:0".parse().unwrap(), backends);
        (self.tweak)(&mut cfg);
        let (tx, exchanges) = channel();
        let (served_tx, served) = channel();
        let selections = Arc::new(AtomicUsize::new(0));
        let hooks = Recorder {
            select: self.select,
            munge: self.munge,
            tx,
            served: served_tx,
            selections: selections.clone(),
        };
        let mut proxy = match self.lookup {
            Some(lookup) => Proxy::with_lookup(cfg, hooks, lookup),
            None => Proxy::new(cfg, hooks),
        }
        .expect("proxy starts");
        let addr = proxy.local_addr();
        let mut server = Server::new().unwrap();
        let stop = server.stop_handle();
        let thread = thread::spawn(move || server.run(&mut [&mut proxy], 1).expect("proxy loop"));
        TestProxy {
            addr,
            exchanges,
            served,
            selections,
            stop,
            thread: Some(thread),
        }
    }
}

impl TestProxy {
    /// The next exchange reported to `backends_finished`.
    pub fn exchange(&self) -> Seenx {
        self.exchanges
            .recv_timeout(QUICK)
            .expect("backends_finished was called")
    }

    /// The next request's end reported to `request_done`.
    pub fn served(&self) -> ServedSeen {
        self.served.recv_timeout(QUICK).expect("request_done was called")
    }

    pub fn stop(&mut self, mode: ShutdownMode) -> Duration {
        let t = Instant::now();
        self.stop.stop(mode);
        if let Some(t) = self.thread.take() {
            t.join().expect("proxy thread");
        }
        t.elapsed()
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop(ShutdownMode::Fast);
        }
    }
}

/// A response as the client read it.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A raw client connection.
pub struct Client {
    pub conn: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Self {
        let conn = TcpStream::connect(addr).expect("connect to proxy");
        conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client { conn, buf: Vec::new() }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.conn.write_all(bytes).expect("send");
    }

    /// Reads one response to a request with method `method`.
    pub fn response(&mut self, ctx: RequestContext) -> Option<Response> {
        let mut head = ResponseHead::new();
        let len = loop {
            match head.parse(&self.buf, ctx) {
                Ok(HeadStatus::Complete(len)) => break len,
                Ok(HeadStatus::Partial) => read_more(&mut self.conn, &mut self.buf)?,
                Err(e) => panic!("client got an invalid response: {e}"),
            }
        };
        let text = String::from_utf8_lossy(&self.buf[..len]).into_owned();
        let status = head.status();
        if head.framing() == kage::http::Framing::Tunnel {
            // No HTTP after a 101 or a 2xx to CONNECT: the head alone.
            self.buf.drain(..len);
            return Some(Response {
                status,
                head: text,
                body: Vec::new(),
            });
        }
        let interim = head.is_interim();
        let mut body = Vec::new();
        let mut dec = BodyDecoder::new(head.framing());
        let mut pos = len;
        loop {
            let s = dec
                .scan(&self.buf[pos..], |r| body.extend_from_slice(&self.buf[pos..][r]))
                .expect("valid body");
            pos += s.consumed;
            if s.done {
                break;
            }
            if read_more(&mut self.conn, &mut self.buf).is_none() {
                if dec.finish().is_err() {
                    self.buf.drain(..pos);
                    return Some(Response {
                        status,
                        head: format!("{text}[TRUNCATED]"),
                        body,
                    });
                }
                break;
            }
        }
        self.buf.drain(..pos);
        let _ = interim;
        Some(Response {
            status,
            head: text,
            body,
        })
    }

    pub fn get(&mut self) -> Response {
        self.response(RequestContext::default()).expect("a response")
    }

    /// True when the proxy closed the connection (EOF or reset) within
    /// `QUICK`.
    pub fn is_closed(&mut self) -> bool {
        self.is_closed_within(QUICK)
    }

    /// True when the proxy closed the connection (EOF or reset) within
    /// `wait`; false when it is still open then (or sent a byte).
    pub fn is_closed_within(&mut self, wait: Duration) -> bool {
        let _ = self.conn.set_read_timeout(Some(wait));
        let mut b = [0u8; 1];
        match self.conn.read(&mut b) {
            Ok(n) => n == 0,
            Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
        }
    }

    pub fn shutdown_write(&self) {
        let _ = self.conn.shutdown(Shutdown::Write);
    }
}

/// One request on a fresh connection; the response.
pub fn roundtrip(addr: SocketAddr, request: &[u8]) -> Response {
    let mut c = Client::connect(addr);
    c.send(request);
    c.get()
}

pub const GET: &[u8] = b"GET /hello HTTP/1.1\r\nHost: test\r\n\r\n";
