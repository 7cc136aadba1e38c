//! The agent's operator API, Mesos' `POST /api/v1` (also
//! `/slave(1)/api/v1`): `agora.v1.agent_operator.Call` in JSON or protobuf,
//! answered with a `Response` of the type the `Accept` header asks for.
//!
//! Read-only: GET_HEALTH, GET_FLAGS, GET_VERSION, GET_METRICS,
//! GET_LOGGING_LEVEL, GET_STATE, GET_FRAMEWORKS, GET_EXECUTORS, GET_TASKS,
//! GET_AGENT, LIST_FILES and READ_FILE. Every other call type Mesos defines
//! is refused 501 by name.
//!
//! Everything comes from what the agent already publishes: the
//! [`AgentSnapshot`] and its Mesos view ([`crate::mesos_v0::MesosView`],
//! the same frameworks, executors and tasks `/slave(1)/state` shows), the
//! fixed facts [`crate::mesos_v0::Fixed`] computes from the options, and
//! the files API's [`Sandboxes`] (so LIST_FILES and READ_FILE keep its
//! sandbox-only path rules). Where the view knows less than Mesos, the
//! answer does too: resources are given as the view's flat summaries
//! (reservations are not told apart; allocated to the task's or executor's
//! role), a task's `statuses` are its updates not yet acknowledged, and an
//! executor's `resources` include its live tasks', as `/state` shows them.
//!
//! GET_STATE, GET_FRAMEWORKS, GET_EXECUTORS and GET_TASKS show the caller
//! only the frameworks, executors and tasks the ACLs' `view_*` let it see
//! ([`crate::authz_views`]), as `/state` does.
//!
//! Refusals are plain text, as in Mesos: 400 for a body that does not
//! parse or a call that fails validation, 415 for another `Content-Type`,
//! 406 for an `Accept` that allows neither type, 501 for a call type this
//! agent does not serve, and the files API's statuses (403, 404) for paths.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;
use std::time::Instant;

use agora_core::Resources;
use agora_core::resources::SummaryValue;
use agora_mesos_http::{Media, Refusal, decode, encode};
use agora_proto::v1 as pb;
use agora_proto::v1::agent_operator::{Call, Response as OpResponse, call, response};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio::sync::watch;

use crate::files::{FilesError, Sandboxes};
use crate::mesos_v0::{Fixed, MESOS_VERSION};
use crate::options::AgentOptions;
use crate::snapshot::{
    AgentSnapshot, ExecutorEntry, FlatMap, FrameworkEntry, MesosView, QueuedTaskEntry, TaskEntry,
};

#[cfg(test)]
mod tests;

/// The most one READ_FILE returns, as `/files/read` (a client reads on
/// from `offset + data.len()`).
pub const MAX_READ_FILE: u64 = crate::files::MAX_READ_LENGTH;

type Snapshot = watch::Receiver<Arc<AgentSnapshot>>;

/// What the handler reads: the published snapshot, and what never changes.
#[derive(Clone)]
pub struct OperatorApi {
    snapshot: Snapshot,
    fixed: Arc<Fixed>,
    sandboxes: Arc<Sandboxes>,
    /// The agent's advertised port, resources and attributes (GET_AGENT).
    port: u16,
    resources: Arc<Vec<pb::Resource>>,
    attributes: Arc<Vec<pb::Attribute>>,
    started: Instant,
    /// `access_sandboxes` for LIST_FILES and READ_FILE (`crate::files_authz`);
    /// `view_*` for GET_STATE, GET_FRAMEWORKS, GET_EXECUTORS and GET_TASKS
    /// (`crate::authz_views`).
    acls: Arc<agora_auth::acl::Acls>,
}

impl OperatorApi {
    pub fn new(snapshot: Snapshot, options: &AgentOptions) -> Self {
        OperatorApi {
            snapshot,
            fixed: Arc::new(Fixed::of(options)),
            sandboxes: Arc::new(Sandboxes::new(&options.work_dir)),
            port: options.advertise.port(),
            resources: Arc::new(options.resources.to_proto(None)),
            attributes: Arc::new(options.attributes.clone()),
            started: Instant::now(),
            acls: options.acls.clone(),
        }
    }
}

