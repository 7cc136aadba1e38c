//! The role tree and its DRF order (Mesos' sorter).
//!
//! Every role is a node; a node's `order` holds its child roles and, as one
//! more entry ([`OWN_FRAMEWORKS`]), the frameworks subscribed to exactly that
//! role, each keyed by (weighted dominant share, offers made, name). Keys are
//! updated incrementally whenever an allocation or eligibility changes.
//!
//! No walk here recurses: role depth is bounded at the edge
//! (`agora_core::role::MAX_ROLE_DEPTH`), but every walk is a loop over
//! parent links, so a deeper tree put in directly cannot exhaust the stack.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use agora_core::resources::valid_role;

use super::DrfAllocator;
use super::quota::QuotaBooks;
use crate::AllocatorError;
use crate::scalars::{self, MAX_SCALARS, Scalars, UNLIMITED, ZERO};

/// (share bits, offers made, name, index): the order of siblings in the
/// role tree. As in Mesos' DRF sorter, equal shares go first to whoever was
/// offered fewer times, so that frameworks declining everything (their share
/// falls back to zero) cannot starve a newcomer.
pub(super) type SortKey = (u64, u64, Arc<str>, u32);
/// The index a role's own frameworks take among its children.
pub(super) const OWN_FRAMEWORKS: u32 = u32::MAX;
pub(super) const ROOT: u32 = 0;

/// One role (the root is the nameless node 0) with the books of its subtree
/// and the DRF order of its children.
#[derive(Debug)]
pub(super) struct RoleNode {
    /// The full role path (`eng/ml`).
    pub(super) name: Arc<str>,
    pub(super) parent: Option<u32>,
    /// Levels below the root (`eng/ml`: 2).
    pub(super) depth: u32,
    pub(super) weight: f64,
    /// Whether an operator set `weight` (a default weight is not reported).
    pub(super) weight_set: bool,
    pub(super) quota: Option<QuotaBooks>,
    /// Allocated in the subtree, all and unreserved only.
    pub(super) allocated: Scalars,
    pub(super) allocated_unreserved: Scalars,
    /// Allocated to this role's own frameworks.
    pub(super) own_allocated: Scalars,
    /// Reserved for roles in the subtree.
    pub(super) reserved: Scalars,
    /// Eligible clients in the subtree / of this role.
    pub(super) active: u32,
    pub(super) own_active: u32,
    /// Clients of this role, eligible or not.
    pub(super) clients: u32,
    /// Child roles (nodes whose parent this is).
    pub(super) children: u32,
    /// Allocations made in the subtree / to this role's own frameworks.
    pub(super) offers: u64,
    pub(super) own_offers: u64,
    /// Child roles with eligible clients (a role parked at its limit
    /// leaves), plus this role's own frameworks as one entry, in DRF order.
    pub(super) order: BTreeSet<SortKey>,
    /// This role's eligible clients, in DRF order.
    pub(super) own_clients: BTreeSet<SortKey>,
    /// This node's key in its parent's `order`, and its own frameworks' key
    /// in its own `order` (`None`: not there).
    pub(super) key: Option<SortKey>,
    pub(super) own_key: Option<SortKey>,
}

impl RoleNode {
    pub(super) fn new(name: &str, parent: Option<u32>, depth: u32) -> Self {
        Self {
            name: Arc::from(name),
            parent,
            depth,
            weight: 1.0,
            weight_set: false,
            quota: None,
            allocated: ZERO,
            allocated_unreserved: ZERO,
            own_allocated: ZERO,
            reserved: ZERO,
            active: 0,
            own_active: 0,
            clients: 0,
            children: 0,
            offers: 0,
            own_offers: 0,
            order: BTreeSet::new(),
            own_clients: BTreeSet::new(),
            key: None,
            own_key: None,
        }
    }

    /// What counts against the role's limit: its subtree's allocated
    /// unreserved resources plus every reservation in its subtree.
    pub(super) fn consumption(&self) -> Scalars {
        let mut c = self.allocated_unreserved;
        scalars::add(&mut c, &self.reserved);
        c
    }

    /// Unmet guarantee, per scalar (zero if none or met).
    pub(super) fn unmet(&self) -> Scalars {
        match &self.quota {
            Some(q) => q.unmet(&self.consumption()),
            None => ZERO,
        }
    }

