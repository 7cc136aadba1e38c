//! Weighted hierarchical DRF with quota, reservations and DECLINE filters.
//!
//! Books are incremental: every allocation change updates the client's,
//! its role's and every ancestor role's scalar sums at once, and re-keys
//! them in their parent's sorted set (a `BTreeSet` keyed by
//! (weighted dominant share, name)). An allocation walks the role tree in
//! that order from the root for each agent and stops at the first eligible
//! client, so a cycle costs about one tree walk per offer made, not a scan
//! of every framework per agent.
//!
//! A *client* is one (framework, role) pair, as in Mesos' sorter: a framework
//! subscribed to several roles is sorted once per role.
//!
//! Stages (Mesos' `HierarchicalAllocatorProcess::__allocate`):
//! 1. roles below their quota guarantee with demand, in share order, get up
//!    to their unmet guarantee on each agent;
//! 2. every agent, in a seeded random order, goes to the tree in DRF order;
//!    unreserved resources other roles' unmet guarantees need are held back
//!    (headroom), and no role's quota limit is exceeded.
//!
//! The parts, each in its own module (one type, [`DrfAllocator`], whose
//! methods are grouped by the part they serve):
//! - [`role_tree`]: the role tree and its DRF sort order (the sorter);
//! - [`books`]: agents', clients' and roles' allocation and reservation books;
//! - [`filters`]: DECLINE filters and the per-agent filter generation that
//!   makes re-checking them cheap;
//! - [`quota`]: guarantees, limits and headroom;
//! - [`search`]: the walk that finds the next client to offer an agent to;
//! - [`cycle`]: the allocation cycle itself, stage by stage;
//! - [`agents`], [`frameworks`], [`reservations`], [`queries`]: the
//!   [`Allocator`] operations on each kind of object.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::time::Duration;

use agora_core::{AgentId, FrameworkId, Resources};
use rand::SeedableRng as _;
use rand::rngs::SmallRng;

use crate::scalars::{self, Amount, MAX_SCALARS, ScalarNames, Scalars, ZERO};
use crate::{Allocation, Allocator, AllocatorError, OfferStatus, Quota, RoleSummary};

mod agents;
mod books;
mod cycle;
mod filters;
mod frameworks;
#[cfg(test)]
mod invariants;
mod queries;
mod quota;
mod reservations;
mod role_tree;
mod search;

use books::{AgentSlot, ClientSlot, FrameworkSlot};
use role_tree::RoleNode;

/// Construction parameters.
#[derive(Debug, Clone)]
pub struct DrfConfig {
    /// Seeds the per-cycle random order of agents.
    pub seed: u64,
    /// Mesos' `--min_allocatable_resources`: an offer must reach every
    /// amount of at least one of these sets (scalar name, amount in units).
    pub min_allocatable: Vec<Vec<(String, f64)>>,
}

impl Default for DrfConfig {
    fn default() -> Self {
        Self {
            seed: 0x5eed,
            min_allocatable: vec![
                vec![("cpus".to_string(), 0.01)],
                vec![("mem".to_string(), 32.0)],
            ],
        }
    }
}

/// The weighted hierarchical DRF allocator (see the module docs).
#[derive(Debug)]
pub struct DrfAllocator {
    config: DrfConfig,
    min_allocatable_scalars: Vec<Vec<(usize, Amount)>>,
    /// The seeded source of each full cycle's agent order.
    rng: SmallRng,
    names: ScalarNames,
    agents: Vec<Option<AgentSlot>>,
    free_agent_slots: Vec<u32>,
    agent_index: HashMap<AgentId, u32>,
    clients: Vec<Option<ClientSlot>>,
    free_client_slots: Vec<u32>,
    frameworks: Vec<Option<FrameworkSlot>>,
    free_framework_slots: Vec<u32>,
    framework_index: HashMap<FrameworkId, u32>,
    /// Role nodes by index (0 the root); slots of pruned roles are in
    /// `free_node_slots` (see `role_tree::prune_role`).
    nodes: Vec<RoleNode>,
    free_node_slots: Vec<u32>,
    node_index: HashMap<String, u32>,
    total: Scalars,
    /// Free unreserved scalars on active agents.
    available_unreserved: Scalars,
    sort_keys_stale: bool,
    quota_roles: BTreeSet<u32>,
    filter_expiry: BinaryHeap<Reverse<(Duration, u32, u32)>>,
    cycle: u64,
}

