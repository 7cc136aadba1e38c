//! Agent health, in two steps as in Mesos:
//!
//! - *detection*: the master pings every agent; an agent that misses
//!   `max_agent_ping_timeouts` pings in a row, or whose session stays down
//!   as long, is marked unreachable. Its offers are rescinded and it leaves
//!   the allocator (so its resources can never be offered twice);
//!   partition-aware frameworks are told TASK_UNREACHABLE, the others nothing.
//! - *removal*: unreachable for `agent_removal_timeout`, its tasks of
//!   frameworks that are not partition-aware become TASK_LOST.
//!
//! An agent that re-registers is readmitted with the tasks it reports: a
//! restart or freeze shorter than the removal timeout is invisible to
//! frameworks that are not partition-aware, and partition-aware ones learn
//! each task's real state (REASON_AGENT_REREGISTERED).

use agora_allocator::Allocator as _;
use agora_core::{AgentId, Resources};
use agora_proto::v1 as pb;
use agora_proto::v1::agent::{MasterMessage, master_message};

use super::agents::ReportedTask;
use super::{Effect, Framework, Master, Now};

impl Master {
    /// Sends due pings and marks silent agents unreachable.
    pub(super) fn check_agents(&mut self, now: Now, out: &mut Vec<Effect>) {
        let interval = self.config.agent_ping_timeout;
        let max = self.config.max_agent_ping_timeouts.max(1);
        let mut silent = Vec::new();
        // Pings change no view of an agent: its read model entry stays.
        for agent in self.agents.values_mut_unseen() {
            if agent.unreachable_since.is_some() {
                continue;
            }
            let health = &mut agent.health;
            match agent.conn {
                Some(conn) => {
                    let due = health
                        .last_ping
                        .is_none_or(|sent| now.monotonic.saturating_sub(sent) >= interval);
                    if !due {
                        continue;
                    }
                    if health.awaiting_pong {
                        health.missed += 1;
                    }
                    if health.missed >= max {
                        silent.push((
                            agent.id.clone(),
                            format!("agent did not answer {max} pings"),
                        ));
                        continue;
                    }
                    health.seq += 1;
                    health.awaiting_pong = true;
                    health.last_ping = Some(now.monotonic);
                    out.push(Effect::ToAgent {
                        conn,
                        message: Box::new(MasterMessage {
                            kind: Some(master_message::Kind::Ping(master_message::Ping {
                                seq: health.seq,
                            })),
                        }),
                    });
                }
                None => {
                    let gone_for = health
                        .disconnected_at
                        .map(|since| now.monotonic.saturating_sub(since));
                    if gone_for.is_some_and(|d| d >= interval * max) {
                        silent.push((
                            agent.id.clone(),
                            "agent disconnected and did not come back".into(),
                        ));
                    }
                }
            }
        }
        for (agent_id, why) in silent {
            self.mark_unreachable(&agent_id, &why, now, out);
        }
    }

    pub(super) fn on_pong(&mut self, agent_id: &AgentId, seq: u64) {
        // Ping bookkeeping is in no view: a pong (10,000 agents answer one
        // every period) must not make the read model rebuild the agent.
        if let Some(agent) = self.agents.get_mut_unseen(agent_id)
            && seq == agent.health.seq
        {
            agent.health.awaiting_pong = false;
            agent.health.missed = 0;
        }
    }

