use std::sync::Arc;

use proptest::prelude::*;

use super::{ChunkCache, make, make_frameworks, make_slaves};
use crate::mesos_v0::state_json;
use crate::mesos_v0::tests::fixture;
use std::collections::BTreeMap;

use agora_core::Resources;
use agora_core::resources::SummaryValue;

use crate::snapshot::test_views::{agent, refix, task};
use crate::snapshot::{
    AgentResources, FrameworkView, OfferView, SharedList, StateSnapshot, TaskView,
};

const STARTED: f64 = 42.5;

/// The fixture (agents, offers, a completed framework, a custom executor)
/// with a framework of `n` tasks over several chunks, every seventh
/// unreachable, and some completed ones.
fn big(n: usize) -> StateSnapshot {
    let mut s = fixture();
    let mut frameworks: Vec<FrameworkView> = s.frameworks.iter().cloned().collect();
    let mut f = frameworks[0].clone();
    f.id = "f2".to_owned();
    f.tasks = (0..n)
        .map(|i| {
            let state = if i % 7 == 3 {
                "TASK_UNREACHABLE"
            } else {
                "TASK_RUNNING"
            };
            let mut t = task(&format!("f2-task-{i:05}"), state);
            refix(&mut t, |f| {
                f.framework_id = agora_core::FrameworkId::new("f2");
                if i % 5 == 0 {
                    f.executor_id = agora_core::ExecutorId::new(format!("exec-{}", i % 3));
                }
            });
            t
        })
        .collect();
    f.completed_tasks = (0..n / 4)
        .map(|i| task(&format!("f2-done-{i:05}"), "TASK_FINISHED"))
        .collect();
    frameworks.push(f);
    s.frameworks = frameworks.into();
    for i in 0..150 {
        let id = format!("agent-{i:04}");
        s.agents.upsert(Arc::new(agent(&id)));
        if i % 10 == 0 {
            s.mesos.agent_resources.upsert(Arc::new(AgentResources {
                id: id.clone(),
                resources: Resources::parse("cpus:3;cpus(ops):1;mem:1024").expect("parses"),
            }));
        }
        if i % 4 == 0 {
            s.offers.upsert(Arc::new(offer(i, 1.0)));
        }
    }
    s
}

fn offer(agent: usize, cpus: f64) -> OfferView {
    OfferView {
        id: format!("offer-{agent:04}"),
        framework_id: "f2".to_owned(),
        agent_id: format!("agent-{agent:04}"),
        role: "*".to_owned(),
        resources: BTreeMap::from([("cpus".to_owned(), SummaryValue::Number(cpus))]),
    }
}

/// The holes in a body of `s`: three task lists per framework, and the
/// agents.
fn holes(s: &StateSnapshot) -> usize {
    3 * (s.frameworks.len() + s.completed_frameworks.len()) + 1
}

fn whole(s: &StateSnapshot) -> Vec<u8> {
    state_json(s, STARTED).expect("serializes")
}

#[test]
fn a_body_is_the_same_bytes_as_the_whole_serialization() {
    for s in [fixture(), big(300), StateSnapshot::default()] {
        let mut cache = ChunkCache::default();
        let rope = make(&s, STARTED, &mut cache).expect("body");
        assert_eq!(rope.to_vec(), whole(&s));
        assert!(rope.pieces().iter().all(|p| !p.is_empty()));
    }
    let s = big(300);
    let value: serde_json::Value = serde_json::from_slice(
        &make(&s, STARTED, &mut ChunkCache::default())
            .expect("body")
            .to_vec(),
    )
    .expect("json");
    let f2 = &value["frameworks"][1];
    assert_eq!(f2["tasks"].as_array().map(Vec::len), Some(257));
    assert_eq!(f2["unreachable_tasks"].as_array().map(Vec::len), Some(43));
    assert_eq!(f2["completed_tasks"].as_array().map(Vec::len), Some(75));
    assert_eq!(f2["unreachable_tasks"][0]["state"], "TASK_UNREACHABLE");
}

