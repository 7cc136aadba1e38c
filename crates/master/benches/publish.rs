//! Read-model publish figures (issue 16 item 2), one `BENCH` line per
//! measure:
//!
//! - `publish_incremental`: what the actor pays to publish after a batch of
//!   inputs, as `Actor::publish` does it: `Master::refresh_offer_status`
//!   (which does real work at most once a second of the master's clock)
//!   and `ReadModel::update`, then the snapshot put behind an `Arc` and
//!   swapped into the watch channel readers hold (the previous one freed);
//!   the rebuilds below are not published, so no incremental publish pays
//!   for freeing a whole snapshot;
//! - `publish_rebuild`: the same publish with the read model rebuilt from
//!   scratch, `Master::snapshot` (what the actor did before);
//! - `update_only`: `ReadModel::update` alone;
//! - `refresh_offer_status`: the "why no offer?" refresh alone.
//!
//! Each run is one batch as the actor takes it: `AGORA_BENCH_BATCH` tasks
//! (10) end (TASK_FINISHED from their agents), the agents' freed resources
//! are offered again (`allocate_pending`), and 20 ms pass on the master's
//! clock (the snapshot interval). The master is the pure state machine in
//! process, loaded as in `benches/snapshot.rs` (agents re-registered with
//! their running tasks, frameworks re-subscribed) and then offered the
//! whole cluster once, so ~10,000 offers are outstanding throughout. At
//! the end the read model is checked equal to a rebuild.
//!
//! `cargo bench -p agora-master --bench publish` measures 10,000 agents
//! and 100,000 tasks; without `--bench` in argv (as under
//! `cargo test --benches`) it is a smoke run of 1,000 agents and 10,000
//! tasks. Knobs: `AGORA_BENCH_AGENTS`, `AGORA_BENCH_TASKS_PER_AGENT`,
//! `AGORA_BENCH_RUNS` (1,000 batches), `AGORA_BENCH_REBUILDS` (20 full
//! rebuilds, one every `RUNS / REBUILDS` batches), `AGORA_BENCH_BATCH`.

use std::sync::Arc;
use std::time::Instant;

use agora_master::snapshot::ReadModel;
use agora_master::state::{Master, Now};
use agora_proto::v1 as pb;
use agora_proto::v1::agent::agent_message;
use tokio::sync::watch;

mod support;

use support::{FRAMEWORKS, at, env_usize, loaded_master, report, timed};

/// The snapshot interval: a batch's worth of the master's clock.
const BATCH_MS: u64 = 20;

/// `task` (the `t`-th task of agent `a`, as `support` names them) ends.
fn task_finished(master: &mut Master, now: Now, a: usize, t: usize, per_agent: usize, uuid: u64) {
    let framework = (a * per_agent + t) % FRAMEWORKS;
    let update = agent_message::StatusUpdate {
        framework_id: Some(pb::FrameworkId {
            value: format!("old-{framework:04}"),
        }),
        status: Some(pb::TaskStatus {
            task_id: Some(pb::TaskId {
                value: format!("t-{a}-{t}"),
            }),
            state: Some(pb::TaskState::TaskFinished as i32),
            source: Some(pb::task_status::Source::Executor as i32),
            agent_id: Some(pb::AgentId {
                value: format!("old-S{a}"),
            }),
            uuid: Some(uuid.to_be_bytes().to_vec()),
            timestamp: Some(now.wall),
            ..Default::default()
        }),
        latest_state: Some(pb::TaskState::TaskFinished as i32),
    };
    let mut out = Vec::new();
    master.agent_message(
        now,
        a as u64,
        agent_message::Kind::StatusUpdate(update),
        &mut out,
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let agents = env_usize("AGORA_BENCH_AGENTS", if full { 10_000 } else { 1_000 });
    let per_agent = env_usize("AGORA_BENCH_TASKS_PER_AGENT", 10);
    let runs = env_usize("AGORA_BENCH_RUNS", if full { 1_000 } else { 50 });
    let rebuilds = env_usize("AGORA_BENCH_REBUILDS", if full { 20 } else { 3 }).max(1);
    let batch = env_usize("AGORA_BENCH_BATCH", 10);
    let tasks = agents * per_agent;
    assert!(runs * batch <= tasks, "fewer tasks ending than there are");
    let scale = format!(" agents={agents} tasks={tasks} batch={batch}");

    let built = Instant::now();
    let (mut master, _streams) = loaded_master(agents, per_agent);
    let mut clock = 1_000;
    let mut out = Vec::new();
    master.allocate(at(clock), &mut out);
    let offered = out.len();
    drop(out);
    eprintln!(
        "loaded {agents} agents, {tasks} tasks, {FRAMEWORKS} frameworks, {} outstanding offers in {:.1}s ({offered} offer events)",
        master.snapshot(0.0, 1.0).outstanding_offers,
        built.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let mut model = ReadModel::new(&mut master, 0.0, at(clock).wall);
    eprintln!(
        "first build of the read model (once per term): {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    let (publish, published) = watch::channel(Arc::new(model.current().clone()));

    let (mut incremental, mut updates, mut rebuilt) = (Vec::new(), Vec::new(), Vec::new());
    let mut refreshes = Vec::new();
    let every = (runs / rebuilds).max(1);
    let mut uuid = 0;
    for run in 0..runs {
        clock += BATCH_MS;
        let now = at(clock);
        // A batch: tasks spread over the cluster end, one per agent.
        for i in 0..batch {
            let n = run * batch + i;
            let (a, t) = (n % agents, (n / agents) % per_agent);
            uuid += 1;
            task_finished(&mut master, now, a, t, per_agent, uuid);
        }
        let mut out = Vec::new();
        master.allocate_pending(now, &mut out);

        let started = Instant::now();
        master.refresh_offer_status(now);
        refreshes.push(started.elapsed().as_secs_f64() * 1e3);
        let update = Instant::now();
        let snapshot = model.update(&mut master, now.wall);
        updates.push(update.elapsed().as_secs_f64() * 1e3);
        publish.send_replace(Arc::new(snapshot));
        incremental.push(started.elapsed().as_secs_f64() * 1e3);

        if run % every == 0 {
            // Not published: freeing a whole rebuilt snapshot would land on
            // the next incremental publish (the old actor freed big ones on
            // a blocking thread), so it is dropped untimed.
            let (snapshot, ms) = timed(|| {
                master.refresh_offer_status(now);
                Arc::new(master.snapshot(0.0, now.wall))
            });
            rebuilt.push(ms);
            drop(snapshot);
        }
    }
    let wall = at(clock).wall;
    assert!(
        model.update(&mut master, wall) == master.snapshot(0.0, wall),
        "the read model equals a rebuild"
    );
    drop(published);
    report("publish_incremental", incremental, &scale);
    report("update_only", updates, &scale);
    report("refresh_offer_status", refreshes, &scale);
    report("publish_rebuild", rebuilt, &scale);
}