impl Default for DrfAllocator {
    fn default() -> Self {
        Self::new(DrfConfig::default())
    }
}

impl DrfAllocator {
    pub fn new(config: DrfConfig) -> Self {
        let mut this = Self {
            rng: SmallRng::seed_from_u64(config.seed),
            config,
            min_allocatable_scalars: Vec::new(),
            names: ScalarNames::new(),
            agents: Vec::new(),
            free_agent_slots: Vec::new(),
            agent_index: HashMap::new(),
            clients: Vec::new(),
            free_client_slots: Vec::new(),
            frameworks: Vec::new(),
            free_framework_slots: Vec::new(),
            framework_index: HashMap::new(),
            nodes: vec![RoleNode::new("", None, 0)],
            free_node_slots: Vec::new(),
            node_index: HashMap::new(),
            total: ZERO,
            available_unreserved: ZERO,
            sort_keys_stale: false,
            quota_roles: BTreeSet::new(),
            filter_expiry: BinaryHeap::new(),
            cycle: 0,
        };
        this.rebuild_min_allocatable_scalars();
        this
    }

    /// With the given seed and Mesos' defaults otherwise.
    pub fn with_seed(seed: u64) -> Self {
        Self::new(DrfConfig {
            seed,
            ..DrfConfig::default()
        })
    }

    fn agent(&self, a: u32) -> &AgentSlot {
        self.agents[a as usize].as_ref().expect("live agent slot")
    }

    fn agent_mut(&mut self, a: u32) -> &mut AgentSlot {
        self.agents[a as usize].as_mut().expect("live agent slot")
    }

    fn client(&self, c: u32) -> &ClientSlot {
        self.clients[c as usize].as_ref().expect("live client slot")
    }

    fn client_mut(&mut self, c: u32) -> &mut ClientSlot {
        self.clients[c as usize].as_mut().expect("live client slot")
    }

    fn framework(&self, f: u32) -> &FrameworkSlot {
        self.frameworks[f as usize]
            .as_ref()
            .expect("live framework slot")
    }

    fn framework_mut(&mut self, f: u32) -> &mut FrameworkSlot {
        self.frameworks[f as usize]
            .as_mut()
            .expect("live framework slot")
    }

    fn rebuild_min_allocatable_scalars(&mut self) {
        let mut sets = Vec::new();
        for set in &self.config.min_allocatable {
            let mut out = Vec::new();
            for (name, amount) in set {
                if self.names.index(name).is_none() && self.names.len() < MAX_SCALARS {
                    let mut r = Resources::new();
                    if let Ok(x) = Resources::scalar(name, 1.0) {
                        r.add(&x);
                    }
                    self.names.intern(&r);
                }
                if let Some(i) = self.names.index(name) {
                    out.push((i, scalars::millis(*amount)));
                }
            }
            sets.push(out);
        }
        self.min_allocatable_scalars = sets;
    }
}

/// The [`Allocator`] operations, each implemented in the module of its part.
impl Allocator for DrfAllocator {
    fn add_agent(
        &mut self,
        agent_id: AgentId,
        total: Resources,
        used: &[(FrameworkId, Resources)],
    ) {
        self.register_agent(agent_id, total, used);
    }

    fn remove_agent(&mut self, agent_id: &AgentId) {
        self.forget_agent(agent_id);
    }

    fn set_agent_active(&mut self, agent_id: &AgentId, active: bool) {
        self.set_agent_activity(agent_id, active);
    }

    fn add_framework(
        &mut self,
        framework_id: FrameworkId,
        roles: BTreeSet<String>,
        suppressed_roles: BTreeSet<String>,
    ) {
        self.register_framework(framework_id, roles, suppressed_roles);
    }

