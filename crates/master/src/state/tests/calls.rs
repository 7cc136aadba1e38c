//! Framework calls other than SUBSCRIBE and ACCEPT (`state/calls.rs`): who
//! may call, DECLINE and its refusal filters, REVIVE and SUPPRESS, KILL,
//! MESSAGE and reconciliation.

use super::*;

#[test]
fn calls_from_a_wrong_stream_are_refused() {
    let (mut h, _agent, fw, offer) = one_agent_one_offer();
    let before = snapshot(&h);
    let impostor = Fw {
        stream: "stream-999".into(),
        ..fw.clone()
    };
    let (result, out) = h.call(&impostor, decline_call(&fw.id, &[offer_id(&offer)], None));
    assert_error(result, ErrKind::InvalidArgument, "stream id");
    assert!(out.is_empty());
    assert_unchanged(&h, &before);
}

#[test]
fn calls_from_an_unknown_or_invalid_framework_are_refused() {
    let (mut h, _agent, fw, offer) = one_agent_one_offer();
    let before = snapshot(&h);
    let stranger = Fw {
        id: FrameworkId::new("m1-0042"),
        ..fw.clone()
    };
    let (result, out) = h.call(
        &stranger,
        decline_call(&stranger.id, &[offer_id(&offer)], None),
    );
    assert_error(result, ErrKind::NotFound, "m1-0042");
    assert!(out.is_empty());
    let (result, _) = h.call(
        &fw,
        decline_call(&FrameworkId::new("../etc"), &[offer_id(&offer)], None),
    );
    assert_error(result, ErrKind::InvalidArgument, "framework id is invalid");
    let mut no_id = decline_call(&fw.id, &[offer_id(&offer)], None);
    no_id.framework_id = None;
    let (result, _) = h.call(&fw, no_id);
    assert_error(result, ErrKind::InvalidArgument, "framework_id");
    assert_unchanged(&h, &before);
}

#[test]
fn calls_after_the_framework_disconnected_are_refused() {
    let (mut h, _agent, fw, offer) = one_agent_one_offer();
    h.framework_gone(fw.conn);
    let (result, out) = h.call(&fw, decline_call(&fw.id, &[offer_id(&offer)], None));
    assert_error(result, ErrKind::PermissionDenied, "not subscribed");
    assert!(out.is_empty());
}

#[test]
fn calls_after_teardown_are_refused() {
    let (mut h, _agent, fw, _offer) = one_agent_one_offer();
    h.call_ok(&fw, base_call(&fw.id, CallType::Teardown));
    let (result, _) = h.call(&fw, reconcile_call(&fw.id, &[]));
    assert_error(result, ErrKind::FailedPrecondition, "removed");
}

#[test]
fn acknowledge_is_checked() {
    let (mut h, agent, fw, offer) = one_agent_one_offer();
    launch_one(&mut h, &fw, &offer, command_task("t1", &agent, "cpus:1"));
    h.agent_says(
        1,
        status_update(&fw.id, "t1", pb::TaskState::TaskRunning, Some(uuid(1))),
    );
    for bad in [Vec::new(), vec![1, 2, 3], vec![0; 17]] {
        let (result, out) = h.call(&fw, ack_call(&fw.id, &agent, "t1", bad));
        assert_error(result, ErrKind::InvalidArgument, "16 bytes");
        assert!(out.is_empty());
    }
    let (result, out) = h.call(&fw, ack_call(&fw.id, &agent, "nope", uuid(1)));
    assert_error(result, ErrKind::NotFound, "nope");
    assert!(out.is_empty());
    let (result, out) = h.call(&fw, ack_call(&fw.id, &AgentId::new("m1-S9"), "t1", uuid(1)));
    assert_error(result, ErrKind::InvalidArgument, "does not run on agent");
    assert!(out.is_empty());
    assert_eq!(h.master.counters.invalid_calls, 5);
    h.call_ok(&fw, ack_call(&fw.id, &agent, "t1", uuid(1)));
}

