//! The ground floor the proxy and the router share: buffers, socket I/O
//! and readiness, the token layout, the deadline sweep, the listener, the
//! descriptor limit, and the [`server::Server`] that runs services on one
//! `mio::Poll`. Imports nothing above it but [`crate::http`]'s limits.

pub mod buffer;
pub mod fds;
pub(crate) mod listen;
pub mod net;
pub mod server;
pub(crate) mod sweep;
pub(crate) mod tokens;
