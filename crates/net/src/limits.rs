//! The descriptor limit and the connection cap derived from it.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Why the descriptor limit could not be raised.
#[derive(Debug, thiserror::Error)]
#[error("cannot raise RLIMIT_NOFILE from {current} to {target}: {source}")]
pub struct FdLimitError {
    current: u64,
    target: u64,
    #[source]
    source: std::io::Error,
}

/// Raises the soft descriptor limit (`RLIMIT_NOFILE`) to the hard limit and
/// returns the soft limit in force afterwards. Daemons call it once at start:
/// the default soft limit (1024 on most distributions) is far below what a
/// master with thousands of agents and frameworks needs.
pub fn raise_fd_limit() -> Result<u64, FdLimitError> {
    let limit = getrlimit(Resource::Nofile);
    let current = limit.current.unwrap_or(u64::MAX);
    let Some(target) = limit.maximum else {
        return Ok(current);
    };
    if current >= target {
        return Ok(current);
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(target),
            maximum: Some(target),
        },
    )
    .map_err(|e| FdLimitError {
        current,
        target,
        source: e.into(),
    })?;
    Ok(target)
}

/// Descriptors kept for everything but inbound connections: log files,
/// ZooKeeper, the registry, outbound proxies, executors' pipes.
const RESERVED_FDS: u64 = 256;
/// Never fewer than this many connections, whatever the limit says.
const MIN_CONNECTIONS: u64 = 64;
/// Never more, whatever the limit says: each connection costs memory too.
const MAX_CONNECTIONS: u64 = 65_536;

/// How many inbound connections a process whose descriptor limit is
/// `fd_limit` may hold: the limit less a reserve, within sane bounds.
pub fn connection_cap(fd_limit: u64) -> usize {
    let cap = fd_limit
        .saturating_sub(RESERVED_FDS)
        .clamp(MIN_CONNECTIONS, MAX_CONNECTIONS);
    usize::try_from(cap).unwrap_or(usize::MAX)
}

/// The current soft descriptor limit.
pub(crate) fn fd_limit() -> u64 {
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_a_reserve_and_stays_within_bounds() {
        assert_eq!(connection_cap(1024), 768);
        assert_eq!(connection_cap(100), 64);
        assert_eq!(connection_cap(u64::MAX), 65_536);
    }

    #[test]
    fn raising_reaches_the_hard_limit() {
        let raised = raise_fd_limit().expect("raising to the hard limit is always allowed");
        let limit = getrlimit(Resource::Nofile);
        assert_eq!(Some(raised), limit.current);
        assert_eq!(limit.current, limit.maximum.or(limit.current));
    }
}
