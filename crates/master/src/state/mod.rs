//! The master's state machine. See the crate docs for its contract.
//!
//! Invariants:
//! - every outstanding offer's resources are allocated to its framework in the
//!   allocator, and go back to it exactly once (accept remainder, decline,
//!   rescind, or framework/agent removal);
//! - a task's resources are allocated until the master first sees it terminal;
//! - a connection id maps to at most one framework or agent, and each
//!   framework or agent to at most one live connection.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use agora_allocator::Allocator;
use agora_core::{AgentId, FrameworkId, OfferId, Resources, TaskId};
use agora_proto::v1 as pb;
use agora_proto::v1::agent::MasterMessage;
use agora_proto::v1::scheduler as sched;

mod admission;
mod agents;
mod authz;
mod away;
mod books;
mod by_agent;
mod calls;
mod config;
mod control;
mod deferred;
mod frameworks;
mod health;
mod launch;
mod observe;
mod operator;
mod registry;
#[cfg(test)]
mod tests;
mod timers;
#[cfg(test)]
mod timers_tests;
mod tracked;
mod watched_allocator;
mod wire;

/// Identifies one live stream (a framework's subscription or an agent's
/// session); assigned by the shell.
pub type ConnId = u64;

/// The time an input happens at. `monotonic` drives timers; `wall` (seconds
/// since the Unix epoch) only stamps what users see.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Now {
    pub monotonic: Duration,
    pub wall: f64,
}

// Effects live for one turn of the shell's loop and are moved, never copied:
// boxing the large messages would cost an allocation each for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Boxed, as `ToAgent`'s message: an event is 640 bytes, and an
    /// effect is as large as its largest variant.
    ToFramework {
        conn: ConnId,
        event: Box<sched::Event>,
    },
    /// Ends a framework's event stream (after an ERROR event, or teardown).
    CloseFramework {
        conn: ConnId,
    },
    ToAgent {
        conn: ConnId,
        message: Box<MasterMessage>,
    },
    CloseAgent {
        conn: ConnId,
    },
    /// Persist this agent's registry entry (admitted, unreachable or gone),
    /// so that a new leading master knows it.
    Registry(RegistryAgent),
    /// Persist an agent's `admitted` entry, then answer
    /// [`Master::admission_durable`] with the ticket: the agent's
    /// registration waits for it (see `admission.rs`).
    RegistryAdmit {
        entry: RegistryAgent,
        ticket: AdmissionTicket,
    },
    /// Delete this agent's registry entry: the registry gc forgot it (see
    /// `registry.rs`).
    RegistryForget {
        agent_id: AgentId,
    },
    /// Persist role weights or a role's quota (see [`RegistryPolicy::key`]).
    RegistryPolicy(RegistryPolicy),
    /// A change for the operator API's event stream (`SUBSCRIBE` on
    /// `/api/v1`), in the order the books changed; pushed only while
    /// [`Master::set_observed`] is on. Boxed: it is rare and large.
    Observed(Box<agora_proto::v1::master::Event>),
}

pub use admission::AdmissionTicket;
pub use observe::MESOS_VERSION;
pub use operator::{
    OperatorCall, OperatorError, QUOTA_KEY_PREFIX, RegistryPolicy, RegistryQuota, WEIGHTS_KEY,
    quota_key,
};
pub use registry::{RegistryAgent, RegistryAgentState};

/// Who decided that an agent's tasks are gone: the agent itself (it came
/// back without them, or with a new id) or an operator (MARK_AGENT_GONE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GoneCause {
    Agent,
    Operator,
}

/// Why a framework's call was refused. Each maps to one gRPC code in the shell.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    PermissionDenied(String),
    /// The ACLs (`--acls`) refuse it. A refused SUBSCRIBE is answered with
    /// an ERROR event on a stream that then ends, as in Mesos.
    #[error("{0}")]
    Unauthorized(String),
}

