//! The books: what each agent has free, what each client holds where, and the
//! scalar sums of every role's subtree, all updated together on every change.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use agora_core::resources::UNRESERVED;
use agora_core::{AgentId, FrameworkId, Resources};

use super::DrfAllocator;
use super::filters::AgentFilters;
use super::role_tree::SortKey;
use crate::Allocation;
use crate::roles::split_by_role;
use crate::scalars::{self, MAX_SCALARS, Scalars, SlotMap, SlotSet, ZERO};

/// One agent: invariant `total = free + orphan + Σ clients' holdings here`.
#[derive(Debug)]
pub(super) struct AgentSlot {
    pub(super) id: AgentId,
    pub(super) total: Resources,
    pub(super) free: Resources,
    /// An inactive agent keeps its books but is offered to no one.
    pub(super) active: bool,
    /// `total` on the scalar books.
    pub(super) total_scalars: Scalars,
    /// The unreserved part of `free` on the scalar books (all of `free` for
    /// an agent without reservations).
    pub(super) free_unreserved: Scalars,
    /// Reservations in `total`, by role node.
    pub(super) reserved: Vec<(u32, Scalars)>,
    /// Clients with allocations here.
    pub(super) clients: SlotSet,
    /// Used by frameworks the allocator does not know.
    pub(super) orphan: Resources,
    /// DECLINE filters on this agent, by client.
    pub(super) filters: AgentFilters,
    /// The cycle that last visited the agent, and the clients it offered
    /// the agent to then (one offer per client per agent per cycle).
    pub(super) cycle: u64,
    pub(super) offered_this_cycle: Vec<u32>,
}

/// One (framework, role): what the sorter orders and offers go to.
#[derive(Debug)]
pub(super) struct ClientSlot {
    pub(super) framework: u32,
    /// The role's node in the role tree.
    pub(super) node: u32,
    pub(super) framework_name: Arc<str>,
    pub(super) role: String,
    /// Σ `holdings` on the scalar books (its DRF share's numerator).
    pub(super) allocated: Scalars,
    /// What it holds (offered or in use), by agent.
    pub(super) holdings: SlotMap<Resources>,
    /// Agents on which it has a DECLINE filter.
    pub(super) filtered: SlotSet,
    /// Eligible for offers: subscribed to the role, not suppressed, and its
    /// framework active. A client no longer subscribed stays while it holds
    /// resources.
    pub(super) subscribed: bool,
    pub(super) suppressed: bool,
    /// Its key in its role's `own_clients` (`None`: not eligible).
    pub(super) key: Option<SortKey>,
    pub(super) last_offered: Option<Duration>,
    /// Allocations made to it, ever (a tie-break).
    pub(super) offers: u64,
}

/// One framework: its clients, by role.
#[derive(Debug)]
pub(super) struct FrameworkSlot {
    pub(super) id: FrameworkId,
    /// The id, shared by its clients' sort keys (a tie-break).
    pub(super) name: Arc<str>,
    pub(super) active: bool,
    pub(super) clients: BTreeMap<String, u32>,
}

impl AgentSlot {
    /// Call after the free pool grew (filters may need a new generation).
    pub(super) fn free_pool_grew(&mut self) {
        self.filters.free_pool_grew(&self.free);
    }

    /// Call when a cycle first visits the agent.
    pub(super) fn shrink_loose_filter_envelope(&mut self) {
        self.filters.shrink_loose_envelope(&self.free);
    }
}

impl DrfAllocator {
    /// Adds (`sign` 1) or removes (-1) an allocation of a client.
    pub(super) fn adjust_allocated(&mut self, c: u32, sc: &Scalars, unres: &Scalars, sign: i64) {
        let mut sc = *sc;
        let mut unres = *unres;
        if sign < 0 {
            for i in 0..MAX_SCALARS {
                sc[i] = sc[i].saturating_neg();
                unres[i] = unres[i].saturating_neg();
            }
        }
        let node = {
            let cl = self.client_mut(c);
            scalars::add(&mut cl.allocated, &sc);
            cl.node
        };
        scalars::add(&mut self.nodes[node as usize].own_allocated, &sc);
        let mut n = Some(node);
        while let Some(m) = n {
            let nd = &mut self.nodes[m as usize];
            scalars::add(&mut nd.allocated, &sc);
            scalars::add(&mut nd.allocated_unreserved, &unres);
            n = nd.parent;
        }
        self.resort_client(c);
        self.resort_up(node);
    }

    /// Adds (`sign` 1) or removes (-1) reserved scalars to a role's and
    /// every ancestor's books.
    pub(super) fn adjust_role_reservations(&mut self, node: u32, sc: &Scalars, sign: i64) {
        // Whether roles at their limit can be skipped depends on reservations.
        self.sort_keys_stale = true;
        let mut n = Some(node);
        while let Some(m) = n {
            let nd = &mut self.nodes[m as usize];
            if sign > 0 {
                scalars::add(&mut nd.reserved, sc);
            } else {
                scalars::sub(&mut nd.reserved, sc);
            }
            n = nd.parent;
        }
    }

    /// The unreserved part of `r` (on agent `a`, `sc` its scalars): `sc`
    /// itself on an agent without reservations, with no scan.
    pub(super) fn unreserved_part(&self, a: &AgentSlot, r: &Resources, sc: &Scalars) -> Scalars {
        if a.reserved.is_empty() {
            *sc
        } else {
            self.names.unreserved(r)
        }
    }

