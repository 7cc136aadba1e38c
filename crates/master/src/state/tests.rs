//! Unit tests of the master's state machine, driven through its public inputs
//! with a clock the tests control, plus a seeded random simulation that checks
//! the bookkeeping invariants after every step.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use agora_allocator::DrfAllocator;
use agora_core::{AgentId, FrameworkId, OfferId, Resources, TaskId};
use agora_proto::v1 as pb;
use agora_proto::v1::agent::{MasterMessage, agent_message, master_message};
use agora_proto::v1::scheduler as sched;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sched::call::Type as CallType;
use sched::event::Type as EventType;

use super::*;

mod absence;
mod authn;
mod authz;
mod control;
mod isolation;
mod launch_size;
mod observe;
mod operator;
mod resource_kinds;
mod validation;
mod wire;

const MASTER_ID: &str = "m1";
const WALL_EPOCH: f64 = 1_700_000_000.0;

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

fn res(text: &str) -> Resources {
    Resources::parse(text).expect("test resources parse")
}

#[allow(clippy::disallowed_methods)] // a test's own finite seconds
fn at(secs: f64) -> Now {
    Now {
        monotonic: Duration::from_secs_f64(secs),
        wall: WALL_EPOCH + secs,
    }
}

fn uuid(n: u8) -> Vec<u8> {
    vec![n; 16]
}

fn stream_of(conn: ConnId) -> String {
    format!("stream-{conn}")
}

fn framework_info(name: &str) -> pb::FrameworkInfo {
    pb::FrameworkInfo {
        user: "alice".into(),
        name: name.into(),
        ..Default::default()
    }
}

fn partition_aware(mut info: pb::FrameworkInfo) -> pb::FrameworkInfo {
    info.capabilities.push(pb::framework_info::Capability {
        r#type: Some(pb::framework_info::capability::Type::PartitionAware as i32),
    });
    info
}

fn subscribe_call(info: pb::FrameworkInfo) -> sched::Call {
    sched::Call {
        framework_id: info.id.clone(),
        r#type: CallType::Subscribe as i32,
        subscribe: Some(sched::call::Subscribe {
            framework_info: Some(info),
            suppressed_roles: Vec::new(),
        }),
        ..Default::default()
    }
}

fn agent_info(hostname: &str, resources: &str) -> pb::AgentInfo {
    pb::AgentInfo {
        hostname: hostname.into(),
        resources: res(resources).to_proto(None),
        ..Default::default()
    }
}

fn register_msg(info: pb::AgentInfo) -> agent_message::Register {
    agent_message::Register {
        agent_info: Some(info),
        version: "test".into(),
        tasks: Vec::new(),
        frameworks: Vec::new(),
    }
}

fn command_task(id: &str, agent_id: &AgentId, resources: &str) -> pb::TaskInfo {
    pb::TaskInfo {
        name: format!("task {id}"),
        task_id: Some(pb::TaskId { value: id.into() }),
        agent_id: agent_id.to_field(),
        resources: res(resources).to_proto(None),
        command: Some(pb::CommandInfo {
            value: Some("sleep 1".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn base_call(framework_id: &FrameworkId, kind: CallType) -> sched::Call {
    sched::Call {
        framework_id: framework_id.to_field(),
        r#type: kind as i32,
        ..Default::default()
    }
}

fn launch_call(
    framework_id: &FrameworkId,
    offer_ids: &[pb::OfferId],
    tasks: Vec<pb::TaskInfo>,
    refuse_seconds: Option<f64>,
) -> sched::Call {
    sched::Call {
        accept: Some(sched::call::Accept {
            offer_ids: offer_ids.to_vec(),
            operations: vec![pb::offer::Operation {
                r#type: Some(pb::offer::operation::Type::Launch as i32),
                launch: Some(pb::offer::operation::Launch { task_infos: tasks }),
                ..Default::default()
            }],
            filters: refuse_seconds.map(|s| pb::Filters {
                refuse_seconds: Some(s),
            }),
        }),
        ..base_call(framework_id, CallType::Accept)
    }
}

fn decline_call(
    framework_id: &FrameworkId,
    offer_ids: &[pb::OfferId],
    refuse_seconds: Option<f64>,
) -> sched::Call {
    sched::Call {
        decline: Some(sched::call::Decline {
            offer_ids: offer_ids.to_vec(),
            filters: refuse_seconds.map(|s| pb::Filters {
                refuse_seconds: Some(s),
            }),
        }),
        ..base_call(framework_id, CallType::Decline)
    }
}

fn ack_call(
    framework_id: &FrameworkId,
    agent_id: &AgentId,
    task_id: &str,
    uuid: Vec<u8>,
) -> sched::Call {
    sched::Call {
        acknowledge: Some(sched::call::Acknowledge {
            agent_id: agent_id.to_field(),
            task_id: Some(pb::TaskId {
                value: task_id.into(),
            }),
            uuid,
        }),
        ..base_call(framework_id, CallType::Acknowledge)
    }
}

fn kill_call(framework_id: &FrameworkId, task_id: &str) -> sched::Call {
    sched::Call {
        kill: Some(sched::call::Kill {
            task_id: Some(pb::TaskId {
                value: task_id.into(),
            }),
            agent_id: None,
            kill_policy: None,
        }),
        ..base_call(framework_id, CallType::Kill)
    }
}

fn reconcile_call(framework_id: &FrameworkId, tasks: &[(&str, Option<&AgentId>)]) -> sched::Call {
    sched::Call {
        reconcile: Some(sched::call::Reconcile {
            tasks: tasks
                .iter()
                .map(|(task, agent)| sched::call::reconcile::Task {
                    task_id: Some(pb::TaskId {
                        value: (*task).into(),
                    }),
                    agent_id: agent.map(AgentId::to_proto),
                })
                .collect(),
        }),
        ..base_call(framework_id, CallType::Reconcile)
    }
}

fn status_update(
    framework_id: &FrameworkId,
    task_id: &str,
    state: pb::TaskState,
    uuid: Option<Vec<u8>>,
) -> agent_message::Kind {
    agent_message::Kind::StatusUpdate(agent_message::StatusUpdate {
        framework_id: framework_id.to_field(),
        status: Some(pb::TaskStatus {
            task_id: Some(pb::TaskId {
                value: task_id.into(),
            }),
            state: Some(state as i32),
            source: Some(pb::task_status::Source::Executor as i32),
            uuid,
            ..Default::default()
        }),
        latest_state: None,
    })
}

/// Events sent to one framework connection.
fn events_to(effects: &[Effect], conn: ConnId) -> Vec<&sched::Event> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::ToFramework { conn: c, event } if *c == conn => Some(event),
            _ => None,
        })
        .collect()
}

fn events_of_type(effects: &[Effect], conn: ConnId, kind: EventType) -> Vec<&sched::Event> {
    events_to(effects, conn)
        .into_iter()
        .filter(|e| e.r#type == kind as i32)
        .collect()
}

/// The offers in the OFFERS events sent to `conn`.
fn offers_to(effects: &[Effect], conn: ConnId) -> Vec<pb::Offer> {
    events_of_type(effects, conn, EventType::Offers)
        .into_iter()
        .flat_map(|e| {
            e.offers
                .as_ref()
                .expect("OFFERS carries offers")
                .offers
                .clone()
        })
        .collect()
}

/// The statuses in the UPDATE events sent to `conn`.
fn updates_to(effects: &[Effect], conn: ConnId) -> Vec<pb::TaskStatus> {
    events_of_type(effects, conn, EventType::Update)
        .into_iter()
        .map(|e| {
            e.update
                .as_ref()
                .and_then(|u| u.status.clone())
                .expect("UPDATE carries a status")
        })
        .collect()
}

fn rescinds_to(effects: &[Effect], conn: ConnId) -> Vec<String> {
    events_of_type(effects, conn, EventType::Rescind)
        .into_iter()
        .map(|e| {
            e.rescind
                .as_ref()
                .and_then(|r| r.offer_id.as_ref())
                .expect("RESCIND carries an offer id")
                .value
                .clone()
        })
        .collect()
}

fn error_messages_to(effects: &[Effect], conn: ConnId) -> Vec<String> {
    events_of_type(effects, conn, EventType::Error)
        .into_iter()
        .map(|e| {
            e.error
                .as_ref()
                .expect("ERROR carries a message")
                .message
                .clone()
        })
        .collect()
}

/// Messages sent to one agent connection.
fn agent_messages(effects: &[Effect], conn: ConnId) -> Vec<master_message::Kind> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::ToAgent {
                conn: c,
                message: MasterMessage { kind: Some(kind) },
            } if *c == conn => Some(kind.clone()),
            _ => None,
        })
        .collect()
}

/// Every RunTask in the effects, whichever connection it goes to.
fn run_tasks(effects: &[Effect]) -> Vec<(ConnId, master_message::RunTask)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::ToAgent {
                conn,
                message:
                    MasterMessage {
                        kind: Some(master_message::Kind::RunTask(run)),
                    },
            } => Some((*conn, run.clone())),
            _ => None,
        })
        .collect()
}

fn offer_resources(offer: &pb::Offer) -> Resources {
    Resources::from_proto(&offer.resources).expect("offer resources are valid")
}

fn offer_id(offer: &pb::Offer) -> pb::OfferId {
    offer.id.clone().expect("offer has an id")
}

