//! Authorization in the state machine: the ACLs of [`super::MasterConfig`]
//! asked, where Mesos asks them, about a framework's subscription (its
//! roles), each task it launches (the user it runs as), the reservations it
//! makes, and every operator change (the caller's principal).
//!
//! The subject of a framework's actions is `FrameworkInfo.principal` (the
//! authentication edge makes sure it is the authenticated one); a
//! framework without one is anonymous. An operator call's subject is the
//! principal the HTTP edge authenticated, or anonymous.

use agora_auth::Principal;
use agora_auth::acl::{Acls, Action};
use agora_core::{FrameworkId, TaskId};
use agora_proto::v1 as pb;

use super::{CallError, Master, OperatorCall, OperatorError};

/// A framework's principal as the ACLs' subject (`None`: anonymous).
pub(super) fn framework_principal(info: &pb::FrameworkInfo) -> Option<Principal> {
    info.principal
        .as_deref()
        .filter(|p| !p.is_empty())
        .map(Principal::new)
}

/// The OS user a task runs as, as Mesos decides it for `run_tasks` and
/// `view_tasks`: its command's user, else its executor's, else the
/// framework's.
pub(super) fn task_user<'a>(framework: &'a pb::FrameworkInfo, task: &'a pb::TaskInfo) -> &'a str {
    let command_user = |c: Option<&'a pb::CommandInfo>| c.and_then(|c| c.user.as_deref());
    command_user(task.command.as_ref())
        .or_else(|| command_user(task.executor.as_ref().and_then(|e| e.command.as_ref())))
        .unwrap_or(framework.user.as_str())
}

/// The subject as the messages name it.
fn who(principal: Option<&Principal>) -> String {
    principal.map_or_else(
        || "an anonymous caller".to_string(),
        |p| format!("principal '{p}'"),
    )
}

impl Master {
    fn acls(&self) -> &Acls {
        &self.config.acls
    }

    /// [`Master::agent_register`] for an agent the shell authenticated as
    /// `principal` (None: not authenticated): `register_agents` first (its
    /// object is implicit: only ANY and NONE rules decide it). A refused
    /// agent is told why and its session closed.
    pub fn agent_register_as(
        &mut self,
        now: super::Now,
        conn: super::ConnId,
        register: agora_proto::v1::agent::agent_message::Register,
        principal: Option<&Principal>,
        out: &mut Vec<super::Effect>,
    ) -> Option<agora_core::AgentId> {
        if !self
            .acls()
            .authorized_any(Action::RegisterAgents, principal)
        {
            super::agents::refuse(
                conn,
                format!("{} is not authorized to register agents", who(principal)),
                out,
            );
            return None;
        }
        self.agent_register(now, conn, register, out)
    }

