//! The leader's front doors: the gRPC `Scheduler` and `AgentSession`
//! services and the streams every API opens (framework subscriptions,
//! operator event streams). They turn requests into [`Command`]s for the
//! actor (through the [`Gate`], which says whether this master leads) and
//! tell it when a peer's stream goes away.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use agora_net::outbox::{Inbox, outbox};
use agora_proto::v1::agent::agent_session_server::AgentSession;
use agora_proto::v1::agent::{AgentMessage, MasterMessage, agent_message};
use agora_proto::v1::master as operator;
use agora_proto::v1::scheduler as sched;
use agora_proto::v1::scheduler::scheduler_server::Scheduler;
use futures::Stream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tonic::{Request, Response, Status, Streaming};

use crate::protocol::{Command, Commands, Gate};
use crate::snapshot::StateSnapshot;
use crate::state::{CallError, ConnId};

/// How long an agent has to send its registration on a new session.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a read of the operator API waits for the actor to publish the
/// view it asked for.
const OPERATOR_VIEW_WAIT: Duration = Duration::from_secs(30);
/// How long a call to a master still loading the registry waits for it
/// (about a second per 10,000 agents from ZooKeeper) before it is told
/// to come back.
const RECOVERY_WAIT: Duration = Duration::from_secs(5);

/// Maps the state machine's refusals to gRPC codes: the one place this happens.
fn to_status(error: CallError) -> Status {
    match error {
        CallError::InvalidArgument(m) => Status::invalid_argument(m),
        CallError::NotFound(m) => Status::not_found(m),
        CallError::FailedPrecondition(m) => Status::failed_precondition(m),
        CallError::PermissionDenied(m) | CallError::Unauthorized(m) => Status::permission_denied(m),
    }
}

/// Sends a "gone" command when a stream's response side is dropped (the
/// peer went away or the stream was closed).
struct GoneGuard {
    commands: Commands,
    gone: Option<Command>,
}

impl Drop for GoneGuard {
    fn drop(&mut self) {
        let Some(gone) = self.gone.take() else { return };
        // Never lost: queued now, or as soon as the queue has room.
        if let Err(mpsc::error::TrySendError::Full(gone)) = self.commands.try_send(gone)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let commands = self.commands.clone();
            runtime.spawn(async move {
                let _ = commands.send(gone).await;
            });
        }
    }
}

pub(crate) type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn guarded<T>(rx: Inbox<T>, guard: GoneGuard, heartbeat: Option<(Duration, T)>) -> BoxStream<T>
where
    T: Clone + Send + Sync + 'static,
{
    let period = heartbeat
        .as_ref()
        .map(|(p, _)| *p)
        .unwrap_or(Duration::from_secs(3600));
    let beat = heartbeat.map(|(_, b)| b);
    let ticker = tokio::time::interval_at(Instant::now() + period, period);
    let stream = futures::stream::unfold(
        (rx, ticker, guard, beat),
        |(mut rx, mut ticker, guard, beat)| async move {
            loop {
                tokio::select! {
                    biased;
                    item = rx.recv() => {
                        // A stuck peer's stream ends with an error it can act on.
                        let item = item?.map_err(|stuck| {
                            Status::unavailable(format!("stream closed: {stuck}; subscribe again"))
                        });
                        return Some((item, (rx, ticker, guard, beat)));
                    }
                    _ = ticker.tick() => {
                        if let Some(b) = beat.clone() {
                            return Some((Ok(b), (rx, ticker, guard, beat)));
                        }
                    }
                }
            }
        },
    );
    Box::pin(stream)
}

#[derive(Clone)]
pub(crate) struct Services {
    gate: watch::Receiver<Gate>,
    /// What readers see (the v1 operator API's read calls).
    snapshot: watch::Receiver<Arc<StateSnapshot>>,
    next_conn: Arc<AtomicU64>,
    heartbeat: Duration,
}