fn state_of(status: &pb::TaskStatus) -> pb::TaskState {
    pb::TaskState::try_from(status.state.unwrap_or_default()).expect("known state")
}

fn reason_of(status: &pb::TaskStatus) -> Option<pb::task_status::Reason> {
    status
        .reason
        .map(|r| pb::task_status::Reason::try_from(r).expect("known reason"))
}

fn task_id_of(status: &pb::TaskStatus) -> &str {
    status.task_id.as_ref().map_or("", |t| t.value.as_str())
}

/// A subscribed framework as a test sees it.
#[derive(Debug, Clone)]
struct Fw {
    id: FrameworkId,
    conn: ConnId,
    stream: String,
}

struct Harness {
    master: Master,
    now: f64,
}

impl Harness {
    fn new() -> Self {
        Self::with_master_id(MASTER_ID)
    }

    fn with_master_id(id: &str) -> Self {
        let info = pb::MasterInfo {
            id: id.into(),
            hostname: Some("master.test".into()),
            ..Default::default()
        };
        let mut config = MasterConfig::new(info);
        // Agent health has its own tests (`health_*`); elsewhere pings would
        // only add noise to the effects checked.
        config.agent_ping_timeout = Duration::from_secs(86_400);
        Self::with_config(config)
    }

    fn with_config(config: MasterConfig) -> Self {
        Self {
            master: Master::new(config, Box::new(DrfAllocator::with_seed(7))),
            now: 0.0,
        }
    }

    /// A harness whose master pings agents with the default settings.
    fn with_default_health() -> Self {
        let mut h = Self::new();
        let defaults = MasterConfig::new(h.master.config().master_info.clone());
        h.master.config.agent_ping_timeout = defaults.agent_ping_timeout;
        h.master.config.max_agent_ping_timeouts = defaults.max_agent_ping_timeouts;
        h
    }

    fn now(&self) -> Now {
        at(self.now)
    }

    fn advance(&mut self, secs: f64) {
        self.now += secs;
    }

    fn register(
        &mut self,
        conn: ConnId,
        register: agent_message::Register,
    ) -> (Option<AgentId>, Vec<Effect>) {
        let mut out = Vec::new();
        let id = self
            .master
            .agent_register(self.now(), conn, register, &mut out);
        (id, out)
    }

    /// Registers a new agent and checks it is told its id.
    fn register_agent(&mut self, conn: ConnId, hostname: &str, resources: &str) -> AgentId {
        let (id, out) = self.register(conn, register_msg(agent_info(hostname, resources)));
        let id = id.expect("agent registered");
        let messages = agent_messages(&out, conn);
        assert!(
            matches!(&messages[..], [master_message::Kind::Registered(r)]
                if r.agent_id == id.to_field()),
            "expected one Registered for {id}, got {messages:?}"
        );
        id
    }

    fn subscribe(
        &mut self,
        conn: ConnId,
        info: pb::FrameworkInfo,
    ) -> (Result<FrameworkId, CallError>, Vec<Effect>) {
        let mut out = Vec::new();
        let result = self.master.subscribe(
            self.now(),
            conn,
            stream_of(conn),
            subscribe_call(info),
            &mut out,
        );
        (result, out)
    }

    /// Subscribes `info` on `conn` and checks the SUBSCRIBED event.
    fn subscribe_ok(&mut self, conn: ConnId, info: pb::FrameworkInfo) -> Fw {
        let (result, out) = self.subscribe(conn, info);
        let id = result.expect("subscribe succeeds");
        let subscribed = events_of_type(&out, conn, EventType::Subscribed);
        assert_eq!(subscribed.len(), 1, "one SUBSCRIBED event: {out:?}");
        let body = subscribed[0].subscribed.as_ref().expect("SUBSCRIBED body");
        assert_eq!(body.framework_id, id.to_field());
        assert_eq!(body.stream_id, stream_of(conn));
        Fw {
            id,
            conn,
            stream: stream_of(conn),
        }
    }

    fn subscribe_framework(&mut self, conn: ConnId, name: &str) -> Fw {
        self.subscribe_ok(conn, framework_info(name))
    }

    fn call(&mut self, fw: &Fw, call: sched::Call) -> (Result<(), CallError>, Vec<Effect>) {
        let mut out = Vec::new();
        let result = self.master.call(self.now(), &fw.stream, call, &mut out);
        (result, out)
    }

    fn call_ok(&mut self, fw: &Fw, call: sched::Call) -> Vec<Effect> {
        let (result, out) = self.call(fw, call);
        result.expect("call succeeds");
        out
    }

    fn allocate(&mut self) -> Vec<Effect> {
        let mut out = Vec::new();
        self.master.allocate(self.now(), &mut out);
        out
    }

    fn tick(&mut self) -> Vec<Effect> {
        let mut out = Vec::new();
        self.master.tick(self.now(), &mut out);
        out
    }

    fn agent_says(&mut self, conn: ConnId, message: agent_message::Kind) -> Vec<Effect> {
        let mut out = Vec::new();
        self.master
            .agent_message(self.now(), conn, message, &mut out);
        out
    }

    fn agent_gone(&mut self, conn: ConnId) -> Vec<Effect> {
        let mut out = Vec::new();
        self.master.agent_disconnected(self.now(), conn, &mut out);
        out
    }

    fn framework_gone(&mut self, conn: ConnId) -> Vec<Effect> {
        let mut out = Vec::new();
        self.master
            .framework_disconnected(self.now(), conn, &mut out);
        out
    }

    /// Allocates and returns the offers sent to `fw`.
    fn offers_for(&mut self, fw: &Fw) -> Vec<pb::Offer> {
        let out = self.allocate();
        offers_to(&out, fw.conn)
    }

    /// Allocates and returns the single offer sent to `fw`.
    fn one_offer(&mut self, fw: &Fw) -> pb::Offer {
        let offers = self.offers_for(fw);
        assert_eq!(offers.len(), 1, "expected one offer: {offers:?}");
        offers.into_iter().next().expect("one offer")
    }

    fn task(&self, fw: &FrameworkId, task_id: &str) -> Option<&Task> {
        self.master
            .frameworks
            .get(fw)?
            .tasks
            .get(&TaskId::new(task_id))
    }

    fn used(&self, agent_id: &AgentId) -> Resources {
        self.master.agents[agent_id].used.clone()
    }

    fn free(&self, agent_id: &AgentId) -> Resources {
        self.master
            .free_resources()
            .remove(agent_id)
            .unwrap_or_default()
    }
}

/// One agent (cpus:2;mem:1024 on conn 1) and one framework (conn 10) holding
/// one offer for the whole agent.
fn one_agent_one_offer() -> (Harness, AgentId, Fw, pb::Offer) {
    let mut h = Harness::new();
    let agent = h.register_agent(1, "a1", "cpus:2;mem:1024");
    let fw = h.subscribe_framework(10, "fw");
    let offer = h.one_offer(&fw);
    (h, agent, fw, offer)
}

/// Launches one task through an offer (with no refusal filter on the rest)
/// and checks it was sent to the agent.
fn launch_one(h: &mut Harness, fw: &Fw, offer: &pb::Offer, task: pb::TaskInfo) -> Vec<Effect> {
    let out = h.call_ok(
        fw,
        launch_call(&fw.id, &[offer_id(offer)], vec![task], Some(0.0)),
    );
    assert_eq!(run_tasks(&out).len(), 1, "one RunTask: {out:?}");
    out
}

// ---------------------------------------------------------------------------
// 1. Happy path
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// 2. Offer and task validation
// ---------------------------------------------------------------------------

/// What a refused ACCEPT must leave as it was.
struct Snapshot {
    offers: Vec<(OfferId, FrameworkId, AgentId, Resources)>,
    framework_offers: BTreeMap<FrameworkId, BTreeSet<OfferId>>,
    tasks: BTreeMap<FrameworkId, Vec<(TaskId, pb::TaskState)>>,
    used: BTreeMap<AgentId, Resources>,
    free: BTreeMap<AgentId, Resources>,
}

fn snapshot(h: &Harness) -> Snapshot {
    Snapshot {
        offers: h
            .master
            .offers
            .values()
            .map(|o| {
                (
                    o.id.clone(),
                    o.framework_id.clone(),
                    o.agent_id.clone(),
                    o.resources.clone(),
                )
            })
            .collect(),
        framework_offers: h
            .master
            .frameworks
            .iter()
            .map(|(id, f)| (id.clone(), f.offers.clone()))
            .collect(),
        tasks: h
            .master
            .frameworks
            .iter()
            .map(|(id, f)| {
                (
                    id.clone(),
                    f.tasks.values().map(|t| (t.id.clone(), t.state)).collect(),
                )
            })
            .collect(),
        used: h
            .master
            .agents
            .iter()
            .map(|(id, a)| (id.clone(), a.used.clone()))
            .collect(),
        free: h.master.free_resources(),
    }
}

