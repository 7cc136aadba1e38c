//! pymesos (a third-party Mesos client library, from PyPI) drives a
//! framework and a custom executor on a real Agora master and agent, through
//! Mesos' v1 scheduler and executor HTTP APIs.
//!
//! The framework (`tests/python/pymesos_framework.py`) launches a command
//! task, a task of its own executor (`tests/python/pymesos_executor.py`,
//! which trades framework messages with it) and a long task it kills, then
//! stops, which tears it down. It prints one JSON line per observation; the
//! assertions here are made on those lines and on the master's `/state`.
//!
//! The Python is the Spark virtualenv's (`target/spark-venv`, or
//! `AGORA_SPARK_VENV`), where `.ci/run` installs pymesos. Without it the
//! test fails, saying how to install it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use agora_e2e::spark::workspace_root;
use agora_e2e::{Cluster, processes_under, run_with_deadline, wait_for};
use serde_json::Value;

const PYMESOS_VERSION: &str = "0.3.15";
/// What the framework answers the executor's message with.
const REPLY: &str = "framework-hello";
/// The executor id the framework gives its executor.
const EXECUTOR_ID: &str = "pymesos-executor";

fn install_hint(venv: &Path) -> String {
    format!(
        "install pymesos {PYMESOS_VERSION} from the workspace root: \
         `bash tests/python/install_pymesos.sh {}` (create the virtualenv first if there is \
         none: `python3 -m venv {0}`; `.ci/run` does both)",
        venv.display()
    )
}

/// The virtualenv's Python, once it imports pymesos at the pinned version.
fn pymesos_python() -> PathBuf {
    let venv = std::env::var_os("AGORA_SPARK_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target").join("spark-venv"));
    // The agent runs the executor's command from the sandbox: no relative path.
    let venv = std::path::absolute(&venv).unwrap_or(venv);
    let python = venv.join("bin").join("python");
    assert!(
        python.exists(),
        "no virtualenv: {} does not exist; {}",
        python.display(),
        install_hint(&venv)
    );
    let mut probe = Command::new(&python);
    probe
        .args(["-c", "import pymesos; print(pymesos.__VERSION__)"])
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME");
    let output = run_with_deadline(probe, Duration::from_secs(60));
    let version = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert!(
        output.status.success() && version == PYMESOS_VERSION,
        "{} does not import pymesos {PYMESOS_VERSION} (got {version:?}, {}: {}); {}",
        python.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim(),
        install_hint(&venv)
    );
    python
}

/// What the framework printed: one JSON object a line.
struct Observations {
    events: Vec<Value>,
    /// Everything there is to see when an assertion fails.
    context: String,
}

impl Observations {
    fn of(&self, event: &str) -> impl Iterator<Item = (usize, &Value)> {
        self.events
            .iter()
            .enumerate()
            .filter(move |(_, e)| e["event"] == event)
    }

    /// The position of the first status update of `task` in `state`.
    fn status(&self, task: &str, state: &str) -> Option<(usize, &Value)> {
        self.of("status")
            .find(|(_, e)| e["task"] == task && e["state"] == state)
    }

    fn expect_status(&self, task: &str, state: &str) -> (usize, &Value) {
        self.status(task, state)
            .unwrap_or_else(|| panic!("the framework saw no {state} for {task}\n{}", self.context))
    }
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let mut out = all[all.len().saturating_sub(lines)..].join("\n");
    out.push('\n');
    out
}

fn run_framework(cluster: &Cluster, python: &Path) -> Observations {
    let scripts = workspace_root().join("tests").join("python");
    let executor = scripts.join("pymesos_executor.py");
    let mut command = Command::new(python);
    command
        .arg(scripts.join("pymesos_framework.py"))
        .args(["--master", &cluster.master_address()])
        .arg("--executor-python")
        .arg(python)
        .arg("--executor-script")
        .arg(&executor)
        .args(["--timeout", "90"])
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME")
        .current_dir(cluster.dir.path());
    // The script gives up after 90 s and then stops its driver.
    let output = run_with_deadline(command, Duration::from_secs(150));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let executor_stderr: String = cluster
        .sandbox_files(EXECUTOR_ID, "stderr")
        .iter()
        .map(|f| {
            format!(
                "--- {}\n{}",
                f.display(),
                std::fs::read_to_string(f).unwrap_or_default()
            )
        })
        .collect();
    let context = format!(
        "framework exit: {}\n--- framework stdout\n{stdout}--- framework stderr\n{stderr}\
         --- executor sandbox stderr\n{executor_stderr}--- master log (tail)\n{}--- agent log (tail)\n{}",
        output.status,
        tail(&cluster.master.log_text(), 100),
        tail(&cluster.agents[0].log_text(), 100)
    );
    let events = stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}\n{context}"))
        })
        .collect();
    assert!(output.status.success(), "the framework failed\n{context}");
    Observations { events, context }
}

