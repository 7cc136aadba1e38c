//! The operator API's changes as the state machine's [`OperatorCall`]s:
//! the same calls the JSON operator endpoints make, so each change has one
//! implementation. Only the shape is checked here; what the change means
//! (roles, weights, free resources, known ids) the state machine checks.

use agora_allocator::Quota;
use agora_core::Resources;
use agora_proto::v1 as pb;
use agora_proto::v1::master::{Call, call};

use crate::state::OperatorCall;

/// Why a call's shape is wrong (answered 400).
pub(super) type Invalid = String;

fn present<T>(field: Option<T>, name: &str) -> Result<T, Invalid> {
    field.ok_or_else(|| format!("expecting '{name}' to be present"))
}

fn id_value(id: Option<&str>, name: &str) -> Result<String, Invalid> {
    match id {
        Some(value) if !value.is_empty() => Ok(value.to_string()),
        _ => Err(format!("expecting '{name}' to be present")),
    }
}

fn resources(list: &[pb::Resource], what: &str) -> Result<Resources, Invalid> {
    Resources::from_proto(list).map_err(|e| format!("{what}: {e}"))
}

/// Scalars by name (a `QuotaConfig`'s guarantees or limits).
fn scalar_resources<'a>(
    values: impl IntoIterator<Item = (&'a String, &'a pb::value::Scalar)>,
    what: &str,
) -> Result<Resources, Invalid> {
    let mut total = Resources::new();
    for (name, scalar) in values {
        let one =
            Resources::scalar(name, scalar.value).map_err(|e| format!("{what} '{name}': {e}"))?;
        total
            .try_add(&one)
            .map_err(|e| format!("{what} '{name}': {e}"))?;
    }
    Ok(total)
}

/// The change a write call asks for; `kind` is the call's type.
pub(super) fn change(kind: call::Type, call: Call) -> Result<OperatorCall, Invalid> {
    use call::Type as T;
    match kind {
        T::UpdateWeights => {
            let update = present(call.update_weights, "update_weights")?;
            let weights = update
                .weight_infos
                .into_iter()
                .map(|info| match info.role {
                    Some(role) if !role.is_empty() => Ok((role, info.weight)),
                    _ => Err("every weight info must name its 'role'".to_string()),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(OperatorCall::SetWeights(weights))
        }
        T::UpdateQuota => {
            let update = present(call.update_quota, "update_quota")?;
            let mut quotas = Vec::new();
            for config in update.quota_configs {
                // A name without a limit is unlimited, as in Mesos.
                let guarantee = scalar_resources(&config.guarantees, "guarantee")?;
                let limit = scalar_resources(&config.limits, "limit")?;
                quotas.push((config.role, Quota { guarantee, limit }));
            }
            Ok(OperatorCall::UpdateQuotas {
                quotas,
                force: update.force.unwrap_or(false),
            })
        }
        T::SetQuota => {
            let request = present(call.set_quota, "set_quota")?;
            let request = present(request.quota_request, "set_quota.quota_request")?;
            let role = id_value(request.role.as_deref(), "set_quota.quota_request.role")?;
            // Mesos' deprecated call: the guarantee is the limit too.
            let guarantee = resources(&request.guarantee, "guarantee")?;
            Ok(OperatorCall::UpdateQuotas {
                quotas: vec![(
                    role,
                    Quota {
                        limit: guarantee.clone(),
                        guarantee,
                    },
                )],
                force: request.force.unwrap_or(false),
            })
        }
        T::RemoveQuota => {
            let remove = present(call.remove_quota, "remove_quota")?;
            Ok(OperatorCall::RemoveQuota(id_value(
                Some(&remove.role),
                "remove_quota.role",
            )?))
        }
        T::ReserveResources => {
            let reserve = present(call.reserve_resources, "reserve_resources")?;
            if !reserve.source.is_empty() {
                return Err(
                    "'source' (changing one reservation into another) is not supported; \
                     unreserve, then reserve"
                        .into(),
                );
            }
            Ok(OperatorCall::Reserve {
                agent_id: id_value(
                    reserve.agent_id.as_ref().map(|a| a.value.as_str()),
                    "reserve_resources.agent_id",
                )?,
                resources: resources(&reserve.resources, "resources")?,
            })
        }
        T::UnreserveResources => {
            let unreserve = present(call.unreserve_resources, "unreserve_resources")?;
            Ok(OperatorCall::Unreserve {
                agent_id: id_value(
                    unreserve.agent_id.as_ref().map(|a| a.value.as_str()),
                    "unreserve_resources.agent_id",
                )?,
                resources: resources(&unreserve.resources, "resources")?,
            })
        }
        T::Teardown => {
            let teardown = present(call.teardown, "teardown")?;
            Ok(OperatorCall::Teardown {
                framework_id: id_value(
                    teardown.framework_id.as_ref().map(|f| f.value.as_str()),
                    "teardown.framework_id",
                )?,
            })
        }
        T::MarkAgentGone => {
            let gone = present(call.mark_agent_gone, "mark_agent_gone")?;
            Ok(OperatorCall::MarkAgentGone {
                agent_id: id_value(
                    gone.agent_id.as_ref().map(|a| a.value.as_str()),
                    "mark_agent_gone.agent_id",
                )?,
            })
        }
        T::KillTask => {
            let kill = present(call.kill_task, "kill_task")?;
            Ok(OperatorCall::KillTask {
                framework_id: kill.framework_id.map(|f| f.value),
                task_id: id_value(
                    kill.task_id.as_ref().map(|t| t.value.as_str()),
                    "kill_task.task_id",
                )?,
                reason: kill.reason,
            })
        }
        other => Err(format!("{} is not a change", other.as_str_name())),
    }
}
