//! The actor's side of `agora supervisor` (`crate::host`): the one process
//! per agent that hosts its command executors. The actor starts it, sends
//! it orders (host, kill, forget), and turns its reports into the same
//! inputs an executor process's exit would be.
//!
//! *Invariants:*
//! - every hosted run the agent knows has exactly one end: its
//!   supervisor's report of it, or the supervisor's exit; whichever comes
//!   first ends it, the other finds nothing;
//! - an order for a supervisor that is not attached waits for it; nothing
//!   is sent over a connection the supervisor did not open;
//! - new executors go only to the supervisor this agent started (the one
//!   whose token it minted), and only once it has said it takes them; a
//!   supervisor left by an earlier agent is told to drain (it reports its
//!   runs' ends and exits);
//! - when the supervisor's worker dies and its keeper starts another, the
//!   runs whose task the agent knows and that are not over are adopted by
//!   the new worker (ADOPT), each exactly once; the others end as if the
//!   supervisor had exited.

use std::collections::{HashMap, HashSet};

use agora_core::{ExecutorId, FrameworkId};
use agora_isolation::Container;
use agora_net::outbox::Outbox;
use agora_proto::v1::supervisor::{self as sv, order, report};

use super::Actor;
use crate::shell::command::AgentCommand;
use crate::shell::launching::{LaunchId, StartedSupervisor, SupervisorJob};
use crate::shell::processes::{ExecutorProcess, HostedKill, ProcessRef, watch_process};

type Key = (FrameworkId, ExecutorId);

/// What the actor knows of supervisors and the runs they host.
#[derive(Default)]
pub(in crate::shell) struct Hosting {
    /// The supervisor this agent started: new executors go to it.
    current: Option<ProcessRef>,
    /// Its id, as its token names it.
    current_id: Option<String>,
    /// Whether a start of it is in flight on a worker.
    starting: bool,
    /// Attached supervisors, by pid: the attachment's id and its outbox.
    attached: HashMap<u32, (u64, Outbox<sv::Order>)>,
    /// Whether the current supervisor has said it takes new executors.
    current_accepts: bool,
    /// Orders waiting for their supervisor to attach, by its pid.
    pending: HashMap<u32, Vec<sv::Order>>,
    /// Every hosted run the agent knows, by run id.
    runs: HashMap<String, HostedRun>,
    /// Launches waiting for a supervisor to start.
    waiting: Vec<(LaunchId, sv::Host, Container)>,
    /// Supervisors left by an earlier agent (their exit is watched).
    recovered: HashMap<u32, ProcessRef>,
}

struct HostedRun {
    key: Key,
    supervisor: u32,
    /// The task's process, once the supervisor has reported it.
    task: Option<ProcessRef>,
    /// The agent has asked for it to be killed.
    killing: bool,
    /// What it was hosted with, to hand it to another worker of the same
    /// supervisor if its own dies (`None` for a run recovered from the
    /// checkpoint: not adoptable).
    host: Option<sv::Host>,
}

fn order(kind: order::Kind) -> sv::Order {
    sv::Order { kind: Some(kind) }
}

impl Hosting {
    /// Every supervisor known: the one this agent started and those an
    /// earlier agent left.
    pub(in crate::shell) fn supervisors(&self) -> Vec<ProcessRef> {
        self.current
            .iter()
            .chain(self.recovered.values())
            .copied()
            .collect()
    }

    /// Sends `order` to supervisor `pid`, or keeps it until it attaches.
    fn send(&mut self, pid: u32, order: sv::Order) {
        if self.current.is_some_and(|c| c.pid == pid) && !self.current_accepts {
            self.pending.entry(pid).or_default().push(order);
            return;
        }
        match self.attached.get(&pid) {
            Some((_, outbox)) => {
                if let Err(e) = outbox.push(order) {
                    tracing::warn!(pid, error = %e, "cannot send an order to the supervisor");
                }
            }
            None => self.pending.entry(pid).or_default().push(order),
        }
    }

