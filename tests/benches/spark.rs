//! Spark's count job (the Spark-on-Mesos guide's `test.py`: count the lines
//! containing 'a') per cluster manager, on real processes on 127.0.0.1.
//!
//! `cargo bench -p agora-e2e --bench spark -- [--runs N] [--lines N]
//! [--managers standalone,agora] [--workers N] [--cores-per-worker N]
//! [--worker-memory 1g] [--agent-memory 3072] [--executor-memory 512m]
//! [--warmups N] [--max-load 1.5] [--quiet-wait-s 600] [--keep]`
//!
//! Both managers are started (each with 2 workers of 1 core: 2 executors of
//! 1 core and 512 MB), then the machine is given up to `--quiet-wait-s`
//! (600) seconds for its 1-minute load average to fall under `--max-load`
//! (1.5); the load is recorded either way. Each manager then runs
//! `--warmups` (1) unmeasured job (reported as `cold`: for Agora it fills
//! the agents' fetcher caches), then the measured runs alternate between
//! the managers (standalone, agora, standalone, agora, ...), `--runs`
//! (default 5) each, all on one generated input of `--lines` lines (default
//! 6,000,000: ~300 MB, written once under `target/spark-bench/` and
//! reused). Every run's printed count is checked against the one computed
//! in Rust. Per run:
//!
//! * `wall`: spark-submit started -> exited;
//! * `context`: -> the driver's `Running Spark version` (SparkContext starts);
//! * `executors`: -> the last `Registered executor` the driver logs (all
//!   executors registered; the first one too);
//! * `ready`: -> `SchedulerBackend is ready for scheduling`;
//! * Agora only, `subscribed_to_running`: libmesos' `registered with the
//!   master` (the SUBSCRIBED event; RFC 3339 UTC) -> the driver's first
//!   `Mesos task N is now TASK_RUNNING`; and where that time goes: the
//!   sandboxes' fetcher lines (cache copy, extraction), the sandbox's
//!   creation, the executor JVM's first log line and its registration with
//!   the driver;
//!
//! then the median and the max of each (the max is the p99 for any N under
//! 100), and a summary against the design's targets. The driver's times
//! come from its log (log4j2 with epoch milliseconds, one conf dir per run;
//! the executors get the same log4j2 configuration) against the clock read
//! here when spark-submit started.
//!
//! The standalone workers, and so their executors, run from the executor
//! package extracted once. On Agora: a release `agora master` and one
//! release `agora agent` per worker (`--resources cpus:<cores>;mem:<agent
//! memory>`, default isolation, `--fetcher-cache-dir`), our release
//! `libmesos.so` as `MESOS_NATIVE_JAVA_LIBRARY`, `spark.executor.uri` = the
//! package served by a [`FileServer`], `spark.mesos.fetcherCache.enable`.
//! `AGORA_BENCH_BIN` and `AGORA_BENCH_LIBMESOS` name prebuilt artifacts
//! instead. Every process is in a process group killed on drop, and what
//! still works under the Agora cluster's directory (executors) is killed
//! by pid.
//!
//! Without `--bench` (running the binary by hand) it is a smoke run: one
//! run on 20,000 lines with debug daemons unless told otherwise. `test =
//! false` in Cargo.toml keeps it out of `cargo test`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use agora_e2e::spark::{
    Daemon, DriverTimeline, FileServer, PACKAGE_DIR, PACKAGE_FILE, SparkEnv, StandaloneCluster,
    StandaloneOptions, cached_test_input, epoch_ms, parse_count, workspace_root, write_conf,
    write_count_job,
};
use agora_e2e::{Sweeper, TestCgroups, free_port, get_json, http_get, run_with_deadline, wait_for};
use anyhow::{Context, bail, ensure};

/// The longest one spark-submit may take.
const RUN_DEADLINE: Duration = Duration::from_secs(600);
/// The Agora daemons' log filter: info, plus the two debug lines that place
/// a launch in time (the master taking the ACCEPT, the agent's executor
/// process up), two lines per executor.
const DEFAULT_AGORA_LOG: &str =
    "info,agora_master::state::launch=debug,agora_agent::shell::launching=debug";
/// The longest a cluster manager may take to be up.
const START_DEADLINE: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Manager {
    /// Spark's own standalone master and workers.
    Standalone,
    /// Agora's master and agents through our libmesos.
    Agora,
}

impl Manager {
    fn parse(name: &str) -> anyhow::Result<Manager> {
        match name {
            "standalone" => Ok(Manager::Standalone),
            "agora" => Ok(Manager::Agora),
            other => bail!("unknown manager {other:?} (standalone, agora)"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Manager::Standalone => "standalone",
            Manager::Agora => "agora",
        }
    }

    /// Starts the manager with room for `config.workers` executors.
    fn start(self, env: &SparkEnv, config: &Config) -> anyhow::Result<Box<dyn RunningManager>> {
        match self {
            Manager::Standalone => {
                let mut options = StandaloneOptions::new(
                    config.workers,
                    config.cores_per_worker,
                    &config.worker_memory,
                );
                options.worker_home = Some(env.executor_home()?);
                options.timeout = START_DEADLINE;
                Ok(Box::new(StandaloneCluster::start_with(env, &options)?))
            }
            Manager::Agora => Ok(Box::new(AgoraCluster::start(env, config)?)),
        }
    }
}

/// A started cluster manager, as a spark-submit sees it.
trait RunningManager {
    /// `--master` for spark-submit.
    fn master_url(&self) -> String;
    /// Anything else spark-submit needs for this manager (environment,
    /// `--conf`s), added before the application's arguments.
    fn prepare(&self, _submit: &mut Command) {}
    /// How a finished run's executors started, from the driver's log and
    /// the manager's side (copies of the executors' logs go to `run_dir`).
    fn inspect(&self, driver_log: &str, run_dir: &Path) -> Starts;
    /// Copies the manager's own logs into `dest`.
    fn save_logs(&self, _dest: &Path) {}
    /// A line about the manager after the runs (e.g. package downloads).
    fn summary(&self) -> Option<String> {
        None
    }
}

impl RunningManager for StandaloneCluster {
    fn master_url(&self) -> String {
        StandaloneCluster::master_url(self)
    }

