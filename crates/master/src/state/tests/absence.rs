//! Agent absence (issue 10, items 7, 9 and 10): detection is not removal,
//! updates count only from the task's agent, and an agent restarted with
//! other resources is resized or refused.

use super::*;

/// One agent (conn 1, cpus:4;mem:1024) running `t-aware` of a
/// partition-aware framework (conn 10) and `t-plain` of one that is not
/// (conn 11), both RUNNING, under the default health settings.
fn absence_cluster() -> (Harness, AgentId, Fw, Fw) {
    let mut h = Harness::with_default_health();
    let agent = h.register_agent(1, "a1", "cpus:4;mem:1024");
    let aware = h.subscribe_ok(10, partition_aware(framework_info("aware")));
    let plain = h.subscribe_ok(11, framework_info("plain"));
    for (fw, task, n) in [(&aware, "t-aware", 1), (&plain, "t-plain", 2)] {
        let offers = h.offers_for(fw);
        let offer = offers.first().expect("an offer").clone();
        launch_one(
            &mut h,
            fw,
            &offer,
            command_task(task, &agent, "cpus:1;mem:128"),
        );
        for other in offers.iter().skip(1) {
            h.call_ok(fw, decline_call(&fw.id, &[offer_id(other)], Some(0.0)));
        }
        h.agent_says(
            1,
            status_update(&fw.id, task, pb::TaskState::TaskRunning, Some(uuid(n))),
        );
        h.call_ok(fw, ack_call(&fw.id, &agent, task, uuid(n)));
    }
    (h, agent, aware, plain)
}

fn running(id: &str, fw: &Fw, agent: &AgentId) -> pb::Task {
    reported_task(
        id,
        &fw.id,
        agent,
        pb::TaskState::TaskRunning,
        "cpus:1;mem:128",
    )
}

fn reregister(agent: &AgentId, resources: &str, tasks: Vec<pb::Task>) -> agent_message::Register {
    let mut register = register_msg(agent_info("a1", resources));
    register.agent_info.as_mut().expect("info").id = agent.to_field();
    register.tasks = tasks;
    register
}

/// Lets the agent go silent until the master detects it; returns every
/// effect of the ticks on the way.
fn until_detected(h: &mut Harness, agent: &AgentId) -> Vec<Effect> {
    let period = h.master.config().agent_ping_timeout.as_secs_f64();
    let mut all = Vec::new();
    for _ in 0..=h.master.config().max_agent_ping_timeouts + 1 {
        h.advance(period);
        all.extend(h.tick());
        if h.master.agents[agent].unreachable_since.is_some() {
            return all;
        }
    }
    panic!("agent never detected: {all:?}");
}

#[test]
fn absence_defaults_detect_within_10s_and_remove_after_75s() {
    let config = MasterConfig::new(pb::MasterInfo::default());
    let detection = config.agent_ping_timeout * (config.max_agent_ping_timeouts + 1);
    assert!(detection <= Duration::from_secs(10), "{detection:?}");
    assert_eq!(config.agent_removal_timeout, Duration::from_secs(75));
}

