//! Issue 10 (hardening), agent absence and `agora run`: an agent that is
//! away for longer than detection but shorter than removal (frozen, or
//! restarted) leaves an `agora run` job intact; a job that cannot be launched
//! as given ends at once with the reason; a busy cluster makes a job wait
//! instead of failing; a signal tears the job's framework down.
//!
//! Tasks wait for a `release` file in their sandbox, so the test decides when
//! they end; every wait is a condition with a deadline.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread::JoinHandle;
use std::time::Duration;

use agora_e2e::{
    Proc, Sweeper, TestCgroups, agora_bin, all_tasks, free_port, get_json, run_with_deadline,
    wait_for,
};
use rustix::process::{Pid, Signal, kill_process};

const RESOURCES: &str = "cpus:1;mem:256";
const HELD_TASK: &str = "while [ ! -e release ]; do sleep 0.05; done";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn signal(pid: u32, signal: Signal) {
    let pid = Pid::from_raw(i32::try_from(pid).expect("pid fits")).expect("non-zero pid");
    kill_process(pid, signal).expect("signal a process this test started");
}

/// A master that detects a silent agent in about a second (0.2 s x 3) and
/// removes it after 30 s, and one agent (`cpus:1;mem:256`) on a known port.
struct Absence {
    dir: tempfile::TempDir,
    master_port: u16,
    agent_port: u16,
    _master: Proc,
    agent: Proc,
    _sweeper: Sweeper,
    /// Dropped after the agent and the sweeper: the agents' containers.
    cgroups: TestCgroups,
}

