//! Agent registration, re-registration, disconnection and status updates.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use agora_allocator::Allocator as _;
use agora_core::{AgentId, FrameworkId, Resources, TaskId};
use agora_proto::v1 as pb;
use agora_proto::v1::agent::{MasterMessage, agent_message, master_message};
use agora_proto::v1::scheduler as sched;

use super::{Agent, ConnId, Effect, Framework, Master, Now, Task};

pub(super) fn refuse(conn: ConnId, message: String, out: &mut Vec<Effect>) {
    tracing::warn!(conn, reason = %message, "refusing agent registration");
    out.push(Effect::ToAgent {
        conn,
        message: Box::new(MasterMessage {
            kind: Some(master_message::Kind::Refused(master_message::Refused {
                message,
            })),
        }),
    });
    out.push(Effect::CloseAgent { conn });
}

/// A task reported by a re-registering agent, checked.
#[derive(Clone)]
pub(super) struct ReportedTask {
    pub(super) id: TaskId,
    pub(super) framework_id: FrameworkId,
    pub(super) name: String,
    pub(super) state: pb::TaskState,
    /// The state of the update the agent is still delivering, if any.
    pub(super) update_state: Option<pb::TaskState>,
    pub(super) resources: Resources,
}

fn check_reported_task(task: &pb::Task) -> Result<ReportedTask, String> {
    Ok(ReportedTask {
        id: TaskId::from_field(&task.task_id)
            .map_err(|e| format!("reported task id is invalid: {e}"))?,
        framework_id: FrameworkId::from_field(&task.framework_id)
            .map_err(|e| format!("reported framework id is invalid: {e}"))?,
        name: task.name.clone(),
        state: agora_core::task::from_i32(task.state.unwrap_or_default())
            .map_err(|e| e.to_string())?,
        update_state: task
            .status_update_state
            .map(agora_core::task::from_i32)
            .transpose()
            .map_err(|e| e.to_string())?,
        resources: Resources::from_proto(&task.resources)
            .map_err(|e| format!("reported task resources: {e}"))?,
    })
}

/// Refuses resources that cannot hold what the agent's live tasks use: the
/// master would otherwise offer what the agent no longer has.
fn holds_live_tasks(total: &Resources, reported: &[ReportedTask]) -> Result<(), String> {
    let mut used = Resources::new();
    for task in reported
        .iter()
        .filter(|t| !agora_core::task::is_terminal(t.state))
    {
        used.add(&task.resources);
    }
    if total.contains(&used) {
        Ok(())
    } else {
        Err(format!(
            "they do not hold what its running tasks use ({used}); restart it with resources that do, or once those tasks have ended"
        ))
    }
}

impl Master {
    /// Refuses resources that give a name another type than it has on the
    /// agents admitted before, so that sums across agents never meet a
    /// conflict (`Resources::add` would leave such entries out).
    fn check_resource_kinds(&self, total: &Resources) -> Result<(), String> {
        for (name, kind) in total.kinds() {
            if let Some(known) = self.resource_kinds.get(name)
                && *known != kind
            {
                return Err(format!(
                    "agent resource '{name}' is {kind}, but {known} on the other agents; give it the cluster's type or another name"
                ));
            }
        }
        Ok(())
    }

    /// Remembers the types of an admitted agent's resource names.
    fn note_resource_kinds(&mut self, total: &Resources) {
        for (name, kind) in total.kinds() {
            self.resource_kinds.entry(name.to_string()).or_insert(kind);
        }
    }

    /// An agent restarted with other resources that still hold its tasks:
    /// its offers are rescinded (they may offer what it no longer has) and
    /// the new totals replace the old in the books and the registry.
    fn resize_agent(
        &mut self,
        now: Now,
        agent_id: &AgentId,
        total: Resources,
        out: &mut Vec<Effect>,
    ) {
        for offer_id in self.offers_on(agent_id) {
            self.remove_offer(&offer_id, None, true, now, out);
        }
        self.note_resource_kinds(&total);
        let Some(agent) = self.agents.get_mut(agent_id) else {
            return;
        };
        tracing::info!(agent_id = %agent_id, was = %agent.total, now = %total, "agent re-registered with other resources");
        agent.total = total.clone();
        // An unreachable agent is not in the allocator; it rejoins with these totals.
        if agent.unreachable_since.is_none() {
            self.allocator.update_agent(agent_id, total);
        }
        out.push(Effect::Registry(super::RegistryAgent::of(
            agent,
            super::RegistryAgentState::Admitted,
        )));
        self.affected_agents.insert(agent_id.clone());
    }

