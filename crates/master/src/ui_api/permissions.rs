//! `GET /api/permissions`: who the web UI's viewer is, and whether the
//! ACLs let them kill a framework's tasks or tear it down, so that the page
//! shows Kill and Teardown only where they would be accepted.
//!
//! The answer is advice for the page, never a guard: the operator API
//! still asks the ACLs when the call comes (and refuses with 403), with the
//! same subject (the authenticated principal, or anonymous) and object (the
//! framework's principal, `""` for a framework without one) as here.
//!
//! - `GET /api/permissions` → `{"principal": "ops"}` (`null`: anonymous);
//! - `GET /api/permissions?framework_id=F` → also `"framework_id"`,
//!   `"kill_tasks"` and `"teardown"` (booleans). A framework the viewer may
//!   not see (or that does not exist) answers 404, as its page does.

use agora_auth::Principal;
use agora_auth::acl::{Acls, Action};
use axum::extract::State;
use axum::response::{IntoResponse, Json, Response};
use serde::Serialize;

use super::{Params, UiState, bad, from_view, not_found};
use crate::authz_views::Viewer;
use crate::snapshot::{FrameworkView, StateSnapshot};

/// The answer's shape.
#[derive(Debug, Serialize, PartialEq)]
pub(super) struct Permissions {
    principal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    framework_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kill_tasks: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    teardown: Option<bool>,
}

/// What `viewer` may do to `framework`, as the operator API will decide it.
fn framework_permissions(
    acls: &Acls,
    viewer: Option<&Principal>,
    framework: &FrameworkView,
) -> Permissions {
    let owner = framework.principal.as_deref().unwrap_or("");
    Permissions {
        principal: viewer.map(ToString::to_string),
        framework_id: Some(framework.id.clone()),
        kill_tasks: Some(acls.authorized(Action::KillTasks, viewer, owner)),
        teardown: Some(acls.authorized(Action::TeardownFrameworks, viewer, owner)),
    }
}

/// The answer for `framework_id` (None: the viewer only) from the snapshot
/// as the viewer sees it; None when that framework is not visible.
pub(super) fn permissions(
    viewed: &StateSnapshot,
    viewer: Option<&Principal>,
    framework_id: Option<&str>,
) -> Option<Permissions> {
    let Some(framework_id) = framework_id else {
        return Some(Permissions {
            principal: viewer.map(ToString::to_string),
            framework_id: None,
            kill_tasks: None,
            teardown: None,
        });
    };
    viewed
        .frameworks
        .iter()
        .chain(&viewed.completed_frameworks)
        .find(|f| f.id == framework_id)
        .map(|f| framework_permissions(&viewed.acls, viewer, f))
}

pub(super) async fn handler(
    State(state): State<UiState>,
    viewer: Viewer,
    params: Params,
) -> Response {
    let framework_id = match params {
        Ok(axum::extract::Query(params)) => {
            if let Some(other) = params.keys().find(|k| k.as_str() != "framework_id") {
                return bad(format!(
                    "unknown query parameter '{other}'; allowed: framework_id"
                ))
                .into_response();
            }
            params.get("framework_id").cloned()
        }
        Err(e) => return bad(format!("bad query string: {e}")).into_response(),
    };
    let principal = viewer.0.clone();
    from_view(&state, viewer, move |viewed| {
        match permissions(viewed, principal.as_ref(), framework_id.as_deref()) {
            Some(answer) => Json(answer).into_response(),
            None => not_found("framework", framework_id.as_deref().unwrap_or_default()),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framework(id: &str, principal: Option<&str>) -> FrameworkView {
        FrameworkView {
            name: format!("fw-{id}"),
            user: "alice".to_string(),
            principal: principal.map(str::to_string),
            roles: vec!["eng".to_string()],
            ..crate::snapshot::test_views::framework(id, Vec::new().into(), Vec::new().into())
        }
    }

    const ACLS: &str = r#"{
        "kill_tasks": [
            {"principals": {"values": ["ops"]}, "framework_principals": {"values": ["eng"]}},
            {"principals": {"type": "ANY"}, "framework_principals": {"type": "NONE"}}],
        "teardown_frameworks": [
            {"principals": {"values": ["ops"]}, "framework_principals": {"type": "ANY"}},
            {"principals": {"type": "ANY"}, "framework_principals": {"type": "NONE"}}]
    }"#;

    fn snapshot() -> StateSnapshot {
        let mut s = StateSnapshot {
            acls: std::sync::Arc::new(Acls::parse(ACLS).expect("acls")),
            ..StateSnapshot::default()
        };
        s.frameworks = vec![framework("fw-eng", Some("eng")), framework("fw-anon", None)].into();
        s.completed_frameworks = vec![framework("fw-done", Some("eng"))].into();
        s
    }

    #[test]
    fn the_acls_decide_per_viewer_and_framework() {
        let s = snapshot();
        let ops = Principal::new("ops");
        let viewer = Principal::new("viewer");
        let ask = |who: Option<&Principal>, fw: &str| {
            let p = permissions(&s, who, Some(fw)).expect("visible");
            (p.kill_tasks.expect("kill"), p.teardown.expect("teardown"))
        };
        assert_eq!(ask(Some(&ops), "fw-eng"), (true, true));
        // ops may kill only eng's tasks, but tear down anyone's framework.
        assert_eq!(ask(Some(&ops), "fw-anon"), (false, true));
        assert_eq!(ask(Some(&ops), "fw-done"), (true, true));
        assert_eq!(ask(Some(&viewer), "fw-eng"), (false, false));
        assert_eq!(ask(None, "fw-eng"), (false, false));
        assert!(permissions(&s, Some(&ops), Some("fw-missing")).is_none());
    }

    #[test]
    fn without_a_framework_it_names_the_viewer_only() {
        let s = snapshot();
        let ops = Principal::new("ops");
        let answer = serde_json::to_value(permissions(&s, Some(&ops), None)).expect("json");
        assert_eq!(answer, serde_json::json!({"principal": "ops"}));
        let answer = serde_json::to_value(permissions(&s, None, None)).expect("json");
        assert_eq!(answer, serde_json::json!({"principal": null}));
        let answer =
            serde_json::to_value(permissions(&s, Some(&ops), Some("fw-eng"))).expect("json");
        assert_eq!(
            answer,
            serde_json::json!({"principal": "ops", "framework_id": "fw-eng",
                "kill_tasks": true, "teardown": true})
        );
    }

    #[test]
    fn permissive_acls_allow_everyone() {
        let mut s = snapshot();
        s.acls = std::sync::Arc::new(Acls::default());
        let p = permissions(&s, None, Some("fw-eng")).expect("visible");
        assert_eq!((p.kill_tasks, p.teardown), (Some(true), Some(true)));
    }
}
