//! Mesos' agent read endpoints in Mesos' JSON shapes, so that the Mesos web
//! UI's agent pages, dashboards and scripts written for a Mesos agent work
//! against Agora: `/slave(1)/state` (also `.json`), `/state` and
//! `/state.json` (Agora's own `/state` with Mesos' keys merged in),
//! `/metrics/snapshot` (`slave/*` names) and `/version`. The files API
//! (`/files/*`, [`crate::files`]) takes the `directory` these show.
//!
//! `/state` and `/slave(1)/state` show each viewer only the frameworks,
//! executors and tasks the ACLs' `view_*` let it see
//! ([`crate::authz_views`]).
//!
//! Everything is read from the published [`AgentSnapshot`]: the actor builds
//! a [`MesosView`] (frameworks, executors, their tasks and sandboxes) with
//! each snapshot; what never changes (pid, flags, the advertised resources)
//! is computed once when the routes are built. Every JSON endpoint takes
//! `?jsonp=<callback>` ([`agora_net::jsonp`]).
//!
//! `/state` keeps every key Agora's agent has always served, with its
//! meaning; Mesos' keys are added where they do not collide. Three collide:
//! `id` (Agora: `null` until registered; Mesos: `""`), `hostname` (the
//! same value) and `resources` (Agora's summary lacks Mesos' zero
//! `cpus`/`gpus`/`mem`/`disk` and prints ranges without a space after the
//! comma). `/state` keeps Agora's; `/slave(1)/state` is Mesos' shape alone.
//!
//! Where Agora knows less than Mesos, the field is left out or empty rather
//! than guessed: a task's `statuses` are its updates not yet acknowledged
//! by the master; `slave/tasks_{finished,failed,killed,lost,gone}` count the
//! completed tasks the agent still keeps (the newest 1000), not every one
//! since it started as Mesos' counters do.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use agora_core::resources::SummaryValue;
use agora_core::resources::mesos_json::{self, FullResource};
use agora_core::{ExecutorId, FrameworkId, Resources, TaskId};
use agora_proto::v1 as pb;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tokio::sync::watch;

use crate::authz_views::Viewer;
use crate::options::AgentOptions;
use crate::snapshot::AgentSnapshot;
use crate::state::{AgentState, ExecutorRecord, TaskRecord};

// The view's plain data lives with the snapshot it is published in, so the
// snapshot imports no HTTP module; named here too, where callers look.
pub use crate::snapshot::{
    ExecutorEntry, FlatMap, FrameworkEntry, MesosView, QueuedTaskEntry, StatusEntry, TaskEntry,
};

#[cfg(test)]
mod tests;

/// The Mesos release whose HTTP API these endpoints follow.
pub const MESOS_VERSION: &str = "1.11.0";

type Summary = BTreeMap<String, SummaryValue>;

/// The user a task's command names, if any.
fn command_user(task: &TaskRecord) -> Option<String> {
    task.info.command.as_ref()?.user.clone()
}

/// The user a task runs as, as Mesos decides it for `view_tasks` (and the
/// master for `run_tasks`): its command's, else its executor's command's;
/// `None`: its framework's.
fn task_user(task: &TaskRecord) -> Option<String> {
    command_user(task).or_else(|| task.info.executor.as_ref()?.command.as_ref()?.user.clone())
}

fn role_of(resources: &[pb::Resource]) -> Option<String> {
    resources
        .iter()
        .find_map(|r| r.allocation_info.as_ref()?.role.clone())
}

fn task_id_of(task: &TaskRecord) -> String {
    task.info
        .task_id
        .as_ref()
        .map(|id| id.value.clone())
        .unwrap_or_default()
}

fn task_entry(task: &TaskRecord, agent_id: &str) -> TaskEntry {
    let id = task_id_of(task);
    let executor_id = task.executor_id.to_string();
    TaskEntry {
        executor_id: if executor_id == id {
            String::new()
        } else {
            executor_id
        },
        id,
        name: task.info.name.clone(),
        framework_id: task.framework_id.to_string(),
        slave_id: agent_id.to_string(),
        state: agora_core::task::name(task.state),
        resources: FlatMap(task.resources.summary()),
        role: role_of(&task.info.resources).unwrap_or_else(|| "*".to_string()),
        statuses: task
            .pending
            .iter()
            .filter_map(|status| {
                let state = pb::TaskState::try_from(status.state.unwrap_or_default()).ok()?;
                Some(StatusEntry {
                    state: agora_core::task::name(state),
                    timestamp: status.timestamp.unwrap_or(0.0),
                    healthy: status.healthy,
                })
            })
            .collect(),
        user: task_user(task),
    }
}

