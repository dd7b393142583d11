//! Embedding the kage proxy in a host's own mio event loop.
//!
//! The host owns the [`mio::Poll`] and serves its own small line protocol on
//! one TCP port: every line received is answered with `echo: <line>`, and a
//! line `quit` stops the whole program gracefully. In the same loop, on the
//! same thread, a [`kage::proxy::Proxy`] shadows HTTP traffic on another port.
//!
//! What it shows:
//!
//! * the host picks a token range for the proxy
//!   (`PROXY_FIRST_TOKEN..PROXY_FIRST_TOKEN + proxy.tokens_needed()`) and keeps
//!   its own tokens below it;
//! * every event goes to [`Proxy::handle_event`] first, which returns false for
//!   tokens that are not the proxy's, and the host handles those itself;
//! * the poll timeout is the sooner of the proxy's [`Proxy::next_timeout`] and
//!   the host's own deadline, and [`Proxy::on_timeout`] is called when due;
//! * `quit` calls [`Proxy::shutdown`] with [`ShutdownMode::Graceful`] and the
//!   loop keeps running until [`Proxy::is_done`] (and the host's own
//!   connections are flushed), then the program exits 0.
//!
//! ```text
//! cargo run --example embed -- --proxy-listen 127.0.0.1:8080 \
//!     --line-listen 127.0.0.1:7070 --master 127.0.0.1:9000 [--shadow [NAME=]HOST:PORT]...
//! ```
//!
//! On start it prints one line, `proxy=<addr> line=<addr>`, with the bound
//! addresses (so port 0 works).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use kage::proxy::{Backend, Config, DefaultHooks, Proxy, Role};
use kage::runtime::server::ShutdownMode;
use log::{info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token};
use slab::Slab;

/// The host's line listener.
const LINE_LISTENER: Token = Token(0);
/// Line connections use tokens `LINE_CONN_BASE + slab key`, below the proxy's range.
const LINE_CONN_BASE: usize = 1;
/// First token handed to the proxy; the host keeps everything below it.
const PROXY_FIRST_TOKEN: usize = 1000;
/// Most line connections at once (their tokens must stay below the proxy's).
const MAX_LINE_CONNS: usize = PROXY_FIRST_TOKEN - LINE_CONN_BASE;
/// Longest line accepted, in bytes.
const MAX_LINE: usize = 8 * 1024;
/// Replies buffered for one connection before the host stops reading from it.
const MAX_PENDING_OUT: usize = 64 * 1024;
/// After `quit`, how long line connections get to flush before being closed.
const LINE_FLUSH_GRACE: Duration = Duration::from_secs(2);

const USAGE: &str =
    "usage: embed --proxy-listen ADDR --line-listen ADDR --master HOST:PORT [--shadow [NAME=]HOST:PORT]...";

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("embed: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("embed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The command line.
struct Args {
    proxy_listen: SocketAddr,
    line_listen: SocketAddr,
    backends: Vec<Backend>,
}

impl Args {
    /// Parses the flags (without the program name).
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
        let mut proxy_listen = None;
        let mut line_listen = None;
        let mut master = None;
        let mut shadows = Vec::new();
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--proxy-listen" => proxy_listen = Some(resolve(&value()?)?),
                "--line-listen" => line_listen = Some(resolve(&value()?)?),
                "--master" => master = Some(Backend::new("master", resolve(&value()?)?, Role::Master)),
                "--shadow" => {
                    let v = value()?;
                    let (name, addr) = match v.split_once('=') {
                        Some((name, addr)) => (name.to_string(), addr),
                        None => (format!("shadow{}", shadows.len() + 1), v.as_str()),
                    };
                    shadows.push(Backend::new(name, resolve(addr)?, Role::Shadow));
                }
                "-h" | "--help" => return Err("help requested".into()),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        let master = master.ok_or("--master is required")?;
        Ok(Args {
            proxy_listen: proxy_listen.ok_or("--proxy-listen is required")?,
            line_listen: line_listen.ok_or("--line-listen is required")?,
            backends: std::iter::once(master).chain(shadows).collect(),
        })
    }
}

/// `HOST:PORT` to its first address.
fn resolve(v: &str) -> Result<SocketAddr, String> {
    v.to_socket_addrs()
        .map_err(|e| format!("{v}: expected HOST:PORT ({e})"))?
        .next()
        .ok_or_else(|| format!("{v}: resolves to no address"))
}

