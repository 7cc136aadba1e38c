//! The agent's `/metrics`, Prometheus text exposition (version 0.0.4):
//! tasks by state, executors running, status updates waiting for the
//! master's acknowledgement, and per-task resource use.
//!
//! Everything is rendered from values handed in (a snapshot, plain gauges,
//! a list of per-task statistics), never from live state, so a scrape cannot
//! hold the agent's actor. Per-task statistics come from whoever measures
//! them (the isolation layer) through a [`TaskStatsSource`], asked once per
//! scrape.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::watch;

pub use crate::snapshot::AgentGauges;
use crate::snapshot::{AgentSnapshot, ContainerStatistics};
use crate::state::AgentState;

/// Which task a statistics sample is about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskLabels {
    pub framework_id: String,
    pub executor_id: String,
    pub task_id: String,
}

/// One task's resource use, Mesos' `ResourceStatistics` reduced to what an
/// operator alerts on. `None`: not measured (no such isolation).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskStatistics {
    /// User plus system CPU time, seconds.
    pub cpu_seconds: Option<f64>,
    pub mem_bytes: Option<u64>,
    pub mem_limit_bytes: Option<u64>,
    pub pids: Option<u64>,
    pub disk_bytes: Option<u64>,
}

/// Produces the current per-task statistics; called once per scrape (it
/// may ask the agent's actor, or read cgroups on a blocking thread).
pub type TaskStatsSource = Arc<
    dyn Fn() -> futures::future::BoxFuture<'static, Vec<(TaskLabels, TaskStatistics)>>
        + Send
        + Sync,
>;

/// One entry of `/monitor/statistics` as a labelled sample. The command
/// executor runs one task, so its `source` is the task's id.
pub fn task_stats_of(entry: &ContainerStatistics) -> (TaskLabels, TaskStatistics) {
    let s = &entry.statistics;
    let cpu_seconds = match (s.cpus_user_time_secs, s.cpus_system_time_secs) {
        (None, None) => None,
        (user, system) => Some(user.unwrap_or(0.0) + system.unwrap_or(0.0)),
    };
    (
        TaskLabels {
            framework_id: entry.framework_id.clone(),
            executor_id: entry.executor_id.clone(),
            task_id: entry.source.clone(),
        },
        TaskStatistics {
            cpu_seconds,
            // What the memory limit applies to (cache included); RSS without a cgroup.
            mem_bytes: s.mem_total_bytes.or(s.mem_rss_bytes),
            mem_limit_bytes: s.mem_limit_bytes,
            pids: s.processes.map(u64::from),
            disk_bytes: s.disk_used_bytes,
        },
    )
}

/// The gauges, from the state machine (for its owner to publish).
pub fn gauges_from_state(state: &AgentState) -> AgentGauges {
    let mut tasks_by_state = BTreeMap::new();
    let mut pending = 0u64;
    for task in state.tasks.values().chain(state.completed.iter()) {
        *tasks_by_state
            .entry(agora_core::task::name(task.state).to_string())
            .or_insert(0) += 1;
        pending += task.pending.len() as u64;
    }
    AgentGauges {
        registered: state.registered(),
        tasks_by_state,
        executors_running: state.executors.values().filter(|e| e.run.is_some()).count() as u64,
        status_updates_pending: Some(pending),
        disk_full: state.disk_full(),
    }
}

/// The gauges, from the published snapshot alone: each task runs under its
/// own executor, so the executors running are the tasks not yet terminal;
/// pending updates are not in the snapshot.
pub fn gauges_from_snapshot(snapshot: &AgentSnapshot) -> AgentGauges {
    let mut tasks_by_state = BTreeMap::new();
    for task in snapshot.tasks.iter().chain(&snapshot.completed_tasks) {
        *tasks_by_state.entry(task.state.to_string()).or_insert(0) += 1;
    }
    AgentGauges {
        registered: snapshot.registered,
        tasks_by_state,
        executors_running: snapshot.tasks.len() as u64,
        status_updates_pending: None,
        disk_full: snapshot.disk_full,
    }
}

