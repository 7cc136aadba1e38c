//! The registry: what a new leading master must know. Agents are persisted
//! (admitted, unreachable or gone, with their resources and so the operator
//! reservations on them; key `agent:<id>`), and so are role weights (key
//! `weights`) and quotas (key `quota:<role in hex>`), see
//! [`super::RegistryPolicy`]; frameworks and tasks are rebuilt from
//! re-registering agents and re-subscribing frameworks.
//!
//! The state machine emits [`Effect::Registry`] whenever an agent's entry
//! changes and [`Effect::RegistryPolicy`] when weights or a quota change;
//! the shell writes them to the registry store (ZooKeeper or a file). After
//! a failover, [`Master::recover`] loads the agents' entries and
//! [`Master::recover_policy`] the weights and quotas; admitted agents have
//! `agent_reregister_timeout` to come back before they are marked
//! unreachable, and keep the reservations their entry holds.
//!
//! The registry gc ([`Master::gc_registry`], every `registry_gc_interval`,
//! as Mesos' `--registry_gc_interval`) bounds what unreachable and gone
//! agents cost: those unreachable or gone longer than
//! `registry_max_agent_age`, and the oldest beyond `registry_max_agent_count`
//! of each kind, are forgotten, in memory and in the registry
//! ([`Effect::RegistryForget`]). An unreachable agent is a candidate only
//! once past its removal timeout (its tasks of frameworks that are not
//! partition-aware were reported lost); its tasks still kept as
//! TASK_UNREACHABLE are dropped without an update, as Mesos drops its
//! `unreachable_tasks` (reconciliation then answers TASK_UNKNOWN). A
//! forgotten agent that comes back is an agent this master has not met, as
//! in Mesos: it registers again with what it runs, even one that had been
//! marked gone.

use std::collections::BTreeMap;
use std::time::Duration;

use agora_core::{AgentId, FrameworkId, Resources, TaskId};
use serde::{Deserialize, Serialize};

use super::{Agent, Effect, Master, Now};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RegistryAgentState {
    Admitted,
    Unreachable { since: f64 },
    Gone { since: f64 },
}

/// One agent's registry entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistryAgent {
    pub id: String,
    pub hostname: String,
    pub port: i32,
    /// Resources in their text form (`cpus:4;mem:8192`).
    pub resources: String,
    #[serde(flatten)]
    pub state: RegistryAgentState,
}

#[derive(Debug, Clone)]
pub(super) struct Recovery {
    pub(super) deadline: Duration,
    pub(super) expected: BTreeMap<AgentId, RegistryAgent>,
    /// Reconciliation questions to answer as agents come back.
    pub(super) deferred: super::deferred::Deferred,
}

impl RegistryAgent {
    pub(super) fn of(agent: &Agent, state: RegistryAgentState) -> Self {
        Self {
            id: agent.id.to_string(),
            hostname: agent.info.hostname.clone(),
            port: agent.info.port.unwrap_or(5051),
            resources: agent.total.to_string(),
            state,
        }
    }

    /// The entry of an agent about to be admitted with `info` and `total`:
    /// the one [`RegistryAgent::of`] makes once it is in the books.
    pub(super) fn admitted(
        agent_id: &AgentId,
        info: &agora_proto::v1::AgentInfo,
        total: &Resources,
    ) -> Self {
        Self {
            id: agent_id.to_string(),
            hostname: info.hostname.clone(),
            port: info.port.unwrap_or(5051),
            resources: total.to_string(),
            state: RegistryAgentState::Admitted,
        }
    }
}

