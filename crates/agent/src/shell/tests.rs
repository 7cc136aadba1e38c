//! The actor's loop against a fake master session: blocking work happens
//! on workers, so the loop keeps answering while it runs.

use std::sync::Arc;
use std::time::Duration;

use agora_core::{ExecutorId, FrameworkId, Resources};
use agora_net::outbox::{Inbox, outbox};
use agora_proto::v1::agent::{AgentMessage, MasterMessage, agent_message, master_message};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::actor::Actor;
use super::command::{AgentCommand, COMMAND_QUEUE};
use super::executor_service::event_stream;
use super::http;
use super::{AgentOptions, AgentSnapshot};
use crate::checkpoint::{MemStore, MetaStore};
use crate::containers::{ContainerOptions, Containers};
use crate::state::Effect;

/// Guards every wait: only reached when the behaviour under test is broken.
const DEADLINE: Duration = Duration::from_secs(30);

fn options(work_dir: &std::path::Path) -> AgentOptions {
    AgentOptions {
        master: "127.0.0.1:1".into(),
        advertise: "127.0.0.1:1".parse().expect("address"),
        hostname: "test".into(),
        work_dir: work_dir.to_path_buf(),
        resources: Resources::parse("cpus:1;mem:128").expect("resources"),
        attributes: Vec::new(),
        executor_program: "/nonexistent/agora".into(),
        containers: ContainerOptions {
            isolation: "posix/cpu,posix/mem".into(),
            ..ContainerOptions::default()
        },
        gc: crate::gc::GcPolicy::default(),
        authentication: Default::default(),
        disk_probe: crate::gc::measure,
        jwt_secret_key: None,
        tls: Default::default(),
        acls: Default::default(),
        stop_on_exit: false,
    }
}

/// A work dir's file system with nothing left.
fn full_disk(_: &std::path::Path) -> std::io::Result<crate::gc::DiskSpace> {
    Ok(crate::gc::DiskSpace {
        total_bytes: 10 << 30,
        available_bytes: 0,
        used_bytes: 10 << 30,
    })
}

async fn next_from_agent(rx: &mut Inbox<AgentMessage>) -> AgentMessage {
    tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .expect("the agent's loop did not answer")
        .expect("session closed")
        .expect("session not stuck")
}

/// The agent's next message is its registration.
async fn expect_register(rx: &mut Inbox<AgentMessage>) {
    let register = next_from_agent(rx).await;
    assert!(
        matches!(register.kind, Some(agent_message::Kind::Register(_))),
        "{register:?}"
    );
}

