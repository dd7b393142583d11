//! Kernel pipes for `splice(2)`: once a stream proves bulk, its bytes go
//! socket → pipe → socket without being copied through user space.
//!
//! Pipes cost two descriptors each, so they are taken from a bounded pool
//! only by streams that need them, and given back empty for reuse. Where
//! pipes are not available (another OS, the limit reached, EMFILE) streams
//! keep copying through their buffer.

use std::io;

use crate::runtime::net::Io;

/// Capacity asked of each pipe (`F_SETPIPE_SZ`; the kernel may round it,
/// or refuse past `pipe-user-pages-soft`, and then the default is kept).
/// 1 MiB measured a third less relay CPU per GiB than 512 KiB; it is in
/// line with what one TCP socket may hold in kernel buffers.
pub const PIPE_SIZE: usize = 1024 * 1024;

/// Most pipes open at once, in use or pooled.
pub const MAX_PIPES: usize = 1024;

/// Pipes take at most this share (1/N) of the descriptor limit.
pub const PIPE_FD_SHARE: u64 = 4;

/// Most empty pipes kept for reuse.
pub const MAX_IDLE_PIPES: usize = 64;

/// A read of at least this many bytes that filled its whole room marks a
/// stream as bulk: it moves to a pipe once its buffer is flushed.
pub const BULK_READ: usize = 16 * 1024;

#[cfg(target_os = "linux")]
mod sys {
    use std::io;
    use std::os::fd::{AsFd, OwnedFd};

    use rustix::pipe::{PipeFlags, SpliceFlags, fcntl_getpipe_size, fcntl_setpipe_size, pipe_with, splice};

    use super::PIPE_SIZE;
    use crate::runtime::net::{self, Io};

    /// A non-blocking pipe and the bytes it holds.
    #[derive(Debug)]
    pub(crate) struct Pipe {
        read: OwnedFd,
        write: OwnedFd,
        capacity: usize,
        held: usize,
    }

    impl Pipe {
        pub(crate) fn new() -> io::Result<Pipe> {
            let (read, write) = pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?;
            // A smaller pipe still works: keep what the kernel gave then.
            let capacity = match fcntl_setpipe_size(&write, PIPE_SIZE) {
                Ok(n) => n,
                Err(_) => fcntl_getpipe_size(&write)?,
            };
            Ok(Pipe {
                read,
                write,
                capacity,
                held: 0,
            })
        }

        pub(crate) fn held(&self) -> usize {
            self.held
        }

        pub(crate) fn room(&self) -> usize {
            self.capacity.saturating_sub(self.held)
        }

        /// Moves what `src` has (up to the room) into the pipe. WouldBlock
        /// means the source is empty or the pipe is out of slots.
        pub(crate) fn fill_from(&mut self, src: &impl AsFd) -> Io {
            let room = self.room();
            let io = net::fold(|| {
                splice(
                    src,
                    None,
                    &self.write,
                    None,
                    room,
                    SpliceFlags::MOVE | SpliceFlags::NONBLOCK,
                )
                .map_err(io::Error::from)
            });
            if let Io::Done(n) = io {
                self.held += n;
            }
            io
        }

        /// Moves held bytes into `dst`.
        pub(crate) fn drain_to(&mut self, dst: &impl AsFd) -> Io {
            let held = self.held;
            let io = net::fold(|| {
                splice(
                    &self.read,
                    None,
                    dst,
                    None,
                    held,
                    SpliceFlags::MOVE | SpliceFlags::NONBLOCK,
                )
                .map_err(io::Error::from)
            });
            if let Io::Done(n) = io {
                self.held -= n.min(held);
            }
            io
        }
    }

    /// The soft descriptor limit.
    pub(crate) fn fd_limit() -> Option<u64> {
        rustix::process::getrlimit(rustix::process::Resource::Nofile).current
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    use std::io;

    use crate::runtime::net::Io;

    /// No pipes here: every stream copies through its buffer.
    #[derive(Debug)]
    pub(crate) struct Pipe(());

    impl Pipe {
        pub(crate) fn new() -> io::Result<Pipe> {
            Err(io::ErrorKind::Unsupported.into())
        }
        pub(crate) fn held(&self) -> usize {
            0
        }
        pub(crate) fn room(&self) -> usize {
            0
        }
        pub(crate) fn fill_from<T>(&mut self, _: &T) -> Io {
            Io::WouldBlock
        }
        pub(crate) fn drain_to<T>(&mut self, _: &T) -> Io {
            Io::WouldBlock
        }
    }

    pub(crate) fn fd_limit() -> Option<u64> {
        None
    }
}

pub(crate) use sys::Pipe;

/// Pipes for bulk streams, bounded by [`MAX_PIPES`] and a share of the
/// descriptor limit.
#[derive(Debug)]
pub(crate) struct PipePool {
    free: Vec<Pipe>,
    open: usize,
    limit: usize,
    warned: bool,
}

impl PipePool {
    pub(crate) fn new() -> Self {
        let by_fds = sys::fd_limit().map_or(MAX_PIPES as u64, |n| n / PIPE_FD_SHARE / 2);
        PipePool {
            free: Vec::new(),
            open: 0,
            limit: MAX_PIPES.min(usize::try_from(by_fds).unwrap_or(MAX_PIPES)),
            warned: false,
        }
    }

    /// An empty pipe, or `None` (the stream keeps copying).
    pub(crate) fn take(&mut self) -> Option<Pipe> {
        if let Some(p) = self.free.pop() {
            return Some(p);
        }
        if self.open >= self.limit {
            return None;
        }
        match Pipe::new() {
            Ok(p) => {
                self.open += 1;
                Some(p)
            }
            Err(e) => {
                if !self.warned && e.kind() != io::ErrorKind::Unsupported {
                    log::warn!("cannot open a pipe for splice ({e}); copying instead");
                    self.warned = true;
                }
                None
            }
        }
    }

    /// Takes a pipe back: kept when empty and the pool has room, else closed.
    pub(crate) fn give(&mut self, pipe: Pipe) {
        if pipe.held() == 0 && self.free.len() < MAX_IDLE_PIPES {
            self.free.push(pipe);
        } else {
            self.open -= 1;
        }
    }
}

/// What a routed socket is registered for: also urgent data on Linux,
/// which splice stops at (see `Flow`).
pub(crate) fn interest() -> mio::Interest {
    let rw = mio::Interest::READABLE | mio::Interest::WRITABLE;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let rw = rw | mio::Interest::PRIORITY;
    rw
}

/// Whether a read of `n` bytes into `room` marks a stream as bulk.
pub(crate) fn is_bulk_read(io: Io, room: usize) -> bool {
    matches!(io, Io::Done(n) if n == room && n >= BULK_READ)
}