/// Escapes a label value (backslash, double quote, newline).
fn label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &str, value: f64) {
    if labels.is_empty() {
        let _ = writeln!(out, "{name} {value}");
    } else {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

/// The agent's gauges as Prometheus text.
pub fn render_gauges(gauges: &AgentGauges) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "agora_agent_registered",
        "gauge",
        "1 while the agent is registered with a master.",
    );
    sample(
        &mut out,
        "agora_agent_registered",
        "",
        f64::from(u8::from(gauges.registered)),
    );
    family(
        &mut out,
        "agora_agent_tasks",
        "gauge",
        "Tasks on this agent by state (recently completed ones included).",
    );
    for (state, count) in &gauges.tasks_by_state {
        let labels = format!("state=\"{}\"", label_value(state));
        sample(&mut out, "agora_agent_tasks", &labels, *count as f64);
    }
    family(
        &mut out,
        "agora_agent_executors_running",
        "gauge",
        "Executors running on this agent.",
    );
    sample(
        &mut out,
        "agora_agent_executors_running",
        "",
        gauges.executors_running as f64,
    );
    family(
        &mut out,
        "agora_agent_disk_full",
        "gauge",
        "1 while the work dir's disk is full and new tasks are refused.",
    );
    sample(
        &mut out,
        "agora_agent_disk_full",
        "",
        f64::from(u8::from(gauges.disk_full)),
    );
    if let Some(pending) = gauges.status_updates_pending {
        family(
            &mut out,
            "agora_agent_status_updates_pending",
            "gauge",
            "Status updates not yet acknowledged by the master.",
        );
        sample(
            &mut out,
            "agora_agent_status_updates_pending",
            "",
            pending as f64,
        );
    }
    out
}

/// Per-task resource use as Prometheus text, one family per measure,
/// labelled by `framework_id`, `executor_id` and `task_id`; a task missing a
/// measure has no sample in that family.
pub fn render_task_stats(tasks: &[(TaskLabels, TaskStatistics)]) -> String {
    type Measure = fn(&TaskStatistics) -> Option<f64>;
    let measures: [(&str, &str, &str, Measure); 5] = [
        (
            "agora_agent_task_cpu_seconds_total",
            "counter",
            "CPU time (user and system) used by the task, seconds.",
            |s| s.cpu_seconds,
        ),
        (
            "agora_agent_task_memory_bytes",
            "gauge",
            "Memory used by the task, bytes.",
            |s| s.mem_bytes.map(|v| v as f64),
        ),
        (
            "agora_agent_task_memory_limit_bytes",
            "gauge",
            "Memory limit of the task, bytes.",
            |s| s.mem_limit_bytes.map(|v| v as f64),
        ),
        (
            "agora_agent_task_pids",
            "gauge",
            "Processes of the task.",
            |s| s.pids.map(|v| v as f64),
        ),
        (
            "agora_agent_task_disk_bytes",
            "gauge",
            "Disk used by the task's sandbox, bytes.",
            |s| s.disk_bytes.map(|v| v as f64),
        ),
    ];
    let labels: Vec<String> = tasks
        .iter()
        .map(|(l, _)| {
            format!(
                "framework_id=\"{}\",executor_id=\"{}\",task_id=\"{}\"",
                label_value(&l.framework_id),
                label_value(&l.executor_id),
                label_value(&l.task_id)
            )
        })
        .collect();
    let mut out = String::new();
    for (name, kind, help, measure) in measures {
        let values: Vec<(&str, f64)> = tasks
            .iter()
            .zip(&labels)
            .filter_map(|((_, stats), labels)| Some((labels.as_str(), measure(stats)?)))
            .collect();
        if values.is_empty() {
            continue;
        }
        family(&mut out, name, kind, help);
        for (labels, value) in values {
            sample(&mut out, name, labels, value);
        }
    }
    out
}

#[derive(Clone)]
struct MetricsState {
    snapshot: watch::Receiver<Arc<AgentSnapshot>>,
    task_stats: Option<TaskStatsSource>,
}

/// `GET /metrics`, for the agent's HTTP router.
pub fn router(
    snapshot: watch::Receiver<Arc<AgentSnapshot>>,
    task_stats: Option<TaskStatsSource>,
) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(MetricsState {
            snapshot,
            task_stats,
        })
}