    fn inspect(&self, driver_log: &str, run_dir: &Path) -> Starts {
        let mut starts = Starts::parse_driver(driver_log);
        let Some(app_id) = starts.id.clone() else {
            eprintln!("note: no application id in the driver log");
            return starts;
        };
        // <cluster>/worker-<n>/<app id>/<executor id>/stderr
        let mut files = Vec::new();
        find_files(self.dir.path(), "stderr", 3, &mut files);
        for stderr in files
            .into_iter()
            .filter(|f| f.iter().any(|part| part.to_str() == Some(app_id.as_str())))
        {
            let text = std::fs::read_to_string(&stderr).unwrap_or_default();
            let executor_dir = stderr.parent().map(Path::to_path_buf).unwrap_or_default();
            let name = executor_dir
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let _ = std::fs::write(run_dir.join(format!("executor-{name}-stderr")), &text);
            starts
                .executors
                .push(ExecutorSandbox::parse(&text, &executor_dir));
        }
        starts
    }

    fn save_logs(&self, dest: &Path) {
        for daemon in std::iter::once(&self.master).chain(&self.workers) {
            if let Some(name) = daemon.log.file_name() {
                let _ = std::fs::copy(&daemon.log, dest.join(name));
            }
        }
    }
}

/// Agora's master and agents (real `agora` processes), the file server the
/// agents fetch the executor package from, and the `libmesos.so` drivers
/// load.
struct AgoraCluster {
    /// Declared first: once [`Drop`] has killed the daemons, kills (by pid)
    /// whatever still works under the cluster's directory (executor JVMs
    /// and their Python workers), before the directory is removed.
    _sweeper: Sweeper,
    /// The agents' cgroups root, removed after the sweep.
    cgroups: TestCgroups,
    dir: tempfile::TempDir,
    master_port: u16,
    master: Daemon,
    agents: Vec<Daemon>,
    agent_dirs: Vec<PathBuf>,
    server: FileServer,
    package_url: String,
    libmesos: PathBuf,
}

impl AgoraCluster {
    fn start(env: &SparkEnv, config: &Config) -> anyhow::Result<AgoraCluster> {
        let bin = agora_e2e::agora_binary(config.release)?;
        let libmesos = agora_e2e::libmesos_library(config.release)?;
        let package = env.executor_package()?;
        let server = FileServer::start(package.parent().context("the package's directory")?)?;
        let package_url = server.url(PACKAGE_FILE);
        let dir = tempfile::Builder::new()
            .prefix("agora-spark-agora-")
            .tempdir()
            .context("creating the Agora cluster's directory")?;
        let master_port = free_port();
        let root = dir.path().to_path_buf();
        let daemon = |name: &str, args: &[String], log: &str| {
            let mut command = Command::new(&bin);
            command
                .args(args)
                .env("AGORA_LOG", &config.agora_log)
                .current_dir(&root);
            Daemon::spawn(name, command, root.join(log))
        };
        let path = |p: &Path| p.to_str().map(str::to_string).context("a non-UTF-8 path");
        let master = daemon(
            "agora master",
            &[
                "master".into(),
                "--ip".into(),
                "127.0.0.1".into(),
                "--port".into(),
                master_port.to_string(),
                "--work-dir".into(),
                path(&dir.path().join("master"))?,
            ],
            "master.log",
        )?;
        let mut cluster = AgoraCluster {
            _sweeper: Sweeper(dir.path().to_path_buf()),
            cgroups: TestCgroups::new("spark-bench"),
            master_port,
            master,
            agents: Vec::new(),
            agent_dirs: Vec::new(),
            server,
            package_url,
            libmesos,
            dir,
        };
        cluster.wait_up("master /health", || {
            http_get(master_port, "/health")
                .ok()
                .filter(|(code, _)| *code == 200)
                .map(|_| ())
        })?;
        let resources = format!(
            "cpus:{};mem:{}",
            config.cores_per_worker, config.agent_memory_mb
        );
        for n in 0..config.workers {
            let work_dir = cluster.dir.path().join(format!("agent-{n}"));
            let cache = cluster.dir.path().join(format!("cache-{n}"));
            let agent = daemon(
                &format!("agora agent {n}"),
                &[
                    "agent".into(),
                    "--master".into(),
                    format!("127.0.0.1:{master_port}"),
                    "--ip".into(),
                    "127.0.0.1".into(),
                    "--port".into(),
                    free_port().to_string(),
                    "--work-dir".into(),
                    path(&work_dir)?,
                    "--resources".into(),
                    resources.clone(),
                    "--fetcher-cache-dir".into(),
                    path(&cache)?,
                    // A cgroup of its own per agent: other runs' agents on
                    // this machine keep theirs.
                    "--cgroups-root".into(),
                    format!("{}/a{n}", cluster.cgroups.root),
                ],
                &format!("agent-{n}.log"),
            )?;
            cluster.agents.push(agent);
            cluster.agent_dirs.push(work_dir);
        }
        let workers = config.workers;
        cluster.wait_up(&format!("{workers} active agents"), || {
            let state = get_json(master_port, "/state").ok()?;
            let active = state["agents"]
                .as_array()?
                .iter()
                .filter(|a| a["active"] == true)
                .count();
            (active == workers).then_some(())
        })?;
        Ok(cluster)
    }