    fn remove_framework(&mut self, framework_id: &FrameworkId) {
        self.forget_framework(framework_id);
    }

    fn set_framework_active(&mut self, framework_id: &FrameworkId, active: bool) {
        self.set_framework_activity(framework_id, active);
    }

    fn add_used(&mut self, agent_id: &AgentId, framework_id: &FrameworkId, resources: &Resources) {
        self.adopt_used(agent_id, framework_id, resources);
    }

    fn recover(
        &mut self,
        agent_id: &AgentId,
        framework_id: &FrameworkId,
        resources: &Resources,
        refuse: Option<Duration>,
        now: Duration,
    ) {
        self.recover_resources(agent_id, framework_id, None, resources, refuse, now);
    }

    fn recover_for_role(
        &mut self,
        agent_id: &AgentId,
        framework_id: &FrameworkId,
        role: &str,
        resources: &Resources,
        refuse: Option<Duration>,
        now: Duration,
    ) {
        self.recover_resources(agent_id, framework_id, Some(role), resources, refuse, now);
    }

    fn suppress(&mut self, framework_id: &FrameworkId, roles: &[String]) {
        self.suppress_roles(framework_id, roles);
    }

    fn revive(&mut self, framework_id: &FrameworkId, roles: &[String]) {
        self.revive_roles(framework_id, roles);
    }

    fn allocate(&mut self, now: Duration) -> Vec<Allocation> {
        self.allocate_all(now)
    }

    fn allocate_agents(&mut self, now: Duration, agent_ids: &[AgentId]) -> Vec<Allocation> {
        self.allocate_on(now, agent_ids)
    }

    fn free(&self) -> BTreeMap<AgentId, Resources> {
        self.free_by_agent()
    }

    fn free_of(&self, agent_id: &AgentId) -> Option<Resources> {
        let &a = self.agent_index.get(agent_id)?;
        Some(self.agent(a).free.clone())
    }

    fn set_weights(&mut self, weights: &[(String, f64)]) -> Result<(), AllocatorError> {
        self.set_role_weights(weights)
    }

    fn weights(&self) -> BTreeMap<String, f64> {
        self.explicit_weights()
    }

    fn update_quotas(
        &mut self,
        quotas: &[(String, Quota)],
        force: bool,
    ) -> Result<Vec<String>, AllocatorError> {
        self.set_quotas(quotas, force)
    }

    fn remove_quota(&mut self, role: &str) -> bool {
        self.clear_quota(role)
    }

    fn quotas(&self) -> BTreeMap<String, Quota> {
        self.quota_table()
    }

    fn update_agent(&mut self, agent_id: &AgentId, total: Resources) {
        self.replace_agent_total(agent_id, total);
    }

    fn reserve(&mut self, agent_id: &AgentId, reserved: &Resources) -> Result<(), AllocatorError> {
        self.reserve_free(agent_id, reserved)
    }

    fn unreserve(
        &mut self,
        agent_id: &AgentId,
        reserved: &Resources,
    ) -> Result<(), AllocatorError> {
        self.unreserve_free(agent_id, reserved)
    }

    fn update_allocation(
        &mut self,
        agent_id: &AgentId,
        framework_id: &FrameworkId,
        role: &str,
        from: &Resources,
        to: &Resources,
    ) -> Result<(), AllocatorError> {
        self.change_reservations(agent_id, framework_id, role, &[(from.clone(), to.clone())])
    }

    fn update_allocations(
        &mut self,
        agent_id: &AgentId,
        framework_id: &FrameworkId,
        role: &str,
        changes: &[(Resources, Resources)],
    ) -> Result<(), AllocatorError> {
        self.change_reservations(agent_id, framework_id, role, changes)
    }

    fn offer_status(
        &self,
        framework_id: &FrameworkId,
        role: &str,
        now: Duration,
    ) -> Option<OfferStatus> {
        self.offer_status_of(framework_id, role, now)
    }

    fn role_summaries(&self) -> Vec<RoleSummary> {
        self.summarize_roles()
    }
}

#[cfg(test)]
mod sim_tests;
#[cfg(test)]
mod tests;