#[test]
fn acknowledgements_in_one_call_each_stand_alone() {
    let (mut h, agent, fw, offer) = one_agent_one_offer();
    launch_one(&mut h, &fw, &offer, command_task("t1", &agent, "cpus:1"));
    h.agent_says(
        1,
        status_update(&fw.id, "t1", pb::TaskState::TaskRunning, Some(uuid(1))),
    );
    let acks_of = |call: sched::Call| call.acknowledge.expect("an acknowledgement");

    // One refused among three: the other two reach the agent, in order.
    let mut batch = ack_call(&fw.id, &agent, "t1", uuid(1));
    batch.acknowledgements = vec![
        acks_of(ack_call(&fw.id, &agent, "nope", uuid(2))),
        acks_of(ack_call(&fw.id, &agent, "t1", uuid(1))),
    ];
    let (result, out) = h.call(&fw, batch);
    assert_error(result, ErrKind::NotFound, "1 of 3 acknowledgements refused");
    let acked: Vec<_> = agent_messages(&out, 1)
        .into_iter()
        .map(|kind| match kind {
            master_message::Kind::StatusUpdateAck(ack) => ack.task_id.map(|t| t.value),
            other => panic!("not an acknowledgement: {other:?}"),
        })
        .collect();
    assert_eq!(acked, vec![Some("t1".to_owned()), Some("t1".to_owned())]);

    // None at all, or too many: refused whole, nothing sent.
    let (result, out) = h.call(&fw, base_call(&fw.id, CallType::Acknowledge));
    assert_error(result, ErrKind::InvalidArgument, "'acknowledge'");
    assert!(out.is_empty());
    let mut flood = base_call(&fw.id, CallType::Acknowledge);
    flood.acknowledgements = vec![acks_of(ack_call(&fw.id, &agent, "t1", uuid(1))); 4097];
    let (result, out) = h.call(&fw, flood);
    assert_error(result, ErrKind::InvalidArgument, "at most 4096");
    assert!(out.is_empty());
}

#[test]
fn unsupported_and_malformed_calls_are_refused() {
    let (mut h, _agent, fw, _offer) = one_agent_one_offer();
    let (result, _) = h.call(&fw, base_call(&fw.id, CallType::Subscribe));
    assert_error(result, ErrKind::InvalidArgument, "SUBSCRIBE");
    let (result, _) = h.call(&fw, base_call(&fw.id, CallType::Shutdown));
    assert_error(result, ErrKind::InvalidArgument, "shutdown");
    let mut unknown = base_call(&fw.id, CallType::Unknown);
    unknown.r#type = 77;
    let (result, _) = h.call(&fw, unknown);
    assert_error(result, ErrKind::InvalidArgument, "unknown call type 77");
    let (result, _) = h.call(&fw, base_call(&fw.id, CallType::Accept));
    assert_error(result, ErrKind::InvalidArgument, "'accept'");
    let (result, _) = h.call(&fw, base_call(&fw.id, CallType::Kill));
    assert_error(result, ErrKind::InvalidArgument, "'kill'");
    let mut revive = base_call(&fw.id, CallType::Revive);
    revive.revive = Some(sched::call::Revive {
        roles: vec!["ops".into()],
    });
    let (result, _) = h.call(&fw, revive);
    assert_error(result, ErrKind::InvalidArgument, "role 'ops'");
}

#[test]
fn subscribe_is_validated() {
    let mut h = Harness::new();
    let cases: Vec<(pb::FrameworkInfo, &str)> = vec![
        (
            pb::FrameworkInfo {
                name: " ".into(),
                ..framework_info("x")
            },
            "name",
        ),
        (
            pb::FrameworkInfo {
                user: String::new(),
                ..framework_info("x")
            },
            "user",
        ),
        (
            pb::FrameworkInfo {
                role: Some("a b".into()),
                ..framework_info("x")
            },
            "not a valid role",
        ),
        (
            pb::FrameworkInfo {
                roles: vec!["a".into(), "a".into()],
                ..framework_info("x")
            },
            "given twice",
        ),
        (
            pb::FrameworkInfo {
                failover_timeout: Some(-1.0),
                ..framework_info("x")
            },
            "failover_timeout",
        ),
        (
            pb::FrameworkInfo {
                id: Some(pb::FrameworkId {
                    value: "a/b".into(),
                }),
                ..framework_info("x")
            },
            "framework id is invalid",
        ),
    ];
    for (info, needle) in cases {
        let (result, out) = h.subscribe(10, info);
        let error = result.expect_err("refused");
        assert!(
            matches!(&error, CallError::InvalidArgument(m) if m.contains(needle)),
            "{error:?}"
        );
        assert!(out.is_empty());
    }
    assert!(h.master.frameworks.is_empty());
    // Beyond what a 64-bit nanosecond duration holds (Mesos' bound).
    let (result, _) = h.subscribe(
        10,
        pb::FrameworkInfo {
            failover_timeout: Some(1e10),
            ..framework_info("x")
        },
    );
    assert!(matches!(result, Err(CallError::InvalidArgument(m)) if m.contains("failover_timeout")));
    // "Never give up on me": Spark's dispatcher sends Integer.MAX_VALUE
    // seconds, which Mesos accepts.
    let (result, _) = h.subscribe(
        10,
        pb::FrameworkInfo {
            failover_timeout: Some(f64::from(i32::MAX)),
            ..framework_info("x")
        },
    );
    result.expect("a 68-year failover timeout is accepted");
    // Not a SUBSCRIBE call at all.
    let mut out = Vec::new();
    let call = base_call(&FrameworkId::new("x"), CallType::Teardown);
    let result = h.master.subscribe(h.now(), 10, "s".into(), call, &mut out);
    assert!(matches!(result, Err(CallError::InvalidArgument(_))));
}

