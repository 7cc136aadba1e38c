//! Agents (`state/agents.rs`): disconnection and re-registration, a fresh
//! master adopting a re-registering agent's tasks and frameworks, and status
//! updates (terminal states are final, retried updates, malformed ones).

use super::*;

#[test]
fn agent_disconnect_rescinds_offers_and_reregistration_reactivates_it() {
    let mut h = Harness::new();
    let a1 = h.register_agent(1, "a1", "cpus:2;mem:1024");
    let a2 = h.register_agent(2, "a2", "cpus:2;mem:1024");
    let fw = h.subscribe_framework(10, "fw");
    let offers = h.offers_for(&fw);
    assert_eq!(offers.len(), 2);
    let on_a1: Vec<String> = offers
        .iter()
        .filter(|o| o.agent_id == a1.to_field())
        .map(|o| offer_id(o).value)
        .collect();
    assert_eq!(on_a1.len(), 1);

    let out = h.agent_gone(1);
    assert_eq!(
        rescinds_to(&out, fw.conn),
        on_a1,
        "only a1's offer is rescinded"
    );
    assert_eq!(h.master.counters.offers_rescinded, 1);
    assert_eq!(h.master.offers.len(), 1);
    assert!(h.master.offers.values().all(|o| o.agent_id == a2));
    assert_eq!(h.master.agents[&a1].conn, None);
    assert_eq!(h.master.frameworks[&fw.id].offers.len(), 1);
    // The rescinded offer cannot be accepted.
    let (result, _) = h.call(
        &fw,
        launch_call(
            &fw.id,
            &[pb::OfferId {
                value: on_a1[0].clone(),
            }],
            vec![command_task("t", &a1, "cpus:1")],
            None,
        ),
    );
    assert_error(result, ErrKind::NotFound, "no longer valid");
    // A second disconnect of the same conn is a no-op.
    assert!(h.agent_gone(1).is_empty());
    // Messages on the dead conn are ignored.
    assert!(
        h.agent_says(
            1,
            status_update(&fw.id, "t", pb::TaskState::TaskRunning, None)
        )
        .is_empty()
    );

    // No offers for the disconnected agent, even after a long while.
    h.advance(60.0);
    let out = h.allocate();
    assert!(offers_to(&out, fw.conn).is_empty(), "{out:?}");

    // Re-registration with its id on a new conn reactivates it.
    let mut info = agent_info("a1", "cpus:2;mem:1024");
    info.id = a1.to_field();
    let (id, out) = h.register(3, register_msg(info));
    assert_eq!(id.as_ref(), Some(&a1));
    assert!(
        matches!(&agent_messages(&out, 3)[..], [master_message::Kind::Registered(r)] if r.agent_id == a1.to_field())
    );
    assert_eq!(h.master.agents.len(), 2, "no new agent");
    assert_eq!(h.master.agents[&a1].conn, Some(3));
    let offers = h.offers_for(&fw);
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].agent_id, a1.to_field());
    assert_eq!(offer_resources(&offers[0]), res("cpus:2;mem:1024"));
}

#[test]
fn agent_reregistering_on_a_new_conn_closes_the_old_one() {
    let mut h = Harness::new();
    let a1 = h.register_agent(1, "a1", "cpus:2;mem:1024");
    let mut info = agent_info("a1", "cpus:2;mem:1024");
    info.id = a1.to_field();
    let (_, out) = h.register(2, register_msg(info));
    assert!(out.contains(&Effect::CloseAgent { conn: 1 }), "{out:?}");
    assert_eq!(h.master.agents[&a1].conn, Some(2));
    // The shell then reports the old conn gone: nothing happens.
    assert!(h.agent_gone(1).is_empty());
    assert_eq!(h.master.agents[&a1].conn, Some(2));
}