    /// `register_frameworks`: a framework may subscribe only if it may use
    /// every one of its roles.
    pub(super) fn authorize_subscribe<'a>(
        &self,
        info: &pb::FrameworkInfo,
        roles: impl IntoIterator<Item = &'a String>,
    ) -> Result<(), CallError> {
        let principal = framework_principal(info);
        for role in roles {
            if !self
                .acls()
                .authorized(Action::RegisterFrameworks, principal.as_ref(), role)
            {
                tracing::info!(principal = ?principal, %role, "framework subscription refused by the ACLs");
                return Err(CallError::Unauthorized(format!(
                    "{} is not authorized to register a framework in role '{role}'",
                    who(principal.as_ref())
                )));
            }
        }
        Ok(())
    }

    /// `run_tasks`: `Some(why)` when the framework may not run this task as
    /// its user.
    pub(super) fn refuse_task(
        &self,
        framework: &pb::FrameworkInfo,
        task: &pb::TaskInfo,
    ) -> Option<String> {
        let principal = framework_principal(framework);
        let user = task_user(framework, task);
        if self
            .acls()
            .authorized(Action::RunTasks, principal.as_ref(), user)
        {
            return None;
        }
        Some(format!(
            "{} is not authorized to run tasks as user '{user}'",
            who(principal.as_ref())
        ))
    }

    /// `reserve_resources` for each role of `reserved`, or
    /// `unreserve_resources` (the reserver is not recorded, so only rules
    /// whose `reserver_principals` is ANY or NONE apply).
    pub(super) fn refuse_reservation(
        &self,
        principal: Option<&Principal>,
        reserve: bool,
        resources: &agora_core::Resources,
    ) -> Option<String> {
        if reserve {
            // Reserved resources name their role; `*` is not a reservation
            // (the operation itself refuses it).
            for role in resources.by_role().into_keys().filter(|r| r != "*") {
                if !self
                    .acls()
                    .authorized(Action::ReserveResources, principal, &role)
                {
                    return Some(format!(
                        "{} is not authorized to reserve resources for role '{role}'",
                        who(principal)
                    ));
                }
            }
            None
        } else if self
            .acls()
            .authorized_any(Action::UnreserveResources, principal)
        {
            None
        } else {
            Some(format!(
                "{} is not authorized to unreserve resources",
                who(principal)
            ))
        }
    }

    /// Checks an operator call against the ACLs before anything changes.
    /// Objects the call names but the master does not know (a framework, a
    /// task) are left for the call itself to refuse with 404.
    pub(super) fn authorize_operator(
        &self,
        caller: Option<&Principal>,
        call: &OperatorCall,
    ) -> Result<(), OperatorError> {
        let acls = self.acls();
        let forbidden = |what: String| {
            tracing::info!(caller = ?caller, %what, "operator call refused by the ACLs");
            Err(OperatorError::Forbidden(format!(
                "{} is not authorized to {what}",
                who(caller)
            )))
        };
        match call {
            OperatorCall::SetWeights(weights) => {
                for (role, _) in weights {
                    if !acls.authorized(Action::UpdateWeights, caller, role) {
                        return forbidden(format!("update the weight of role '{role}'"));
                    }
                }
            }
            OperatorCall::UpdateQuotas { quotas, .. } => {
                for (role, _) in quotas {
                    if !acls.authorized(Action::UpdateQuotas, caller, role) {
                        return forbidden(format!("update the quota of role '{role}'"));
                    }
                }
            }
            OperatorCall::RemoveQuota(role) => {
                if !acls.authorized(Action::UpdateQuotas, caller, role) {
                    return forbidden(format!("update the quota of role '{role}'"));
                }
            }
            OperatorCall::Reserve { resources, .. } => {
                if let Some(why) = self.refuse_reservation(caller, true, resources) {
                    return Err(OperatorError::Forbidden(why));
                }
            }
            OperatorCall::Unreserve { resources, .. } => {
                if let Some(why) = self.refuse_reservation(caller, false, resources) {
                    return Err(OperatorError::Forbidden(why));
                }
            }
            OperatorCall::Teardown { framework_id } => {
                if let Some(framework) = FrameworkId::parse(framework_id)
                    .ok()
                    .and_then(|id| self.frameworks.get(&id))
                {
                    let owner = framework.info.principal.as_deref().unwrap_or("");
                    if !acls.authorized(Action::TeardownFrameworks, caller, owner) {
                        return forbidden(format!("tear down framework {framework_id}"));
                    }
                }
            }
            OperatorCall::KillTask {
                framework_id,
                task_id,
                ..
            } => {
                let wanted = framework_id
                    .as_deref()
                    .and_then(|id| FrameworkId::parse(id).ok());
                let task = TaskId::parse(task_id).ok();
                // Every live framework holding a task by that id (the call
                // itself refuses an ambiguous id): each owner must be allowed.
                for framework in self.frameworks.values() {
                    if wanted.as_ref().is_some_and(|id| *id != framework.id) {
                        continue;
                    }
                    if task
                        .as_ref()
                        .is_none_or(|t| !framework.tasks.contains_key(t))
                    {
                        continue;
                    }
                    let owner = framework.info.principal.as_deref().unwrap_or("");
                    if !acls.authorized(Action::KillTasks, caller, owner) {
                        return forbidden(format!(
                            "kill task {task_id} of framework {}",
                            framework.id
                        ));
                    }
                }
            }
            OperatorCall::MarkAgentGone { agent_id } => {
                if !acls.authorized_any(Action::MarkAgentsGone, caller) {
                    return forbidden(format!("mark agent {agent_id} gone"));
                }
            }
        }
        Ok(())
    }
}
