//! Agent health (`state/health.rs`): pings, unreachable agents, and their
//! return.

use super::*;

fn pings(effects: &[Effect], conn: ConnId) -> Vec<u64> {
    agent_messages(effects, conn)
        .into_iter()
        .filter_map(|m| match m {
            master_message::Kind::Ping(p) => Some(p.seq),
            _ => None,
        })
        .collect()
}

fn pong(seq: u64) -> agent_message::Kind {
    agent_message::Kind::Pong(agent_message::Pong { seq })
}

/// An agent with one running task of a framework, under default health settings.
pub(super) fn health_cluster(aware: bool) -> (Harness, AgentId, Fw) {
    let mut h = Harness::with_default_health();
    let agent = h.register_agent(1, "a1", "cpus:2;mem:1024");
    let info = if aware {
        partition_aware(framework_info("fw"))
    } else {
        framework_info("fw")
    };
    let fw = h.subscribe_ok(10, info);
    let offer = h.one_offer(&fw);
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
    (h, agent, fw)
}

#[test]
fn health_answered_pings_keep_an_agent_and_missed_ones_make_it_unreachable() {
    let (mut h, agent, fw) = health_cluster(true);
    let period = h.master.config().agent_ping_timeout.as_secs_f64();
    // An agent that answers is never marked, however long it lives.
    for _ in 0..10 {
        h.advance(period);
        let out = h.tick();
        let seqs = pings(&out, 1);
        assert_eq!(seqs.len(), 1, "one ping per period: {out:?}");
        h.agent_says(1, pong(seqs[0]));
    }
    assert!(h.master.agents[&agent].unreachable_since.is_none());
    // A stale pong does not count.
    h.advance(period);
    let seq = pings(&h.tick(), 1)[0];
    h.agent_says(1, pong(seq - 1));
    // Silent from here: after max_agent_ping_timeouts periods it is unreachable.
    let max = h.master.config().max_agent_ping_timeouts;
    let mut marked_after = None;
    for n in 1..=max + 1 {
        h.advance(period);
        let out = h.tick();
        if h.master.agents[&agent].unreachable_since.is_some() {
            marked_after = Some(n);
            assert!(
                out.contains(&Effect::CloseAgent { conn: 1 }),
                "its session is closed"
            );
            let updates = updates_to(&out, fw.conn);
            assert_eq!(updates.len(), 1);
            assert_eq!(state_of(&updates[0]), pb::TaskState::TaskUnreachable);
            assert_eq!(updates[0].uuid, None, "master-made update");
            break;
        }
    }
    assert_eq!(
        marked_after,
        Some(max),
        "marked after exactly {max} silent periods"
    );
    assert!(
        f64::from(max + 1) * period <= 10.0,
        "the defaults detect a dead agent within 10 s, even one that froze just after a ping"
    );
    assert_eq!(
        h.task(&fw.id, "t1").map(|t| t.state),
        Some(pb::TaskState::TaskUnreachable)
    );
}

#[test]
fn health_unreachable_agent_is_never_offered_and_comes_back_with_its_tasks() {
    let (mut h, agent, fw) = health_cluster(false);
    // An outstanding offer of the rest of the agent, to see it rescinded.
    let offer = h.one_offer(&fw);
    let out = h.agent_gone(1);
    assert!(
        updates_to(&out, fw.conn).is_empty(),
        "a broken session alone changes no task"
    );
    assert_eq!(rescinds_to(&out, fw.conn), vec![offer_id(&offer).value]);
    let period = h.master.config().agent_ping_timeout.as_secs_f64();
    let max = f64::from(h.master.config().max_agent_ping_timeouts);
    h.advance(period * max - 0.5);
    assert!(
        updates_to(&h.tick(), fw.conn).is_empty(),
        "still within its grace"
    );
    h.advance(1.0);
    let out = h.tick();
    assert!(h.master.agents[&agent].unreachable_since.is_some());
    assert!(
        updates_to(&out, fw.conn).is_empty(),
        "not partition-aware: told nothing before the removal timeout"
    );
    assert!(
        h.allocate().is_empty(),
        "nothing of the agent is offered meanwhile"
    );
    assert!(h.master.offers.is_empty());

    // It comes back, still running the task: the task is live again.
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
    let (_, out) = h.register(2, register);
    assert!(
        updates_to(&out, fw.conn).is_empty(),
        "it was told nothing, so nothing is taken back: {out:?}"
    );
    assert_eq!(
        h.task(&fw.id, "t1").map(|t| t.state),
        Some(pb::TaskState::TaskRunning)
    );
    assert_eq!(h.used(&agent), res("cpus:1;mem:128"));
    assert!(h.master.agents[&agent].unreachable_since.is_none());
    // Only the free part is offered: the task's resources are not offered twice.
    let offers = offers_to(&h.allocate(), fw.conn);
    assert_eq!(offers.len(), 1);
    assert_eq!(offer_resources(&offers[0]), res("cpus:1;mem:896"));
}

#[test]
fn health_unreachable_agent_returning_without_a_task_loses_it() {
    let (mut h, agent, fw) = health_cluster(true);
    h.agent_gone(1);
    h.advance(60.0);
    h.tick();
    let mut register = register_msg(agent_info("a1", "cpus:2;mem:1024"));
    register.agent_info.as_mut().expect("info").id = agent.to_field();
    let (_, out) = h.register(2, register);
    let updates = updates_to(&out, fw.conn);
    assert_eq!(updates.len(), 1);
    assert_eq!(state_of(&updates[0]), pb::TaskState::TaskGone);
    assert_eq!(h.used(&agent), Resources::new());
    assert_eq!(offer_resources(&h.one_offer(&fw)), res("cpus:2;mem:1024"));
}
