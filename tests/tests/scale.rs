//! Scale through the real master (issue 16): 500 simulated agents
//! (`agora-sim`, one process, real gRPC sessions) and 10,000 tasks driven by
//! a real framework on the SDK, with three masters over a real ZooKeeper and
//! the leader SIGKILLed in the middle of the run.
//!
//! Checked: every agent registers; the leader's failover loses nothing (a
//! task that reached an agent is never lost, and the only tasks the
//! framework relaunches are ones that never reached one); every task reaches
//! FINISHED exactly once as the framework saw it (re-deliveries of the same
//! update excepted) and in the simulator's books; and the new leader's
//! `/state` matches the simulator's own books, with tasks held running and
//! after the end.
//!
//! Sizes: `AGORA_SCALE_AGENTS` (500) and `AGORA_SCALE_TASKS` (10,000).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agora_coord::testing::ZooKeeper;
use agora_e2e::{
    Proc, agora_bin, all_tasks, free_port, get_json, get_json_gzip, http_request, spawn_zk_master,
    wait_for,
};
use agora_scheduler::proto::{Offer, OfferId, TaskState};
use agora_scheduler::{
    Event, FrameworkBuilder, SchedulerClient, SubscribeOptions, TaskBuilder, offer_cpus_mem,
};
use agora_sim::books::{Books, Stats};
use agora_sim::{DURATION_LABEL, HOLD_LABEL};
use tokio::sync::watch;

const TASK_CPUS: f64 = 0.1;
const TASK_MEM: f64 = 32.0;
/// Short tasks launched and not yet ended, at most.
const IN_FLIGHT: usize = 1_500;
/// Tasks one ACCEPT launches on one offer, at most.
const PER_OFFER: usize = 20;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `agora-sim` binary, built once with the same cargo and profile as
/// the tests (beside `agora`).
fn sim_bin() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "-p", "agora-sim", "--bin", "agora-sim"])
        .status()
        .expect("cargo can be run");
    assert!(status.success(), "building agora-sim failed");
    let bin = agora_bin()
        .parent()
        .expect("target/<profile>")
        .join("agora-sim");
    assert!(bin.exists(), "{} was not built", bin.display());
    bin
}

fn books(port: u16) -> anyhow::Result<Books> {
    Ok(serde_json::from_value(get_json(port, "/books")?)?)
}

fn stats(port: u16) -> anyhow::Result<Stats> {
    Ok(serde_json::from_value(get_json(port, "/stats")?)?)
}

struct Master {
    port: u16,
    proc: Proc,
}

fn start_master(dir: &Path, n: usize, zk: &str) -> Master {
    let port = free_port();
    let log = dir.join(format!("master-{n}.log"));
    Master {
        port,
        proc: spawn_zk_master(dir, n, port, zk, log),
    }
}

fn leader_of(masters: &[Option<Master>]) -> Option<usize> {
    let leading: Vec<usize> = masters
        .iter()
        .enumerate()
        .filter_map(|(i, m)| Some((i, m.as_ref()?)))
        .filter(|(_, m)| get_json(m.port, "/state").is_ok_and(|s| s["elected"] == true))
        .map(|(i, _)| i)
        .collect();
    match leading[..] {
        [one] => Some(one),
        _ => None,
    }
}

/// One attempt at a logical task, as the framework saw it.
#[derive(Debug, Default)]
struct Attempt {
    logical: usize,
    agent_id: String,
    /// The latest state heard (launch: none yet).
    state: Option<TaskState>,
    /// Distinct TASK_FINISHED updates (by uuid): exactly one per finished task.
    finished_uuids: BTreeSet<Vec<u8>>,
    /// Heard from (an update or a reconciliation answer) since the last
    /// re-subscription.
    heard_since_reconnect: bool,
}