    /// Waits for `check`, failing at once (with the end of its log) if a
    /// daemon exits.
    fn wait_up(&self, what: &str, mut check: impl FnMut() -> Option<()>) -> anyhow::Result<()> {
        let mut dead = None;
        let waited = wait_for(what, START_DEADLINE, || {
            if let Some(daemon) = std::iter::once(&self.master)
                .chain(&self.agents)
                .find(|d| d.has_exited())
            {
                dead = Some(format!(
                    "{} exited; the end of {}:\n{}",
                    daemon.name,
                    daemon.log.display(),
                    daemon.log_tail(30)
                ));
                return Some(());
            }
            check()
        });
        if let Some(dead) = dead {
            bail!(dead);
        }
        waited
            .with_context(|| format!("the end of the master's log:\n{}", self.master.log_tail(30)))
    }

    /// The `stderr` files of the sandboxes of a framework's executors on
    /// every agent, with the agent's index.
    fn sandbox_logs(&self, framework_id: &str) -> Vec<(usize, PathBuf)> {
        let mut found = Vec::new();
        for (n, dir) in self.agent_dirs.iter().enumerate() {
            let mut files = Vec::new();
            find_files(dir, "stderr", 12, &mut files);
            found.extend(
                files
                    .into_iter()
                    .filter(|f| f.iter().any(|part| part.to_str() == Some(framework_id)))
                    .map(|f| (n, f)),
            );
        }
        found
    }
}

impl RunningManager for AgoraCluster {
    fn master_url(&self) -> String {
        format!("mesos://127.0.0.1:{}", self.master_port)
    }

    fn prepare(&self, submit: &mut Command) {
        submit
            .env("MESOS_NATIVE_JAVA_LIBRARY", &self.libmesos)
            .arg("--conf")
            .arg(format!("spark.executor.uri={}", self.package_url))
            .arg("--conf")
            .arg("spark.mesos.fetcherCache.enable=true");
    }

    fn inspect(&self, driver_log: &str, run_dir: &Path) -> Starts {
        let mut run = Starts::parse_driver(driver_log);
        let Some(framework_id) = run.id.clone() else {
            eprintln!(
                "note: no framework id in the driver log (libmesos' `registered with the master` line)"
            );
            return run;
        };
        // The master's `launching task` (debug, see AGORA_BENCH_LOG): when
        // it took the ACCEPT.
        let master_log = std::fs::read_to_string(&self.master.log).unwrap_or_default();
        let framework_field = format!("framework_id={framework_id}");
        run.accepted_ms = master_log
            .lines()
            .filter(|l| l.contains("launching task") && l.contains(&framework_field))
            .filter_map(|l| rfc3339_ms(l.split_whitespace().next()?))
            .collect();
        // The agents' `executor started` (debug): the executor's process
        // is up in its sandbox.
        let agent_logs: Vec<String> = self
            .agents
            .iter()
            .map(|a| std::fs::read_to_string(&a.log).unwrap_or_default())
            .collect();
        for (n, stderr) in self.sandbox_logs(&framework_id) {
            let text = std::fs::read_to_string(&stderr).unwrap_or_default();
            let run_root = stderr.parent().map(Path::to_path_buf).unwrap_or_default();
            let task = run_root
                .parent()
                .and_then(Path::parent)
                .and_then(Path::file_name)
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let _ = std::fs::write(run_dir.join(format!("agent-{n}-{task}-stderr")), &text);
            let mut sandbox = ExecutorSandbox::parse(&text, &run_root);
            let field = format!("sandbox={}", run_root.display());
            sandbox.started_ms = agent_logs[n]
                .lines()
                .find(|l| l.contains("executor started") && l.contains(&field))
                .and_then(|l| rfc3339_ms(l.split_whitespace().next()?));
            run.executors.push(sandbox);
        }
        run
    }

    fn save_logs(&self, dest: &Path) {
        for daemon in std::iter::once(&self.master).chain(&self.agents) {
            if let Some(name) = daemon.log.file_name() {
                let _ = std::fs::copy(
                    &daemon.log,
                    dest.join(format!("agora-{}", name.to_string_lossy())),
                );
            }
        }
    }

