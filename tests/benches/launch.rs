//! Launch-path benchmarks on real processes: a release-built master and one
//! local agent on 127.0.0.1, driven by a framework written against the SDK.
//!
//! Scenarios (one `BENCH ...` line each, stable keys so runs can be compared):
//!
//! * `spawn_baseline`: the floor under every launch, fork/exec + wait of
//!   `agora executor` (exits at once without its environment, after the
//!   runtime is up) and of `/bin/sh -c true`.
//! * `accept_to_running`: from sending ACCEPT (one LAUNCH of one `true`
//!   task) to the framework receiving TASK_RUNNING for it; sequential
//!   launches, each on a fresh offer, the previous task finished first.
//! * `batch_<N>`: N short tasks (`true`) launched as fast as offers allow,
//!   as many per ACCEPT as fit; launches/s from the first ACCEPT until all N
//!   are TASK_FINISHED, and the time until all were RUNNING.
//!
//! `cargo bench -p agora-e2e --bench launch` builds the daemons in release
//! (`cargo build --release -p agora-cli --bin agora`) and runs the full
//! counts. Without `--bench` (`cargo test --benches`) it is a smoke run: debug
//! daemons and small counts. Environment knobs:
//! `AGORA_BENCH_LAUNCHES` (300), `AGORA_BENCH_WARMUP` (5),
//! `AGORA_BENCH_BATCHES` (5), `AGORA_BENCH_BATCH_TASKS` (1000),
//! `AGORA_BENCH_DEADLINE_S` (600, for everything after the build),
//! `AGORA_BENCH_BIN` (an absolute path: use this `agora` binary instead of
//! building one), `AGORA_BENCH_LOG` (daemon log filter, default `info`),
//! `AGORA_BENCH_KEEP=1` (keep the work dir and logs, printed at the end),
//! `AGORA_BENCH_ISOLATION` (the agent's `--isolation`; unset: the agent's
//! default, cgroups where the machine allows), `AGORA_BENCH_WORK_DIR` (the
//! directory to create the work dir in, e.g. a tmpfs to take the disk out
//! of the figures; unset: the system's temp dir), `AGORA_BENCH_SECURE=1`
//! (the whole secure set-up of `docs/security.md`: TLS on the master's and
//! the agent's ports from a throw-away CA, frameworks, agents and HTTP
//! authenticated, and ACLs that check every subscription and launch; the
//! framework connects with its credential over TLS).
//!
//! `INFO` lines add per-run detail, among it the CPU time per task of the
//! master, the agent, the framework (this process) and the rest of the
//! machine (executors, tasks, other load), from `/proc`.
//!
//! Every process the bench starts (master, agent, and whatever the agent
//! started under the bench's work dir: executors and tasks) is stopped by
//! pid at the end, also on failure.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agora_e2e::{agora_binary, free_port, get_json, http_get, wait_for};
use agora_scheduler::proto::{Filters, Offer, OfferId, TaskInfo, TaskState};
use agora_scheduler::{
    Event, EventStream, FrameworkBuilder, SchedulerClient, SubscribeOptions, TaskBuilder,
    is_terminal, offer_cpus_mem,
};
use anyhow::{Context, bail};

/// The agent has room for far more than any scenario keeps running at once.
const AGENT_RESOURCES: &str = "cpus:64;mem:65536";
/// Size of every benchmark task: 640 fit in the agent at once.
const TASK_CPUS: f64 = 0.1;
const TASK_MEM: f64 = 32.0;
/// Slack for floating-point resource arithmetic.
const EPSILON: f64 = 1e-6;
/// The longest any single wait (an offer, an update) may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// Samples for the spawn baseline.
const SPAWN_SAMPLES: usize = 50;

struct Config {
    full: bool,
    launches: usize,
    warmup: usize,
    batches: usize,
    batch_tasks: usize,
    deadline_after: Duration,
    deadline: Instant,
    log: String,
    keep: bool,
    /// The agent's `--isolation`; `None` leaves the agent's default.
    isolation: Option<String>,
    /// Where the work dir (daemons' work dirs, sandboxes) is created;
    /// `None`: the system's temp dir.
    work_parent: Option<PathBuf>,
    /// TLS, authentication and ACLs on (`AGORA_BENCH_SECURE=1`).
    secure: bool,
}

