//! An agent SIGKILLed in the middle of a large batch of launches: after it
//! restarts, every task of the batch reaches a terminal state, and the
//! framework hears each task's terminal state exactly once, although the
//! agent died with launches, checkpoint writes and status updates in flight.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use agora_e2e::{Cluster, get_json, wait_for};
use agora_scheduler::proto::{Filters, Offer, TaskState};
use agora_scheduler::{
    Event, FrameworkBuilder, SchedulerClient, SubscribeOptions, TaskBuilder, is_terminal,
    offer_cpus_mem,
};

const RESOURCES: &str = "cpus:64;mem:65536";
const TASKS: usize = 1000;
/// The agent is killed once this many tasks have reported anything.
const KILL_AFTER: usize = 150;
const TASK_CPUS: f64 = 0.05;
const TASK_MEM: f64 = 32.0;
/// Guards every wait: only reached when the behaviour under test is broken.
const DEADLINE: Duration = Duration::from_secs(240);

/// The framework's view: every update it received, by task.
#[derive(Default)]
struct Seen {
    reported: BTreeMap<String, Vec<TaskState>>,
}

impl Seen {
    fn record(&mut self, task_id: String, state: TaskState) {
        self.reported.entry(task_id).or_default().push(state);
    }

    fn terminal_count(&self, task_id: &str) -> usize {
        self.reported.get(task_id).map_or(0, |states| {
            states.iter().filter(|s| is_terminal(**s)).count()
        })
    }

    fn all_terminal(&self, launched: &[String]) -> bool {
        launched.iter().all(|id| self.terminal_count(id) > 0)
    }
}

/// Launches as many of the remaining tasks as `offer` holds.
async fn launch_into(client: &SchedulerClient, offer: &Offer, launched: &mut Vec<String>) {
    let (cpus, mem) = offer_cpus_mem(offer);
    let room = ((cpus / TASK_CPUS).floor() as usize).min((mem / TASK_MEM).floor() as usize);
    let count = room.min(TASKS - launched.len());
    let tasks: Vec<_> = (launched.len()..launched.len() + count)
        .map(|i| {
            TaskBuilder::command(format!("crash-{i}"), "crash", "true")
                .cpus(TASK_CPUS)
                .mem(TASK_MEM)
                .build_for_offer(offer)
        })
        .collect();
    if tasks.is_empty() {
        client
            .decline(vec![offer.id.clone().expect("offer id")], None)
            .await
            .ok();
        return;
    }
    let ids: Vec<String> = tasks
        .iter()
        .map(|t| t.task_id.as_ref().expect("task id").value.clone())
        .collect();
    // A launch refused because the agent just died is no failure here: its
    // tasks were never accepted, so nothing of them can be reported.
    if client
        .launch(
            vec![offer.id.clone().expect("offer id")],
            tasks,
            Some(Filters {
                refuse_seconds: Some(0.0),
            }),
        )
        .await
        .is_ok()
    {
        launched.extend(ids);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_task_of_a_batch_ends_once_across_an_agent_sigkill() {
    let (mut cluster, port) =
        Cluster::with_agent_on_known_port(RESOURCES, &[]).expect("master and agent start");

    let info = FrameworkBuilder::new("crash-batch").build();
    let (client, mut events) =
        SchedulerClient::connect(&cluster.master_address(), info, SubscribeOptions::default())
            .await
            .expect("subscribe");
    let start = Instant::now();
    let mut seen = Seen::default();
    let mut launched: Vec<String> = Vec::new();
    // How many tasks had reported when the agent was killed.
    let mut killed_at: Option<usize> = None;
    while !(launched.len() == TASKS && seen.all_terminal(&launched)) {
        let left = DEADLINE.saturating_sub(start.elapsed());
        let event = match tokio::time::timeout(left, events.recv()).await {
            Ok(Some(event)) => event,
            Ok(None) => panic!("the event stream ended"),
            Err(_) => panic!(
                "not every task ended within {DEADLINE:?}: {} launched, {} terminal",
                launched.len(),
                launched
                    .iter()
                    .filter(|id| seen.terminal_count(id) > 0)
                    .count()
            ),
        };
        match event {
            Event::Offers(offers) => {
                for offer in &offers {
                    launch_into(&client, offer, &mut launched).await;
                }
            }
            Event::Update(status) => {
                let task_id = status.task_id.as_ref().expect("task id").value.clone();
                seen.record(task_id, status.state());
                if killed_at.is_none() && seen.reported.len() >= KILL_AFTER {
                    killed_at = Some(seen.reported.len());
                    eprintln!(
                        "agent killed {:.1} s after the subscription, {} launched",
                        start.elapsed().as_secs_f64(),
                        launched.len()
                    );
                    tokio::task::block_in_place(|| {
                        // Proc::kill sends SIGKILL to the agent's pid and reaps it.
                        cluster.agents[0].kill();
                        cluster.agents[0] =
                            cluster.start_agent_on(0, port, RESOURCES, "agent-0-again.log", &[]);
                    });
                }
            }
            _ => {}
        }
    }
    eprintln!(
        "every task ended {:.1} s after the subscription",
        start.elapsed().as_secs_f64()
    );
    let killed_at = killed_at.expect("the agent was killed");
    assert!(
        killed_at < TASKS,
        "the kill came in the middle of the batch ({killed_at} of {TASKS} had reported)"
    );

    // Once the agent holds no unacknowledged update, nothing more can come.
    tokio::task::block_in_place(|| {
        wait_for("the agent's update queues drained", DEADLINE, || {
            get_json(port, "/metrics/snapshot")
                .ok()
                .filter(|m| m["agora/agent/status_updates_pending"].as_f64() == Some(0.0))
        })
    })
    .expect("drained");
    eprintln!(
        "the agent's queues drained {:.1} s after the subscription",
        start.elapsed().as_secs_f64()
    );
    // Whatever arrived meanwhile counts too.
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(0), events.recv()).await
    {
        if let Event::Update(status) = event {
            let task_id = status.task_id.as_ref().expect("task id").value.clone();
            seen.record(task_id, status.state());
        }
    }
    let twice: Vec<_> = launched
        .iter()
        .filter(|id| seen.terminal_count(id) != 1)
        .map(|id| (id, &seen.reported[id.as_str()]))
        .collect();
    assert!(
        twice.is_empty(),
        "{} tasks did not end exactly once: {:?}",
        twice.len(),
        &twice[..twice.len().min(5)]
    );
    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    for id in &launched {
        let last = seen.reported[id.as_str()]
            .iter()
            .rfind(|s| is_terminal(**s))
            .expect("terminal");
        *outcomes.entry(last.as_str_name()).or_default() += 1;
    }
    eprintln!("outcomes after the agent's SIGKILL: {outcomes:?}");
    assert!(
        outcomes.get("TASK_FINISHED").copied().unwrap_or(0) >= KILL_AFTER / 2,
        "tasks that ran before the kill finished: {outcomes:?}"
    );
}
