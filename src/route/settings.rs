//! What a [`Relay`](super::Relay) is told: where to listen, its limits and
//! timeouts, with the defaults `routes.toml` falls back on.

use std::net::SocketAddr;
use std::time::Duration;

use crate::proxy::DEFAULT_MAX_CONNECTIONS;
use crate::runtime::resolve::{DEFAULT_RESOLVE_INTERVAL, MIN_RESOLVE_INTERVAL};

/// Default `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default `inactivity_timeout`.
pub const DEFAULT_INACTIVITY_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Default `peek_timeout`.
pub const DEFAULT_PEEK_TIMEOUT: Duration = Duration::from_secs(1);
/// Default `max_peek`.
pub const DEFAULT_MAX_PEEK: usize = 16 * 1024;
/// Largest `max_peek` accepted.
pub const MAX_MAX_PEEK: usize = 1 << 20;

/// Longest timeout accepted (deadlines are instants: they must not overflow).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(365 * 86_400);

/// What a [`Relay`](super::Relay) is told: where to listen, its limits and timeouts.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Time to connect to one address of a decision before the next.
    pub connect_timeout: Duration,
    /// Time with no byte either way before a spliced connection is closed
    /// (unless [`Router::on_inactive`](super::Router::on_inactive) says wait).
    pub inactivity_timeout: Duration,
    /// Time without a decision before [`Router::on_give_up`](super::Router::on_give_up).
    pub peek_timeout: Duration,
    /// Bytes buffered without a decision before [`Router::on_give_up`](super::Router::on_give_up).
    pub max_peek: usize,
    /// Client connections at once.
    pub max_connections: usize,
    /// How often backends given by host name are looked up again
    /// ([`Router::names`](super::Router::names)).
    pub resolve_interval: Duration,
}

impl Settings {
    /// The defaults of `routes.toml`, listening on `listen`.
    pub fn new(listen: SocketAddr) -> Self {
        Settings {
            listen,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            inactivity_timeout: DEFAULT_INACTIVITY_TIMEOUT,
            peek_timeout: DEFAULT_PEEK_TIMEOUT,
            max_peek: DEFAULT_MAX_PEEK,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            resolve_interval: DEFAULT_RESOLVE_INTERVAL,
        }
    }

    /// Checks the limits.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_peek == 0 || self.max_peek > MAX_MAX_PEEK {
            return Err(format!("max_peek must be 1 to {MAX_MAX_PEEK} bytes"));
        }
        if self.max_connections == 0 {
            return Err("max_connections must be at least 1".into());
        }
        if self.resolve_interval < MIN_RESOLVE_INTERVAL {
            return Err(format!("resolve_interval must be at least {MIN_RESOLVE_INTERVAL:?}"));
        }
        let timeouts = [
            ("connect_timeout", self.connect_timeout),
            ("inactivity_timeout", self.inactivity_timeout),
            ("peek_timeout", self.peek_timeout),
        ];
        for (name, d) in timeouts {
            if d.is_zero() {
                return Err(format!("{name} must be more than zero"));
            }
            if d > MAX_TIMEOUT {
                return Err(format!(
                    "{name} must be at most {} days",
                    MAX_TIMEOUT.as_secs() / 86_400
                ));
            }
        }
        Ok(())
    }
}