    /// The run ids whose HOST has not yet reached supervisor `pid`.
    fn pending_hosts(&self, pid: u32) -> HashSet<String> {
        self.pending
            .get(&pid)
            .into_iter()
            .flatten()
            .filter_map(|o| match &o.kind {
                Some(order::Kind::Host(host)) => Some(host.run_id.clone()),
                _ => None,
            })
            .collect()
    }
}

impl Actor {
    /// Starts this agent's supervisor on a worker, unless one runs or is
    /// starting.
    pub(in crate::shell) fn start_supervisor(&mut self) {
        let hosting = &mut self.hosting;
        if hosting.current.is_some() || hosting.starting {
            return;
        }
        let Some(local) = self.executor_connections.clone() else {
            return;
        };
        hosting.starting = true;
        let id = uuid::Uuid::new_v4().to_string();
        hosting.current_id = Some(id.clone());
        let job = SupervisorJob {
            program: self.options.executor_program.clone(),
            work_dir: self.options.work_dir.clone(),
            endpoint: crate::executor::agent_endpoint(
                self.options.advertise,
                self.options.tls.serves_tls(),
            ),
            token: crate::executor_auth::mint_supervisor(&self.token_key, &id),
            tls_env: crate::executor::tls_environment(&self.options.tls),
            local,
        };
        let commands = self.commands.clone();
        tokio::task::spawn_blocking(move || {
            let _ = commands.blocking_send(AgentCommand::SupervisorStarted(job.run()));
        });
    }

    pub(in crate::shell) fn supervisor_started(
        &mut self,
        started: Result<StartedSupervisor, String>,
    ) {
        self.hosting.starting = false;
        let StartedSupervisor { mut child, process } = match started {
            Ok(started) => started,
            Err(message) => {
                tracing::warn!(error = %message, "cannot start the executor supervisor");
                for (id, _, container) in std::mem::take(&mut self.hosting.waiting) {
                    self.gc
                        .schedule(id.sandbox.clone(), std::time::SystemTime::now());
                    tokio::task::spawn_blocking(move || {
                        if let Err(e) = container.destroy() {
                            tracing::warn!(error = %e, "cannot destroy the container");
                        }
                    });
                    self.executor_launch_failed(&id.key, message.clone());
                }
                return;
            }
        };
        tracing::info!(pid = process.pid, "executor supervisor started");
        self.hosting.current = Some(process);
        self.hosting.current_accepts = false;
        let commands = self.commands.clone();
        tokio::spawn(async move {
            let _ = child.wait().await;
            let _ = commands
                .send(AgentCommand::SupervisorExited { pid: process.pid })
                .await;
        });
        for (id, host, container) in std::mem::take(&mut self.hosting.waiting) {
            self.host_executor(id, host, container);
        }
    }

    /// A launch's container is ready: the supervisor hosts its executor.
    /// The run is the state machine's from here, as a started process's
    /// would be.
    pub(in crate::shell) fn host_executor(
        &mut self,
        id: LaunchId,
        host: sv::Host,
        container: Container,
    ) {
        let Some(supervisor) = self.hosting.current else {
            self.hosting.waiting.push((id, host, container));
            self.start_supervisor();
            return;
        };
        self.hosting.runs.insert(
            id.run_id.clone(),
            HostedRun {
                key: id.key.clone(),
                supervisor: supervisor.pid,
                task: None,
                killing: false,
                host: Some(host.clone()),
            },
        );
        self.hosting
            .send(supervisor.pid, order(order::Kind::Host(host)));
        let running = ExecutorProcess::Hosted {
            run_id: id.run_id.clone(),
        };
        self.adopt_run(id, container, running, supervisor);
    }

    /// A hosted run recovered from the checkpoint, its supervisor alive.
    pub(in crate::shell) fn recover_hosted(
        &mut self,
        key: Key,
        run_id: String,
        supervisor: ProcessRef,
    ) {
        self.processes.insert(
            key.clone(),
            ExecutorProcess::Hosted {
                run_id: run_id.clone(),
            },
        );
        self.hosting.runs.insert(
            run_id,
            HostedRun {
                key,
                supervisor: supervisor.pid,
                task: None,
                killing: false,
                host: None,
            },
        );
        if self
            .hosting
            .recovered
            .insert(supervisor.pid, supervisor)
            .is_none()
        {
            let commands = self.commands.clone();
            tokio::spawn(async move {
                watch_process(supervisor).await;
                let _ = commands
                    .send(AgentCommand::SupervisorExited {
                        pid: supervisor.pid,
                    })
                    .await;
            });
        }
    }

