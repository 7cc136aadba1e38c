//! The simulated agent against a scripted master: a seeded random run with
//! lost acknowledgements, duplicates, reconnections and failovers, and the
//! single rules one at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::*;

fn info(n: usize) -> pb::AgentInfo {
    pb::AgentInfo {
        hostname: format!("sim-{n}"),
        resources: agora_core::Resources::parse("cpus:8;mem:16384")
            .expect("valid")
            .to_proto(None),
        ..Default::default()
    }
}

fn at(ms: u64) -> Now {
    Now {
        monotonic: Duration::from_millis(ms),
        wall: ms as f64 / 1000.0,
    }
}

fn registered(agent_id: &str, master: &str, epoch: Option<u64>) -> master_message::Kind {
    master_message::Kind::Registered(master_message::Registered {
        agent_id: Some(pb::AgentId {
            value: agent_id.into(),
        }),
        master_info: Some(pb::MasterInfo {
            id: master.into(),
            epoch,
            ..Default::default()
        }),
    })
}

fn run_task(framework: &str, task: &str, labels: &[(&str, &str)]) -> master_message::Kind {
    master_message::Kind::RunTask(master_message::RunTask {
        framework: Some(pb::FrameworkInfo {
            name: "fw".into(),
            id: Some(pb::FrameworkId {
                value: framework.into(),
            }),
            ..Default::default()
        }),
        task: Some(pb::TaskInfo {
            name: task.into(),
            task_id: Some(pb::TaskId { value: task.into() }),
            labels: Some(pb::Labels {
                labels: labels
                    .iter()
                    .map(|(k, v)| pb::Label {
                        key: (*k).into(),
                        value: Some((*v).into()),
                    })
                    .collect(),
            }),
            ..Default::default()
        }),
    })
}

/// The status updates among `effects`: (task, state, uuid).
fn updates(effects: &[Effect]) -> Vec<(String, pb::TaskState, Vec<u8>)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send(AgentMessage {
                kind: Some(agent_message::Kind::StatusUpdate(u)),
            }) => {
                let status = u.status.as_ref()?;
                Some((
                    status.task_id.as_ref()?.value.clone(),
                    pb::TaskState::try_from(status.state?).ok()?,
                    status.uuid.clone()?,
                ))
            }
            _ => None,
        })
        .collect()
}

fn ack(framework: &str, task: &str, uuid: Vec<u8>) -> master_message::Kind {
    master_message::Kind::StatusUpdateAck(master_message::StatusUpdateAck {
        framework_id: Some(pb::FrameworkId {
            value: framework.into(),
        }),
        task_id: Some(pb::TaskId { value: task.into() }),
        uuid,
    })
}

/// What the scripted master saw of one task.
#[derive(Default)]
struct Seen {
    /// Distinct updates in the order they first arrived.
    order: Vec<(pb::TaskState, Vec<u8>)>,
    /// The update in flight (the latest one received, not yet acked).
    in_flight: Option<Vec<u8>>,
    acked: BTreeSet<Vec<u8>>,
}