#[test]
fn absence_detection_tells_only_partition_aware_frameworks() {
    let (mut h, agent, aware, plain) = absence_cluster();
    let offer = h.one_offer(&aware);
    let out = until_detected(&mut h, &agent);
    // Aware: TASK_UNREACHABLE, from the master; its offer of the agent is rescinded.
    let updates = updates_to(&out, aware.conn);
    assert_eq!(updates.len(), 1, "{out:?}");
    assert_eq!(task_id_of(&updates[0]), "t-aware");
    assert_eq!(state_of(&updates[0]), pb::TaskState::TaskUnreachable);
    assert_eq!(updates[0].uuid, None);
    assert_eq!(rescinds_to(&out, aware.conn), vec![offer_id(&offer).value]);
    // Not aware: nothing at all, and reconciliation still says RUNNING.
    assert!(updates_to(&out, plain.conn).is_empty(), "{out:?}");
    let out = h.call_ok(&plain, reconcile_call(&plain.id, &[]));
    let answers = updates_to(&out, plain.conn);
    assert_eq!(answers.len(), 1);
    assert_eq!(state_of(&answers[0]), pb::TaskState::TaskRunning);
    let out = h.call_ok(&aware, reconcile_call(&aware.id, &[]));
    assert_eq!(
        state_of(&updates_to(&out, aware.conn)[0]),
        pb::TaskState::TaskUnreachable
    );
    // Nothing of the agent is offered while it is away.
    assert!(h.allocate().is_empty());
    assert!(!h.master.free_resources().contains_key(&agent));
    // Still within the removal timeout: nothing more.
    h.advance(60.0);
    let out = h.tick();
    assert!(updates_to(&out, plain.conn).is_empty(), "{out:?}");
    assert!(updates_to(&out, aware.conn).is_empty(), "{out:?}");
}

#[test]
fn absence_agent_back_before_removal_is_invisible_to_frameworks_not_partition_aware() {
    let (mut h, agent, aware, plain) = absence_cluster();
    until_detected(&mut h, &agent);
    h.advance(30.0);
    h.tick();
    let tasks = vec![
        running("t-aware", &aware, &agent),
        running("t-plain", &plain, &agent),
    ];
    let (id, out) = h.register(2, reregister(&agent, "cpus:4;mem:1024", tasks));
    assert_eq!(id.as_ref(), Some(&agent));
    assert!(updates_to(&out, plain.conn).is_empty(), "{out:?}");
    let updates = updates_to(&out, aware.conn);
    assert_eq!(updates.len(), 1, "{out:?}");
    assert_eq!(state_of(&updates[0]), pb::TaskState::TaskRunning);
    assert_eq!(
        reason_of(&updates[0]),
        Some(pb::task_status::Reason::AgentReregistered)
    );
    for (fw, task) in [(&aware, "t-aware"), (&plain, "t-plain")] {
        assert_eq!(
            h.task(&fw.id, task).map(|t| t.state),
            Some(pb::TaskState::TaskRunning)
        );
    }
    // Both tasks' resources are in use again; only the rest is offered.
    assert_eq!(h.used(&agent), res("cpus:2;mem:256"));
    assert_eq!(h.free(&agent), res("cpus:2;mem:768"));
    // Long after: nothing is lost.
    h.advance(600.0);
    let out = h.tick();
    assert!(updates_to(&out, plain.conn).is_empty(), "{out:?}");
}

#[test]
fn absence_task_that_ended_while_away_reports_its_real_state() {
    let (mut h, agent, aware, plain) = absence_cluster();
    until_detected(&mut h, &agent);
    let mut finished = running("t-aware", &aware, &agent);
    finished.state = Some(pb::TaskState::TaskFinished as i32);
    finished.status_update_state = Some(pb::TaskState::TaskFinished as i32);
    let tasks = vec![finished, running("t-plain", &plain, &agent)];
    let (_, out) = h.register(2, reregister(&agent, "cpus:4;mem:1024", tasks));
    let updates = updates_to(&out, aware.conn);
    assert_eq!(updates.len(), 1, "{out:?}");
    assert_eq!(state_of(&updates[0]), pb::TaskState::TaskFinished);
    assert_eq!(
        h.task(&aware.id, "t-aware").map(|t| t.state),
        Some(pb::TaskState::TaskFinished)
    );
    // Its resources were given back once: only t-plain's are in use.
    assert_eq!(h.used(&agent), res("cpus:1;mem:128"));
    assert_eq!(h.free(&agent), res("cpus:3;mem:896"));
    // The agent's own update follows and completes the task when acknowledged.
    let out = h.agent_says(
        2,
        status_update(
            &aware.id,
            "t-aware",
            pb::TaskState::TaskFinished,
            Some(uuid(9)),
        ),
    );
    assert_eq!(updates_to(&out, aware.conn).len(), 1);
    h.call_ok(&aware, ack_call(&aware.id, &agent, "t-aware", uuid(9)));
    assert!(h.task(&aware.id, "t-aware").is_none());
    assert_eq!(h.free(&agent), res("cpus:3;mem:896"));
}

