//! A seeded simulation of the agent's state machine with crashes at any
//! point: a master sends tasks and acknowledges updates, workers start
//! executors, executors subscribe, run their task and report it, and the
//! agent is stopped between any two steps, losing what it had not written
//! (its checkpoint is a `MemStore` that a batch reaches only when it is
//! "written", as the shell's pipeline runs a batch's effects only then).
//!
//! What it checks, for every seed: every task ran exactly once and ended
//! TASK_FINISHED at the master; no agent crash failed a task or started
//! one twice. A process whose run the restarted agent cannot find is
//! killed at restart, as the shell destroys an unrecorded run's leftovers:
//! had it been given its task, the task would run twice or fail.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use agora_core::{AgentId, ExecutorId, TaskId};
use agora_proto::v1 as pb;
use agora_proto::v1::agent::{agent_message, master_message};
use agora_proto::v1::executor as exec;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::tests::{fid, run_task_message};
use super::{AgentState, Effect, ExecutorConn};
use crate::checkpoint::{self, ExecutorRun, MemStore};

const TASKS: usize = 12;
const MAX_CRASHES: usize = 4;
const STEP: Duration = Duration::from_millis(5);

/// An executor process (the command executor: one task).
struct Process {
    executor_id: ExecutorId,
    conn: Option<ExecutorConn>,
    /// The task's states it reports, in order; empty until LAUNCH.
    to_report: VecDeque<pb::TaskState>,
    /// Updates not yet acknowledged by the agent (re-sent on subscribe).
    unacked: Vec<pb::TaskStatus>,
    got_task: bool,
}

impl Process {
    /// A process just started: not connected, no task yet.
    fn new(executor_id: ExecutorId) -> Process {
        Process {
            executor_id,
            conn: None,
            to_report: VecDeque::new(),
            unacked: Vec::new(),
            got_task: false,
        }
    }
}

struct World {
    rng: StdRng,
    now: Duration,
    store: MemStore,
    state: AgentState,
    /// Batches not yet written: their records and effects, in order.
    unwritten: VecDeque<Vec<Effect>>,
    /// Launches handed to a worker: (executor, run id).
    starting: Vec<(ExecutorId, String)>,
    /// Launches whose process exists, their result not yet taken by the
    /// agent's loop (the process may subscribe meanwhile).
    spawned: Vec<(ExecutorId, ExecutorRun)>,
    /// Live executor processes, by run id.
    processes: BTreeMap<String, Process>,
    next_conn: ExecutorConn,
    next_pid: u32,
    tasks_sent: usize,
    crashes: usize,
    /// Updates the master has not acknowledged yet: (task, uuid).
    master_unacked: Vec<(TaskId, Vec<u8>)>,
    /// The latest state the master has of each task.
    at_master: BTreeMap<TaskId, pb::TaskState>,
    /// How often each task's command was started.
    starts: BTreeMap<TaskId, u32>,
    /// Tasks whose record reached the checkpoint: the agent has them. A
    /// task whose RunTask batch a crash lost never reached the agent (the
    /// master's reconciliation reports it lost; not the agent's to keep).
    accepted: std::collections::BTreeSet<TaskId>,
}

fn new_state(rng: &mut StdRng) -> AgentState {
    AgentState::new(
        pb::AgentInfo {
            hostname: "h".into(),
            ..Default::default()
        },
        rng.random(),
    )
    .with_work_dir("/work".into())
}

impl World {
    fn new(seed: u64) -> World {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut state = new_state(&mut rng);
        let mut out = Vec::new();
        state.on_registered(Duration::ZERO, AgentId::new("a1"), &mut out);
        let mut store = MemStore::default();
        for effect in &out {
            if let Effect::Checkpoint(record) = effect {
                checkpoint::apply(&mut store, record).expect("in-memory write");
            }
        }
        World {
            rng,
            now: Duration::ZERO,
            store,
            state,
            unwritten: VecDeque::new(),
            starting: Vec::new(),
            spawned: Vec::new(),
            processes: BTreeMap::new(),
            next_conn: 1,
            next_pid: 100,
            tasks_sent: 0,
            crashes: 0,
            master_unacked: Vec::new(),
            at_master: BTreeMap::new(),
            starts: BTreeMap::new(),
            accepted: std::collections::BTreeSet::new(),
        }
    }

