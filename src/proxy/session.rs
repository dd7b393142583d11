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
use mio::net::TcpStream;

use super::config::{Config, KeepAlive};
use super::hooks::{Exchange, Hooks, Outcome, Request, Selection};
use super::pending::{Backlog, Pending};
use super::plan;
use super::pool::Pools;
use super::reply;
use super::stats::Stats;
use super::tunnel::{End, Tunnel};
use super::upstream::{BACKEND_BUFFER, PUMP_BUDGET, Settled, State, Step, Upstream, outcome_of};
use crate::http::{
    BodyDecoder, Connection, Framing, HeadRewrite, HeadStatus, Method, RequestContext, RequestHead, ResponseHead,
    limits, write_request, write_response,
};
use crate::runtime::buffer::{Buffer, BufferPool};
use crate::runtime::net::{Io, Readiness};
use crate::runtime::pipe::PipePool;
use crate::runtime::tokens::Tokens;

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
}

/// One client connection.
pub(crate) struct Session {
    client: Option<TcpStream>,
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
    /// The master, when selected: its response streams to the client.
    direct: Option<usize>,
    /// Without the master: the backend whose response went to the client.
    primary: Option<usize>,
    client_keep_alive: bool,
    client_done: bool,
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
}

impl Session {
    pub(crate) fn new(
        client: TcpStream,
        peer: SocketAddr,
        cfg: &Config,
        now: Instant,
        pool: &mut BufferPool,
        stats: &Arc<Stats>,
    ) -> Self {
        Session {
            client: Some(client),
            peer,
            ready: Readiness::default(),
            client_eof: false,
            cin: pool.take(CLIENT_BUFFER),
            cout: Vec::new(),
            cout_pos: 0,
            scratch: Vec::new(),
            phase: Phase::Head,
            req: RequestHead::new(),
            req_bytes: Vec::new(),
            req_body: BodyDecoder::Done,
            fwd: 0,
            selection: Selection::none(),
            direct: None,
            primary: None,
            client_keep_alive: false,
            client_done: false,
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
        }
    }

    pub(crate) fn on_client_event(&mut self, ready: Readiness) {
        match self.tunnel.as_mut() {
            Some(t) => t.on_client_event(ready),
            None => self.ready.merge(ready),
        }
    }

    pub(crate) fn on_backend_event(&mut self, backend: usize, ready: Readiness) {
        if let Some(t) = self.tunnel.as_mut().filter(|_| self.direct == Some(backend)) {
            t.on_master_event(ready);
        } else if let Some(up) = self.ups.get_mut(backend) {
            up.ready.merge(ready);
        }
    }

    /// True when nothing is left to do: the session can be dropped.
    pub(crate) fn is_finished(&self) -> bool {
        self.client.is_none()
            && self.tunnel.is_none()
            && self.ups.iter().all(|u| matches!(u.state, State::Idle | State::Done))
    }

