//! A recomputation of the books from scratch, for tests and simulations.

use std::collections::HashMap;

use agora_core::resources::UNRESERVED;

use super::DrfAllocator;
use crate::roles::split_by_role;
use crate::scalars::{self, Scalars, ZERO};

impl DrfAllocator {
    /// Checks the books against a recomputation from scratch. For tests and
    /// simulations; O(everything).
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut total = ZERO;
        let mut node_alloc: HashMap<u32, Scalars> = HashMap::new();
        let mut node_reserved: HashMap<u32, Scalars> = HashMap::new();
        let mut avail = ZERO;
        for (a, slot) in self.agents.iter().enumerate() {
            let Some(agent) = slot else { continue };
            let a = a as u32;
            scalars::add(&mut total, &agent.total_scalars);
            let mut sum = agent.free.clone();
            sum.add(&agent.orphan);
            for &c in &agent.clients {
                let held = self.client(c).holdings.get(&a).ok_or_else(|| {
                    format!("agent {} lists client {c} without allocation", agent.id)
                })?;
                if !agent.total.contains(held) {
                    return Err(format!("agent {} over-committed to client {c}", agent.id));
                }
                sum.add(held);
            }
            if sum != agent.total {
                return Err(format!(
                    "agent {}: free + allocated = {sum} != total {}",
                    agent.id, agent.total
                ));
            }
            if self.names.unreserved(&agent.free) != agent.free_unreserved {
                return Err(format!("agent {}: free unreserved books drifted", agent.id));
            }
            if agent.active {
                scalars::add(&mut avail, &agent.free_unreserved);
            }
            for (role, r) in split_by_role(&agent.total) {
                if role == UNRESERVED {
                    continue;
                }
                let node = self.node_index[&role];
                for m in std::iter::successors(Some(node), |&n| self.nodes[n as usize].parent) {
                    scalars::add(node_reserved.entry(m).or_insert(ZERO), &self.names.of(&r));
                }
            }
        }
        if total != self.total {
            return Err("cluster total drifted".into());
        }
        if avail != self.available_unreserved {
            return Err("available unreserved drifted".into());
        }
        for (c, slot) in self.clients.iter().enumerate() {
            let Some(cl) = slot else { continue };
            let mut sum = ZERO;
            for (&a, held) in &cl.holdings {
                if !self.agent(a).clients.contains(&(c as u32)) {
                    return Err(format!("client {c} allocation on agent not listed"));
                }
                for (role, _) in split_by_role(held) {
                    if role != UNRESERVED && !crate::roles::is_role_or_descendant(&cl.role, &role) {
                        return Err(format!(
                            "reserved resources of role {role} allocated to role {}",
                            cl.role
                        ));
                    }
                }
                scalars::add(&mut sum, &self.names.of(held));
            }
            if sum != cl.allocated {
                return Err(format!("client {c} allocation sum drifted"));
            }
            for m in std::iter::successors(Some(cl.node), |&n| self.nodes[n as usize].parent) {
                scalars::add(node_alloc.entry(m).or_insert(ZERO), &sum);
            }
        }
        // The role tree's shape: every named node indexed under its name,
        // child counts right, freed slots blank.
        let mut children: HashMap<u32, u32> = HashMap::new();
        for (n, nd) in self.nodes.iter().enumerate().skip(1) {
            let free = self.free_node_slots.contains(&(n as u32));
            match nd.parent {
                Some(p) if !free => {
                    *children.entry(p).or_default() += 1;
                    if self.node_index.get(&*nd.name) != Some(&(n as u32)) {
                        return Err(format!("role '{}' is not indexed", nd.name));
                    }
                }
                None if free && nd.name.is_empty() && nd.clients == 0 => {}
                _ => return Err(format!("role node {n} is neither live nor free")),
            }
        }
        if self.node_index.len() + self.free_node_slots.len() + 1 != self.nodes.len() {
            return Err("role index and nodes disagree".into());
        }
        for (n, nd) in self.nodes.iter().enumerate() {
            if nd.children != children.get(&(n as u32)).copied().unwrap_or(0) {
                return Err(format!("role '{}' child count drifted", nd.name));
            }
        }
        for (n, nd) in self.nodes.iter().enumerate() {
            let n = n as u32;
            if nd.allocated != node_alloc.get(&n).copied().unwrap_or(ZERO) {
                return Err(format!("role '{}' allocation sum drifted", nd.name));
            }
            if nd.reserved != node_reserved.get(&n).copied().unwrap_or(ZERO) {
                return Err(format!("role '{}' reserved sum drifted", nd.name));
            }
        }
        Ok(())
    }
}
