//! The running driver: subscribes through the SDK, turns events into
//! callbacks, and sends queued calls in order.

use std::sync::Arc;

use agora_proto::v1;
use agora_scheduler::{Event, EventStream, SchedulerClient, SubscribeOptions};
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

use super::{Callback, Command, Shared};
use crate::convert;
use crate::master;
use crate::status::StopKind;

/// Runs one driver's session until it is stopped or aborted, or the master
/// ends it.
pub(super) async fn run(shared: Arc<Shared>, commands: mpsc::UnboundedReceiver<Command>) {
    let (client_tx, client_rx) = watch::channel(None);
    let (end_tx, end_rx) = watch::channel(false);
    let caller = tokio::spawn(call_loop(shared.clone(), commands, client_rx, end_tx));
    subscribe_and_pump(&shared, client_tx, end_rx).await;
    // The caller ends once the Java side has closed the queue (stop, or the
    // driver dropped); it answers every call made meanwhile.
    if let Err(e) = caller.await {
        error!(error = %e, "libmesos call task failed");
    }
}

async fn subscribe_and_pump(
    shared: &Arc<Shared>,
    client_tx: watch::Sender<Option<SchedulerClient>>,
    mut end: watch::Receiver<bool>,
) {
    let config = &shared.config;
    let detector = match master::parse(&config.master, |p| std::fs::read_to_string(p))
        .and_then(|spec| master::detector(&spec))
    {
        Ok(d) => d,
        Err(e) => {
            error!(error = %e, "cannot use the master string");
            shared.fail(e.to_string());
            return;
        }
    };
    // Mesos' libprocess TLS variables, as a Mesos framework sets them.
    let tls = match agora_tls::TlsFiles::from_libprocess_env(|name| std::env::var(name).ok())
        .and_then(|files| files.map(|f| f.client()).transpose())
    {
        Ok(tls) => tls.flatten(),
        Err(e) => {
            error!(error = %e, "invalid TLS settings (LIBPROCESS_SSL_*)");
            shared.fail(format!("invalid TLS settings (LIBPROCESS_SSL_*): {e}"));
            return;
        }
    };
    let options = SubscribeOptions {
        connect_timeout: config.connect_timeout,
        tls,
        auto_acknowledge: config.implicit_acknowledgements,
        credential: config.credential.clone(),
        ..SubscribeOptions::default()
    };
    info!(master = %detector, framework = %config.framework.name, "registering with the master");
    let connect =
        SchedulerClient::connect_with_detector(detector.clone(), config.framework.clone(), options);
    let (client, events) = tokio::select! {
        result = connect => match result {
            Ok(ok) => ok,
            Err(e) => {
                let message = format!("cannot register with the master at {detector}: {e}");
                error!("{message}");
                shared.fail(message);
                return;
            }
        },
        _ = end.wait_for(|ended| *ended) => {
            debug!("driver stopped before it registered");
            return;
        }
    };
    let _ = client_tx.send(Some(client));
    pump(shared, events, end).await;
}

/// Delivers events until the subscription ends or the driver stops.
async fn pump(shared: &Arc<Shared>, mut events: EventStream, mut end: watch::Receiver<bool>) {
    let mut registered = false;
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            _ = end.wait_for(|ended| *ended) => return,
        };
        let Some(event) = event else {
            if shared.lifecycle().delivers() {
                let message = "the master ended the framework's subscription".to_owned();
                error!("{message}");
                shared.fail(message);
            }
            return;
        };
        match event {
            Event::Subscribed {
                framework_id,
                master_info,
                ..
            } => {
                let master = master_info.unwrap_or_default();
                let master = match convert::to_v0(&master) {
                    Ok(m) => m,
                    Err(e) => {
                        error!(error = %e, "cannot convert the master's info");
                        continue;
                    }
                };
                if registered {
                    info!(framework_id = %framework_id.value, "re-registered with the master");
                    shared.emit(Callback::Reregistered(master));
                } else {
                    registered = true;
                    info!(framework_id = %framework_id.value, "registered with the master");
                    match convert::to_v0(&framework_id) {
                        Ok(framework_id) => shared.emit(Callback::Registered {
                            framework_id,
                            master,
                        }),
                        Err(e) => error!(error = %e, "cannot convert the framework id"),
                    }
                }
            }
            Event::Offers(offers) => {
                let offers: Vec<_> = offers
                    .iter()
                    .filter_map(|o| match convert::to_v0(o) {
                        Ok(o) => Some(o),
                        Err(e) => {
                            warn!(error = %e, "offer dropped: cannot convert it");
                            None
                        }
                    })
                    .collect();
                if !offers.is_empty() {
                    shared.emit(Callback::Offers(offers));
                }
            }
            Event::Rescind(offer_id) => {
                if let Ok(id) = convert::to_v0(&offer_id) {
                    shared.emit(Callback::Rescinded(id));
                }
            }
            Event::Update(status) => {
                let task = status
                    .task_id
                    .as_ref()
                    .map(|t| t.value.clone())
                    .unwrap_or_default();
                let known = {
                    let mut agents = shared.task_agents();
                    if let Some(agent) = &status.agent_id {
                        agents.insert(task.clone(), agent.clone());
                    }
                    let known = agents.get(&task).cloned();
                    let state = v1::TaskState::try_from(status.state.unwrap_or_default())
                        .unwrap_or(v1::TaskState::TaskUnknown);
                    if agora_scheduler::is_terminal(state) {
                        agents.remove(&task);
                    }
                    known
                };
                match convert::status_to_v0(&status, known.as_ref()) {
                    Ok(s) => shared.emit(Callback::Status(s)),
                    Err(e) => {
                        warn!(task_id = %task, error = %e, "update dropped: cannot convert it")
                    }
                }
            }
            Event::Message {
                agent_id,
                executor_id,
                data,
            } => {
                if let (Ok(slave_id), Ok(executor_id)) =
                    (convert::to_v0(&agent_id), convert::to_v0(&executor_id))
                {
                    shared.emit(Callback::Message {
                        executor_id,
                        slave_id,
                        data,
                    });
                }
            }
            Event::Failure {
                agent_id,
                executor_id,
                status,
            } => {
                let slave_id = agent_id
                    .as_ref()
                    .and_then(|a| convert::to_v0(a).ok())
                    .unwrap_or_default();
                match executor_id.and_then(|e| convert::to_v0(&e).ok()) {
                    Some(executor_id) => shared.emit(Callback::ExecutorLost {
                        executor_id,
                        slave_id,
                        status: status.unwrap_or(-1),
                    }),
                    None if agent_id.is_some() => shared.emit(Callback::SlaveLost(slave_id)),
                    None => {}
                }
            }
            Event::Error(message) => {
                // After stop(false) this is the master confirming the
                // teardown; only a running driver has an error to report.
                if shared.lifecycle().delivers() {
                    error!(%message, "the master ended the framework");
                    shared.fail(message);
                } else {
                    debug!(%message, "subscription ended after stop");
                }
                return;
            }
            Event::Disconnected { reason } => {
                warn!(%reason, "disconnected from the master; re-registering");
                shared.emit(Callback::Disconnected);
            }
            Event::Heartbeat | Event::Reconnected => {}
            other => debug!(event = ?other, "event ignored"),
        }
    }
}

