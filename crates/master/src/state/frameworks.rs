//! Framework subscription, failover and removal.

use std::collections::BTreeSet;
use std::time::Duration;

use agora_allocator::Allocator as _;
use agora_core::time::{deadline, duration_from_secs};
use agora_core::validate_role;
use agora_core::{FrameworkId, OfferId};
use agora_proto::v1 as pb;
use agora_proto::v1::agent::{MasterMessage, master_message};
use agora_proto::v1::scheduler as sched;

use super::{CallError, ConnId, Effect, Framework, Master, Now};

/// Longest failover timeout accepted: Mesos' bound, what a `Duration` of
/// signed 64-bit nanoseconds holds (about 292 years). Frameworks use huge
/// values to mean "never give up on me" (Spark's cluster dispatcher sends
/// `Integer.MAX_VALUE` seconds), and Mesos accepts them, so Agora must too;
/// deadlines saturate, so no value here can overflow one.
const MAX_FAILOVER_TIMEOUT_SECS: f64 = 9_223_372_036.0;

fn validate_framework_info(info: &pb::FrameworkInfo) -> Result<BTreeSet<String>, CallError> {
    let invalid = |m: String| Err(CallError::InvalidArgument(m));
    if info.name.trim().is_empty() {
        return invalid("framework_info.name must not be empty".into());
    }
    if info.user.trim().is_empty() {
        return invalid("framework_info.user must not be empty".into());
    }
    let roles: Vec<String> = if !info.roles.is_empty() {
        if info.role.is_some() {
            return invalid(
                "framework_info.role and framework_info.roles must not both be set".into(),
            );
        }
        // Agora accepts `roles` with or without the MULTI_ROLE capability.
        info.roles.clone()
    } else {
        vec![info.role.clone().unwrap_or_else(|| "*".to_string())]
    };
    let mut unique = BTreeSet::new();
    for role in roles {
        if let Err(e) = validate_role(&role) {
            return invalid(format!("not a valid role name: {e}"));
        }
        if !unique.insert(role.clone()) {
            return invalid(format!("role '{role}' is given twice"));
        }
    }
    if let Some(timeout) = info.failover_timeout
        && !(timeout.is_finite() && (0.0..=MAX_FAILOVER_TIMEOUT_SECS).contains(&timeout))
    {
        return invalid(format!(
            "framework_info.failover_timeout must be between 0 and {MAX_FAILOVER_TIMEOUT_SECS} seconds"
        ));
    }
    Ok(unique)
}

impl Master {
    /// A framework opens its event stream. `stream_id` is fresh and unique
    /// (the shell makes it); later calls must carry it. The caller is not
    /// authenticated: see [`Master::subscribe_as`].
    pub fn subscribe(
        &mut self,
        now: Now,
        conn: ConnId,
        stream_id: String,
        call: sched::Call,
        out: &mut Vec<Effect>,
    ) -> Result<FrameworkId, CallError> {
        self.subscribe_as(now, conn, stream_id, call, None, out)
    }

