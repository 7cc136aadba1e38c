//! An in-process election for unit tests of the crates that use this one.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

use crate::election::{Contender, LeaderDetector, Leadership};
use crate::record::MasterRecord;

/// An election held in memory, with the ZooKeeper recipe's rules: members
/// get increasing sequence numbers, the lowest leads, detectors report the
/// lowest member's record.
///
/// Changes are published synchronously, before the call that caused them
/// returns, so tests need no waiting. Tests can also disconnect a member
/// ([`set_connected`](Self::set_connected)) or expire its session
/// ([`expire`](Self::expire)) to exercise a master's reaction. Clones share
/// one election.
#[derive(Debug, Clone)]
pub struct MemoryCoordinator {
    inner: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    next_seq: u64,
    next_member: u64,
    members: Vec<Member>,
    leader: watch::Sender<Option<MasterRecord>>,
}

#[derive(Debug)]
struct Member {
    id: u64,
    seq: u64,
    connected: bool,
    record: MasterRecord,
    tx: watch::Sender<Leadership>,
}

impl Default for MemoryCoordinator {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryCoordinator {
    /// An empty election; sequence numbers start at 1.
    pub fn new() -> Self {
        let (leader, _) = watch::channel(None);
        Self {
            inner: Arc::new(Mutex::new(State {
                next_seq: 1,
                next_member: 0,
                members: Vec::new(),
                leader,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Joins the election with `record`; the returned contender leads at
    /// once if it is the only member.
    pub fn join(&self, record: MasterRecord) -> Contender {
        let mut state = self.lock();
        let (tx, rx) = watch::channel(Leadership::Follower { leader: None });
        let id = state.next_member;
        state.next_member += 1;
        let seq = state.next_seq;
        state.next_seq += 1;
        state.members.push(Member {
            id,
            seq,
            connected: true,
            record,
            tx,
        });
        state.publish();
        drop(state);
        Contender::memory(self.clone(), id, rx)
    }

    /// A detector of this election's leader.
    pub fn detector(&self) -> LeaderDetector {
        let rx = self.lock().leader.subscribe();
        LeaderDetector::memory(self.clone(), rx)
    }

    /// Simulates the member whose record has id `master_id` losing
    /// (`false`) or regaining (`true`) its connection: while disconnected it
    /// is a follower with no known leader, and, since its node stays, nobody
    /// else leads in its place. Returns whether such a member exists.
    pub fn set_connected(&self, master_id: &str, connected: bool) -> bool {
        let mut state = self.lock();
        let Some(member) = state.members.iter_mut().find(|m| m.record.id == master_id) else {
            return false;
        };
        member.connected = connected;
        state.publish();
        true
    }

    /// Simulates the session expiry of the member with id `master_id`: its
    /// node goes away and it rejoins at once with a new, larger sequence
    /// number (so a former leader now follows, and leads again only with a
    /// new epoch). Returns whether such a member exists.
    pub fn expire(&self, master_id: &str) -> bool {
        let mut state = self.lock();
        let seq = state.next_seq;
        let Some(member) = state.members.iter_mut().find(|m| m.record.id == master_id) else {
            return false;
        };
        member.seq = seq;
        member.connected = true;
        state.next_seq += 1;
        state.members.sort_by_key(|m| m.seq);
        state.publish();
        true
    }

    pub(crate) fn withdraw(&self, member: u64) {
        let mut state = self.lock();
        if let Some(at) = state.members.iter().position(|m| m.id == member) {
            let gone = state.members.remove(at);
            gone.tx.send_replace(Leadership::Follower { leader: None });
            state.publish();
        }
    }
}

impl State {
    /// Recomputes every member's role and the detectors' leader.
    fn publish(&mut self) {
        let leader = self.members.iter().min_by_key(|m| m.seq);
        let leader_id = leader.map(|m| m.id);
        let record = leader.map(|m| m.record.clone());
        for member in &self.members {
            let role = if !member.connected {
                Leadership::Follower { leader: None }
            } else if Some(member.id) == leader_id {
                Leadership::Leading { epoch: member.seq }
            } else {
                Leadership::Follower {
                    leader: record.clone(),
                }
            };
            member
                .tx
                .send_if_modified(|current| replace_if_changed(current, role));
        }
        self.leader
            .send_if_modified(|current| replace_if_changed(current, record));
    }
}

fn replace_if_changed<T: PartialEq>(current: &mut T, new: T) -> bool {
    if *current == new {
        false
    } else {
        *current = new;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> MasterRecord {
        MasterRecord::new(id, id, "127.0.0.1".parse().expect("ip"), 5050, "test")
    }

    #[test]
    fn lowest_leads_and_detectors_follow() {
        let election = MemoryCoordinator::new();
        let detector = election.detector();
        assert_eq!(detector.current(), None);

        let a = election.join(record("a"));
        assert_eq!(a.current(), Leadership::Leading { epoch: 1 });
        let b = election.join(record("b"));
        assert_eq!(
            b.current(),
            Leadership::Follower {
                leader: Some(record("a"))
            }
        );
        assert_eq!(detector.current(), Some(record("a")));

        drop(a);
        assert_eq!(b.current(), Leadership::Leading { epoch: 2 });
        assert_eq!(detector.current(), Some(record("b")));
    }

    #[test]
    fn disconnected_leader_stops_and_nobody_else_leads() {
        let election = MemoryCoordinator::new();
        let a = election.join(record("a"));
        let b = election.join(record("b"));
        assert!(election.set_connected("a", false));
        assert_eq!(a.current(), Leadership::Follower { leader: None });
        assert!(!b.current().is_leading());

        assert!(election.set_connected("a", true));
        assert_eq!(a.current().epoch(), Some(1));
        assert!(!election.set_connected("nobody", true));
    }

    #[test]
    fn expiry_moves_leadership_with_a_larger_epoch() {
        let election = MemoryCoordinator::new();
        let a = election.join(record("a"));
        let b = election.join(record("b"));
        let mut b_rx = b.leadership();
        b_rx.mark_unchanged();

        assert!(election.expire("a"));
        assert!(b_rx.has_changed().expect("open channel"));
        assert_eq!(b.current(), Leadership::Leading { epoch: 2 });
        assert_eq!(
            a.current(),
            Leadership::Follower {
                leader: Some(record("b"))
            }
        );

        assert!(election.expire("b"));
        assert_eq!(a.current(), Leadership::Leading { epoch: 3 });
    }

    #[tokio::test]
    async fn close_hands_over_and_fixed_detector_reports_its_leader() {
        let election = MemoryCoordinator::new();
        let a = election.join(record("a"));
        let b = election.join(record("b"));
        a.close().await;
        assert!(b.current().is_leading());

        let fixed = LeaderDetector::fixed(Some(record("x")));
        assert_eq!(
            fixed
                .wait_for_leader(std::time::Duration::from_millis(10))
                .await,
            Some(record("x"))
        );
        let none = LeaderDetector::fixed(None);
        assert_eq!(
            none.wait_for_leader(std::time::Duration::from_millis(10))
                .await,
            None
        );
    }
}