/// `POST /api/v1` and `POST /slave(1)/api/v1`, for the agent's router.
pub fn router(snapshot: Snapshot, options: &AgentOptions) -> Router {
    let router = Router::new()
        .route("/api/v1", post(operator))
        .route("/slave(1)/api/v1", post(operator));
    agora_net::body_limit::limit_bodies(router, agora_net::MAX_MESSAGE_BYTES)
        .with_state(OperatorApi::new(snapshot, options))
}

impl From<FilesError> for Refusal {
    fn from(e: FilesError) -> Self {
        if let FilesError::Io { .. } = &e {
            tracing::warn!(error = %e, "operator api file i/o error");
        }
        Refusal(e.status(), e.to_string())
    }
}

fn bad_request(why: impl Into<String>) -> Refusal {
    Refusal(StatusCode::BAD_REQUEST, why.into())
}

async fn operator(
    State(api): State<OperatorApi>,
    caller: Option<axum::Extension<agora_auth::Caller>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Who the authentication layer found the caller to be (`crate::authn`).
    let principal = caller.and_then(|axum::Extension(c)| c.0);
    match handle_as(&api, &headers, &body, principal).await {
        Ok(response) => response,
        Err(refusal) => refusal.into_response(),
    }
}

/// Negotiates, decodes, validates and answers one call from an anonymous
/// caller.
pub async fn handle(
    api: &OperatorApi,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, Refusal> {
    handle_as(api, headers, body, None).await
}

/// [`handle`] for a caller the authentication layer found to be
/// `principal` (the subject of `access_sandboxes` and `view_*`).
pub async fn handle_as(
    api: &OperatorApi,
    headers: &HeaderMap,
    body: &[u8],
    principal: Option<agora_auth::Principal>,
) -> Result<Response, Refusal> {
    let header_str = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let media = Media::from_content_type(header_str(header::CONTENT_TYPE))?;
    let call: Call = decode(media, body)
        .map_err(|e| bad_request(format!("failed to parse the body into an agent call: {e}")))?;
    let kind = validate(&call)?;
    let accept = Media::from_accept(header_str(header::ACCEPT))?;
    if matches!(kind, call::Type::ListFiles | call::Type::ReadFile) {
        let answer = answer_files(api, kind, call, principal.as_ref()).await?;
        return Ok(respond(accept, &answer));
    }
    // GET_STATE, GET_TASKS, ... copy and encode every task: off the async
    // workers, which serve the executors' streams.
    let api = api.clone();
    Ok(
        agora_net::off_workers::answer(move || match read(&api, kind, principal.as_ref()) {
            Ok(answer) => respond(accept, &answer),
            Err(refusal) => refusal.into_response(),
        })
        .await,
    )
}

fn respond(accept: Media, answer: &OpResponse) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(accept.content_type()),
        )],
        encode(accept, answer),
    )
        .into_response()
}

/// The call's type, once its sub-message (where one is needed) is there.
fn validate(call: &Call) -> Result<call::Type, Refusal> {
    if call.r#type == call::Type::Unknown as i32 {
        return Err(bad_request(
            "failed to validate the agent call: expecting 'type' to be present",
        ));
    }
    let kind = match call::Type::try_from(call.r#type) {
        Ok(kind) => kind,
        Err(_) => {
            return Err(Refusal(
                StatusCode::NOT_IMPLEMENTED,
                format!("call type {} is not supported by this agent", call.r#type),
            ));
        }
    };
    let missing = match kind {
        call::Type::ListFiles if call.list_files.is_none() => Some("list_files"),
        call::Type::ReadFile if call.read_file.is_none() => Some("read_file"),
        _ => None,
    };
    if let Some(field) = missing {
        return Err(bad_request(format!(
            "failed to validate the agent call: expecting '{field}' to be present"
        )));
    }
    Ok(kind)
}

fn reply(kind: response::Type) -> OpResponse {
    OpResponse {
        r#type: kind as i32,
        ..Default::default()
    }
}

