//! One routed connection: peek until the router decides, connect (in
//! failover order), replay the peeked or replacement bytes, then splice both
//! ways with backpressure and half-close.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::Registry;
use mio::net::TcpStream;

use super::settings::Settings;
use super::{Decision, Router};
use crate::runtime::buffer::BufferPool;
use crate::runtime::flow::{self, Flow, Side};
use crate::runtime::net::{self, Io, Readiness};
use crate::runtime::pipe::{self, PipePool};
use crate::runtime::tokens::Tokens;
use crate::runtime::transport::Stream;

/// Bytes buffered in each direction while splicing (the client-to-server
/// buffer also holds the peeked bytes: it is at least `max_peek` long).
pub const SPLICE_BUFFER: usize = 64 * 1024;

/// Passes of one connection's pump per wake-up. A connection with work left
/// after them yields to the others and is pumped again on the next turn of
/// the loop.
pub const SPLICE_PASSES: usize = 16;

/// After a `CloseWith` reply: how long the connection waits for the client
/// to close, reading and dropping what it sends, so that closing with unread
/// bytes does not reset the reply away before the client read it.
pub const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// Most times one connection asks the router again after every address of
/// a decision failed (a router that keeps answering with dead addresses).
pub const MAX_CONNECT_ROUNDS: u32 = 4;

/// What a connection works with during one pump.
pub(crate) struct Cx<'a, R> {
    pub(crate) router: &'a mut R,
    pub(crate) settings: &'a Settings,
    pub(crate) registry: &'a Registry,
    pub(crate) tokens: Tokens,
    pub(crate) slot: usize,
    pub(crate) now: Instant,
    pub(crate) pool: &'a mut BufferPool,
    pub(crate) pipes: &'a mut PipePool,
    /// Addresses a connect to failed since the relay last looked (so a
    /// host name behind one is looked up again sooner).
    pub(crate) failed: &'a mut Vec<SocketAddr>,
}

/// Most failed addresses noted between two looks of the relay.
pub(crate) const MAX_FAILED_NOTED: usize = 64;