    /// Detection: the agent stopped answering (or its session stayed down).
    /// Its offers are rescinded and it leaves the allocator, so nothing of it
    /// is offered while it is away (its tasks' resources come back with it).
    /// Partition-aware frameworks are told TASK_UNREACHABLE; the others are
    /// told nothing until removal (see [`Master::check_removals`]).
    fn mark_unreachable(&mut self, agent_id: &AgentId, why: &str, now: Now, out: &mut Vec<Effect>) {
        let removal_timeout = self.config.agent_removal_timeout;
        let Some(agent) = self.agents.get_mut(agent_id) else {
            return;
        };
        tracing::warn!(agent_id = %agent_id, reason = why, "agent unreachable");
        agent.unreachable_since = Some(now.wall);
        agent.removal_deadline = Some(now.monotonic + removal_timeout);
        agent.used = Resources::new();
        if let Some(conn) = agent.conn.take() {
            self.agent_conns.remove(&conn);
            self.away_agents.went_away(&agent.info, agent_id);
            out.push(Effect::CloseAgent { conn });
        }
        self.counters.agents_marked_unreachable += 1;
        let entry = super::RegistryAgent::of(
            agent,
            super::RegistryAgentState::Unreachable { since: now.wall },
        );
        out.push(Effect::Registry(entry));
        let offers = self.offers_on(agent_id);
        for offer_id in offers {
            self.remove_offer(&offer_id, None, true, now, out);
        }
        // Its books leave the allocator: nothing of it can be offered until it is back.
        self.allocator.remove_agent(agent_id);
        let tasks = self.live_tasks_on(agent_id);
        for (framework_id, task_id) in tasks {
            let Some(framework) = self.frameworks.get_mut(&framework_id) else {
                continue;
            };
            let aware = framework.partition_aware();
            let Some(task) = framework.tasks.get_mut(&task_id) else {
                continue;
            };
            // What the framework was last told stays what reconciliation
            // answers, so a framework that is not partition-aware hears nothing.
            let previous = task.state;
            if aware {
                task.update_state = Some(pb::TaskState::TaskUnreachable);
            } else {
                task.update_state.get_or_insert(previous);
            }
            task.state = pb::TaskState::TaskUnreachable;
            // The allocator forgot the agent: nothing is to be given back.
            task.resources_released = true;
            *self
                .counters
                .task_transitions
                .entry("TASK_UNREACHABLE")
                .or_default() += 1;
            let status = Self::master_status(
                &task_id,
                Some(agent_id),
                pb::TaskState::TaskUnreachable,
                pb::task_status::Reason::AgentDisconnected,
                format!("agent is unreachable: {why}"),
                now,
            );
            // Not through `set_task_state`: nothing is given back (above).
            self.observe_task_updated(&framework_id, &task_id, &status, out);
            if aware {
                self.send_to_framework(&framework_id, Self::update_event(status), out);
            }
        }
        // Mesos' registered agents leave out the unreachable ones.
        self.observe_agent_removed(agent_id, out);
        self.needs_allocation = true;
    }

    /// Removal: agents unreachable for `agent_removal_timeout`. Their tasks
    /// of frameworks that are not partition-aware become TASK_LOST (and are
    /// killed if the agent ever returns); partition-aware frameworks were
    /// told TASK_UNREACHABLE and keep it until the agent returns or is gone.
    pub(super) fn check_removals(&mut self, now: Now, out: &mut Vec<Effect>) {
        let due: Vec<AgentId> = self
            .agents
            .values()
            .filter(|a| a.removal_deadline.is_some_and(|d| d <= now.monotonic))
            .map(|a| a.id.clone())
            .collect();
        for agent_id in due {
            if let Some(agent) = self.agents.get_mut(&agent_id) {
                agent.removal_deadline = None;
            }
            tracing::warn!(agent_id = %agent_id, "agent unreachable past the removal timeout; its tasks are lost");
            for (framework_id, task_id) in self.live_tasks_on(&agent_id) {
                let aware = self
                    .frameworks
                    .get(&framework_id)
                    .is_some_and(Framework::partition_aware);
                if aware {
                    continue;
                }
                let lost = pb::TaskState::TaskLost;
                let status = Self::master_status(
                    &task_id,
                    Some(&agent_id),
                    lost,
                    pb::task_status::Reason::AgentRemoved,
                    "agent was unreachable for longer than the agent removal timeout",
                    now,
                );
                self.set_task_state(&framework_id, &task_id, lost, &status, now, out);
                self.set_told_state(&framework_id, &task_id, lost);
                self.send_to_framework(&framework_id, Self::update_event(status), out);
                self.complete_task(&framework_id, &task_id);
                if let Some(agent) = self.agents.get_mut(&agent_id) {
                    agent.lost_tasks.insert((framework_id, task_id));
                }
            }
        }
    }

    /// An agent that will never come back (it restarted clean with a new
    /// id): its offers go, its tasks are TASK_GONE (TASK_LOST to frameworks
    /// that are not partition-aware), and its id may never register again.
    pub(super) fn mark_gone(
        &mut self,
        agent_id: &AgentId,
        (why, cause): (&str, super::GoneCause),
        now: Now,
        out: &mut Vec<Effect>,
    ) {
        let Some(agent) = self.agents.get(agent_id) else {
            return;
        };
        tracing::warn!(agent_id = %agent_id, reason = why, "agent gone");
        // Operators were told of an unreachable agent's removal already.
        let reachable = agent.unreachable_since.is_none();
        self.counters.agent_removals += 1;
        out.push(Effect::Registry(super::RegistryAgent::of(
            agent,
            super::RegistryAgentState::Gone { since: now.wall },
        )));
        let offers = self.offers_on(agent_id);
        for offer_id in offers {
            self.remove_offer(&offer_id, None, true, now, out);
        }
        let tasks = self.live_tasks_on(agent_id);
        for (framework_id, task_id) in tasks {
            self.report_gone(
                &framework_id,
                &task_id,
                agent_id,
                (format!("agent is gone: {why}"), cause),
                now,
                out,
            );
        }
        self.allocator.remove_agent(agent_id);
        if let Some(agent) = self.agents.remove(agent_id) {
            match agent.conn {
                Some(conn) => {
                    self.agent_conns.remove(&conn);
                    out.push(Effect::CloseAgent { conn });
                }
                None => self.away_agents.left(&agent.info, agent_id),
            }
        }
        self.unreachable_agents.remove(agent_id);
        self.gone_agents.insert(agent_id.clone(), now.wall);
        if reachable {
            self.observe_agent_removed(agent_id, out);
        }
        self.needs_allocation = true;
    }

