//! `libmesos.so` under Mesos' own Java bindings (`mesos-1.4.3-shaded-protobuf.jar`,
//! as pyspark ships it): a Java framework (`crates/libmesos/tests/java/TestFramework.java`)
//! and a Java custom executor (`TestExecutor.java`) against a real master with
//! two agents. The Java program checks the drivers' behaviour and prints one
//! line per observation; this test asserts on those lines, on its exit code,
//! on the executor's sandbox output, and on the cluster afterwards.
//!
//! Needs Java 17 (with `javac`) and the Spark virtualenv
//! (`target/spark-venv`, see `agora_e2e::spark`); fails, with the install
//! command, when they are missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use agora_e2e::spark::{SparkEnv, workspace_root};
use agora_e2e::{Cluster, libmesos, processes_under, run_with_deadline, wait_for};

/// Whether framework messages must reach their destination through the
/// agent, both ways: the Java program then requires the executor's message
/// and its answer to a scheduler's message (with `false` it only checks
/// that `sendFrameworkMessage` answers DRIVER_RUNNING).
const AGENT_RELAYS_FRAMEWORK_MESSAGES: bool = true;

/// The whole Java run's deadline (registration, three tasks, a kill, a
/// revive, the stop, and the error cases with their 2 s connect timeout).
const JAVA_DEADLINE: Duration = Duration::from_secs(240);

/// Mesos' Java bindings and the test's classes, compiled for this run.
struct JavaSetup {
    java: PathBuf,
    classpath: String,
    /// Holds the compiled classes; removed when the test ends.
    _classes: tempfile::TempDir,
}

fn javac_for(spark: &SparkEnv) -> PathBuf {
    let beside = spark.java_home.join("bin").join("javac");
    if beside.exists() {
        return beside;
    }
    PathBuf::from("javac")
}

fn compile(spark: &SparkEnv) -> JavaSetup {
    let jar = spark
        .home
        .join("jars")
        .join("mesos-1.4.3-shaded-protobuf.jar");
    assert!(jar.exists(), "{} is missing", jar.display());
    let sources = workspace_root().join("crates/libmesos/tests/java");
    let classes = tempfile::Builder::new()
        .prefix("libmesos-java-")
        .tempdir()
        .expect("a temporary directory");
    let mut javac = Command::new(javac_for(spark));
    javac
        .arg("-cp")
        .arg(&jar)
        .arg("-d")
        .arg(classes.path())
        .arg(sources.join("TestFramework.java"))
        .arg(sources.join("TestExecutor.java"));
    let output = run_with_deadline(javac, Duration::from_secs(120));
    assert!(
        output.status.success(),
        "javac failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    JavaSetup {
        java: spark.java.clone(),
        classpath: format!("{}:{}", jar.display(), classes.path().display()),
        _classes: classes,
    }
}

/// Every file named `name` under `dir`, depth-first (bounded by the tree).
fn files_named(dir: &Path, name: &str, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_named(&path, name, found);
        } else if path.file_name().is_some_and(|n| n == name) {
            found.push(path);
        }
    }
}

/// The custom executor's sandbox `stdout` (under `executors/test-executor/`).
fn executor_stdout(cluster: &Cluster) -> String {
    executor_output(cluster, "stdout")
}

