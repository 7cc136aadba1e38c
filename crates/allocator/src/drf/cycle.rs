//! The allocation cycle: agents in a seeded random order; stage 1 gives roles
//! below their quota guarantee up to that guarantee, stage 2 offers every
//! agent's remaining resources in DRF order.

use std::time::Duration;

use agora_core::AgentId;
use agora_core::resources::UNRESERVED;

use super::DrfAllocator;
use super::books::AgentSlot;
use super::role_tree::ROOT;
use super::search::StageRules;
use crate::Allocation;
use crate::roles::split_by_role;
use crate::scalars::{self};

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl DrfAllocator {
    pub(super) fn allocate_all(&mut self, now: Duration) -> Vec<Allocation> {
        let mut order: Vec<u32> = (0..self.agents.len() as u32)
            .filter(|&a| self.agents[a as usize].is_some())
            .collect();
        for i in (1..order.len()).rev() {
            let j = (splitmix(&mut self.rng) % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        self.allocation_cycle(&order, now)
    }

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

    pub(super) fn allocation_cycle(&mut self, order: &[u32], now: Duration) -> Vec<Allocation> {
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

    /// Stage 1: roles below their guarantee, with demand.
    pub(super) fn allocate_guarantees(
        &mut self,
        order: &[u32],
        now: Duration,
        out: &mut Vec<Allocation>,
    ) {
        let mut roles: Vec<u32> = self
            .quota_roles
            .iter()
            .copied()
            .filter(|&g| {
                let nd = &self.nodes[g as usize];
                nd.active > 0 && !scalars::is_zero(&nd.unmet())
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
            let reserved = self.reserved_roles_of(self.agent(a));
            let mut i = 0;
            while i < roles.len() {
                let g = roles[i];
                let unmet = self.nodes[g as usize].unmet();
                if scalars::is_zero(&unmet) || self.nodes[g as usize].active == 0 {
                    roles.remove(i);
                    continue;
                }
                if !self.offerable(&self.agent(a).free) {
                    break;
                }
                let rules = StageRules {
                    now,
                    stage_cap: Some(self.nodes[g as usize].guarantee_stage_cap()),
                    headroom: None,
                };
                match self.next_recipient(self.agent(a), g, &reserved, &rules) {
                    Some((c, r)) => self.offer_to(a, c, r, now, out),
                    None => i += 1,
                }
            }
        }
    }

    /// Offers one agent's resources (stage 2).
    pub(super) fn allocate_by_fair_share(
        &mut self,
        a: u32,
        now: Duration,
        out: &mut Vec<Allocation>,
    ) {
        self.begin_agent_visit(a);
        if !self.agent(a).active {
            return;
        }
        let all_reserved = self.reserved_roles_of(self.agent(a));
        // Phase A: DRF over the whole tree while unreserved resources are offerable offering.
        loop {
            let agent = self.agent(a);
            if !self.offerable(&agent.free) {
                return;
            }
            if !all_reserved.is_empty() && !self.offerable_scalars(&agent.free_unreserved) {
                break;
            }
            let headroom = (!self.quota_roles.is_empty()).then(|| self.required_headroom());
            let rules = StageRules {
                now,
                stage_cap: None,
                headroom: headroom.filter(|h| !scalars::is_zero(h)),
            };
            match self.next_recipient(agent, ROOT, &all_reserved, &rules) {
                Some((c, r)) => self.offer_to(a, c, r, now, out),
                None => break,
            }
        }
        if all_reserved.is_empty() {
            return;
        }
        // Phase B: the reservations still free, role by role in share order.
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
        for r in roles {
            loop {
                let agent = self.agent(a);
                if !self.offerable(&agent.free) {
                    return;
                }
                let rules = StageRules {
                    now,
                    stage_cap: None,
                    headroom: None,
                };
                match self.next_recipient(agent, r, &[r], &rules) {
                    Some((c, res)) => self.offer_to(a, c, res, now, out),
                    None => break,
                }
            }
        }
    }

    pub(super) fn begin_agent_visit(&mut self, a: u32) {
        let cycle = self.cycle;
        let agent = self.agent_mut(a);
        if agent.cycle != cycle {
            agent.cycle = cycle;
            agent.offered_this_cycle.clear();
        }
        agent.shrink_loose_filter_envelope();
    }

    pub(super) fn reserved_roles_of(&self, a: &AgentSlot) -> Vec<u32> {
        a.reserved.iter().map(|(n, _)| *n).collect()
    }
}
