//! Framework calls other than SUBSCRIBE and ACCEPT.

use std::collections::BTreeSet;
use std::time::Duration;

use agora_allocator::Allocator as _;
use agora_core::time::duration_from_secs;
use agora_core::{AgentId, OfferId, TaskId};
use agora_proto::v1 as pb;
use agora_proto::v1::agent::{MasterMessage, master_message};
use agora_proto::v1::scheduler as sched;
use sched::call::Type;

use super::{CallError, Effect, Master, Now};

/// Refusal when a framework gives no filter (Mesos' `Filters.refuse_seconds` default).
pub(super) const DEFAULT_REFUSE: Duration = Duration::from_secs(5);
/// Longest refusal honoured (Mesos caps at 365 days).
const MAX_REFUSE: Duration = Duration::from_secs(365 * 24 * 3600);
/// Most acknowledgements one ACKNOWLEDGE call may carry: bounds the actor's
/// time on one call (the SDK sends at most 1,024).
const MAX_ACKNOWLEDGEMENTS: usize = 4096;

/// The refusal a `Filters` asks for: default 5 s when unset, negative or not
/// a number; 0 means no filter; capped at a year (infinity included).
pub(super) fn refuse_duration(filters: Option<&pb::Filters>) -> Option<Duration> {
    let Some(seconds) = filters.and_then(|f| f.refuse_seconds) else {
        return Some(DEFAULT_REFUSE);
    };
    match duration_from_secs(seconds) {
        Some(Duration::ZERO) if seconds == 0.0 => None,
        Some(refuse) => Some(refuse.min(MAX_REFUSE)),
        None => Some(DEFAULT_REFUSE),
    }
}

fn require<T>(value: Option<T>, field: &str) -> Result<T, CallError> {
    value.ok_or_else(|| CallError::InvalidArgument(format!("expecting '{field}' to be present")))
}

fn parse_task_id(id: &Option<pb::TaskId>) -> Result<TaskId, CallError> {
    TaskId::from_field(id)
        .map_err(|e| CallError::InvalidArgument(format!("task id is invalid: {e}")))
}

fn parse_agent_id(id: &Option<pb::AgentId>) -> Result<AgentId, CallError> {
    AgentId::from_field(id)
        .map_err(|e| CallError::InvalidArgument(format!("agent id is invalid: {e}")))
}