    /// [`Master::subscribe`] by a caller the shell authenticated as
    /// `authenticated` (None: not authenticated). An authenticated
    /// framework's `framework_info.principal` must be its principal (Mesos
    /// answers 400 otherwise), and no framework's principal may change
    /// when it subscribes again (so a failed-over scheduler is the same
    /// principal as the one it replaces).
    pub fn subscribe_as(
        &mut self,
        now: Now,
        conn: ConnId,
        stream_id: String,
        call: sched::Call,
        authenticated: Option<&agora_auth::Principal>,
        out: &mut Vec<Effect>,
    ) -> Result<FrameworkId, CallError> {
        if call.r#type != sched::call::Type::Subscribe as i32 {
            return Err(CallError::InvalidArgument(
                "expected a SUBSCRIBE call".into(),
            ));
        }
        let subscribe = call.subscribe.ok_or_else(|| {
            CallError::InvalidArgument("expecting 'subscribe' to be present".into())
        })?;
        let mut info = subscribe.framework_info.ok_or_else(|| {
            CallError::InvalidArgument("expecting 'subscribe.framework_info' to be present".into())
        })?;
        let roles = validate_framework_info(&info)?;
        if let Some(principal) = authenticated
            && info.principal.as_deref() != Some(principal.as_str())
        {
            return Err(CallError::InvalidArgument(format!(
                "the authenticated principal '{principal}' does not match framework_info.principal ({})",
                info.principal
                    .as_deref()
                    .map_or_else(|| "unset".to_string(), |p| format!("'{p}'"))
            )));
        }
        for role in &subscribe.suppressed_roles {
            if !roles.contains(role) {
                return Err(CallError::InvalidArgument(format!(
                    "suppressed role '{role}' is not one of the framework's roles"
                )));
            }
        }
        // `register_frameworks`, for every role, before anything changes.
        self.authorize_subscribe(&info, &roles)?;
        let requested_id = match (&info.id, &call.framework_id) {
            (Some(a), Some(b)) if a.value != b.value => {
                return Err(CallError::InvalidArgument(
                    "framework_id does not match subscribe.framework_info.id".into(),
                ));
            }
            (Some(id), _) => Some(FrameworkId::parse(id.value.clone()).map_err(|e| {
                CallError::InvalidArgument(format!("framework id is invalid: {e}"))
            })?),
            (None, _) => None,
        };

        let framework_id = match requested_id {
            Some(id) if self.removed_frameworks.contains(&id) => {
                return Err(CallError::FailedPrecondition(format!(
                    "framework {id} has been removed and cannot subscribe again"
                )));
            }
            Some(id) => id,
            None => {
                let id = FrameworkId::new(format!(
                    "{}-{:04}-{:016x}",
                    self.config.master_info.id,
                    self.next_framework,
                    rand::Rng::random::<u64>(&mut self.framework_ids)
                ));
                self.next_framework += 1;
                id
            }
        };
        info.id = framework_id.to_field();

        let known = self.frameworks.contains_key(&framework_id);
        if let Some(existing) = self.frameworks.get(&framework_id)
            && existing.info.principal != info.principal
        {
            return Err(CallError::InvalidArgument(format!(
                "framework {framework_id} cannot change its principal when it subscribes again"
            )));
        }
        if let Some(existing) = self.frameworks.get(&framework_id) {
            // Failover: the new subscription replaces the old one. Offers made
            // to the old stream are discarded (the new stream gets new ones).
            if let Some(old_conn) = existing.conn {
                super::push_event(old_conn, error_event("framework failed over"), out);
                out.push(Effect::CloseFramework { conn: old_conn });
                self.framework_conns.remove(&old_conn);
            }
            let old_offers: Vec<OfferId> = existing.offers.iter().cloned().collect();
            for offer_id in old_offers {
                self.remove_offer(&offer_id, None, false, now, out);
            }
            let framework = self
                .frameworks
                .get_mut(&framework_id)
                .expect("framework present: looked up above");
            // `user` and `checkpoint` cannot change on re-subscription (Mesos' rule).
            info.user = framework.info.user.clone();
            info.checkpoint = framework.info.checkpoint;
            framework.info = info;
            framework.roles = roles.clone();
            framework.conn = Some(conn);
            framework.stream_id = stream_id.clone();
            framework.failover_deadline = None;
            framework.reregistered_at = Some(now.wall);
            framework.disconnected_at = None;
            tracing::info!(framework_id = %framework_id, "framework re-subscribed");
        } else {
            tracing::info!(framework_id = %framework_id, name = %info.name, "framework subscribed");
            self.frameworks.insert(
                framework_id.clone(),
                Framework {
                    id: framework_id.clone(),
                    info,
                    roles: roles.clone(),
                    conn: Some(conn),
                    stream_id: stream_id.clone(),
                    registered_at: now.wall,
                    reregistered_at: None,
                    disconnected_at: None,
                    failover_deadline: None,
                    tasks: Default::default(),
                    completed_tasks: Default::default(),
                    completed_ids: Default::default(),
                    offers: BTreeSet::new(),
                },
            );
        }
        self.framework_conns.insert(conn, framework_id.clone());
        let suppressed: BTreeSet<String> = subscribe.suppressed_roles.into_iter().collect();
        self.allocator
            .add_framework(framework_id.clone(), roles, suppressed);
        self.needs_allocation = true;
        if known {
            self.observe_framework_updated(&framework_id, out);
        } else {
            self.observe_framework_added(&framework_id, out);
        }

