//! `agora run`: launch N instances of a shell command on the cluster and wait
//! for them, like Mesos' `mesos-execute`.
//!
//! Output contract (stdout, one line per task as it ends):
//! `task NAME-I TASK_FINISHED on agent AGENT_ID`, with `: MESSAGE (REASON)`
//! appended for any other terminal state. Exit status: 0 iff every instance
//! ended TASK_FINISHED; 1 otherwise (a task failed or was killed, no agent can
//! fit the task, the master ended the subscription); 2 when the master could
//! not be reached (or the address is invalid) within `--timeout`.

use std::collections::{BTreeMap, VecDeque};
use std::process::ExitCode;
use std::time::Duration;

use agora_scheduler::proto::{AgentId, Filters, Offer, OfferId, TaskId, TaskState, task_status};
use agora_scheduler::{
    Event, EventStream, FrameworkBuilder, SchedulerClient, SubscribeOptions, TaskBuilder,
    current_user, is_terminal, offer_cpus_mem,
};
use anyhow::{Context, anyhow, bail};
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// If no offer has been able to fit one instance this long after the first
/// offers arrived (and nothing of ours runs), give up.
const UNSATISFIABLE_AFTER: Duration = Duration::from_secs(3);
/// While instances remain, unused offers come back this soon.
const REFUSE_WHILE_LAUNCHING: Duration = Duration::from_secs(1);
/// Once everything is launched, unused offers stay away this long (a revive
/// clears it if an instance must be launched again).
const REFUSE_WHEN_DONE: Duration = Duration::from_secs(60);
/// Kills are repeated this often until the tasks end.
const KILL_RETRY: Duration = Duration::from_secs(5);
/// `agora run` is a one-off: if it dies without tearing its framework down,
/// the master kills its tasks after this long instead of the SDK's week.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(60);
/// Slack for floating-point resource arithmetic.
const EPSILON: f64 = 1e-6;

/// Run a shell command as one or more tasks and wait for them to end.
#[derive(clap::Args, Debug)]
pub(crate) struct RunArgs {
    /// Master to run on: HOST:PORT or http://HOST:PORT.
    #[arg(long, env = "AGORA_MASTER", value_name = "HOST:PORT")]
    pub(crate) master: String,

    /// Framework name; also each task's name, and the prefix of the task ids
    /// NAME-0, NAME-1, ...
    #[arg(long, env = "AGORA_NAME")]
    pub(crate) name: String,

    /// Shell command each instance runs (with `sh -c`).
    #[arg(long, env = "AGORA_COMMAND", value_name = "CMD")]
    pub(crate) command: String,

    /// Number of instances (tasks) to launch.
    #[arg(long, env = "AGORA_INSTANCES", value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) instances: u32,

    /// CPUs per instance.
    #[arg(long, env = "AGORA_CPUS", value_name = "C", default_value_t = 0.1)]
    pub(crate) cpus: f64,

    /// Memory per instance, in MB.
    #[arg(long, env = "AGORA_MEM", value_name = "MB", default_value_t = 32.0)]
    pub(crate) mem: f64,

    /// Role to subscribe in and take resources from.
    #[arg(long, env = "AGORA_ROLE", value_name = "ROLE", default_value = "*")]
    pub(crate) role: String,

    /// Seconds to keep trying to reach the master and subscribe before giving
    /// up with exit status 2.
    #[arg(
        long,
        env = "AGORA_TIMEOUT",
        value_name = "SECONDS",
        default_value_t = 30
    )]
    pub(crate) timeout: u64,

    /// User the tasks run as [default: $USER, else root].
    #[arg(long, env = "AGORA_USER", value_name = "USER")]
    pub(crate) user: Option<String>,

    /// Once every instance has been launched and is TASK_RUNNING (or has
    /// already ended), wait SECONDS more, then kill, through the scheduler
    /// API, every task that has not ended yet; those end TASK_KILLED and the
    /// exit status is 1. 0 kills as soon as all are running. Without this
    /// flag tasks run until they end on their own.
    #[arg(
        long,
        alias = "kill_after",
        env = "AGORA_KILL_AFTER",
        value_name = "SECONDS"
    )]
    pub(crate) kill_after: Option<u64>,
}

