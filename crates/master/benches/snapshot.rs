//! Snapshot figures (issue 6 §Performance), one `BENCH` line per measure:
//!
//! - `snapshot_build`: `Master::snapshot`, what the actor pays to publish
//!   the read model (at most every 20 ms, whatever readers do);
//! - `state_json`: the full `/state` body, `serde_json::to_vec` of a snapshot
//!   (every view through its derived `Serialize`);
//! - `state_body_cold`: the same bytes as the master makes them when no
//!   body kept any row yet (each written by hand, `kept_json::write`);
//! - `views_json_derived` / `views_json_written`: every task and agent
//!   view's JSON alone, through the derived `Serialize` and by hand;
//! - `state_body_placement_step`: `/state` as the master makes it, from the
//!   chunks kept since the last body, after the changes of 100 ms of a
//!   placement at about 15,000 tasks/s (what each poll of a polled
//!   placement costs the master before it sends a byte);
//! - `state_gzip_placement_step`: that body's gzip for the pollers that take
//!   it, from the segments kept since the last body (only the pieces that
//!   changed are compressed);
//! - `mesos_*`: Mesos' `/master/state`, `/master/frameworks` and
//!   `/master/slaves` whole, and as the master makes their bodies from the
//!   chunks kept since the last (`mesos_slaves_body_placement_step`: after
//!   the same placement step's agent changes);
//! - `state_body_live_step` / `state_gzip_live_step`: the same, after the
//!   changes of 100 ms of the scale bench's live placement instead: 1,400
//!   tasks launched (their rows written whole by the body), the 2,800
//!   status updates of the two steps before, 150 agents changed;
//! - `page_<list>`: one page of a UI list (`/api/tasks`, `/api/agents`,
//!   `/api/frameworks`) through the real router, query parsing to the last
//!   byte of the JSON body: first and last pages, and a filtered search that
//!   has to look at every task;
//! - `allocation_idle` / `allocation_polled`: one full allocation cycle
//!   (every agent offered to 100 frameworks, which decline with no filter so
//!   the next cycle offers everything again), without and with a reader
//!   thread serializing the published snapshot ten times a second, in
//!   alternating blocks so that background load weighs on both alike. The
//!   reader only ever holds an `Arc` of a published snapshot: the point is
//!   that it never touches the master.
//!
//! The master is the pure state machine, in process, fed as after a
//! failover: agents re-register with their running tasks, then the
//! frameworks re-subscribe. `cargo bench -p agora-master --bench snapshot`
//! measures 10,000 agents and 100,000 tasks; without `--bench` in argv (as
//! under `cargo test --benches`) it is a smoke run of 1,000 agents and
//! 10,000 tasks with few iterations. Knobs: `AGORA_BENCH_AGENTS`,
//! `AGORA_BENCH_TASKS_PER_AGENT`, `AGORA_BENCH_RUNS`, `AGORA_BENCH_READER`
//! (`fresh`, the default: a new body buffer per poll; `reuse`: one buffer).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use agora_core::resources::SummaryValue;
use agora_master::snapshot::kept_json::KeepsJson;
use agora_master::snapshot::{StateSnapshot, TaskView};
use agora_master::snapshot_body::gzip::{Segments, gzip};
use agora_master::state::{Effect, Master};
use agora_proto::v1 as pb;
use agora_proto::v1::scheduler as sched;
use tokio::sync::watch;

mod support;

use support::{FRAMEWORKS, at, env_usize, loaded_master, percentile, report, timed};

/// How often the reader serializes `/state` in the polled phase.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Offer ids in the effects, by framework id.
fn offers_in(out: &[Effect]) -> BTreeMap<String, Vec<pb::OfferId>> {
    let mut offers: BTreeMap<String, Vec<pb::OfferId>> = BTreeMap::new();
    for effect in out {
        let Effect::ToFramework { event, .. } = effect else {
            continue;
        };
        for offer in event.offers.iter().flat_map(|o| &o.offers) {
            let (Some(framework), Some(id)) = (&offer.framework_id, &offer.id) else {
                continue;
            };
            offers
                .entry(framework.value.clone())
                .or_default()
                .push(id.clone());
        }
    }
    offers
}

