//! The descriptor limit: raised to the hard limit at start, and the
//! default connection caps derived from it, so that a cap is never a
//! promise the kernel refuses with EMFILE.

use crate::proxy::{DEFAULT_MAX_CONNECTIONS, DEFAULT_POOL_IDLE_PER_BACKEND, MAX_CONNECTIONS_LIMIT};

/// Descriptors kept aside from the connection cap: the poller, listeners,
/// signals, the logs, the metrics endpoint and its scrapes.
pub const RESERVED_FDS: u64 = 64;

/// The soft `RLIMIT_NOFILE`, where the platform has one we can read.
pub fn soft_limit() -> Option<u64> {
    sys::limits().map(|(soft, _)| soft)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the limit in
/// force afterwards (the old one when raising failed), `None` where it
/// cannot be read.
pub fn raise_to_hard() -> Option<u64> {
    let (soft, hard) = sys::limits()?;
    if hard > soft && sys::set_soft(hard) {
        return Some(hard);
    }
    Some(soft)
}

/// The default proxy connection cap for `limit` descriptors and `backends`
/// backends: each client connection may hold one connection per backend,
/// and the pools keep [`DEFAULT_POOL_IDLE_PER_BACKEND`] each.
pub fn proxy_connections(limit: Option<u64>, backends: usize) -> usize {
    let Some(limit) = limit else {
        return DEFAULT_MAX_CONNECTIONS;
    };
    let backends = backends as u64;
    let pooled = DEFAULT_POOL_IDLE_PER_BACKEND as u64 * backends;
    let per_connection = 1 + backends;
    cap(limit.saturating_sub(RESERVED_FDS + pooled) / per_connection)
}

/// The default router connection cap for `limit` descriptors: a client and
/// a backend socket each, with a quarter of the limit left to splice pipes.
pub fn router_connections(limit: Option<u64>) -> usize {
    let Some(limit) = limit else {
        return DEFAULT_MAX_CONNECTIONS;
    };
    cap((limit - limit / 4).saturating_sub(RESERVED_FDS) / 2)
}

fn cap(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX).clamp(1, MAX_CONNECTIONS_LIMIT)
}

#[cfg(target_os = "linux")]
mod sys {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

    pub(super) fn limits() -> Option<(u64, u64)> {
        let l = getrlimit(Resource::Nofile);
        let soft = l.current?;
        Some((soft, l.maximum.unwrap_or(soft)))
    }

    pub(super) fn set_soft(to: u64) -> bool {
        let hard = getrlimit(Resource::Nofile).maximum;
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(to),
                maximum: hard,
            },
        )
        .is_ok()
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    pub(super) fn limits() -> Option<(u64, u64)> {
        None
    }

    pub(super) fn set_soft(_: u64) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_leave_room_for_backends_and_pools() {
        // 1024 descriptors, a master and a shadow: 1024 - 64 - 128, by 3.
        assert_eq!(proxy_connections(Some(1024), 2), 277);
        assert_eq!(proxy_connections(Some(20_000), 1), (20_000 - 64 - 64) / 2);
        assert_eq!(proxy_connections(Some(10), 3), 1, "never zero");
        assert_eq!(proxy_connections(None, 2), DEFAULT_MAX_CONNECTIONS);
        assert_eq!(proxy_connections(Some(u64::MAX), 1), MAX_CONNECTIONS_LIMIT);
        assert_eq!(router_connections(Some(1024)), (768 - 64) / 2);
    }

    #[test]
    fn raising_never_lowers() {
        let before = soft_limit();
        let after = raise_to_hard();
        assert!(after >= before, "{after:?} < {before:?}");
        assert_eq!(soft_limit(), after);
    }
}