fn env_usize(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .with_context(|| format!("{name}={v} is not a count")),
        Err(_) => Ok(default),
    }
}

impl Config {
    fn from_env() -> anyhow::Result<Config> {
        // `cargo bench` passes `--bench` to harness-less benches; `cargo test
        // --benches` does not.
        let full = std::env::args().any(|a| a == "--bench");
        let (launches, batches, batch_tasks) = if full { (300, 5, 1000) } else { (20, 1, 100) };
        let deadline_s = env_usize("AGORA_BENCH_DEADLINE_S", 600)?;
        Ok(Config {
            full,
            launches: env_usize("AGORA_BENCH_LAUNCHES", launches)?.max(1),
            warmup: env_usize("AGORA_BENCH_WARMUP", 5)?,
            batches: env_usize("AGORA_BENCH_BATCHES", batches)?.max(1),
            batch_tasks: env_usize("AGORA_BENCH_BATCH_TASKS", batch_tasks)?.max(1),
            deadline_after: Duration::from_secs(deadline_s as u64),
            deadline: Instant::now() + Duration::from_secs(deadline_s as u64),
            log: std::env::var("AGORA_BENCH_LOG").unwrap_or_else(|_| "info".into()),
            keep: std::env::var("AGORA_BENCH_KEEP").is_ok_and(|v| v == "1"),
            isolation: std::env::var("AGORA_BENCH_ISOLATION")
                .ok()
                .filter(|v| !v.trim().is_empty()),
            work_parent: std::env::var_os("AGORA_BENCH_WORK_DIR").map(PathBuf::from),
            secure: std::env::var("AGORA_BENCH_SECURE").is_ok_and(|v| v == "1"),
        })
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

fn main() {
    // libtest-style filter arguments (`cargo bench -- foo`) are ignored.
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("launch bench: {e:#}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(config) {
        eprintln!("launch bench failed: {e:#}");
        std::process::exit(1);
    }
}

fn run(mut config: Config) -> anyhow::Result<()> {
    let bin = agora_binary(config.full)?;
    // The global deadline counts from here, not from before the build.
    config.deadline = Instant::now() + config.deadline_after;
    let config = &config;
    let profile = if config.full { "release" } else { "debug" };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "BENCH-CONFIG daemons={profile} bin={} cores={cores} launches={} warmup={} batches={} batch_tasks={} task=cpus:{TASK_CPUS};mem:{TASK_MEM} agent={AGENT_RESOURCES} isolation={} work_dir={} secure={}",
        bin.display(),
        config.launches,
        config.warmup,
        config.batches,
        config.batch_tasks,
        config.isolation.as_deref().unwrap_or("default"),
        config
            .work_parent
            .as_deref()
            .map_or("temp".into(), |p| p.display().to_string()),
        config.secure,
    );

    spawn_baseline(&bin)?;

    let cluster = BenchCluster::start(&bin, config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let pids = Pids {
        master: cluster.master.child.id(),
        agent: cluster.agent.child.id(),
    };
    let outcome = runtime.block_on(scenarios(config, &cluster, pids));
    // The SDK's background tasks go with the runtime, before the daemons.
    runtime.shutdown_timeout(Duration::from_secs(5));
    if outcome.is_err() {
        eprintln!("logs: {}", cluster.dir.path().display());
        eprintln!("--- master log tail ---\n{}", tail(&cluster.master.log, 30));
        eprintln!("--- agent log tail ---\n{}", tail(&cluster.agent.log, 30));
    }
    if config.keep {
        let dir = cluster.stop();
        println!("work dir kept: {}", dir.keep().display());
    }
    outcome
}

/// A process the bench started; killed by its pid when dropped.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn spawn(bin: &Path, args: &[&str], log: PathBuf, filter: &str) -> anyhow::Result<Daemon> {
        let file = std::fs::File::create(&log).context("log file")?;
        let child = Command::new(bin)
            .args(args)
            .env("AGORA_LOG", filter)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Daemon { child, log })
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A release master and one agent on 127.0.0.1 with free ports.
struct BenchCluster {
    // Drop order: daemons first (explicitly, in `Drop`), the directory last.
    master: Daemon,
    agent: Daemon,
    master_port: u16,
    dir: tempfile::TempDir,
    /// TLS, credentials and ACLs (`AGORA_BENCH_SECURE=1`).
    security: Option<Security>,
}

impl BenchCluster {
    fn start(bin: &Path, config: &Config) -> anyhow::Result<BenchCluster> {
        let dir = match &config.work_parent {
            Some(parent) => tempfile::tempdir_in(parent)
                .with_context(|| format!("a work dir under {}", parent.display()))?,
            None => tempfile::tempdir()?,
        };
        let security = if config.secure {
            Some(Security::create(dir.path())?)
        } else {
            None
        };
        let master_port = free_port();
        let port = master_port.to_string();
        let work = dir.path().join("master");
        let mut args = vec![
            "master".to_string(),
            "--ip".into(),
            "127.0.0.1".into(),
            "--port".into(),
            port,
            "--work-dir".into(),
            path_str(&work)?.into(),
        ];
        if let Some(security) = &security {
            args.extend(security.master_args()?);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let master = Daemon::spawn(bin, &args, dir.path().join("master.log"), &config.log)?;
        if security.is_some() {
            // The port speaks TLS only; the framework's first offer shows
            // that master and agent are up.
            wait_for("master port", Duration::from_secs(30), || {
                std::net::TcpStream::connect(("127.0.0.1", master_port)).ok()
            })?;
        } else {
            wait_for("master /health", Duration::from_secs(30), || {
                http_get(master_port, "/health")
                    .ok()
                    .filter(|(c, _)| *c == 200)
            })?;
        }
        let agent_port = free_port().to_string();
        let agent_work = dir.path().join("agent");
        let master_address = format!("127.0.0.1:{master_port}");
        let mut args = vec![
            "agent".to_string(),
            "--master".into(),
            master_address,
            "--ip".into(),
            "127.0.0.1".into(),
            "--port".into(),
            agent_port,
            "--work-dir".into(),
            path_str(&agent_work)?.into(),
            "--resources".into(),
            AGENT_RESOURCES.into(),
        ];
        if let Some(isolation) = &config.isolation {
            args.extend(["--isolation".into(), isolation.clone()]);
        }
        if let Some(security) = &security {
            args.extend(security.agent_args()?);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let agent = Daemon::spawn(bin, &args, dir.path().join("agent.log"), &config.log)?;
        let cluster = BenchCluster {
            master,
            agent,
            master_port,
            dir,
            security,
        };
        if cluster.security.is_some() {
            return Ok(cluster);
        }
        wait_for("the agent to be active", Duration::from_secs(30), || {
            let state = get_json(master_port, "/state").ok()?;
            state["agents"]
                .as_array()?
                .iter()
                .any(|a| a["active"] == true)
                .then_some(())
        })?;
        Ok(cluster)
    }

    fn master_address(&self) -> String {
        match self.security {
            Some(_) => format!("https://127.0.0.1:{}", self.master_port),
            None => format!("127.0.0.1:{}", self.master_port),
        }
    }

    /// How the framework subscribes: its credential and the CA, when secure.
    fn subscribe_options(&self) -> anyhow::Result<SubscribeOptions> {
        let mut options = SubscribeOptions::default();
        if let Some(security) = &self.security {
            options.credential = Some(agora_auth::credentials::Credential::new(
                FRAMEWORK_PRINCIPAL,
                SECRET,
            ));
            options.tls = Some(
                agora_tls::ClientTls::from_ca(&security.pki.ca)
                    .map_err(|e| anyhow::anyhow!("the bench CA: {e}"))?,
            );
        }
        Ok(options)
    }

    /// Stops everything and hands the work directory over.
    fn stop(mut self) -> tempfile::TempDir {
        self.stop_processes();
        let dir = tempfile::tempdir().expect("a temp dir for the swap");
        std::mem::replace(&mut self.dir, dir)
    }

    fn stop_processes(&mut self) {
        self.agent.stop();
        self.master.stop();
        kill_processes_under(self.dir.path());
    }
}

impl Drop for BenchCluster {
    fn drop(&mut self) {
        self.stop_processes();
    }
}

/// The framework's and the agent's principals in the secure set-up, and
/// the one secret both use.
const FRAMEWORK_PRINCIPAL: &str = "launch-bench";
const AGENT_PRINCIPAL: &str = "bench-agent";
const SECRET: &str = "bench-secret-not-for-production";

/// The secure set-up of `docs/security.md`, in the bench's work dir: a
/// throw-away CA with a certificate for 127.0.0.1, a credentials file, the
/// agent's own credential, and ACLs that decide every subscription and
/// launch by rule (none falls through to `permissive`).
struct Security {
    pki: agora_tls::DevPki,
    credentials: PathBuf,
    agent_credential: PathBuf,
    acls: PathBuf,
}

impl Security {
    fn create(dir: &Path) -> anyhow::Result<Security> {
        let pki = agora_tls::dev_pki(&dir.join("pki"))
            .map_err(|e| anyhow::anyhow!("the bench PKI: {e}"))?;
        let credentials = dir.join("credentials.json");
        std::fs::write(
            &credentials,
            serde_json::json!({"credentials": [
                {"principal": FRAMEWORK_PRINCIPAL, "secret": SECRET},
                {"principal": AGENT_PRINCIPAL, "secret": SECRET},
            ]})
            .to_string(),
        )?;
        let agent_credential = dir.join("agent-credential.json");
        std::fs::write(
            &agent_credential,
            serde_json::json!({"principal": AGENT_PRINCIPAL, "secret": SECRET}).to_string(),
        )?;
        let acls = dir.join("acls.json");
        std::fs::write(
            &acls,
            serde_json::json!({
                "permissive": false,
                "register_frameworks": [
                    {"principals": {"values": [FRAMEWORK_PRINCIPAL]}, "roles": {"type": "ANY"}}
                ],
                "run_tasks": [
                    {"principals": {"values": [FRAMEWORK_PRINCIPAL]}, "users": {"type": "ANY"}}
                ],
                "register_agents": [
                    {"principals": {"values": [AGENT_PRINCIPAL]}, "agents": {"type": "ANY"}}
                ],
                "teardown_frameworks": [
                    {"principals": {"values": [FRAMEWORK_PRINCIPAL]}, "framework_principals": {"type": "ANY"}}
                ]
            })
            .to_string(),
        )?;
        Ok(Security {
            pki,
            credentials,
            agent_credential,
            acls,
        })
    }

    fn tls_args(&self) -> anyhow::Result<Vec<String>> {
        Ok(vec![
            "--tls-cert".into(),
            path_str(&self.pki.server_cert)?.into(),
            "--tls-key".into(),
            path_str(&self.pki.server_key)?.into(),
            "--tls-ca".into(),
            path_str(&self.pki.ca)?.into(),
        ])
    }

    fn master_args(&self) -> anyhow::Result<Vec<String>> {
        let mut args = self.tls_args()?;
        args.extend([
            "--credentials".into(),
            path_str(&self.credentials)?.into(),
            "--authenticate-frameworks".into(),
            "--authenticate-agents".into(),
            "--authenticate-http-readonly".into(),
            "--authenticate-http-readwrite".into(),
            "--acls".into(),
            path_str(&self.acls)?.into(),
        ]);
        Ok(args)
    }

    fn agent_args(&self) -> anyhow::Result<Vec<String>> {
        let mut args = self.tls_args()?;
        args.extend([
            "--credential".into(),
            path_str(&self.agent_credential)?.into(),
        ]);
        Ok(args)
    }
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str().context("the temp path is not UTF-8")
}

/// Kills (by pid) every process whose working directory lies under `dir`:
/// the executors and tasks the bench's agent started in their sandboxes.
/// Executors run in their own sessions so that they outlive agent restarts;
/// one whose agent is gone would otherwise wait for it for minutes.
fn kill_processes_under(dir: &Path) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    let me = std::process::id();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if pid as u32 == me {
            continue;
        }
        let Ok(cwd) = std::fs::read_link(entry.path().join("cwd")) else {
            continue;
        };
        if cwd.starts_with(dir)
            && let Some(pid) = rustix::process::Pid::from_raw(pid)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted_ms(samples: &[Duration]) -> Vec<f64> {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    ms
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// CPU time (user + system) used so far, in ms, by the master, the agent,
/// this process (the framework), and the whole machine (busy, all cores).
#[derive(Clone, Copy)]
struct CpuSnapshot {
    at: Instant,
    master: f64,
    agent: f64,
    /// The agent's executor supervisor, keeper and worker (0 when
    /// executors are processes).
    supervisor: f64,
    framework: f64,
    machine_busy: f64,
}

/// The agent's `agora supervisor` processes: its keeper (the agent's
/// child) and the keeper's worker, which hosts the executors. Empty when
/// executors are processes.
fn supervisor_pids(agent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    // (pid, parent, is a supervisor process)
    let processes: Vec<(u32, u32, bool)> = entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let parent: u32 = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let supervisor = cmdline.split(|b| *b == 0).nth(1) == Some(b"supervisor".as_slice());
            Some((pid, parent, supervisor))
        })
        .collect();
    let keepers: Vec<u32> = processes
        .iter()
        .filter(|(_, parent, supervisor)| *parent == agent && *supervisor)
        .map(|(pid, _, _)| *pid)
        .collect();
    let workers = processes
        .iter()
        .filter(|(_, parent, supervisor)| *supervisor && keepers.contains(parent))
        .map(|(pid, _, _)| *pid);
    keepers.iter().copied().chain(workers).collect()
}

/// Pids of the daemons whose CPU time is reported.
#[derive(Clone, Copy)]
struct Pids {
    master: u32,
    agent: u32,
}

/// `/proc` reports CPU times in USER_HZ ticks, 100 per second on Linux.
const MS_PER_TICK: f64 = 10.0;

/// utime + stime of a process from `/proc/<pid>/stat`, in ms.
fn process_cpu_ms(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // Fields after the command (which may hold spaces) start at field 3.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return f64::NAN;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    match (tick(11), tick(12)) {
        (Some(user), Some(system)) => (user + system) * MS_PER_TICK,
        _ => f64::NAN,
    }
}

/// Busy time of all cores from `/proc/stat`, in ms.
fn machine_busy_ms() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return f64::NAN;
    };
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return f64::NAN;
    };
    let ticks: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let busy: f64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| ticks.get(i))
        .sum();
    busy * MS_PER_TICK
}

