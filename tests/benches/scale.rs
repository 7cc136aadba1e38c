//! Scale through the real master (issue 16), with simulated agents
//! (`agora-sim`: real gRPC agent sessions, tasks without processes) and
//! frameworks on the SDK in this process. One `BENCH` line per scenario;
//! every figure of the master (CPU, RSS) is read from its own `/proc`, the
//! simulator's apart (`sim_*`).
//!
//! - `register`: N agents register on a fresh master: time until the
//!   simulator has every session registered, and until `/api/overview`
//!   lists them all active;
//! - `placement`: one framework launches T tasks (held running) on N agents:
//!   tasks/s from the first ACCEPT until the framework has seen all T
//!   TASK_RUNNING, and the sustained rate between 10 % and 90 % of them;
//!   then `master_rss` with N agents and T live tasks, and
//!   `api_tasks_first_page`: the UI's first page of tasks fetched 50 times
//!   per run from the master at rest, and `state_at_rest`: `/state` fetched
//!   20 times at rest, plain and in gzip. Runs alternate with
//!   `placement_polled`: the same while `/state` and `/api/tasks` are each
//!   fetched 10 times a second (read whole and dropped, each by a thread);
//! - `placement_alternating`: one placement per run whose pollers poll in
//!   every other window of 700 ms and rest in the others: the rates of
//!   polled and quiet windows of the same run compared, pooled, per run
//!   (and by the kind of window a run began with), and per polled window
//!   against the mean of its two quiet neighbours (`neighbour_*`: a drift
//!   of the pace within a run cancels there); and the CPU the master, the
//!   simulator, this process and the whole machine used in each kind of
//!   window (`*_cpus_quiet`, `*_cpus_polled`: cores on average), with the
//!   master's per 1,000 tasks placed;
//! - `offer_latency`: N one-slot agents, F frameworks each launching a task
//!   on every offer (run times 0.5-1.5 x D): from the framework seeing a
//!   task's TASK_FINISHED to an offer of that agent reaching any framework;
//! - `busy_reads` (`scale/busy_reads.rs`): `/health`'s latency while two
//!   clients read one of the biggest endpoints back to back, per endpoint;
//! - `failover`: three masters over ZooKeeper, N agents and T running tasks,
//!   every status update acknowledged (the cluster's steady state);
//!   SIGKILL the leader: time until another master leads, until every agent
//!   re-registered with it, and until the framework's explicit
//!   reconciliation of all T tasks is answered TASK_RUNNING.
//!
//! `cargo bench -p agora-e2e --bench scale` (release daemons and simulator).
//! Without `--bench` (`cargo test --benches`, CI) a smoke run: debug
//! binaries, 50 agents, 500 tasks, 4 frameworks. Knobs: `AGORA_BENCH_AGENTS`
//! (10000), `AGORA_BENCH_TASKS` (100000), `AGORA_BENCH_FRAMEWORKS` (100),
//! `AGORA_BENCH_RUNS` (3), `AGORA_BENCH_OFFER_DURATION_S` (D, 20),
//! `AGORA_BENCH_OFFER_WINDOW_S` (20), `AGORA_BENCH_ZK_SESSION` (seconds,
//! 4), `AGORA_BENCH_REGISTRY` (`file`; `memory`: no work dir), `AGORA_BENCH_ONLY`
//! (one scenario), `AGORA_BENCH_KEEP_LOGS` (a directory: the failover's
//! master and simulator logs are copied there), `AGORA_BENCH_BIN` and
//! `AGORA_BENCH_SIM` (prebuilt `agora` and `agora-sim`), `AGORA_BENCH_POLL`
//! (the endpoints `placement_polled` polls, comma-separated; both unless set),
//! `AGORA_BENCH_PLACEMENTS` (`polled` or `unpolled`: those placement runs
//! only; both, alternating, unless set), `AGORA_BENCH_POLL_STATIC` (MB: in both
//! placement scenarios the pollers fetch a body of that size from a server
//! in the bench instead of the master, the cost of moving the bytes alone), `AGORA_BENCH_POLL_GZIP`
//! (`1`: the pollers send `Accept-Encoding: gzip`, as browsers and most HTTP
//! libraries do, and read the compressed bodies), `AGORA_BENCH_WINDOW_MS`
//! (`placement_alternating`'s windows; 700), `AGORA_BENCH_WINDOW_TRACE` (`1`: each
//! window's start is printed in CLOCK_MONOTONIC, the clock of
//! `perf record -k CLOCK_MONOTONIC`, so a profile splits by window). Every wait has a
//! deadline; every process started is stopped by its pid.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agora_e2e::{Proc, Sweeper, agora_binary, free_port, get_json, wait_for};
use agora_scheduler::proto::{Filters, TaskState};
use agora_scheduler::{
    Event, EventStream, FrameworkBuilder, SchedulerClient, SubscribeOptions, TaskBuilder,
    offer_cpus_mem,
};
use agora_sim::books::Stats;
use agora_sim::procfs;
use anyhow::{Context, bail};

#[path = "scale/busy_reads.rs"]
mod busy_reads;

const TASK_CPUS: f64 = 0.1;
const TASK_MEM: f64 = 32.0;
/// ACCEPT calls in flight at once from one framework.
const ACCEPTS_IN_FLIGHT: usize = 64;

struct Knobs {
    full: bool,
    agents: usize,
    tasks: usize,
    frameworks: usize,
    runs: usize,
    offer_duration: Duration,
    offer_window: Duration,
    zk_session: u64,
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn selected(name: &str) -> bool {
    std::env::var("AGORA_BENCH_ONLY").map_or(true, |only| only == name)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    percentile(&values, 50.0)
}

/// `agora-sim`: `AGORA_BENCH_SIM`, else built with cargo (release for the
/// real figures).
fn sim_binary(release: bool) -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var("AGORA_BENCH_SIM") {
        return Ok(PathBuf::from(path));
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command.args([
        "build",
        "-p",
        "agora-sim",
        "--bin",
        "agora-sim",
        "--message-format=json-render-diagnostics",
    ]);
    if release {
        command.arg("--release");
    }
    let output = command
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()?;
    if !output.status.success() {
        bail!("building agora-sim failed");
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "agora-sim")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .context("cargo reported no agora-sim executable")
}

struct Bins {
    agora: PathBuf,
    sim: PathBuf,
}

/// The simulator process and its books endpoint.
struct Sim {
    /// Stopped (by its pid) when dropped.
    proc: Proc,
    port: u16,
}

impl Sim {
    fn start(bin: &Path, dir: &Path, master: &str, agents: usize, resources: &str) -> Sim {
        let port = free_port();
        let proc = Proc::spawn_bin(
            bin,
            &[
                "--master",
                master,
                "--agents",
                &agents.to_string(),
                "--resources",
                resources,
                "--http-port",
                &port.to_string(),
                "--status-retry-ms",
                "5000",
            ],
            dir.join(format!("sim-{port}.log")),
        );
        Sim { proc, port }
    }

    fn stats(&self) -> anyhow::Result<Stats> {
        Ok(serde_json::from_value(get_json(self.port, "/stats")?)?)
    }

