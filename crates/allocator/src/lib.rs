//! The allocator: which framework is offered which agent's resources.
//!
//! A pure library: no I/O, no async, no clock of its own. The master drives it
//! with events (agents and frameworks come and go, resources are freed) and
//! asks it for allocations, passing the current time in.
//!
//! [`Allocator`] is the seam the master drives. [`DrfAllocator`] is the real
//! policy: weighted hierarchical DRF over roles, then DRF over the frameworks
//! of a role, with quota (guarantees and limits), reservations for a role's
//! subtree, DECLINE filters, per-role suppress/revive, and event-driven
//! allocation of just the agents an event touched ([`Allocator::allocate_agents`]).
//!
//! Driving [`DrfAllocator`] from the master:
//! - return offers and finished tasks with [`Allocator::recover_for_role`]
//!   (the offer's role): for a framework with several roles a role-less
//!   [`Allocator::recover`] has to guess which role's books to credit;
//! - after resources are freed on agents (decline, task end, rescind) or an
//!   agent joins, call [`Allocator::allocate_agents`] with those agents;
//!   after a framework subscribes or revives, or weights/quota change, run a
//!   full [`Allocator::allocate`]; keep the periodic full cycle as a safety net;
//! - [`Allocator::update_quotas`] returns the roles above their new limit:
//!   rescind their outstanding offers;
//! - [`Allocator::offer_status`] costs up to one pass over the agents: ask it
//!   for frameworks that are not getting offers, not on every request.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use agora_core::{AgentId, FrameworkId, Resources};

mod drf;
mod roles;
mod scalars;

pub use drf::{DrfAllocator, DrfConfig};
pub use roles::{allocatable_to_role, is_role_or_descendant, reserved_for, unreserved_form};

/// A role's quota: `guarantee` is held back for the role while it has demand,
/// `limit` is never exceeded by what the role consumes (allocated unreserved
/// resources plus every reservation in its subtree). Both hold unreserved
/// scalar resources only; a name absent from `limit` is unlimited.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Quota {
    pub guarantee: Resources,
    pub limit: Resources,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AllocatorError {
    #[error("role '{0}' is invalid")]
    InvalidRole(String),
    #[error("weight {weight} for role '{role}' must be a positive finite number")]
    InvalidWeight { role: String, weight: f64 },
    #[error("quota for role '{role}' is invalid: {why}")]
    InvalidQuota { role: String, why: String },
    #[error("role '{role}' consumes {consumed} which is above the requested limit (use force)")]
    ExceedsLimit { role: String, consumed: String },
    #[error("the total of guarantees exceeds the cluster's capacity for '{0}' (use force)")]
    GuaranteesExceedCapacity(String),
    #[error("unknown agent '{0}'")]
    UnknownAgent(String),
    #[error("unknown framework '{0}'")]
    UnknownFramework(String),
    #[error("resources {resources} are not available on agent '{agent}'")]
    NotAvailable { agent: String, resources: String },
    #[error("reservation is invalid: {0}")]
    InvalidReservation(String),
}

/// Why a (framework, role) gets no offers right now, most decisive first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NoOfferReason {
    /// The framework is disconnected (inactive) or no longer subscribed to the role.
    Inactive,
    /// The framework suppressed offers for this role.
    Suppressed,
    /// The role (or an ancestor) is at its quota limit.
    QuotaLimit,
    /// Every agent with free resources for the role has a DECLINE filter for it.
    Filtered,
    /// Resources for the role exist but are allocated to others ahead of it
    /// in fair share (or held back for other roles' guarantees).
    Outranked,
    /// No active agent has resources this role may use.
    NoResources,
}

impl NoOfferReason {
    pub fn as_str(self) -> &'static str {
        match self {
            NoOfferReason::Inactive => "inactive",
            NoOfferReason::Suppressed => "suppressed",
            NoOfferReason::QuotaLimit => "quota_limit",
            NoOfferReason::Filtered => "filtered",
            NoOfferReason::Outranked => "outranked",
            NoOfferReason::NoResources => "no_resources",
        }
    }
}

/// The "why no offer?" answer for one (framework, role).
#[derive(Debug, Clone, PartialEq)]
pub struct OfferStatus {
    /// `now` of the last allocation that offered it something (monotonic, as passed in).
    pub last_offered: Option<Duration>,
    /// `None` when nothing holds it back: the next allocation will offer it resources.
    pub reason: Option<NoOfferReason>,
    /// Agents on which it has an unexpired DECLINE filter.
    pub filtered_agents: usize,
}