#[test]
fn bad_agent_registrations_are_refused() {
    let mut h = Harness::new();
    let refused = |out: &[Effect], conn: ConnId| {
        matches!(
            &agent_messages(out, conn)[..],
            [master_message::Kind::Refused(_)]
        ) && out.contains(&Effect::CloseAgent { conn })
    };
    let (id, out) = h.register(1, agent_message::Register::default());
    assert!(id.is_none() && refused(&out, 1), "{out:?}");
    let (id, out) = h.register(2, register_msg(agent_info(" ", "cpus:1")));
    assert!(id.is_none() && refused(&out, 2), "{out:?}");
    let mut info = agent_info("a", "cpus:1");
    info.id = Some(pb::AgentId { value: "..".into() });
    let (id, out) = h.register(3, register_msg(info));
    assert!(id.is_none() && refused(&out, 3), "{out:?}");
    assert!(h.master.agents.is_empty());
}

#[test]
fn agent_reregistering_without_a_task_loses_it() {
    let (mut h, agent, fw, offer) = one_agent_one_offer();
    launch_one(
        &mut h,
        &fw,
        &offer,
        command_task("t1", &agent, "cpus:1;mem:128"),
    );
    h.agent_gone(1);
    let mut info = agent_info("a1", "cpus:2;mem:1024");
    info.id = agent.to_field();
    let (_, out) = h.register(2, register_msg(info));
    let updates = updates_to(&out, fw.conn);
    assert_eq!(updates.len(), 1, "{out:?}");
    assert_eq!(task_id_of(&updates[0]), "t1");
    assert_eq!(state_of(&updates[0]), pb::TaskState::TaskLost);
    assert_eq!(
        reason_of(&updates[0]),
        Some(pb::task_status::Reason::AgentRestarted)
    );
    assert!(h.task(&fw.id, "t1").is_none());
    assert_eq!(h.master.frameworks[&fw.id].completed_tasks.len(), 1);
    assert!(h.used(&agent).is_empty());
    assert_eq!(h.free(&agent), res("cpus:2;mem:1024"));
}

#[test]
fn agent_reregistering_with_its_tasks_keeps_them() {
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
    h.agent_gone(1);
    let mut info = agent_info("a1", "cpus:2;mem:1024");
    info.id = agent.to_field();
    let mut register = register_msg(info);
    register.tasks.push(pb::Task {
        name: "task t1".into(),
        task_id: Some(pb::TaskId { value: "t1".into() }),
        framework_id: fw.id.to_field(),
        agent_id: agent.to_field(),
        state: Some(pb::TaskState::TaskRunning as i32),
        resources: res("cpus:1;mem:128").to_proto(None),
        ..Default::default()
    });
    let (_, out) = h.register(2, register);
    assert!(updates_to(&out, fw.conn).is_empty(), "{out:?}");
    assert_eq!(
        h.task(&fw.id, "t1").map(|t| t.state),
        Some(pb::TaskState::TaskRunning)
    );
    assert_eq!(h.used(&agent), res("cpus:1;mem:128"));
    assert_eq!(h.free(&agent), res("cpus:1;mem:896"));
}

pub(super) fn reported_task(
    id: &str,
    fw: &FrameworkId,
    agent: &AgentId,
    state: pb::TaskState,
    resources: &str,
) -> pb::Task {
    pb::Task {
        name: format!("task {id}"),
        task_id: Some(pb::TaskId { value: id.into() }),
        framework_id: fw.to_field(),
        agent_id: agent.to_field(),
        state: Some(state as i32),
        resources: res(resources).to_proto(None),
        ..Default::default()
    }
}