/// Runs `agora run`. `Err` only for invalid arguments, before anything is
/// sent; every other outcome is reported on stdout/stderr and in the exit
/// status (see the module documentation).
pub(crate) async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    if !(args.cpus.is_finite() && args.cpus > 0.0) {
        bail!("--cpus must be a positive number, got {}", args.cpus);
    }
    if !(args.mem.is_finite() && args.mem > 0.0) {
        bail!("--mem must be a positive number of MB, got {}", args.mem);
    }
    if args.name.is_empty() {
        bail!("--name must not be empty");
    }

    let framework = FrameworkBuilder::new(args.name.clone())
        .user(args.user.clone().unwrap_or_else(current_user))
        .role(args.role.clone())
        .failover_timeout(FAILOVER_TIMEOUT)
        .build();
    let options = SubscribeOptions {
        connect_timeout: Duration::from_secs(args.timeout),
        ..Default::default()
    };
    info!(master = %args.master, name = %args.name, "subscribing");
    let (client, mut events) =
        match SchedulerClient::connect(&args.master, framework, options).await {
            Ok(subscribed) => subscribed,
            Err(
                err @ (agora_scheduler::Error::ConnectTimeout { .. }
                | agora_scheduler::Error::Address(_)),
            ) => {
                eprintln!("error: {err}");
                return Ok(ExitCode::from(2));
            }
            Err(err) => {
                eprintln!("error: {err}");
                return Ok(ExitCode::FAILURE);
            }
        };

    let mut runner = Runner::new(&args, client.clone());
    // The event stream must outlive the teardown: dropping it ends the
    // subscription, and calls after that fail.
    let outcome = runner.drive(&mut events).await;
    if let Err(err) = client.teardown().await {
        warn!(error = %err, "failed to tear down the framework");
    }
    match outcome {
        Ok(true) => Ok(ExitCode::SUCCESS),
        Ok(false) => Ok(ExitCode::FAILURE),
        Err(err) => {
            eprintln!("error: {err:#}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// One launched instance.
#[derive(Debug)]
struct Launched {
    agent_id: AgentId,
    state: TaskState,
}

struct Runner<'a> {
    args: &'a RunArgs,
    client: SchedulerClient,
    /// Instance numbers not launched yet.
    pending: VecDeque<u32>,
    /// Launched instances by task id.
    launched: BTreeMap<String, Launched>,
    suppressed: bool,
    first_offer_at: Option<Instant>,
    /// Whether any offer (one agent's offers in one event) fit an instance.
    ever_fit: bool,
    /// The offer closest to fitting one instance, as (cpus, mem).
    closest_offer: Option<(f64, f64)>,
    kill_at: Option<Instant>,
}

impl<'a> Runner<'a> {
    fn new(args: &'a RunArgs, client: SchedulerClient) -> Self {
        Self {
            args,
            client,
            pending: (0..args.instances).collect(),
            launched: BTreeMap::new(),
            suppressed: false,
            first_offer_at: None,
            ever_fit: false,
            closest_offer: None,
            kill_at: None,
        }
    }

    /// Runs until every instance has ended; `Ok(true)` iff all FINISHED.
    async fn drive(&mut self, events: &mut EventStream) -> anyhow::Result<bool> {
        let interrupted = tokio::signal::ctrl_c();
        tokio::pin!(interrupted);
        while !self.all_ended() {
            let timer = self.next_deadline();
            tokio::select! {
                event = events.recv() => {
                    let event = event.context("the master ended the subscription")?;
                    self.handle(event).await?;
                }
                () = sleep_until(timer) => self.on_timer().await?,
                signal = &mut interrupted => {
                    signal.context("cannot listen for ctrl-c")?;
                    bail!("interrupted; tearing down the framework (its tasks are killed)");
                }
            }
        }
        Ok(self
            .launched
            .values()
            .all(|t| t.state == TaskState::TaskFinished))
    }

    fn all_ended(&self) -> bool {
        self.pending.is_empty() && self.launched.values().all(|t| is_terminal(t.state))
    }

    async fn handle(&mut self, event: Event) -> anyhow::Result<()> {
        match event {
            Event::Subscribed { framework_id, .. } => {
                info!(framework_id = %framework_id.value, "subscribed");
            }
            Event::Offers(offers) => self.on_offers(offers).await?,
            Event::Update(status) => {
                let Some(task_id) = status.task_id.as_ref().map(|t| t.value.clone()) else {
                    return Ok(());
                };
                let Ok(state) = TaskState::try_from(status.state) else {
                    warn!(task_id = %task_id, state = status.state, "ignoring update with unknown state");
                    return Ok(());
                };
                let Some(task) = self.launched.get_mut(&task_id) else {
                    debug!(task_id = %task_id, "update for a task we did not launch");
                    return Ok(());
                };
                if is_terminal(task.state) {
                    return Ok(());
                }
                task.state = state;
                debug!(task_id = %task_id, state = state.as_str_name(), "task update");
                if is_terminal(state) {
                    let agent = status.agent_id.as_ref().unwrap_or(&task.agent_id);
                    let reason = status
                        .reason
                        .and_then(|r| task_status::Reason::try_from(r).ok());
                    println!(
                        "{}",
                        status_line(
                            &task_id,
                            state,
                            &agent.value,
                            status.message.as_deref(),
                            reason
                        )
                    );
                }
                self.arm_kill_timer();
            }
            Event::Error(message) => {
                return Err(anyhow!("the master ended the subscription: {message}"));
            }
            Event::Disconnected { reason } => {
                warn!(reason = %reason, "disconnected from the master; re-subscribing");
            }
            Event::Reconnected => {
                info!("re-subscribed; reconciling tasks");
                let tasks = self
                    .launched
                    .iter()
                    .filter(|(_, t)| !is_terminal(t.state))
                    .map(|(id, t)| (TaskId { value: id.clone() }, Some(t.agent_id.clone())))
                    .collect::<Vec<_>>();
                if !tasks.is_empty() {
                    self.client
                        .reconcile(tasks)
                        .await
                        .context("reconciling tasks")?;
                }
                if !self.pending.is_empty() {
                    self.revive().await?;
                }
            }
            Event::Failure {
                agent_id,
                executor_id,
                status,
            } => {
                warn!(
                    ?agent_id,
                    ?executor_id,
                    ?status,
                    "agent or executor failure"
                );
            }
            Event::Rescind(offer_id) => debug!(offer_id = %offer_id.value, "offer rescinded"),
            _ => {}
        }
        Ok(())
    }

    async fn on_offers(&mut self, offers: Vec<Offer>) -> anyhow::Result<()> {
        self.first_offer_at.get_or_insert_with(Instant::now);

        // One agent may send several offers: pool them per agent.
        let mut by_agent: BTreeMap<String, Vec<Offer>> = BTreeMap::new();
        for offer in offers {
            let agent = offer.agent_id.clone().unwrap_or_default().value;
            by_agent.entry(agent).or_default().push(offer);
        }
        let capacity: Vec<(f64, f64)> = by_agent
            .values()
            .map(|offers| {
                offers
                    .iter()
                    .map(offer_cpus_mem)
                    .fold((0.0, 0.0), |(c, m), (oc, om)| (c + oc, m + om))
            })
            .collect();
        for &(cpus, mem) in &capacity {
            self.note_offer(cpus, mem);
        }
        let plan = plan_placement(&capacity, self.pending.len(), self.args.cpus, self.args.mem);

        let mut unused: Vec<OfferId> = Vec::new();
        for ((agent, offers), count) in by_agent.into_iter().zip(plan) {
            let ids: Vec<OfferId> = offers.iter().filter_map(|o| o.id.clone()).collect();
            if count == 0 {
                unused.extend(ids);
                continue;
            }
            let instances: Vec<u32> = self.pending.drain(..count).collect();
            let tasks = instances
                .iter()
                .map(|&i| {
                    TaskBuilder::command(
                        self.task_id(i),
                        self.args.name.clone(),
                        self.args.command.clone(),
                    )
                    .cpus(self.args.cpus)
                    .mem(self.args.mem)
                    .build_for_offer(&offers[0])
                })
                .collect::<Vec<_>>();
            let refuse = if self.pending.is_empty() {
                REFUSE_WHEN_DONE
            } else {
                REFUSE_WHILE_LAUNCHING
            };
            let filters = Filters {
                refuse_seconds: Some(refuse.as_secs_f64()),
            };
            match self.client.launch(ids, tasks, Some(filters)).await {
                Ok(()) => {
                    info!(agent_id = %agent, count, "launched tasks");
                    for &i in &instances {
                        self.launched.insert(
                            self.task_id(i),
                            Launched {
                                agent_id: AgentId {
                                    value: agent.clone(),
                                },
                                state: TaskState::TaskStaging,
                            },
                        );
                    }
                }
                Err(err) => {
                    // The offer may have been rescinded meanwhile: put the
                    // instances back for the next offers.
                    warn!(agent_id = %agent, error = %err, "launch failed; retrying on later offers");
                    for &i in instances.iter().rev() {
                        self.pending.push_front(i);
                    }
                }
            }
        }

        if !unused.is_empty() {
            let refuse = if self.pending.is_empty() {
                REFUSE_WHEN_DONE
            } else {
                REFUSE_WHILE_LAUNCHING
            };
            if let Err(err) = self.client.decline(unused, Some(refuse)).await {
                warn!(error = %err, "failed to decline offers");
            }
        }
        if self.pending.is_empty() && !self.suppressed {
            match self.client.suppress(vec![self.args.role.clone()]).await {
                Ok(()) => self.suppressed = true,
                Err(err) => warn!(error = %err, "failed to suppress offers"),
            }
        }
        self.arm_kill_timer();
        Ok(())
    }

    async fn revive(&mut self) -> anyhow::Result<()> {
        self.client
            .revive(vec![self.args.role.clone()])
            .await
            .context("reviving offers")?;
        self.suppressed = false;
        Ok(())
    }

    /// Remembers whether an offer fits one instance, and the closest one.
    fn note_offer(&mut self, cpus: f64, mem: f64) {
        if instances_fitting(cpus, mem, self.args.cpus, self.args.mem) > 0 {
            self.ever_fit = true;
        }
        let closeness = |(c, m): (f64, f64)| (c / self.args.cpus).min(m / self.args.mem);
        if self
            .closest_offer
            .is_none_or(|best| closeness((cpus, mem)) > closeness(best))
        {
            self.closest_offer = Some((cpus, mem));
        }
    }

    /// Starts the `--kill-after` countdown once every instance is launched
    /// and running (or ended).
    fn arm_kill_timer(&mut self) {
        let Some(after) = self.args.kill_after else {
            return;
        };
        let all_running = self.pending.is_empty()
            && self
                .launched
                .values()
                .all(|t| t.state == TaskState::TaskRunning || is_terminal(t.state));
        if self.kill_at.is_none() && all_running {
            info!(
                seconds = after,
                "all tasks running; killing them after --kill-after"
            );
            self.kill_at = Some(Instant::now() + Duration::from_secs(after));
        }
    }

    fn unsatisfiable_at(&self) -> Option<Instant> {
        match (self.ever_fit, self.first_offer_at) {
            (false, Some(first)) if self.launched.is_empty() => Some(first + UNSATISFIABLE_AFTER),
            _ => None,
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        [self.unsatisfiable_at(), self.kill_at]
            .into_iter()
            .flatten()
            .min()
    }

    async fn on_timer(&mut self) -> anyhow::Result<()> {
        let now = Instant::now();
        if self.unsatisfiable_at().is_some_and(|at| at <= now) {
            let (cpus, mem) = self.closest_offer.unwrap_or_default();
            bail!(
                "no agent can ever fit a task of cpus:{};mem:{} (largest offer: cpus:{cpus};mem:{mem})",
                self.args.cpus,
                self.args.mem
            );
        }
        if self.kill_at.is_some_and(|at| at <= now) {
            self.kill_at = Some(now + KILL_RETRY);
            for (task_id, task) in &self.launched {
                if is_terminal(task.state) {
                    continue;
                }
                info!(task_id = %task_id, "killing task (--kill-after)");
                let id = TaskId {
                    value: task_id.clone(),
                };
                if let Err(err) = self.client.kill(id, Some(task.agent_id.clone())).await {
                    warn!(task_id = %task_id, error = %err, "kill failed; retrying");
                }
            }
        }
        Ok(())
    }

    fn task_id(&self, instance: u32) -> String {
        format!("{}-{instance}", self.args.name)
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// How many instances of `cpus`/`mem` fit in `offered_cpus`/`offered_mem`.
fn instances_fitting(offered_cpus: f64, offered_mem: f64, cpus: f64, mem: f64) -> usize {
    let by_cpus = ((offered_cpus + EPSILON) / cpus).floor();
    let by_mem = ((offered_mem + EPSILON) / mem).floor();
    let n = by_cpus.min(by_mem);
    if n.is_finite() && n > 0.0 {
        n as usize
    } else {
        0
    }
}

/// How many of `pending` instances to put on each agent, given each agent's
/// offered (cpus, mem). When several agents can take an instance, none gets
/// more than ceil(pending / those agents), so instances spread out.
fn plan_placement(agents: &[(f64, f64)], pending: usize, cpus: f64, mem: f64) -> Vec<usize> {
    let fits: Vec<usize> = agents
        .iter()
        .map(|&(c, m)| instances_fitting(c, m, cpus, mem))
        .collect();
    let usable = fits.iter().filter(|&&n| n > 0).count();
    let cap = if usable > 1 {
        pending.div_ceil(usable)
    } else {
        pending
    };
    let mut left = pending;
    fits.into_iter()
        .map(|fit| {
            let n = fit.min(cap).min(left);
            left -= n;
            n
        })
        .collect()
}

/// The line printed when a task ends.
fn status_line(
    task_id: &str,
    state: TaskState,
    agent_id: &str,
    message: Option<&str>,
    reason: Option<task_status::Reason>,
) -> String {
    let mut line = format!("task {task_id} {} on agent {agent_id}", state.as_str_name());
    if state != TaskState::TaskFinished {
        if let Some(message) = message.filter(|m| !m.is_empty()) {
            line.push_str(": ");
            line.push_str(message);
        }
        if let Some(reason) = reason {
            line.push_str(&format!(" ({})", reason.as_str_name()));
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        args: RunArgs,
    }

    #[test]
    fn parses_flags_defaults_and_aliases() {
        let cli = Cli::try_parse_from([
            "run",
            "--master",
            "127.0.0.1:5050",
            "--name",
            "smoke",
            "--command",
            "true",
        ])
        .expect("valid flags");
        assert_eq!(cli.args.instances, 1);
        assert_eq!(cli.args.cpus, 0.1);
        assert_eq!(cli.args.mem, 32.0);
        assert_eq!(cli.args.role, "*");
        assert_eq!(cli.args.timeout, 30);
        assert_eq!(cli.args.kill_after, None);

        let cli = Cli::try_parse_from([
            "run",
            "--master",
            "m:1",
            "--name",
            "n",
            "--command",
            "c",
            "--instances",
            "3",
            "--kill_after",
            "2",
        ])
        .expect("valid flags");
        assert_eq!(cli.args.instances, 3);
        assert_eq!(cli.args.kill_after, Some(2));

        assert!(
            Cli::try_parse_from([
                "run",
                "--master",
                "m:1",
                "--name",
                "n",
                "--command",
                "c",
                "--instances",
                "0"
            ])
            .is_err()
        );
        assert!(Cli::try_parse_from(["run", "--name", "n", "--command", "c"]).is_err());
    }

    #[test]
    fn counts_instances_that_fit() {
        assert_eq!(instances_fitting(1.0, 1024.0, 0.1, 32.0), 10);
        assert_eq!(instances_fitting(0.3, 1024.0, 0.1, 32.0), 3);
        assert_eq!(instances_fitting(4.0, 100.0, 0.1, 32.0), 3);
        assert_eq!(instances_fitting(0.05, 1024.0, 0.1, 32.0), 0);
        assert_eq!(instances_fitting(0.0, 0.0, 0.1, 32.0), 0);
    }

    #[test]
    fn spreads_instances_over_agents() {
        // Two roomy agents share four instances evenly.
        assert_eq!(
            plan_placement(&[(4.0, 4096.0), (4.0, 4096.0)], 4, 0.1, 32.0),
            vec![2, 2]
        );
        // Odd counts: no agent gets more than ceil(5 / 2) = 3.
        assert_eq!(
            plan_placement(&[(4.0, 4096.0), (4.0, 4096.0)], 5, 0.1, 32.0),
            vec![3, 2]
        );
        // An agent that can take nothing does not count towards the spread.
        assert_eq!(
            plan_placement(&[(0.0, 0.0), (4.0, 4096.0)], 4, 0.1, 32.0),
            vec![0, 4]
        );
        // A small agent takes what fits; the cap still holds for the other.
        assert_eq!(
            plan_placement(&[(0.1, 4096.0), (4.0, 4096.0), (4.0, 4096.0)], 6, 0.1, 32.0),
            vec![1, 2, 2]
        );
        // A single agent takes as many as fit.
        assert_eq!(plan_placement(&[(0.35, 4096.0)], 5, 0.1, 32.0), vec![3]);
        assert_eq!(plan_placement(&[(4.0, 4096.0)], 0, 0.1, 32.0), vec![0]);
    }

    #[test]
    fn formats_terminal_lines() {
        assert_eq!(
            status_line(
                "smoke-3",
                TaskState::TaskFinished,
                "a1",
                Some("ignored"),
                None
            ),
            "task smoke-3 TASK_FINISHED on agent a1"
        );
        assert_eq!(
            status_line(
                "smoke-0",
                TaskState::TaskFailed,
                "a2",
                Some("command exited with status 3"),
                Some(task_status::Reason::CommandExecutorFailed),
            ),
            "task smoke-0 TASK_FAILED on agent a2: command exited with status 3 (REASON_COMMAND_EXECUTOR_FAILED)"
        );
        assert_eq!(
            status_line("x-1", TaskState::TaskKilled, "a3", Some(""), None),
            "task x-1 TASK_KILLED on agent a3"
        );
    }
}
