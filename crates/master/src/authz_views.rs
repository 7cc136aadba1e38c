//! What a viewer may see: the published snapshot filtered by the ACLs'
//! `view_frameworks`, `view_tasks` and `view_executors` (objects: the OS
//! user the framework, task or executor runs as, as in Mesos), for `/state`,
//! Mesos' read endpoints, the operator API's reads and the web UI's JSON;
//! and `access_sandboxes` for the master's files relay.
//!
//! When the ACLs restrict none of the view actions, [`for_viewer`] hands
//! back the snapshot itself: readers keep their shared, once-per-snapshot
//! bodies. Otherwise each request gets its own filtered copy.
//!
//! A hidden framework hides everything of it: its tasks, executors, offers
//! and its id in the roles' lists.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use agora_auth::Principal;
use agora_auth::acl::{Acls, Action};

use axum::http::HeaderMap;
use axum::response::Response;

use crate::snapshot::state_body::Rope;
use crate::snapshot::{FrameworkView, OperatorDetails, SharedList, StateSnapshot, TaskView};
use crate::snapshot_body::gzip::{Segments, gzip_rope};
use crate::snapshot_body::{Coding, SnapshotBody, json_rope};

/// Who is looking, as the authentication layer found it (None:
/// anonymous): an extractor for the read handlers.
#[derive(Debug, Clone, Default)]
pub(crate) struct Viewer(pub Option<Principal>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Viewer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Viewer(
            parts
                .extensions
                .get::<agora_auth::Caller>()
                .and_then(|c| c.principal().cloned()),
        ))
    }
}

impl Viewer {
    /// Answers from the published snapshot as this viewer may see it, made
    /// off the async workers (`answer_off_workers`): when the ACLs restrict
    /// views the filtering itself copies the cluster, and what reads it
    /// mostly walks every task or agent.
    pub(crate) async fn answer(
        self,
        snapshot: &tokio::sync::watch::Receiver<Arc<StateSnapshot>>,
        make: impl FnOnce(&StateSnapshot) -> axum::response::Response + Send + 'static,
    ) -> axum::response::Response {
        let published = snapshot.borrow().clone();
        crate::snapshot_body::answer_off_workers(move || {
            make(&for_viewer(&published, self.0.as_ref()))
        })
        .await
    }

    /// A JSON body made from the snapshot: `cache`'s shared one when the
    /// ACLs hide nothing, else this viewer's own, made off the async
    /// workers (with nothing kept from an earlier body).
    pub(crate) async fn body<B, K>(
        &self,
        current: Arc<StateSnapshot>,
        cache: &crate::snapshot_body::SnapshotBody<B, K>,
        make: impl FnOnce(&StateSnapshot, &mut K) -> serde_json::Result<B> + Send + 'static,
    ) -> Result<B, axum::response::Response>
    where
        B: Clone + Send + 'static,
        K: Default + Send + 'static,
    {
        if !restricts_views(&current.acls) {
            return cache.get(current, make).await;
        }
        let viewer = self.0.clone();
        crate::snapshot_body::off_workers(move || {
            let viewed = for_viewer(&current, viewer.as_ref());
            make(&viewed, &mut K::default())
        })
        .await?
        .map_err(crate::snapshot_body::cannot_serialize)
    }

    /// `plain` (what [`Viewer::body`] gave for `current`) as a JSON
    /// response: in gzip to a client that takes it when it is large enough
    /// to gain, compressed from the pieces that changed since the last
    /// gzip in `gzip_cache` (shared by every poller when the ACLs hide
    /// nothing, else this viewer's own); else as it is.
    pub(crate) async fn send_rope(
        &self,
        current: Arc<StateSnapshot>,
        plain: Rope,
        gzip_cache: &SnapshotBody<Rope, Segments>,
        headers: &HeaderMap,
    ) -> Response {
        let worth_it = plain.len() as u64 >= agora_net::encoding::MIN_BYTES;
        if !(worth_it && agora_net::encoding::accepts_gzip(headers)) {
            return json_rope(plain, Coding::Identity);
        }
        let make = move |_: &StateSnapshot, kept: &mut Segments| {
            gzip_rope(&plain, kept).map_err(serde_json::Error::io)
        };
        let gz = if restricts_views(&current.acls) {
            let made =
                crate::snapshot_body::off_workers(move || make(&current, &mut Segments::default()));
            match made.await {
                Ok(Ok(gz)) => gz,
                Ok(Err(e)) => return crate::snapshot_body::cannot_serialize(e),
                Err(response) => return response,
            }
        } else {
            match gzip_cache.get(current, make).await {
                Ok(gz) => gz,
                Err(response) => return response,
            }
        };
        json_rope(gz, Coding::Gzip)
    }
}

