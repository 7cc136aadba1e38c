//! Agent health: the master pings every agent; an agent that misses
//! `max_agent_ping_timeouts` pings in a row, or whose session stays down as
//! long, is marked unreachable. Its offers are rescinded, it leaves the
//! allocator (so its resources can never be offered twice), and its tasks
//! are reported TASK_UNREACHABLE (partition-aware frameworks) or TASK_LOST.
//! When it re-registers, its tasks are adopted again with
//! REASON_AGENT_REREGISTERED.

use std::collections::BTreeSet;

use agora_core::{AgentId, FrameworkId, Resources, TaskId};
use agora_proto::v1 as pb;
use agora_proto::v1::agent::{MasterMessage, master_message};

use super::agents::ReportedTask;
use super::{Effect, Master, Now};

impl Master {
    /// Sends due pings and marks silent agents unreachable.
    pub(super) fn check_agents(&mut self, now: Now, out: &mut Vec<Effect>) {
        let interval = self.config.agent_ping_timeout;
        let max = self.config.max_agent_ping_timeouts.max(1);
        let mut silent = Vec::new();
        for agent in self.agents.values_mut() {
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
                        message: MasterMessage {
                            kind: Some(master_message::Kind::Ping(master_message::Ping {
                                seq: health.seq,
                            })),
                        },
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
        if let Some(agent) = self.agents.get_mut(agent_id)
            && seq == agent.health.seq
        {
            agent.health.awaiting_pong = false;
            agent.health.missed = 0;
        }
    }

    fn mark_unreachable(&mut self, agent_id: &AgentId, why: &str, now: Now, out: &mut Vec<Effect>) {
        let Some(agent) = self.agents.get_mut(agent_id) else {
            return;
        };
        tracing::warn!(agent_id = %agent_id, reason = why, "agent unreachable");
        agent.unreachable_since = Some(now.wall);
        agent.used = Resources::new();
        if let Some(conn) = agent.conn.take() {
            self.agent_conns.remove(&conn);
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
            if let Some(task) = framework.tasks.get_mut(&task_id) {
                task.state = pb::TaskState::TaskUnreachable;
                task.resources_released = true;
            }
            *self
                .counters
                .task_transitions
                .entry("TASK_UNREACHABLE")
                .or_default() += 1;
            let told = if aware {
                pb::TaskState::TaskUnreachable
            } else {
                pb::TaskState::TaskLost
            };
            let event = Self::master_update(
                &task_id,
                Some(agent_id),
                told,
                pb::task_status::Reason::AgentRemoved,
                format!("agent is unreachable: {why}"),
                now,
            );
            self.send_to_framework(&framework_id, event, out);
        }
        self.needs_allocation = true;
    }

    /// An agent that will never come back (it restarted clean with a new
    /// id): its offers go, its tasks are TASK_GONE (TASK_LOST to frameworks
    /// that are not partition-aware), and its id may never register again.
    pub(super) fn mark_gone(
        &mut self,
        agent_id: &AgentId,
        why: &str,
        now: Now,
        out: &mut Vec<Effect>,
    ) {
        let Some(agent) = self.agents.get(agent_id) else {
            return;
        };
        tracing::warn!(agent_id = %agent_id, reason = why, "agent gone");
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
                format!("agent is gone: {why}"),
                now,
                out,
            );
        }
        self.allocator.remove_agent(agent_id);
        if let Some(agent) = self.agents.remove(agent_id)
            && let Some(conn) = agent.conn
        {
            self.agent_conns.remove(&conn);
            out.push(Effect::CloseAgent { conn });
        }
        self.unreachable_agents.remove(agent_id);
        self.gone_agents.insert(agent_id.clone());
        self.needs_allocation = true;
    }

    /// An unreachable agent re-registered: it rejoins the allocator and the
    /// tasks it still runs are live again. Tasks it no longer reports, and
    /// tasks this master has never seen, are left to `reconcile_agent_tasks`.
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
        agent.used = Resources::new();
        let total = agent.total.clone();
        self.allocator.add_agent(agent_id.clone(), total, &[]);
        let live: BTreeSet<(FrameworkId, TaskId)> = reported
            .iter()
            .filter(|t| !agora_core::task::is_terminal(t.state))
            .map(|t| (t.framework_id.clone(), t.id.clone()))
            .collect();
        for reported_task in reported {
            let key = (reported_task.framework_id.clone(), reported_task.id.clone());
            if !live.contains(&key) {
                continue;
            }
            let Some(task) = self
                .frameworks
                .get_mut(&key.0)
                .and_then(|f| f.tasks.get_mut(&key.1))
            else {
                continue;
            };
            if task.agent_id != *agent_id {
                continue;
            }
            task.state = reported_task.state;
            task.update_state = reported_task.update_state;
            task.resources_released = false;
            let resources = task.resources.clone();
            self.allocator.add_used(agent_id, &key.0, &resources);
            if let Some(agent) = self.agents.get_mut(agent_id) {
                agent.used.add(&resources);
            }
            let event = Self::master_update(
                &key.1,
                Some(agent_id),
                reported_task.state,
                pb::task_status::Reason::AgentReregistered,
                "agent re-registered: task is running again",
                now,
            );
            self.send_to_framework(&key.0, event, out);
        }
        tracing::info!(agent_id = %agent_id, "unreachable agent is back");
    }
}
