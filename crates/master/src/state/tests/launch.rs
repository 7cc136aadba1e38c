//! ACCEPT (`state/launch.rs`): the whole path of a task from registration to
//! its acknowledged end, the default refusal filter, validation of offers and
//! tasks (an ACCEPT is all-or-nothing), offers of two roles, and offers
//! rescinded after the offer timeout.

use super::*;

#[test]
fn happy_path_register_subscribe_offer_launch_finish_ack() {
    let mut h = Harness::new();

    // The agent registers and gets `<master id>-S0`.
    let (agent_id, out) = h.register(1, register_msg(agent_info("a1", "cpus:2;mem:1024")));
    let agent_id = agent_id.expect("registered");
    assert_eq!(agent_id.as_str(), "m1-S0");
    match &agent_messages(&out, 1)[..] {
        [master_message::Kind::Registered(r)] => {
            assert_eq!(r.agent_id, agent_id.to_field());
            assert_eq!(
                r.master_info.as_ref().map(|m| m.id.as_str()),
                Some(MASTER_ID)
            );
        }
        other => panic!("expected Registered, got {other:?}"),
    }
    assert!(h.master.needs_allocation());
    assert_eq!(h.master.agents[&agent_id].total, res("cpus:2;mem:1024"));
    assert!(h.used(&agent_id).is_empty());

    // The framework subscribes and gets SUBSCRIBED with its stream id.
    let (fw_id, out) = h.subscribe(10, framework_info("fw"));
    let fw_id = fw_id.expect("subscribed");
    assert!(fw_id.as_str().starts_with("m1-0000-"), "{fw_id}");
    let subscribed = events_of_type(&out, 10, EventType::Subscribed);
    assert_eq!(subscribed.len(), 1);
    let body = subscribed[0].subscribed.as_ref().expect("body");
    assert_eq!(body.stream_id, "stream-10");
    assert_eq!(body.framework_id, fw_id.to_field());
    assert_eq!(body.heartbeat_interval_seconds, Some(15.0));
    let fw = Fw {
        id: fw_id.clone(),
        conn: 10,
        stream: stream_of(10),
    };
    assert!(h.master.frameworks[&fw_id].active());

    // One allocation: one OFFERS event with one offer for the whole agent.
    let out = h.allocate();
    assert!(!h.master.needs_allocation());
    let offers_events = events_of_type(&out, 10, EventType::Offers);
    assert_eq!(offers_events.len(), 1, "one OFFERS event: {out:?}");
    let offers = offers_to(&out, 10);
    assert_eq!(offers.len(), 1);
    let offer = offers[0].clone();
    assert_eq!(offer.agent_id, agent_id.to_field());
    assert_eq!(offer.framework_id, fw_id.to_field());
    assert_eq!(offer.hostname, "a1");
    assert_eq!(offer_resources(&offer), res("cpus:2;mem:1024"));
    assert_eq!(h.master.offers.len(), 1);
    assert!(
        h.master
            .offers
            .contains_key(&OfferId::new(offer_id(&offer).value))
    );
    assert_eq!(h.master.counters.offers_sent, 1);
    // Nothing more to allocate while it is outstanding.
    assert!(offers_to(&h.allocate(), 10).is_empty());

    // ACCEPT with one LAUNCH: RunTask to the agent's conn, task STAGING.
    let out = h.call_ok(
        &fw,
        launch_call(
            &fw_id,
            &[offer_id(&offer)],
            vec![command_task("t1", &agent_id, "cpus:1;mem:128")],
            Some(0.0),
        ),
    );
    let runs = run_tasks(&out);
    assert_eq!(runs.len(), 1);
    let (conn, run) = &runs[0];
    assert_eq!(*conn, 1);
    assert_eq!(
        run.task
            .as_ref()
            .and_then(|t| t.task_id.clone())
            .map(|t| t.value),
        Some("t1".into())
    );
    assert_eq!(
        run.framework.as_ref().and_then(|f| f.id.clone()),
        fw_id.to_field()
    );
    assert!(h.master.offers.is_empty(), "accepted offer is used up");
    assert!(h.master.frameworks[&fw_id].offers.is_empty());
    let task = h.task(&fw_id, "t1").expect("task tracked");
    assert_eq!(task.state, pb::TaskState::TaskStaging);
    assert_eq!(task.agent_id, agent_id);
    assert_eq!(task.resources, res("cpus:1;mem:128"));
    assert_eq!(h.used(&agent_id), res("cpus:1;mem:128"));
    assert_eq!(h.master.counters.tasks_launched, 1);
    assert_eq!(h.master.counters.offers_accepted, 1);

    // The unused rest of the offer went back and is offered again.
    let rest = h.one_offer(&fw);
    assert_eq!(offer_resources(&rest), res("cpus:1;mem:896"));
    h.call_ok(&fw, decline_call(&fw_id, &[offer_id(&rest)], Some(0.0)));
    assert!(h.master.offers.is_empty());

    // TASK_RUNNING with a uuid: forwarded as UPDATE with the uuid.
    let out = h.agent_says(
        1,
        status_update(&fw_id, "t1", pb::TaskState::TaskRunning, Some(uuid(1))),
    );
    let updates = updates_to(&out, 10);
    assert_eq!(updates.len(), 1);
    assert_eq!(state_of(&updates[0]), pb::TaskState::TaskRunning);
    assert_eq!(updates[0].uuid, Some(uuid(1)));
    assert_eq!(
        updates[0].agent_id,
        agent_id.to_field(),
        "master stamps the agent id"
    );
    assert_eq!(
        h.task(&fw_id, "t1").map(|t| t.state),
        Some(pb::TaskState::TaskRunning)
    );

    // ACKNOWLEDGE of RUNNING: StatusUpdateAck to the agent; the task stays live.
    let out = h.call_ok(&fw, ack_call(&fw_id, &agent_id, "t1", uuid(1)));
    match &agent_messages(&out, 1)[..] {
        [master_message::Kind::StatusUpdateAck(ack)] => {
            assert_eq!(ack.uuid, uuid(1));
            assert_eq!(ack.task_id.as_ref().map(|t| t.value.as_str()), Some("t1"));
            assert_eq!(ack.framework_id, fw_id.to_field());
        }
        other => panic!("expected a StatusUpdateAck, got {other:?}"),
    }
    assert!(h.task(&fw_id, "t1").is_some());

    // TASK_FINISHED: forwarded; resources released at once, the task waits for its ack.
    let out = h.agent_says(
        1,
        status_update(&fw_id, "t1", pb::TaskState::TaskFinished, Some(uuid(2))),
    );
    let updates = updates_to(&out, 10);
    assert_eq!(updates.len(), 1);
    assert_eq!(state_of(&updates[0]), pb::TaskState::TaskFinished);
    assert_eq!(updates[0].uuid, Some(uuid(2)));
    let task = h.task(&fw_id, "t1").expect("still live until acknowledged");
    assert_eq!(task.state, pb::TaskState::TaskFinished);
    assert!(task.resources_released);
    assert!(h.used(&agent_id).is_empty());
    assert!(h.master.frameworks[&fw_id].completed_tasks.is_empty());

    let out = h.call_ok(&fw, ack_call(&fw_id, &agent_id, "t1", uuid(2)));
    assert!(matches!(
        &agent_messages(&out, 1)[..],
        [master_message::Kind::StatusUpdateAck(ack)] if ack.uuid == uuid(2)
    ));
    let framework = &h.master.frameworks[&fw_id];
    assert!(framework.tasks.is_empty());
    assert_eq!(framework.completed_tasks.len(), 1);
    assert_eq!(framework.completed_tasks[0].id.as_str(), "t1");
    assert_eq!(
        framework.completed_tasks[0].state,
        pb::TaskState::TaskFinished
    );
    assert_eq!(
        h.master.counters.task_transitions.get("TASK_FINISHED"),
        Some(&1)
    );

    // The whole agent is offered again.
    let again = h.one_offer(&fw);
    assert_eq!(offer_resources(&again), res("cpus:2;mem:1024"));
    assert_ne!(
        offer_id(&again),
        offer_id(&offer),
        "offer ids are never reused"
    );
}

