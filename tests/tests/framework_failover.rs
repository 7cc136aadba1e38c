//! Framework failover end to end: a framework's connection dies (as when its
//! process is killed); it subscribes again with its id within its failover
//! timeout and finds its task untouched. A framework that stays away longer
//! than its timeout is removed and its task killed.

use std::time::Duration;

use agora_e2e::{Cluster, all_tasks, wait_for};
use agora_scheduler::proto::{Filters, TaskId, TaskState};
use agora_scheduler::{Event, FrameworkBuilder, SchedulerClient, SubscribeOptions, TaskBuilder};

async fn next_event(events: &mut agora_scheduler::EventStream, what: &str) -> Event {
    match tokio::time::timeout(Duration::from_secs(30), events.recv()).await {
        Ok(Some(event)) => event,
        Ok(None) => panic!("event stream ended while waiting for {what}"),
        Err(_) => panic!("no event within 30 s while waiting for {what}"),
    }
}

/// Subscribes, launches one `sleep` task and waits until it runs.
async fn framework_with_a_running_task(
    master: &str,
    failover: Duration,
) -> (
    SchedulerClient,
    agora_scheduler::EventStream,
    agora_scheduler::proto::FrameworkId,
) {
    let info = FrameworkBuilder::new("failover-test")
        .failover_timeout(failover)
        .build();
    let (client, mut events) = SchedulerClient::connect(master, info, SubscribeOptions::default())
        .await
        .expect("subscribe");
    let framework_id = loop {
        if let Event::Subscribed { framework_id, .. } = next_event(&mut events, "SUBSCRIBED").await
        {
            break framework_id;
        }
    };
    let offer = loop {
        if let Event::Offers(offers) = next_event(&mut events, "an offer").await {
            break offers.into_iter().next().expect("one offer");
        }
    };
    let task = TaskBuilder::command("long-0", "long", "sleep 120")
        .cpus(0.5)
        .mem(32.0)
        .build_for_offer(&offer);
    client
        .launch(
            vec![offer.id.clone().expect("id")],
            vec![task],
            Some(Filters {
                refuse_seconds: Some(0.0),
            }),
        )
        .await
        .expect("launch");
    loop {
        if let Event::Update(status) = next_event(&mut events, "TASK_RUNNING").await
            && status.state() == TaskState::TaskRunning
        {
            break;
        }
    }
    (client, events, framework_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_framework_that_comes_back_in_time_finds_its_task_untouched() {
    let cluster = Cluster::start(1, "cpus:2;mem:1024").expect("cluster starts");
    let master = cluster.master_address();
    let (client, events, framework_id) =
        framework_with_a_running_task(&master, Duration::from_secs(60)).await;
    let sandbox = cluster.sandbox_files("long-0", "stdout");
    assert_eq!(sandbox.len(), 1);
    // The framework dies: its connection goes with it.
    drop(events);
    drop(client);
    wait_for("framework inactive", Duration::from_secs(10), || {
        let state = cluster.state().ok()?;
        (state["frameworks"][0]["active"] == false).then_some(())
    })
    .expect("master notices the framework is gone");

    // A new process with the same id.
    let info = FrameworkBuilder::new("failover-test")
        .id(framework_id.clone())
        .failover_timeout(Duration::from_secs(60))
        .build();
    let (client, mut events) = SchedulerClient::connect(&master, info, SubscribeOptions::default())
        .await
        .expect("re-subscribe");
    match next_event(&mut events, "SUBSCRIBED").await {
        Event::Subscribed {
            framework_id: id, ..
        } => assert_eq!(id, framework_id),
        other => panic!("expected SUBSCRIBED, got {other:?}"),
    }
    client
        .reconcile(vec![(
            TaskId {
                value: "long-0".into(),
            },
            None,
        )])
        .await
        .expect("reconcile");
    loop {
        if let Event::Update(status) = next_event(&mut events, "reconciliation answer").await {
            assert_eq!(
                status.state,
                Some(TaskState::TaskRunning as i32),
                "{status:?}"
            );
            break;
        }
    }
    let state = cluster
        .wait_state("the task running in /state", |state| {
            all_tasks(state)
                .iter()
                .any(|t| t["state"] == "TASK_RUNNING")
        })
        .expect("state");
    let tasks = all_tasks(&state);
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["state"], "TASK_RUNNING");
    assert_eq!(
        cluster.sandbox_files("long-0", "stdout"),
        sandbox,
        "same run, not a relaunch"
    );
    client.teardown().await.expect("teardown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_framework_that_stays_away_past_its_timeout_is_removed_with_its_tasks() {
    let cluster = Cluster::start(1, "cpus:2;mem:1024").expect("cluster starts");
    let master = cluster.master_address();
    let (client, events, framework_id) =
        framework_with_a_running_task(&master, Duration::from_secs(1)).await;
    drop(events);
    drop(client);
    wait_for(
        "the task killed with its framework",
        Duration::from_secs(30),
        || {
            let state = cluster.state().ok()?;
            let removed = state["completed_frameworks"]
                .as_array()?
                .iter()
                .any(|f| f["id"] == framework_id.value);
            let killed = all_tasks(&state)
                .iter()
                .any(|t| t["id"] == "long-0" && t["state"] == "TASK_KILLED");
            (removed && killed).then_some(())
        },
    )
    .expect("framework removed after its failover timeout");
    // Killed means the process is gone, not only the master's word for it.
    let sandbox = cluster.sandbox_files("long-0", "stdout")[0]
        .parent()
        .expect("sandbox dir")
        .to_path_buf();
    wait_for(
        "no process left in the task's sandbox",
        Duration::from_secs(30),
        || {
            agora_e2e::processes_under(&sandbox)
                .is_empty()
                .then_some(())
        },
    )
    .expect("the task's processes end");
    let info = FrameworkBuilder::new("failover-test")
        .id(framework_id)
        .build();
    let refused = SchedulerClient::connect(&master, info, SubscribeOptions::default()).await;
    assert!(
        refused.is_err(),
        "a removed framework id cannot subscribe again"
    );
}
