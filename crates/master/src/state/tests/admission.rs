//! Admission waits for the registry (`state/admission.rs`): an agent the
//! registry must learn of is neither told `Registered` nor offered until its
//! entry is durable, and a ticket nobody waits for any more changes nothing.

use super::*;

/// Registers without making the entry durable; returns the id and effects.
fn register_pending(
    h: &mut Harness,
    conn: ConnId,
    register: agent_message::Register,
) -> (Option<AgentId>, Vec<Effect>) {
    let mut out = Vec::new();
    let id = h.master.agent_register(h.now(), conn, register, &mut out);
    check_books(&h.master);
    (id, out)
}

fn tickets(out: &[Effect]) -> Vec<AdmissionTicket> {
    crate::state::admission::asked_tickets(out)
}

fn durable(h: &mut Harness, ticket: AdmissionTicket) -> Vec<Effect> {
    let mut out = Vec::new();
    h.master.admission_durable(h.now(), ticket, &mut out);
    check_books(&h.master);
    out
}

fn registered(out: &[Effect], conn: ConnId) -> bool {
    agent_messages(out, conn)
        .iter()
        .any(|m| matches!(m, master_message::Kind::Registered(_)))
}

#[test]
fn admission_a_new_agent_is_registered_and_offered_only_once_its_entry_is_durable() {
    let mut h = Harness::new();
    let fw = h.subscribe_framework(10, "fw");
    let (id, out) = register_pending(&mut h, 1, register_msg(agent_info("a1", "cpus:2;mem:1024")));
    let id = id.expect("not refused");
    let asked = tickets(&out);
    assert_eq!(asked.len(), 1, "{out:?}");
    assert_eq!(asked[0].agent_id, id);
    assert!(
        !registered(&out, 1),
        "told Registered before durable: {out:?}"
    );
    assert!(h.master.agents.get(&id).is_none());
    assert_eq!(h.master.admissions_pending(), 1);
    assert!(h.offers_for(&fw).is_empty(), "offered before durable");

    let out = durable(&mut h, asked[0].clone());
    assert!(registered(&out, 1), "{out:?}");
    // The entry was written before admission: not again.
    assert!(super::registry::registry_writes(&out).is_empty(), "{out:?}");
    assert!(h.master.agents.contains_key(&id));
    assert_eq!(h.master.admissions_pending(), 0);
    assert_eq!(h.offers_for(&fw).len(), 1);
    // The same ticket again changes nothing.
    assert_eq!(durable(&mut h, asked[0].clone()), Vec::new());
}

#[test]
fn admission_an_agent_that_leaves_before_its_entry_is_durable_is_not_admitted() {
    let mut h = Harness::new();
    let (_, out) = register_pending(&mut h, 1, register_msg(agent_info("a1", "cpus:2;mem:1024")));
    let ticket = tickets(&out).remove(0);
    h.agent_gone(1);
    assert_eq!(h.master.admissions_pending(), 0);
    assert_eq!(durable(&mut h, ticket), Vec::new());
    assert!(h.master.agents.is_empty());
}

#[test]
fn admission_a_retry_on_a_new_session_keeps_the_write_and_ends_the_old_session() {
    // An agent with an id this master has not met (its leader failed over
    // before writing it) re-registers, and retries on a new session.
    let mut h = Harness::new();
    let mut back = register_msg(agent_info("a1", "cpus:2;mem:1024"));
    back.agent_info.as_mut().expect("info").id = AgentId::new("old-S9").to_field();
    let (id, out) = register_pending(&mut h, 1, back.clone());
    assert_eq!(id, Some(AgentId::new("old-S9")));
    let ticket = tickets(&out).remove(0);
    let (_, out) = register_pending(&mut h, 2, back);
    assert!(
        tickets(&out).is_empty(),
        "same entry, no second write: {out:?}"
    );
    assert!(out.contains(&Effect::CloseAgent { conn: 1 }), "{out:?}");
    // The old session's end, seen late, does not drop the new one.
    h.agent_gone(1);
    assert_eq!(h.master.admissions_pending(), 1);
    let out = durable(&mut h, ticket);
    assert!(registered(&out, 2) && !registered(&out, 1), "{out:?}");
    assert_eq!(h.master.agents[&AgentId::new("old-S9")].conn, Some(2));
    assert_eq!(h.master.counters.agent_reregistrations, 1);
}