    fn wait_registered(
        &self,
        agents: usize,
        with: Option<&str>,
        limit: Duration,
    ) -> anyhow::Result<Duration> {
        let started = Instant::now();
        wait_for("simulated agents registered", limit, || {
            let s = self.stats().ok()?;
            let n = match with {
                Some(master) => s.registered_by_master.get(master).copied().unwrap_or(0),
                None => s.registered,
            };
            (n == agents).then_some(())
        })?;
        Ok(started.elapsed())
    }
}

/// A master with its registry in a file under its work dir, as deployed;
/// `AGORA_BENCH_REGISTRY=memory` leaves the work dir out (registry in
/// memory), to show the registry's cost apart.
fn start_master(bin: &Path, dir: &Path) -> (Proc, u16) {
    let port = free_port();
    let work = dir.join(format!("master-{port}"));
    let port_text = port.to_string();
    let mut args = vec!["master", "--ip", "127.0.0.1", "--port", &port_text];
    if std::env::var("AGORA_BENCH_REGISTRY").as_deref() != Ok("memory") {
        args.extend(["--work-dir", work.to_str().expect("utf-8")]);
    }
    let proc = Proc::spawn_bin(bin, &args, dir.join(format!("master-{port}.log")));
    (proc, port)
}

fn wait_serving(port: u16) -> anyhow::Result<()> {
    wait_for("a leading master", Duration::from_secs(60), || {
        let m = get_json(port, "/api/overview").ok()?;
        (m["master"]["elected"] == true).then_some(())
    })
}

fn active_agents(port: u16) -> Option<usize> {
    get_json(port, "/api/overview").ok()?["agents"]["active"]
        .as_u64()
        .map(|n| n as usize)
}

fn usage_text(name: &str, pid: u32, cpu_before: Duration) -> String {
    procfs::of(pid).map_or_else(
        || format!("{name}_cpu_s=NaN {name}_rss_mb=NaN"),
        |u| {
            format!(
                "{name}_cpu_s={:.2} {name}_rss_mb={:.0}",
                (u.cpu.saturating_sub(cpu_before)).as_secs_f64(),
                u.rss_mb()
            )
        },
    )
}

fn cpu_of(pid: u32) -> Duration {
    procfs::of(pid).map_or(Duration::ZERO, |u| u.cpu)
}

fn register(bins: &Bins, k: &Knobs) -> anyhow::Result<()> {
    let mut sim_side = Vec::new();
    let mut master_side = Vec::new();
    let mut last = String::new();
    for _ in 0..k.runs {
        let dir = tempfile::tempdir()?;
        let _sweeper = Sweeper(dir.path().to_path_buf());
        let (master, port) = start_master(&bins.agora, dir.path());
        wait_serving(port)?;
        let before = cpu_of(master.pid());
        let started = Instant::now();
        let sim = Sim::start(
            &bins.sim,
            dir.path(),
            &format!("127.0.0.1:{port}"),
            k.agents,
            "cpus:8;mem:16384",
        );
        sim.wait_registered(k.agents, None, Duration::from_secs(300))?;
        sim_side.push(started.elapsed().as_secs_f64());
        wait_for(
            "the master lists every agent active",
            Duration::from_secs(120),
            || (active_agents(port)? == k.agents).then_some(()),
        )?;
        master_side.push(started.elapsed().as_secs_f64());
        let s = sim.stats()?;
        last = format!(
            "{} sim_cpu_s={:.2} sim_rss_mb={:.0}",
            usage_text("master", master.pid(), before),
            s.cpu_seconds,
            s.rss_mb
        );
    }
    println!(
        "BENCH register agents={} all_registered_s={:.2} master_lists_all_s={:.2} target_s=10 runs={} {last}",
        k.agents,
        median(sim_side),
        median(master_side),
        k.runs
    );
    Ok(())
}

/// What a placing framework saw.
#[derive(Default)]
struct Placing {
    launched: usize,
    running: usize,
    first_accept: Option<Instant>,
    /// When the running count crossed each tenth of the total.
    tenths: Vec<Instant>,
    /// When each RUNNING was seen, in order.
    running_at: Vec<Instant>,
    failed: Vec<String>,
}

/// Launches `total` held tasks as offers come, at most
/// [`ACCEPTS_IN_FLIGHT`] ACCEPTs at a time, spread about evenly over
/// `agents`; returns when all run (or `limit` passes). The calls wait for
/// their slot in tasks of their own: the loop never stops reading events
/// (a framework that does stalls its own acknowledgements, which the SDK
/// sends once the application has taken the update).
async fn place(
    client: &SchedulerClient,
    events: &mut EventStream,
    total: usize,
    agents: usize,
    limit: Duration,
) -> anyhow::Result<Placing> {
    let per_offer = total.div_ceil(agents.max(1)).max(1);
    let slots = Arc::new(tokio::sync::Semaphore::new(ACCEPTS_IN_FLIGHT));
    let mut p = Placing::default();
    let deadline = tokio::time::Instant::now() + limit;
    while p.running < total {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .context("placement timed out")?
            .context("event stream ended")?;
        match event {
            Event::Offers(offers) => {
                for offer in offers {
                    let (cpus, mem) = offer_cpus_mem(&offer);
                    let fit = ((cpus / TASK_CPUS + 1e-9)
                        .floor()
                        .min((mem / TASK_MEM + 1e-9).floor())
                        as usize)
                        .min(per_offer)
                        .min(total - p.launched);
                    let id = offer.id.clone().unwrap_or_default();
                    let client = client.clone();
                    let slots = slots.clone();
                    if fit == 0 {
                        tokio::spawn(async move {
                            let Ok(permit) = slots.acquire_owned().await else {
                                return;
                            };
                            let _ = client
                                .decline(vec![id], Some(Duration::from_secs(3600)))
                                .await;
                            drop(permit);
                        });
                        continue;
                    }
                    let tasks = (0..fit)
                        .map(|i| {
                            TaskBuilder::command(format!("t-{}", p.launched + i), "bench", "true")
                                .cpus(TASK_CPUS)
                                .mem(TASK_MEM)
                                .label(agora_sim::HOLD_LABEL, "true")
                                .build_for_offer(&offer)
                        })
                        .collect();
                    p.launched += fit;
                    p.first_accept.get_or_insert_with(Instant::now);
                    tokio::spawn(async move {
                        let Ok(permit) = slots.acquire_owned().await else {
                            return;
                        };
                        let filters = Some(Filters {
                            refuse_seconds: Some(3600.0),
                        });
                        let _ = client.launch(vec![id], tasks, filters).await;
                        drop(permit);
                    });
                }
            }
            Event::Update(status) => {
                let state = TaskState::try_from(status.state.unwrap_or_default())
                    .unwrap_or(TaskState::TaskUnknown);
                if state == TaskState::TaskRunning {
                    p.running += 1;
                    p.running_at.push(Instant::now());
                    if p.running * 10 >= (p.tenths.len() + 1) * total {
                        p.tenths.push(Instant::now());
                    }
                } else if agora_scheduler::is_terminal(state) {
                    p.failed.push(format!(
                        "{:?} {state:?} {}",
                        status.task_id,
                        status.message.unwrap_or_default()
                    ));
                    if p.failed.len() > 100 {
                        bail!("tasks fail: {:?}", &p.failed[..5]);
                    }
                }
            }
            Event::Error(message) => bail!("subscription ended: {message}"),
            _ => {}
        }
    }
    Ok(p)
}

/// Fetches `/state` and `/api/tasks` each 10 times a second (each in a
/// thread of its own) until `stop`; returns what each poller saw. The
/// poller reads each body and drops it: what a poller does with it is its
/// own cost, and the figure is the master's.
fn poll(
    port: u16,
    stop: Arc<AtomicBool>,
    gate: Option<Arc<AtomicBool>>,
) -> std::thread::JoinHandle<[Polled; 2]> {
    // `AGORA_BENCH_POLL` names the endpoints polled (both unless set),
    // to tell their costs apart.
    let chosen = std::env::var("AGORA_BENCH_POLL").unwrap_or_else(|_| "/state,/api/tasks".into());
    let gzip = std::env::var("AGORA_BENCH_POLL_GZIP").is_ok_and(|v| v == "1");
    std::thread::spawn(move || {
        let pollers = ["/state", "/api/tasks"].map(|path| {
            let stop = stop.clone();
            let gate = gate.clone();
            let polled = chosen.split(',').any(|p| p.trim() == path);
            std::thread::spawn(move || {
                if polled {
                    poll_one(port, path, gzip, &stop, gate.as_deref())
                } else {
                    Polled::default()
                }
            })
        });
        pollers.map(|p| p.join().unwrap_or_default())
    })
}

/// What one poller saw: the bodies it read whole, the largest in bytes
/// (decoded, and as sent), and how long each took from connecting to its
/// last byte (ms).
#[derive(Default)]
struct Polled {
    count: usize,
    largest: usize,
    largest_sent: usize,
    fetch_ms: Vec<f64>,
}

impl Polled {
    /// `<name>_polls_per_s`, and the fetches' p50 and p99.
    fn text(&self, name: &str, secs: f64) -> String {
        let mut fetch_ms = self.fetch_ms.clone();
        fetch_ms.sort_by(f64::total_cmp);
        format!(
            " {name}_polls_per_s={:.1} {name}_fetch_p50_ms={:.1} {name}_fetch_p99_ms={:.1}",
            self.count as f64 / secs,
            percentile(&fetch_ms, 50.0),
            percentile(&fetch_ms, 99.0)
        )
    }
}

/// Fetches `path` 10 times a second until `stop`, asking for gzip if
/// `gzip`; while a `gate` is shut, the ticks pass without a fetch.
fn poll_one(
    port: u16,
    path: &str,
    gzip: bool,
    stop: &AtomicBool,
    gate: Option<&AtomicBool>,
) -> Polled {
    let tick = Duration::from_millis(100);
    let mut buffer = vec![0; 1 << 20];
    let mut polled = Polled::default();
    let mut next = Instant::now();
    // Bounded by `stop`, which the placement sets when it ends.
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let open = gate.is_none_or(|g| g.load(Ordering::Relaxed));
        if !open {
            // The gate is shut: this tick fetches nothing.
        } else if let Ok(Some(read)) = fetch_and_drop(port, path, gzip, &mut buffer) {
            polled.count += 1;
            polled.largest = polled.largest.max(read.decoded);
            polled.largest_sent = polled.largest_sent.max(read.sent);
            polled.fetch_ms.push(started.elapsed().as_secs_f64() * 1e3);
        }
        next += tick;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait); // the polling rate, not synchronisation
        }
    }
    polled
}

