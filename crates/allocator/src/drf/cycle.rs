//! The allocation cycle (Mesos' `HierarchicalAllocatorProcess::__allocate`):
//! agents in a seeded random order (or just the agents an event touched);
//! stage 1 gives roles below their quota guarantee up to that guarantee,
//! stage 2 offers every agent's remaining resources in DRF order.

use std::time::Duration;

use agora_core::AgentId;
use agora_core::resources::UNRESERVED;
use rand::seq::SliceRandom as _;

use super::DrfAllocator;
use super::books::AgentSlot;
use super::role_tree::ROOT;
use super::search::StageRules;
use crate::Allocation;
use crate::roles::split_by_role;
use crate::scalars;

impl DrfAllocator {
    /// A full cycle: every agent, in a fresh seeded random order, so no
    /// agent is always offered first (the same seed gives the same orders).
    pub(super) fn allocate_all(&mut self, now: Duration) -> Vec<Allocation> {
        let mut order: Vec<u32> = (0..self.agents.len() as u32)
            .filter(|&a| self.agents[a as usize].is_some())
            .collect();
        order.shuffle(&mut self.rng);
        self.allocation_cycle(&order, now)
    }

    /// An event-driven cycle over just these agents, in the order given
    /// (unknown agents and repeats skipped).
    pub(super) fn allocate_on(&mut self, now: Duration, agent_ids: &[AgentId]) -> Vec<Allocation> {
        let mut order: Vec<u32> = Vec::with_capacity(agent_ids.len());
        for id in agent_ids {
            if let Some(&a) = self.agent_index.get(id)
                && !order.contains(&a)
            {
                order.push(a);
            }
        }
        self.allocation_cycle(&order, now)
    }

    /// One cycle over `order`: expired filters go, sort keys are recomputed
    /// if cluster totals moved, then stage 1 (quota guarantees) over every
    /// agent, then stage 2 (fair share) agent by agent.
    fn allocation_cycle(&mut self, order: &[u32], now: Duration) -> Vec<Allocation> {
        self.cycle += 1;
        self.purge_filters(now);
        if self.sort_keys_stale {
            self.resort_all();
        }
        let mut out = Vec::new();
        if !self.quota_roles.is_empty() {
            self.allocate_guarantees(order, now, &mut out);
        }
        for &a in order {
            self.allocate_by_fair_share(a, now, &mut out);
        }
        out
    }

    /// Stage 1: roles below their guarantee that have demand, in share
    /// order, each get up to their unmet guarantee on each agent in turn.
    fn allocate_guarantees(&mut self, order: &[u32], now: Duration, out: &mut Vec<Allocation>) {
        let mut roles: Vec<u32> = self
            .quota_roles
            .iter()
            .copied()
            .filter(|&role| {
                let node = &self.nodes[role as usize];
                node.active > 0 && !scalars::is_zero(&node.unmet())
            })
            .collect();
        if roles.is_empty() {
            return;
        }
        roles.sort_by(|x, y| {
            self.nodes[*x as usize]
                .key
                .cmp(&self.nodes[*y as usize].key)
        });
        for &a in order {
            if roles.is_empty() {
                return;
            }
            self.begin_agent_visit(a);
            if !self.agent(a).active {
                continue;
            }
            let reserved_roles = self.reserved_roles_of(self.agent(a));
            let mut i = 0;
            while i < roles.len() {
                let role = roles[i];
                let node = &self.nodes[role as usize];
                if scalars::is_zero(&node.unmet()) || node.active == 0 {
                    // Met, or no demand left: done with it for this cycle.
                    roles.remove(i);
                    continue;
                }
                if !self.offerable(&self.agent(a).free) {
                    break;
                }
                let rules = StageRules::guarantee(now, node.guarantee_stage_cap());
                match self.next_recipient(self.agent(a), role, &reserved_roles, &rules) {
                    Some((c, offer)) => self.offer_to(a, c, offer, now, out),
                    None => i += 1,
                }
            }
        }
    }

    /// Stage 2 for one agent: DRF over the whole tree while its unreserved
    /// resources are worth offering, then its reservations still free, role
    /// by role.
    fn allocate_by_fair_share(&mut self, a: u32, now: Duration, out: &mut Vec<Allocation>) {
        self.begin_agent_visit(a);
        if !self.agent(a).active {
            return;
        }
        let reserved_roles = self.reserved_roles_of(self.agent(a));
        let exhausted = self.offer_in_drf_order(a, &reserved_roles, now, out);
        if !exhausted && !reserved_roles.is_empty() {
            self.offer_free_reservations(a, now, out);
        }
    }

    /// Offers the agent to the whole tree in DRF order, holding back other
    /// roles' headroom, until nothing is found. Returns whether the agent's
    /// free pool ran out (nothing left worth offering).
    fn offer_in_drf_order(
        &mut self,
        a: u32,
        reserved_roles: &[u32],
        now: Duration,
        out: &mut Vec<Allocation>,
    ) -> bool {
        loop {
            let agent = self.agent(a);
            if !self.offerable(&agent.free) {
                return true;
            }
            if !reserved_roles.is_empty() && !self.offerable_scalars(&agent.free_unreserved) {
                // Only reservations are left: the next pass offers them.
                return false;
            }
            let headroom = (!self.quota_roles.is_empty()).then(|| self.required_headroom());
            let rules = StageRules::fair_share(now, headroom);
            match self.next_recipient(agent, ROOT, reserved_roles, &rules) {
                Some((c, offer)) => self.offer_to(a, c, offer, now, out),
                None => return false,
            }
        }
    }

    /// Offers the agent's reservations still free, role by role in share
    /// order, to the role's subtree.
    fn offer_free_reservations(&mut self, a: u32, now: Duration, out: &mut Vec<Allocation>) {
        let mut roles: Vec<u32> = split_by_role(&self.agent(a).free)
            .keys()
            .filter(|r| r.as_str() != UNRESERVED)
            .filter_map(|r| self.node_index.get(r).copied())
            .collect();
        roles.sort_by(|x, y| {
            let kx = &self.nodes[*x as usize].key;
            let ky = &self.nodes[*y as usize].key;
            kx.cmp(ky)
        });
        for role in roles {
            loop {
                let agent = self.agent(a);
                if !self.offerable(&agent.free) {
                    return;
                }
                let rules = StageRules::reservations(now);
                match self.next_recipient(agent, role, &[role], &rules) {
                    Some((c, offer)) => self.offer_to(a, c, offer, now, out),
                    None => break,
                }
            }
        }
    }

    /// The first visit of an agent in this cycle forgets who it was offered
    /// to in the previous one (a client gets one offer per agent per cycle);
    /// every visit first shrinks a filter envelope found too loose.
    fn begin_agent_visit(&mut self, a: u32) {
        let cycle = self.cycle;
        let agent = self.agent_mut(a);
        if agent.cycle != cycle {
            agent.cycle = cycle;
            agent.offered_this_cycle.clear();
        }
        agent.shrink_loose_filter_envelope();
    }

    fn reserved_roles_of(&self, a: &AgentSlot) -> Vec<u32> {
        a.reserved.iter().map(|(n, _)| *n).collect()
    }
}