/// The framework's books, shared with the test's thread.
#[derive(Debug, Default)]
struct Framework {
    framework_id: Option<String>,
    attempts: HashMap<String, Attempt>,
    /// Logical task -> its attempts' ids, in order.
    tries: Vec<Vec<String>>,
    pending: VecDeque<usize>,
    /// Launched, not terminal, not held.
    in_flight: usize,
    finished: BTreeSet<usize>,
    held_running: BTreeSet<usize>,
    /// Attempts reported LOST/DROPPED/GONE/UNKNOWN, relaunched under a new id.
    relaunched: Vec<String>,
    /// Why they were lost (the update's message), counted.
    lost_because: BTreeMap<String, usize>,
    /// Terminal states other than FINISHED or a loss, or a second FINISHED.
    unexpected: Vec<String>,
    reconnections: usize,
    /// When the last re-subscription happened.
    resubscribed_at: Option<Instant>,
}

impl Framework {
    fn is_held(logical: usize, held: usize) -> bool {
        logical < held
    }
}

fn task_id(logical: usize, attempt: usize) -> String {
    format!("task-{logical}-{attempt}")
}

/// The framework: launches every logical task (the first `held` ones held
/// running until the simulator releases them, the others with run times of
/// 0-50 ms), at most [`IN_FLIGHT`] short ones at a time on the offers it
/// keeps; re-subscribes through the SDK after the failover, reconciles
/// every task it has not heard from since (again each second until
/// answered) and relaunches under a new id the tasks the master says are
/// lost.
async fn framework(
    zk: String,
    total: usize,
    held: usize,
    books: Arc<Mutex<Framework>>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let info = FrameworkBuilder::new("scale")
        .failover_timeout(Duration::from_secs(600))
        .build();
    let (client, mut events) =
        SchedulerClient::connect(&zk, info, SubscribeOptions::default()).await?;
    {
        let mut b = books.lock().expect("books");
        b.pending = (0..total).collect();
        b.tries = vec![Vec::new(); total];
    }
    let mut offers: VecDeque<Offer> = VecDeque::new();
    let mut reconcile = tokio::time::interval(Duration::from_secs(1));
    let mut reconnected = false;
    loop {
        tokio::select! {
            _ = stop.changed() => return Ok(()),
            _ = reconcile.tick() => {
                let unheard: Vec<(String, String)> = {
                    let b = books.lock().expect("books");
                    if b.resubscribed_at.is_none() {
                        continue;
                    }
                    b.attempts
                        .iter()
                        .filter(|(_, a)| !a.heard_since_reconnect && !a.state.is_some_and(agora_scheduler::is_terminal))
                        .map(|(id, a)| (id.clone(), a.agent_id.clone()))
                        .collect()
                };
                if !unheard.is_empty() {
                    let tasks = unheard
                        .into_iter()
                        .map(|(task, agent)| {
                            (
                                agora_scheduler::proto::TaskId { value: task },
                                Some(agora_scheduler::proto::AgentId { value: agent }),
                            )
                        })
                        .collect();
                    // A failed call is retried on the next tick.
                    let _ = client.reconcile(tasks).await;
                }
            }
            event = events.recv() => {
                let Some(event) = event else {
                    anyhow::bail!("the event stream ended");
                };
                match event {
                    Event::Subscribed { framework_id, .. } => {
                        let mut b = books.lock().expect("books");
                        b.framework_id = Some(framework_id.value);
                        if reconnected {
                            b.resubscribed_at = Some(Instant::now());
                            for attempt in b.attempts.values_mut() {
                                attempt.heard_since_reconnect = false;
                            }
                        }
                    }
                    Event::Disconnected { .. } => {
                        // Offers of the old subscription are void.
                        offers.clear();
                        reconnected = true;
                        books.lock().expect("books").reconnections += 1;
                    }
                    Event::Offers(new) => offers.extend(new),
                    Event::Rescind(id) => offers.retain(|o| o.id.as_ref() != Some(&id)),
                    Event::Update(status) => {
                        let relaunch = update(&books, held, status);
                        if relaunch {
                            // Filters may hold offers back; the lost task needs one.
                            let _ = client.revive(Vec::new()).await;
                        }
                    }
                    Event::Error(message) => anyhow::bail!("the master ended the subscription: {message}"),
                    _ => {}
                }
            }
        }
        launch(&client, &books, held, &mut offers).await;
    }
}