    fn push(&mut self, out: Vec<Effect>) {
        if !out.is_empty() {
            self.unwritten.push_back(out);
        }
    }

    fn run_task(&mut self) {
        let task = format!("t{}", self.tasks_sent);
        self.tasks_sent += 1;
        let mut out = Vec::new();
        self.state
            .on_run_task(self.now, run_task_message(&task), &mut out);
        self.push(out);
    }

    /// The oldest unwritten batch is written; then its effects run.
    fn write_batch(&mut self) {
        let Some(batch) = self.unwritten.pop_front() else {
            return;
        };
        for effect in &batch {
            if let Effect::Checkpoint(record) = effect {
                checkpoint::apply(&mut self.store, record).expect("in-memory write");
                if let checkpoint::Checkpoint::Task { info, .. } = record
                    && let Ok(task_id) = TaskId::from_field(&info.task_id)
                {
                    self.accepted.insert(task_id);
                }
            }
        }
        for effect in batch {
            self.run_effect(effect);
        }
    }

    fn run_effect(&mut self, effect: Effect) {
        match effect {
            Effect::Checkpoint(_)
            | Effect::UpdateContainer { .. }
            | Effect::ExecutorRecorded { .. } => {}
            Effect::ToMaster(message) => {
                if let Some(agent_message::Kind::StatusUpdate(update)) = message.kind
                    && let Some(status) = update.status
                    && let (Ok(task_id), Some(uuid)) =
                        (TaskId::from_field(&status.task_id), status.uuid.clone())
                {
                    let state = agora_core::task::from_i32(status.state.unwrap_or_default())
                        .expect("a valid state");
                    self.at_master.insert(task_id.clone(), state);
                    self.master_unacked.push((task_id, uuid));
                }
            }
            Effect::LaunchExecutor { executor_id, .. } => {
                let run = self.state.executors[&(fid(), executor_id.clone())]
                    .run
                    .clone()
                    .expect("a launch's run is recorded before it");
                assert_eq!(run.pid, None, "a launched run has no process yet");
                self.starting.push((executor_id, run.run_id));
            }
            Effect::ToExecutor { conn, event } => {
                let Some(process) = self.processes.values_mut().find(|p| p.conn == Some(conn))
                else {
                    return;
                };
                match exec::event::Type::try_from(event.r#type) {
                    Ok(exec::event::Type::Launch) => {
                        let task = event.launch.and_then(|l| l.task).expect("a task");
                        let task_id = TaskId::from_field(&task.task_id).expect("task id");
                        assert!(!process.got_task, "one LAUNCH per command executor");
                        process.got_task = true;
                        *self.starts.entry(task_id).or_default() += 1;
                        process.to_report = VecDeque::from([
                            pb::TaskState::TaskStarting,
                            pb::TaskState::TaskRunning,
                            pb::TaskState::TaskFinished,
                        ]);
                    }
                    Ok(exec::event::Type::Acknowledged) => {
                        let uuid = event.acknowledged.map(|a| a.uuid).unwrap_or_default();
                        process.unacked.retain(|s| s.uuid.as_ref() != Some(&uuid));
                    }
                    _ => {}
                }
            }
            Effect::DestroyExecutor { executor_id, .. } => {
                self.processes.retain(|_, p| p.executor_id != executor_id);
            }
        }
    }

    /// A worker starts a launch's process.
    fn spawn_one(&mut self) {
        if self.starting.is_empty() {
            return;
        }
        let i = self.rng.random_range(0..self.starting.len());
        let (executor_id, run_id) = self.starting.remove(i);
        let key = (fid(), executor_id.clone());
        let Some(run) = self.state.executors.get(&key).and_then(|e| e.run.clone()) else {
            return;
        };
        if run.run_id != run_id {
            return;
        }
        self.processes
            .insert(run_id, Process::new(executor_id.clone()));
        self.next_pid += 1;
        self.spawned.push((
            executor_id,
            ExecutorRun {
                pid: Some(self.next_pid),
                start_time: 1,
                ..run
            },
        ));
    }

