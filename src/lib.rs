//! # kage: an HTTP/1 shadow proxy and content-aware TCP router
//!
//! Every client request goes to the **master** (production) backend, whose
//! response streams straight back to the client. Selected requests are also
//! replayed to **shadow** backends (new code); their responses are captured,
//! never sent to the client, and handed to [`proxy::Hooks::backends_finished`]
//! with the master's. A shadow may be down, slow, broken or hostile: the
//! client must not notice.
//!
//! This page is the living picture of the design.
//!
//! ## Layers
//!
//! One direction of imports: the upper layers use the lower ones.
//!
//! ```text
//! main.rs            the `kage` binary: parse, log, run, exit code; signals
//!   |
//! app/               the binary's side: cli (flags, help), config_file
//!   |                (kage.toml), policy (routes, sampling, sticky), demo,
//!   |                replay. No library layer below imports it.
//!   v
//! compare/           the comparator: a Hooks comparing each shadow with the
//!   |                master (status, headers, body; JSON by path), diff log
//! access             the access log: a line per request (Combined or JSON)
//!   |                with the shadows' verdicts, buffered, flushed by deadline
//! route/ (mio)       the TCP router: Relay (listener, slab of connections),
//!   |                conn (peek, connect with failover, replay, splice),
//!   |                settings, and the sans-IO decision layer: Router
//!   |                trait, Rules (prefix, regex DFA, HTTP Host, TLS SNI),
//!   |                routes.toml
//! proxy/ (mio)       Proxy: listener, events, deadlines, shutdown
//!   |                slots: the slab of connections, each parked
//!   |                (idle: a socket and clocks, no buffer) or live
//!   |                session: one client connection, one exchange at a
//!   |                time, the client side, its deadlines, its account
//!   |                upkeep: the master's readiness probe, new addresses
//!   |                plan (sans-IO): backends, head rewrites, keep-alive
//!   |                digest (sans-IO): whole-body digests past the capture
//!   |                upstream: one backend connection: drive (connect,
//!   |                send, read, parse; streamed or captured), settle
//!   |                tunnel: an upgrade, on runtime's two-way splice
//!   |                pending: exchanges whose client moved on (shadows late)
//!   |                pool: idle backend connections shared by sessions
//!   |                hooks: select / munge / backends_finished /
//!   |                request_done (the client's side, for access logs)
//! metrics            counters, fixed-bucket histograms, the /metrics Service
//!   |                (with /healthz, and /readyz from the proxy's master checks)
//! tls                rustls configurations (the *ring* provider): the
//!   |                listener's certificates (chosen by SNI, reloaded in
//!   |                place), the backends' connectors (roots, CA files,
//!   |                names, one shared resumption cache). No socket I/O.
//!   v
//! runtime/           what proxy and router share: buffer (pooled by size
//!   |                class, small first, grown by need),
//!   |                net (io results as one enum; readiness does the I/O),
//!   |                transport (a Stream: plain TCP, or TCP with a
//!   |                rustls connection driven through that readiness),
//!   |                tokens, sweep (deadlines), listen (acceptor, EMFILE
//!   |                pause, cap), fds (descriptor limit), flow/pipe (the
//!   |                two-way splice, splice(2)), server (a Poll running
//!   |                Services), resolve (backend host names looked up
//!   |                again on a thread of their own)
//! http/ (sans-IO)    heads on httparse, framing, chunked, head rewrite
//! values             value parsers the config readers share: durations,
//!                    sizes, addresses, file:line positions
//! ```
//!
//! [`http`] never imports mio or `std::net`; [`proxy`] never parses bytes
//! itself. The proxy, the tests and `cargo fuzz` drive the same parser.
//!
//! ## Life of one request
//!
//! 1. The client socket is readable: a parked connection (one waiting with
//!    nothing buffered) is revived into a session, and bytes are read into a
//!    small buffer from the pool ([`runtime::buffer::SMALL_BUFFER`]), grown
//!    to [`proxy::CLIENT_BUFFER`] only if a head fills it. Then
//!    [`http::RequestHead::parse`] looks for the end of the head in the new
//!    bytes only (one `memmem` for LF CRLF).
//!    The complete head is parsed once by httparse and validated (framing,
//!    Host, target form, version, bare CR/LF, ...); a bad one is answered
//!    with its status (400, 414, 431, 501, 505) and the connection closed,
//!    nothing forwarded. Framing is forwarded in one canonical form (one
//!    `Content-Length` without leading zeros, `Transfer-Encoding: chunked`
//!    alone). A head not complete within the client timeout of its start
//!    gets 408.
//! 2. [`proxy::Hooks::select_backends`] picks the backends, for every request.
//!    The plan (`proxy/plan.rs`, no IO) gives each its own
//!    [`http::HeadRewrite`] (backend header rules, then
//!    [`proxy::Hooks::munge_request`]) and its head re-serialized: hop-by-hop
//!    fields dropped, `Connection: keep-alive` for a master-only request,
//!    `Connection: close` when shadowed (Kage's rule, the default
//!    [`proxy::KeepAlive::MasterOnly`]); with [`proxy::KeepAlive::Always`]
//!    every backend is asked for keep-alive.
//! 3. The master (reused if its connection was kept alive) gets the head, then
//!    body bytes straight from the client buffer as the [`http::BodyDecoder`]
//!    vouches for them. Shadows get a copy of head and body streamed
//!    through a window of unsent bytes each
//!    ([`proxy::Config::shadow_body_window`]): a body of any length reaches
//!    them whole, and a shadow that falls further behind is cut for the
//!    request ([`proxy::Outcome::TooSlow`]), never waited for.
//! 4. Every backend is driven by one reader (`Upstream::drive`): connect,
//!    send, read, parse. The master's response is streamed: its head is
//!    rewritten for the client (the keep-alive answer from the plan) and
//!    queued, body bytes are written from the master's read buffer to the
//!    client as they arrive. A full buffer is backpressure: the master is
//!    not read while the client is slow, and the client's socket is waited
//!    for, never spun on.
//! 5. Shadow responses are read, framed and captured, never written anywhere.
//!    A captured body (master or shadow) is kept up to
//!    [`proxy::Config::capture_cap`]; past it the rest is digested as it
//!    streams ([`proxy::BodyDigest`]: decoded, XXH3 by 64 KiB block and
//!    whole), so a comparison covers every byte. The binary's hooks are a
//!    [`compare::Compare`]: when the exchange is done each shadow is
//!    compared with the master and a line goes to the diff log.
//! 6. When every selected backend is done (complete, failed, timed out),
//!    [`proxy::Hooks::backends_finished`] gets an [`proxy::Exchange`] with a
//!    [`proxy::BackendReport`] per backend. A master-only request on a
//!    keep-alive connection then waits for the next request (pipelined bytes
//!    are already buffered); a shadowed one has closed the client connection
//!    as soon as the master's response was flushed, without waiting for the
//!    shadows. With [`proxy::KeepAlive::Always`] a shadowed request keeps the
//!    client too: shadows still answering when the client has its response
//!    move to the proxy's backlog (their sockets re-registered on its own
//!    tokens, so a late answer stays with its own request; a shadow
//!    connection carries one request at a time) and the session reads the
//!    next request at once. The hooks see the exchange when its last shadow
//!    is done. The backlog is bounded: past it, shadow requests are dropped
//!    and counted ([`proxy::Outcome::Dropped`]), never queued in front of
//!    the client.
//!    Separately, when the client's response is over (sent whole, cut, or
//!    answered by the proxy), [`proxy::Hooks::request_done`] gets a
//!    [`proxy::Served`]: status, body bytes, duration; the comparator
//!    joins it with the verdicts into one [`access`] log line.
//! 7. A client waiting for its next request with nothing buffered is
//!    parked: the slab keeps its socket, clocks and the master connection
//!    kept for it (about a hundred bytes; the emptied session goes to a
//!    short list of spares, its buffers to the pool). After
//!    [`proxy::KEEP_BACKEND_WHILE_IDLE`], or past
//!    [`proxy::Config::pool_idle_per_backend`] kept connections, the master
//!    connection goes to the per-backend pools shared by all sessions
//!    (bounded, with an idle timeout), as do the reusable backend
//!    connections of ended sessions and of finished pending exchanges; a
//!    later request takes the newest live one before connecting.
//!
//! The router's life of a connection is in [`route`]: peek, decide, connect
//! in failover order, replay, splice with backpressure and half-close.
//!
//! Upgrades (101) and CONNECT go to the master alone and become a raw
//! two-way splice with half-close: the router's, from [`runtime`], with
//! splice(2) pipes for bulk streams. Master failures before its response head
//! become 502 (504 on timeout); after it, the client connection is closed,
//! never padded.
//!
//! ## Event loop rules
//!
//! Each socket is registered once (readable and writable, edge-triggered);
//! readiness is cached per socket ([`runtime::net::Readiness`]) and cleared by
//! WouldBlock or by a short read or write. That departs from "drain until
//! WouldBlock" on purpose: on Linux a short TCP read found the queue empty
//! and later data raises a new edge, so the confirming read only cost a
//! syscall (a third of them per keep-alive request, measured with strace).
//! The exception that makes it safe: after an event saying the peer closed
//! its side, reads go on until they return 0. A session's
//! `pump` makes every move its readiness and buffers allow, within an
//! iteration budget. After each pump the session's next deadline (client or
//! backend) is folded into one "next sweep" instant; a sweep, at most every
//! [`proxy::SWEEP_INTERVAL`], applies what is due: no allocation and no
//! queue that grows with traffic. Client deadlines bound whole phases
//! (the head from its first byte, a keep-alive idle, no progress on a body
//! or on a response the client should read), never the time since the last
//! byte alone: a client dripping a byte a second is still cut off. Socket
//! bytes move only through [`runtime::net::Readiness::read`] and
//! [`runtime::net::Readiness::write`], which clear readiness as the syscall says, so
//! no loop can spin on a socket that would block. Every buffer goes back to a
//! [`runtime::buffer::BufferPool`] (by size class, each bounded) as soon as
//! it is drained, and is taken again when bytes arrive: a few buffers serve
//! all connections, and an idle one holds none. Every limit is a named constant ([`http::limits`],
//! [`proxy`] constants).
//!
//! ## TLS
//!
//! TLS is one more layer under the same session code: a client socket, a
//! backend connection, a pooled or kept one and a tunnel's end all hold a
//! [`runtime::transport::Stream`], plain or TLS, and move bytes through
//! its `read` and `write2`, which go through the same readiness (records
//! are read and written by rustls through adaptors calling
//! [`runtime::net::Readiness`]). Three rules keep edge-triggered readiness
//! right: rustls may hold decrypted bytes after the socket is drained, so a
//! read leaving some sets `readable` again; handshake records, tickets and
//! alerts go out whenever the socket is writable (a session flushes its
//! client before anything else, an upstream before its request), and a
//! response is sent only once rustls holds nothing for the wire; a write of
//! plaintext counts once rustls took it, up to
//! [`runtime::transport::TLS_BUFFER_LIMIT`] held, past which it is
//! backpressure like a full socket. splice(2) is used only between plain
//! sockets. A client's handshake counts within the deadline of its first
//! head. A backend's failed handshake is [`proxy::Outcome::Tls`]: a 502 for
//! the master, a failed shadow otherwise. [`tls`] builds the rustls
//! configurations: the listener's certificates by SNI, swapped in place by
//! [`proxy::Proxy::reload_tls`] (SIGHUP in the binary), and one connector
//! per HTTPS backend.
//!
//! ## Embedding
//!
//! A [`proxy::Proxy`] registers on the host's `mio::Registry` within a token
//! range the host chooses, handles the events the host passes it
//! ([`proxy::Proxy::handle_event`] returns false for other tokens) and tells
//! the host its next deadline. `examples/embed.rs` shows a host with its own
//! protocol; [`runtime::server::Server`] is a ready-made host.
//!
//! ## Backends by name
//!
//! A backend given by host name ([`proxy::Backend::dns_name`]) is looked
//! up again every [`proxy::Config::resolve_interval`], and sooner (at most
//! every [`runtime::resolve::RESOLVE_RETRY_GAP`]) after a connect to it
//! failed. `getaddrinfo` blocks, so the lookups run on one thread per
//! proxy ([`runtime::resolve`]; none when every backend is an IP literal),
//! fed through a channel; the loop needs no waker: the resolver's due time
//! is part of the proxy's next deadline, and its answers are taken in by
//! `on_timeout` (every [`runtime::resolve::RESOLVE_POLL`] while a lookup is
//! under way). A new address is written into the config; exchanges in
//! flight finish on their connections, and idle connections to the old
//! address are not reused: the pools and the parked clients' kept ones
//! close when the change lands, a session's own when it next starts an
//! exchange (each upstream knows where its connection goes). The thread
//! stops when the proxy drops. The router's [`route::Relay`] does the same
//! for what [`route::Router::names`] lists (the rules' `to` host names),
//! every interval and after a connect to one of their addresses failed
//! (at most once per retry gap), and tells the router with
//! [`route::Router::readdress`]: later decisions carry the new address,
//! connections already routed stay where they are.
//!
//! ## Fuzzing
//!
//! [`fuzzing`] holds the bodies of the fuzz targets under `fuzz/`; `tests/`
//! replays the committed corpus through the same functions on plain
//! `cargo test`.

#![warn(missing_docs)]

pub mod access;
pub mod app;
pub mod compare;
pub mod fuzzing;
pub mod http;
pub mod metrics;
pub mod proxy;
pub mod route;
pub mod runtime;
pub mod tls;
pub mod values;
