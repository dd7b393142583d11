//! The descriptor limit: raised to the hard limit at start, and the
//! default connection caps derived from it, so that a cap is never a
//! promise the kernel refuses with EMFILE.

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

/// How many connections fit in `limit` descriptors when each takes
/// `per_connection` and `set_aside` more are kept for other uses (pools,
/// pipes) besides [`RESERVED_FDS`]. At least 1.
pub fn connections_for(limit: u64, per_connection: u64, set_aside: u64) -> u64 {
    (limit.saturating_sub(RESERVED_FDS.saturating_add(set_aside)) / per_connection.max(1)).max(1)
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
    fn connections_leave_room() {
        assert_eq!(connections_for(1024, 3, 128), (1024 - 64 - 128) / 3);
        assert_eq!(connections_for(10, 3, 0), 1, "never zero");
        assert_eq!(connections_for(u64::MAX, 0, u64::MAX), 1);
    }

    #[test]
    fn raising_never_lowers() {
        let before = soft_limit();
        let after = raise_to_hard();
        assert!(after >= before, "{after:?} < {before:?}");
        assert_eq!(soft_limit(), after);
    }
}