/// The answer to a call that reads the snapshot only: every type but the
/// files' ([`answer_files`]).
fn read(
    api: &OperatorApi,
    kind: call::Type,
    principal: Option<&agora_auth::Principal>,
) -> Result<OpResponse, Refusal> {
    let snapshot = api.snapshot.borrow().clone();
    let mut out;
    match kind {
        call::Type::GetHealth => {
            out = reply(response::Type::GetHealth);
            // Mesos' agent health is process liveness: it answers, so it is.
            out.get_health = Some(response::GetHealth {
                healthy: Some(true),
            });
        }
        call::Type::GetFlags => {
            out = reply(response::Type::GetFlags);
            out.get_flags = Some(response::GetFlags {
                flags: flags(&api.fixed.flags),
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
            let uptime = api.started.elapsed().as_secs_f64();
            out.get_metrics = Some(response::GetMetrics {
                metrics: metrics(&crate::mesos_v0::metrics_snapshot(&snapshot, uptime)),
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
            out.get_state = Some(get_state(&viewed(api, &snapshot, principal)));
        }
        call::Type::GetFrameworks => {
            out = reply(response::Type::GetFrameworks);
            out.get_frameworks = Some(get_frameworks(&viewed(api, &snapshot, principal)));
        }
        call::Type::GetExecutors => {
            out = reply(response::Type::GetExecutors);
            out.get_executors = Some(get_executors(&viewed(api, &snapshot, principal)));
        }
        call::Type::GetTasks => {
            out = reply(response::Type::GetTasks);
            out.get_tasks = Some(get_tasks(&viewed(api, &snapshot, principal)));
        }
        call::Type::GetAgent => {
            out = reply(response::Type::GetAgent);
            out.get_agent = Some(response::GetAgent {
                agent_info: Some(pb::AgentInfo {
                    hostname: snapshot.hostname.clone(),
                    port: Some(i32::from(api.port)),
                    resources: api.resources.as_ref().clone(),
                    attributes: api.attributes.as_ref().clone(),
                    id: snapshot
                        .id
                        .as_ref()
                        .map(|id| pb::AgentId { value: id.clone() }),
                }),
                estimated_drain_start_time: None,
            });
        }
        other => {
            return Err(Refusal(
                StatusCode::NOT_IMPLEMENTED,
                format!("{} is not supported by this agent", other.as_str_name()),
            ));
        }
    }
    Ok(out)
}

/// The answer to a files call (`LIST_FILES`, `READ_FILE`), its I/O off the
/// async workers.
async fn answer_files(
    api: &OperatorApi,
    kind: call::Type,
    call: Call,
    principal: Option<&agora_auth::Principal>,
) -> Result<OpResponse, Refusal> {
    let snapshot = api.snapshot.borrow().clone();
    let mut out;
    match kind {
        call::Type::ListFiles => {
            let path = call.list_files.map(|l| l.path).unwrap_or_default();
            crate::files_authz::check_path(&api.acls, &snapshot, principal, &path)?;
            let sandboxes = api.sandboxes.clone();
            let file_infos = blocking(move || list_files(&sandboxes, &path)).await?;
            out = reply(response::Type::ListFiles);
            out.list_files = Some(response::ListFiles { file_infos });
        }
        call::Type::ReadFile => {
            let read = call.read_file.unwrap_or_default();
            crate::files_authz::check_path(&api.acls, &snapshot, principal, &read.path)?;
            let sandboxes = api.sandboxes.clone();
            let (size, data) =
                blocking(move || read_file(&sandboxes, &read.path, read.offset, read.length))
                    .await?;
            out = reply(response::Type::ReadFile);
            out.read_file = Some(response::ReadFile {
                size: Some(size),
                data: Some(data),
            });
        }
        other => {
            return Err(Refusal(
                StatusCode::NOT_IMPLEMENTED,
                format!("{} is not a files call", other.as_str_name()),
            ));
        }
    }
    Ok(out)
}

/// The Mesos view as `principal` may see it (`view_frameworks`,
/// `view_executors`, `view_tasks`; [`crate::authz_views`]): the published
/// one itself when the ACLs hide nothing.
fn viewed<'a>(
    api: &OperatorApi,
    snapshot: &'a AgentSnapshot,
    principal: Option<&agora_auth::Principal>,
) -> std::borrow::Cow<'a, MesosView> {
    if !api.acls.restricts_views() {
        return std::borrow::Cow::Borrowed(&snapshot.mesos);
    }
    std::borrow::Cow::Owned(crate::authz_views::filtered_view(
        &snapshot.mesos,
        &api.acls,
        principal,
    ))
}

/// Runs file-system work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, FilesError> + Send + 'static,
) -> Result<T, Refusal> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(Refusal::from),
        Err(e) => Err(Refusal(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the file operation failed: {e}"),
        )),
    }
}

