//! ACCEPT: validating offer operations and launching tasks.
//!
//! An ACCEPT is all-or-nothing: if any offer or task in it is invalid, nothing
//! is launched, the offers stay outstanding, the call fails with a message
//! saying what was wrong, and every task in it is reported terminal through an
//! UPDATE (so event-driven frameworks learn of it too).

use std::collections::BTreeSet;

use agora_allocator::Allocator as _;
use agora_core::{AgentId, FrameworkId, OfferId, Resources, TaskId};
use agora_proto::v1 as pb;
use agora_proto::v1::agent::{MasterMessage, master_message};
use agora_proto::v1::scheduler as sched;

use super::calls::refuse_duration;
use super::{CallError, Effect, Master, Now, Task};

/// A task that passed validation, ready to launch.
struct Launch {
    task_id: TaskId,
    info: pb::TaskInfo,
    resources: Resources,
}

/// Why a task in an ACCEPT was refused.
struct Refusal {
    state: pb::TaskState,
    reason: pb::task_status::Reason,
    error: CallError,
}

impl Master {
    pub(super) fn accept(
        &mut self,
        now: Now,
        framework_id: &FrameworkId,
        accept: sched::call::Accept,
        out: &mut Vec<Effect>,
    ) -> Result<(), CallError> {
        let task_infos: Vec<&pb::TaskInfo> = accept
            .operations
            .iter()
            .filter_map(|op| op.launch.as_ref())
            .flat_map(|launch| launch.task_infos.iter())
            .collect();
        let partition_aware = self.frameworks[framework_id].partition_aware();
        let not_launched = if partition_aware {
            pb::TaskState::TaskDropped
        } else {
            pb::TaskState::TaskLost
        };

        let checked = self
            .check_offers(framework_id, &accept.offer_ids)
            .and_then(|ids| self.check_same_agent_and_role(ids))
            .map_err(|error| Refusal {
                state: not_launched,
                reason: pb::task_status::Reason::InvalidOffers,
                error,
            })
            .and_then(|(ids, agent_id, role, pool)| {
                let checked = self.check_operations(
                    framework_id,
                    &agent_id,
                    &role,
                    &pool,
                    &accept.operations,
                )?;
                Ok((ids, agent_id, role, checked))
            });
        let (offer_ids, agent_id, role, checked) = match checked {
            Ok(ok) => ok,
            Err(refusal) => {
                self.report_not_launched(framework_id, &task_infos, &refusal, now, out);
                return Err(refusal.error);
            }
        };

        // Reservations first, all or nothing: the allocator may still refuse
        // one, and then nothing changed.
        if let Err(e) =
            self.allocator
                .update_allocations(&agent_id, framework_id, &role, &checked.reservations)
        {
            let refusal = Refusal {
                state: pb::TaskState::TaskError,
                reason: pb::task_status::Reason::TaskInvalid,
                error: CallError::FailedPrecondition(format!("reservation refused: {e}")),
            };
            self.report_not_launched(framework_id, &task_infos, &refusal, now, out);
            return Err(refusal.error);
        }
        if !checked.reservations.is_empty()
            && let Some(agent) = self.agents.get_mut(&agent_id)
        {
            for (from, to) in &checked.reservations {
                agent.total.subtract(from);
                agent.total.add(to);
            }
            // Reservations are kept with the agent's registry entry.
            out.push(Effect::Registry(super::RegistryAgent::of(
                agent,
                super::RegistryAgentState::Admitted,
            )));
        }

        // Commit. The offers' resources stay allocated to the framework: the
        // tasks' part until they end, the rest until recovered just below.
        for offer_id in &offer_ids {
            if let Some(offer) = self.offers.remove(offer_id) {
                self.by_agent.offer_removed(&offer.agent_id, offer_id);
            }
            if let Some(framework) = self.frameworks.get_mut(framework_id) {
                framework.offers.remove(offer_id);
            }
        }
        self.counters.offers_accepted += offer_ids.len() as u64;
        let remaining = checked.remaining;
        for (task_id, why) in checked.unauthorized {
            tracing::info!(framework_id = %framework_id, task_id = %task_id, %why, "task refused by the ACLs");
            let event = Self::master_update(
                &task_id,
                Some(&agent_id),
                pb::TaskState::TaskError,
                pb::task_status::Reason::TaskUnauthorized,
                why,
                now,
            );
            self.send_to_framework(framework_id, event, out);
        }
        let framework_info = self.frameworks[framework_id].info.clone();
        for launch in checked.launches {
            if let Some(agent) = self.agents.get_mut(&agent_id) {
                agent.used.add(&launch.resources);
            }
            let task = Task {
                id: launch.task_id.clone(),
                role: role.clone(),
                name: launch.info.name.clone(),
                framework_id: framework_id.clone(),
                agent_id: agent_id.clone(),
                resources: launch.resources,
                state: pb::TaskState::TaskStaging,
                update_state: None,
                last_status: None,
                resources_released: false,
                user: Some(super::authz::task_user(&framework_info, &launch.info).to_string())
                    .filter(|u| *u != framework_info.user),
            };
            if let Some(framework) = self.frameworks.get_mut(framework_id) {
                let agent_id = task.agent_id.clone();
                self.by_agent
                    .task_added(&agent_id, framework_id, &launch.task_id);
                if let Some(replaced) = framework.tasks.insert(launch.task_id.clone(), task)
                    && replaced.agent_id != agent_id
                {
                    self.by_agent
                        .task_removed(&replaced.agent_id, framework_id, &launch.task_id);
                }
            }
            self.observe_task_added(framework_id, &launch.task_id, out);
            *self
                .counters
                .task_transitions
                .entry("TASK_STAGING")
                .or_default() += 1;
            self.counters.tasks_launched += 1;
            tracing::debug!(framework_id = %framework_id, task_id = %launch.task_id, agent_id = %agent_id, "launching task");
            self.send_to_agent(
                &agent_id,
                MasterMessage {
                    kind: Some(master_message::Kind::RunTask(master_message::RunTask {
                        framework: Some(framework_info.clone()),
                        task: Some(launch.info),
                    })),
                },
                out,
            );
        }
        if !remaining.is_empty() {
            self.allocator.recover_for_role(
                &agent_id,
                framework_id,
                &role,
                &remaining,
                refuse_duration(accept.filters.as_ref()),
                now.monotonic,
            );
            self.affected_agents.insert(agent_id.clone());
        }
        Ok(())
    }