impl CallError {
    /// The same refusal with its message rewritten.
    pub(crate) fn map_message(self, f: impl FnOnce(String) -> String) -> Self {
        match self {
            Self::InvalidArgument(m) => Self::InvalidArgument(f(m)),
            Self::NotFound(m) => Self::NotFound(f(m)),
            Self::FailedPrecondition(m) => Self::FailedPrecondition(f(m)),
            Self::PermissionDenied(m) => Self::PermissionDenied(f(m)),
            Self::Unauthorized(m) => Self::Unauthorized(f(m)),
        }
    }
}

pub use books::{Agent, AgentHealth, Counters, Framework, Offer, OfferStatusEntry, Task};
pub use config::{
    DEFAULT_ADOPTED_FRAMEWORK_GRACE, DEFAULT_AGENT_REMOVAL_TIMEOUT,
    DEFAULT_MAX_COMPLETED_FRAMEWORKS, DEFAULT_MAX_COMPLETED_TASKS_PER_FRAMEWORK,
    DEFAULT_REGISTRY_GC_INTERVAL, DEFAULT_REGISTRY_MAX_AGENT_AGE, DEFAULT_REGISTRY_MAX_AGENT_COUNT,
    MasterConfig,
};
pub use tracked::{Changes, History, Tracked};

pub struct Master {
    config: MasterConfig,
    allocator: watched_allocator::WatchedAllocator,
    next_framework: u64,
    /// The random part of framework ids (seeded by `framework_id_seed`).
    framework_ids: rand::rngs::StdRng,
    next_agent: u64,
    next_offer: u64,
    pub(crate) agents: Tracked<AgentId, Agent>,
    agent_conns: HashMap<ConnId, AgentId>,
    pub(crate) frameworks: BTreeMap<FrameworkId, Framework>,
    framework_conns: HashMap<ConnId, FrameworkId>,
    pub(crate) completed_frameworks: History<Framework>,
    /// Ids of removed frameworks, which may not subscribe again: the latest
    /// [`MAX_REMOVED_FRAMEWORK_IDS`], oldest forgotten first.
    removed_frameworks: BTreeSet<FrameworkId>,
    removed_order: std::collections::VecDeque<FrameworkId>,
    pub(crate) offers: Tracked<OfferId, Offer>,
    pub(crate) counters: Counters,
    /// A full allocation cycle is due (a framework subscribed or revived,
    /// weights or quotas changed, a framework or agent was removed).
    needs_allocation: bool,
    /// Agents whose free resources grew since the last allocation (an offer
    /// declined or rescinded, a task ended, the agent joined): event-driven
    /// allocation offers just these.
    affected_agents: BTreeSet<AgentId>,
    /// The tasks and offers on each agent (`by_agent.rs`).
    by_agent: by_agent::ByAgent,
    /// The agents without a session, by address (`away.rs`).
    away_agents: away::AwayAgents,
    /// When each (framework, role) last got an offer (monotonic).
    last_offered: HashMap<(FrameworkId, String), Duration>,
    /// "Why no offer?" as of `offer_status_at`; see [`Master::refresh_offer_status`].
    offer_status: BTreeMap<(FrameworkId, String), OfferStatusEntry>,
    offer_status_at: Option<Now>,
    /// The refresh of `offer_status` under way, if any: it asks the
    /// allocator about a few (framework, role)s per call, so that no
    /// publish pays for all of them (see [`Master::refresh_offer_status`]).
    offer_status_round: Option<OfferStatusRound>,
    /// After a failover: admitted agents that have not re-registered yet,
    /// and until when they may.
    recovery: Option<registry::Recovery>,
    /// Agents the registry knows as unreachable that have not come back.
    unreachable_agents: BTreeMap<AgentId, f64>,
    /// Agents marked gone (wall-clock seconds since when): they may not
    /// register again until the registry gc forgets them.
    gone_agents: BTreeMap<AgentId, f64>,
    /// When the registry gc last ran (monotonic; see `registry.rs`).
    last_registry_gc: Duration,
    /// The type each resource name has on the agents admitted so far (under
    /// this master): an agent that gives a name another type is refused, so
    /// every sum across agents agrees on types (see `Resources::add`).
    resource_kinds: BTreeMap<String, agora_core::resources::Kind>,
    /// Whether changes are reported as [`Effect::Observed`] (an operator
    /// subscribed to the event stream); see `observe.rs`.
    observed: bool,
    /// Registrations waiting for their agent's registry entry (`admission.rs`).
    admissions: admission::Admissions,
}