/// The agent's next message is the pong of ping `seq`.
async fn expect_pong(rx: &mut Inbox<AgentMessage>, seq: u64) {
    let pong = next_from_agent(rx).await;
    assert!(
        matches!(
            pong.kind,
            Some(agent_message::Kind::Pong(agent_message::Pong { seq: s })) if s == seq
        ),
        "expected pong {seq}, got {pong:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_answers_pings_while_a_container_destroy_is_stuck() {
    let work = tempfile::tempdir().expect("work dir");
    let options = options(work.path());
    let mut containers = Containers::new(&options.containers).expect("posix containers");
    // A destroy that cannot finish until the test lets it (as a cgroup
    // whose processes take seconds to die): it reports that it started,
    // then waits. Dropping `release` (also on a failed assertion) frees it.
    let (started_tx, mut started) = mpsc::unbounded_channel::<()>();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let released = std::sync::Mutex::new(released);
    containers.destroy_hook = Some(Arc::new(move || {
        let _ = started_tx.send(());
        let _ = released
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .recv();
    }));
    let key = (FrameworkId::new("f1"), ExecutorId::new("e1"));
    containers
        .create(key.clone(), "run-1", &Resources::default())
        .expect("container");
    let (commands, _snapshot_rx, shutdown, actor_task) =
        spawn_actor(options, Box::new(MemStore::default()), containers);

    let (master_tx, mut from_agent) = outbox();
    commands
        .send(AgentCommand::MasterConnected {
            session: 1,
            tx: master_tx,
        })
        .await
        .expect("send");
    expect_register(&mut from_agent).await;

    // The executor exits: its container is destroyed, and the destroy hangs.
    commands
        .send(AgentCommand::ExecutorExited {
            framework_id: key.0.clone(),
            executor_id: key.1.clone(),
            description: "exit status: 0".into(),
        })
        .await
        .expect("send");
    tokio::time::timeout(DEADLINE, started.recv())
        .await
        .expect("the destroy never started")
        .expect("hook dropped");

    // Meanwhile the master pings: the loop answers.
    commands
        .send(AgentCommand::MasterMessage {
            session: 1,
            message: MasterMessage {
                kind: Some(master_message::Kind::Ping(master_message::Ping { seq: 7 })),
            },
        })
        .await
        .expect("send");
    expect_pong(&mut from_agent, 7).await;

    drop(release);
    shutdown.cancel();
    actor_task.await.expect("actor");
}

/// A store whose first write under `frameworks/` waits until the test lets
/// it (a slow disk).
struct GatedStore {
    inner: MemStore,
    gate: Option<std::sync::mpsc::Receiver<()>>,
    started: mpsc::UnboundedSender<()>,
}

impl crate::checkpoint::MetaStore for GatedStore {
    fn write(&mut self, path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
        if path.starts_with("frameworks")
            && let Some(gate) = self.gate.take()
        {
            let _ = self.started.send(());
            let _ = gate.recv();
        }
        self.inner.write(path, bytes)
    }
    fn read(&self, path: &std::path::Path) -> std::io::Result<Option<Vec<u8>>> {
        self.inner.read(path)
    }
    fn remove(&mut self, path: &std::path::Path) -> std::io::Result<()> {
        self.inner.remove(path)
    }
    fn list_dirs(&self, path: &std::path::Path) -> std::io::Result<Vec<String>> {
        self.inner.list_dirs(path)
    }
    fn prune(&mut self, path: &std::path::Path, stop: &std::path::Path) {
        self.inner.prune(path, stop)
    }
}

/// With the disk full, a task is refused (TASK_FAILED, "agent disk full");
/// that update leaves only once its checkpoint is written, while pings are
/// answered during the write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_tasks_and_updates_wait_for_their_checkpoint() {
    use agora_proto::v1 as pb;
    let work = tempfile::tempdir().expect("work dir");
    let mut options = options(work.path());
    // The agent's own measure says full (an injected one could be
    // overtaken by a real measure of this machine's disk).
    options.disk_probe = full_disk;
    let containers = Containers::new(&options.containers).expect("posix containers");
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let (started_tx, mut write_started) = mpsc::unbounded_channel::<()>();
    let store = GatedStore {
        inner: MemStore::default(),
        gate: Some(gate),
        started: started_tx,
    };
    let (commands, mut snapshot_rx, shutdown, actor_task) =
        spawn_actor(options, Box::new(store), containers);
    let (master_tx, mut from_agent) = outbox();
    commands
        .send(AgentCommand::MasterConnected {
            session: 1,
            tx: master_tx,
        })
        .await
        .expect("send");
    next_from_agent(&mut from_agent).await; // Register
    commands
        .send(AgentCommand::MasterMessage {
            session: 1,
            message: MasterMessage {
                kind: Some(master_message::Kind::Registered(
                    master_message::Registered {
                        agent_id: Some(pb::AgentId { value: "a1".into() }),
                        master_info: None,
                    },
                )),
            },
        })
        .await
        .expect("send");
    // It says so before it is given work.
    snapshot_where(&mut snapshot_rx, |s| s.disk_full).await;
    let run = master_message::RunTask {
        framework: Some(pb::FrameworkInfo {
            id: Some(pb::FrameworkId { value: "f1".into() }),
            name: "fw".into(),
            ..Default::default()
        }),
        task: Some(pb::TaskInfo {
            name: "t1".into(),
            task_id: Some(pb::TaskId { value: "t1".into() }),
            command: Some(pb::CommandInfo {
                value: Some("true".into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    for kind in [
        master_message::Kind::RunTask(run),
        master_message::Kind::Ping(master_message::Ping { seq: 9 }),
    ] {
        commands
            .send(AgentCommand::MasterMessage {
                session: 1,
                message: MasterMessage { kind: Some(kind) },
            })
            .await
            .expect("send");
    }
    tokio::time::timeout(DEADLINE, write_started.recv())
        .await
        .expect("no checkpoint write")
        .expect("store dropped");
    // The pong comes first: the update waits for its records.
    let pong = next_from_agent(&mut from_agent).await;
    assert!(
        matches!(pong.kind, Some(agent_message::Kind::Pong(_))),
        "{pong:?}"
    );
    drop(release);
    let update = next_from_agent(&mut from_agent).await;
    let Some(agent_message::Kind::StatusUpdate(update)) = update.kind else {
        panic!("expected a status update, got {update:?}");
    };
    let status = update.status.expect("status");
    assert_eq!(status.state, Some(pb::TaskState::TaskFailed as i32));
    assert!(status.message().contains("agent disk full"), "{status:?}");
    shutdown.cancel();
    actor_task.await.expect("actor");
}

/// Waits until the published snapshot satisfies `ready`.
async fn snapshot_where(
    rx: &mut watch::Receiver<Arc<AgentSnapshot>>,
    ready: impl Fn(&AgentSnapshot) -> bool,
) -> Arc<AgentSnapshot> {
    tokio::time::timeout(DEADLINE, rx.wait_for(|s| ready(s)))
        .await
        .expect("the snapshot never got there")
        .expect("actor gone")
        .clone()
}

/// A master that refuses the agent (say, it restarted with resources that
/// no longer hold its running tasks): `/health` and `/state` say so, with
/// the master's reason, until a master accepts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_registration_shows_in_health_and_state_with_the_reason() {
    let work = tempfile::tempdir().expect("work dir");
    let options = options(work.path());
    let containers = Containers::new(&options.containers).expect("posix containers");
    let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
    let (snapshot_tx, mut snapshot_rx) = watch::channel(Arc::new(AgentSnapshot::default()));
    let actor = Actor::new(
        options,
        Box::new(MemStore::default()),
        containers,
        commands.clone(),
        snapshot_tx,
    )
    .expect("actor");
    let shutdown = CancellationToken::new();
    let actor_task = tokio::spawn(actor.run(command_rx, shutdown.clone()));
    let (master_tx, mut from_agent) = outbox();
    commands
        .send(AgentCommand::MasterConnected {
            session: 1,
            tx: master_tx,
        })
        .await
        .expect("send");
    next_from_agent(&mut from_agent).await;

    let reason = "agent resources cpus:1;mem:128 cannot hold its running tasks";
    commands
        .send(AgentCommand::MasterMessage {
            session: 1,
            message: MasterMessage {
                kind: Some(master_message::Kind::Refused(master_message::Refused {
                    message: reason.into(),
                })),
            },
        })
        .await
        .expect("send");
    let refused = snapshot_where(&mut snapshot_rx, |s| s.refused.is_some()).await;
    assert_eq!(refused.refused.as_deref(), Some(reason));
    let state = serde_json::to_value(refused.as_ref()).expect("json");
    assert_eq!(state["refused"], reason, "{state}");
    let axum::Json(health) = http::health(axum::extract::State(snapshot_rx.clone())).await;
    let health = serde_json::to_value(&health).expect("json");
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["master"], "refused", "{health}");
    assert_eq!(health["reason"], reason, "{health}");

    // A master accepts it later: the refusal is over.
    commands
        .send(AgentCommand::MasterMessage {
            session: 1,
            message: MasterMessage {
                kind: Some(master_message::Kind::Registered(
                    master_message::Registered {
                        agent_id: Some(agora_proto::v1::AgentId { value: "a1".into() }),
                        master_info: None,
                    },
                )),
            },
        })
        .await
        .expect("send");
    snapshot_where(&mut snapshot_rx, |s| s.registered && s.refused.is_none()).await;
    let axum::Json(health) = http::health(axum::extract::State(snapshot_rx.clone())).await;
    let health = serde_json::to_value(&health).expect("json");
    assert_eq!(health["master"], "connected", "{health}");
    assert!(health.get("reason").is_none(), "{health}");

    shutdown.cancel();
    actor_task.await.expect("actor");
}

/// The actor's queue is bounded: once full, a producer waits (it is not
/// refused, and nothing is dropped); every queued command is then handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_command_queue_makes_producers_wait_and_drops_nothing() {
    let work = tempfile::tempdir().expect("work dir");
    let options = options(work.path());
    let containers = Containers::new(&options.containers).expect("posix containers");
    let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
    let (snapshot_tx, _snapshot_rx) = watch::channel(Arc::new(AgentSnapshot::default()));
    let actor = Actor::new(
        options,
        Box::new(MemStore::default()),
        containers,
        commands.clone(),
        snapshot_tx,
    )
    .expect("actor");
    let (master_tx, mut from_agent) = outbox();
    commands
        .send(AgentCommand::MasterConnected {
            session: 1,
            tx: master_tx,
        })
        .await
        .expect("send");
    let ping = |seq| AgentCommand::MasterMessage {
        session: 1,
        message: MasterMessage {
            kind: Some(master_message::Kind::Ping(master_message::Ping { seq })),
        },
    };
    let pings = COMMAND_QUEUE as u64 - 1;
    for seq in 0..pings {
        commands.send(ping(seq)).await.expect("send");
    }
    // The actor is not running yet: the queue is full.
    assert!(matches!(
        commands.try_send(ping(pings)),
        Err(mpsc::error::TrySendError::Full(_))
    ));
    let waiting = {
        let commands = commands.clone();
        tokio::spawn(async move { commands.send(ping(pings)).await.is_ok() })
    };
    let shutdown = CancellationToken::new();
    let actor_task = tokio::spawn(actor.run(command_rx, shutdown.clone()));
    assert!(
        tokio::time::timeout(DEADLINE, waiting)
            .await
            .expect("the waiting producer was never let in")
            .expect("producer task")
    );
    expect_register(&mut from_agent).await;
    for seq in 0..=pings {
        expect_pong(&mut from_agent, seq).await;
    }
    shutdown.cancel();
    actor_task.await.expect("actor");
}

/// An actor running on its own task, as the agent runs it: its command
/// queue, the snapshots it publishes, its shutdown token and its task.
fn spawn_actor(
    options: AgentOptions,
    store: Box<dyn MetaStore + Send>,
    containers: Containers,
) -> (
    mpsc::Sender<AgentCommand>,
    watch::Receiver<Arc<AgentSnapshot>>,
    CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
    let (snapshot_tx, snapshot) = watch::channel(Arc::new(AgentSnapshot::default()));
    let actor =
        Actor::new(options, store, containers, commands.clone(), snapshot_tx).expect("actor");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(actor.run(command_rx, shutdown.clone()));
    (commands, snapshot, shutdown, task)
}

/// An actor that is not running: the tests call its methods directly.
fn idle_actor(work_dir: &std::path::Path) -> Actor {
    let options = options(work_dir);
    let containers = Containers::new(&options.containers).expect("posix containers");
    let (commands, _command_rx) = mpsc::channel(COMMAND_QUEUE);
    let (snapshot_tx, _snapshot_rx) = watch::channel(Arc::new(AgentSnapshot::default()));
    Actor::new(
        options,
        Box::new(MemStore::default()),
        containers,
        commands,
        snapshot_tx,
    )
    .expect("actor")
}

fn kill_event(n: usize) -> agora_proto::v1::executor::Event {
    use agora_proto::v1::executor::event;
    agora_proto::v1::executor::Event {
        r#type: event::Type::Kill as i32,
        kill: Some(event::Kill {
            task_id: Some(agora_proto::v1::TaskId {
                value: n.to_string(),
            }),
            kill_policy: None,
            message: None,
        }),
        ..Default::default()
    }
}

/// Far more events than the old 256-message queue held, sent while the
/// executor takes none: every one reaches it, in order (a full queue used
/// to drop a LAUNCH, KILL or acknowledgement silently).
#[tokio::test]
async fn a_slow_executor_gets_every_event_in_order() {
    use futures::StreamExt as _;
    let work = tempfile::tempdir().expect("work dir");
    let mut actor = idle_actor(work.path());
    let (events, rx) = outbox();
    actor.executors.insert(1, events);
    let effects = (0..5_000)
        .map(|n| Effect::ToExecutor {
            conn: 1,
            event: kill_event(n),
        })
        .collect();
    actor.execute(effects);
    assert!(
        actor.executors.contains_key(&1),
        "a slow executor is not given up"
    );
    actor.executors.clear(); // the stream ends once everything is taken
    let mut stream = event_stream(rx);
    let mut got = Vec::new();
    while let Some(event) = tokio::time::timeout(DEADLINE, stream.next())
        .await
        .expect("the stream ended")
    {
        let event = event.expect("not closed");
        got.push(event.kill.and_then(|k| k.task_id).map(|t| t.value));
        tokio::task::yield_now().await; // a slow reader
    }
    let sent: Vec<_> = (0..5_000).map(|n| Some(n.to_string())).collect();
    assert_eq!(got, sent);
}

/// Pongs beyond the old 4,096-message session queue, queued while the
/// master reads nothing, all go out in order after the registration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_master_session_gets_every_pong_in_order() {
    let work = tempfile::tempdir().expect("work dir");
    let options = options(work.path());
    let containers = Containers::new(&options.containers).expect("posix containers");
    let (commands, _snapshot_rx, shutdown, actor_task) =
        spawn_actor(options, Box::new(MemStore::default()), containers);
    let (master_tx, mut from_agent) = outbox();
    commands
        .send(AgentCommand::MasterConnected {
            session: 1,
            tx: master_tx,
        })
        .await
        .expect("send");
    let pings = 5_000u64;
    for seq in 0..pings {
        let ping = master_message::Kind::Ping(master_message::Ping { seq });
        commands
            .send(AgentCommand::MasterMessage {
                session: 1,
                message: MasterMessage { kind: Some(ping) },
            })
            .await
            .expect("send");
    }
    // Handled after every ping: once answered, every pong was queued.
    let (reply, answer) = tokio::sync::oneshot::channel();
    commands
        .send(AgentCommand::Statistics { reply })
        .await
        .expect("send");
    tokio::time::timeout(DEADLINE, answer)
        .await
        .expect("the actor never answered")
        .expect("reply");
    expect_register(&mut from_agent).await;
    for seq in 0..pings {
        expect_pong(&mut from_agent, seq).await;
    }
    shutdown.cancel();
    actor_task.await.expect("actor");
}

/// A peer that takes nothing for minutes while messages wait is given up:
/// the master session ends (its task hears the signal and re-registers),
/// an executor's stream ends with UNAVAILABLE (it re-subscribes).
#[tokio::test(start_paused = true)]
async fn stuck_peers_are_disconnected_and_told() {
    use futures::StreamExt as _;
    let work = tempfile::tempdir().expect("work dir");
    let mut actor = idle_actor(work.path());
    let (master_tx, mut from_agent) = outbox();
    let session_stuck = from_agent.stuck_signal();
    actor.master_tx = Some(master_tx);
    let (events, rx) = outbox();
    actor.executors.insert(1, events);

    let ping = |seq| AgentMessage {
        kind: Some(agent_message::Kind::Pong(agent_message::Pong { seq })),
    };
    actor.send_to_master(ping(1));
    actor.send_to_executor(1, kill_event(1));
    tokio::time::advance(agora_net::outbox::STUCK_AFTER).await;
    actor.send_to_master(ping(2));
    actor.send_to_executor(1, kill_event(2));

    assert!(actor.master_tx.is_none(), "the stuck session was kept");
    assert!(actor.executors.is_empty(), "the stuck executor was kept");
    tokio::time::timeout(DEADLINE, session_stuck.stuck())
        .await
        .expect("the session task is told");
    assert!(matches!(from_agent.recv().await, Some(Err(_))));
    let closed = event_stream(rx)
        .next()
        .await
        .expect("an error, not a silent end")
        .expect_err("nothing more is delivered");
    assert_eq!(closed.code(), tonic::Code::Unavailable, "{closed:?}");
}

/// A launch hook that reports it started, then waits until the test drops
/// the returned sender (also on a failed assertion).
fn stuck_launch_hook() -> (
    Arc<dyn Fn() + Send + Sync>,
    mpsc::UnboundedReceiver<()>,
    std::sync::mpsc::Sender<()>,
) {
    let (started_tx, started) = mpsc::unbounded_channel::<()>();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let released = std::sync::Mutex::new(released);
    let hook: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        let _ = started_tx.send(());
        let _ = released
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .recv();
    });
    (hook, started, release)
}