    /// An agent (re-)registers on a new session stream. Returns its id
    /// unless refused; an agent the registry must learn of first is
    /// admitted later, by [`Master::admission_durable`] (`admission.rs`).
    pub fn agent_register(
        &mut self,
        now: Now,
        conn: ConnId,
        register: agent_message::Register,
        out: &mut Vec<Effect>,
    ) -> Option<AgentId> {
        self.register_agent(now, conn, register, None, out)
    }

    /// A registration's one pass: checked, then either admitted or (the
    /// registry must learn of the agent and `durable` is `None`) kept
    /// until its entry is durable.
    pub(super) fn register_agent(
        &mut self,
        now: Now,
        conn: ConnId,
        register: agent_message::Register,
        durable: Option<super::admission::Durable>,
        out: &mut Vec<Effect>,
    ) -> Option<AgentId> {
        let Some(mut info) = register.agent_info else {
            refuse(conn, "registration carries no agent_info".into(), out);
            return None;
        };
        if info.hostname.trim().is_empty() {
            refuse(conn, "agent_info.hostname must not be empty".into(), out);
            return None;
        }
        let total = match Resources::from_proto(&info.resources) {
            Ok(total) => total,
            Err(e) => {
                refuse(conn, format!("agent resources are invalid: {e}"), out);
                return None;
            }
        };
        if let Err(message) =
            super::wire::check_offer_size(&info.hostname, &info.attributes, &total)
        {
            refuse(conn, format!("agent is too large to offer: {message}"), out);
            return None;
        }
        if let Err(message) = self.check_resource_kinds(&total) {
            refuse(conn, message, out);
            return None;
        }
        let mut reported = Vec::new();
        for task in &register.tasks {
            let checked = check_reported_task(task).and_then(|task| {
                match total.type_conflict(&task.resources) {
                    Some(name) => Err(format!(
                        "reported task {} gives resource '{name}' another type than the agent's",
                        task.id
                    )),
                    None => Ok(task),
                }
            });
            match checked {
                Ok(task) => reported.push(task),
                Err(message) => {
                    refuse(conn, message, out);
                    return None;
                }
            }
        }
        let fresh_start = durable
            .as_ref()
            .map_or(info.id.is_none(), |d| d.fresh_start);
        let agent_id = match &info.id {
            Some(id) => match AgentId::from_proto(id) {
                Ok(id) => id,
                Err(e) => {
                    refuse(conn, format!("agent id is invalid: {e}"), out);
                    return None;
                }
            },
            None => {
                let id = AgentId::new(format!("{}-S{}", self.master_id(), self.next_agent));
                self.next_agent += 1;
                id
            }
        };
        info.id = agent_id.to_field();
        if self.is_gone(&agent_id) {
            refuse(
                conn,
                format!("agent {agent_id} was marked gone and may not register again"),
                out,
            );
            return None;
        }

        if let Some(existing) = self.agents.get(&agent_id) {
            // Restarted with other resources: adopted only if what still runs fits them.
            let resized = if agora_allocator::unreserved_form(&existing.total)
                == agora_allocator::unreserved_form(&total)
            {
                None
            } else if let Err(message) = holds_live_tasks(&total, &reported) {
                let was = existing.total.to_string();
                refuse(
                    conn,
                    format!(
                        "agent {agent_id} re-registered with resources {total} (was {was}): {message}"
                    ),
                    out,
                );
                return None;
            } else {
                Some(total)
            };
            let was_unreachable = existing.unreachable_since.is_some();
            if durable.is_none() && self.admission_changes_registry(&agent_id, was_unreachable) {
                let total = resized.as_ref().unwrap_or(&existing.total);
                let entry = super::RegistryAgent::admitted(&agent_id, &info, total);
                let register = agent_message::Register {
                    agent_info: Some(info),
                    ..register
                };
                self.admit_when_durable(conn, register, fresh_start, entry, out);
                return Some(agent_id);
            }
            if let Some(total) = resized {
                self.resize_agent(now, &agent_id, total, out);
            }
            let existing = self.agents.get_mut(&agent_id)?;
            match existing.conn.replace(conn) {
                Some(old) if old != conn => {
                    self.agent_conns.remove(&old);
                    out.push(Effect::CloseAgent { conn: old });
                }
                Some(_) => {}
                None => self.away_agents.left(&existing.info, &agent_id),
            }
            existing.info = info;
            existing.health = super::AgentHealth::registered_at(now.monotonic);
            self.agent_conns.insert(conn, agent_id.clone());
            if was_unreachable {
                self.readmit(now, &agent_id, &reported, out);
            } else {
                self.allocator.set_agent_active(&agent_id, true);
            }
            self.reconcile_agent_tasks(now, &agent_id, &reported, &register.frameworks, out);
            self.admitted(&agent_id, was_unreachable, durable.as_ref(), out);
            self.answer_deferred_for_agent(now, &agent_id, out);
            tracing::info!(agent_id = %agent_id, "agent re-registered");
        } else {
            // A new agent, or one this master has not met (it restarted):
            // adopt it and everything it runs. A fresh start on the address
            // of an agent that is away means that machine rebooted (or its
            // agent lost its checkpoint): the old agent and its tasks are gone.
            let total = self.recovered_total(&agent_id, total);
            if let Err(message) = holds_live_tasks(&total, &reported) {
                refuse(
                    conn,
                    format!("agent {agent_id} advertises resources {total}: {message}"),
                    out,
                );
                return None;
            }
            if durable.is_none() && self.admission_changes_registry(&agent_id, true) {
                let entry = super::RegistryAgent::admitted(&agent_id, &info, &total);
                let register = agent_message::Register {
                    agent_info: Some(info),
                    ..register
                };
                self.admit_when_durable(conn, register, fresh_start, entry, out);
                return Some(agent_id);
            }
            if fresh_start {
                // Exactly the agents without a session at this address
                // (the index's invariant, `away.rs`).
                for old in self.away_agents.at(&info) {
                    self.mark_gone(
                        &old,
                        (
                            "the agent restarted with a new id (its machine rebooted)",
                            super::GoneCause::Agent,
                        ),
                        now,
                        out,
                    );
                }
            }
            self.adopt_frameworks(now, &register.frameworks, out);
            let mut used = Resources::new();
            let mut used_by: BTreeMap<FrameworkId, Resources> = BTreeMap::new();
            let mut orphaned = BTreeSet::new();
            for task in &reported {
                if agora_core::task::is_terminal(task.state) {
                    continue;
                }
                if !self.frameworks.contains_key(&task.framework_id) {
                    orphaned.insert(task.framework_id.clone());
                    continue;
                }
                used.add(&task.resources);
                used_by
                    .entry(task.framework_id.clone())
                    .or_default()
                    .add(&task.resources);
            }
            self.note_resource_kinds(&total);
            let used_list: Vec<(FrameworkId, Resources)> = used_by.into_iter().collect();
            self.allocator
                .add_agent(agent_id.clone(), total.clone(), &used_list);
            self.agents.insert(
                agent_id.clone(),
                Agent {
                    id: agent_id.clone(),
                    info,
                    conn: Some(conn),
                    total,
                    used,
                    registered_at: now.wall,
                    health: super::AgentHealth::registered_at(now.monotonic),
                    unreachable_since: None,
                    removal_deadline: None,
                    lost_tasks: BTreeSet::new(),
                },
            );
            self.agent_conns.insert(conn, agent_id.clone());
            self.observe_agent_added(&agent_id, out);
            for task in reported {
                if self.frameworks.contains_key(&task.framework_id) {
                    self.adopt_task(&agent_id, task, out);
                }
            }
            orphaned.extend(self.removed_among(&register.frameworks));
            for framework_id in orphaned {
                self.send_to_agent(&agent_id, shutdown_framework(&framework_id), out);
            }
            self.admitted(&agent_id, true, durable.as_ref(), out);
            self.answer_deferred_for_agent(now, &agent_id, out);
            tracing::info!(agent_id = %agent_id, hostname = %self.agents[&agent_id].info.hostname, "agent registered");
        }
        if fresh_start {
            self.counters.agent_registrations += 1;
        } else {
            self.counters.agent_reregistrations += 1;
        }
        self.affected_agents.insert(agent_id.clone());
        out.push(Effect::ToAgent {
            conn,
            message: Box::new(MasterMessage {
                kind: Some(master_message::Kind::Registered(
                    master_message::Registered {
                        agent_id: agent_id.to_field(),
                        master_info: Some(self.config.master_info.clone()),
                    },
                )),
            }),
        });
        Some(agent_id)
    }

