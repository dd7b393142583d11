//! One client connection: its requests, one exchange at a time, and the
//! backend connections serving them.
//!
//! Everything is driven by [`Session::pump`]: it makes every move the cached
//! readiness and the buffers allow, until none is left. Sockets are
//! registered once (readable and writable, edge-triggered); a side that
//! cannot take more is simply not read, and readiness is cleared only by
//! WouldBlock.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use log::{debug, info, warn};
use mio::Registry;

use super::config::{Config, KeepAlive};
use super::hooks::{Exchange, Hooks, Outcome, Request, Selection, Served};
use super::parked::{Kept, Parked};
use super::pending::{Backlog, Pending};
use super::plan;
use super::pool::Pools;
use super::reply;
use super::stats::Stats;
use super::tunnel::{End, TUNNEL_PASSES, Tunnel};
use super::upstream::{PUMP_BUDGET, Send, Settled, Step, Upstream, outcome_of};
use crate::http::{
    BodyDecoder, Connection, Framing, HeadRewrite, HeadStatus, Method, RequestContext, RequestHead, ResponseHead,
    limits, write_request, write_response,
};
use crate::runtime::buffer::{Buffer, BufferPool, SMALL_BUFFER};
use crate::runtime::net::{Io, Readiness};
use crate::runtime::pipe::PipePool;
use crate::runtime::tokens::Tokens;
use crate::runtime::transport::Stream;
use crate::tls::Connector;
use account::Account;

mod account;
mod backend;
mod client;
mod deadline;
mod exchange;

/// Client bytes buffered: a maximal head plus room for body bytes.
pub const CLIENT_BUFFER: usize = limits::MAX_HEAD_LEN + 16 * 1024;

/// What the client connection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request head.
    Head,
    /// A request is being served.
    Exchange,
    /// After 101 or a 2xx to CONNECT: raw bytes both ways with the master.
    Tunnel,
    /// A final answer (error) is being flushed; then the client is closed.
    Closing,
}

/// Who answers the client in the current exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// No exchange is under way.
    Nobody,
    /// The master: its response streams to the client as it comes.
    Master(usize),
    /// Without the master (Geest's rule): the first backend whose response
    /// is complete, once one is.
    First(Option<usize>),
}

impl Answer {
    /// The master, when it answers.
    fn master(self) -> Option<usize> {
        match self {
            Answer::Master(m) => Some(m),
            _ => None,
        }
    }
}

/// Where the client's response stands in the current exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// No response head has gone to the client yet.
    Owed,
    /// A response is going out; the connection stays after it when `keep`.
    Sending { keep: bool },
    /// The client has all of its response there will be.
    Sent { keep: bool },
}

impl Reply {
    /// The connection may carry the client's next request.
    fn keep(self) -> bool {
        matches!(self, Reply::Sending { keep: true } | Reply::Sent { keep: true })
    }

    fn is_sent(self) -> bool {
        matches!(self, Reply::Sent { .. })
    }
}

/// What a session waits for the client to do (each has its deadline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientWait {
    /// Send a whole request head: [`Config::client_timeout`] from its start.
    Head,
    /// Start a next request on a kept-alive connection:
    /// [`Config::keepalive_timeout`].
    Idle,
    /// Send more of a request body: [`Config::client_idle_timeout`] without
    /// progress.
    Body,
    /// Read more of its response: the same.
    Reading,
    /// Send or read anything through a tunnel: the same.
    Tunnel,
    /// Take a final (error) answer: [`Config::client_timeout`].
    Reply,
}

/// Shared state a session works with.
pub(crate) struct Cx<'a, H> {
    pub(crate) cfg: &'a Config,
    pub(crate) hooks: &'a mut H,
    pub(crate) registry: &'a Registry,
    pub(crate) tokens: Tokens,
    pub(crate) slot: usize,
    pub(crate) now: Instant,
    pub(crate) next_id: &'a mut u64,
    pub(crate) draining: bool,
    pub(crate) pool: &'a mut BufferPool,
    pub(crate) pools: &'a mut Pools,
    pub(crate) pipes: &'a mut PipePool,
    pub(crate) backlog: &'a mut Backlog,
    /// Per backend, how to open TLS to it (HTTPS backends).
    pub(crate) connectors: &'a [Option<Connector>],
}