impl Master {
    pub fn new(config: MasterConfig, allocator: Box<dyn Allocator>) -> Self {
        let framework_ids = rand::SeedableRng::from_seed(config.framework_id_seed);
        Self {
            config,
            allocator: watched_allocator::WatchedAllocator::new(allocator),
            next_framework: 0,
            framework_ids,
            next_agent: 0,
            next_offer: 0,
            agents: Tracked::default(),
            agent_conns: HashMap::new(),
            frameworks: BTreeMap::new(),
            framework_conns: HashMap::new(),
            completed_frameworks: History::default(),
            removed_frameworks: BTreeSet::new(),
            removed_order: std::collections::VecDeque::new(),
            offers: Tracked::default(),
            counters: Counters::default(),
            needs_allocation: false,
            affected_agents: BTreeSet::new(),
            by_agent: by_agent::ByAgent::default(),
            away_agents: away::AwayAgents::default(),
            last_offered: HashMap::new(),
            offer_status: BTreeMap::new(),
            offer_status_at: None,
            offer_status_round: None,
            recovery: None,
            unreachable_agents: BTreeMap::new(),
            gone_agents: BTreeMap::new(),
            last_registry_gc: Duration::ZERO,
            resource_kinds: BTreeMap::new(),
            observed: false,
            admissions: admission::Admissions::default(),
        }
    }

    pub fn config(&self) -> &MasterConfig {
        &self.config
    }

    pub fn epoch(&self) -> Option<u64> {
        self.config.epoch
    }

    pub fn master_id(&self) -> &str {
        &self.config.master_info.id
    }

    /// Whether something happened since the last cycle that may make new
    /// offers possible (resources freed, an agent or framework arrived).
    pub fn needs_allocation(&self) -> bool {
        self.needs_allocation || !self.affected_agents.is_empty()
    }

    /// Runs one full allocation cycle over every agent and sends the offers
    /// it makes, one OFFERS event per framework.
    pub fn allocate(&mut self, now: Now, out: &mut Vec<Effect>) {
        self.needs_allocation = false;
        self.affected_agents.clear();
        let allocations = self.allocator.allocate(now.monotonic);
        self.send_offers(allocations, now, out);
    }

    /// Event-driven allocation after a batch of inputs: a full cycle when
    /// one is due (a framework subscribed or revived, weights or quota
    /// changed), else a cycle over just the agents whose free resources grew.
    /// Returns how many agents it visited (`None`: all of them).
    pub fn allocate_pending(&mut self, now: Now, out: &mut Vec<Effect>) -> Option<usize> {
        if self.needs_allocation {
            self.allocate(now, out);
            return None;
        }
        if self.affected_agents.is_empty() {
            return Some(0);
        }
        let agents: Vec<AgentId> = std::mem::take(&mut self.affected_agents)
            .into_iter()
            .collect();
        let allocations = self.allocator.allocate_agents(now.monotonic, &agents);
        self.send_offers(allocations, now, out);
        Some(agents.len())
    }

