//! Views for the master's unit tests (`kept_json`, `state_body`, the UI's
//! permissions): a
//! task, an agent and a framework with every field set, strings that need
//! escaping included.

use std::collections::BTreeMap;
use std::sync::Arc;

use agora_core::resources::SummaryValue;

use super::{AgentView, FrameworkView, SharedList, TaskFixed, TaskView};

pub(crate) fn task(id: &str, state: &'static str) -> TaskView {
    TaskView {
        fixed: Arc::new(TaskFixed {
            id: agora_core::TaskId::new(id),
            name: agora_core::SmallText::from(format!("name \"{id}\"")),
            framework_id: agora_core::FrameworkId::new("fw-1"),
            agent_id: agora_core::AgentId::new("agent-1"),
            executor_id: agora_core::ExecutorId::new(id),
            role: agora_core::SmallText::from("*".to_owned()),
            resources: Arc::new(BTreeMap::from([(
                "cpus".to_owned(),
                SummaryValue::Number(0.5),
            )])),
            user: None,
        }),
        state,
        message: Some("line\nbreak".to_owned()),
        status_time: Some(1000.25),
        healthy: None,
    }
}

/// Gives `task` a fixed part of its own: a copy of its present one, edited
/// by `edit` (the read model never edits one: it makes another).
pub(crate) fn refix(task: &mut TaskView, edit: impl FnOnce(&mut TaskFixed)) {
    let mut fixed = task.fixed.as_ref().clone();
    edit(&mut fixed);
    task.fixed = Arc::new(fixed);
}

pub(crate) fn agent(id: &str) -> AgentView {
    AgentView {
        id: id.to_owned(),
        hostname: format!("host-{id}"),
        address: format!("host-{id}:5051"),
        resources: BTreeMap::from([("cpus".to_owned(), SummaryValue::Number(4.0))]),
        used: BTreeMap::new(),
        free: BTreeMap::new(),
        attributes: BTreeMap::from([("rack".to_owned(), "r1".to_owned())]),
        active: true,
        status: "active",
        unreachable_since: None,
        registered_time: 900.0,
    }
}

pub(crate) fn framework(
    id: &str,
    tasks: SharedList<TaskView>,
    completed_tasks: SharedList<TaskView>,
) -> FrameworkView {
    FrameworkView {
        id: id.to_owned(),
        name: format!("{id} name"),
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
        tasks,
        completed_tasks,
    }
}