#[test]
fn an_unchanged_snapshot_makes_no_task_json_again() {
    let s = big(300);
    let mut cache = ChunkCache::default();
    let first = make(&s, STARTED, &mut cache).expect("first");
    let held = cache.len();
    // Each chunk of live tasks shows in two parts; completed ones in one.
    let chunks = |l: &SharedList<TaskView>| l.chunks().len();
    let expected: usize = s
        .frameworks
        .iter()
        .chain(&s.completed_frameworks)
        .map(|f| 2 * chunks(&f.tasks) + chunks(&f.completed_tasks))
        .sum::<usize>()
        + s.agents.chunks().len();
    assert_eq!(held, expected);
    let again = make(&s, STARTED, &mut cache).expect("again");
    assert_eq!(again.to_vec(), first.to_vec());
    assert_eq!(cache.len(), held);
    // Only the head is made again: every task and agent piece is the
    // first body's.
    assert_eq!(made_again(&first, &again), holes(&s) + 1);
}

#[test]
fn a_changed_task_remakes_its_chunk_only() {
    let s = big(300);
    let mut cache = ChunkCache::default();
    let first = make(&s, STARTED, &mut cache).expect("first");
    let mut next = s.clone();
    let mut frameworks: Vec<FrameworkView> = next.frameworks.iter().cloned().collect();
    let mut gone = task("f2-task-00151", "TASK_UNREACHABLE");
    refix(&mut gone, |f| {
        f.framework_id = agora_core::FrameworkId::new("f2")
    });
    frameworks[1].tasks.upsert(Arc::new(gone));
    next.frameworks = frameworks.into();

    let second = make(&next, STARTED, &mut cache).expect("second");
    assert_eq!(second.to_vec(), whole(&next));
    let value: serde_json::Value = serde_json::from_slice(&second.to_vec()).expect("json");
    let f2 = &value["frameworks"][1];
    assert_eq!(f2["tasks"].as_array().map(Vec::len), Some(256));
    assert_eq!(f2["unreachable_tasks"].as_array().map(Vec::len), Some(44));
    // Made again: the head's pieces (one more than the holes) and the
    // changed chunk's two parts; every other piece lies in the first
    // body's bytes.
    assert_eq!(made_again(&first, &second), holes(&next) + 1 + 2);
}

#[test]
fn an_agents_entry_is_made_again_when_its_offers_or_resources_change() {
    let s = big(10);
    let mut cache = ChunkCache::default();
    let first = make(&s, STARTED, &mut cache).expect("first");
    let value = |rope: &crate::snapshot::state_body::Rope| -> serde_json::Value {
        serde_json::from_slice(&rope.to_vec()).expect("json")
    };
    let slave = |v: &serde_json::Value, id: &str| {
        v["slaves"]
            .as_array()
            .and_then(|all| all.iter().find(|a| a["id"] == id).cloned())
    };

    // An offer on agent-0100 changes, a new one on agent-0005: their two
    // chunks (0-63 and 64-127 hold a1, a2 and the agents in id order) are
    // made again, nothing else.
    let mut next = s.clone();
    next.offers.upsert(Arc::new(offer(100, 3.0)));
    next.offers.upsert(Arc::new(offer(5, 2.0)));
    let second = make(&next, STARTED, &mut cache).expect("second");
    assert_eq!(second.to_vec(), whole(&next));
    let v = value(&second);
    assert_eq!(
        slave(&v, "agent-0100").map(|a| a["offered_resources"]["cpus"].clone()),
        Some(serde_json::json!(3.0))
    );
    assert_eq!(
        slave(&v, "agent-0005").map(|a| a["offered_resources"]["cpus"].clone()),
        Some(serde_json::json!(2.0))
    );
    assert_eq!(made_again(&first, &second), holes(&next) + 1 + 2);

    // Its resources in the books change: that chunk only.
    let mut third = next.clone();
    third.mesos.agent_resources.upsert(Arc::new(AgentResources {
        id: "agent-0140".to_owned(),
        resources: Resources::parse("cpus:1;cpus(ops):7").expect("parses"),
    }));
    let body = make(&third, STARTED, &mut cache).expect("third");
    assert_eq!(body.to_vec(), whole(&third));
    assert_eq!(
        slave(&value(&body), "agent-0140").map(|a| a["reserved_resources"]["ops"]["cpus"].clone()),
        Some(serde_json::json!(7.0))
    );
    assert_eq!(made_again(&second, &body), holes(&third) + 1 + 1);

    // Unreachable: out of `slaves`, counted apart.
    let mut fourth = third.clone();
    let mut gone = agent("agent-0001");
    gone.status = "unreachable";
    fourth.agents.upsert(Arc::new(gone));
    let body = make(&fourth, STARTED, &mut cache).expect("fourth");
    assert_eq!(body.to_vec(), whole(&fourth));
    assert_eq!(slave(&value(&body), "agent-0001"), None);
}

