//! The two-way splice the router and the proxy's tunnels share: each
//! direction a [`Flow`] from a source socket to a destination socket, with
//! what is held between them (bytes to send first, a fixed buffer, and for
//! bulk streams a kernel pipe), and half-close passed on.

use mio::Registry;

use super::pipe::{Pipe, PipePool, is_bulk_read};
use super::transport::Stream;
use crate::runtime::buffer::{Buffer, BufferPool};
use crate::runtime::net::{Failure, Io, Readiness};

/// Moves what readiness allows both ways between `a` and `b`, once: `up`
/// carries `a` to `b`, `down` `b` to `a`. True on progress; an error says
/// what failed. The pair is over when both sides are shut
/// ([`Side::shut`]): each end was passed on once everything was delivered.
pub(crate) fn pass_both(
    up: &mut Flow,
    down: &mut Flow,
    a: &mut Side,
    b: &mut Side,
    pool: &mut BufferPool,
    pipes: &mut PipePool,
) -> Result<bool, String> {
    let up = up.pass(a, b, pool, pipes)?;
    let down = down.pass(b, a, pool, pipes)?;
    Ok(up || down)
}

/// One socket of the pair.
#[derive(Debug)]
pub(crate) struct Side {
    /// `client` or `server`, for logs.
    pub(crate) name: &'static str,
    pub(crate) sock: Option<Stream>,
    pub(crate) ready: Readiness,
    /// A read returned 0: the peer sends nothing more.
    pub(crate) eof: bool,
    /// We shut down our sending side.
    pub(crate) shut: bool,
}

impl Side {
    pub(crate) fn new(name: &'static str, sock: Option<Stream>) -> Self {
        Side {
            name,
            sock,
            ready: Readiness::default(),
            eof: false,
            shut: false,
        }
    }

    pub(crate) fn close(&mut self, registry: &Registry) {
        if let Some(mut sock) = self.sock.take() {
            let _ = registry.deregister(&mut sock);
        }
        *self = Side::new(self.name, None);
    }

    /// Reads into `buf`; `None` when there is no socket.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> Option<Io> {
        Some(self.sock.as_mut()?.read(&mut self.ready, buf))
    }

    pub(crate) fn shutdown_write(&mut self) -> Result<(), Failure> {
        self.shut = true;
        match self.sock.as_mut() {
            Some(sock) => sock.shutdown_write(&mut self.ready),
            None => Ok(()),
        }
    }

    /// Plain TCP (or no socket): splice(2) may carry its bytes.
    fn is_plain(&self) -> bool {
        !self.sock.as_ref().is_some_and(Stream::is_tls)
    }

    /// Sends what a TLS stream holds for the wire; true when bytes moved.
    fn flush(&mut self) -> Result<bool, Failure> {
        match self.sock.as_mut() {
            Some(sock) if self.ready.writable => sock.flush(&mut self.ready),
            _ => Ok(false),
        }
    }

    /// Holds bytes for the wire (TLS records not sent yet).
    fn wants_flush(&self) -> bool {
        self.sock.as_ref().is_some_and(Stream::wants_flush)
    }
}

/// Bytes on their way from one side to the other. The buffer is taken from
/// the pool when the source has bytes and given back once it is drained: a
/// silent stream holds none.
#[derive(Debug)]
pub(crate) struct Flow {
    pub(crate) buf: Buffer,
    /// The capacity of the buffer it takes.
    size: usize,
    /// Sent before `buf`: the router's replacement for the peeked bytes.
    prefix: Vec<u8>,
    prefix_pos: usize,
    /// Once the stream proved bulk: the pipe its bytes now take.
    pipe: Option<Pipe>,
    bulk: bool,
    /// Bytes delivered.
    pub(crate) bytes: u64,
}

impl Flow {
    /// A flow starting with `buf`; later buffers have its capacity.
    pub(crate) fn new(buf: Buffer) -> Self {
        Flow {
            size: buf.capacity(),
            buf,
            prefix: Vec::new(),
            prefix_pos: 0,
            pipe: None,
            bulk: false,
            bytes: 0,
        }
    }

