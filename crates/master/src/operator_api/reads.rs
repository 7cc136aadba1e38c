//! The operator API's read calls, answered from one published snapshot:
//! its operator view (agents, frameworks, executors, tasks and this
//! master, made by the builders of the event stream) and what the Mesos
//! read endpoints show (flags, metrics, roles, weights, quotas).

use std::collections::BTreeMap;

use agora_proto::v1 as pb;
use agora_proto::v1::master::{Response as OpResponse, call, response};
use agora_proto::v1::quota;

use crate::metrics::MasterMetrics;
use crate::snapshot::StateSnapshot;

/// What a read needs besides the snapshot.
pub(super) struct Context<'a> {
    /// When this master's HTTP API started (wall-clock seconds).
    pub(super) started: f64,
    pub(super) uptime_secs: f64,
    /// Whether this master leads (`master/elected`).
    pub(super) elected: bool,
    /// What the shell measured (`GET_METRICS`).
    pub(super) metrics: &'a MasterMetrics,
}

fn reply(kind: response::Type) -> OpResponse {
    OpResponse {
        r#type: kind as i32,
        ..Default::default()
    }
}

/// Whether a read answers from the snapshot's operator view (the caller
/// then waits for a snapshot that has it).
pub(super) fn needs_view(kind: call::Type) -> bool {
    use call::Type as T;
    matches!(
        kind,
        T::GetState
            | T::GetAgents
            | T::GetFrameworks
            | T::GetExecutors
            | T::GetTasks
            | T::GetMaster
    )
}

/// The answer to a read call; `kind` is one the caller planned as a read.
pub(super) fn answer(
    kind: call::Type,
    snapshot: &StateSnapshot,
    context: &Context<'_>,
) -> OpResponse {
    let view = snapshot.operator.clone().unwrap_or_default();
    let state = &view.state;
    let mut out;
    match kind {
        call::Type::GetHealth => {
            out = reply(response::Type::GetHealth);
            // Mesos' master health is process liveness: it answers, so it is.
            out.get_health = Some(response::GetHealth {
                healthy: Some(true),
            });
        }
        call::Type::GetFlags => {
            out = reply(response::Type::GetFlags);
            out.get_flags = Some(response::GetFlags {
                flags: snapshot
                    .mesos
                    .flags
                    .iter()
                    .map(|(name, value)| pb::Flag {
                        name: name.clone(),
                        value: Some(value.clone()),
                    })
                    .collect(),
            });
        }
        call::Type::GetVersion => {
            out = reply(response::Type::GetVersion);
            out.get_version = Some(response::GetVersion {
                version_info: Some(version_info()),
            });
        }
        call::Type::GetMetrics => {
            out = reply(response::Type::GetMetrics);
            let values = crate::mesos_v0::metrics_snapshot(
                snapshot,
                context.metrics,
                context.elected,
                context.uptime_secs,
            );
            out.get_metrics = Some(response::GetMetrics {
                metrics: values
                    .into_iter()
                    .map(|(name, value)| pb::Metric {
                        name,
                        value: Some(value),
                    })
                    .collect(),
            });
        }
        call::Type::GetLoggingLevel => {
            out = reply(response::Type::GetLoggingLevel);
            // Agora logs through a `--log` filter, not glog's verbosity
            // levels: the level Mesos reports by default.
            out.get_logging_level = Some(response::GetLoggingLevel { level: Some(0) });
        }
        call::Type::GetState => {
            out = reply(response::Type::GetState);
            out.get_state = Some(state.clone());
        }
        call::Type::GetAgents => {
            out = reply(response::Type::GetAgents);
            out.get_agents = Some(state.get_agents.clone().unwrap_or_default());
        }
        call::Type::GetFrameworks => {
            out = reply(response::Type::GetFrameworks);
            out.get_frameworks = Some(state.get_frameworks.clone().unwrap_or_default());
        }
        call::Type::GetExecutors => {
            out = reply(response::Type::GetExecutors);
            out.get_executors = Some(state.get_executors.clone().unwrap_or_default());
        }
        call::Type::GetTasks => {
            out = reply(response::Type::GetTasks);
            out.get_tasks = Some(state.get_tasks.clone().unwrap_or_default());
        }
        call::Type::GetRoles => {
            out = reply(response::Type::GetRoles);
            out.get_roles = Some(get_roles(snapshot));
        }
        call::Type::GetWeights => {
            out = reply(response::Type::GetWeights);
            out.get_weights = Some(response::GetWeights {
                weight_infos: snapshot
                    .weights
                    .iter()
                    .map(|w| pb::WeightInfo {
                        weight: w.weight,
                        role: Some(w.role.clone()),
                    })
                    .collect(),
            });
        }
        call::Type::GetMaster => {
            out = reply(response::Type::GetMaster);
            out.get_master = Some(response::GetMaster {
                master_info: Some(view.master_info.clone()),
                start_time: Some(context.started),
                elected_time: snapshot.elected.then_some(snapshot.start_time),
            });
        }
        call::Type::GetQuota => {
            out = reply(response::Type::GetQuota);
            out.get_quota = Some(get_quota(snapshot));
        }
        // Not a read: `plan` never sends it here.
        _ => out = reply(response::Type::Unknown),
    }
    out
}