#[test]
fn fresh_master_adopts_a_reregistering_agents_tasks_and_frameworks() {
    let mut h = Harness::with_master_id("m2");
    let agent = AgentId::new("m1-S0");
    let fw_id = FrameworkId::new("m1-0000");
    let gone_fw = FrameworkId::new("m1-0001");
    let mut info = agent_info("a1", "cpus:4;mem:4096");
    info.id = agent.to_field();
    let mut fw_info = framework_info("fw");
    fw_info.id = fw_id.to_field();
    fw_info.failover_timeout = Some(30.0);
    let register = agent_message::Register {
        agent_info: Some(info),
        version: "test".into(),
        tasks: vec![
            reported_task(
                "run",
                &fw_id,
                &agent,
                pb::TaskState::TaskRunning,
                "cpus:1;mem:512",
            ),
            reported_task(
                "stage",
                &fw_id,
                &agent,
                pb::TaskState::TaskStaging,
                "cpus:0.5;mem:256",
            ),
            reported_task(
                "done",
                &fw_id,
                &agent,
                pb::TaskState::TaskFinished,
                "cpus:1;mem:1024",
            ),
            // A framework the agent does not describe: its tasks are shut down.
            reported_task(
                "orphan",
                &gone_fw,
                &agent,
                pb::TaskState::TaskRunning,
                "cpus:1",
            ),
        ],
        frameworks: vec![fw_info.clone()],
    };
    let (id, out) = h.register(5, register);
    assert_eq!(id.as_ref(), Some(&agent), "keeps the id it had");
    let messages = agent_messages(&out, 5);
    assert!(
        messages.iter().any(|m| matches!(m, master_message::Kind::ShutdownFramework(s) if s.framework_id == gone_fw.to_field())),
        "{messages:?}"
    );
    assert!(
        matches!(messages.last(), Some(master_message::Kind::Registered(r)) if r.agent_id == agent.to_field())
    );

    // Tasks visible, resources of live tasks accounted as used.
    let framework = &h.master.frameworks[&fw_id];
    assert!(
        !framework.active(),
        "adopted inactive until it re-subscribes"
    );
    assert_eq!(
        framework.failover_deadline,
        Some(DEFAULT_ADOPTED_FRAMEWORK_GRACE),
        "a 30 s failover timeout gets the adoption grace"
    );
    assert_eq!(framework.tasks.len(), 3);
    assert_eq!(
        h.task(&fw_id, "run").map(|t| t.state),
        Some(pb::TaskState::TaskRunning)
    );
    assert_eq!(
        h.task(&fw_id, "stage").map(|t| t.state),
        Some(pb::TaskState::TaskStaging)
    );
    assert!(h.task(&fw_id, "done").is_some_and(|t| t.resources_released));
    assert!(!h.master.frameworks.contains_key(&gone_fw));
    assert_eq!(h.used(&agent), res("cpus:1.5;mem:768"));
    assert_eq!(h.free(&agent), res("cpus:2.5;mem:3328"));

    // Nothing offered to the inactive framework; a new framework gets only the free part.
    assert!(h.allocate().is_empty());
    let other = h.subscribe_framework(20, "other");
    assert!(other.id.as_str().starts_with("m2-0000-"), "{}", other.id);
    let offer = h.one_offer(&other);
    assert_eq!(offer_resources(&offer), res("cpus:2.5;mem:3328"));
    h.call_ok(
        &other,
        decline_call(&other.id, &[offer_id(&offer)], Some(60.0)),
    );

    // The framework re-subscribes with its id and sees its tasks.
    let fw = h.subscribe_ok(21, fw_info);
    assert_eq!(fw.id, fw_id);
    assert_eq!(h.master.frameworks[&fw_id].failover_deadline, None);
    let out = h.call_ok(&fw, reconcile_call(&fw.id, &[]));
    let mut states: Vec<(String, pb::TaskState)> = updates_to(&out, 21)
        .iter()
        .map(|s| (task_id_of(s).to_string(), state_of(s)))
        .collect();
    states.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        states,
        vec![
            ("done".to_string(), pb::TaskState::TaskFinished),
            ("run".to_string(), pb::TaskState::TaskRunning),
            ("stage".to_string(), pb::TaskState::TaskStaging),
        ]
    );
    let offer = h.one_offer(&fw);
    assert_eq!(offer_resources(&offer), res("cpus:2.5;mem:3328"));

    // When an adopted task ends, its resources come back.
    let out = h.agent_says(
        5,
        status_update(&fw_id, "run", pb::TaskState::TaskFinished, Some(uuid(3))),
    );
    assert_eq!(updates_to(&out, 21).len(), 1);
    assert_eq!(h.used(&agent), res("cpus:0.5;mem:256"));
    h.call_ok(&fw, ack_call(&fw_id, &agent, "run", uuid(3)));
    assert!(h.task(&fw_id, "run").is_none());
    // A newly registered agent gets an id from this master.
    assert_eq!(h.register_agent(6, "a2", "cpus:1").as_str(), "m2-S0");
}

