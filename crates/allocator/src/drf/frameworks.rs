//! Frameworks and their clients (one per subscribed role): subscription,
//! suppress/revive, and resources coming back from them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use agora_core::resources::{UNRESERVED, valid_role};
use agora_core::{AgentId, FrameworkId, Resources};

use super::DrfAllocator;
use super::books::{ClientSlot, FrameworkSlot};
use crate::roles::{allocatable_to_role, intersection};
use crate::scalars::{self, SlotMap, SlotSet, ZERO};

impl DrfAllocator {
    /// A new client for framework `f` in `role` (its role node created if
    /// need be), sorted in at once.
    pub(super) fn new_client(&mut self, f: u32, role: &str, suppressed: bool) -> u32 {
        let node = self.node_for(role);
        let framework = self.framework(f);
        let slot = ClientSlot {
            framework: f,
            node,
            framework_name: framework.name.clone(),
            role: role.to_string(),
            allocated: ZERO,
            holdings: SlotMap::default(),
            filtered: SlotSet::default(),
            subscribed: true,
            suppressed,
            key: None,
            last_offered: None,
            offers: 0,
        };
        let c = match self.free_client_slots.pop() {
            Some(c) => {
                self.clients[c as usize] = Some(slot);
                c
            }
            None => {
                self.clients.push(Some(slot));
                (self.clients.len() - 1) as u32
            }
        };
        self.nodes[node as usize].clients += 1;
        self.framework_mut(f).clients.insert(role.to_string(), c);
        self.client_eligibility_changed(c);
        c
    }

    /// Frees everything the client holds, drops its filters, and removes it.
    pub(super) fn drop_client(&mut self, c: u32) {
        let holdings: Vec<(u32, Resources)> = self.client_mut(c).holdings.drain().collect();
        for (a, r) in holdings {
            // `release` expects the allocation in place.
            self.client_mut(c).holdings.insert(a, r.clone());
            self.release(a, c, &r);
        }
        let filtered: Vec<u32> = self.client(c).filtered.iter().copied().collect();
        for a in filtered {
            self.remove_filter(a, c);
        }
        let cl = self.client_mut(c);
        cl.subscribed = false;
        self.client_eligibility_changed(c);
        let cl = self.clients[c as usize].take().expect("live client");
        self.nodes[cl.node as usize].clients -= 1;
        self.framework_mut(cl.framework).clients.remove(&cl.role);
        self.free_client_slots.push(c);
        self.prune_role(cl.node);
    }

    /// The framework's clients for `roles` (all of them if empty).
    pub(super) fn clients_for(&self, f: u32, roles: &[String]) -> Vec<u32> {
        let framework = self.framework(f);
        if roles.is_empty() {
            framework.clients.values().copied().collect()
        } else {
            roles
                .iter()
                .filter_map(|r| framework.clients.get(r).copied())
                .collect()
        }
    }

    /// The client that should carry resources of `f` that came without a role.
    pub(super) fn default_client(&self, f: u32, r: &Resources) -> Option<u32> {
        let framework = self.framework(f);
        if framework.clients.len() <= 1 {
            return framework.clients.values().next().copied();
        }
        framework
            .clients
            .iter()
            .find(|(role, _)| &allocatable_to_role(r, role) == r && role.as_str() != UNRESERVED)
            .or_else(|| framework.clients.iter().next())
            .map(|(_, c)| *c)
    }