    /// Gives back the buffers of connections that are finished while the
    /// session lives on (a client gone while a slow shadow answers holds no
    /// client buffer).
    pub(crate) fn release_buffers(&mut self, pool: &mut BufferPool) {
        if self.client.is_none() && self.cin.capacity() > 0 {
            pool.give(std::mem::replace(&mut self.cin, Buffer::new(0)));
        }
        for up in &mut self.ups {
            // Bytes still owed to the client stay where they are.
            if up.sock.is_none() && up.splice == 0 && matches!(up.state, State::Idle | State::Done) {
                if let Some(inb) = up.inb.take() {
                    pool.give(inb);
                }
            }
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
        for _ in 0..PUMP_BUDGET {
            if self.tunnel.is_some() {
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

    // ---- client side -------------------------------------------------

    fn read_client<H>(&mut self, cx: &mut Cx<'_, H>) -> bool {
        if !self.ready.readable || self.client_eof || self.phase == Phase::Closing {
            return false;
        }
        let Some(client) = self.client.as_mut() else {
            return false;
        };
        // The first byte of a head after a keep-alive idle starts its clock.
        let head_starts = self.phase == Phase::Head && self.served && self.cin.is_empty();
        let space = self.cin.space();
        if space.is_empty() {
            return false;
        }
        match self.ready.read(client, space) {
            Io::Done(n) => {
                self.cin.fill(n);
                self.last_client_io = cx.now;
                if head_starts {
                    self.head_since = cx.now;
                }
                true
            }
            Io::WouldBlock => false,
            Io::Closed => {
                self.client_eof = true;
                true
            }
            Io::Failed(f) => {
                debug!("{}: client connection failed: {f:?}", self.peer);
                self.client_gone(cx);
                true
            }
        }
    }

    fn write_client<H>(&mut self, cx: &mut Cx<'_, H>) -> bool {
        let mut progress = false;
        while self.ready.writable {
            let Some(client) = self.client.as_mut() else {
                return progress;
            };
            // What is owed, in order: proxy-written bytes (heads, answers),
            // then body bytes spliced from the direct master's buffer.
            let head = &self.cout[self.cout_pos.min(self.cout.len())..];
            let up = self.direct.and_then(|m| self.ups.get_mut(m)).filter(|u| u.splice > 0);
            let body: &[u8] = match up.as_deref() {
                Some(u) => u.inb.as_ref().map_or(&[], |inb| &inb.data()[..u.splice.min(inb.len())]),
                None => &[],
            };
            if head.is_empty() && body.is_empty() {
                break;
            }
            // Head and body in one syscall when both are waiting; a full
            // socket clears writable and the loop ends until the next edge.
            match self.ready.write2(client, head, body) {
                Io::Done(n) => {
                    let from_head = n.min(head.len());
                    self.cout_pos += from_head;
                    if self.cout_pos >= self.cout.len() {
                        self.cout.clear();
                        self.cout_pos = 0;
                    }
                    if let Some(up) = up {
                        let from_body = n - from_head;
                        if let Some(inb) = up.inb.as_mut() {
                            inb.consume(from_body);
                        }
                        up.splice -= from_body;
                    }
                    progress = true;
                    self.last_client_io = cx.now;
                }
                Io::WouldBlock => break,
                Io::Closed | Io::Failed(_) => {
                    debug!("{}: client went away while being written to", self.peer);
                    self.client_gone(cx);
                    return true;
                }
            }
        }
        progress
    }

    /// Bytes owed to the client are all written.
    fn client_flushed(&self) -> bool {
        self.cout_pos >= self.cout.len() && self.direct.and_then(|m| self.ups.get(m)).is_none_or(|u| u.splice == 0)
    }

    fn advance_client<H: Hooks>(&mut self, cx: &mut Cx<'_, H>) -> bool {
        match self.phase {
            Phase::Head => self.read_head(cx),
            Phase::Exchange => self.feed_body(cx),
            Phase::Tunnel | Phase::Closing => false,
        }
    }

    fn read_head<H: Hooks>(&mut self, cx: &mut Cx<'_, H>) -> bool {
        if self.client.is_none() {
            return false;
        }
        if !self.selection.is_empty() && !self.cin.is_empty() {
            // The next request is coming while shadows of the last one still
            // answer: what has arrived from them is taken first, the rest
            // finish in the backlog.
            for b in self.selection.iter() {
                self.drive_upstream(cx, b);
            }
            if !self.finish_exchange(cx) {
                self.detach(cx);
            }
        }
        if self.cin.is_empty() {
            if self.client_eof {
                self.close_client(cx.registry);
                return true;
            }
            if cx.draining {
                debug!("{}: closing idle connection for shutdown", self.peer);
                self.close_client(cx.registry);
                return true;
            }
            return false;
        }
        match self.req.parse(self.cin.data()) {
            Ok(HeadStatus::Partial) => {
                if self.client_eof {
                    info!("{}: client closed in the middle of a request head", self.peer);
                    self.close_client(cx.registry);
                    return true;
                }
                false
            }
            Ok(HeadStatus::Complete(len)) => {
                self.start_exchange(cx, len);
                true
            }
            Err(e) => {
                warn!("{}: bad request: {} ({})", self.peer, e.reason(), e.status());
                self.reply(cx, e.status(), e.reason());
                true
            }
        }
    }

    fn start_exchange<H: Hooks>(&mut self, cx: &mut Cx<'_, H>, len: usize) {
        self.req_bytes.clear();
        self.req_bytes.extend_from_slice(&self.cin.data()[..len]);
        self.cin.consume(len);
        *cx.next_id += 1;
        self.exchange_id = *cx.next_id;
        self.served = true;
        let backends = &cx.cfg.backends;
        let master = cx.cfg.master();
        let request = Request::new(&self.req, &self.req_bytes, self.peer);
        let tunnel = self.req.upgrade() || self.req.method() == Method::Connect;
        let picked = cx.hooks.select_backends(&request, backends);
        let mut selection = plan::selection(picked, backends.len(), master, tunnel);
        self.direct = selection.contains(master).then_some(master);
        // Shadows at their in-flight cap are dropped before anything is
        // sent, never queued in front of the client; a request that loses
        // every shadow is served as master-only (only counted).
        let mut dropped = Selection::none();
        if self.direct.is_some() {
            for b in selection.iter().filter(|&b| b != master) {
                if !cx.backlog.reserve(b, &mut self.ups[b], cx.now) {
                    debug!(
                        "{}: {} has too many requests in flight; dropped",
                        self.peer, backends[b].name
                    );
                    dropped = dropped.with(b);
                }
            }
            if dropped.len() + 1 == selection.len() {
                selection = Selection::only(master);
            }
        }
        self.selection = selection;
        self.primary = None;
        self.client_done = false;
        let multi = selection.len() > 1;
        let capture = multi || self.direct.is_none();
        let retryable = self.retryable();
        // Set before dispatching: a backend failing at once may answer the
        // client (and move to Closing) right away.
        self.req_body = BodyDecoder::new(self.req.framing());
        self.fwd = 0;
        self.phase = Phase::Exchange;
        let mut failed = Vec::new();
        for b in selection.iter() {
            let backend = &backends[b];
            let direct = self.direct == Some(b);
            if dropped.contains(b) {
                let up = &mut self.ups[b];
                up.begin(false, 0, cx.now);
                up.finish(Outcome::Dropped, cx.now);
                continue;
            }
            let connection = plan::backend_connection(direct, multi, self.req.upgrade(), cx.cfg.keep_alive);
            let mut rw = plan::backend_rewrite(cx.cfg, backend, &request, connection, direct, self.exchange_id);
            cx.hooks.munge_request(backend, &request, &mut rw);
            let up = &mut self.ups[b];
            if up.sock.is_some() && !up.reusable {
                up.close(cx.registry);
            }
            up.begin(capture, cx.cfg.capture_cap, cx.now);
            up.asked_keep_alive = connection == Connection::KeepAlive && self.req.keep_alive();
            up.retryable = retryable;
            write_request(&self.req, &self.req_bytes, &rw, &mut up.out);
            if multi {
                up.report.request_head.clone_from(&up.out);
            }
            let pooled = if up.sock.is_none() {
                cx.pools.take(b, cx.now)
            } else {
                None
            };
            if let Err(f) = up.connect(backend.addr, cx.registry, cx.tokens.backend(cx.slot, b), pooled) {
                failed.push((b, outcome_of(f)));
            }
        }
        if self.req_body.is_done() {
            self.copies_complete();
        }
        for (b, outcome) in failed {
            self.fail(cx, b, outcome);
        }
        debug!(
            "{}: exchange {} {} {} to {} backend(s)",
            self.peer,
            self.exchange_id,
            String::from_utf8_lossy(self.req.method_bytes(&self.req_bytes)),
            String::from_utf8_lossy(self.req.target(&self.req_bytes)),
            selection.len()
        );
    }

    /// Scans request body bytes: owed to the direct master, copied to the rest.
    fn feed_body<H>(&mut self, cx: &mut Cx<'_, H>) -> bool {
        if self.req_body.is_done() || self.client.is_none() {
            return false;
        }
        let input = &self.cin.data()[self.fwd..];
        if input.is_empty() {
            if self.client_eof {
                info!("{}: client closed in the middle of a request body", self.peer);
                self.abort_all(cx);
                return true;
            }
            return false;
        }
        let scanned = match self.req_body.scan(input, |_| {}) {
            Ok(s) => s,
            Err(e) => {
                warn!("{}: bad request body: {} ({})", self.peer, e.reason(), e.status());
                self.abort_backends(cx);
                if self.direct.is_some_and(|m| self.ups[m].head_forwarded) || !self.cout.is_empty() {
                    self.close_client(cx.registry);
                } else {
                    self.reply(cx, e.status(), e.reason());
                }
                return true;
            }
        };
        let n = scanned.consumed;
        let chunk = &input[..n];
        let cap = cx.cfg.shadow_request_cap;
        let multi = self.selection.len() > 1;
        for b in self.selection.iter() {
            let up = &mut self.ups[b];
            if matches!(up.state, State::Done | State::Idle) {
                continue;
            }
            if multi && up.report.request_body.len() < cap {
                let room = cap - up.report.request_body.len();
                up.report.request_body.extend_from_slice(&chunk[..n.min(room)]);
            }
            if Some(b) == self.direct {
                continue;
            }
            up.copied += n;
            if up.copied > cap {
                let name = &cx.cfg.backends[b].name;
                info!(
                    "{}: request copy for {name} passed {cap} bytes; dropped for this request",
                    self.peer
                );
                up.finish(Outcome::TooLarge, cx.now);
                up.close(cx.registry);
                continue;
            }
            up.out.extend_from_slice(chunk);
        }
        if self.direct.is_some() {
            self.fwd += n;
        } else {
            self.cin.consume(n);
        }
        if scanned.done {
            self.copies_complete();
        }
        n > 0
    }

    fn copies_complete(&mut self) {
        for b in self.selection.iter() {
            self.ups[b].out_complete = true;
        }
    }

    // ---- backend side ------------------------------------------------

    fn drive_upstream<H: Hooks>(&mut self, cx: &mut Cx<'_, H>, b: usize) -> bool {
        if self.ups[b].state == State::Idle {
            return self.check_idle(cx, b);
        }
        let ctx = RequestContext::of(&self.req);
        if self.direct != Some(b) {
            let (step, _) = self.ups[b].drive(ctx, cx.pool, cx.now, &[], false, |_, _| {});
            return self.on_step(cx, b, step);
        }
        // The master: body bytes straight from the client's buffer, and its
        // heads rewritten for the client as they come.
        let (cout, scratch, keep_alive) = (&mut self.cout, &mut self.scratch, &mut self.client_keep_alive);
        let answer = plan::KeepAnswer {
            client_asked: self.req.keep_alive(),
            master_allows: false,
            shadowed: self.selection.len() > 1,
            body_done: self.req_body.is_done(),
            ending: self.client_eof || cx.draining,
        };
        let rule = cx.cfg.keep_alive;
        let body = &self.cin.data()[..self.fwd];
        let (step, sent) = self.ups[b].drive(ctx, cx.pool, cx.now, body, true, |head, raw| {
            let connection = if head.is_interim() {
                Connection::Omit
            } else {
                *keep_alive = plan::KeepAnswer {
                    master_allows: head.keep_alive(),
                    ..answer
                }
                .keep(rule);
                plan::client_connection(head.framing(), head.status(), *keep_alive)
            };
            queue_head(cout, scratch, head, raw, &HeadRewrite::new(connection));
        });
        self.cin.consume(sent);
        self.fwd -= sent;
        self.on_step(cx, b, step)
    }

    /// A kept-alive master connection between requests: any byte or EOF
    /// means it is no longer usable.
    fn check_idle<H>(&mut self, cx: &mut Cx<'_, H>, b: usize) -> bool {
        let up = &mut self.ups[b];
        if up.sock.is_none() || !up.ready.readable {
            return false;
        }
        match up.read_in(cx.pool) {
            Ok(Some(0)) => false,
            _ => {
                debug!(
                    "{}: idle connection to {} closed or sent bytes; dropping it",
                    self.peer, cx.cfg.backends[b].name
                );
                up.close(cx.registry);
                true
            }
        }
    }

    /// Acts on where driving backend `b` came to; true when something moved.
    fn on_step<H: Hooks>(&mut self, cx: &mut Cx<'_, H>, b: usize, step: Step) -> bool {
        let request = Request::new(&self.req, &self.req_bytes, self.peer);
        let token = cx.tokens.backend(cx.slot, b);
        match self.ups[b].settle(step, cx.registry, &cx.cfg.backends[b], &request, token, cx.now) {
            Settled::Idle => return false,
            Settled::Progress => {}
            Settled::Tunnel => self.open_tunnel(cx, b),
            Settled::Completed => self.completed(b),
            Settled::Failed(outcome) => self.failed(cx, b, outcome),
        }
        true
    }

    /// A request that may be sent again: idempotent, no body bytes sent yet.
    fn retryable(&self) -> bool {
        self.req.method().is_idempotent() && self.req.framing() == Framing::Empty
    }

    /// Backend `b` has its whole response: without the master, the first
    /// complete answer goes to the client (Geest's rule).
    fn completed(&mut self, b: usize) {
        let up = &self.ups[b];
        if self.direct.is_none() && self.primary.is_none() && self.client.is_some() && !up.report.truncated {
            self.primary = Some(b);
            if let Some(head) = up.report.response.as_ref() {
                let raw = &up.report.response_raw;
                queue_head(
                    &mut self.cout,
                    &mut self.scratch,
                    head,
                    raw,
                    &HeadRewrite::new(Connection::Close),
                );
                self.cout.extend_from_slice(raw.get(head.len()..).unwrap_or_default());
            }
        }
    }

    /// Backend `b` is done with `outcome` other than Complete.
    fn fail<H: Hooks>(&mut self, cx: &mut Cx<'_, H>, b: usize, outcome: Outcome) {
        if matches!(self.ups[b].state, State::Done | State::Idle) {
            return;
        }
        let request = Request::new(&self.req, &self.req_bytes, self.peer);
        self.ups[b].fail(cx.registry, &cx.cfg.backends[b], &request, outcome, cx.now);
        self.failed(cx, b, outcome);
    }

    /// Backend `b` failed with `outcome` (already logged and closed): what
    /// the client gets instead.
    fn failed<H>(&mut self, cx: &mut Cx<'_, H>, b: usize, outcome: Outcome) {
        let head_forwarded = self.ups[b].head_forwarded;
        if self.direct == Some(b) {
            if head_forwarded || self.phase == Phase::Tunnel {
                // Part of the response went out: never pad or fake the rest.
                self.client_keep_alive = false;
                self.client_done = true;
                if self.client_flushed() {
                    self.close_client(cx.registry);
                }
            } else {
                let (status, reason) = if outcome == Outcome::Timeout {
                    (504, "the backend did not answer in time")
                } else {
                    (502, "the backend failed to answer")
                };
                self.reply(cx, status, reason);
            }
        } else if self.direct.is_none()
            && self.primary.is_none()
            && self.selection.iter().all(|i| self.ups[i].state == State::Done)
        {
            self.reply(cx, 502, "no backend answered");
        }
    }

    /// Answers the client with an error and closes after it.
    fn reply<H>(&mut self, cx: &mut Cx<'_, H>, status: u16, reason: &str) {
        self.cout.clear();
        self.cout_pos = 0;
        reply::error(status, reason, &mut self.cout);
        self.phase = Phase::Closing;
        self.client_keep_alive = false;
        self.fwd = 0;
        if let Some(m) = self.direct {
            self.ups[m].splice = 0;
        }
        let _ = cx;
    }

    // ---- tunnel ------------------------------------------------------

    /// The master answered an upgrade: both sockets, and the bytes each is
    /// still owed, go to a [`Tunnel`].
    fn open_tunnel<H>(&mut self, cx: &mut Cx<'_, H>, m: usize) {
        let (Some(client), Some(master)) = (self.client.take(), self.ups[m].sock.take()) else {
            self.abort_all(cx);
            return;
        };
        let up = &mut self.ups[m];
        let mut to_client = self.cout.split_off(self.cout_pos.min(self.cout.len()));
        let master_buf = up.inb.take().unwrap_or_else(|| cx.pool.take(BACKEND_BUFFER));
        to_client.extend_from_slice(master_buf.data());
        let client_end = End {
            sock: client,
            token: cx.tokens.client(cx.slot),
            ready: self.ready,
            eof: self.client_eof,
            owed: to_client,
            buffer: std::mem::replace(&mut self.cin, Buffer::new(0)),
        };
        let master_end = End {
            sock: master,
            token: cx.tokens.backend(cx.slot, m),
            ready: up.ready,
            eof: false,
            owed: client_end.buffer.data().to_vec(),
            buffer: master_buf,
        };
        up.ready.reset();
        self.cout.clear();
        self.cout_pos = 0;
        self.fwd = 0;
        self.ready.reset();
        self.tunnel = Some(Box::new(Tunnel::open(client_end, master_end, cx.registry, cx.now)));
        self.phase = Phase::Tunnel;
        debug!("{}: tunnel to {} open", self.peer, cx.cfg.backends[m].name);
    }

    /// Moves tunnel bytes; ends the exchange when both ends were passed on
    /// or a side failed.
    fn pump_tunnel<H>(&mut self, cx: &mut Cx<'_, H>) -> bool {
        let Some(tunnel) = self.tunnel.as_mut() else {
            return false;
        };
        match tunnel.pass(cx.pipes, cx.now) {
            Ok(_) if tunnel.is_over() => {
                let (up, down) = tunnel.bytes();
                debug!("{}: tunnel closed both ways ({up} bytes up, {down} down)", self.peer);
                self.end_tunnel(cx, Outcome::Complete);
                true
            }
            Ok(progress) => progress,
            Err(why) => {
                debug!("{}: tunnel: {why}; closing both sides", self.peer);
                self.end_tunnel(cx, Outcome::Reset);
                true
            }
        }
    }

    fn end_tunnel<H>(&mut self, cx: &mut Cx<'_, H>, outcome: Outcome) {
        if let Some(tunnel) = self.tunnel.take() {
            tunnel.close(cx.registry, cx.pool, cx.pipes);
        }
        if let Some(m) = self.direct {
            let up = &mut self.ups[m];
            up.finish(outcome, cx.now);
            up.close(cx.registry);
            up.state = State::Idle;
        }
        self.selection = Selection::none();
    }

    // ---- completion --------------------------------------------------

    fn settle<H: Hooks>(&mut self, cx: &mut Cx<'_, H>) -> bool {
        match self.phase {
            // Shadows of the last exchange may still be answering.
            Phase::Head => !self.selection.is_empty() && self.finish_exchange(cx),
            Phase::Closing => {
                if self.client.is_some() && self.cout_pos >= self.cout.len() {
                    self.close_client(cx.registry);
                    return true;
                }
                self.finish_exchange(cx)
            }
            Phase::Tunnel => false,
            Phase::Exchange => {
                let mut progress = false;
                if !self.client_done && self.response_sent() {
                    self.client_done = true;
                    progress = true;
                    if !self.client_keep_alive || !self.req_body.is_done() {
                        self.close_client(cx.registry);
                    }
                }
                if self.client_done && self.client.is_some() && cx.cfg.keep_alive == KeepAlive::Always {
                    // Shadows may go on answering while the client is idle;
                    // they move to the backlog only if a next request comes
                    // first (no syscall for the common case).
                    self.phase = Phase::Head;
                    self.head_since = cx.now;
                    progress = true;
                }
                if self.client_done || self.client.is_none() {
                    progress |= self.finish_exchange(cx);
                }
                progress
            }
        }
    }

    /// The client has its whole response.
    fn response_sent(&self) -> bool {
        let flushed = self.client_flushed();
        match self.direct {
            Some(m) => self.ups[m].state == State::Done && flushed,
            None => self.primary.is_some() && flushed,
        }
    }

    /// When every selected backend is done: the hooks, then the next request
    /// or the end.
    fn finish_exchange<H: Hooks>(&mut self, cx: &mut Cx<'_, H>) -> bool {
        if self.selection.is_empty() || self.selection.iter().any(|b| !matches!(self.ups[b].state, State::Done)) {
            return false;
        }
        if self.selection.len() > 1 {
            let reports: Vec<_> = self.selection.iter().map(|b| self.ups[b].take_report()).collect();
            let exchange = Exchange {
                id: self.exchange_id,
                request: Request::new(&self.req, &self.req_bytes, self.peer),
                backends: &cx.cfg.backends,
                reports: &reports,
            };
            cx.hooks.backends_finished(&exchange);
        }
        self.next_request(cx);
        true
    }

    /// The client has its response while shadows still answer: they move
    /// to the backlog with the request, and the client's next request may
    /// start. With the backlog full they are dropped (counted).
    fn detach<H: Hooks>(&mut self, cx: &mut Cx<'_, H>) -> bool {
        let waiting = self
            .selection
            .iter()
            .filter(|&b| self.ups[b].state != State::Done)
            .fold(Selection::none(), Selection::with);
        if waiting.is_empty() || self.direct.is_none_or(|m| waiting.contains(m)) {
            return false;
        }
        if cx.backlog.is_full() {
            // Never waited for in front of the client: dropped, counted.
            debug!("{}: too many exchanges pending; shadow answers dropped", self.peer);
            for b in waiting.iter() {
                let up = &mut self.ups[b];
                up.finish(Outcome::Dropped, cx.now);
                up.close(cx.registry);
                cx.backlog.count_drop(b);
            }
            return true;
        }
        let mut ups = Vec::with_capacity(waiting.len());
        for b in waiting.iter() {
            let fresh = Upstream::new(b, cx.cfg.backends[b].timeout, cx.now, cx.backlog.stats().clone());
            ups.push(std::mem::replace(&mut self.ups[b], fresh));
        }
        let done = self
            .selection
            .iter()
            .filter(|&b| !waiting.contains(b))
            .map(|b| self.ups[b].take_report())
            .collect();
        let pending = Pending {
            id: self.exchange_id,
            peer: self.peer,
            req: std::mem::take(&mut self.req),
            req_bytes: std::mem::take(&mut self.req_bytes),
            done,
            ups,
        };
        cx.backlog.adopt(pending, cx.registry, cx.tokens, cx.pool);
        self.next_request(cx);
        true
    }

    /// Readies the session for the client's next request.
    fn next_request<H>(&mut self, cx: &mut Cx<'_, H>) {
        for b in self.selection.iter() {
            let up = &mut self.ups[b];
            up.state = State::Idle;
            cx.backlog.unreserve(up);
            if up.sock.is_some() && !up.reusable {
                up.close(cx.registry);
            }
        }
        self.selection = Selection::none();
        self.direct = None;
        self.primary = None;
        self.req.clear();
        if self.client.is_some() && self.phase == Phase::Exchange {
            self.phase = Phase::Head;
            self.head_since = cx.now;
        }
    }

    // ---- endings -----------------------------------------------------

    fn close_client(&mut self, registry: &Registry) {
        if let Some(mut client) = self.client.take() {
            let _ = registry.deregister(&mut client);
        }
        self.ready.reset();
    }

    /// The client is gone: what only it needed stops, shadows go on.
    fn client_gone<H>(&mut self, cx: &mut Cx<'_, H>) {
        self.close_client(cx.registry);
        if let Some(m) = self.direct {
            let up = &mut self.ups[m];
            if !matches!(up.state, State::Done | State::Idle) {
                up.finish(Outcome::Skipped, cx.now);
            }
            up.close(cx.registry);
        }
        // Copies still missing body bytes will never get them.
        for b in self.selection.iter() {
            let up = &mut self.ups[b];
            if !up.out_complete && !matches!(up.state, State::Done | State::Idle) {
                up.finish(Outcome::Skipped, cx.now);
                up.close(cx.registry);
            }
        }
    }

    fn abort_backends<H>(&mut self, cx: &mut Cx<'_, H>) {
        for b in self.selection.iter() {
            let up = &mut self.ups[b];
            if !matches!(up.state, State::Done | State::Idle) {
                up.finish(Outcome::Skipped, cx.now);
            }
            up.close(cx.registry);
        }
    }

    fn abort_all<H>(&mut self, cx: &mut Cx<'_, H>) {
        self.abort_backends(cx);
        self.close_client(cx.registry);
    }

    // ---- time --------------------------------------------------------

    /// The earliest moment something times out.
    pub(crate) fn deadline(&self, cfg: &Config) -> Option<Instant> {
        let mut at: Option<Instant> = None;
        let mut earliest = |t: Instant| at = Some(at.map_or(t, |a| a.min(t)));
        if let Some((t, _)) = self.client_deadline(cfg) {
            earliest(t);
        }
        for (b, up) in self.ups.iter().enumerate() {
            if self.backend_clock_runs(b) {
                earliest(up.last_io + up.timeout);
            }
        }
        at
    }

    /// Whether backend `b`'s own timeout runs: it is connecting or owes a
    /// response, and the client is not what holds it back (a full buffer
    /// the client is slow to take, or request body bytes the client has not
    /// sent yet: those are the client's deadlines).
    fn backend_clock_runs(&self, b: usize) -> bool {
        let up = &self.ups[b];
        if !matches!(up.state, State::Connecting | State::Active) || self.phase == Phase::Tunnel {
            return false;
        }
        let direct = self.direct == Some(b);
        let held_by_reader = direct && up.inb.as_ref().is_some_and(Buffer::is_full);
        let waiting_for_body =
            up.state == State::Active && !up.out_complete && up.out_flushed() && (!direct || self.fwd == 0);
        !held_by_reader && !waiting_for_body
    }

    /// When the client will have taken too long, and at what.
    fn client_deadline(&self, cfg: &Config) -> Option<(Instant, ClientWait)> {
        if let Some(tunnel) = self.tunnel.as_ref() {
            return Some((tunnel.since() + cfg.client_idle_timeout, ClientWait::Tunnel));
        }
        self.client.as_ref()?;
        let wait = match self.phase {
            Phase::Head if self.served && self.cin.is_empty() => ClientWait::Idle,
            Phase::Head => ClientWait::Head,
            // A full buffer waits for the master, not for the client.
            Phase::Exchange if !self.req_body.is_done() && !self.cin.is_full() => ClientWait::Body,
            Phase::Exchange if !self.client_flushed() => ClientWait::Reading,
            Phase::Exchange => return None,
            Phase::Tunnel => return None,
            Phase::Closing => ClientWait::Reply,
        };
        let at = match wait {
            ClientWait::Head => self.head_since + cfg.client_timeout,
            ClientWait::Idle => self.head_since + cfg.keepalive_timeout,
            ClientWait::Body | ClientWait::Reading | ClientWait::Tunnel => {
                self.last_client_io + cfg.client_idle_timeout
            }
            ClientWait::Reply => self.last_client_io + cfg.client_timeout,
        };
        Some((at, wait))
    }

    /// The client took too long at `wait`.
    fn client_timed_out<H: Hooks>(&mut self, cx: &mut Cx<'_, H>, wait: ClientWait) {
        match wait {
            ClientWait::Head if self.cin.is_empty() => {
                debug!("{}: no request within the client timeout; closing", self.peer);
                self.close_client(cx.registry);
            }
            ClientWait::Head => {
                info!(
                    "{}: no complete request head within {:?} of its start; 408",
                    self.peer, cx.cfg.client_timeout
                );
                self.reply(cx, 408, "request head not received in time");
                // One more chance to flush the 408, then it is closed.
                self.last_client_io = cx.now;
            }
            ClientWait::Idle => {
                debug!("{}: idle keep-alive connection past its timeout; closing", self.peer);
                self.close_client(cx.registry);
            }
            ClientWait::Body => {
                info!(
                    "{}: request body made no progress for {:?}; cut",
                    self.peer, cx.cfg.client_idle_timeout
                );
                let answered = self.direct.is_some_and(|m| self.ups[m].head_forwarded) || !self.cout.is_empty();
                self.abort_backends(cx);
                if answered {
                    self.close_client(cx.registry);
                } else {
                    self.reply(cx, 408, "request body not received in time");
                    self.last_client_io = cx.now;
                }
            }
            ClientWait::Reading => {
                info!(
                    "{}: client read nothing of its response for {:?}; closing",
                    self.peer, cx.cfg.client_idle_timeout
                );
                self.client_gone(cx);
            }
            ClientWait::Tunnel => {
                debug!("{}: tunnel idle past the client idle timeout; closing", self.peer);
                self.end_tunnel(cx, Outcome::Skipped);
            }
            ClientWait::Reply => {
                debug!(
                    "{}: final answer not taken within the client timeout; closing",
                    self.peer
                );
                self.close_client(cx.registry);
            }
        }
    }

    /// Applies every timeout due at `now`.
    pub(crate) fn on_timeout<H: Hooks>(&mut self, cx: &mut Cx<'_, H>) {
        let now = cx.now;
        for b in 0..self.ups.len() {
            if self.backend_clock_runs(b) && now >= self.ups[b].last_io + self.ups[b].timeout {
                self.fail(cx, b, Outcome::Timeout);
            }
        }
        match self.client_deadline(cx.cfg) {
            Some((at, wait)) if now >= at => self.client_timed_out(cx, wait),
            _ => {}
        }
        self.pump(cx);
    }
}

/// Appends a rewritten response head to what the client is owed.
fn queue_head(cout: &mut Vec<u8>, scratch: &mut Vec<u8>, head: &ResponseHead, buf: &[u8], rw: &HeadRewrite) {
    if cout.is_empty() {
        write_response(head, buf, rw, cout);
    } else {
        write_response(head, buf, rw, scratch);
        cout.extend_from_slice(scratch);
    }
}