/// A master that never saw framework `m1-0000` (failover timeout
/// `failover_timeout`) hears of it from agent `m1-S0` (conn 5), which runs
/// its task `task`. Returns the agent, the framework's id and info.
fn adopt_from_agent(
    h: &mut Harness,
    failover_timeout: f64,
    task: &str,
) -> (AgentId, FrameworkId, pb::FrameworkInfo) {
    let agent = AgentId::new("m1-S0");
    let fw_id = FrameworkId::new("m1-0000");
    let mut info = agent_info("a1", "cpus:4;mem:4096");
    info.id = agent.to_field();
    let mut fw_info = framework_info("fw");
    fw_info.id = fw_id.to_field();
    fw_info.failover_timeout = Some(failover_timeout);
    let mut register = register_msg(info);
    register.tasks = vec![reported_task(
        task,
        &fw_id,
        &agent,
        pb::TaskState::TaskRunning,
        "cpus:1",
    )];
    register.frameworks = vec![fw_info.clone()];
    h.register(5, register);
    (agent, fw_id, fw_info)
}

#[test]
fn adopted_framework_that_never_resubscribes_is_removed() {
    let mut h = Harness::with_master_id("m2");
    let (agent, fw_id, _) = adopt_from_agent(&mut h, 500.0, "run");
    // A failover timeout longer than the grace is what counts.
    h.advance(499.0);
    assert!(agent_messages(&h.tick(), 5).is_empty());
    assert!(h.master.frameworks.contains_key(&fw_id));
    h.advance(1.0);
    let out = h.tick();
    assert!(
        matches!(
            &agent_messages(&out, 5)[..],
            [master_message::Kind::ShutdownFramework(_)]
        ),
        "{out:?}"
    );
    assert!(h.used(&agent).is_empty());
    assert_eq!(h.free(&agent), res("cpus:4;mem:4096"));
}

#[test]
fn adopted_framework_with_zero_failover_timeout_keeps_its_tasks_for_the_grace() {
    // Spark's frameworks have a zero failover timeout. After a master
    // failover an agent may re-register before the scheduler finds the new
    // leader: the framework must not be removed (and its tasks killed) then.
    let mut h = Harness::with_master_id("m2");
    let (_, fw_id, fw_info) = adopt_from_agent(&mut h, 0.0, "executor-0");
    h.advance(10.0);
    let out = h.tick();
    assert!(agent_messages(&out, 5).is_empty(), "{out:?}");
    // The scheduler comes back: its task is still there.
    let fw = h.subscribe_ok(21, fw_info);
    assert_eq!(fw.id, fw_id);
    assert_eq!(
        h.task(&fw_id, "executor-0").map(|t| t.state),
        Some(pb::TaskState::TaskRunning)
    );

    // Without a scheduler coming back, the grace ends it.
    let mut h = Harness::with_master_id("m3");
    adopt_from_agent(&mut h, 0.0, "executor-0");
    h.advance(DEFAULT_ADOPTED_FRAMEWORK_GRACE.as_secs_f64() - 1.0);
    assert!(agent_messages(&h.tick(), 5).is_empty());
    h.advance(1.0);
    let out = h.tick();
    assert!(
        matches!(
            &agent_messages(&out, 5)[..],
            [master_message::Kind::ShutdownFramework(_)]
        ),
        "{out:?}"
    );
}