    /// A flow holding no buffer yet; it takes one of `size` bytes when the
    /// source has some.
    pub(crate) fn sized(size: usize) -> Self {
        Flow::new(Buffer::default()).with_size(size)
    }

    fn with_size(mut self, size: usize) -> Self {
        self.size = size;
        self
    }

    /// The buffer, taken from `pool` if the flow holds none.
    pub(crate) fn buffer(&mut self, pool: &mut BufferPool) -> &mut Buffer {
        if self.buf.capacity() == 0 {
            self.buf = pool.take(self.size);
        }
        &mut self.buf
    }

    pub(crate) fn set_prefix(&mut self, bytes: Vec<u8>) {
        self.prefix = bytes;
        self.prefix_pos = 0;
    }

    /// Bytes held in user space (the prefix and the buffer), not yet sent.
    fn in_user_space(&self) -> usize {
        self.prefix.len() - self.prefix_pos + self.buf.len()
    }

    /// Bytes held, not yet delivered.
    fn pending(&self) -> usize {
        self.in_user_space() + self.pipe.as_ref().map_or(0, Pipe::held)
    }

    /// Makes the moves readiness allows, once: read, write, and pass the
    /// source's end on once everything was delivered. True on progress;
    /// an error says what failed.
    pub(crate) fn pass(
        &mut self,
        src: &mut Side,
        dst: &mut Side,
        pool: &mut BufferPool,
        pipes: &mut PipePool,
    ) -> Result<bool, String> {
        let progress = self.pass_once(src, dst, pool, pipes);
        pool.release(&mut self.buf);
        progress
    }

    fn pass_once(
        &mut self,
        src: &mut Side,
        dst: &mut Side,
        pool: &mut BufferPool,
        pipes: &mut PipePool,
    ) -> Result<bool, String> {
        // A TLS stream is never spliced: the kernel holds records there.
        if self.bulk && self.pipe.is_none() && self.pending() == 0 && src.is_plain() && dst.is_plain() {
            self.bulk = false;
            self.pipe = pipes.take();
        }
        // Bytes held in user space go first: the pipe (then empty) waits.
        let in_user_space = self.in_user_space();
        let mut progress = match self.pipe.as_mut().filter(|_| in_user_space == 0) {
            Some(pipe) => {
                let (progress, confirm) = Self::pass_pipe(pipe, &mut self.bytes, src, dst)?;
                if confirm {
                    self.confirm_end(src, pool)?
                } else {
                    progress
                }
            }
            None => self.pass_copy(src, dst, pool)?,
        };
        if src.eof && !dst.shut && self.pending() == 0 && !dst.wants_flush() {
            dst.shutdown_write()
                .map_err(|f| format!("{} shutdown failed: {f:?}", dst.name))?;
            progress = true;
        }
        Ok(progress)
    }

    fn pass_copy(&mut self, src: &mut Side, dst: &mut Side, pool: &mut BufferPool) -> Result<bool, String> {
        let mut progress = dst.flush().map_err(|f| format!("{} write failed: {f:?}", dst.name))?;
        // No buffer held is room: one is taken for the read.
        let room = self.buf.capacity() == 0 || !self.buf.is_full();
        if src.ready.readable && !src.eof && room {
            let space = self.buffer(pool).space();
            let room = space.len();
            let io = src.read(space);
            match io {
                Some(Io::Done(n)) => {
                    self.buf.fill(n);
                    self.bulk |= is_bulk_read(Io::Done(n), room);
                    progress = true;
                }
                Some(Io::Closed) => {
                    src.eof = true;
                    progress = true;
                }
                Some(Io::Failed(f)) => return Err(format!("{} read failed: {f:?}", src.name)),
                Some(Io::WouldBlock) | None => {}
            }
        }
        let prefix = &self.prefix[self.prefix_pos..];
        let pending = prefix.len() + self.buf.len();
        if dst.ready.writable && pending > 0 {
            let Some(sock) = dst.sock.as_mut() else {
                return Err(format!("{} gone", dst.name));
            };
            let io = sock.write2(&mut dst.ready, prefix, self.buf.data());
            match io {
                Io::Done(n) => {
                    let from_prefix = n.min(prefix.len());
                    self.prefix_pos += from_prefix;
                    self.buf.consume(n - from_prefix);
                    self.bytes += n as u64;
                    progress = true;
                }
                Io::WouldBlock => {}
                Io::Closed | Io::Failed(_) => return Err(format!("{} write failed: {io:?}", dst.name)),
            }
        }
        Ok(progress)
    }