    /// The loop takes a worker's result: the process is recorded.
    fn launched_one(&mut self) {
        if self.spawned.is_empty() {
            return;
        }
        let i = self.rng.random_range(0..self.spawned.len());
        let (executor_id, run) = self.spawned.remove(i);
        let mut out = Vec::new();
        self.state
            .on_executor_launched(&fid(), &executor_id, run, &mut out);
        self.push(out);
    }

    /// A process not connected subscribes (its token names its run).
    fn subscribe_one(&mut self) {
        let waiting: Vec<String> = self
            .processes
            .iter()
            .filter(|(_, p)| p.conn.is_none())
            .map(|(r, _)| r.clone())
            .collect();
        if waiting.is_empty() {
            return;
        }
        let run_id = waiting[self.rng.random_range(0..waiting.len())].clone();
        let executor_id = self.processes[&run_id].executor_id.clone();
        let key = (fid(), executor_id.clone());
        // The shell's token check: only the executor's current run.
        let current = self
            .state
            .executors
            .get(&key)
            .and_then(|e| e.run.as_ref())
            .is_some_and(|r| r.run_id == run_id);
        if !current {
            self.processes.remove(&run_id);
            return;
        }
        let conn = self.next_conn;
        self.next_conn += 1;
        let process = self.processes.get_mut(&run_id).expect("listed");
        process.conn = Some(conn);
        let held: Vec<TaskId> = if process.got_task {
            vec![TaskId::new(executor_id.as_str())]
        } else {
            Vec::new()
        };
        let unacked = process.unacked.clone();
        let mut out = Vec::new();
        if self
            .state
            .on_executor_subscribe(
                self.now,
                conn,
                &fid(),
                &executor_id,
                &held,
                unacked,
                &mut out,
            )
            .is_err()
        {
            self.processes.remove(&run_id);
        }
        self.push(out);
    }

    /// A connected process reports its next state, or exits once its last
    /// update is acknowledged.
    fn report_one(&mut self) {
        let ready: Vec<String> = self
            .processes
            .iter()
            .filter(|(_, p)| p.conn.is_some() && p.got_task)
            .map(|(r, _)| r.clone())
            .collect();
        if ready.is_empty() {
            return;
        }
        let run_id = ready[self.rng.random_range(0..ready.len())].clone();
        let process = self.processes.get_mut(&run_id).expect("listed");
        let executor_id = process.executor_id.clone();
        let conn = process.conn.expect("connected");
        let mut out = Vec::new();
        if let Some(state) = process.to_report.pop_front() {
            let mut uuid = [0u8; 16];
            self.rng.fill(&mut uuid);
            let status = pb::TaskStatus {
                task_id: Some(pb::TaskId {
                    value: executor_id.as_str().into(),
                }),
                state: Some(state as i32),
                uuid: Some(uuid.to_vec()),
                ..Default::default()
            };
            process.unacked.push(status.clone());
            self.state
                .on_executor_update(self.now, conn, &fid(), &executor_id, status, &mut out);
        } else if process.unacked.is_empty() {
            self.processes.remove(&run_id);
            self.state.on_executor_exited(
                self.now,
                &fid(),
                &executor_id,
                "exited 0".into(),
                None,
                &mut out,
            );
        }
        self.push(out);
    }

    fn master_ack_one(&mut self) {
        if self.master_unacked.is_empty() {
            return;
        }
        let i = self.rng.random_range(0..self.master_unacked.len());
        let (task_id, uuid) = self.master_unacked.remove(i);
        let mut out = Vec::new();
        self.state.on_status_ack(
            self.now,
            master_message::StatusUpdateAck {
                framework_id: fid().to_field(),
                task_id: task_id.to_field(),
                uuid,
            },
            &mut out,
        );
        self.push(out);
    }