impl Services {
    /// Services for the master whose gate and published snapshot these are.
    pub(crate) fn new(
        gate: watch::Receiver<Gate>,
        snapshot: watch::Receiver<Arc<StateSnapshot>>,
        heartbeat: Duration,
    ) -> Self {
        Services {
            gate,
            snapshot,
            next_conn: Arc::new(AtomicU64::new(1)),
            heartbeat,
        }
    }

    pub(crate) fn gate(&self) -> watch::Receiver<Gate> {
        self.gate.clone()
    }

    /// The snapshot published last.
    pub(crate) fn snapshot(&self) -> Arc<StateSnapshot> {
        self.snapshot.borrow().clone()
    }

    /// A snapshot with the operator API's view: the one published last if
    /// it has it, else the next one, which the actor is asked to make at
    /// once. Every call keeps the view coming for a while.
    pub(crate) async fn operator_snapshot(&self) -> Result<Arc<StateSnapshot>, String> {
        let commands = self.commands().await.map_err(|s| s.message().to_string())?;
        let current = self.snapshot();
        if current.operator.is_some() {
            // Best effort: a full queue only means the actor is busy, and
            // the view is still there.
            let _ = commands.try_send(Command::OperatorViewWanted);
            return Ok(current);
        }
        commands
            .send(Command::OperatorViewWanted)
            .await
            .map_err(|_| "master is shutting down".to_string())?;
        let mut snapshot = self.snapshot.clone();
        let wait = snapshot.wait_for(|s| s.operator.is_some());
        match tokio::time::timeout(OPERATOR_VIEW_WAIT, wait).await {
            Ok(Ok(published)) => Ok(published.clone()),
            Ok(Err(_)) => Err("master is shutting down".to_string()),
            Err(_) => Err("the master did not publish its state in time; retry".to_string()),
        }
    }

    pub(crate) fn heartbeat(&self) -> Duration {
        self.heartbeat
    }