impl CpuSnapshot {
    fn take(pids: Pids) -> CpuSnapshot {
        CpuSnapshot {
            at: Instant::now(),
            master: process_cpu_ms(&pids.master.to_string()),
            agent: process_cpu_ms(&pids.agent.to_string()),
            supervisor: supervisor_pids(pids.agent)
                .iter()
                .map(|pid| process_cpu_ms(&pid.to_string()))
                .sum(),
            framework: process_cpu_ms("self"),
            machine_busy: machine_busy_ms(),
        }
    }

    /// CPU ms per task between `self` and `later`, per component; `rest`
    /// is everything else on the machine (executor processes, tasks, other load),
    /// and `busy_cores` how many cores were busy on average.
    fn report(&self, later: &CpuSnapshot, tasks: usize) -> String {
        let per = |a: f64, b: f64| (b - a) / tasks as f64;
        let master = per(self.master, later.master);
        let agent = per(self.agent, later.agent);
        let supervisor = per(self.supervisor, later.supervisor);
        let framework = per(self.framework, later.framework);
        let machine = per(self.machine_busy, later.machine_busy);
        let wall_ms = (later.at - self.at).as_secs_f64() * 1000.0;
        format!(
            "cpu_ms_per_task master={master:.2} agent={agent:.2} supervisor={supervisor:.2} framework={framework:.2} rest={:.2} busy_cores={:.2}",
            machine - master - agent - supervisor - framework,
            (later.machine_busy - self.machine_busy) / wall_ms,
        )
    }
}