    fn summary(&self) -> Option<String> {
        Some(format!(
            "package downloads from the file server: {} for {} agents (the fetcher caches served the rest)",
            self.server.requests(PACKAGE_FILE),
            self.agents.len()
        ))
    }
}

impl Drop for AgoraCluster {
    fn drop(&mut self) {
        // Agents first, so that none starts an executor after the sweep.
        for agent in &mut self.agents {
            agent.kill();
        }
        self.master.kill();
    }
}

/// Files named `name` under `dir`, at most `depth` levels down; never into
/// an extracted executor package (thousands of files, none of interest).
fn find_files(dir: &Path, name: &str, depth: usize, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        if kind.is_dir() {
            if depth > 0 && entry.file_name() != PACKAGE_DIR {
                find_files(&path, name, depth - 1, found);
            }
        } else if kind.is_file() && entry.file_name() == name {
            found.push(path);
        }
    }
}

/// How a run's executors started, in epoch ms.
#[derive(Debug, Default)]
struct Starts {
    /// Agora: the framework id; standalone: the application id.
    id: Option<String>,
    /// The driver is registered with the manager. Agora: libmesos'
    /// `registered with the master` (the SUBSCRIBED event); standalone:
    /// `Connected to Spark cluster with app ID`.
    registered_ms: Option<u64>,
    /// Agora: the master's `launching task` for the framework (an ACCEPT
    /// taken; needs its debug log, the default of AGORA_BENCH_LOG).
    accepted_ms: Vec<u64>,
    /// Agora: `Mesos task N is now TASK_STARTING`.
    starting_ms: Vec<u64>,
    /// Agora: `Mesos task N is now TASK_RUNNING`; standalone: `Executor
    /// updated: <app>/<n> is now RUNNING` (the worker started it).
    running_ms: Vec<u64>,
    executors: Vec<ExecutorSandbox>,
}

impl Starts {
    fn parse_driver(log: &str) -> Starts {
        let mut run = Starts::default();
        for line in log.lines() {
            if let Some(at) = line.find("registered with the master") {
                // libmesos (tracing): `<RFC 3339 UTC>  INFO registered with
                // the master framework_id=<id>`; not `re-registered`.
                if line[..at].ends_with("re-") || run.registered_ms.is_some() {
                    continue;
                }
                let stamp = line.split_whitespace().next().unwrap_or_default();
                run.registered_ms = rfc3339_ms(stamp);
                if run.registered_ms.is_none() {
                    eprintln!("note: cannot read the time of libmesos' line {line:?}");
                }
                run.id = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("framework_id="))
                    .map(|id| id.trim_matches('"').to_string());
                continue;
            }
            let Some(ms) = log4j_ms(line) else { continue };
            if let Some((_, app)) = line.split_once("Connected to Spark cluster with app ID ") {
                run.registered_ms.get_or_insert(ms);
                run.id.get_or_insert_with(|| app.trim().to_string());
            } else if line.contains("Executor updated: ") && line.ends_with(" is now RUNNING") {
                run.running_ms.push(ms);
            } else if line.contains("Mesos task") {
                if line.ends_with("is now TASK_RUNNING") {
                    run.running_ms.push(ms);
                } else if line.ends_with("is now TASK_STARTING") {
                    run.starting_ms.push(ms);
                }
            }
        }
        run
    }

    /// Seconds from the driver's registration to `ms`.
    fn since_registered(&self, ms: Option<u64>) -> Option<f64> {
        Some(ms?.checked_sub(self.registered_ms?)? as f64 / 1000.0)
    }

    /// Registered (Agora: SUBSCRIBED) -> the first executor's RUNNING.
    fn to_first_running(&self) -> Option<f64> {
        self.since_registered(self.running_ms.iter().min().copied())
    }

    /// Registered -> the first executor JVM's first log line.
    fn to_first_jvm_log(&self) -> Option<f64> {
        self.since_registered(
            self.executors
                .iter()
                .filter_map(|e| e.jvm_first_log_ms)
                .min(),
        )
    }
}

/// One executor's sandbox: the fetcher's lines and the executor JVM's log
/// (with the harness's log4j2 pattern: epoch ms first).
#[derive(Debug, Default)]
struct ExecutorSandbox {
    /// When the sandbox's run directory was created (its birth time).
    created_ms: Option<u64>,
    /// Agora: the agent's `executor started` for this sandbox (debug).
    started_ms: Option<u64>,
    /// `cache hit ...: copied N bytes in X ms` or `downloaded N bytes in X ms`.
    copy_ms: Option<u64>,
    cache_hit: bool,
    /// `extracted N entries into ... in X ms`.
    extract_ms: Option<u64>,
    /// The executor JVM's first log line.
    jvm_first_log_ms: Option<u64>,
    /// `Successfully registered with driver`.
    registered_ms: Option<u64>,
}

impl ExecutorSandbox {
    fn parse(text: &str, run_root: &Path) -> ExecutorSandbox {
        let created_ms = std::fs::metadata(run_root)
            .and_then(|m| m.created())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| u64::try_from(d.as_millis()).ok());
        let mut sandbox = ExecutorSandbox {
            created_ms,
            ..ExecutorSandbox::default()
        };
        // `... in <n> ms` at the end of a fetcher line.
        let trailing_ms = |line: &str| {
            line.strip_suffix(" ms")?
                .rsplit(' ')
                .next()?
                .parse::<u64>()
                .ok()
        };
        for line in text.lines() {
            if line.starts_with("cache hit for ") {
                sandbox.cache_hit = true;
                sandbox.copy_ms = trailing_ms(line);
            } else if line.starts_with("downloaded ") {
                sandbox.copy_ms = trailing_ms(line);
            } else if line.starts_with("extracted ") {
                sandbox.extract_ms = trailing_ms(line);
            } else if let Some(ms) = log4j_ms(line) {
                sandbox.jvm_first_log_ms.get_or_insert(ms);
                if line.contains("Successfully registered with driver") {
                    sandbox.registered_ms.get_or_insert(ms);
                }
            }
        }
        sandbox
    }
}