fn queued_entry(task: &TaskRecord, agent_id: &str) -> QueuedTaskEntry {
    let id = task_id_of(task);
    let executor_id = task.executor_id.to_string();
    QueuedTaskEntry {
        executor_id: (executor_id != id).then_some(executor_id),
        id,
        name: task.info.name.clone(),
        slave_id: agent_id.to_string(),
        resources: FlatMap(task.resources.summary()),
        role: role_of(&task.info.resources).unwrap_or_else(|| "*".to_string()),
        user: task_user(task),
    }
}

/// A path as `/files/*` takes it: absolute (the work dir may be relative).
fn absolute(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

fn framework_entry(id: &FrameworkId, info: Option<&pb::FrameworkInfo>) -> FrameworkEntry {
    let info = info.cloned().unwrap_or_default();
    let multi_role = info
        .capabilities
        .iter()
        .any(|c| c.r#type == Some(pb::framework_info::capability::Type::MultiRole as i32));
    let role = info
        .role
        .clone()
        .or_else(|| info.roles.first().cloned())
        .unwrap_or_else(|| "*".to_string());
    FrameworkEntry {
        id: id.to_string(),
        name: info.name,
        user: info.user,
        failover_timeout: info.failover_timeout.unwrap_or(0.0),
        checkpoint: info.checkpoint.unwrap_or(false),
        hostname: info.hostname.unwrap_or_default(),
        principal: info.principal.filter(|p| !p.is_empty()),
        roles: multi_role.then_some(info.roles),
        role: (!multi_role).then_some(role),
        executors: Vec::new(),
        completed_executors: Vec::new(),
    }
}

type ExecutorKey = (FrameworkId, ExecutorId);

impl MesosView {
    /// The view of `state`; `sandboxes` are the executors' sandboxes the
    /// shell knows (finished executors' included, while their tasks show).
    pub fn build(
        state: &AgentState,
        sandboxes: &HashMap<ExecutorKey, PathBuf>,
        master_hostname: Option<&str>,
    ) -> Self {
        let agent_id = state
            .agent_id
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        let mut live: BTreeMap<&ExecutorKey, Vec<(&TaskId, &TaskRecord)>> = BTreeMap::new();
        for ((_, task_id), task) in &state.tasks {
            let key = (task.framework_id.clone(), task.executor_id.clone());
            // Keyed by the executor record (borrowed from the state); a live
            // task always has one.
            if let Some((key, _)) = state.executors.get_key_value(&key) {
                live.entry(key).or_default().push((task_id, task));
            }
        }
        let mut completed: BTreeMap<ExecutorKey, Vec<&TaskRecord>> = BTreeMap::new();
        for task in &state.completed {
            completed
                .entry((task.framework_id.clone(), task.executor_id.clone()))
                .or_default()
                .push(task);
        }
        let mut view = MesosView {
            master_hostname: master_hostname.map(str::to_string),
            ..MesosView::default()
        };
        let mut frameworks: BTreeMap<FrameworkId, FrameworkEntry> = BTreeMap::new();
        let mut used = Resources::new();
        for (key, executor) in &state.executors {
            let tasks = live.get(key).map(Vec::as_slice).unwrap_or_default();
            let done = completed.remove(key).unwrap_or_default();
            let entry = executor_entry(executor, tasks, &done, sandboxes, &agent_id);
            used.add(&executor.resources);
            for (_, task) in tasks {
                used.add(&task.resources);
            }
            let terminating =
                executor.kill_requested.is_some() || executor.shutdown_deadline.is_some();
            match (terminating, executor.conn.is_some()) {
                (true, _) => view.executors_terminating += 1,
                (false, true) => view.executors_running += 1,
                (false, false) => view.executors_registering += 1,
            }
            frameworks
                .entry(key.0.clone())
                .or_insert_with(|| framework_entry(&key.0, state.frameworks.get(&key.0)))
                .executors
                .push(entry);
        }
        // Executors that are gone, known only from their completed tasks.
        for (key, done) in completed {
            let entry = gone_executor_entry(&key, &done, sandboxes, &agent_id);
            frameworks
                .entry(key.0.clone())
                .or_insert_with(|| framework_entry(&key.0, state.frameworks.get(&key.0)))
                .completed_executors
                .push(entry);
        }
        for id in state.frameworks.keys() {
            frameworks
                .entry(id.clone())
                .or_insert_with(|| framework_entry(id, state.frameworks.get(id)));
        }
        for (id, framework) in frameworks {
            // A framework the agent still runs something for, or still
            // knows (its FrameworkInfo is kept while it has executors).
            if state.frameworks.contains_key(&id) || !framework.executors.is_empty() {
                view.frameworks.push(framework);
            } else {
                view.completed_frameworks.push(framework);
            }
        }
        view.used = used.summary();
        view
    }
}

fn sandbox_of(
    key: &ExecutorKey,
    run: Option<&Path>,
    sandboxes: &HashMap<ExecutorKey, PathBuf>,
) -> String {
    run.or_else(|| sandboxes.get(key).map(PathBuf::as_path))
        .map(absolute)
        .unwrap_or_default()
}

fn executor_entry(
    executor: &ExecutorRecord,
    tasks: &[(&TaskId, &TaskRecord)],
    done: &[&TaskRecord],
    sandboxes: &HashMap<ExecutorKey, PathBuf>,
    agent_id: &str,
) -> ExecutorEntry {
    let key = (executor.framework_id.clone(), executor.executor_id.clone());
    let run = executor.run.as_ref();
    let mut resources = executor.resources.clone();
    let mut launched = Vec::new();
    let mut queued = Vec::new();
    for (task_id, task) in tasks {
        resources.add(&task.resources);
        // Launched once its executor holds it; queued until then.
        if executor.delivered.contains(*task_id) {
            launched.push(*task);
        } else {
            queued.push(*task);
        }
    }
    let (name, source, role, kind) = match &executor.info {
        Some(info) => (
            info.name.clone().unwrap_or_default(),
            String::new(),
            role_of(&info.resources),
            info.r#type
                .and_then(|t| pb::executor_info::Type::try_from(t).ok())
                .map(|t| t.as_str_name()),
        ),
        None => (
            format!("Command Executor (Task: {})", executor.task_id),
            executor.task_id.to_string(),
            None,
            None,
        ),
    };
    let user = executor
        .info
        .as_ref()
        .and_then(|info| info.command.as_ref()?.user.clone())
        .or_else(|| {
            tasks
                .iter()
                .map(|(_, t)| *t)
                .chain(done.iter().copied())
                .find_map(command_user)
        });
    ExecutorEntry {
        user,
        id: executor.executor_id.to_string(),
        name,
        source,
        container: run.map(|r| r.run_id.clone()).unwrap_or_default(),
        directory: sandbox_of(&key, run.map(|r| r.sandbox.as_path()), sandboxes),
        resources: FlatMap(resources.summary()),
        role,
        kind,
        tasks: launched.iter().map(|t| task_entry(t, agent_id)).collect(),
        queued_tasks: queued.iter().map(|t| queued_entry(t, agent_id)).collect(),
        completed_tasks: done.iter().map(|t| task_entry(t, agent_id)).collect(),
    }
}

/// An executor that has exited, from the completed tasks it ran.
fn gone_executor_entry(
    key: &ExecutorKey,
    done: &[&TaskRecord],
    sandboxes: &HashMap<ExecutorKey, PathBuf>,
    agent_id: &str,
) -> ExecutorEntry {
    let command_task = done
        .iter()
        .map(|t| task_id_of(t))
        .find(|id| *id == key.1.to_string());
    let (name, source) = match command_task {
        Some(task_id) => (format!("Command Executor (Task: {task_id})"), task_id),
        None => (String::new(), String::new()),
    };
    ExecutorEntry {
        user: done.iter().copied().find_map(command_user),
        id: key.1.to_string(),
        name,
        source,
        container: String::new(),
        directory: sandbox_of(key, None, sandboxes),
        resources: FlatMap::default(),
        role: None,
        kind: None,
        tasks: Vec::new(),
        queued_tasks: Vec::new(),
        completed_tasks: done.iter().map(|t| task_entry(t, agent_id)).collect(),
    }
}

// ---------------------------------------------------------------------------
// What never changes: computed once from the options
// ---------------------------------------------------------------------------

/// The agent's fixed facts, for every body.
#[derive(Debug, Clone)]
pub struct Fixed {
    /// `slave(1)@ip:port`.
    pub pid: String,
    pub flags: BTreeMap<String, String>,
    pub resources: FlatMap,
    pub reserved_resources: BTreeMap<String, FlatMap>,
    pub unreserved_resources: FlatMap,
    pub reserved_resources_full: BTreeMap<String, Vec<FullResource>>,
    pub unreserved_resources_full: Vec<FullResource>,
    pub attributes: BTreeMap<String, serde_json::Value>,
    /// When the routes were built (wall-clock seconds): `start_time`.
    pub started: f64,
}

fn wall_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Mesos' libprocess pid of an agent at `address`.
pub fn agent_pid(address: SocketAddr) -> String {
    format!("slave(1)@{address}")
}

fn attribute_json(attribute: &pb::Attribute) -> serde_json::Value {
    if let Some(text) = &attribute.text {
        return text.value.clone().into();
    }
    if let Some(scalar) = &attribute.scalar {
        return scalar.value.into();
    }
    if let Some(set) = &attribute.set {
        return format!("{{{}}}", set.item.join(", ")).into();
    }
    if let Some(ranges) = &attribute.ranges {
        let parts: Vec<String> = ranges
            .range
            .iter()
            .map(|r| format!("{}-{}", r.begin, r.end))
            .collect();
        return format!("[{}]", parts.join(", ")).into();
    }
    serde_json::Value::Null
}

impl Fixed {
    pub fn of(options: &AgentOptions) -> Self {
        let (reserved, unreserved) = mesos_json::split_reserved(&options.resources);
        let mut flags = BTreeMap::new();
        let mut set = |name: &str, value: String| {
            flags.insert(name.to_string(), value);
        };
        set("master", options.master.clone());
        set("hostname", options.hostname.clone());
        set("ip", options.advertise.ip().to_string());
        set("port", options.advertise.port().to_string());
        set("work_dir", absolute(&options.work_dir));
        set("resources", options.resources.to_string());
        set("isolation", options.containers.isolation.clone());
        set("cgroups_root", options.containers.cgroups_root.clone());
        set(
            "cgroups_enable_cfs",
            options.containers.enable_cfs.to_string(),
        );
        set("switch_user", options.containers.switch_user.to_string());
        set(
            "gc_delay",
            agora_core::time::mesos_duration(options.gc.delay),
        );
        set("gc_disk_headroom", options.gc.disk_headroom.to_string());
        Fixed {
            pid: agent_pid(options.advertise),
            flags,
            resources: FlatMap(options.resources.summary()),
            reserved_resources: reserved
                .iter()
                .map(|(role, r)| (role.clone(), FlatMap(r.summary())))
                .collect(),
            unreserved_resources: FlatMap(unreserved.summary()),
            reserved_resources_full: reserved
                .iter()
                .map(|(role, r)| (role.clone(), mesos_json::full(r)))
                .collect(),
            unreserved_resources_full: mesos_json::full(&unreserved),
            attributes: options
                .attributes
                .iter()
                .map(|a| (a.name.clone(), attribute_json(a)))
                .collect(),
            started: wall_now(),
        }
    }
}

// ---------------------------------------------------------------------------
// Bodies
// ---------------------------------------------------------------------------

/// Mesos' agent `/state`.
#[derive(Debug, Serialize)]
pub struct MesosAgentState<'a> {
    pub version: &'static str,
    pub agora_version: &'static str,
    pub build_date: &'static str,
    pub build_time: f64,
    pub build_user: &'static str,
    pub start_time: f64,
    pub id: &'a str,
    pub pid: &'a str,
    pub hostname: &'a str,
    pub capabilities: [(); 0],
    pub resources: &'a FlatMap,
    pub reserved_resources: &'a BTreeMap<String, FlatMap>,
    pub unreserved_resources: &'a FlatMap,
    pub reserved_resources_full: &'a BTreeMap<String, Vec<FullResource>>,
    pub unreserved_resources_full: &'a [FullResource],
    pub reserved_resources_allocated: BTreeMap<String, FlatMap>,
    pub unreserved_resources_allocated: FlatMap,
    pub resource_providers: [(); 0],
    pub attributes: &'a BTreeMap<String, serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_hostname: Option<&'a str>,
    pub flags: &'a BTreeMap<String, String>,
    pub frameworks: &'a [FrameworkEntry],
    pub completed_frameworks: &'a [FrameworkEntry],
}

/// Mesos' `/state` of an agent from its snapshot and fixed facts.
pub fn state<'a>(snapshot: &'a AgentSnapshot, fixed: &'a Fixed) -> MesosAgentState<'a> {
    let mesos = &snapshot.mesos;
    MesosAgentState {
        version: MESOS_VERSION,
        agora_version: env!("CARGO_PKG_VERSION"),
        build_date: "",
        build_time: 0.0,
        build_user: "",
        start_time: fixed.started,
        id: snapshot.id.as_deref().unwrap_or(""),
        pid: &fixed.pid,
        hostname: &snapshot.hostname,
        capabilities: [],
        resources: &fixed.resources,
        reserved_resources: &fixed.reserved_resources,
        unreserved_resources: &fixed.unreserved_resources,
        reserved_resources_full: &fixed.reserved_resources_full,
        unreserved_resources_full: &fixed.unreserved_resources_full,
        // Agora keeps the allocation as summaries: reservations are not
        // told apart in what tasks hold.
        reserved_resources_allocated: BTreeMap::new(),
        unreserved_resources_allocated: FlatMap(mesos.used.clone()),
        resource_providers: [],
        attributes: &fixed.attributes,
        master_hostname: mesos.master_hostname.as_deref(),
        flags: &fixed.flags,
        frameworks: &mesos.frameworks,
        completed_frameworks: &mesos.completed_frameworks,
    }
}

/// Agora's `/state` with Mesos' keys added where they do not collide.
pub fn merged_state(
    snapshot: &AgentSnapshot,
    fixed: &Fixed,
) -> serde_json::Result<serde_json::Value> {
    let mut agora = serde_json::to_value(snapshot)?;
    let serde_json::Value::Object(mesos) = serde_json::to_value(state(snapshot, fixed))? else {
        return Ok(agora);
    };
    if let serde_json::Value::Object(agora) = &mut agora {
        for (key, value) in mesos {
            agora.entry(key).or_insert(value);
        }
    }
    Ok(agora)
}

fn scalar(summary: &Summary, name: &str) -> f64 {
    match summary.get(name) {
        Some(SummaryValue::Number(n)) => *n,
        _ => 0.0,
    }
}

/// `/metrics/snapshot`: Mesos' `slave/*` names (Agora's extras under
/// `agora/agent/`); `uptime_secs` is how long the agent has served.
pub fn metrics_snapshot(snapshot: &AgentSnapshot, uptime_secs: f64) -> BTreeMap<String, f64> {
    let gauges = snapshot
        .gauges
        .clone()
        .unwrap_or_else(|| crate::metrics::gauges_from_snapshot(snapshot));
    let mesos = &snapshot.mesos;
    let mut out = BTreeMap::new();
    let mut set = |name: &str, value: f64| {
        out.insert(name.to_string(), value);
    };
    set("slave/registered", f64::from(u8::from(gauges.registered)));
    set("slave/uptime_secs", uptime_secs);
    for name in ["cpus", "mem", "disk", "gpus"] {
        let total = scalar(&snapshot.resources, name);
        let used = scalar(&mesos.used, name);
        set(&format!("slave/{name}_total"), total);
        set(&format!("slave/{name}_used"), used);
        set(
            &format!("slave/{name}_percent"),
            if total > 0.0 { used / total } else { 0.0 },
        );
    }
    for (short, state) in [
        ("staging", "TASK_STAGING"),
        ("starting", "TASK_STARTING"),
        ("running", "TASK_RUNNING"),
        ("killing", "TASK_KILLING"),
        ("finished", "TASK_FINISHED"),
        ("failed", "TASK_FAILED"),
        ("killed", "TASK_KILLED"),
        ("lost", "TASK_LOST"),
        ("gone", "TASK_GONE"),
        ("gone_by_operator", "TASK_GONE_BY_OPERATOR"),
        ("dropped", "TASK_DROPPED"),
        ("error", "TASK_ERROR"),
        ("unreachable", "TASK_UNREACHABLE"),
    ] {
        let count = gauges.tasks_by_state.get(state).copied().unwrap_or(0);
        set(&format!("slave/tasks_{short}"), count as f64);
    }
    set(
        "slave/executors_registering",
        mesos.executors_registering as f64,
    );
    set("slave/executors_running", mesos.executors_running as f64);
    set(
        "slave/executors_terminating",
        mesos.executors_terminating as f64,
    );
    set("slave/frameworks_active", mesos.frameworks.len() as f64);
    if let Some(pending) = gauges.status_updates_pending {
        set("agora/agent/status_updates_pending", pending as f64);
    }
    set(
        "agora/agent/disk_full",
        f64::from(u8::from(gauges.disk_full)),
    );
    set(
        "agora/agent/sandboxes_awaiting_gc",
        snapshot.sandboxes_awaiting_gc as f64,
    );
    out
}

/// `/version`: as the master's (Mesos' API level, Agora's release).
pub fn version_body() -> serde_json::Value {
    serde_json::json!({
        "version": MESOS_VERSION,
        "agora_version": env!("CARGO_PKG_VERSION"),
        "build": "agora",
        "build_date": "",
        "build_time": 0.0,
        "build_user": "",
    })
}

// ---------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------

type Snapshot = watch::Receiver<Arc<AgentSnapshot>>;

/// A request's query parameters; one that does not parse is answered 400.
struct Params(HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map(|Query(query)| Params(query))
            .map_err(|e| (StatusCode::BAD_REQUEST, format!("invalid query: {e}\n")).into_response())
    }
}