/// The whole program: one poll, the host's line service and the proxy.
fn run(args: Args) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut proxy = Proxy::new(Config::new(args.proxy_listen, args.backends), DefaultHooks)?;
    let proxy_tokens = PROXY_FIRST_TOKEN..PROXY_FIRST_TOKEN + proxy.tokens_needed();
    proxy.register(poll.registry(), proxy_tokens)?;

    let mut line = LineService::bind(args.line_listen, poll.registry())?;

    println!("proxy={} line={}", proxy.local_addr(), line.local_addr);
    io::stdout().flush()?;

    let mut events = Events::with_capacity(1024);
    let mut stopping = false;
    loop {
        // The sooner of the proxy's deadline and the host's own. A little
        // slack so a deadline is not polled for just before it is due.
        let timeout = [proxy.next_timeout(), line.next_timeout()]
            .into_iter()
            .flatten()
            .min()
            .map(|t| t + Duration::from_micros(500));
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        for event in &events {
            if proxy.handle_event(poll.registry(), event) {
                continue;
            }
            line.handle_event(poll.registry(), event);
        }

        let now = Instant::now();
        if proxy.next_deadline().is_some_and(|d| d <= now) {
            proxy.on_timeout(poll.registry(), now);
        }
        line.on_timeout(poll.registry(), now);

        if line.quit_requested && !stopping {
            stopping = true;
            info!("quit: stopping gracefully");
            proxy.shutdown(poll.registry(), ShutdownMode::Graceful, now);
            line.shutdown(poll.registry(), now);
        }
        if stopping && proxy.is_done() && line.is_done() {
            info!("stopped");
            return Ok(());
        }
    }
}

/// The host's own service: a line protocol, echoing each line.
struct LineService {
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    conns: Slab<LineConn>,
    /// Some connection sent `quit`.
    quit_requested: bool,
    /// After a shutdown: when the remaining connections are closed anyway.
    force_close_at: Option<Instant>,
}

impl LineService {
    /// Binds and registers the listener.
    fn bind(addr: SocketAddr, registry: &Registry) -> io::Result<LineService> {
        let mut listener = TcpListener::bind(addr)?;
        let local_addr = listener.local_addr()?;
        registry.register(&mut listener, LINE_LISTENER, Interest::READABLE)?;
        Ok(LineService {
            listener: Some(listener),
            local_addr,
            conns: Slab::new(),
            quit_requested: false,
            force_close_at: None,
        })
    }

    /// Handles one of the host's events.
    fn handle_event(&mut self, registry: &Registry, event: &mio::event::Event) {
        match event.token() {
            LINE_LISTENER => self.accept(registry),
            Token(t) if (LINE_CONN_BASE..PROXY_FIRST_TOKEN).contains(&t) => {
                let key = t - LINE_CONN_BASE;
                let Some(conn) = self.conns.get_mut(key) else { return };
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    conn.readable = true;
                }
                self.drive(registry, key);
            }
            Token(t) => warn!("event for unknown token {t}"),
        }
    }

    /// Accepts every pending connection.
    fn accept(&mut self, registry: &Registry) {
        loop {
            let Some(listener) = self.listener.as_ref() else { return };
            let (mut sock, peer) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and the like: a real host would pause accepting.
                    warn!("line accept failed: {e}");
                    return;
                }
            };
            if self.conns.len() >= MAX_LINE_CONNS {
                warn!("{peer}: too many line connections, closing it");
                continue;
            }
            let entry = self.conns.vacant_entry();
            let key = entry.key();
            if let Err(e) = registry.register(
                &mut sock,
                Token(LINE_CONN_BASE + key),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                warn!("{peer}: cannot register: {e}");
                continue;
            }
            info!("{peer}: line connection");
            entry.insert(LineConn::new(sock, peer));
            self.drive(registry, key);
        }
    }

    /// Moves one connection along and drops it once finished.
    fn drive(&mut self, registry: &Registry, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else { return };
        if conn.drive() {
            self.quit_requested = true;
        }
        if conn.is_finished() {
            let mut conn = self.conns.remove(key);
            let _ = registry.deregister(&mut conn.sock);
            info!("{}: line connection closed", conn.peer);
        }
    }

    /// Stops accepting; every connection closes once its replies are sent.
    fn shutdown(&mut self, registry: &Registry, now: Instant) {
        if let Some(mut listener) = self.listener.take() {
            let _ = registry.deregister(&mut listener);
        }
        self.force_close_at = Some(now + LINE_FLUSH_GRACE);
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.closing = true;
            }
            self.drive(registry, key);
        }
    }

    /// The host's own next deadline.
    fn next_timeout(&self) -> Option<Duration> {
        self.force_close_at
            .filter(|_| !self.conns.is_empty())
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Closes whatever is left once the flush grace is over.
    fn on_timeout(&mut self, registry: &Registry, now: Instant) {
        if self.force_close_at.is_some_and(|d| d <= now) {
            for mut conn in self.conns.drain() {
                warn!("{}: replies not flushed in time, closing", conn.peer);
                let _ = registry.deregister(&mut conn.sock);
            }
        }
    }

    /// Shut down and every connection closed.
    fn is_done(&self) -> bool {
        self.listener.is_none() && self.conns.is_empty()
    }
}

