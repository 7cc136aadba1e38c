use std::collections::BTreeMap;
use std::sync::Arc;

use agora_core::resources::SummaryValue;

use super::super::{FrameworkView, SharedList, TaskView};

fn task(id: &str, state: &'static str) -> TaskView {
    TaskView {
        id: id.to_owned(),
        name: format!("name \"{id}\""),
        state,
        framework_id: "fw-1".to_owned(),
        agent_id: "agent-1".to_owned(),
        executor_id: id.to_owned(),
        role: "*".to_owned(),
        resources: BTreeMap::from([("cpus".to_owned(), SummaryValue::Number(0.5))]),
        message: Some("line\nbreak".to_owned()),
        status_time: Some(1000.25),
        healthy: None,
        user: None,
        json: Default::default(),
    }
}

fn framework(tasks: SharedList<TaskView>) -> FrameworkView {
    FrameworkView {
        id: "fw-1".to_owned(),
        name: "fw".to_owned(),
        user: "u".to_owned(),
        principal: None,
        framework_hostname: None,
        failover_timeout: None,
        roles: vec!["*".to_owned()],
        active: true,
        registered_time: 1.0,
        reregistered_time: None,
        unregistered_time: None,
        outstanding_offers: 0,
        offer_status: Vec::new(),
        tasks: tasks.clone(),
        completed_tasks: tasks,
    }
}

#[test]
fn a_list_is_the_json_of_its_tasks_and_each_is_made_once() {
    let tasks: SharedList<TaskView> =
        vec![task("a", "TASK_RUNNING"), task("b", "TASK_STAGING")].into();
    let plain: Vec<TaskView> = tasks.iter().cloned().collect();
    let expected = serde_json::to_value(&plain).expect("plain");
    assert!(tasks.iter().all(|t| !t.json.is_made()));

    let first = serde_json::to_string(&framework(tasks.clone())).expect("first");
    assert!(tasks.iter().all(|t| t.json.is_made()));
    let again = serde_json::to_string(&framework(tasks.clone())).expect("again");
    assert_eq!(first, again);
    let value: serde_json::Value = serde_json::from_str(&again).expect("valid json");
    assert_eq!(value["tasks"], expected);
    assert_eq!(value["completed_tasks"], expected);
}

#[test]
fn a_changed_task_is_a_new_view_with_its_own_json() {
    let before = Arc::new(task("a", "TASK_RUNNING"));
    let mut tasks = SharedList::from_arcs([before.clone()]);
    serde_json::to_string(&framework(tasks.clone())).expect("serialize");
    assert!(before.json.is_made());

    // What the read model does: a new view in its place. A copy starts
    // without the JSON, so an edited copy cannot carry the old one.
    let mut changed = (*before).clone();
    assert!(!changed.json.is_made());
    changed.state = "TASK_FINISHED";
    tasks.get_mut(0).expect("one task").clone_from(&changed);
    let json = serde_json::to_value(framework(tasks)).expect("serialize");
    assert_eq!(json["tasks"][0]["state"], "TASK_FINISHED");
}