/// The epoch ms a line of the harness's log4j2 pattern starts with.
fn log4j_ms(line: &str) -> Option<u64> {
    let (stamp, _) = line.split_once(' ')?;
    let ms: u64 = stamp.parse().ok()?;
    // A plausible epoch in ms (2001 onwards), not some other number.
    (ms > 1_000_000_000_000).then_some(ms)
}

/// Epoch milliseconds of an RFC 3339 UTC time (`2026-11-21T11:51:23.123456Z`,
/// tracing's default), `None` for anything else.
fn rfc3339_ms(stamp: &str) -> Option<u64> {
    let (date, time) = stamp.split_once('T')?;
    let time = time.strip_suffix('Z')?;
    let mut date = date.splitn(3, '-');
    let year: i64 = date.next()?.parse().ok()?;
    let month: i64 = date.next()?.parse().ok()?;
    let day: i64 = date.next()?.parse().ok()?;
    let (hms, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut hms = hms.splitn(3, ':');
    let hour: i64 = hms.next()?.parse().ok()?;
    let minute: i64 = hms.next()?.parse().ok()?;
    let second: i64 = hms.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    let digits: String = fraction
        .chars()
        .chain("000".chars())
        .take(3)
        .collect::<String>();
    let millis: i64 = digits.parse().ok()?;
    // Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
    // days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let ms = ((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis;
    u64::try_from(ms).ok()
}

struct Config {
    runs: usize,
    warmups: usize,
    lines: usize,
    managers: Vec<Manager>,
    workers: usize,
    cores_per_worker: usize,
    worker_memory: String,
    agent_memory_mb: u64,
    executor_memory: String,
    max_load: f64,
    quiet_wait: Duration,
    /// Release daemons and libmesos (`--bench`), else debug.
    release: bool,
    /// `AGORA_LOG` of the Agora daemons (`AGORA_BENCH_LOG`, default `info`).
    agora_log: String,
    keep: bool,
}

impl Config {
    fn from_args() -> anyhow::Result<Config> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let full = args.iter().any(|a| a == "--bench");
        let mut config = Config {
            runs: if full { 5 } else { 1 },
            warmups: 1,
            lines: if full { 6_000_000 } else { 20_000 },
            managers: vec![Manager::Standalone, Manager::Agora],
            workers: 2,
            cores_per_worker: 1,
            worker_memory: "1g".into(),
            agent_memory_mb: 3072,
            executor_memory: "512m".into(),
            max_load: 1.5,
            quiet_wait: Duration::from_secs(if full { 600 } else { 0 }),
            release: full,
            agora_log: std::env::var("AGORA_BENCH_LOG")
                .unwrap_or_else(|_| DEFAULT_AGORA_LOG.into()),
            keep: false,
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--bench" => {}
                "--keep" => config.keep = true,
                "--runs" => config.runs = value()?.parse().context("--runs")?,
                "--warmups" => config.warmups = value()?.parse().context("--warmups")?,
                "--lines" => config.lines = value()?.parse().context("--lines")?,
                "--workers" => config.workers = value()?.parse().context("--workers")?,
                "--cores-per-worker" => {
                    config.cores_per_worker = value()?.parse().context("--cores-per-worker")?
                }
                "--worker-memory" => config.worker_memory = value()?,
                "--agent-memory" => {
                    config.agent_memory_mb = value()?.parse().context("--agent-memory (MB)")?
                }
                "--executor-memory" => config.executor_memory = value()?,
                "--max-load" => config.max_load = value()?.parse().context("--max-load")?,
                "--quiet-wait-s" => {
                    config.quiet_wait =
                        Duration::from_secs(value()?.parse().context("--quiet-wait-s")?)
                }
                "--managers" => {
                    config.managers = value()?
                        .split(',')
                        .map(Manager::parse)
                        .collect::<anyhow::Result<_>>()?
                }
                other => bail!("unknown argument {other:?}"),
            }
        }
        ensure!(config.runs > 0, "--runs must be at least 1");
        ensure!(config.workers > 0, "--workers must be at least 1");
        ensure!(
            config.quiet_wait <= Duration::from_secs(3600),
            "--quiet-wait-s is at most 3600"
        );
        Ok(config)
    }

    /// Executors the job gets: one per worker, `cores_per_worker` each.
    fn executors(&self) -> usize {
        self.workers
    }
}

/// One spark-submit's figures, in seconds from its start.
struct RunFigures {
    /// The 1-minute load average when it started.
    load: f64,
    wall: f64,
    context: Option<f64>,
    first_executor: Option<f64>,
    executors: Option<f64>,
    ready: Option<f64>,
    /// The executors' start, from the driver's, the manager's and the
    /// executors' logs.
    starts: Starts,
}

impl RunFigures {
    /// Agora: SUBSCRIBED -> the first TASK_RUNNING; standalone: connected
    /// -> the first executor RUNNING.
    fn to_first_running(&self) -> Option<f64> {
        self.starts.to_first_running()
    }