#[test]
fn decline_installs_a_refusal_filter() {
    let (mut h, agent, fw, offer) = one_agent_one_offer();
    h.call_ok(&fw, decline_call(&fw.id, &[offer_id(&offer)], Some(5.0)));
    assert!(h.master.offers.is_empty());
    assert!(h.master.needs_allocation());
    assert_eq!(h.free(&agent), res("cpus:2;mem:1024"), "resources are back");
    h.advance(4.0);
    let out = h.allocate();
    assert!(
        offers_to(&out, fw.conn).is_empty(),
        "filtered at +4 s: {out:?}"
    );
    assert!(h.master.offers.is_empty());
    h.advance(2.0);
    let offer = h.one_offer(&fw);
    assert_eq!(offer_resources(&offer), res("cpus:2;mem:1024"));
    assert_eq!(offer.agent_id, agent.to_field());
}

#[test]
fn decline_filter_is_per_agent_and_per_framework() {
    let mut h = Harness::new();
    let a1 = h.register_agent(1, "a1", "cpus:2;mem:1024");
    let f = h.subscribe_framework(10, "f");
    let offer = h.one_offer(&f);
    h.call_ok(&f, decline_call(&f.id, &[offer_id(&offer)], Some(5.0)));
    // Another framework gets the agent meanwhile; a new agent is offered to f.
    let _g = h.subscribe_framework(11, "g");
    let a2 = h.register_agent(2, "a2", "cpus:2;mem:1024");
    h.advance(1.0);
    let out = h.allocate();
    let (fo, go) = (offers_to(&out, 10), offers_to(&out, 11));
    assert_eq!(fo.len(), 1, "{out:?}");
    assert_eq!(fo[0].agent_id, a2.to_field());
    assert_eq!(go.len(), 1, "{out:?}");
    assert_eq!(go[0].agent_id, a1.to_field());
}

#[test]
fn decline_with_zero_refuse_seconds_installs_no_filter() {
    let (mut h, _agent, fw, offer) = one_agent_one_offer();
    h.call_ok(&fw, decline_call(&fw.id, &[offer_id(&offer)], Some(0.0)));
    let again = h.one_offer(&fw);
    assert_eq!(offer_resources(&again), res("cpus:2;mem:1024"));
}

#[test]
fn decline_without_filters_refuses_for_the_default_five_seconds() {
    let (mut h, _agent, fw, offer) = one_agent_one_offer();
    h.call_ok(&fw, decline_call(&fw.id, &[offer_id(&offer)], None));
    h.advance(4.9);
    assert!(h.offers_for(&fw).is_empty());
    h.advance(0.2);
    assert_eq!(h.offers_for(&fw).len(), 1);
}

#[test]
fn revive_clears_filters_and_suppress_stops_offers() {
    let (mut h, _agent, fw, offer) = one_agent_one_offer();
    h.call_ok(&fw, decline_call(&fw.id, &[offer_id(&offer)], Some(100.0)));
    assert!(h.offers_for(&fw).is_empty());
    h.call_ok(&fw, base_call(&fw.id, CallType::Revive));
    assert!(h.master.needs_allocation());
    let offer = h.one_offer(&fw);
    h.call_ok(&fw, base_call(&fw.id, CallType::Suppress));
    h.call_ok(&fw, decline_call(&fw.id, &[offer_id(&offer)], Some(0.0)));
    assert!(h.offers_for(&fw).is_empty(), "suppressed");
    h.call_ok(&fw, base_call(&fw.id, CallType::Revive));
    assert_eq!(h.offers_for(&fw).len(), 1);
}

