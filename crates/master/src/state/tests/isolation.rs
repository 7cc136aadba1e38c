//! A framework acts only on its own tasks: whatever ids it names, a KILL,
//! ACKNOWLEDGE, RECONCILE or MESSAGE reaches only what it owns, a call on
//! another framework's stream is refused, and a status update counts only
//! from the agent that runs the task.

use super::*;

/// Frameworks A (conn 10) and B (conn 11); A runs task "t" on the agent (conn 1).
fn two_frameworks_one_task() -> (Harness, AgentId, Fw, Fw) {
    let mut h = Harness::new();
    let agent = h.register_agent(1, "a1", "cpus:2;mem:1024");
    let a = h.subscribe_framework(10, "a");
    let offer = h.one_offer(&a);
    launch_one(
        &mut h,
        &a,
        &offer,
        command_task("t", &agent, "cpus:1;mem:256"),
    );
    h.agent_says(
        1,
        status_update(&a.id, "t", pb::TaskState::TaskRunning, Some(uuid(1))),
    );
    let b = h.subscribe_framework(11, "b");
    (h, agent, a, b)
}

fn running(h: &Harness, fw: &Fw) -> bool {
    h.task(&fw.id, "t")
        .is_some_and(|t| t.state == pb::TaskState::TaskRunning)
}

#[test]
fn a_kill_of_another_frameworks_task_reaches_nothing() {
    let (mut h, _agent, a, b) = two_frameworks_one_task();
    // B names A's task: B is told about *its own* task "t" (unknown), the
    // agent is told nothing.
    let out = h.call_ok(&b, kill_call(&b.id, "t"));
    assert!(agent_messages(&out, 1).is_empty(), "{out:?}");
    assert!(updates_to(&out, 10).is_empty(), "A hears nothing");
    assert!(running(&h, &a));
    // B names A's framework id on its own stream: refused, nothing changes.
    let (result, out) = h.call(&b, kill_call(&a.id, "t"));
    assert!(result.is_err(), "{result:?}");
    assert!(out.is_empty(), "{out:?}");
    assert!(running(&h, &a));
}

#[test]
fn acknowledgements_and_reconciliation_see_only_ones_own_tasks() {
    let (mut h, agent, a, b) = two_frameworks_one_task();
    // B acknowledges A's update: B has no such task, so nothing is forwarded.
    let (result, out) = h.call(&b, ack_call(&b.id, &agent, "t", uuid(1)));
    assert!(agent_messages(&out, 1).is_empty(), "{result:?} {out:?}");
    // B reconciles A's task: it learns nothing of A's (the task is unknown to B).
    let out = h.call_ok(&b, reconcile_call(&b.id, &[("t", Some(&agent))]));
    for status in updates_to(&out, 11) {
        assert_ne!(state_of(&status), pb::TaskState::TaskRunning, "{status:?}");
    }
    // B's implicit reconciliation lists none of A's tasks.
    let out = h.call_ok(&b, reconcile_call(&b.id, &[]));
    assert!(updates_to(&out, 11).is_empty(), "{out:?}");
    assert!(running(&h, &a));
}

#[test]
fn a_message_goes_only_to_the_senders_own_executors() {
    let (mut h, agent, _a, b) = two_frameworks_one_task();
    let message = sched::Call {
        message: Some(sched::call::Message {
            agent_id: agent.to_field(),
            executor_id: Some(pb::ExecutorId { value: "t".into() }),
            data: b"hello".to_vec(),
        }),
        ..base_call(&b.id, CallType::Message)
    };
    let out = h.call_ok(&b, message);
    let forwarded: Vec<_> = agent_messages(&out, 1)
        .into_iter()
        .filter_map(|m| match m {
            master_message::Kind::FrameworkMessage(m) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(forwarded.len(), 1);
    // Addressed to B's executor "t" (which B does not have), never A's.
    assert_eq!(forwarded[0].framework_id, b.id.to_field());
}

#[test]
fn a_status_update_counts_only_from_the_agent_that_runs_the_task() {
    let (mut h, _agent, a, _b) = two_frameworks_one_task();
    let _other = h.register_agent(2, "a2", "cpus:1;mem:256");
    let out = h.agent_says(
        2,
        status_update(&a.id, "t", pb::TaskState::TaskFinished, Some(uuid(2))),
    );
    assert!(
        updates_to(&out, 10).is_empty(),
        "A is told nothing: {out:?}"
    );
    assert!(running(&h, &a));
}