    /// See [`QuotaBooks::guarantee_stage_cap`]; no cap without a quota.
    pub(super) fn guarantee_stage_cap(&self) -> Scalars {
        match &self.quota {
            Some(q) => q.guarantee_stage_cap(&self.consumption()),
            None => [UNLIMITED; MAX_SCALARS],
        }
    }
}

impl DrfAllocator {
    /// The node of `role`, created with its missing ancestors. A loop over
    /// the role's levels, root first: no role, however deep, can exhaust
    /// the stack (roles are validated at the edge, but the allocator does
    /// not rely on it).
    pub(super) fn node_for(&mut self, role: &str) -> u32 {
        if let Some(&n) = self.node_index.get(role) {
            return n;
        }
        let ends = role
            .match_indices('/')
            .map(|(i, _)| i)
            .chain(std::iter::once(role.len()));
        let mut parent = ROOT;
        for (level, end) in ends.enumerate() {
            let name = &role[..end];
            parent = match self.node_index.get(name) {
                Some(&n) => n,
                None => {
                    let depth = u32::try_from(level + 1).unwrap_or(u32::MAX);
                    let node = RoleNode::new(name, Some(parent), depth);
                    let n = match self.free_node_slots.pop() {
                        Some(n) => {
                            self.nodes[n as usize] = node;
                            n
                        }
                        None => {
                            self.nodes.push(node);
                            (self.nodes.len() - 1) as u32
                        }
                    };
                    self.nodes[parent as usize].children += 1;
                    self.node_index.insert(name.to_string(), n);
                    n
                }
            };
        }
        parent
    }

    /// Removes `node`, then each ancestor in turn, while it holds nothing:
    /// no clients, no child roles, no weight or quota an operator set,
    /// nothing allocated or reserved in it, and not in its parent's order.
    /// So a master whose frameworks come and go under ever new roles keeps
    /// only the roles in use. A freed node's slot is reused by the next new
    /// role (no index of it survives: clients, quota roles and sort keys
    /// all need one of the above).
    pub(super) fn prune_role(&mut self, node: u32) {
        let mut n = node;
        while n != ROOT {
            let nd = &self.nodes[n as usize];
            let idle = nd.clients == 0
                && nd.children == 0
                && !nd.weight_set
                && nd.quota.is_none()
                && scalars::is_zero(&nd.allocated)
                && scalars::is_zero(&nd.reserved)
                && nd.key.is_none()
                && nd.order.is_empty()
                && nd.own_clients.is_empty();
            let Some(parent) = nd.parent.filter(|_| idle) else {
                return;
            };
            let name = nd.name.clone();
            self.node_index.remove(&*name);
            // A freed slot: no parent, so nothing walks up from it.
            self.nodes[n as usize] = RoleNode::new("", None, 0);
            self.free_node_slots.push(n);
            self.nodes[parent as usize].children -= 1;
            n = parent;
        }
    }