/// `cycles` allocation cycles; each one's offers are declined (no filter)
/// after it is timed, so that every cycle offers the whole cluster again.
fn allocation_cycles(
    master: &mut Master,
    streams: &BTreeMap<String, String>,
    clock: &mut u64,
    cycles: usize,
) -> (Vec<f64>, usize) {
    let mut samples = Vec::with_capacity(cycles);
    let mut offered = 0;
    for _ in 0..cycles {
        *clock += 10;
        let mut out = Vec::new();
        let started = Instant::now();
        master.allocate(at(*clock), &mut out);
        samples.push(started.elapsed().as_secs_f64() * 1e3);
        let offers = offers_in(&out);
        offered = offers.values().map(Vec::len).sum();
        *clock += 1;
        for (framework, offer_ids) in offers {
            let Some(stream_id) = streams.get(&framework) else {
                continue;
            };
            let call = sched::Call {
                framework_id: Some(pb::FrameworkId { value: framework }),
                r#type: sched::call::Type::Decline as i32,
                decline: Some(sched::call::Decline {
                    offer_ids,
                    filters: Some(pb::Filters {
                        refuse_seconds: Some(0.0),
                    }),
                }),
                ..Default::default()
            };
            let mut ignored = Vec::new();
            master
                .call(at(*clock), stream_id, call, &mut ignored)
                .expect("decline is valid");
        }
    }
    (samples, offered)
}

/// `snapshot` with copies of its task and agent views, none of which a
/// body wrote a row for (each task's gets a fixed part of its own).
fn with_fresh_views(snapshot: &StateSnapshot) -> StateSnapshot {
    let mut fresh = snapshot.clone();
    fresh.agents = snapshot.agents.iter().cloned().collect();
    fresh.frameworks = snapshot
        .frameworks
        .iter()
        .map(|framework| {
            let mut framework = framework.clone();
            framework.tasks = framework.tasks.iter().map(fresh_task).collect();
            framework.completed_tasks = framework.completed_tasks.iter().map(fresh_task).collect();
            framework
        })
        .collect();
    fresh
}

/// `task` with a fixed part of its own (a copy's would share the one whose
/// row's beginning a body kept).
fn fresh_task(task: &TaskView) -> TaskView {
    TaskView {
        fixed: Arc::new(task.fixed.as_ref().clone()),
        ..task.clone()
    }
}

/// Tasks and agents changed between two `/state` polls in a placement of
/// about 15,000 tasks/s, ten to an agent, polled 10 times a second.
const STEP_TASKS: usize = 1_500;
const STEP_AGENTS: usize = 150;

/// `snapshot` with `n` tasks in a row changed (their state flipped; the
/// row starts in another framework each `run`) and `agents` agents spread
/// over the cluster changed (their used resources), as the read model
/// changes them: new views in the old ones' places.
fn placement_step(snapshot: &StateSnapshot, run: usize, n: usize, agents: usize) -> StateSnapshot {
    let mut changed = snapshot.clone();
    let mut frameworks: Vec<_> = changed.frameworks.iter().cloned().collect();
    let count = frameworks.len();
    let mut left = n;
    for k in 0..count {
        if left == 0 {
            break;
        }
        let framework = &mut frameworks[(run * 2 + k) % count];
        let picked: Vec<_> = framework.tasks.iter().take(left).cloned().collect();
        left -= picked.len();
        for mut task in picked {
            task.state = if task.state == "TASK_RUNNING" {
                "TASK_STARTING"
            } else {
                "TASK_RUNNING"
            };
            framework.tasks.upsert(Arc::new(task));
        }
    }
    changed.frameworks = frameworks.into_iter().collect();
    let all = changed.agents.len().max(1);
    // A stride prime to the agent count's usual factors spreads the picks.
    let picked: Vec<_> = (0..agents)
        .filter_map(|k| {
            changed
                .agents
                .get((run * agents + k) * 7_919 % all)
                .cloned()
        })
        .collect();
    for mut agent in picked {
        let cpus = match agent.used.get("cpus") {
            Some(SummaryValue::Number(c)) => *c,
            _ => 0.0,
        };
        agent
            .used
            .insert("cpus".to_string(), SummaryValue::Number(cpus + 0.1));
        changed.agents.upsert(Arc::new(agent));
    }
    changed
}