    /// Tells the framework that the tasks of a refused ACCEPT were not
    /// launched; a retried ACCEPT must not report tasks its first copy launched.
    fn report_not_launched(
        &mut self,
        framework_id: &FrameworkId,
        task_infos: &[&pb::TaskInfo],
        refusal: &Refusal,
        now: Now,
        out: &mut Vec<Effect>,
    ) {
        for info in task_infos {
            let Ok(task_id) = TaskId::from_field(&info.task_id) else {
                continue;
            };
            if self.frameworks[framework_id].tasks.contains_key(&task_id) {
                continue;
            }
            let event = Self::master_update(
                &task_id,
                None,
                refusal.state,
                refusal.reason,
                format!("task not launched: {}", refusal.error),
                now,
            );
            self.send_to_framework(framework_id, event, out);
        }
    }

    /// Offers accepted together must be on one agent and for one role.
    fn check_same_agent_and_role(
        &self,
        ids: Vec<OfferId>,
    ) -> Result<(Vec<OfferId>, AgentId, String, Resources), CallError> {
        let first = &self.offers[&ids[0]];
        let (agent_id, role) = (first.agent_id.clone(), first.role.clone());
        let mut pool = Resources::new();
        for id in &ids {
            let offer = &self.offers[id];
            if offer.agent_id != agent_id {
                return Err(CallError::InvalidArgument(
                    "offers accepted together must all be on the same agent".into(),
                ));
            }
            if offer.role != role {
                return Err(CallError::InvalidArgument(
                    "offers accepted together must all be allocated to the same role".into(),
                ));
            }
            pool.add(&offer.resources);
        }
        Ok((ids, agent_id, role, pool))
    }

