//! What a viewer may see of the agent: its published snapshot filtered by
//! the ACLs' `view_frameworks`, `view_tasks` and `view_executors` (`--acls`),
//! for `/state` (also `.json`), `/slave(1)/state`, the operator API's
//! GET_STATE, GET_FRAMEWORKS, GET_EXECUTORS and GET_TASKS, and
//! `/monitor/statistics`. The one place the agent decides it.
//!
//! The objects are the master's (`crate::mesos_v0`'s entries carry them):
//! a framework's user; the user an executor runs as (its command's, a
//! command executor's task's), else its framework's; the user a task runs
//! as (its command's, else its executor's), else its framework's. Each is
//! asked through [`Acls::may_view`], as the master asks it.
//!
//! A hidden framework hides everything of it. Tasks live inside their
//! executor in Mesos' agent shapes, so, as Mesos' agent does, a hidden
//! executor hides its tasks too. Aggregates (resources in use, executor
//! counts, metrics) are not views of anyone's objects and stay as they are.
//!
//! When the ACLs restrict none of the view actions, [`for_viewer`] hands
//! back the published snapshot itself: readers pay nothing per request.

use std::collections::BTreeSet;
use std::sync::Arc;

use agora_auth::Principal;
use agora_auth::acl::{Acls, Action};

use crate::snapshot::{
    AgentSnapshot, ContainerStatistics, ExecutorEntry, FrameworkEntry, MesosView,
};

/// Who is looking, as the authentication layer (`crate::authn`) found it
/// (None: anonymous): an extractor for the read handlers.
#[derive(Debug, Clone, Default)]
pub struct Viewer(pub Option<Principal>);

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
    /// `snapshot` as this viewer may see it under `acls`.
    pub fn view(&self, snapshot: &Arc<AgentSnapshot>, acls: &Acls) -> Arc<AgentSnapshot> {
        for_viewer(snapshot, acls, self.0.as_ref())
    }
}

/// The snapshot as `viewer` (None: anonymous) may see it: the same `Arc`
/// when the ACLs hide nothing, else a filtered copy.
pub fn for_viewer(
    snapshot: &Arc<AgentSnapshot>,
    acls: &Acls,
    viewer: Option<&Principal>,
) -> Arc<AgentSnapshot> {
    if !acls.restricts_views() {
        return snapshot.clone();
    }
    let mesos = filtered_view(&snapshot.mesos, acls, viewer);
    // Agora's own task lists show what the Mesos view shows, no more: a
    // task is kept when its framework's entry still lists it.
    let shown: BTreeSet<(&str, &str)> = all_frameworks(&mesos)
        .flat_map(|f| {
            f.executors
                .iter()
                .chain(&f.completed_executors)
                .flat_map(move |e| {
                    e.tasks
                        .iter()
                        .chain(&e.completed_tasks)
                        .map(|t| t.id.as_str())
                        .chain(e.queued_tasks.iter().map(|t| t.id.as_str()))
                        .map(move |task| (f.id.as_str(), task))
                })
        })
        .collect();
    let keep = |tasks: &[crate::snapshot::TaskView]| {
        tasks
            .iter()
            .filter(|t| shown.contains(&(t.framework_id.as_str(), t.id.as_str())))
            .cloned()
            .collect()
    };
    let tasks = keep(&snapshot.tasks);
    let completed_tasks = keep(&snapshot.completed_tasks);
    Arc::new(AgentSnapshot {
        id: snapshot.id.clone(),
        hostname: snapshot.hostname.clone(),
        master: snapshot.master.clone(),
        registered: snapshot.registered,
        resources: snapshot.resources.clone(),
        tasks,
        completed_tasks,
        disk_full: snapshot.disk_full,
        disk: snapshot.disk,
        sandboxes_awaiting_gc: snapshot.sandboxes_awaiting_gc,
        refused: snapshot.refused.clone(),
        gauges: snapshot.gauges.clone(),
        mesos,
    })
}

fn all_frameworks(view: &MesosView) -> impl Iterator<Item = &FrameworkEntry> {
    view.frameworks.iter().chain(&view.completed_frameworks)
}

/// Whether `viewer` may see `framework`.
fn shows_framework(acls: &Acls, viewer: Option<&Principal>, framework: &FrameworkEntry) -> bool {
    acls.may_view(Action::ViewFrameworks, viewer, None, &framework.user)
}