// ---------------------------------------------------------------------------
// Fixed facts
// ---------------------------------------------------------------------------

fn flags(flags: &BTreeMap<String, String>) -> Vec<pb::Flag> {
    flags
        .iter()
        .map(|(name, value)| pb::Flag {
            name: name.clone(),
            value: Some(value.clone()),
        })
        .collect()
}

fn version_info() -> pb::VersionInfo {
    pb::VersionInfo {
        version: MESOS_VERSION.to_string(),
        build_date: Some(String::new()),
        build_time: Some(0.0),
        build_user: Some(String::new()),
        ..Default::default()
    }
}

fn metrics(snapshot: &BTreeMap<String, f64>) -> Vec<pb::Metric> {
    snapshot
        .iter()
        .map(|(name, value)| pb::Metric {
            name: name.clone(),
            value: Some(*value),
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Frameworks, executors and tasks from the Mesos view
// ---------------------------------------------------------------------------

/// A flat summary as protobuf resources allocated to `role`. The summary
/// is Mesos' text form item by item, so it parses back; anything that
/// would not (it cannot happen with summaries Agora made) is left out.
pub fn resources(summary: &FlatMap, role: &str) -> Vec<pb::Resource> {
    let mut out = Resources::new();
    for (name, value) in &summary.0 {
        let text = match value {
            SummaryValue::Number(n) => format!("{name}:{n}"),
            SummaryValue::Text(t) => format!("{name}:{t}"),
        };
        match Resources::parse_input(&text) {
            Ok(one) => out.add(&one),
            Err(e) => tracing::debug!(resource = %text, error = %e, "summary does not parse back"),
        }
    }
    out.to_proto(Some(role))
}

fn framework_id(id: &str) -> pb::FrameworkId {
    pb::FrameworkId {
        value: id.to_string(),
    }
}

pub fn framework_info(entry: &FrameworkEntry) -> pb::FrameworkInfo {
    let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let mut info = pb::FrameworkInfo {
        user: entry.user.clone(),
        name: entry.name.clone(),
        id: Some(framework_id(&entry.id)),
        failover_timeout: Some(entry.failover_timeout),
        checkpoint: Some(entry.checkpoint),
        role: entry.role.clone(),
        roles: entry.roles.clone().unwrap_or_default(),
        hostname: nonempty(&entry.hostname),
        principal: entry.principal.clone(),
        ..Default::default()
    };
    if entry.roles.is_some() {
        info.capabilities.push(pb::framework_info::Capability {
            r#type: Some(pb::framework_info::capability::Type::MultiRole as i32),
        });
    }
    info
}

fn framework_role(entry: &FrameworkEntry) -> String {
    entry
        .role
        .clone()
        .or_else(|| entry.roles.as_ref().and_then(|r| r.first().cloned()))
        .unwrap_or_else(|| "*".to_string())
}

pub fn executor_info(framework: &FrameworkEntry, entry: &ExecutorEntry) -> pb::ExecutorInfo {
    let role = entry
        .role
        .clone()
        .unwrap_or_else(|| framework_role(framework));
    pb::ExecutorInfo {
        r#type: entry
            .kind
            .and_then(pb::executor_info::Type::from_str_name)
            .map(|t| t as i32),
        executor_id: Some(pb::ExecutorId {
            value: entry.id.clone(),
        }),
        framework_id: Some(framework_id(&framework.id)),
        resources: resources(&entry.resources, &role),
        name: (!entry.name.is_empty()).then(|| entry.name.clone()),
        ..Default::default()
    }
}

fn state_of(name: &str) -> pb::TaskState {
    pb::TaskState::from_str_name(name).unwrap_or(pb::TaskState::TaskStaging)
}

pub fn task(entry: &TaskEntry) -> pb::Task {
    let task_id = pb::TaskId {
        value: entry.id.clone(),
    };
    let agent_id = pb::AgentId {
        value: entry.slave_id.clone(),
    };
    pb::Task {
        name: entry.name.clone(),
        task_id: Some(task_id.clone()),
        framework_id: Some(framework_id(&entry.framework_id)),
        executor_id: (!entry.executor_id.is_empty()).then(|| pb::ExecutorId {
            value: entry.executor_id.clone(),
        }),
        agent_id: Some(agent_id.clone()),
        state: Some(state_of(entry.state) as i32),
        resources: resources(&entry.resources, &entry.role),
        statuses: entry
            .statuses
            .iter()
            .map(|status| pb::TaskStatus {
                task_id: Some(task_id.clone()),
                state: Some(state_of(status.state) as i32),
                timestamp: Some(status.timestamp),
                healthy: status.healthy,
                agent_id: Some(agent_id.clone()),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// A task its executor has not received yet: TASK_STAGING, as Mesos makes
/// a `Task` of a queued `TaskInfo`.
pub fn queued_task(framework: &FrameworkEntry, entry: &QueuedTaskEntry) -> pb::Task {
    pb::Task {
        name: entry.name.clone(),
        task_id: Some(pb::TaskId {
            value: entry.id.clone(),
        }),
        framework_id: Some(framework_id(&framework.id)),
        executor_id: entry
            .executor_id
            .as_ref()
            .map(|id| pb::ExecutorId { value: id.clone() }),
        agent_id: Some(pb::AgentId {
            value: entry.slave_id.clone(),
        }),
        state: Some(pb::TaskState::TaskStaging as i32),
        resources: resources(&entry.resources, &entry.role),
        ..Default::default()
    }
}

fn all_frameworks(view: &MesosView) -> impl Iterator<Item = &FrameworkEntry> {
    view.frameworks.iter().chain(&view.completed_frameworks)
}

pub fn get_frameworks(view: &MesosView) -> response::GetFrameworks {
    let framework = |entry: &FrameworkEntry| response::get_frameworks::Framework {
        framework_info: Some(framework_info(entry)),
    };
    response::GetFrameworks {
        frameworks: view.frameworks.iter().map(framework).collect(),
        completed_frameworks: view.completed_frameworks.iter().map(framework).collect(),
    }
}

pub fn get_executors(view: &MesosView) -> response::GetExecutors {
    let mut out = response::GetExecutors::default();
    for framework in all_frameworks(view) {
        let executor = |entry: &ExecutorEntry| response::get_executors::Executor {
            executor_info: Some(executor_info(framework, entry)),
        };
        out.executors
            .extend(framework.executors.iter().map(executor));
        out.completed_executors
            .extend(framework.completed_executors.iter().map(executor));
    }
    out
}

/// Tasks by stage. Agora hands a task to its executor's queue at once, so
/// nothing is ever `pending`; a live task in a terminal state is waiting
/// for its last update's acknowledgement (`terminated`).
pub fn get_tasks(view: &MesosView) -> response::GetTasks {
    let mut out = response::GetTasks::default();
    for framework in all_frameworks(view) {
        for executor in framework
            .executors
            .iter()
            .chain(&framework.completed_executors)
        {
            out.queued_tasks.extend(
                executor
                    .queued_tasks
                    .iter()
                    .map(|t| queued_task(framework, t)),
            );
            for entry in &executor.tasks {
                let task = task(entry);
                if agora_core::task::is_terminal(state_of(entry.state)) {
                    out.terminated_tasks.push(task);
                } else {
                    out.launched_tasks.push(task);
                }
            }
            out.completed_tasks
                .extend(executor.completed_tasks.iter().map(task));
        }
    }
    out
}

pub fn get_state(view: &MesosView) -> response::GetState {
    response::GetState {
        get_tasks: Some(get_tasks(view)),
        get_executors: Some(get_executors(view)),
        get_frameworks: Some(get_frameworks(view)),
    }
}

// ---------------------------------------------------------------------------
// Files, through the files API's confinement
// ---------------------------------------------------------------------------

/// `st_mode` from `ls -l`'s mode column ([`crate::files::mode_string`]),
/// which keeps every bit `FileInfo.mode` carries: the type and the
/// permission, setuid, setgid and sticky bits.
pub fn mode_bits(mode: &str) -> u32 {
    let mut chars = mode.chars();
    let kind = match chars.next() {
        Some('d') => 0o040000,
        Some('l') => 0o120000,
        Some('c') => 0o020000,
        Some('b') => 0o060000,
        Some('p') => 0o010000,
        Some('s') => 0o140000,
        _ => 0o100000,
    };
    let mut bits = kind;
    let rest: Vec<char> = chars.collect();
    let special = [0o4000, 0o2000, 0o1000];
    for (i, triplet) in rest.chunks(3).take(3).enumerate() {
        let shift = 6 - 3 * i;
        if triplet.first() == Some(&'r') {
            bits |= 0o4 << shift;
        }
        if triplet.get(1) == Some(&'w') {
            bits |= 0o2 << shift;
        }
        match triplet.get(2) {
            Some('x') => bits |= 0o1 << shift,
            Some('s' | 't') => bits |= (0o1 << shift) | special[i],
            Some('S' | 'T') => bits |= special[i],
            _ => {}
        }
    }
    bits
}

fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}

fn group_name(gid: u32) -> String {
    nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
        .ok()
        .flatten()
        .map(|g| g.name)
        .unwrap_or_else(|| gid.to_string())
}

/// LIST_FILES: what `/files/browse` lists, as Mesos' `FileInfo`s (owner
/// and group by name where they have one, by number otherwise).
pub fn list_files(sandboxes: &Sandboxes, path: &str) -> Result<Vec<pb::FileInfo>, FilesError> {
    let mut users: BTreeMap<u32, String> = BTreeMap::new();
    let mut groups: BTreeMap<u32, String> = BTreeMap::new();
    Ok(sandboxes
        .browse(path)?
        .into_iter()
        .map(|info| pb::FileInfo {
            nlink: Some(i32::try_from(info.nlink).unwrap_or(i32::MAX)),
            size: Some(info.size),
            mtime: Some(pb::TimeInfo {
                nanoseconds: info.mtime.saturating_mul(1_000_000_000),
            }),
            mode: Some(mode_bits(&info.mode)),
            uid: Some(
                users
                    .entry(info.uid)
                    .or_insert_with(|| user_name(info.uid))
                    .clone(),
            ),
            gid: Some(
                groups
                    .entry(info.gid)
                    .or_insert_with(|| group_name(info.gid))
                    .clone(),
            ),
            path: info.path,
        })
        .collect())
}

/// READ_FILE: the file's size and up to `length` of its bytes from
/// `offset` (to the end, at most [`MAX_READ_FILE`], when `length` is unset),
/// raw: not made into text as `/files/read` does. An offset at or past the
/// end reads nothing.
pub fn read_file(
    sandboxes: &Sandboxes,
    path: &str,
    offset: u64,
    length: Option<u64>,
) -> Result<(u64, Vec<u8>), FilesError> {
    if path.is_empty() {
        return Err(FilesError::BadRequest("the path is required".into()));
    }
    let (mut file, size, _) = sandboxes.open_download(path)?;
    let length = length.unwrap_or(MAX_READ_FILE).min(MAX_READ_FILE);
    if offset >= size || length == 0 {
        return Ok((size, Vec::new()));
    }
    let io = |e| FilesError::Io {
        path: path.to_string(),
        source: e,
    };
    file.seek(SeekFrom::Start(offset)).map_err(io)?;
    let mut data = Vec::new();
    file.take(length.min(size - offset))
        .read_to_end(&mut data)
        .map_err(io)?;
    Ok((size, data))
}
