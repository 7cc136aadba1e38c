//! The actor's side of containers and sandboxes: what it hands to workers
//! (destroys, kills, statistics, disk measures, sandbox removal) and what
//! it takes back, and the executors it recovers at start.

use std::path::PathBuf;
use std::time::SystemTime;

use agora_core::{ExecutorId, FrameworkId};
use agora_proto::v1 as pb;
use tokio::sync::oneshot;

use super::Actor;
use crate::checkpoint::Recovered;
use crate::gc::DiskSpace;
use crate::procfs;
use crate::shell::command::AgentCommand;
use crate::shell::processes::{ExecutorProcess, ExitProbe, ProcessRef, watch_process};
use crate::snapshot::ContainerStatistics;
use crate::state::Effect;

impl Actor {
    /// Kills an executor's processes (a scan of `/proc`) and destroys its
    /// container (up to ten seconds) on a worker: the loop goes on
    /// answering the master and executors meanwhile.
    pub(in crate::shell) fn destroy_later(
        &mut self,
        key: &(FrameworkId, ExecutorId),
        process: Option<ExecutorProcess>,
    ) {
        // Closed unopened: a custom executor still at its start gate ends
        // without running its program, whatever else is killed below.
        self.start_gates.remove(key);
        let destroy = self.containers.take(key);
        // A hosted run is killed by its supervisor; without one attached,
        // its task's process group goes here.
        let (own, task) = match process {
            Some(ExecutorProcess::Own(process)) => (Some(process), None),
            Some(ExecutorProcess::Hosted { run_id }) => (None, self.kill_hosted(&run_id)),
            None => (None, None),
        };
        if destroy.is_none() && own.is_none() && task.is_none() {
            return;
        }
        tokio::task::spawn_blocking(move || {
            if let Some(process) = own {
                process.kill();
            }
            if let Some(kill) = task {
                kill.run();
            }
            if let Some(destroy) = destroy {
                destroy.run();
            }
        });
    }

    /// `AgentOptions::stop_on_exit` (`agora dev`): once the loop has ended,
    /// every process this agent started is killed, each with everything
    /// in its session (an executor with its task; a supervisor with its
    /// worker and every hosted task), and then every container is
    /// destroyed. Waits for it (a container's destroy takes up to ten
    /// seconds). The checkpoint still names the runs: an agent started
    /// again on this work dir finds them gone, as after a crash.
    pub(in crate::shell) async fn stop_everything(&mut self) {
        let mut processes: Vec<ProcessRef> = Vec::new();
        let mut containers = Vec::new();
        for (key, executor) in &self.state.executors {
            // A hosted run's process is its supervisor.
            processes.extend(executor.run.as_ref().and_then(ProcessRef::of_run));
            containers.extend(self.containers.take(key));
        }
        processes.extend(self.hosting.supervisors());
        processes.sort_unstable_by_key(|p| p.pid);
        processes.dedup_by_key(|p| p.pid);
        tracing::info!(
            processes = processes.len(),
            containers = containers.len(),
            "stopping every executor and task this agent started"
        );
        let stopped = tokio::task::spawn_blocking(move || {
            for process in processes {
                process.kill();
            }
            for destroy in containers {
                destroy.run();
            }
        })
        .await;
        if let Err(e) = stopped {
            tracing::error!(error = %e, "stopping the executors did not finish");
        }
    }

    /// Has a container's limits changed on a worker (`containers::UpdateJob`:
    /// the latest limits asked for are the ones that stay).
    pub(in crate::shell) fn update_container(
        &mut self,
        key: &(FrameworkId, ExecutorId),
        resources: &agora_core::Resources,
    ) {
        if let Some(job) = self.containers.update_job(key, resources) {
            tokio::task::spawn_blocking(move || job.run());
        }
    }

    /// The sandboxes of executors the agent still has: never collected.
    pub(in crate::shell) fn live_sandboxes(&self) -> std::collections::HashSet<PathBuf> {
        self.state
            .executors
            .iter()
            .filter_map(|(key, e)| {
                e.run
                    .as_ref()
                    .map(|r| r.sandbox.clone())
                    .or_else(|| self.sandboxes.get(key).cloned())
            })
            .collect()
    }

    /// An executor run is over: its sandbox goes after the gc delay.
    pub(in crate::shell) fn schedule_gc(&mut self, key: &(FrameworkId, ExecutorId)) {
        if let Some(sandbox) = self.sandboxes.get(key) {
            self.gc.schedule(sandbox.clone(), SystemTime::now());
        }
    }

    /// Measures the work dir's filesystem on a worker, one measure at a time.
    pub(in crate::shell) fn measure_disk(&mut self) {
        if self.disk_check_in_flight {
            return;
        }
        self.disk_check_in_flight = true;
        let work_dir = self.options.work_dir.clone();
        let commands = self.commands.clone();
        let probe = self.options.disk_probe;
        tokio::task::spawn_blocking(move || {
            let measured = probe(&work_dir).map_err(|e| e.to_string());
            let _ = commands.blocking_send(AgentCommand::DiskMeasured(measured));
        });
    }