    /// Frameworks an agent reports that this master does not know are
    /// recreated inactive; they have their failover timeout, and at least
    /// [`MasterConfig::adopted_framework_grace`](super::MasterConfig), to
    /// re-subscribe.
    fn adopt_frameworks(
        &mut self,
        now: Now,
        frameworks: &[pb::FrameworkInfo],
        out: &mut Vec<Effect>,
    ) {
        for info in frameworks {
            let Some(Ok(id)) = info.id.as_ref().map(FrameworkId::from_proto) else {
                continue;
            };
            if self.frameworks.contains_key(&id) || self.removed_frameworks.contains(&id) {
                continue;
            }
            let roles: BTreeSet<String> = if info.roles.is_empty() {
                [info.role.clone().unwrap_or_else(|| "*".into())].into()
            } else {
                info.roles.iter().cloned().collect()
            };
            let timeout = info.failover_timeout.unwrap_or(0.0);
            let timeout = if timeout.is_finite() && timeout >= 0.0 {
                timeout
            } else {
                0.0
            };
            self.allocator
                .add_framework(id.clone(), roles.clone(), BTreeSet::new());
            self.allocator.set_framework_active(&id, false);
            self.frameworks.insert(
                id.clone(),
                Framework {
                    id: id.clone(),
                    info: info.clone(),
                    roles,
                    conn: None,
                    stream_id: String::new(),
                    registered_at: now.wall,
                    reregistered_at: None,
                    // Known only from an agent: its scheduler has yet to come back.
                    disconnected_at: Some(now.wall),
                    failover_deadline: Some(agora_core::time::deadline(
                        now.monotonic,
                        agora_core::time::duration_from_secs(timeout)
                            .unwrap_or(Duration::MAX)
                            .max(self.config.adopted_framework_grace),
                    )),
                    tasks: Default::default(),
                    completed_tasks: Default::default(),
                    completed_ids: Default::default(),
                    offers: BTreeSet::new(),
                },
            );
            self.observe_framework_added(&id, out);
            tracing::info!(framework_id = %id, "framework recreated from an agent's report");
        }
    }

