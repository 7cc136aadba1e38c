//! `agora run`: launch N instances of a shell command on the cluster and wait
//! for them, like Mesos' `mesos-execute`.
//!
//! Output contract (stdout, one line per task as it ends):
//! `task NAME-I TASK_FINISHED on agent AGENT_ID`, with `: MESSAGE (REASON)`
//! appended for any other terminal state; with `--health-check`, one line
//! each time a task's health changes: `task NAME-I healthy=BOOL: MESSAGE`;
//! once every task has ended, a summary: `N tasks: N finished in S s` (other
//! outcomes counted after the finished ones). Progress (stderr, unless
//! `--quiet`): one line per state change before the end, as it happens,
//! `HH:MM:SS.mmm NAME-I TASK_RUNNING[ on agent AGENT_ID][: MESSAGE]` (UTC; the
//! agent when the task is launched). Errors: one line on stderr, `agora: `
//! first. Exit status: 0 iff every instance
//! ended TASK_FINISHED; 1 otherwise (a task failed or was killed, no agent can
//! fit the task, the master refused the launch, the master ended the
//! subscription, a signal); 2 when the master could not be reached (or the
//! address is invalid) within `--timeout`.
//!
//! It never holds a cluster hostage: offers it cannot use are declined, a
//! launch the master refuses for good (an invalid task) ends the job with the
//! master's reason, "no agent can ever fit" means bigger than every agent's
//! *total* resources (from the master's `/state`), so on a busy cluster it
//! waits (until `--launch-timeout`, if given), and SIGINT, SIGTERM and
//! SIGHUP tear its framework down before it exits.
//!
//! It is partition-aware: a task whose agent is unreachable is reported
//! TASK_UNREACHABLE and is waited for (its real outcome comes when the agent
//! returns); only after [`UNREACHABLE_GIVE_UP`] does the job count it lost.
//! Its teardown happens once every task has ended, so it never kills a task
//! that is still fine or has already finished.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use agora_scheduler::proto::framework_info::capability::Type as Capability;
use agora_scheduler::proto::{AgentId, Filters, Offer, OfferId, TaskId, TaskState, task_status};
use agora_scheduler::{
    Event, EventStream, FrameworkBuilder, SchedulerClient, SubscribeOptions, current_user,
    is_terminal,
};
use anyhow::{Context, anyhow, bail};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::time::Instant;
use tracing::{debug, info, warn};

#[path = "run_lines.rs"]
mod lines;
#[path = "run_options.rs"]
mod run_options;

use lines::{health_line, progress_line, status_line, summary_line};
pub(crate) use run_options::RunArgs;
use run_options::{Capacity, plan_placement, task_info};

use crate::usage::PREFIX;