    /// A new measure: full disks refuse tasks; due sandboxes are removed on
    /// a worker (sooner the fuller the disk).
    pub(in crate::shell) fn disk_measured(&mut self, measured: Result<DiskSpace, String>) {
        self.disk_check_in_flight = false;
        let space = match measured {
            Ok(space) => space,
            Err(e) => {
                tracing::warn!(error = %e, work_dir = %self.options.work_dir.display(), "cannot measure the work dir's disk");
                return;
            }
        };
        let full = space.is_full();
        if full != self.state.disk_full() {
            if full {
                tracing::warn!(
                    available_bytes = space.available_bytes,
                    work_dir = %self.options.work_dir.display(),
                    "agent disk full: new tasks are refused until space is freed"
                );
            } else {
                tracing::info!(
                    available_bytes = space.available_bytes,
                    "agent disk has room again: taking tasks"
                );
            }
            self.state.set_disk_full(full);
        }
        self.disk = Some(space);
        self.gc.set_disk_usage(space.usage());
        let live = self.live_sandboxes();
        let due: Vec<PathBuf> = self
            .gc
            .due(SystemTime::now())
            .into_iter()
            .filter(|p| !live.contains(p))
            .collect();
        if due.is_empty() {
            return;
        }
        let work_dir = self.options.work_dir.clone();
        tokio::task::spawn_blocking(move || {
            for sandbox in due {
                match crate::gc::remove_sandbox(&work_dir, &sandbox) {
                    Ok(()) => {
                        tracing::info!(sandbox = %sandbox.display(), "sandbox garbage-collected")
                    }
                    Err(e) => {
                        tracing::warn!(sandbox = %sandbox.display(), error = %e, "cannot remove a sandbox")
                    }
                }
            }
        });
    }

    /// What explaining an executor's exit reads (`processes::ExitProbe`).
    pub(in crate::shell) fn exit_probe(&self, key: &(FrameworkId, ExecutorId)) -> ExitProbe {
        ExitProbe {
            oom: self.containers.oom_probe(key),
            sandbox: self.sandboxes.get(key).cloned(),
        }
    }

    /// An executor's process ended: its cause is read on a worker, which
    /// reports it as [`AgentCommand::ExecutorExitExplained`]; its container
    /// is destroyed after that (the cause is read from it). The process is
    /// forgotten now, so that no kill meanwhile reaches a reused pid.
    pub(in crate::shell) fn executor_exited(
        &mut self,
        framework_id: FrameworkId,
        executor_id: ExecutorId,
        description: String,
    ) {
        let key = (framework_id, executor_id);
        self.processes.remove(&key);
        self.start_gates.remove(&key);
        let probe = self.exit_probe(&key);
        let run_id = self.current_run(&key);
        let sandbox = probe.sandbox.clone();
        let commands = self.commands.clone();
        tokio::task::spawn_blocking(move || {
            let (limitation, description) = probe.explain(description);
            let (framework_id, executor_id) = key;
            let _ = commands.blocking_send(AgentCommand::ExecutorExitExplained {
                framework_id,
                executor_id,
                run_id,
                sandbox,
                limitation,
                description,
            });
        });
    }

    /// The run id the state machine records for an executor.
    fn current_run(&self, key: &(FrameworkId, ExecutorId)) -> Option<String> {
        self.state
            .executors
            .get(key)
            .and_then(|e| e.run.as_ref())
            .map(|run| run.run_id.clone())
    }

    /// An executor's exit with its cause: its container goes, its sandbox
    /// is scheduled for collection, and the state machine is told. An
    /// exit of a run that is no longer current (the executor was killed,
    /// and perhaps started again, while its cause was read) only has that
    /// run's sandbox collected: the kill destroyed its container and
    /// reported its tasks, and the new run's container and tasks are not
    /// this exit's.
    pub(in crate::shell) fn executor_exit_explained(
        &mut self,
        key: (FrameworkId, ExecutorId),
        (run_id, sandbox): (Option<String>, Option<PathBuf>),
        limitation: Option<pb::task_status::Reason>,
        description: String,
        out: &mut Vec<Effect>,
    ) {
        if self.current_run(&key) != run_id || self.launches.contains_key(&key) {
            tracing::debug!(executor_id = %key.1, "exit of a run no longer current");
            if let Some(sandbox) = sandbox
                && !self.live_sandboxes().contains(&sandbox)
            {
                self.gc.schedule(sandbox, SystemTime::now());
            }
            return;
        }
        self.destroy_later(&key, None);
        self.schedule_gc(&key);
        let now = self.now();
        self.state
            .on_executor_exited(now, &key.0, &key.1, description, limitation, out);
    }

