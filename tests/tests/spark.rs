//! Unmodified Spark 3.5.7 (PyPI `pyspark==3.5.7`, Java 17) on Agora through
//! our `libmesos.so`: real `agora` master and agents (cgroups on), real
//! `spark-submit`/`spark-shell`, the executor package fetched over HTTP.
//!
//! Spark is heavy (a driver JVM, executor JVMs, Python workers): the tests
//! here take a minute or two each. A machine without Java or the Spark
//! virtualenv fails them with the install step (see `SparkEnv::locate`).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use agora_e2e::spark::{self, Daemon, FileServer, SparkEnv};
use agora_e2e::{Cluster, free_port, http_request, libmesos, processes_under, wait_for};
use serde_json::Value;

/// Agent resources: two executors' worth each (an executor asks for its
/// memory plus Spark's 384 MB overhead).
const AGENT_RESOURCES: &str = "cpus:2;mem:3072;disk:20000";

fn spark() -> SparkEnv {
    SparkEnv::locate().unwrap_or_else(|e| panic!("{e:#}"))
}

/// A master and `agents` agents, each with its own cgroups root and a
/// fetcher cache.
fn cluster(agents: usize) -> Cluster {
    let mut cluster = Cluster::start(0, AGENT_RESOURCES).expect("master starts");
    for n in 0..agents {
        let cache = cluster.dir.path().join(format!("cache-{n}"));
        // The cluster gives each agent a cgroups root of its own (tests in
        // this binary run in parallel, and an agent treats every container
        // under its root as its own), removed with the cluster.
        cluster.add_agent_with(
            n,
            AGENT_RESOURCES,
            &["--fetcher-cache-dir", cache.to_str().expect("utf-8")],
        );
    }
    cluster.wait_agents(agents).expect("agents register");
    cluster
}

/// A Spark command run to its end in the background, watched meanwhile.
struct Run {
    daemon: Daemon,
}

impl Run {
    fn start(name: &str, mut command: Command, dir: &Path) -> Run {
        command.env("MESOS_NATIVE_JAVA_LIBRARY", libmesos());
        let log = dir.join(format!("{name}.log"));
        Run {
            daemon: Daemon::spawn(name, command, log).expect("spark starts"),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.daemon.log).unwrap_or_default()
    }

    /// Waits for the command to exit (killing it at the deadline) and
    /// returns its status and log.
    fn finish(mut self, deadline: Duration) -> (ExitStatus, String) {
        let exited = wait_for(&self.daemon.name, deadline, || {
            self.daemon.has_exited().then_some(())
        });
        let status = self.daemon.kill().expect("reaped");
        let log = self.log();
        if let Err(e) = exited {
            panic!("{e}; log:\n{}", tail(&log));
        }
        (status, log)
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(80)..].join("\n")
}

fn frameworks(state: &Value, key: &str) -> Vec<Value> {
    state[key].as_array().cloned().unwrap_or_default()
}

fn tasks_of(framework: &Value) -> Vec<Value> {
    let mut all = framework["tasks"].as_array().cloned().unwrap_or_default();
    all.extend(
        framework["completed_tasks"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
    );
    all
}

/// Once a driver has exited: its framework is completed, and no executor
/// is left on any agent.
fn assert_cleaned_up(cluster: &Cluster, name: &str) {
    let state = cluster
        .wait_state(&format!("framework {name} completed"), |s| {
            frameworks(s, "completed_frameworks")
                .iter()
                .any(|f| f["name"] == name)
        })
        .expect("the framework completes when the driver stops");
    assert!(
        !frameworks(&state, "frameworks")
            .iter()
            .any(|f| f["name"] == name),
        "{name} is still active"
    );
    for dir in &cluster.agent_dirs {
        wait_for("no executor left", Duration::from_secs(30), || {
            processes_under(dir).is_empty().then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}: {:?}", processes_under(dir)));
    }
}

/// The memory limit of the cgroup `pid` runs in, if any: cgroup v1's
/// memory hierarchy, or v2's unified one.
fn memory_limit(pid: u32) -> Option<u64> {
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let v1 = cgroup.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == "memory")
            .then(|| format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes"))
    });
    let file = v1.or_else(|| {
        let path = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
        Some(format!("/sys/fs/cgroup{path}/memory.max"))
    })?;
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// Pids of Spark executor JVMs under an agent's work dir.
fn executor_jvms(dir: &Path) -> Vec<u32> {
    processes_under(dir)
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains("CoarseGrainedExecutorBackend"))
                .unwrap_or(false)
        })
        .collect()
}

