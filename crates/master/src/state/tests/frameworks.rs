//! Frameworks (`state/frameworks.rs`): failover and the failover timeout,
//! TEARDOWN, and the shutdown of a removed framework's idle executors.

use super::*;

#[test]
fn framework_failover_and_failover_timeout() {
    let (mut h, agent, fw, offer) = one_agent_one_offer();
    launch_one(
        &mut h,
        &fw,
        &offer,
        command_task("t1", &agent, "cpus:1;mem:128"),
    );
    h.agent_says(
        1,
        status_update(&fw.id, "t1", pb::TaskState::TaskRunning, Some(uuid(1))),
    );
    let rest = h.one_offer(&fw);

    // Re-subscribe with the same id on a new conn while the old one is live.
    let mut info = framework_info("fw");
    info.id = fw.id.to_field();
    info.failover_timeout = Some(10.0);
    let (result, out) = h.subscribe(11, info);
    assert_eq!(result.as_ref(), Ok(&fw.id));
    assert_eq!(
        error_messages_to(&out, 10),
        vec!["framework failed over".to_string()]
    );
    assert!(out.contains(&Effect::CloseFramework { conn: 10 }));
    assert_eq!(events_of_type(&out, 11, EventType::Subscribed).len(), 1);
    assert!(
        rescinds_to(&out, 10).is_empty(),
        "old offers are dropped silently"
    );
    assert!(
        !h.master
            .offers
            .contains_key(&OfferId::new(offer_id(&rest).value))
    );
    let fw2 = Fw {
        id: fw.id.clone(),
        conn: 11,
        stream: stream_of(11),
    };
    // The old stream id no longer works; the new one does.
    let (result, _) = h.call(&fw, reconcile_call(&fw.id, &[]));
    assert_error(result, ErrKind::InvalidArgument, "stream id");
    h.call_ok(&fw2, reconcile_call(&fw.id, &[]));
    // The task survived failover.
    assert_eq!(
        h.task(&fw.id, "t1").map(|t| t.state),
        Some(pb::TaskState::TaskRunning)
    );
    // The shell reporting the old conn closed changes nothing.
    assert!(h.framework_gone(10).is_empty());
    assert!(h.master.frameworks[&fw.id].active());
    // The new stream gets new offers.
    let rest = h.one_offer(&fw2);
    assert_eq!(offer_resources(&rest), res("cpus:1;mem:896"));

    // Disconnect with failover_timeout 10 s: the offer goes back, no offers meanwhile.
    let out = h.framework_gone(11);
    assert!(out.is_empty(), "nobody to tell: {out:?}");
    assert!(h.master.offers.is_empty());
    assert_eq!(h.free(&agent), res("cpus:1;mem:896"));
    assert!(!h.master.frameworks[&fw.id].active());
    assert!(offers_to(&h.allocate(), 11).is_empty());
    assert!(
        h.master.offers.is_empty(),
        "no offer to an inactive framework"
    );

    h.advance(9.0);
    assert!(h.tick().is_empty());
    assert!(h.master.frameworks.contains_key(&fw.id));
    assert!(h.task(&fw.id, "t1").is_some());

    h.advance(2.0);
    let out = h.tick();
    assert!(
        matches!(&agent_messages(&out, 1)[..], [master_message::Kind::ShutdownFramework(s)] if s.framework_id == fw.id.to_field()),
        "the agent is told to shut the framework down: {out:?}"
    );
    assert!(!h.master.frameworks.contains_key(&fw.id));
    let removed = h
        .master
        .completed_frameworks
        .back()
        .expect("kept as completed");
    assert_eq!(removed.id, fw.id);
    assert_eq!(removed.completed_tasks.len(), 1);
    assert_eq!(removed.completed_tasks[0].state, pb::TaskState::TaskKilled);
    assert!(h.used(&agent).is_empty());
    assert_eq!(h.free(&agent), res("cpus:2;mem:1024"));

    // The id can never subscribe again.
    let mut info = framework_info("fw");
    info.id = fw.id.to_field();
    let (result, out) = h.subscribe(12, info);
    assert!(
        matches!(result, Err(CallError::FailedPrecondition(ref m)) if m.contains("removed")),
        "{result:?}"
    );
    assert!(out.is_empty());
    // Its late status updates are acknowledged by the master itself.
    let out = h.agent_says(
        1,
        status_update(&fw.id, "t1", pb::TaskState::TaskKilled, Some(uuid(5))),
    );
    assert!(
        matches!(&agent_messages(&out, 1)[..], [master_message::Kind::StatusUpdateAck(a)] if a.uuid == uuid(5))
    );
}

