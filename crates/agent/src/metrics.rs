//! The agent's `/metrics`, OpenMetrics text as `prometheus-client` encodes
//! it (Prometheus scrapes it natively; the output ends with `# EOF`): tasks
//! by state, executors running, status updates waiting for the master's
//! acknowledgement, and per-task resource use.
//!
//! Everything is encoded at scrape time, by a `prometheus-client`
//! [`Collector`] over values handed in (plain gauges from the published
//! snapshot, a list of per-task statistics), never from live state, so a
//! scrape cannot hold the agent's actor. Per-task statistics come from
//! whoever measures them (the isolation layer) through a
//! [`TaskStatsSource`], asked once per scrape. Who may read `/metrics` is
//! decided by the router's endpoint guard, not here.
//!
//! Names follow OpenMetrics: the CPU-time counter is described as
//! `agora_agent_task_cpu_seconds` and its samples are
//! `agora_agent_task_cpu_seconds_total`, the name they had in the
//! Prometheus 0.0.4 text this replaced.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};
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

/// The media type of `/metrics`.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One scrape's figures, encoded by `prometheus-client`.
#[derive(Debug)]
struct Scrape {
    gauges: AgentGauges,
    tasks: Vec<(TaskLabels, TaskStatistics)>,
}

/// One family without labels.
fn single(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// One task's reading of a measure: CPU time is a counter of seconds,
/// the rest are gauges of whole units (bytes, processes).
#[derive(Debug, Clone, Copy)]
enum Reading {
    Seconds(f64),
    Whole(u64),
}

/// A per-task measure: its family name (less the unit), unit, help, and
/// how to read it from a task's statistics (`None`: not measured).
struct Measure {
    name: &'static str,
    unit: Option<Unit>,
    help: &'static str,
    reading: fn(&TaskStatistics) -> Option<Reading>,
}

fn measures() -> [Measure; 5] {
    [
        Measure {
            name: "agora_agent_task_cpu",
            unit: Some(Unit::Seconds),
            help: "CPU time (user and system) used by the task, seconds.",
            reading: |s| s.cpu_seconds.map(Reading::Seconds),
        },
        Measure {
            name: "agora_agent_task_memory",
            unit: Some(Unit::Bytes),
            help: "Memory used by the task, bytes.",
            reading: |s| s.mem_bytes.map(Reading::Whole),
        },
        Measure {
            name: "agora_agent_task_memory_limit",
            unit: Some(Unit::Bytes),
            help: "Memory limit of the task, bytes.",
            reading: |s| s.mem_limit_bytes.map(Reading::Whole),
        },
        Measure {
            name: "agora_agent_task_pids",
            unit: None,
            help: "Processes of the task.",
            reading: |s| s.pids.map(Reading::Whole),
        },
        Measure {
            name: "agora_agent_task_disk",
            unit: Some(Unit::Bytes),
            help: "Disk used by the task's sandbox, bytes.",
            reading: |s| s.disk_bytes.map(Reading::Whole),
        },
    ]
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let g = &self.gauges;
        let e = &mut encoder;
        single(
            e,
            "agora_agent_registered",
            "1 while the agent is registered with a master.",
            ConstGauge::new(i64::from(g.registered)),
        )?;
        let mut tasks = e.encode_descriptor(
            "agora_agent_tasks",
            "Tasks on this agent by state (recently completed ones included).",
            None,
            MetricType::Gauge,
        )?;
        for (state, count) in &g.tasks_by_state {
            ConstGauge::new(*count).encode(tasks.encode_family(&[("state", state.as_str())])?)?;
        }
        single(
            e,
            "agora_agent_executors_running",
            "Executors running on this agent.",
            ConstGauge::new(g.executors_running),
        )?;
        single(
            e,
            "agora_agent_disk_full",
            "1 while the work dir's disk is full and new tasks are refused.",
            ConstGauge::new(i64::from(g.disk_full)),
        )?;
        if let Some(pending) = g.status_updates_pending {
            single(
                e,
                "agora_agent_status_updates_pending",
                "Status updates not yet acknowledged by the master.",
                ConstGauge::new(pending),
            )?;
        }
        // One family per measure, labelled by framework, executor and task;
        // a task missing a measure has no sample in it, and a measure no
        // task has is left out.
        for measure in measures() {
            let readings: Vec<(&TaskLabels, Reading)> = self
                .tasks
                .iter()
                .filter_map(|(labels, stats)| Some((labels, (measure.reading)(stats)?)))
                .collect();
            let Some((_, first)) = readings.first() else {
                continue;
            };
            let kind = match first {
                Reading::Seconds(_) => MetricType::Counter,
                Reading::Whole(_) => MetricType::Gauge,
            };
            let mut family =
                e.encode_descriptor(measure.name, measure.help, measure.unit.as_ref(), kind)?;
            for (task, reading) in readings {
                let labels = [
                    ("framework_id", task.framework_id.as_str()),
                    ("executor_id", task.executor_id.as_str()),
                    ("task_id", task.task_id.as_str()),
                ];
                let sample = family.encode_family(&labels)?;
                match reading {
                    Reading::Seconds(seconds) => ConstCounter::new(seconds).encode(sample)?,
                    Reading::Whole(n) => ConstGauge::new(n).encode(sample)?,
                }
            }
        }
        Ok(())
    }
}

/// The agent's gauges and per-task resource use as OpenMetrics text.
pub fn render(
    gauges: AgentGauges,
    tasks: Vec<(TaskLabels, TaskStatistics)>,
) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape { gauges, tasks }));
    let mut text = String::new();
    encode(&mut text, &registry)?;
    Ok(text)
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
    let tasks = match state.task_stats {
        Some(source) => source().await,
        None => Vec::new(),
    };
    // Per task: off the async workers.
    agora_net::off_workers::answer(move || {
        let gauges = current
            .gauges
            .clone()
            .unwrap_or_else(|| gauges_from_snapshot(&current));
        match render(gauges, tasks) {
            Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
            Err(error) => {
                tracing::warn!(%error, "cannot encode the metrics");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_tasks() -> Vec<(TaskLabels, TaskStatistics)> {
        Vec::new()
    }

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
        let text = render(gauges.clone(), no_tasks()).expect("renders");
        assert!(text.contains("agora_agent_registered 1\n"), "{text}");
        assert!(text.contains("agora_agent_tasks{state=\"TASK_RUNNING\"} 2\n"));
        assert!(text.contains("agora_agent_tasks{state=\"TASK_FINISHED\"} 1\n"));
        assert!(text.contains("# TYPE agora_agent_executors_running gauge\n"));
        assert!(text.contains("agora_agent_executors_running 2\n"));
        assert!(text.contains("agora_agent_disk_full 1\n"), "{text}");
        assert!(!text.contains("status_updates_pending"));
        assert!(text.ends_with("# EOF\n"), "{text}");
        let text = render(
            AgentGauges {
                status_updates_pending: Some(3),
                ..gauges
            },
            no_tasks(),
        )
        .expect("renders");
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
        let text = render(AgentGauges::default(), stats).expect("renders");
        let first = "framework_id=\"fw-1\",executor_id=\"ex\\\"1\",task_id=\"t\\\\1\"";
        // The counter is described under its family name (with its unit),
        // its samples carry `_total`.
        assert!(
            text.contains("# TYPE agora_agent_task_cpu_seconds counter\n"),
            "{text}"
        );
        assert!(text.contains("# UNIT agora_agent_task_cpu_seconds seconds\n"));
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
        let none = render(AgentGauges::default(), no_tasks()).expect("renders");
        assert!(!none.contains("agora_agent_task_"), "{none}");
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