/// Whether the ACLs may hide anything from a viewer.
pub(crate) fn restricts_views(acls: &Acls) -> bool {
    acls.restricts_views() || acls.restricts(Action::ViewRoles) || acls.restricts(Action::GetQuotas)
}

/// The snapshot as `viewer` (None: anonymous) may see it: the same `Arc`
/// when the ACLs hide nothing.
pub(crate) fn for_viewer(
    snapshot: &Arc<StateSnapshot>,
    viewer: Option<&Principal>,
) -> Arc<StateSnapshot> {
    if !restricts_views(&snapshot.acls) {
        return snapshot.clone();
    }
    Arc::new(filtered(snapshot, viewer))
}

/// The user a task runs as: its own, else its framework's.
fn task_user<'a>(framework: &'a FrameworkView, task: &'a TaskView) -> &'a str {
    task.user.as_deref().unwrap_or(&framework.user)
}

fn filtered(snapshot: &StateSnapshot, viewer: Option<&Principal>) -> StateSnapshot {
    let acls = &snapshot.acls;
    let may_view_framework =
        |f: &FrameworkView| acls.may_view(Action::ViewFrameworks, viewer, None, &f.user);
    let keep = |frameworks: &SharedList<FrameworkView>| -> SharedList<FrameworkView> {
        frameworks
            .iter()
            .filter(|f| may_view_framework(f))
            .map(|f| {
                let visible = |t: &&TaskView| {
                    acls.may_view(Action::ViewTasks, viewer, t.user.as_deref(), &f.user)
                };
                FrameworkView {
                    tasks: f.tasks.iter().filter(visible).cloned().collect(),
                    completed_tasks: f.completed_tasks.iter().filter(visible).cloned().collect(),
                    ..f.clone()
                }
            })
            .collect()
    };
    let frameworks = keep(&snapshot.frameworks);
    let completed_frameworks = keep(&snapshot.completed_frameworks);
    let visible: BTreeSet<&str> = frameworks
        .iter()
        .chain(&completed_frameworks)
        .map(|f| f.id.as_str())
        .collect();
    // Each task's user, for the operator view (whose tasks do not
    // carry one).
    let task_users: BTreeMap<(&str, &str), &str> = snapshot
        .frameworks
        .iter()
        .chain(&snapshot.completed_frameworks)
        .flat_map(|f| {
            f.tasks
                .iter()
                .chain(&f.completed_tasks)
                .map(move |t| ((f.id.as_str(), t.id.as_str()), task_user(f, t)))
        })
        .collect();
    let framework_users: BTreeMap<&str, &str> = snapshot
        .frameworks
        .iter()
        .chain(&snapshot.completed_frameworks)
        .map(|f| (f.id.as_str(), f.user.as_str()))
        .collect();

    // Roles, their weights (`view_roles`) and their quotas (`get_quotas`).
    let may_view_role = |role: &str| acls.authorized(Action::ViewRoles, viewer, role);
    let may_see_quota = |role: &str| acls.authorized(Action::GetQuotas, viewer, role);
    let mut roles: Vec<_> = snapshot
        .roles
        .iter()
        .filter(|r| may_view_role(&r.name))
        .cloned()
        .collect();
    for role in &mut roles {
        if !may_see_quota(&role.name) {
            role.quota = None;
        }
        role.frameworks.retain(|id| visible.contains(id.as_str()));
        role.offer_status
            .retain(|s| visible.contains(s.framework_id.as_str()));
    }
    let mut mesos = snapshot.mesos.clone();
    mesos
        .frameworks
        .retain(|id, _| visible.contains(id.as_str()));
    let operator = snapshot.operator.as_ref().map(|view| {
        Arc::new(filtered_operator(
            view,
            acls,
            viewer,
            &visible,
            &task_users,
            &framework_users,
        ))
    });
    let offers = snapshot
        .offers
        .iter()
        .filter(|o| visible.contains(o.framework_id.as_str()))
        .cloned()
        .collect();
    // Field by field, so that the frameworks (most of a snapshot) are not
    // copied only to be replaced.
    StateSnapshot {
        version: snapshot.version.clone(),
        id: snapshot.id.clone(),
        leader: snapshot.leader.clone(),
        elected: snapshot.elected,
        epoch: snapshot.epoch,
        recovering_agents: snapshot.recovering_agents,
        hostname: snapshot.hostname.clone(),
        start_time: snapshot.start_time,
        snapshot_time: snapshot.snapshot_time,
        agents: snapshot.agents.clone(),
        frameworks,
        completed_frameworks,
        outstanding_offers: snapshot.outstanding_offers,
        roles,
        weights: snapshot
            .weights
            .iter()
            .filter(|w| may_view_role(&w.role))
            .cloned()
            .collect(),
        quotas: snapshot
            .quotas
            .iter()
            .filter(|q| may_see_quota(&q.role))
            .cloned()
            .collect(),
        counters: snapshot.counters.clone(),
        offers,
        mesos,
        operator,
        acls: snapshot.acls.clone(),
    }
}

