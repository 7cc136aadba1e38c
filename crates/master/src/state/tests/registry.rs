//! The registry (`state/registry.rs`): entries written when an agent changes
//! state, recovery after a failover, and an agent restarted clean on the
//! same address.

use super::*;

pub(super) fn registry_writes(effects: &[Effect]) -> Vec<RegistryAgent> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Registry(entry) | Effect::RegistryAdmit { entry, .. } => Some(entry.clone()),
            _ => None,
        })
        .collect()
}

fn registry_entry(id: &str, state: RegistryAgentState) -> RegistryAgent {
    RegistryAgent {
        id: id.into(),
        hostname: "h".into(),
        port: 5051,
        resources: "cpus:2;mem:1024".into(),
        state,
    }
}

#[test]
fn registry_entries_are_written_when_an_agent_changes_state() {
    let mut h = Harness::with_default_health();
    let (id, out) = h.register(1, register_msg(agent_info("a1", "cpus:2;mem:1024")));
    let id = id.expect("registered");
    let writes = registry_writes(&out);
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].id, id.as_str());
    assert_eq!(writes[0].state, RegistryAgentState::Admitted);
    assert_eq!(writes[0].resources, "cpus:2;mem:1024");

    // A reconnect within its grace changes nothing in the registry.
    h.agent_gone(1);
    let mut again = register_msg(agent_info("a1", "cpus:2;mem:1024"));
    again.agent_info.as_mut().expect("info").id = id.to_field();
    let (_, out) = h.register(2, again.clone());
    assert!(registry_writes(&out).is_empty(), "{out:?}");

    // Unreachable, then back: both are written.
    h.agent_gone(2);
    h.advance(60.0);
    let out = h.tick();
    let writes = registry_writes(&out);
    assert_eq!(writes.len(), 1);
    assert!(matches!(
        writes[0].state,
        RegistryAgentState::Unreachable { .. }
    ));
    let (_, out) = h.register(3, again);
    let writes = registry_writes(&out);
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].state, RegistryAgentState::Admitted);
}

#[test]
fn registry_recovery_waits_for_agents_then_marks_the_missing_unreachable() {
    let mut h = Harness::with_master_id("m2");
    let fw = h.subscribe_ok(10, partition_aware(framework_info("fw")));
    h.master.recover(
        h.now(),
        vec![
            registry_entry("m1-S0", RegistryAgentState::Admitted),
            registry_entry("m1-S1", RegistryAgentState::Admitted),
            registry_entry("m1-S2", RegistryAgentState::Unreachable { since: 1.0 }),
            registry_entry("m1-S3", RegistryAgentState::Gone { since: 1.0 }),
        ],
        Duration::from_secs(600),
    );
    assert_eq!(h.master.recovering_agents(), 2);

    // While an agent may still come back, questions about its tasks get no answer.
    let a0 = AgentId::new("m1-S0");
    let a2 = AgentId::new("m1-S2");
    let out = h.call_ok(&fw, reconcile_call(&fw.id, &[("t0", Some(&a0))]));
    assert!(
        updates_to(&out, fw.conn).is_empty(),
        "silence while recovering: {out:?}"
    );
    let out = h.call_ok(&fw, reconcile_call(&fw.id, &[("t2", Some(&a2))]));
    assert_eq!(
        state_of(&updates_to(&out, fw.conn)[0]),
        pb::TaskState::TaskUnreachable
    );

    // An expected agent re-registers: no registry write needed; the question
    // kept about it is answered now (it does not run t0).
    let mut back = register_msg(agent_info("a0", "cpus:2;mem:1024"));
    back.agent_info.as_mut().expect("info").id = a0.to_field();
    let (id, out) = h.register(1, back);
    assert_eq!(id, Some(a0.clone()));
    assert!(registry_writes(&out).is_empty());
    assert_eq!(h.master.recovering_agents(), 1);
    let answers = updates_to(&out, fw.conn);
    assert_eq!(answers.len(), 1, "{out:?}");
    assert_eq!(task_id_of(&answers[0]), "t0");
    assert_eq!(state_of(&answers[0]), pb::TaskState::TaskGone);
    assert_eq!(
        reason_of(&answers[0]),
        Some(pb::task_status::Reason::Reconciliation)
    );

    // A question about the agent still away waits for the window's end.
    let a1 = AgentId::new("m1-S1");
    let out = h.call_ok(&fw, reconcile_call(&fw.id, &[("t1", Some(&a1))]));
    assert!(updates_to(&out, fw.conn).is_empty(), "{out:?}");

    // A gone agent may not come back.
    let mut gone = register_msg(agent_info("a3", "cpus:2;mem:1024"));
    gone.agent_info.as_mut().expect("info").id = AgentId::new("m1-S3").to_field();
    let (id, out) = h.register(3, gone);
    assert_eq!(id, None);
    assert!(matches!(
        &agent_messages(&out, 3)[..],
        [master_message::Kind::Refused(_)]
    ));

    // The window closes: the missing agent is unreachable, and written so;
    // the question kept about it is answered.
    h.advance(601.0);
    let out = h.tick();
    let writes = registry_writes(&out);
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].id, "m1-S1");
    assert!(matches!(
        writes[0].state,
        RegistryAgentState::Unreachable { .. }
    ));
    assert_eq!(h.master.recovering_agents(), 0);
    let answers = updates_to(&out, fw.conn);
    assert_eq!(answers.len(), 1, "{out:?}");
    assert_eq!(task_id_of(&answers[0]), "t1");
    assert_eq!(state_of(&answers[0]), pb::TaskState::TaskUnreachable);
    let out = h.call_ok(&fw, reconcile_call(&fw.id, &[("t1", Some(&a1))]));
    assert_eq!(
        state_of(&updates_to(&out, fw.conn)[0]),
        pb::TaskState::TaskUnreachable
    );
}