impl Master {
    /// Loads the registry after this master became the leader. Admitted
    /// agents are expected to re-register within `reregister_timeout`.
    pub fn recover(&mut self, now: Now, entries: Vec<RegistryAgent>, reregister_timeout: Duration) {
        let mut expected = BTreeMap::new();
        for entry in entries {
            let Ok(id) = AgentId::parse(entry.id.clone()) else {
                tracing::warn!(agent_id = %entry.id, "registry entry with an invalid id skipped");
                continue;
            };
            match entry.state {
                RegistryAgentState::Admitted => {
                    expected.insert(id, entry);
                }
                RegistryAgentState::Unreachable { since } => {
                    self.unreachable_agents.insert(id, since);
                }
                RegistryAgentState::Gone { since } => {
                    self.gone_agents.insert(id, since);
                }
            }
        }
        tracing::info!(
            expected = expected.len(),
            unreachable = self.unreachable_agents.len(),
            gone = self.gone_agents.len(),
            "registry recovered"
        );
        if !expected.is_empty() {
            self.recovery = Some(Recovery {
                deadline: now.monotonic + reregister_timeout,
                expected,
                deferred: super::deferred::Deferred::default(),
            });
        }
    }

    /// An agent expected after a failover keeps the reservations the
    /// registry holds for it (made by operators on an earlier leader), as
    /// long as it still advertises the same resources.
    pub(super) fn recovered_total(&self, agent_id: &AgentId, reported: Resources) -> Resources {
        let Some(entry) = self
            .recovery
            .as_ref()
            .and_then(|r| r.expected.get(agent_id))
        else {
            return reported;
        };
        match Resources::parse(&entry.resources) {
            Ok(known)
                if known != reported
                    && agora_allocator::unreserved_form(&known)
                        == agora_allocator::unreserved_form(&reported) =>
            {
                tracing::info!(agent_id = %agent_id, resources = %known, "agent keeps its reservations from the registry");
                known
            }
            _ => reported,
        }
    }

    /// Agents still expected to re-register after a failover.
    pub fn recovering_agents(&self) -> usize {
        self.recovery.as_ref().map_or(0, |r| r.expected.len())
    }

    pub(super) fn is_gone(&self, agent_id: &AgentId) -> bool {
        self.gone_agents.contains_key(agent_id)
    }

    pub(super) fn is_recovering(&self, agent_id: Option<&AgentId>) -> bool {
        match (&self.recovery, agent_id) {
            (None, _) => false,
            (Some(r), Some(id)) => r.expected.contains_key(id),
            (Some(r), None) => !r.expected.is_empty(),
        }
    }

    pub(super) fn is_known_unreachable(&self, agent_id: &AgentId) -> bool {
        self.unreachable_agents.contains_key(agent_id)
            || self
                .agents
                .get(agent_id)
                .is_some_and(|a| a.unreachable_since.is_some())
    }

    /// An agent (re-)registered: it is no longer expected, nor unreachable.
    /// Writes its entry unless the registry already says it is admitted;
    /// `changed` says whether this master saw it as new or unreachable.
    pub(super) fn admitted(
        &mut self,
        agent_id: &AgentId,
        changed: bool,
        durable: Option<&super::admission::Durable>,
        out: &mut Vec<Effect>,
    ) {
        let write = self.admission_changes_registry(agent_id, changed);
        if let Some(recovery) = self.recovery.as_mut() {
            recovery.expected.remove(agent_id);
        }
        self.unreachable_agents.remove(agent_id);
        if write && let Some(agent) = self.agents.get(agent_id) {
            let entry = RegistryAgent::of(agent, RegistryAgentState::Admitted);
            // Written before admission already (`admission.rs`), unless the
            // books changed it since.
            if durable.is_none_or(|d| d.entry != entry) {
                out.push(Effect::Registry(entry));
            }
        }
    }

