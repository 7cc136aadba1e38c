//! [`Master::next_deadline`] against ticking on a fixed beat: a master
//! ticked only when its deadline has come does exactly what one ticked every
//! 10 ms does, at the same steps; and a tick before the deadline does nothing.

use std::time::Duration;

use agora_allocator::DrfAllocator;
use agora_core::Resources;
use agora_proto::v1 as pb;
use agora_proto::v1::agent::{agent_message, master_message};
use agora_proto::v1::scheduler as sched;

use super::{ConnId, Effect, Master, MasterConfig, Now, RegistryAgent, RegistryAgentState};

const STEP: Duration = Duration::from_millis(10);

fn master() -> Master {
    let info = pb::MasterInfo {
        id: "timers".into(),
        hostname: Some("master.test".into()),
        ..Default::default()
    };
    let mut config = MasterConfig::new(info);
    config.agent_ping_timeout = Duration::from_secs(1);
    config.max_agent_ping_timeouts = 2;
    config.agent_removal_timeout = Duration::from_secs(3);
    config.offer_timeout = Some(Duration::from_millis(1500));
    Master::new(config, Box::new(DrfAllocator::with_seed(11)))
}

fn at(t: Duration) -> Now {
    Now {
        monotonic: t,
        wall: 1_700_000_000.0 + t.as_secs_f64(),
    }
}

fn register(hostname: &str) -> agent_message::Register {
    agent_message::Register {
        agent_info: Some(pb::AgentInfo {
            hostname: hostname.into(),
            resources: Resources::parse("cpus:4;mem:1024")
                .expect("resources parse")
                .to_proto(None),
            ..Default::default()
        }),
        version: "test".into(),
        tasks: Vec::new(),
        frameworks: Vec::new(),
    }
}

fn subscribe(name: &str, failover_timeout: f64) -> sched::Call {
    sched::Call {
        r#type: sched::call::Type::Subscribe as i32,
        subscribe: Some(sched::call::Subscribe {
            framework_info: Some(pb::FrameworkInfo {
                user: "alice".into(),
                name: name.into(),
                failover_timeout: Some(failover_timeout),
                ..Default::default()
            }),
            suppressed_roles: Vec::new(),
        }),
        ..Default::default()
    }
}

/// Registers an agent whose registry entry is durable at once.
fn register_durable(
    master: &mut Master,
    now: Now,
    conn: ConnId,
    register: agent_message::Register,
    out: &mut Vec<Effect>,
) {
    let from = out.len();
    master.agent_register(now, conn, register, out);
    for ticket in super::admission::asked_tickets(&out[from..]) {
        master.admission_durable(now, ticket, out);
    }
}

/// The pings among `effects` sent on `conn`.
fn pings(effects: &[Effect], conn: ConnId) -> Vec<u64> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::ToAgent { conn: to, message } if *to == conn => match &message.kind {
                Some(master_message::Kind::Ping(ping)) => Some(ping.seq),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// One master's run: its inputs at step `t`, and the pings it sent the
/// answering agent (conn 1) the step before.
fn inputs(master: &mut Master, t: Duration, answer: &[u64], out: &mut Vec<Effect>) {
    let now = at(t);
    let ms = t.as_millis();
    if ms == 0 {
        // An agent that answers, one that goes silent, one whose session
        // drops; a framework that disconnects for good.
        for (conn, host) in [(1, "answers"), (2, "silent"), (3, "drops")] {
            register_durable(master, now, conn, register(host), out);
        }
        master
            .subscribe(now, 10, "s10".into(), subscribe("leaves", 4.0), out)
            .expect("subscribed");
    }
    for seq in answer {
        master.agent_message(
            now,
            1,
            agent_message::Kind::Pong(agent_message::Pong { seq: *seq }),
            out,
        );
    }
    match ms {
        0 | 2_500 | 6_000 => master.allocate(now, out),
        1_230 => master.agent_disconnected(now, 3, out),
        3_000 => master.framework_disconnected(now, 10, out),
        5_000 => {
            master
                .subscribe(now, 11, "s11".into(), subscribe("stays", 60.0), out)
                .expect("subscribed");
        }
        _ => {}
    }
}

#[test]
fn ticking_at_the_next_deadline_does_what_ticking_every_step_does() {
    let (mut polled, mut driven) = (master(), master());
    assert_eq!(driven.next_deadline(), None, "nothing pending yet");
    let (mut polled_pings, mut driven_pings) = (Vec::new(), Vec::new());
    let mut driven_ticks = 0;
    let mut t = Duration::ZERO;
    while t <= Duration::from_secs(12) {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        inputs(&mut polled, t, &polled_pings, &mut a);
        inputs(&mut driven, t, &driven_pings, &mut b);
        assert_eq!(a, b, "inputs at {t:?}");
        let due = driven.next_deadline();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        polled.tick(at(t), &mut a);
        if due.is_some_and(|due| due <= t) {
            driven.tick(at(t), &mut b);
            driven_ticks += 1;
        }
        assert_eq!(a, b, "tick at {t:?} (deadline {due:?})");
        polled_pings = pings(&a, 1);
        driven_pings = pings(&b, 1);
        t += STEP;
    }
    // The scenario exercised the timers, and the driven master woke only
    // when something was due.
    assert!(driven_ticks >= 8, "{driven_ticks} ticks");
    assert!(driven_ticks < 100, "{driven_ticks} ticks");
    assert_eq!(polled.agents.len(), driven.agents.len());
    assert!(
        driven
            .agents
            .values()
            .any(|a| a.unreachable_since.is_some()),
        "the silent agent was found unreachable"
    );
    assert!(
        !driven.frameworks.values().any(|f| f.info.name == "leaves"),
        "the framework past its failover timeout was removed"
    );
}

#[test]
fn each_timer_sets_the_deadline() {
    let mut master = master();
    let mut out = Vec::new();
    let t0 = Duration::from_secs(100);
    // The re-registration window after a failover.
    let entry = RegistryAgent {
        id: "old-S1".into(),
        hostname: "old".into(),
        port: 5051,
        resources: "cpus:1".into(),
        state: RegistryAgentState::Admitted,
    };
    master.recover(at(t0), vec![entry], Duration::from_secs(600));
    assert_eq!(master.next_deadline(), Some(t0 + Duration::from_secs(600)));
    // A registered agent's next ping.
    register_durable(&mut master, at(t0), 1, register("a"), &mut out);
    assert_eq!(master.next_deadline(), Some(t0 + Duration::from_secs(1)));
    // A tick before it does nothing.
    let mut early = Vec::new();
    master.tick(at(t0 + Duration::from_millis(999)), &mut early);
    assert_eq!(early, Vec::new());
    // Offers time out; a disconnected framework's failover timeout.
    master
        .subscribe(at(t0), 10, "s10".into(), subscribe("f", 0.5), &mut out)
        .expect("subscribed");
    master.allocate(at(t0), &mut out);
    assert!(!master.offers.is_empty(), "offered");
    master.framework_disconnected(at(t0), 10, &mut out);
    assert_eq!(
        master.next_deadline(),
        Some(t0 + Duration::from_millis(500))
    );
    let mut due = Vec::new();
    master.tick(at(t0 + Duration::from_millis(500)), &mut due);
    assert!(master.frameworks.is_empty(), "removed at its deadline");
    assert_eq!(master.next_deadline(), Some(t0 + Duration::from_secs(1)));
}
