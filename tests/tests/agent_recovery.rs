//! Agent recovery end to end: an agent SIGKILLed and started again with the
//! same work dir, port and flags re-attaches to its running executors, and
//! every task's final status still reaches the framework. After a reboot
//! (a different boot id) the agent starts clean as a new agent.
//!
//! The tasks wait for a `release` file in their sandbox instead of
//! sleeping, so the test decides when they end; every wait is a condition
//! with a deadline.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::thread::JoinHandle;
use std::time::Duration;

use agora_agent::checkpoint::journal::JournalStore;
use agora_e2e::{Cluster, Proc, all_tasks, get_json, run_with_deadline, wait_for};

const RESOURCES: &str = "cpus:2;mem:1024";
/// Records its pid, then runs until the test creates `release` in its sandbox.
const HELD_TASK: &str = "echo $$ > task.pid; while [ ! -e release ]; do sleep 0.05; done";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn start_time(pid: u32) -> Option<u64> {
    agora_e2e::process_start_time(pid)
}

/// A cluster with one agent (agent 0) on a port the test knows.
fn cluster_with_agent(envs: &[(&str, &str)]) -> (Cluster, u16) {
    Cluster::with_agent_on_known_port(RESOURCES, envs).expect("master and agent start")
}

/// Starts `agora run` for one held task in a thread.
fn run_held_task(cluster: &Cluster, name: &str) -> JoinHandle<Output> {
    run_task(cluster, name, HELD_TASK, &[])
}

/// Starts `agora run` for one task running `command` in a thread, with
/// `extra` flags.
fn run_task(cluster: &Cluster, name: &str, command: &str, extra: &[&str]) -> JoinHandle<Output> {
    let mut run = std::process::Command::new(agora_e2e::agora_bin());
    run.args([
        "run",
        "--master",
        &cluster.master_address(),
        "--name",
        name,
        "--command",
        command,
        "--timeout",
        "60",
    ]);
    run.args(extra);
    std::thread::spawn(move || run_with_deadline(run, Duration::from_secs(120)))
}

/// Waits until the task runs, and returns its sandbox and its process.
fn running_task(cluster: &Cluster, task_id: &str) -> (PathBuf, u32, u64) {
    wait_for(
        &format!("{task_id} running with its pid recorded"),
        Duration::from_secs(30),
        || {
            let state = cluster.state().ok()?;
            all_tasks(&state)
                .iter()
                .any(|t| t["id"] == task_id && t["state"] == "TASK_RUNNING")
                .then_some(())?;
            let file = cluster.sandbox_files(task_id, "task.pid").pop()?;
            let pid: u32 = std::fs::read_to_string(&file).ok()?.trim().parse().ok()?;
            let started = start_time(pid)?;
            Some((file.parent()?.to_path_buf(), pid, started))
        },
    )
    .expect("task runs")
}

fn agent_id(cluster: &Cluster) -> String {
    cluster.state().expect("state")["agents"][0]["id"]
        .as_str()
        .expect("agent id")
        .to_string()
}

