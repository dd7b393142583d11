//! A connection's transport: a plain TCP socket, or one carrying a TLS
//! session (rustls, sans-IO). The proxy's sessions, backend connections,
//! pools and tunnels hold a [`Stream`] and move bytes through it with the
//! same calls either way; TLS is a layer under them, not a second kind of
//! session.
//!
//! Every byte still goes through [`Readiness::read`] and
//! [`Readiness::write2`]: rustls reads and writes records through small
//! adaptors that call them, so readiness is cleared as the syscalls say.
//! What TLS adds to the readiness rules:
//!
//! - rustls may hold decrypted bytes after the socket is drained. A read
//!   that leaves some there sets `readable` again, so the owner comes back
//!   for them (at worst one read that says WouldBlock).
//! - Handshake records, tickets and alerts are written as soon as the
//!   socket is writable; bytes rustls still holds for the wire are
//!   [`Stream::wants_flush`], and [`Stream::flush`] sends them.
//! - A write of plaintext is done once rustls took it, and rustls takes at
//!   most [`TLS_BUFFER_LIMIT`] bytes not yet on the wire: a full one is
//!   backpressure, like a full socket.
//! - A TLS stream is never spliced with splice(2): the bytes in the kernel
//!   are records, not the plaintext.

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::net::{Failure, Io, Readiness};

/// Most bytes rustls holds on a connection for the wire: plaintext written
/// before the handshake is over, and records not sent yet (each).
pub const TLS_BUFFER_LIMIT: usize = 64 * 1024;

/// Most record reads one [`Stream::read`] makes without finding a byte of
/// plaintext; past it the peer is sending only noise and the connection
/// fails (a handshake takes a few).
pub const TLS_READS_WITHOUT_DATA: usize = 64;

/// A socket, plain or with TLS on it. Registered on mio as its socket.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TCP carrying TLS (boxed: the rustls state is several hundred bytes,
    /// and an idle plain connection should not pay for it).
    Tls(Box<TlsStream>),
}

/// A TCP socket with a rustls connection on it.
#[derive(Debug)]
pub struct TlsStream {
    sock: TcpStream,
    tls: rustls::Connection,
    /// Decrypted bytes rustls holds for us.
    plain: usize,
    /// The peer sent close_notify, or the TCP stream ended.
    peer_closed: bool,
    /// close_notify is queued: the TCP side is shut once it is sent.
    closing: bool,
    /// Why the connection failed, when TLS said so.
    error: Option<rustls::Error>,
}

impl Stream {
    /// Puts `tls` on `sock`, bounding what rustls buffers.
    pub fn tls(sock: TcpStream, tls: impl Into<rustls::Connection>) -> Stream {
        let mut tls = tls.into();
        tls.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
        Stream::Tls(Box::new(TlsStream {
            sock,
            tls,
            plain: 0,
            peer_closed: false,
            closing: false,
            error: None,
        }))
    }