/// New tasks per step of the live-like placement: 100 ms of the scale
/// bench's placement at about 14,000 tasks/s.
const LIVE_NEW_TASKS: usize = 1_400;

/// The id of the `i`th task launched at step `step` of the live-like
/// placement (sorting after every other task, as a placement's newest).
fn live_task_id(step: usize, i: usize) -> String {
    format!("zz-live-{step:05}-{i:05}")
}

/// `snapshot` after 100 ms of a live placement as the scale bench runs it:
/// [`LIVE_NEW_TASKS`] tasks launched into the first framework (each with a
/// fixed part of its own, whose row no body wrote yet), those launched one
/// step before now STARTING and those two steps before RUNNING, and
/// [`STEP_AGENTS`] agents spread over the cluster with more used.
fn live_step(snapshot: &StateSnapshot, step: usize) -> StateSnapshot {
    let mut changed = placement_step(snapshot, step, 0, STEP_AGENTS);
    let mut frameworks: Vec<_> = changed.frameworks.iter().cloned().collect();
    let Some(framework) = frameworks.first_mut() else {
        return changed;
    };
    let Some(model) = framework.tasks.iter().next().cloned() else {
        return changed;
    };
    for i in 0..LIVE_NEW_TASKS {
        let mut fixed = model.fixed.as_ref().clone();
        fixed.id = agora_core::TaskId::new(live_task_id(step, i));
        fixed.executor_id = agora_core::ExecutorId::from(fixed.id.text().clone());
        let task = TaskView {
            fixed: Arc::new(fixed),
            state: "TASK_STAGING",
            ..model.clone()
        };
        framework.tasks.upsert(Arc::new(task));
    }
    for (back, state) in [(1, "TASK_STARTING"), (2, "TASK_RUNNING")] {
        let Some(earlier) = step.checked_sub(back) else {
            continue;
        };
        for i in 0..LIVE_NEW_TASKS {
            let id = live_task_id(earlier, i);
            if let Some(task) = framework.tasks.get_key(&id) {
                let mut task = task.clone();
                task.state = state;
                framework.tasks.upsert(Arc::new(task));
            }
        }
    }
    changed.frameworks = frameworks.into_iter().collect();
    changed
}

/// `snapshot` with one task of each framework changed (its state), as the
/// read model changes it: a new view in the old one's place.
fn one_task_changed_per_framework(snapshot: &StateSnapshot, run: usize) -> StateSnapshot {
    let mut changed = snapshot.clone();
    let frameworks: Vec<_> = changed
        .frameworks
        .iter()
        .map(|f| {
            let mut f = f.clone();
            let pick = f.tasks.iter().nth(run % f.tasks.len().max(1)).cloned();
            if let Some(task) = pick {
                let mut task = task.clone();
                task.state = if task.state == "TASK_RUNNING" {
                    "TASK_STAGING"
                } else {
                    "TASK_RUNNING"
                };
                f.tasks.upsert(Arc::new(task));
            }
            f
        })
        .collect();
    changed.frameworks = frameworks.into();
    changed
}

/// What [`body_steps`] measured: each step's body and gzip (ms), the last
/// body's and gzip's sizes, and the segments made and pieces over all steps.
struct StepFigures {
    bodies: Vec<f64>,
    gzips: Vec<f64>,
    bytes: usize,
    gzip_bytes: usize,
    compressed: usize,
    pieces: usize,
}