/// The agent's own `/state`, once it shows `check` true.
fn agent_state(
    port: u16,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    wait_for(what, Duration::from_secs(30), || {
        get_json(port, "/state").ok().filter(&check)
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", get_json(port, "/state")))
}

fn release(sandbox: &Path) {
    std::fs::write(sandbox.join("release"), b"").expect("release file");
}

fn assert_finished_cleanly(output: &Output) {
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "agora run fails: {stdout}\n{}",
        text(&output.stderr)
    );
    assert!(stdout.contains("TASK_FINISHED"), "{stdout}");
    for bad in ["TASK_LOST", "TASK_FAILED", "TASK_GONE", "TASK_KILLED"] {
        assert!(!stdout.contains(bad), "{bad} reported: {stdout}");
    }
}

fn sigkill(agent: &mut Proc) {
    // Proc::kill sends SIGKILL to this pid and reaps it.
    agent.kill();
}

#[test]
fn a_task_survives_a_sigkilled_agent_and_finishes() {
    let (mut cluster, port) = cluster_with_agent(&[]);
    let id = agent_id(&cluster);
    let runner = run_held_task(&cluster, "keeper");
    let (sandbox, pid, started) = running_task(&cluster, "keeper-0");

    sigkill(&mut cluster.agents[0]);
    assert_eq!(
        start_time(pid),
        Some(started),
        "the task outlives the agent"
    );

    cluster.agents[0] = cluster.start_agent_on(0, port, RESOURCES, "agent-0-again.log", &[]);
    // Back, with the same id, and it re-attached to the running task.
    agent_state(port, "the restarted agent registered", |s| {
        s["registered"] == true
            && s["id"] == id.as_str()
            && s["tasks"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t["id"] == "keeper-0"))
    });
    let state = cluster.wait_agents(1).expect("agent active again");
    assert_eq!(state["agents"].as_array().map(Vec::len), Some(1));
    assert_eq!(state["agents"][0]["id"], id.as_str(), "same agent id");
    assert_eq!(
        start_time(pid),
        Some(started),
        "the same task process keeps running"
    );
    let log = cluster.agents[0].log_text();
    assert!(log.contains("recovered from the checkpoint"), "{log}");

    release(&sandbox);
    let output = runner.join().expect("runner thread");
    assert_finished_cleanly(&output);
    assert_eq!(
        cluster.sandbox_files("keeper-0", "task.pid").len(),
        1,
        "the task was not launched a second time"
    );
    agent_state(port, "the finished task retired", |s| {
        s["tasks"].as_array().is_some_and(Vec::is_empty)
            && s["completed_tasks"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t["id"] == "keeper-0"))
    });
}

#[test]
fn a_task_that_ends_while_the_agent_is_down_is_reported_when_it_returns() {
    let (mut cluster, port) = cluster_with_agent(&[]);
    let runner = run_held_task(&cluster, "latecomer");
    let (sandbox, pid, started) = running_task(&cluster, "latecomer-0");

    sigkill(&mut cluster.agents[0]);
    release(&sandbox);
    wait_for("the task ends", Duration::from_secs(30), || {
        (start_time(pid) != Some(started)).then_some(())
    })
    .expect("task ends without its agent");
    // Its executor holds the final update until the agent is back.
    cluster.agents[0] = cluster.start_agent_on(0, port, RESOURCES, "agent-0-again.log", &[]);
    let output = runner.join().expect("runner thread");
    assert_finished_cleanly(&output);
}

#[test]
fn after_a_reboot_the_agent_starts_clean_as_a_new_agent() {
    let dir = tempfile::tempdir().expect("temp dir");
    let boot_id_file = dir.path().join("boot_id");
    std::fs::write(&boot_id_file, "boot-one\n").expect("boot id");
    let boot_env = boot_id_file.to_str().expect("utf-8 path").to_string();
    let envs = [("AGORA_TEST_BOOT_ID_FILE", boot_env.as_str())];
    let (mut cluster, port) = cluster_with_agent(&envs);
    let old_id = agent_id(&cluster);
    let output = cluster.run(&["--name", "before", "--command", "echo hi"]);
    assert!(output.status.success(), "{}", text(&output.stdout));
    let meta = cluster.agent_dir(0).join("meta");
    assert_eq!(
        checkpointed(&meta, "slaves/latest").expect("agent id checkpointed"),
        old_id.as_bytes()
    );

    sigkill(&mut cluster.agents[0]);
    std::fs::write(&boot_id_file, "boot-two\n").expect("boot id");
    cluster.agents[0] = cluster.start_agent_on(0, port, RESOURCES, "agent-0-rebooted.log", &envs);
    let state = agent_state(port, "the agent registered anew", |s| {
        s["registered"] == true && s["id"].as_str().is_some_and(|id| id != old_id)
    });
    let new_id = state["id"].as_str().expect("new id").to_string();
    assert!(
        state["tasks"].as_array().is_some_and(Vec::is_empty),
        "{state}"
    );
    let log = cluster.agents[0].log_text();
    assert!(log.contains("rebooted"), "the log says why: {log}");
    assert_eq!(
        std::fs::read_to_string(meta.join("boot_id")).expect("boot id"),
        "boot-two"
    );
    assert_eq!(
        checkpointed(&meta, "slaves/latest").expect("new id checkpointed"),
        new_id.as_bytes()
    );
    assert_eq!(
        cluster.sandbox_files("before-0", "stdout").len(),
        1,
        "the old sandbox is kept"
    );
    // The new agent takes work.
    let output = cluster.run(&["--name", "after", "--command", "echo hi"]);
    assert!(output.status.success(), "{}", text(&output.stdout));
}