/// One client connection.
pub(crate) struct Session {
    client: Option<Stream>,
    peer: SocketAddr,
    /// The client socket's readiness.
    ready: Readiness,
    client_eof: bool,
    cin: Buffer,
    cout: Vec<u8>,
    cout_pos: usize,
    /// Room to write a head before appending it to `cout`.
    scratch: Vec<u8>,
    phase: Phase,
    req: RequestHead,
    req_bytes: Vec<u8>,
    req_body: BodyDecoder,
    /// Body bytes at the front of `cin` scanned and owed to the direct master.
    fwd: usize,
    selection: Selection,
    /// Who answers the client in this exchange.
    answer: Answer,
    /// Where the client's response stands.
    response: Reply,
    ups: Vec<Upstream>,
    exchange_id: u64,
    /// The last byte moved to or from the client.
    last_client_io: Instant,
    /// In [`Phase::Head`]: when the head began (accept, for the first
    /// request; its first byte, for later ones), or when the connection
    /// went idle while no byte of the next head is here.
    head_since: Instant,
    /// A request was read on this connection: an empty buffer in
    /// [`Phase::Head`] is a keep-alive idle, not a head being waited for.
    served: bool,
    /// After 101 or a 2xx to CONNECT: the client and master sockets.
    tunnel: Option<Box<Tunnel>>,
    /// What the client saw of the request under way.
    account: Account,
    /// The last pump stopped at its pass limit with work left.
    pub(crate) yielded: bool,
    /// In the proxy's list of sessions to pump again.
    pub(crate) queued: bool,
}

/// Most spare (recycled) sessions the proxy keeps for parked connections
/// that come back: reviving one costs no allocation.
pub const MAX_SPARE_SESSIONS: usize = 64;

/// A spare session's vectors keep at most this much room; larger ones (a
/// big head, a captured answer) are freed when it parks.
const SPARE_VEC_CAP: usize = 16 * 1024;

impl Session {
    /// A session with no client yet: [`revive`](Self::revive) gives it one.
    pub(crate) fn new(cfg: &Config, now: Instant, stats: &Arc<Stats>) -> Self {
        Session {
            client: None,
            peer: SocketAddr::from(([0, 0, 0, 0], 0)),
            ready: Readiness::default(),
            client_eof: false,
            cin: Buffer::default(),
            cout: Vec::new(),
            cout_pos: 0,
            scratch: Vec::new(),
            phase: Phase::Head,
            req: RequestHead::new(),
            req_bytes: Vec::new(),
            req_body: BodyDecoder::Done,
            fwd: 0,
            selection: Selection::none(),
            answer: Answer::Nobody,
            response: Reply::Owed,
            ups: cfg
                .backends
                .iter()
                .enumerate()
                .map(|(i, b)| Upstream::new(i, b.timeout, now, stats.clone()))
                .collect(),
            exchange_id: 0,
            last_client_io: now,
            head_since: now,
            served: false,
            tunnel: None,
            account: Account::new(now),
            yielded: false,
            queued: false,
        }
    }

    /// Takes a parked connection back: its client, readiness and clocks,
    /// and the backend connection it kept.
    pub(crate) fn revive(&mut self, parked: Parked, cfg: &Config) {
        self.client = Some(parked.client);
        self.peer = parked.peer;
        self.ready = parked.ready;
        self.head_since = parked.since;
        self.last_client_io = parked.since;
        self.served = parked.served;
        if let Some(kept) = parked.kept {
            // A kept connection goes to its backend's address in use: the
            // proxy drops kept ones when an address changes.
            if let (Some(up), Some(b)) = (self.ups.get_mut(kept.backend), cfg.backends.get(kept.backend)) {
                up.adopt(kept.sock, kept.ready, b.addr);
            }
        }
    }

    /// The session waits for its client's next request with nothing
    /// buffered, owed or under way: it may park.
    pub(crate) fn can_park(&self) -> bool {
        self.client.is_some()
            && self.phase == Phase::Head
            && self.cin.is_empty()
            && !self.ready.readable
            && !self.client.as_ref().is_some_and(Stream::wants_flush)
            && !self.client_eof
            && self.tunnel.is_none()
            && self.selection.is_empty()
            && self.cout_pos >= self.cout.len()
            && !self.yielded
            && self.ups.iter().all(Upstream::is_idle)
    }

    /// Parks the session (see [`can_park`](Self::can_park)): the client and
    /// the master connection kept for its next request leave in a
    /// [`Parked`]; other reusable backend connections go to the shared
    /// pools, buffers to the pool. The session is left empty, ready for
    /// another client.
    pub(crate) fn park(
        &mut self,
        master: usize,
        master_addr: SocketAddr,
        registry: &Registry,
        pool: &mut BufferPool,
        pools: &mut Pools,
        now: Instant,
    ) -> Option<Parked> {
        let client = self.client.take()?;
        let mut kept = None;
        for (b, up) in self.ups.iter_mut().enumerate() {
            if b == master {
                up.drop_if_moved(master_addr, registry);
                kept = up.keep().map(|(sock, ready)| Kept {
                    backend: b,
                    sock,
                    ready,
                });
            }
            up.release(registry, pool, pools, now);
            up.recycle(SPARE_VEC_CAP);
        }
        let parked = Parked {
            client,
            peer: self.peer,
            ready: self.ready,
            since: self.head_since,
            served: self.served,
            kept,
        };
        pool.release(&mut self.cin);
        self.ready = Readiness::default();
        self.client_eof = false;
        for v in [&mut self.cout, &mut self.scratch, &mut self.req_bytes] {
            v.clear();
            if v.capacity() > SPARE_VEC_CAP {
                *v = Vec::new();
            }
        }
        self.cout_pos = 0;
        self.req.clear();
        self.req_body = BodyDecoder::Done;
        self.fwd = 0;
        self.exchange_id = 0;
        self.served = false;
        // What can_park guaranteed, made explicit for the next client.
        self.phase = Phase::Head;
        self.answer = Answer::Nobody;
        self.response = Reply::Owed;
        self.yielded = false;
        self.queued = false;
        Some(parked)
    }

