//! What the master's benches share: a master loaded as after a failover
//! (agents re-registered with their running tasks, then the frameworks
//! re-subscribed) and the `BENCH` line format. The e2e failover bench
//! (`tests/benches/failover.rs`) includes it too, for the same registry
//! and registrations.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use agora_allocator::DrfAllocator;
use agora_master::state::{Master, MasterConfig, Now, RegistryAgent, RegistryAgentState};
use agora_proto::v1 as pb;
use agora_proto::v1::agent::agent_message;
use agora_proto::v1::scheduler as sched;

pub(crate) const FRAMEWORKS: usize = 100;

pub(crate) fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// What `f` returns, and how long it took, in ms. The result is handed
/// back, so the work cannot be optimized away, and dropped by the caller
/// after the clock stopped.
pub(crate) fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let started = std::time::Instant::now();
    let out = std::hint::black_box(f());
    (out, started.elapsed().as_secs_f64() * 1e3)
}

pub(crate) fn report(key: &str, mut samples: Vec<f64>, extra: &str) {
    samples.sort_by(f64::total_cmp);
    println!(
        "BENCH {key} p50_ms={:.2} p99_ms={:.2} max_ms={:.2} runs={}{extra}",
        percentile(&samples, 50.0),
        percentile(&samples, 99.0),
        samples.last().copied().unwrap_or(f64::NAN),
        samples.len()
    );
}

fn framework_info(f: usize) -> pb::FrameworkInfo {
    pb::FrameworkInfo {
        user: "bench".into(),
        name: format!("fw{f}"),
        id: Some(pb::FrameworkId {
            value: format!("old-{f:04}"),
        }),
        failover_timeout: Some(3600.0),
        ..Default::default()
    }
}

/// What the failed leader's registry holds: every agent admitted (so the
/// new master admits them as they come back, without writing first).
pub(crate) fn registry_entries(agents: usize) -> Vec<RegistryAgent> {
    (0..agents)
        .map(|a| RegistryAgent {
            id: format!("old-S{a}"),
            hostname: format!("host{a}"),
            port: 5051,
            resources: "cpus:24;mem:65536".into(),
            state: RegistryAgentState::Admitted,
        })
        .collect()
}

/// The registrations a master receives after a failover: every agent with
/// its id, its running tasks, and their frameworks.
pub(crate) fn registrations(agents: usize, per_agent: usize) -> Vec<agent_message::Register> {
    let task_resources = agora_core::Resources::parse("cpus:0.1;mem:32")
        .expect("valid")
        .to_proto(None);
    let agent_resources =
        agora_core::Resources::parse("cpus:24;mem:65536;disk:100000;ports:[31000-32000]")
            .expect("valid")
            .to_proto(None);
    (0..agents)
        .map(|a| {
            let agent_id = pb::AgentId {
                value: format!("old-S{a}"),
            };
            let mut used = BTreeSet::new();
            let tasks = (0..per_agent)
                .map(|t| {
                    let f = (a * per_agent + t) % FRAMEWORKS;
                    used.insert(f);
                    pb::Task {
                        name: format!("task-{a}-{t}"),
                        task_id: Some(pb::TaskId {
                            value: format!("t-{a}-{t}"),
                        }),
                        framework_id: framework_info(f).id,
                        agent_id: Some(agent_id.clone()),
                        state: Some(pb::TaskState::TaskRunning as i32),
                        resources: task_resources.clone(),
                        ..Default::default()
                    }
                })
                .collect();
            agent_message::Register {
                agent_info: Some(pb::AgentInfo {
                    hostname: format!("host{a}"),
                    port: Some(5051),
                    resources: agent_resources.clone(),
                    attributes: Vec::new(),
                    id: Some(agent_id),
                }),
                version: "bench".into(),
                tasks,
                frameworks: used.into_iter().map(framework_info).collect(),
            }
        })
        .collect()
}

pub(crate) fn at(ms: u64) -> Now {
    Now {
        monotonic: Duration::from_millis(ms),
        wall: ms as f64 / 1000.0,
    }
}

/// A master holding `agents` agents running `per_agent` tasks each, with
/// [`FRAMEWORKS`] frameworks subscribed again; returns it and each
/// framework's stream id, by framework id.
pub(crate) fn loaded_master(agents: usize, per_agent: usize) -> (Master, BTreeMap<String, String>) {
    let info = pb::MasterInfo {
        id: "bench".into(),
        hostname: Some("bench".into()),
        ..Default::default()
    };
    let mut master = Master::new(
        MasterConfig::new(info),
        Box::new(DrfAllocator::with_seed(7)),
    );
    master.recover(at(1), registry_entries(agents), Duration::from_secs(600));
    let mut out = Vec::new();
    for (conn, register) in registrations(agents, per_agent).into_iter().enumerate() {
        master.agent_register(at(1), conn as u64, register, &mut out);
        out.clear();
    }
    let mut streams = BTreeMap::new();
    for f in 0..FRAMEWORKS {
        let info = framework_info(f);
        let stream_id = format!("stream-{f}");
        let call = sched::Call {
            framework_id: info.id.clone(),
            r#type: sched::call::Type::Subscribe as i32,
            subscribe: Some(sched::call::Subscribe {
                framework_info: Some(info),
                suppressed_roles: Vec::new(),
            }),
            ..Default::default()
        };
        let conn = (agents + f) as u64;
        let id = master
            .subscribe(at(1), conn, stream_id.clone(), call, &mut out)
            .expect("framework re-subscribes");
        streams.insert(id.to_string(), stream_id);
        out.clear();
    }
    (master, streams)
}