    /// As [`pass_copy`](Self::pass_copy), through the pipe. A short splice
    /// may come from the pipe's slots rather than the socket, so readiness
    /// is cleared only by WouldBlock, and a WouldBlock with bytes in the
    /// pipe may be the pipe's: the source stays readable until the pipe is
    /// drained and it says WouldBlock again. Splice also stops at urgent
    /// data, saying WouldBlock (or 0 after a FIN) with bytes still queued:
    /// so an end, or a WouldBlock after urgent data was signalled, is only
    /// reported, as the second value, for [`confirm_end`](Self::confirm_end)
    /// to check.
    fn pass_pipe(pipe: &mut Pipe, bytes: &mut u64, src: &mut Side, dst: &mut Side) -> Result<(bool, bool), String> {
        let mut progress = false;
        if src.ready.readable && !src.eof && pipe.room() > 0 {
            if let Some(sock) = src.sock.as_ref().map(Stream::tcp) {
                match pipe.fill_from(sock) {
                    Io::Done(_) => progress = true,
                    // An end is confirmed once the pipe is drained.
                    Io::Closed if pipe.held() == 0 => return Ok((progress, true)),
                    Io::WouldBlock if pipe.held() == 0 && src.ready.urgent => return Ok((progress, true)),
                    Io::WouldBlock if pipe.held() == 0 => src.ready.readable = false,
                    Io::WouldBlock | Io::Closed => {}
                    Io::Failed(f) => return Err(format!("{} splice failed: {f:?}", src.name)),
                }
            }
        }
        if dst.ready.writable && pipe.held() > 0 {
            let Some(sock) = dst.sock.as_ref().map(Stream::tcp) else {
                return Err(format!("{} gone", dst.name));
            };
            match pipe.drain_to(sock) {
                Io::Done(n) => {
                    *bytes += n as u64;
                    progress = true;
                }
                Io::WouldBlock => dst.ready.writable = false,
                io @ (Io::Closed | Io::Failed(_)) => return Err(format!("{} splice failed: {io:?}", dst.name)),
            }
        }
        Ok((progress, false))
    }

    /// The pipe is empty and splice found nothing more: one plain read
    /// tells an empty queue or an end from urgent data splice stops at (a
    /// plain read steps over the urgent mark). Bytes it finds are copied,
    /// and the pipe takes over again once they are delivered.
    fn confirm_end(&mut self, src: &mut Side, pool: &mut BufferPool) -> Result<bool, String> {
        match src.read(self.buffer(pool).space()) {
            Some(Io::Done(n)) => {
                self.buf.fill(n);
                Ok(true)
            }
            // The queue is empty: any urgent mark is behind us.
            Some(Io::Closed) => {
                src.ready.urgent = false;
                src.eof = true;
                Ok(true)
            }
            Some(Io::WouldBlock) | None => {
                src.ready.urgent = false;
                Ok(false)
            }
            Some(Io::Failed(f)) => Err(format!("{} read failed: {f:?}", src.name)),
        }
    }

    /// Gives the buffer and the pipe back.
    pub(crate) fn release(self, pool: &mut BufferPool, pipes: &mut PipePool) {
        pool.give(self.buf);
        if let Some(p) = self.pipe {
            pipes.give(p);
        }
    }
}
