//! `/metrics/snapshot`: Mesos' flat metrics object (`{"master/elected":
//! 1.0, ...}`), from the same sources as the Prometheus `/metrics`
//! ([`crate::metrics`]): the published snapshot with its counters, and the
//! shell's measurements.
//!
//! As in Mesos, `master/tasks_{staging,starting,running,killing,unreachable}`
//! are gauges (live tasks in that state) and the terminal ones
//! (`finished`, `killed`, `failed`, `lost`, `error`, `dropped`, `gone`,
//! `gone_by_operator`) are counters: transitions into that state this
//! leadership term has seen. `master/*_percent` are ratios (0 to 1). Numbers
//! Mesos has no name for are under `agora/master/`.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use agora_core::resources::SummaryValue;

use crate::metrics::MasterMetrics;
use crate::snapshot::StateSnapshot;

/// The gauge task states (Mesos counts live tasks in them).
const GAUGE_STATES: [(&str, &str); 6] = [
    ("staging", "TASK_STAGING"),
    ("starting", "TASK_STARTING"),
    ("running", "TASK_RUNNING"),
    ("killing", "TASK_KILLING"),
    ("unreachable", "TASK_UNREACHABLE"),
    ("unknown", "TASK_UNKNOWN"),
];

/// The counter task states (Mesos counts transitions into them).
const COUNTER_STATES: [(&str, &str); 8] = [
    ("finished", "TASK_FINISHED"),
    ("killed", "TASK_KILLED"),
    ("failed", "TASK_FAILED"),
    ("lost", "TASK_LOST"),
    ("error", "TASK_ERROR"),
    ("dropped", "TASK_DROPPED"),
    ("gone", "TASK_GONE"),
    ("gone_by_operator", "TASK_GONE_BY_OPERATOR"),
];

fn scalar(summary: &BTreeMap<String, SummaryValue>, name: &str) -> f64 {
    match summary.get(name) {
        Some(SummaryValue::Number(n)) => *n,
        _ => 0.0,
    }
}

/// The metrics of `snapshot`, `metrics` and this master's leadership;
/// `uptime_secs` is how long this master has served.
pub fn metrics_snapshot(
    snapshot: &StateSnapshot,
    metrics: &MasterMetrics,
    elected: bool,
    uptime_secs: f64,
) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let mut set = |name: &str, value: f64| {
        out.insert(name.to_string(), value);
    };
    set("master/elected", f64::from(u8::from(elected)));
    set("master/uptime_secs", uptime_secs);

    // Resources of the agents Mesos counts as registered (not unreachable).
    let registered: Vec<_> = snapshot
        .agents
        .iter()
        .filter(|a| a.status != "unreachable")
        .collect();
    for name in ["cpus", "mem", "disk", "gpus"] {
        let total: f64 = registered.iter().map(|a| scalar(&a.resources, name)).sum();
        let used: f64 = registered.iter().map(|a| scalar(&a.used, name)).sum();
        set(&format!("master/{name}_total"), total);
        set(&format!("master/{name}_used"), used);
        let percent = if total > 0.0 { used / total } else { 0.0 };
        set(&format!("master/{name}_percent"), percent);
    }

    let agents_in = |status: &str| {
        snapshot
            .agents
            .iter()
            .filter(|a| a.status == status)
            .count() as f64
    };
    let (active, disconnected) = (agents_in("active"), agents_in("disconnected"));
    set("master/slaves_active", active);
    set("master/slaves_inactive", disconnected);
    set("master/slaves_connected", active);
    set("master/slaves_disconnected", disconnected);
    set("master/slaves_unreachable", agents_in("unreachable"));

    // Agora's frameworks are active exactly while connected.
    let connected = snapshot.frameworks.iter().filter(|f| f.active).count() as f64;
    let idle = snapshot.frameworks.len() as f64 - connected;
    set("master/frameworks_active", connected);
    set("master/frameworks_inactive", idle);
    set("master/frameworks_connected", connected);
    set("master/frameworks_disconnected", idle);
    set(
        "master/outstanding_offers",
        snapshot.outstanding_offers as f64,
    );

    let mut live: BTreeMap<&str, f64> = BTreeMap::new();
    for framework in snapshot
        .frameworks
        .iter()
        .chain(&snapshot.completed_frameworks)
    {
        for task in &framework.tasks {
            *live.entry(task.state).or_default() += 1.0;
        }
    }
    for (short, state) in GAUGE_STATES {
        set(
            &format!("master/tasks_{short}"),
            live.get(state).copied().unwrap_or(0.0),
        );
    }
    let counters = &snapshot.counters;
    for (short, state) in COUNTER_STATES {
        let entered = counters.task_transitions.get(state).copied().unwrap_or(0);
        set(&format!("master/tasks_{short}"), entered as f64);
    }

    set(
        "master/slave_registrations",
        counters.agent_registrations as f64,
    );
    set(
        "master/slave_reregistrations",
        counters.agent_reregistrations as f64,
    );
    set("master/slave_removals", counters.agent_removals as f64);
    set(
        "master/slave_unreachable_completed",
        counters.agents_marked_unreachable as f64,
    );
    set(
        "allocator/mesos/allocation_runs",
        (metrics.allocation_periodic.count() + metrics.allocation_event.count()) as f64,
    );

    // Agora's own numbers, under its own prefix.
    set("agora/master/offers_sent", counters.offers_sent as f64);
    set(
        "agora/master/offers_declined",
        counters.offers_declined as f64,
    );
    set(
        "agora/master/offers_accepted",
        counters.offers_accepted as f64,
    );
    set(
        "agora/master/offers_rescinded",
        counters.offers_rescinded as f64,
    );
    set(
        "agora/master/tasks_launched",
        counters.tasks_launched as f64,
    );
    set("agora/master/invalid_calls", counters.invalid_calls as f64);
    set(
        "agora/master/leader_changes",
        metrics.leader_changes.load(Ordering::Relaxed) as f64,
    );
    set(
        "agora/master/recovering_agents",
        snapshot.recovering_agents as f64,
    );
    set(
        "agora/master/frameworks_completed",
        snapshot.completed_frameworks.len() as f64,
    );
    out
}