#[test]
fn absence_removal_loses_tasks_of_frameworks_not_partition_aware_only() {
    let (mut h, agent, aware, plain) = absence_cluster();
    until_detected(&mut h, &agent);
    let removal = h.master.config().agent_removal_timeout.as_secs_f64();
    h.advance(removal - 1.0);
    assert!(updates_to(&h.tick(), plain.conn).is_empty());
    h.advance(1.0);
    let out = h.tick();
    let updates = updates_to(&out, plain.conn);
    assert_eq!(updates.len(), 1, "{out:?}");
    assert_eq!(state_of(&updates[0]), pb::TaskState::TaskLost);
    assert_eq!(
        reason_of(&updates[0]),
        Some(pb::task_status::Reason::AgentRemoved)
    );
    assert!(updates_to(&out, aware.conn).is_empty(), "{out:?}");
    assert!(h.task(&plain.id, "t-plain").is_none(), "completed");
    assert_eq!(
        h.task(&aware.id, "t-aware").map(|t| t.state),
        Some(pb::TaskState::TaskUnreachable)
    );
    // Only once.
    h.advance(100.0);
    assert!(updates_to(&h.tick(), plain.conn).is_empty());

    // It comes back still running both: the aware task is live again, the
    // lost one is killed (its framework may have replaced it) and its
    // resources stay booked until it ends.
    let tasks = vec![
        running("t-aware", &aware, &agent),
        running("t-plain", &plain, &agent),
    ];
    let (_, out) = h.register(2, reregister(&agent, "cpus:4;mem:1024", tasks));
    let kills: Vec<_> = agent_messages(&out, 2)
        .into_iter()
        .filter_map(|m| match m {
            master_message::Kind::KillTask(k) => k.task_id.map(|t| t.value),
            _ => None,
        })
        .collect();
    assert_eq!(kills, vec!["t-plain".to_string()]);
    assert_eq!(
        state_of(&updates_to(&out, aware.conn)[0]),
        pb::TaskState::TaskRunning
    );
    assert_eq!(h.used(&agent), res("cpus:2;mem:256"));
    assert_eq!(h.free(&agent), res("cpus:2;mem:768"));
    let out = h.agent_says(
        2,
        status_update(
            &plain.id,
            "t-plain",
            pb::TaskState::TaskKilled,
            Some(uuid(7)),
        ),
    );
    assert_eq!(updates_to(&out, plain.conn).len(), 1);
    assert_eq!(h.used(&agent), res("cpus:1;mem:128"));
}

#[test]
fn absence_restart_before_detection_changes_nothing() {
    let (mut h, agent, aware, plain) = absence_cluster();
    h.agent_gone(1);
    h.advance(1.0);
    h.tick();
    let tasks = vec![
        running("t-aware", &aware, &agent),
        running("t-plain", &plain, &agent),
    ];
    let (_, out) = h.register(2, reregister(&agent, "cpus:4;mem:1024", tasks));
    assert!(updates_to(&out, aware.conn).is_empty(), "{out:?}");
    assert!(updates_to(&out, plain.conn).is_empty(), "{out:?}");
    assert_eq!(h.used(&agent), res("cpus:2;mem:256"));
}

// ---------------------------------------------------------------------------
// Item 9: only the task's agent speaks for it
// ---------------------------------------------------------------------------