    /// The agent stops: what it had not written is lost, and so are the
    /// results of launches in flight (a worker may have created the
    /// process, not recorded). It starts again from its checkpoint.
    fn crash(&mut self) {
        self.crashes += 1;
        self.unwritten.clear();
        // Started, not recorded: the processes exist.
        self.spawned.clear();
        for (executor_id, run_id) in std::mem::take(&mut self.starting) {
            if self.rng.random_bool(0.5) {
                self.processes.insert(run_id, Process::new(executor_id));
            }
        }
        for process in self.processes.values_mut() {
            process.conn = None;
        }
        self.master_unacked.clear();
        let recovered = checkpoint::recover(&self.store);
        // The shell: a run recovered without a process is destroyed, and a
        // recorded one whose process is gone is reported exited.
        let mut exited = Vec::new();
        for executor in &recovered.executors {
            let Some(run) = &executor.run else {
                continue;
            };
            match run.pid {
                None => {
                    if let Some(process) = self.processes.remove(&run.run_id) {
                        assert!(
                            !process.got_task,
                            "a task ran in a process the agent never recorded"
                        );
                    }
                }
                Some(_) if !self.processes.contains_key(&run.run_id) => {
                    exited.push(executor.executor_id.clone());
                }
                Some(_) => {}
            }
        }
        self.state = new_state(&mut self.rng);
        let mut out = Vec::new();
        self.state.recover(self.now, recovered, &mut out);
        for executor_id in exited {
            self.state.on_executor_exited(
                self.now,
                &fid(),
                &executor_id,
                "gone while the agent was down".into(),
                None,
                &mut out,
            );
        }
        self.state
            .on_registered(self.now, AgentId::new("a1"), &mut out);
        self.push(out);
    }

    fn tick(&mut self) {
        let mut out = Vec::new();
        self.state.on_tick(self.now, &mut out);
        self.push(out);
    }

    fn done(&self) -> bool {
        self.tasks_sent == TASKS
            && self.unwritten.is_empty()
            && self.starting.is_empty()
            && self.spawned.is_empty()
            && self.processes.is_empty()
            && self.master_unacked.is_empty()
            && self.accepted.iter().all(|t| {
                self.at_master
                    .get(t)
                    .is_some_and(|s| agora_core::task::is_terminal(*s))
            })
    }

    fn step(&mut self, chaos: bool) {
        self.now += STEP;
        match self.rng.random_range(0..100) {
            0..=9 if self.tasks_sent < TASKS => self.run_task(),
            0..=29 => self.write_batch(),
            30..=37 => self.spawn_one(),
            38..=44 => self.launched_one(),
            45..=59 => self.subscribe_one(),
            60..=79 => self.report_one(),
            80..=94 => self.master_ack_one(),
            95..=97 => self.tick(),
            _ if chaos && self.crashes < MAX_CRASHES => self.crash(),
            _ => self.write_batch(),
        }
    }
}

/// Runs one seed; returns how many crashes it had and how many tasks the
/// agent accepted.
fn simulate(seed: u64) -> (usize, usize) {
    let mut world = World::new(seed);
    for _ in 0..2_000 {
        world.step(true);
    }
    let mut steps = 0;
    while !world.done() {
        world.step(false);
        steps += 1;
        assert!(
            steps < 200_000,
            "seed {seed}: not quiescent; at the master {:?}, processes {}, unwritten {}",
            world.at_master,
            world.processes.len(),
            world.unwritten.len()
        );
    }
    for n in 0..TASKS {
        let task_id = TaskId::new(format!("t{n}"));
        if !world.accepted.contains(&task_id) {
            assert_eq!(world.starts.get(&task_id), None, "seed {seed}: {task_id}");
            continue;
        }
        assert_eq!(
            world.at_master.get(&task_id),
            Some(&pb::TaskState::TaskFinished),
            "seed {seed}: {task_id} after {} crashes",
            world.crashes
        );
        assert_eq!(
            world.starts.get(&task_id),
            Some(&1),
            "seed {seed}: {task_id} started once"
        );
    }
    (world.crashes, world.accepted.len())
}

#[test]
fn every_task_runs_once_and_finishes_whatever_the_agent_crashes() {
    let base: u64 = std::env::var("AGORA_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed);
    let (mut crashes, mut accepted) = (0, 0);
    for seed in base..base + 300 {
        let (c, a) = simulate(seed);
        crashes += c;
        accepted += a;
    }
    // The seeds exercise what they are for: crashes, and tasks kept.
    assert!(crashes >= 300, "{crashes} crashes");
    assert!(accepted >= 300 * TASKS / 2, "{accepted} tasks accepted");
}
