//! Spark's count job (the Spark-on-Mesos guide's `test.py`: count the lines
//! containing 'a') per cluster manager, on real processes on 127.0.0.1.
//!
//! `cargo bench -p agora-e2e --bench spark -- [--runs N] [--lines N]
//! [--managers standalone,agora] [--workers N] [--cores-per-worker N]
//! [--worker-memory 1g] [--executor-memory 512m] [--keep]`
//!
//! For each manager: start it (2 workers of 1 core: 2 executors), then run
//! `spark-submit --master <url> test.py <input>` `--runs` times (default 5)
//! on a generated input of `--lines` lines (default 6,000,000: ~300 MB,
//! written once under `target/spark-bench/` and reused), check the printed
//! count against the one computed in Rust, and report per run:
//!
//! * `wall`: spark-submit started -> exited;
//! * `context`: -> the driver's `Running Spark version` (SparkContext starts);
//! * `executors`: -> the last `Registered executor` the driver logs (all
//!   executors registered; the first one too);
//! * `ready`: -> `SchedulerBackend is ready for scheduling`;
//!
//! then the median and the max of each (the max is the p99 for any N under
//! 100). The driver's times come from its log (log4j2 with epoch
//! milliseconds, one conf dir per run) against the clock read here when
//! spark-submit started. The standalone workers, and so the executors, run
//! from the executor package, as Agora's executors do.
//!
//! `Manager::Agora` is the slot for Spark on Agora (`--master
//! mesos://127.0.0.1:PORT`, `MESOS_NATIVE_JAVA_LIBRARY` = our libmesos,
//! `spark.executor.uri` = the package served by a `FileServer`); it is not
//! wired yet and says so.
//!
//! Without `--bench` (running the binary by hand) it is a smoke run: one
//! run on 20,000 lines unless told otherwise. `test = false` in Cargo.toml
//! keeps it out of `cargo test`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use agora_e2e::run_with_deadline;
use agora_e2e::spark::{
    DriverTimeline, SparkEnv, StandaloneCluster, StandaloneOptions, cached_test_input, epoch_ms,
    parse_count, workspace_root, write_conf, write_count_job,
};
use anyhow::{Context, bail, ensure};

/// The longest one spark-submit may take.
const RUN_DEADLINE: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Manager {
    /// Spark's own standalone master and workers.
    Standalone,
    /// Agora's master and agents through our libmesos (not wired yet).
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
                Ok(Box::new(StandaloneCluster::start_with(env, &options)?))
            }
            Manager::Agora => bail!(
                "the Agora variant is not wired yet: it needs crates/libmesos built \
                 (MESOS_NATIVE_JAVA_LIBRARY), an agora master and agents (agora_e2e::Cluster), \
                 and spark.executor.uri pointing at SparkEnv::executor_package() served by a \
                 spark::FileServer"
            ),
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
}

impl RunningManager for StandaloneCluster {
    fn master_url(&self) -> String {
        StandaloneCluster::master_url(self)
    }
}

struct Config {
    runs: usize,
    lines: usize,
    managers: Vec<Manager>,
    workers: usize,
    cores_per_worker: usize,
    worker_memory: String,
    executor_memory: String,
    keep: bool,
}

impl Config {
    fn from_args() -> anyhow::Result<Config> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let full = args.iter().any(|a| a == "--bench");
        let mut config = Config {
            runs: if full { 5 } else { 1 },
            lines: if full { 6_000_000 } else { 20_000 },
            managers: vec![Manager::Standalone],
            workers: 2,
            cores_per_worker: 1,
            worker_memory: "1g".into(),
            executor_memory: "512m".into(),
            keep: false,
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--bench" => {}
                "--keep" => config.keep = true,
                "--runs" => config.runs = value()?.parse().context("--runs")?,
                "--lines" => config.lines = value()?.parse().context("--lines")?,
                "--workers" => config.workers = value()?.parse().context("--workers")?,
                "--cores-per-worker" => {
                    config.cores_per_worker = value()?.parse().context("--cores-per-worker")?
                }
                "--worker-memory" => config.worker_memory = value()?,
                "--executor-memory" => config.executor_memory = value()?,
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
        Ok(config)
    }

    /// Executors the job gets: one per worker, `cores_per_worker` each.
    fn executors(&self) -> usize {
        self.workers
    }
}

/// One spark-submit's figures, in seconds from its start.
struct RunFigures {
    wall: f64,
    context: Option<f64>,
    first_executor: Option<f64>,
    executors: Option<f64>,
    ready: Option<f64>,
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
    for &manager in &config.managers {
        if let Err(e) = bench_manager(manager, &env, &config, work.path(), &job, &input, expected) {
            eprintln!("BENCH spark {}: FAILED: {e:#}", manager.name());
            failed = true;
        }
    }
    if config.keep {
        println!("kept {}", work.keep().display());
    }
    if failed {
        bail!("a manager's runs failed");
    }
    Ok(())
}

fn bench_manager(
    manager: Manager,
    env: &SparkEnv,
    config: &Config,
    work: &Path,
    job: &Path,
    input: &Path,
    expected: usize,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let running = manager.start(env, config)?;
    println!(
        "{}: {} workers x {} core(s) up in {:.1} s at {}",
        manager.name(),
        config.workers,
        config.cores_per_worker,
        started.elapsed().as_secs_f64(),
        running.master_url()
    );
    let mut all = Vec::new();
    for run in 1..=config.runs {
        let run_dir = work.join(format!("{}-run-{run}", manager.name()));
        let figures = submit_once(
            running.as_ref(),
            env,
            config,
            &run_dir,
            job,
            input,
            expected,
        )
        .with_context(|| format!("{} run {run}", manager.name()))?;
        println!(
            "{} run {run}: wall {:.2} s, context {}, executors registered {} (first {}), ready {}",
            manager.name(),
            figures.wall,
            seconds(figures.context),
            seconds(figures.executors),
            seconds(figures.first_executor),
            seconds(figures.ready),
        );
        all.push(figures);
    }
    let report = |what: &str, values: Vec<Option<f64>>| {
        let mut values: Vec<f64> = values.into_iter().flatten().collect();
        if values.is_empty() {
            println!("BENCH spark {} {what}: no figures", manager.name());
            return;
        }
        values.sort_by(f64::total_cmp);
        let median = if values.len() % 2 == 1 {
            values[values.len() / 2]
        } else {
            (values[values.len() / 2 - 1] + values[values.len() / 2]) / 2.0
        };
        let max = values[values.len() - 1];
        println!(
            "BENCH spark {} {what}: median {median:.2} s, max {max:.2} s, min {:.2} s over {} runs",
            manager.name(),
            values[0],
            values.len()
        );
    };
    report("wall", all.iter().map(|f| Some(f.wall)).collect());
    report("context", all.iter().map(|f| f.context).collect());
    report(
        "executors_registered",
        all.iter().map(|f| f.executors).collect(),
    );
    report("ready", all.iter().map(|f| f.ready).collect());
    Ok(())
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
        ));
    running.prepare(&mut submit);
    submit.arg(job).arg(input);

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
        wall,
        context: since(timeline.context_start_ms),
        first_executor: since(timeline.nth_executor_ms(1)),
        executors: since(executors),
        ready: since(timeline.ready_ms),
    })
}