/// fork/exec + wait of the two programs every launch starts.
fn spawn_baseline(bin: &Path) -> anyhow::Result<()> {
    let time = |program: &Path, args: &[&str]| -> anyhow::Result<Vec<f64>> {
        let mut samples = Vec::with_capacity(SPAWN_SAMPLES);
        for _ in 0..SPAWN_SAMPLES {
            let start = Instant::now();
            Command::new(program)
                .args(args)
                .env_remove("AGORA_AGENT_ENDPOINT")
                .env("AGORA_LOG", "off")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .with_context(|| format!("running {}", program.display()))?;
            samples.push(start.elapsed());
        }
        Ok(sorted_ms(&samples))
    };
    let executor = time(bin, &["executor"])?;
    let shell = time(Path::new("/bin/sh"), &["-c", "true"])?;
    println!(
        "BENCH spawn_baseline agora_executor_p50_ms={:.2} agora_executor_p99_ms={:.2} sh_true_p50_ms={:.2} sh_true_p99_ms={:.2} samples={SPAWN_SAMPLES}",
        percentile(&executor, 0.5),
        percentile(&executor, 0.99),
        percentile(&shell, 0.5),
        percentile(&shell, 0.99),
    );
    Ok(())
}

/// The framework's view: its event stream and the offers it holds.
struct Framework {
    client: SchedulerClient,
    events: EventStream,
    /// Offers held (never declined, so no offer churn), by offer id.
    offers: BTreeMap<String, Offer>,
}

