//! Agent health end to end: a frozen agent (SIGSTOP) goes unreachable after
//! the master's ping timeout, its task is reported TASK_UNREACHABLE to a
//! partition-aware framework and nothing of the agent is offered meanwhile;
//! thawed (SIGCONT), it re-registers and the task is RUNNING again.

use std::time::Duration;

use agora_e2e::{Proc, free_port, get_json, http_get, wait_for};
use agora_scheduler::proto::framework_info::capability::Type as Capability;
use agora_scheduler::proto::{Filters, TaskState};
use agora_scheduler::{Event, FrameworkBuilder, SchedulerClient, SubscribeOptions, TaskBuilder};
use rustix::process::{Pid, Signal, kill_process};

fn signal(proc: &Proc, signal: Signal) {
    let pid = Pid::from_raw(proc.child.id() as i32).expect("a live child has a pid");
    kill_process(pid, signal).expect("signal the agent we started");
}

/// Next event within the deadline, or a panic naming what was awaited.
async fn next_event(events: &mut agora_scheduler::EventStream, what: &str) -> Event {
    match tokio::time::timeout(Duration::from_secs(30), events.recv()).await {
        Ok(Some(event)) => event,
        Ok(None) => panic!("event stream ended while waiting for {what}"),
        Err(_) => panic!("no event within 30 s while waiting for {what}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_agent_goes_unreachable_and_comes_back_with_its_task() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cgroups = agora_e2e::TestCgroups::new("frozen-agent");
    let _sweeper = agora_e2e::Sweeper(dir.path().to_path_buf());
    let master_port = free_port();
    let master_address = format!("127.0.0.1:{master_port}");
    // Fast health settings so that the test takes seconds: 0.5 s x 3.
    let _master = Proc::spawn(
        &[
            "master",
            "--ip",
            "127.0.0.1",
            "--port",
            &master_port.to_string(),
            "--agent-ping-timeout",
            "0.5",
            "--max-agent-ping-timeouts",
            "3",
        ],
        dir.path().join("master.log"),
    );
    let agent_dir = dir.path().join("agent");
    let agent = Proc::spawn(
        &[
            "agent",
            "--master",
            &master_address,
            "--ip",
            "127.0.0.1",
            "--port",
            &free_port().to_string(),
            "--work-dir",
            agent_dir.to_str().expect("utf-8"),
            "--resources",
            "cpus:2;mem:1024",
            "--cgroups-root",
            &cgroups.root,
        ],
        dir.path().join("agent.log"),
    );
    wait_for("agent registered", Duration::from_secs(30), || {
        let state = get_json(master_port, "/state").ok()?;
        (state["agents"][0]["status"] == "active").then_some(())
    })
    .expect("agent registers");

    let framework = FrameworkBuilder::new("partition-test")
        .capability(Capability::PartitionAware)
        .build();
    let (client, mut events) =
        SchedulerClient::connect(&master_address, framework, SubscribeOptions::default())
            .await
            .expect("subscribe");
    let offer = loop {
        if let Event::Offers(offers) = next_event(&mut events, "an offer").await {
            break offers.into_iter().next().expect("one offer");
        }
    };
    let task = TaskBuilder::command("frozen-0", "frozen", "sleep 120")
        .cpus(1.0)
        .mem(64.0)
        .build_for_offer(&offer);
    client
        .launch(
            vec![offer.id.clone().expect("offer id")],
            vec![task],
            Some(Filters {
                refuse_seconds: Some(0.0),
            }),
        )
        .await
        .expect("launch");
    let mut states = Vec::new();
    while !states.contains(&TaskState::TaskRunning) {
        if let Event::Update(status) = next_event(&mut events, "TASK_RUNNING").await {
            states
                .push(TaskState::try_from(status.state.unwrap_or_default()).expect("known state"));
        }
    }

    signal(&agent, Signal::STOP);
    loop {
        match next_event(&mut events, "TASK_UNREACHABLE").await {
            Event::Update(status) if status.state() == TaskState::TaskUnreachable => break,
            Event::Update(status) => panic!("unexpected update {status:?}"),
            _ => {}
        }
    }
    // `/state` is a snapshot published within milliseconds: wait for it.
    wait_for(
        "agent unreachable with no offer outstanding",
        Duration::from_secs(10),
        || {
            let state = get_json(master_port, "/state").ok()?;
            (state["agents"][0]["status"] == "unreachable" && state["outstanding_offers"] == 0)
                .then_some(())
        },
    )
    .expect("a frozen agent is unreachable and nothing of it is on offer");
    let (_, metrics) = http_get(master_port, "/metrics").expect("metrics");
    assert!(
        metrics.contains("agora_master_agents_marked_unreachable_total 1"),
        "{metrics}"
    );

    signal(&agent, Signal::CONT);
    let back = loop {
        match next_event(&mut events, "TASK_RUNNING again").await {
            Event::Update(status) => break status,
            Event::Offers(offers) => {
                // Offers once the agent is back must not include the task's cpu.
                for offer in offers {
                    let (cpus, _) = agora_scheduler::offer_cpus_mem(&offer);
                    assert!(
                        cpus <= 1.0 + 1e-9,
                        "the running task's cpu is not offered twice: {offer:?}"
                    );
                }
            }
            _ => {}
        }
    };
    assert_eq!(back.state, Some(TaskState::TaskRunning as i32), "{back:?}");
    assert_eq!(
        back.reason,
        Some(agora_scheduler::proto::task_status::Reason::AgentReregistered as i32)
    );
    wait_for("agent active again", Duration::from_secs(30), || {
        let state = get_json(master_port, "/state").ok()?;
        (state["agents"][0]["status"] == "active").then_some(())
    })
    .expect("agent is back");
    client.teardown().await.expect("teardown");
}
