//! Operator control of running work: tear a framework down, kill one task,
//! mark an agent gone. These change no policy, so they write nothing to the
//! registry but what the actions themselves write (a gone agent's entry).

use agora_core::{AgentId, FrameworkId, TaskId};
use agora_proto::v1::agent::{MasterMessage, master_message};

use super::{Effect, GoneCause, Master, Now, OperatorError};

/// The longest reason an operator may give (it travels in status updates).
const MAX_REASON_BYTES: usize = 1024;

impl Master {
    pub(super) fn operator_teardown(
        &mut self,
        now: Now,
        framework_id: &str,
        out: &mut Vec<Effect>,
    ) -> Result<(), OperatorError> {
        let id = FrameworkId::parse(framework_id)
            .map_err(|e| OperatorError::Invalid(format!("framework id: {e}")))?;
        if !self.frameworks.contains_key(&id) {
            return Err(OperatorError::NotFound(format!(
                "framework {framework_id} is not registered (it may have been removed already)"
            )));
        }
        tracing::info!(framework_id = %id, "framework torn down by an operator");
        self.remove_framework(&id, now, out);
        Ok(())
    }

    pub(super) fn operator_kill(
        &mut self,
        framework_id: Option<&str>,
        task_id: &str,
        reason: Option<String>,
        out: &mut Vec<Effect>,
    ) -> Result<(), OperatorError> {
        let task_id =
            TaskId::parse(task_id).map_err(|e| OperatorError::Invalid(format!("task id: {e}")))?;
        let framework_filter = framework_id
            .map(FrameworkId::parse)
            .transpose()
            .map_err(|e| OperatorError::Invalid(format!("framework id: {e}")))?;
        if reason.as_ref().is_some_and(|r| r.len() > MAX_REASON_BYTES) {
            return Err(OperatorError::Invalid(format!(
                "the reason may be at most {MAX_REASON_BYTES} bytes"
            )));
        }
        let live: Vec<(FrameworkId, AgentId)> = self
            .frameworks
            .values()
            .filter(|f| framework_filter.as_ref().is_none_or(|id| *id == f.id))
            .filter_map(|f| f.tasks.get(&task_id).map(|t| (f.id.clone(), t)))
            .filter(|(_, t)| !agora_core::task::is_terminal(t.state))
            .map(|(f, t)| (f, t.agent_id.clone()))
            .collect();
        let (framework_id, agent_id) = match live.as_slice() {
            [one] => one.clone(),
            [] => {
                return Err(OperatorError::NotFound(format!(
                    "no running task {task_id}{}",
                    framework_filter
                        .map(|f| format!(" of framework {f}"))
                        .unwrap_or_default()
                )));
            }
            several => {
                let owners: Vec<String> = several.iter().map(|(f, _)| f.to_string()).collect();
                return Err(OperatorError::Invalid(format!(
                    "task id {task_id} is running in several frameworks ({}); name the framework",
                    owners.join(", ")
                )));
            }
        };
        let message = match reason.as_deref().map(str::trim) {
            Some(reason) if !reason.is_empty() => format!("killed by an operator: {reason}"),
            _ => "killed by an operator".to_string(),
        };
        tracing::info!(framework_id = %framework_id, task_id = %task_id, %message, "task killed by an operator");
        self.send_to_agent(
            &agent_id,
            MasterMessage {
                kind: Some(master_message::Kind::KillTask(master_message::KillTask {
                    framework_id: framework_id.to_field(),
                    task_id: task_id.to_field(),
                    kill_policy: None,
                    message: Some(message),
                })),
            },
            out,
        );
        Ok(())
    }

    pub(super) fn operator_mark_gone(
        &mut self,
        now: Now,
        agent_id: &str,
        out: &mut Vec<Effect>,
    ) -> Result<(), OperatorError> {
        let id = AgentId::parse(agent_id)
            .map_err(|e| OperatorError::Invalid(format!("agent id: {e}")))?;
        if self.is_gone(&id) {
            return Ok(());
        }
        if !self.agents.contains_key(&id) {
            return Err(OperatorError::NotFound(format!(
                "agent {agent_id} is not known"
            )));
        }
        self.mark_gone(
            &id,
            ("marked gone by an operator", GoneCause::Operator),
            now,
            out,
        );
        Ok(())
    }
}