    /// The driver registered -> all executors registered with it.
    fn to_all_registered(&self) -> Option<f64> {
        let registered = &self.starts;
        let last = registered.executors.iter().map(|e| e.registered_ms);
        let last = last.collect::<Option<Vec<_>>>()?.into_iter().max();
        registered.since_registered(last)
    }
}

/// The 1-minute load average.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// A manager that is up, and its runs so far.
struct Arm {
    manager: Manager,
    running: Box<dyn RunningManager>,
    cold: Vec<RunFigures>,
    runs: Vec<RunFigures>,
    failed: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let config = Config::from_args()?;
    let env = SparkEnv::locate()?;
    println!(
        "spark {} at {}; {}",
        agora_e2e::spark::SPARK_VERSION,
        env.home.display(),
        env.java_version
    );
    let package = env.executor_package()?;
    println!(
        "executor package {} ({} MB)",
        package.display(),
        std::fs::metadata(&package)?.len() / 1_000_000
    );
    let started = Instant::now();
    let (input, expected) = cached_test_input(
        &workspace_root().join("target").join("spark-bench"),
        config.lines,
    )?;
    println!(
        "input {} ({} MB, {} lines, {expected} with an 'a'; ready in {:.1} s)",
        input.display(),
        std::fs::metadata(&input)?.len() / 1_000_000,
        config.lines,
        started.elapsed().as_secs_f64()
    );
    let work = tempfile::Builder::new()
        .prefix("agora-spark-bench-")
        .tempdir()
        .context("creating the bench's work dir")?;
    let job = write_count_job(work.path())?;

    let mut failed = false;
    let mut arms = Vec::new();
    for &manager in &config.managers {
        let started = Instant::now();
        match manager.start(&env, &config) {
            Ok(running) => {
                println!(
                    "{}: {} workers x {} core(s) up in {:.1} s at {}",
                    manager.name(),
                    config.workers,
                    config.cores_per_worker,
                    started.elapsed().as_secs_f64(),
                    running.master_url()
                );
                arms.push(Arm {
                    manager,
                    running,
                    cold: Vec::new(),
                    runs: Vec::new(),
                    failed: None,
                });
            }
            Err(e) => {
                eprintln!("BENCH spark {}: FAILED to start: {e:#}", manager.name());
                failed = true;
            }
        }
    }

    wait_quiet(&config);
    let submit = |arm: &Arm, label: &str| -> anyhow::Result<RunFigures> {
        let run_dir = work.path().join(format!("{}-{label}", arm.manager.name()));
        let figures = submit_once(
            arm.running.as_ref(),
            &env,
            &config,
            &run_dir,
            &job,
            &input,
            expected,
        )
        .with_context(|| format!("{} {label}", arm.manager.name()))?;
        print_run(arm.manager, label, &figures);
        Ok(figures)
    };
    for warmup in 1..=config.warmups {
        for arm in arms.iter_mut().filter(|a| a.failed.is_none()) {
            match submit(arm, &format!("warmup-{warmup}")) {
                Ok(figures) => arm.cold.push(figures),
                Err(e) => arm.failed = Some(format!("{e:#}")),
            }
        }
    }
    for run in 1..=config.runs {
        for arm in arms.iter_mut().filter(|a| a.failed.is_none()) {
            match submit(arm, &format!("run-{run}")) {
                Ok(figures) => arm.runs.push(figures),
                Err(e) => arm.failed = Some(format!("{e:#}")),
            }
        }
    }
    for arm in &arms {
        if let Some(e) = &arm.failed {
            eprintln!("BENCH spark {}: FAILED: {e}", arm.manager.name());
            failed = true;
        }
        report_arm(arm);
    }
    summarize(&arms, &config);
    for arm in &arms {
        arm.running.save_logs(work.path());
    }
    if config.keep {
        println!("kept {}", work.keep().display());
    }
    if failed {
        bail!("a manager's runs failed");
    }
    Ok(())
}

/// Waits (up to `--quiet-wait-s`) for the 1-minute load average to fall
/// under `--max-load`; says what it measured either way.
fn wait_quiet(config: &Config) {
    let started = Instant::now();
    let quiet = wait_for("a quiet machine", config.quiet_wait, || {
        (load_average() < config.max_load).then_some(())
    });
    let waited = started.elapsed().as_secs_f64();
    match quiet {
        Ok(()) => println!(
            "load: 1-minute average {:.2} (< {}) after waiting {waited:.0} s",
            load_average(),
            config.max_load
        ),
        Err(_) => println!(
            "load: 1-minute average still {:.2} (>= {}) after {waited:.0} s; measuring anyway",
            load_average(),
            config.max_load
        ),
    }
}