/// What an event meant for the scenario waiting on it.
enum Step {
    Offers,
    Update(String, TaskState, Instant),
    Other,
}

impl Framework {
    async fn subscribe(master: &str, options: SubscribeOptions) -> anyhow::Result<Framework> {
        let mut info = FrameworkBuilder::new("launch-bench")
            .failover_timeout(Duration::from_secs(60))
            .build();
        if let Some(credential) = &options.credential {
            info.principal = Some(credential.principal.to_string());
        }
        let (client, mut events) = SchedulerClient::connect(master, info, options).await?;
        match tokio::time::timeout(STEP_TIMEOUT, events.recv()).await {
            Ok(Some(Event::Subscribed { .. })) => {}
            other => bail!("expected SUBSCRIBED first, got {other:?}"),
        }
        Ok(Framework {
            client,
            events,
            offers: BTreeMap::new(),
        })
    }

    /// The next event, bounded by the step timeout and the global deadline.
    async fn next(&mut self, config: &Config) -> anyhow::Result<Step> {
        let limit = STEP_TIMEOUT.min(config.remaining());
        let event = tokio::time::timeout(limit, self.events.recv())
            .await
            .map_err(|_| {
                if config.remaining().is_zero() {
                    anyhow::anyhow!("the global deadline (AGORA_BENCH_DEADLINE_S) passed")
                } else {
                    anyhow::anyhow!("no event from the master within {limit:?}")
                }
            })?
            .context("the subscription ended")?;
        let at = Instant::now();
        Ok(match event {
            Event::Offers(offers) => {
                for offer in offers {
                    let id = offer
                        .id
                        .as_ref()
                        .map(|i| i.value.clone())
                        .unwrap_or_default();
                    self.offers.insert(id, offer);
                }
                Step::Offers
            }
            Event::Rescind(offer_id) => {
                self.offers.remove(&offer_id.value);
                Step::Other
            }
            Event::Update(status) => {
                let id = status
                    .task_id
                    .as_ref()
                    .map(|t| t.value.clone())
                    .unwrap_or_default();
                let state = TaskState::try_from(status.state.unwrap_or_default())
                    .unwrap_or(TaskState::TaskUnknown);
                if is_terminal(state) && state != TaskState::TaskFinished {
                    bail!(
                        "task {id} ended {}: {}",
                        state.as_str_name(),
                        status.message.unwrap_or_default()
                    );
                }
                Step::Update(id, state, at)
            }
            Event::Error(message) => bail!("the master ended the subscription: {message}"),
            Event::Disconnected { reason } => bail!("disconnected from the master: {reason}"),
            _ => Step::Other,
        })
    }