async fn metrics(State(state): State<MetricsState>) -> Response {
    let current = state.snapshot.borrow().clone();
    let gauges = current
        .gauges
        .clone()
        .unwrap_or_else(|| gauges_from_snapshot(&current));
    let mut text = render_gauges(&gauges);
    if let Some(source) = state.task_stats {
        text.push_str(&render_task_stats(&source().await));
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_render_every_state_and_omit_unknowns() {
        let gauges = AgentGauges {
            registered: true,
            tasks_by_state: [
                ("TASK_RUNNING".to_string(), 2),
                ("TASK_FINISHED".to_string(), 1),
            ]
            .into(),
            executors_running: 2,
            status_updates_pending: None,
            disk_full: true,
        };
        let text = render_gauges(&gauges);
        assert!(text.contains("agora_agent_registered 1\n"), "{text}");
        assert!(text.contains("agora_agent_tasks{state=\"TASK_RUNNING\"} 2\n"));
        assert!(text.contains("agora_agent_tasks{state=\"TASK_FINISHED\"} 1\n"));
        assert!(text.contains("agora_agent_executors_running 2\n"));
        assert!(text.contains("agora_agent_disk_full 1\n"), "{text}");
        assert!(!text.contains("status_updates_pending"));
        let text = render_gauges(&AgentGauges {
            status_updates_pending: Some(3),
            ..gauges
        });
        assert!(text.contains("# TYPE agora_agent_status_updates_pending gauge\n"));
        assert!(text.contains("agora_agent_status_updates_pending 3\n"));
    }

    #[test]
    fn task_stats_are_labelled_and_escaped() {
        let stats = vec![
            (
                TaskLabels {
                    framework_id: "fw-1".into(),
                    executor_id: "ex\"1".into(),
                    task_id: "t\\1".into(),
                },
                TaskStatistics {
                    cpu_seconds: Some(1.5),
                    mem_bytes: Some(1024),
                    mem_limit_bytes: Some(4096),
                    pids: Some(3),
                    disk_bytes: None,
                },
            ),
            (
                TaskLabels {
                    framework_id: "fw-1".into(),
                    executor_id: "ex2".into(),
                    task_id: "t2".into(),
                },
                TaskStatistics {
                    mem_bytes: Some(10),
                    ..TaskStatistics::default()
                },
            ),
        ];
        let text = render_task_stats(&stats);
        let first = "framework_id=\"fw-1\",executor_id=\"ex\\\"1\",task_id=\"t\\\\1\"";
        assert!(
            text.contains(&format!(
                "agora_agent_task_cpu_seconds_total{{{first}}} 1.5\n"
            )),
            "{text}"
        );
        assert!(text.contains(&format!("agora_agent_task_memory_bytes{{{first}}} 1024\n")));
        assert!(text.contains(&format!(
            "agora_agent_task_memory_limit_bytes{{{first}}} 4096\n"
        )));
        assert!(text.contains(&format!("agora_agent_task_pids{{{first}}} 3\n")));
        assert!(text.contains(
            "agora_agent_task_memory_bytes{framework_id=\"fw-1\",executor_id=\"ex2\",task_id=\"t2\"} 10\n"
        ));
        // Nobody measured disk: no family at all.
        assert!(!text.contains("disk_bytes"));
        assert_eq!(
            text.matches("# TYPE agora_agent_task_memory_bytes").count(),
            1
        );
        assert_eq!(render_task_stats(&[]), "");
    }

    #[test]
    fn container_statistics_become_task_samples() {
        let entry = ContainerStatistics {
            framework_id: "fw".into(),
            executor_id: "t1".into(),
            executor_name: "Command Executor (Task: t1)".into(),
            source: "t1".into(),
            statistics: agora_isolation::ResourceStatistics {
                cpus_user_time_secs: Some(1.25),
                cpus_system_time_secs: Some(0.5),
                mem_total_bytes: Some(2048),
                mem_rss_bytes: Some(1024),
                mem_limit_bytes: Some(1 << 20),
                processes: Some(2),
                disk_used_bytes: Some(4096),
                ..Default::default()
            },
        };
        let (labels, stats) = task_stats_of(&entry);
        assert_eq!(labels.task_id, "t1");
        assert_eq!(stats.cpu_seconds, Some(1.75));
        assert_eq!(stats.mem_bytes, Some(2048));
        assert_eq!(stats.mem_limit_bytes, Some(1 << 20));
        assert_eq!(stats.pids, Some(2));
        assert_eq!(stats.disk_bytes, Some(4096));
        let empty = ContainerStatistics {
            statistics: agora_isolation::ResourceStatistics::default(),
            ..entry
        };
        assert_eq!(task_stats_of(&empty).1, TaskStatistics::default());
    }

    #[test]
    fn snapshot_gauges_count_tasks_by_state() {
        let task = |state: &'static str| crate::snapshot::TaskView {
            id: "t".into(),
            framework_id: "f".into(),
            state,
            sandbox: None,
        };
        let snapshot = AgentSnapshot {
            registered: true,
            tasks: vec![task("TASK_RUNNING"), task("TASK_STARTING")],
            completed_tasks: vec![task("TASK_FINISHED"), task("TASK_FINISHED")],
            ..AgentSnapshot::default()
        };
        let gauges = gauges_from_snapshot(&snapshot);
        assert_eq!(gauges.executors_running, 2);
        assert_eq!(gauges.tasks_by_state.get("TASK_FINISHED"), Some(&2));
        assert_eq!(gauges.tasks_by_state.get("TASK_RUNNING"), Some(&1));
    }
}
