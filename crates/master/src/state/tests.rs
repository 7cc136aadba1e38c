//! Unit tests of the master's state machine, driven through its public inputs
//! with a clock the tests control. This file is the harness (a master, its
//! inputs, what to read from its effects, and a check of its books after
//! every input); the tests live in `tests/`, one file per module they test
//! (`launch.rs` for `state/launch.rs`, ...) or per concern that spans them
//! (`isolation.rs`, `absence.rs`, ...). The seeded random simulation, with
//! its network model and master failovers, is `tests/simulation.rs` at the
//! crate's root.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use agora_allocator::DrfAllocator;
use agora_core::{AgentId, FrameworkId, OfferId, Resources, TaskId};
use agora_proto::v1 as pb;
use agora_proto::v1::agent::{MasterMessage, agent_message, master_message};
use agora_proto::v1::scheduler as sched;
use sched::call::Type as CallType;
use sched::event::Type as EventType;

use super::*;

mod absence;
mod admission;
mod agents;
mod authn;
mod authz;
mod calls;
mod control;
mod frameworks;
mod health;
mod isolation;
mod launch;
mod launch_size;
mod observe;
mod operator;
mod registry;
mod reservations;
mod resource_kinds;
mod validation;
mod wire;

// Helpers of one file that others use too.
use agents::reported_task;
use health::health_cluster;
use registry::registry_writes;
use reservations::{accept_ops, reserve_op, unreserve_op};

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
            Effect::ToFramework { conn: c, event } if *c == conn => Some(&**event),
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
            Effect::ToAgent { conn: c, message } if *c == conn => message.kind.clone(),
            _ => None,
        })
        .collect()
}