#[derive(Clone)]
struct MesosState {
    snapshot: Snapshot,
    fixed: Arc<Fixed>,
    /// `view_*` (`crate::authz_views`): what each viewer is shown.
    acls: Arc<agora_auth::acl::Acls>,
}

/// The Mesos-shaped routes (and Agora's `/state`), for the agent's router.
pub fn router(snapshot: Snapshot, options: &AgentOptions) -> Router {
    Router::new()
        .route("/state", get(merged))
        .route("/state.json", get(merged))
        .route("/slave(1)/state", get(mesos_state))
        .route("/slave(1)/state.json", get(mesos_state))
        .route("/metrics/snapshot", get(metrics))
        .route("/version", get(version))
        .route("/flags", get(flags))
        .route("/slave(1)/flags", get(flags))
        .with_state(MesosState {
            snapshot,
            fixed: Arc::new(Fixed::of(options)),
            acls: options.acls.clone(),
        })
}

fn reply(value: serde_json::Result<Vec<u8>>, query: &HashMap<String, String>) -> Response {
    match value {
        Ok(json) => {
            agora_net::jsonp::respond(Bytes::from(json), query.get("jsonp").map(String::as_str))
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot serialize the agent's state");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot serialize\n").into_response()
        }
    }
}

// The state endpoints walk every executor and task: their bodies are made
// off the async workers, which serve the executors' streams.

