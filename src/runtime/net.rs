//! Socket I/O folded into one small result type: the one place where
//! `io::ErrorKind` is read.

use std::io::{self, Read, Write};

/// What one read or write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Io {
    /// This many bytes moved (never zero).
    Done(usize),
    /// Nothing now; wait for readiness.
    WouldBlock,
    /// The peer closed its sending side (read), or nothing could be written
    /// because the peer is gone (write returned 0).
    Closed,
    /// The connection failed.
    Failed(Failure),
}

/// Why a connection failed, as far as the proxy cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// Nothing listens there.
    Refused,
    /// The peer reset the connection (or it broke: EPIPE).
    Reset,
    /// Anything else (unreachable, out of resources, ...).
    Other,
    /// The TLS layer failed: a handshake or a record was refused (the
    /// [`Stream`](super::transport::Stream) keeps the reason).
    Tls,
}

impl Failure {
    /// Names an I/O error.
    pub fn of(err: &io::Error) -> Failure {
        match err.kind() {
            io::ErrorKind::ConnectionRefused => Failure::Refused,
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted | io::ErrorKind::BrokenPipe => {
                Failure::Reset
            }
            _ => Failure::Other,
        }
    }
}

/// What the poller said about one socket, kept until an operation shows
/// otherwise (sockets are registered once, edge-triggered).
///
/// Readiness is cleared by WouldBlock, and also by a short read or write:
/// on Linux a TCP read that returns less than asked found the receive queue
/// empty, and data arriving later raises a new edge (likewise a short write
/// found the send buffer full). The one exception is a FIN that came with
/// the data: no edge follows it, so once an event said the peer closed its
/// side, reads go on until they return 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Readiness {
    /// Reading may make progress.
    pub readable: bool,
    /// Writing may make progress.
    pub writable: bool,
    /// TCP urgent data arrived (`EPOLLPRI`, when registered for it); kept
    /// until the reader clears it.
    pub urgent: bool,
    read_closed: bool,
}

impl Readiness {
    /// What one event says.
    pub fn of(event: &mio::event::Event) -> Readiness {
        let error = event.is_error();
        Readiness {
            readable: event.is_readable() || event.is_read_closed() || error,
            writable: event.is_writable() || event.is_write_closed() || error,
            urgent: event.is_priority(),
            read_closed: event.is_read_closed() || error,
        }
    }

    /// Adds what a new event says.
    pub fn merge(&mut self, new: Readiness) {
        self.readable |= new.readable;
        self.writable |= new.writable;
        self.urgent |= new.urgent;
        self.read_closed |= new.read_closed;
    }

    /// Reads once from `sock` into `buf` and updates readiness by what the
    /// read found. Not readable (or `buf` empty): `WouldBlock`, no syscall.
    ///
    /// This and the two writes below are the only way the proxy and the
    /// router move bytes through a socket (TLS records too: see
    /// [`transport`](super::transport)), so no loop can forget to clear
    /// readiness and spin on a socket that would block.
    pub fn read(&mut self, sock: &mut impl Read, buf: &mut [u8]) -> Io {
        if !self.readable || buf.is_empty() {
            return Io::WouldBlock;
        }
        let io = fold(|| sock.read(buf));
        self.after_read(io, buf.len());
        io
    }

    /// Writes once from `data` to `sock` and updates readiness by what the
    /// write found. Not writable (or `data` empty): `WouldBlock`, no
    /// syscall.
    pub fn write(&mut self, sock: &mut impl Write, data: &[u8]) -> Io {
        self.write2(sock, data, &[])
    }

    /// Writes once from two slices with one `writev`, as
    /// [`write`](Self::write).
    pub fn write2(&mut self, sock: &mut impl Write, first: &[u8], second: &[u8]) -> Io {
        let len = first.len() + second.len();
        if !self.writable || len == 0 {
            return Io::WouldBlock;
        }
        let io = if second.is_empty() {
            fold(|| sock.write(first))
        } else {
            let bufs = [io::IoSlice::new(first), io::IoSlice::new(second)];
            fold(|| sock.write_vectored(&bufs))
        };
        self.after_write(io, len);
        io
    }

    /// Updates after a read into `room` bytes.
    fn after_read(&mut self, io: Io, room: usize) {
        match io {
            Io::WouldBlock => self.readable = false,
            Io::Done(n) if n < room && !self.read_closed => self.readable = false,
            _ => {}
        }
    }

    /// Updates after a write of `len` bytes.
    fn after_write(&mut self, io: Io, len: usize) {
        match io {
            Io::WouldBlock => self.writable = false,
            Io::Done(n) if n < len => self.writable = false,
            _ => {}
        }
    }

    /// Forgets everything (the socket is gone or replaced).
    pub fn reset(&mut self) {
        *self = Readiness::default();
    }
}

/// Runs one I/O call (again on EINTR) and folds its result.
pub fn fold(mut op: impl FnMut() -> io::Result<usize>) -> Io {
    loop {
        match op() {
            Ok(0) => return Io::Closed,
            Ok(n) => return Io::Done(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Io::WouldBlock,
            Err(e) => return Io::Failed(Failure::of(&e)),
        }
    }
}

/// Whether a non-blocking connect finished: `Some(Ok)` connected,
/// `Some(Err)` failed, `None` still under way.
pub fn connect_result(sock: &mio::net::TcpStream) -> Option<Result<(), Failure>> {
    match sock.take_error() {
        Ok(Some(e)) | Err(e) => return Some(Err(Failure::of(&e))),
        Ok(None) => {}
    }
    match sock.peer_addr() {
        Ok(_) => Some(Ok(())),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => None,
        Err(e) => Some(Err(Failure::of(&e))),
    }
}

/// What to do after `accept` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptError {
    /// The backlog is empty.
    WouldBlock,
    /// That one connection failed (aborted, interrupted): accept the next.
    Retry,
    /// Out of descriptors or memory, or anything else: pause accepting a
    /// while rather than spin on a listener that stays readable.
    Pause,
}

/// Names an `accept` error.
pub fn accept_error(err: &io::Error) -> AcceptError {
    match err.kind() {
        io::ErrorKind::WouldBlock => AcceptError::WouldBlock,
        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset => {
            AcceptError::Retry
        }
        _ => AcceptError::Pause,
    }
}