impl<R> Cx<'_, R> {
    fn connect_failed(&mut self, addr: Option<SocketAddr>) {
        if let Some(addr) = addr {
            if self.failed.len() < MAX_FAILED_NOTED && !self.failed.contains(&addr) {
                self.failed.push(addr);
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Reading the first bytes until the router decides.
    Peek,
    /// A connect to `addrs[next_addr - 1]` is under way.
    Connecting,
    /// Bytes flow both ways.
    Splice,
    /// Sending the router's reply, then waiting for the client to close.
    Closing,
    /// Nothing left: the connection can be dropped.
    Done,
}

/// One client connection and, once routed, its server connection.
pub(crate) struct Conn {
    peer: SocketAddr,
    client: Side,
    server: Side,
    stage: Stage,
    /// Client to server: the peeked bytes (or the router's replacement),
    /// then the stream.
    up: Flow,
    /// Server to client.
    down: Flow,
    /// Peeked bytes at the front of `up` that the replacement stands for.
    replaced: usize,
    /// The router's reply to the client (`CloseWith`).
    reply: Vec<u8>,
    reply_pos: usize,
    addrs: Vec<SocketAddr>,
    next_addr: usize,
    rounds: u32,
    /// The router was asked with no bytes yet.
    asked: bool,
    accepted: Instant,
    /// When the stage began; while splicing, when a byte last moved.
    since: Instant,
    /// The last pump stopped at its budget with work left.
    pub(crate) yielded: bool,
    /// In the relay's list of connections to pump again.
    pub(crate) queued: bool,
}

impl Conn {
    pub(crate) fn new(client: TcpStream, peer: SocketAddr, settings: &Settings, now: Instant) -> Self {
        Conn {
            peer,
            client: Side::new("client", Some(Stream::Plain(client))),
            server: Side::new("server", None),
            stage: Stage::Peek,
            up: Flow::sized(up_capacity(settings)),
            down: Flow::sized(SPLICE_BUFFER),
            replaced: 0,
            reply: Vec::new(),
            reply_pos: 0,
            addrs: Vec::new(),
            next_addr: 0,
            rounds: 0,
            asked: false,
            accepted: now,
            since: now,
            yielded: false,
            queued: false,
        }
    }

    pub(crate) fn on_client_event(&mut self, ready: Readiness) {
        self.client.ready.merge(ready);
    }

    pub(crate) fn on_server_event(&mut self, ready: Readiness) {
        self.server.ready.merge(ready);
    }

    pub(crate) fn is_done(&self) -> bool {
        self.stage == Stage::Done
    }

    /// Closes both sockets and gives the buffers and pipes back.
    pub(crate) fn close_all(mut self, registry: &Registry, pool: &mut BufferPool, pipes: &mut PipePool) {
        self.client.close(registry);
        self.server.close(registry);
        self.up.release(pool, pipes);
        self.down.release(pool, pipes);
    }

    /// Makes every move readiness and buffers allow, up to
    /// [`SPLICE_PASSES`] passes.
    pub(crate) fn pump<R: Router>(&mut self, cx: &mut Cx<'_, R>) {
        self.yielded = false;
        for _ in 0..SPLICE_PASSES {
            let progress = match self.stage {
                Stage::Peek => self.peek(cx),
                Stage::Connecting => self.check_connect(cx),
                Stage::Splice => self.splice(cx),
                Stage::Closing => self.closing(cx),
                Stage::Done => false,
            };
            if !progress {
                // Nothing peeked or left over: the buffer goes back.
                cx.pool.release(&mut self.up.buf);
                return;
            }
        }
        self.yielded = true;
    }

    /// When [`on_timeout`](Self::on_timeout) has work.
    pub(crate) fn deadline(&self, settings: &Settings) -> Option<Instant> {
        Some(match self.stage {
            Stage::Peek => self.accepted + settings.peek_timeout,
            Stage::Connecting => self.since + settings.connect_timeout,
            Stage::Splice => self.since + settings.inactivity_timeout,
            Stage::Closing => self.since + CLOSE_LINGER,
            Stage::Done => return None,
        })
    }

    pub(crate) fn on_timeout<R: Router>(&mut self, cx: &mut Cx<'_, R>) {
        if self.deadline(cx.settings).is_none_or(|at| at > cx.now) {
            return;
        }
        let peer = self.peer;
        match self.stage {
            Stage::Peek => {
                info!(
                    "{peer}: no decision within the peek timeout ({:?}, {} bytes); giving up to the router",
                    cx.settings.peek_timeout,
                    self.up.buf.len()
                );
                let d = cx.router.on_give_up(self.up.buf.data(), peer);
                self.apply(cx, d, false);
            }
            Stage::Connecting => {
                info!(
                    "{peer}: connect to {} timed out after {:?}",
                    self.target(),
                    cx.settings.connect_timeout
                );
                cx.connect_failed(self.target_addr());
                self.try_next(cx);
            }
            Stage::Splice => match cx.router.on_inactive(peer) {
                Decision::Wait => self.since = cx.now,
                Decision::CloseWith(bytes) => {
                    info!(
                        "{peer}: inactive for {:?}; replying and closing",
                        cx.settings.inactivity_timeout
                    );
                    self.close_with(cx, bytes);
                }
                _ => {
                    info!("{peer}: inactive for {:?}; closing", cx.settings.inactivity_timeout);
                    self.finish(cx.registry);
                }
            },
            Stage::Closing => self.finish(cx.registry),
            Stage::Done => {}
        }
        self.pump(cx);
    }

    fn target(&self) -> String {
        self.target_addr().map_or("?".into(), |a| a.to_string())
    }

    /// The address the connect under way (or the last one) goes to.
    fn target_addr(&self) -> Option<SocketAddr> {
        self.next_addr.checked_sub(1).and_then(|i| self.addrs.get(i)).copied()
    }

    // ---- peek and decide -------------------------------------------

    fn peek<R: Router>(&mut self, cx: &mut Cx<'_, R>) -> bool {
        if !self.asked {
            // Asked once before any byte: rules that need none (a lone
            // default) decide at once, for protocols where the server
            // speaks first.
            self.asked = true;
            let d = cx.router.route(&[], self.peer);
            self.apply(cx, d, true);
            return true;
        }
        let max_peek = cx.settings.max_peek;
        let room = max_peek.saturating_sub(self.up.buf.len());
        if !self.client.ready.readable || room == 0 {
            return false;
        }
        let space = self.up.buffer(cx.pool).space();
        let n = space.len().min(room);
        let Some(io) = self.client.read(&mut space[..n]) else {
            return false;
        };
        let peer = self.peer;
        match io {
            Io::Done(k) => {
                self.up.buf.fill(k);
                let mut d = cx.router.route(self.up.buf.data(), peer);
                let mut may_wait = true;
                if d == Decision::Wait && self.up.buf.len() >= max_peek {
                    warn!("{peer}: no decision after max_peek ({max_peek} bytes); giving up to the router");
                    d = cx.router.on_give_up(self.up.buf.data(), peer);
                    may_wait = false;
                }
                self.apply(cx, d, may_wait);
            }
            Io::Closed => {
                self.client.eof = true;
                if self.up.buf.is_empty() {
                    debug!("{peer}: closed before sending anything");
                    self.finish(cx.registry);
                } else {
                    debug!("{peer}: sent {} bytes and its end before a decision", self.up.buf.len());
                    let d = cx.router.on_give_up(self.up.buf.data(), peer);
                    self.apply(cx, d, false);
                }
            }
            Io::WouldBlock => return false,
            Io::Failed(f) => {
                debug!("{peer}: failed while peeking: {f:?}");
                self.finish(cx.registry);
            }
        }
        true
    }

    /// Carries out a decision. `Wait` keeps peeking when `may_wait`, else
    /// (a give-up or connect-error callback) closes.
    fn apply<R: Router>(&mut self, cx: &mut Cx<'_, R>, d: Decision, may_wait: bool) {
        match d {
            Decision::Remote(addrs) => {
                // The peeked bytes go as they are, whatever an earlier
                // decision replaced them with.
                self.up.set_prefix(Vec::new());
                self.replaced = 0;
                self.connect_to(cx, addrs);
            }
            Decision::RemoteWith(addrs, bytes) => {
                self.up.set_prefix(bytes);
                self.replaced = self.up.buf.len();
                self.connect_to(cx, addrs);
            }
            Decision::Wait if may_wait && !self.client.eof => {}
            Decision::Wait | Decision::Close => {
                debug!("{}: closed by the router", self.peer);
                self.finish(cx.registry);
            }
            Decision::CloseWith(bytes) => self.close_with(cx, bytes),
        }
    }

    fn close_with<R>(&mut self, cx: &mut Cx<'_, R>, bytes: Vec<u8>) {
        if self.client.shut {
            debug!(
                "{}: the client's side is already shut: closing without the reply",
                self.peer
            );
            self.finish(cx.registry);
            return;
        }
        debug!("{}: replying {} bytes and closing", self.peer, bytes.len());
        self.server.close(cx.registry);
        self.reply = bytes;
        self.reply_pos = 0;
        self.stage = Stage::Closing;
        self.since = cx.now;
    }

    // ---- connect ----------------------------------------------------

    fn connect_to<R: Router>(&mut self, cx: &mut Cx<'_, R>, addrs: Vec<SocketAddr>) {
        self.addrs = addrs;
        self.next_addr = 0;
        self.try_next(cx);
    }

    /// Starts a connect to the next address; when none is left, asks the
    /// router what now.
    fn try_next<R: Router>(&mut self, cx: &mut Cx<'_, R>) {
        self.server.close(cx.registry);
        let peer = self.peer;
        while let Some(&addr) = self.addrs.get(self.next_addr) {
            self.next_addr += 1;
            match TcpStream::connect(addr) {
                Ok(mut sock) => {
                    let token = cx.tokens.backend(cx.slot, 0);
                    if let Err(e) = cx.registry.register(&mut sock, token, pipe::interest()) {
                        warn!("{peer}: cannot register the connection to {addr}: {e}");
                        continue;
                    }
                    let _ = sock.set_nodelay(true);
                    self.server.sock = Some(Stream::Plain(sock));
                    self.stage = Stage::Connecting;
                    self.since = cx.now;
                    return;
                }
                Err(e) => {
                    info!("{peer}: connect to {addr} failed: {e}");
                    cx.connect_failed(Some(addr));
                }
            }
        }
        self.rounds += 1;
        if self.addrs.is_empty() {
            warn!("{peer}: the router chose no address; closing");
            self.finish(cx.registry);
        } else if self.rounds > MAX_CONNECT_ROUNDS {
            warn!("{peer}: no backend reachable after {MAX_CONNECT_ROUNDS} decisions; closing");
            self.finish(cx.registry);
        } else {
            warn!(
                "{peer}: every address failed ({}); asking the router",
                join(&self.addrs)
            );
            let d = cx.router.on_connect_error(self.up.buf.data(), peer);
            self.apply(cx, d, false);
        }
    }

    fn check_connect<R: Router>(&mut self, cx: &mut Cx<'_, R>) -> bool {
        if !self.server.ready.writable && !self.server.ready.readable {
            return false;
        }
        let Some(sock) = self.server.sock.as_ref() else {
            return false;
        };
        match net::connect_result(sock.tcp()) {
            None => {
                // A spurious wake-up: the connect is still under way.
                self.server.ready.reset();
                false
            }
            Some(Err(f)) => {
                info!("{}: connect to {} failed: {f:?}", self.peer, self.target());
                cx.connect_failed(self.target_addr());
                self.try_next(cx);
                true
            }
            Some(Ok(())) => {
                debug!("{}: routed to {}", self.peer, self.target());
                self.up.buf.consume(self.replaced);
                self.replaced = 0;
                self.stage = Stage::Splice;
                self.since = cx.now;
                true
            }
        }
    }

    // ---- splice -----------------------------------------------------

    fn splice<R>(&mut self, cx: &mut Cx<'_, R>) -> bool {
        let passed = flow::pass_both(
            &mut self.up,
            &mut self.down,
            &mut self.client,
            &mut self.server,
            cx.pool,
            cx.pipes,
        );
        let progress = match passed {
            Ok(progress) => progress,
            Err(why) => {
                debug!("{}: {why}; closing both sides", self.peer);
                self.finish(cx.registry);
                return true;
            }
        };
        if progress {
            self.since = cx.now;
        }
        if self.client.shut && self.server.shut {
            debug!(
                "{}: both sides closed ({} bytes up, {} down)",
                self.peer, self.up.bytes, self.down.bytes
            );
            self.finish(cx.registry);
            return true;
        }
        progress
    }

    // ---- reply and close ------------------------------------------

    fn closing<R>(&mut self, cx: &mut Cx<'_, R>) -> bool {
        if self.reply_pos < self.reply.len() {
            if !self.client.ready.writable {
                return false;
            }
            let Some(sock) = self.client.sock.as_mut() else {
                self.finish(cx.registry);
                return true;
            };
            let rest = &self.reply[self.reply_pos..];
            let io = sock.write(&mut self.client.ready, rest);
            match io {
                Io::Done(n) => {
                    self.reply_pos += n;
                    // The linger counts from the last byte that moved.
                    self.since = cx.now;
                }
                Io::WouldBlock => return false,
                Io::Closed | Io::Failed(_) => self.finish(cx.registry),
            }
            return true;
        }
        if !self.client.shut {
            if self.client.shutdown_write().is_err() {
                self.finish(cx.registry);
            }
            self.since = cx.now;
            return true;
        }
        // Linger: drop what the client still sends until it closes.
        if !self.client.ready.readable {
            return false;
        }
        let buf = self.up.buffer(cx.pool);
        buf.clear();
        match self.client.read(buf.space()) {
            Some(Io::Done(_)) => true,
            Some(Io::WouldBlock) => false,
            _ => {
                self.finish(cx.registry);
                true
            }
        }
    }

    fn finish(&mut self, registry: &Registry) {
        self.client.close(registry);
        self.server.close(registry);
        self.stage = Stage::Done;
    }
}

/// The client-to-server buffer: room for `max_peek` bytes and a splice.
pub(crate) fn up_capacity(settings: &Settings) -> usize {
    settings.max_peek.max(SPLICE_BUFFER)
}

fn join(addrs: &[SocketAddr]) -> String {
    addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
}