    /// Kills a hosted run: its supervisor does, once attached. Meanwhile
    /// what can be killed here is returned: the task's process group if
    /// known, or, when every run of an earlier agent's supervisor is being
    /// killed and it does not answer, that supervisor with its session.
    pub(in crate::shell) fn kill_hosted(&mut self, run_id: &str) -> Option<HostedKill> {
        let run = self.hosting.runs.get_mut(run_id)?;
        run.killing = true;
        let (pid, task) = (run.supervisor, run.task);
        let attached = self.hosting.attached.contains_key(&pid);
        // Kept until it attaches when it is not.
        self.hosting.send(
            pid,
            order(order::Kind::Kill(sv::Kill {
                run_id: run_id.to_string(),
            })),
        );
        if attached {
            return None;
        }
        if let Some(supervisor) = self.hosting.recovered.get(&pid).copied()
            && self
                .hosting
                .runs
                .values()
                .filter(|r| r.supervisor == pid)
                .all(|r| r.killing)
        {
            return Some(HostedKill::Supervisor(supervisor));
        }
        task.map(HostedKill::Task)
    }

    /// A hosted run whose supervisor (or worker) is gone is over. Its task
    /// may outlive it (posix isolation has no cgroup to destroy): its
    /// process group goes with the run.
    fn end_hosted_with_task(&mut self, run_id: &str, description: &str) {
        if let Some(task) = self.hosting.runs.get(run_id).and_then(|r| r.task) {
            tokio::task::spawn_blocking(move || HostedKill::Task(task).run());
        }
        self.end_hosted(run_id, description.into());
    }

    /// A hosted run is over: the same input as an executor process's exit,
    /// once.
    fn end_hosted(&mut self, run_id: &str, description: String) {
        let Some(run) = self.hosting.runs.remove(run_id) else {
            return;
        };
        let current = matches!(
            self.processes.get(&run.key),
            Some(ExecutorProcess::Hosted { run_id: r }) if r == run_id
        );
        if current {
            let (framework_id, executor_id) = run.key;
            self.executor_exited(framework_id, executor_id, description);
        }
    }

    pub(in crate::shell) fn supervisor_attached(
        &mut self,
        conn: u64,
        id: &str,
        hello: sv::Hello,
        orders: Outbox<sv::Order>,
    ) {
        let pid = hello.pid;
        self.hosting.attached.insert(pid, (conn, orders));
        let is_current = self.hosting.current.is_some_and(|c| c.pid == pid)
            && self.hosting.current_id.as_deref() == Some(id);
        if is_current && hello.accepts_hosts {
            self.hosting.current_accepts = true;
        }
        if !is_current {
            self.hosting
                .send(pid, order(order::Kind::Drain(sv::Drain {})));
        }
        let waiting = self.hosting.pending_hosts(pid);
        let listed: HashSet<&str> = hello
            .hosted
            .iter()
            .map(|r| r.run_id.as_str())
            .chain(hello.ended.iter().map(|e| e.run_id.as_str()))
            .collect();
        // Runs it should host but neither hosts nor ended: gone with a
        // crash of ours between host and checkpoint, or never received.
        let missing: Vec<String> = self
            .hosting
            .runs
            .iter()
            .filter(|(run_id, run)| {
                run.supervisor == pid
                    && !listed.contains(run_id.as_str())
                    && !waiting.contains(run_id.as_str())
            })
            .map(|(run_id, _)| run_id.clone())
            .collect();
        for run in &hello.hosted {
            match self.hosting.runs.get_mut(&run.run_id) {
                Some(known) => {
                    self.state
                        .on_executor_vouched_for(&known.key.0, &known.key.1);
                    known.supervisor = pid;
                    if run.task_pid != 0 {
                        known.task = Some(ProcessRef {
                            pid: run.task_pid,
                            start_time: Some(run.task_start_time),
                        });
                    }
                }
                None => {
                    // Nothing here accounts for it: it goes.
                    tracing::info!(run_id = %run.run_id, executor_id = %run.executor_id, "supervisor hosts an unknown executor run; killing it");
                    self.hosting.send(
                        pid,
                        order(order::Kind::Kill(sv::Kill {
                            run_id: run.run_id.clone(),
                        })),
                    );
                }
            }
        }
        for run_id in missing {
            if hello.adopting && is_current && self.adopt_hosted(pid, &run_id) {
                continue;
            }
            self.end_hosted_with_task(&run_id, "its supervisor no longer hosts it");
        }
        for ended in hello.ended {
            self.supervisor_report(pid, report::Kind::Ended(ended));
        }
        if let Some(orders) = self.hosting.pending.remove(&pid) {
            for order in orders {
                self.hosting.send(pid, order);
            }
        }
    }