#[test]
fn accept_without_filters_refuses_the_rest_for_five_seconds() {
    let (mut h, agent, fw, offer) = one_agent_one_offer();
    let call = launch_call(
        &fw.id,
        &[offer_id(&offer)],
        vec![command_task("t1", &agent, "cpus:1;mem:128")],
        None,
    );
    h.call_ok(&fw, call);
    assert_eq!(h.free(&agent), res("cpus:1;mem:896"));
    h.advance(4.0);
    assert!(
        h.offers_for(&fw).is_empty(),
        "default refusal of 5 s on the rest"
    );
    h.advance(2.0);
    assert_eq!(offer_resources(&h.one_offer(&fw)), res("cpus:1;mem:896"));
}

#[test]
fn terminal_update_for_staging_task_frees_resources_and_master_ids_are_sequential_or_random() {
    let mut h = Harness::new();
    let a0 = h.register_agent(1, "a1", "cpus:1;mem:256");
    let a1 = h.register_agent(2, "a2", "cpus:1;mem:256");
    assert_eq!((a0.as_str(), a1.as_str()), ("m1-S0", "m1-S1"));
    let f0 = h.subscribe_framework(10, "f0");
    let f1 = h.subscribe_framework(11, "f1");
    // Framework ids: the master's id, a sequence number, and 64 random bits
    // (one framework's id says nothing about another's).
    let random_part = |id: &FrameworkId, prefix: &str| {
        let rest = id.as_str().strip_prefix(prefix).expect("prefix");
        assert_eq!(rest.len(), 16, "{id}");
        assert!(rest.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        rest.to_string()
    };
    let (r0, r1) = (
        random_part(&f0.id, "m1-0000-"),
        random_part(&f1.id, "m1-0001-"),
    );
    assert_ne!(r0, r1);
    // Another seed, other ids; the same seed, the same ids (deterministic).
    let mut config = MasterConfig::new(pb::MasterInfo {
        id: "m1".into(),
        ..Default::default()
    });
    config.framework_id_seed = [7; 32];
    let mut other = Harness::with_config(config.clone());
    let g0 = other.subscribe_framework(10, "f0");
    assert_ne!(random_part(&g0.id, "m1-0000-"), r0);
    let mut again = Harness::with_config(config);
    assert_eq!(again.subscribe_framework(10, "f0").id, g0.id);
    // Two agents, two frameworks: the fair allocator gives each one agent.
    let out = h.allocate();
    let (o0, o1) = (offers_to(&out, 10), offers_to(&out, 11));
    assert_eq!((o0.len(), o1.len()), (1, 1), "{out:?}");
    assert_ne!(o0[0].agent_id, o1[0].agent_id);
    let agent = AgentId::new(o0[0].agent_id.clone().expect("agent").value);
    launch_one(
        &mut h,
        &f0,
        &o0[0],
        command_task("t", &agent, "cpus:1;mem:256"),
    );
    let conn = h.master.agents[&agent].conn.expect("connected");
    let out = h.agent_says(
        conn,
        status_update(&f0.id, "t", pb::TaskState::TaskFailed, Some(uuid(9))),
    );
    assert_eq!(updates_to(&out, 10).len(), 1);
    assert!(h.used(&agent).is_empty());
    assert_eq!(h.free(&agent), res("cpus:1;mem:256"));
}

#[test]
fn accept_of_unknown_offer_is_refused_with_task_lost() {
    let (mut h, agent, fw, offer) = one_agent_one_offer();
    let bogus = pb::OfferId {
        value: "m1-O999".into(),
    };
    assert_accept_refused(
        &mut h,
        &fw,
        launch_call(
            &fw.id,
            &[bogus],
            vec![command_task("t1", &agent, "cpus:1")],
            None,
        ),
        ErrKind::NotFound,
        "m1-O999",
        pb::TaskState::TaskLost,
        pb::task_status::Reason::InvalidOffers,
        &["t1"],
    );
    // The real offer is still good.
    launch_one(&mut h, &fw, &offer, command_task("t1", &agent, "cpus:1"));
}

#[test]
fn accept_of_unknown_offer_by_partition_aware_framework_reports_task_dropped() {
    let mut h = Harness::new();
    let agent = h.register_agent(1, "a1", "cpus:2;mem:1024");
    let fw = h.subscribe_ok(10, partition_aware(framework_info("pa")));
    let _offer = h.one_offer(&fw);
    assert_accept_refused(
        &mut h,
        &fw,
        launch_call(
            &fw.id,
            &[pb::OfferId {
                value: "nope".into(),
            }],
            vec![command_task("t1", &agent, "cpus:1")],
            None,
        ),
        ErrKind::NotFound,
        "no longer valid",
        pb::TaskState::TaskDropped,
        pb::task_status::Reason::InvalidOffers,
        &["t1"],
    );
}

#[test]
fn accept_of_another_frameworks_offer_is_refused() {
    let mut h = Harness::new();
    h.register_agent(1, "a1", "cpus:2;mem:1024");
    h.register_agent(2, "a2", "cpus:2;mem:1024");
    let f = h.subscribe_framework(10, "f");
    let g = h.subscribe_framework(11, "g");
    let out = h.allocate();
    let (fo, go) = (offers_to(&out, 10), offers_to(&out, 11));
    assert_eq!(
        (fo.len(), go.len()),
        (1, 1),
        "each framework gets an agent: {out:?}"
    );
    let g_agent = AgentId::new(go[0].agent_id.clone().expect("agent").value);
    let out = assert_accept_refused(
        &mut h,
        &f,
        launch_call(
            &f.id,
            &[offer_id(&go[0])],
            vec![command_task("t1", &g_agent, "cpus:1")],
            None,
        ),
        ErrKind::PermissionDenied,
        "not made to this framework",
        pb::TaskState::TaskLost,
        pb::task_status::Reason::InvalidOffers,
        &["t1"],
    );
    assert!(events_to(&out, 11).is_empty(), "the owner hears nothing");
    // G can still use its offer.
    launch_one(&mut h, &g, &go[0], command_task("t1", &g_agent, "cpus:1"));
}

#[test]
fn accepting_an_offer_twice_is_refused() {
    let (mut h, agent, fw, offer) = one_agent_one_offer();
    launch_one(
        &mut h,
        &fw,
        &offer,
        command_task("t1", &agent, "cpus:1;mem:128"),
    );
    assert_accept_refused(
        &mut h,
        &fw,
        launch_call(
            &fw.id,
            &[offer_id(&offer)],
            vec![command_task("t2", &agent, "cpus:1")],
            None,
        ),
        ErrKind::NotFound,
        "no longer valid",
        pb::TaskState::TaskLost,
        pb::task_status::Reason::InvalidOffers,
        &["t2"],
    );
    assert!(h.task(&fw.id, "t1").is_some());
    assert!(h.task(&fw.id, "t2").is_none());
}

#[test]
fn declined_offer_cannot_be_accepted_or_declined_again() {
    let (mut h, agent, fw, offer) = one_agent_one_offer();
    h.call_ok(&fw, decline_call(&fw.id, &[offer_id(&offer)], Some(0.0)));
    assert_eq!(h.master.counters.offers_declined, 1);
    assert_accept_refused(
        &mut h,
        &fw,
        launch_call(
            &fw.id,
            &[offer_id(&offer)],
            vec![command_task("t1", &agent, "cpus:1")],
            None,
        ),
        ErrKind::NotFound,
        "no longer valid",
        pb::TaskState::TaskLost,
        pb::task_status::Reason::InvalidOffers,
        &["t1"],
    );
    let (result, _) = h.call(&fw, decline_call(&fw.id, &[offer_id(&offer)], None));
    assert_error(result, ErrKind::NotFound, "no longer valid");
    let (result, _) = h.call(&fw, decline_call(&fw.id, &[], None));
    assert_error(result, ErrKind::InvalidArgument, "no offer ids");
}

#[test]
fn duplicate_offer_id_in_one_accept_is_refused() {
    let (mut h, agent, fw, offer) = one_agent_one_offer();
    assert_accept_refused(
        &mut h,
        &fw,
        launch_call(
            &fw.id,
            &[offer_id(&offer), offer_id(&offer)],
            vec![command_task("t1", &agent, "cpus:1")],
            None,
        ),
        ErrKind::InvalidArgument,
        "duplicate offer",
        pb::TaskState::TaskLost,
        pb::task_status::Reason::InvalidOffers,
        &["t1"],
    );
}

#[test]
fn offers_on_two_agents_cannot_be_accepted_together() {
    let mut h = Harness::new();
    let a1 = h.register_agent(1, "a1", "cpus:2;mem:1024");
    h.register_agent(2, "a2", "cpus:2;mem:1024");
    let fw = h.subscribe_framework(10, "fw");
    let offers = h.offers_for(&fw);
    assert_eq!(offers.len(), 2, "one offer per agent");
    let ids: Vec<pb::OfferId> = offers.iter().map(offer_id).collect();
    assert_accept_refused(
        &mut h,
        &fw,
        launch_call(&fw.id, &ids, vec![command_task("t1", &a1, "cpus:3")], None),
        ErrKind::InvalidArgument,
        "same agent",
        pb::TaskState::TaskLost,
        pb::task_status::Reason::InvalidOffers,
        &["t1"],
    );
}

#[test]
fn two_offers_on_one_agent_pool_their_resources() {
    let (mut h, agent, fw, offer) = one_agent_one_offer();
    // Use part of the agent, then get the rest as a second offer; finish the
    // task so its resources come back as a third one, and accept both together.
    launch_one(
        &mut h,
        &fw,
        &offer,
        command_task("t1", &agent, "cpus:1;mem:512"),
    );
    let rest = h.one_offer(&fw);
    assert_eq!(offer_resources(&rest), res("cpus:1;mem:512"));
    h.agent_says(
        1,
        status_update(&fw.id, "t1", pb::TaskState::TaskFinished, Some(uuid(1))),
    );
    let freed = h.one_offer(&fw);
    assert_eq!(offer_resources(&freed), res("cpus:1;mem:512"));
    // More than either offer alone, but not more than both.
    let out = h.call_ok(
        &fw,
        launch_call(
            &fw.id,
            &[offer_id(&rest), offer_id(&freed)],
            vec![command_task("big", &agent, "cpus:2;mem:1024")],
            Some(0.0),
        ),
    );
    assert_eq!(run_tasks(&out).len(), 1);
    assert!(h.master.offers.is_empty());
    assert_eq!(h.used(&agent), res("cpus:2;mem:1024"));
    assert_eq!(h.master.counters.offers_accepted, 3);
}

#[test]
fn launching_more_than_offered_is_refused() {
    let (mut h, agent, fw, offer) = one_agent_one_offer();
    assert_accept_refused(
        &mut h,
        &fw,
        launch_call(
            &fw.id,
            &[offer_id(&offer)],
            vec![command_task("t1", &agent, "cpus:3;mem:128")],
            None,
        ),
        ErrKind::InvalidArgument,
        "only cpus:2;mem:1024 remain",
        pb::TaskState::TaskError,
        pb::task_status::Reason::TaskInvalid,
        &["t1"],
    );
    // Two tasks that each fit but not together: all or nothing.
    assert_accept_refused(
        &mut h,
        &fw,
        launch_call(
            &fw.id,
            &[offer_id(&offer)],
            vec![
                command_task("t1", &agent, "cpus:1.5;mem:128"),
                command_task("t2", &agent, "cpus:1;mem:128"),
            ],
            None,
        ),
        ErrKind::InvalidArgument,
        "task t2 asks for",
        pb::TaskState::TaskError,
        pb::task_status::Reason::TaskInvalid,
        &["t1", "t2"],
    );
    // Resources the agent does not have at all.
    assert_accept_refused(
        &mut h,
        &fw,
        launch_call(
            &fw.id,
            &[offer_id(&offer)],
            vec![command_task("t1", &agent, "gpus:1")],
            None,
        ),
        ErrKind::InvalidArgument,
        "asks for gpus:1",
        pb::TaskState::TaskError,
        pb::task_status::Reason::TaskInvalid,
        &["t1"],
    );
    launch_one(
        &mut h,
        &fw,
        &offer,
        command_task("t1", &agent, "cpus:2;mem:1024"),
    );
}

#[test]
fn duplicate_task_ids_in_one_accept_are_refused() {
    let (mut h, agent, fw, offer) = one_agent_one_offer();
    // In one LAUNCH, and across two LAUNCH operations of one ACCEPT.
    assert_accept_refused(
        &mut h,
        &fw,
        launch_call(
            &fw.id,
            &[offer_id(&offer)],
            vec![
                command_task("t1", &agent, "cpus:0.5"),
                command_task("t1", &agent, "cpus:0.5"),
            ],
            None,
        ),
        ErrKind::InvalidArgument,
        "appears twice",
        pb::TaskState::TaskError,
        pb::task_status::Reason::TaskInvalid,
        &["t1", "t1"],
    );
    let mut call = launch_call(
        &fw.id,
        &[offer_id(&offer)],
        vec![command_task("t1", &agent, "cpus:0.5")],
        None,
    );
    let accept = call.accept.as_mut().expect("accept");
    let second = accept.operations[0].clone();
    accept.operations.push(second);
    assert_accept_refused(
        &mut h,
        &fw,
        call,
        ErrKind::InvalidArgument,
        "appears twice",
        pb::TaskState::TaskError,
        pb::task_status::Reason::TaskInvalid,
        &["t1", "t1"],
    );
}

#[test]
fn task_id_of_a_live_task_cannot_be_reused() {
    let (mut h, agent, fw, offer) = one_agent_one_offer();
    launch_one(
        &mut h,
        &fw,
        &offer,
        command_task("t1", &agent, "cpus:1;mem:128"),
    );
    let rest = h.one_offer(&fw);
    assert_accept_refused(
        &mut h,
        &fw,
        launch_call(
            &fw.id,
            &[offer_id(&rest)],
            vec![command_task("t1", &agent, "cpus:1")],
            None,
        ),
        ErrKind::InvalidArgument,
        "already used by a live task",
        pb::TaskState::TaskError,
        pb::task_status::Reason::TaskInvalid,
        // The live t1 is not reported: it runs on (a retried ACCEPT must not drop it).
        &[],
    );
    assert_eq!(
        h.task(&fw.id, "t1").map(|t| t.resources.clone()),
        Some(res("cpus:1;mem:128"))
    );
    // Once the task is terminal and acknowledged, its id may be used again.
    h.agent_says(
        1,
        status_update(&fw.id, "t1", pb::TaskState::TaskFinished, Some(uuid(1))),
    );
    h.call_ok(&fw, ack_call(&fw.id, &agent, "t1", uuid(1)));
    let out = h.call_ok(
        &fw,
        launch_call(
            &fw.id,
            &[offer_id(&rest)],
            vec![command_task("t1", &agent, "cpus:1")],
            Some(0.0),
        ),
    );
    assert_eq!(run_tasks(&out).len(), 1);
}

#[test]
fn task_without_resources_is_refused() {
    let (mut h, agent, fw, offer) = one_agent_one_offer();
    let mut task = command_task("t1", &agent, "cpus:1");
    task.resources.clear();
    assert_accept_refused(
        &mut h,
        &fw,
        launch_call(&fw.id, &[offer_id(&offer)], vec![task], None),
        ErrKind::InvalidArgument,
        "uses no resources",
        pb::TaskState::TaskError,
        pb::task_status::Reason::TaskInvalid,
        &["t1"],
    );
}

#[test]
fn task_with_invalid_id_is_refused_and_other_tasks_are_reported() {
    let (mut h, agent, fw, offer) = one_agent_one_offer();
    let out = assert_accept_refused(
        &mut h,
        &fw,
        launch_call(
            &fw.id,
            &[offer_id(&offer)],
            vec![
                command_task("ok-1", &agent, "cpus:0.5"),
                command_task("../x", &agent, "cpus:0.5"),
            ],
            None,
        ),
        ErrKind::InvalidArgument,
        "task id '../x' is invalid",
        pb::TaskState::TaskError,
        pb::task_status::Reason::TaskInvalid,
        // No update can name the invalid id itself.
        &["ok-1"],
    );
    assert!(
        updates_to(&out, fw.conn)
            .iter()
            .all(|s| task_id_of(s) != "../x")
    );
    for bad in ["", ".", "a/b"] {
        let (result, out) = h.call(
            &fw,
            launch_call(
                &fw.id,
                &[offer_id(&offer)],
                vec![command_task(bad, &agent, "cpus:1")],
                None,
            ),
        );
        assert_error(result, ErrKind::InvalidArgument, "is invalid");
        assert!(run_tasks(&out).is_empty());
        assert!(updates_to(&out, fw.conn).is_empty());
    }
}

#[test]
fn task_without_command_is_refused() {
    let (mut h, agent, fw, offer) = one_agent_one_offer();
    let mut no_command = command_task("t1", &agent, "cpus:1");
    no_command.command = None;
    assert_accept_refused(
        &mut h,
        &fw,
        launch_call(&fw.id, &[offer_id(&offer)], vec![no_command], None),
        ErrKind::InvalidArgument,
        "has no command",
        pb::TaskState::TaskError,
        pb::task_status::Reason::TaskInvalid,
        &["t1"],
    );
    let mut blank = command_task("t2", &agent, "cpus:1");
    blank.command = Some(pb::CommandInfo {
        value: Some("   ".into()),
        ..Default::default()
    });
    assert_accept_refused(
        &mut h,
        &fw,
        launch_call(&fw.id, &[offer_id(&offer)], vec![blank], None),
        ErrKind::InvalidArgument,
        "has no command",
        pb::TaskState::TaskError,
        pb::task_status::Reason::TaskInvalid,
        &["t2"],
    );
}

#[test]
fn task_naming_the_wrong_agent_is_refused() {
    let (mut h, _agent, fw, offer) = one_agent_one_offer();
    assert_accept_refused(
        &mut h,
        &fw,
        launch_call(
            &fw.id,
            &[offer_id(&offer)],
            vec![command_task("t1", &AgentId::new("m1-S7"), "cpus:1")],
            None,
        ),
        ErrKind::InvalidArgument,
        "names agent 'm1-S7'",
        pb::TaskState::TaskError,
        pb::task_status::Reason::TaskInvalid,
        &["t1"],
    );
}

#[test]
fn unnamed_task_invalid_executor_id_and_unsupported_operation_are_refused() {
    let (mut h, agent, fw, offer) = one_agent_one_offer();
    let mut unnamed = command_task("t1", &agent, "cpus:1");
    unnamed.name = " ".into();
    assert_accept_refused(
        &mut h,
        &fw,
        launch_call(&fw.id, &[offer_id(&offer)], vec![unnamed], None),
        ErrKind::InvalidArgument,
        "has no name",
        pb::TaskState::TaskError,
        pb::task_status::Reason::TaskInvalid,
        &["t1"],
    );
    let mut custom = command_task("t2", &agent, "cpus:1");
    custom.executor = Some(pb::ExecutorInfo::default());
    assert_accept_refused(
        &mut h,
        &fw,
        launch_call(&fw.id, &[offer_id(&offer)], vec![custom], None),
        ErrKind::InvalidArgument,
        "invalid executor id",
        pb::TaskState::TaskError,
        pb::task_status::Reason::TaskInvalid,
        &["t2"],
    );
    // An unsupported operation type.
    let mut call = launch_call(
        &fw.id,
        &[offer_id(&offer)],
        vec![command_task("t3", &agent, "cpus:1")],
        None,
    );
    call.accept.as_mut().expect("accept").operations[0].r#type =
        Some(pb::offer::operation::Type::Create as i32);
    assert_accept_refused(
        &mut h,
        &fw,
        call,
        ErrKind::InvalidArgument,
        "not supported",
        pb::TaskState::TaskError,
        pb::task_status::Reason::TaskInvalid,
        &["t3"],
    );
}

#[test]
fn accept_with_no_operations_gives_the_offer_back() {
    let (mut h, agent, fw, offer) = one_agent_one_offer();
    let mut call = launch_call(&fw.id, &[offer_id(&offer)], Vec::new(), Some(0.0));
    call.accept.as_mut().expect("accept").operations.clear();
    let out = h.call_ok(&fw, call);
    assert!(run_tasks(&out).is_empty());
    assert!(h.master.offers.is_empty());
    assert_eq!(h.free(&agent), res("cpus:2;mem:1024"));
    assert_eq!(offer_resources(&h.one_offer(&fw)), res("cpus:2;mem:1024"));
}

#[test]
fn offers_for_two_roles_cannot_be_accepted_together() {
    let mut h = Harness::new();
    let agent = h.register_agent(1, "a1", "cpus:1;cpus(b):1;mem:512");
    let mut info = framework_info("multi");
    info.roles = vec!["a".into(), "b".into()];
    let fw = h.subscribe_ok(10, info);
    let offers = h.offers_for(&fw);
    assert_eq!(offers.len(), 2, "one offer per role: {offers:?}");
    let roles: Vec<Option<String>> = offers
        .iter()
        .map(|o| o.allocation_info.as_ref().and_then(|a| a.role.clone()))
        .collect();
    assert_eq!(roles, vec![Some("a".to_string()), Some("b".to_string())]);
    assert_eq!(offer_resources(&offers[0]), res("cpus:1;mem:512"));
    assert_eq!(offer_resources(&offers[1]), res("cpus(b):1"));
    let ids: Vec<pb::OfferId> = offers.iter().map(offer_id).collect();
    assert_accept_refused(
        &mut h,
        &fw,
        launch_call(
            &fw.id,
            &ids,
            vec![command_task("t1", &agent, "cpus:1")],
            None,
        ),
        ErrKind::InvalidArgument,
        "same role",
        pb::TaskState::TaskLost,
        pb::task_status::Reason::InvalidOffers,
        &["t1"],
    );
    // Reserved resources can be used through the offer for their role only.
    assert_accept_refused(
        &mut h,
        &fw,
        launch_call(
            &fw.id,
            &[ids[0].clone()],
            vec![command_task("t1", &agent, "cpus(b):1")],
            None,
        ),
        ErrKind::InvalidArgument,
        "asks for cpus(b):1",
        pb::TaskState::TaskError,
        pb::task_status::Reason::TaskInvalid,
        &["t1"],
    );
    let out = h.call_ok(
        &fw,
        launch_call(
            &fw.id,
            &[ids[1].clone()],
            vec![command_task("t1", &agent, "cpus(b):1")],
            Some(0.0),
        ),
    );
    assert_eq!(run_tasks(&out).len(), 1);
    assert_eq!(h.used(&agent), res("cpus(b):1"));
}

#[test]
fn offers_not_answered_within_the_offer_timeout_are_rescinded() {
    let mut h = Harness::new();
    h.master.config.offer_timeout = Some(Duration::from_secs(10));
    let agent = h.register_agent(1, "a1", "cpus:2;mem:1024");
    let fw = h.subscribe_framework(10, "fw");
    let offer = h.one_offer(&fw);
    h.advance(9.0);
    assert!(rescinds_to(&h.tick(), fw.conn).is_empty(), "not yet");
    h.advance(1.0);
    let out = h.tick();
    assert_eq!(rescinds_to(&out, fw.conn), vec![offer_id(&offer).value]);
    assert!(h.master.offers.is_empty());
    assert_eq!(
        h.free(&agent),
        res("cpus:2;mem:1024"),
        "the resources are back"
    );
    // A rescinded offer cannot be accepted.
    let (result, _) = h.call(
        &fw,
        launch_call(
            &fw.id,
            &[offer_id(&offer)],
            vec![command_task("t1", &agent, "cpus:1")],
            None,
        ),
    );
    assert_error(result, ErrKind::NotFound, "no longer valid");
    // Without a timeout (the default) offers stay.
    let mut h = Harness::new();
    h.register_agent(1, "a1", "cpus:2;mem:1024");
    let fw = h.subscribe_framework(10, "fw");
    h.one_offer(&fw);
    h.advance(3600.0);
    assert!(rescinds_to(&h.tick(), fw.conn).is_empty());
}
