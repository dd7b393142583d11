//! A listening socket as the proxy and the router use it: accepts until the
//! backlog is empty, pauses a while on errors such as EMFILE instead of
//! spinning on a listener that stays readable, and closes on shutdown.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol, Socket, Type};

use crate::runtime::net::{AcceptError, accept_error};

/// How long accepting pauses after an accept error such as EMFILE.
pub const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Connections the kernel queues before they are accepted (capped by
/// `net.core.somaxconn`). The standard library's 128 drops SYNs under a
/// burst of new connections.
pub const LISTEN_BACKLOG: i32 = 4096;

/// Most one "connection cap reached" line per this interval.
pub const FULL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// A listener with its readiness and pause.
#[derive(Debug)]
pub(crate) struct Acceptor {
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    ready: bool,
    paused_until: Option<Instant>,
    full_logged_at: Option<Instant>,
}

impl Acceptor {
    /// Binds `addr` (with `SO_REUSEADDR`, as servers do, and a backlog of
    /// [`LISTEN_BACKLOG`]).
    pub(crate) fn bind(addr: SocketAddr) -> io::Result<Self> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(LISTEN_BACKLOG)?;
        let listener = TcpListener::from_std(socket.into());
        let local_addr = listener.local_addr()?;
        Ok(Acceptor {
            listener: Some(listener),
            local_addr,
            ready: false,
            paused_until: None,
            full_logged_at: None,
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub(crate) fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        match self.listener.as_mut() {
            Some(listener) => registry.register(listener, token, Interest::READABLE),
            None => Ok(()),
        }
    }

    /// The poller said the listener is readable.
    pub(crate) fn on_ready(&mut self) {
        self.ready = true;
    }

    /// Whether an accept may find a connection now.
    pub(crate) fn may_accept(&self) -> bool {
        self.ready && self.paused_until.is_none() && self.listener.is_some()
    }

    /// The next connection (with `TCP_NODELAY` set), or `None` when the
    /// backlog is empty, accepting is paused, or the listener is closed.
    pub(crate) fn accept(&mut self, now: Instant) -> Option<(TcpStream, SocketAddr)> {
        while self.may_accept() {
            let listener = self.listener.as_ref()?;
            match listener.accept() {
                Ok((sock, peer)) => {
                    let _ = sock.set_nodelay(true);
                    return Some((sock, peer));
                }
                Err(e) => match accept_error(&e) {
                    AcceptError::WouldBlock => self.ready = false,
                    AcceptError::Retry => {}
                    AcceptError::Pause => {
                        warn!(
                            "accept on {} failed: {e}; pausing accepts for {ACCEPT_PAUSE:?}",
                            self.local_addr
                        );
                        self.paused_until = Some(now + ACCEPT_PAUSE);
                    }
                },
            }
        }
        None
    }

    /// Accepting stopped at the connection cap `cap` while connections may
    /// be waiting: says so, at most once per [`FULL_LOG_INTERVAL`]. The
    /// kernel queues the waiting ones; accepting resumes when one closes.
    pub(crate) fn at_cap(&mut self, cap: usize, now: Instant) {
        if !self.may_accept() || self.full_logged_at.is_some_and(|t| now < t + FULL_LOG_INTERVAL) {
            return;
        }
        self.full_logged_at = Some(now);
        warn!(
            "{}: {cap} connections open, the cap (--max-connections); accepting paused until one closes",
            self.local_addr
        );
    }

    /// When a pause ends.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.paused_until
    }

    /// Ends a pause that is over; true when accepting may resume.
    pub(crate) fn on_timeout(&mut self, now: Instant) -> bool {
        if self.paused_until.is_some_and(|t| t <= now) {
            self.paused_until = None;
            return true;
        }
        false
    }

    /// Stops listening; `open` connections are mentioned in the log.
    pub(crate) fn close(&mut self, registry: &Registry, open: usize) {
        if let Some(mut listener) = self.listener.take() {
            let _ = registry.deregister(&mut listener);
            info!("stopped accepting on {}; {open} connection(s) open", self.local_addr);
        }
    }
}