fn filtered_operator(
    view: &OperatorDetails,
    acls: &Acls,
    viewer: Option<&Principal>,
    visible: &BTreeSet<&str>,
    task_users: &BTreeMap<(&str, &str), &str>,
    framework_users: &BTreeMap<&str, &str>,
) -> OperatorDetails {
    use agora_proto::v1 as pb;
    fn framework_of(id: &Option<pb::FrameworkId>) -> &str {
        id.as_ref().map_or("", |f| f.value.as_str())
    }
    let mut state = view.state.clone();
    if let Some(frameworks) = state.get_frameworks.as_mut() {
        let shown = |f: &agora_proto::v1::master::response::get_frameworks::Framework| {
            f.framework_info
                .as_ref()
                .is_some_and(|info| visible.contains(framework_of(&info.id)))
        };
        frameworks.frameworks.retain(shown);
        frameworks.completed_frameworks.retain(shown);
        frameworks
            .recovered_frameworks
            .retain(|info| acls.authorized(Action::ViewFrameworks, viewer, &info.user));
    }
    if let Some(tasks) = state.get_tasks.as_mut() {
        // A task is shown when its framework is and the task itself may be
        // seen: its user is known for the snapshot's own tasks; others
        // (pending, orphans) fall back to the framework's user.
        let shown = |t: &pb::Task| {
            let framework = framework_of(&t.framework_id);
            if !visible.contains(framework) {
                return false;
            }
            let task = t.task_id.as_ref().map_or("", |id| id.value.as_str());
            let user = task_users
                .get(&(framework, task))
                .or_else(|| framework_users.get(framework))
                .copied()
                .unwrap_or("");
            acls.authorized(Action::ViewTasks, viewer, user)
        };
        tasks.pending_tasks.retain(shown);
        tasks.tasks.retain(shown);
        tasks.unreachable_tasks.retain(shown);
        tasks.completed_tasks.retain(shown);
        tasks.orphan_tasks.retain(shown);
    }
    if let Some(executors) = state.get_executors.as_mut() {
        let shown = |e: &agora_proto::v1::master::response::get_executors::Executor| {
            let Some(info) = e.executor_info.as_ref() else {
                return false;
            };
            let framework = framework_of(&info.framework_id);
            if !visible.contains(framework) {
                return false;
            }
            let runs_as = info.command.as_ref().and_then(|c| c.user.as_deref());
            let framework_user = framework_users.get(framework).copied().unwrap_or("");
            acls.may_view(Action::ViewExecutors, viewer, runs_as, framework_user)
        };
        executors.executors.retain(shown);
        executors.orphan_executors.retain(shown);
    }
    OperatorDetails {
        master_info: view.master_info.clone(),
        state,
    }
}

/// The operator API's event stream for one subscriber, filtered as its
/// SUBSCRIBED state is: framework events by `view_frameworks`, task events
/// by the framework's visibility and `view_tasks`. Events carry no task
/// user, so a task's is taken to be its framework's here.
pub(crate) struct EventFilter {
    acls: Arc<Acls>,
    viewer: Option<Principal>,
    /// Each known framework's user, by id.
    users: BTreeMap<String, String>,
}

impl EventFilter {
    /// None when the ACLs hide nothing (every event is shown).
    pub(crate) fn new(snapshot: &StateSnapshot, viewer: Option<Principal>) -> Option<Self> {
        if !restricts_views(&snapshot.acls) {
            return None;
        }
        let users = snapshot
            .frameworks
            .iter()
            .chain(&snapshot.completed_frameworks)
            .map(|f| (f.id.clone(), f.user.clone()))
            .collect();
        Some(EventFilter {
            acls: snapshot.acls.clone(),
            viewer,
            users,
        })
    }

