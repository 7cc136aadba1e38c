use std::time::Duration;

use agora_core::{AgentId, ExecutorId, FrameworkId};
use agora_proto::v1 as pb;
use agora_proto::v1::agent::{agent_message, master_message};
use agora_proto::v1::executor as exec;

use super::*;

const T0: Duration = Duration::from_secs(1);

pub(super) fn fid() -> FrameworkId {
    FrameworkId::new("f1")
}

fn eid(task: &str) -> ExecutorId {
    ExecutorId::new(task)
}

fn agent() -> AgentState {
    let mut state = AgentState::new(
        pb::AgentInfo {
            hostname: "h".into(),
            ..Default::default()
        },
        7,
    );
    let mut out = Vec::new();
    state.on_registered(T0, AgentId::new("a1"), &mut out);
    assert_eq!(
        out,
        vec![Effect::Checkpoint(Checkpoint::AgentId(AgentId::new("a1")))]
    );
    state
}

/// The master's RunTask of command task `task` (framework `f1`, agent `a1`).
pub(super) fn run_task_message(task: &str) -> master_message::RunTask {
    master_message::RunTask {
        framework: Some(pb::FrameworkInfo {
            id: fid().to_field(),
            name: "fw".into(),
            user: "u".into(),
            ..Default::default()
        }),
        task: Some(pb::TaskInfo {
            name: task.into(),
            task_id: Some(pb::TaskId { value: task.into() }),
            agent_id: Some(pb::AgentId { value: "a1".into() }),
            resources: agora_core::Resources::parse("cpus:1;mem:32")
                .expect("valid")
                .to_proto(None),
            command: Some(pb::CommandInfo {
                value: Some("true".into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

fn run_task(state: &mut AgentState, task: &str) -> Vec<Effect> {
    let mut out = Vec::new();
    state.on_run_task(T0, run_task_message(task), &mut out);
    out
}

fn status(task: &str, state: pb::TaskState, uuid: u8) -> pb::TaskStatus {
    pb::TaskStatus {
        task_id: Some(pb::TaskId { value: task.into() }),
        state: Some(state as i32),
        uuid: Some(vec![uuid; 16]),
        ..Default::default()
    }
}

fn to_master_updates(out: &[Effect]) -> Vec<(pb::TaskState, Vec<u8>)> {
    out.iter()
        .filter_map(|e| match e {
            Effect::ToMaster(AgentMessage {
                kind: Some(agent_message::Kind::StatusUpdate(u)),
            }) => {
                let s = u.status.as_ref()?;
                Some((
                    agora_core::task::from_i32(s.state.unwrap_or_default()).ok()?,
                    s.uuid.clone()?,
                ))
            }
            _ => None,
        })
        .collect()
}

fn executor_events(out: &[Effect]) -> Vec<i32> {
    out.iter()
        .filter_map(|e| match e {
            Effect::ToExecutor { event, .. } => Some(event.r#type),
            _ => None,
        })
        .collect()
}

fn acks_to_executor(out: &[Effect]) -> usize {
    out.iter()
        .filter(|e| {
            matches!(e, Effect::ToExecutor { event, .. } if event.r#type == exec::event::Type::Acknowledged as i32)
        })
        .count()
}

fn master_ack(state: &mut AgentState, task: &str, uuid: u8, now: Duration) -> Vec<Effect> {
    let mut out = Vec::new();
    state.on_status_ack(
        now,
        master_message::StatusUpdateAck {
            framework_id: fid().to_field(),
            task_id: Some(pb::TaskId { value: task.into() }),
            uuid: vec![uuid; 16],
        },
        &mut out,
    );
    out
}

/// What the shell does with a `LaunchExecutor`: it starts the executor's
/// current run (recorded with the task) and records its process.
fn start(state: &mut AgentState, task: &str, pid: u32) -> Vec<Effect> {
    let run = state.executors[&(fid(), eid(task))]
        .run
        .clone()
        .expect("the run is recorded with the executor");
    assert_eq!(run.pid, None, "not started yet");
    let mut out = Vec::new();
    state.on_executor_launched(
        &fid(),
        &eid(task),
        crate::checkpoint::ExecutorRun {
            pid: Some(pid),
            start_time: 77,
            ..run
        },
        &mut out,
    );
    out
}

/// A task run, and its executor started as the shell starts it.
fn launch(state: &mut AgentState, task: &str) -> Vec<Effect> {
    let mut out = run_task(state, task);
    out.extend(start(state, task, 4242));
    out
}

fn subscribe(state: &mut AgentState, task: &str, conn: ExecutorConn) -> Vec<Effect> {
    let mut out = Vec::new();
    state
        .on_executor_subscribe(T0, conn, &fid(), &eid(task), &[], Vec::new(), &mut out)
        .expect("known executor");
    out
}

fn update(
    state: &mut AgentState,
    task: &str,
    conn: ExecutorConn,
    s: pb::TaskStatus,
) -> Vec<Effect> {
    let mut out = Vec::new();
    state.on_executor_update(T0, conn, &fid(), &eid(task), s, &mut out);
    out
}

#[test]
fn a_task_launches_its_executor_which_gets_the_task_once() {
    let mut state = agent();
    let out = run_task(&mut state, "t1");
    assert_eq!(
        out.last(),
        Some(&Effect::LaunchExecutor {
            framework_id: fid(),
            executor_id: eid("t1")
        })
    );
    assert!(
        out[..out.len() - 1]
            .iter()
            .all(|e| matches!(e, Effect::Checkpoint(_))),
        "the task is checkpointed before its executor starts: {out:?}"
    );
    start(&mut state, "t1", 4242);
    let out = subscribe(&mut state, "t1", 1);
    let types = executor_events(&out);
    assert_eq!(
        types,
        vec![
            exec::event::Type::Subscribed as i32,
            exec::event::Type::Launch as i32
        ]
    );
    // SUBSCRIBED names the agent by the id the master gave it (Mesos'
    // executor libraries report it with every update).
    let subscribed = out.iter().find_map(|e| match e {
        Effect::ToExecutor { event, .. } => event.subscribed.as_ref(),
        _ => None,
    });
    assert_eq!(
        subscribed
            .and_then(|s| s.agent_info.as_ref())
            .and_then(|i| i.id.clone()),
        Some(pb::AgentId { value: "a1".into() })
    );
    // A reconnecting executor that holds its task is not given it again.
    let mut again = Vec::new();
    state
        .on_executor_subscribe(
            T0,
            2,
            &fid(),
            &eid("t1"),
            &[TaskId::new("t1")],
            Vec::new(),
            &mut again,
        )
        .expect("known executor");
    assert!(!again.iter().any(|e| matches!(e, Effect::ToExecutor { event, .. } if event.r#type == exec::event::Type::Launch as i32)));
    // An executor the agent does not know is refused.
    let mut out = Vec::new();
    assert!(
        state
            .on_executor_subscribe(T0, 3, &fid(), &eid("nope"), &[], Vec::new(), &mut out)
            .is_err()
    );
}

#[test]
fn updates_go_to_the_master_one_at_a_time_in_order() {
    let mut state = agent();
    run_task(&mut state, "t1");
    subscribe(&mut state, "t1", 1);
    let out = update(
        &mut state,
        "t1",
        1,
        status("t1", pb::TaskState::TaskStarting, 1),
    );
    assert_eq!(
        to_master_updates(&out),
        vec![(pb::TaskState::TaskStarting, vec![1; 16])]
    );
    assert_eq!(
        acks_to_executor(&out),
        1,
        "queued, so the executor may forget it"
    );
    let out = update(
        &mut state,
        "t1",
        1,
        status("t1", pb::TaskState::TaskRunning, 2),
    );
    assert!(
        to_master_updates(&out).is_empty(),
        "second update waits for the first's ack"
    );
    assert_eq!(acks_to_executor(&out), 1);
    // A wrong or duplicate ack changes nothing.
    assert!(master_ack(&mut state, "t1", 9, T0).is_empty());
    let out = master_ack(&mut state, "t1", 1, T0);
    assert_eq!(
        to_master_updates(&out),
        vec![(pb::TaskState::TaskRunning, vec![2; 16])]
    );
    assert!(master_ack(&mut state, "t1", 1, T0).is_empty());
}

#[test]
fn unacknowledged_updates_are_retried_with_backoff_and_after_reconnect() {
    let mut state = agent();
    run_task(&mut state, "t1");
    subscribe(&mut state, "t1", 1);
    update(
        &mut state,
        "t1",
        1,
        status("t1", pb::TaskState::TaskRunning, 1),
    );
    let mut out = Vec::new();
    state.on_tick(T0 + RETRY_MIN - Duration::from_millis(1), &mut out);
    assert!(out.is_empty(), "not yet due");
    state.on_tick(T0 + RETRY_MIN, &mut out);
    assert_eq!(to_master_updates(&out).len(), 1, "retried when due");
    out.clear();
    state.on_tick(T0 + RETRY_MIN * 2, &mut out);
    assert!(out.is_empty(), "the next retry backs off (doubling)");
    state.on_tick(T0 + RETRY_MIN * 3, &mut out);
    assert_eq!(to_master_updates(&out).len(), 1);
    // While disconnected nothing is sent; a new registration resends at once.
    state.on_master_disconnected();
    out.clear();
    state.on_tick(T0 + RETRY_MIN * 10, &mut out);
    assert!(out.is_empty());
    state.on_registered(T0 + RETRY_MIN * 10, AgentId::new("a1"), &mut out);
    assert_eq!(
        to_master_updates(&out),
        vec![(pb::TaskState::TaskRunning, vec![1; 16])]
    );
}

#[test]
fn resends_double_up_to_the_cap_and_start_over_for_the_next_update() {
    let mut state = agent();
    run_task(&mut state, "t1");
    subscribe(&mut state, "t1", 1);
    update(
        &mut state,
        "t1",
        1,
        status("t1", pb::TaskState::TaskRunning, 1),
    );
    let mut now = T0;
    let mut waits = Vec::new();
    for _ in 0..8 {
        let due = state.next_deadline().expect("a resend waits");
        waits.push((due - now).as_secs());
        now = due;
        let mut out = Vec::new();
        state.on_tick(now, &mut out);
        assert_eq!(to_master_updates(&out).len(), 1, "resent at {now:?}");
    }
    assert_eq!(waits, [10, 20, 40, 80, 160, 320, 600, 600]);
    assert_eq!(RETRY_MAX, Duration::from_secs(600));
    // The next update after an acknowledgement waits RETRY_MIN again.
    master_ack(&mut state, "t1", 1, now);
    let mut out = Vec::new();
    state.on_executor_update(
        now,
        1,
        &fid(),
        &eid("t1"),
        status("t1", pb::TaskState::TaskFinished, 2),
        &mut out,
    );
    assert_eq!(to_master_updates(&out).len(), 1, "sent at once");
    assert_eq!(state.next_deadline(), Some(now + RETRY_MIN));
}

#[test]
fn duplicate_executor_updates_are_queued_once_and_terminal_tasks_retire() {
    let mut state = agent();
    run_task(&mut state, "t1");
    subscribe(&mut state, "t1", 1);
    update(
        &mut state,
        "t1",
        1,
        status("t1", pb::TaskState::TaskFinished, 1),
    );
    let out = update(
        &mut state,
        "t1",
        1,
        status("t1", pb::TaskState::TaskFinished, 1),
    );
    assert!(
        to_master_updates(&out).is_empty(),
        "a retry is not forwarded twice"
    );
    assert_eq!(acks_to_executor(&out), 1, "but is acknowledged again");
    let after = update(
        &mut state,
        "t1",
        1,
        status("t1", pb::TaskState::TaskRunning, 2),
    );
    assert!(
        to_master_updates(&after).is_empty(),
        "nothing follows a terminal state"
    );
    assert_eq!(state.tasks.len(), 1);
    master_ack(&mut state, "t1", 1, T0);
    assert!(state.tasks.is_empty(), "terminal and acknowledged: retired");
    assert_eq!(state.completed.len(), 1);
}

/// An executor re-sends every update it holds no acknowledgement for (on
/// its retry tick, and when it subscribes again after a lost stream or an
/// agent restart): one the master acknowledged already must not be queued
/// again. Found with 3,000 tasks on one agent: acks reached busy executors
/// after their 5 s retry, the retried STARTING was queued after RUNNING,
/// and the task stayed TASK_STARTING at the agent and the master.
#[test]
fn an_update_resent_after_the_master_acknowledged_it_is_not_queued_again() {
    let mut state = agent();
    run_task(&mut state, "t1");
    subscribe(&mut state, "t1", 1);
    update(
        &mut state,
        "t1",
        1,
        status("t1", pb::TaskState::TaskStarting, 1),
    );
    update(
        &mut state,
        "t1",
        1,
        status("t1", pb::TaskState::TaskRunning, 2),
    );
    master_ack(&mut state, "t1", 1, T0);
    // The executor's retry of both, before their acks reached it.
    let out = update(
        &mut state,
        "t1",
        1,
        status("t1", pb::TaskState::TaskStarting, 1),
    );
    assert_eq!(acks_to_executor(&out), 1, "acknowledged again");
    assert!(to_master_updates(&out).is_empty(), "not forwarded again");
    update(
        &mut state,
        "t1",
        1,
        status("t1", pb::TaskState::TaskRunning, 2),
    );
    master_ack(&mut state, "t1", 2, T0);
    let task = &state.tasks[&(fid(), TaskId::new("t1"))];
    assert_eq!(task.state, pb::TaskState::TaskRunning);
    assert!(task.pending.is_empty(), "{:?}", task.pending);
}

#[test]
fn an_executor_that_dies_fails_its_task() {
    let mut state = agent();
    run_task(&mut state, "t1");
    subscribe(&mut state, "t1", 1);
    update(
        &mut state,
        "t1",
        1,
        status("t1", pb::TaskState::TaskRunning, 1),
    );
    master_ack(&mut state, "t1", 1, T0);
    let mut out = Vec::new();
    state.on_executor_exited(T0, &fid(), &eid("t1"), "signal: 9".into(), None, &mut out);
    let updates = to_master_updates(&out);
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].0, pb::TaskState::TaskFailed);
    assert_eq!(
        updates[0].1.len(),
        16,
        "agent-made updates carry a uuid too"
    );
}

#[test]
fn killing_a_task_before_its_executor_subscribed_destroys_the_executor() {
    let mut state = agent();
    run_task(&mut state, "t1");
    let mut out = Vec::new();
    state.on_kill_task(
        T0,
        master_message::KillTask {
            framework_id: fid().to_field(),
            task_id: Some(pb::TaskId { value: "t1".into() }),
            kill_policy: None,
            message: None,
        },
        &mut out,
    );
    assert!(out.contains(&Effect::DestroyExecutor {
        framework_id: fid(),
        executor_id: eid("t1")
    }));
    assert_eq!(to_master_updates(&out)[0].0, pb::TaskState::TaskKilled);
}

#[test]
fn killing_a_running_task_asks_its_executor() {
    let mut state = agent();
    launch(&mut state, "t1");
    subscribe(&mut state, "t1", 4);
    let mut out = Vec::new();
    state.on_kill_task(
        T0,
        master_message::KillTask {
            framework_id: fid().to_field(),
            task_id: Some(pb::TaskId { value: "t1".into() }),
            kill_policy: None,
            message: Some("killed by an operator: drain".into()),
        },
        &mut out,
    );
    // The executor is told who asked, for its TASK_KILLED message.
    assert!(matches!(
        out.as_slice(),
        [Effect::ToExecutor { conn: 4, event }]
            if event.r#type == exec::event::Type::Kill as i32
                && event.kill.as_ref().and_then(|k| k.message.as_deref())
                    == Some("killed by an operator: drain")
    ));
}

#[test]
fn registration_reports_running_tasks() {
    let mut state = agent();
    run_task(&mut state, "t1");
    let Some(agent_message::Kind::Register(register)) = state.register_message().kind else {
        panic!("register message expected");
    };
    assert_eq!(register.tasks.len(), 1);
    assert_eq!(register.frameworks.len(), 1);
    assert_eq!(
        register.agent_info.and_then(|i| i.id).map(|i| i.value),
        Some("a1".into())
    );
}

/// Writes every checkpoint effect into `store`, as the shell does.
fn persist(store: &mut crate::checkpoint::MemStore, out: &[Effect]) {
    for effect in out {
        if let Effect::Checkpoint(record) = effect {
            crate::checkpoint::apply(store, record).expect("in-memory write");
        }
    }
}

fn fresh() -> AgentState {
    AgentState::new(
        pb::AgentInfo {
            hostname: "h".into(),
            ..Default::default()
        },
        8,
    )
}

/// A state restarted from what `store` holds, as `run_agent` does.
fn restart(store: &crate::checkpoint::MemStore, now: Duration) -> (AgentState, Vec<Effect>) {
    let mut state = fresh();
    let mut out = Vec::new();
    state.recover(now, crate::checkpoint::recover(store), &mut out);
    (state, out)
}

fn position(out: &[Effect], what: impl Fn(&Effect) -> bool) -> usize {
    out.iter()
        .position(what)
        .unwrap_or_else(|| panic!("effect missing: {out:?}"))
}

#[test]
fn an_update_is_checkpointed_before_it_is_acknowledged_or_forwarded() {
    let mut state = agent();
    run_task(&mut state, "t1");
    subscribe(&mut state, "t1", 1);
    let out = update(
        &mut state,
        "t1",
        1,
        status("t1", pb::TaskState::TaskRunning, 1),
    );
    let written = position(&out, |e| {
        matches!(e, Effect::Checkpoint(Checkpoint::TaskUpdates { state: pb::TaskState::TaskRunning, pending, .. })
            if pending.len() == 1 && pending[0].uuid == Some(vec![1; 16]))
    });
    let acked = position(
        &out,
        |e| matches!(e, Effect::ToExecutor { event, .. } if event.r#type == exec::event::Type::Acknowledged as i32),
    );
    let forwarded = position(&out, |e| matches!(e, Effect::ToMaster(_)));
    assert!(
        written < acked,
        "checkpoint before the executor's ack: {out:?}"
    );
    assert!(written < forwarded, "checkpoint before forwarding: {out:?}");

    // The master's ack shortens the checkpointed queue.
    let out = master_ack(&mut state, "t1", 1, T0);
    assert!(out.iter().any(|e| matches!(e,
        Effect::Checkpoint(Checkpoint::TaskUpdates { pending, .. }) if pending.is_empty())));

    // A terminal, acknowledged task is removed; its framework goes with its executor.
    update(
        &mut state,
        "t1",
        1,
        status("t1", pb::TaskState::TaskFinished, 2),
    );
    let out = master_ack(&mut state, "t1", 2, T0);
    assert!(
        out.iter()
            .any(|e| matches!(e, Effect::Checkpoint(Checkpoint::RemoveTask { .. })))
    );
    assert!(
        !out.iter()
            .any(|e| matches!(e, Effect::Checkpoint(Checkpoint::RemoveFramework(_)))),
        "the executor is still running"
    );
    let mut out = Vec::new();
    state.on_executor_exited(
        T0,
        &fid(),
        &eid("t1"),
        "exit status: 0".into(),
        None,
        &mut out,
    );
    assert_eq!(
        out,
        vec![
            Effect::Checkpoint(Checkpoint::RemoveExecutor {
                framework_id: fid(),
                executor_id: eid("t1")
            }),
            Effect::Checkpoint(Checkpoint::RemoveFramework(fid())),
        ]
    );
    assert!(state.frameworks.is_empty());
}

#[test]
fn a_restarted_agent_recovers_its_tasks_and_resends_unacknowledged_updates() {
    let mut store = crate::checkpoint::MemStore::default();
    let mut state = fresh();
    let mut out = Vec::new();
    state.on_registered(T0, AgentId::new("a1"), &mut out);
    persist(&mut store, &out);
    persist(&mut store, &launch(&mut state, "t1"));
    persist(&mut store, &subscribe(&mut state, "t1", 1));
    let starting = update(
        &mut state,
        "t1",
        1,
        status("t1", pb::TaskState::TaskStarting, 1),
    );
    persist(&mut store, &starting);
    persist(&mut store, &master_ack(&mut state, "t1", 1, T0));
    persist(
        &mut store,
        &update(
            &mut state,
            "t1",
            1,
            status("t1", pb::TaskState::TaskRunning, 2),
        ),
    );
    // The agent dies here: RUNNING was acknowledged to the executor, not yet by the master.

    let later = T0 + Duration::from_secs(30);
    let (mut state, out) = restart(&store, later);
    assert!(out.is_empty(), "nothing to fail: {out:?}");
    assert_eq!(state.agent_id, Some(AgentId::new("a1")));
    let executor = &state.executors[&(fid(), eid("t1"))];
    assert_eq!(executor.run.as_ref().and_then(|r| r.pid), Some(4242));
    let task = &state.tasks[&(fid(), TaskId::new("t1"))];
    assert_eq!(task.state, pb::TaskState::TaskRunning);
    assert_eq!(task.pending.len(), 1);

    // Re-registration uses the old id and reports the task.
    let Some(agent_message::Kind::Register(register)) = state.register_message().kind else {
        panic!("register message expected");
    };
    assert_eq!(
        register.agent_info.and_then(|i| i.id).map(|i| i.value),
        Some("a1".into())
    );
    assert_eq!(register.tasks.len(), 1);
    assert_eq!(
        register.tasks[0].state,
        Some(pb::TaskState::TaskRunning as i32)
    );
    assert_eq!(register.frameworks.len(), 1);

    // Once registered, the unacknowledged update goes out again.
    let mut out = Vec::new();
    state.on_registered(later, AgentId::new("a1"), &mut out);
    assert_eq!(
        to_master_updates(&out),
        vec![(pb::TaskState::TaskRunning, vec![2; 16])]
    );

    // The executor re-subscribes holding its task, STARTING and RUNNING (it
    // missed both acks; the master acknowledged STARTING before the crash):
    // no second LAUNCH, no duplicate in the queue, and the acks it missed.
    let mut out = Vec::new();
    state
        .on_executor_subscribe(
            later,
            7,
            &fid(),
            &eid("t1"),
            &[TaskId::new("t1")],
            vec![
                status("t1", pb::TaskState::TaskStarting, 1),
                status("t1", pb::TaskState::TaskRunning, 2),
            ],
            &mut out,
        )
        .expect("recovered executor is known");
    assert!(
        !executor_events(&out).contains(&(exec::event::Type::Launch as i32)),
        "{out:?}"
    );
    assert_eq!(acks_to_executor(&out), 2);
    assert!(to_master_updates(&out).is_empty(), "{out:?}");
    // The update waits for the master's acknowledgement (what `/metrics`
    // reports as pending; its gauges are tested with the Mesos view's).
    let task = &state.tasks[&(fid(), TaskId::new("t1"))];
    assert_eq!(task.pending.len(), 1);
    assert_eq!(task.state, pb::TaskState::TaskRunning);
    // It re-subscribed in time: the deadline no longer applies.
    let mut out = Vec::new();
    state.on_tick(later + EXECUTOR_REREGISTER_TIMEOUT * 2, &mut out);
    assert!(
        !out.iter()
            .any(|e| matches!(e, Effect::DestroyExecutor { .. })),
        "{out:?}"
    );
}

#[test]
fn a_recovered_executor_that_never_comes_back_is_killed_and_its_task_failed() {
    let mut store = crate::checkpoint::MemStore::default();
    let mut state = agent();
    persist(&mut store, &launch(&mut state, "t1"));
    persist(&mut store, &subscribe(&mut state, "t1", 1));
    persist(
        &mut store,
        &update(
            &mut state,
            "t1",
            1,
            status("t1", pb::TaskState::TaskRunning, 1),
        ),
    );
    persist(&mut store, &master_ack(&mut state, "t1", 1, T0));

    let later = T0 + Duration::from_secs(60);
    let (mut state, _) = restart(&store, later);
    let mut out = Vec::new();
    state.on_tick(
        later + EXECUTOR_REREGISTER_TIMEOUT - Duration::from_millis(1),
        &mut out,
    );
    assert!(out.is_empty(), "still within its timeout: {out:?}");
    state.on_tick(later + EXECUTOR_REREGISTER_TIMEOUT, &mut out);
    assert!(out.contains(&Effect::DestroyExecutor {
        framework_id: fid(),
        executor_id: eid("t1")
    }));
    let failed = out.iter().find_map(|e| match e {
        Effect::Checkpoint(Checkpoint::TaskUpdates { pending, .. }) => pending.last().cloned(),
        _ => None,
    });
    let failed = failed.expect("the failure is checkpointed");
    assert_eq!(failed.state, Some(pb::TaskState::TaskFailed as i32));
    assert_eq!(
        failed.reason,
        Some(pb::task_status::Reason::ExecutorReregistrationTimeout as i32)
    );
    assert!(state.executors.is_empty());
    // A late subscription is refused: the executor then kills its task.
    let mut out = Vec::new();
    assert!(
        state
            .on_executor_subscribe(
                later,
                9,
                &fid(),
                &eid("t1"),
                &[TaskId::new("t1")],
                Vec::new(),
                &mut out
            )
            .is_err()
    );
}

#[test]
fn a_recovered_executor_that_exited_while_the_agent_was_down_fails_its_task() {
    let mut store = crate::checkpoint::MemStore::default();
    let mut state = agent();
    persist(&mut store, &run_task(&mut state, "t1"));
    persist(&mut store, &subscribe(&mut state, "t1", 1));
    let (mut state, _) = restart(&store, T0);
    let mut out = Vec::new();
    state.on_executor_exited(T0, &fid(), &eid("t1"), "gone".into(), None, &mut out);
    let updates = to_master_updates(&out);
    assert!(updates.is_empty(), "not registered yet");
    let task = &state.tasks[&(fid(), TaskId::new("t1"))];
    assert_eq!(task.state, pb::TaskState::TaskFailed);
    let mut out = Vec::new();
    state.on_registered(T0, AgentId::new("a1"), &mut out);
    assert_eq!(to_master_updates(&out)[0].0, pb::TaskState::TaskFailed);
}

/// The agent stopped while starting an executor: its run was recorded
/// with the task, its process not yet. Its task never reached it, so the
/// restarted agent launches it again as a new run, recorded before it
/// starts (never fails it), and only that run gets the task.
#[test]
fn an_executor_stopped_while_starting_is_launched_again_after_recovery() {
    let mut store = crate::checkpoint::MemStore::default();
    let mut state = agent();
    persist(&mut store, &run_task(&mut state, "t1"));
    let old_run = state.executors[&(fid(), eid("t1"))]
        .run
        .clone()
        .expect("recorded with the task");
    let later = T0 + Duration::from_secs(60);
    let (mut state, out) = restart(&store, later);
    let new_run = state.executors[&(fid(), eid("t1"))]
        .run
        .clone()
        .expect("a new run");
    assert_ne!(new_run.run_id, old_run.run_id, "a new run");
    assert_eq!(new_run.pid, None);
    assert!(
        matches!(
            out.as_slice(),
            [
                Effect::Checkpoint(Checkpoint::Executor { run: Some(r), .. }),
                Effect::LaunchExecutor { executor_id, .. }
            ] if r == &new_run && executor_id == &eid("t1")
        ),
        "recorded, then launched: {out:?}"
    );
    let task = &state.tasks[&(fid(), TaskId::new("t1"))];
    assert_eq!(task.state, pb::TaskState::TaskStaging);
    assert_eq!(
        state.executors[&(fid(), eid("t1"))].reregister_deadline,
        None,
        "nothing to wait for"
    );
    let mut out = Vec::new();
    state.on_tick(later + EXECUTOR_REREGISTER_TIMEOUT * 3, &mut out);
    assert!(out.is_empty(), "never failed for our crash: {out:?}");
    // A process of the old run that got as far as subscribing would name
    // the old run: the shell refuses it (its token's run is not current).
    // The new run gets the task once its process is recorded.
    let out = start(&mut state, "t1", 5151);
    assert!(executor_events(&out).is_empty(), "not subscribed yet");
    let out = subscribe(&mut state, "t1", 1);
    assert_eq!(
        executor_events(&out),
        vec![
            exec::event::Type::Subscribed as i32,
            exec::event::Type::Launch as i32
        ]
    );
}

#[test]
fn a_recorded_executor_without_its_task_gets_it_when_it_subscribes_after_recovery() {
    // The agent died after recording the executor's process, before LAUNCH.
    let mut store = crate::checkpoint::MemStore::default();
    let mut state = agent();
    persist(&mut store, &launch(&mut state, "t1"));
    let (mut state, out) = restart(&store, T0);
    assert!(out.is_empty(), "waits for it to re-subscribe: {out:?}");
    let out = subscribe(&mut state, "t1", 1);
    assert_eq!(
        executor_events(&out),
        vec![
            exec::event::Type::Subscribed as i32,
            exec::event::Type::Launch as i32
        ]
    );
}

/// An executor may subscribe before the loop learns its process started;
/// its task waits until the process is recorded, and goes out in the batch
/// of that record, after it.
#[test]
fn a_task_reaches_its_executor_only_after_its_process_is_recorded() {
    let mut state = agent();
    let out = run_task(&mut state, "t1");
    let run = state.executors[&(fid(), eid("t1"))]
        .run
        .clone()
        .expect("recorded with the task");
    let record = position(
        &out,
        |e| matches!(e, Effect::Checkpoint(Checkpoint::Executor { run: Some(r), .. }) if r == &run && r.pid.is_none()),
    );
    let launch = position(&out, |e| matches!(e, Effect::LaunchExecutor { .. }));
    assert!(
        record < launch,
        "the run is recorded before it starts: {out:?}"
    );
    let out = subscribe(&mut state, "t1", 1);
    assert_eq!(
        executor_events(&out),
        vec![exec::event::Type::Subscribed as i32],
        "no task before the process is recorded"
    );
    // A result for another run changes nothing.
    let mut out = Vec::new();
    state.on_executor_launched(
        &fid(),
        &eid("t1"),
        crate::checkpoint::ExecutorRun {
            run_id: "other".into(),
            pid: Some(1),
            ..run.clone()
        },
        &mut out,
    );
    assert!(out.is_empty(), "{out:?}");
    let mut out = Vec::new();
    state.on_executor_launched(
        &fid(),
        &eid("t1"),
        crate::checkpoint::ExecutorRun {
            pid: Some(4242),
            start_time: 9,
            ..run
        },
        &mut out,
    );
    let record = position(
        &out,
        |e| matches!(e, Effect::Checkpoint(Checkpoint::Executor { run: Some(r), .. }) if r.pid == Some(4242)),
    );
    let launch = position(
        &out,
        |e| matches!(e, Effect::ToExecutor { conn: 1, event } if event.r#type == exec::event::Type::Launch as i32),
    );
    assert!(record < launch, "{out:?}");
    assert_eq!(executor_events(&out).len(), 1, "launched once: {out:?}");
    // A custom executor's program may start only after the record: its
    // start gate opens in the record's batch, after it.
    let recorded = position(
        &out,
        |e| matches!(e, Effect::ExecutorRecorded { executor_id, .. } if executor_id == &eid("t1")),
    );
    assert!(record < recorded, "{out:?}");
}

#[test]
fn a_task_whose_executor_record_is_gone_fails_at_recovery() {
    let mut store = crate::checkpoint::MemStore::default();
    let mut state = agent();
    persist(&mut store, &run_task(&mut state, "t1"));
    crate::checkpoint::apply(
        &mut store,
        &Checkpoint::RemoveExecutor {
            framework_id: fid(),
            executor_id: eid("t1"),
        },
    )
    .expect("in-memory");
    let (state, out) = restart(&store, T0);
    assert_eq!(
        state.tasks[&(fid(), TaskId::new("t1"))].state,
        pb::TaskState::TaskFailed
    );
    assert!(out.iter().any(|e| matches!(
        e,
        Effect::Checkpoint(Checkpoint::TaskUpdates {
            state: pb::TaskState::TaskFailed,
            ..
        })
    )));
}

#[test]
fn an_update_for_a_retired_task_is_acknowledged_so_the_executor_can_exit() {
    let mut state = agent();
    run_task(&mut state, "t1");
    subscribe(&mut state, "t1", 1);
    update(
        &mut state,
        "t1",
        1,
        status("t1", pb::TaskState::TaskFinished, 1),
    );
    master_ack(&mut state, "t1", 1, T0);
    assert!(state.tasks.is_empty());
    let out = update(
        &mut state,
        "t1",
        1,
        status("t1", pb::TaskState::TaskFinished, 1),
    );
    assert_eq!(acks_to_executor(&out), 1);
    assert!(to_master_updates(&out).is_empty());
}

#[test]
fn a_master_from_an_older_leadership_term_is_refused() {
    let mut state = agent();
    assert!(
        state.accept_master_epoch(None),
        "no ZooKeeper: no epoch to check"
    );
    assert!(state.accept_master_epoch(Some(7)));
    assert!(
        state.accept_master_epoch(Some(7)),
        "the same term again (a reconnect)"
    );
    assert!(state.accept_master_epoch(Some(9)), "a newer term");
    assert!(
        !state.accept_master_epoch(Some(8)),
        "a deposed leader is refused"
    );
    assert!(state.accept_master_epoch(Some(9)));
}

#[test]
fn a_full_disk_fails_new_tasks_without_starting_an_executor() {
    let mut state = agent();
    state.set_disk_full(true);
    let out = run_task(&mut state, "t1");
    assert!(
        !out.iter()
            .any(|e| matches!(e, Effect::LaunchExecutor { .. })),
        "{out:?}"
    );
    assert!(!state.executors.contains_key(&(fid(), eid("t1"))));
    let failed = out
        .iter()
        .find_map(|e| match e {
            Effect::ToMaster(AgentMessage {
                kind: Some(agent_message::Kind::StatusUpdate(u)),
            }) => u.status.clone(),
            _ => None,
        })
        .expect("an update to the master");
    assert_eq!(failed.state, Some(pb::TaskState::TaskFailed as i32));
    assert_eq!(
        failed.reason,
        Some(pb::task_status::Reason::ContainerLaunchFailed as i32)
    );
    assert!(
        failed.message().contains("agent disk full"),
        "{:?}",
        failed.message
    );
    // Once there is room again, tasks launch as before.
    state.set_disk_full(false);
    let out = run_task(&mut state, "t2");
    assert!(
        out.iter()
            .any(|e| matches!(e, Effect::LaunchExecutor { .. }))
    );
}

/// Resources no parser accepts: a scalar without its value.
fn unparsable_resources() -> Vec<pb::Resource> {
    vec![pb::Resource {
        name: "cpus".into(),
        r#type: Some(pb::value::Type::Scalar as i32),
        scalar: None,
        ..Default::default()
    }]
}

fn run_task_with(state: &mut AgentState, task: pb::TaskInfo) -> Vec<Effect> {
    let mut out = Vec::new();
    state.on_run_task(
        T0,
        master_message::RunTask {
            task: Some(task),
            ..run_task_message("")
        },
        &mut out,
    );
    out
}

fn task_info(task: &str, resources: Vec<pb::Resource>) -> pb::TaskInfo {
    pb::TaskInfo {
        name: task.into(),
        task_id: Some(pb::TaskId { value: task.into() }),
        agent_id: Some(pb::AgentId { value: "a1".into() }),
        resources,
        command: Some(pb::CommandInfo {
            value: Some("true".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The updates for the master in `out`, with their messages.
fn to_master_statuses(out: &[Effect]) -> Vec<pb::TaskStatus> {
    out.iter()
        .filter_map(|e| match e {
            Effect::ToMaster(AgentMessage {
                kind: Some(agent_message::Kind::StatusUpdate(u)),
            }) => u.status.clone(),
            _ => None,
        })
        .collect()
}

#[test]
fn a_task_whose_resources_cannot_be_parsed_is_an_error_not_a_task_with_nothing() {
    let mut state = agent();
    let out = run_task_with(&mut state, task_info("t1", unparsable_resources()));
    assert!(
        !out.iter()
            .any(|e| matches!(e, Effect::LaunchExecutor { .. })),
        "{out:?}"
    );
    let statuses = to_master_statuses(&out);
    let [status] = &statuses[..] else {
        panic!("one update expected: {out:?}");
    };
    assert_eq!(status.state, Some(pb::TaskState::TaskError as i32));
    assert_eq!(
        status.reason,
        Some(pb::task_status::Reason::TaskInvalid as i32)
    );
    let message = status.message.clone().unwrap_or_default();
    assert!(
        message.contains("task resources cannot be parsed"),
        "{message}"
    );
}

#[test]
fn a_custom_executor_whose_resources_cannot_be_parsed_is_never_started() {
    let mut state = agent();
    let mut task = task_info(
        "t1",
        agora_core::Resources::parse("cpus:1")
            .expect("valid")
            .to_proto(None),
    );
    task.executor = Some(pb::ExecutorInfo {
        executor_id: Some(pb::ExecutorId { value: "ex".into() }),
        resources: unparsable_resources(),
        ..Default::default()
    });
    let out = run_task_with(&mut state, task);
    assert!(
        !out.iter()
            .any(|e| matches!(e, Effect::LaunchExecutor { .. })),
        "{out:?}"
    );
    let statuses = to_master_statuses(&out);
    let [status] = &statuses[..] else {
        panic!("one update expected: {out:?}");
    };
    assert_eq!(status.state, Some(pb::TaskState::TaskError as i32));
    let message = status.message.clone().unwrap_or_default();
    assert!(
        message.contains("executor resources cannot be parsed"),
        "{message}"
    );
    assert!(state.executors.is_empty());
}

#[test]
fn a_checkpointed_task_whose_resources_cannot_be_parsed_is_reported_at_recovery() {
    let mut store = crate::checkpoint::MemStore::default();
    let mut state = agent();
    persist(&mut store, &run_task(&mut state, "t1"));
    // The record as a corrupt or incompatible checkpoint would hold it.
    crate::checkpoint::apply(
        &mut store,
        &Checkpoint::Task {
            framework_id: fid(),
            executor_id: eid("t1"),
            info: task_info("t1", unparsable_resources()),
        },
    )
    .expect("in-memory");
    let (state, out) = restart(&store, T0);
    // Its executor is destroyed (nothing could size its container) and the
    // task fails with the reason, rather than running on as "nothing".
    assert!(out.contains(&Effect::DestroyExecutor {
        framework_id: fid(),
        executor_id: eid("t1"),
    }));
    assert!(state.executors.is_empty());
    assert_eq!(
        state.tasks[&(fid(), TaskId::new("t1"))].state,
        pb::TaskState::TaskFailed
    );
    let failed = out.iter().find_map(|e| match e {
        Effect::Checkpoint(Checkpoint::TaskUpdates { pending, .. }) => pending.last().cloned(),
        _ => None,
    });
    let message = failed.and_then(|s| s.message).unwrap_or_default();
    assert!(
        message.contains("checkpointed resources of task t1 cannot be parsed"),
        "{message}"
    );
}

#[test]
fn an_oversized_executor_update_is_cut_down_before_it_is_checkpointed_or_forwarded() {
    let mut state = agent();
    run_task(&mut state, "t1");
    subscribe(&mut state, "t1", 1);
    let mut huge = status("t1", pb::TaskState::TaskRunning, 1);
    huge.message = Some("x".repeat(agora_net::MAX_MESSAGE_BYTES / 2));
    huge.data = Some(vec![0; agora_net::MAX_MESSAGE_BYTES - 1024]);
    let mut out = Vec::new();
    state.on_executor_update(T0, 1, &fid(), &eid("t1"), huge, &mut out);
    // Acknowledged to the executor (so it stops resending), and what goes
    // to the disk and the master fits well under the message limit.
    assert_eq!(acks_to_executor(&out), 1);
    let forwarded = to_master_statuses(&out);
    let [status] = &forwarded[..] else {
        panic!("one update expected: {out:?}");
    };
    assert_eq!(status.state, Some(pb::TaskState::TaskRunning as i32));
    assert_eq!(status.data, None);
    let whole = out
        .iter()
        .find_map(|e| match e {
            Effect::ToMaster(message) => Some(prost::Message::encoded_len(message)),
            _ => None,
        })
        .expect("forwarded");
    assert!(
        whole <= crate::status_bound::MAX_STATUS_BYTES + 1024,
        "{whole} bytes"
    );
    let checkpointed = out.iter().find_map(|e| match e {
        Effect::Checkpoint(Checkpoint::TaskUpdates { pending, .. }) => pending.last().cloned(),
        _ => None,
    });
    assert_eq!(checkpointed.as_ref(), Some(status));
}

/// Launches task `t1` under the custom executor `ex` and subscribes it on `conn`.
fn custom_executor_running(state: &mut AgentState, conn: ExecutorConn) {
    let mut task = task_info(
        "t1",
        agora_core::Resources::parse("cpus:1;mem:32")
            .expect("valid")
            .to_proto(None),
    );
    task.executor = Some(pb::ExecutorInfo {
        executor_id: Some(pb::ExecutorId { value: "ex".into() }),
        ..Default::default()
    });
    let out = run_task_with(state, task);
    assert!(
        out.iter()
            .any(|e| matches!(e, Effect::LaunchExecutor { .. })),
        "{out:?}"
    );
    let mut out = Vec::new();
    state
        .on_executor_subscribe(T0, conn, &fid(), &eid("ex"), &[], Vec::new(), &mut out)
        .expect("known executor");
}

fn framework_message(executor: &str, data: Vec<u8>) -> master_message::FrameworkMessage {
    master_message::FrameworkMessage {
        framework_id: fid().to_field(),
        executor_id: Some(pb::ExecutorId {
            value: executor.into(),
        }),
        data,
    }
}

#[test]
fn a_framework_message_reaches_its_subscribed_executor_and_is_dropped_otherwise() {
    let mut state = agent();
    custom_executor_running(&mut state, 3);
    let mut out = Vec::new();
    state.on_framework_message(framework_message("ex", b"ping".to_vec()), &mut out);
    let [Effect::ToExecutor { conn, event }] = &out[..] else {
        panic!("one event for the executor expected: {out:?}");
    };
    assert_eq!(*conn, 3);
    assert_eq!(event.r#type, exec::event::Type::Message as i32);
    assert_eq!(
        event.message.as_ref().map(|m| m.data.as_slice()),
        Some(&b"ping"[..])
    );

    // Best effort: an unknown executor, or a known one without a stream,
    // gets nothing, and nothing is kept for later.
    let mut out = Vec::new();
    state.on_framework_message(framework_message("other", b"x".to_vec()), &mut out);
    assert!(out.is_empty(), "{out:?}");
    state.on_executor_disconnected(3);
    state.on_framework_message(framework_message("ex", b"x".to_vec()), &mut out);
    assert!(out.is_empty(), "{out:?}");
    let out = {
        let mut out = Vec::new();
        state
            .on_executor_subscribe(T0, 4, &fid(), &eid("ex"), &[], Vec::new(), &mut out)
            .expect("known executor");
        out
    };
    assert!(
        !executor_events(&out).contains(&(exec::event::Type::Message as i32)),
        "a dropped message is not replayed: {out:?}"
    );
}

#[test]
fn an_executor_message_goes_to_the_master_within_the_size_limit() {
    let mut state = agent();
    custom_executor_running(&mut state, 3);
    let mut out = Vec::new();
    state.on_executor_message(3, &fid(), &eid("ex"), b"pong".to_vec(), &mut out);
    let [
        Effect::ToMaster(AgentMessage {
            kind: Some(agent_message::Kind::ExecutorMessage(message)),
        }),
    ] = &out[..]
    else {
        panic!("one message for the master expected: {out:?}");
    };
    assert_eq!(message.framework_id, fid().to_field());
    assert_eq!(message.executor_id, eid("ex").to_field());
    assert_eq!(message.data, b"pong");

    // From a stream that is not the executor's live one: dropped.
    let mut out = Vec::new();
    state.on_executor_message(9, &fid(), &eid("ex"), b"x".to_vec(), &mut out);
    assert!(out.is_empty(), "{out:?}");
    // Too large for the master's session or the framework's event: refused.
    state.on_executor_message(
        3,
        &fid(),
        &eid("ex"),
        vec![b'x'; agora_net::MAX_MESSAGE_BYTES - 8],
        &mut out,
    );
    assert!(out.is_empty(), "{out:?}");
    // Without a master: dropped, not queued.
    state.on_master_disconnected();
    state.on_executor_message(3, &fid(), &eid("ex"), b"x".to_vec(), &mut out);
    assert!(out.is_empty(), "{out:?}");
}

/// The shell sleeps until `next_deadline` instead of ticking: it names the
/// time the next `on_tick` has work (a retry, an executor's re-subscription
/// time), and is gone once nothing waits.
#[test]
fn the_next_deadline_is_when_the_next_tick_has_work() {
    let mut store = crate::checkpoint::MemStore::default();
    let mut state = agent();
    assert_eq!(state.next_deadline(), None, "nothing waits yet");
    persist(&mut store, &launch(&mut state, "t1"));
    persist(&mut store, &subscribe(&mut state, "t1", 1));
    persist(
        &mut store,
        &update(
            &mut state,
            "t1",
            1,
            status("t1", pb::TaskState::TaskRunning, 1),
        ),
    );
    assert_eq!(state.next_deadline(), Some(T0 + RETRY_MIN));
    let mut out = Vec::new();
    state.on_tick(T0 + RETRY_MIN, &mut out);
    assert_eq!(to_master_updates(&out).len(), 1, "retried at its deadline");
    assert_eq!(
        state.next_deadline(),
        Some(T0 + RETRY_MIN * 3),
        "the next retry backs off (doubling)"
    );
    persist(&mut store, &master_ack(&mut state, "t1", 1, T0 + RETRY_MIN));
    assert_eq!(state.next_deadline(), None, "acknowledged: nothing waits");

    let later = T0 + Duration::from_secs(60);
    let (state, _) = restart(&store, later);
    assert_eq!(
        state.next_deadline(),
        Some(later + EXECUTOR_REREGISTER_TIMEOUT),
        "a recovered executor has until then to re-subscribe"
    );
}

#[test]
fn a_recovered_executor_its_supervisor_vouches_for_waits_past_the_timeout() {
    let mut store = crate::checkpoint::MemStore::default();
    let mut state = agent();
    for task in ["t1", "t2"] {
        persist(&mut store, &launch(&mut state, task));
        persist(&mut store, &subscribe(&mut state, task, 1));
    }
    let later = T0 + Duration::from_secs(60);
    let (mut state, _) = restart(&store, later);
    // The supervisor re-attached listing t1's run, not t2's.
    state.on_executor_vouched_for(&fid(), &eid("t1"));
    let mut out = Vec::new();
    state.on_tick(later + EXECUTOR_REREGISTER_TIMEOUT * 3, &mut out);
    let destroyed: Vec<&ExecutorId> = out
        .iter()
        .filter_map(|e| match e {
            Effect::DestroyExecutor { executor_id, .. } => Some(executor_id),
            _ => None,
        })
        .collect();
    assert_eq!(destroyed, vec![&eid("t2")], "{out:?}");
}