/// One of the custom executor's sandbox output files, `stdout` or `stderr`.
fn executor_output(cluster: &Cluster, name: &str) -> String {
    let mut found = Vec::new();
    for dir in &cluster.agent_dirs {
        files_named(dir, name, &mut found);
    }
    found
        .iter()
        .filter(|p| p.components().any(|c| c.as_os_str() == "test-executor"))
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_lines(output: &str, expected: &[&str], what: &str) {
    for line in expected {
        assert!(
            output.lines().any(|l| l.starts_with(line)),
            "{what}: no line starting with {line:?} in:\n{output}"
        );
    }
}

#[test]
fn java_drivers_run_a_framework_and_its_executor_on_a_real_cluster() {
    let spark = SparkEnv::locate().expect("Java and the Spark virtualenv are installed");
    let library = libmesos();
    let java = compile(&spark);
    let cluster = Cluster::start(2, "cpus:4;mem:4096").expect("cluster starts");

    let executor_command = format!(
        "exec '{}' -Xmx96m -cp '{}' TestExecutor",
        java.java.display(),
        java.classpath
    );
    let mut command = Command::new(&java.java);
    command
        .arg(format!("-Dtest.master={}", cluster.master_address()))
        .arg(format!("-Dtest.executor.command={executor_command}"))
        .arg(format!("-Dtest.library={}", library.display()))
        .arg(format!("-Dtest.messages={AGENT_RELAYS_FRAMEWORK_MESSAGES}"))
        .arg("-cp")
        .arg(&java.classpath)
        .arg("TestFramework")
        .env("MESOS_NATIVE_JAVA_LIBRARY", &library)
        .env("AGORA_LIBMESOS_CONNECT_TIMEOUT", "2");
    let started = Instant::now();
    let output = run_with_deadline(command, JAVA_DEADLINE);
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let executor = executor_stdout(&cluster);
    println!(
        "java ran {elapsed:?}, {}\n--- stdout\n{stdout}\n--- stderr (tail)\n{}\n--- executor stdout\n{executor}",
        output.status,
        stderr
            .lines()
            .rev()
            .take(60)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        output.status.success() && stdout.lines().any(|l| l == "DONE 0"),
        "the Java framework failed ({}): {}",
        output.status,
        stdout
            .lines()
            .filter(|l| l.starts_with("FAIL"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    assert_lines(
        &stdout,
        &[
            "OK version 1.4.3",
            "OK bad-master run returned DRIVER_ABORTED",
            "OK bad-master error callback: ",
            "OK unreachable-master run returned DRIVER_ABORTED",
            "OK unreachable-master error callback: ",
            "OK start",
            "OK start-twice answers DRIVER_RUNNING",
            "OK registered ",
            "OK command task finished",
            "OK acceptOffers answered DRIVER_RUNNING",
            "OK executor task running",
            "OK executor task finished",
            "OK executor task data result-exec-1",
            "OK reconciliation reported the sleeper running",
            "OK sleeper killed",
            "OK sendFrameworkMessage answered DRIVER_RUNNING",
            "OK an offer after reviveOffers",
            "OK declineOffer with filters answered DRIVER_RUNNING",
            "OK explicit acknowledgements sent",
            "OK stop(false) answered DRIVER_STOPPED",
            "OK every call after stop answers DRIVER_STOPPED",
            "OK join returned DRIVER_STOPPED",
            "OK throwing callback aborts: join returned DRIVER_ABORTED",
            "STATUS cmd TASK_FINISHED",
            "STATUS exec-1 TASK_RUNNING",
            "STATUS exec-1 TASK_FINISHED",
            "STATUS sleeper TASK_KILLED",
        ],
        "framework",
    );
    if AGENT_RELAYS_FRAMEWORK_MESSAGES {
        assert_lines(
            &stdout,
            &[
                "OK framework message from the executor",
                "OK framework message to the executor answered",
            ],
            "framework",
        );
    }

    // The executor: registered, ran its task (calling the driver from
    // inside launchTask), was told to shut down by the teardown although
    // idle (no task of it left), and its driver's run() returned DRIVER_STOPPED.
    let framework_id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("FRAMEWORK "))
        .expect("the framework id is printed")
        .to_owned();
    let executor = wait_for("the executor's exit", Duration::from_secs(30), || {
        let text = executor_stdout(&cluster);
        text.contains("EXEC run returned").then_some(text)
    })
    .unwrap_or_else(|e| {
        panic!(
            "the executor exits after the teardown: {e}\n--- executor stdout\n{}\n--- executor stderr\n{}\n--- agents' logs\n{}",
            executor_stdout(&cluster),
            executor_output(&cluster, "stderr"),
            cluster
                .agents
                .iter()
                .map(|a| a.log_text())
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    assert_lines(
        &executor,
        &[
            "EXEC registered test-executor framework=libmesos-java-test",
            "EXEC launch exec-1",
            "EXEC sent exec-1 running=DRIVER_RUNNING message=DRIVER_RUNNING finished=DRIVER_RUNNING",
            "EXEC shutdown",
            "EXEC run returned DRIVER_STOPPED",
        ],
        "executor",
    );

    // The teardown removed the framework, and nothing it started is left.
    cluster
        .wait_state("the framework gone from the active ones", |state| {
            state["frameworks"]
                .as_array()
                .is_some_and(|fws| fws.iter().all(|f| f["id"] != framework_id.as_str()))
        })
        .expect("stop(false) tears the framework down");
    for dir in &cluster.agent_dirs {
        wait_for(
            "no process left under the agent's work dir",
            Duration::from_secs(30),
            || processes_under(dir).is_empty().then_some(()),
        )
        .unwrap_or_else(|e| panic!("{e}: {:?} under {}", processes_under(dir), dir.display()));
    }
}

#[test]
fn java_executor_without_an_agent_reports_an_error_and_aborts() {
    let spark = SparkEnv::locate().expect("Java and the Spark virtualenv are installed");
    let library = libmesos();
    let java = compile(&spark);
    let mut command = Command::new(&java.java);
    command
        .arg("-cp")
        .arg(&java.classpath)
        .arg("TestExecutor")
        .env("MESOS_NATIVE_JAVA_LIBRARY", &library);
    for name in [
        "AGORA_AGENT_ENDPOINT",
        "MESOS_AGENT_ENDPOINT",
        "AGORA_FRAMEWORK_ID",
        "MESOS_FRAMEWORK_ID",
        "AGORA_EXECUTOR_ID",
        "MESOS_EXECUTOR_ID",
    ] {
        command.env_remove(name);
    }
    let output = run_with_deadline(command, Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_lines(
        &stdout,
        &[
            "EXEC error AGORA_AGENT_ENDPOINT (or MESOS_AGENT_ENDPOINT) is not set",
            "EXEC run returned DRIVER_ABORTED",
        ],
        "executor",
    );
    assert_eq!(output.status.code(), Some(1), "{stdout}");
}