#[test]
fn questions_asked_while_recovering_are_answered_once_as_the_agents_come_back() {
    let mut h = Harness::with_master_id("m2");
    let mut info = framework_info("fw");
    info.id = FrameworkId::new("m1-0000").to_field();
    let fw = h.subscribe_ok(10, info.clone());
    h.master.recover(
        h.now(),
        vec![
            registry_entry("m1-S0", RegistryAgentState::Admitted),
            registry_entry("m1-S1", RegistryAgentState::Admitted),
        ],
        Duration::from_secs(600),
    );
    // Without agent ids, as a framework that lost its own books asks.
    let out = h.call_ok(&fw, reconcile_call(&fw.id, &[("t0", None), ("t9", None)]));
    assert!(updates_to(&out, fw.conn).is_empty(), "{out:?}");
    let out = h.call_ok(&fw, reconcile_call(&fw.id, &[("t0", None)]));
    assert!(updates_to(&out, fw.conn).is_empty(), "asked again: {out:?}");

    // The agent running t0 comes back: t0 is answered, once.
    let a0 = AgentId::new("m1-S0");
    let mut back = register_msg(agent_info("a0", "cpus:2;mem:1024"));
    back.agent_info.as_mut().expect("info").id = a0.to_field();
    back.tasks = vec![super::agents::reported_task(
        "t0",
        &fw.id,
        &a0,
        pb::TaskState::TaskRunning,
        "cpus:1",
    )];
    back.frameworks = vec![info];
    let (_, out) = h.register(1, back);
    let answers = updates_to(&out, fw.conn);
    assert_eq!(answers.len(), 1, "{out:?}");
    assert_eq!(task_id_of(&answers[0]), "t0");
    assert_eq!(state_of(&answers[0]), pb::TaskState::TaskRunning);
    assert_eq!(
        reason_of(&answers[0]),
        Some(pb::task_status::Reason::Reconciliation)
    );

    // The last expected agent comes back without t9: recovery is over and
    // t9 is unknown (TASK_LOST to a framework that is not partition-aware),
    // well before the window's end.
    let mut back = register_msg(agent_info("a1", "cpus:2;mem:1024"));
    back.agent_info.as_mut().expect("info").id = AgentId::new("m1-S1").to_field();
    let (_, out) = h.register(2, back);
    let answers = updates_to(&out, fw.conn);
    assert_eq!(answers.len(), 1, "{out:?}");
    assert_eq!(task_id_of(&answers[0]), "t9");
    assert_eq!(state_of(&answers[0]), pb::TaskState::TaskLost);

    // Nothing is kept to be answered twice.
    h.advance(601.0);
    let out = h.tick();
    assert!(updates_to(&out, fw.conn).is_empty(), "{out:?}");
}

