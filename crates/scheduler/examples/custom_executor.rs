//! A custom executor: the program a framework ships (as Spark ships its
//! executor) and names in `TaskInfo.executor.command`. The agent starts it
//! once per executor id, in the container, with its endpoint and ids in the
//! environment; it subscribes over the executor protocol
//! (`agora.v1.executor.Executor/Open`), runs every task it is sent with
//! `sh -c`, reports RUNNING and a terminal state for each, and exits on
//! SHUTDOWN (or once the agent has acknowledged everything and it has had
//! no task for `--idle-exit` seconds).
//!
//! The agent refuses executor calls without the executor's token: it is in
//! `MESOS_EXECUTOR_AUTHENTICATION_TOKEN`, and goes with the subscription as
//! `authorization: Bearer <token>`. The tasks this executor starts do not
//! get it.
//!
//! Try it: `agora run --executor 'PATH/TO/custom_executor' --instances 3
//! --command 'echo hi from $AGORA_TASK_ID'`.

use std::collections::HashMap;
use std::time::Duration;

use agora_scheduler::proto as pb;
use agora_scheduler::proto::executor::executor_client::ExecutorClient;
use agora_scheduler::proto::executor::{Call, call, event};
use anyhow::{Context, bail};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// The agent's token for this executor (Mesos' name).
const TOKEN_VAR: &str = "MESOS_EXECUTOR_AUTHENTICATION_TOKEN";

fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set: run me under an agent"))
}

fn call(kind: call::Type, framework_id: &str, executor_id: &str) -> Call {
    Call {
        framework_id: Some(pb::FrameworkId {
            value: framework_id.to_string(),
        }),
        executor_id: Some(pb::ExecutorId {
            value: executor_id.to_string(),
        }),
        r#type: kind as i32,
        ..Default::default()
    }
}

fn status(task_id: &pb::TaskId, state: pb::TaskState, message: &str) -> pb::TaskStatus {
    pb::TaskStatus {
        task_id: Some(task_id.clone()),
        state: Some(state as i32),
        message: Some(message.to_string()),
        uuid: Some(random_uuid().to_vec()),
        ..Default::default()
    }
}

/// 16 bytes unique enough for update ids: time, pid and a counter.
fn random_uuid() -> [u8; 16] {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&nanos.to_be_bytes());
    let tail = (u64::from(std::process::id()) << 32) | COUNTER.fetch_add(1, Ordering::Relaxed);
    bytes[8..].copy_from_slice(&tail.to_be_bytes());
    bytes
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let endpoint = env("AGORA_AGENT_ENDPOINT")?;
    let framework_id = env("AGORA_FRAMEWORK_ID")?;
    let executor_id = env("AGORA_EXECUTOR_ID")?;
    let idle_exit = Duration::from_secs(30);
    let mut client = ExecutorClient::connect(endpoint.clone())
        .await
        .with_context(|| format!("cannot reach the agent at {endpoint}"))?;
    let (tx, rx) = mpsc::channel::<Call>(64);
    let mut subscribe = call(call::Type::Subscribe, &framework_id, &executor_id);
    subscribe.subscribe = Some(call::Subscribe::default());
    tx.send(subscribe).await?;
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    if let Ok(token) = std::env::var(TOKEN_VAR) {
        let value = format!("Bearer {token}")
            .parse()
            .context("the executor token is not a valid header value")?;
        request.metadata_mut().insert("authorization", value);
    }
    let mut events = client
        .open(request)
        .await
        .context("the agent refused the subscription")?
        .into_inner();
    // Task processes finish here; their results go out as updates.
    let (done_tx, mut done_rx) = mpsc::channel::<(pb::TaskId, bool, String)>(64);
    let mut running: HashMap<String, pb::TaskId> = HashMap::new();
    let mut unacknowledged: HashMap<Vec<u8>, pb::TaskStatus> = HashMap::new();
    let send = |status: pb::TaskStatus| {
        let mut update = call(call::Type::Update, &framework_id, &executor_id);
        update.update = Some(call::Update {
            status: Some(status),
        });
        update
    };
    loop {
        let idle = running.is_empty() && unacknowledged.is_empty();
        tokio::select! {
            event = events.message() => {
                let Some(event) = event? else { bail!("the agent closed the stream") };
                match event::Type::try_from(event.r#type).unwrap_or(event::Type::Unknown) {
                    event::Type::Subscribed => eprintln!("custom executor {executor_id}: subscribed"),
                    event::Type::Launch => {
                        let Some(task) = event.launch.and_then(|l| l.task) else { continue };
                        let Some(task_id) = task.task_id.clone() else { continue };
                        let command = task.command.and_then(|c| c.value).unwrap_or_default();
                        let running_status = status(&task_id, pb::TaskState::TaskRunning, "running under the custom executor");
                        unacknowledged.insert(running_status.uuid.clone().unwrap_or_default(), running_status.clone());
                        tx.send(send(running_status)).await?;
                        running.insert(task_id.value.clone(), task_id.clone());
                        let done = done_tx.clone();
                        tokio::spawn(async move {
                            let result = tokio::process::Command::new("/bin/sh")
                                .arg("-c")
                                .arg(&command)
                                .env("AGORA_TASK_ID", &task_id.value)
                                .env_remove(TOKEN_VAR)
                                .status()
                                .await;
                            let (ok, message) = match result {
                                Ok(s) if s.success() => (true, "command exited with status 0".to_string()),
                                Ok(s) => (false, format!("command ended: {s}")),
                                Err(e) => (false, format!("cannot start the command: {e}")),
                            };
                            let _ = done.send((task_id, ok, message)).await;
                        });
                    }
                    event::Type::Kill => {
                        // Tasks here are short; a real executor would signal the process.
                        if let Some(task_id) = event.kill.and_then(|k| k.task_id) {
                            eprintln!("custom executor: kill of {} requested", task_id.value);
                        }
                    }
                    event::Type::Acknowledged => {
                        if let Some(ack) = event.acknowledged {
                            unacknowledged.remove(&ack.uuid);
                        }
                    }
                    event::Type::Shutdown => {
                        eprintln!("custom executor {executor_id}: shutting down");
                        return Ok(());
                    }
                    _ => {}
                }
            }
            Some((task_id, ok, message)) = done_rx.recv() => {
                running.remove(&task_id.value);
                let state = if ok { pb::TaskState::TaskFinished } else { pb::TaskState::TaskFailed };
                let update = status(&task_id, state, &message);
                unacknowledged.insert(update.uuid.clone().unwrap_or_default(), update.clone());
                tx.send(send(update)).await?;
            }
            _ = tokio::time::sleep(idle_exit), if idle => {
                eprintln!("custom executor {executor_id}: idle, exiting");
                return Ok(());
            }
        }
    }
}
