//! `access_sandboxes` (the ACLs' `--acls`) on the agent's files API: a
//! sandbox is read only by principals the ACLs allow for the user its
//! executor runs as (its command's user, or its task's for a command
//! executor; else its framework's), as in Mesos. A path that names no
//! sandbox this agent knows, or climbs with `..`, is judged as "any user"
//! (only rules whose `users` is ANY or NONE decide it). Refused: 403.
//!
//! Without a rule that could refuse, the files routes are left as they are.

use std::collections::HashMap;
use std::sync::Arc;

use agora_auth::acl::{Acls, Action};
use agora_auth::{Caller, Principal};
use axum::Router;
use axum::extract::{Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;

use crate::files::FilesError;
use crate::snapshot::AgentSnapshot;

type Snapshot = watch::Receiver<Arc<AgentSnapshot>>;

/// `router` (the files API) behind the ACLs' `access_sandboxes`.
pub fn guard(router: Router, acls: Arc<Acls>, snapshot: Snapshot) -> Router {
    if !acls.restricts(Action::AccessSandboxes) {
        return router;
    }
    router.layer(axum::middleware::from_fn_with_state(
        (acls, snapshot),
        check,
    ))
}

async fn check(
    State((acls, snapshot)): State<(Arc<Acls>, Snapshot)>,
    request: Request,
    next: Next,
) -> Response {
    let principal: Option<Principal> = request
        .extensions()
        .get::<Caller>()
        .and_then(|c| c.principal().cloned());
    // Decoded for the check only; the handler decodes the query itself.
    let path = Query::<HashMap<String, String>>::try_from_uri(request.uri())
        .ok()
        .and_then(|Query(mut q)| q.remove("path"))
        .unwrap_or_default();
    let checked = check_path(&acls, &snapshot.borrow(), principal.as_ref(), &path);
    match checked {
        Ok(()) => next.run(request).await,
        Err(refused) => refused.into_response(),
    }
}

/// `access_sandboxes` for `path` as `principal` (None: anonymous); a
/// refusal is [`FilesError::Forbidden`] (403) saying who was refused.
pub fn check_path(
    acls: &Acls,
    snapshot: &AgentSnapshot,
    principal: Option<&Principal>,
    path: &str,
) -> Result<(), FilesError> {
    if !acls.restricts(Action::AccessSandboxes) {
        return Ok(());
    }
    let allowed = match sandbox_user(snapshot, path) {
        Some(user) => acls.authorized(Action::AccessSandboxes, principal, &user),
        None => acls.authorized_any(Action::AccessSandboxes, principal),
    };
    if allowed {
        return Ok(());
    }
    let who = principal.map_or_else(
        || "an anonymous caller".to_string(),
        |p| format!("principal '{p}'"),
    );
    tracing::info!(%who, path = %path, "sandbox access refused by the ACLs");
    Err(FilesError::Forbidden(format!(
        "{who} is not authorized to access this sandbox"
    )))
}

/// The user whose sandbox `path` is (Mesos' virtual
/// `/frameworks/<fw>/executors/<ex>/...` or a real path with that tail),
/// when this agent knows that executor.
pub fn sandbox_user(snapshot: &AgentSnapshot, path: &str) -> Option<String> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if parts.contains(&"..") {
        return None;
    }
    let (framework_id, executor_id) = parts.windows(4).find_map(|w| match w {
        ["frameworks", framework, "executors", executor] => Some((*framework, *executor)),
        _ => None,
    })?;
    let framework = snapshot
        .mesos
        .frameworks
        .iter()
        .chain(&snapshot.mesos.completed_frameworks)
        .find(|f| f.id == framework_id)?;
    let executor = framework
        .executors
        .iter()
        .chain(&framework.completed_executors)
        .find(|e| e.id == executor_id)?;
    Some(
        executor
            .user
            .clone()
            .unwrap_or_else(|| framework.user.clone()),
    )
}

/// `get_endpoints` (`--acls`) over the endpoints Mesos guards with it
/// ([`agora_auth::acl::GUARDED_ENDPOINTS`]: here `/metrics`,
/// `/metrics/snapshot`, `/monitor/statistics`): 403 with the reason when the
/// caller may not GET them. A layer inside the authentication layer.
pub async fn guard_endpoints(
    State(acls): State<Arc<Acls>>,
    request: Request,
    next: Next,
) -> Response {
    let caller: Option<Principal> = request
        .extensions()
        .get::<Caller>()
        .and_then(|c| c.principal().cloned());
    match acls.endpoint_refusal(caller.as_ref(), request.uri().path()) {
        None => next.run(request).await,
        Some(reason) => (axum::http::StatusCode::FORBIDDEN, format!("{reason}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{ExecutorEntry, FrameworkEntry, MesosView};

    fn executor(id: &str, user: Option<&str>) -> ExecutorEntry {
        ExecutorEntry {
            id: id.into(),
            name: String::new(),
            source: String::new(),
            container: String::new(),
            directory: String::new(),
            resources: Default::default(),
            role: None,
            kind: None,
            tasks: Vec::new(),
            queued_tasks: Vec::new(),
            completed_tasks: Vec::new(),
            user: user.map(str::to_string),
        }
    }

    fn snapshot() -> AgentSnapshot {
        AgentSnapshot {
            mesos: MesosView {
                frameworks: vec![FrameworkEntry {
                    id: "f1".into(),
                    name: "f1".into(),
                    user: "alice".into(),
                    failover_timeout: 0.0,
                    checkpoint: false,
                    hostname: String::new(),
                    principal: None,
                    roles: None,
                    role: None,
                    executors: vec![executor("e1", None), executor("e2", Some("root"))],
                    completed_executors: Vec::new(),
                }],
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn the_executors_user_or_its_frameworks_owns_a_sandbox() {
        let s = snapshot();
        let user = |path: &str| sandbox_user(&s, path);
        assert_eq!(
            user("/frameworks/f1/executors/e1/runs/latest/stdout").as_deref(),
            Some("alice")
        );
        assert_eq!(
            user("/work/slaves/S1/frameworks/f1/executors/e2/runs/r1").as_deref(),
            Some("root")
        );
        assert_eq!(user("/frameworks/f1/executors/nope"), None);
        assert_eq!(user("/frameworks/f1/executors/e1/../e2"), None);
        assert_eq!(user("/"), None);
    }
}