    /// Turns allocations into offers, one OFFERS event per framework.
    fn send_offers(
        &mut self,
        allocations: Vec<agora_allocator::Allocation>,
        now: Now,
        out: &mut Vec<Effect>,
    ) {
        let mut by_framework: BTreeMap<FrameworkId, Vec<pb::Offer>> = BTreeMap::new();
        for allocation in allocations {
            let (Some(agent), Some(framework)) = (
                self.agents.get(&allocation.agent_id),
                self.frameworks.get_mut(&allocation.framework_id),
            ) else {
                // Cannot happen while the allocator mirrors our books; give it back.
                self.allocator.recover_for_role(
                    &allocation.agent_id,
                    &allocation.framework_id,
                    &allocation.role,
                    &allocation.resources,
                    None,
                    now.monotonic,
                );
                continue;
            };
            self.next_offer += 1;
            let offer_id = OfferId::new(format!(
                "{}-O{}",
                self.config.master_info.id, self.next_offer
            ));
            let proto = pb::Offer {
                id: offer_id.to_field(),
                framework_id: framework.id.to_field(),
                agent_id: agent.id.to_field(),
                hostname: agent.info.hostname.clone(),
                resources: allocation.resources.to_proto(Some(&allocation.role)),
                attributes: agent.info.attributes.clone(),
                executor_ids: Vec::new(),
                allocation_info: Some(pb::resource::AllocationInfo {
                    role: Some(allocation.role.clone()),
                }),
            };
            framework.offers.insert(offer_id.clone());
            self.by_agent.offer_added(&allocation.agent_id, &offer_id);
            self.last_offered.insert(
                (allocation.framework_id.clone(), allocation.role.clone()),
                now.monotonic,
            );
            self.offers.insert(
                offer_id.clone(),
                Offer {
                    id: offer_id,
                    framework_id: allocation.framework_id.clone(),
                    agent_id: allocation.agent_id,
                    role: allocation.role,
                    resources: allocation.resources,
                    made_at: now.monotonic,
                },
            );
            by_framework
                .entry(allocation.framework_id)
                .or_default()
                .push(proto);
        }
        for (framework_id, offers) in by_framework {
            let Some(conn) = self.frameworks.get(&framework_id).and_then(|f| f.conn) else {
                continue;
            };
            // Thousands of offers at once may not fit in one message.
            let (events, oversized) = wire::pack_offers(offers, wire::MAX_EVENT_BYTES);
            for offer in oversized {
                // Registration refuses agents whose offers could be this
                // large; should one still be, it is taken back, not sent
                // (refused for a while, so it is not made again at once).
                tracing::error!(framework_id = %framework_id, agent_id = ?offer.agent_id, "offer too large for one message taken back");
                if let Ok(offer_id) = OfferId::from_field(&offer.id) {
                    let refuse = Some(Duration::from_secs(5));
                    self.remove_offer(&offer_id, refuse, false, now, out);
                }
            }
            for event in events {
                let sent = event.offers.as_ref().map_or(0, |o| o.offers.len());
                self.counters.offers_sent += sent as u64;
                push_event(conn, event, out);
            }
        }
    }

    /// Removes an outstanding offer and gives its resources back to the
    /// allocator, with an optional refusal filter. With `rescind`, the
    /// framework is told (RESCIND) if it is connected.
    fn remove_offer(
        &mut self,
        offer_id: &OfferId,
        refuse: Option<Duration>,
        rescind: bool,
        now: Now,
        out: &mut Vec<Effect>,
    ) -> Option<Offer> {
        let offer = self.offers.remove(offer_id)?;
        self.by_agent.offer_removed(&offer.agent_id, offer_id);
        self.allocator.recover_for_role(
            &offer.agent_id,
            &offer.framework_id,
            &offer.role,
            &offer.resources,
            refuse,
            now.monotonic,
        );
        if let Some(framework) = self.frameworks.get_mut(&offer.framework_id) {
            framework.offers.remove(offer_id);
            if rescind && let Some(conn) = framework.conn {
                self.counters.offers_rescinded += 1;
                push_event(
                    conn,
                    sched::Event {
                        r#type: sched::event::Type::Rescind as i32,
                        rescind: Some(sched::event::Rescind {
                            offer_id: offer_id.to_field(),
                        }),
                        ..Default::default()
                    },
                    out,
                );
            }
        }
        self.affected_agents.insert(offer.agent_id.clone());
        Some(offer)
    }

