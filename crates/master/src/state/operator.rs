//! Operator calls: role weights, quotas, and reservations made by the
//! operator on an agent's free resources. Each is all-or-nothing: on error
//! nothing changed. Weights and quotas are persisted in the registry
//! ([`Effect::RegistryPolicy`]) and restored by [`Master::recover_policy`].

use std::collections::BTreeMap;

use agora_allocator::Allocator as _;
use agora_allocator::{AllocatorError, Quota, is_role_or_descendant, unreserved_form};
use agora_core::resources::UNRESERVED;
use agora_core::validate_role;
use agora_core::{AgentId, OfferId, Resources};
use serde::{Deserialize, Serialize};

use super::{Effect, Master, Now, RegistryAgent, RegistryAgentState};

/// Why an operator call was refused. Each maps to one HTTP status in
/// `http.rs` (400, 404, 409).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperatorError {
    /// The request is malformed or names something invalid (400).
    #[error("{0}")]
    Invalid(String),
    /// An unknown agent, or a role without the thing asked for (404).
    #[error("{0}")]
    NotFound(String),
    /// Valid, but refused in the current state: over a limit without
    /// `force`, resources not free, an unreachable agent (409).
    #[error("{0}")]
    Conflict(String),
    /// The ACLs (`--acls`) do not allow the caller this change (403).
    #[error("{0}")]
    Forbidden(String),
}

impl From<AllocatorError> for OperatorError {
    fn from(e: AllocatorError) -> Self {
        let message = e.to_string();
        match e {
            AllocatorError::InvalidRole(_)
            | AllocatorError::InvalidWeight { .. }
            | AllocatorError::InvalidQuota { .. } => OperatorError::Invalid(message),
            AllocatorError::InvalidReservation(why) if why.contains("quota limit") => {
                OperatorError::Conflict(message)
            }
            AllocatorError::InvalidReservation(_) => OperatorError::Invalid(message),
            AllocatorError::UnknownAgent(_) | AllocatorError::UnknownFramework(_) => {
                OperatorError::NotFound(message)
            }
            AllocatorError::ExceedsLimit { .. }
            | AllocatorError::GuaranteesExceedCapacity(_)
            | AllocatorError::NotAvailable { .. } => OperatorError::Conflict(message),
        }
    }
}

/// One operator request, as the shell hands it to the state machine.
#[derive(Debug, Clone, PartialEq)]
pub enum OperatorCall {
    /// Sets these roles' weights (others keep theirs).
    SetWeights(Vec<(String, f64)>),
    /// Sets these roles' quotas; `force` skips the limit and capacity checks.
    UpdateQuotas {
        quotas: Vec<(String, Quota)>,
        force: bool,
    },
    RemoveQuota(String),
    /// Reserves free unreserved resources of an agent for the roles named
    /// in `resources` (`cpus(ops):2;mem(ops):512`).
    Reserve {
        agent_id: String,
        resources: Resources,
    },
    /// Makes free reserved resources of an agent unreserved again.
    Unreserve {
        agent_id: String,
        resources: Resources,
    },
    /// Removes a framework for good and kills its tasks (Mesos' TEARDOWN).
    Teardown {
        framework_id: String,
    },
    /// Kills one task (an Agora extension of the operator API). Without a
    /// framework id the task id must name exactly one live task.
    KillTask {
        framework_id: Option<String>,
        task_id: String,
        /// Who asked and why, in the TASK_KILLED message.
        reason: Option<String>,
    },
    /// The agent will never come back: its tasks become TASK_GONE_BY_OPERATOR
    /// and its id may never register again (Mesos' MARK_AGENT_GONE).
    MarkAgentGone {
        agent_id: String,
    },
}

/// A role's quota as the registry keeps it: resources in their text form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistryQuota {
    pub role: String,
    pub guarantee: String,
    pub limit: String,
}

/// Weights and quotas to persist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RegistryPolicy {
    /// Every weight set explicitly (the whole map, under one key).
    Weights(BTreeMap<String, f64>),
    /// A role's quota; `None`: removed.
    Quota {
        role: String,
        quota: Option<RegistryQuota>,
    },
}

impl RegistryPolicy {
    /// The registry key: `weights`, or `quota:<role in hex>` (role names may
    /// hold characters registry keys may not: `/` and more).
    pub fn key(&self) -> String {
        match self {
            RegistryPolicy::Weights(_) => WEIGHTS_KEY.to_string(),
            RegistryPolicy::Quota { role, .. } => quota_key(role),
        }
    }
}