    /// The TCP socket under it.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &t.sock,
        }
    }

    /// Carries TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// Reads once (a TLS stream: decrypted bytes it holds, else records
    /// from the socket until some plaintext comes out or the socket would
    /// block).
    pub fn read(&mut self, ready: &mut Readiness, buf: &mut [u8]) -> Io {
        match self {
            Stream::Plain(s) => ready.read(s, buf),
            Stream::Tls(t) => t.read(ready, buf),
        }
    }

    /// Writes once from `data`, as [`write2`](Self::write2).
    pub fn write(&mut self, ready: &mut Readiness, data: &[u8]) -> Io {
        self.write2(ready, data, &[])
    }

    /// Writes once from two slices (plain: one `writev`; TLS: what rustls
    /// takes of them, then records are sent as the socket allows).
    pub fn write2(&mut self, ready: &mut Readiness, first: &[u8], second: &[u8]) -> Io {
        match self {
            Stream::Plain(s) => ready.write2(s, first, second),
            Stream::Tls(t) => t.write2(ready, first, second),
        }
    }

    /// Bytes are held for the wire (TLS records not sent yet).
    pub fn wants_flush(&self) -> bool {
        match self {
            Stream::Plain(_) => false,
            Stream::Tls(t) => t.tls.wants_write(),
        }
    }

    /// Sends what is held for the wire while the socket takes it; true
    /// when bytes moved.
    pub fn flush(&mut self, ready: &mut Readiness) -> Result<bool, Failure> {
        match self {
            Stream::Plain(_) => Ok(false),
            Stream::Tls(t) => t.flush(ready),
        }
    }

    /// Ends our sending side: plain, a TCP shutdown now; TLS, a
    /// close_notify, and the shutdown once it is sent.
    pub fn shutdown_write(&mut self, ready: &mut Readiness) -> Result<(), Failure> {
        match self {
            Stream::Plain(s) => s.shutdown(Shutdown::Write).map_err(|e| Failure::of(&e)),
            Stream::Tls(t) => {
                if !t.closing {
                    t.closing = true;
                    t.tls.send_close_notify();
                }
                t.flush(ready).map(|_| ())
            }
        }
    }

    /// Before closing a connection on purpose: a TLS stream queues
    /// close_notify and sends what it can now, never waiting.
    pub fn close_notify(&mut self, ready: &mut Readiness) {
        if self.is_tls() {
            let _ = self.shutdown_write(ready);
        }
    }

    /// An idle connection (pooled, or kept between requests) is still fit
    /// to carry a request: the peer neither closed it nor sent bytes
    /// nobody asked for. A TLS peer may send records that carry no data
    /// (session tickets): they are taken in here.
    pub fn idle_alive(&mut self, ready: &mut Readiness) -> bool {
        match self {
            Stream::Plain(s) => matches!(s.peek(&mut [0u8; 1]), Err(e) if e.kind() == io::ErrorKind::WouldBlock),
            Stream::Tls(t) => {
                ready.readable = true;
                t.read(ready, &mut [0u8; 1]) == Io::WouldBlock
            }
        }
    }

    /// Why TLS failed, for the log, when it did.
    pub fn tls_error(&self) -> Option<String> {
        match self {
            Stream::Tls(t) => t.error.as_ref().map(ToString::to_string),
            Stream::Plain(_) => None,
        }
    }

    /// The negotiated protocol version and ALPN protocol, for logs.
    pub fn tls_summary(&self) -> Option<(Option<rustls::ProtocolVersion>, Option<Vec<u8>>)> {
        match self {
            Stream::Tls(t) => Some((t.tls.protocol_version(), t.tls.alpn_protocol().map(<[u8]>::to_vec))),
            Stream::Plain(_) => None,
        }
    }
}

impl TlsStream {
    fn read(&mut self, ready: &mut Readiness, buf: &mut [u8]) -> Io {
        if buf.is_empty() {
            return Io::WouldBlock;
        }
        for _ in 0..TLS_READS_WITHOUT_DATA {
            if self.plain > 0 {
                return match self.tls.reader().read(buf) {
                    Ok(0) => Io::Closed,
                    Ok(n) => {
                        self.plain = self.plain.saturating_sub(n);
                        if self.plain > 0 {
                            // Edge-triggered: no event will say it is here.
                            ready.readable = true;
                        }
                        Io::Done(n)
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.plain = 0;
                        continue;
                    }
                    Err(e) => Io::Failed(Failure::of(&e)),
                };
            }
            if self.peer_closed {
                return Io::Closed;
            }
            let mut via = Via {
                sock: &mut self.sock,
                ready,
                io: Io::WouldBlock,
            };
            let _ = self.tls.read_tls(&mut via);
            match via.io {
                Io::WouldBlock => return Io::WouldBlock,
                Io::Failed(f) => return Io::Failed(f),
                Io::Closed => self.peer_closed = true,
                Io::Done(_) => {}
            }
            match self.tls.process_new_packets() {
                Ok(state) => {
                    self.plain = state.plaintext_bytes_to_read();
                    self.peer_closed |= state.peer_has_closed();
                }
                Err(e) => {
                    self.error = Some(e);
                    // The alert rustls queued goes out if it can.
                    let _ = self.flush(ready);
                    return Io::Failed(Failure::Tls);
                }
            }
            // Handshake answers and tickets go out at once.
            if let Err(f) = self.flush(ready) {
                return Io::Failed(f);
            }
        }
        self.error = Some(rustls::Error::General(format!(
            "{TLS_READS_WITHOUT_DATA} record reads brought no data"
        )));
        Io::Failed(Failure::Tls)
    }