async fn merged(
    State(state): State<MesosState>,
    viewer: Viewer,
    Params(query): Params,
) -> Response {
    let current = state.snapshot.borrow().clone();
    agora_net::off_workers::answer(move || {
        let current = viewer.view(&current, &state.acls);
        let body = merged_state(&current, &state.fixed).and_then(|v| serde_json::to_vec(&v));
        reply(body, &query)
    })
    .await
}

async fn mesos_state(
    State(state): State<MesosState>,
    viewer: Viewer,
    Params(query): Params,
) -> Response {
    let current = state.snapshot.borrow().clone();
    agora_net::off_workers::answer(move || {
        let current = viewer.view(&current, &state.acls);
        reply(
            serde_json::to_vec(&self::state(&current, &state.fixed)),
            &query,
        )
    })
    .await
}

async fn metrics(State(state): State<MesosState>, Params(query): Params) -> Response {
    // As the master's (`/metrics/snapshot?timeout=`): answered whole, a
    // timeout that is no duration refused as Mesos refuses it.
    if let Some(timeout) = query.get("timeout")
        && let Err(why) = agora_core::time::parse_mesos_duration(timeout)
    {
        let message = format!("Invalid timeout '{timeout}': {why}\n");
        return (StatusCode::BAD_REQUEST, message).into_response();
    }
    let current = state.snapshot.borrow().clone();
    let uptime = (wall_now() - state.fixed.started).max(0.0);
    agora_net::off_workers::answer(move || {
        reply(
            serde_json::to_vec(&metrics_snapshot(&current, uptime)),
            &query,
        )
    })
    .await
}

async fn version(Params(query): Params) -> Response {
    reply(serde_json::to_vec(&version_body()), &query)
}

/// `/flags`: this agent's settings under Mesos' flag names, the same as
/// GET_FLAGS and `/slave(1)/state`'s `flags`.
async fn flags(State(state): State<MesosState>, Params(query): Params) -> Response {
    reply(
        serde_json::to_vec(&serde_json::json!({ "flags": state.fixed.flags })),
        &query,
    )
}