/// A registered agent whose launches hang in `hook`.
struct LaunchingAgent {
    commands: mpsc::Sender<AgentCommand>,
    from_agent: Inbox<AgentMessage>,
    snapshot: watch::Receiver<Arc<AgentSnapshot>>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl LaunchingAgent {
    async fn start(options: AgentOptions, hook: Arc<dyn Fn() + Send + Sync>) -> Self {
        use agora_proto::v1 as pb;
        let mut containers = Containers::new(&options.containers).expect("posix containers");
        containers.launch_hook = Some(hook);
        let (commands, snapshot, shutdown, task) =
            spawn_actor(options, Box::new(MemStore::default()), containers);
        let (master_tx, mut from_agent) = outbox();
        commands
            .send(AgentCommand::MasterConnected {
                session: 1,
                tx: master_tx,
            })
            .await
            .expect("send");
        next_from_agent(&mut from_agent).await; // Register
        let mut agent = Self {
            commands,
            from_agent,
            snapshot,
            shutdown,
            task,
        };
        agent
            .master(master_message::Kind::Registered(
                master_message::Registered {
                    agent_id: Some(pb::AgentId { value: "a1".into() }),
                    master_info: None,
                },
            ))
            .await;
        agent
    }

    async fn master(&mut self, kind: master_message::Kind) {
        self.commands
            .send(AgentCommand::MasterMessage {
                session: 1,
                message: MasterMessage { kind: Some(kind) },
            })
            .await
            .expect("send");
    }

    async fn run_task(&mut self, task_id: &str) {
        use agora_proto::v1 as pb;
        self.master(master_message::Kind::RunTask(master_message::RunTask {
            framework: Some(pb::FrameworkInfo {
                id: Some(pb::FrameworkId { value: "f1".into() }),
                name: "fw".into(),
                ..Default::default()
            }),
            task: Some(pb::TaskInfo {
                name: task_id.into(),
                task_id: Some(pb::TaskId {
                    value: task_id.into(),
                }),
                command: Some(pb::CommandInfo {
                    value: Some("sleep 60".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }))
        .await;
    }

    /// Pings and expects the pong as the agent's next message.
    async fn ping(&mut self, seq: u64) {
        self.master(master_message::Kind::Ping(master_message::Ping { seq }))
            .await;
        expect_pong(&mut self.from_agent, seq).await;
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.expect("actor");
    }
}

/// A launch stuck in its blocking part (a hung disk, NSS waiting on LDAP):
/// the loop answers the master's pings meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_answers_pings_while_a_launch_is_stuck() {
    let work = tempfile::tempdir().expect("work dir");
    let (hook, mut started, release) = stuck_launch_hook();
    let mut agent = LaunchingAgent::start(options(work.path()), hook).await;
    agent.run_task("t1").await;
    tokio::time::timeout(DEADLINE, started.recv())
        .await
        .expect("the launch never started")
        .expect("hook dropped");
    agent.ping(7).await;
    drop(release);
    agent.stop().await;
}

/// Whether a live process has a sandbox under `work_dir` (its
/// environment names it, whatever it exec'd since).
fn runs_under(work_dir: &std::path::Path) -> bool {
    let needle = work_dir.as_os_str().as_encoded_bytes();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| std::fs::read(entry.path().join("environ")).ok())
        .any(|environ| environ.windows(needle.len()).any(|w| w == needle))
}

/// A KILL while the executor is being started: the task is reported
/// killed once, and the executor the launch then starts is destroyed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_during_a_launch_reports_the_task_once_and_leaves_no_process() {
    use agora_proto::v1 as pb;
    use std::os::unix::fs::PermissionsExt as _;
    let work = tempfile::tempdir().expect("work dir");
    // An "agora" whose `executor` stays up, as a real one would until its task ends.
    let program = work.path().join("fake-agora");
    std::fs::write(&program, "#!/bin/sh\nexec sleep 60\n").expect("write program");
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut options = options(work.path());
    options.executor_program = program.clone();
    let (hook, mut started, release) = stuck_launch_hook();
    let mut agent = LaunchingAgent::start(options, hook).await;
    agent.run_task("t1").await;
    tokio::time::timeout(DEADLINE, started.recv())
        .await
        .expect("the launch never started")
        .expect("hook dropped");

    agent
        .master(master_message::Kind::KillTask(master_message::KillTask {
            framework_id: Some(pb::FrameworkId { value: "f1".into() }),
            task_id: Some(pb::TaskId { value: "t1".into() }),
            kill_policy: None,
            message: Some("killed by an operator: maintenance".into()),
        }))
        .await;
    let update = next_from_agent(&mut agent.from_agent).await;
    let Some(agent_message::Kind::StatusUpdate(update)) = update.kind else {
        panic!("expected a status update, got {update:?}");
    };
    let status = update.status.expect("status");
    assert_eq!(
        status.state,
        Some(pb::TaskState::TaskKilled as i32),
        "{status:?}"
    );
    agent
        .master(master_message::Kind::StatusUpdateAck(
            master_message::StatusUpdateAck {
                framework_id: Some(pb::FrameworkId { value: "f1".into() }),
                task_id: Some(pb::TaskId { value: "t1".into() }),
                uuid: status.uuid.clone().unwrap_or_default(),
            },
        ))
        .await;

    // The launch goes on and starts the executor; its result finds the
    // executor killed, destroys the process and schedules its sandbox.
    drop(release);
    snapshot_where(&mut agent.snapshot, |s| s.sandboxes_awaiting_gc == 1).await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while runs_under(work.path()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the executor started after the kill is still running"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // No second report of the task: the next message is the pong.
    agent.ping(8).await;
    agent.stop().await;
}

/// An exit whose cause comes back from its worker after the executor was
/// killed and started again is not the new run's: only the earlier run's
/// sandbox is collected; the new run's container and tasks are left alone.
#[tokio::test]
async fn a_late_exit_of_an_earlier_run_leaves_the_current_run_alone() {
    let work = tempfile::tempdir().expect("work dir");
    let mut actor = idle_actor(work.path());
    let key = (FrameworkId::new("f1"), ExecutorId::new("e1"));
    let earlier = work.path().join("earlier-run");
    // The executor is being started again: its launch is in flight.
    actor.launches.insert(key.clone(), 2);
    actor
        .sandboxes
        .insert(key.clone(), work.path().join("new-run"));
    actor
        .containers
        .create(key.clone(), "late-exit-new-run", &Resources::default())
        .expect("container");

    let mut out = Vec::new();
    actor.executor_exit_explained(
        key.clone(),
        (Some("earlier-run".into()), Some(earlier.clone())),
        None,
        "exit status: 0".into(),
        &mut out,
    );
    assert!(out.is_empty(), "nothing is reported: {out:?}");
    assert!(
        actor.containers.keys().contains(&key),
        "the new run's container stays"
    );
    let far = std::time::SystemTime::now() + Duration::from_secs(10 * 365 * 24 * 3600);
    assert_eq!(
        actor.gc.due(far),
        vec![earlier],
        "only the earlier run's sandbox is collected"
    );
}

/// Concurrent statistics requests (`/monitor/statistics`, `/metrics`)
/// share one read: a request that comes while a read is in flight waits
/// for it, every waiting request gets its entries, and the next request
/// starts a new read.
#[tokio::test]
async fn concurrent_statistics_requests_share_one_read() {
    let work = tempfile::tempdir().expect("work dir");
    let mut actor = idle_actor(work.path());
    let (first, first_answer) = tokio::sync::oneshot::channel();
    let (second, second_answer) = tokio::sync::oneshot::channel();
    actor.statistics(first);
    actor.statistics(second);
    assert_eq!(actor.statistics_waiting.len(), 2, "one read for both");

    let entry = super::ContainerStatistics {
        framework_id: "f1".into(),
        executor_id: "e1".into(),
        executor_name: "e1".into(),
        source: "e1".into(),
        statistics: agora_isolation::ResourceStatistics::default(),
    };
    actor.statistics_read(vec![entry]);
    for answer in [first_answer, second_answer] {
        let entries = answer.await.expect("answered");
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].executor_id, "e1");
    }
    let (third, _third_answer) = tokio::sync::oneshot::channel();
    actor.statistics(third);
    assert_eq!(actor.statistics_waiting.len(), 1, "a new read");
}

/// The loop sleeps until its next deadline, not on a tick: idle, it wakes
/// for the disk check only; a status update waiting for its
/// acknowledgement is resent at its retry deadline itself (a 1 s tick
/// resent it up to a second late).
#[tokio::test(start_paused = true)]
async fn the_loop_wakes_at_its_deadlines_not_on_a_tick() {
    use agora_proto::v1 as pb;
    use tokio::time::Instant;
    let work = tempfile::tempdir().expect("work dir");
    let mut actor = idle_actor(work.path());
    let start = Instant::now();
    let mut out = Vec::new();
    actor.deadlines_due(&mut out); // the first disk check
    actor.publish(true);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(
        actor.next_wake(),
        start + Duration::from_secs(1),
        "idle: the next disk check"
    );

    // Off the second grid: a TASK_FAILED (the disk is full) at 0.3 s,
    // resent unless acknowledged at 10.3 s.
    tokio::time::advance(Duration::from_millis(300)).await;
    let now = actor.now();
    actor
        .state
        .on_registered(now, agora_core::AgentId::new("a1"), &mut out);
    actor.state.set_disk_full(true);
    let run = master_message::RunTask {
        framework: Some(pb::FrameworkInfo {
            id: Some(pb::FrameworkId { value: "f1".into() }),
            name: "fw".into(),
            ..Default::default()
        }),
        task: Some(pb::TaskInfo {
            name: "t1".into(),
            task_id: Some(pb::TaskId { value: "t1".into() }),
            command: Some(pb::CommandInfo {
                value: Some("true".into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    actor.state.on_run_task(now, run, &mut out);
    let updates = |out: &[Effect]| {
        out.iter()
            .filter(|e| matches!(e, Effect::ToMaster(_)))
            .count()
    };
    assert_eq!(updates(&out), 1, "the refusal goes out: {out:?}");
    out.clear();
    actor.dirty = true; // as after any command

    let retry = start + Duration::from_millis(300) + crate::state::RETRY_MIN;
    let mut wakes = 0;
    while updates(&out) == 0 {
        wakes += 1;
        assert!(wakes < 100, "the retry never came");
        let wake = actor.next_wake();
        assert!(wake <= retry, "slept past the retry deadline");
        tokio::time::advance(wake.saturating_duration_since(Instant::now())).await;
        actor.deadlines_due(&mut out);
        actor.publish(false);
    }
    assert_eq!(Instant::now(), retry, "resent at its deadline itself");
    assert!(wakes <= 13, "woken {wakes} times in 10 s");
}