    fn check_operations(
        &self,
        framework_id: &FrameworkId,
        agent_id: &AgentId,
        role: &str,
        pool: &Resources,
        operations: &[pb::offer::Operation],
    ) -> Result<Checked, Refusal> {
        let invalid = |message: String| Refusal {
            state: pb::TaskState::TaskError,
            reason: pb::task_status::Reason::TaskInvalid,
            error: CallError::InvalidArgument(message),
        };
        let framework = &self.frameworks[framework_id];
        let mut remaining = pool.clone();
        let mut seen = BTreeSet::new();
        let mut launches = Vec::new();
        let mut reservations = Vec::new();
        let mut unauthorized = Vec::new();
        for operation in operations {
            let kind = operation
                .r#type
                .and_then(|t| pb::offer::operation::Type::try_from(t).ok())
                .unwrap_or(pb::offer::operation::Type::Unknown);
            match kind {
                pb::offer::operation::Type::Launch => {}
                pb::offer::operation::Type::Reserve | pb::offer::operation::Type::Unreserve => {
                    let change =
                        check_reservation(operation, kind, role, &remaining).map_err(invalid)?;
                    // `reserve_resources` / `unreserve_resources`: an ACCEPT
                    // is all or nothing, so a refused one refuses it all.
                    let reserve = kind == pb::offer::operation::Type::Reserve;
                    let principal = super::authz::framework_principal(&framework.info);
                    let reserved = if reserve { &change.1 } else { &change.0 };
                    if let Some(why) =
                        self.refuse_reservation(principal.as_ref(), reserve, reserved)
                    {
                        return Err(Refusal {
                            state: pb::TaskState::TaskError,
                            reason: pb::task_status::Reason::TaskUnauthorized,
                            error: CallError::Unauthorized(why),
                        });
                    }
                    remaining.subtract(&change.0);
                    remaining.add(&change.1);
                    reservations.push(change);
                    continue;
                }
                _ => {
                    return Err(invalid(format!(
                        "offer operation {} is not supported yet; LAUNCH, RESERVE and UNRESERVE are",
                        kind.as_str_name()
                    )));
                }
            }
            let launch = operation.launch.as_ref().ok_or_else(|| {
                invalid("expecting 'launch' to be present in a LAUNCH operation".into())
            })?;
            for info in &launch.task_infos {
                let task_id = TaskId::from_field(&info.task_id).map_err(|e| {
                    invalid(format!(
                        "task id '{}' is invalid: {e}",
                        info.task_id.as_ref().map_or("", |t| t.value.as_str())
                    ))
                })?;
                if !seen.insert(task_id.clone()) {
                    return Err(invalid(format!(
                        "task {task_id} appears twice in this call"
                    )));
                }
                if framework.tasks.contains_key(&task_id) {
                    return Err(invalid(format!(
                        "task id {task_id} is already used by a live task of this framework"
                    )));
                }
                // `run_tasks`: a task the framework may not run as its user
                // is reported TASK_ERROR; the others launch.
                if let Some(why) = self.refuse_task(&framework.info, info) {
                    unauthorized.push((task_id, why));
                    continue;
                }
                if info.name.trim().is_empty() {
                    return Err(invalid(format!("task {task_id} has no name")));
                }
                let named_agent = info.agent_id.as_ref().map_or("", |a| a.value.as_str());
                if named_agent != agent_id.as_str() {
                    return Err(invalid(format!(
                        "task {task_id} names agent '{}' but the offers are for agent {agent_id}",
                        named_agent
                    )));
                }
                let has_value = |c: Option<&pb::CommandInfo>| {
                    c.is_some_and(|c| c.value.as_ref().is_some_and(|v| !v.trim().is_empty()))
                };
                if let Some(executor) = &info.executor {
                    // A framework's own executor: it needs an id and a program;
                    // its container is sized by its tasks.
                    agora_core::ExecutorId::from_field(&executor.executor_id).map_err(|e| {
                        invalid(format!("task {task_id} has an invalid executor id: {e}"))
                    })?;
                    if !has_value(executor.command.as_ref()) {
                        return Err(invalid(format!(
                            "task {task_id}'s custom executor has no command to run"
                        )));
                    }
                    if !executor.resources.is_empty() {
                        return Err(invalid(format!(
                            "task {task_id}'s custom executor asks for resources of its own, which Agora does not support yet: give them to its tasks"
                        )));
                    }
                } else if !has_value(info.command.as_ref()) {
                    return Err(invalid(format!("task {task_id} has no command to run")));
                }
                let resources = Resources::from_proto(&info.resources)
                    .map_err(|e| invalid(format!("task {task_id} has invalid resources: {e}")))?;
                if resources.is_empty() {
                    return Err(invalid(format!("task {task_id} uses no resources")));
                }
                if !remaining.contains(&resources) {
                    return Err(invalid(format!(
                        "task {task_id} asks for {resources} but only {remaining} remain in the offers"
                    )));
                }
                remaining.subtract(&resources);
                let mut info = info.clone();
                info.resources = resources.to_proto(None);
                // Checked before anything changes: a message the agent
                // cannot decode would break its session and lose the task.
                let size = run_task_len(&framework.info, &info);
                if size > agora_net::MAX_MESSAGE_BYTES {
                    return Err(invalid(format!(
                        "task {task_id} cannot be sent to its agent: its launch message would be {size} bytes, more than the {} a message may carry",
                        agora_net::MAX_MESSAGE_BYTES
                    )));
                }
                launches.push(Launch {
                    task_id,
                    info,
                    resources,
                });
            }
        }
        Ok(Checked {
            launches,
            reservations,
            unauthorized,
            remaining,
        })
    }
}

