//! What a contender knows about its own role ([`Leadership`]): published by
//! the ZooKeeper loops in `zk`, read through a [`Contender`](crate::Contender).

use crate::record::MasterRecord;

/// What a contender knows about its own role.
///
/// Invariant: `Leading` is published only while this contender's session is
/// connected and its node was, at the last check, the lowest; any session
/// event (disconnection included) replaces it with `Follower` before
/// anything else happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leadership {
    /// Not leading: connecting, disconnected, or following `leader`
    /// (`None` while unknown, e.g. disconnected from ZooKeeper).
    Follower {
        /// The current leader, when known.
        leader: Option<MasterRecord>,
    },
    /// Leading. `epoch` is the sequence number of this term's election
    /// node; a later term (of any master) always has a larger epoch, and
    /// the same node keeps its epoch across reconnections of one session.
    Leading {
        /// This term's epoch.
        epoch: u64,
    },
}

impl Leadership {
    /// Whether this is [`Leadership::Leading`].
    pub fn is_leading(&self) -> bool {
        matches!(self, Self::Leading { .. })
    }

    /// The epoch while leading.
    pub fn epoch(&self) -> Option<u64> {
        match self {
            Self::Leading { epoch } => Some(*epoch),
            Self::Follower { .. } => None,
        }
    }
}