/// Records an update; returns whether a lost task was queued for relaunch.
fn update(
    books: &Mutex<Framework>,
    held: usize,
    status: agora_scheduler::proto::TaskStatus,
) -> bool {
    let mut b = books.lock().expect("books");
    let id = status.task_id.clone().unwrap_or_default().value;
    let state =
        TaskState::try_from(status.state.unwrap_or_default()).unwrap_or(TaskState::TaskUnknown);
    let Some(attempt) = b.attempts.get_mut(&id) else {
        b.unexpected.push(format!(
            "{id}: an update for a task never launched: {state:?}"
        ));
        return false;
    };
    attempt.heard_since_reconnect = true;
    let logical = attempt.logical;
    let was = attempt.state;
    let was_terminal = was.is_some_and(agora_scheduler::is_terminal);
    if state == TaskState::TaskFinished
        && let Some(uuid) = status.uuid.clone()
    {
        attempt.finished_uuids.insert(uuid);
    }
    if was_terminal {
        // A re-delivery, or a reconciliation answer about an ended task.
        if was != Some(state) {
            b.unexpected.push(format!("{id}: {state:?} after {was:?}"));
        }
        return false;
    }
    attempt.state = Some(state);
    match state {
        TaskState::TaskRunning if Framework::is_held(logical, held) => {
            b.held_running.insert(logical);
            false
        }
        TaskState::TaskFinished => {
            if !Framework::is_held(logical, held) {
                b.in_flight -= 1;
            }
            b.held_running.remove(&logical);
            if !b.finished.insert(logical) {
                b.unexpected
                    .push(format!("{id}: logical task {logical} finished twice"));
            }
            false
        }
        TaskState::TaskLost
        | TaskState::TaskDropped
        | TaskState::TaskGone
        | TaskState::TaskUnknown => {
            if !Framework::is_held(logical, held) {
                b.in_flight -= 1;
            }
            b.held_running.remove(&logical);
            b.relaunched.push(id);
            *b.lost_because
                .entry(format!("{state:?}: {}", status.message.unwrap_or_default()))
                .or_default() += 1;
            b.pending.push_front(logical);
            true
        }
        s if agora_scheduler::is_terminal(s) => {
            b.unexpected.push(format!(
                "{id}: ended {s:?}: {}",
                status.message.unwrap_or_default()
            ));
            false
        }
        _ => false,
    }
}

/// Launches what the in-flight bound allows on the offers kept.
async fn launch(
    client: &SchedulerClient,
    books: &Mutex<Framework>,
    held: usize,
    offers: &mut VecDeque<Offer>,
) {
    // Bounded by the offers kept: each is used once.
    while let Some(offer) = offers.front() {
        let tasks = {
            let mut b = books.lock().expect("books");
            let room = IN_FLIGHT.saturating_sub(b.in_flight);
            let (cpus, mem) = offer_cpus_mem(offer);
            let fit = ((cpus / TASK_CPUS + 1e-9)
                .floor()
                .min((mem / TASK_MEM + 1e-9).floor()) as usize)
                .min(PER_OFFER);
            let mut tasks = Vec::new();
            let agent_id = offer.agent_id.clone().unwrap_or_default().value;
            while tasks.len() < fit {
                // Held tasks do not count against the bound.
                let next = match b.pending.front() {
                    Some(&l) if Framework::is_held(l, held) || tasks.len() < room => l,
                    _ => break,
                };
                b.pending.pop_front();
                let attempt = b.tries[next].len();
                let id = task_id(next, attempt);
                b.tries[next].push(id.clone());
                if !Framework::is_held(next, held) {
                    b.in_flight += 1;
                }
                b.attempts.insert(
                    id.clone(),
                    Attempt {
                        logical: next,
                        agent_id: agent_id.clone(),
                        // Until an update comes, reconciliation asks after it.
                        heard_since_reconnect: false,
                        ..Attempt::default()
                    },
                );
                let mut builder = TaskBuilder::command(id.clone(), "scale", "true")
                    .cpus(TASK_CPUS)
                    .mem(TASK_MEM);
                builder = if Framework::is_held(next, held) {
                    builder.label(HOLD_LABEL, "true")
                } else {
                    // 0-50 ms, spread deterministically.
                    builder.label(DURATION_LABEL, ((next * 7919) % 51).to_string())
                };
                tasks.push(builder.build_for_offer(offer));
            }
            tasks
        };
        if tasks.is_empty() {
            return;
        }
        let offer = offers.pop_front().expect("front exists");
        let ids: Vec<OfferId> = offer.id.into_iter().collect();
        // Refuse the rest briefly: what is left comes back in a new offer.
        let filters = Some(agora_scheduler::proto::Filters {
            refuse_seconds: Some(0.0),
        });
        // A call that fails (the leader died) may or may not have launched:
        // the tasks stay on the books and reconciliation settles them.
        let _ = client.launch(ids, tasks, filters).await;
    }
}