    /// Waits until at least one offer is held. Updates that arrive
    /// meanwhile belong to tasks already counted (e.g. a re-sent update) and
    /// are dropped; failures still end the run (see [`Framework::next`]).
    async fn wait_offer(&mut self, config: &Config) -> anyhow::Result<()> {
        while self.offers.is_empty() {
            self.next(config).await?;
        }
        Ok(())
    }

    /// How many benchmark tasks fit in all held offers together (all are
    /// from the one agent).
    fn fit(&self) -> usize {
        let (cpus, mem) = self
            .offers
            .values()
            .map(offer_cpus_mem)
            .fold((0.0, 0.0), |(c, m), (oc, om)| (c + oc, m + om));
        ((cpus + EPSILON) / TASK_CPUS)
            .floor()
            .min(((mem + EPSILON) / TASK_MEM).floor())
            .max(0.0) as usize
    }

    /// Takes every held offer: their ids and a template offer for the tasks.
    fn take_offers(&mut self) -> (Vec<OfferId>, Offer) {
        let offers: Vec<Offer> = std::mem::take(&mut self.offers).into_values().collect();
        let ids = offers.iter().filter_map(|o| o.id.clone()).collect();
        let template = offers.into_iter().next().unwrap_or_default();
        (ids, template)
    }

