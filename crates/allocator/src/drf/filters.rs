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
use super::books::AgentSlot;
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
}

impl AgentSlot {
    /// Starts a new filter generation if the free pool left the envelope.
    pub(super) fn free_pool_grew(&mut self) {
        if !self.filters.free_envelope.contains(&self.free) {
            self.filters.generation += 1;
            self.filters.free_envelope = self.free.clone();
        }
    }

    /// A filter check found the envelope too loose to verify against:
    /// shrink it to the free pool, starting a new generation.
    pub(super) fn shrink_loose_filter_envelope(&mut self) {
        if self.filters.envelope_too_loose.replace(false) && self.filters.free_envelope != self.free
        {
            self.filters.free_envelope = self.free.clone();
            self.filters.generation += 1;
        }
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

    /// Whether client `c`'s filter on agent `a` refuses `candidate` (what it
    /// would be offered there now). One integer comparison once the filter
    /// is verified for the agent's generation.
    pub(super) fn is_filtered(
        &self,
        a: &AgentSlot,
        c: u32,
        candidate: &Resources,
        now: Duration,
    ) -> bool {
        let Some(f) = a.filters.by_client.get(&c) else {
            return false;
        };
        if f.expires <= now {
            return false;
        }
        if f.verified_generation.get() == a.filters.generation {
            return true;
        }
        if !f.refused.contains(candidate) {
            return false;
        }
        let envelope_refused = if a.reserved.is_empty() {
            f.refused.contains(&a.filters.free_envelope)
        } else {
            f.refused.contains(&allocatable_to_role(
                &a.filters.free_envelope,
                &self.client(c).role,
            ))
        };
        if envelope_refused {
            f.verified_generation.set(a.filters.generation);
        } else {
            a.filters.envelope_too_loose.set(true);
        }
        true
    }
}