/// The live tasks in `/state` as (task, agent, state).
fn state_live(state: &serde_json::Value) -> BTreeSet<(String, String, String)> {
    state["frameworks"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|f| f["tasks"].as_array().into_iter().flatten())
        .map(|t| {
            (
                t["id"].as_str().unwrap_or_default().to_string(),
                t["agent_id"].as_str().unwrap_or_default().to_string(),
                t["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn books_live(books: &Books) -> BTreeSet<(String, String, String)> {
    books
        .agents
        .iter()
        .flat_map(|a| {
            a.live.iter().map(|t| {
                (
                    t.task_id.clone(),
                    a.agent_id.clone().unwrap_or_default(),
                    t.state.clone(),
                )
            })
        })
        .collect()
}

/// Every agent in `/state`, active, with the id and hostname the simulator
/// has; every completed task `/state` lists ended FINISHED there on the
/// agent the simulator ended it on.
fn check_agents_and_completed(state: &serde_json::Value, books: &Books) -> Result<(), String> {
    let master_agents: BTreeMap<String, (String, bool)> = state["agents"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            (
                a["id"].as_str().unwrap_or_default().to_string(),
                (
                    a["hostname"].as_str().unwrap_or_default().to_string(),
                    a["active"] == true,
                ),
            )
        })
        .collect();
    let sim_agents: BTreeMap<String, (String, bool)> = books
        .agents
        .iter()
        .map(|a| {
            (
                a.agent_id.clone().unwrap_or_default(),
                (a.hostname.clone(), true),
            )
        })
        .collect();
    if master_agents != sim_agents {
        let differ: Vec<_> = master_agents
            .iter()
            .filter(|(id, v)| sim_agents.get(*id) != Some(v))
            .take(5)
            .collect();
        return Err(format!(
            "agents differ: master {} simulator {}; first differences {differ:?}",
            master_agents.len(),
            sim_agents.len()
        ));
    }
    let ended: HashMap<&str, (&str, &str)> = books
        .agents
        .iter()
        .flat_map(|a| {
            a.ended.iter().map(move |t| {
                (
                    t.task_id.as_str(),
                    (a.agent_id.as_deref().unwrap_or_default(), t.state.as_str()),
                )
            })
        })
        .collect();
    let live = state_live(state);
    for task in all_tasks(state) {
        let id = task["id"].as_str().unwrap_or_default();
        if live.iter().any(|(t, _, _)| t == id) {
            continue;
        }
        let agent = task["agent_id"].as_str().unwrap_or_default();
        if ended.get(id) != Some(&(agent, "TASK_FINISHED")) || task["state"] != "TASK_FINISHED" {
            return Err(format!(
                "completed task {id} is {} on {agent} in /state, {:?} in the simulator's books",
                task["state"],
                ended.get(id)
            ));
        }
    }
    Ok(())
}

#[test]
fn five_hundred_agents_ten_thousand_tasks_and_a_leader_failover_lose_nothing() {
    let agents = env_usize("AGORA_SCALE_AGENTS", 500);
    let total = env_usize("AGORA_SCALE_TASKS", 10_000);
    let held = total / 10;
    let started = Instant::now();
    let sim = sim_bin();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let zk = runtime
        .block_on(ZooKeeper::start())
        .expect("zookeeper starts (Debian package zookeeper; scripts/test installs it)");
    let url = zk.unique_url("agora-scale").to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let _sweeper = agora_e2e::Sweeper(dir.path().to_path_buf());
    let mut masters: Vec<Option<Master>> = (0..3)
        .map(|n| Some(start_master(dir.path(), n, &url)))
        .collect();
    let leader = wait_for("a leading master", Duration::from_secs(60), || {
        leader_of(&masters)
    })
    .expect("a leader");
    let leader_port = masters[leader].as_ref().expect("leader").port;

    // The simulator, following the leader through ZooKeeper.
    let books_port = free_port();
    let _sim = Proc::spawn_bin(
        &sim,
        &[
            "--master",
            &url,
            "--agents",
            &agents.to_string(),
            "--resources",
            "cpus:8;mem:16384",
            "--attributes",
            "zone:a",
            "--http-port",
            &books_port.to_string(),
            // Resends are part of the run: a lost acknowledgement is
            // repaired within seconds, not the agent's ten.
            "--status-retry-ms",
            "2000",
            "--status-retry-max-ms",
            "8000",
        ],
        dir.path().join("sim.log"),
    );
    wait_for(
        "every simulated agent registered",
        Duration::from_secs(120),
        || {
            let s = stats(books_port).ok()?;
            (s.registered == agents).then_some(())
        },
    )
    .expect("agents register");
    let state = wait_for(
        "the leader lists every agent",
        Duration::from_secs(60),
        || {
            let state = get_json(leader_port, "/state").ok()?;
            let active = state["agents"]
                .as_array()?
                .iter()
                .filter(|a| a["active"] == true)
                .count();
            (active == agents).then_some(state)
        },
    )
    .expect("the master has every agent");
    check_agents_and_completed(&state, &books(books_port).expect("books")).expect("agents match");
    eprintln!("{agents} agents registered after {:?}", started.elapsed());

    // The framework, in this process.
    let fw = Arc::new(Mutex::new(Framework::default()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let running = runtime.spawn(framework(url.clone(), total, held, fw.clone(), stop_rx));
    let short = total - held;

    // SIGKILL the leader once nearly half the short tasks finished.
    wait_for("half the tasks finished", Duration::from_secs(300), || {
        let b = fw.lock().expect("books");
        (b.finished.len() >= short * 4 / 10).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", stats(books_port)));
    let killed_at = Instant::now();
    let before = {
        let b = fw.lock().expect("books");
        (b.finished.len(), b.in_flight)
    };
    masters[leader].take().expect("leader").proc.kill();
    eprintln!(
        "leader killed with {} finished and {} in flight after {:?}",
        before.0,
        before.1,
        started.elapsed()
    );
    let new_leader = wait_for("a new leader", Duration::from_secs(60), || {
        leader_of(&masters)
    })
    .expect("a new leader");
    let new_port = masters[new_leader].as_ref().expect("new leader").port;
    let new_id = get_json(new_port, "/state").expect("state")["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    wait_for(
        "every agent re-registered with the new leader",
        Duration::from_secs(120),
        || {
            let s = stats(books_port).ok()?;
            (s.registered_by_master.get(&new_id) == Some(&agents)).then_some(())
        },
    )
    .expect("agents re-register");
    eprintln!(
        "every agent re-registered {:?} after the kill",
        killed_at.elapsed()
    );

    // Every short task finished; the held ones run.
    wait_for("every short task finished, the held ones running", Duration::from_secs(300), || {
        let b = fw.lock().expect("books");
        let short_done = b.finished.len() == short;
        (short_done && b.held_running.len() == held).then_some(())
    })
    .unwrap_or_else(|e| {
        let b = fw.lock().expect("books");
        panic!(
            "{e}: finished {} held running {} in flight {} pending {} relaunched {} unexpected {:?}; simulator {:?}",
            b.finished.len(),
            b.held_running.len(),
            b.in_flight,
            b.pending.len(),
            b.relaunched.len(),
            b.unexpected.iter().take(5).collect::<Vec<_>>(),
            stats(books_port)
        )
    });

    // Quiet now: the new leader's /state and the simulator's books agree on
    // every agent and every live task.
    let mut last = None;
    wait_for(
        "/state matches the simulator's books",
        Duration::from_secs(60),
        || {
            let sim_books = books(books_port).ok()?;
            let state = get_json(new_port, "/state").ok()?;
            let live = books_live(&sim_books);
            let unacked: usize = sim_books
                .agents
                .iter()
                .flat_map(|a| &a.live)
                .map(|t| t.unacknowledged)
                .sum();
            let agree = unacked == 0
                && live.len() == held
                && state_live(&state) == live
                && check_agents_and_completed(&state, &sim_books).is_ok();
            if agree {
                return Some(());
            }
            last = Some((
                state_live(&state)
                    .symmetric_difference(&live)
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>(),
                check_agents_and_completed(&state, &sim_books).err(),
                unacked,
            ));
            None
        },
    )
    .unwrap_or_else(|e| panic!("{e}: last differences {last:?}"));

    // Release the held tasks: everything finishes.
    let (code, body) = http_request(books_port, "POST", "/release", None).expect("release");
    assert_eq!(code, 200, "{body}");
    wait_for("every task finished", Duration::from_secs(120), || {
        (fw.lock().expect("books").finished.len() == total).then_some(())
    })
    .expect("held tasks finish");
    let sim_books = wait_for(
        "the simulator's books settle",
        Duration::from_secs(60),
        || {
            let b = books(books_port).ok()?;
            b.agents.iter().all(|a| a.live.is_empty()).then_some(b)
        },
    )
    .expect("every update acknowledged");
    let state = wait_for("/state shows no live task", Duration::from_secs(60), || {
        let state = get_json(new_port, "/state").ok()?;
        state_live(&state).is_empty().then_some(state)
    })
    .expect("master settles");
    check_agents_and_completed(&state, &sim_books).expect("/state matches the books at the end");
    // The same in gzip, as a browser or a Python client asks for it.
    let gzipped = get_json_gzip(new_port, "/state").expect("/state in gzip");
    assert!(state_live(&gzipped).is_empty());
    check_agents_and_completed(&gzipped, &sim_books).expect("/state in gzip matches the books too");
    for agent in state["agents"].as_array().expect("agents") {
        let used = agent["used"]["cpus"].as_f64().unwrap_or(0.0);
        assert!(used.abs() < 1e-9, "nothing is in use at the end: {agent}");
    }

    stop_tx.send_replace(true);
    runtime
        .block_on(running)
        .expect("framework task")
        .expect("framework ran");
    let b = fw.lock().expect("books");
    assert!(
        b.unexpected.is_empty(),
        "{:?}",
        &b.unexpected[..b.unexpected.len().min(10)]
    );
    assert!(
        b.reconnections >= 1,
        "the framework followed the new leader"
    );
    // Exactly once: each logical task has one attempt with one FINISHED.
    let ended: HashMap<&str, &str> = sim_books
        .agents
        .iter()
        .flat_map(|a| {
            a.ended
                .iter()
                .map(|t| (t.task_id.as_str(), t.state.as_str()))
        })
        .collect();
    for (logical, tries) in b.tries.iter().enumerate() {
        let finished: Vec<(&String, usize)> = tries
            .iter()
            .map(|id| (id, b.attempts[id].finished_uuids.len()))
            .filter(|(_, n)| *n > 0)
            .collect();
        assert_eq!(
            finished.len(),
            1,
            "logical task {logical}: {tries:?} {finished:?}"
        );
        assert_eq!(
            finished[0].1, 1,
            "one FINISHED update for {}",
            finished[0].0
        );
        assert_eq!(
            ended.get(finished[0].0.as_str()),
            Some(&"TASK_FINISHED"),
            "{}",
            finished[0].0
        );
    }
    // Nothing that reached an agent was lost: a relaunched attempt never
    // reached the simulator.
    for lost in &b.relaunched {
        assert!(
            !ended.contains_key(lost.as_str()),
            "{lost} reached an agent and was reported lost"
        );
    }
    assert_eq!(
        ended.len(),
        total,
        "the simulator ran each task once: {}",
        ended.len()
    );
    let master_cpu: f64 = masters
        .iter()
        .flatten()
        .filter_map(|m| agora_sim::procfs::of(m.proc.pid()))
        .map(|u| u.cpu.as_secs_f64())
        .sum();
    let sim_stats = stats(books_port).expect("stats");
    eprintln!(
        "done in {:?}: {} relaunched (never reached an agent: {:?}), {} reconnections; CPU: live masters {master_cpu:.1} s, simulator {:.1} s (RSS {:.0} MB)",
        started.elapsed(),
        b.relaunched.len(),
        b.lost_because,
        b.reconnections,
        sim_stats.cpu_seconds,
        sim_stats.rss_mb,
    );
}
