//! DECLINE filters: a (client, agent) pair that refused resources is not
//! offered a subset of them again until the filter expires or it revives.
//!
//! Checking every filter against every candidate offer on every cycle would
//! cost a resource comparison per (client, agent). Instead each agent keeps a
//! *filter generation*: the generation's free-pool envelope holds every free
//! pool the agent had since the generation began. A filter found to refuse the
//! whole envelope is marked verified for that generation and from then on
//! costs one integer comparison. The generation moves on only when the free
//! pool grows out of the envelope (a declined offer comes back inside it, so
//! other frameworks' filters on the agent stay verified).

use std::cell::Cell;
use std::cmp::Reverse;
use std::time::Duration;

use agora_core::Resources;

use super::DrfAllocator;
use crate::roles::allocatable_to_role;
use crate::scalars::SlotMap;

pub(super) const NEVER_VERIFIED: u64 = u64::MAX;

#[derive(Debug)]
pub(super) struct Filter {
    pub(super) refused: Resources,
    pub(super) expires: Duration,
    /// The agent's filter generation at which the role's share of the
    /// agent's free-pool envelope was seen to be a subset of `refused`: then
    /// every candidate of that generation is, and the check is one comparison.
    pub(super) verified_generation: Cell<u64>,
}

/// One agent's DECLINE filters, and the generation that makes checking
/// them cheap (see the module docs).
#[derive(Debug)]
pub(super) struct AgentFilters {
    pub(super) by_client: SlotMap<Filter>,
    /// Bumped whenever the free pool grows beyond `free_envelope`, which
    /// holds every free pool of the current generation.
    pub(super) generation: u64,
    pub(super) free_envelope: Resources,
    /// A filter found `free_envelope` too loose to verify: shrink it to the
    /// free pool when the agent is next visited.
    pub(super) envelope_too_loose: Cell<bool>,
}

impl AgentFilters {
    /// No filters; the envelope starts as the agent's whole free pool.
    pub(super) fn new(free: &Resources) -> Self {
        Self {
            by_client: SlotMap::default(),
            generation: 0,
            free_envelope: free.clone(),
            envelope_too_loose: Cell::new(false),
        }
    }

    /// The agent's free pool changed to `free` by growing: starts a new
    /// generation if it left the envelope.
    pub(super) fn free_pool_grew(&mut self, free: &Resources) {
        if !self.free_envelope.contains(free) {
            self.generation += 1;
            self.free_envelope = free.clone();
        }
    }

    /// A filter check found the envelope too loose to verify against:
    /// shrink it to the free pool, starting a new generation.
    pub(super) fn shrink_loose_envelope(&mut self, free: &Resources) {
        if self.envelope_too_loose.replace(false) && self.free_envelope != *free {
            self.free_envelope = free.clone();
            self.generation += 1;
        }
    }

    /// Whether client `c`'s filter refuses `candidate` (what it would be
    /// offered on this agent now). One integer comparison once the filter is
    /// verified for the current generation. `reserved_for` gives the
    /// client's role on an agent with reservations (the envelope is then
    /// judged by what that role may use of it), `None` otherwise; it is
    /// asked only when needed.
    pub(super) fn refuses<'r>(
        &self,
        c: u32,
        candidate: &Resources,
        now: Duration,
        reserved_for: impl FnOnce() -> Option<&'r str>,
    ) -> bool {
        let Some(f) = self.by_client.get(&c) else {
            return false;
        };
        if f.expires <= now {
            return false;
        }
        if f.verified_generation.get() == self.generation {
            return true;
        }
        if !f.refused.contains(candidate) {
            return false;
        }
        let envelope_refused = match reserved_for() {
            None => f.refused.contains(&self.free_envelope),
            Some(role) => f
                .refused
                .contains(&allocatable_to_role(&self.free_envelope, role)),
        };
        if envelope_refused {
            f.verified_generation.set(self.generation);
        } else {
            self.envelope_too_loose.set(true);
        }
        true
    }
}

impl DrfAllocator {
    /// Client `c` refused `refused` on agent `a` until `expires`.
    pub(super) fn add_filter(&mut self, a: u32, c: u32, refused: Resources, expires: Duration) {
        self.agent_mut(a).filters.by_client.insert(
            c,
            Filter {
                refused,
                expires,
                verified_generation: Cell::new(NEVER_VERIFIED),
            },
        );
        self.client_mut(c).filtered.insert(a);
        self.filter_expiry.push(Reverse((expires, a, c)));
    }

    pub(super) fn remove_filter(&mut self, a: u32, c: u32) {
        if let Some(Some(agent)) = self.agents.get_mut(a as usize) {
            agent.filters.by_client.remove(&c);
        }
        if let Some(Some(client)) = self.clients.get_mut(c as usize) {
            client.filtered.remove(&a);
        }
    }

    /// Drops the filters expired by `now` (a heap by expiry, so a cycle
    /// touches only those).
    pub(super) fn purge_filters(&mut self, now: Duration) {
        while let Some(Reverse((expires, a, c))) = self.filter_expiry.peek().cloned() {
            if expires > now {
                break;
            }
            self.filter_expiry.pop();
            let matches = self
                .agents
                .get(a as usize)
                .and_then(|s| s.as_ref())
                .and_then(|s| s.filters.by_client.get(&c))
                .is_some_and(|f| f.expires <= now);
            if matches {
                self.remove_filter(a, c);
            }
        }
    }
}