/// `/state`'s body and its gzip as the master makes them from what it kept
/// since the last, after each of `runs` steps of `step` from `snapshot`
/// (the first body, from nothing kept, uncounted).
fn body_steps(
    snapshot: &StateSnapshot,
    runs: usize,
    step: impl Fn(&StateSnapshot, usize) -> StateSnapshot,
) -> StepFigures {
    let mut cache = agora_master::snapshot::state_body::ChunkCache::default();
    let mut segments = Segments::default();
    let mut current = snapshot.clone();
    let body =
        agora_master::snapshot::state_body::make(&current, &mut cache).expect("state serializes");
    gzip(&body, &mut segments).expect("gzip in memory");
    let mut figures = StepFigures {
        bodies: Vec::new(),
        gzips: Vec::new(),
        bytes: 0,
        gzip_bytes: 0,
        compressed: 0,
        pieces: 0,
    };
    for run in 0..runs {
        current = step(&current, run);
        let (body, ms) = timed(|| {
            agora_master::snapshot::state_body::make(&current, &mut cache)
                .expect("state serializes")
        });
        figures.bodies.push(ms);
        figures.bytes = body.len();
        let ((gz, made), ms) = timed(|| gzip(&body, &mut segments).expect("gzip in memory"));
        figures.gzips.push(ms);
        figures.gzip_bytes = gz.len();
        figures.compressed += made;
        figures.pieces += body.pieces().len();
    }
    figures
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let agents = env_usize("AGORA_BENCH_AGENTS", if full { 10_000 } else { 1_000 });
    let per_agent = env_usize("AGORA_BENCH_TASKS_PER_AGENT", 10);
    let runs = env_usize("AGORA_BENCH_RUNS", if full { 50 } else { 5 });
    let tasks = agents * per_agent;
    let scale = format!(" agents={agents} tasks={tasks}");

    let built = Instant::now();
    let (mut master, streams) = loaded_master(agents, per_agent);
    eprintln!(
        "loaded {agents} agents, {tasks} tasks, {FRAMEWORKS} frameworks in {:.1}s",
        built.elapsed().as_secs_f64()
    );

    let mut samples = Vec::new();
    let mut snapshot = StateSnapshot::default();
    for _ in 0..runs {
        let started = Instant::now();
        snapshot = master.snapshot(0.0, 1.0);
        samples.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let seen: usize = snapshot.frameworks.iter().map(|f| f.tasks.len()).sum();
    assert_eq!(seen, tasks, "every task is in the snapshot");
    report("snapshot_build", samples, &scale);

    let mut samples = Vec::new();
    let mut bytes = 0;
    for _ in 0..runs {
        let started = Instant::now();
        let body = serde_json::to_vec(&snapshot).expect("snapshot serializes");
        samples.push(started.elapsed().as_secs_f64() * 1e3);
        bytes = body.len();
    }
    report("state_json", samples, &format!("{scale} bytes={bytes}"));

    // The same body as the master makes it when no view's JSON was made
    // yet (the first body after a failover, or after a quiet spell in
    // which everything changed): every view written once and kept.
    let mut samples = Vec::new();
    for _ in 0..runs {
        let fresh = with_fresh_views(&snapshot);
        let mut cache = agora_master::snapshot::state_body::ChunkCache::default();
        let (body, ms) = timed(|| {
            agora_master::snapshot::state_body::make(&fresh, &mut cache).expect("state serializes")
        });
        samples.push(ms);
        bytes = body.len();
    }
    report(
        "state_body_cold",
        samples,
        &format!("{scale} bytes={bytes}"),
    );

    // Every task and agent view's JSON alone, one buffer each: through the
    // views' derived `Serialize`, and written by hand as a body makes them.
    let (mut derived, mut written) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let fresh = with_fresh_views(&snapshot);
        let tasks = || fresh.frameworks.iter().flat_map(|f| f.tasks.iter());
        derived.push(
            timed(|| {
                for agent in fresh.agents.iter() {
                    std::hint::black_box(serde_json::to_vec(agent).expect("agent serializes"));
                }
                for task in tasks() {
                    std::hint::black_box(serde_json::to_vec(task).expect("task serializes"));
                }
            })
            .1,
        );
        written.push(
            timed(|| {
                let mut out = Vec::with_capacity(1024);
                for agent in fresh.agents.iter() {
                    out.clear();
                    agent.append_row(None, &mut out).expect("agent written");
                    std::hint::black_box(&out);
                }
                for task in tasks() {
                    out.clear();
                    task.append_row(None, &mut out).expect("task written");
                    std::hint::black_box(&out);
                }
            })
            .1,
        );
    }
    report("views_json_derived", derived, &scale);
    report("views_json_written", written, &scale);

    // Mesos' `/master/state.json` (the shape dashboards and exporters read),
    // built from the same snapshot and serialized.
    let mut samples = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let body =
            agora_master::mesos_v0::state_json(&snapshot, 0.0).expect("mesos state serializes");
        samples.push(started.elapsed().as_secs_f64() * 1e3);
        bytes = body.len();
    }
    report(
        "mesos_state_json",
        samples,
        &format!("{scale} bytes={bytes}"),
    );

    // Mesos' `/master/frameworks` and `/master/slaves`, whole (made per
    // request, as `/master/tasks` and `/master/state-summary` are).
    for (name, make) in [
        (
            "mesos_frameworks_json",
            (|s: &StateSnapshot| {
                serde_json::to_vec(&agora_master::mesos_v0::shapes::frameworks(
                    s,
                    None,
                    &mut Default::default(),
                ))
            }) as fn(&StateSnapshot) -> serde_json::Result<Vec<u8>>,
        ),
        ("mesos_slaves_json", |s: &StateSnapshot| {
            serde_json::to_vec(&agora_master::mesos_v0::shapes::slaves(s, None))
        }),
    ] {
        let mut samples = Vec::new();
        for _ in 0..runs {
            let started = Instant::now();
            let body = make(&snapshot).expect("serializes");
            samples.push(started.elapsed().as_secs_f64() * 1e3);
            bytes = body.len();
        }
        report(name, samples, &format!("{scale} bytes={bytes}"));
    }

    // The same body as `/master/state` makes it (`mesos_v0::state_body`):
    // cold (nothing kept), then again after a change of one task per
    // framework (what a poller pays per new snapshot while tasks change).
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    let mut frameworks_warm = Vec::new();
    for run in 0..runs {
        let mut cache = agora_master::mesos_v0::state_body::ChunkCache::default();
        let started = Instant::now();
        let body = agora_master::mesos_v0::state_body::make(&snapshot, 0.0, &mut cache)
            .expect("mesos state serializes");
        cold.push(started.elapsed().as_secs_f64() * 1e3);
        bytes = body.len();
        let changed = one_task_changed_per_framework(&snapshot, run);
        let started = Instant::now();
        let body = agora_master::mesos_v0::state_body::make(&changed, 0.0, &mut cache)
            .expect("mesos state serializes");
        warm.push(started.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(body);
        // `/master/frameworks` the same way, its first body uncounted.
        let mut cache = agora_master::mesos_v0::state_body::ChunkCache::default();
        agora_master::mesos_v0::state_body::make_frameworks(&snapshot, &mut cache)
            .expect("mesos frameworks serialize");
        let started = Instant::now();
        let body = agora_master::mesos_v0::state_body::make_frameworks(&changed, &mut cache)
            .expect("mesos frameworks serialize");
        frameworks_warm.push(started.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(body);
    }
    report(
        "mesos_frameworks_body_one_task_per_framework_changed",
        frameworks_warm,
        &format!("{scale} frameworks={}", snapshot.frameworks.len()),
    );
    report(
        "mesos_state_body_cold",
        cold,
        &format!("{scale} bytes={bytes}"),
    );
    report(
        "mesos_state_body_one_task_per_framework_changed",
        warm,
        &format!("{scale} frameworks={}", snapshot.frameworks.len()),
    );

    // `/master/slaves` (every agent) as its pollers share it: made from the
    // agent chunks that changed, its first body uncounted, then after a
    // placement step (150 agents' used resources changed, as below).
    let mut slaves_step = Vec::new();
    for run in 0..runs {
        let mut cache = agora_master::mesos_v0::state_body::ChunkCache::default();
        agora_master::mesos_v0::state_body::make_slaves(&snapshot, &mut cache)
            .expect("mesos slaves serialize");
        let changed = placement_step(&snapshot, run, STEP_TASKS, STEP_AGENTS);
        let started = Instant::now();
        let body = agora_master::mesos_v0::state_body::make_slaves(&changed, &mut cache)
            .expect("mesos slaves serialize");
        slaves_step.push(started.elapsed().as_secs_f64() * 1e3);
        bytes = body.len();
    }
    report(
        "mesos_slaves_body_placement_step",
        slaves_step,
        &format!("{scale} changed_agents={STEP_AGENTS} bytes={bytes}"),
    );

    // Agora's `/state` body (`snapshot::state_body`) as a poller pays for
    // it while one framework places tasks at about 15,000/s, ten to an
    // agent (the scale bench's placement), and `/state` is fetched 10 times
    // a second: between two bodies some 1,500 tasks in a row change state
    // and 150 agents, spread over the cluster, their used resources.
    // Each body is then compressed for the gzip pollers, from the segments
    // kept since the last (`state_gzip_placement_step`).
    let placement = body_steps(&snapshot, runs, |s, run| {
        placement_step(s, run, STEP_TASKS, STEP_AGENTS)
    });
    let step = format!("{scale} changed_tasks={STEP_TASKS} changed_agents={STEP_AGENTS}");
    report(
        "state_body_placement_step",
        placement.bodies,
        &format!("{step} bytes={}", placement.bytes),
    );
    report(
        "state_gzip_placement_step",
        placement.gzips,
        &format!(
            "{step} gzip_bytes={} pieces_compressed_per_step={:.0} pieces={}",
            placement.gzip_bytes,
            placement.compressed as f64 / runs.max(1) as f64,
            placement.pieces / runs.max(1)
        ),
    );

    // The same, with the changes of a live placement (`live_step`): new
    // tasks, whose rows the body writes whole, and the two
    // status updates of each (`state_body_live_step`, `state_gzip_live_step`).
    let live = body_steps(&snapshot, runs, live_step);
    let step = format!(
        "{scale} new_tasks={LIVE_NEW_TASKS} status_updates={} changed_agents={STEP_AGENTS}",
        2 * LIVE_NEW_TASKS
    );
    report(
        "state_body_live_step",
        live.bodies,
        &format!("{step} bytes={}", live.bytes),
    );
    report(
        "state_gzip_live_step",
        live.gzips,
        &format!("{step} gzip_bytes={}", live.gzip_bytes),
    );

    let (publish, published) = watch::channel(Arc::new(snapshot));
    list_pages(published.clone(), agents, tasks, runs.max(50), &scale);

    let mut clock = 1_000;
    // Warm the allocator's books once; the first cycle offers from scratch.
    allocation_cycles(&mut master, &streams, &mut clock, 1);

    // Idle and polled cycles alternate in blocks, so that whatever else the
    // machine runs weighs on both alike. In polled blocks a reader thread
    // serializes the published snapshot ten times a second.
    let polling = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let polls = Arc::new(AtomicU64::new(0));
    let reader = {
        let (polling, stop, polls) = (polling.clone(), stop.clone(), polls.clone());
        std::thread::spawn(move || {
            // `fresh`: a new buffer per request, grown as it fills (what a
            // handler serializing into a new body does); `reuse`: one buffer
            // kept at its size, no reallocation or unmapping per poll.
            let reuse = std::env::var("AGORA_BENCH_READER").is_ok_and(|r| r == "reuse");
            let mut buffer = Vec::new();
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                if polling.load(Ordering::Relaxed) {
                    let current = published.borrow().clone();
                    if reuse {
                        buffer.clear();
                        serde_json::to_writer(&mut buffer, current.as_ref())
                            .expect("snapshot serializes");
                        std::hint::black_box(&buffer);
                    } else {
                        let body =
                            serde_json::to_vec(current.as_ref()).expect("snapshot serializes");
                        std::hint::black_box(body);
                    }
                    polls.fetch_add(1, Ordering::Relaxed);
                }
                next += POLL_INTERVAL;
                // Paced, not synchronised: the reader keeps its own rhythm.
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        })
    };
    let block = 5.min(runs).max(1);
    let (mut idle, mut polled, mut offered) = (Vec::new(), Vec::new(), 0);
    let mut polled_for = Duration::ZERO;
    while idle.len() < runs {
        polling.store(false, Ordering::Relaxed);
        let (samples, n) = allocation_cycles(&mut master, &streams, &mut clock, block);
        idle.extend(samples);
        offered = n;
        polling.store(true, Ordering::Relaxed);
        let started = Instant::now();
        let (samples, _) = allocation_cycles(&mut master, &streams, &mut clock, block);
        polled_for += started.elapsed();
        polled.extend(samples);
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().expect("reader thread");
    drop(publish);
    let p50 = |samples: &[f64]| {
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        percentile(&s, 50.0)
    };
    let change = (p50(&polled) / p50(&idle) - 1.0) * 100.0;
    let reader_mode = std::env::var("AGORA_BENCH_READER").unwrap_or_else(|_| "fresh".into());
    report(
        "allocation_idle",
        idle,
        &format!("{scale} offers_per_cycle={offered}"),
    );
    report(
        "allocation_polled",
        polled,
        &format!(
            "{scale} reader={reader_mode} state_polls={} polled_s={:.1} p50_vs_idle_pct={change:+.1}",
            polls.load(Ordering::Relaxed),
            polled_for.as_secs_f64(),
        ),
    );
}

/// One page of each UI list, through the master's `/api` router: what a
/// browser's request costs a reader (never the actor).
fn list_pages(
    published: watch::Receiver<Arc<StateSnapshot>>,
    agents: usize,
    tasks: usize,
    runs: usize,
    scale: &str,
) {
    use tower::ServiceExt as _;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let last_task_page = tasks.saturating_sub(100);
    let last_agent_page = agents.saturating_sub(100);
    let pages = [
        ("page_tasks_first", "/api/tasks?limit=100".to_owned(), 100),
        (
            "page_tasks_last",
            format!("/api/tasks?offset={last_task_page}&limit=100"),
            100,
        ),
        // Matches `task-1-*`, `task-1x-*`, `task-1xx-*`...: a search that
        // reads every task's name and keeps the first 100 of ~11% of them.
        (
            "page_tasks_search",
            "/api/tasks?state=TASK_RUNNING&q=task-1&limit=100".to_owned(),
            100,
        ),
        (
            "page_agents_last",
            format!("/api/agents?offset={last_agent_page}&limit=100"),
            100,
        ),
        (
            "page_frameworks",
            "/api/frameworks?limit=100".to_owned(),
            FRAMEWORKS.min(100),
        ),
    ];
    runtime.block_on(async move {
        let router = agora_master::ui_api::router(published, Default::default());
        for (key, uri, expected) in pages {
            let mut samples = Vec::with_capacity(runs);
            let mut bytes = 0;
            for _ in 0..runs {
                let request = axum::http::Request::get(uri.as_str())
                    .body(axum::body::Body::empty())
                    .expect("a request");
                let started = Instant::now();
                let response = router.clone().oneshot(request).await.expect("infallible");
                let status = response.status();
                let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                    .await
                    .expect("a body");
                samples.push(started.elapsed().as_secs_f64() * 1e3);
                assert!(status.is_success(), "{uri}: {status}");
                bytes = body.len();
                let page: serde_json::Value = serde_json::from_slice(&body).expect("a JSON page");
                let items = page["items"].as_array().map_or(0, Vec::len);
                assert_eq!(items, expected, "{uri}: a full page");
            }
            report(key, samples, &format!("{scale} bytes={bytes} uri={uri}"));
        }
    });
}