/// A seeded run: tasks launched with random run times, acknowledgements
/// lost or duplicated, sessions dropped and masters failing over with a
/// higher epoch. Then everything is delivered: each task was reported
/// STARTING, RUNNING, FINISHED in that order with distinct uuids, a new
/// update of a task never arrived before the previous one was acked, every
/// re-registration listed exactly the tasks still on the books, and every
/// task ended FINISHED once.
#[test]
fn a_seeded_run_with_lost_acks_and_failovers_delivers_every_update_in_order() {
    for seed in 0..16u64 {
        let mut rng = SmallRng::seed_from_u64(seed);
        let timing = Timing {
            task_duration: Duration::from_millis(50),
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_millis(800),
        };
        let mut agent = SimAgent::new(info(1), timing, seed);
        let mut seen: BTreeMap<String, Seen> = BTreeMap::new();
        let mut epoch = 1;
        let mut now = 0u64;
        let mut launched = 0usize;
        let mut out = Vec::new();
        let first = agent.connected();
        assert!(matches!(
            first.kind,
            Some(agent_message::Kind::Register(ref r)) if r.agent_info.as_ref().is_some_and(|i| i.id.is_none())
        ));
        agent.on_master(at(now), registered("a1", "m1", Some(epoch)), &mut out);

        let record = |out: &mut Vec<Effect>, seen: &mut BTreeMap<String, Seen>| {
            for (task, state, uuid) in updates(out) {
                let entry = seen.entry(task.clone()).or_default();
                if let Some(flying) = &entry.in_flight {
                    assert!(
                        *flying == uuid || entry.acked.contains(flying),
                        "seed {seed}: {task} sent a new update before the one in flight was acked"
                    );
                }
                if !entry.order.iter().any(|(_, u)| *u == uuid) {
                    entry.order.push((state, uuid.clone()));
                }
                entry.in_flight = Some(uuid);
            }
            out.clear();
        };
        record(&mut out, &mut seen);

        for step in 0..2_000 {
            match rng.random_range(0..100) {
                0..30 if matches!(agent.session(), Session::Registered { .. }) => {
                    let duration = rng.random_range(0..200u64).to_string();
                    let task = format!("t{launched}");
                    launched += 1;
                    let labels: &[(&str, &str)] = if rng.random_bool(0.3) {
                        &[]
                    } else {
                        &[(DURATION_LABEL, duration.as_str())]
                    };
                    agent.on_master(at(now), run_task("f1", &task, labels), &mut out);
                }
                0..70 => {
                    // Ack a random in-flight update, maybe twice; sometimes lost.
                    let flying: Vec<(String, Vec<u8>)> = seen
                        .iter()
                        .filter_map(|(t, s)| Some((t.clone(), s.in_flight.clone()?)))
                        .filter(|(t, u)| !seen[t].acked.contains(u))
                        .collect();
                    if flying.is_empty() || !matches!(agent.session(), Session::Registered { .. }) {
                        continue;
                    }
                    let (task, uuid) = flying[rng.random_range(0..flying.len())].clone();
                    if rng.random_bool(0.2) {
                        continue; // lost on the way
                    }
                    seen.get_mut(&task)
                        .expect("seen")
                        .acked
                        .insert(uuid.clone());
                    agent.on_master(at(now), ack("f1", &task, uuid.clone()), &mut out);
                    if rng.random_bool(0.1) {
                        agent.on_master(at(now), ack("f1", &task, uuid), &mut out);
                    }
                }
                70..95 => {
                    now += rng.random_range(1..120);
                    agent.on_tick(at(now), &mut out);
                }
                _ => {
                    // The session drops; sometimes another master leads.
                    agent.disconnected();
                    agent.on_tick(at(now), &mut out);
                    assert!(
                        updates(&out).is_empty(),
                        "seed {seed} step {step}: sent while away"
                    );
                    let register = agent.connected();
                    let Some(agent_message::Kind::Register(register)) = register.kind else {
                        panic!("a session starts with Register");
                    };
                    let listed: BTreeSet<String> = register
                        .tasks
                        .iter()
                        .map(|t| t.task_id.clone().unwrap_or_default().value)
                        .collect();
                    let live: BTreeSet<String> = agent
                        .live_tasks()
                        .map(|t| t.task_id.as_str().to_string())
                        .collect();
                    assert_eq!(
                        listed, live,
                        "seed {seed}: registration lists the live tasks"
                    );
                    assert_eq!(
                        register.agent_info.and_then(|i| i.id).map(|i| i.value),
                        Some("a1".into()),
                        "seed {seed}: re-registers under its id"
                    );
                    if rng.random_bool(0.5) {
                        epoch += 1;
                    }
                    let master = format!("m{epoch}");
                    agent.on_master(at(now), registered("a1", &master, Some(epoch)), &mut out);
                }
            }
            record(&mut out, &mut seen);
        }

        // Deliver everything: ack whatever is in flight and let time pass.
        for _ in 0..10_000 {
            if agent.live_tasks().next().is_none() {
                break;
            }
            let flying: Vec<(String, Vec<u8>)> = seen
                .iter()
                .filter_map(|(t, s)| Some((t.clone(), s.in_flight.clone()?)))
                .collect();
            for (task, uuid) in flying {
                seen.get_mut(&task)
                    .expect("seen")
                    .acked
                    .insert(uuid.clone());
                agent.on_master(at(now), ack("f1", &task, uuid), &mut out);
            }
            now += 100;
            agent.on_tick(at(now), &mut out);
            record(&mut out, &mut seen);
        }
        assert_eq!(
            agent.live_tasks().count(),
            0,
            "seed {seed}: every task retired"
        );
        assert_eq!(agent.ended().len(), launched, "seed {seed}");
        assert!(
            launched > 100,
            "seed {seed}: the run launched {launched} tasks"
        );
        for ended in agent.ended() {
            assert_eq!(ended.state, pb::TaskState::TaskFinished, "seed {seed}");
            let states: Vec<pb::TaskState> = seen[ended.task_id.as_str()]
                .order
                .iter()
                .map(|(s, _)| *s)
                .collect();
            assert_eq!(
                states,
                [
                    pb::TaskState::TaskStarting,
                    pb::TaskState::TaskRunning,
                    pb::TaskState::TaskFinished
                ],
                "seed {seed}: {}",
                ended.task_id
            );
        }
        let distinct: BTreeSet<&TaskId> = agent.ended().iter().map(|e| &e.task_id).collect();
        assert_eq!(
            distinct.len(),
            launched,
            "seed {seed}: each task ended once"
        );
    }
}