    /// ACCEPTs `offer_ids` with one LAUNCH of `tasks`; the unused rest comes
    /// back at once (refuse 0 s instead of the default 5 s).
    async fn launch(&self, offer_ids: Vec<OfferId>, tasks: Vec<TaskInfo>) -> anyhow::Result<()> {
        let filters = Filters {
            refuse_seconds: Some(0.0),
        };
        self.client
            .launch(offer_ids, tasks, Some(filters))
            .await
            .context("ACCEPT failed")
    }
}

fn task(id: &str, template: &Offer) -> TaskInfo {
    TaskBuilder::command(id, "launch-bench", "true")
        .cpus(TASK_CPUS)
        .mem(TASK_MEM)
        .build_for_offer(template)
}

async fn scenarios(config: &Config, cluster: &BenchCluster, pids: Pids) -> anyhow::Result<()> {
    let mut framework =
        Framework::subscribe(&cluster.master_address(), cluster.subscribe_options()?).await?;
    accept_to_running(config, &mut framework, pids).await?;
    batch(config, &mut framework, pids).await?;
    // All tasks have ended; leave cleanly.
    framework.client.teardown().await.context("TEARDOWN")?;
    Ok(())
}

async fn accept_to_running(config: &Config, fw: &mut Framework, pids: Pids) -> anyhow::Result<()> {
    let total = config.warmup + config.launches;
    let mut to_running = Vec::with_capacity(config.launches);
    let mut accept_call = Vec::with_capacity(config.launches);
    let mut to_finished = Vec::with_capacity(config.launches);
    let mut offer_wait = Vec::with_capacity(config.launches);
    let started = Instant::now();
    let mut cpu_before = CpuSnapshot::take(pids);
    for n in 0..total {
        if n == config.warmup {
            cpu_before = CpuSnapshot::take(pids);
        }
        if config.remaining().is_zero() {
            bail!("global deadline passed after {n} launches");
        }
        let waiting = Instant::now();
        fw.wait_offer(config).await?;
        let waited = waiting.elapsed();
        if fw.fit() == 0 {
            bail!("the offers cannot fit one task");
        }
        let (ids, template) = fw.take_offers();
        let id = format!("lat-{n}");
        let sent = Instant::now();
        fw.launch(ids, vec![task(&id, &template)]).await?;
        let answered = sent.elapsed();
        let mut running_at = None;
        let finished_at = loop {
            if let Step::Update(task_id, state, at) = fw.next(config).await?
                && task_id == id
            {
                match state {
                    TaskState::TaskRunning => running_at = Some(at),
                    TaskState::TaskFinished => break at,
                    _ => {}
                }
            }
        };
        let running_at =
            running_at.with_context(|| format!("{id} finished without TASK_RUNNING"))?;
        if n >= config.warmup {
            to_running.push(running_at - sent);
            to_finished.push(finished_at - sent);
            accept_call.push(answered);
            offer_wait.push(waited);
        }
    }
    let running = sorted_ms(&to_running);
    let call = sorted_ms(&accept_call);
    let finished = sorted_ms(&to_finished);
    let offers = sorted_ms(&offer_wait);
    let mean = running.iter().sum::<f64>() / running.len() as f64;
    println!(
        "BENCH accept_to_running p50_ms={:.2} p99_ms={:.2} p90_ms={:.2} max_ms={:.2} mean_ms={mean:.2} launches={} warmup={} accept_call_p50_ms={:.2} accept_call_p99_ms={:.2} accept_to_finished_p50_ms={:.2} next_offer_wait_p50_ms={:.2} elapsed_s={:.1}",
        percentile(&running, 0.5),
        percentile(&running, 0.99),
        percentile(&running, 0.9),
        percentile(&running, 1.0),
        running.len(),
        config.warmup,
        percentile(&call, 0.5),
        percentile(&call, 0.99),
        percentile(&finished, 0.5),
        percentile(&offers, 0.5),
        started.elapsed().as_secs_f64(),
    );
    let cpu_after = CpuSnapshot::take(pids);
    println!(
        "INFO accept_to_running {}",
        cpu_before.report(&cpu_after, running.len())
    );
    Ok(())
}