fn whole_slaves(s: &StateSnapshot) -> Vec<u8> {
    serde_json::to_vec(&crate::mesos_v0::shapes::slaves(s, None)).expect("json")
}

#[test]
fn the_slaves_body_keeps_its_agent_chunks_with_their_full_reservations() {
    let s = big(10);
    let mut cache = ChunkCache::default();
    let first = make_slaves(&s, &mut cache).expect("first");
    assert_eq!(first.to_vec(), whole_slaves(&s));
    let value: serde_json::Value = serde_json::from_slice(&first.to_vec()).expect("json");
    let reserved = value["slaves"]
        .as_array()
        .and_then(|all| all.iter().find(|a| a["id"] == "agent-0140"))
        .map(|a| a["reserved_resources_full"]["ops"].clone());
    assert!(
        reserved.as_ref().is_some_and(|r| r.is_array()),
        "the *_full reservations: {reserved:?}"
    );

    // Nothing changed: every piece but the head's lies in the first body.
    let again = make_slaves(&s, &mut cache).expect("again");
    assert_eq!(again.to_vec(), first.to_vec());
    assert_eq!(made_again(&first, &again), 2);

    // An offer on agent-0100 changes: its chunk only is made again.
    let mut next = s.clone();
    next.offers.upsert(Arc::new(offer(100, 3.0)));
    let second = make_slaves(&next, &mut cache).expect("second");
    assert_eq!(second.to_vec(), whole_slaves(&next));
    assert_eq!(made_again(&again, &second), 2 + 1);

    // A cache made for `/master/state` does not serve `/master/slaves`'
    // entries: each endpoint keeps its own (the shapes differ).
    let mut state_cache = ChunkCache::default();
    make(&next, STARTED, &mut state_cache).expect("state");
    assert_eq!(
        make_slaves(&next, &mut ChunkCache::default())
            .expect("slaves")
            .to_vec(),
        whole_slaves(&next)
    );
}

/// How many of `second`'s pieces do not lie inside one of `first`'s (a
/// list's first piece is its chunk's bytes less the leading comma).
fn made_again(
    first: &crate::snapshot::state_body::Rope,
    second: &crate::snapshot::state_body::Rope,
) -> usize {
    let within = |p: &bytes::Bytes| {
        let at = p.as_ptr() as usize;
        first.pieces().iter().any(|q| {
            let start = q.as_ptr() as usize;
            at >= start && at + p.len() <= start + q.len()
        })
    };
    second.pieces().iter().filter(|p| !within(p)).count()
}

/// A change the read model may make to a framework's tasks, the offers
/// and the agents.
#[derive(Debug, Clone)]
enum Change {
    Upsert { task: usize, state: usize },
    Remove { task: usize },
    Complete { task: usize },
    Offer { agent: usize, cpus: u8 },
    Rescind { agent: usize },
    AgentStatus { agent: usize, status: usize },
    AgentResources { agent: usize, cpus: u8 },
}

const AGENT_STATES: [&str; 3] = ["active", "disconnected", "unreachable"];