#[test]
fn status_updates_never_leave_a_terminal_state() {
    let (mut h, agent, fw, offer) = one_agent_one_offer();
    launch_one(&mut h, &fw, &offer, command_task("t1", &agent, "cpus:1"));
    h.agent_says(
        1,
        status_update(&fw.id, "t1", pb::TaskState::TaskFailed, Some(uuid(1))),
    );
    let free = h.free(&agent);
    let out = h.agent_says(
        1,
        status_update(&fw.id, "t1", pb::TaskState::TaskRunning, Some(uuid(2))),
    );
    assert_eq!(updates_to(&out, fw.conn).len(), 1, "still forwarded");
    let task = h.task(&fw.id, "t1").expect("task");
    assert_eq!(task.state, pb::TaskState::TaskFailed);
    assert_eq!(h.free(&agent), free, "resources are released once");
    assert!(h.used(&agent).is_empty());
    // A repeated terminal update does not release twice.
    h.agent_says(
        1,
        status_update(&fw.id, "t1", pb::TaskState::TaskFailed, Some(uuid(3))),
    );
    assert_eq!(h.free(&agent), free);
    assert_eq!(
        h.master.counters.task_transitions.get("TASK_FAILED"),
        Some(&1)
    );
}

#[test]
fn latest_state_ahead_of_the_status_drives_the_task_state() {
    let (mut h, agent, fw, offer) = one_agent_one_offer();
    launch_one(&mut h, &fw, &offer, command_task("t1", &agent, "cpus:1"));
    let mut message = status_update(&fw.id, "t1", pb::TaskState::TaskRunning, Some(uuid(1)));
    if let agent_message::Kind::StatusUpdate(update) = &mut message {
        update.latest_state = Some(pb::TaskState::TaskFinished as i32);
    }
    let out = h.agent_says(1, message);
    let updates = updates_to(&out, fw.conn);
    assert_eq!(
        state_of(&updates[0]),
        pb::TaskState::TaskRunning,
        "the status itself is forwarded"
    );
    assert_eq!(
        h.task(&fw.id, "t1").map(|t| t.state),
        Some(pb::TaskState::TaskFinished)
    );
    assert!(h.used(&agent).is_empty());
    // Acknowledging the RUNNING update does not complete the task...
    h.call_ok(&fw, ack_call(&fw.id, &agent, "t1", uuid(1)));
    assert!(h.task(&fw.id, "t1").is_some());
    // ...acknowledging the FINISHED one does.
    h.agent_says(
        1,
        status_update(&fw.id, "t1", pb::TaskState::TaskFinished, Some(uuid(2))),
    );
    h.call_ok(&fw, ack_call(&fw.id, &agent, "t1", uuid(2)));
    assert!(h.task(&fw.id, "t1").is_none());
}

#[test]
fn malformed_status_updates_are_ignored() {
    let (mut h, agent, fw, offer) = one_agent_one_offer();
    launch_one(&mut h, &fw, &offer, command_task("t1", &agent, "cpus:1"));
    let mut message = status_update(&fw.id, "t1", pb::TaskState::TaskRunning, Some(uuid(1)));
    if let agent_message::Kind::StatusUpdate(update) = &mut message {
        update.status.as_mut().expect("status").state = Some(99);
    }
    assert!(h.agent_says(1, message).is_empty());
    assert!(
        h.agent_says(
            1,
            status_update(&fw.id, "a/b", pb::TaskState::TaskRunning, None)
        )
        .is_empty()
    );
    assert_eq!(
        h.task(&fw.id, "t1").map(|t| t.state),
        Some(pb::TaskState::TaskStaging)
    );
}