    fn conn(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// The leader's command channel, or a status saying why there is none
    /// here (and who leads, in the `agora-leader` metadata). A master just
    /// elected answers once it has loaded the registry (within
    /// [`RECOVERY_WAIT`]), not with an error the caller would retry after
    /// a backoff: after a failover the frameworks and agents that find the
    /// new leader first are served the moment it can.
    pub(crate) async fn commands(&self) -> Result<Commands, Status> {
        // Every call of a leading master passes here: no waiting set up then.
        if !matches!(&*self.gate.borrow(), Gate::Recovering) {
            return self.commands_now();
        }
        let mut gate = self.gate.clone();
        let loaded = gate.wait_for(|gate| !matches!(gate, Gate::Recovering));
        // On timeout (or shutdown) the gate says why there are no commands.
        let _ = tokio::time::timeout(RECOVERY_WAIT, loaded).await;
        self.commands_now()
    }

    /// [`Self::commands`] as the gate is now.
    fn commands_now(&self) -> Result<Commands, Status> {
        match &*self.gate.borrow() {
            Gate::Leading { commands } => Ok(commands.clone()),
            Gate::Recovering => Err(Status::unavailable(
                "this master was just elected and is still loading the registry",
            )),
            Gate::Following {
                leader: Some(leader),
            } => {
                let mut status =
                    Status::unavailable(format!("not the leading master; the leader is {leader}"));
                if let Ok(value) = leader.parse() {
                    status.metadata_mut().insert("agora-leader", value);
                }
                Err(status)
            }
            Gate::Following { leader: None } => {
                Err(Status::unavailable("no leading master is elected yet"))
            }
        }
    }

    async fn ask(
        commands: &Commands,
        command: Command,
        reply: oneshot::Receiver<Result<(), CallError>>,
    ) -> Result<(), Status> {
        commands
            .send(command)
            .await
            .map_err(|_| Status::unavailable("master is shutting down"))?;
        reply
            .await
            .map_err(|_| Status::unavailable("master is shutting down"))?
            .map_err(to_status)
    }
}

/// Why a subscription was not opened, for each API to say in its own terms.
pub(crate) enum SubscribeError {
    /// The state machine refused the SUBSCRIBE call.
    Refused(CallError),
    /// No leader here, or it is going away.
    Unavailable(String),
}

impl Services {
    /// Opens a framework's subscription: the one path for the gRPC and the
    /// HTTP scheduler APIs. The stream carries the framework's events and a
    /// heartbeat every interval; dropping it tells the actor the framework
    /// disconnected.
    pub(crate) async fn open_subscription(
        &self,
        stream_id: String,
        call: sched::Call,
        principal: Option<agora_auth::Principal>,
    ) -> Result<BoxStream<sched::Event>, SubscribeError> {
        let commands = self
            .commands()
            .await
            .map_err(|s| SubscribeError::Unavailable(s.message().to_string()))?;
        let conn = self.conn();
        let (events, rx) = outbox();
        let (reply, answer) = oneshot::channel();
        let guard = GoneGuard {
            commands: commands.clone(),
            gone: Some(Command::FrameworkGone { conn }),
        };
        let shutting_down = || SubscribeError::Unavailable("master is shutting down".into());
        commands
            .send(Command::Subscribe {
                conn,
                stream_id,
                call,
                principal,
                events,
                reply,
            })
            .await
            .map_err(|_| shutting_down())?;
        answer
            .await
            .map_err(|_| shutting_down())?
            .map_err(SubscribeError::Refused)?;
        let heartbeat = sched::Event {
            r#type: sched::event::Type::Heartbeat as i32,
            ..Default::default()
        };
        Ok(guarded(rx, guard, Some((self.heartbeat, heartbeat))))
    }
}

#[cfg(test)]
impl Services {
    /// Services over a gate and snapshot a test controls.
    pub(crate) fn for_tests(
        gate: watch::Receiver<Gate>,
        snapshot: watch::Receiver<Arc<StateSnapshot>>,
        heartbeat: Duration,
    ) -> Self {
        Services {
            gate,
            snapshot,
            next_conn: Arc::new(AtomicU64::new(1_000_000)),
            heartbeat,
        }
    }
}

impl Services {
    /// Opens an operator's event stream (the v1 operator API's SUBSCRIBE):
    /// the snapshot it starts from, and every change after it, in order,
    /// with a heartbeat every interval. Dropping the stream unsubscribes.
    pub(crate) async fn open_operator_stream(
        &self,
    ) -> Result<(Arc<StateSnapshot>, BoxStream<Arc<operator::Event>>), String> {
        let commands = self.commands().await.map_err(|s| s.message().to_string())?;
        let id = self.conn();
        let (events, rx) = outbox();
        let (reply, answer) = oneshot::channel();
        let guard = GoneGuard {
            commands: commands.clone(),
            gone: Some(Command::OperatorGone { id }),
        };
        let shutting_down = || "master is shutting down".to_string();
        commands
            .send(Command::OperatorSubscribe { id, events, reply })
            .await
            .map_err(|_| shutting_down())?;
        let snapshot = answer.await.map_err(|_| shutting_down())?;
        let heartbeat = Arc::new(operator::Event {
            r#type: operator::event::Type::Heartbeat as i32,
            ..Default::default()
        });
        Ok((
            snapshot,
            guarded(rx, guard, Some((self.heartbeat, heartbeat))),
        ))
    }
}

#[tonic::async_trait]
impl Scheduler for Services {
    type SubscribeStream = BoxStream<sched::Event>;

    async fn subscribe(
        &self,
        request: Request<sched::Call>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        // Checked first so that a follower's status names the leader.
        self.commands().await?;
        let stream_id = uuid::Uuid::new_v4().to_string();
        let principal = crate::authn::principal_of(request.extensions());
        match self
            .open_subscription(stream_id, request.into_inner(), principal)
            .await
        {
            Ok(stream) => Ok(Response::new(stream)),
            Err(SubscribeError::Refused(e)) => Err(to_status(e)),
            Err(SubscribeError::Unavailable(why)) => Err(Status::unavailable(why)),
        }
    }