    /// Records a task's new state; gives its resources back the first time it
    /// is seen terminal. `status` is what says so (an agent's update, or one
    /// the master made): operator subscribers see it with the new state
    /// (TASK_UPDATED) when the state changed. This is where every task's
    /// state changes but two that bypass the resource bookkeeping on
    /// purpose (an agent marked unreachable, or back), which report
    /// themselves. Returns whether the state changed.
    fn set_task_state(
        &mut self,
        framework_id: &FrameworkId,
        task_id: &TaskId,
        state: pb::TaskState,
        status: &pb::TaskStatus,
        now: Now,
        out: &mut Vec<Effect>,
    ) -> bool {
        let Some(framework) = self.frameworks.get_mut(framework_id) else {
            return false;
        };
        let Some(task) = framework.tasks.get_mut(task_id) else {
            return false;
        };
        let changed = task.state != state;
        if changed {
            *self
                .counters
                .task_transitions
                .entry(agora_core::task::name(state))
                .or_default() += 1;
        }
        task.state = state;
        if agora_core::task::is_terminal(state) && !task.resources_released {
            task.resources_released = true;
            self.allocator.recover_for_role(
                &task.agent_id,
                framework_id,
                &task.role,
                &task.resources,
                None,
                now.monotonic,
            );
            if let Some(agent) = self.agents.get_mut(&task.agent_id) {
                agent.used.subtract(&task.resources);
            }
            self.affected_agents.insert(task.agent_id.clone());
        }
        if changed {
            self.observe_task_updated(framework_id, task_id, status, out);
        }
        changed
    }

    /// Records the state a master-made update told the framework, which
    /// reconciliation answers from then on (see `Task::update_state`).
    fn set_told_state(
        &mut self,
        framework_id: &FrameworkId,
        task_id: &TaskId,
        state: pb::TaskState,
    ) {
        if let Some(task) = self
            .frameworks
            .get_mut(framework_id)
            .and_then(|f| f.tasks.get_mut(task_id))
        {
            task.update_state = Some(state);
        }
    }

    /// Moves a terminal task to the framework's bounded list of completed tasks.
    fn complete_task(&mut self, framework_id: &FrameworkId, task_id: &TaskId) {
        let limit = self.config.max_completed_tasks_per_framework;
        let Some(framework) = self.frameworks.get_mut(framework_id) else {
            return;
        };
        if let Some(task) = framework.tasks.remove(task_id) {
            self.by_agent
                .task_removed(&task.agent_id, framework_id, task_id);
            framework.push_completed(task, limit);
        }
    }

    /// A status without uuid, generated by the master.
    fn master_status(
        task_id: &TaskId,
        agent_id: Option<&AgentId>,
        state: pb::TaskState,
        reason: pb::task_status::Reason,
        message: impl Into<String>,
        now: Now,
    ) -> pb::TaskStatus {
        pb::TaskStatus {
            task_id: task_id.to_field(),
            state: Some(state as i32),
            message: Some(message.into()),
            source: Some(pb::task_status::Source::Master as i32),
            reason: Some(reason as i32),
            agent_id: agent_id.map(AgentId::to_proto),
            timestamp: Some(now.wall),
            ..Default::default()
        }
    }

    /// `status` as an UPDATE event for a framework.
    fn update_event(status: pb::TaskStatus) -> sched::Event {
        sched::Event {
            r#type: sched::event::Type::Update as i32,
            update: Some(sched::event::Update {
                status: Some(status),
            }),
            ..Default::default()
        }
    }

    /// A status update without uuid, generated by the master.
    fn master_update(
        task_id: &TaskId,
        agent_id: Option<&AgentId>,
        state: pb::TaskState,
        reason: pb::task_status::Reason,
        message: impl Into<String>,
        now: Now,
    ) -> sched::Event {
        Self::update_event(Self::master_status(
            task_id, agent_id, state, reason, message, now,
        ))
    }

    fn send_to_framework(
        &self,
        framework_id: &FrameworkId,
        event: sched::Event,
        out: &mut Vec<Effect>,
    ) {
        if let Some(conn) = self.frameworks.get(framework_id).and_then(|f| f.conn) {
            push_event(conn, event, out);
        }
    }