/// A file of the agent's checkpoint (paths as in `agora_agent::checkpoint`),
/// read from its journal.
fn checkpointed(meta: &Path, path: &str) -> Option<Vec<u8>> {
    let image = JournalStore::read_image(meta).expect("checkpoint journal");
    image.files.get(Path::new(path)).cloned()
}

/// Sends `signal` to `pid` if it is still the process that started at `started`.
fn signal_if_same(pid: u32, started: u64, signal: rustix::process::Signal) {
    if start_time(pid) == Some(started)
        && let Some(target) = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(target, signal);
    }
}

/// The children of `pid` that are `agora` processes (a supervisor's
/// worker; a task's shell is not one).
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|child: &u32| {
            std::fs::read(format!("/proc/{child}/cmdline"))
                .is_ok_and(|line| line.split(|b| *b == 0).nth(1) == Some(b"supervisor".as_slice()))
        })
        .collect()
}

/// Kills a process this test froze, should the test fail before the agent does.
struct KillOnDrop(u32, u64);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        signal_if_same(self.0, self.1, rustix::process::Signal::KILL);
    }
}

#[test]
fn an_executor_that_does_not_come_back_is_killed_with_its_task() {
    let (mut cluster, port) = cluster_with_agent(&[]);
    let runner = run_held_task(&cluster, "frozen");
    let (_sandbox, task_pid, task_started) = running_task(&cluster, "frozen-0");
    // The executor's pid, as the agent checkpointed it.
    let image = JournalStore::read_image(&cluster.agent_dir(0).join("meta")).expect("checkpoint");
    let (_, executor_record) = image
        .files
        .iter()
        .find(|(path, _)| path.ends_with("executors/frozen-0/executor.info"))
        .expect("executor checkpointed");
    let record: serde_json::Value =
        serde_json::from_slice(executor_record).expect("executor record is JSON");
    let executor_pid = u32::try_from(record["run"]["pid"].as_u64().expect("pid")).expect("pid");
    let executor_started = start_time(executor_pid).expect("executor alive");
    assert_eq!(record["run"]["start_time"].as_u64(), Some(executor_started));
    let _guard = KillOnDrop(executor_pid, executor_started);
    let _task_guard = KillOnDrop(task_pid, task_started);

    // With the executor supervisor the checkpointed process is its keeper,
    // and the executors live in its worker, the keeper's child.
    let workers: Vec<(u32, u64)> = children(executor_pid)
        .into_iter()
        .filter_map(|pid| Some((pid, start_time(pid)?)))
        .collect();
    let _worker_guards: Vec<KillOnDrop> = workers
        .iter()
        .map(|(pid, started)| KillOnDrop(*pid, *started))
        .collect();

    sigkill(&mut cluster.agents[0]);
    // A hung executor: alive, but it will not re-subscribe.
    signal_if_same(
        executor_pid,
        executor_started,
        rustix::process::Signal::STOP,
    );
    for (pid, started) in &workers {
        signal_if_same(*pid, *started, rustix::process::Signal::STOP);
    }
    cluster.agents[0] = cluster.start_agent_on(0, port, RESOURCES, "agent-0-again.log", &[]);
    let output = runner.join().expect("runner thread");
    let stdout = text(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    assert!(
        stdout.contains("TASK_FAILED") && stdout.contains("re-subscribe"),
        "fails with the reason: {stdout}\n{}",
        text(&output.stderr)
    );
    wait_for("executor and task gone", Duration::from_secs(10), || {
        (start_time(executor_pid) != Some(executor_started)
            && start_time(task_pid) != Some(task_started))
        .then_some(())
    })
    .expect("nothing of the task is left running");
}

/// An agent that stops while starting a task's executor (SIGKILL, OOM,
/// power) must not fail the task: nothing of it ran, because a task reaches
/// its executor only once the executor's process is recorded. Debug builds
/// exit at the two points a test fault names: after the run is recorded
/// and before anything of it is created; after its container and process
/// (or the supervisor's HOST) are created and before the process is
/// recorded. The restarted agent destroys what the unfinished start left,
/// launches the executor again, and the task runs once and finishes.
#[test]
fn an_agent_stopped_while_starting_an_executor_starts_it_again_and_the_task_runs_once() {
    for point in [
        agora_agent::test_faults::ExitPoint::BeforeExecutorStart,
        agora_agent::test_faults::ExitPoint::BeforeExecutorRecorded,
    ] {
        let (mut cluster, port) =
            cluster_with_agent(&[(agora_agent::test_faults::ENV, point.name())]);
        let name = format!("restarted-{}", point.name());
        let task_id = format!("{name}-0");
        let runner = run_held_task(&cluster, &name);
        let status = wait_for(
            &format!("the agent exits at {}", point.name()),
            Duration::from_secs(30),
            || cluster.agents[0].exited(),
        )
        .expect("the agent reaches the fault");
        assert_eq!(status.code(), Some(86), "{}", cluster.agents[0].log_text());

        cluster.agents[0] = cluster.start_agent_on(0, port, RESOURCES, "agent-0-again.log", &[]);
        let (sandbox, _pid, _started) = running_task(&cluster, &task_id);
        let log = cluster.agents[0].log_text();
        assert!(
            log.contains("launching again an executor the agent stopped while starting"),
            "{log}"
        );
        if point == agora_agent::test_faults::ExitPoint::BeforeExecutorRecorded {
            assert!(
                log.contains("destroying what an executor's unfinished start left"),
                "{log}"
            );
        }
        release(&sandbox);
        let output = runner.join().expect("runner thread");
        assert_finished_cleanly(&output);
        assert_eq!(
            cluster.sandbox_files(&task_id, "task.pid").len(),
            1,
            "the task ran once: {}",
            point.name()
        );
    }
}

/// A custom executor's program never runs before the agent has recorded
/// its process. Under posix isolation there is no cgroup to find an
/// unrecorded process by after a restart, so a program started before
/// the record would live on unknown to the agent. Here the agent exits
/// (a debug-build test fault) after starting the executor and before
/// recording it: the executor, held at its start gate, sees the agent
/// gone and exits without running the program; the restarted agent starts
/// the executor again, and the program runs exactly once, in the new run.
#[test]
fn a_custom_executors_program_runs_only_once_its_start_is_recorded() {
    let point = agora_agent::test_faults::ExitPoint::BeforeExecutorRecorded;
    let posix = ("AGORA_ISOLATION", "posix/cpu,posix/mem");
    let (mut cluster, port) =
        cluster_with_agent(&[(agora_agent::test_faults::ENV, point.name()), posix]);
    let example = agora_e2e::sdk_example("custom_executor");
    // Each start of the program leaves a mark in its run's sandbox, then
    // becomes the SDK's example executor, which runs the task.
    let program = format!(
        "echo $$ > program-ran; exec {}",
        example.to_str().expect("utf-8 path")
    );
    let runner = run_task(&cluster, "gated", "echo done", &["--executor", &program]);
    let status = wait_for(
        "the agent exits before recording the executor",
        Duration::from_secs(30),
        || cluster.agents[0].exited(),
    )
    .expect("the agent reaches the fault");
    assert_eq!(status.code(), Some(86), "{}", cluster.agents[0].log_text());

    cluster.agents[0] = cluster.start_agent_on(0, port, RESOURCES, "agent-0-again.log", &[posix]);
    let output = runner.join().expect("runner thread");
    assert_finished_cleanly(&output);
    let log = cluster.agents[0].log_text();
    assert!(
        log.contains("launching again an executor the agent stopped while starting"),
        "{log}"
    );
    let marks = cluster.sandbox_files("gated-executor", "program-ran");
    assert_eq!(
        marks.len(),
        1,
        "the program ran in the restarted agent's run only: {marks:?}"
    );
}