    /// An unreachable agent re-registered: it rejoins the allocator and the
    /// tasks it reports take their real state again, their resources in use
    /// again if they still run. Partition-aware frameworks are told that
    /// state (they were told TASK_UNREACHABLE); the others were told nothing
    /// and learn of later changes through the agent's own updates. Tasks
    /// reported TASK_LOST at removal that still run are killed. Tasks it no
    /// longer reports, and tasks this master has never seen, are left to
    /// `reconcile_agent_tasks`.
    pub(super) fn readmit(
        &mut self,
        now: Now,
        agent_id: &AgentId,
        reported: &[ReportedTask],
        out: &mut Vec<Effect>,
    ) {
        let Some(agent) = self.agents.get_mut(agent_id) else {
            return;
        };
        agent.unreachable_since = None;
        agent.removal_deadline = None;
        agent.used = Resources::new();
        let lost = std::mem::take(&mut agent.lost_tasks);
        let total = agent.total.clone();
        self.allocator.add_agent(agent_id.clone(), total, &[]);
        self.observe_agent_added(agent_id, out);
        for reported_task in reported {
            let key = (reported_task.framework_id.clone(), reported_task.id.clone());
            let live = !agora_core::task::is_terminal(reported_task.state);
            if lost.contains(&key) {
                if live {
                    self.relaunch_lost_for_kill(agent_id, reported_task, out);
                }
                continue;
            }
            let Some(framework) = self.frameworks.get_mut(&key.0) else {
                continue;
            };
            let aware = framework.partition_aware();
            let Some(task) = framework.tasks.get_mut(&key.1) else {
                continue;
            };
            if task.agent_id != *agent_id || task.state != pb::TaskState::TaskUnreachable {
                continue;
            }
            task.update_state = reported_task.update_state;
            let message = if live {
                "agent re-registered: the task is live again"
            } else {
                "agent re-registered: the task ended while it was unreachable"
            };
            let reason = pb::task_status::Reason::AgentReregistered;
            let state = reported_task.state;
            let status = Self::master_status(&key.1, Some(agent_id), state, reason, message, now);
            if live {
                task.state = state;
                task.resources_released = false;
                let resources = task.resources.clone();
                self.allocator.add_used(agent_id, &key.0, &resources);
                if let Some(agent) = self.agents.get_mut(agent_id) {
                    agent.used.add(&resources);
                }
                // Not through `set_task_state`: its resources are in use again.
                self.observe_task_updated(&key.0, &key.1, &status, out);
            } else {
                // Ended while away; its resources were given back at detection.
                self.set_task_state(&key.0, &key.1, state, &status, now, out);
            }
            if aware {
                // The state of the update the agent is delivering, if any:
                // a later one (even terminal) must not overtake the agent's
                // queue, which delivers it in order.
                let told = reported_task.update_state.unwrap_or(state);
                let event = Self::master_update(&key.1, Some(agent_id), told, reason, message, now);
                self.send_to_framework(&key.0, event, out);
            }
        }
        tracing::info!(agent_id = %agent_id, "unreachable agent is back");
    }

    /// A task reported TASK_LOST at the agent's removal still runs: its
    /// framework may have replaced it, so it is killed. It is booked again
    /// (its resources are in use until it ends) and its end reaches the
    /// framework as any update does.
    fn relaunch_lost_for_kill(
        &mut self,
        agent_id: &AgentId,
        reported: &ReportedTask,
        out: &mut Vec<Effect>,
    ) {
        let Some(framework) = self.frameworks.get_mut(&reported.framework_id) else {
            return;
        };
        framework.retain_completed(|t| !(t.id == reported.id && t.agent_id == *agent_id));
        tracing::warn!(agent_id = %agent_id, task_id = %reported.id, "killing a task reported lost while its agent was away");
        self.allocator
            .add_used(agent_id, &reported.framework_id, &reported.resources);
        if let Some(agent) = self.agents.get_mut(agent_id) {
            agent.used.add(&reported.resources);
        }
        self.adopt_task(agent_id, reported.clone(), out);
        self.send_to_agent(
            agent_id,
            MasterMessage {
                kind: Some(master_message::Kind::KillTask(master_message::KillTask {
                    framework_id: reported.framework_id.to_field(),
                    task_id: reported.id.to_field(),
                    kill_policy: None,
                    message: Some(
                        "killed by the master: it was reported lost while its agent was away"
                            .into(),
                    ),
                })),
            },
            out,
        );
    }
}