impl Absence {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let sweeper = Sweeper(dir.path().to_path_buf());
        let cgroups = TestCgroups::new("absence");
        let master_port = free_port();
        let master = Proc::spawn(
            &[
                "master",
                "--ip",
                "127.0.0.1",
                "--port",
                &master_port.to_string(),
                "--agent-ping-timeout",
                "0.2",
                "--max-agent-ping-timeouts",
                "3",
                "--agent-removal-timeout",
                "30",
            ],
            dir.path().join("master.log"),
        );
        let agent_port = free_port();
        let agent = spawn_agent(
            dir.path(),
            master_port,
            agent_port,
            &cgroups.root,
            "agent.log",
        );
        let cluster = Absence {
            dir,
            master_port,
            agent_port,
            _master: master,
            agent,
            _sweeper: sweeper,
            cgroups,
        };
        cluster.wait_agent("active");
        cluster
    }

    fn start_agent(&self, log: &str) -> Proc {
        spawn_agent(
            self.dir.path(),
            self.master_port,
            self.agent_port,
            &self.cgroups.root,
            log,
        )
    }

    fn master(&self) -> String {
        format!("127.0.0.1:{}", self.master_port)
    }

    fn state(&self) -> Option<serde_json::Value> {
        get_json(self.master_port, "/state").ok()
    }

    fn wait_agent(&self, status: &str) {
        wait_for(&format!("agent {status}"), Duration::from_secs(30), || {
            (self.state()?["agents"][0]["status"] == status).then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    }

    /// `agora run` of one held task with `extra` flags, in a thread.
    fn run_held(&self, name: &str, extra: &[&str]) -> JoinHandle<Output> {
        self.run_async(name, HELD_TASK, extra)
    }

    fn run_async(&self, name: &str, command: &str, extra: &[&str]) -> JoinHandle<Output> {
        let mut run = Command::new(agora_bin());
        run.args(["run", "--master", &self.master(), "--name", name])
            .args(["--command", command, "--mem", "64"])
            .args(extra);
        if !extra.contains(&"--cpus") {
            run.args(["--cpus", "1"]);
        }
        std::thread::spawn(move || run_with_deadline(run, Duration::from_secs(120)))
    }

    /// The sandbox of a running task.
    fn running_sandbox(&self, task_id: &str) -> PathBuf {
        wait_for(
            &format!("{task_id} running"),
            Duration::from_secs(30),
            || {
                let state = self.state()?;
                all_tasks(&state)
                    .iter()
                    .any(|t| t["id"] == task_id && t["state"] == "TASK_RUNNING")
                    .then_some(())?;
                sandbox_of(&self.dir.path().join("agent"), task_id)
            },
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }
}

/// The test's agent: work dir `agent` under `dir`, on `port`, its
/// containers under `cgroups_root` (the same across its restarts).
fn spawn_agent(dir: &Path, master_port: u16, port: u16, cgroups_root: &str, log: &str) -> Proc {
    let work_dir = dir.join("agent");
    Proc::spawn(
        &[
            "agent",
            "--master",
            &format!("127.0.0.1:{master_port}"),
            "--ip",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--work-dir",
            work_dir.to_str().expect("utf-8 temp path"),
            "--resources",
            RESOURCES,
            "--cgroups-root",
            cgroups_root,
        ],
        dir.join(log),
    )
}

/// `<work_dir>/slaves/*/frameworks/*/executors/<task_id>/runs/<run>`.
fn sandbox_of(work_dir: &Path, task_id: &str) -> Option<PathBuf> {
    for agent in std::fs::read_dir(work_dir.join("slaves")).ok()?.flatten() {
        for framework in std::fs::read_dir(agent.path().join("frameworks"))
            .ok()?
            .flatten()
        {
            let runs = framework
                .path()
                .join("executors")
                .join(task_id)
                .join("runs");
            let Ok(entries) = std::fs::read_dir(&runs) else {
                continue;
            };
            if let Some(run) = entries.flatten().map(|e| e.path()).find(|p| p.is_dir()) {
                return Some(run);
            }
        }
    }
    None
}

fn release(sandbox: &Path) {
    std::fs::write(sandbox.join("release"), b"").expect("release the task");
}

/// Checks a job ended well: exit 0, FINISHED, never LOST nor KILLED.
fn assert_job_succeeded(output: &Output, task_id: &str) {
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    assert!(
        stdout.contains(&format!("task {task_id} TASK_FINISHED")),
        "{stdout}"
    );
    assert!(
        !stdout.contains("TASK_LOST") && !stdout.contains("TASK_KILLED"),
        "{stdout}"
    );
}

#[test]
fn an_agent_frozen_past_detection_but_not_removal_leaves_the_job_intact() {
    let cluster = Absence::start();
    let runner = cluster.run_held("frozen", &[]);
    let sandbox = cluster.running_sandbox("frozen-0");
    signal(cluster.agent.pid(), Signal::STOP);
    cluster.wait_agent("unreachable");
    signal(cluster.agent.pid(), Signal::CONT);
    cluster.wait_agent("active");
    release(&sandbox);
    let output = runner.join().expect("runner thread");
    assert_job_succeeded(&output, "frozen-0");
}

#[test]
fn an_agent_restarted_within_the_removal_window_leaves_the_job_intact() {
    let mut cluster = Absence::start();
    let runner = cluster.run_held("restarted", &[]);
    let sandbox = cluster.running_sandbox("restarted-0");
    signal(cluster.agent.pid(), Signal::KILL);
    cluster.agent.kill();
    cluster.wait_agent("unreachable");
    cluster.agent = cluster.start_agent("agent-again.log");
    cluster.wait_agent("active");
    release(&sandbox);
    let output = runner.join().expect("runner thread");
    assert_job_succeeded(&output, "restarted-0");
    // The master agrees once its snapshot catches up.
    wait_for("task finished in /state", Duration::from_secs(10), || {
        let state = cluster.state()?;
        all_tasks(&state)
            .iter()
            .any(|t| t["id"] == "restarted-0" && t["state"] == "TASK_FINISHED")
            .then_some(())
    })
    .expect("the task is FINISHED in /state");
}

#[test]
fn a_job_that_cannot_be_launched_as_given_ends_with_the_reason_and_holds_nothing() {
    let cluster = Absence::start();
    for (name, command, needle) in [
        ("a/b", "true", "cannot name tasks"),
        ("empty", "", "--command must not be empty"),
    ] {
        let output = cluster
            .run_async(name, command, &[])
            .join()
            .expect("runner thread");
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(needle), "{stderr}");
    }
    // Nothing is held: another job gets the whole agent at once.
    let output = cluster
        .run_async("after", "true", &[])
        .join()
        .expect("runner thread");
    assert_job_succeeded(&output, "after-0");
}

#[test]
fn a_busy_cluster_makes_a_job_wait_and_a_job_too_big_fails_at_once() {
    let cluster = Absence::start();
    let first = cluster.run_held("first", &[]);
    let sandbox = cluster.running_sandbox("first-0");
    // The agent's only cpu is taken: the second job subscribes and waits.
    let second = cluster.run_async("second", "true", &[]);
    wait_for("second job subscribed", Duration::from_secs(30), || {
        let state = cluster.state()?;
        state["frameworks"]
            .as_array()?
            .iter()
            .any(|f| f["name"] == "second")
            .then_some(())
    })
    .expect("the second job subscribes");
    // Bigger than every agent: fails fast, saying so.
    let output = cluster
        .run_async("huge", "true", &["--cpus", "4"])
        .join()
        .expect("runner thread");
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no agent can ever fit"), "{stderr}");
    assert!(!second.is_finished(), "the second job waits for room");
    release(&sandbox);
    assert_job_succeeded(&first.join().expect("runner thread"), "first-0");
    assert_job_succeeded(&second.join().expect("runner thread"), "second-0");
}

#[test]
fn sighup_tears_the_jobs_framework_down() {
    let cluster = Absence::start();
    let mut job = Proc::spawn_bin(
        &agora_bin(),
        &[
            "run",
            "--master",
            &cluster.master(),
            "--name",
            "hup",
            "--command",
            HELD_TASK,
        ],
        cluster.dir.path().join("hup.log"),
    );
    cluster.running_sandbox("hup-0");
    signal(job.pid(), Signal::HUP);
    let status = wait_for("agora run exits", Duration::from_secs(30), || job.exited())
        .expect("agora run exits on SIGHUP");
    assert_eq!(status.code(), Some(1), "{}", job.log_text());
    // Torn down, not merely disconnected: its task is killed at once.
    wait_for("framework torn down", Duration::from_secs(30), || {
        let state = cluster.state()?;
        let done = state["completed_frameworks"]
            .as_array()?
            .iter()
            .any(|f| f["name"] == "hup");
        let killed = all_tasks(&state)
            .iter()
            .any(|t| t["id"] == "hup-0" && t["state"] == "TASK_KILLED");
        (done && killed).then_some(())
    })
    .expect("the framework is torn down and its task killed");
}