#[test]
fn the_guides_count_job_runs_on_two_agents_with_the_package_fetched_over_http() {
    let spark = spark();
    let cluster = cluster(2);
    let package = spark.executor_package().expect("executor package");
    let server = FileServer::start(package.parent().expect("package dir")).expect("file server");
    let url = server.url(spark::PACKAGE_FILE);
    let job = spark::write_count_job(spark.scratch()).expect("job");
    let (input, expected) = spark::write_test_input(spark.scratch(), 20_000).expect("test input");
    let package_path = format!("/{}", spark::PACKAGE_FILE);

    let submit = |name: &str, cache: bool| {
        let mut command = spark.submit_command();
        command
            .arg("--master")
            .arg(format!("mesos://{}", cluster.master_address()))
            .args(["--name", name])
            .args(["--conf", &format!("spark.executor.uri={url}")])
            .args([
                "--conf",
                &format!("spark.mesos.fetcherCache.enable={cache}"),
            ])
            .args(["--conf", "spark.cores.max=4"])
            .args(["--conf", "spark.executor.cores=2"])
            .args(["--conf", "spark.executor.memory=512m"])
            .arg(&job)
            .arg(&input);
        Run::start(name, command, cluster.dir.path())
    };

    // First run, cached: each agent fetches the package once.
    let run = submit("count-a", true);
    // While it runs: two executors, one per agent, each in a cgroup holding
    // its memory (512 MB + Spark's 384 MB overhead).
    let limits = wait_for(
        "an executor JVM on each agent",
        Duration::from_secs(240),
        || {
            let limits: Vec<_> = cluster
                .agent_dirs
                .iter()
                .map(|d| executor_jvms(d).first().and_then(|&pid| memory_limit(pid)))
                .collect();
            limits.iter().all(Option::is_some).then_some(limits)
        },
    )
    .unwrap_or_else(|e| panic!("{e}; driver log:\n{}", tail(&run.log())));
    for limit in limits {
        assert_eq!(
            limit,
            Some(896 * 1024 * 1024),
            "the executor's memory cgroup"
        );
    }
    // The web UI's API lists the framework and its tasks while it runs.
    let (code, body) =
        http_request(cluster.master_port, "GET", "/api/frameworks", None).expect("ui api answers");
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains(r#""name":"agora-count""#) && body.contains(r#""active_tasks":2"#),
        "the UI lists the framework and its two executors: {body}"
    );

    let (status, log) = run.finish(Duration::from_secs(300));
    assert!(
        status.success(),
        "spark-submit failed: {status}\n{}",
        tail(&log)
    );
    assert_eq!(
        spark::parse_count(&log),
        Some(expected),
        "the job's answer; log:\n{}",
        tail(&log)
    );
    let state = cluster.state().expect("state");
    let framework = frameworks(&state, "completed_frameworks")
        .into_iter()
        .chain(frameworks(&state, "frameworks"))
        .find(|f| f["name"] == "agora-count")
        .expect("the framework is known to the master");
    let agents: std::collections::BTreeSet<String> = tasks_of(&framework)
        .iter()
        .map(|t| t["agent_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(agents.len(), 2, "executors ran on both agents: {framework}");
    for task in tasks_of(&framework) {
        assert_eq!(task["resources"]["mem"], 896.0, "{task}");
        assert_eq!(task["resources"]["cpus"], 2.0, "{task}");
    }
    assert_cleaned_up(&cluster, "agora-count");
    assert_eq!(
        server.requests(&package_path),
        2,
        "one fetch per agent; the cache served nothing yet"
    );

    // Second run, cached: both agents' caches serve it.
    let (status, log) = submit("count-b", true).finish(Duration::from_secs(300));
    assert!(status.success(), "{}", tail(&log));
    assert_eq!(spark::parse_count(&log), Some(expected));
    assert_eq!(
        server.requests(&package_path),
        2,
        "the agents' fetcher caches served the second job"
    );
    assert_cleaned_up(&cluster, "agora-count");

    // Third run, not cached (Spark marks the URI not cacheable): fetched again.
    let (status, log) = submit("count-c", false).finish(Duration::from_secs(300));
    assert!(status.success(), "{}", tail(&log));
    assert_eq!(spark::parse_count(&log), Some(expected));
    assert_eq!(
        server.requests(&package_path),
        4,
        "fetched by both agents again"
    );
    assert_cleaned_up(&cluster, "agora-count");
}

/// A JVM job (Scala/Java, no Python) compiled against Spark's jars.
const PI_JOB: &str = r#"
import java.util.ArrayList;
import java.util.List;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.SparkConf;

public class AgoraPi {
    public static void main(String[] args) {
        JavaSparkContext sc = new JavaSparkContext(new SparkConf().setAppName("agora-pi"));
        int slices = 4, n = 400000;
        List<Integer> l = new ArrayList<>(n);
        for (int i = 0; i < n; i++) l.add(i);
        long inside = sc.parallelize(l, slices).filter(i -> {
            double x = Math.random() * 2 - 1, y = Math.random() * 2 - 1;
            return x * x + y * y <= 1;
        }).count();
        System.out.println("PI=" + 4.0 * inside / n);
        sc.stop();
    }
}
"#;

fn build_pi_jar(spark: &SparkEnv) -> PathBuf {
    let dir = spark.scratch().join("pi");
    std::fs::create_dir_all(dir.join("classes")).expect("pi dir");
    std::fs::write(dir.join("AgoraPi.java"), PI_JOB).expect("pi source");
    let javac = spark.java_home.join("bin/javac");
    let jar = spark.java_home.join("bin/jar");
    assert!(
        javac.exists() && jar.exists(),
        "javac/jar missing in {}: install a JDK (`apt-get install -y openjdk-17-jdk-headless`)",
        spark.java_home.display()
    );
    let classpath = format!("{}/jars/*", spark.home.display());
    let mut compile = Command::new(javac);
    compile
        .args(["-d", "classes", "-cp", &classpath, "AgoraPi.java"])
        .current_dir(&dir);
    let out = agora_e2e::run_with_deadline(compile, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut package = Command::new(jar);
    package
        .args(["cf", "agora-pi.jar", "-C", "classes", "."])
        .current_dir(&dir);
    let out = agora_e2e::run_with_deadline(package, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("agora-pi.jar")
}

#[test]
fn spark_shell_and_a_jvm_job_run_with_spark_installed_on_the_agents_in_a_role() {
    let spark = spark();
    let cluster = cluster(2);
    // The role's quota caps what Spark gets: 2 cpus (one executor), where
    // it would take all 4 without it.
    let (code, body) = http_request(
        cluster.master_port,
        "POST",
        "/quota",
        Some(r#"{"role":"spark","limit":{"cpus":2}}"#),
    )
    .expect("quota");
    assert_eq!(code, 200, "{body}");
    let master = format!("mesos://{}", cluster.master_address());

    // spark-shell, its job on standard input.
    let mut shell = spark.shell_command();
    shell
        .arg("--master")
        .arg(&master)
        .args([
            "--conf",
            &format!("spark.mesos.executor.home={}", spark.home.display()),
        ])
        .args(["--conf", "spark.mesos.role=spark"])
        .args(["--conf", "spark.executor.memory=512m"])
        .stdin(std::process::Stdio::piped());
    shell.env("MESOS_NATIVE_JAVA_LIBRARY", libmesos());
    let script = "println(\"RESULT=\" + sc.parallelize(1 to 1000).map(_ * 2).sum())\n:quit\n";
    let output = run_with_stdin(shell, script, Duration::from_secs(300));
    assert!(
        output.contains("RESULT=1001000.0"),
        "spark-shell's answer:\n{}",
        tail(&output)
    );
    assert_cleaned_up(&cluster, "Spark shell");

    // A JVM job, in role "spark": its executors stay within the quota.
    let jar = build_pi_jar(&spark);
    let mut submit = spark.submit_command();
    submit
        .arg("--master")
        .arg(&master)
        .args(["--class", "AgoraPi"])
        .args([
            "--conf",
            &format!("spark.mesos.executor.home={}", spark.home.display()),
        ])
        .args(["--conf", "spark.mesos.role=spark"])
        .args(["--conf", "spark.executor.memory=512m"])
        .arg(&jar);
    let run = Run::start("agora-pi", submit, cluster.dir.path());
    let (status, log) = run.finish(Duration::from_secs(300));
    assert!(status.success(), "{}", tail(&log));
    let pi: f64 = log
        .lines()
        .find_map(|l| l.strip_prefix("PI="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no PI= line:\n{}", tail(&log)));
    assert!((pi - std::f64::consts::PI).abs() < 0.05, "pi = {pi}");
    let state = cluster.state().expect("state");
    let framework = frameworks(&state, "completed_frameworks")
        .into_iter()
        .find(|f| f["name"] == "agora-pi")
        .expect("agora-pi completed");
    let cpus: f64 = tasks_of(&framework)
        .iter()
        .map(|t| {
            assert_eq!(t["role"], "spark", "{t}");
            t["resources"]["cpus"].as_f64().unwrap_or_default()
        })
        .sum();
    assert!(
        cpus > 0.0 && cpus <= 2.0,
        "the quota's limit held: {cpus} cpus"
    );
    assert_cleaned_up(&cluster, "agora-pi");
}

fn run_with_stdin(mut command: Command, input: &str, deadline: Duration) -> String {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    let log = tempfile::NamedTempFile::new().expect("log file");
    let file = log.reopen().expect("log");
    let mut child = command
        .process_group(0)
        .stdout(file.try_clone().expect("clone"))
        .stderr(file)
        .spawn()
        .expect("starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("writes the script");
    let pid = rustix::process::Pid::from_child(&child);
    let exited = wait_for("spark-shell exits", deadline, || {
        child.try_wait().ok().flatten()
    });
    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    let _ = child.wait();
    let text = std::fs::read_to_string(log.path()).unwrap_or_default();
    if let Err(e) = exited {
        panic!("{e}:\n{}", tail(&text));
    }
    text
}

#[test]
fn a_driver_that_cannot_reach_the_master_fails_with_the_reason() {
    let spark = spark();
    let job = spark::write_count_job(spark.scratch()).expect("job");
    let port = free_port();
    let mut submit = spark.submit_command();
    submit
        .arg("--master")
        .arg(format!("mesos://127.0.0.1:{port}"))
        .arg(&job)
        .arg("/nonexistent");
    submit.env("AGORA_LIBMESOS_CONNECT_TIMEOUT", "3");
    let dir = tempfile::tempdir().expect("dir");
    let (status, log) =
        Run::start("unreachable", submit, dir.path()).finish(Duration::from_secs(180));
    assert!(!status.success(), "{}", tail(&log));
    assert!(
        log.contains(&format!(
            "cannot register with the master at 127.0.0.1:{port}"
        )),
        "the driver log says why:\n{}",
        tail(&log)
    );
}

#[test]
fn the_cluster_dispatcher_runs_as_a_framework_and_launches_drivers_as_tasks() {
    let spark = spark();
    let cluster = cluster(1);
    let port = free_port();
    let mut dispatcher = spark.class_command();
    dispatcher
        .arg("org.apache.spark.deploy.mesos.MesosClusterDispatcher")
        .arg("--master")
        .arg(format!("mesos://{}", cluster.master_address()))
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--webui-port", &free_port().to_string()])
        .args(["--name", "agora-dispatcher"]);
    let dispatcher = Run::start("dispatcher", dispatcher, cluster.dir.path());
    cluster
        .wait_state("the dispatcher registers", |s| {
            frameworks(s, "frameworks")
                .iter()
                .any(|f| f["name"] == "agora-dispatcher")
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", tail(&dispatcher.log())));

    let job = spark::write_count_job(spark.scratch()).expect("job");
    let (input, _) = spark::write_test_input(spark.scratch(), 1_000).expect("input");
    let mut submit = spark.submit_command();
    submit
        .args(["--deploy-mode", "cluster"])
        .arg("--master")
        .arg(format!("mesos://127.0.0.1:{port}"))
        .args(["--conf", "spark.master.rest.enabled=true"])
        .args([
            "--conf",
            &format!("spark.mesos.executor.home={}", spark.home.display()),
        ])
        .arg(&job)
        .arg(&input);
    let (status, log) =
        Run::start("submit-cluster", submit, cluster.dir.path()).finish(Duration::from_secs(120));
    assert!(
        status.success(),
        "the dispatcher accepted it:\n{}",
        tail(&log)
    );
    assert!(log.contains("\"success\" : true"), "{}", tail(&log));

    // The driver runs as an Agora task of the dispatcher's framework.
    let state = cluster
        .wait_state("the driver task runs and ends", |s| {
            frameworks(s, "frameworks")
                .iter()
                .filter(|f| f["name"] == "agora-dispatcher")
                .flat_map(tasks_of)
                .any(|t| {
                    t["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("Driver for"))
                        && t["state"] != "TASK_STAGING"
                        && t["state"] != "TASK_STARTING"
                        && t["state"] != "TASK_RUNNING"
                })
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", tail(&dispatcher.log())));
    let driver = frameworks(&state, "frameworks")
        .iter()
        .filter(|f| f["name"] == "agora-dispatcher")
        .flat_map(tasks_of)
        .find(|t| {
            t["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("Driver for"))
        })
        .expect("driver task");
    // It ran (the dispatcher saw TASK_RUNNING) ...
    assert!(
        dispatcher.log().contains("state=TASK_RUNNING"),
        "{}",
        tail(&dispatcher.log())
    );
    // ... and Spark 3.5's own spark-submit then refuses the `--driver-cores
    // 1.0` its dispatcher wrote (SPARK-39617, the same on Mesos). If a
    // Spark release fixes that, the driver finishes instead.
    let id = driver["id"].as_str().expect("task id");
    let stderr = cluster
        .sandbox_files(id, "stderr")
        .into_iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect::<String>();
    if driver["state"] != "TASK_FINISHED" {
        assert!(
            stderr.contains("Driver cores must be a positive number"),
            "the driver failed for another reason ({}):\n{stderr}",
            driver["state"]
        );
    }
}

/// A job that takes a while: 120 elements, half a second each, over the
/// executors' 4 cores; prints the sum of 0..120.
const SLOW_JOB: &str = r#"import time
from pyspark import SparkContext

sc = SparkContext(appName="agora-ha")
def slow(x):
    time.sleep(0.5)
    return x
total = sc.parallelize(range(120), 12).map(slow).sum()
print(f"SUM={total}", flush=True)
sc.stop()
"#;

/// The epoch milliseconds of the first log line containing `needle`.
fn logged_at(log: &str, needle: &str) -> Option<u64> {
    log.lines()
        .find(|l| l.contains(needle))
        .and_then(|l| l.split_once(' '))
        .and_then(|(ms, _)| ms.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_follows_a_new_leader_when_the_leader_dies_mid_job() {
    use agora_coord::testing::ZooKeeper;
    use agora_e2e::{Proc, get_json, spawn_zk_master};

    let spark = spark();
    let zk = ZooKeeper::start()
        .await
        .expect("zookeeper starts (Debian package zookeeper)");
    let url = zk.unique_url("agora-spark-ha").to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    // Dropped after the sweeper (declared before it): the agents' cgroups.
    let cgroups = agora_e2e::TestCgroups::new("spark-ha");
    let _sweeper = agora_e2e::Sweeper(dir.path().to_path_buf());
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut masters: Vec<Proc> = ports
        .iter()
        .enumerate()
        .map(|(n, &p)| {
            spawn_zk_master(
                dir.path(),
                n,
                p,
                &url,
                dir.path().join(format!("master-{n}.log")),
            )
        })
        .collect();
    let leader = |ports: &[u16]| {
        wait_for("one leading master", Duration::from_secs(60), || {
            let leading: Vec<usize> = (0..ports.len())
                .filter(|&i| get_json(ports[i], "/state").is_ok_and(|s| s["elected"] == true))
                .collect();
            match leading[..] {
                [one] => Some(one),
                _ => None,
            }
        })
        .expect("a leader is elected")
    };
    let first = leader(&ports);
    let agent_dirs: Vec<PathBuf> = (0..2)
        .map(|n| dir.path().join(format!("agent-{n}")))
        .collect();
    let _agents: Vec<Proc> = agent_dirs
        .iter()
        .enumerate()
        .map(|(n, work_dir)| {
            Proc::spawn(
                &[
                    "agent",
                    "--master",
                    &url,
                    "--ip",
                    "127.0.0.1",
                    "--port",
                    &free_port().to_string(),
                    "--work-dir",
                    work_dir.to_str().expect("utf-8"),
                    "--resources",
                    AGENT_RESOURCES,
                    "--cgroups-root",
                    &format!("{}/a{n}", cgroups.root),
                ],
                dir.path().join(format!("agent-{n}.log")),
            )
        })
        .collect();
    wait_for("both agents registered", Duration::from_secs(60), || {
        let state = get_json(ports[first], "/state").ok()?;
        (state["agents"].as_array()?.len() == 2).then_some(())
    })
    .expect("agents register with the leader");

    let job = spark.scratch().join("slow.py");
    std::fs::write(&job, SLOW_JOB).expect("job");
    let mut submit = spark.submit_command();
    submit
        .arg("--master")
        .arg(format!("mesos://{url}"))
        .args([
            "--conf",
            &format!("spark.mesos.executor.home={}", spark.home.display()),
        ])
        .args(["--conf", "spark.executor.memory=512m"])
        .arg(&job);
    let run = Run::start("ha", submit, dir.path());
    wait_for(
        "the job runs on two executors",
        Duration::from_secs(240),
        || {
            let log = run.log();
            (log.matches("Registered executor").count() >= 2 && log.contains("Starting job"))
                .then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", tail(&run.log())));

    // SIGKILL the leader mid-job.
    let killed_at = spark::epoch_ms();
    masters[first].kill();
    let rest: Vec<u16> = ports
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != first)
        .map(|(_, &p)| p)
        .collect();
    let next = rest[leader(&rest)];

    let (status, log) = run.finish(Duration::from_secs(300));
    assert!(status.success(), "{}", tail(&log));
    assert!(
        log.contains(&format!("SUM={}", (0..120).sum::<u32>())),
        "the job's answer:\n{}",
        tail(&log)
    );
    let finished = logged_at(&log, "Job 0 finished").expect("the job finished");
    assert!(finished > killed_at, "the leader died before the job ended");
    assert!(
        log.contains("re-registered with the master"),
        "the driver followed the new leader:\n{}",
        tail(&log)
    );
    // The new leader saw the framework through to its end.
    wait_for(
        "the framework completed on the new leader",
        Duration::from_secs(60),
        || {
            let state = get_json(next, "/state").ok()?;
            frameworks(&state, "completed_frameworks")
                .iter()
                .any(|f| f["name"] == "agora-ha")
                .then_some(())
        },
    )
    .expect("the framework completes on the new leader");
    for dir in &agent_dirs {
        wait_for("no executor left", Duration::from_secs(30), || {
            processes_under(dir).is_empty().then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}: {:?}", processes_under(dir)));
    }
    drop(masters);
}
