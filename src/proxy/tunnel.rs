//! An upgraded exchange (101 to an Upgrade, 2xx to CONNECT): the client and
//! the master spliced both ways raw, with half-close, through the runtime's
//! two-way splice (splice(2) pipes for bulk streams between plain sockets;
//! a TLS client is copied through its buffers), as the router does.

use std::time::Instant;

use mio::{Registry, Token};

use crate::runtime::buffer::{Buffer, BufferPool};
use crate::runtime::flow::{self, Flow, Side};
use crate::runtime::net::Readiness;
use crate::runtime::pipe::{self, PipePool};
use crate::runtime::transport::Stream;

/// Most passes a tunnel makes in one pump: a busy one then yields to the
/// other connections and is pumped again on the proxy's next turn.
pub const TUNNEL_PASSES: usize = 16;

/// Both sockets of a tunnel and what is held between them.
#[derive(Debug)]
pub(crate) struct Tunnel {
    client: Side,
    master: Side,
    /// Client to master.
    up: Flow,
    /// Master to client.
    down: Flow,
    /// When a byte last moved (or the tunnel opened).
    since: Instant,
}

/// One end of a tunnel as the session hands it over: the socket, its
/// token, its readiness so far, whether its peer already closed, the bytes
/// it is still owed (sent before anything read from the other end), and a
/// buffer for what it sends.
pub(crate) struct End {
    pub(crate) sock: Stream,
    pub(crate) token: Token,
    pub(crate) ready: Readiness,
    /// The peer already closed its sending side.
    pub(crate) eof: bool,
    pub(crate) owed: Vec<u8>,
    pub(crate) buffer: Buffer,
}

impl Tunnel {
    /// Opens a tunnel between `client` and `master`. Both sockets are
    /// registered again to hear of urgent data, which splice stops at.
    pub(crate) fn open(client: End, master: End, registry: &Registry, now: Instant) -> Tunnel {
        let side = |name, mut end: End| {
            // Still registered as before when this fails: only urgent data
            // goes unheard, and the splice falls back to a plain read.
            let _ = registry.reregister(&mut end.sock, end.token, pipe::interest());
            let mut side = Side::new(name, Some(end.sock));
            side.ready = end.ready;
            side.eof = end.eof;
            end.buffer.clear();
            (side, end.buffer, end.owed)
        };
        let (client, client_buf, client_owed) = side("client", client);
        let (master, master_buf, master_owed) = side("master", master);
        let mut up = Flow::new(client_buf);
        up.set_prefix(master_owed);
        let mut down = Flow::new(master_buf);
        down.set_prefix(client_owed);
        Tunnel {
            client,
            master,
            up,
            down,
            since: now,
        }
    }

    /// The client socket's readiness changed.
    pub(crate) fn on_client_event(&mut self, ready: Readiness) {
        self.client.ready.merge(ready);
    }

    /// The master socket's readiness changed.
    pub(crate) fn on_master_event(&mut self, ready: Readiness) {
        self.master.ready.merge(ready);
    }

    /// Moves what readiness allows, once. True on progress; an error says
    /// what failed.
    pub(crate) fn pass(&mut self, pool: &mut BufferPool, pipes: &mut PipePool, now: Instant) -> Result<bool, String> {
        let progress = flow::pass_both(
            &mut self.up,
            &mut self.down,
            &mut self.client,
            &mut self.master,
            pool,
            pipes,
        )?;
        if progress {
            self.since = now;
        }
        Ok(progress)
    }

    /// Both ends were passed on: nothing more will move.
    pub(crate) fn is_over(&self) -> bool {
        self.client.shut && self.master.shut
    }

    /// When a byte last moved.
    pub(crate) fn since(&self) -> Instant {
        self.since
    }

    /// Bytes delivered: client to master, master to client.
    pub(crate) fn bytes(&self) -> (u64, u64) {
        (self.up.bytes, self.down.bytes)
    }

    /// Closes both sockets and gives the buffers and pipes back.
    pub(crate) fn close(mut self, registry: &Registry, pool: &mut BufferPool, pipes: &mut PipePool) {
        self.client.close(registry);
        self.master.close(registry);
        self.up.release(pool, pipes);
        self.down.release(pool, pipes);
    }
}