#[test]
fn pymesos_framework_and_executor_run_on_agora() {
    let python = pymesos_python();
    let cluster = Cluster::start(1, "cpus:4;mem:2048").expect("cluster starts");
    let seen = run_framework(&cluster, &python);
    let context = &seen.context;

    let done = seen.of("done").last().map(|(_, e)| e.clone());
    assert_eq!(
        done.as_ref().map(|d| &d["ok"]),
        Some(&Value::Bool(true)),
        "the framework did not see everything\n{context}"
    );
    let framework_id = seen
        .of("registered")
        .next()
        .and_then(|(_, e)| e["framework_id"].as_str())
        .unwrap_or_else(|| panic!("no registered event\n{context}"))
        .to_string();
    let agent_id = seen
        .of("launch")
        .next()
        .and_then(|(_, e)| e["agent"].as_str())
        .unwrap_or_else(|| panic!("no launch event\n{context}"))
        .to_string();

    // Mesos' TaskStatus.state is a required field: every update has one,
    // TASK_STARTING included.
    for (_, status) in seen.of("status") {
        assert!(
            status["state"].is_string(),
            "a status update without a state: {status}\n{context}"
        );
    }

    // The command task.
    seen.expect_status("echo-task", "TASK_FINISHED");

    // The custom executor's task: running, then finished with what the
    // framework sent the executor.
    let (running, _) = seen.expect_status("executor-task", "TASK_RUNNING");
    let (finished, last) = seen.expect_status("executor-task", "TASK_FINISHED");
    assert!(
        running < finished,
        "executor-task finished before it ran\n{context}"
    );
    assert_eq!(
        last["data"], REPLY,
        "the executor did not receive the framework's message\n{context}"
    );
    assert_eq!(last["source"], "SOURCE_EXECUTOR", "{context}");
    let (sent, _) = seen
        .of("send_message")
        .next()
        .unwrap_or_else(|| panic!("the framework sent the executor no message\n{context}"));
    assert!(sent < finished, "{context}");

    // The executor's message reached the framework, from its executor and
    // agent, and says what the agent's SUBSCRIBED event told the executor.
    let (_, message) = seen
        .of("framework_message")
        .find(|(_, e)| e["executor"] == EXECUTOR_ID)
        .unwrap_or_else(|| panic!("no framework message from the executor\n{context}"));
    assert_eq!(message["agent"], agent_id.as_str(), "{context}");
    let hello: Value = message["data"]
        .as_str()
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or_else(|| panic!("the executor's message is not JSON: {message}\n{context}"));
    assert_eq!(hello["hello"], "executor-task", "{context}");
    let subscribed = &hello["subscribed"];
    assert_eq!(subscribed["executor_id"], EXECUTOR_ID, "{context}");
    assert_eq!(
        subscribed["framework_id"],
        framework_id.as_str(),
        "{context}"
    );
    assert_eq!(
        subscribed["agent_id"],
        agent_id.as_str(),
        "SUBSCRIBED's agent_info has the agent's id\n{context}"
    );

    // The long task, killed by the framework once running.
    let (sleep_running, _) = seen.expect_status("sleep-task", "TASK_RUNNING");
    let (kill, _) = seen
        .of("kill")
        .find(|(_, e)| e["task"] == "sleep-task")
        .unwrap_or_else(|| panic!("the framework did not kill sleep-task\n{context}"));
    let (killed, _) = seen.expect_status("sleep-task", "TASK_KILLED");
    assert!(sleep_running < kill && kill < killed, "{context}");

    // driver.stop() tore the framework down.
    cluster
        .wait_state("the pymesos framework among the completed ones", |state| {
            state["completed_frameworks"]
                .as_array()
                .is_some_and(|c| c.iter().any(|f| f["id"] == framework_id.as_str()))
        })
        .unwrap_or_else(|e| panic!("{e:#}\n{context}"));

    // ...and with it the executor, which the agent shut down.
    wait_for("the executor to exit", Duration::from_secs(30), || {
        processes_under(cluster.dir.path())
            .into_iter()
            .all(|pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                !String::from_utf8_lossy(&cmdline).contains("pymesos_executor.py")
            })
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{context}"));
}
