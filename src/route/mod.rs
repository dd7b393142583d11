//! The content-aware TCP router (ProxyMachine's idea): look at a
//! connection's first bytes, decide where it goes, replay them, then splice
//! both ways.
//!
//! - [`Router`]: the decision, asked with the bytes buffered so far (once on
//!   accept with none, then each time bytes arrive), plus callbacks when the
//!   peek gives up, every address refused, or a spliced connection idles.
//! - [`Rules`]: the declarative router of `routes.toml` ([`config`]): prefix,
//!   anchored regex on a DFA that says NoMatch as soon as no continuation can
//!   match, HTTP Host, TLS SNI ([`sni`]), and a default. Sans-IO, like
//!   [`crate::http`].
//! - [`Relay`]: the event loop part, built from the same pieces as the
//!   proxy (listener, token layout, deadline sweep, buffer pool, cached
//!   readiness). Per connection: peek into a buffer of at least `max_peek`
//!   bytes; connect to the decision's addresses in order (the next on refusal
//!   or after `connect_timeout`); send the peeked bytes (or the replacement);
//!   then splice through two fixed buffers. A full buffer stops reads from
//!   its source (backpressure); an end read on one side is passed on as
//!   `shutdown(Write)` on the other once its bytes are delivered, and the
//!   pair closes when both ends were passed on. A busy connection yields
//!   after [`SPLICE_PASSES`] passes so that others are served.
//!   A stream whose reads fill its buffer is bulk: once its buffer is
//!   flushed it moves through a pipe with `splice(2)` (Linux), without
//!   copies through user space ([`MAX_PIPES`], [`PIPE_SIZE`]).
//!
//! Writes use `writev` and `splice`, which raise SIGPIPE on a closed peer:
//! Rust programs ignore SIGPIPE from the start; a host that restores it
//! must ignore it again.

pub mod config;
mod conn;
mod relay;
mod rules;
mod settings;
pub mod sni;

use std::net::SocketAddr;

pub use crate::runtime::listen::LISTEN_BACKLOG;
pub use crate::runtime::pipe::{BULK_READ, MAX_IDLE_PIPES, MAX_PIPES, PIPE_FD_SHARE, PIPE_SIZE};
pub use conn::{CLOSE_LINGER, MAX_CONNECT_ROUNDS, SPLICE_BUFFER, SPLICE_PASSES};
pub use relay::Relay;
pub use rules::{Action, Matcher, NamedTarget, Rule, Rules, Verdict};
pub use settings::{MAX_TIMEOUT, Settings};

/// What to do with a connection, given the bytes it has sent so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Connect to these addresses, in order (the next on a connect error),
    /// replay the buffered bytes, then splice both ways.
    Remote(Vec<SocketAddr>),
    /// Like `Remote`, but send these bytes instead of the buffered ones.
    RemoteWith(Vec<SocketAddr>, Vec<u8>),
    /// Not enough bytes to decide: ask again when more arrive.
    Wait,
    /// Close the connection.
    Close,
    /// Send these bytes, then close.
    CloseWith(Vec<u8>),
}

/// Decides where connections go.
pub trait Router {
    /// Called with everything buffered so far each time new bytes arrive.
    fn route(&mut self, buffered: &[u8], peer: SocketAddr) -> Decision;

    /// The peek timeout passed or the peek buffer is full without a decision.
    /// The default closes the connection.
    fn on_give_up(&mut self, buffered: &[u8], peer: SocketAddr) -> Decision {
        let _ = (buffered, peer);
        Decision::Close
    }

    /// Every address of a decision refused or failed to connect (at most
    /// [`MAX_CONNECT_ROUNDS`] times per connection). The default closes the
    /// connection; a router may return another decision.
    fn on_connect_error(&mut self, buffered: &[u8], peer: SocketAddr) -> Decision {
        let _ = (buffered, peer);
        Decision::Close
    }

    /// A spliced connection moved no byte either way for the inactivity
    /// timeout. `Wait` keeps it another period, `CloseWith` sends the bytes
    /// to the client and closes, anything else closes (the default).
    fn on_inactive(&mut self, peer: SocketAddr) -> Decision {
        let _ = peer;
        Decision::Close
    }

    /// Backend addresses given by host name, which the relay looks up
    /// again every [`Settings::resolve_interval`]: `(label for the log,
    /// HOST:PORT, the address in use)`. The default: none.
    fn names(&self) -> Vec<(String, String, SocketAddr)> {
        Vec::new()
    }

    /// The `index`th of [`names`](Self::names) now resolves to `addr`:
    /// later decisions use it (connections already made stay where they
    /// are).
    fn readdress(&mut self, index: usize, addr: SocketAddr) {
        let _ = (index, addr);
    }
}