pub const WEIGHTS_KEY: &str = "weights";
pub const QUOTA_KEY_PREFIX: &str = "quota:";

pub fn quota_key(role: &str) -> String {
    let mut key = String::from(QUOTA_KEY_PREFIX);
    for byte in role.as_bytes() {
        key.push_str(&format!("{byte:02x}"));
    }
    key
}

fn registry_quota(role: &str, quota: &Quota) -> RegistryQuota {
    RegistryQuota {
        role: role.to_string(),
        guarantee: quota.guarantee.to_string(),
        limit: quota.limit.to_string(),
    }
}

fn check_role(role: &str) -> Result<(), OperatorError> {
    if role == UNRESERVED {
        return Err(OperatorError::Invalid(
            "role '*' cannot have a weight, quota or reservation".into(),
        ));
    }
    validate_role(role).map_err(|e| OperatorError::Invalid(format!("not a valid role name: {e}")))
}

fn scalars_only(role: &str, what: &str, resources: &Resources) -> Result<(), OperatorError> {
    if resources.allocatable_to("*") != *resources {
        return Err(OperatorError::Invalid(format!(
            "quota {what} of role '{role}' must hold unreserved resources only"
        )));
    }
    Ok(())
}

impl Master {
    /// Carries out an operator call from an anonymous caller. All or
    /// nothing: on error nothing changed.
    pub fn operator(
        &mut self,
        now: Now,
        call: OperatorCall,
        out: &mut Vec<Effect>,
    ) -> Result<(), OperatorError> {
        self.operator_as(now, None, call, out)
    }

    /// Carries out an operator call made by `caller` (None: anonymous),
    /// once the ACLs allow it. All or nothing: on error nothing changed.
    pub fn operator_as(
        &mut self,
        now: Now,
        caller: Option<&agora_auth::Principal>,
        call: OperatorCall,
        out: &mut Vec<Effect>,
    ) -> Result<(), OperatorError> {
        self.authorize_operator(caller, &call)?;
        match call {
            OperatorCall::SetWeights(weights) => self.set_weights(weights, out),
            OperatorCall::UpdateQuotas { quotas, force } => {
                self.update_quotas(now, quotas, force, out)
            }
            OperatorCall::RemoveQuota(role) => self.remove_quota(&role, out),
            OperatorCall::Reserve {
                agent_id,
                resources,
            } => self.reserve(&agent_id, &resources, true, out),
            OperatorCall::Unreserve {
                agent_id,
                resources,
            } => self.reserve(&agent_id, &resources, false, out),
            OperatorCall::Teardown { framework_id } => {
                self.operator_teardown(now, &framework_id, out)
            }
            OperatorCall::KillTask {
                framework_id,
                task_id,
                reason,
            } => self.operator_kill(framework_id.as_deref(), &task_id, reason, out),
            OperatorCall::MarkAgentGone { agent_id } => {
                self.operator_mark_gone(now, &agent_id, out)
            }
        }
    }