        super::push_event(
            conn,
            sched::Event {
                r#type: sched::event::Type::Subscribed as i32,
                subscribed: Some(sched::event::Subscribed {
                    framework_id: framework_id.to_field(),
                    heartbeat_interval_seconds: Some(self.config.heartbeat_interval.as_secs_f64()),
                    master_info: Some(self.config.master_info.clone()),
                    stream_id,
                }),
                ..Default::default()
            },
            out,
        );
        Ok(framework_id)
    }

    /// A call (other than SUBSCRIBE) by a caller authenticated as
    /// `authenticated`: refused unless that is the framework's principal,
    /// as Mesos answers (400), so that a stream id alone never lets another
    /// principal act for a framework. An unauthenticated caller, or a
    /// framework this master does not know, is left to [`Master::call`].
    pub fn check_call_principal(
        &self,
        call: &sched::Call,
        authenticated: Option<&agora_auth::Principal>,
    ) -> Result<(), CallError> {
        let Some(principal) = authenticated else {
            return Ok(());
        };
        let Some(framework) = call
            .framework_id
            .as_ref()
            .and_then(|id| FrameworkId::parse(id.value.clone()).ok())
            .and_then(|id| self.frameworks.get(&id))
        else {
            return Ok(());
        };
        if framework.info.principal.as_deref() == Some(principal.as_str()) {
            return Ok(());
        }
        Err(CallError::InvalidArgument(format!(
            "the authenticated principal '{principal}' does not match the framework's principal ({})",
            framework
                .info
                .principal
                .as_deref()
                .map_or_else(|| "unset".to_string(), |p| format!("'{p}'"))
        )))
    }

    /// A framework's event stream ended. Its offers go back, and it has
    /// `failover_timeout` to come back before it is removed with its tasks.
    pub fn framework_disconnected(&mut self, now: Now, conn: ConnId, out: &mut Vec<Effect>) {
        let Some(framework_id) = self.framework_conns.remove(&conn) else {
            return;
        };
        let Some(framework) = self.frameworks.get_mut(&framework_id) else {
            return;
        };
        if framework.conn != Some(conn) {
            return;
        }
        framework.conn = None;
        framework.disconnected_at = Some(now.wall);
        let timeout = framework.info.failover_timeout.unwrap_or(0.0);
        let after = duration_from_secs(timeout).unwrap_or(Duration::ZERO);
        framework.failover_deadline = Some(deadline(now.monotonic, after));
        let offers: Vec<OfferId> = framework.offers.iter().cloned().collect();
        self.allocator.set_framework_active(&framework_id, false);
        for offer_id in offers {
            self.remove_offer(&offer_id, None, false, now, out);
        }
        self.observe_framework_updated(&framework_id, out);
        tracing::info!(framework_id = %framework_id, failover_timeout_secs = timeout, "framework disconnected");
        // A zero timeout removes it at the next tick, as in Mesos.
    }

    /// Removes a framework for good: its offers go back, its tasks are killed
    /// (TASK_KILLED with REASON_FRAMEWORK_REMOVED) and its id can never
    /// subscribe again.
    pub fn remove_framework(
        &mut self,
        framework_id: &FrameworkId,
        now: Now,
        out: &mut Vec<Effect>,
    ) {
        let Some(framework) = self.frameworks.get(framework_id) else {
            return;
        };
        if let Some(conn) = framework.conn {
            super::push_event(conn, error_event("framework has been removed"), out);
            out.push(Effect::CloseFramework { conn });
            self.framework_conns.remove(&conn);
        }
        let offers: Vec<OfferId> = framework.offers.iter().cloned().collect();
        for offer_id in offers {
            self.remove_offer(&offer_id, None, false, now, out);
        }
        // Every connected agent is told, as Mesos' master does, not only
        // those with a live task of the framework: a custom executor whose
        // tasks have all ended runs on with nothing of it in `tasks`, and
        // only its agent's shutdown stops it. An agent with nothing of the
        // framework ignores the message. One that is away hears it when it
        // re-registers and reports the framework (`agent_register`).
        let connected: Vec<ConnId> = self.agents.values().filter_map(|a| a.conn).collect();
        for conn in connected {
            out.push(Effect::ToAgent {
                conn,
                message: Box::new(MasterMessage {
                    kind: Some(master_message::Kind::ShutdownFramework(
                        master_message::ShutdownFramework {
                            framework_id: framework_id.to_field(),
                        },
                    )),
                }),
            });
        }
        let framework = self
            .frameworks
            .get(framework_id)
            .expect("framework present: looked up above");
        let task_ids: Vec<_> = framework.tasks.keys().cloned().collect();
        for task_id in task_ids {
            let task = &self.frameworks[framework_id].tasks[&task_id];
            if !agora_core::task::is_terminal(task.state) {
                // Nobody is told but operators: the framework is gone.
                let status = Self::master_status(
                    &task_id,
                    Some(&task.agent_id),
                    pb::TaskState::TaskKilled,
                    pb::task_status::Reason::FrameworkRemoved,
                    "the framework was removed",
                    now,
                );
                let state = pb::TaskState::TaskKilled;
                self.set_task_state(framework_id, &task_id, state, &status, now, out);
            }
            self.complete_task(framework_id, &task_id);
        }
        self.allocator.remove_framework(framework_id);
        self.needs_allocation = true;
        if let Some(recovery) = self.recovery.as_mut() {
            recovery.deferred.forget_framework(framework_id);
        }
        if let Some(mut framework) = self.frameworks.remove(framework_id) {
            for task in framework.tasks.values() {
                self.by_agent
                    .task_removed(&task.agent_id, framework_id, &task.id);
            }
            framework.conn = None;
            framework.failover_deadline = None;
            // A completed framework's `unregistered_time` is when it ended, as in Mesos.
            framework.disconnected_at = Some(now.wall);
            self.observe_framework_removed(&framework.info, out);
            self.completed_frameworks.push_back(framework);
            while self.completed_frameworks.len() > self.config.max_completed_frameworks {
                self.completed_frameworks.pop_front();
            }
        }
        if self.removed_frameworks.insert(framework_id.clone()) {
            self.removed_order.push_back(framework_id.clone());
        }
        while self.removed_order.len() > super::MAX_REMOVED_FRAMEWORK_IDS {
            if let Some(oldest) = self.removed_order.pop_front() {
                self.removed_frameworks.remove(&oldest);
            }
        }
        tracing::info!(framework_id = %framework_id, "framework removed");
    }

    /// Checks that a call comes from the framework's live subscription.
    pub(super) fn check_caller(
        &self,
        framework_id: &str,
        stream_id: &str,
    ) -> Result<FrameworkId, CallError> {
        let id = FrameworkId::parse(framework_id)
            .map_err(|e| CallError::InvalidArgument(format!("framework id is invalid: {e}")))?;
        if self.removed_frameworks.contains(&id) {
            return Err(CallError::FailedPrecondition(format!(
                "framework {id} has been removed"
            )));
        }
        let framework = self.frameworks.get(&id).ok_or_else(|| {
            CallError::NotFound(format!("framework {id} is not known to this master"))
        })?;
        if framework.conn.is_none() {
            return Err(CallError::PermissionDenied(format!(
                "framework {id} is not subscribed"
            )));
        }
        if framework.stream_id != stream_id {
            return Err(CallError::InvalidArgument(
                "the call's stream id does not match the framework's subscription".into(),
            ));
        }
        Ok(id)
    }
}

pub(super) fn error_event(message: &str) -> sched::Event {
    sched::Event {
        r#type: sched::event::Type::Error as i32,
        error: Some(sched::event::Error {
            message: message.to_string(),
        }),
        ..Default::default()
    }
}