    pub(super) fn recover_resources(
        &mut self,
        agent_id: &AgentId,
        framework_id: &FrameworkId,
        role: Option<&str>,
        resources: &Resources,
        refuse: Option<Duration>,
        now: Duration,
    ) {
        let Some(&a) = self.agent_index.get(agent_id) else {
            return;
        };
        let mut remaining = resources.clone();
        let mut touched: Vec<(u32, Resources)> = Vec::new();
        if let Some(&f) = self.framework_index.get(framework_id) {
            let mut candidates: Vec<u32> = match role.and_then(|r| self.framework(f).clients.get(r))
            {
                Some(&c) => vec![c],
                None => self.framework(f).clients.values().copied().collect(),
            };
            candidates.retain(|c| self.client(*c).holdings.contains_key(&a));
            for c in candidates {
                if remaining.is_empty() {
                    break;
                }
                let held = &self.client(c).holdings[&a];
                let take = if held.contains(&remaining) {
                    std::mem::take(&mut remaining)
                } else {
                    let t = intersection(held, &remaining);
                    remaining.subtract(&t);
                    t
                };
                if take.is_empty() {
                    continue;
                }
                self.release(a, c, &take);
                touched.push((c, take));
            }
        }
        if !remaining.is_empty() {
            let agent = self.agent_mut(a);
            if !agent.orphan.is_empty() {
                let take = intersection(&agent.orphan, &remaining);
                agent.orphan.subtract(&take);
                agent.free.add(&take);
                agent.free_pool_grew();
                let unres = self.names.unreserved(&take);
                let agent = self.agent_mut(a);
                scalars::add(&mut agent.free_unreserved, &unres);
                if agent.active {
                    scalars::add(&mut self.available_unreserved, &unres);
                }
            }
        }
        if let Some(refuse) = refuse.filter(|r| !r.is_zero()) {
            for (c, take) in touched {
                self.add_filter(a, c, take, now + refuse);
            }
        }
    }

    pub(super) fn register_framework(
        &mut self,
        framework_id: FrameworkId,
        roles: BTreeSet<String>,
        suppressed_roles: BTreeSet<String>,
    ) {
        let f = match self.framework_index.get(&framework_id) {
            Some(&f) => f,
            None => {
                let slot = FrameworkSlot {
                    name: Arc::from(framework_id.as_str()),
                    id: framework_id.clone(),
                    active: true,
                    clients: BTreeMap::new(),
                };
                let f = match self.free_framework_slots.pop() {
                    Some(f) => {
                        self.frameworks[f as usize] = Some(slot);
                        f
                    }
                    None => {
                        self.frameworks.push(Some(slot));
                        (self.frameworks.len() - 1) as u32
                    }
                };
                self.framework_index.insert(framework_id, f);
                f
            }
        };
        self.framework_mut(f).active = true;
        let existing: Vec<(String, u32)> = self
            .framework(f)
            .clients
            .iter()
            .map(|(r, c)| (r.clone(), *c))
            .collect();
        for (role, c) in existing {
            let subscribed = roles.contains(&role);
            let suppressed = suppressed_roles.contains(&role);
            if !subscribed && self.client(c).holdings.is_empty() {
                self.drop_client(c);
                continue;
            }
            let cl = self.client_mut(c);
            cl.subscribed = subscribed;
            cl.suppressed = suppressed;
            self.client_eligibility_changed(c);
        }
        for role in &roles {
            if !valid_role(role) || self.framework(f).clients.contains_key(role) {
                continue;
            }
            self.new_client(f, role, suppressed_roles.contains(role));
        }
    }

    pub(super) fn forget_framework(&mut self, framework_id: &FrameworkId) {
        let Some(f) = self.framework_index.remove(framework_id) else {
            return;
        };
        let clients: Vec<u32> = self.framework(f).clients.values().copied().collect();
        for c in clients {
            self.drop_client(c);
        }
        self.frameworks[f as usize] = None;
        self.free_framework_slots.push(f);
    }

    pub(super) fn set_framework_activity(&mut self, framework_id: &FrameworkId, active: bool) {
        let Some(&f) = self.framework_index.get(framework_id) else {
            return;
        };
        self.framework_mut(f).active = active;
        for c in self.clients_for(f, &[]) {
            self.client_eligibility_changed(c);
        }
    }

    pub(super) fn suppress_roles(&mut self, framework_id: &FrameworkId, roles: &[String]) {
        let Some(&f) = self.framework_index.get(framework_id) else {
            return;
        };
        for c in self.clients_for(f, roles) {
            self.client_mut(c).suppressed = true;
            self.client_eligibility_changed(c);
        }
    }

    pub(super) fn revive_roles(&mut self, framework_id: &FrameworkId, roles: &[String]) {
        let Some(&f) = self.framework_index.get(framework_id) else {
            return;
        };
        for c in self.clients_for(f, roles) {
            self.client_mut(c).suppressed = false;
            let filtered: Vec<u32> = self.client(c).filtered.iter().copied().collect();
            for a in filtered {
                self.remove_filter(a, c);
            }
            self.client_eligibility_changed(c);
        }
    }
}