/// While offers cannot fit an instance, the agents' totals are checked again
/// at most this often (agents come and go).
const FIT_RECHECK: Duration = Duration::from_secs(30);
/// How long the master's `/state` may take to answer.
const STATE_TIMEOUT: Duration = Duration::from_secs(5);
/// A task unreachable this long counts as lost (its agent may never return).
const UNREACHABLE_GIVE_UP: Duration = Duration::from_secs(600);
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
    let started = Instant::now();

    // Before anything is sent, so that a signal during the connection is not
    // lost and cannot kill the process before its framework is torn down.
    let mut signals = Signals::new().context("cannot listen for signals")?;
    let framework = FrameworkBuilder::new(args.name.clone())
        .user(args.user.clone().unwrap_or_else(current_user))
        .role(args.role.clone())
        .failover_timeout(FAILOVER_TIMEOUT)
        .capability(Capability::PartitionAware)
        .build();
    // The framework is its credential's principal: a master that
    // authenticates frameworks requires FrameworkInfo.principal to be it.
    let credential = args.auth.credential()?;
    let mut framework = framework;
    framework.principal = credential.as_ref().map(|c| c.principal.to_string());
    let tls = args.tls.client()?;
    let options = SubscribeOptions {
        connect_timeout: Duration::from_secs(args.timeout),
        tls: tls.clone(),
        credential,
        ..Default::default()
    };
    info!(master = %args.master, name = %args.name, "subscribing");
    let (client, mut events) =
        match SchedulerClient::connect(&args.master, framework, options).await {
            Ok(subscribed) => subscribed,
            Err(err @ agora_scheduler::Error::ConnectTimeout { .. }) => {
                eprintln!("{PREFIX}{err}; {}", crate::operator::UNREACHABLE_HINT);
                return Ok(ExitCode::from(2));
            }
            Err(err @ agora_scheduler::Error::Address(_)) => {
                eprintln!("{PREFIX}invalid --master: {err}");
                return Ok(ExitCode::from(2));
            }
            Err(err) => {
                eprintln!("{PREFIX}{err}");
                return Ok(ExitCode::FAILURE);
            }
        };

    let mut runner = Runner::new(&args, client.clone());
    // The event stream must outlive the teardown: dropping it ends the
    // subscription, and calls after that fail.
    let outcome = runner.drive(&mut events, &mut signals).await;
    if let Err(err) = client.teardown().await {
        warn!(error = %err, "failed to tear down the framework");
    }
    match outcome {
        Ok(all_finished) => {
            let ended = runner.launched.values().map(|t| t.state);
            println!("{}", summary_line(ended, started.elapsed()));
            Ok(if all_finished {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Err(err) => {
            eprintln!("{PREFIX}{}", crate::report::report(&err));
            Ok(ExitCode::FAILURE)
        }
    }
}

/// SIGINT, SIGTERM and SIGHUP, each of which ends the job with a teardown.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// The name of the next signal received.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.hangup.recv() => "SIGHUP",
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
    /// Since when it has been TASK_UNREACHABLE.
    unreachable_since: Option<Instant>,
}

impl Launched {
    fn new(agent_id: AgentId) -> Self {
        Self {
            agent_id,
            state: TaskState::TaskStaging,
            healthy: None,
            unreachable_since: None,
        }
    }
}

/// Whether the master refused a launch for good: the same tasks would be
/// refused again on any offer (an invalid task), as opposed to an offer that
/// went away meanwhile or a call that may or may not have been applied.
fn refused_for_good(err: &agora_scheduler::Error) -> bool {
    matches!(
        err.code(),
        Some(tonic::Code::InvalidArgument | tonic::Code::PermissionDenied)
    )
}

struct Runner<'a> {
    args: &'a RunArgs,
    client: SchedulerClient,
    /// Instance numbers not launched yet.
    pending: VecDeque<u32>,
    /// Launched instances by task id.
    launched: BTreeMap<String, Launched>,
    /// Instances whose launch call failed without saying whether it was
    /// applied (a timeout): an update for one of them means it was.
    uncertain: BTreeSet<u32>,
    suppressed: bool,
    /// When the agents' totals were last checked against one instance.
    fit_checked_at: Option<Instant>,
    /// Until when instances may wait for room (`--launch-timeout`).
    launch_deadline: Option<Instant>,
    kill_at: Option<Instant>,
}

impl<'a> Runner<'a> {
    fn new(args: &'a RunArgs, client: SchedulerClient) -> Self {
        Self {
            args,
            client,
            pending: (0..args.instances).collect(),
            launched: BTreeMap::new(),
            uncertain: BTreeSet::new(),
            suppressed: false,
            fit_checked_at: None,
            launch_deadline: args
                .launch_timeout
                .map(|secs| Instant::now() + Duration::from_secs(secs)),
            kill_at: None,
        }
    }

