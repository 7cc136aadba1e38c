//! The executor supervisor end to end (`agora supervisor`, a keeper and its
//! worker per agent, the worker hosting the agent's command executors):
//! tasks are the worker's children and no `agora executor` runs; the
//! worker SIGKILLed with tasks running, the keeper starts another, which
//! adopts them: they keep running and each ends once with its own state;
//! the keeper SIGKILLed, each task is reported failed exactly once, none is
//! left running, and the next launch gets a new supervisor; across an agent
//! restart the old supervisor keeps its tasks, reports them to the new
//! agent and exits once they are done.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agora_e2e::{Cluster, Proc, all_tasks, wait_for};

const RESOURCES: &str = "cpus:8;mem:4096";
const TASKS: usize = 20;
/// Records its pid, then runs until the test creates `release` in its sandbox.
const HELD_TASK: &str = "echo $$ > task.pid; while [ ! -e release ]; do sleep 0.05; done";

fn start_time(pid: u32) -> Option<u64> {
    agora_e2e::process_start_time(pid)
}

/// Field 4 of `/proc/<pid>/stat`: the parent's pid.
fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn command_line(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|part| !part.is_empty())
        .map(|part| String::from_utf8_lossy(part).into_owned())
        .collect()
}

/// The live `agora <role> [args]` processes working in `work_dir`.
fn agora_processes(work_dir: &Path, role: &str) -> Vec<u32> {
    agora_e2e::everything_under(work_dir)
        .into_iter()
        .filter(|pid| start_time(*pid).is_some())
        .filter(|pid| {
            let line = command_line(*pid);
            let mut words = role.split(' ');
            let wanted: Vec<&str> = words.by_ref().collect();
            line.len() == wanted.len() + 1 && line[1..].iter().zip(&wanted).all(|(a, b)| a == b)
        })
        .collect()
}

/// The supervisors' keepers (what the agent starts) in `work_dir`.
fn keepers(work_dir: &Path) -> Vec<u32> {
    agora_processes(work_dir, "supervisor")
}

/// The supervisors' workers (what hosts the executors) in `work_dir`.
fn workers(work_dir: &Path) -> Vec<u32> {
    agora_processes(work_dir, "supervisor --worker")
}

/// The agent's one supervisor: its keeper and its worker.
fn one_supervisor(work_dir: &Path) -> (u32, u32) {
    wait_for("one supervisor", Duration::from_secs(30), || {
        match (keepers(work_dir).as_slice(), workers(work_dir).as_slice()) {
            ([keeper], [worker]) if parent(*worker) == Some(*keeper) => Some((*keeper, *worker)),
            _ => None,
        }
    })
    .unwrap_or_else(|e| panic!("{e}: {:?} {:?}", keepers(work_dir), workers(work_dir)))
}

fn sigkill(pid: u32) {
    let pid = rustix::process::Pid::from_raw(i32::try_from(pid).expect("pid")).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).expect("SIGKILL");
}

/// Waits until `count` tasks named `name-N` run and have recorded their
/// pids; returns each task's sandbox, pid and start time.
fn running_tasks(
    cluster: &Cluster,
    name: &str,
    count: usize,
) -> BTreeMap<String, (PathBuf, u32, u64)> {
    wait_for(
        &format!("{count} tasks of {name} running"),
        Duration::from_secs(60),
        || {
            let state = cluster.state().ok()?;
            let tasks = all_tasks(&state);
            let mut found = BTreeMap::new();
            for n in 0..count {
                let id = format!("{name}-{n}");
                tasks
                    .iter()
                    .any(|t| t["id"] == id.as_str() && t["state"] == "TASK_RUNNING")
                    .then_some(())?;
                let file = cluster.sandbox_files(&id, "task.pid").pop()?;
                let pid: u32 = std::fs::read_to_string(&file).ok()?.trim().parse().ok()?;
                let started = start_time(pid)?;
                found.insert(id, (file.parent()?.to_path_buf(), pid, started));
            }
            Some(found)
        },
    )
    .expect("tasks run")
}

/// The end lines `agora run` printed, by task.
fn end_lines(run: &Proc) -> BTreeMap<String, Vec<String>> {
    let mut ends: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in run.log_text().lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("task")
            && let (Some(task), Some(state)) = (words.next(), words.next())
            && state.starts_with("TASK_")
        {
            ends.entry(task.to_string())
                .or_default()
                .push(state.to_string());
        }
    }
    ends
}