fn print_run(manager: Manager, label: &str, figures: &RunFigures) {
    let mut line = format!(
        "{} {label}: load {:.2}, wall {:.2} s, context {}, executors registered {} (first {}), ready {}",
        manager.name(),
        figures.load,
        figures.wall,
        seconds(figures.context),
        seconds(figures.executors),
        seconds(figures.first_executor),
        seconds(figures.ready),
    );
    let starts = &figures.starts;
    line.push_str(&format!(
        ", {} -> first executor RUNNING {}",
        registered_name(manager),
        seconds(starts.to_first_running())
    ));
    println!("{line}");
    let base = starts.registered_ms;
    let rel = |ms: Option<u64>| match (ms, base) {
        (Some(ms), Some(base)) => format!("{:+}", ms as i64 - base as i64),
        _ => "-".into(),
    };
    let all = |list: &[u64]| {
        let mut list = list.to_vec();
        list.sort_unstable();
        list.iter()
            .map(|&ms| rel(Some(ms)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "  {} {label} timeline, ms from {}: accepted by the master [{}], STARTING [{}], RUNNING [{}]",
        manager.name(),
        registered_name(manager),
        all(&starts.accepted_ms),
        all(&starts.starting_ms),
        all(&starts.running_ms),
    );
    for (n, sandbox) in starts.executors.iter().enumerate() {
        let fetch = match (sandbox.copy_ms, sandbox.extract_ms) {
            (None, None) => String::new(),
            (copy, extract) => format!(
                ", {} {} ms, extract {} ms",
                if sandbox.cache_hit {
                    "cache copy"
                } else {
                    "download"
                },
                copy.map_or("-".into(), |ms| ms.to_string()),
                extract.map_or("-".into(), |ms| ms.to_string()),
            ),
        };
        println!(
            "  {} {label} executor {n}: sandbox created {}, executor process started {}{fetch}, \
             JVM first log {}, registered with driver {}",
            manager.name(),
            rel(sandbox.created_ms),
            rel(sandbox.started_ms),
            rel(sandbox.jvm_first_log_ms),
            rel(sandbox.registered_ms),
        );
    }
}

/// What the driver's registration with the manager is called.
fn registered_name(manager: Manager) -> &'static str {
    match manager {
        Manager::Standalone => "connected",
        Manager::Agora => "SUBSCRIBED",
    }
}

/// Median and max (and min) of some figures.
struct Stats {
    median: f64,
    max: f64,
    min: f64,
    count: usize,
}

fn stats(values: impl IntoIterator<Item = Option<f64>>) -> Option<Stats> {
    let mut values: Vec<f64> = values.into_iter().flatten().collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    Some(Stats {
        median,
        max: values[n - 1],
        min: values[0],
        count: n,
    })
}

fn report_arm(arm: &Arm) {
    let name = arm.manager.name();
    let report = |what: &str, values: Vec<Option<f64>>| match stats(values) {
        None => println!("BENCH spark {name} {what}: no figures"),
        Some(s) => println!(
            "BENCH spark {name} {what}: median {:.2} s, max {:.2} s, min {:.2} s over {} runs",
            s.median, s.max, s.min, s.count
        ),
    };
    let runs = &arm.runs;
    report("wall", runs.iter().map(|f| Some(f.wall)).collect());
    report("context", runs.iter().map(|f| f.context).collect());
    report(
        "executors_registered",
        runs.iter().map(|f| f.executors).collect(),
    );
    report("ready", runs.iter().map(|f| f.ready).collect());
    let first = match arm.manager {
        Manager::Standalone => "connected",
        Manager::Agora => "subscribed",
    };
    report(
        &format!("{first}_to_running"),
        runs.iter().map(RunFigures::to_first_running).collect(),
    );
    report(
        &format!("{first}_to_first_jvm_log"),
        runs.iter().map(|f| f.starts.to_first_jvm_log()).collect(),
    );
    report(
        &format!("{first}_to_all_registered"),
        runs.iter().map(RunFigures::to_all_registered).collect(),
    );
    let sandboxes = || runs.iter().flat_map(|f| &f.starts.executors);
    let gap = |from: Option<u64>, to: Option<u64>| Some(to?.checked_sub(from?)? as f64 / 1000.0);
    report(
        "executor_jvm_first_log_to_registered",
        sandboxes()
            .map(|s| gap(s.jvm_first_log_ms, s.registered_ms))
            .collect(),
    );
    if arm.manager == Manager::Agora {
        let ms = |v: Option<u64>| v.map(|ms| ms as f64 / 1000.0);
        report(
            "executor_cache_copy",
            sandboxes().map(|s| ms(s.copy_ms)).collect(),
        );
        report(
            "executor_extract",
            sandboxes().map(|s| ms(s.extract_ms)).collect(),
        );
    }
    for cold in &arm.cold {
        let mut line = format!(
            "BENCH spark {name} cold: wall {:.2} s, executors_registered {}",
            cold.wall,
            seconds(cold.executors)
        );
        line.push_str(&format!(
            ", {first}_to_running {}",
            seconds(cold.to_first_running())
        ));
        println!("{line}");
    }
    if let Some(summary) = arm.running.summary() {
        println!("{name}: {summary}");
    }
}

/// One figure of a run.
type Figure = dyn Fn(&RunFigures) -> Option<f64>;

/// The figures of both arms side by side, against the design's targets.
fn summarize(arms: &[Arm], config: &Config) {
    let arm = |m: Manager| arms.iter().find(|a| a.manager == m && !a.runs.is_empty());
    let (Some(standalone), Some(agora)) = (arm(Manager::Standalone), arm(Manager::Agora)) else {
        return;
    };
    let loads = stats(
        arms.iter()
            .flat_map(|a| &a.runs)
            .map(|f| Some(f.load))
            .collect::<Vec<_>>(),
    );
    println!();
    println!(
        "SUMMARY: {} interleaved runs per arm, {} executors x {} core(s), {} lines{}",
        config.runs,
        config.executors(),
        config.cores_per_worker,
        config.lines,
        loads.map_or(String::new(), |l| format!(
            ", 1-minute load at the runs' start {:.2} - {:.2} (median {:.2})",
            l.min, l.max, l.median
        ))
    );
    let both = |f: &dyn Fn(&RunFigures) -> Option<f64>| {
        (
            stats(standalone.runs.iter().map(f).collect::<Vec<_>>()),
            stats(agora.runs.iter().map(f).collect::<Vec<_>>()),
        )
    };
    let cell = |s: &Option<Stats>| {
        s.as_ref()
            .map_or("-".into(), |s| format!("{:.2} / {:.2} s", s.median, s.max))
    };
    let verdict = |met: Option<bool>| match met {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "-",
    };
    println!(
        "{:<48} {:>18} {:>18}  {:<34} median",
        "measure (median / max)", "standalone", "agora", "target"
    );
    let (s, a) = both(&|f| Some(f.wall));
    let met = s
        .as_ref()
        .zip(a.as_ref())
        .map(|(s, a)| a.median <= s.median + 1.0);
    println!(
        "{:<48} {:>18} {:>18}  {:<34} {}",
        "job wall time (spark-submit start -> exit)",
        cell(&s),
        cell(&a),
        "<= standalone + 1 s",
        verdict(met)
    );
    let (s, a) = both(&|f| f.executors);
    let met = s
        .as_ref()
        .zip(a.as_ref())
        .map(|(s, a)| a.median <= s.median);
    println!(
        "{:<48} {:>18} {:>18}  {:<34} {}",
        "driver start -> all executors registered",
        cell(&s),
        cell(&a),
        "<= standalone",
        verdict(met)
    );
    let (s, a) = both(&|f| f.to_first_running());
    let met = a.as_ref().map(|a| a.median <= 0.5);
    println!(
        "{:<48} {:>18} {:>18}  {:<34} {}",
        "SUBSCRIBED (connected) -> first executor RUNNING",
        cell(&s),
        cell(&a),
        "<= 500 ms (package cached)",
        verdict(met)
    );
    let informative: [(&str, &Figure); 2] = [
        ("SUBSCRIBED (connected) -> first executor JVM log", &|f| {
            f.starts.to_first_jvm_log()
        }),
        (
            "SUBSCRIBED (connected) -> all executors registered",
            &RunFigures::to_all_registered,
        ),
    ];
    for (what, figure) in informative {
        let (s, a) = both(figure);
        println!("{what:<48} {:>18} {:>18}", cell(&s), cell(&a));
    }
}

fn seconds(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_string(), |s| format!("{s:.2} s"))
}