/// One role as `GET /roles` shows it. Scalars by name, in units.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleSummary {
    pub role: String,
    pub weight: f64,
    pub quota: Option<Quota>,
    /// Allocated to the role's subtree: offered or in use (the allocator does
    /// not tell them apart; the master knows which allocations are offers).
    pub allocated: BTreeMap<String, f64>,
    /// Reserved for the role or its descendants, allocated or not.
    pub reserved: BTreeMap<String, f64>,
    /// Quota consumption: allocated unreserved + reserved.
    pub consumed: BTreeMap<String, f64>,
    /// Frameworks subscribed to exactly this role.
    pub frameworks: Vec<FrameworkId>,
}

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

    /// One agent's free resources (`None` if it is unknown): what the
    /// master's read model asks for the agents whose books changed.
    fn free_of(&self, agent_id: &AgentId) -> Option<Resources>;

    /// As [`Allocator::recover`], for resources allocated to `role` (an
    /// offer's role). The DECLINE filter is per (framework, role, agent).
    fn recover_for_role(
        &mut self,
        agent_id: &AgentId,
        framework_id: &FrameworkId,
        role: &str,
        resources: &Resources,
        refuse: Option<Duration>,
        now: Duration,
    );

    /// Event-driven allocation: one cycle over just these agents (resources
    /// freed there, an agent added). After a framework revives or subscribes,
    /// run a full [`Allocator::allocate`].
    fn allocate_agents(&mut self, now: Duration, agent_ids: &[AgentId]) -> Vec<Allocation>;

    /// Sets role weights (default 1), all or nothing.
    fn set_weights(&mut self, weights: &[(String, f64)]) -> Result<(), AllocatorError>;

    /// Weights set explicitly (roles absent have weight 1).
    fn weights(&self) -> BTreeMap<String, f64>;

    /// Sets quotas, all or nothing. Without `force`, refused when a role
    /// already consumes more than its new limit or the guarantees exceed the
    /// cluster. Returns the roles now above their limit (only with `force`):
    /// the master rescinds their outstanding offers.
    fn update_quotas(
        &mut self,
        quotas: &[(String, Quota)],
        force: bool,
    ) -> Result<Vec<String>, AllocatorError>;

    /// Removes a role's quota; whether it had one.
    fn remove_quota(&mut self, role: &str) -> bool;

    fn quotas(&self) -> BTreeMap<String, Quota>;

    /// Replaces an agent's total (its reservations changed, e.g. on
    /// re-registration). Allocations are kept; free = total - allocated.
    fn update_agent(&mut self, agent_id: &AgentId, total: Resources);

    /// Operator RESERVE of free resources: `reserved` carries the target roles
    /// (`cpus(ops):2`); the same quantities of unreserved free resources on
    /// the agent become reserved.
    fn reserve(&mut self, agent_id: &AgentId, reserved: &Resources) -> Result<(), AllocatorError>;

    /// Operator UNRESERVE of free reserved resources: they become unreserved.
    fn unreserve(&mut self, agent_id: &AgentId, reserved: &Resources)
    -> Result<(), AllocatorError>;

    /// A framework's RESERVE/UNRESERVE offer operation: resources allocated to
    /// (`framework_id`, `role`) on the agent change from `from` to `to` (same
    /// quantities, other reservations); the agent's total changes alike.
    fn update_allocation(
        &mut self,
        agent_id: &AgentId,
        framework_id: &FrameworkId,
        role: &str,
        from: &Resources,
        to: &Resources,
    ) -> Result<(), AllocatorError>;

    /// Several offer operations of one ACCEPT, all or nothing: on error
    /// nothing changed, so the caller never has a rollback to get wrong.
    fn update_allocations(
        &mut self,
        agent_id: &AgentId,
        framework_id: &FrameworkId,
        role: &str,
        changes: &[(Resources, Resources)],
    ) -> Result<(), AllocatorError>;

    /// Why this (framework, role) gets no offer, and when it last got one.
    /// `None` if the framework or role is unknown.
    fn offer_status(
        &self,
        framework_id: &FrameworkId,
        role: &str,
        now: Duration,
    ) -> Option<OfferStatus>;

    /// Every role with frameworks, a weight, a quota or reservations.
    fn role_summaries(&self) -> Vec<RoleSummary>;
}