#[test]
fn tasks_are_the_workers_children_and_a_killed_supervisor_fails_each_once() {
    let cluster = Cluster::start(1, RESOURCES).expect("cluster starts");
    let work_dir = cluster.agent_dir(0);
    let (supervisor, worker) = one_supervisor(&work_dir);
    let count = TASKS.to_string();
    let mut run = cluster.spawn_run(
        "held",
        HELD_TASK,
        &["--instances", &count, "--cpus", "0.1", "--mem", "16"],
    );
    let tasks = running_tasks(&cluster, "held", TASKS);

    // The tasks' shells are the worker's children; no executor process
    // per task exists.
    for (id, (_, pid, _)) in &tasks {
        assert_eq!(parent(*pid), Some(worker), "{id}'s parent");
    }
    assert!(
        agora_processes(&work_dir, "executor").is_empty(),
        "no agora executor runs: {:?}",
        agora_processes(&work_dir, "executor")
    );

    // The keeper goes: its worker goes with it, and with them every run.
    sigkill(supervisor);

    // Every task ends, reported once, as failed; none keeps running.
    wait_for("agora run ends", Duration::from_secs(60), || run.exited()).expect("agora run ends");
    let ends = end_lines(&run);
    assert_eq!(ends.len(), TASKS, "{ends:?}\n{}", run.log_text());
    for (task, states) in &ends {
        assert_eq!(states, &["TASK_FAILED"], "{task}: {}", run.log_text());
    }
    for (id, (_, pid, started)) in &tasks {
        wait_for(
            &format!("{id}'s process to end"),
            Duration::from_secs(30),
            || (start_time(*pid) != Some(*started)).then_some(()),
        )
        .expect("no task outlives its supervisor");
    }
    let state = cluster.state().expect("state");
    let reported: Vec<String> = all_tasks(&state)
        .iter()
        .filter_map(|t| t["message"].as_str().map(str::to_string))
        .collect();
    assert!(
        reported.iter().any(|m| m.contains("supervisor exited")),
        "the reason names the supervisor: {reported:?}"
    );

    // The next launch gets a new supervisor and runs.
    let output = cluster.run(&["--name", "after", "--command", "true"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("TASK_FINISHED"), "{stdout}");
    let (next, next_worker) = one_supervisor(&work_dir);
    assert_ne!(next, supervisor, "a new supervisor");
    assert!(
        start_time(worker).is_none(),
        "the worker died with its keeper"
    );
    assert_ne!(next_worker, worker);
}

/// Exits with the status written to `release` once it is there.
const RELEASED_TASK: &str =
    "echo $$ > task.pid; while [ ! -e release ]; do sleep 0.05; done; exit $(cat release)";

/// Creates `release` in a task's sandbox holding `status`, in one step (a
/// task never reads it half-written).
fn release(sandbox: &Path, status: u8) {
    let staged = sandbox.join("release.staged");
    std::fs::write(&staged, status.to_string()).expect("staged release file");
    std::fs::rename(&staged, sandbox.join("release")).expect("release file");
}

#[test]
fn a_killed_worker_is_replaced_and_its_running_tasks_are_adopted_and_end_once() {
    const ADOPTED: usize = 50;
    /// Released just before the kill: they end around it, before, during
    /// or after the new worker's start.
    const AROUND_THE_KILL: usize = 10;
    let cluster = Cluster::start(1, RESOURCES).expect("cluster starts");
    let work_dir = cluster.agent_dir(0);
    let (keeper, worker) = one_supervisor(&work_dir);
    let count = ADOPTED.to_string();
    let mut run = cluster.spawn_run(
        "adopted",
        RELEASED_TASK,
        &["--instances", &count, "--cpus", "0.1", "--mem", "16"],
    );
    let tasks = running_tasks(&cluster, "adopted", ADOPTED);
    for (id, (_, pid, _)) in &tasks {
        assert_eq!(parent(*pid), Some(worker), "{id}'s parent");
    }
    // Even tasks finish, odd ones fail with status 3.
    let expected = |id: &str| {
        let n: usize = id
            .rsplit('-')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("index");
        if n.is_multiple_of(2) {
            ("TASK_FINISHED", 0)
        } else {
            ("TASK_FAILED", 3)
        }
    };
    let (around, later): (Vec<_>, Vec<_>) = tasks.iter().partition(|(id, _)| {
        let n: usize = id
            .rsplit('-')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("index");
        n < AROUND_THE_KILL
    });
    for (id, (sandbox, _, _)) in &around {
        release(sandbox, expected(id).1);
    }
    sigkill(worker);

    // The keeper starts another worker; the tasks not yet released keep
    // running, now the keeper's children.
    let next = wait_for("a new worker", Duration::from_secs(30), || {
        match workers(&work_dir).as_slice() {
            [next] if *next != worker && parent(*next) == Some(keeper) => Some(*next),
            _ => None,
        }
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", workers(&work_dir)));
    assert_eq!(keepers(&work_dir), vec![keeper], "the same keeper");
    for (id, (_, pid, started)) in &later {
        assert_eq!(start_time(*pid), Some(*started), "{id} keeps running");
        assert_eq!(parent(*pid), Some(keeper), "{id} is the keeper's now");
    }
    // Adopted: once the new worker has them, they run on as before.
    wait_for("the runs adopted", Duration::from_secs(30), || {
        let log = std::fs::read_to_string(work_dir.join("supervisor.log")).ok()?;
        let adopted = log
            .lines()
            .filter(|l| l.contains("adopting an executor run"))
            .count();
        (adopted >= later.len()).then_some(())
    })
    .expect("the new worker adopts the running tasks");
    for (id, (sandbox, _, _)) in &later {
        release(sandbox, expected(id).1);
    }

    // Each task ends exactly once, with the state its exit status says.
    wait_for("agora run ends", Duration::from_secs(90), || run.exited())
        .unwrap_or_else(|e| panic!("{e}\n{}", run.log_text()));
    let ends = end_lines(&run);
    assert_eq!(ends.len(), ADOPTED, "{ends:?}\n{}", run.log_text());
    for (task, states) in &ends {
        assert_eq!(states, &[expected(task).0], "{task}: {}", run.log_text());
    }
    let state = cluster.state().expect("state");
    for task in all_tasks(&state) {
        let id = task["id"].as_str().expect("id");
        assert_eq!(task["state"], expected(id).0, "{id} in /state: {task}");
    }
    for (id, (_, pid, started)) in &tasks {
        wait_for(
            &format!("{id}'s process to end"),
            Duration::from_secs(30),
            || (start_time(*pid) != Some(*started)).then_some(()),
        )
        .expect("no task is left");
    }

    // The new worker takes new launches, under the same keeper.
    let output = cluster.run(&["--name", "after", "--command", "true"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("TASK_FINISHED"), "{stdout}");
    assert_eq!(one_supervisor(&work_dir), (keeper, next));
}

#[test]
fn an_old_supervisor_keeps_its_tasks_across_an_agent_restart_then_exits() {
    let (mut cluster, port) =
        Cluster::with_agent_on_known_port(RESOURCES, &[]).expect("master and agent start");
    let work_dir = cluster.agent_dir(0);
    let (old, old_worker) = one_supervisor(&work_dir);
    let mut run = cluster.spawn_run(
        "kept",
        HELD_TASK,
        &["--instances", "5", "--cpus", "0.1", "--mem", "16"],
    );
    let tasks = running_tasks(&cluster, "kept", 5);

    cluster.agents[0].kill();
    cluster.agents[0] = cluster.start_agent_on(0, port, RESOURCES, "agent-0-again.log", &[]);
    // The new agent starts its own supervisor; the old one lives on with
    // the tasks.
    let both = wait_for("two supervisors", Duration::from_secs(30), || {
        let found = keepers(&work_dir);
        (found.len() == 2 && workers(&work_dir).len() == 2).then_some(found)
    })
    .expect("a new supervisor beside the old one");
    assert!(both.contains(&old), "{both:?}");
    for (id, (_, pid, started)) in &tasks {
        assert_eq!(start_time(*pid), Some(*started), "{id} keeps running");
    }

    for (sandbox, _, _) in tasks.values() {
        std::fs::write(sandbox.join("release"), b"").expect("release file");
    }
    wait_for("agora run ends", Duration::from_secs(60), || run.exited()).expect("agora run ends");
    let ends = end_lines(&run);
    assert_eq!(ends.len(), 5, "{}", run.log_text());
    for (task, states) in &ends {
        assert_eq!(states, &["TASK_FINISHED"], "{task}: {}", run.log_text());
    }
    // Its runs over and reported, the old supervisor exits; the new one stays.
    wait_for("the old supervisor exits", Duration::from_secs(30), || {
        (start_time(old).is_none() && start_time(old_worker).is_none()).then_some(())
    })
    .expect("the old supervisor drains and exits");
    let (left, _) = one_supervisor(&work_dir);
    assert_ne!(left, old);
}

/// One supervisor connection carries a stream per hosted executor: more
/// tasks than HTTP/2's usual 200 streams per connection all run at once.
#[test]
fn more_tasks_than_one_connections_default_streams_run_at_once() {
    const MANY: usize = 250;
    let cluster = Cluster::start(1, "cpus:8;mem:8192").expect("cluster starts");
    let gate = cluster.dir.path().join("go");
    let held = format!("while [ ! -e {} ]; do sleep 0.2; done", gate.display());
    let count = MANY.to_string();
    let mut run = cluster.spawn_run(
        "many",
        &held,
        &["--instances", &count, "--cpus", "0.01", "--mem", "16"],
    );
    wait_for(
        &format!("{MANY} tasks running"),
        Duration::from_secs(120),
        || {
            let state = cluster.state().ok()?;
            let running = all_tasks(&state)
                .iter()
                .filter(|t| t["state"] == "TASK_RUNNING")
                .count();
            (running == MANY).then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", run.log_text()));
    std::fs::write(&gate, b"").expect("gate");
    wait_for("agora run ends", Duration::from_secs(120), || run.exited()).expect("agora run ends");
    let ends = end_lines(&run);
    assert_eq!(ends.len(), MANY, "{}", run.log_text());
    assert!(
        ends.values().all(|states| states == &["TASK_FINISHED"]),
        "{}",
        run.log_text()
    );
}