    pub(crate) fn on_client_event(&mut self, ready: Readiness) {
        match self.tunnel.as_mut() {
            Some(t) => t.on_client_event(ready),
            None => self.ready.merge(ready),
        }
    }

    pub(crate) fn on_backend_event(&mut self, backend: usize, ready: Readiness) {
        if let Some(t) = self.tunnel.as_mut().filter(|_| self.answer.master() == Some(backend)) {
            t.on_master_event(ready);
        } else if let Some(up) = self.ups.get_mut(backend) {
            up.on_event(ready);
        }
    }

    /// True when nothing is left to do: the session can be dropped.
    pub(crate) fn is_finished(&self) -> bool {
        self.client.is_none() && self.tunnel.is_none() && self.ups.iter().all(|u| u.is_idle() || u.is_done())
    }

    /// Gives back every buffer that holds nothing: one is taken again when
    /// bytes arrive.
    pub(crate) fn release_buffers(&mut self, pool: &mut BufferPool) {
        pool.release(&mut self.cin);
        for up in &mut self.ups {
            up.release_buffer(pool);
        }
    }

    /// Closes every socket and gives the buffers back to the pool; idle
    /// reusable backend connections go to the shared pools.
    pub(crate) fn close_all(
        self,
        registry: &Registry,
        pool: &mut BufferPool,
        pools: &mut Pools,
        pipes: &mut PipePool,
        backlog: &mut Backlog,
        now: Instant,
    ) {
        let mut s = self;
        s.close_client(registry);
        if let Some(tunnel) = s.tunnel.take() {
            tunnel.close(registry, pool, pipes);
        }
        for up in &mut s.ups {
            backlog.unreserve(up);
            up.release(registry, pool, pools, now);
        }
        pool.give(s.cin);
    }

    /// Makes every move readiness and buffers allow.
    pub(crate) fn pump<H: Hooks>(&mut self, cx: &mut Cx<'_, H>) {
        self.yielded = false;
        let mut tunnel_passes = 0;
        for _ in 0..PUMP_BUDGET {
            if self.tunnel.is_some() {
                // A busy tunnel yields to the others, as a routed stream does.
                if tunnel_passes == TUNNEL_PASSES {
                    self.yielded = true;
                    return;
                }
                tunnel_passes += 1;
                if !self.pump_tunnel(cx) {
                    return;
                }
                continue;
            }
            let mut progress = self.read_client(cx);
            progress |= self.advance_client(cx);
            for b in 0..self.ups.len() {
                progress |= self.drive_upstream(cx, b);
            }
            progress |= self.write_client(cx);
            progress |= self.settle(cx);
            if !progress {
                return;
            }
        }
        warn!(
            "{}: session made no stable progress after {PUMP_BUDGET} passes; closing",
            self.peer
        );
        self.abort_all(cx);
    }

    fn close_client(&mut self, registry: &Registry) {
        if let Some(mut client) = self.client.take() {
            client.close_notify(&mut self.ready);
            let _ = registry.deregister(&mut client);
        }
        self.ready.reset();
    }

    /// The client is gone: what only it needed stops, shadows go on.
    fn client_gone<H: Hooks>(&mut self, cx: &mut Cx<'_, H>) {
        self.account_done(cx, false);
        self.close_client(cx.registry);
        if let Some(m) = self.answer.master() {
            self.ups[m].end(Outcome::Skipped, cx.registry, cx.now);
        }
        // Copies still missing body bytes will never get them.
        for b in self.selection.iter() {
            let up = &mut self.ups[b];
            if up.request_incomplete() && up.is_busy() {
                up.end(Outcome::Skipped, cx.registry, cx.now);
            }
        }
    }

    fn abort_backends<H: Hooks>(&mut self, cx: &mut Cx<'_, H>) {
        for b in self.selection.iter() {
            self.ups[b].end(Outcome::Skipped, cx.registry, cx.now);
        }
    }

    fn abort_all<H: Hooks>(&mut self, cx: &mut Cx<'_, H>) {
        self.account_done(cx, false);
        self.abort_backends(cx);
        self.close_client(cx.registry);
    }
}
