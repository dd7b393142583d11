//! The ground floor the proxy and the router share: buffers, socket I/O
//! and readiness, the token layout, the deadline sweep, the listener, the
//! descriptor limit, the transport (plain TCP or TLS over it), the two-way
//! splice (flow, pipe: splice(2) for bulk streams), backend host names
//! looked up again on a thread of their own ([`resolve`]), append-only log
//! files ([`logfile`]), and the [`server::Server`] that runs services on one
//! `mio::Poll`. Imports nothing above it but [`crate::http`]'s limits.

pub mod buffer;
pub mod fds;
pub(crate) mod flow;
pub(crate) mod hot;
pub(crate) mod listen;
pub mod logfile;
pub mod net;
pub mod pipe;
pub mod resolve;
pub mod server;
pub(crate) mod sweep;
pub(crate) mod tokens;
pub mod transport;