    fn send_to_agent(&self, agent_id: &AgentId, message: MasterMessage, out: &mut Vec<Effect>) {
        if let Some(conn) = self.agents.get(agent_id).and_then(|a| a.conn) {
            out.push(Effect::ToAgent {
                conn,
                message: Box::new(message),
            });
        }
    }

    /// Non-terminal tasks on an agent, as (framework, task) keys.
    fn live_tasks_on(&self, agent_id: &AgentId) -> Vec<(FrameworkId, TaskId)> {
        self.by_agent
            .tasks_on(agent_id)
            .filter(|(framework_id, task_id)| {
                self.frameworks
                    .get(framework_id)
                    .and_then(|f| f.tasks.get(task_id))
                    .is_some_and(|t| {
                        &t.agent_id == agent_id && !agora_core::task::is_terminal(t.state)
                    })
            })
            .cloned()
            .collect()
    }

    /// Outstanding offers of an agent's resources.
    fn offers_on(&self, agent_id: &AgentId) -> Vec<OfferId> {
        self.by_agent
            .offers_on(agent_id)
            .filter(|id| {
                self.offers
                    .get(*id)
                    .is_some_and(|o| &o.agent_id == agent_id)
            })
            .cloned()
            .collect()
    }

    /// A task its agent no longer has: TASK_GONE (TASK_LOST to frameworks
    /// that are not partition-aware), reported and completed.
    fn report_gone(
        &mut self,
        framework_id: &FrameworkId,
        task_id: &TaskId,
        agent_id: &AgentId,
        (message, cause): (String, GoneCause),
        now: Now,
        out: &mut Vec<Effect>,
    ) {
        let aware = self
            .frameworks
            .get(framework_id)
            .is_some_and(Framework::partition_aware);
        let state = match (aware, cause) {
            (false, _) => pb::TaskState::TaskLost,
            (true, GoneCause::Agent) => pb::TaskState::TaskGone,
            (true, GoneCause::Operator) => pb::TaskState::TaskGoneByOperator,
        };
        let status = Self::master_status(
            task_id,
            Some(agent_id),
            state,
            pb::task_status::Reason::AgentRestarted,
            message,
            now,
        );
        self.set_task_state(framework_id, task_id, state, &status, now, out);
        self.set_told_state(framework_id, task_id, state);
        self.send_to_framework(framework_id, Self::update_event(status), out);
        self.complete_task(framework_id, task_id);
    }

    /// The allocator's view of free resources per agent.
    pub fn free_resources(&self) -> BTreeMap<AgentId, Resources> {
        self.allocator.free()
    }

    /// The allocator's view of one agent's free resources.
    pub fn free_of(&self, agent_id: &AgentId) -> Option<Resources> {
        self.allocator.free_of(agent_id)
    }

    /// Every role with frameworks, a weight, a quota or reservations.
    pub fn role_summaries(&self) -> Vec<agora_allocator::RoleSummary> {
        self.allocator.role_summaries()
    }

    pub fn quotas(&self) -> BTreeMap<String, agora_allocator::Quota> {
        self.allocator.quotas()
    }

    pub fn weights(&self) -> BTreeMap<String, f64> {
        self.allocator.weights()
    }