#[test]
fn admission_a_retry_with_other_resources_asks_again_and_the_old_ticket_is_void() {
    let mut h = Harness::new();
    let (id, out) = register_pending(&mut h, 1, register_msg(agent_info("a1", "cpus:2;mem:1024")));
    let id = id.expect("not refused");
    let old = tickets(&out).remove(0);
    let mut bigger = register_msg(agent_info("a1", "cpus:4;mem:1024"));
    bigger.agent_info.as_mut().expect("info").id = id.to_field();
    let (_, out) = register_pending(&mut h, 2, bigger);
    let new = tickets(&out).remove(0);
    assert_ne!(old, new);
    assert_eq!(durable(&mut h, old), Vec::new());
    assert!(h.master.agents.get(&id).is_none());
    let out = durable(&mut h, new);
    assert!(registered(&out, 2), "{out:?}");
    assert_eq!(h.master.agents[&id].total, res("cpus:4;mem:1024"));
}

#[test]
fn admission_an_unreachable_agent_stays_unreachable_until_its_return_is_durable() {
    let (mut h, agent, fw) = super::health::health_cluster(true);
    h.agent_gone(1);
    h.advance(60.0);
    h.tick();
    assert!(h.master.agents[&agent].unreachable_since.is_some());
    let mut back = register_msg(agent_info("a1", "cpus:2;mem:1024"));
    back.agent_info.as_mut().expect("info").id = agent.to_field();
    back.tasks.push(pb::Task {
        task_id: Some(pb::TaskId { value: "t1".into() }),
        framework_id: fw.id.to_field(),
        name: "t1".into(),
        state: Some(pb::TaskState::TaskRunning as i32),
        resources: res("cpus:1;mem:128").to_proto(None),
        ..Default::default()
    });
    let (_, out) = register_pending(&mut h, 2, back);
    let ticket = tickets(&out).remove(0);
    assert!(!registered(&out, 2), "{out:?}");
    assert!(h.master.agents[&agent].unreachable_since.is_some());
    assert_eq!(
        h.task(&fw.id, "t1").expect("kept").state,
        pb::TaskState::TaskUnreachable
    );
    let out = durable(&mut h, ticket);
    assert!(registered(&out, 2), "{out:?}");
    assert!(h.master.agents[&agent].unreachable_since.is_none());
    assert_eq!(
        h.task(&fw.id, "t1").expect("kept").state,
        pb::TaskState::TaskRunning
    );
}

#[test]
fn admission_an_agent_the_registry_already_admits_is_registered_at_once() {
    let mut h = Harness::new();
    let entry = RegistryAgent {
        id: "old-S1".into(),
        hostname: "a1".into(),
        port: 5051,
        resources: "cpus:2;mem:1024".into(),
        state: RegistryAgentState::Admitted,
    };
    h.master
        .recover(h.now(), vec![entry], Duration::from_secs(600));
    let mut back = register_msg(agent_info("a1", "cpus:2;mem:1024"));
    back.agent_info.as_mut().expect("info").id = AgentId::new("old-S1").to_field();
    let (id, out) = register_pending(&mut h, 1, back);
    assert_eq!(id, Some(AgentId::new("old-S1")));
    assert!(tickets(&out).is_empty(), "{out:?}");
    assert!(registered(&out, 1), "{out:?}");
}

#[test]
fn admission_is_checked_again_when_durable_against_the_books_of_then() {
    // `slots` is a scalar on the waiting agent, and a range on one admitted
    // meanwhile: the second pass refuses the first.
    let mut h = Harness::new();
    let (id, out) = register_pending(
        &mut h,
        1,
        register_msg(agent_info("a1", "cpus:2;mem:1024;slots:1")),
    );
    let id = id.expect("not refused yet");
    let ticket = tickets(&out).remove(0);
    h.register_agent(2, "a2", "cpus:2;mem:1024;slots:[1-2]");
    let out = durable(&mut h, ticket);
    assert!(
        agent_messages(&out, 1)
            .iter()
            .any(|m| matches!(m, master_message::Kind::Refused(_))),
        "{out:?}"
    );
    assert!(out.contains(&Effect::CloseAgent { conn: 1 }), "{out:?}");
    assert!(h.master.agents.get(&id).is_none());
}
