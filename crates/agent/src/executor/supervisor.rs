//! The command executor's task, from LAUNCH to its terminal state: fetch,
//! start inside the container, health checks, the disk watch, kill with a
//! grace period, and what its end means (exit status, OOM, disk, health).

use std::time::Duration;

use agora_isolation::Container;
use agora_proto::v1 as pb;
use rustix::process::Signal;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::task_process::{AdoptedTask, TaskProcess};
use super::{DEFAULT_KILL_GRACE, ExecutorEnv, describe_exit, prepare, signal_group, task_command};
use crate::health_check::{self, HealthPolicy, HealthTracker, Probe, ProbeContext};
use crate::launch;

type Reason = pb::task_status::Reason;

/// Health checking of a running task.
pub(super) struct Health {
    tracker: HealthTracker,
    probe: Probe,
    context: ProbeContext,
    /// The probe in flight.
    pub(super) running: Option<JoinHandle<Result<(), String>>>,
}

pub(super) struct Supervisor {
    pub(super) env: ExecutorEnv,
    pub(super) task: Option<pb::TaskInfo>,
    pub(super) child: Option<TaskProcess>,
    /// The task's process once it has ended, kept unreaped until the
    /// executor is done (`task_process`'s invariant).
    ended: Option<TaskProcess>,
    pub(super) pgid: Option<u32>,
    pub(super) container: Option<Container>,
    /// Why the container could not be opened; fails the task at launch.
    container_error: Option<String>,
    /// The fetch in flight before the task starts.
    pub(super) fetching: Option<JoinHandle<Result<(), String>>>,
    pub(super) health: Option<Health>,
    pub(super) next_disk_check: Option<Instant>,
    disk_limit: Option<u64>,
    /// Set when the executor itself ends the task (disk, health): the
    /// terminal state and reason its exit is reported with.
    limitation: Option<(pb::TaskState, Reason, String)>,
    pub(super) kill_requested: bool,
    /// Who asked for the kill and why: the TASK_KILLED update's message.
    kill_message: Option<String>,
    pub(super) kill_deadline: Option<Instant>,
    /// Updates sent but not yet acknowledged by the agent, by uuid.
    pub(super) unacknowledged: Vec<pb::TaskStatus>,
    pub(super) terminal_sent: bool,
    started: Instant,
}

impl Supervisor {
    pub(super) fn new(env: ExecutorEnv) -> Self {
        let (container, container_error) =
            match prepare::open_container(env.launch.cgroups.as_ref(), &env.isolators) {
                Ok(container) => (container, None),
                Err(e) => (None, Some(e)),
            };
        Self {
            env,
            task: None,
            child: None,
            ended: None,
            pgid: None,
            container,
            container_error,
            fetching: None,
            health: None,
            next_disk_check: None,
            disk_limit: None,
            limitation: None,
            kill_requested: false,
            kill_message: None,
            kill_deadline: None,
            unacknowledged: Vec::new(),
            terminal_sent: false,
            started: Instant::now(),
        }
    }

    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    pub(super) fn update(
        &mut self,
        state: pb::TaskState,
        message: impl Into<String>,
    ) -> pb::TaskStatus {
        self.update_with(state, message, None, None)
    }

    pub(super) fn update_with(
        &mut self,
        state: pb::TaskState,
        message: impl Into<String>,
        reason: Option<Reason>,
        healthy: Option<bool>,
    ) -> pb::TaskStatus {
        let task_id = self.task.as_ref().and_then(|t| t.task_id.clone());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let status = pb::TaskStatus {
            task_id,
            state: Some(state as i32),
            message: Some(message.into()),
            source: Some(pb::task_status::Source::Executor as i32),
            reason: reason.map(|r| r as i32),
            timestamp: Some(now),
            uuid: Some(uuid::Uuid::new_v4().as_bytes().to_vec()),
            healthy,
            ..Default::default()
        };
        if agora_core::task::is_terminal(state) {
            self.terminal_sent = true;
        }
        self.unacknowledged.push(status.clone());
        status
    }