/// One line-protocol connection.
struct LineConn {
    sock: TcpStream,
    peer: SocketAddr,
    input: Vec<u8>,
    output: Vec<u8>,
    /// There may be bytes to read (set by events, cleared on `WouldBlock`).
    readable: bool,
    /// The peer closed its side.
    read_closed: bool,
    /// Close once the replies are sent (after `quit`, an error, or a shutdown).
    closing: bool,
    /// A socket error: close now.
    failed: bool,
}

impl LineConn {
    /// A fresh connection, assumed readable.
    fn new(sock: TcpStream, peer: SocketAddr) -> LineConn {
        LineConn {
            sock,
            peer,
            input: Vec::new(),
            output: Vec::new(),
            readable: true,
            read_closed: false,
            closing: false,
            failed: false,
        }
    }

    /// Reads, answers complete lines and writes as far as the socket allows.
    /// Returns true when a `quit` line was received.
    fn drive(&mut self) -> bool {
        let mut quit = false;
        loop {
            self.read();
            quit |= self.answer_lines();
            self.write();
            // Reading stopped only because too many replies were pending and
            // the writes made room: read on.
            if !(self.wants_read() && self.readable) || self.output.len() >= MAX_PENDING_OUT {
                return quit;
            }
        }
    }

    /// Whether more input is wanted at all.
    fn wants_read(&self) -> bool {
        !self.read_closed && !self.closing && !self.failed
    }

    /// Reads until `WouldBlock`, EOF, an error or too many pending replies.
    fn read(&mut self) {
        let mut buf = [0u8; 4096];
        while self.readable && self.wants_read() && self.output.len() < MAX_PENDING_OUT {
            match self.sock.read(&mut buf) {
                Ok(0) => self.read_closed = true,
                Ok(n) => self.input.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    warn!("{}: read failed: {e}", self.peer);
                    self.failed = true;
                }
            }
        }
    }

    /// Answers every complete line; true when one was `quit`.
    fn answer_lines(&mut self) -> bool {
        while !self.closing {
            let Some(end) = self.input.iter().position(|&b| b == b'\n') else {
                if self.input.len() > MAX_LINE {
                    self.output.extend_from_slice(b"error: line too long\n");
                    self.closing = true;
                }
                return false;
            };
            let raw: Vec<u8> = self.input.drain(..=end).collect();
            let text = String::from_utf8_lossy(&raw);
            let text = text.trim_end_matches(['\n', '\r']);
            if text == "quit" {
                self.output.extend_from_slice(b"bye\n");
                self.closing = true;
                return true;
            }
            self.output.extend_from_slice(format!("echo: {text}\n").as_bytes());
        }
        false
    }

    /// Writes pending replies until done or `WouldBlock`.
    fn write(&mut self) {
        while !self.output.is_empty() && !self.failed {
            match self.sock.write(&self.output) {
                Ok(0) => {
                    warn!("{}: write returned 0", self.peer);
                    self.failed = true;
                }
                Ok(n) => {
                    self.output.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    warn!("{}: write failed: {e}", self.peer);
                    self.failed = true;
                }
            }
        }
    }

    /// Nothing left to do: the connection can be dropped.
    fn is_finished(&self) -> bool {
        self.failed || ((self.read_closed || self.closing) && self.output.is_empty())
    }
}
