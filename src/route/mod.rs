//! The content-aware TCP router (ProxyMachine's idea): look at a
//! connection's first bytes, decide where it goes, replay them, then splice
//! both ways.
//!
//! This first part is the decision layer, sans-IO like [`crate::http`]: the
//! [`Router`] trait and declarative [`Rules`] (prefix, anchored regex with a
//! DFA that says NoMatch as soon as no continuation can match, HTTP Host,
//! TLS SNI), and [`config`], the `routes.toml` loader. The event loop that
//! drives them and `kage route` come next.

pub mod config;
mod rules;
pub mod sni;

use std::net::SocketAddr;

pub use rules::{Action, Matcher, Rule, Rules, Verdict};

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

    /// Every address of a decision refused or failed to connect. The default
    /// closes the connection; a router may return another decision.
    fn on_connect_error(&mut self, buffered: &[u8], peer: SocketAddr) -> Decision {
        let _ = (buffered, peer);
        Decision::Close
    }
}