    fn may_view_framework_info(&mut self, info: Option<&agora_proto::v1::FrameworkInfo>) -> bool {
        let Some(info) = info else {
            return false;
        };
        let id = info.id.as_ref().map_or("", |f| f.value.as_str());
        self.users.insert(id.to_string(), info.user.clone());
        self.acls
            .authorized(Action::ViewFrameworks, self.viewer.as_ref(), &info.user)
    }

    fn may_view_task_of(&self, framework_id: Option<&agora_proto::v1::FrameworkId>) -> bool {
        let Some(user) = framework_id.and_then(|f| self.users.get(&f.value)) else {
            return false;
        };
        self.acls
            .authorized(Action::ViewFrameworks, self.viewer.as_ref(), user)
            && self
                .acls
                .authorized(Action::ViewTasks, self.viewer.as_ref(), user)
    }

    /// Whether the subscriber may see `event`.
    pub(crate) fn shows(&mut self, event: &agora_proto::v1::master::Event) -> bool {
        if let Some(added) = &event.task_added {
            return self
                .may_view_task_of(added.task.as_ref().and_then(|t| t.framework_id.as_ref()));
        }
        if let Some(updated) = &event.task_updated {
            return self.may_view_task_of(updated.framework_id.as_ref());
        }
        if let Some(added) = &event.framework_added {
            let info = added
                .framework
                .as_ref()
                .and_then(|f| f.framework_info.as_ref());
            return self.may_view_framework_info(info);
        }
        if let Some(updated) = &event.framework_updated {
            let info = updated
                .framework
                .as_ref()
                .and_then(|f| f.framework_info.as_ref());
            return self.may_view_framework_info(info);
        }
        if let Some(removed) = &event.framework_removed {
            return self.may_view_framework_info(removed.framework_info.as_ref());
        }
        true
    }
}

/// `access_sandboxes` for a sandbox path the master relays to an agent
/// (`/frameworks/<fw>/executors/<ex>/...`, Mesos' virtual form, or a real
/// path with that tail): the object is the user of the executor's task
/// (its own, else its framework's). A path that names no sandbox this
/// master knows is checked against "any user" (only ANY and NONE rules
/// decide it). Paths with `..` are judged as if they named no sandbox.
pub(crate) fn may_access_sandbox(
    snapshot: &StateSnapshot,
    viewer: Option<&Principal>,
    path: &str,
) -> bool {
    let acls = &snapshot.acls;
    if !acls.restricts(Action::AccessSandboxes) {
        return true;
    }
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let named = (!parts.contains(&".."))
        .then(|| {
            parts.windows(4).find_map(|w| match w {
                ["frameworks", framework, "executors", executor] => Some((*framework, *executor)),
                _ => None,
            })
        })
        .flatten();
    let user = named.and_then(|(framework_id, executor_id)| {
        let framework = snapshot
            .frameworks
            .iter()
            .chain(&snapshot.completed_frameworks)
            .find(|f| f.id == framework_id)?;
        let task = framework
            .tasks
            .iter()
            .chain(&framework.completed_tasks)
            .find(|t| t.executor_id.as_str() == executor_id);
        Some(task.map_or(framework.user.as_str(), |t| task_user(framework, t)))
    });
    match user {
        Some(user) => acls.authorized(Action::AccessSandboxes, viewer, user),
        None => acls.authorized_any(Action::AccessSandboxes, viewer),
    }
}

/// `get_endpoints` (`--acls`) over the endpoints Mesos guards with it
/// ([`agora_auth::acl::GUARDED_ENDPOINTS`]): 403 with the reason when the
/// caller may not GET them. A layer inside the authentication layer, so the
/// caller is known.
pub(crate) async fn guard_endpoints(
    axum::extract::State(acls): axum::extract::State<Arc<Acls>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let caller = request
        .extensions()
        .get::<agora_auth::Caller>()
        .and_then(|c| c.principal().cloned());
    match acls.endpoint_refusal(caller.as_ref(), request.uri().path()) {
        None => next.run(request).await,
        Some(reason) => (axum::http::StatusCode::FORBIDDEN, format!("{reason}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests;