/// The encoded size of the `RunTask` message that launches `task`, without
/// building it: `MasterMessage { run_task (2): { framework (1), task (2) } }`.
pub(super) fn run_task_len(framework: &pb::FrameworkInfo, task: &pb::TaskInfo) -> usize {
    use prost::Message as _;
    // One byte of key (field numbers below 16), the length, the body.
    let field = |len: usize| 1 + prost::encoding::encoded_len_varint(len as u64) + len;
    field(field(framework.encoded_len()) + field(task.encoded_len()))
}

/// Checks a RESERVE or UNRESERVE against what remains of the offers; returns
/// the resources it changes, from and to (same quantities, the reservation
/// added or removed). A framework reserves for, and unreserves from, the
/// role its offers were allocated to.
fn check_reservation(
    operation: &pb::offer::Operation,
    kind: pb::offer::operation::Type,
    role: &str,
    remaining: &Resources,
) -> Result<(Resources, Resources), String> {
    let reserve = kind == pb::offer::operation::Type::Reserve;
    let listed = if reserve {
        operation.reserve.as_ref().map(|r| &r.resources)
    } else {
        operation.unreserve.as_ref().map(|u| &u.resources)
    }
    .ok_or_else(|| {
        format!(
            "expecting '{}' to be present",
            if reserve { "reserve" } else { "unreserve" }
        )
    })?;
    // A framework's reservations are dynamic: its UNRESERVE can never
    // remove the agent's static ones.
    let reserved = Resources::from_proto(listed)
        .map_err(|e| format!("invalid resources: {e}"))?
        .as_dynamic();
    if reserved.is_empty() {
        return Err("the operation names no resources".into());
    }
    if role == agora_core::resources::UNRESERVED {
        return Err("resources offered to role '*' cannot be reserved or unreserved".into());
    }
    if agora_allocator::reserved_for(&reserved, role) != reserved {
        return Err(format!(
            "{reserved} must all be reserved for role '{role}', the offers' role"
        ));
    }
    let unreserved = agora_allocator::unreserved_form(&reserved);
    let (from, to) = if reserve {
        (unreserved, reserved)
    } else {
        (reserved, unreserved)
    };
    if !remaining.contains(&from) {
        return Err(format!(
            "the operation needs {from} but only {remaining} remain in the offers"
        ));
    }
    Ok((from, to))
}

/// An ACCEPT's operations, checked: what to reserve or unreserve (from, to),
/// what to launch, and what remains of the offers afterwards.
struct Checked {
    launches: Vec<Launch>,
    reservations: Vec<(Resources, Resources)>,
    /// Tasks the ACLs refused (`run_tasks`), with why: not launched.
    unauthorized: Vec<(TaskId, String)>,
    remaining: Resources,
}