#[test]
fn status_update_from_an_agent_the_task_is_not_on_is_ignored() {
    let (mut h, agent, aware, _plain) = absence_cluster();
    let other = h.register_agent(3, "a2", "cpus:1;mem:128");
    assert_ne!(other, agent);
    let out = h.agent_says(
        3,
        status_update(
            &aware.id,
            "t-aware",
            pb::TaskState::TaskFailed,
            Some(uuid(40)),
        ),
    );
    assert!(updates_to(&out, aware.conn).is_empty(), "{out:?}");
    assert_eq!(
        h.task(&aware.id, "t-aware").map(|t| t.state),
        Some(pb::TaskState::TaskRunning)
    );
    assert_eq!(h.used(&agent), res("cpus:2;mem:256"));
    // The sender's queue is not left stuck: it is acknowledged there only.
    assert!(matches!(
        &agent_messages(&out, 3)[..],
        [master_message::Kind::StatusUpdateAck(_)]
    ));
    assert!(agent_messages(&out, 1).is_empty());
    // The task's own agent is still heard.
    let out = h.agent_says(
        1,
        status_update(
            &aware.id,
            "t-aware",
            pb::TaskState::TaskFinished,
            Some(uuid(41)),
        ),
    );
    assert_eq!(updates_to(&out, aware.conn).len(), 1);
}

// ---------------------------------------------------------------------------
// Item 10: an agent restarted with other resources
// ---------------------------------------------------------------------------

#[test]
fn agent_restarted_with_other_resources_that_hold_its_tasks_is_resized() {
    let (mut h, agent, aware, plain) = absence_cluster();
    h.agent_gone(1);
    let tasks = vec![
        running("t-aware", &aware, &agent),
        running("t-plain", &plain, &agent),
    ];
    let (id, out) = h.register(2, reregister(&agent, "cpus:3;mem:512", tasks));
    assert_eq!(id.as_ref(), Some(&agent));
    assert_eq!(h.master.agents[&agent].total, res("cpus:3;mem:512"));
    let writes: Vec<_> = out
        .iter()
        .filter_map(|e| match e {
            Effect::Registry(entry) => Some(entry.resources.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(writes, vec!["cpus:3;mem:512".to_string()]);
    // Only what is left of the new totals is offered.
    assert_eq!(h.free(&agent), res("cpus:1;mem:256"));
    let offers = h.offers_for(&aware);
    let offered: Vec<Resources> = offers.iter().map(offer_resources).collect();
    assert_eq!(offered, vec![res("cpus:1;mem:256")]);
}

#[test]
fn agent_restarted_with_resources_too_small_for_its_tasks_is_refused() {
    let (mut h, agent, aware, plain) = absence_cluster();
    h.agent_gone(1);
    let tasks = vec![
        running("t-aware", &aware, &agent),
        running("t-plain", &plain, &agent),
    ];
    let (id, out) = h.register(2, reregister(&agent, "cpus:1;mem:1024", tasks));
    assert_eq!(id, None);
    let messages = agent_messages(&out, 2);
    let [master_message::Kind::Refused(refused)] = &messages[..] else {
        panic!("expected a refusal: {out:?}");
    };
    assert!(
        refused.message.contains("cpus:1;mem:1024")
            && refused.message.contains("cpus:4;mem:1024")
            && refused.message.contains("running tasks"),
        "{}",
        refused.message
    );
    assert!(out.contains(&Effect::CloseAgent { conn: 2 }));
    // Nothing changed: the old totals, its tasks, no session.
    assert_eq!(h.master.agents[&agent].total, res("cpus:4;mem:1024"));
    assert_eq!(h.master.agents[&agent].conn, None);
    assert_eq!(h.used(&agent), res("cpus:2;mem:256"));
}

#[test]
fn unreachable_agent_returning_with_other_resources_rejoins_with_them() {
    let (mut h, agent, aware, plain) = absence_cluster();
    until_detected(&mut h, &agent);
    let tasks = vec![
        running("t-aware", &aware, &agent),
        running("t-plain", &plain, &agent),
    ];
    let (id, _) = h.register(2, reregister(&agent, "cpus:8;mem:2048", tasks));
    assert_eq!(id.as_ref(), Some(&agent));
    assert_eq!(h.used(&agent), res("cpus:2;mem:256"));
    assert_eq!(h.free(&agent), res("cpus:6;mem:1792"));
}