#[test]
fn an_agent_restarting_clean_on_the_same_address_replaces_the_old_one() {
    let (mut h, old, fw) = health_cluster(true);
    h.agent_gone(1);
    // Same hostname and port, no id: the machine rebooted and the agent started clean.
    let (new, out) = h.register(2, register_msg(agent_info("a1", "cpus:2;mem:1024")));
    let new = new.expect("registered as a new agent");
    assert_ne!(new, old);
    let updates = updates_to(&out, fw.conn);
    assert_eq!(updates.len(), 1, "{out:?}");
    assert_eq!(task_id_of(&updates[0]), "t1");
    assert_eq!(state_of(&updates[0]), pb::TaskState::TaskGone);
    assert!(
        registry_writes(&out)
            .iter()
            .any(|w| w.id == old.as_str() && matches!(w.state, RegistryAgentState::Gone { .. }))
    );
    assert!(!h.master.agents.contains_key(&old), "the old agent is gone");
    assert!(h.task(&fw.id, "t1").is_none(), "its task is completed");
    // The old id may never come back.
    let mut stale = register_msg(agent_info("a1", "cpus:2;mem:1024"));
    stale.agent_info.as_mut().expect("info").id = old.to_field();
    let (id, out) = h.register(3, stale);
    assert_eq!(id, None);
    assert!(matches!(
        &agent_messages(&out, 3)[..],
        [master_message::Kind::Refused(_)]
    ));
    // The whole machine is offered again, once, as the new agent.
    let offers = h.offers_for(&fw);
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].agent_id, new.to_field());
    assert_eq!(offer_resources(&offers[0]), res("cpus:2;mem:1024"));
}

#[test]
fn a_clean_start_replaces_only_the_agent_away_from_that_very_address() {
    let mut h = Harness::with_default_health();
    let old = h.register_agent(1, "a1", "cpus:2;mem:1024");
    // Its session ends, and it comes back (the same id) from another host.
    h.agent_gone(1);
    let mut moved = register_msg(agent_info("a1-moved", "cpus:2;mem:1024"));
    moved.agent_info.as_mut().expect("info").id = old.to_field();
    let (id, _) = h.register(2, moved);
    assert_eq!(id.as_ref(), Some(&old));
    // A clean start on its first address while it is connected elsewhere,
    // then while it is away elsewhere: it stays.
    let (first, _) = h.register(3, register_msg(agent_info("a1", "cpus:2;mem:1024")));
    assert!(first.is_some_and(|first| first != old));
    h.agent_gone(2);
    let (second, _) = h.register(4, register_msg(agent_info("a1", "cpus:1;mem:512")));
    assert!(second.is_some_and(|second| second != old));
    assert!(
        h.master.agents.contains_key(&old),
        "the agent away elsewhere stays"
    );
    // A clean start on the address it is away from replaces it.
    let (third, _) = h.register(5, register_msg(agent_info("a1-moved", "cpus:2;mem:1024")));
    assert!(third.is_some_and(|third| third != old));
    assert!(
        !h.master.agents.contains_key(&old),
        "the agent away from here is gone"
    );
}