    pub(super) fn adopt_task(
        &mut self,
        agent_id: &AgentId,
        task: ReportedTask,
        out: &mut Vec<Effect>,
    ) {
        let Some(framework) = self.frameworks.get_mut(&task.framework_id) else {
            return;
        };
        // An agent does not report the role a task was launched under; the
        // framework's first role is the best guess (exact for single-role ones).
        let role = framework
            .roles
            .iter()
            .next()
            .cloned()
            .unwrap_or_else(|| "*".into());
        let (framework_id, task_id) = (task.framework_id.clone(), task.id.clone());
        self.by_agent.task_added(agent_id, &framework_id, &task_id);
        let replaced = framework.tasks.insert(
            task.id.clone(),
            Task {
                id: task.id,
                role,
                name: task.name,
                framework_id: task.framework_id,
                agent_id: agent_id.clone(),
                resources: task.resources,
                state: task.state,
                update_state: task.update_state,
                last_status: None,
                resources_released: agora_core::task::is_terminal(task.state),
                // Agents do not report it: the framework's user stands in.
                user: None,
            },
        );
        if let Some(replaced) = replaced
            && &replaced.agent_id != agent_id
        {
            self.by_agent
                .task_removed(&replaced.agent_id, &framework_id, &task_id);
        }
        self.observe_task_added(&framework_id, &task_id, out);
    }

    /// A known agent came back: tasks it reports that we do not know are
    /// adopted; tasks we expected there that it does not report are lost.
    fn reconcile_agent_tasks(
        &mut self,
        now: Now,
        agent_id: &AgentId,
        reported: &[ReportedTask],
        frameworks: &[pb::FrameworkInfo],
        out: &mut Vec<Effect>,
    ) {
        let reported_ids: BTreeSet<(FrameworkId, TaskId)> = reported
            .iter()
            .map(|t| (t.framework_id.clone(), t.id.clone()))
            .collect();
        let missing: Vec<(FrameworkId, TaskId)> = self
            .live_tasks_on(agent_id)
            .into_iter()
            .filter(|key| !reported_ids.contains(key))
            .collect();
        for (framework_id, task_id) in missing {
            let message = "the agent re-registered without this task".to_string();
            let why = (message, super::GoneCause::Agent);
            self.report_gone(&framework_id, &task_id, agent_id, why, now, out);
        }
        for task in reported {
            let known = self
                .frameworks
                .get(&task.framework_id)
                .is_some_and(|f| f.tasks.contains_key(&task.id));
            if !known
                && self.frameworks.contains_key(&task.framework_id)
                && !agora_core::task::is_terminal(task.state)
            {
                self.allocator
                    .add_used(agent_id, &task.framework_id, &task.resources);
                if let Some(agent) = self.agents.get_mut(agent_id) {
                    agent.used.add(&task.resources);
                }
                self.adopt_task(
                    agent_id,
                    ReportedTask {
                        id: task.id.clone(),
                        framework_id: task.framework_id.clone(),
                        name: task.name.clone(),
                        state: task.state,
                        update_state: task.update_state,
                        resources: task.resources.clone(),
                    },
                    out,
                );
            }
        }
        // Live tasks of frameworks this master no longer knows, and
        // frameworks removed while the agent was away (an idle executor keeps
        // its framework on the agent with no task to report), when the
        // ShutdownFramework could not reach it: tell the agent to shut them
        // down, as for a newly met agent.
        let orphaned: BTreeSet<FrameworkId> = reported
            .iter()
            .filter(|t| {
                !agora_core::task::is_terminal(t.state)
                    && !self.frameworks.contains_key(&t.framework_id)
            })
            .map(|t| t.framework_id.clone())
            .chain(self.removed_among(frameworks))
            .collect();
        for framework_id in orphaned {
            self.send_to_agent(agent_id, shutdown_framework(&framework_id), out);
        }
    }