    /// `/monitor/statistics`: one entry per container, read (cgroup files,
    /// sandbox walks) on a worker, which reports them as
    /// [`AgentCommand::StatisticsRead`]. A request that comes while a read
    /// is in flight waits for that read.
    pub(in crate::shell) fn statistics(
        &mut self,
        reply: oneshot::Sender<Vec<ContainerStatistics>>,
    ) {
        self.statistics_waiting.push(reply);
        if self.statistics_waiting.len() > 1 {
            return; // a read is in flight
        }
        let jobs: Vec<(String, crate::containers::StatsJob)> = self
            .containers
            .keys()
            .into_iter()
            .filter_map(|key| {
                let resources = self.state.container_resources(&key.0, &key.1);
                let name = self
                    .state
                    .executors
                    .get(&key)
                    .and_then(|e| e.info.as_ref())
                    .and_then(|i| i.name.clone())
                    .unwrap_or_else(|| format!("Command Executor (Task: {})", key.1));
                let sandbox = self.sandboxes.get(&key).map(PathBuf::as_path);
                let job = self.containers.stats_job(&key, sandbox, resources)?;
                Some((name, job))
            })
            .collect();
        let commands = self.commands.clone();
        tokio::task::spawn_blocking(move || {
            let entries = jobs
                .into_iter()
                .map(|(name, job)| ContainerStatistics {
                    framework_id: job.key.0.to_string(),
                    executor_id: job.key.1.to_string(),
                    executor_name: name,
                    source: job.key.1.to_string(),
                    statistics: job.run(),
                })
                .collect();
            let _ = commands.blocking_send(AgentCommand::StatisticsRead(entries));
        });
    }

    /// A statistics read is done: every request that waited gets it.
    pub(in crate::shell) fn statistics_read(&mut self, entries: Vec<ContainerStatistics>) {
        for reply in self.statistics_waiting.drain(..) {
            let _ = reply.send(entries.clone());
        }
    }

    /// Takes over what the checkpoint holds: executors still alive are
    /// watched until they exit (they are not our children) and given time
    /// to re-subscribe; those already gone are reported at once.
    pub(in crate::shell) fn recover(&mut self, recovered: Recovered) {
        let executors = recovered.executors.clone();
        let mut out = Vec::new();
        let now = self.now();
        self.state.recover(now, recovered, &mut out);
        for executor in executors {
            let key = (executor.framework_id.clone(), executor.executor_id.clone());
            // The state machine refused this executor's record (and failed
            // its tasks): whatever of it still runs is destroyed, as nothing
            // accounts for it any more.
            let refused = !self.state.executors.contains_key(&key);
            let Some(run) = executor.run else {
                // No run recorded (runs are recorded with their executor,
                // so only an older agent's record): the state machine
                // launches it again; an old process is refused.
                continue;
            };
            self.sandboxes.insert(key.clone(), run.sandbox.clone());
            self.containers.recover(key.clone(), &run.run_id);
            let Some(process) = ProcessRef::of_run(&run) else {
                // Stopped while starting it: it never had a task (tasks
                // wait for the process to be recorded). What it created
                // goes (its container's processes with it); the state
                // machine launches the executor again as a new run, and a
                // process of this run that asks to subscribe is refused.
                // A supervisor that hosts it is told to kill it when it
                // attaches (a run nothing here accounts for).
                tracing::info!(executor_id = %key.1, run_id = %run.run_id, "destroying what an executor's unfinished start left");
                self.destroy_later(&key, None);
                self.schedule_gc(&key);
                continue;
            };
            let alive = procfs::process_start_time(process.pid)
                .is_some_and(|t| process.start_time.is_none_or(|s| s == t));
            let running = if run.hosted {
                ExecutorProcess::Hosted {
                    run_id: run.run_id.clone(),
                }
            } else {
                ExecutorProcess::Own(process)
            };
            if refused {
                // A hosted one is killed when its supervisor attaches: it
                // then hosts a run nothing here accounts for.
                let own = matches!(running, ExecutorProcess::Own(_));
                self.destroy_later(&key, (alive && own).then_some(running));
                self.schedule_gc(&key);
                continue;
            }
            if !alive {
                // At start, before the loop runs: read here.
                let (limitation, description) = self
                    .exit_probe(&key)
                    .explain("it exited while the agent was down".into());
                self.destroy_later(&key, None);
                self.schedule_gc(&key);
                self.state.on_executor_exited(
                    now,
                    &executor.framework_id,
                    &executor.executor_id,
                    description,
                    limitation,
                    &mut out,
                );
                continue;
            }
            if run.hosted {
                self.recover_hosted(key, run.run_id.clone(), process);
                continue;
            }
            self.processes.insert(key, running);
            let commands = self.commands.clone();
            tokio::spawn(async move {
                watch_process(process).await;
                let _ = commands
                    .send(AgentCommand::ExecutorExited {
                        framework_id: executor.framework_id,
                        executor_id: executor.executor_id,
                        description: "the recovered executor process exited".into(),
                    })
                    .await;
            });
        }
        self.execute(out);
    }
}