    /// LAUNCH: fetch first when the command has URIs, else start at once.
    pub(super) fn launch(&mut self, task: pb::TaskInfo) -> Vec<pb::TaskStatus> {
        if self.task.is_some() {
            return Vec::new();
        }
        self.task = Some(task.clone());
        let mut updates = vec![self.update(pb::TaskState::TaskStarting, "starting the command")];
        if let Some(error) = self.container_error.take() {
            updates.push(self.update_with(
                pb::TaskState::TaskFailed,
                error,
                Some(Reason::ContainerLaunchFailed),
                None,
            ));
            return updates;
        }
        let command = task.command.clone().unwrap_or_default();
        if command.uris.is_empty() {
            updates.extend(self.start());
        } else {
            let sandbox = self.env.sandbox.clone();
            let config = self.env.launch.clone();
            self.fetching = Some(tokio::spawn(async move {
                prepare::fetch(&sandbox, &command, &config).await
            }));
        }
        updates
    }

    /// The fetch ended.
    pub(super) fn fetched(&mut self, result: Result<(), String>) -> Vec<pb::TaskStatus> {
        self.fetching = None;
        match result {
            _ if self.kill_requested => {
                vec![self.update(pb::TaskState::TaskKilled, "killed while fetching")]
            }
            Ok(()) => self.start(),
            Err(message) => vec![self.update_with(
                pb::TaskState::TaskFailed,
                format!("fetcher failed: {message}"),
                Some(Reason::FetcherFailed),
                None,
            )],
        }
    }