fn submit_once(
    running: &dyn RunningManager,
    env: &SparkEnv,
    config: &Config,
    run_dir: &Path,
    job: &Path,
    input: &Path,
    expected: usize,
) -> anyhow::Result<RunFigures> {
    let conf_dir = run_dir.join("conf");
    write_conf(&conf_dir, &run_dir.join("local"))?;
    let mut submit = env.submit_command();
    submit
        .env("SPARK_CONF_DIR", &conf_dir)
        .arg("--master")
        .arg(running.master_url())
        .arg("--conf")
        .arg(format!("spark.executor.memory={}", config.executor_memory))
        .arg("--conf")
        .arg(format!("spark.executor.cores={}", config.cores_per_worker))
        .arg("--conf")
        .arg(format!(
            "spark.cores.max={}",
            config.executors() * config.cores_per_worker
        ))
        // The executors log with the driver's pattern (epoch ms first),
        // wherever they run: a standalone worker's executors would anyway
        // (its conf dir is on their class path), Agora's sandboxes have no
        // conf dir.
        .arg("--conf")
        .arg(format!(
            "spark.executor.extraJavaOptions=-Dlog4j2.configurationFile=file:{}",
            conf_dir.join("log4j2.properties").display()
        ));
    running.prepare(&mut submit);
    submit.arg(job).arg(input);

    let load = load_average();
    let start_ms = epoch_ms();
    let started = Instant::now();
    let output = run_with_deadline(submit, RUN_DEADLINE);
    let wall = started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let log: PathBuf = run_dir.join("driver.log");
    std::fs::write(&log, stderr.as_bytes())
        .with_context(|| format!("writing {}", log.display()))?;
    ensure!(
        output.status.success(),
        "spark-submit failed ({}); stdout: {stdout}; driver log: {}",
        output.status,
        log.display()
    );
    let count = parse_count(&stdout).with_context(|| {
        format!(
            "no COUNT= line in {stdout:?}; driver log: {}",
            log.display()
        )
    })?;
    ensure!(count == expected, "COUNT={count}, the input has {expected}");

    let timeline = DriverTimeline::parse(&stderr);
    let since = |ms: Option<u64>| ms.map(|ms| ms.saturating_sub(start_ms) as f64 / 1000.0);
    let executors = timeline.nth_executor_ms(config.executors());
    if executors.is_none() {
        eprintln!(
            "note: {} of {} executors registered (driver log {})",
            timeline.executors_registered_ms.len(),
            config.executors(),
            log.display()
        );
    }
    Ok(RunFigures {
        load,
        wall,
        context: since(timeline.context_start_ms),
        first_executor: since(timeline.nth_executor_ms(1)),
        executors: since(executors),
        ready: since(timeline.ready_ms),
        starts: running.inspect(&stderr, run_dir),
    })
}
