//! `agora run`: launch N instances of a shell command on the cluster and wait
//! for them, like Mesos' `mesos-execute`.
//!
//! Output contract (stdout, one line per task as it ends):
//! `task NAME-I TASK_FINISHED on agent AGENT_ID`, with `: MESSAGE (REASON)`
//! appended for any other terminal state; and with `--health-check`, one line
//! each time a task's health changes: `task NAME-I healthy=BOOL: MESSAGE`. Exit status: 0 iff every instance
//! ended TASK_FINISHED; 1 otherwise (a task failed or was killed, no agent can
//! fit the task, the master ended the subscription); 2 when the master could
//! not be reached (or the address is invalid) within `--timeout`.

use std::collections::{BTreeMap, VecDeque};
use std::process::ExitCode;
use std::time::Duration;

use agora_scheduler::proto::{AgentId, Filters, Offer, OfferId, TaskId, TaskState, task_status};
use agora_scheduler::{
    Event, EventStream, FrameworkBuilder, SchedulerClient, SubscribeOptions, current_user,
    is_terminal,
};
use anyhow::{Context, anyhow, bail};
use tokio::time::Instant;
use tracing::{debug, info, warn};

#[path = "run_options.rs"]
mod run_options;

pub(crate) use run_options::RunArgs;
use run_options::{Capacity, plan_placement, task_info};

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

/// Runs `agora run`. `Err` only for invalid arguments, before anything is
/// sent; every other outcome is reported on stdout/stderr and in the exit
/// status (see the module documentation).
pub(crate) async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    args.validate()?;

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
    /// The last `healthy` reported for it.
    healthy: Option<bool>,
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
    /// The offer closest to fitting one instance.
    closest_offer: Option<Capacity>,
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
                if let Some(healthy) = status.healthy.filter(|&h| task.healthy != Some(h)) {
                    task.healthy = Some(healthy);
                    println!(
                        "{}",
                        health_line(&task_id, healthy, status.message.as_deref())
                    );
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
        let demand = self.args.demand();
        let mut capacity: Vec<Capacity> = by_agent.values().map(|o| Capacity::of(o)).collect();
        for agent in &capacity {
            self.note_offer(agent);
        }
        let fits: Vec<usize> = capacity.iter().map(|c| c.fits(&demand)).collect();
        let plan = plan_placement(&fits, self.pending.len());

        let mut unused: Vec<OfferId> = Vec::new();
        for (((agent, offers), count), free) in by_agent.into_iter().zip(plan).zip(&mut capacity) {
            let ids: Vec<OfferId> = offers.iter().filter_map(|o| o.id.clone()).collect();
            if count == 0 {
                unused.extend(ids);
                continue;
            }
            let instances: Vec<u32> = self.pending.drain(..count).collect();
            let tasks = instances
                .iter()
                .map(|&i| {
                    // `fits` counted the ports, so these are there.
                    let ports = free.take_ports(demand.ports).unwrap_or_default();
                    task_info(self.args, self.task_id(i), &offers[0], &ports)
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
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
                                healthy: None,
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
    fn note_offer(&mut self, offered: &Capacity) {
        let demand = self.args.demand();
        if offered.fits(&demand) > 0 {
            self.ever_fit = true;
        }
        if self
            .closest_offer
            .as_ref()
            .is_none_or(|best| offered.closeness(&demand) > best.closeness(&demand))
        {
            self.closest_offer = Some(offered.clone());
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
            let demand = self.args.demand();
            let closest = self.closest_offer.clone().unwrap_or_default();
            bail!(
                "no agent can ever fit a task of {} (largest offer: {})",
                demand.describe(&demand),
                closest.describe(&demand)
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

/// The line printed when a task's health changes.
fn health_line(task_id: &str, healthy: bool, message: Option<&str>) -> String {
    match message.filter(|m| !m.is_empty()) {
        Some(message) => format!("task {task_id} healthy={healthy}: {message}"),
        None => format!("task {task_id} healthy={healthy}"),
    }
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

    #[test]
    fn formats_health_lines() {
        assert_eq!(
            health_line(
                "t-0",
                false,
                Some("health check failed (1 of 3 consecutive): boom")
            ),
            "task t-0 healthy=false: health check failed (1 of 3 consecutive): boom"
        );
        assert_eq!(health_line("t-1", true, None), "task t-1 healthy=true");
        assert_eq!(health_line("t-1", true, Some("")), "task t-1 healthy=true");
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