    fn write2(&mut self, ready: &mut Readiness, first: &[u8], second: &[u8]) -> Io {
        if first.len() + second.len() == 0 || self.closing {
            return Io::WouldBlock;
        }
        // Room first: what is held goes to the wire.
        if let Err(f) = self.flush(ready) {
            return Io::Failed(f);
        }
        let mut taken = 0;
        for part in [first, second] {
            if part.is_empty() {
                continue;
            }
            match self.tls.writer().write(part) {
                Ok(n) => {
                    taken += n;
                    if n < part.len() {
                        break;
                    }
                }
                Err(e) => return Io::Failed(Failure::of(&e)),
            }
        }
        if let Err(f) = self.flush(ready) {
            return Io::Failed(f);
        }
        if taken == 0 { Io::WouldBlock } else { Io::Done(taken) }
    }

    fn flush(&mut self, ready: &mut Readiness) -> Result<bool, Failure> {
        let mut progress = false;
        while self.tls.wants_write() && ready.writable {
            let mut via = Via {
                sock: &mut self.sock,
                ready,
                io: Io::WouldBlock,
            };
            let _ = self.tls.write_tls(&mut via);
            match via.io {
                Io::Done(_) => progress = true,
                Io::WouldBlock => break,
                Io::Closed => return Err(Failure::Reset),
                Io::Failed(f) => return Err(f),
            }
        }
        if self.closing && !self.tls.wants_write() {
            // Once: a second shutdown is harmless but a syscall.
            self.closing = false;
            let _ = self.sock.shutdown(Shutdown::Write);
        }
        Ok(progress)
    }
}

/// The socket as rustls sees it: every read and write goes through the
/// readiness, and what it did is kept for the caller.
struct Via<'a> {
    sock: &'a mut TcpStream,
    ready: &'a mut Readiness,
    io: Io,
}

impl Via<'_> {
    fn result(&self) -> io::Result<usize> {
        match self.io {
            Io::Done(n) => Ok(n),
            Io::Closed => Ok(0),
            Io::WouldBlock => Err(io::ErrorKind::WouldBlock.into()),
            Io::Failed(_) => Err(io::Error::other("socket failed")),
        }
    }
}

impl Read for Via<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.io = self.ready.read(self.sock, buf);
        self.result()
    }
}

impl Write for Via<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.io = self.ready.write(self.sock, data);
        self.result()
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut parts = bufs.iter().filter(|b| !b.is_empty());
        let first = parts.next().map_or(&[][..], |b| &b[..]);
        let second = parts.next().map_or(&[][..], |b| &b[..]);
        self.io = self.ready.write2(self.sock, first, second);
        self.result()
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl mio::event::Source for Stream {
    fn register(&mut self, registry: &Registry, token: Token, interests: Interest) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.register(registry, token, interests),
            Stream::Tls(t) => t.sock.register(registry, token, interests),
        }
    }

    fn reregister(&mut self, registry: &Registry, token: Token, interests: Interest) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.reregister(registry, token, interests),
            Stream::Tls(t) => t.sock.reregister(registry, token, interests),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.deregister(registry),
            Stream::Tls(t) => t.sock.deregister(registry),
        }
    }
}