    /// The registry gc (see the module documentation): forgets unreachable
    /// and gone agents that are too old, or too many.
    pub(super) fn gc_registry(&mut self, now: Now, out: &mut Vec<Effect>) {
        if now.monotonic < self.last_registry_gc + self.config.registry_gc_interval {
            return;
        }
        self.last_registry_gc = now.monotonic;
        // Unreachable: those only the registry knows, and those this master
        // saw go that are past their removal timeout.
        let mut unreachable: Vec<(f64, AgentId)> = self
            .unreachable_agents
            .iter()
            .map(|(id, since)| (*since, id.clone()))
            .collect();
        unreachable.extend(self.agents.values().filter_map(|agent| {
            match (agent.unreachable_since, agent.removal_deadline) {
                (Some(since), None) => Some((since, agent.id.clone())),
                _ => None,
            }
        }));
        let gone: Vec<(f64, AgentId)> = self
            .gone_agents
            .iter()
            .map(|(id, since)| (*since, id.clone()))
            .collect();
        let max_age = self.config.registry_max_agent_age.as_secs_f64();
        let max_count = self.config.registry_max_agent_count;
        let mut forgotten = (0, 0);
        for (candidates, count) in [(unreachable, &mut forgotten.0), (gone, &mut forgotten.1)] {
            for agent_id in too_old_or_too_many(candidates, now.wall, max_age, max_count) {
                // Coming back: its admission is being written.
                if self.admissions.contains(&agent_id) {
                    continue;
                }
                self.forget_agent(&agent_id, out);
                *count += 1;
            }
        }
        if forgotten != (0, 0) {
            tracing::info!(
                unreachable = forgotten.0,
                gone = forgotten.1,
                "registry gc forgot agents"
            );
        }
    }

    /// Drops every trace of an unreachable or gone agent.
    fn forget_agent(&mut self, agent_id: &AgentId, out: &mut Vec<Effect>) {
        self.unreachable_agents.remove(agent_id);
        self.gone_agents.remove(agent_id);
        if self.agents.contains_key(agent_id) {
            // Its resources left the allocator when it became unreachable,
            // and its tasks' were released then: only the books remain.
            let tasks: Vec<(FrameworkId, TaskId)> =
                self.by_agent.tasks_on(agent_id).cloned().collect();
            for (framework_id, task_id) in tasks {
                if let Some(framework) = self.frameworks.get_mut(&framework_id)
                    && framework
                        .tasks
                        .get(&task_id)
                        .is_some_and(|t| &t.agent_id == agent_id)
                {
                    framework.tasks.remove(&task_id);
                }
                self.by_agent
                    .task_removed(agent_id, &framework_id, &task_id);
            }
            if let Some(agent) = self.agents.remove(agent_id)
                && agent.conn.is_none()
            {
                self.away_agents.left(&agent.info, agent_id);
            }
            self.affected_agents.remove(agent_id);
        }
        out.push(Effect::RegistryForget {
            agent_id: agent_id.clone(),
        });
    }

    /// Ends the re-registration window: expected agents that did not come
    /// back are unreachable.
    pub(super) fn check_recovery(&mut self, now: Now, out: &mut Vec<Effect>) {
        let Some(recovery) = &self.recovery else {
            return;
        };
        if now.monotonic < recovery.deadline {
            return;
        }
        let Some(mut recovery) = self.recovery.take() else {
            return;
        };
        for (id, mut entry) in std::mem::take(&mut recovery.expected) {
            tracing::warn!(agent_id = %id, "agent did not re-register after failover; marking it unreachable");
            entry.state = RegistryAgentState::Unreachable { since: now.wall };
            self.unreachable_agents.insert(id, now.wall);
            out.push(Effect::Registry(entry));
        }
        self.answer_all_deferred(now, &mut recovery.deferred, out);
    }
}

/// Of `candidates` (since when, which), those `max_age` seconds old or more
/// at `now`, then the oldest of the rest beyond `max_count`.
fn too_old_or_too_many(
    mut candidates: Vec<(f64, AgentId)>,
    now: f64,
    max_age: f64,
    max_count: usize,
) -> Vec<AgentId> {
    // Oldest first; ids break ties, so the choice is deterministic.
    candidates.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    let too_old = candidates
        .iter()
        .take_while(|(since, _)| now - since >= max_age)
        .count();
    let excess = candidates.len().saturating_sub(max_count);
    candidates
        .into_iter()
        .take(too_old.max(excess))
        .map(|(_, id)| id)
        .collect()
}