    /// Takes back a task already running (its worker died): it is held
    /// from the start, so the agent does not launch it again, and nothing
    /// is reported until it ends. Health checks and the disk watch start
    /// over.
    pub(super) fn adopt(&mut self, adopted: &AdoptedTask) {
        let Some(process) = adopted.take_process() else {
            return;
        };
        let task = adopted.task.clone();
        self.task = Some(task.clone());
        self.pgid = Some(adopted.pid);
        if let Some(container) = &self.container {
            let _ = container.add_process(adopted.pid);
        }
        self.child = Some(process);
        self.health = match task.health_check.as_ref().map(HealthPolicy::from_proto) {
            Some(Ok((policy, probe))) => Some(self.health_for(&task, policy, probe)),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "the adopted task's health check is invalid");
                None
            }
            None => None,
        };
        self.setup_disk_watch(&task);
    }

    /// Starts the task's process straight inside its container.
    fn start(&mut self) -> Vec<pb::TaskStatus> {
        let Some(task) = self.task.clone() else {
            return Vec::new();
        };
        let health = match task.health_check.as_ref().map(HealthPolicy::from_proto) {
            Some(Err(e)) => {
                return vec![self.update_with(
                    pb::TaskState::TaskFailed,
                    format!("invalid health check: {e}"),
                    Some(Reason::TaskInvalid),
                    None,
                )];
            }
            Some(Ok(checked)) => Some(checked),
            None => None,
        };
        let spawned =
            task_command(&self.env, &task).and_then(|mut command| match &self.container {
                Some(container) => container
                    .spawn_inside(|| command.spawn())
                    .map_err(|e| format!("cannot start the command in its container: {e}")),
                None => command
                    .spawn()
                    .map_err(|e| format!("cannot start the command: {e}")),
            });
        match spawned {
            Ok(child) => {
                let pid = child.id();
                self.pgid = Some(pid);
                if let Some(hook) = &self.env.on_task_started {
                    (hook.0)(pid);
                }
                if let Some(container) = &self.container {
                    // Posix containers account by the processes they are told of.
                    let _ = container.add_process(pid);
                }
                self.child = Some(TaskProcess::spawned(child));
                self.health = health.map(|(policy, probe)| self.health_for(&task, policy, probe));
                self.setup_disk_watch(&task);
                vec![self.update(pb::TaskState::TaskRunning, "command is running")]
            }
            Err(message) => {
                tracing::warn!(error = %message, "task failed to start");
                vec![self.update_with(
                    pb::TaskState::TaskFailed,
                    message,
                    Some(Reason::ContainerLaunchFailed),
                    None,
                )]
            }
        }
    }

    fn health_for(&self, task: &pb::TaskInfo, policy: HealthPolicy, probe: Probe) -> Health {
        let command = task.command.clone().unwrap_or_default();
        let env = prepare::environment(&self.env, &self.env.launch, &command, Some(task));
        let ports = launch::task_ports(&task.resources)
            .into_iter()
            .filter_map(|p| u16::try_from(p).ok())
            .collect();
        Health {
            tracker: HealthTracker::new(policy, self.now()),
            probe,
            context: ProbeContext {
                sandbox: self.env.sandbox.clone(),
                env: env.into_iter().collect(),
                uid_gid: self.env.launch.user.as_ref().map(|u| (u.uid, u.gid)),
                ports,
                private_env: &super::EXECUTOR_ONLY_ENV,
            },
            running: None,
        }
    }

    fn setup_disk_watch(&mut self, task: &pb::TaskInfo) {
        let Some(interval) = self.env.launch.disk_check_interval_secs else {
            return;
        };
        let disk_mb: f64 = task
            .resources
            .iter()
            .filter(|r| r.name == "disk")
            .filter_map(|r| r.scalar.as_ref())
            .map(|s| s.value)
            .sum();
        if disk_mb > 0.0 && interval > 0.0 {
            self.disk_limit = Some((disk_mb * 1024.0 * 1024.0) as u64);
            self.next_disk_check =
                Some(Instant::now() + Duration::try_from_secs_f64(interval).unwrap_or_default());
        }
    }

    /// When the next health probe is due (none while one runs).
    pub(super) fn next_health_check(&self) -> Option<Instant> {
        let health = self.health.as_ref()?;
        if health.running.is_some() || self.child.is_none() || self.kill_requested {
            return None;
        }
        let at = health.tracker.next_check_at();
        Some(self.started + at)
    }

    pub(super) fn start_health_probe(&mut self) {
        if let Some(health) = self.health.as_mut() {
            let probe = health.probe.clone();
            let context = health.context.clone();
            health.running = Some(tokio::spawn(async move {
                health_check::probe(&probe, &context).await
            }));
        }
    }

    /// A probe ended: report a change (or any failure), kill when it failed too often.
    pub(super) fn health_result(&mut self, outcome: Result<(), String>) -> Vec<pb::TaskStatus> {
        let now = self.now();
        let Some(health) = self.health.as_mut() else {
            return Vec::new();
        };
        health.running = None;
        let verdict = health.tracker.record(now, outcome);
        let mut updates = Vec::new();
        if let Some(healthy) = verdict.report
            && !self.terminal_sent
        {
            updates.push(self.update_with(
                pb::TaskState::TaskRunning,
                verdict.message.clone(),
                Some(Reason::TaskHealthCheckStatusUpdated),
                Some(healthy),
            ));
        }
        if verdict.kill {
            tracing::info!(message = %verdict.message, "task failed its health checks; killing it");
            self.limitation = Some((
                pb::TaskState::TaskKilled,
                Reason::TaskHealthCheckStatusUpdated,
                format!("killed: task is unhealthy ({})", verdict.message),
            ));
            self.begin_kill(None);
        }
        updates
    }

    /// The disk watch: a task over its `disk` is killed and fails.
    pub(super) fn check_disk(&mut self) {
        let (Some(limit), Some(interval)) =
            (self.disk_limit, self.env.launch.disk_check_interval_secs)
        else {
            self.next_disk_check = None;
            return;
        };
        self.next_disk_check =
            Some(Instant::now() + Duration::try_from_secs_f64(interval).unwrap_or_default());
        if self.child.is_none() || self.limitation.is_some() {
            return;
        }
        let sandbox = self.env.sandbox.clone();
        let Ok(used) = agora_isolation::disk_usage(&sandbox) else {
            return;
        };
        if used > limit {
            let message = format!(
                "disk limit exceeded: the sandbox uses {} MB of the task's {} MB",
                used / (1024 * 1024),
                limit / (1024 * 1024)
            );
            tracing::warn!(used, limit, "task exceeded its disk; killing it");
            self.limitation = Some((
                pb::TaskState::TaskFailed,
                Reason::ContainerLimitationDisk,
                message,
            ));
            self.kill_now();
        }
    }

    /// KILL from the framework or an operator (or SHUTDOWN); `message`
    /// says who asked and why.
    pub(super) fn kill(
        &mut self,
        policy: Option<pb::KillPolicy>,
        message: Option<String>,
    ) -> Vec<pb::TaskStatus> {
        if self.kill_requested || self.terminal_sent {
            return Vec::new();
        }
        let told = |when: &str| match &message {
            Some(message) => format!("{message} ({when})"),
            None => format!("killed {when}"),
        };
        if let Some(fetch) = self.fetching.take() {
            fetch.abort();
            self.kill_requested = true;
            return vec![self.update(pb::TaskState::TaskKilled, told("while fetching"))];
        }
        if self.child.is_none() {
            self.kill_requested = true;
            return vec![self.update(pb::TaskState::TaskKilled, told("before it started"))];
        }
        self.kill_message = message;
        self.begin_kill(policy);
        Vec::new()
    }

    /// SIGTERM to the task's process group, SIGKILL after the grace period.
    fn begin_kill(&mut self, policy: Option<pb::KillPolicy>) {
        if self.kill_requested {
            return;
        }
        self.kill_requested = true;
        let grace = policy
            .and_then(|p| p.grace_period)
            .and_then(|g| u64::try_from(g.nanoseconds).ok())
            .map(Duration::from_nanos)
            .unwrap_or(DEFAULT_KILL_GRACE);
        signal_group(self.pgid, Signal::TERM);
        self.kill_deadline = Some(Instant::now() + grace);
    }

    /// Everything in the container (or the task's process group) dies now.
    pub(super) fn kill_now(&mut self) {
        self.kill_requested = true;
        self.kill_deadline = None;
        signal_group(self.pgid, Signal::KILL);
        if let Some(container) = &self.container
            && let Err(e) = container.kill_all(Duration::from_secs(5))
        {
            tracing::warn!(error = %e, "cannot kill everything in the container");
        }
    }

    /// The task's process exited: its terminal update. Nothing it started
    /// may outlive it.
    pub(super) fn exited(
        &mut self,
        exit: std::io::Result<std::process::ExitStatus>,
    ) -> pb::TaskStatus {
        self.ended = self.child.take();
        self.kill_deadline = None;
        if let Some(health) = self.health.as_mut()
            && let Some(probe) = health.running.take()
        {
            probe.abort();
        }
        let oom = self.container.as_ref().is_some_and(Container::oom_killed);
        let killed_by_request = self.kill_requested && self.limitation.is_none();
        self.kill_now();
        if oom {
            let limit = self
                .task
                .as_ref()
                .map(|t| {
                    t.resources
                        .iter()
                        .filter(|r| r.name == "mem")
                        .filter_map(|r| r.scalar.as_ref())
                        .map(|s| s.value)
                        .sum::<f64>()
                })
                .unwrap_or_default();
            return self.update_with(
                pb::TaskState::TaskFailed,
                format!(
                    "memory limit exceeded: the task used more than its {limit} MB and was killed by the OOM killer"
                ),
                Some(Reason::ContainerLimitationMemory),
                None,
            );
        }
        if let Some((state, reason, message)) = self.limitation.take() {
            let healthy = (reason == Reason::TaskHealthCheckStatusUpdated).then_some(false);
            return self.update_with(state, message, Some(reason), healthy);
        }
        let (state, message) = match exit {
            Ok(status) => match (
                describe_exit(status, killed_by_request),
                self.kill_message.take(),
            ) {
                ((pb::TaskState::TaskKilled, _), Some(told)) => (pb::TaskState::TaskKilled, told),
                (described, _) => described,
            },
            Err(e) => (
                pb::TaskState::TaskFailed,
                format!("lost track of the command: {e}"),
            ),
        };
        self.update(state, message)
    }
}