/// The port the pollers fetch from: the master's (`port`), or, with
/// `AGORA_BENCH_POLL_STATIC=<MB>`, the control experiment's: a server in
/// this process answering a body of that size (until `stop`), so that a
/// polled run measures what moving the bytes alone costs this machine.
fn poll_target(port: u16, stop: Arc<AtomicBool>) -> anyhow::Result<u16> {
    match env_usize("AGORA_BENCH_POLL_STATIC", 0) {
        0 => Ok(port),
        mb => static_server(mb << 20, stop),
    }
}

/// A server on 127.0.0.1 answering each request, one at a time, with bytes
/// written from memory (as the master writes a body): `bytes` of them to
/// `GET /state`, 42 KB (a page of tasks) to any other, until `stop`; its
/// port.
fn static_server(bytes: usize, stop: Arc<AtomicBool>) -> anyhow::Result<u16> {
    use std::io::{BufRead, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let body = vec![b' '; bytes];
    std::thread::spawn(move || {
        // Bounded by `stop`, which the placement sets when it ends.
        while !stop.load(Ordering::Relaxed) {
            let stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(1)); // accept's poll interval
                    continue;
                }
                Err(_) => return,
            };
            let serve = || -> std::io::Result<()> {
                stream.set_nonblocking(false)?;
                let mut reader = std::io::BufReader::new(&stream);
                let mut first = String::new();
                reader.read_line(&mut first)?;
                let mut line = String::new();
                while reader.read_line(&mut line)? > 2 {
                    line.clear();
                }
                // `/state` gets the big body; anything else (`/api/tasks`)
                // a page's 42 KB.
                let body = if first.starts_with("GET /state ") {
                    &body[..]
                } else {
                    &body[..body.len().min(42 << 10)]
                };
                let mut out = &stream;
                write!(
                    out,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )?;
                out.write_all(body)
            };
            let _ = serve();
        }
    });
    Ok(port)
}

/// A body as read: its length as sent, and decoded (gzip's trailer says
/// it; the poller does not inflate what it reads, as its own decoding would
/// be its own cost).
struct Read {
    sent: usize,
    decoded: usize,
}