/// One batch's figures.
struct BatchRun {
    launches_per_s: f64,
    all_running: Duration,
    all_finished: Duration,
    accepts: usize,
}

async fn batch(config: &Config, fw: &mut Framework, pids: Pids) -> anyhow::Result<()> {
    let n = config.batch_tasks;
    let mut runs = Vec::with_capacity(config.batches);
    for b in 0..config.batches {
        let before = CpuSnapshot::take(pids);
        let run = one_batch(config, fw, &format!("batch{b}"), n).await?;
        let after = CpuSnapshot::take(pids);
        println!(
            "INFO batch_{n} run={b} launches_per_s={:.1} all_running_ms={:.1} all_finished_ms={:.1} accepts={} {}",
            run.launches_per_s,
            run.all_running.as_secs_f64() * 1000.0,
            run.all_finished.as_secs_f64() * 1000.0,
            run.accepts,
            before.report(&after, n),
        );
        runs.push(run);
        // Let the last executors exit before the next batch.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let rates: Vec<f64> = runs.iter().map(|r| r.launches_per_s).collect();
    let worst = rates.iter().copied().fold(f64::INFINITY, f64::min);
    let running: Vec<f64> = runs
        .iter()
        .map(|r| r.all_running.as_secs_f64() * 1000.0)
        .collect();
    println!(
        "BENCH batch_{n} tasks={n} median_launches_per_s={:.1} worst_launches_per_s={worst:.1} median_all_running_ms={:.1}",
        median(&rates),
        median(&running),
    );
    Ok(())
}

async fn one_batch(
    config: &Config,
    fw: &mut Framework,
    prefix: &str,
    n: usize,
) -> anyhow::Result<BatchRun> {
    let mut next = 0usize;
    let mut seen_running: HashSet<String> = HashSet::with_capacity(n);
    let mut finished: HashSet<String> = HashSet::with_capacity(n);
    let mut launched: HashSet<String> = HashSet::with_capacity(n);
    let mut first_accept: Option<Instant> = None;
    let mut all_running_at: Option<Instant> = None;
    let mut accepts = 0usize;
    let mut last_finished_at = Instant::now();
    fw.wait_offer(config).await?;
    loop {
        let fit = fw.fit();
        if next < n && fit > 0 {
            // Offers too small for one task are held and pooled with the
            // resources the next finished tasks free.
            let count = fit.min(n - next);
            let (ids, template) = fw.take_offers();
            let tasks: Vec<TaskInfo> = (next..next + count)
                .map(|i| {
                    let id = format!("{prefix}-{i}");
                    launched.insert(id.clone());
                    task(&id, &template)
                })
                .collect();
            first_accept.get_or_insert_with(Instant::now);
            fw.launch(ids, tasks).await?;
            accepts += 1;
            next += count;
        }
        if finished.len() == n {
            break;
        }
        if config.remaining().is_zero() {
            bail!(
                "global deadline passed in {prefix}: {} launched, {} running, {} finished",
                next,
                seen_running.len(),
                finished.len()
            );
        }
        if let Step::Update(id, state, at) = fw.next(config).await?
            && launched.contains(&id)
        {
            if state == TaskState::TaskRunning || state == TaskState::TaskFinished {
                seen_running.insert(id.clone());
                if seen_running.len() == n && all_running_at.is_none() {
                    all_running_at = Some(at);
                }
            }
            if state == TaskState::TaskFinished && finished.insert(id) {
                last_finished_at = at;
            }
        }
    }
    let end = last_finished_at;
    let start = first_accept.context("nothing was launched")?;
    let all_finished = end - start;
    Ok(BatchRun {
        launches_per_s: n as f64 / all_finished.as_secs_f64(),
        all_running: all_running_at.unwrap_or(end) - start,
        all_finished,
        accepts,
    })
}