/// Every RunTask in the effects, whichever connection it goes to.
fn run_tasks(effects: &[Effect]) -> Vec<(ConnId, master_message::RunTask)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::ToAgent { conn, message } => match &message.kind {
                Some(master_message::Kind::RunTask(run)) => Some((*conn, run.clone())),
                _ => None,
            },
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
        check_books(&self.master);
        // The registry makes the admission durable at once (see
        // `tests/admission.rs` for what happens until it does).
        for ticket in super::admission::asked_tickets(&out) {
            self.master.admission_durable(self.now(), ticket, &mut out);
            check_books(&self.master);
        }
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
        check_books(&self.master);
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
        check_books(&self.master);
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
        check_books(&self.master);
        out
    }

    fn tick(&mut self) -> Vec<Effect> {
        let mut out = Vec::new();
        self.master.tick(self.now(), &mut out);
        check_books(&self.master);
        out
    }

    fn agent_says(&mut self, conn: ConnId, message: agent_message::Kind) -> Vec<Effect> {
        let mut out = Vec::new();
        self.master
            .agent_message(self.now(), conn, message, &mut out);
        check_books(&self.master);
        out
    }

    fn agent_gone(&mut self, conn: ConnId) -> Vec<Effect> {
        let mut out = Vec::new();
        self.master.agent_disconnected(self.now(), conn, &mut out);
        check_books(&self.master);
        out
    }

    fn framework_gone(&mut self, conn: ConnId) -> Vec<Effect> {
        let mut out = Vec::new();
        self.master
            .framework_disconnected(self.now(), conn, &mut out);
        check_books(&self.master);
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

/// The master's books after any input: per agent, used + offered fits in
/// the total, plus free is the total while the agent is in the allocator,
/// and used is the sum of its unreleased tasks; offers refer to a live
/// agent and a connected framework that lists them, and back; a task that
/// ended has released its resources. The harness checks them after every
/// input it drives, so every test below checks them at every step.
fn check_books(master: &Master) {
    // A registration waiting for the registry (`admission.rs`) has no
    // part in the books: its agent is absent or unreachable there, and
    // its session is nobody else's.
    for (agent_id, conn) in master.admissions.sessions() {
        assert!(
            master
                .agents
                .get(&agent_id)
                .is_none_or(|a| a.unreachable_since.is_some()),
            "agent {agent_id} is admitted while its admission waits for the registry"
        );
        assert!(
            !master.agent_conns.contains_key(&conn),
            "session {conn} is two agents'"
        );
        assert_eq!(master.admissions.conns().get(&conn), Some(&agent_id));
    }
    assert_eq!(master.admissions.conns().len(), master.admissions.len());
    // The index of what is on each agent lists exactly the books' tasks
    // and offers (`by_agent.rs`).
    let tasks: BTreeSet<(AgentId, FrameworkId, TaskId)> = master
        .frameworks
        .values()
        .flat_map(|f| f.tasks.values())
        .map(|t| (t.agent_id.clone(), t.framework_id.clone(), t.id.clone()))
        .collect();
    assert_eq!(master.by_agent.all_tasks(), tasks, "tasks by agent");
    let offers: BTreeSet<(AgentId, OfferId)> = master
        .offers
        .values()
        .map(|o| (o.agent_id.clone(), o.id.clone()))
        .collect();
    assert_eq!(master.by_agent.all_offers(), offers, "offers by agent");
    // The agents away by address list exactly the agents without a
    // session (`away.rs`).
    let away: BTreeSet<(String, Option<i32>, AgentId)> = master
        .agents
        .values()
        .filter(|a| a.conn.is_none())
        .map(|a| (a.info.hostname.clone(), a.info.port, a.id.clone()))
        .collect();
    assert_eq!(master.away_agents.all(), away, "agents away by address");
    // Each framework's count of completed ids matches its history.
    for framework in master.frameworks.values() {
        let mut counts: std::collections::HashMap<TaskId, u32> = Default::default();
        for task in framework.completed_tasks.iter() {
            *counts.entry(task.id.clone()).or_default() += 1;
        }
        assert_eq!(
            framework.completed_ids, counts,
            "completed ids of {}",
            framework.id
        );
    }
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
            "agent {agent_id} overcommitted: used {} + offered {offered} > total {}",
            agent.used,
            agent.total
        );
        // An agent out of the allocator (unreachable) has no free share.
        if let Some(free) = free.get(agent_id) {
            let mut accounted = committed.clone();
            accounted.add(free);
            assert_eq!(
                accounted, agent.total,
                "agent {agent_id}: free {free} + used {} + offered {offered} != total",
                agent.used
            );
        }
        // `used` is exactly the sum of the agent's unreleased tasks.
        let mut tasks_used = Resources::new();
        for task in master.frameworks.values().flat_map(|f| f.tasks.values()) {
            if &task.agent_id == agent_id && !task.resources_released {
                tasks_used.add(&task.resources);
            }
        }
        assert_eq!(tasks_used, agent.used, "agent {agent_id} used");
    }
    // Offers refer to live agents and connected frameworks, both ways.
    for (id, offer) in &master.offers {
        assert_eq!(&offer.id, id);
        let agent = master
            .agents
            .get(&offer.agent_id)
            .unwrap_or_else(|| panic!("offer {id} on a missing agent"));
        assert!(agent.conn.is_some(), "offer {id} on a disconnected agent");
        let framework = master
            .frameworks
            .get(&offer.framework_id)
            .unwrap_or_else(|| panic!("offer {id} to a missing framework"));
        assert!(framework.active(), "offer {id} to a disconnected framework");
        assert!(
            framework.offers.contains(id),
            "framework does not list offer {id}"
        );
        assert!(!offer.resources.is_empty());
    }
    for framework in master.frameworks.values() {
        for id in &framework.offers {
            assert!(master.offers.contains_key(id), "dangling offer {id}");
        }
    }
    // A task is filed under its own framework, and one that ended has
    // released its resources; a completed task is terminal and released (its id may
    // be reused by a new task, and other frameworks may use the same id).
    for (framework_id, framework) in &master.frameworks {
        assert_eq!(&framework.id, framework_id);
        for (task_id, task) in &framework.tasks {
            assert_eq!(&task.id, task_id);
            assert_eq!(&task.framework_id, framework_id);
            // Released when it ended, or while its agent is unreachable.
            assert!(
                task.resources_released || !agora_core::task::is_terminal(task.state),
                "task {task_id} ended and still holds its resources"
            );
            assert!(master.agents.contains_key(&task.agent_id));
        }
        for task in &framework.completed_tasks {
            assert!(agora_core::task::is_terminal(task.state));
            assert!(task.resources_released);
        }
    }
}

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
