//! Operator events (`Effect::Observed`): what changes the books report for
//! the v1 operator API's event stream, and that replaying them over the
//! state an operator subscribed with always gives the state as it is.

use agora_proto::v1::master::{Event, event, response};

use super::*;

/// What an operator mirrors from the event stream: agents, frameworks
/// (with whether they are active), and every task's state.
#[derive(Debug, Default, Clone, PartialEq)]
struct View {
    agents: BTreeSet<String>,
    frameworks: BTreeMap<String, bool>,
    tasks: BTreeMap<(String, String), i32>,
}

fn id_of<T>(id: &Option<T>, value: impl Fn(&T) -> &str) -> String {
    id.as_ref()
        .map(|i| value(i).to_string())
        .unwrap_or_default()
}

fn task_key(task: &pb::Task) -> (String, String) {
    (
        id_of(&task.framework_id, |f| &f.value),
        id_of(&task.task_id, |t| &t.value),
    )
}

fn framework_entry(f: &response::get_frameworks::Framework) -> (String, bool) {
    let info = f.framework_info.as_ref().expect("framework info");
    (id_of(&info.id, |i| &i.value), f.active == Some(true))
}

impl View {
    /// What `GET_STATE` shows, as the mirror keeps it.
    fn of(state: &response::GetState) -> View {
        let agents = state.get_agents.clone().unwrap_or_default();
        let frameworks = state.get_frameworks.clone().unwrap_or_default();
        let tasks = state.get_tasks.clone().unwrap_or_default();
        View {
            agents: agents
                .agents
                .iter()
                .map(|a| id_of(&a.agent_info.as_ref().expect("info").id, |i| &i.value))
                .collect(),
            frameworks: frameworks.frameworks.iter().map(framework_entry).collect(),
            tasks: tasks
                .tasks
                .iter()
                .chain(&tasks.unreachable_tasks)
                .chain(&tasks.completed_tasks)
                .map(|t| (task_key(t), t.state.unwrap_or_default()))
                .collect(),
        }
    }

    /// Applies one event as an operator would; an event about something
    /// the view does not hold (or adding what it holds) is a bug.
    fn apply(&mut self, event: &Event) {
        match event::Type::try_from(event.r#type).expect("known event type") {
            event::Type::TaskAdded => {
                let task = event.task_added.as_ref().and_then(|t| t.task.as_ref());
                let task = task.expect("task");
                self.tasks
                    .insert(task_key(task), task.state.unwrap_or_default());
            }
            event::Type::TaskUpdated => {
                let update = event.task_updated.as_ref().expect("task_updated");
                let status = update.status.as_ref().expect("status");
                let key = (
                    id_of(&update.framework_id, |f| &f.value),
                    id_of(&status.task_id, |t| &t.value),
                );
                let state = update.state.expect("state");
                let known = self.tasks.insert(key.clone(), state);
                assert!(known.is_some(), "update of a task never added: {key:?}");
            }
            event::Type::AgentAdded => {
                let agent = event.agent_added.as_ref().and_then(|a| a.agent.as_ref());
                let info = agent.and_then(|a| a.agent_info.as_ref()).expect("agent");
                assert!(self.agents.insert(id_of(&info.id, |i| &i.value)));
            }
            event::Type::AgentRemoved => {
                let removed = event.agent_removed.as_ref().expect("agent_removed");
                let id = id_of(&removed.agent_id, |i| &i.value);
                assert!(self.agents.remove(&id), "removal of an unknown agent {id}");
            }
            event::Type::FrameworkAdded => {
                let added = event
                    .framework_added
                    .as_ref()
                    .and_then(|f| f.framework.as_ref());
                let (id, active) = framework_entry(added.expect("framework"));
                assert!(self.frameworks.insert(id, active).is_none());
            }
            event::Type::FrameworkUpdated => {
                let updated = event.framework_updated.as_ref();
                let (id, active) = framework_entry(
                    updated
                        .and_then(|f| f.framework.as_ref())
                        .expect("framework"),
                );
                let known = self.frameworks.insert(id.clone(), active);
                assert!(known.is_some(), "update of an unknown framework {id}");
            }
            event::Type::FrameworkRemoved => {
                let removed = event.framework_removed.as_ref();
                let info = removed.and_then(|f| f.framework_info.as_ref());
                let id = id_of(&info.expect("info").id, |i| &i.value);
                assert!(self.frameworks.remove(&id).is_some(), "{id}");
            }
            other => panic!("the state machine does not make {other:?}"),
        }
    }
}

