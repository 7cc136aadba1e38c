//! The master's allocator, watched: every agent whose free resources a call
//! may change is recorded, so the read model refreshes the free resources
//! of just those agents (see `tracked.rs`). It forwards every call as is.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use agora_allocator::{Allocation, Allocator, AllocatorError, OfferStatus, Quota, RoleSummary};
use agora_core::{AgentId, FrameworkId, Resources};

pub(super) struct WatchedAllocator {
    inner: Box<dyn Allocator>,
    /// Agents whose free resources may have changed since the last take.
    touched: BTreeSet<AgentId>,
}

impl WatchedAllocator {
    pub(super) fn new(inner: Box<dyn Allocator>) -> Self {
        Self {
            inner,
            touched: BTreeSet::new(),
        }
    }

    pub(super) fn take_touched(&mut self) -> BTreeSet<AgentId> {
        std::mem::take(&mut self.touched)
    }

    fn touch(&mut self, agent_id: &AgentId) {
        if !self.touched.contains(agent_id) {
            self.touched.insert(agent_id.clone());
        }
    }

    fn touch_allocations(&mut self, allocations: &[Allocation]) {
        for allocation in allocations {
            self.touch(&allocation.agent_id);
        }
    }
}

impl Allocator for WatchedAllocator {
    fn add_agent(
        &mut self,
        agent_id: AgentId,
        total: Resources,
        used: &[(FrameworkId, Resources)],
    ) {
        self.touch(&agent_id);
        self.inner.add_agent(agent_id, total, used);
    }

    fn remove_agent(&mut self, agent_id: &AgentId) {
        self.touch(agent_id);
        self.inner.remove_agent(agent_id);
    }

    fn set_agent_active(&mut self, agent_id: &AgentId, active: bool) {
        self.inner.set_agent_active(agent_id, active);
    }

    fn add_framework(
        &mut self,
        framework_id: FrameworkId,
        roles: BTreeSet<String>,
        suppressed_roles: BTreeSet<String>,
    ) {
        self.inner
            .add_framework(framework_id, roles, suppressed_roles);
    }

    /// Frees what is still allocated to the framework: nothing, since the
    /// master takes back each of its offers and tasks first (each of those
    /// calls is recorded), so no agent is recorded here.
    fn remove_framework(&mut self, framework_id: &FrameworkId) {
        self.inner.remove_framework(framework_id);
    }

    fn set_framework_active(&mut self, framework_id: &FrameworkId, active: bool) {
        self.inner.set_framework_active(framework_id, active);
    }

    fn add_used(&mut self, agent_id: &AgentId, framework_id: &FrameworkId, resources: &Resources) {
        self.touch(agent_id);
        self.inner.add_used(agent_id, framework_id, resources);
    }

    fn recover(
        &mut self,
        agent_id: &AgentId,
        framework_id: &FrameworkId,
        resources: &Resources,
        refuse: Option<Duration>,
        now: Duration,
    ) {
        self.touch(agent_id);
        self.inner
            .recover(agent_id, framework_id, resources, refuse, now);
    }

    fn suppress(&mut self, framework_id: &FrameworkId, roles: &[String]) {
        self.inner.suppress(framework_id, roles);
    }

    fn revive(&mut self, framework_id: &FrameworkId, roles: &[String]) {
        self.inner.revive(framework_id, roles);
    }

    fn allocate(&mut self, now: Duration) -> Vec<Allocation> {
        let allocations = self.inner.allocate(now);
        self.touch_allocations(&allocations);
        allocations
    }

    fn free(&self) -> BTreeMap<AgentId, Resources> {
        self.inner.free()
    }

    fn free_of(&self, agent_id: &AgentId) -> Option<Resources> {
        self.inner.free_of(agent_id)
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
        self.touch(agent_id);
        self.inner
            .recover_for_role(agent_id, framework_id, role, resources, refuse, now);
    }

    fn allocate_agents(&mut self, now: Duration, agent_ids: &[AgentId]) -> Vec<Allocation> {
        let allocations = self.inner.allocate_agents(now, agent_ids);
        self.touch_allocations(&allocations);
        allocations
    }

    fn set_weights(&mut self, weights: &[(String, f64)]) -> Result<(), AllocatorError> {
        self.inner.set_weights(weights)
    }

    fn weights(&self) -> BTreeMap<String, f64> {
        self.inner.weights()
    }

    fn update_quotas(
        &mut self,
        quotas: &[(String, Quota)],
        force: bool,
    ) -> Result<Vec<String>, AllocatorError> {
        self.inner.update_quotas(quotas, force)
    }

    fn remove_quota(&mut self, role: &str) -> bool {
        self.inner.remove_quota(role)
    }

    fn quotas(&self) -> BTreeMap<String, Quota> {
        self.inner.quotas()
    }

    fn update_agent(&mut self, agent_id: &AgentId, total: Resources) {
        self.touch(agent_id);
        self.inner.update_agent(agent_id, total);
    }

    fn reserve(&mut self, agent_id: &AgentId, reserved: &Resources) -> Result<(), AllocatorError> {
        self.touch(agent_id);
        self.inner.reserve(agent_id, reserved)
    }

    fn unreserve(
        &mut self,
        agent_id: &AgentId,
        reserved: &Resources,
    ) -> Result<(), AllocatorError> {
        self.touch(agent_id);
        self.inner.unreserve(agent_id, reserved)
    }

    fn update_allocation(
        &mut self,
        agent_id: &AgentId,
        framework_id: &FrameworkId,
        role: &str,
        from: &Resources,
        to: &Resources,
    ) -> Result<(), AllocatorError> {
        self.touch(agent_id);
        self.inner
            .update_allocation(agent_id, framework_id, role, from, to)
    }

    fn update_allocations(
        &mut self,
        agent_id: &AgentId,
        framework_id: &FrameworkId,
        role: &str,
        changes: &[(Resources, Resources)],
    ) -> Result<(), AllocatorError> {
        self.touch(agent_id);
        self.inner
            .update_allocations(agent_id, framework_id, role, changes)
    }

    fn offer_status(
        &self,
        framework_id: &FrameworkId,
        role: &str,
        now: Duration,
    ) -> Option<OfferStatus> {
        self.inner.offer_status(framework_id, role, now)
    }

    fn role_summaries(&self) -> Vec<RoleSummary> {
        self.inner.role_summaries()
    }
}