impl Master {
    /// Any call but SUBSCRIBE, from the framework's live subscription
    /// identified by `stream_id`. On error nothing changed (ACCEPT may still
    /// report the refused tasks through UPDATE events).
    pub fn call(
        &mut self,
        now: Now,
        stream_id: &str,
        call: sched::Call,
        out: &mut Vec<Effect>,
    ) -> Result<(), CallError> {
        let framework_id = require(call.framework_id.as_ref(), "framework_id")?
            .value
            .clone();
        let framework_id = self.check_caller(&framework_id, stream_id)?;
        let kind = Type::try_from(call.r#type).unwrap_or(Type::Unknown);
        let result = match kind {
            Type::Teardown => {
                self.remove_framework(&framework_id, now, out);
                Ok(())
            }
            Type::Accept => {
                let accept = require(call.accept, "accept")?;
                self.accept(now, &framework_id, accept, out)
            }
            Type::Decline => {
                let decline = require(call.decline, "decline")?;
                self.decline(
                    now,
                    &framework_id,
                    &decline.offer_ids,
                    decline.filters.as_ref(),
                    out,
                )
            }
            Type::Revive => {
                let roles = call.revive.map(|r| r.roles).unwrap_or_default();
                self.check_roles(&framework_id, &roles)?;
                self.allocator.revive(&framework_id, &roles);
                self.needs_allocation = true;
                Ok(())
            }
            Type::Suppress => {
                let roles = call.suppress.map(|r| r.roles).unwrap_or_default();
                self.check_roles(&framework_id, &roles)?;
                self.allocator.suppress(&framework_id, &roles);
                Ok(())
            }
            Type::Kill => {
                let kill = require(call.kill, "kill")?;
                self.kill(now, &framework_id, kill, out)
            }
            Type::Acknowledge => {
                let acks: Vec<_> = call
                    .acknowledge
                    .into_iter()
                    .chain(call.acknowledgements)
                    .collect();
                self.acknowledge_all(&framework_id, acks, out)
            }
            Type::Reconcile => {
                let reconcile = call.reconcile.unwrap_or_default();
                self.reconcile(now, &framework_id, reconcile, out)
            }
            Type::Message => {
                let message = require(call.message, "message")?;
                let agent_id = parse_agent_id(&message.agent_id)?;
                if !self.agents.contains_key(&agent_id) {
                    return Err(CallError::NotFound(format!(
                        "agent {agent_id} is not known"
                    )));
                }
                let forward = MasterMessage {
                    kind: Some(master_message::Kind::FrameworkMessage(
                        master_message::FrameworkMessage {
                            framework_id: framework_id.to_field(),
                            executor_id: message.executor_id,
                            data: message.data,
                        },
                    )),
                };
                // Refused here rather than forwarded to break the agent's session.
                let size = prost::Message::encoded_len(&forward);
                if size > agora_net::MAX_MESSAGE_BYTES {
                    return Err(CallError::InvalidArgument(format!(
                        "message to agent {agent_id} would be {size} bytes, more than the {} a message may carry",
                        agora_net::MAX_MESSAGE_BYTES
                    )));
                }
                self.send_to_agent(&agent_id, forward, out);
                Ok(())
            }
            Type::Request => Ok(()),
            Type::Shutdown => {
                let shutdown = require(call.shutdown, "shutdown")?;
                self.shutdown_executor(&framework_id, shutdown, out)
            }
            Type::Subscribe => Err(CallError::InvalidArgument(
                "SUBSCRIBE must be sent through the Subscribe stream".into(),
            )),
            Type::Unknown => Err(CallError::InvalidArgument(format!(
                "unknown call type {}",
                call.r#type
            ))),
        };
        if result.is_err() {
            self.counters.invalid_calls += 1;
        }
        result
    }

    fn check_roles(
        &self,
        framework_id: &agora_core::FrameworkId,
        roles: &[String],
    ) -> Result<(), CallError> {
        let framework = &self.frameworks[framework_id];
        for role in roles {
            if !framework.roles.contains(role) {
                return Err(CallError::InvalidArgument(format!(
                    "role '{role}' is not one of the framework's roles"
                )));
            }
        }
        Ok(())
    }

    /// Looks up offers named in a call: each must exist, belong to the
    /// framework, and appear once.
    pub(super) fn check_offers(
        &self,
        framework_id: &agora_core::FrameworkId,
        offer_ids: &[pb::OfferId],
    ) -> Result<Vec<OfferId>, CallError> {
        if offer_ids.is_empty() {
            return Err(CallError::InvalidArgument("no offer ids given".into()));
        }
        let mut seen = BTreeSet::new();
        let mut ids = Vec::with_capacity(offer_ids.len());
        for raw in offer_ids {
            let id = OfferId::new(raw.value.clone());
            if !seen.insert(id.clone()) {
                return Err(CallError::InvalidArgument(format!(
                    "duplicate offer {id} in offer list"
                )));
            }
            match self.offers.get(&id) {
                None => {
                    return Err(CallError::NotFound(format!(
                        "offer {id} is no longer valid (unknown, used, declined or rescinded)"
                    )));
                }
                Some(offer) if &offer.framework_id != framework_id => {
                    return Err(CallError::PermissionDenied(format!(
                        "offer {id} was not made to this framework"
                    )));
                }
                Some(_) => ids.push(id),
            }
        }
        Ok(ids)
    }

    fn decline(
        &mut self,
        now: Now,
        framework_id: &agora_core::FrameworkId,
        offer_ids: &[pb::OfferId],
        filters: Option<&pb::Filters>,
        out: &mut Vec<Effect>,
    ) -> Result<(), CallError> {
        let ids = self.check_offers(framework_id, offer_ids)?;
        let refuse = refuse_duration(filters);
        for id in ids {
            self.counters.offers_declined += 1;
            self.remove_offer(&id, refuse, false, now, out);
        }
        Ok(())
    }

    fn kill(
        &mut self,
        now: Now,
        framework_id: &agora_core::FrameworkId,
        kill: sched::call::Kill,
        out: &mut Vec<Effect>,
    ) -> Result<(), CallError> {
        let task_id = parse_task_id(&kill.task_id)?;
        let framework = &self.frameworks[framework_id];
        let Some(task) = framework.tasks.get(&task_id) else {
            if framework.completed_task(&task_id).is_some() {
                return Ok(());
            }
            // Unknown to the master: answered as an explicit reconciliation
            // of that task (silence while its agent may still re-register).
            let reconcile = sched::call::Reconcile {
                tasks: vec![sched::call::reconcile::Task {
                    task_id: kill.task_id,
                    agent_id: kill.agent_id,
                }],
            };
            return self.reconcile(now, framework_id, reconcile, out);
        };
        if agora_core::task::is_terminal(task.state) {
            return Ok(());
        }
        let agent_id = task.agent_id.clone();
        self.send_to_agent(
            &agent_id,
            MasterMessage {
                kind: Some(master_message::Kind::KillTask(master_message::KillTask {
                    framework_id: framework_id.to_field(),
                    task_id: task_id.to_field(),
                    kill_policy: kill.kill_policy,
                    message: Some("killed by the framework".into()),
                })),
            },
            out,
        );
        Ok(())
    }

    /// SHUTDOWN: the agent stops the executor and every task it runs.
    fn shutdown_executor(
        &mut self,
        framework_id: &agora_core::FrameworkId,
        shutdown: sched::call::Shutdown,
        out: &mut Vec<Effect>,
    ) -> Result<(), CallError> {
        let agent_id = parse_agent_id(&shutdown.agent_id)?;
        let executor_id = require(shutdown.executor_id, "shutdown.executor_id")?;
        agora_core::ExecutorId::from_field(&Some(executor_id.clone()))
            .map_err(|e| CallError::InvalidArgument(format!("shutdown.executor_id: {e}")))?;
        if !self.agents.contains_key(&agent_id) {
            return Err(CallError::NotFound(format!(
                "agent {agent_id} is not known"
            )));
        }
        self.send_to_agent(
            &agent_id,
            MasterMessage {
                kind: Some(master_message::Kind::ShutdownExecutor(
                    master_message::ShutdownExecutor {
                        framework_id: framework_id.to_field(),
                        executor_id: Some(executor_id),
                    },
                )),
            },
            out,
        );
        Ok(())
    }

    /// The acknowledgements of one ACKNOWLEDGE call, each handled as if it
    /// came alone: a refused one changes nothing and stops none of the
    /// others. The call fails with the first refusal (and how many there
    /// were); a call with none, or with more than
    /// [`MAX_ACKNOWLEDGEMENTS`], is refused whole.
    fn acknowledge_all(
        &mut self,
        framework_id: &agora_core::FrameworkId,
        acks: Vec<sched::call::Acknowledge>,
        out: &mut Vec<Effect>,
    ) -> Result<(), CallError> {
        if acks.is_empty() {
            return Err(CallError::InvalidArgument(
                "expecting 'acknowledge' to be present".into(),
            ));
        }
        if acks.len() > MAX_ACKNOWLEDGEMENTS {
            return Err(CallError::InvalidArgument(format!(
                "{} acknowledgements in one call; at most {MAX_ACKNOWLEDGEMENTS}",
                acks.len()
            )));
        }
        let total = acks.len();
        let mut first_refusal = None;
        let mut refused = 0;
        for ack in acks {
            if let Err(e) = self.acknowledge(framework_id, ack, out) {
                refused += 1;
                first_refusal.get_or_insert(e);
            }
        }
        match first_refusal {
            None => Ok(()),
            Some(e) if total == 1 => Err(e),
            Some(e) => Err(e.map_message(|m| {
                format!("{refused} of {total} acknowledgements refused (the others taken); the first: {m}")
            })),
        }
    }

    fn acknowledge(
        &mut self,
        framework_id: &agora_core::FrameworkId,
        ack: sched::call::Acknowledge,
        out: &mut Vec<Effect>,
    ) -> Result<(), CallError> {
        if ack.uuid.len() != 16 {
            return Err(CallError::InvalidArgument(
                "acknowledge.uuid must be the 16 bytes of a uuid".into(),
            ));
        }
        let task_id = parse_task_id(&ack.task_id)?;
        let agent_id = parse_agent_id(&ack.agent_id)?;
        let framework = &self.frameworks[framework_id];
        let acknowledged_terminal = match framework.tasks.get(&task_id) {
            Some(task) => {
                if task.agent_id != agent_id {
                    return Err(CallError::InvalidArgument(format!(
                        "task {task_id} does not run on agent {agent_id}"
                    )));
                }
                task.last_status.as_ref().is_some_and(|s| {
                    s.uuid.as_deref() == Some(ack.uuid.as_slice())
                        && agora_core::task::from_i32(s.state.unwrap_or_default())
                            .is_ok_and(agora_core::task::is_terminal)
                })
            }
            // Already completed: the agent retried its terminal update because
            // the first ack was lost with its stream, and still waits for one.
            None if framework.completed_ids.contains_key(&task_id)
                && framework
                    .completed_tasks
                    .iter()
                    .any(|t| t.id == task_id && t.agent_id == agent_id) =>
            {
                false
            }
            None => {
                return Err(CallError::NotFound(format!(
                    "task {task_id} has no status update waiting for acknowledgement"
                )));
            }
        };
        self.send_to_agent(
            &agent_id,
            MasterMessage {
                kind: Some(master_message::Kind::StatusUpdateAck(
                    master_message::StatusUpdateAck {
                        framework_id: framework_id.to_field(),
                        task_id: task_id.to_field(),
                        uuid: ack.uuid,
                    },
                )),
            },
            out,
        );
        if acknowledged_terminal {
            self.complete_task(framework_id, &task_id);
        }
        Ok(())
    }

    fn reconcile(
        &mut self,
        now: Now,
        framework_id: &agora_core::FrameworkId,
        reconcile: sched::call::Reconcile,
        out: &mut Vec<Effect>,
    ) -> Result<(), CallError> {
        let mut events = Vec::new();
        if reconcile.tasks.is_empty() {
            let framework = &self.frameworks[framework_id];
            let partition_aware = framework.partition_aware();
            events.extend(
                framework
                    .tasks
                    .values()
                    .map(|task| Self::reconciliation_reply(task, partition_aware, now)),
            );
        } else {
            let mut questions = Vec::with_capacity(reconcile.tasks.len());
            for wanted in &reconcile.tasks {
                let task_id = parse_task_id(&wanted.task_id)?;
                let agent_id = match wanted.agent_id {
                    Some(_) => Some(parse_agent_id(&wanted.agent_id)?),
                    None => None,
                };
                questions.push((task_id, agent_id));
            }
            for (task_id, agent_id) in questions {
                match self.reconciliation_answer(framework_id, &task_id, agent_id.as_ref(), now) {
                    Some(event) => events.push(event),
                    // Mesos stays silent while the task's agent may still
                    // re-register after a failover; Agora answers when it does
                    // (`state/deferred.rs`).
                    None => self.defer_reconciliation(framework_id, &task_id, agent_id.as_ref()),
                }
            }
        }
        for event in events {
            self.send_to_framework(framework_id, event, out);
        }
        Ok(())
    }

    /// What an explicit reconciliation answers about one task right now;
    /// `None` while the answer must wait for its agent's re-registration.
    pub(super) fn reconciliation_answer(
        &self,
        framework_id: &agora_core::FrameworkId,
        task_id: &agora_core::TaskId,
        agent_id: Option<&agora_core::AgentId>,
        now: Now,
    ) -> Option<sched::Event> {
        let framework = self.frameworks.get(framework_id)?;
        let partition_aware = framework.partition_aware();
        let known = framework
            .tasks
            .get(task_id)
            .or_else(|| framework.completed_task(task_id));
        if let Some(task) = known {
            return Some(Self::reconciliation_reply(task, partition_aware, now));
        }
        // Mesos' answers (reconciliation.md): none while the task's agent
        // may still re-register after a failover.
        if self.is_recovering(agent_id) {
            return None;
        }
        let state = match agent_id {
            _ if !partition_aware => pb::TaskState::TaskLost,
            Some(a) if self.is_gone(a) => pb::TaskState::TaskGoneByOperator,
            Some(a) if self.is_known_unreachable(a) => pb::TaskState::TaskUnreachable,
            Some(a) if self.agents.contains_key(a) => pb::TaskState::TaskGone,
            _ => pb::TaskState::TaskUnknown,
        };
        Some(Self::master_update(
            task_id,
            agent_id,
            state,
            pb::task_status::Reason::Reconciliation,
            "reconciliation: task unknown to the master",
            now,
        ))
    }

    /// The answer about a task the master knows.
    fn reconciliation_reply(task: &super::Task, partition_aware: bool, now: Now) -> sched::Event {
        // The state the framework is being told (Mesos' status_update_state),
        // not a later one the agent has not delivered yet; and TASK_LOST,
        // not TASK_UNREACHABLE, to frameworks that are not partition-aware.
        let mut state = task.update_state.unwrap_or(task.state);
        if state == pb::TaskState::TaskUnreachable && !partition_aware {
            state = pb::TaskState::TaskLost;
        }
        Self::master_update(
            &task.id,
            Some(&task.agent_id),
            state,
            pb::task_status::Reason::Reconciliation,
            "reconciliation: latest task state",
            now,
        )
    }
}