    /// Moves `r` (taken from the agent's free pool; `None`: all of it, for
    /// an agent without reservations) to client `c`.
    pub(super) fn offer_to(
        &mut self,
        a: u32,
        c: u32,
        r: Option<Resources>,
        now: Duration,
        out: &mut Vec<Allocation>,
    ) {
        let agent = self.agents[a as usize].as_mut().expect("live agent");
        let (r, sc, unres) = match r {
            None => {
                let r = std::mem::take(&mut agent.free);
                let sc = std::mem::replace(&mut agent.free_unreserved, ZERO);
                (r, sc, sc)
            }
            Some(r) => {
                let sc = self.names.of(&r);
                let unres = if agent.reserved.is_empty() {
                    sc
                } else {
                    self.names.unreserved(&r)
                };
                agent.free.subtract(&r);
                scalars::sub(&mut agent.free_unreserved, &unres);
                (r, sc, unres)
            }
        };
        agent.clients.insert(c);
        agent.offered_this_cycle.push(c);
        let active = agent.active;
        let agent_id = agent.id.clone();
        if active {
            scalars::sub(&mut self.available_unreserved, &unres);
        }
        let cl = self.clients[c as usize].as_mut().expect("live client");
        match cl.holdings.entry(a) {
            std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().add(&r),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(r.clone());
            }
        }
        cl.last_offered = Some(now);
        cl.offers += 1;
        let role = cl.role.clone();
        let framework = cl.framework;
        let node = cl.node;
        self.nodes[node as usize].own_offers += 1;
        let mut n = Some(node);
        while let Some(m) = n {
            self.nodes[m as usize].offers += 1;
            n = self.nodes[m as usize].parent;
        }
        self.adjust_allocated(c, &sc, &unres, 1);
        out.push(Allocation {
            framework_id: self.framework(framework).id.clone(),
            role,
            agent_id,
            resources: r,
        });
    }

    /// Records `r` as used by client `c` without an offer (adopted tasks).
    pub(super) fn charge_used(&mut self, a: u32, c: u32, r: &Resources) {
        let sc = self.names.of(r);
        let unres = self.unreserved_part(self.agent(a), r, &sc);
        let agent = self.agent_mut(a);
        agent.free.subtract(r);
        scalars::sub(&mut agent.free_unreserved, &unres);
        agent.clients.insert(c);
        if agent.active {
            scalars::sub(&mut self.available_unreserved, &unres);
        }
        self.client_mut(c).holdings.entry(a).or_default().add(r);
        self.adjust_allocated(c, &sc, &unres, 1);
    }

    /// Returns `take` (part of client `c`'s allocation on `a`) to the free pool.
    pub(super) fn release(&mut self, a: u32, c: u32, take: &Resources) {
        if take.is_empty() {
            return;
        }
        let sc = self.names.of(take);
        let unres = self.unreserved_part(self.agent(a), take, &sc);
        let cl = self.client_mut(c);
        let mut emptied = false;
        if let Some(held) = cl.holdings.get_mut(&a) {
            held.subtract(take);
            if held.is_empty() {
                cl.holdings.remove(&a);
                emptied = true;
            }
        }
        let agent = self.agent_mut(a);
        if emptied {
            agent.clients.remove(&c);
        }
        agent.free.add(take);
        agent.free_pool_grew();
        scalars::add(&mut agent.free_unreserved, &unres);
        if agent.active {
            scalars::add(&mut self.available_unreserved, &unres);
        }
        self.adjust_allocated(c, &sc, &unres, -1);
    }

    /// Adds (`sign` 1) or removes (-1) all of an agent's reservations to
    /// the roles' books (the agent joins, leaves, or changes its total).
    pub(super) fn book_agent_reservations(&mut self, a: u32, sign: i64) {
        let reserved = self.agent(a).reserved.clone();
        for (node, sc) in reserved {
            self.adjust_role_reservations(node, &sc, sign);
        }
    }

    /// Adds (`sign` 1) or removes (-1) the reservations in `r` to the agent's
    /// and the roles' books, without rescanning the agent's total.
    pub(super) fn adjust_agent_reservations(&mut self, a: u32, r: &Resources, sign: i64) {
        for (role, part) in split_by_role(r) {
            if role == UNRESERVED {
                continue;
            }
            let node = self.node_for(&role);
            let sc = self.names.of(&part);
            self.adjust_role_reservations(node, &sc, sign);
            let agent = self.agent_mut(a);
            match agent.reserved.iter().position(|(n, _)| *n == node) {
                Some(i) => {
                    if sign > 0 {
                        scalars::add(&mut agent.reserved[i].1, &sc);
                    } else {
                        scalars::sub(&mut agent.reserved[i].1, &sc);
                    }
                    if scalars::is_zero(&agent.reserved[i].1) {
                        agent.reserved.swap_remove(i);
                    }
                }
                None if sign > 0 => agent.reserved.push((node, sc)),
                None => {}
            }
        }
    }

    /// The reservations in an agent's `total`, by role node (creating nodes).
    pub(super) fn compute_reserved(&mut self, total: &Resources) -> Vec<(u32, Scalars)> {
        let mut out = Vec::new();
        if total.allocatable_to(UNRESERVED) == *total {
            return out;
        }
        for (role, r) in split_by_role(total) {
            if role == UNRESERVED {
                continue;
            }
            let node = self.node_for(&role);
            out.push((node, self.names.of(&r)));
        }
        out
    }
}