#[test]
fn framework_that_resubscribes_in_time_keeps_its_tasks() {
    let (mut h, agent, fw, _offer) = one_agent_one_offer();
    let mut info = framework_info("fw");
    info.id = fw.id.to_field();
    info.failover_timeout = Some(10.0);
    let fw = h.subscribe_ok(11, info.clone());
    let offer = h.one_offer(&fw);
    launch_one(
        &mut h,
        &fw,
        &offer,
        command_task("t1", &agent, "cpus:1;mem:128"),
    );
    let gone_at = h.now().wall;
    h.framework_gone(11);
    assert_eq!(h.master.frameworks[&fw.id].disconnected_at, Some(gone_at));
    h.advance(8.0);
    h.tick();
    let back_at = h.now().wall;
    let fw = h.subscribe_ok(12, info);
    assert_eq!(h.master.frameworks[&fw.id].failover_deadline, None);
    // The UI shows when it failed over; it is connected again.
    assert_eq!(h.master.frameworks[&fw.id].reregistered_at, Some(back_at));
    assert_eq!(h.master.frameworks[&fw.id].disconnected_at, None);
    h.advance(100.0);
    assert!(h.tick().is_empty());
    assert!(h.task(&fw.id, "t1").is_some());
    // Updates reach the new stream.
    let out = h.agent_says(
        1,
        status_update(&fw.id, "t1", pb::TaskState::TaskRunning, Some(uuid(1))),
    );
    assert_eq!(updates_to(&out, 12).len(), 1);
}

#[test]
fn framework_with_zero_failover_timeout_is_removed_at_the_next_tick() {
    let (mut h, _agent, fw, _offer) = one_agent_one_offer();
    h.framework_gone(fw.conn);
    assert!(h.master.frameworks.contains_key(&fw.id));
    h.advance(1.0);
    let removed_at = h.now().wall;
    h.tick();
    assert!(!h.master.frameworks.contains_key(&fw.id));
    // Its end time is when it was removed, not when its scheduler left.
    let removed = h.master.completed_frameworks.back().expect("completed");
    assert_eq!(removed.disconnected_at, Some(removed_at));
}

#[test]
fn updates_for_a_disconnected_framework_are_not_sent() {
    let (mut h, agent, fw, offer) = one_agent_one_offer();
    launch_one(&mut h, &fw, &offer, command_task("t1", &agent, "cpus:1"));
    h.framework_gone(fw.conn);
    let out = h.agent_says(
        1,
        status_update(&fw.id, "t1", pb::TaskState::TaskRunning, Some(uuid(1))),
    );
    assert!(out.is_empty(), "{out:?}");
    // The master still records the state.
    assert_eq!(
        h.task(&fw.id, "t1").map(|t| t.state),
        Some(pb::TaskState::TaskRunning)
    );
}

#[test]
fn teardown_removes_the_framework_and_its_tasks() {
    let (mut h, agent, fw, offer) = one_agent_one_offer();
    launch_one(
        &mut h,
        &fw,
        &offer,
        command_task("t1", &agent, "cpus:1;mem:128"),
    );
    h.agent_says(
        1,
        status_update(&fw.id, "t1", pb::TaskState::TaskRunning, Some(uuid(1))),
    );
    let _rest = h.one_offer(&fw);
    assert_eq!(h.master.offers.len(), 1);
    let out = h.call_ok(&fw, base_call(&fw.id, CallType::Teardown));
    assert!(matches!(
        &agent_messages(&out, 1)[..],
        [master_message::Kind::ShutdownFramework(s)] if s.framework_id == fw.id.to_field()
    ));
    assert!(out.contains(&Effect::CloseFramework { conn: fw.conn }));
    assert!(!h.master.frameworks.contains_key(&fw.id));
    assert!(h.master.offers.is_empty());
    assert!(h.used(&agent).is_empty());
    assert_eq!(h.free(&agent), res("cpus:2;mem:1024"));
    let removed = h.master.completed_frameworks.back().expect("completed");
    assert_eq!(removed.id, fw.id);
    assert_eq!(removed.conn, None);
    // When it ended (the UI's and Mesos' `unregistered_time`).
    assert_eq!(removed.disconnected_at, Some(h.now().wall));
    assert!(removed.tasks.is_empty());
    assert_eq!(removed.completed_tasks[0].state, pb::TaskState::TaskKilled);
    // The conn is gone: a disconnect report for it is a no-op.
    assert!(h.framework_gone(fw.conn).is_empty());
    // Another framework gets the whole agent.
    let other = h.subscribe_framework(11, "other");
    assert_eq!(
        offer_resources(&h.one_offer(&other)),
        res("cpus:2;mem:1024")
    );
}