#[test]
fn a_master_of_an_older_term_is_refused() {
    let mut agent = SimAgent::new(info(1), Timing::default(), 1);
    let mut out = Vec::new();
    agent.connected();
    agent.on_master(at(0), registered("a1", "m5", Some(5)), &mut out);
    assert_eq!(
        agent.session(),
        &Session::Registered {
            master_id: "m5".into(),
            epoch: Some(5)
        }
    );
    agent.disconnected();
    agent.connected();
    agent.on_master(at(1), registered("a1", "m4", Some(4)), &mut out);
    assert_eq!(out, vec![Effect::Fenced]);
    assert_eq!(agent.session(), &Session::Disconnected);
}

#[test]
fn a_held_task_runs_until_released_and_a_killed_one_ends_killed() {
    let mut agent = SimAgent::new(info(1), Timing::default(), 1);
    let mut out = Vec::new();
    agent.connected();
    agent.on_master(at(0), registered("a1", "m1", None), &mut out);
    agent.on_master(at(0), run_task("f", "held", &[(HOLD_LABEL, "")]), &mut out);
    agent.on_master(
        at(0),
        run_task("f", "doomed", &[(HOLD_LABEL, "")]),
        &mut out,
    );
    // Ack everything that comes, until nothing more does.
    let drain = |agent: &mut SimAgent, out: &mut Vec<Effect>| {
        for _ in 0..100 {
            let sent = updates(out);
            out.clear();
            if sent.is_empty() {
                return;
            }
            for (task, _, uuid) in sent {
                agent.on_master(at(1), ack("f", &task, uuid), out);
            }
        }
        panic!("updates never stopped");
    };
    drain(&mut agent, &mut out);
    let states: Vec<_> = agent.live_tasks().map(|t| t.state).collect();
    assert_eq!(states, [pb::TaskState::TaskRunning; 2]);
    assert_eq!(agent.next_deadline(), None, "a held task has no end time");

    agent.on_master(
        at(2),
        master_message::Kind::KillTask(master_message::KillTask {
            framework_id: Some(pb::FrameworkId { value: "f".into() }),
            task_id: Some(pb::TaskId {
                value: "doomed".into(),
            }),
            ..Default::default()
        }),
        &mut out,
    );
    agent.release(at(3), &mut out);
    drain(&mut agent, &mut out);
    let mut ended: Vec<(String, pb::TaskState)> = agent
        .ended()
        .iter()
        .map(|e| (e.task_id.as_str().to_string(), e.state))
        .collect();
    ended.sort();
    assert_eq!(
        ended,
        [
            ("doomed".to_string(), pb::TaskState::TaskKilled),
            ("held".to_string(), pb::TaskState::TaskFinished)
        ]
    );
}

#[test]
fn pings_are_answered_and_unacknowledged_updates_are_resent_with_backoff() {
    let timing = Timing {
        task_duration: Duration::from_secs(60),
        retry_min: Duration::from_secs(1),
        retry_max: Duration::from_secs(4),
    };
    let mut agent = SimAgent::new(info(1), timing, 1);
    let mut out = Vec::new();
    agent.connected();
    agent.on_master(at(0), registered("a1", "m1", None), &mut out);
    agent.on_master(
        at(0),
        master_message::Kind::Ping(master_message::Ping { seq: 3 }),
        &mut out,
    );
    assert_eq!(out, vec![Effect::Send(pong(3))]);
    out.clear();
    agent.on_master(at(0), run_task("f", "t", &[]), &mut out);
    let first = updates(&out);
    assert_eq!(first.len(), 1, "only the head goes out: {first:?}");
    out.clear();
    // Resent after 1 s, then 2 s, then 4 s (the cap), never sooner.
    let mut resent_at = Vec::new();
    for second in 1..=12 {
        agent.on_tick(at(second * 1000), &mut out);
        if !updates(&out).is_empty() {
            assert_eq!(updates(&out), first, "the same update again");
            resent_at.push(second);
        }
        out.clear();
    }
    assert_eq!(resent_at, [1, 3, 7, 11]);
}