const STATES: [&str; 4] = [
    "TASK_RUNNING",
    "TASK_UNREACHABLE",
    "TASK_STAGING",
    "TASK_FINISHED",
];

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        (0..400usize, 0..STATES.len()).prop_map(|(task, state)| Change::Upsert { task, state }),
        (0..400usize).prop_map(|task| Change::Remove { task }),
        (0..400usize).prop_map(|task| Change::Complete { task }),
        (0..200usize, 0..4u8).prop_map(|(agent, cpus)| Change::Offer { agent, cpus }),
        (0..200usize).prop_map(|agent| Change::Rescind { agent }),
        (0..200usize, 0..AGENT_STATES.len())
            .prop_map(|(agent, status)| Change::AgentStatus { agent, status }),
        (0..200usize, 0..4u8).prop_map(|(agent, cpus)| Change::AgentResources { agent, cpus }),
    ]
}

fn apply(s: &mut StateSnapshot, change: &Change) {
    let agent_id = |n: usize| format!("agent-{n:04}");
    match change {
        Change::Offer { agent, cpus } => {
            s.offers.upsert(Arc::new(offer(*agent, f64::from(*cpus))));
            return;
        }
        Change::Rescind { agent } => {
            s.offers.remove_key(&format!("offer-{agent:04}"));
            return;
        }
        Change::AgentStatus { agent: n, status } => {
            let mut a = agent(&agent_id(*n));
            a.status = AGENT_STATES[*status];
            s.agents.upsert(Arc::new(a));
            return;
        }
        Change::AgentResources { agent, cpus } => {
            let resources = format!("cpus:1;cpus(ops):{cpus};mem:64");
            s.mesos.agent_resources.upsert(Arc::new(AgentResources {
                id: agent_id(*agent),
                resources: Resources::parse(&resources).expect("parses"),
            }));
            return;
        }
        _ => {}
    }
    let mut frameworks: Vec<FrameworkView> = s.frameworks.iter().cloned().collect();
    let f = &mut frameworks[1];
    let id = |n: usize| format!("f2-task-{n:05}");
    match change {
        Change::Upsert { task: n, state } => {
            let mut t = task(&id(*n), STATES[*state]);
            refix(&mut t, |f| {
                f.framework_id = agora_core::FrameworkId::new("f2");
                f.executor_id = agora_core::ExecutorId::new(format!("exec-{}", n % 4));
            });
            f.tasks.upsert(Arc::new(t));
        }
        Change::Remove { task: n } => {
            f.tasks.remove_key(&id(*n));
        }
        Change::Complete { task: n } => {
            if let Some(t) = f.tasks.remove_key(&id(*n)) {
                f.completed_tasks.upsert(t);
            }
        }
        _ => {}
    }
    s.frameworks = frameworks.into();
}

proptest! {
    /// After any run of changes, every body in a row (`/master/state`'s,
    /// `/master/frameworks'` and `/master/slaves'`) is the same bytes as the whole serialization
    /// of its snapshot.
    #[test]
    fn bodies_in_a_row_equal_the_whole_serialization(
        rounds in proptest::collection::vec(proptest::collection::vec(change(), 0..40), 1..6),
    ) {
        let mut s = big(200);
        let mut cache = ChunkCache::default();
        let mut frameworks_cache = ChunkCache::default();
        let mut slaves_cache = ChunkCache::default();
        for changes in &rounds {
            for c in changes {
                apply(&mut s, c);
            }
            let body = make(&s, STARTED, &mut cache).expect("body");
            prop_assert_eq!(body.to_vec(), whole(&s));
            let frameworks = make_frameworks(&s, &mut frameworks_cache).expect("frameworks");
            let whole_frameworks =
                serde_json::to_vec(&crate::mesos_v0::shapes::frameworks(&s, None, &mut Default::default())).expect("json");
            prop_assert_eq!(frameworks.to_vec(), whole_frameworks);
            let slaves = make_slaves(&s, &mut slaves_cache).expect("slaves");
            prop_assert_eq!(slaves.to_vec(), whole_slaves(&s));
        }
    }
}