/// Whether `viewer` may see `executor` of a framework it may see.
fn shows_executor(
    acls: &Acls,
    viewer: Option<&Principal>,
    framework: &FrameworkEntry,
    executor: &ExecutorEntry,
) -> bool {
    acls.may_view(
        Action::ViewExecutors,
        viewer,
        executor.user.as_deref(),
        &framework.user,
    )
}

/// The Mesos view as `viewer` may see it (always a copy; callers check
/// [`Acls::restricts_views`] first to skip the work).
pub fn filtered_view(view: &MesosView, acls: &Acls, viewer: Option<&Principal>) -> MesosView {
    let keep = |frameworks: &[FrameworkEntry]| -> Vec<FrameworkEntry> {
        frameworks
            .iter()
            .filter(|f| shows_framework(acls, viewer, f))
            .map(|f| {
                let task_shown =
                    |user: Option<&str>| acls.may_view(Action::ViewTasks, viewer, user, &f.user);
                let executors = |executors: &[ExecutorEntry]| -> Vec<ExecutorEntry> {
                    executors
                        .iter()
                        .filter(|e| shows_executor(acls, viewer, f, e))
                        .map(|e| ExecutorEntry {
                            tasks: e
                                .tasks
                                .iter()
                                .filter(|t| task_shown(t.user.as_deref()))
                                .cloned()
                                .collect(),
                            queued_tasks: e
                                .queued_tasks
                                .iter()
                                .filter(|t| task_shown(t.user.as_deref()))
                                .cloned()
                                .collect(),
                            completed_tasks: e
                                .completed_tasks
                                .iter()
                                .filter(|t| task_shown(t.user.as_deref()))
                                .cloned()
                                .collect(),
                            ..e.clone()
                        })
                        .collect()
                };
                FrameworkEntry {
                    executors: executors(&f.executors),
                    completed_executors: executors(&f.completed_executors),
                    ..f.clone()
                }
            })
            .collect()
    };
    MesosView {
        master_hostname: view.master_hostname.clone(),
        frameworks: keep(&view.frameworks),
        completed_frameworks: keep(&view.completed_frameworks),
        used: view.used.clone(),
        executors_registering: view.executors_registering,
        executors_running: view.executors_running,
        executors_terminating: view.executors_terminating,
    }
}