/// Runs `t1` under the custom executor `ex` on the agent at conn 1 to
/// TASK_FINISHED and acknowledges it: the framework then has no task on
/// that agent, whose executor lives on, idle.
fn idle_custom_executor(h: &mut Harness, agent: &AgentId, fw: &Fw, offer: &pb::Offer) {
    let mut task = command_task("t1", agent, "cpus:1;mem:128");
    task.command = None;
    task.executor = Some(pb::ExecutorInfo {
        executor_id: Some(pb::ExecutorId { value: "ex".into() }),
        command: Some(pb::CommandInfo {
            value: Some("./executor".into()),
            ..Default::default()
        }),
        ..Default::default()
    });
    launch_one(h, fw, offer, task);
    h.agent_says(
        1,
        status_update(&fw.id, "t1", pb::TaskState::TaskFinished, Some(uuid(1))),
    );
    h.call_ok(fw, ack_call(&fw.id, agent, "t1", uuid(1)));
    assert!(h.task(&fw.id, "t1").is_none(), "the task is completed");
}

fn shutdowns_of(out: &[Effect], conn: ConnId, fw: &FrameworkId) -> usize {
    agent_messages(out, conn)
        .iter()
        .filter(|m| {
            matches!(m, master_message::Kind::ShutdownFramework(s)
                if s.framework_id == fw.to_field())
        })
        .count()
}

#[test]
fn removing_a_framework_shuts_down_its_idle_executors() {
    // TEARDOWN.
    let (mut h, agent, fw, offer) = one_agent_one_offer();
    idle_custom_executor(&mut h, &agent, &fw, &offer);
    let out = h.call_ok(&fw, base_call(&fw.id, CallType::Teardown));
    assert_eq!(shutdowns_of(&out, 1, &fw.id), 1, "{out:?}");

    // The failover timeout: the same removal.
    let (mut h, agent, fw, offer) = one_agent_one_offer();
    idle_custom_executor(&mut h, &agent, &fw, &offer);
    h.framework_gone(fw.conn);
    let out = h.tick();
    assert!(!h.master.frameworks.contains_key(&fw.id), "zero timeout");
    assert_eq!(shutdowns_of(&out, 1, &fw.id), 1, "{out:?}");

    // The agent is away when the framework goes: told when it comes back
    // reporting the framework (it keeps it for the executor), with no task.
    let (mut h, agent, fw, offer) = one_agent_one_offer();
    idle_custom_executor(&mut h, &agent, &fw, &offer);
    h.agent_gone(1);
    let out = h.call_ok(&fw, base_call(&fw.id, CallType::Teardown));
    assert_eq!(shutdowns_of(&out, 1, &fw.id), 0, "nobody to tell");
    let mut info = agent_info("a1", "cpus:2;mem:1024");
    info.id = agent.to_field();
    let mut register = register_msg(info);
    let mut fw_info = framework_info("fw");
    fw_info.id = fw.id.to_field();
    register.frameworks = vec![fw_info];
    let (_, out) = h.register(2, register.clone());
    assert_eq!(shutdowns_of(&out, 2, &fw.id), 1, "{out:?}");
    assert!(!h.master.frameworks.contains_key(&fw.id), "not adopted");
    // Likewise an agent this master has not met (its id from an earlier
    // master), which would otherwise have the framework adopted.
    let mut info = agent_info("a2", "cpus:2;mem:1024");
    info.id = AgentId::new("m0-S7").to_field();
    register.agent_info = Some(info);
    let (id, out) = h.register(3, register);
    assert!(id.is_some(), "{out:?}");
    assert_eq!(shutdowns_of(&out, 3, &fw.id), 1, "{out:?}");
    assert!(!h.master.frameworks.contains_key(&fw.id), "not adopted");
}