    /// The frameworks among those an agent reports (it keeps one while it
    /// has a task or an executor of it) that this master removed.
    fn removed_among<'a>(
        &'a self,
        frameworks: &'a [pb::FrameworkInfo],
    ) -> impl Iterator<Item = FrameworkId> + 'a {
        frameworks
            .iter()
            .filter_map(|info| info.id.as_ref().map(FrameworkId::from_proto))
            .filter_map(Result::ok)
            .filter(|id| self.removed_frameworks.contains(id))
    }

    /// An agent's session stream ended. It keeps its tasks (it may come
    /// back); its offers are rescinded and it gets no new ones.
    pub fn agent_disconnected(&mut self, now: Now, conn: ConnId, out: &mut Vec<Effect>) {
        if self.admission_disconnected(conn) {
            return;
        }
        let Some(agent_id) = self.agent_conns.remove(&conn) else {
            return;
        };
        let Some(agent) = self.agents.get_mut(&agent_id) else {
            return;
        };
        if agent.conn != Some(conn) {
            return;
        }
        agent.conn = None;
        agent.health.disconnected_at = Some(now.monotonic);
        self.away_agents.went_away(&agent.info, &agent_id);
        self.allocator.set_agent_active(&agent_id, false);
        let offers = self.offers_on(&agent_id);
        for offer_id in offers {
            self.remove_offer(&offer_id, None, true, now, out);
        }
        tracing::warn!(agent_id = %agent_id, "agent disconnected");
    }

    /// A message on an agent's session after registration.
    pub fn agent_message(
        &mut self,
        now: Now,
        conn: ConnId,
        message: agent_message::Kind,
        out: &mut Vec<Effect>,
    ) {
        let Some(agent_id) = self.agent_conns.get(&conn).cloned() else {
            // What was queued behind a session's end (the master closed it:
            // the agent was marked unreachable, or registered again): the
            // agent re-registers and re-sends what matters. Debug, not
            // warn: after 10,000 agents are closed at once it is millions.
            tracing::debug!(conn, "message from an unregistered agent session ignored");
            return;
        };
        match message {
            agent_message::Kind::StatusUpdate(update) => {
                self.status_update(now, &agent_id, update, out)
            }
            agent_message::Kind::ExecutorMessage(message) => {
                let Ok(framework_id) = FrameworkId::from_field(&message.framework_id) else {
                    return;
                };
                let event = sched::Event {
                    r#type: sched::event::Type::Message as i32,
                    message: Some(sched::event::Message {
                        agent_id: agent_id.to_field(),
                        executor_id: message.executor_id,
                        data: message.data,
                    }),
                    ..Default::default()
                };
                self.send_to_framework(&framework_id, event, out);
            }
            agent_message::Kind::Pong(pong) => self.on_pong(&agent_id, pong.seq),
            agent_message::Kind::Register(_) => {
                tracing::warn!(agent_id = %agent_id, "second registration on one session ignored");
            }
        }
    }

    fn status_update(
        &mut self,
        now: Now,
        agent_id: &AgentId,
        update: agent_message::StatusUpdate,
        out: &mut Vec<Effect>,
    ) {
        let Some(mut status) = update.status else {
            return;
        };
        let (Ok(framework_id), Ok(task_id), Ok(state)) = (
            FrameworkId::from_field(&update.framework_id),
            TaskId::from_field(&status.task_id),
            agora_core::task::from_i32(status.state.unwrap_or_default()),
        ) else {
            tracing::warn!(agent_id = %agent_id, "malformed status update ignored");
            return;
        };
        status.agent_id = agent_id.to_field();
        if !self.frameworks.contains_key(&framework_id) {
            // Nobody will ever acknowledge it: do it here so the agent's
            // queue for the task moves on.
            if let Some(uuid) = status.uuid.clone() {
                self.send_to_agent(agent_id, status_ack(&framework_id, &task_id, uuid), out);
            }
            return;
        }
        let latest = update
            .latest_state
            .and_then(|s| agora_core::task::from_i32(s).ok())
            .unwrap_or(state);
        // Only the agent a task is on speaks for it (a task id may be reused
        // on another agent once the first copy ended): the update is
        // acknowledged so the sender's queue moves on, and not applied.
        let framework = &self.frameworks[&framework_id];
        let on = framework
            .tasks
            .get(&task_id)
            .map(|t| &t.agent_id)
            .or_else(|| framework.completed_task(&task_id).map(|t| &t.agent_id));
        if let Some(on) = on
            && on != agent_id
        {
            tracing::warn!(agent_id = %agent_id, task_id = %task_id, task_agent_id = %on, "status update from an agent the task is not on ignored");
            if let Some(uuid) = status.uuid.clone() {
                self.send_to_agent(agent_id, status_ack(&framework_id, &task_id, uuid), out);
            }
            return;
        }
        // The very update the framework acknowledged when the task completed,
        // sent again by an agent that restarted before it wrote that
        // acknowledgement down: acknowledged here for the agent, and not
        // forwarded, so a framework hears a task's end once.
        if let Some(uuid) = status.uuid.clone()
            && !framework.tasks.contains_key(&task_id)
            && framework
                .completed_task(&task_id)
                .and_then(|t| t.last_status.as_ref())
                .is_some_and(|acknowledged| acknowledged.uuid.as_ref() == Some(&uuid))
        {
            tracing::debug!(agent_id = %agent_id, task_id = %task_id, "acknowledged update sent again; acknowledged, not forwarded");
            self.send_to_agent(agent_id, status_ack(&framework_id, &task_id, uuid), out);
            return;
        }
        if let Some(task) = self.frameworks[&framework_id].tasks.get(&task_id) {
            let told = task.update_state;
            let changed = match agora_core::task::check_transition(task.state, latest) {
                Err(e) => {
                    tracing::warn!(task_id = %task_id, error = %e, "status update would leave a terminal state; state kept");
                    false
                }
                Ok(()) => self.set_task_state(&framework_id, &task_id, latest, &status, now, out),
            };
            if let Some(task) = self
                .frameworks
                .get_mut(&framework_id)
                .and_then(|f| f.tasks.get_mut(&task_id))
            {
                task.update_state = Some(state);
                task.last_status = Some(status.clone());
            }
            // As in Mesos, operators also see an update whose own state is
            // news while the task's latest state is not (RUNNING delivered
            // after the agent already knew FINISHED), and every check or
            // health check result.
            if !changed && (told != Some(state) || is_check_result(&status)) {
                self.observe_task_updated(&framework_id, &task_id, &status, out);
            }
        }
        self.send_to_framework(
            &framework_id,
            sched::Event {
                r#type: sched::event::Type::Update as i32,
                update: Some(sched::event::Update {
                    status: Some(status),
                }),
                ..Default::default()
            },
            out,
        );
    }
}

/// Whether an update reports a check's or a health check's result.
fn is_check_result(status: &pb::TaskStatus) -> bool {
    use pb::task_status::Reason;
    status.reason.is_some_and(|r| {
        r == Reason::TaskCheckStatusUpdated as i32
            || r == Reason::TaskHealthCheckStatusUpdated as i32
    })
}

fn shutdown_framework(framework_id: &FrameworkId) -> MasterMessage {
    MasterMessage {
        kind: Some(master_message::Kind::ShutdownFramework(
            master_message::ShutdownFramework {
                framework_id: framework_id.to_field(),
            },
        )),
    }
}

fn status_ack(framework_id: &FrameworkId, task_id: &TaskId, uuid: Vec<u8>) -> MasterMessage {
    MasterMessage {
        kind: Some(master_message::Kind::StatusUpdateAck(
            master_message::StatusUpdateAck {
                framework_id: framework_id.to_field(),
                task_id: task_id.to_field(),
                uuid,
            },
        )),
    }
}