    async fn send(
        &self,
        request: Request<sched::Call>,
    ) -> Result<Response<sched::CallResponse>, Status> {
        let stream_id = request
            .metadata()
            .get("agora-stream-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| Status::invalid_argument("missing 'agora-stream-id' metadata"))?;
        let commands = self.commands().await?;
        let (reply, answer) = oneshot::channel();
        let principal = crate::authn::principal_of(request.extensions());
        Self::ask(
            &commands,
            Command::Call {
                stream_id,
                principal,
                call: request.into_inner(),
                reply,
            },
            answer,
        )
        .await?;
        Ok(Response::new(sched::CallResponse {}))
    }
}

#[tonic::async_trait]
impl AgentSession for Services {
    type OpenStream = BoxStream<MasterMessage>;

    async fn open(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::OpenStream>, Status> {
        let commands = self.commands().await?;
        // Who the authentication layer found the agent to be.
        let principal = request
            .extensions()
            .get::<agora_auth::Caller>()
            .and_then(|c| c.principal().cloned());
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(REGISTER_TIMEOUT, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no registration received"))??
            .ok_or_else(|| Status::invalid_argument("session closed before registering"))?;
        let Some(agent_message::Kind::Register(register)) = first.kind else {
            return Err(Status::invalid_argument(
                "the first message on a session must be Register",
            ));
        };
        let conn = self.conn();
        let (messages, rx) = outbox();
        commands
            .send(Command::AgentRegister {
                conn,
                register,
                principal,
                messages,
            })
            .await
            .map_err(|_| Status::unavailable("master is shutting down"))?;
        let reader_commands = commands.clone();
        tokio::spawn(async move {
            let commands = reader_commands;
            loop {
                match inbound.message().await {
                    Ok(Some(AgentMessage { kind: Some(kind) })) => {
                        // Waits while the actor is behind: the agent's
                        // stream is read no faster than it is handled.
                        if commands
                            .send(Command::AgentMessage { conn, kind })
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                    Ok(Some(AgentMessage { kind: None })) => {}
                    Ok(None) | Err(_) => break,
                }
            }
            let _ = commands.send(Command::AgentGone { conn }).await;
        });
        let guard = GoneGuard {
            commands,
            gone: Some(Command::AgentGone { conn }),
        };
        Ok(Response::new(guarded(rx, guard, None)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn services(gate: watch::Receiver<Gate>) -> Services {
        let (_publish, snapshot) = watch::channel(Arc::new(StateSnapshot::default()));
        Services::for_tests(gate, snapshot, Duration::from_secs(15))
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_to_a_master_loading_its_registry_waits_until_it_leads() {
        let (set_gate, gate) = watch::channel(Gate::Recovering);
        let services = services(gate);
        let waiting = tokio::spawn({
            let services = services.clone();
            async move { services.commands().await.map(|_| ()) }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished(), "answered while the registry loads");
        let (commands, _rx) = mpsc::channel(1);
        set_gate.send_replace(Gate::Leading { commands });
        waiting.await.expect("joined").expect("served once leading");
    }

    #[tokio::test(start_paused = true)]
    async fn a_master_that_loads_its_registry_too_long_says_so() {
        let (_set_gate, gate) = watch::channel(Gate::Recovering);
        let error = services(gate).commands().await.expect_err("still loading");
        assert_eq!(error.code(), tonic::Code::Unavailable);
        assert!(error.message().contains("loading the registry"), "{error}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_follower_answers_at_once_with_the_leader() {
        let (_set_gate, gate) = watch::channel(Gate::Following {
            leader: Some("127.0.0.1:5050".into()),
        });
        let started = tokio::time::Instant::now();
        let error = services(gate).commands().await.expect_err("follower");
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert!(error.message().contains("127.0.0.1:5050"), "{error}");
    }
}