#[test]
fn kill_of_a_running_task_asks_the_agent() {
    let (mut h, agent, fw, offer) = one_agent_one_offer();
    launch_one(&mut h, &fw, &offer, command_task("t1", &agent, "cpus:1"));
    h.agent_says(
        1,
        status_update(&fw.id, "t1", pb::TaskState::TaskRunning, Some(uuid(1))),
    );
    let out = h.call_ok(&fw, kill_call(&fw.id, "t1"));
    match &agent_messages(&out, 1)[..] {
        [master_message::Kind::KillTask(kill)] => {
            assert_eq!(kill.task_id.as_ref().map(|t| t.value.as_str()), Some("t1"));
            assert_eq!(kill.framework_id, fw.id.to_field());
        }
        other => panic!("expected KillTask, got {other:?}"),
    }
    assert!(updates_to(&out, fw.conn).is_empty());
    // The master waits for the agent to say it was killed.
    assert_eq!(
        h.task(&fw.id, "t1").map(|t| t.state),
        Some(pb::TaskState::TaskRunning)
    );
    let out = h.agent_says(
        1,
        status_update(&fw.id, "t1", pb::TaskState::TaskKilled, Some(uuid(2))),
    );
    assert_eq!(updates_to(&out, fw.conn).len(), 1);
    assert!(h.used(&agent).is_empty());
    // Killing it again is a no-op: it is terminal.
    assert!(h.call_ok(&fw, kill_call(&fw.id, "t1")).is_empty());
}

#[test]
fn kill_of_an_unknown_task_reports_it_lost() {
    let (mut h, _agent, fw, _offer) = one_agent_one_offer();
    let out = h.call_ok(&fw, kill_call(&fw.id, "ghost"));
    let updates = updates_to(&out, fw.conn);
    assert_eq!(updates.len(), 1);
    assert_eq!(task_id_of(&updates[0]), "ghost");
    assert_eq!(state_of(&updates[0]), pb::TaskState::TaskLost);
    // Answered as an explicit reconciliation of that task, as Mesos does.
    assert_eq!(
        reason_of(&updates[0]),
        Some(pb::task_status::Reason::Reconciliation)
    );
    assert_eq!(updates[0].uuid, None);
    assert!(agent_messages(&out, 1).is_empty());
    let (result, _) = h.call(&fw, kill_call(&fw.id, "a/b"));
    assert_error(result, ErrKind::InvalidArgument, "task id is invalid");
}

#[test]
fn kill_of_a_task_on_a_disconnected_agent_sends_nothing() {
    let (mut h, agent, fw, offer) = one_agent_one_offer();
    launch_one(&mut h, &fw, &offer, command_task("t1", &agent, "cpus:1"));
    h.agent_gone(1);
    assert!(h.call_ok(&fw, kill_call(&fw.id, "t1")).is_empty());
}

#[test]
fn framework_messages_reach_the_agent() {
    let (mut h, agent, fw, _offer) = one_agent_one_offer();
    let mut call = base_call(&fw.id, CallType::Message);
    call.message = Some(sched::call::Message {
        agent_id: agent.to_field(),
        executor_id: Some(pb::ExecutorId { value: "e".into() }),
        data: b"hi".to_vec(),
    });
    let out = h.call_ok(&fw, call.clone());
    assert!(
        matches!(&agent_messages(&out, 1)[..], [master_message::Kind::FrameworkMessage(m)] if m.data == b"hi")
    );
    call.message.as_mut().expect("message").agent_id = Some(pb::AgentId {
        value: "m1-S5".into(),
    });
    let (result, _) = h.call(&fw, call);
    assert_error(result, ErrKind::NotFound, "m1-S5");
    // And executor messages reach the framework.
    let out = h.agent_says(
        1,
        agent_message::Kind::ExecutorMessage(agent_message::ExecutorMessage {
            framework_id: fw.id.to_field(),
            executor_id: None,
            data: b"yo".to_vec(),
        }),
    );
    let events = events_of_type(&out, fw.conn, EventType::Message);
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].message.as_ref().map(|m| m.agent_id.clone()),
        Some(agent.to_field())
    );
}

#[test]
fn implicit_reconciliation_reports_every_known_task() {
    let (mut h, agent, fw, offer) = one_agent_one_offer();
    let call = launch_call(
        &fw.id,
        &[offer_id(&offer)],
        vec![
            command_task("a", &agent, "cpus:0.5"),
            command_task("b", &agent, "cpus:0.5"),
        ],
        Some(0.0),
    );
    h.call_ok(&fw, call);
    h.agent_says(
        1,
        status_update(&fw.id, "b", pb::TaskState::TaskRunning, Some(uuid(1))),
    );
    h.advance(3.0);
    let out = h.call_ok(&fw, reconcile_call(&fw.id, &[]));
    let updates = updates_to(&out, fw.conn);
    assert_eq!(updates.len(), 2);
    assert_eq!(events_to(&out, fw.conn).len(), 2);
    let got: Vec<(&str, pb::TaskState)> = updates
        .iter()
        .map(|s| (task_id_of(s), state_of(s)))
        .collect();
    assert_eq!(
        got,
        vec![
            ("a", pb::TaskState::TaskStaging),
            ("b", pb::TaskState::TaskRunning)
        ]
    );
    for status in &updates {
        assert_eq!(
            reason_of(status),
            Some(pb::task_status::Reason::Reconciliation)
        );
        assert_eq!(status.uuid, None);
        assert_eq!(status.agent_id, agent.to_field());
        assert_eq!(status.timestamp, Some(WALL_EPOCH + 3.0));
    }
    // Nothing changed.
    assert_eq!(
        h.task(&fw.id, "a").map(|t| t.state),
        Some(pb::TaskState::TaskStaging)
    );
}