fn observed(effects: &[Effect]) -> Vec<Event> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Observed(event) => Some(event.as_ref().clone()),
            _ => None,
        })
        .collect()
}

fn kinds(events: &[Event]) -> Vec<event::Type> {
    events
        .iter()
        .map(|e| event::Type::try_from(e.r#type).expect("known"))
        .collect()
}

/// `(status state, task state)` of each TASK_UPDATED.
fn task_updates(events: &[Event]) -> Vec<(pb::TaskState, pb::TaskState)> {
    events
        .iter()
        .filter_map(|e| e.task_updated.as_ref())
        .map(|u| {
            let status = u.status.as_ref().expect("status");
            (
                state_of(status),
                pb::TaskState::try_from(u.state.expect("state")).expect("known"),
            )
        })
        .collect()
}

/// A harness with an operator subscribed from its current state on.
struct Watched {
    h: Harness,
    view: View,
}

impl Watched {
    fn new(mut h: Harness) -> Watched {
        h.master.set_observed(true);
        let view = View::of(&h.master.operator_state());
        Watched { h, view }
    }

    /// Applies the events among `effects`, checks that the view is the
    /// state's, and returns them.
    fn feed(&mut self, effects: &[Effect]) -> Vec<Event> {
        let events = observed(effects);
        for event in &events {
            self.view.apply(event);
        }
        assert_eq!(
            self.view,
            View::of(&self.h.master.operator_state()),
            "the events replayed give the state; events: {events:?}"
        );
        events
    }

    /// One step on the harness, fed.
    fn step(&mut self, step: impl FnOnce(&mut Harness) -> Vec<Effect>) -> Vec<Event> {
        let out = step(&mut self.h);
        self.feed(&out)
    }

    fn operator(&mut self, call: OperatorCall) -> Vec<Event> {
        let mut out = Vec::new();
        let now = self.h.now();
        self.h
            .master
            .operator(now, call, &mut out)
            .expect("operator call succeeds");
        self.feed(&out)
    }
}

fn update_with_latest(
    framework_id: &FrameworkId,
    task_id: &str,
    state: pb::TaskState,
    latest: pb::TaskState,
    n: u8,
) -> agent_message::Kind {
    let mut update = status_update(framework_id, task_id, state, Some(uuid(n)));
    if let agent_message::Kind::StatusUpdate(u) = &mut update {
        u.latest_state = Some(latest as i32);
    }
    update
}

#[test]
fn nothing_is_reported_while_nobody_observes() {
    let (mut h, agent, fw, offer) = one_agent_one_offer();
    assert!(!h.master.observed());
    let mut out = launch_one(
        &mut h,
        &fw,
        &offer,
        command_task("t1", &agent, "cpus:1;mem:128"),
    );
    out.extend(h.agent_says(
        1,
        status_update(&fw.id, "t1", pb::TaskState::TaskRunning, Some(uuid(1))),
    ));
    out.extend(h.framework_gone(fw.conn));
    assert!(observed(&out).is_empty(), "{out:?}");
}

#[test]
fn a_launched_task_is_added_staging_and_each_state_it_reaches_is_reported() {
    let (h, agent, fw, offer) = one_agent_one_offer();
    let mut w = Watched::new(h);
    let out = launch_one(
        &mut w.h,
        &fw,
        &offer,
        command_task("t1", &agent, "cpus:1;mem:128"),
    );
    let events = w.feed(&out);
    assert_eq!(kinds(&events), vec![event::Type::TaskAdded]);
    let task = events[0].task_added.as_ref().and_then(|t| t.task.as_ref());
    let task = task.expect("task");
    assert_eq!(task.state, Some(pb::TaskState::TaskStaging as i32));
    assert_eq!(task.agent_id, agent.to_field());
    assert_eq!(
        Resources::from_proto(&task.resources),
        Ok(res("cpus:1;mem:128"))
    );

    let running = status_update(&fw.id, "t1", pb::TaskState::TaskRunning, Some(uuid(1)));
    let events = w.step(|h| h.agent_says(1, running.clone()));
    assert_eq!(
        task_updates(&events),
        vec![(pb::TaskState::TaskRunning, pb::TaskState::TaskRunning)]
    );
    // The agent sends it again (not acknowledged yet): nothing new.
    assert!(w.step(|h| h.agent_says(1, running)).is_empty());
    // A health check result is news even in the same state.
    let mut healthy = status_update(&fw.id, "t1", pb::TaskState::TaskRunning, Some(uuid(2)));
    if let agent_message::Kind::StatusUpdate(u) = &mut healthy
        && let Some(status) = u.status.as_mut()
    {
        status.healthy = Some(true);
        status.reason = Some(pb::task_status::Reason::TaskHealthCheckStatusUpdated as i32);
    }
    let events = w.step(|h| h.agent_says(1, healthy));
    assert_eq!(events.len(), 1, "{events:?}");
    let status = events[0]
        .task_updated
        .as_ref()
        .and_then(|u| u.status.as_ref());
    assert_eq!(status.and_then(|s| s.healthy), Some(true));

    let finished = status_update(&fw.id, "t1", pb::TaskState::TaskFinished, Some(uuid(3)));
    let events = w.step(|h| h.agent_says(1, finished));
    assert_eq!(
        task_updates(&events),
        vec![(pb::TaskState::TaskFinished, pb::TaskState::TaskFinished)]
    );
    let out = w.h.call_ok(&fw, ack_call(&fw.id, &agent, "t1", uuid(3)));
    assert!(
        w.feed(&out).is_empty(),
        "completing a task changes no state"
    );
}

#[test]
fn an_update_delivered_after_the_agent_knew_a_later_state_is_still_reported() {
    // RUNNING and FINISHED within milliseconds: the agent delivers RUNNING
    // knowing FINISHED already. Operators see both updates, in order.
    let (h, agent, fw, offer) = one_agent_one_offer();
    let mut w = Watched::new(h);
    let out = launch_one(
        &mut w.h,
        &fw,
        &offer,
        command_task("t1", &agent, "cpus:1;mem:128"),
    );
    w.feed(&out);
    let (running, finished) = (pb::TaskState::TaskRunning, pb::TaskState::TaskFinished);
    let events =
        w.step(|h| h.agent_says(1, update_with_latest(&fw.id, "t1", running, finished, 1)));
    assert_eq!(task_updates(&events), vec![(running, finished)]);
    w.h.call_ok(&fw, ack_call(&fw.id, &agent, "t1", uuid(1)));
    let events =
        w.step(|h| h.agent_says(1, update_with_latest(&fw.id, "t1", finished, finished, 2)));
    assert_eq!(task_updates(&events), vec![(finished, finished)]);
}

#[test]
fn frameworks_are_added_updated_on_failover_and_disconnection_and_removed() {
    let mut h = Harness::new();
    let agent = h.register_agent(1, "a1", "cpus:2;mem:1024");
    let mut w = Watched::new(h);
    let mut info = framework_info("fw");
    info.failover_timeout = Some(600.0);
    let (result, out) = w.h.subscribe(10, info.clone());
    let id = result.expect("subscribed");
    let events = w.feed(&out);
    assert_eq!(kinds(&events), vec![event::Type::FrameworkAdded]);
    let added = events[0]
        .framework_added
        .as_ref()
        .and_then(|f| f.framework.as_ref());
    assert_eq!(added.map(framework_entry), Some((id.to_string(), true)));

    let events = w.step(|h| h.framework_gone(10));
    assert_eq!(kinds(&events), vec![event::Type::FrameworkUpdated]);
    assert!(!w.view.frameworks[id.as_str()], "inactive");

    info.id = id.to_field();
    let (result, out) = w.h.subscribe(11, info);
    result.expect("re-subscribed");
    let events = w.feed(&out);
    assert_eq!(kinds(&events), vec![event::Type::FrameworkUpdated]);
    assert!(w.view.frameworks[id.as_str()], "active again");
    let fw = Fw {
        id: id.clone(),
        conn: 11,
        stream: stream_of(11),
    };
    let offer = w.h.one_offer(&fw);
    let out = launch_one(
        &mut w.h,
        &fw,
        &offer,
        command_task("t1", &agent, "cpus:1;mem:128"),
    );
    w.feed(&out);

    let events = w.operator(OperatorCall::Teardown {
        framework_id: id.to_string(),
    });
    assert_eq!(
        kinds(&events),
        vec![event::Type::TaskUpdated, event::Type::FrameworkRemoved]
    );
    let status = events[0]
        .task_updated
        .as_ref()
        .and_then(|u| u.status.as_ref());
    let status = status.expect("status");
    assert_eq!(state_of(status), pb::TaskState::TaskKilled);
    assert_eq!(
        reason_of(status),
        Some(pb::task_status::Reason::FrameworkRemoved)
    );
}

#[test]
fn an_agent_leaves_when_unreachable_comes_back_with_its_task_and_leaves_when_gone() {
    let (h, agent, fw) = health_cluster(true);
    let mut w = Watched::new(h);
    assert_eq!(
        w.step(|h| h.agent_gone(1)),
        vec![],
        "a broken session alone"
    );
    let period = w.h.master.config().agent_ping_timeout.as_secs_f64();
    let max = f64::from(w.h.master.config().max_agent_ping_timeouts);
    w.h.advance(period * max + 0.5);
    let events = w.step(|h| h.tick());
    assert_eq!(
        kinds(&events),
        vec![event::Type::TaskUpdated, event::Type::AgentRemoved]
    );
    let unreachable = pb::TaskState::TaskUnreachable;
    assert_eq!(task_updates(&events), vec![(unreachable, unreachable)]);
    assert!(w.view.agents.is_empty());

    let mut register = register_msg(agent_info("a1", "cpus:2;mem:1024"));
    register.agent_info.as_mut().expect("info").id = agent.to_field();
    register.tasks = vec![pb::Task {
        name: "t1".into(),
        task_id: Some(pb::TaskId { value: "t1".into() }),
        framework_id: fw.id.to_field(),
        agent_id: agent.to_field(),
        state: Some(pb::TaskState::TaskRunning as i32),
        resources: res("cpus:1;mem:128").to_proto(None),
        ..Default::default()
    }];
    let (_, out) = w.h.register(2, register);
    let events = w.feed(&out);
    assert_eq!(
        kinds(&events),
        vec![event::Type::AgentAdded, event::Type::TaskUpdated]
    );
    let running = pb::TaskState::TaskRunning;
    assert_eq!(task_updates(&events), vec![(running, running)]);

    let events = w.operator(OperatorCall::MarkAgentGone {
        agent_id: agent.to_string(),
    });
    assert_eq!(
        kinds(&events),
        vec![event::Type::TaskUpdated, event::Type::AgentRemoved]
    );
    let gone = pb::TaskState::TaskGoneByOperator;
    assert_eq!(task_updates(&events), vec![(gone, gone)]);
}

#[test]
fn a_task_lost_at_removal_is_reported_once() {
    let (h, _agent, _fw) = health_cluster(false);
    let mut w = Watched::new(h);
    w.step(|h| h.agent_gone(1));
    let period = w.h.master.config().agent_ping_timeout.as_secs_f64();
    let max = f64::from(w.h.master.config().max_agent_ping_timeouts);
    w.h.advance(period * max + 0.5);
    w.step(|h| h.tick());
    w.h.advance(w.h.master.config().agent_removal_timeout.as_secs_f64() + 1.0);
    let events = w.step(|h| h.tick());
    let lost = pb::TaskState::TaskLost;
    assert_eq!(task_updates(&events), vec![(lost, lost)]);
}

#[test]
fn an_agent_met_first_brings_its_frameworks_and_tasks() {
    // As after a failover: the agent reports a framework and its task.
    let mut w = Watched::new(Harness::new());
    let mut register = register_msg(agent_info("a1", "cpus:2;mem:1024"));
    register.agent_info.as_mut().expect("info").id = Some(pb::AgentId {
        value: "old-S1".into(),
    });
    let mut info = framework_info("fw");
    info.id = Some(pb::FrameworkId {
        value: "old-0001".into(),
    });
    register.frameworks = vec![info];
    register.tasks = vec![pb::Task {
        name: "t1".into(),
        task_id: Some(pb::TaskId { value: "t1".into() }),
        framework_id: Some(pb::FrameworkId {
            value: "old-0001".into(),
        }),
        agent_id: Some(pb::AgentId {
            value: "old-S1".into(),
        }),
        state: Some(pb::TaskState::TaskRunning as i32),
        resources: res("cpus:1;mem:128").to_proto(None),
        ..Default::default()
    }];
    let (_, out) = w.h.register(1, register);
    let events = w.feed(&out);
    assert_eq!(
        kinds(&events),
        vec![
            event::Type::FrameworkAdded,
            event::Type::AgentAdded,
            event::Type::TaskAdded
        ]
    );
    assert!(
        !w.view.frameworks["old-0001"],
        "inactive until it subscribes"
    );
}

#[test]
fn the_operator_state_keeps_live_unreachable_and_completed_tasks_apart() {
    let (mut h, agent, fw) = health_cluster(true);
    // A custom executor's task, as its status says.
    let offer = h.one_offer(&fw);
    launch_one(
        &mut h,
        &fw,
        &offer,
        command_task("t2", &agent, "cpus:1;mem:128"),
    );
    let mut update = status_update(&fw.id, "t2", pb::TaskState::TaskRunning, Some(uuid(2)));
    if let agent_message::Kind::StatusUpdate(u) = &mut update
        && let Some(status) = u.status.as_mut()
    {
        status.executor_id = Some(pb::ExecutorId {
            value: "exec-1".into(),
        });
    }
    h.agent_says(1, update);
    let state = h.master.operator_state();
    let tasks = state.get_tasks.clone().expect("tasks");
    assert_eq!(tasks.tasks.len(), 2);
    let t2 = tasks
        .tasks
        .iter()
        .find(|t| task_key(t).1 == "t2")
        .expect("t2");
    assert_eq!(
        t2.executor_id.as_ref().map(|e| e.value.as_str()),
        Some("exec-1")
    );
    assert_eq!(t2.statuses.len(), 1, "its latest status");
    let executors = state.get_executors.expect("executors").executors;
    assert_eq!(executors.len(), 1);
    assert_eq!(executors[0].agent_id, agent.to_field());
    let agents = state.get_agents.expect("agents").agents;
    assert_eq!(agents.len(), 1);
    assert_eq!(
        Resources::from_proto(&agents[0].allocated_resources),
        Ok(res("cpus:2;mem:256"))
    );
    let frameworks = state.get_frameworks.expect("frameworks").frameworks;
    assert_eq!(
        Resources::from_proto(&frameworks[0].allocated_resources),
        Ok(res("cpus:2;mem:256"))
    );

    // t1 finishes and is acknowledged; the agent becomes unreachable.
    h.agent_says(
        1,
        status_update(&fw.id, "t1", pb::TaskState::TaskFinished, Some(uuid(3))),
    );
    h.call_ok(&fw, ack_call(&fw.id, &agent, "t1", uuid(3)));
    h.agent_gone(1);
    let period = h.master.config().agent_ping_timeout.as_secs_f64();
    let max = f64::from(h.master.config().max_agent_ping_timeouts);
    h.advance(period * max + 0.5);
    h.tick();
    let state = h.master.operator_state();
    let tasks = state.get_tasks.expect("tasks");
    let ids = |list: &[pb::Task]| list.iter().map(|t| task_key(t).1).collect::<Vec<_>>();
    assert_eq!(ids(&tasks.tasks), Vec::<String>::new());
    assert_eq!(ids(&tasks.unreachable_tasks), vec!["t2"]);
    assert_eq!(ids(&tasks.completed_tasks), vec!["t1"]);
    assert!(state.get_agents.expect("agents").agents.is_empty());
}
