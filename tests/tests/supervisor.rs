//! The executor supervisor end to end (`agora supervisor`, one process per
//! agent hosting its command executors): tasks are its children and no
//! `agora executor` runs; SIGKILLed with tasks running, each task is
//! reported failed exactly once, none is left running, and the next launch
//! gets a new supervisor; across an agent restart the old supervisor keeps
//! its tasks, reports them to the new agent and exits once they are done.

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

/// The live `agora <role>` processes working in `work_dir`.
fn agora_processes(work_dir: &Path, role: &str) -> Vec<u32> {
    agora_e2e::everything_under(work_dir)
        .into_iter()
        .filter(|pid| start_time(*pid).is_some())
        .filter(|pid| command_line(*pid).get(1).is_some_and(|arg| arg == role))
        .collect()
}

fn one_supervisor(work_dir: &Path) -> u32 {
    wait_for(
        "one supervisor",
        Duration::from_secs(30),
        || match agora_processes(work_dir, "supervisor").as_slice() {
            [pid] => Some(*pid),
            _ => None,
        },
    )
    .unwrap_or_else(|e| panic!("{e}: {:?}", agora_processes(work_dir, "supervisor")))
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
fn tasks_are_the_supervisors_children_and_a_killed_supervisor_fails_each_once() {
    let cluster = Cluster::start(1, RESOURCES).expect("cluster starts");
    let work_dir = cluster.agent_dir(0);
    let supervisor = one_supervisor(&work_dir);
    let count = TASKS.to_string();
    let mut run = cluster.spawn_run(
        "held",
        HELD_TASK,
        &["--instances", &count, "--cpus", "0.1", "--mem", "16"],
    );
    let tasks = running_tasks(&cluster, "held", TASKS);

    // The tasks' shells are the supervisor's children; no executor process
    // per task exists.
    for (id, (_, pid, _)) in &tasks {
        assert_eq!(parent(*pid), Some(supervisor), "{id}'s parent");
    }
    assert!(
        agora_processes(&work_dir, "executor").is_empty(),
        "no agora executor runs: {:?}",
        agora_processes(&work_dir, "executor")
    );

    let pid = rustix::process::Pid::from_raw(i32::try_from(supervisor).expect("pid")).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).expect("SIGKILL");

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
    let next = one_supervisor(&work_dir);
    assert_ne!(next, supervisor, "a new supervisor");
}

#[test]
fn an_old_supervisor_keeps_its_tasks_across_an_agent_restart_then_exits() {
    let (mut cluster, port) =
        Cluster::with_agent_on_known_port(RESOURCES, &[]).expect("master and agent start");
    let work_dir = cluster.agent_dir(0);
    let old = one_supervisor(&work_dir);
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
        let found = agora_processes(&work_dir, "supervisor");
        (found.len() == 2).then_some(found)
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
        (start_time(old).is_none()).then_some(())
    })
    .expect("the old supervisor drains and exits");
    let left = one_supervisor(&work_dir);
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
