use std::sync::Arc;

use agora_core::{AgentId, FrameworkId, Resources, TaskId};
use agora_proto::v1 as pb;

use super::{RecentSummary, next_task_view, task_view};
use crate::state::Task;

fn launched() -> Task {
    Task {
        id: TaskId::new("t1"),
        role: "*".to_owned(),
        name: "job".to_owned(),
        framework_id: FrameworkId::new("f1"),
        agent_id: AgentId::new("a1"),
        resources: Resources::parse("cpus:1;mem:64").expect("resources"),
        state: pb::TaskState::TaskStaging,
        update_state: None,
        last_status: None,
        resources_released: false,
        user: None,
    }
}

fn status(state: pb::TaskState, executor: Option<&str>) -> pb::TaskStatus {
    pb::TaskStatus {
        state: Some(state as i32),
        timestamp: Some(1000.5),
        executor_id: executor.map(|e| pb::ExecutorId {
            value: e.to_owned(),
        }),
        ..Default::default()
    }
}

#[test]
fn a_status_update_shares_the_fixed_part_and_a_launch_field_change_does_not() {
    let mut task = launched();
    let staging = task_view(&task);

    // A status update: the same fixed part, the view's own fields new.
    task.state = pb::TaskState::TaskRunning;
    task.last_status = Some(status(pb::TaskState::TaskRunning, None));
    let running = next_task_view(&task, Some(&staging), &RecentSummary::default());
    assert!(Arc::ptr_eq(&running.fixed, &staging.fixed));
    assert_eq!(running.state, "TASK_RUNNING");
    assert_eq!(running.status_time, Some(1000.5));
    assert_eq!(running, task_view(&task), "what a rebuild makes");

    // The executor named by a status: a new fixed part.
    task.last_status = Some(status(pb::TaskState::TaskRunning, Some("exec-9")));
    let named = next_task_view(&task, Some(&running), &RecentSummary::default());
    assert!(!Arc::ptr_eq(&named.fixed, &running.fixed));
    assert_eq!(named.executor_id.as_str(), "exec-9");
    assert_eq!(named, task_view(&task));

    // Each launch field is compared, none assumed: other resources, a
    // user, another agent's view under the same id.
    let edits: [fn(&mut Task); 6] = [
        |t| t.resources = Resources::parse("cpus:2;mem:64").expect("resources"),
        |t| t.user = Some("alice".to_owned()),
        |t| t.agent_id = AgentId::new("a2"),
        |t| t.role = "eng".to_owned(),
        |t| t.name = "other".to_owned(),
        |t| t.framework_id = FrameworkId::new("f2"),
    ];
    for (i, edit) in edits.into_iter().enumerate() {
        let mut edited = task.clone();
        edit(&mut edited);
        let view = next_task_view(&edited, Some(&named), &RecentSummary::default());
        assert!(!Arc::ptr_eq(&view.fixed, &named.fixed), "edit {i}");
        assert_eq!(view, task_view(&edited), "edit {i}");
    }
}

#[test]
fn tasks_made_together_with_the_same_resources_share_one_summary() {
    let recent = RecentSummary::default();
    let first = launched();
    let mut second = launched();
    second.id = TaskId::new("t2");
    let mut other = launched();
    other.id = TaskId::new("t3");
    other.resources = Resources::parse("cpus:2;mem:64").expect("resources");

    let a = next_task_view(&first, None, &recent);
    let b = next_task_view(&second, None, &recent);
    assert!(Arc::ptr_eq(&a.resources, &b.resources));
    let c = next_task_view(&other, None, &recent);
    assert!(!Arc::ptr_eq(&b.resources, &c.resources));
    // Shared or not, each view is what a rebuild makes.
    for (task, view) in [(&first, &a), (&second, &b), (&other, &c)] {
        assert_eq!(*view, task_view(task));
        assert_eq!(*view.resources, task.resources.summary());
    }
    // Only the last summary is offered: `first`'s again is a new one.
    let d = next_task_view(&first, None, &recent);
    assert!(!Arc::ptr_eq(&a.resources, &d.resources));
    assert!(Arc::ptr_eq(&d.resources, &recent_of(&recent)));
}

fn recent_of(
    recent: &RecentSummary,
) -> Arc<std::collections::BTreeMap<String, agora_core::resources::SummaryValue>> {
    let held = recent.0.take().expect("a recent summary");
    recent.0.set(Some(held.clone()));
    held
}