/// Sends queued calls in order. Ends when the queue closes; tells the
/// event pump to end when the driver stops.
async fn call_loop(
    shared: Arc<Shared>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    client: watch::Receiver<Option<SchedulerClient>>,
    end: watch::Sender<bool>,
) {
    while let Some(command) = commands.recv().await {
        let current = client.borrow().clone();
        if let Command::Stop { kind, done } = command {
            if let (StopKind::Teardown, Some(client)) = (kind, &current) {
                match client.teardown().await {
                    Ok(()) => info!("framework torn down"),
                    Err(e) => warn!(error = %e, "teardown failed"),
                }
            }
            let _ = end.send(true);
            let _ = done.send(());
            continue;
        }
        match current {
            Some(client) => execute(&shared, &client, command).await,
            None => not_sent(&shared, command, &agora_scheduler::Error::NotSubscribed),
        }
    }
    let _ = end.send(true);
}

async fn execute(shared: &Shared, client: &SchedulerClient, command: Command) {
    let result = match &command {
        Command::Accept {
            offer_ids,
            operations,
            filters,
        } => {
            client
                .accept(offer_ids.clone(), operations.clone(), *filters)
                .await
        }
        Command::Decline { offer_ids, filters } => {
            let refuse = filters
                .and_then(|f| f.refuse_seconds)
                .and_then(agora_core::time::duration_from_secs);
            client.decline(offer_ids.clone(), refuse).await
        }
        Command::Revive => client.revive(Vec::new()).await,
        Command::Suppress => client.suppress(Vec::new()).await,
        Command::Kill { task_id, agent_id } => client.kill(task_id.clone(), agent_id.clone()).await,
        Command::Acknowledge {
            agent_id,
            task_id,
            uuid,
        } => {
            client
                .acknowledge(agent_id.clone(), task_id.clone(), uuid.clone())
                .await
        }
        Command::Reconcile(tasks) => client.reconcile(tasks.clone()).await,
        Command::Message {
            agent_id,
            executor_id,
            data,
        } => {
            client
                .message(agent_id.clone(), executor_id.clone(), data.clone())
                .await
        }
        Command::Stop { .. } => Ok(()),
    };
    if let Err(e) = result {
        not_sent(shared, command, &e);
    }
}

/// A call that did not go through. Launches that never reached the master
/// are reported TASK_LOST (Mesos' driver does the same); a master that
/// refused a launch has already reported its tasks itself.
fn not_sent(shared: &Shared, command: Command, e: &agora_scheduler::Error) {
    match command {
        Command::Accept { operations, .. } => {
            let tasks: Vec<_> = operations
                .iter()
                .flat_map(convert::launched_tasks)
                .collect();
            warn!(error = %e, tasks = tasks.len(), "accept not done");
            if matches!(e, agora_scheduler::Error::NotSubscribed) && !tasks.is_empty() {
                shared.fail_tasks(
                    &tasks,
                    v1::TaskState::TaskLost,
                    v1::task_status::Reason::MasterDisconnected,
                    "master disconnected",
                );
            }
        }
        other => warn!(error = %e, call = ?other, "call not done"),
    }
}