    /// Runs until every instance has ended; `Ok(true)` iff all FINISHED.
    async fn drive(
        &mut self,
        events: &mut EventStream,
        signals: &mut Signals,
    ) -> anyhow::Result<bool> {
        while !self.all_ended() {
            let timer = self.next_deadline();
            tokio::select! {
                event = events.recv() => {
                    let event = event.context("the master ended the subscription")?;
                    self.handle(event).await?;
                }
                () = sleep_until(timer) => self.on_timer().await?,
                name = signals.recv() => {
                    bail!("{name}: tearing down the framework (its tasks are killed)");
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
                if self.fit_checked_at.is_none() {
                    self.check_fit().await?;
                }
            }
            Event::Offers(offers) => self.on_offers(offers).await?,
            Event::Update(status) => {
                let Some(task_id) = status.task_id.as_ref().map(|t| t.value.clone()) else {
                    return Ok(());
                };
                let Ok(state) = TaskState::try_from(status.state.unwrap_or_default()) else {
                    warn!(task_id = %task_id, state = status.state, "ignoring update with unknown state");
                    return Ok(());
                };
                self.adopt_uncertain(&task_id, &status);
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
                let changed = task.state != state;
                task.state = state;
                debug!(task_id = %task_id, state = state.as_str_name(), "task update");
                if changed && !is_terminal(state) && !self.args.quiet {
                    eprintln!(
                        "{}",
                        progress_line(
                            SystemTime::now(),
                            &task_id,
                            state,
                            None,
                            status.message.as_deref()
                        )
                    );
                }
                if state == TaskState::TaskUnreachable {
                    // Not an outcome: its agent may come back with it.
                    task.unreachable_since.get_or_insert_with(Instant::now);
                    if self.args.quiet {
                        warn!(task_id = %task_id, message = status.message.as_deref().unwrap_or(""), "task unreachable; waiting for its agent");
                    }
                } else {
                    task.unreachable_since = None;
                }
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
                // A call that fails here (the master just died again, say)
                // ends nothing: the SDK reports the broken stream and
                // re-subscribes, and the next Reconnected asks again.
                if !tasks.is_empty()
                    && let Err(e) = self.client.reconcile(tasks).await
                {
                    warn!(error = %e, "reconciliation not sent; retried on the next re-subscription");
                }
                if !self.pending.is_empty()
                    && let Err(e) = self.revive().await
                {
                    warn!(error = %e, "revive not sent; retried on the next re-subscription");
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
        // One agent may send several offers: pool them per agent.
        let mut by_agent: BTreeMap<String, Vec<Offer>> = BTreeMap::new();
        for offer in offers {
            let agent = offer.agent_id.clone().unwrap_or_default().value;
            by_agent.entry(agent).or_default().push(offer);
        }
        let demand = self.args.demand();
        let mut capacity: Vec<Capacity> = by_agent.values().map(|o| Capacity::of(o)).collect();
        let fits: Vec<usize> = capacity.iter().map(|c| c.fits(&demand)).collect();
        let plan = plan_placement(&fits, self.pending.len());
        if !self.pending.is_empty()
            && fits.iter().all(|&n| n == 0)
            && self
                .fit_checked_at
                .is_none_or(|at| at.elapsed() >= FIT_RECHECK)
        {
            // Nothing offered fits: busy, or too big for every agent?
            let all: Vec<OfferId> = by_agent
                .values()
                .flatten()
                .filter_map(|o| o.id.clone())
                .collect();
            if let Err(err) = self.check_fit().await {
                self.decline(all, REFUSE_WHILE_LAUNCHING).await;
                return Err(err);
            }
        }

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
            match self.client.launch(ids.clone(), tasks, Some(filters)).await {
                Ok(()) => {
                    info!(agent_id = %agent, count, "launched tasks");
                    for &i in &instances {
                        self.uncertain.remove(&i);
                        let agent_id = AgentId {
                            value: agent.clone(),
                        };
                        if !self.args.quiet {
                            eprintln!(
                                "{}",
                                progress_line(
                                    SystemTime::now(),
                                    &self.task_id(i),
                                    TaskState::TaskStaging,
                                    Some(&agent),
                                    None
                                )
                            );
                        }
                        self.launched
                            .insert(self.task_id(i), Launched::new(agent_id));
                    }
                }
                // The same tasks would be refused on any offer: end the job
                // with the master's reason (unless an earlier, uncertain
                // launch of these very tasks may be what makes them invalid).
                Err(err)
                    if refused_for_good(&err)
                        && !instances.iter().any(|i| self.uncertain.contains(i)) =>
                {
                    self.decline(ids, REFUSE_WHILE_LAUNCHING).await;
                    self.decline(unused, REFUSE_WHILE_LAUNCHING).await;
                    return Err(anyhow!(err).context("the master refused to launch the tasks"));
                }
                Err(err) => {
                    // The offer may have been rescinded meanwhile, or the call
                    // timed out: put the instances back for later offers, and
                    // give these back (those still valid) so none is held.
                    warn!(agent_id = %agent, error = %err, "launch failed; retrying on later offers");
                    if err.code().is_none() {
                        self.uncertain.extend(instances.iter().copied());
                    }
                    for &i in instances.iter().rev() {
                        self.pending.push_front(i);
                    }
                    for id in ids {
                        self.decline(vec![id], REFUSE_WHILE_LAUNCHING).await;
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
            self.decline(unused, refuse).await;
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

    /// Declines offers; one that went away meanwhile needs nothing more.
    async fn decline(&self, offers: Vec<OfferId>, refuse: Duration) {
        if offers.is_empty() {
            return;
        }
        if let Err(err) = self.client.decline(offers, Some(refuse)).await {
            debug!(error = %err, "failed to decline offers");
        }
    }

    /// Fails the job if one instance is bigger than every agent's total
    /// resources (it could never run); a busy cluster only makes it wait.
    /// When the totals cannot be read, it waits too.
    async fn check_fit(&mut self) -> anyhow::Result<()> {
        self.fit_checked_at = Some(Instant::now());
        let master = self.client.master();
        let tls = self.args.tls.client().ok().flatten();
        let totals = match agent_totals(&master, tls.as_ref()).await {
            Ok(totals) => totals,
            Err(err) => {
                warn!(master = %master, error = format!("{err:#}"), "cannot read the agents' totals; waiting for offers");
                return Ok(());
            }
        };
        let demand = self.args.demand();
        if totals.is_empty() || totals.iter().any(|t| t.fits(&demand) > 0) {
            return Ok(());
        }
        let largest = totals
            .iter()
            .max_by(|a, b| a.closeness(&demand).total_cmp(&b.closeness(&demand)))
            .cloned()
            .unwrap_or_default();
        bail!(
            "no agent can ever fit a task of {} (largest agent: {}): ask for less with \
             --cpus, --mem, --disk or --ports, or add a bigger agent",
            demand.describe(&demand),
            largest.describe(&demand)
        );
    }

    /// An update for an instance whose launch call failed uncertainly: the
    /// call was applied after all, so the instance is launched.
    fn adopt_uncertain(&mut self, task_id: &str, status: &agora_scheduler::proto::TaskStatus) {
        if self.launched.contains_key(task_id) {
            return;
        }
        let Some(&instance) = self.uncertain.iter().find(|&&i| self.task_id(i) == task_id) else {
            return;
        };
        let Some(agent_id) = status.agent_id.clone() else {
            return;
        };
        self.uncertain.remove(&instance);
        self.pending.retain(|&i| i != instance);
        info!(task_id = %task_id, "an uncertain launch was applied");
        self.launched
            .insert(task_id.to_string(), Launched::new(agent_id));
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

    /// When the first unreachable task is given up on.
    fn give_up_at(&self) -> Option<Instant> {
        self.launched
            .values()
            .filter(|t| !is_terminal(t.state))
            .filter_map(|t| t.unreachable_since)
            .min()
            .map(|since| since + UNREACHABLE_GIVE_UP)
    }

    fn next_deadline(&self) -> Option<Instant> {
        let launch_deadline = self.launch_deadline.filter(|_| !self.pending.is_empty());
        [launch_deadline, self.give_up_at(), self.kill_at]
            .into_iter()
            .flatten()
            .min()
    }

    async fn on_timer(&mut self) -> anyhow::Result<()> {
        let now = Instant::now();
        if !self.pending.is_empty() && self.launch_deadline.is_some_and(|at| at <= now) {
            bail!(
                "{} instance(s) could not be launched within --launch-timeout: no agent had room",
                self.pending.len()
            );
        }
        for (task_id, task) in &mut self.launched {
            if !is_terminal(task.state)
                && task
                    .unreachable_since
                    .is_some_and(|since| since + UNREACHABLE_GIVE_UP <= now)
            {
                task.state = TaskState::TaskLost;
                let message = format!(
                    "unreachable for {} s; given up",
                    UNREACHABLE_GIVE_UP.as_secs()
                );
                println!(
                    "{}",
                    status_line(
                        task_id,
                        task.state,
                        &task.agent_id.value,
                        Some(&message),
                        None
                    )
                );
            }
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

/// Every agent's total resources, from the master's `/state` (on the port
/// the scheduler API is served on).
async fn agent_totals(
    master: &str,
    tls: Option<&agora_tls::ClientTls>,
) -> anyhow::Result<Vec<Capacity>> {
    let base = if master.starts_with("http://") || master.starts_with("https://") {
        master.trim_end_matches('/').to_string()
    } else {
        format!("http://{master}")
    };
    let url = format!("{base}/state");
    // reqwest is built with TLS but no crypto provider (see the fetcher):
    // install the process-wide one first (a second install is harmless).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let builder = match tls {
        Some(tls) => tls.reqwest_builder(),
        None => reqwest::Client::builder(),
    };
    let client = builder
        .timeout(STATE_TIMEOUT)
        .build()
        .context("cannot build an http client")?;
    let response = client
        .get(&url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("GET {url}"))?;
    let body = response
        .bytes()
        .await
        .with_context(|| format!("GET {url}"))?;
    let state: serde_json::Value =
        serde_json::from_slice(&body).with_context(|| format!("{url} is not JSON"))?;
    Ok(totals_of_state(&state))
}

/// The `resources` of each agent in a `/state` document.
fn totals_of_state(state: &serde_json::Value) -> Vec<Capacity> {
    let agents = state
        .get("agents")
        .and_then(serde_json::Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    agents
        .iter()
        .filter_map(|agent| agent.get("resources"))
        .map(|resources| {
            let number = |name: &str| {
                resources
                    .get(name)
                    .and_then(serde_json::Value::as_f64)
                    .unwrap_or(0.0)
            };
            let ports = resources
                .get("ports")
                .and_then(serde_json::Value::as_str)
                .map(parse_ranges)
                .unwrap_or_default();
            Capacity {
                cpus: number("cpus"),
                mem: number("mem"),
                disk: number("disk"),
                ports,
            }
        })
        .collect()
}

/// `[31000-32000,33000-33010]` as port ranges; what does not parse is left out.
fn parse_ranges(text: &str) -> Vec<(u16, u16)> {
    text.trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .filter_map(|range| {
            let (begin, end) = range.trim().split_once('-')?;
            let (begin, end) = (begin.parse::<u16>().ok()?, end.parse::<u16>().ok()?);
            (begin >= 1 && begin <= end).then_some((begin, end))
        })
        .collect()
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