    /// Recomputes "why no offer?" for every framework and role, at most once
    /// per [`OFFER_STATUS_INTERVAL`]. Asking the allocator costs a pass over
    /// the agents, so a call asks it about [`OFFER_STATUS_ASKS`] (framework,
    /// role)s at most and the refresh is spread over several calls (the
    /// actor's publishes, 20 ms apart); the table readers see is replaced
    /// whole when it is done. A (framework, role) offered something within
    /// the last interval is not asked about: nothing holds it back. Returns
    /// whether the table was replaced.
    pub fn refresh_offer_status(&mut self, now: Now) -> bool {
        let mut round = match self.offer_status_round.take() {
            Some(round) => round,
            None => {
                if let Some(at) = self.offer_status_at
                    && now.monotonic < at.monotonic + OFFER_STATUS_INTERVAL
                {
                    return false;
                }
                OfferStatusRound {
                    table: BTreeMap::new(),
                    pending: self
                        .frameworks
                        .values()
                        .flat_map(|f| f.roles.iter().map(|role| (f.id.clone(), role.clone())))
                        .collect(),
                }
            }
        };
        let mut asked = 0;
        while let Some(key) = round.pending.pop_front() {
            // It may have left, or changed roles, since the round began.
            let Some(framework) = self.frameworks.get(&key.0) else {
                continue;
            };
            if !framework.roles.contains(&key.1) {
                continue;
            }
            let ours = self.last_offered.get(&key).copied();
            let recent =
                ours.is_some_and(|t| now.monotonic.saturating_sub(t) < OFFER_STATUS_INTERVAL);
            let entry = if !framework.active() {
                OfferStatusEntry {
                    last_offered: ours,
                    reason: Some(agora_allocator::NoOfferReason::Inactive.as_str()),
                    filtered_agents: 0,
                }
            } else if recent {
                OfferStatusEntry {
                    last_offered: ours,
                    reason: None,
                    filtered_agents: 0,
                }
            } else {
                asked += 1;
                let status = self
                    .allocator
                    .offer_status(&framework.id, &key.1, now.monotonic);
                OfferStatusEntry {
                    last_offered: ours.max(status.as_ref().and_then(|s| s.last_offered)),
                    reason: status
                        .as_ref()
                        .and_then(|s| s.reason)
                        .map(agora_allocator::NoOfferReason::as_str),
                    filtered_agents: status.map_or(0, |s| s.filtered_agents),
                }
            };
            round.table.insert(key, entry);
            if asked >= OFFER_STATUS_ASKS && !round.pending.is_empty() {
                self.offer_status_round = Some(round);
                return false;
            }
        }
        // Frameworks that left take their history with them.
        self.last_offered
            .retain(|(framework_id, _), _| self.frameworks.contains_key(framework_id));
        self.offer_status = round.table;
        // Every entry's last offer is before now: ages count from here.
        self.offer_status_at = Some(now);
        true
    }

    /// The last "why no offer?" table and when it was computed.
    pub fn offer_status(
        &self,
    ) -> (
        &BTreeMap<(FrameworkId, String), OfferStatusEntry>,
        Option<Now>,
    ) {
        (&self.offer_status, self.offer_status_at)
    }
}

/// How often "why no offer?" is recomputed at most.
/// Removed frameworks whose ids are remembered (so that they cannot
/// subscribe again). Mesos remembers only its `--max_completed_frameworks`
/// (50); more here, but still a bound, so that a master whose frameworks
/// come and go for months does not grow.
pub const MAX_REMOVED_FRAMEWORK_IDS: usize = 10_000;

pub const OFFER_STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// How many (framework, role)s one [`Master::refresh_offer_status`] call
/// asks the allocator about at most (each a pass over the agents).
pub const OFFER_STATUS_ASKS: usize = 2;

/// A refresh of the "why no offer?" table under way.
struct OfferStatusRound {
    /// The entries made so far.
    table: BTreeMap<(FrameworkId, String), OfferStatusEntry>,
    /// The (framework, role)s still to look at.
    pending: std::collections::VecDeque<(FrameworkId, String)>,
}

/// The one place an event for a framework becomes an effect: only what fits
/// in one message is sent (see [`wire`]); what cannot be made to fit is
/// logged and dropped rather than break the framework's stream.
fn push_event(conn: ConnId, event: sched::Event, out: &mut Vec<Effect>) {
    let kind = event.r#type;
    match wire::fit_event(event) {
        Some(event) => out.push(Effect::ToFramework {
            conn,
            event: Box::new(event),
        }),
        None => {
            tracing::warn!(
                conn,
                event_type = kind,
                "event too large for one message dropped"
            );
        }
    }
}