fn forgotten(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::RegistryForget { agent_id } => Some(agent_id.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn registry_gc_forgets_agents_too_old_then_the_oldest_beyond_the_count() {
    let mut h = Harness::with_master_id("m2");
    h.master.config.registry_gc_interval = Duration::from_secs(60);
    h.master.config.registry_max_agent_age = Duration::from_secs(1000);
    h.master.config.registry_max_agent_count = 2;
    let since = |secs: f64| WALL_EPOCH + secs;
    h.master.recover(
        h.now(),
        vec![
            registry_entry(
                "m1-S1",
                RegistryAgentState::Unreachable {
                    since: since(-2000.0),
                },
            ),
            registry_entry(
                "m1-S2",
                RegistryAgentState::Unreachable {
                    since: since(-30.0),
                },
            ),
            registry_entry(
                "m1-S3",
                RegistryAgentState::Unreachable {
                    since: since(-20.0),
                },
            ),
            registry_entry(
                "m1-S4",
                RegistryAgentState::Unreachable {
                    since: since(-10.0),
                },
            ),
            registry_entry("m1-G1", RegistryAgentState::Gone { since: since(-5.0) }),
        ],
        Duration::from_secs(600),
    );
    // Not before the interval: the deadline says when.
    assert_eq!(
        h.master.next_deadline(),
        Some(Duration::from_secs(60)),
        "the gc is the only timer"
    );
    h.advance(59.0);
    assert!(forgotten(&h.tick()).is_empty());
    h.advance(1.0);
    // S1 is too old; of the other three unreachable ones S2, the oldest, is one too many.
    let out = h.tick();
    assert_eq!(forgotten(&out), ["m1-S1", "m1-S2"]);
    assert_eq!(h.master.next_deadline(), Some(Duration::from_secs(120)));
    assert!(!h.master.is_known_unreachable(&AgentId::new("m1-S1")));
    assert!(h.master.is_known_unreachable(&AgentId::new("m1-S3")));
    assert!(h.master.is_gone(&AgentId::new("m1-G1")));

    // Once the gone agent is old enough, it is forgotten too, and may
    // register again (as an agent this master has not met, as in Mesos).
    h.advance(1000.0);
    let out = h.tick();
    assert_eq!(forgotten(&out), ["m1-S3", "m1-S4", "m1-G1"]);
    let mut back = register_msg(agent_info("g1", "cpus:2;mem:1024"));
    back.agent_info.as_mut().expect("info").id = AgentId::new("m1-G1").to_field();
    let (id, out) = h.register(1, back);
    assert_eq!(id, Some(AgentId::new("m1-G1")));
    assert_eq!(registry_writes(&out)[0].state, RegistryAgentState::Admitted);
}

#[test]
fn registry_gc_forgets_an_unreachable_agent_and_its_tasks_only_after_its_removal() {
    let (mut h, agent, fw) = super::health::health_cluster(true);
    h.master.config.registry_gc_interval = Duration::from_secs(10);
    h.master.config.registry_max_agent_age = Duration::from_secs(100);
    h.agent_gone(1);
    // Unreachable after the pings, past its removal timeout later.
    h.advance(20.0);
    h.tick();
    assert!(h.master.is_known_unreachable(&agent));
    assert_eq!(
        h.task(&fw.id, "t1").map(|t| t.state),
        Some(pb::TaskState::TaskUnreachable)
    );
    // Old enough by age, but its removal timeout has not passed.
    h.master.config.registry_max_agent_age = Duration::from_secs(1);
    h.advance(10.0);
    assert!(forgotten(&h.tick()).is_empty());
    h.advance(100.0);
    let out = h.tick();
    assert_eq!(forgotten(&out), [agent.to_string()]);
    assert!(!h.master.agents.contains_key(&agent));
    assert!(
        h.task(&fw.id, "t1").is_none(),
        "its unreachable task is dropped"
    );
    check_books(&h.master);

    // It comes back: a new agent to this master, with what it runs.
    let mut back = register_msg(agent_info("a1", "cpus:2;mem:1024"));
    back.agent_info.as_mut().expect("info").id = agent.to_field();
    let (id, _) = h.register(2, back);
    assert_eq!(id, Some(agent));
}

#[test]
fn removed_framework_ids_are_bounded() {
    let mut h = Harness::new();
    let first = h.subscribe_framework(1, "first");
    h.master
        .remove_framework(&first.id, h.now(), &mut Vec::new());
    assert!(h.master.removed_frameworks.contains(&first.id));
    for n in 0..super::super::MAX_REMOVED_FRAMEWORK_IDS {
        let id = FrameworkId::new(format!("gone-{n}"));
        h.master.removed_frameworks.insert(id.clone());
        h.master.removed_order.push_back(id);
    }
    let second = h.subscribe_framework(2, "second");
    h.master
        .remove_framework(&second.id, h.now(), &mut Vec::new());
    assert_eq!(
        h.master.removed_frameworks.len(),
        super::super::MAX_REMOVED_FRAMEWORK_IDS
    );
    assert!(
        !h.master.removed_frameworks.contains(&first.id),
        "the oldest is forgotten"
    );
    assert!(h.master.removed_frameworks.contains(&second.id));
}