    /// Hands a run whose worker died to supervisor `pid`'s new worker:
    /// only a run hosted by this agent (its HOST kept), whose task had
    /// started and is not over. Returns whether it was handed over.
    fn adopt_hosted(&mut self, pid: u32, run_id: &str) -> bool {
        let Some(run) = self.hosting.runs.get(run_id) else {
            return false;
        };
        let (Some(host), Some(task_process)) = (run.host.clone(), run.task) else {
            return false;
        };
        let task = self
            .state
            .executors
            .get(&run.key)
            .and_then(|e| {
                self.state
                    .tasks
                    .get(&(run.key.0.clone(), e.task_id.clone()))
            })
            .filter(|t| !agora_core::task::is_terminal(t.state))
            .map(|t| t.info.clone());
        let Some(task) = task else {
            return false;
        };
        tracing::info!(run_id, executor_id = %run.key.1, task_pid = task_process.pid, "handing a run to the supervisor's new worker");
        self.hosting.send(
            pid,
            order(order::Kind::Adopt(sv::Adopt {
                host: Some(host),
                task_pid: task_process.pid,
                task_start_time: task_process.start_time.unwrap_or(0),
                task: Some(task),
            })),
        );
        true
    }

    pub(in crate::shell) fn supervisor_report(&mut self, pid: u32, report: report::Kind) {
        match report {
            report::Kind::Started(started) => {
                if let Some(run) = self.hosting.runs.get_mut(&started.run_id) {
                    run.task = Some(ProcessRef {
                        pid: started.task_pid,
                        start_time: Some(started.task_start_time),
                    });
                }
            }
            report::Kind::Ended(ended) => {
                self.end_hosted(&ended.run_id, ended.description);
                self.hosting.send(
                    pid,
                    order(order::Kind::Forget(sv::Forget {
                        run_id: ended.run_id,
                    })),
                );
            }
            report::Kind::Hello(_) => {}
        }
    }

    pub(in crate::shell) fn supervisor_detached(&mut self, conn: u64, pid: u32) {
        if self
            .hosting
            .attached
            .get(&pid)
            .is_some_and(|(c, _)| *c == conn)
        {
            self.hosting.attached.remove(&pid);
            if self.hosting.current.is_some_and(|c| c.pid == pid) {
                self.hosting.current_accepts = false;
            }
        }
    }

    /// A supervisor's process ended: every run it hosted is over. The next
    /// hosted launch starts a new one.
    pub(in crate::shell) fn supervisor_exited(&mut self, pid: u32) {
        self.hosting.attached.remove(&pid);
        self.hosting.pending.remove(&pid);
        self.hosting.recovered.remove(&pid);
        if self.hosting.current.is_some_and(|c| c.pid == pid) {
            tracing::warn!(pid, "executor supervisor exited");
            self.hosting.current = None;
            self.hosting.current_id = None;
            self.hosting.current_accepts = false;
        }
        let gone: Vec<String> = self
            .hosting
            .runs
            .iter()
            .filter(|(_, run)| run.supervisor == pid)
            .map(|(run_id, _)| run_id.clone())
            .collect();
        for run_id in gone {
            self.end_hosted_with_task(&run_id, "its supervisor exited");
        }
    }
}
