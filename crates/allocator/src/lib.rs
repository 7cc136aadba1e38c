//! The allocator: which framework is offered which agent's resources.
//!
//! A pure library: no I/O, no async, no clock of its own. The master drives it
//! with events (agents and frameworks come and go, resources are freed) and
//! asks it for allocations, passing the current time in.
//!
//! [`Allocator`] is the seam the weighted hierarchical DRF allocator will plug
//! into; [`FairAllocator`] is the spine's simple fair policy: frameworks are
//! visited in ascending order of dominant share (DRF over frameworks, roles
//! unweighted), and each agent's free resources go to the first eligible one.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use agora_core::{AgentId, FrameworkId, Resources};

mod fair;

pub use fair::FairAllocator;

/// Resources handed to one framework, for one of its roles, on one agent.
/// The master turns each allocation into one offer.
#[derive(Debug, Clone, PartialEq)]
pub struct Allocation {
    pub framework_id: FrameworkId,
    pub role: String,
    pub agent_id: AgentId,
    pub resources: Resources,
}

/// What the master tells the allocator, and what it asks of it.
///
/// Resources are either free on an agent or allocated to a framework (offered
/// to it, or used by its tasks). The master must return every allocated
/// resource through [`Allocator::recover`] when it is declined, rescinded, or
/// freed by a terminal task.
pub trait Allocator: Send {
    /// `used` holds resources already in use by frameworks' tasks (an agent
    /// re-registering with running tasks).
    fn add_agent(&mut self, agent_id: AgentId, total: Resources, used: &[(FrameworkId, Resources)]);
    fn remove_agent(&mut self, agent_id: &AgentId);
    /// An inactive agent keeps its books but gets no offers.
    fn set_agent_active(&mut self, agent_id: &AgentId, active: bool);

    fn add_framework(
        &mut self,
        framework_id: FrameworkId,
        roles: BTreeSet<String>,
        suppressed_roles: BTreeSet<String>,
    );
    /// Frees everything allocated to the framework.
    fn remove_framework(&mut self, framework_id: &FrameworkId);
    /// An inactive framework keeps its allocations but gets no offers.
    fn set_framework_active(&mut self, framework_id: &FrameworkId, active: bool);

    /// Marks resources of an agent as used by a framework that the allocator
    /// did not hand out (a task adopted from a re-registering agent).
    fn add_used(&mut self, agent_id: &AgentId, framework_id: &FrameworkId, resources: &Resources);

    /// Returns allocated resources to the agent's free pool. With `refuse`,
    /// the framework is not offered these resources on this agent again
    /// until `now + refuse` (a DECLINE filter).
    fn recover(
        &mut self,
        agent_id: &AgentId,
        framework_id: &FrameworkId,
        resources: &Resources,
        refuse: Option<Duration>,
        now: Duration,
    );

    /// Stops offers to the framework for `roles` (all of its roles if empty).
    fn suppress(&mut self, framework_id: &FrameworkId, roles: &[String]);
    /// Resumes offers for `roles` (all if empty) and clears their filters.
    fn revive(&mut self, framework_id: &FrameworkId, roles: &[String]);

    /// One allocation cycle over all agents.
    fn allocate(&mut self, now: Duration) -> Vec<Allocation>;

    /// Free resources per agent, for reporting.
    fn free(&self) -> BTreeMap<AgentId, Resources>;
}