/// `/monitor/statistics` as `viewer` may see it: the containers of
/// executors it may see (framework and executor visible). A container the
/// snapshot does not know yet is shown only when the ACLs hide nothing.
pub fn filtered_statistics(
    entries: Vec<ContainerStatistics>,
    snapshot: &AgentSnapshot,
    acls: &Acls,
    viewer: Option<&Principal>,
) -> Vec<ContainerStatistics> {
    if !acls.restricts_views() {
        return entries;
    }
    let shown: BTreeSet<(&str, &str)> = all_frameworks(&snapshot.mesos)
        .filter(|f| shows_framework(acls, viewer, f))
        .flat_map(|f| {
            f.executors
                .iter()
                .chain(&f.completed_executors)
                .filter(move |e| shows_executor(acls, viewer, f, e))
                .map(move |e| (f.id.as_str(), e.id.as_str()))
        })
        .collect();
    entries
        .into_iter()
        .filter(|e| shown.contains(&(e.framework_id.as_str(), e.executor_id.as_str())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::TaskView;
    use crate::snapshot::{FlatMap, QueuedTaskEntry, TaskEntry};

    fn p(name: &str) -> Principal {
        Principal::new(name)
    }

    fn acls(text: &str) -> Acls {
        Acls::parse(text).expect("valid ACLs")
    }

    fn task(id: &str, framework: &str, user: Option<&str>) -> TaskEntry {
        TaskEntry {
            id: id.into(),
            name: id.into(),
            framework_id: framework.into(),
            executor_id: String::new(),
            slave_id: "agent".into(),
            state: "TASK_RUNNING",
            resources: FlatMap::default(),
            role: "*".into(),
            statuses: Vec::new(),
            user: user.map(str::to_string),
        }
    }

    fn executor(id: &str, user: Option<&str>, tasks: Vec<TaskEntry>) -> ExecutorEntry {
        ExecutorEntry {
            id: id.into(),
            name: String::new(),
            source: String::new(),
            container: String::new(),
            directory: format!("/sandbox/{id}"),
            resources: FlatMap::default(),
            role: None,
            kind: None,
            tasks,
            queued_tasks: Vec::new(),
            completed_tasks: Vec::new(),
            user: user.map(str::to_string),
        }
    }

    fn framework(id: &str, user: &str, executors: Vec<ExecutorEntry>) -> FrameworkEntry {
        FrameworkEntry {
            id: id.into(),
            name: id.into(),
            user: user.into(),
            failover_timeout: 0.0,
            checkpoint: false,
            hostname: String::new(),
            principal: None,
            roles: None,
            role: Some("*".into()),
            executors,
            completed_executors: Vec::new(),
        }
    }

    fn task_view(id: &str, framework: &str) -> TaskView {
        TaskView {
            id: id.into(),
            framework_id: framework.into(),
            state: "TASK_RUNNING",
            sandbox: Some(format!("/sandbox/{id}")),
        }
    }

    /// Framework `fa` runs as alice (task `a1` as alice, `a2` as bob, in
    /// one custom executor running as alice); framework `fb` runs as bob
    /// (command task `b1`), and has a completed task `b0`.
    fn snapshot() -> Arc<AgentSnapshot> {
        let mut custom = executor(
            "ea",
            Some("alice"),
            vec![
                task("a1", "fa", Some("alice")),
                task("a2", "fa", Some("bob")),
            ],
        );
        custom.queued_tasks.push(QueuedTaskEntry {
            id: "a3".into(),
            name: "a3".into(),
            slave_id: "agent".into(),
            resources: FlatMap::default(),
            role: "*".into(),
            executor_id: Some("ea".into()),
            user: None,
        });
        let mut command = executor("b1", None, vec![task("b1", "fb", None)]);
        command.completed_tasks.push(task("b0", "fb", None));
        Arc::new(AgentSnapshot {
            tasks: ["a1", "a2", "a3"]
                .iter()
                .map(|t| task_view(t, "fa"))
                .chain([task_view("b1", "fb")])
                .collect(),
            completed_tasks: vec![task_view("b0", "fb")],
            mesos: MesosView {
                frameworks: vec![
                    framework("fa", "alice", vec![custom]),
                    framework("fb", "bob", vec![command]),
                ],
                executors_running: 2,
                ..MesosView::default()
            },
            ..AgentSnapshot::default()
        })
    }

    /// Every (framework, executor, task) the view lists, and Agora's task
    /// lists' ids.
    fn seen(snapshot: &AgentSnapshot) -> (Vec<String>, Vec<String>) {
        let mut listed = Vec::new();
        for f in all_frameworks(&snapshot.mesos) {
            listed.push(f.id.clone());
            for e in f.executors.iter().chain(&f.completed_executors) {
                listed.push(format!("{}/{}", f.id, e.id));
                for t in e.tasks.iter().chain(&e.completed_tasks) {
                    listed.push(format!("{}/{}/{}", f.id, e.id, t.id));
                }
                for t in &e.queued_tasks {
                    listed.push(format!("{}/{}/{}", f.id, e.id, t.id));
                }
            }
        }
        let tasks = snapshot
            .tasks
            .iter()
            .chain(&snapshot.completed_tasks)
            .map(|t| t.id.clone())
            .collect();
        (listed, tasks)
    }

    const ALICE_VIEWER: &str = r#"{
        "view_frameworks": [
            {"principals": {"values": ["pa"]}, "users": {"values": ["alice"]}},
            {"principals": {"values": ["pb"]}, "users": {"values": ["bob"]}},
            {"principals": {"type": "ANY"}, "users": {"type": "NONE"}}],
        "view_tasks": [
            {"principals": {"values": ["pa"]}, "users": {"values": ["alice"]}},
            {"principals": {"values": ["pb"]}, "users": {"values": ["bob"]}},
            {"principals": {"type": "ANY"}, "users": {"type": "NONE"}}],
        "view_executors": [
            {"principals": {"values": ["pa"]}, "users": {"values": ["alice"]}},
            {"principals": {"values": ["pb"]}, "users": {"values": ["bob"]}},
            {"principals": {"type": "ANY"}, "users": {"type": "NONE"}}]
    }"#;

    #[test]
    fn a_viewer_allowed_for_one_user_sees_only_that_users_objects() {
        let snapshot = snapshot();
        let acls = acls(ALICE_VIEWER);
        // pa: alice's framework, its executor, and the tasks running as
        // alice (the queued one runs as its framework's user); not a2 (bob).
        let (listed, tasks) = seen(&for_viewer(&snapshot, &acls, Some(&p("pa"))));
        assert_eq!(listed, ["fa", "fa/ea", "fa/ea/a1", "fa/ea/a3"]);
        assert_eq!(tasks, ["a1", "a3"]);
        // pb: bob's framework, whole; not a2 either: its framework is hidden.
        let (listed, tasks) = seen(&for_viewer(&snapshot, &acls, Some(&p("pb"))));
        assert_eq!(listed, ["fb", "fb/b1", "fb/b1/b1", "fb/b1/b0"]);
        assert_eq!(tasks, ["b1", "b0"]);
        // Anyone else, or nobody: nothing; aggregates stay.
        for viewer in [Some(p("pc")), None] {
            let viewed = for_viewer(&snapshot, &acls, viewer.as_ref());
            assert_eq!(seen(&viewed), (Vec::new(), Vec::new()));
            assert_eq!(viewed.mesos.executors_running, 2);
        }
    }

    #[test]
    fn a_hidden_framework_hides_its_executors_and_tasks() {
        let snapshot = snapshot();
        // Tasks and executors of everyone may be seen, frameworks only alice's.
        let acls = acls(
            r#"{"view_frameworks": [
                {"principals": {"type": "ANY"}, "users": {"values": ["alice"]}},
                {"principals": {"type": "ANY"}, "users": {"type": "NONE"}}]}"#,
        );
        let (listed, tasks) = seen(&for_viewer(&snapshot, &acls, Some(&p("pb"))));
        assert_eq!(listed, ["fa", "fa/ea", "fa/ea/a1", "fa/ea/a2", "fa/ea/a3"]);
        assert_eq!(tasks, ["a1", "a2", "a3"]);
    }

    #[test]
    fn a_hidden_executor_hides_its_tasks() {
        let snapshot = snapshot();
        let acls = acls(
            r#"{"view_executors": [
                {"principals": {"type": "ANY"}, "users": {"values": ["bob"]}},
                {"principals": {"type": "ANY"}, "users": {"type": "NONE"}}]}"#,
        );
        let (listed, _) = seen(&for_viewer(&snapshot, &acls, None));
        assert_eq!(listed, ["fa", "fb", "fb/b1", "fb/b1/b1", "fb/b1/b0"]);
    }

    #[test]
    fn not_permissive_and_no_rule_shows_nothing() {
        let snapshot = snapshot();
        let acls = acls(r#"{"permissive": false}"#);
        let viewed = for_viewer(&snapshot, &acls, Some(&p("pa")));
        assert_eq!(seen(&viewed), (Vec::new(), Vec::new()));
    }

    #[test]
    fn unrestricted_acls_hand_back_the_shared_snapshot() {
        let snapshot = snapshot();
        for text in [
            "{}",
            r#"{"access_sandboxes": [{"principals": {"type": "ANY"}, "users": {"type": "NONE"}}]}"#,
            r#"{"permissive": false,
                "view_frameworks": [{"principals": {"type": "ANY"}, "users": {"type": "ANY"}}],
                "view_tasks": [{"principals": {"type": "ANY"}, "users": {"type": "ANY"}}],
                "view_executors": [{"principals": {"type": "ANY"}, "users": {"type": "ANY"}}]}"#,
        ] {
            let acls = acls(text);
            let viewed = for_viewer(&snapshot, &acls, Some(&p("pa")));
            assert!(Arc::ptr_eq(&viewed, &snapshot), "{text}");
            assert!(Arc::ptr_eq(&Viewer(None).view(&snapshot, &acls), &snapshot));
        }
    }

    #[test]
    fn statistics_show_only_visible_executors() {
        let snapshot = snapshot();
        let entry = |framework: &str, executor: &str| ContainerStatistics {
            framework_id: framework.into(),
            executor_id: executor.into(),
            executor_name: String::new(),
            source: String::new(),
            statistics: Default::default(),
        };
        let entries = || vec![entry("fa", "ea"), entry("fb", "b1"), entry("fx", "new")];
        let acls_text = acls(ALICE_VIEWER);
        let ids = |entries: Vec<ContainerStatistics>| -> Vec<String> {
            entries.into_iter().map(|e| e.executor_id).collect()
        };
        assert_eq!(
            ids(filtered_statistics(
                entries(),
                &snapshot,
                &acls_text,
                Some(&p("pa"))
            )),
            ["ea"]
        );
        assert_eq!(
            ids(filtered_statistics(
                entries(),
                &snapshot,
                &acls_text,
                Some(&p("pb"))
            )),
            ["b1"]
        );
        assert!(filtered_statistics(entries(), &snapshot, &acls_text, None).is_empty());
        assert_eq!(
            ids(filtered_statistics(
                entries(),
                &snapshot,
                &Acls::default(),
                None
            )),
            ["ea", "b1", "new"]
        );
    }
}
