//! `agora supervisor`: one process per agent that hosts the agent's command
//! executors, instead of an `agora executor` process per task.
//!
//! Each hosted executor is the same code as `agora executor`
//! ([`crate::executor::run_hosted`]): its own executor session with its own
//! token, its acknowledgements and retries, but as a task of this process's
//! runtime, over this process's one HTTP/2 connection to the agent. Its
//! task's process is a direct child of this process, in its own process
//! group, started inside its container.
//!
//! `agora supervisor` is two processes: the keeper ([`keeper`]), which the
//! agent starts and watches, and below it the worker (`agora supervisor
//! --worker`, this module), which hosts the executors. When a worker dies
//! its tasks keep running under the keeper; the keeper starts another
//! worker, which attaches saying it is adopting, and the agent hands it
//! back each run whose task it knows (ADOPT): the adopted executor
//! re-subscribes holding its task and waits for the task's exit, which
//! the keeper reaps and passes on ([`exits`]).
//!
//! The worker attaches to the agent with one stream
//! (`agora.v1.supervisor.Supervisor/Attach`, HELLO first), over the socket
//! pair the agent handed it as standard input. The agent sends orders
//! (host, kill, forget) and the supervisor reports its tasks' pids and its
//! executors' ends.
//!
//! *Invariants:*
//! - the keeper leads a session of its own, so agent restarts do not
//!   touch it, its worker or its tasks;
//! - a worker offers to take new executors until its connection to the
//!   agent is lost or the agent tells it to drain; the agent takes the
//!   offer only from the supervisor it started (its token). Once the
//!   connection is lost (the agent stopped), the worker re-attaches over
//!   the agent's port to report its runs' ends to the next agent, takes
//!   nothing new, and exits when it hosts nothing and every end has been
//!   forgotten (the next agent starts a supervisor of its own);
//! - every run's end is reported until the agent forgets it: a report lost
//!   with a connection is in the next HELLO.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use agora_core::Backoff;
use agora_proto::v1::supervisor::{
    self as sv, Ended, Hello, HostedRun, Order, Report, order, report,
    supervisor_client::SupervisorClient,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::executor::{
    ENV_AGENT_ENDPOINT, ENV_SUPERVISOR_TOKEN, ExecutorEnv, ExecutorError, OnTaskStarted,
    RECOVERY_TIMEOUT, local, tls_from_env,
};
use crate::launch::LaunchConfig;

pub mod keeper;

use crate::orphans::ExitBook;

/// What a supervisor worker is started with.
#[derive(Debug, Clone)]
pub struct SupervisorEnv {
    pub agent_endpoint: String,
    pub token: String,
    pub tls: Option<agora_tls::ClientTls>,
    pub local: local::LocalConnection,
    /// The keeper that started this worker (`None`: started directly).
    pub keeper: Option<u32>,
    /// How many workers the keeper started before this one.
    pub generation: u64,
    /// Orphans' exits, as the keeper reports them.
    pub exits: Arc<ExitBook>,
}

impl SupervisorEnv {
    pub fn from_env() -> Result<Self, ExecutorError> {
        let get =
            |name: &'static str| std::env::var(name).map_err(|_| ExecutorError::MissingEnv(name));
        let keeper = std::env::var(keeper::ENV_KEEPER_PID)
            .ok()
            .and_then(|v| v.parse().ok());
        let generation = std::env::var(keeper::ENV_GENERATION)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let exits = Arc::new(ExitBook::default());
        if generation > 0 {
            // Standard input is the keeper's exit pipe.
            let pipe = local::take_stdin_fd().map_err(|e| {
                ExecutorError::Launch(format!("cannot read the keeper's exits: {e}"))
            })?;
            let book = exits.clone();
            std::thread::Builder::new()
                .name("keeper-exits".into())
                .spawn(move || book.read_from(std::fs::File::from(pipe)))
                .map_err(|e| ExecutorError::Launch(format!("cannot start a thread: {e}")))?;
        }
        Ok(Self {
            agent_endpoint: get(ENV_AGENT_ENDPOINT)?,
            token: get(ENV_SUPERVISOR_TOKEN)?,
            tls: tls_from_env(|name| std::env::var(name).ok())?,
            local: local::LocalConnection::inherit(
                std::env::var(local::ENV_AGENT_CONNECTION).ok().as_deref(),
            ),
            keeper,
            generation,
            exits,
        })
    }
}

/// What a hosted executor tells the supervisor's loop.
enum HostEvent {
    TaskStarted { run_id: String, pid: u32 },
    Ended { run_id: String, description: String },
}

/// How long an adopted executor waits for the exit of a task that was
/// already gone when it was adopted (the keeper may still be reporting
/// it) before it calls the exit lost.
const LOST_EXIT_WAIT: Duration = Duration::from_secs(10);

/// One hosted executor run.
struct Run {
    framework_id: String,
    executor_id: String,
    task: Option<(u32, u64)>,
    handle: JoinHandle<()>,
}

struct Host {
    env: SupervisorEnv,
    runs: HashMap<String, Run>,
    /// Ends not yet forgotten by the agent.
    ended: Vec<Ended>,
    /// Whether new executors are taken: only over the first connection.
    accepts_hosts: bool,
    channel: watch::Sender<Option<Channel>>,
    events: mpsc::UnboundedSender<HostEvent>,
    /// One isolator for every hosted executor.
    isolators: Arc<crate::executor::prepare::IsolatorCache>,
}

/// How one attachment ended.
enum Detached {
    /// The connection is gone; attach again.
    Lost,
    /// The agent refused the supervisor's token: nothing to attach to.
    Refused(String),
    /// Left by an earlier agent, it hosts nothing and has nothing to report.
    Drained,
}

/// Runs the supervisor until it hosts nothing and has nothing to report,
/// after its first connection is gone.
pub async fn run_supervisor(env: SupervisorEnv) -> Result<(), ExecutorError> {
    match env.keeper {
        // Dies with its keeper, which the agent watches; a keeper already
        // gone (the check after the setting closes the race) ends us now.
        Some(keeper) => {
            let _ = rustix::process::set_parent_process_death_signal(Some(
                rustix::process::Signal::KILL,
            ));
            let parent = rustix::process::getppid().map(|p| p.as_raw_nonzero().get());
            if parent != i32::try_from(keeper).ok() {
                return Err(ExecutorError::Launch("its keeper is gone".into()));
            }
        }
        // Started directly: a session of our own, as the keeper does.
        None => {
            let _ = rustix::process::setsid();
        }
    }
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (channel, _) = watch::channel(None);
    let mut host = Host {
        env,
        runs: HashMap::new(),
        ended: Vec::new(),
        accepts_hosts: true,
        channel,
        events: events_tx,
        isolators: Default::default(),
    };
    // The agent is on this machine: a refused dial costs next to nothing,
    // and every hosted executor waits for the next attachment.
    let mut backoff = Backoff::new(Duration::from_millis(20), Duration::from_millis(250));
    let mut lost_since = Instant::now();
    loop {
        let first = host.env.local.take();
        let connected = match first {
            Some(stream) => local::channel(stream).await.ok(),
            None => host.dial().await,
        };
        if let Some(channel) = connected {
            host.channel.send_replace(Some(channel.clone()));
            match host.attach(channel, &mut events).await {
                Detached::Lost => {
                    // The agent went away: the next one starts its own
                    // supervisor; this one only drains.
                    host.accepts_hosts = false;
                    backoff.reset();
                    lost_since = Instant::now();
                }
                Detached::Refused(why) => {
                    host.kill_all();
                    return Err(ExecutorError::Refused(why));
                }
                Detached::Drained => {
                    tracing::info!("no executor left to host: exiting");
                    return Ok(());
                }
            }
            host.channel.send_replace(None);
        }
        if host.drained() {
            return Ok(());
        }
        if lost_since.elapsed() > RECOVERY_TIMEOUT && host.runs.is_empty() {
            // The agent has not come back: the hosted executors gave up
            // (and killed their tasks); nobody is left to tell.
            return Err(ExecutorError::AgentGone);
        }
        // Wait before dialling again, taking the executors' news meanwhile.
        let pause = tokio::time::sleep(backoff.next_delay());
        tokio::pin!(pause);
        loop {
            tokio::select! {
                _ = &mut pause => break,
                event = events.recv() => match event {
                    Some(event) => { host.event(event); }
                    None => break,
                },
            }
        }
    }
}

impl Host {
    /// Left by an earlier agent, with nothing left to host or report.
    fn drained(&self) -> bool {
        !self.accepts_hosts && self.runs.is_empty() && self.ended.is_empty()
    }

    /// The agent's port, after the first connection is gone.
    async fn dial(&self) -> Option<Channel> {
        let endpoint = tonic::transport::Endpoint::from_shared(self.env.agent_endpoint.clone())
            .ok()?
            .initial_connection_window_size(local::CONNECTION_WINDOW);
        agora_tls::connect_channel(endpoint, self.env.tls.as_ref())
            .await
            .inspect_err(|e| tracing::debug!(error = %e, "cannot reach the agent"))
            .ok()
    }

    fn hello(&self) -> Report {
        Report {
            kind: Some(report::Kind::Hello(Hello {
                pid: self.env.keeper.unwrap_or_else(std::process::id),
                worker_pid: std::process::id(),
                adopting: self.env.generation > 0,
                accepts_hosts: self.accepts_hosts,
                hosted: self
                    .runs
                    .iter()
                    .map(|(run_id, run)| HostedRun {
                        framework_id: run.framework_id.clone(),
                        executor_id: run.executor_id.clone(),
                        run_id: run_id.clone(),
                        task_pid: run.task.map_or(0, |t| t.0),
                        task_start_time: run.task.map_or(0, |t| t.1),
                    })
                    .collect(),
                ended: self.ended.clone(),
            })),
        }
    }

    /// One attachment: HELLO, then orders in and reports out until the
    /// connection ends.
    async fn attach(
        &mut self,
        channel: Channel,
        events: &mut mpsc::UnboundedReceiver<HostEvent>,
    ) -> Detached {
        let (tx, rx) = mpsc::channel::<Report>(256);
        let _ = tx.send(self.hello()).await;
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        if let Ok(value) = format!("Bearer {}", self.env.token).parse() {
            request.metadata_mut().insert("authorization", value);
        }
        let mut orders = match SupervisorClient::new(channel).attach(request).await {
            Ok(response) => response.into_inner(),
            Err(status) if status.code() == tonic::Code::Unauthenticated => {
                return Detached::Refused(status.message().to_string());
            }
            Err(status) => {
                tracing::debug!(error = %status, "cannot attach to the agent");
                return Detached::Lost;
            }
        };
        tracing::info!(
            hosted = self.runs.len(),
            accepts_hosts = self.accepts_hosts,
            "attached to the agent"
        );
        loop {
            if self.drained() {
                return Detached::Drained;
            }
            tokio::select! {
                order = orders.message() => match order {
                    Ok(Some(order)) => {
                        if let Some(report) = self.order(order)
                            && tx.send(report).await.is_err()
                        {
                            return Detached::Lost;
                        }
                    }
                    _ => return Detached::Lost,
                },
                event = events.recv() => {
                    let Some(event) = event else { return Detached::Lost };
                    if let Some(report) = self.event(event)
                        && tx.send(report).await.is_err()
                    {
                        return Detached::Lost;
                    }
                }
            }
        }
    }

    /// Carries out an order; what to report of it at once.
    fn order(&mut self, order: Order) -> Option<Report> {
        match order.kind {
            Some(order::Kind::Host(host)) => self.host(host),
            Some(order::Kind::Kill(kill)) => self.kill(&kill.run_id),
            Some(order::Kind::Forget(forget)) => {
                self.ended.retain(|e| e.run_id != forget.run_id);
                None
            }
            Some(order::Kind::Adopt(adopt)) => self.adopt(adopt),
            Some(order::Kind::Drain(_)) => {
                self.accepts_hosts = false;
                None
            }
            None => None,
        }
    }

    /// What a hosted executor's news means, and what to report of it.
    fn event(&mut self, event: HostEvent) -> Option<Report> {
        match event {
            HostEvent::TaskStarted { run_id, pid } => {
                let run = self.runs.get_mut(&run_id)?;
                let start_time = crate::procfs::process_start_time(pid).unwrap_or(0);
                run.task = Some((pid, start_time));
                Some(Report {
                    kind: Some(report::Kind::Started(sv::Started {
                        run_id,
                        task_pid: pid,
                        task_start_time: start_time,
                    })),
                })
            }
            HostEvent::Ended {
                run_id,
                description,
            } => {
                let run = self.runs.remove(&run_id)?;
                Some(self.ended(run_id, run, description))
            }
        }
    }

    /// Records a run's end until the agent forgets it.
    fn ended(&mut self, run_id: String, run: Run, description: String) -> Report {
        tracing::debug!(run_id = %run_id, executor_id = %run.executor_id, %description, "hosted executor ended");
        let ended = Ended {
            framework_id: run.framework_id,
            executor_id: run.executor_id,
            run_id,
            description,
        };
        self.ended.push(ended.clone());
        Report {
            kind: Some(report::Kind::Ended(ended)),
        }
    }

    /// Starts hosting one executor run; a run that cannot be hosted ends
    /// at once.
    fn host(&mut self, host: sv::Host) -> Option<Report> {
        if !self.accepts_hosts {
            return None;
        }
        self.start_run(host, None)
    }

    /// Takes back a run whose worker died: its executor again, holding
    /// the task that still runs (or already ended: its exit comes from
    /// the keeper either way).
    fn adopt(&mut self, adopt: sv::Adopt) -> Option<Report> {
        let (Some(host), Some(task)) = (adopt.host, adopt.task) else {
            return None;
        };
        let pid = adopt.task_pid;
        // Seen alive (a zombie counts: not reaped yet) after `mark`: only
        // an exit reported later is its. Not seen: it may have been reaped
        // already, and whatever the keeper reported of its pid is its.
        let mark = self.env.exits.mark();
        let alive = crate::procfs::process_start_time(pid) == Some(adopt.task_start_time);
        let exit = self.env.exits.wait_for(pid, if alive { mark } else { 0 });
        tracing::info!(run_id = %host.run_id, pid, alive, "adopting an executor run");
        let adopted = crate::executor::AdoptedTask::new(
            task,
            pid,
            exit,
            (!alive).then(|| Instant::now() + LOST_EXIT_WAIT),
        );
        let run_id = host.run_id.clone();
        let report = self.start_run(host, Some(adopted));
        if let Some(run) = self.runs.get_mut(&run_id) {
            run.task = Some((pid, adopt.task_start_time));
        }
        report
    }

    fn start_run(
        &mut self,
        host: sv::Host,
        adopted: Option<crate::executor::AdoptedTask>,
    ) -> Option<Report> {
        if self.runs.contains_key(&host.run_id) {
            return None;
        }
        let run_id = host.run_id.clone();
        let events = self.events.clone();
        let launch = match LaunchConfig::from_json(&host.launch) {
            Ok(launch) => launch,
            Err(e) => {
                let ended = Ended {
                    framework_id: host.framework_id,
                    executor_id: host.executor_id,
                    run_id,
                    description: format!("invalid launch settings from the agent: {e}"),
                };
                self.ended.push(ended.clone());
                return Some(Report {
                    kind: Some(report::Kind::Ended(ended)),
                });
            }
        };
        let started = {
            let events = events.clone();
            let run_id = run_id.clone();
            OnTaskStarted(Arc::new(move |pid| {
                let _ = events.send(HostEvent::TaskStarted {
                    run_id: run_id.clone(),
                    pid,
                });
            }))
        };
        let env = ExecutorEnv {
            agent_endpoint: self.env.agent_endpoint.clone(),
            framework_id: host.framework_id.clone(),
            executor_id: host.executor_id.clone(),
            agent_id: host.agent_id,
            sandbox: host.sandbox.into(),
            launch,
            token: Some(host.token),
            tls: self.env.tls.clone(),
            local: local::LocalConnection::default(),
            shared: Some(self.channel.subscribe()),
            on_task_started: Some(started),
            isolators: self.isolators.clone(),
            adopted: adopted.map(Arc::new),
        };
        let span = tracing::info_span!("executor", executor_id = %host.executor_id);
        let handle = {
            let run_id = run_id.clone();
            tokio::spawn(tracing::Instrument::instrument(
                async move {
                    let description = match crate::executor::run_hosted(env).await {
                        Ok(()) => "the executor ended".to_string(),
                        Err(e) => format!("the executor failed: {e}"),
                    };
                    let _ = events.send(HostEvent::Ended {
                        run_id,
                        description,
                    });
                },
                span,
            ))
        };
        self.runs.insert(
            run_id,
            Run {
                framework_id: host.framework_id,
                executor_id: host.executor_id,
                task: None,
                handle,
            },
        );
        None
    }

    /// Kills a hosted run's task (its process group) and its executor, and
    /// reports its end.
    fn kill(&mut self, run_id: &str) -> Option<Report> {
        // An unknown run has already ended: its end is (or was) reported.
        let run = self.runs.remove(run_id)?;
        kill_run(&run);
        Some(self.ended(run_id.to_string(), run, "killed by the agent".into()))
    }

    /// The agent refused us: nothing may run unsupervised.
    fn kill_all(&mut self) {
        for (_, run) in self.runs.drain() {
            kill_run(&run);
        }
    }
}

/// Kills a run's task group (checked by start time) and stops its executor.
fn kill_run(run: &Run) {
    if let Some((pid, start_time)) = run.task
        && crate::procfs::process_start_time(pid) == Some(start_time)
        && let Some(group) = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    }
    run.handle.abort();
}