/// One GET on a connection of its own, asking for gzip if `gzip`, the
/// answer read whole through `buffer` and dropped: what was read when it
/// was a 200 that ended as long as its Content-Length said (and, in gzip,
/// ended with a trailer).
fn fetch_and_drop(
    port: u16,
    path: &str,
    gzip: bool,
    buffer: &mut [u8],
) -> anyhow::Result<Option<Read>> {
    use std::io::{Read as _, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let accept = if gzip {
        "Accept-Encoding: gzip\r\n"
    } else {
        ""
    };
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{accept}Connection: close\r\n\r\n"
    )?;
    let mut head = Vec::new();
    let mut in_head = true;
    let mut body = 0;
    // The body's last 8 bytes: a gzip trailer's CRC-32 and length.
    let mut tail = Vec::with_capacity(16);
    loop {
        let n = stream.read(buffer)?;
        if n == 0 {
            break;
        }
        if !in_head {
            body += n;
            keep_tail(&mut tail, &buffer[..n]);
            continue;
        }
        head.extend_from_slice(&buffer[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            in_head = false;
            body = head.len() - (end + 4);
            keep_tail(&mut tail, &head[end + 4..]);
            head.truncate(end);
        } else if head.len() > 64 * 1024 {
            bail!("GET {path}: no end of the head in 64 KiB");
        }
    }
    if in_head {
        return Ok(None);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    if !head.starts_with("http/1.1 200") || length != Some(body) {
        return Ok(None);
    }
    if !head.contains("\ncontent-encoding: gzip") {
        return Ok(Some(Read {
            sent: body,
            decoded: body,
        }));
    }
    // ISIZE: the decoded length modulo 2^32 (bodies here are far smaller).
    let decoded = tail
        .len()
        .checked_sub(4)
        .and_then(|at| tail.get(at..))
        .and_then(|isize| <[u8; 4]>::try_from(isize).ok())
        .map(|isize| u32::from_le_bytes(isize) as usize);
    Ok(decoded.map(|decoded| Read {
        sent: body,
        decoded,
    }))
}

/// Keeps the last 8 bytes seen in `tail`.
fn keep_tail(tail: &mut Vec<u8>, read: &[u8]) {
    tail.extend_from_slice(&read[read.len().saturating_sub(8)..]);
    let extra = tail.len().saturating_sub(8);
    tail.drain(..extra);
}

/// A fresh master and `k.agents` simulated agents (8 cpus, 16 GiB each),
/// every one registered and listed: the master, its port, the simulator.
fn placement_cluster(bins: &Bins, k: &Knobs, dir: &Path) -> anyhow::Result<(Proc, u16, Sim)> {
    let (master, port) = start_master(&bins.agora, dir);
    wait_serving(port)?;
    let sim = Sim::start(
        &bins.sim,
        dir,
        &format!("127.0.0.1:{port}"),
        k.agents,
        "cpus:8;mem:16384",
    );
    sim.wait_registered(k.agents, None, Duration::from_secs(300))?;
    wait_for("agents listed", Duration::from_secs(120), || {
        (active_agents(port)? == k.agents).then_some(())
    })?;
    Ok((master, port, sim))
}

/// One framework places `k.tasks` tasks through the master on `port`.
fn place_all(runtime: &tokio::runtime::Runtime, port: u16, k: &Knobs) -> anyhow::Result<Placing> {
    runtime.block_on(async {
        let info = FrameworkBuilder::new("placement").build();
        let (client, mut events) = SchedulerClient::connect(
            &format!("127.0.0.1:{port}"),
            info,
            SubscribeOptions::default(),
        )
        .await?;
        place(
            &client,
            &mut events,
            k.tasks,
            k.agents,
            Duration::from_secs(600),
        )
        .await
    })
}

fn placement(bins: &Bins, k: &Knobs, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let mut rates: HashMap<bool, Vec<f64>> = HashMap::new();
    let mut sustained: HashMap<bool, Vec<f64>> = HashMap::new();
    let mut details: HashMap<bool, String> = HashMap::new();
    let mut rss = Vec::new();
    let mut first_pages = Vec::new();
    let mut state_fetches: HashMap<bool, Vec<(f64, Read)>> = HashMap::new();
    // `AGORA_BENCH_PLACEMENTS=polled` (or `unpolled`): those runs only, to
    // compare two builds on one of them.
    let kinds = match std::env::var("AGORA_BENCH_PLACEMENTS").as_deref() {
        Ok("polled") => vec![true],
        Ok("unpolled") => vec![false],
        _ => vec![false, true],
    };
    for run in 0..k.runs * kinds.len() {
        let polled = kinds[run % kinds.len()];
        let dir = tempfile::tempdir()?;
        let _sweeper = Sweeper(dir.path().to_path_buf());
        let (master, port, sim) = placement_cluster(bins, k, dir.path())?;
        let stop = Arc::new(AtomicBool::new(false));
        let polled_port = poll_target(port, stop.clone())?;
        let poller = polled.then(|| poll(polled_port, stop.clone(), None));
        let master_before = cpu_of(master.pid());
        let sim_before = sim.stats()?.cpu_seconds;
        let bench_before = cpu_of(std::process::id());
        let placed = place_all(runtime, port, k);
        stop.store(true, Ordering::Relaxed);
        let polls = poller.map(|p| p.join().unwrap_or_default());
        // The framework's and the poller's CPU (this process's).
        let bench_cpu = cpu_of(std::process::id()).saturating_sub(bench_before);
        let placed = placed?;
        let first = placed.first_accept.context("no ACCEPT was sent")?;
        let last = *placed.tenths.last().context("nothing ran")?;
        let secs = last.duration_since(first).as_secs_f64();
        rates.entry(polled).or_default().push(k.tasks as f64 / secs);
        if placed.tenths.len() >= 9 {
            let middle = placed.tenths[8]
                .duration_since(placed.tenths[0])
                .as_secs_f64();
            sustained
                .entry(polled)
                .or_default()
                .push(0.8 * k.tasks as f64 / middle);
        }
        let s = sim.stats()?;
        let poll_text = polls.map_or(String::new(), |[state, tasks]| {
            format!(
                "{}{} state_max_mb={:.1} state_max_sent_mb={:.1}",
                state.text("state", secs),
                tasks.text("api_tasks", secs),
                state.largest as f64 / 1e6,
                state.largest_sent as f64 / 1e6
            )
        });
        let line = format!(
            "{} sim_cpu_s={:.2} sim_rss_mb={:.0} sim_updates_resent={} bench_cpu_s={:.2}{poll_text}",
            usage_text("master", master.pid(), master_before),
            s.cpu_seconds - sim_before,
            s.rss_mb,
            s.updates_resent,
            bench_cpu.as_secs_f64()
        );
        // Each run's figures, for the scatter behind the medians.
        eprintln!(
            "run {run} polled={polled} tasks_per_s={:.0} {line}",
            k.tasks as f64 / secs
        );
        details.insert(polled, line);
        if !polled {
            // The master at rest with every agent and task live.
            wait_for(
                "the master lists every task running",
                Duration::from_secs(120),
                || {
                    let o = get_json(port, "/api/overview").ok()?;
                    (o["tasks"]["TASK_RUNNING"].as_u64()? as usize == k.tasks).then_some(())
                },
            )?;
            rss.push(procfs::of(master.pid()).map_or(f64::NAN, |u| u.rss_mb()));
            first_pages.extend(first_page_ms(port)?);
            for gzip in [false, true] {
                let at_rest = state_at_rest(port, gzip)?;
                state_fetches.entry(gzip).or_default().extend(at_rest);
            }
        }
    }
    for polled in [false, true] {
        let name = if polled {
            "placement_polled"
        } else {
            "placement"
        };
        println!(
            "BENCH {name} agents={} tasks={} tasks_per_s={:.0} sustained_10_90_per_s={:.0} target_per_s=10000 runs={} {}",
            k.agents,
            k.tasks,
            median(rates.remove(&polled).unwrap_or_default()),
            median(sustained.remove(&polled).unwrap_or_default()),
            k.runs,
            details.remove(&polled).unwrap_or_default()
        );
    }
    println!(
        "BENCH master_rss agents={} tasks={} master_rss_mb={:.0} target_mb=1024 runs={}",
        k.agents,
        k.tasks,
        median(rss),
        k.runs
    );
    first_pages.sort_by(f64::total_cmp);
    println!(
        "BENCH api_tasks_first_page agents={} tasks={} p50_ms={:.2} p99_ms={:.2} samples={}",
        k.agents,
        k.tasks,
        percentile(&first_pages, 50.0),
        percentile(&first_pages, 99.0),
        first_pages.len()
    );
    for gzip in [false, true] {
        let mut fetches = state_fetches.remove(&gzip).unwrap_or_default();
        fetches.sort_by(|a, b| a.0.total_cmp(&b.0));
        let ms: Vec<f64> = fetches.iter().map(|(ms, _)| *ms).collect();
        let sent = fetches.iter().map(|(_, r)| r.sent).max().unwrap_or(0);
        let decoded = fetches.iter().map(|(_, r)| r.decoded).max().unwrap_or(0);
        println!(
            "BENCH state_at_rest agents={} tasks={} gzip={gzip} p50_ms={:.1} p99_ms={:.1} sent_mb={:.1} json_mb={:.1} samples={}",
            k.agents,
            k.tasks,
            percentile(&ms, 50.0),
            percentile(&ms, 99.0),
            sent as f64 / 1e6,
            decoded as f64 / 1e6,
            ms.len()
        );
    }
    Ok(())
}

/// `/state` fetched 20 times from the master at rest, in gzip or not, each
/// read whole (not inflated): ms each, and what was read.
fn state_at_rest(port: u16, gzip: bool) -> anyhow::Result<Vec<(f64, Read)>> {
    let mut buffer = vec![0; 1 << 20];
    let mut samples = Vec::with_capacity(20);
    for _ in 0..20 {
        let started = Instant::now();
        let read = fetch_and_drop(port, "/state", gzip, &mut buffer)?;
        let read = read.context("/state was not answered whole")?;
        samples.push((started.elapsed().as_secs_f64() * 1e3, read));
    }
    Ok(samples)
}

/// Prints a window's start on CLOCK_MONOTONIC, the clock `perf record -k
/// CLOCK_MONOTONIC` stamps its samples with, so that a profile of the
/// master splits by window (`scripts/window-profile`).
fn trace_window(run: usize, polled: bool) {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    eprintln!(
        "window_toggle run={run} monotonic_s={}.{:09} polled={polled}",
        now.tv_sec, now.tv_nsec
    );
}

/// One placement whose pollers poll in every other window of
/// `AGORA_BENCH_WINDOW_MS` (700; 5 in the smoke run) and rest in the
/// others, so that the polling's cost is read from neighbouring seconds of
/// the same run on the same master, not from two runs the machine's drift
/// sets apart: the rate of RUNNING seen in polled windows against the rate
/// in quiet ones, between the 10th and the 90th percentile of the run.
/// Runs start polled and quiet in turn. A fetch begun at the end of a
/// polled window finishes in the quiet one that follows, so the cost is if
/// anything understated by that spill (about a fetch's time per window).
/// Windows of a whole second gave runs that began quiet a far larger loss
/// than runs that began polled (-31 % against -4 %): the placement's pace
/// has a rhythm of its own near a second, so the default is 700 ms, which
/// matches no such rhythm.
fn placement_alternating(
    bins: &Bins,
    k: &Knobs,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<()> {
    let window = Duration::from_millis(env_usize(
        "AGORA_BENCH_WINDOW_MS",
        if k.full { 700 } else { 5 },
    ) as u64);
    // Events and seconds in quiet ([0]) and polled ([1]) windows, all runs.
    let mut events = [0usize; 2];
    let mut seconds = [0f64; 2];
    let mut changes = Vec::new();
    // The runs' changes by the phase they began in: quiet ([0], even runs)
    // or polled ([1], odd runs). The placement's pace drifts within a run,
    // so each phase alone is biased; equal numbers of both cancel a linear
    // drift, which is why the pooled figure wants an even number of runs.
    let mut by_phase: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    // Each polled window against its two quiet neighbours, all runs.
    let mut neighbours = Vec::new();
    // `/state` and `/api/tasks` fetches, all runs.
    let mut fetched = [0usize; 2];
    let mut polled_seconds = 0.0;
    // CPU used in quiet and polled windows, all runs.
    let mut cpu = WindowCpu::default();
    let trace_windows = std::env::var("AGORA_BENCH_WINDOW_TRACE").is_ok_and(|v| v == "1");
    for run in 0..k.runs {
        let dir = tempfile::tempdir()?;
        let _sweeper = Sweeper(dir.path().to_path_buf());
        let (master, port, sim) = placement_cluster(bins, k, dir.path())?;
        let stop = Arc::new(AtomicBool::new(false));
        let gate = Arc::new(AtomicBool::new(run % 2 == 1));
        let toggles = Arc::new(Mutex::new(vec![(Instant::now(), run % 2 == 1)]));
        if trace_windows {
            trace_window(run, run % 2 == 1);
        }
        // The CPU used at each toggle, the same index as `toggles`.
        let watched = [master.pid(), sim.proc.pid(), std::process::id()];
        let marks = Arc::new(Mutex::new(vec![cpu_mark(watched)]));
        let toggler = {
            let (stop, gate, toggles) = (stop.clone(), gate.clone(), toggles.clone());
            let marks = marks.clone();
            std::thread::spawn(move || {
                let mut next = Instant::now() + window;
                // Bounded by `stop`, which the placement sets when it ends.
                while !stop.load(Ordering::Relaxed) {
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait); // the windows' rhythm, not synchronisation
                    }
                    next += window;
                    let open = !gate.load(Ordering::Relaxed);
                    gate.store(open, Ordering::Relaxed);
                    if trace_windows {
                        trace_window(run, open);
                    }
                    if let (Ok(mut toggles), Ok(mut marks)) = (toggles.lock(), marks.lock()) {
                        toggles.push((Instant::now(), open));
                        marks.push(cpu_mark(watched));
                    }
                }
            })
        };
        let polled_port = poll_target(port, stop.clone())?;
        let poller = poll(polled_port, stop.clone(), Some(gate.clone()));
        let placed = place_all(runtime, port, k);
        stop.store(true, Ordering::Relaxed);
        let [state_polls, tasks_polls] = poller.join().unwrap_or_default();
        let _ = toggler.join();
        let placed = placed?;
        drop(sim);
        drop(master);
        let toggles = toggles.lock().map(|t| t.clone()).unwrap_or_default();
        let marks = marks.lock().map(|m| m.clone()).unwrap_or_default();
        let at = &placed.running_at;
        let (Some(&from), Some(&to)) = (at.get(at.len() / 10), at.get(at.len() * 9 / 10)) else {
            bail!("run {run}: no RUNNING seen");
        };
        cpu.add(at, &toggles, &marks, from, to);
        let (run_events, run_seconds) = by_window(at, &toggles, from, to);
        let run_neighbours = neighbour_changes(at, &toggles, from, to);
        // The polled seconds of the whole run, for the pollers' rate.
        if let (Some(&(start, _)), Some(&end)) = (toggles.first(), at.last()) {
            polled_seconds += by_window(&[], &toggles, start, end).1[1];
        }
        for open in [0, 1] {
            events[open] += run_events[open];
            seconds[open] += run_seconds[open];
        }
        fetched[0] += state_polls.count;
        fetched[1] += tasks_polls.count;
        let rate = |open: usize| run_events[open] as f64 / run_seconds[open];
        let change = (rate(1) / rate(0) - 1.0) * 100.0;
        changes.push(change);
        by_phase[run % 2].push(change);
        eprintln!(
            "run {run} alternating quiet_per_s={:.0} polled_per_s={:.0} change_pct={change:+.1} neighbour_change_pct={:+.1} windows={} quiet_s={:.1} polled_s={:.1} state_polls={} api_tasks_polls={}",
            rate(0),
            rate(1),
            median(run_neighbours.clone()),
            run_neighbours.len(),
            run_seconds[0],
            run_seconds[1],
            state_polls.count,
            tasks_polls.count
        );
        neighbours.extend(run_neighbours);
    }
    let rate = |open: usize| events[open] as f64 / seconds[open];
    println!(
        "BENCH placement_alternating agents={} tasks={} window_ms={} runs={} quiet_per_s={:.0} polled_per_s={:.0} change_pct={:+.1} median_run_change_pct={:+.1} median_began_quiet_pct={:+.1} median_began_polled_pct={:+.1} neighbour_windows={} neighbour_median_pct={:+.1} neighbour_mean_pct={:+.1} state_polls_per_polled_s={:.1} api_tasks_polls_per_polled_s={:.1}{}",
        k.agents,
        k.tasks,
        window.as_millis(),
        k.runs,
        rate(0),
        rate(1),
        (rate(1) / rate(0) - 1.0) * 100.0,
        median(changes),
        median(by_phase[0].clone()),
        median(by_phase[1].clone()),
        neighbours.len(),
        median(neighbours.clone()),
        neighbours.iter().sum::<f64>() / neighbours.len() as f64,
        fetched[0] as f64 / polled_seconds,
        fetched[1] as f64 / polled_seconds,
        cpu.text(),
    );
    Ok(())
}

/// CPU seconds used so far by the master, the simulator and this process
/// (the framework and the pollers), and by the whole machine (every core).
fn cpu_mark(pids: [u32; 3]) -> [f64; 4] {
    let [master, sim, bench] = pids.map(|pid| cpu_of(pid).as_secs_f64());
    let machine = procfs::machine_busy().map_or(0.0, |busy| busy.as_secs_f64());
    [master, sim, bench, machine]
}

/// The CPU used in quiet ([0]) and polled ([1]) windows wholly inside the
/// runs' 10-90 % spans, with their seconds and the RUNNING seen in them:
/// what the pollers cost each process per second and per task placed.
#[derive(Default)]
struct WindowCpu {
    used: [[f64; 4]; 2],
    seconds: [f64; 2],
    events: [usize; 2],
}

impl WindowCpu {
    /// Adds one run's windows; `marks[i]` was taken at `toggles[i]`.
    fn add(
        &mut self,
        running_at: &[Instant],
        toggles: &[(Instant, bool)],
        marks: &[[f64; 4]],
        from: Instant,
        to: Instant,
    ) {
        for (w, m) in toggles.windows(2).zip(marks.windows(2)) {
            let (start, end) = (w[0].0, w[1].0);
            if start < from || end > to {
                continue;
            }
            let open = usize::from(w[0].1);
            for (used, (before, after)) in self.used[open].iter_mut().zip(m[0].iter().zip(&m[1])) {
                *used += after - before;
            }
            self.seconds[open] += end.duration_since(start).as_secs_f64();
            self.events[open] += running_at
                .iter()
                .filter(|&&t| t > start && t <= end)
                .count();
        }
    }

    /// ` <who>_cpus_quiet=.. <who>_cpus_polled=..` (cores used on average)
    /// for each, and the master's CPU per 1,000 tasks placed.
    fn text(&self) -> String {
        let mut text = String::new();
        for (k, who) in ["master", "sim", "bench", "machine"].iter().enumerate() {
            for (open, kind) in ["quiet", "polled"].iter().enumerate() {
                let cores = self.used[open][k] / self.seconds[open];
                text.push_str(&format!(" {who}_cpus_{kind}={cores:.2}"));
            }
        }
        for (open, kind) in ["quiet", "polled"].iter().enumerate() {
            let per_1k = self.used[open][0] * 1e6 / self.events[open].max(1) as f64;
            text.push_str(&format!(" master_ms_per_1k_tasks_{kind}={per_1k:.1}"));
        }
        text
    }
}

/// The RUNNING seen in `(from, to]` and the seconds of it, split by
/// whether the gate was shut ([0]) or open ([1]); `toggles` are the gate's
/// changes in order, the first its state from the start.
fn by_window(
    running_at: &[Instant],
    toggles: &[(Instant, bool)],
    from: Instant,
    to: Instant,
) -> ([usize; 2], [f64; 2]) {
    let state_at = |t: Instant| {
        let i = toggles.partition_point(|(at, _)| *at <= t);
        toggles
            .get(i.saturating_sub(1))
            .is_some_and(|(_, open)| *open)
    };
    let mut events = [0; 2];
    for &t in running_at.iter().filter(|&&t| t > from && t <= to) {
        events[usize::from(state_at(t))] += 1;
    }
    let mut seconds = [0.0; 2];
    let mut edges: Vec<Instant> = toggles
        .iter()
        .map(|(at, _)| *at)
        .filter(|&at| at > from && at < to)
        .collect();
    edges.insert(0, from);
    edges.push(to);
    for pair in edges.windows(2) {
        let open = state_at(pair[0]);
        seconds[usize::from(open)] += pair[1].duration_since(pair[0]).as_secs_f64();
    }
    (events, seconds)
}

/// Each polled window wholly inside `from..to` whose neighbours on both
/// sides are quiet windows wholly inside it too: its rate against the mean
/// of theirs, in percent. A drift of the placement's pace within the run
/// (it speeds up and slows down as the cluster fills) moves a window and
/// the mean of its two neighbours alike, so it cancels here, where it
/// biases the rates of all polled against all quiet windows by which kind
/// of window the run began with.
fn neighbour_changes(
    running_at: &[Instant],
    toggles: &[(Instant, bool)],
    from: Instant,
    to: Instant,
) -> Vec<f64> {
    // The windows wholly inside `from..to`: (polled, events per second).
    let windows: Vec<(bool, f64)> = toggles
        .windows(2)
        .filter(|w| w[0].0 >= from && w[1].0 <= to)
        .map(|w| {
            let (start, end) = (w[0].0, w[1].0);
            let events = running_at
                .iter()
                .filter(|&&t| t > start && t <= end)
                .count();
            (
                w[0].1,
                events as f64 / end.duration_since(start).as_secs_f64(),
            )
        })
        .collect();
    windows
        .windows(3)
        .filter(|w| w[1].0 && !w[0].0 && !w[2].0)
        .map(|w| (w[1].1 / ((w[0].1 + w[2].1) / 2.0) - 1.0) * 100.0)
        .collect()
}

/// The UI's first page of tasks (`/api/tasks?limit=100`, newest update
/// first) fetched 50 times from the master at rest, each whole: ms each.
fn first_page_ms(port: u16) -> anyhow::Result<Vec<f64>> {
    let mut buffer = vec![0; 1 << 16];
    let mut samples = Vec::with_capacity(50);
    for _ in 0..50 {
        let started = Instant::now();
        let read = fetch_and_drop(port, "/api/tasks?limit=100", false, &mut buffer)?;
        read.context("/api/tasks?limit=100 was not answered whole")?;
        samples.push(started.elapsed().as_secs_f64() * 1e3);
    }
    Ok(samples)
}

/// Samples of "finished here -> offered again" per agent.
#[derive(Default)]
struct Latency {
    finished_at: HashMap<String, Instant>,
    /// Agents offered again before the update of their task's end reached
    /// its framework (one slot per agent: any later offer is the freed
    /// slot): re-offered at once, counted as 0 ms when the update comes.
    offered_early: std::collections::HashSet<String>,
    samples_ms: Vec<f64>,
    measuring: bool,
    launched: usize,
    /// The agents' count: the first that many offers are first launches.
    agents: usize,
}

async fn churn(
    client: SchedulerClient,
    mut events: EventStream,
    latency: Arc<Mutex<Latency>>,
    duration: Duration,
    seed: usize,
    stop: Arc<AtomicBool>,
) {
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(200), events.recv()).await
        else {
            continue;
        };
        match event {
            Event::Offers(offers) => {
                let now = Instant::now();
                for offer in offers {
                    let agent = offer.agent_id.clone().unwrap_or_default().value;
                    {
                        let mut l = latency.lock().expect("latency");
                        match l.finished_at.remove(&agent) {
                            Some(at) if l.measuring => l
                                .samples_ms
                                .push(now.duration_since(at).as_secs_f64() * 1e3),
                            Some(_) => {}
                            None if l.launched >= l.agents => {
                                l.offered_early.insert(agent.clone());
                            }
                            None => {}
                        }
                        l.launched += 1;
                    }
                    n += 1;
                    // 0.5-1.5 x the mean run time, spread deterministically.
                    let spread = ((seed * 7919 + n * 104_729) % 1000) as f64 / 1000.0;
                    let ms = (duration.as_secs_f64() * 1e3 * (0.5 + spread)) as u64;
                    let (cpus, mem) = offer_cpus_mem(&offer);
                    let task = TaskBuilder::command(format!("c{seed}-{n}"), "churn", "true")
                        .cpus(cpus)
                        .mem(mem)
                        .label(agora_sim::DURATION_LABEL, ms.to_string())
                        .build_for_offer(&offer);
                    let client = client.clone();
                    tokio::spawn(async move {
                        let _ = client
                            .launch(offer.id.into_iter().collect(), vec![task], None)
                            .await;
                    });
                }
            }
            Event::Update(status) if status.state == Some(TaskState::TaskFinished as i32) => {
                if let Some(agent) = status.agent_id {
                    let mut l = latency.lock().expect("latency");
                    if l.offered_early.remove(&agent.value) {
                        if l.measuring {
                            l.samples_ms.push(0.0);
                        }
                    } else {
                        l.finished_at.insert(agent.value, Instant::now());
                    }
                }
            }
            _ => {}
        }
    }
}

