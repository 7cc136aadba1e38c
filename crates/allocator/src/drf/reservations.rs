//! Dynamic reservations: RESERVE/UNRESERVE of free resources by operators,
//! and the same operations on allocated resources from a framework's ACCEPT.

use agora_core::resources::UNRESERVED;
use agora_core::{AgentId, FrameworkId, Resources};

use super::DrfAllocator;
use crate::AllocatorError;
use crate::roles::{allocatable_to_role, split_by_role, unreserved_form};
use crate::scalars;

/// What RESERVE and UNRESERVE of free resources may name: reserved,
/// dynamic resources only. A static reservation (an agent's
/// `--resources`) changes only with the agent's configuration.
fn check_dynamic(reserved: &Resources) -> Result<(), AllocatorError> {
    if reserved.is_empty() || !reserved.allocatable_to(UNRESERVED).is_empty() {
        return Err(AllocatorError::InvalidReservation(
            "every resource must carry a role other than '*'".into(),
        ));
    }
    if !reserved.statically_reserved().is_empty() {
        return Err(AllocatorError::InvalidReservation(
            "static reservations (an agent's --resources) cannot be made or removed".into(),
        ));
    }
    Ok(())
}

/// What an offer operation may do to an allocation: change dynamic
/// reservations within `role`'s reach, never quantities or static ones.
fn check_change(role: &str, from: &Resources, to: &Resources) -> Result<(), AllocatorError> {
    if unreserved_form(from) != unreserved_form(to) {
        return Err(AllocatorError::InvalidReservation(
            "an operation may change reservations, not quantities".into(),
        ));
    }
    if from.statically_reserved() != to.statically_reserved() {
        return Err(AllocatorError::InvalidReservation(
            "static reservations (an agent's --resources) cannot be made or removed".into(),
        ));
    }
    if allocatable_to_role(to, role) != *to {
        return Err(AllocatorError::InvalidReservation(format!(
            "role '{role}' may not hold {to}"
        )));
    }
    Ok(())
}

impl DrfAllocator {
    /// Free resources `from` on the agent become `to` (same quantities,
    /// other reservations): RESERVE and UNRESERVE of free resources.
    pub(super) fn exchange_free(&mut self, a: u32, from: &Resources, to: &Resources) {
        self.adjust_agent_reservations(a, from, -1);
        self.adjust_agent_reservations(a, to, 1);
        let agent = self.agent_mut(a);
        agent.total.subtract(from);
        agent.total.add(to);
        agent.free.subtract(from);
        agent.free.add(to);
        agent.free_pool_grew();
        let old = agent.free_unreserved;
        let new = if agent.reserved.is_empty() {
            self.names.of(&self.agent(a).free)
        } else {
            self.names.unreserved(&self.agent(a).free)
        };
        let agent = self.agent_mut(a);
        agent.free_unreserved = new;
        if agent.active {
            scalars::sub(&mut self.available_unreserved, &old);
            scalars::add(&mut self.available_unreserved, &new);
        }
    }

    /// Applies a checked allocation change (see `update_allocations`).
    pub(super) fn apply_change(&mut self, a: u32, c: u32, from: &Resources, to: &Resources) {
        if from.is_empty() {
            // Same quantities: `to` is empty too.
            return;
        }
        // Books: the allocation leaves as `from`, the total changes, and the
        // allocation comes back as `to`.
        let from_sc = self.names.of(from);
        let from_unres = self.names.unreserved(from);
        self.adjust_allocated(c, &from_sc, &from_unres, -1);
        self.adjust_agent_reservations(a, from, -1);
        self.adjust_agent_reservations(a, to, 1);
        let agent = self.agent_mut(a);
        agent.total.subtract(from);
        agent.total.add(to);
        let held = self.client_mut(c).holdings.entry(a).or_default();
        held.subtract(from);
        held.add(to);
        let to_sc = self.names.of(to);
        let to_unres = self.names.unreserved(to);
        self.adjust_allocated(c, &to_sc, &to_unres, 1);
    }

    pub(super) fn reserve_free(
        &mut self,
        agent_id: &AgentId,
        reserved: &Resources,
    ) -> Result<(), AllocatorError> {
        let Some(&a) = self.agent_index.get(agent_id) else {
            return Err(AllocatorError::UnknownAgent(agent_id.to_string()));
        };
        check_dynamic(reserved)?;
        let unres = unreserved_form(reserved);
        if !self.agent(a).free.contains(&unres) {
            return Err(AllocatorError::NotAvailable {
                agent: agent_id.to_string(),
                resources: unres.to_string(),
            });
        }
        let by_role = split_by_role(reserved);
        // Reservations count towards quota consumption: refuse to exceed a limit.
        for (role, r) in &by_role {
            let sc = self.names.of(r);
            if let Some(&n) = self.node_index.get(role) {
                for m in self.role_and_ancestors(n) {
                    let nd = &self.nodes[m as usize];
                    if let Some(q) = &nd.quota {
                        let mut c = nd.consumption();
                        scalars::add(&mut c, &sc);
                        if q.exceeded_by(&c) {
                            return Err(AllocatorError::InvalidReservation(format!(
                                "it would exceed the quota limit of role '{}'",
                                nd.name
                            )));
                        }
                    }
                }
            }
        }
        self.exchange_free(a, &unres, reserved);
        Ok(())
    }

    pub(super) fn unreserve_free(
        &mut self,
        agent_id: &AgentId,
        reserved: &Resources,
    ) -> Result<(), AllocatorError> {
        let Some(&a) = self.agent_index.get(agent_id) else {
            return Err(AllocatorError::UnknownAgent(agent_id.to_string()));
        };
        check_dynamic(reserved)?;
        if !self.agent(a).free.contains(reserved) {
            return Err(AllocatorError::NotAvailable {
                agent: agent_id.to_string(),
                resources: reserved.to_string(),
            });
        }
        self.exchange_free(a, reserved, &unreserved_form(reserved));
        Ok(())
    }

    pub(super) fn change_reservations(
        &mut self,
        agent_id: &AgentId,
        framework_id: &FrameworkId,
        role: &str,
        changes: &[(Resources, Resources)],
    ) -> Result<(), AllocatorError> {
        let Some(&a) = self.agent_index.get(agent_id) else {
            return Err(AllocatorError::UnknownAgent(agent_id.to_string()));
        };
        let Some(&f) = self.framework_index.get(framework_id) else {
            return Err(AllocatorError::UnknownFramework(framework_id.to_string()));
        };
        let Some(&c) = self.framework(f).clients.get(role) else {
            return Err(AllocatorError::InvalidRole(role.to_string()));
        };
        // Every change is checked against what the client will hold by
        // then, before any is applied: nothing ever needs rolling back.
        let mut held = self.client(c).holdings.get(&a).cloned().unwrap_or_default();
        for (from, to) in changes {
            check_change(role, from, to)?;
            if !held.contains(from) {
                return Err(AllocatorError::NotAvailable {
                    agent: agent_id.to_string(),
                    resources: from.to_string(),
                });
            }
            held.subtract(from);
            held.add(to);
        }
        for (from, to) in changes {
            self.apply_change(a, c, from, to);
        }
        Ok(())
    }
}