/// Mesos' API level as `version`, and Agora's own release where a client
/// can see it: `git_tag` is `agora-<release>` (Agora records no other build
/// details: they are empty, as `/version`'s).
pub(super) fn version_info() -> pb::VersionInfo {
    pb::VersionInfo {
        version: crate::mesos_v0::MESOS_VERSION.to_string(),
        build_date: Some(String::new()),
        build_time: Some(0.0),
        build_user: Some(String::new()),
        git_tag: Some(format!("agora-{}", env!("CARGO_PKG_VERSION"))),
        ..Default::default()
    }
}

/// Scalars by name as unreserved resources, allocated to `role` if given.
fn scalars(values: &BTreeMap<String, f64>, role: Option<&str>) -> Vec<pb::Resource> {
    values
        .iter()
        .map(|(name, value)| pb::Resource {
            name: name.clone(),
            r#type: Some(pb::value::Type::Scalar as i32),
            scalar: Some(pb::value::Scalar { value: *value }),
            allocation_info: role.map(|role| pb::resource::AllocationInfo {
                role: Some(role.to_string()),
            }),
            ..Default::default()
        })
        .collect()
}

fn scalar_map(values: &BTreeMap<String, f64>) -> BTreeMap<String, pb::value::Scalar> {
    values
        .iter()
        .map(|(name, value)| (name.clone(), pb::value::Scalar { value: *value }))
        .collect()
}

/// Every role with frameworks, a weight, a quota or reservations: its
/// weight, its frameworks, and what is allocated to it (scalars).
fn get_roles(snapshot: &StateSnapshot) -> response::GetRoles {
    response::GetRoles {
        roles: snapshot
            .roles
            .iter()
            .map(|role| pb::Role {
                name: role.name.clone(),
                weight: role.weight,
                frameworks: role
                    .frameworks
                    .iter()
                    .map(|id| pb::FrameworkId { value: id.clone() })
                    .collect(),
                resources: scalars(&role.allocated, Some(&role.name)),
            })
            .collect(),
    }
}

/// Every role's quota: as Mesos 1.11's `configs` (guarantees and limits),
/// and its guarantee as the deprecated `infos`.
fn get_quota(snapshot: &StateSnapshot) -> response::GetQuota {
    response::GetQuota {
        status: Some(quota::QuotaStatus {
            infos: snapshot
                .quotas
                .iter()
                .map(|q| quota::QuotaInfo {
                    role: Some(q.role.clone()),
                    principal: None,
                    guarantee: scalars(&q.guarantee, None),
                })
                .collect(),
            configs: snapshot
                .quotas
                .iter()
                .map(|q| quota::QuotaConfig {
                    role: q.role.clone(),
                    guarantees: scalar_map(&q.guarantee).into_iter().collect(),
                    limits: scalar_map(&q.limit).into_iter().collect(),
                })
                .collect(),
        }),
    }
}