#[test]
fn explicit_reconciliation() {
    let (mut h, agent, fw, offer) = one_agent_one_offer();
    launch_one(&mut h, &fw, &offer, command_task("a", &agent, "cpus:1"));
    let out = h.call_ok(
        &fw,
        reconcile_call(
            &fw.id,
            &[("ghost", Some(&agent)), ("a", None), ("ghost2", None)],
        ),
    );
    let updates = updates_to(&out, fw.conn);
    let got: Vec<(&str, pb::TaskState)> = updates
        .iter()
        .map(|s| (task_id_of(s), state_of(s)))
        .collect();
    assert_eq!(
        got,
        vec![
            ("ghost", pb::TaskState::TaskLost),
            ("a", pb::TaskState::TaskStaging),
            ("ghost2", pb::TaskState::TaskLost)
        ]
    );
    assert!(
        updates
            .iter()
            .all(|s| s.uuid.is_none()
                && reason_of(s) == Some(pb::task_status::Reason::Reconciliation))
    );
    // A completed task is still known.
    h.agent_says(
        1,
        status_update(&fw.id, "a", pb::TaskState::TaskFailed, Some(uuid(1))),
    );
    h.call_ok(&fw, ack_call(&fw.id, &agent, "a", uuid(1)));
    let out = h.call_ok(&fw, reconcile_call(&fw.id, &[("a", None)]));
    let updates = updates_to(&out, fw.conn);
    assert_eq!(updates.len(), 1);
    assert_eq!(state_of(&updates[0]), pb::TaskState::TaskFailed);
    // Implicit reconciliation covers live tasks only.
    assert!(h.call_ok(&fw, reconcile_call(&fw.id, &[])).is_empty());
    let (result, _) = h.call(&fw, reconcile_call(&fw.id, &[("../x", None)]));
    assert_error(result, ErrKind::InvalidArgument, "task id is invalid");
}

#[test]
fn explicit_reconciliation_for_partition_aware_frameworks() {
    let mut h = Harness::new();
    let agent = h.register_agent(1, "a1", "cpus:1");
    let fw = h.subscribe_ok(10, partition_aware(framework_info("pa")));
    let out = h.call_ok(
        &fw,
        reconcile_call(
            &fw.id,
            &[
                ("x", Some(&agent)),
                ("y", Some(&AgentId::new("m1-S9"))),
                ("z", None),
            ],
        ),
    );
    let got: Vec<(String, pb::TaskState)> = updates_to(&out, fw.conn)
        .iter()
        .map(|s| (task_id_of(s).to_string(), state_of(s)))
        .collect();
    assert_eq!(
        got,
        vec![
            ("x".to_string(), pb::TaskState::TaskGone),
            ("y".to_string(), pb::TaskState::TaskUnknown),
            ("z".to_string(), pb::TaskState::TaskUnknown)
        ]
    );
}

#[test]
fn decline_with_one_bad_offer_declines_nothing() {
    let (mut h, _agent, fw, offer) = one_agent_one_offer();
    let before = snapshot(&h);
    let (result, out) = h.call(
        &fw,
        decline_call(
            &fw.id,
            &[
                offer_id(&offer),
                pb::OfferId {
                    value: "gone".into(),
                },
            ],
            Some(0.0),
        ),
    );
    assert_error(result, ErrKind::NotFound, "gone");
    assert!(out.is_empty());
    assert_unchanged(&h, &before);
    assert_eq!(h.master.counters.offers_declined, 0);
}

#[test]
fn decline_with_a_negative_or_nan_refusal_uses_the_default() {
    for refuse in [-1.0, f64::NAN] {
        let (mut h, _agent, fw, offer) = one_agent_one_offer();
        h.call_ok(&fw, decline_call(&fw.id, &[offer_id(&offer)], Some(refuse)));
        h.advance(4.0);
        assert!(h.offers_for(&fw).is_empty(), "refuse {refuse}");
        h.advance(1.5);
        assert_eq!(h.offers_for(&fw).len(), 1, "refuse {refuse}");
    }
}
