//! Agents joining, leaving, going inactive, and changing their totals.

use agora_core::{AgentId, FrameworkId, Resources};

use super::DrfAllocator;
use super::books::AgentSlot;
use super::filters::AgentFilters;
use crate::roles::intersection;
use crate::scalars::{self, SlotSet};

impl DrfAllocator {
    pub(super) fn register_agent(
        &mut self,
        agent_id: AgentId,
        total: Resources,
        used: &[(FrameworkId, Resources)],
    ) {
        if self.agent_index.contains_key(&agent_id) {
            self.forget_agent(&agent_id);
        }
        self.names.intern(&total);
        let total_scalars = self.names.of(&total);
        let reserved = self.compute_reserved(&total);
        let free_unreserved = self.names.unreserved(&total);
        let slot = AgentSlot {
            id: agent_id.clone(),
            free: total.clone(),
            filters: AgentFilters::new(&total),
            total,
            active: true,
            total_scalars,
            free_unreserved,
            reserved,
            clients: SlotSet::default(),
            orphan: Resources::new(),
            cycle: 0,
            offered_this_cycle: Vec::new(),
        };
        let a = match self.free_agent_slots.pop() {
            Some(a) => {
                self.agents[a as usize] = Some(slot);
                a
            }
            None => {
                self.agents.push(Some(slot));
                (self.agents.len() - 1) as u32
            }
        };
        self.agent_index.insert(agent_id.clone(), a);
        self.book_agent_reservations(a, 1);
        scalars::add(&mut self.total, &total_scalars);
        scalars::add(&mut self.available_unreserved, &free_unreserved);
        self.sort_keys_stale = true;
        for (framework_id, resources) in used {
            self.adopt_used(&agent_id, framework_id, resources);
        }
    }

    pub(super) fn forget_agent(&mut self, agent_id: &AgentId) {
        let Some(&a) = self.agent_index.get(agent_id) else {
            return;
        };
        let clients: Vec<u32> = self.agent(a).clients.iter().copied().collect();
        for c in clients {
            if let Some(r) = self.client_mut(c).holdings.remove(&a) {
                let sc = self.names.of(&r);
                let unres = self.unreserved_part(self.agent(a), &r, &sc);
                self.adjust_allocated(c, &sc, &unres, -1);
            }
        }
        let filtered: Vec<u32> = self.agent(a).filters.by_client.keys().copied().collect();
        for c in filtered {
            self.remove_filter(a, c);
        }
        self.book_agent_reservations(a, -1);
        let agent = self.agents[a as usize].take().expect("live agent");
        scalars::sub(&mut self.total, &agent.total_scalars);
        if agent.active {
            scalars::sub(&mut self.available_unreserved, &agent.free_unreserved);
        }
        self.agent_index.remove(agent_id);
        self.free_agent_slots.push(a);
        self.sort_keys_stale = true;
    }

    pub(super) fn set_agent_activity(&mut self, agent_id: &AgentId, active: bool) {
        let Some(&a) = self.agent_index.get(agent_id) else {
            return;
        };
        let agent = self.agent_mut(a);
        if agent.active == active {
            return;
        }
        agent.active = active;
        let free_unreserved = agent.free_unreserved;
        if active {
            scalars::add(&mut self.available_unreserved, &free_unreserved);
        } else {
            scalars::sub(&mut self.available_unreserved, &free_unreserved);
        }
    }

    pub(super) fn replace_agent_total(&mut self, agent_id: &AgentId, total: Resources) {
        let Some(&a) = self.agent_index.get(agent_id) else {
            return;
        };
        self.names.intern(&total);
        self.book_agent_reservations(a, -1);
        let reserved = self.compute_reserved(&total);
        let total_scalars = self.names.of(&total);
        let agent = self.agent(a);
        let mut allocated = agent.orphan.clone();
        for &c in &agent.clients {
            allocated.add(&self.client(c).holdings[&a]);
        }
        let mut free = total.clone();
        free.subtract(&allocated);
        let free_unreserved = self.names.unreserved(&free);
        let agent = self.agent_mut(a);
        let old_total = agent.total_scalars;
        let old_free_unres = agent.free_unreserved;
        agent.total = total;
        agent.free = free;
        agent.total_scalars = total_scalars;
        agent.free_unreserved = free_unreserved;
        agent.reserved = reserved;
        agent.free_pool_grew();
        let active = agent.active;
        self.book_agent_reservations(a, 1);
        scalars::sub(&mut self.total, &old_total);
        scalars::add(&mut self.total, &total_scalars);
        if active {
            scalars::sub(&mut self.available_unreserved, &old_free_unres);
            scalars::add(&mut self.available_unreserved, &free_unreserved);
        }
        self.sort_keys_stale = true;
    }

    pub(super) fn adopt_used(
        &mut self,
        agent_id: &AgentId,
        framework_id: &FrameworkId,
        resources: &Resources,
    ) {
        let Some(&a) = self.agent_index.get(agent_id) else {
            return;
        };
        let take = intersection(&self.agent(a).free, resources);
        if take.is_empty() {
            return;
        }
        let client = self
            .framework_index
            .get(framework_id)
            .and_then(|&f| self.default_client(f, &take));
        match client {
            Some(c) => self.charge_used(a, c, &take),
            None => {
                let unres = self.names.unreserved(&take);
                let agent = self.agent_mut(a);
                agent.free.subtract(&take);
                agent.orphan.add(&take);
                scalars::sub(&mut agent.free_unreserved, &unres);
                if agent.active {
                    scalars::sub(&mut self.available_unreserved, &unres);
                }
            }
        }
    }
}