    fn set_weights(
        &mut self,
        weights: Vec<(String, f64)>,
        out: &mut Vec<Effect>,
    ) -> Result<(), OperatorError> {
        if weights.is_empty() {
            return Err(OperatorError::Invalid("no weights given".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (role, weight) in &weights {
            check_role(role)?;
            if !(weight.is_finite() && *weight > 0.0) {
                return Err(OperatorError::Invalid(format!(
                    "weight {weight} for role '{role}' must be a positive finite number"
                )));
            }
            if !seen.insert(role.as_str()) {
                return Err(OperatorError::Invalid(format!(
                    "role '{role}' is given twice"
                )));
            }
        }
        self.allocator.set_weights(&weights)?;
        out.push(Effect::RegistryPolicy(RegistryPolicy::Weights(
            self.allocator.weights(),
        )));
        self.needs_allocation = true;
        Ok(())
    }

    fn update_quotas(
        &mut self,
        now: Now,
        quotas: Vec<(String, Quota)>,
        force: bool,
        out: &mut Vec<Effect>,
    ) -> Result<(), OperatorError> {
        if quotas.is_empty() {
            return Err(OperatorError::Invalid("no quota given".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (role, quota) in &quotas {
            check_role(role)?;
            scalars_only(role, "guarantee", &quota.guarantee)?;
            scalars_only(role, "limit", &quota.limit)?;
            if !seen.insert(role.as_str()) {
                return Err(OperatorError::Invalid(format!(
                    "role '{role}' is given twice"
                )));
            }
        }
        let over = self.allocator.update_quotas(&quotas, force)?;
        for (role, quota) in &quotas {
            out.push(Effect::RegistryPolicy(RegistryPolicy::Quota {
                role: role.clone(),
                quota: Some(registry_quota(role, quota)),
            }));
        }
        // Offers of roles now above their limit are taken back.
        if !over.is_empty() {
            let rescind: Vec<OfferId> = self
                .offers
                .values()
                .filter(|o| over.iter().any(|r| is_role_or_descendant(&o.role, r)))
                .map(|o| o.id.clone())
                .collect();
            for offer_id in rescind {
                self.remove_offer(&offer_id, None, true, now, out);
            }
        }
        self.needs_allocation = true;
        Ok(())
    }

    fn remove_quota(&mut self, role: &str, out: &mut Vec<Effect>) -> Result<(), OperatorError> {
        check_role(role)?;
        if !self.allocator.remove_quota(role) {
            return Err(OperatorError::NotFound(format!(
                "role '{role}' has no quota"
            )));
        }
        out.push(Effect::RegistryPolicy(RegistryPolicy::Quota {
            role: role.to_string(),
            quota: None,
        }));
        self.needs_allocation = true;
        Ok(())
    }

    /// RESERVE (`reserve`) or UNRESERVE of free resources on an agent. The
    /// agent's total changes alike in the master's books and the allocator's,
    /// and its registry entry is written again.
    fn reserve(
        &mut self,
        agent_id: &str,
        resources: &Resources,
        reserve: bool,
        out: &mut Vec<Effect>,
    ) -> Result<(), OperatorError> {
        let agent_id = AgentId::parse(agent_id)
            .map_err(|e| OperatorError::Invalid(format!("agent id is invalid: {e}")))?;
        let Some(agent) = self.agents.get(&agent_id) else {
            return Err(OperatorError::NotFound(format!(
                "agent {agent_id} is not known to this master"
            )));
        };
        if agent.unreachable_since.is_some() {
            return Err(OperatorError::Conflict(format!(
                "agent {agent_id} is unreachable"
            )));
        }
        if resources.is_empty() {
            return Err(OperatorError::Invalid("no resources given".into()));
        }
        if !resources.allocatable_to("*").is_empty() {
            return Err(OperatorError::Invalid(
                "every resource must name the role it is reserved for, as in cpus(ops):2".into(),
            ));
        }
        // An operator's reservations are dynamic: UNRESERVE can only ever
        // remove those, never the agent's static `--resources` ones.
        let resources = &resources.as_dynamic();
        let unreserved = unreserved_form(resources);
        if reserve {
            self.allocator.reserve(&agent_id, resources)?;
        } else {
            self.allocator.unreserve(&agent_id, resources)?;
        }
        let agent = self
            .agents
            .get_mut(&agent_id)
            .expect("agent present: looked up above");
        if reserve {
            agent.total.subtract(&unreserved);
            agent.total.add(resources);
        } else {
            agent.total.subtract(resources);
            agent.total.add(&unreserved);
        }
        tracing::info!(
            agent_id = %agent_id,
            resources = %resources,
            reserve,
            "operator changed an agent's reservations"
        );
        out.push(Effect::Registry(RegistryAgent::of(
            agent,
            RegistryAgentState::Admitted,
        )));
        self.affected_agents.insert(agent_id);
        Ok(())
    }

    /// Restores weights and quotas from the registry after a failover.
    /// Quotas are forced: the agents that make up the cluster's capacity
    /// have not re-registered yet.
    pub fn recover_policy(&mut self, weights: BTreeMap<String, f64>, quotas: Vec<RegistryQuota>) {
        let weights: Vec<(String, f64)> = weights.into_iter().collect();
        if !weights.is_empty()
            && let Err(e) = self.allocator.set_weights(&weights)
        {
            tracing::warn!(error = %e, "registry weights refused; roles keep weight 1");
        }
        let mut parsed = Vec::new();
        for q in quotas {
            match (Resources::parse(&q.guarantee), Resources::parse(&q.limit)) {
                (Ok(guarantee), Ok(limit)) => parsed.push((q.role, Quota { guarantee, limit })),
                _ => tracing::warn!(role = %q.role, "unreadable registry quota skipped"),
            }
        }
        for (role, quota) in parsed {
            if let Err(e) = self.allocator.update_quotas(&[(role.clone(), quota)], true) {
                tracing::warn!(role = %role, error = %e, "registry quota refused");
            }
        }
        self.needs_allocation = true;
    }
}