fn assert_unchanged(h: &Harness, before: &Snapshot) {
    let after = snapshot(h);
    assert_eq!(after.offers, before.offers, "outstanding offers changed");
    assert_eq!(
        after.framework_offers, before.framework_offers,
        "frameworks' offers changed"
    );
    assert_eq!(after.tasks, before.tasks, "tasks changed");
    assert_eq!(after.used, before.used, "agents' used resources changed");
    assert_eq!(
        after.free, before.free,
        "allocator's free resources changed"
    );
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ErrKind {
    InvalidArgument,
    NotFound,
    FailedPrecondition,
    PermissionDenied,
    Unauthorized,
}

fn kind_of(error: &CallError) -> (ErrKind, &str) {
    match error {
        CallError::InvalidArgument(m) => (ErrKind::InvalidArgument, m),
        CallError::NotFound(m) => (ErrKind::NotFound, m),
        CallError::FailedPrecondition(m) => (ErrKind::FailedPrecondition, m),
        CallError::PermissionDenied(m) => (ErrKind::PermissionDenied, m),
        CallError::Unauthorized(m) => (ErrKind::Unauthorized, m),
    }
}

fn assert_error(result: Result<(), CallError>, kind: ErrKind, needle: &str) {
    let error = result.expect_err("the call must be refused");
    let (got, message) = kind_of(&error);
    assert_eq!(got, kind, "wrong error variant: {error:?}");
    assert!(
        message.contains(needle),
        "error message {message:?} should mention {needle:?}"
    );
}

/// Sends an ACCEPT that must be refused: checks the error, that nothing
/// changed, that no task was sent to any agent, and that each of
/// `reported` got exactly one UPDATE with `state` and `reason`.
#[allow(clippy::too_many_arguments)]
fn assert_accept_refused(
    h: &mut Harness,
    fw: &Fw,
    call: sched::Call,
    kind: ErrKind,
    needle: &str,
    state: pb::TaskState,
    reason: pb::task_status::Reason,
    reported: &[&str],
) -> Vec<Effect> {
    let before = snapshot(h);
    let invalid_before = h.master.counters.invalid_calls;
    let (result, out) = h.call(fw, call);
    assert_error(result, kind, needle);
    assert!(run_tasks(&out).is_empty(), "nothing launched: {out:?}");
    assert_unchanged(h, &before);
    assert_eq!(h.master.counters.invalid_calls, invalid_before + 1);
    let updates = updates_to(&out, fw.conn);
    let ids: Vec<&str> = updates.iter().map(task_id_of).collect();
    assert_eq!(ids, reported, "UPDATE events for the refused tasks");
    for status in &updates {
        assert_eq!(state_of(status), state, "{status:?}");
        assert_eq!(reason_of(status), Some(reason), "{status:?}");
        assert_eq!(status.uuid, None, "master-generated updates need no ack");
        assert_eq!(status.source, Some(pb::task_status::Source::Master as i32));
        assert!(
            status
                .message
                .as_deref()
                .is_some_and(|m| m.contains(needle)),
            "update message {:?} should carry the reason",
            status.message
        );
    }
    // No other kind of event.
    assert_eq!(events_to(&out, fw.conn).len(), updates.len(), "{out:?}");
    out
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
fn task_without_name_or_with_custom_executor_is_refused() {
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

// ---------------------------------------------------------------------------
// 3. Who may call
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// 4. DECLINE filters
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// 5. Agent disconnection
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// 6. Framework failover
// ---------------------------------------------------------------------------

#[test]
fn framework_failover_and_failover_timeout() {
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
    let rest = h.one_offer(&fw);

    // Re-subscribe with the same id on a new conn while the old one is live.
    let mut info = framework_info("fw");
    info.id = fw.id.to_field();
    info.failover_timeout = Some(10.0);
    let (result, out) = h.subscribe(11, info);
    assert_eq!(result.as_ref(), Ok(&fw.id));
    assert_eq!(
        error_messages_to(&out, 10),
        vec!["framework failed over".to_string()]
    );
    assert!(out.contains(&Effect::CloseFramework { conn: 10 }));
    assert_eq!(events_of_type(&out, 11, EventType::Subscribed).len(), 1);
    assert!(
        rescinds_to(&out, 10).is_empty(),
        "old offers are dropped silently"
    );
    assert!(
        !h.master
            .offers
            .contains_key(&OfferId::new(offer_id(&rest).value))
    );
    let fw2 = Fw {
        id: fw.id.clone(),
        conn: 11,
        stream: stream_of(11),
    };
    // The old stream id no longer works; the new one does.
    let (result, _) = h.call(&fw, reconcile_call(&fw.id, &[]));
    assert_error(result, ErrKind::InvalidArgument, "stream id");
    h.call_ok(&fw2, reconcile_call(&fw.id, &[]));
    // The task survived failover.
    assert_eq!(
        h.task(&fw.id, "t1").map(|t| t.state),
        Some(pb::TaskState::TaskRunning)
    );
    // The shell reporting the old conn closed changes nothing.
    assert!(h.framework_gone(10).is_empty());
    assert!(h.master.frameworks[&fw.id].active());
    // The new stream gets new offers.
    let rest = h.one_offer(&fw2);
    assert_eq!(offer_resources(&rest), res("cpus:1;mem:896"));

    // Disconnect with failover_timeout 10 s: the offer goes back, no offers meanwhile.
    let out = h.framework_gone(11);
    assert!(out.is_empty(), "nobody to tell: {out:?}");
    assert!(h.master.offers.is_empty());
    assert_eq!(h.free(&agent), res("cpus:1;mem:896"));
    assert!(!h.master.frameworks[&fw.id].active());
    assert!(offers_to(&h.allocate(), 11).is_empty());
    assert!(
        h.master.offers.is_empty(),
        "no offer to an inactive framework"
    );

    h.advance(9.0);
    assert!(h.tick().is_empty());
    assert!(h.master.frameworks.contains_key(&fw.id));
    assert!(h.task(&fw.id, "t1").is_some());

    h.advance(2.0);
    let out = h.tick();
    assert!(
        matches!(&agent_messages(&out, 1)[..], [master_message::Kind::ShutdownFramework(s)] if s.framework_id == fw.id.to_field()),
        "the agent is told to shut the framework down: {out:?}"
    );
    assert!(!h.master.frameworks.contains_key(&fw.id));
    let removed = h
        .master
        .completed_frameworks
        .back()
        .expect("kept as completed");
    assert_eq!(removed.id, fw.id);
    assert_eq!(removed.completed_tasks.len(), 1);
    assert_eq!(removed.completed_tasks[0].state, pb::TaskState::TaskKilled);
    assert!(h.used(&agent).is_empty());
    assert_eq!(h.free(&agent), res("cpus:2;mem:1024"));

    // The id can never subscribe again.
    let mut info = framework_info("fw");
    info.id = fw.id.to_field();
    let (result, out) = h.subscribe(12, info);
    assert!(
        matches!(result, Err(CallError::FailedPrecondition(ref m)) if m.contains("removed")),
        "{result:?}"
    );
    assert!(out.is_empty());
    // Its late status updates are acknowledged by the master itself.
    let out = h.agent_says(
        1,
        status_update(&fw.id, "t1", pb::TaskState::TaskKilled, Some(uuid(5))),
    );
    assert!(
        matches!(&agent_messages(&out, 1)[..], [master_message::Kind::StatusUpdateAck(a)] if a.uuid == uuid(5))
    );
}

#[test]
fn framework_that_resubscribes_in_time_keeps_its_tasks() {
    let (mut h, agent, fw, _offer) = one_agent_one_offer();
    let mut info = framework_info("fw");
    info.id = fw.id.to_field();
    info.failover_timeout = Some(10.0);
    let fw = h.subscribe_ok(11, info.clone());
    let offer = h.one_offer(&fw);
    launch_one(
        &mut h,
        &fw,
        &offer,
        command_task("t1", &agent, "cpus:1;mem:128"),
    );
    let gone_at = h.now().wall;
    h.framework_gone(11);
    assert_eq!(h.master.frameworks[&fw.id].disconnected_at, Some(gone_at));
    h.advance(8.0);
    h.tick();
    let back_at = h.now().wall;
    let fw = h.subscribe_ok(12, info);
    assert_eq!(h.master.frameworks[&fw.id].failover_deadline, None);
    // The UI shows when it failed over; it is connected again.
    assert_eq!(h.master.frameworks[&fw.id].reregistered_at, Some(back_at));
    assert_eq!(h.master.frameworks[&fw.id].disconnected_at, None);
    h.advance(100.0);
    assert!(h.tick().is_empty());
    assert!(h.task(&fw.id, "t1").is_some());
    // Updates reach the new stream.
    let out = h.agent_says(
        1,
        status_update(&fw.id, "t1", pb::TaskState::TaskRunning, Some(uuid(1))),
    );
    assert_eq!(updates_to(&out, 12).len(), 1);
}

#[test]
fn framework_with_zero_failover_timeout_is_removed_at_the_next_tick() {
    let (mut h, _agent, fw, _offer) = one_agent_one_offer();
    h.framework_gone(fw.conn);
    assert!(h.master.frameworks.contains_key(&fw.id));
    h.tick();
    assert!(!h.master.frameworks.contains_key(&fw.id));
}

#[test]
fn updates_for_a_disconnected_framework_are_not_sent() {
    let (mut h, agent, fw, offer) = one_agent_one_offer();
    launch_one(&mut h, &fw, &offer, command_task("t1", &agent, "cpus:1"));
    h.framework_gone(fw.conn);
    let out = h.agent_says(
        1,
        status_update(&fw.id, "t1", pb::TaskState::TaskRunning, Some(uuid(1))),
    );
    assert!(out.is_empty(), "{out:?}");
    // The master still records the state.
    assert_eq!(
        h.task(&fw.id, "t1").map(|t| t.state),
        Some(pb::TaskState::TaskRunning)
    );
}

// ---------------------------------------------------------------------------
// 7. TEARDOWN and KILL
// ---------------------------------------------------------------------------

#[test]
fn teardown_removes_the_framework_and_its_tasks() {
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
    let _rest = h.one_offer(&fw);
    assert_eq!(h.master.offers.len(), 1);
    let out = h.call_ok(&fw, base_call(&fw.id, CallType::Teardown));
    assert!(matches!(
        &agent_messages(&out, 1)[..],
        [master_message::Kind::ShutdownFramework(s)] if s.framework_id == fw.id.to_field()
    ));
    assert!(out.contains(&Effect::CloseFramework { conn: fw.conn }));
    assert!(!h.master.frameworks.contains_key(&fw.id));
    assert!(h.master.offers.is_empty());
    assert!(h.used(&agent).is_empty());
    assert_eq!(h.free(&agent), res("cpus:2;mem:1024"));
    let removed = h.master.completed_frameworks.back().expect("completed");
    assert_eq!(removed.id, fw.id);
    assert_eq!(removed.conn, None);
    assert!(removed.tasks.is_empty());
    assert_eq!(removed.completed_tasks[0].state, pb::TaskState::TaskKilled);
    // The conn is gone: a disconnect report for it is a no-op.
    assert!(h.framework_gone(fw.conn).is_empty());
    // Another framework gets the whole agent.
    let other = h.subscribe_framework(11, "other");
    assert_eq!(
        offer_resources(&h.one_offer(&other)),
        res("cpus:2;mem:1024")
    );
}

/// Runs `t1` under the custom executor `ex` on the agent at conn 1 to
/// TASK_FINISHED and acknowledges it: the framework then has no task on
/// that agent, whose executor lives on, idle.
fn idle_custom_executor(h: &mut Harness, agent: &AgentId, fw: &Fw, offer: &pb::Offer) {
    let mut task = command_task("t1", agent, "cpus:1;mem:128");
    task.command = None;
    task.executor = Some(pb::ExecutorInfo {
        executor_id: Some(pb::ExecutorId { value: "ex".into() }),
        command: Some(pb::CommandInfo {
            value: Some("./executor".into()),
            ..Default::default()
        }),
        ..Default::default()
    });
    launch_one(h, fw, offer, task);
    h.agent_says(
        1,
        status_update(&fw.id, "t1", pb::TaskState::TaskFinished, Some(uuid(1))),
    );
    h.call_ok(fw, ack_call(&fw.id, agent, "t1", uuid(1)));
    assert!(h.task(&fw.id, "t1").is_none(), "the task is completed");
}

fn shutdowns_of(out: &[Effect], conn: ConnId, fw: &FrameworkId) -> usize {
    agent_messages(out, conn)
        .iter()
        .filter(|m| {
            matches!(m, master_message::Kind::ShutdownFramework(s)
                if s.framework_id == fw.to_field())
        })
        .count()
}

#[test]
fn removing_a_framework_shuts_down_its_idle_executors() {
    // TEARDOWN.
    let (mut h, agent, fw, offer) = one_agent_one_offer();
    idle_custom_executor(&mut h, &agent, &fw, &offer);
    let out = h.call_ok(&fw, base_call(&fw.id, CallType::Teardown));
    assert_eq!(shutdowns_of(&out, 1, &fw.id), 1, "{out:?}");

    // The failover timeout: the same removal.
    let (mut h, agent, fw, offer) = one_agent_one_offer();
    idle_custom_executor(&mut h, &agent, &fw, &offer);
    h.framework_gone(fw.conn);
    let out = h.tick();
    assert!(!h.master.frameworks.contains_key(&fw.id), "zero timeout");
    assert_eq!(shutdowns_of(&out, 1, &fw.id), 1, "{out:?}");

    // The agent is away when the framework goes: told when it comes back
    // reporting the framework (it keeps it for the executor), with no task.
    let (mut h, agent, fw, offer) = one_agent_one_offer();
    idle_custom_executor(&mut h, &agent, &fw, &offer);
    h.agent_gone(1);
    let out = h.call_ok(&fw, base_call(&fw.id, CallType::Teardown));
    assert_eq!(shutdowns_of(&out, 1, &fw.id), 0, "nobody to tell");
    let mut info = agent_info("a1", "cpus:2;mem:1024");
    info.id = agent.to_field();
    let mut register = register_msg(info);
    let mut fw_info = framework_info("fw");
    fw_info.id = fw.id.to_field();
    register.frameworks = vec![fw_info];
    let (_, out) = h.register(2, register.clone());
    assert_eq!(shutdowns_of(&out, 2, &fw.id), 1, "{out:?}");
    assert!(!h.master.frameworks.contains_key(&fw.id), "not adopted");
    // Likewise an agent this master has not met (its id from an earlier
    // master), which would otherwise have the framework adopted.
    let mut info = agent_info("a2", "cpus:2;mem:1024");
    info.id = AgentId::new("m0-S7").to_field();
    register.agent_info = Some(info);
    let (id, out) = h.register(3, register);
    assert!(id.is_some(), "{out:?}");
    assert_eq!(shutdowns_of(&out, 3, &fw.id), 1, "{out:?}");
    assert!(!h.master.frameworks.contains_key(&fw.id), "not adopted");
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

// ---------------------------------------------------------------------------
// 8. Master restart: adoption
// ---------------------------------------------------------------------------

fn reported_task(
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

// ---------------------------------------------------------------------------
// 9. Reconciliation
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Status updates
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// 10. Seeded simulation
// ---------------------------------------------------------------------------

const SIM_AGENT_RESOURCES: &str = "cpus:4;mem:4096";

#[derive(Debug, Clone)]
struct SimTask {
    framework_id: FrameworkId,
    resources: Resources,
    /// The latest state this agent reported.
    state: pb::TaskState,
    /// The uuid of the latest update, until acknowledged.
    unacked: Option<Vec<u8>>,
    kill_requested: bool,
}

#[derive(Debug)]
struct SimAgent {
    id: AgentId,
    hostname: String,
    conn: Option<ConnId>,
    tasks: BTreeMap<TaskId, SimTask>,
}

#[derive(Debug)]
struct SimFramework {
    id: FrameworkId,
    info: pb::FrameworkInfo,
    conn: Option<ConnId>,
    /// Updates received that carry a uuid, to acknowledge.
    pending_acks: Vec<(AgentId, TaskId, Vec<u8>)>,
    /// Every offer id ever received, to try stale ones.
    seen_offers: Vec<pb::OfferId>,
}

impl SimFramework {
    fn fw(&self) -> Fw {
        let conn = self.conn.expect("connected");
        Fw {
            id: self.id.clone(),
            conn,
            stream: stream_of(conn),
        }
    }
}

fn effect_label(effect: &Effect) -> &'static str {
    match effect {
        Effect::ToFramework { event, .. } => match EventType::try_from(event.r#type) {
            Ok(EventType::Offers) => "OFFERS",
            Ok(EventType::Rescind) => "RESCIND",
            Ok(EventType::Update)
                if event
                    .update
                    .as_ref()
                    .and_then(|u| u.status.as_ref())
                    .is_some_and(|s| s.uuid.is_none()) =>
            {
                "UPDATE from the master"
            }
            Ok(EventType::Update) => "UPDATE",
            Ok(EventType::Error) => "ERROR",
            _ => "other event",
        },
        Effect::CloseFramework { .. } => "CloseFramework",
        Effect::ToAgent { message, .. } => match &message.kind {
            Some(master_message::Kind::RunTask(_)) => "RunTask",
            Some(master_message::Kind::KillTask(_)) => "KillTask",
            Some(master_message::Kind::StatusUpdateAck(_)) => "StatusUpdateAck",
            Some(master_message::Kind::ShutdownFramework(_)) => "ShutdownFramework",
            _ => "other agent message",
        },
        Effect::CloseAgent { .. } => "CloseAgent",
        Effect::Registry(_) => "Registry",
        Effect::RegistryPolicy(_) => "RegistryPolicy",
        Effect::Observed(_) => "Observed",
    }
}

struct Sim {
    h: Harness,
    rng: StdRng,
    agents: Vec<SimAgent>,
    frameworks: Vec<SimFramework>,
    next_conn: ConnId,
    next_task: u64,
    next_uuid: u64,
    open_framework_conns: BTreeSet<ConnId>,
    open_agent_conns: BTreeSet<ConnId>,
    steps: usize,
    /// How often interesting things happened, to check the simulation covers them.
    stats: BTreeMap<&'static str, u64>,
}

impl Sim {
    fn new(seed: u64, agents: usize, frameworks: usize) -> Self {
        let mut sim = Sim {
            h: Harness::new(),
            rng: StdRng::seed_from_u64(seed),
            agents: Vec::new(),
            frameworks: Vec::new(),
            next_conn: 1,
            next_task: 0,
            next_uuid: 0,
            open_framework_conns: BTreeSet::new(),
            open_agent_conns: BTreeSet::new(),
            steps: 0,
            stats: BTreeMap::new(),
        };
        for i in 0..agents {
            let conn = sim.conn();
            let hostname = format!("agent{i}");
            let id = sim.h.register_agent(conn, &hostname, SIM_AGENT_RESOURCES);
            sim.open_agent_conns.insert(conn);
            sim.agents.push(SimAgent {
                id,
                hostname,
                conn: Some(conn),
                tasks: BTreeMap::new(),
            });
        }
        for i in 0..frameworks {
            let slot = sim.new_framework(i);
            sim.frameworks.push(slot);
        }
        sim
    }

    fn conn(&mut self) -> ConnId {
        self.next_conn += 1;
        self.next_conn
    }

    fn uuid(&mut self) -> Vec<u8> {
        self.next_uuid += 1;
        let mut bytes = vec![0u8; 8];
        bytes.extend_from_slice(&self.next_uuid.to_be_bytes());
        bytes
    }

    /// Subscribes a brand-new framework (with a random failover timeout).
    fn new_framework(&mut self, n: usize) -> SimFramework {
        let conn = self.conn();
        let mut info = framework_info(&format!("fw{n}"));
        info.failover_timeout = Some(self.rng.random_range(0..20) as f64);
        let (result, out) = self.h.subscribe(conn, info.clone());
        let id = result.expect("new framework subscribes");
        info.id = id.to_field();
        self.open_framework_conns.insert(conn);
        let slot = SimFramework {
            id,
            info,
            conn: Some(conn),
            pending_acks: Vec::new(),
            seen_offers: Vec::new(),
        };
        // SUBSCRIBED is the only effect.
        assert_eq!(out.len(), 1, "{out:?}");
        slot
    }

    fn framework_by_conn(&mut self, conn: ConnId) -> Option<&mut SimFramework> {
        self.frameworks.iter_mut().find(|f| f.conn == Some(conn))
    }

    fn agent_by_conn(&mut self, conn: ConnId) -> Option<&mut SimAgent> {
        self.agents.iter_mut().find(|a| a.conn == Some(conn))
    }

    /// Plays the effects as the shell, the agents and the frameworks would.
    fn deliver(&mut self, effects: Vec<Effect>) {
        let mut queue: VecDeque<Effect> = effects.into();
        while let Some(effect) = queue.pop_front() {
            self.count(effect_label(&effect));
            match effect {
                Effect::Registry(entry) => {
                    assert!(
                        AgentId::parse(entry.id.clone()).is_ok(),
                        "registry entry for a valid agent id: {entry:?}"
                    );
                }
                Effect::RegistryPolicy(_) | Effect::Observed(_) => {}
                Effect::ToFramework { conn, event } => {
                    assert!(
                        self.open_framework_conns.contains(&conn),
                        "step {}: event to closed framework conn {conn}: {event:?}",
                        self.steps
                    );
                    let Some(fw) = self.framework_by_conn(conn) else {
                        // A replaced stream: only ERROR may go there.
                        assert_eq!(event.r#type, EventType::Error as i32, "{event:?}");
                        continue;
                    };
                    match EventType::try_from(event.r#type) {
                        Ok(EventType::Offers) => {
                            let offers = event.offers.expect("offers").offers;
                            assert!(!offers.is_empty());
                            for offer in offers {
                                assert_eq!(offer.framework_id, fw.id.to_field());
                                fw.seen_offers.push(offer.id.expect("offer id"));
                            }
                        }
                        Ok(EventType::Update) => {
                            let status = event.update.and_then(|u| u.status).expect("status");
                            if let Some(uuid) = status.uuid {
                                let agent = AgentId::new(status.agent_id.expect("agent id").value);
                                let task = TaskId::new(status.task_id.expect("task id").value);
                                fw.pending_acks.push((agent, task, uuid));
                            }
                        }
                        Ok(EventType::Rescind | EventType::Message | EventType::Subscribed) => {}
                        Ok(EventType::Error) => {
                            // Only removal closes a live stream.
                            let message = event.error.expect("error").message;
                            assert_eq!(message, "framework has been removed");
                        }
                        other => panic!("unexpected event {other:?}"),
                    }
                }
                Effect::CloseFramework { conn } => {
                    assert!(
                        self.open_framework_conns.remove(&conn),
                        "closing a closed conn {conn}"
                    );
                    if let Some(fw) = self.framework_by_conn(conn) {
                        fw.conn = None;
                        fw.pending_acks.clear();
                    }
                    // The shell reports the stream ended.
                    let mut out = Vec::new();
                    self.h
                        .master
                        .framework_disconnected(self.h.now(), conn, &mut out);
                    assert!(
                        out.is_empty(),
                        "disconnect of a closed stream does nothing: {out:?}"
                    );
                }
                Effect::ToAgent { conn, message } => {
                    assert!(
                        self.open_agent_conns.contains(&conn),
                        "step {}: message to closed agent conn {conn}: {message:?}",
                        self.steps
                    );
                    let step = self.steps;
                    let Some(agent) = self.agent_by_conn(conn) else {
                        panic!("step {step}: message to a replaced agent conn: {message:?}");
                    };
                    match message.kind.expect("message kind") {
                        master_message::Kind::Registered(r) => {
                            assert_eq!(r.agent_id, agent.id.to_field());
                        }
                        master_message::Kind::RunTask(run) => {
                            let task = run.task.expect("task");
                            assert_eq!(task.agent_id, agent.id.to_field());
                            let id = TaskId::from_field(&task.task_id).expect("valid id");
                            let framework_id =
                                FrameworkId::from_field(&run.framework.and_then(|f| f.id))
                                    .expect("fw");
                            let previous = agent.tasks.insert(
                                id.clone(),
                                SimTask {
                                    framework_id,
                                    resources: Resources::from_proto(&task.resources)
                                        .expect("resources"),
                                    state: pb::TaskState::TaskStaging,
                                    unacked: None,
                                    kill_requested: false,
                                },
                            );
                            assert!(previous.is_none(), "task {id} launched twice");
                        }
                        master_message::Kind::KillTask(kill) => {
                            let id = TaskId::from_field(&kill.task_id).expect("valid id");
                            let task = agent
                                .tasks
                                .get_mut(&id)
                                .expect("kill of a task the agent runs");
                            assert!(
                                !agora_core::task::is_terminal(task.state),
                                "kill of a terminal task"
                            );
                            task.kill_requested = true;
                        }
                        master_message::Kind::StatusUpdateAck(ack) => {
                            let id = TaskId::from_field(&ack.task_id).expect("valid id");
                            if let Some(task) = agent.tasks.get_mut(&id)
                                && task.unacked.as_deref() == Some(ack.uuid.as_slice())
                            {
                                task.unacked = None;
                                if agora_core::task::is_terminal(task.state) {
                                    agent.tasks.remove(&id);
                                }
                            }
                        }
                        master_message::Kind::ShutdownFramework(shutdown) => {
                            let framework_id =
                                FrameworkId::from_field(&shutdown.framework_id).expect("fw");
                            agent.tasks.retain(|_, t| t.framework_id != framework_id);
                        }
                        master_message::Kind::Refused(r) => panic!("agent refused: {r:?}"),
                        master_message::Kind::Ping(_) => {}
                        other => panic!("unexpected agent message {other:?}"),
                    }
                }
                Effect::CloseAgent { conn } => {
                    assert!(
                        self.open_agent_conns.remove(&conn),
                        "closing a closed agent conn {conn}"
                    );
                    let mut out = Vec::new();
                    self.h
                        .master
                        .agent_disconnected(self.h.now(), conn, &mut out);
                    assert!(out.is_empty(), "{out:?}");
                }
            }
        }
    }

    fn count(&mut self, what: &'static str) {
        *self.stats.entry(what).or_default() += 1;
    }

    fn connected_frameworks(&self) -> Vec<usize> {
        (0..self.frameworks.len())
            .filter(|&i| self.frameworks[i].conn.is_some())
            .collect()
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        if items.is_empty() {
            None
        } else {
            Some(items[self.rng.random_range(0..items.len())])
        }
    }

    fn step(&mut self) {
        self.steps += 1;
        let roll = self.rng.random_range(0..100);
        match roll {
            0..8 => {
                let out = self.h.allocate();
                self.deliver(out);
            }
            // Event-driven: just the agents whose resources were freed.
            8..15 => {
                let mut out = Vec::new();
                let now = self.h.now();
                self.h.master.allocate_pending(now, &mut out);
                self.deliver(out);
            }
            15..35 => self.accept_valid(),
            35..40 => self.accept_invalid(),
            40..48 => self.decline(),
            48..68 => self.agent_status_update(),
            68..80 => self.acknowledge(),
            80..83 => self.kill(),
            83..86 => self.toggle_agent(),
            86..92 => self.toggle_framework(),
            92..98 => {
                let secs = self.rng.random_range(1..30) as f64 / 10.0;
                self.h.advance(secs);
                let out = self.h.tick();
                self.deliver(out);
            }
            _ => self.reconcile(),
        }
        self.check_invariants();
    }

    fn offers_of(&self, framework_id: &FrameworkId) -> Vec<OfferId> {
        self.h
            .master
            .offers
            .values()
            .filter(|o| &o.framework_id == framework_id)
            .map(|o| o.id.clone())
            .collect()
    }

    fn accept_valid(&mut self) {
        let Some(f) = self.pick(&self.connected_frameworks()) else {
            return;
        };
        let offers = self.offers_of(&self.frameworks[f].id);
        let Some(index) = self.pick(&(0..offers.len()).collect::<Vec<_>>()) else {
            return;
        };
        let offer = self.h.master.offers[&offers[index]].clone();
        let mut remaining = offer.resources.clone();
        let mut tasks = Vec::new();
        for _ in 0..self.rng.random_range(0..4) {
            let cpus = [0.5, 1.0, 1.5][self.rng.random_range(0..3)];
            let mem = [128, 256, 512][self.rng.random_range(0..3)];
            let wanted = res(&format!("cpus:{cpus};mem:{mem}"));
            if !remaining.contains(&wanted) {
                continue;
            }
            remaining.subtract(&wanted);
            self.next_task += 1;
            let id = format!("task-{}", self.next_task);
            tasks.push(command_task(&id, &offer.agent_id, &wanted.to_string()));
        }
        let refuse = [None, Some(0.0), Some(1.0)][self.rng.random_range(0..3)];
        let n = tasks.len();
        let fw = self.frameworks[f].fw();
        let (result, out) = self.h.call(
            &fw,
            launch_call(&fw.id, &[offer.id.to_proto()], tasks, refuse),
        );
        assert_eq!(result, Ok(()), "step {}: valid accept", self.steps);
        let runs = run_tasks(&out);
        assert_eq!(runs.len(), n);
        let agent_conn = self.h.master.agents[&offer.agent_id].conn;
        assert!(runs.iter().all(|(conn, _)| Some(*conn) == agent_conn));
        assert!(!self.h.master.offers.contains_key(&offer.id));
        self.deliver(out);
    }

    fn accept_invalid(&mut self) {
        let Some(f) = self.pick(&self.connected_frameworks()) else {
            return;
        };
        let fw = self.frameworks[f].fw();
        let agent = self.agents[self.rng.random_range(0..self.agents.len())]
            .id
            .clone();
        let (offer, expect_kind) =
            if self.rng.random_bool(0.5) && !self.frameworks[f].seen_offers.is_empty() {
                // A stale (or maybe still valid) offer, with a task far too big.
                let seen = &self.frameworks[f].seen_offers;
                (seen[self.rng.random_range(0..seen.len())].clone(), None)
            } else {
                (
                    pb::OfferId {
                        value: format!("bogus-{}", self.steps),
                    },
                    Some(ErrKind::NotFound),
                )
            };
        self.next_task += 1;
        let task = command_task(
            &format!("task-{}", self.next_task),
            &agent,
            "cpus:64;mem:128",
        );
        let before = snapshot(&self.h);
        let (result, out) = self
            .h
            .call(&fw, launch_call(&fw.id, &[offer], vec![task], None));
        let error = result.expect_err("invalid accept must be refused");
        if let Some(kind) = expect_kind {
            assert_eq!(kind_of(&error).0, kind);
        }
        assert!(run_tasks(&out).is_empty());
        assert_unchanged(&self.h, &before);
        let updates = updates_to(&out, fw.conn);
        assert_eq!(updates.len(), 1);
        assert!(matches!(
            state_of(&updates[0]),
            pb::TaskState::TaskLost | pb::TaskState::TaskError
        ));
        self.deliver(out);
    }

    fn decline(&mut self) {
        let Some(f) = self.pick(&self.connected_frameworks()) else {
            return;
        };
        let offers = self.offers_of(&self.frameworks[f].id);
        if offers.is_empty() {
            return;
        }
        let take = self.rng.random_range(1..=offers.len());
        let ids: Vec<pb::OfferId> = offers[..take].iter().map(OfferId::to_proto).collect();
        let refuse = [None, Some(0.0), Some(1.0), Some(5.0)][self.rng.random_range(0..4)];
        let fw = self.frameworks[f].fw();
        let out = self.h.call_ok(&fw, decline_call(&fw.id, &ids, refuse));
        assert!(
            offers[..take]
                .iter()
                .all(|o| !self.h.master.offers.contains_key(o))
        );
        self.deliver(out);
    }

    fn agent_status_update(&mut self) {
        let connected: Vec<usize> = (0..self.agents.len())
            .filter(|&i| self.agents[i].conn.is_some())
            .collect();
        let Some(a) = self.pick(&connected) else {
            return;
        };
        let live: Vec<TaskId> = self.agents[a]
            .tasks
            .iter()
            .filter(|(_, t)| !agora_core::task::is_terminal(t.state))
            .map(|(id, _)| id.clone())
            .collect();
        if live.is_empty() {
            return;
        }
        let task_id = live[self.rng.random_range(0..live.len())].clone();
        let task = &self.agents[a].tasks[&task_id];
        let state = if task.kill_requested {
            pb::TaskState::TaskKilled
        } else {
            match (task.state, self.rng.random_range(0..10)) {
                (pb::TaskState::TaskStaging, 0..7) => pb::TaskState::TaskRunning,
                (pb::TaskState::TaskStaging, _) => pb::TaskState::TaskFailed,
                (_, 0..2) => pb::TaskState::TaskRunning,
                (_, 2..7) => pb::TaskState::TaskFinished,
                _ => pb::TaskState::TaskFailed,
            }
        };
        let framework_id = task.framework_id.clone();
        let uuid = self.uuid();
        let conn = self.agents[a].conn.expect("connected");
        let task = self.agents[a].tasks.get_mut(&task_id).expect("task");
        task.state = state;
        task.unacked = Some(uuid.clone());
        let out = self.h.agent_says(
            conn,
            status_update(&framework_id, task_id.as_str(), state, Some(uuid)),
        );
        let known = self
            .h
            .master
            .frameworks
            .get(&framework_id)
            .and_then(|f| f.tasks.get(&task_id));
        assert_eq!(
            known.map(|t| t.state),
            Some(state),
            "step {}: master tracks the state",
            self.steps
        );
        self.deliver(out);
    }

    fn acknowledge(&mut self) {
        let with_acks: Vec<usize> = self
            .connected_frameworks()
            .into_iter()
            .filter(|&i| !self.frameworks[i].pending_acks.is_empty())
            .collect();
        let Some(f) = self.pick(&with_acks) else {
            return;
        };
        let pending = &mut self.frameworks[f].pending_acks;
        let (agent, task, uuid) = pending.remove(self.rng.random_range(0..pending.len()));
        let fw = self.frameworks[f].fw();
        if !self.h.master.frameworks[&fw.id].tasks.contains_key(&task) {
            // Acknowledged already (an earlier update was acknowledged after a
            // later terminal one), or a retry after a lost ack.
            self.count("ack of a completed task");
        }
        let (result, out) = self
            .h
            .call(&fw, ack_call(&fw.id, &agent, task.as_str(), uuid.clone()));
        // Every update a framework got is for a task it still knows, live
        // or completed, so its ack always goes through to the agent.
        match result {
            Ok(()) => {
                let agent_conn = self.h.master.agents[&agent].conn;
                let acks = out
                    .iter()
                    .filter(|e| matches!(e, Effect::ToAgent { conn, message: MasterMessage { kind: Some(master_message::Kind::StatusUpdateAck(a)) } } if Some(*conn) == agent_conn && a.uuid == uuid))
                    .count();
                assert_eq!(
                    acks,
                    usize::from(agent_conn.is_some()),
                    "step {}: {out:?}",
                    self.steps
                );
            }
            Err(e) => panic!("step {}: unexpected ack error {e:?}", self.steps),
        }
        self.deliver(out);
    }

    fn kill(&mut self) {
        let Some(f) = self.pick(&self.connected_frameworks()) else {
            return;
        };
        let fw = self.frameworks[f].fw();
        let tasks: Vec<TaskId> = self.h.master.frameworks[&fw.id]
            .tasks
            .keys()
            .cloned()
            .collect();
        let task = if tasks.is_empty() || self.rng.random_bool(0.1) {
            "never-launched".to_string()
        } else {
            tasks[self.rng.random_range(0..tasks.len())]
                .as_str()
                .to_string()
        };
        let out = self.h.call_ok(&fw, kill_call(&fw.id, &task));
        self.deliver(out);
    }

    fn reconcile(&mut self) {
        let Some(f) = self.pick(&self.connected_frameworks()) else {
            return;
        };
        let fw = self.frameworks[f].fw();
        let live = self.h.master.frameworks[&fw.id].tasks.len();
        let out = self.h.call_ok(&fw, reconcile_call(&fw.id, &[]));
        let updates = updates_to(&out, fw.conn);
        assert_eq!(updates.len(), live);
        assert!(updates.iter().all(|u| u.uuid.is_none()));
        self.deliver(out);
    }

    fn toggle_agent(&mut self) {
        let a = self.rng.random_range(0..self.agents.len());
        let replace_live_session = self.rng.random_bool(0.2);
        if let Some(conn) = self.agents[a].conn
            && !replace_live_session
        {
            let out = self.h.agent_gone(conn);
            self.agents[a].conn = None;
            self.open_agent_conns.remove(&conn);
            assert!(
                self.h
                    .master
                    .offers
                    .values()
                    .all(|o| o.agent_id != self.agents[a].id)
            );
            self.deliver(out);
        } else {
            let conn = self.conn();
            let agent = &mut self.agents[a];
            let old_conn = agent.conn.replace(conn);
            let mut info = agent_info(&agent.hostname, SIM_AGENT_RESOURCES);
            info.id = agent.id.to_field();
            let tasks: Vec<pb::Task> = agent
                .tasks
                .iter()
                .map(|(id, t)| pb::Task {
                    name: format!("task {id}"),
                    task_id: id.to_field(),
                    framework_id: t.framework_id.to_field(),
                    agent_id: agent.id.to_field(),
                    state: Some(t.state as i32),
                    resources: t.resources.to_proto(None),
                    ..Default::default()
                })
                .collect();
            let frameworks = self.frameworks.iter().map(|f| f.info.clone()).collect();
            let register = agent_message::Register {
                agent_info: Some(info),
                version: "sim".into(),
                tasks,
                frameworks,
            };
            self.open_agent_conns.insert(conn);
            let (id, out) = self.h.register(conn, register);
            assert_eq!(id.as_ref(), Some(&self.agents[a].id));
            if let Some(old) = old_conn {
                // A new session replaces a live one: the old one is closed.
                self.count("agent session replaced");
                assert!(out.contains(&Effect::CloseAgent { conn: old }), "{out:?}");
            }
            self.deliver(out);
            // The agent retries the updates still waiting for an ack.
            let retries: Vec<(FrameworkId, TaskId, pb::TaskState, Vec<u8>)> = self.agents[a]
                .tasks
                .iter()
                .filter_map(|(id, t)| {
                    let uuid = t.unacked.clone()?;
                    Some((t.framework_id.clone(), id.clone(), t.state, uuid))
                })
                .collect();
            for (framework_id, task_id, state, uuid) in retries {
                if self.agents[a].conn != Some(conn) {
                    break;
                }
                let out = self.h.agent_says(
                    conn,
                    status_update(&framework_id, task_id.as_str(), state, Some(uuid)),
                );
                self.deliver(out);
            }
        }
    }

    fn toggle_framework(&mut self) {
        let f = self.rng.random_range(0..self.frameworks.len());
        let roll = self.rng.random_range(0..10);
        match self.frameworks[f].conn {
            Some(_) if roll == 0 => {
                // TEARDOWN: the stream gets ERROR and is closed, the tasks killed.
                self.count("teardown");
                let fw = self.frameworks[f].fw();
                let out = self.h.call_ok(&fw, base_call(&fw.id, CallType::Teardown));
                assert!(out.contains(&Effect::CloseFramework { conn: fw.conn }));
                assert!(!self.h.master.frameworks.contains_key(&fw.id));
                self.deliver(out);
                assert_eq!(self.frameworks[f].conn, None);
                let n = self.frameworks.len() + f * 100 + self.steps;
                self.frameworks[f] = self.new_framework(n);
            }
            Some(conn) if roll < 8 => {
                // The stream ends.
                let out = self.h.framework_gone(conn);
                self.open_framework_conns.remove(&conn);
                self.frameworks[f].conn = None;
                self.frameworks[f].pending_acks.clear();
                assert!(self.offers_of(&self.frameworks[f].id).is_empty());
                self.deliver(out);
            }
            _ => {
                // (Re-)subscribe with its id, on a new stream.
                let conn = self.conn();
                let info = self.frameworks[f].info.clone();
                let removed = !self
                    .h
                    .master
                    .frameworks
                    .contains_key(&self.frameworks[f].id);
                let (result, out) = self.h.subscribe(conn, info);
                if removed {
                    assert!(
                        matches!(result, Err(CallError::FailedPrecondition(_))),
                        "{result:?}"
                    );
                    assert!(out.is_empty());
                    let n = self.frameworks.len() + f * 100 + self.steps;
                    self.frameworks[f] = self.new_framework(n);
                    return;
                }
                assert_eq!(result.as_ref(), Ok(&self.frameworks[f].id));
                self.open_framework_conns.insert(conn);
                if let Some(old) = self.frameworks[f].conn.replace(conn) {
                    // Failover while connected: the old stream gets ERROR and is closed.
                    self.count("failover of a live stream");
                    assert!(out.contains(&Effect::CloseFramework { conn: old }));
                    let position = out
                        .iter()
                        .position(|e| e == &Effect::CloseFramework { conn: old });
                    let error_first = out.iter().position(
                        |e| matches!(e, Effect::ToFramework { conn: c, .. } if *c == old),
                    );
                    assert!(error_first < position);
                    assert_eq!(
                        error_messages_to(&out, old),
                        vec!["framework failed over".to_string()]
                    );
                }
                self.frameworks[f].pending_acks.clear();
                self.deliver(out);
            }
        }
    }

    fn check_invariants(&self) {
        let master = &self.h.master;
        let step = self.steps;
        let free = master.free_resources();
        // Per agent: used + offered fits in total, and the allocator agrees.
        for (agent_id, agent) in &master.agents {
            let mut offered = Resources::new();
            for offer in master.offers.values().filter(|o| &o.agent_id == agent_id) {
                offered.add(&offer.resources);
            }
            let mut committed = agent.used.clone();
            committed.add(&offered);
            assert!(
                agent.total.contains(&committed),
                "step {step}: agent {agent_id} overcommitted: used {} + offered {offered} > total {}",
                agent.used,
                agent.total
            );
            let mut accounted = committed.clone();
            accounted.add(&free[agent_id]);
            assert_eq!(
                accounted, agent.total,
                "step {step}: agent {agent_id}: free {} + used {} + offered {offered} != total",
                free[agent_id], agent.used
            );
            // `used` is exactly the sum of the agent's unreleased tasks.
            let mut tasks_used = Resources::new();
            for task in master.frameworks.values().flat_map(|f| f.tasks.values()) {
                if &task.agent_id == agent_id && !task.resources_released {
                    tasks_used.add(&task.resources);
                }
            }
            assert_eq!(tasks_used, agent.used, "step {step}: agent {agent_id} used");
        }
        // Offers refer to live agents and connected frameworks, both ways.
        for (id, offer) in &master.offers {
            assert_eq!(&offer.id, id);
            let agent = master
                .agents
                .get(&offer.agent_id)
                .unwrap_or_else(|| panic!("step {step}: offer {id} on a missing agent"));
            assert!(
                agent.conn.is_some(),
                "step {step}: offer {id} on a disconnected agent"
            );
            let framework = master
                .frameworks
                .get(&offer.framework_id)
                .unwrap_or_else(|| panic!("step {step}: offer {id} to a missing framework"));
            assert!(
                framework.active(),
                "step {step}: offer {id} to a disconnected framework"
            );
            assert!(
                framework.offers.contains(id),
                "step {step}: framework does not list offer {id}"
            );
            assert!(!offer.resources.is_empty());
        }
        for framework in master.frameworks.values() {
            for id in &framework.offers {
                assert!(
                    master.offers.contains_key(id),
                    "step {step}: dangling offer {id}"
                );
            }
        }
        // A task is in one framework only, and its state and release agree.
        let mut seen: BTreeMap<&TaskId, &FrameworkId> = BTreeMap::new();
        for (framework_id, framework) in &master.frameworks {
            assert_eq!(&framework.id, framework_id);
            for (task_id, task) in &framework.tasks {
                assert_eq!(&task.id, task_id);
                assert_eq!(&task.framework_id, framework_id);
                if let Some(other) = seen.insert(task_id, framework_id) {
                    panic!("step {step}: task {task_id} in {other} and {framework_id}");
                }
                assert_eq!(
                    task.resources_released,
                    agora_core::task::is_terminal(task.state),
                    "step {step}: task {task_id} release flag"
                );
                assert!(master.agents.contains_key(&task.agent_id));
            }
            for task in &framework.completed_tasks {
                assert!(agora_core::task::is_terminal(task.state));
                assert!(task.resources_released);
                assert!(
                    !framework.tasks.contains_key(&task.id),
                    "step {step}: {} live and completed",
                    task.id
                );
            }
        }
        // Connections: the test's view matches the master's.
        for fw in &self.frameworks {
            match master.frameworks.get(&fw.id) {
                Some(framework) => assert_eq!(
                    framework.conn, fw.conn,
                    "step {step}: framework {} conn",
                    fw.id
                ),
                None => assert_eq!(fw.conn, None),
            }
        }
        // Each connected agent runs exactly the tasks the master thinks are live there.
        for agent in &self.agents {
            assert_eq!(master.agents[&agent.id].conn, agent.conn);
            if agent.conn.is_none() {
                continue;
            }
            let on_agent: BTreeSet<(&FrameworkId, &TaskId)> = agent
                .tasks
                .iter()
                .filter(|(_, t)| !agora_core::task::is_terminal(t.state))
                .map(|(id, t)| (&t.framework_id, id))
                .collect();
            let in_master: BTreeSet<(&FrameworkId, &TaskId)> = master
                .frameworks
                .values()
                .flat_map(|f| f.tasks.values())
                .filter(|t| t.agent_id == agent.id && !agora_core::task::is_terminal(t.state))
                .map(|t| (&t.framework_id, &t.id))
                .collect();
            assert_eq!(on_agent, in_master, "step {step}: agent {} tasks", agent.id);
        }
    }
}

#[test]
fn seeded_simulation_keeps_the_books_straight() {
    let mut stats: BTreeMap<&'static str, u64> = BTreeMap::new();
    for seed in 0..8 {
        let mut sim = Sim::new(seed, 4, 3);
        sim.check_invariants();
        for _ in 0..2000 {
            sim.step();
        }
        for (what, n) in &sim.stats {
            *stats.entry(what).or_default() += n;
        }
        // The simulation did real work.
        assert!(
            sim.h.master.counters.tasks_launched > 50,
            "seed {seed}: {:?}",
            sim.h.master.counters
        );
        assert!(sim.h.master.counters.offers_declined > 0, "seed {seed}");
        assert!(sim.h.master.counters.offers_rescinded > 0, "seed {seed}");
    }
    // Over all seeds, every kind of event happened.
    for what in [
        "OFFERS",
        "RESCIND",
        "UPDATE",
        "UPDATE from the master",
        "ERROR",
        "CloseFramework",
        "RunTask",
        "KillTask",
        "StatusUpdateAck",
        "ShutdownFramework",
        "CloseAgent",
        "ack of a completed task",
        "agent session replaced",
        "teardown",
        "failover of a live stream",
    ] {
        assert!(
            stats.get(what).copied().unwrap_or(0) > 0,
            "never happened: {what} ({stats:?})"
        );
    }
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
fn retried_terminal_update_after_a_lost_ack_can_still_be_acknowledged() {
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
    // The agent's stream breaks; the framework's ack cannot reach it.
    h.agent_gone(1);
    let out = h.call_ok(&fw, ack_call(&fw.id, &agent, "t1", uuid(1)));
    assert!(out.is_empty(), "no agent conn to send the ack on: {out:?}");
    // The agent comes back with the unacknowledged terminal task and retries
    // the update, which the framework acknowledges again.
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
    let updates = updates_to(&out, fw.conn);
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].uuid, Some(uuid(1)));
    let out = h.call_ok(&fw, ack_call(&fw.id, &agent, "t1", uuid(1)));
    assert!(
        matches!(&agent_messages(&out, 2)[..], [master_message::Kind::StatusUpdateAck(a)] if a.uuid == uuid(1)),
        "the retried update's ack must reach the agent: {out:?}"
    );
    assert!(h.used(&agent).is_empty());
    assert_eq!(h.master.frameworks[&fw.id].completed_tasks.len(), 1);
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

// ---------------------------------------------------------------------------
// Agent health: pings, unreachable agents, and their return
// ---------------------------------------------------------------------------

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
fn health_cluster(aware: bool) -> (Harness, AgentId, Fw) {
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

// ---------------------------------------------------------------------------
// Registry: entries written on change, recovery after a failover
// ---------------------------------------------------------------------------

fn registry_writes(effects: &[Effect]) -> Vec<RegistryAgent> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Registry(entry) => Some(entry.clone()),
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

    // An expected agent re-registers: no registry write needed.
    let mut back = register_msg(agent_info("a0", "cpus:2;mem:1024"));
    back.agent_info.as_mut().expect("info").id = a0.to_field();
    let (id, out) = h.register(1, back);
    assert_eq!(id, Some(a0.clone()));
    assert!(registry_writes(&out).is_empty());
    assert_eq!(h.master.recovering_agents(), 1);

    // A gone agent may not come back.
    let mut gone = register_msg(agent_info("a3", "cpus:2;mem:1024"));
    gone.agent_info.as_mut().expect("info").id = AgentId::new("m1-S3").to_field();
    let (id, out) = h.register(3, gone);
    assert_eq!(id, None);
    assert!(matches!(
        &agent_messages(&out, 3)[..],
        [master_message::Kind::Refused(_)]
    ));

    // The window closes: the missing agent is unreachable, and written so.
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
    let a1 = AgentId::new("m1-S1");
    let out = h.call_ok(&fw, reconcile_call(&fw.id, &[("t1", Some(&a1))]));
    assert_eq!(
        state_of(&updates_to(&out, fw.conn)[0]),
        pb::TaskState::TaskUnreachable
    );
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

// ---------------------------------------------------------------------------
// Framework reservations: RESERVE and UNRESERVE offer operations
// ---------------------------------------------------------------------------

fn accept_ops(
    framework_id: &FrameworkId,
    offer: &pb::Offer,
    operations: Vec<pb::offer::Operation>,
) -> sched::Call {
    sched::Call {
        accept: Some(sched::call::Accept {
            offer_ids: vec![offer_id(offer)],
            operations,
            filters: Some(pb::Filters {
                refuse_seconds: Some(0.0),
            }),
        }),
        ..base_call(framework_id, CallType::Accept)
    }
}

fn reserve_op(resources: &str) -> pb::offer::Operation {
    pb::offer::Operation {
        r#type: Some(pb::offer::operation::Type::Reserve as i32),
        reserve: Some(pb::offer::operation::Reserve {
            source: Vec::new(),
            resources: res(resources).to_proto(None),
        }),
        ..Default::default()
    }
}

fn unreserve_op(resources: &str) -> pb::offer::Operation {
    pb::offer::Operation {
        r#type: Some(pb::offer::operation::Type::Unreserve as i32),
        unreserve: Some(pb::offer::operation::Unreserve {
            resources: res(resources).to_proto(None),
        }),
        ..Default::default()
    }
}

fn launch_op(task: pb::TaskInfo) -> pb::offer::Operation {
    pb::offer::Operation {
        r#type: Some(pb::offer::operation::Type::Launch as i32),
        launch: Some(pb::offer::operation::Launch {
            task_infos: vec![task],
        }),
        ..Default::default()
    }
}

fn in_role(name: &str, role: &str) -> pb::FrameworkInfo {
    let mut info = framework_info(name);
    info.roles = vec![role.into()];
    info
}

#[test]
fn a_framework_reserves_for_its_role_launches_on_the_reservation_and_unreserves() {
    let mut h = Harness::new();
    let agent = h.register_agent(1, "a1", "cpus:2;mem:1024");
    let ops = h.subscribe_ok(10, in_role("ops-fw", "ops"));
    let offer = h.one_offer(&ops);
    let out = h.call_ok(
        &ops,
        accept_ops(
            &ops.id,
            &offer,
            vec![
                reserve_op("cpus(ops):1;mem(ops):256"),
                launch_op(command_task(
                    "t1",
                    &agent,
                    "cpus(ops, dynamic):0.5;mem(ops, dynamic):128",
                )),
            ],
        ),
    );
    assert_eq!(run_tasks(&out).len(), 1);
    assert_eq!(
        h.master.agents[&agent].total,
        res("cpus:1;mem:768;cpus(ops, dynamic):1;mem(ops, dynamic):256")
    );
    let writes = registry_writes(&out);
    assert_eq!(
        writes.len(),
        1,
        "the reservation is kept with the agent's registry entry"
    );
    assert!(
        writes[0].resources.contains("cpus(ops, dynamic):1"),
        "{}",
        writes[0].resources
    );

    // Another role is never offered the reserved part.
    let dev = h.subscribe_ok(11, in_role("dev-fw", "dev"));
    let out = h.allocate();
    for offer in offers_to(&out, dev.conn) {
        assert!(
            !offer_resources(&offer).to_string().contains("(ops"),
            "{offer:?}"
        );
    }
    let mut held: Vec<pb::Offer> = offers_to(&out, ops.conn);
    // The reserving framework's task ends; it unreserves what it holds.
    h.agent_says(
        1,
        status_update(&ops.id, "t1", pb::TaskState::TaskFinished, Some(uuid(1))),
    );
    h.call_ok(&ops, ack_call(&ops.id, &agent, "t1", uuid(1)));
    // The reservation may come back in more than one offer: accept them together.
    let wanted = res("cpus(ops, dynamic):1;mem(ops, dynamic):256");
    for _ in 0..4 {
        held.extend(offers_to(&h.allocate(), ops.conn));
        let mut pool = Resources::new();
        for o in &held {
            pool.add(&offer_resources(o));
        }
        if pool.contains(&wanted) {
            break;
        }
        h.advance(6.0);
    }
    let ids: Vec<pb::OfferId> = held.iter().map(offer_id).collect();
    let mut call = accept_ops(
        &ops.id,
        &held[0],
        vec![unreserve_op("cpus(ops):1;mem(ops):256")],
    );
    if let Some(accept) = call.accept.as_mut() {
        accept.offer_ids = ids;
    }
    h.call_ok(&ops, call);
    assert_eq!(h.master.agents[&agent].total, res("cpus:2;mem:1024"));
}

#[test]
fn bad_reservations_are_refused_and_change_nothing() {
    let mut h = Harness::new();
    let agent = h.register_agent(1, "a1", "cpus:2;mem:1024");
    let star = h.subscribe_framework(10, "star");
    let offer = h.one_offer(&star);
    let (result, _) = h.call(
        &star,
        accept_ops(&star.id, &offer, vec![reserve_op("cpus(ops):1")]),
    );
    assert_error(result, ErrKind::InvalidArgument, "role '*'");
    let ops = h.subscribe_ok(11, in_role("ops-fw", "ops"));
    h.framework_gone(10);
    let offer = h.one_offer(&ops);
    for (op, needle) in [
        (
            reserve_op("cpus(dev):1"),
            "must all be reserved for role 'ops'",
        ),
        (reserve_op("cpus(ops):5"), "remain in the offers"),
        (unreserve_op("cpus(ops):1"), "remain in the offers"),
    ] {
        let before = h.master.agents[&agent].total.clone();
        let (result, out) = h.call(&ops, accept_ops(&ops.id, &offer, vec![op]));
        assert_error(result, ErrKind::InvalidArgument, needle);
        assert!(registry_writes(&out).is_empty());
        assert_eq!(h.master.agents[&agent].total, before);
        assert!(
            h.master
                .offers
                .contains_key(&agora_core::OfferId::new(offer_id(&offer).value))
        );
    }
}