    /// The node and its ancestors, excluding the root.
    pub(super) fn role_and_ancestors(&self, node: u32) -> impl Iterator<Item = u32> + '_ {
        std::iter::successors(Some(node), |&n| self.nodes[n as usize].parent).filter(|&n| n != ROOT)
    }

    pub(super) fn in_subtree(&self, node: u32, ancestor: u32) -> bool {
        std::iter::successors(Some(node), |&n| self.nodes[n as usize].parent).any(|n| n == ancestor)
    }

    /// Re-keys a client in its role's set and fixes the active counts.
    pub(super) fn resort_client(&mut self, c: u32) {
        let cl = self.client(c);
        let node = cl.node;
        let eligible = cl.subscribed && !cl.suppressed && self.framework(cl.framework).active;
        let new_key = eligible.then(|| {
            (
                scalars::share_bits(&cl.allocated, &self.total, 1.0),
                cl.offers,
                cl.framework_name.clone(),
                c,
            )
        });
        if cl.key == new_key {
            return;
        }
        let old = self.client_mut(c).key.take();
        let n = &mut self.nodes[node as usize];
        if let Some(old) = &old {
            n.own_clients.remove(old);
        }
        if let Some(k) = &new_key {
            n.own_clients.insert(k.clone());
        }
        let delta = new_key.is_some() as i64 - old.is_some() as i64;
        self.client_mut(c).key = new_key;
        if delta != 0 {
            let n = &mut self.nodes[node as usize];
            n.own_active = (n.own_active as i64 + delta) as u32;
            let up_to_root: Vec<u32> =
                std::iter::successors(Some(node), |&m| self.nodes[m as usize].parent).collect();
            for m in up_to_root {
                let m = &mut self.nodes[m as usize];
                m.active = (m.active as i64 + delta) as u32;
            }
        }
    }

    /// Re-keys a node's own leaf and the node in its parent, up to the root.
    pub(super) fn resort_up(&mut self, node: u32) {
        self.resort_up_levels(node, usize::MAX);
    }

    /// Recomputes every key (cluster totals changed).
    pub(super) fn resort_all(&mut self) {
        self.sort_keys_stale = false;
        for c in 0..self.clients.len() as u32 {
            if self.clients[c as usize].is_some() {
                self.resort_client(c);
            }
        }
        // Deepest first, so that each node sees its children final.
        let mut order: Vec<u32> = (1..self.nodes.len() as u32).collect();
        order.sort_by_key(|&n| Reverse(self.nodes[n as usize].depth));
        for n in order {
            self.resort_up_levels(n, 1);
        }
        self.resort_up_levels(ROOT, 1);
    }

    /// Re-keys `levels` levels from `node` upwards.
    pub(super) fn resort_up_levels(&mut self, node: u32, levels: usize) {
        let mut n = node;
        for _ in 0..levels {
            let nd = &self.nodes[n as usize];
            let new_self = (nd.own_active > 0).then(|| {
                (
                    scalars::share_bits(&nd.own_allocated, &self.total, nd.weight),
                    nd.own_offers,
                    nd.name.clone(),
                    OWN_FRAMEWORKS,
                )
            });
            if nd.own_key != new_self {
                let nd = &mut self.nodes[n as usize];
                if let Some(old) = nd.own_key.take() {
                    nd.order.remove(&old);
                }
                if let Some(k) = &new_self {
                    nd.order.insert(k.clone());
                }
                nd.own_key = new_self;
            }
            let parked_at_limit = self.parked_at_limit(n);
            let nd = &self.nodes[n as usize];
            let Some(p) = nd.parent else { break };
            let new_key = (nd.active > 0 && !parked_at_limit).then(|| {
                (
                    scalars::share_bits(&nd.allocated, &self.total, nd.weight),
                    nd.offers,
                    nd.name.clone(),
                    n,
                )
            });
            if nd.key != new_key {
                let old = self.nodes[n as usize].key.take();
                let parent = &mut self.nodes[p as usize];
                if let Some(old) = &old {
                    parent.order.remove(old);
                }
                if let Some(k) = &new_key {
                    parent.order.insert(k.clone());
                }
                self.nodes[n as usize].key = new_key;
            }
            n = p;
        }
    }

    /// A role at its quota limit (no min-allocatable set fits in what is
    /// left) with no reservation it could still be offered (none in its
    /// subtree or above it) leaves its parent's order: cycles skip it
    /// without visiting it on every agent.
    pub(super) fn parked_at_limit(&self, n: u32) -> bool {
        let nd = &self.nodes[n as usize];
        let Some(q) = &nd.quota else {
            return false;
        };
        if self.offerable_scalars(&q.room_left(&nd.consumption())) {
            return false;
        }
        std::iter::successors(Some(n), |&m| self.nodes[m as usize].parent)
            .all(|m| scalars::is_zero(&self.nodes[m as usize].reserved))
    }

    /// Client eligibility changed (active, suppressed, subscribed).
    pub(super) fn client_eligibility_changed(&mut self, c: u32) {
        self.resort_client(c);
        let node = self.client(c).node;
        self.resort_up(node);
    }

    pub(super) fn set_role_weights(
        &mut self,
        weights: &[(String, f64)],
    ) -> Result<(), AllocatorError> {
        for (role, weight) in weights {
            if !valid_role(role) {
                return Err(AllocatorError::InvalidRole(role.clone()));
            }
            if !(weight.is_finite() && *weight > 0.0) {
                return Err(AllocatorError::InvalidWeight {
                    role: role.clone(),
                    weight: *weight,
                });
            }
        }
        for (role, weight) in weights {
            let n = self.node_for(role);
            let nd = &mut self.nodes[n as usize];
            nd.weight = *weight;
            nd.weight_set = true;
            self.resort_up(n);
        }
        Ok(())
    }

    pub(super) fn explicit_weights(&self) -> BTreeMap<String, f64> {
        self.nodes
            .iter()
            .filter(|n| n.weight_set)
            .map(|n| (n.name.to_string(), n.weight))
            .collect()
    }
}