fn offer_latency(bins: &Bins, k: &Knobs, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let _sweeper = Sweeper(dir.path().to_path_buf());
    let (master, port) = start_master(&bins.agora, dir.path());
    wait_serving(port)?;
    let sim = Sim::start(
        &bins.sim,
        dir.path(),
        &format!("127.0.0.1:{port}"),
        k.agents,
        "cpus:1;mem:1024",
    );
    sim.wait_registered(k.agents, None, Duration::from_secs(300))?;
    let latency = Arc::new(Mutex::new(Latency {
        agents: k.agents,
        ..Latency::default()
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let master_before = cpu_of(master.pid());
    let sim_before = sim.stats()?.cpu_seconds;
    let subscribed = AtomicUsize::new(0);
    runtime.block_on(async {
        for f in 0..k.frameworks {
            let info = FrameworkBuilder::new(format!("churn-{f}")).build();
            let (client, events) = SchedulerClient::connect(
                &format!("127.0.0.1:{port}"),
                info,
                SubscribeOptions::default(),
            )
            .await?;
            subscribed.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(churn(
                client,
                events,
                latency.clone(),
                k.offer_duration,
                f,
                stop.clone(),
            ));
        }
        anyhow::Ok(())
    })?;
    // Warm up for one mean run time, then measure.
    let warm = Instant::now();
    wait_for("warm-up", k.offer_duration + Duration::from_secs(5), || {
        (warm.elapsed() >= k.offer_duration).then_some(())
    })?;
    latency.lock().expect("latency").measuring = true;
    let measured = Instant::now();
    let launched_before = latency.lock().expect("latency").launched;
    wait_for(
        "the measuring window",
        k.offer_window + Duration::from_secs(5),
        || (measured.elapsed() >= k.offer_window).then_some(()),
    )?;
    let (mut samples, launched) = {
        let l = latency.lock().expect("latency");
        (l.samples_ms.clone(), l.launched - launched_before)
    };
    stop.store(true, Ordering::Relaxed);
    samples.sort_by(f64::total_cmp);
    let s = sim.stats()?;
    println!(
        "BENCH offer_latency agents={} frameworks={} churn_per_s={:.0} samples={} p50_ms={:.2} p99_ms={:.2} max_ms={:.1} target_p99_ms=50 {} sim_cpu_s={:.2} sim_rss_mb={:.0}",
        k.agents,
        subscribed.load(Ordering::Relaxed),
        launched as f64 / measured.elapsed().as_secs_f64(),
        samples.len(),
        percentile(&samples, 50.0),
        percentile(&samples, 99.0),
        samples.last().copied().unwrap_or(f64::NAN),
        usage_text("master", master.pid(), master_before),
        s.cpu_seconds - sim_before,
        s.rss_mb
    );
    if samples.is_empty() {
        bail!("no freed resources were re-offered");
    }
    Ok(())
}

fn failover(bins: &Bins, k: &Knobs, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let zk = runtime
        .block_on(agora_coord::testing::ZooKeeper::start())
        .context("zookeeper (Debian package) starts")?;
    let url = zk.unique_url("agora-bench-scale").to_string();
    let dir = tempfile::tempdir()?;
    let _sweeper = Sweeper(dir.path().to_path_buf());
    let _keep = KeepLogs(dir.path().to_path_buf());
    let session = k.zk_session.to_string();
    let mut masters: Vec<(Proc, u16)> = (0..3)
        .map(|n| {
            let port = free_port();
            let work = dir.path().join(format!("m{n}"));
            let proc = Proc::spawn_bin(
                &bins.agora,
                &[
                    "master",
                    "--ip",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                    "--work-dir",
                    work.to_str().expect("utf-8"),
                    "--zk",
                    &url,
                    "--zk-session-timeout",
                    &session,
                ],
                dir.path().join(format!("m{n}.log")),
            );
            (proc, port)
        })
        .collect();
    let leader_of = |masters: &[(Proc, u16)], not: Option<usize>| {
        masters.iter().enumerate().position(|(i, (_, port))| {
            Some(i) != not
                && get_json(*port, "/api/overview").is_ok_and(|o| o["master"]["elected"] == true)
        })
    };
    let leader = wait_for("a leader", Duration::from_secs(60), || {
        leader_of(&masters, None)
    })?;
    let sim = Sim::start(&bins.sim, dir.path(), &url, k.agents, "cpus:8;mem:16384");
    sim.wait_registered(k.agents, None, Duration::from_secs(300))?;
    let report = runtime.block_on(async {
        let info = FrameworkBuilder::new("failover").failover_timeout(Duration::from_secs(3600)).build();
        let (client, mut events) = SchedulerClient::connect(&url, info, SubscribeOptions::default()).await?;
        let placed = place(&client, &mut events, k.tasks, k.agents, Duration::from_secs(600)).await?;
        // A cluster in its steady state fails over: every status update
        // acknowledged. Killed at once, the leader took acknowledgements
        // in flight with it, and the tasks whose updates the agents then
        // deliver again were answered with the state of the update being
        // delivered (TASK_STARTING, as Mesos answers), RUNNING only after
        // another round trip per task.
        let sim_port = sim.port;
        let mut settling = tokio::task::spawn_blocking(move || -> anyhow::Result<(usize, Duration)> {
            let started = Instant::now();
            let first: Stats = serde_json::from_value(get_json(sim_port, "/stats")?)?;
            wait_for("every status update acknowledged", Duration::from_secs(120), || {
                let s: Stats = serde_json::from_value(get_json(sim_port, "/stats").ok()?).ok()?;
                (s.unacknowledged == 0).then_some(())
            })?;
            Ok((first.unacknowledged, started.elapsed()))
        });
        // The events are read meanwhile: the SDK acknowledges an update
        // once the application has taken it.
        let (unacknowledged, settled) = loop {
            tokio::select! {
                settled = &mut settling => break settled??,
                event = events.recv() => { event.context("event stream ended")?; }
            }
        };
        println!("failover: {unacknowledged} updates unacknowledged when the placement ended, all acknowledged {:.1} s later", settled.as_secs_f64());
        let rss = procfs::of(masters[leader].0.pid()).map_or(f64::NAN, |u| u.rss_mb());
        let killed = Instant::now();
        masters[leader].0.kill();
        // Beside the framework: when another master leads, and when every
        // simulated agent is registered with it.
        let ports: Vec<u16> = masters.iter().map(|m| m.1).collect();
        let (sim_port, agents) = (sim.port, k.agents);
        let watcher = tokio::task::spawn_blocking(move || -> anyhow::Result<(Duration, Duration)> {
            let (elected, new_id) = wait_for("a new leader", Duration::from_secs(120), || {
                ports.iter().enumerate().filter(|(i, _)| *i != leader).find_map(|(_, port)| {
                    let o = get_json(*port, "/api/overview").ok()?;
                    let id = o["master"]["id"].as_str()?.to_string();
                    (o["master"]["elected"] == true).then(|| (killed.elapsed(), id))
                })
            })?;
            wait_for("every agent re-registered", Duration::from_secs(300), || {
                let s: Stats = serde_json::from_value(get_json(sim_port, "/stats").ok()?).ok()?;
                (s.registered_by_master.get(&new_id) == Some(&agents)).then_some(())
            })?;
            Ok((elected, killed.elapsed()))
        });
        // The framework re-subscribes (to the new leader: the old one is
        // dead), then reconciles the tasks not yet answered TASK_RUNNING,
        // as Mesos' reconciliation guide asks: again only once answers
        // stopped coming for a second (asking for 100,000 tasks every
        // second while the answers were still arriving queued a million
        // events and the master rightly dropped the stream as stuck).
        let mut answered = std::collections::HashSet::new();
        let mut timeline: Vec<usize> = Vec::new();
        let mut other_updates = 0_usize;
        let mut resubscribed = false;
        let mut resubscribed_at = None;
        let mut asks = 0_usize;
        let mut reconnected = false;
        let mut last_answer = tokio::time::Instant::now();
        let mut asked = false;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
        while answered.len() < placed.launched {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => bail!("reconciliation timed out: {} of {}", answered.len(), placed.launched),
                _ = tick.tick(), if resubscribed && (!asked || last_answer.elapsed() >= Duration::from_secs(1)) => {
                    asked = true;
                    asks += 1;
                    last_answer = tokio::time::Instant::now();
                    let missing: Vec<_> = (0..placed.launched)
                        .map(|i| format!("t-{i}"))
                        .filter(|t| !answered.contains(t))
                        .map(|t| (agora_scheduler::proto::TaskId { value: t }, None))
                        .collect();
                    // Not awaited here: the events keep being read while
                    // the master takes the call (awaiting it stopped the
                    // reading, the SDK's buffer filled, and the master's
                    // stream to the framework piled up to its cap).
                    let asker = client.clone();
                    tokio::spawn(async move { asker.reconcile(missing).await });
                }
                event = events.recv() => match event.context("event stream ended")? {
                    Event::Disconnected { .. } => reconnected = true,
                    Event::Subscribed { .. } if reconnected => {
                        resubscribed = true;
                        resubscribed_at.get_or_insert_with(|| killed.elapsed());
                        asked = false;
                    }
                    Event::Update(status) if resubscribed && status.state == Some(TaskState::TaskRunning as i32) => {
                        last_answer = tokio::time::Instant::now();
                        if answered.insert(status.task_id.unwrap_or_default().value) {
                            // The timeline: new answers per second since the kill.
                            let second = killed.elapsed().as_secs() as usize;
                            if timeline.len() <= second {
                                timeline.resize(second + 1, 0);
                            }
                            timeline[second] += 1;
                        }
                    }
                    Event::Update(_) => other_updates += 1,
                    _ => {}
                },
            }
        }
        let reconciled = killed.elapsed();
        println!("failover answers per second since the kill: {timeline:?}; other updates: {other_updates}");
        let (elected, reregistered) = watcher.await??;
        let resubscribed = resubscribed_at.unwrap_or(reconciled);
        anyhow::Ok((placed.launched, rss, elected, reregistered, resubscribed, asks, reconciled))
    })?;
    let (tasks, rss, elected, reregistered, resubscribed, asks, reconciled) = report;
    let s = sim.stats()?;
    println!(
        "BENCH failover agents={} tasks={tasks} zk_session_s={} elected_ms={:.0} reregistered_ms={:.0} resubscribed_ms={:.0} reconciled_ms={:.0} asks={asks} target_ms={} master_rss_before_mb={rss:.0} sim_rss_mb={:.0}",
        k.agents,
        k.zk_session,
        elected.as_secs_f64() * 1e3,
        reregistered.as_secs_f64() * 1e3,
        resubscribed.as_secs_f64() * 1e3,
        reconciled.as_secs_f64() * 1e3,
        k.zk_session * 1000 + 5000,
        s.rss_mb
    );
    drop(masters);
    Ok(())
}

/// Copies the `*.log` files of a bench's directory to
/// `AGORA_BENCH_KEEP_LOGS` when dropped (a failed run's too), for a
/// timeline of the failover.
struct KeepLogs(PathBuf);

impl Drop for KeepLogs {
    fn drop(&mut self) {
        let Ok(keep) = std::env::var("AGORA_BENCH_KEEP_LOGS") else {
            return;
        };
        let _ = std::fs::create_dir_all(&keep);
        for entry in std::fs::read_dir(&self.0).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                let _ = std::fs::copy(&path, Path::new(&keep).join(entry.file_name()));
            }
        }
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("scale bench failed: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    // `cargo test --benches` runs this too: keep that a quick smoke run.
    let full = std::env::args().any(|a| a == "--bench");
    let k = Knobs {
        full,
        agents: env_usize("AGORA_BENCH_AGENTS", if full { 10_000 } else { 50 }),
        tasks: env_usize("AGORA_BENCH_TASKS", if full { 100_000 } else { 500 }),
        frameworks: env_usize("AGORA_BENCH_FRAMEWORKS", if full { 100 } else { 4 }),
        runs: env_usize("AGORA_BENCH_RUNS", if full { 3 } else { 1 }),
        offer_duration: Duration::from_secs(env_usize(
            "AGORA_BENCH_OFFER_DURATION_S",
            if full { 20 } else { 1 },
        ) as u64),
        offer_window: Duration::from_secs(env_usize(
            "AGORA_BENCH_OFFER_WINDOW_S",
            if full { 20 } else { 2 },
        ) as u64),
        zk_session: env_usize("AGORA_BENCH_ZK_SESSION", 4) as u64,
    };
    let bins = Bins {
        agora: agora_binary(k.full)?,
        sim: sim_binary(k.full)?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if selected("register") {
        register(&bins, &k)?;
    }
    if selected("placement") {
        placement(&bins, &k, &runtime)?;
    }
    if selected("placement_alternating") {
        placement_alternating(&bins, &k, &runtime)?;
    }
    if selected("offer_latency") {
        offer_latency(&bins, &k, &runtime)?;
    }
    if selected("failover") {
        failover(&bins, &k, &runtime)?;
    }
    if selected("busy_reads") {
        busy_reads::busy_reads(&bins, &k, &runtime)?;
    }
    Ok(())
}