#[test]
fn agent_returning_with_tasks_of_a_removed_framework_is_told_to_shut_it_down() {
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
    // The agent goes away; meanwhile the framework is removed: the
    // ShutdownFramework cannot reach the agent.
    h.agent_gone(1);
    h.framework_gone(fw.conn);
    let out = h.tick();
    assert!(out.is_empty(), "nobody to tell: {out:?}");
    assert!(!h.master.frameworks.contains_key(&fw.id));
    // The agent comes back, still running the task.
    let mut info = agent_info("a1", "cpus:2;mem:1024");
    info.id = agent.to_field();
    let mut register = register_msg(info);
    register.tasks = vec![reported_task(
        "t1",
        &fw.id,
        &agent,
        pb::TaskState::TaskRunning,
        "cpus:1;mem:128",
    )];
    let (_, out) = h.register(2, register);
    let messages = agent_messages(&out, 2);
    assert!(
        messages.iter().any(|m| matches!(m, master_message::Kind::ShutdownFramework(s) if s.framework_id == fw.id.to_field())),
        "the agent must be told to shut the removed framework down: {messages:?}"
    );
    assert!(h.used(&agent).is_empty());
    assert_eq!(h.free(&agent), res("cpus:2;mem:1024"));
}

#[test]
fn a_terminal_update_sent_again_after_its_ack_was_lost_is_acknowledged_not_forwarded() {
    let (mut h, agent, fw, offer) = one_agent_one_offer();
    launch_one(
        &mut h,
        &fw,
        &offer,
        command_task("t1", &agent, "cpus:1;mem:128"),
    );
    h.agent_says(
        1,
        status_update(&fw.id, "t1", pb::TaskState::TaskFinished, Some(uuid(1))),
    );
    // The agent's stream breaks (or the agent dies before it writes the
    // ack down); the framework's ack cannot reach it.
    h.agent_gone(1);
    let out = h.call_ok(&fw, ack_call(&fw.id, &agent, "t1", uuid(1)));
    assert!(out.is_empty(), "no agent conn to send the ack on: {out:?}");
    assert_eq!(h.master.frameworks[&fw.id].completed_tasks.len(), 1);
    // The agent comes back with the unacknowledged terminal task and sends
    // the update again: the framework already acknowledged it, so it does
    // not hear the task's end twice, and the agent gets its ack.
    let mut info = agent_info("a1", "cpus:2;mem:1024");
    info.id = agent.to_field();
    let mut register = register_msg(info);
    register.tasks = vec![reported_task(
        "t1",
        &fw.id,
        &agent,
        pb::TaskState::TaskFinished,
        "cpus:1;mem:128",
    )];
    let (_, out) = h.register(2, register);
    assert!(updates_to(&out, fw.conn).is_empty(), "{out:?}");
    assert!(h.used(&agent).is_empty());
    let out = h.agent_says(
        2,
        status_update(&fw.id, "t1", pb::TaskState::TaskFinished, Some(uuid(1))),
    );
    assert!(
        updates_to(&out, fw.conn).is_empty(),
        "not forwarded: {out:?}"
    );
    assert!(
        matches!(&agent_messages(&out, 2)[..], [master_message::Kind::StatusUpdateAck(a)] if a.uuid == uuid(1)),
        "the agent's queue moves on: {out:?}"
    );
    // A framework that acknowledges it again anyway (it saw it before the
    // master did) is still answered, and its ack still reaches the agent.
    let out = h.call_ok(&fw, ack_call(&fw.id, &agent, "t1", uuid(1)));
    assert!(
        matches!(&agent_messages(&out, 2)[..], [master_message::Kind::StatusUpdateAck(a)] if a.uuid == uuid(1)),
        "{out:?}"
    );
    // An update with another uuid is news and is forwarded.
    let out = h.agent_says(
        2,
        status_update(&fw.id, "t1", pb::TaskState::TaskFinished, Some(uuid(2))),
    );
    assert_eq!(updates_to(&out, fw.conn).len(), 1);
    assert!(h.used(&agent).is_empty());
    assert_eq!(h.master.frameworks[&fw.id].completed_tasks.len(), 1);
}
