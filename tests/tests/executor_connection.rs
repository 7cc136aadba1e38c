//! How an executor reaches its agent, seen from the outside through
//! `/proc`: at launch over a socket pair the agent hands it as standard
//! input (no TCP, no TLS handshake per task), which neither the executor's
//! later children nor its task inherit; after an agent restart, over the
//! agent's port, and the task stays controllable. The same holds for the
//! agent's executor supervisor (the default: one process hosts every
//! command executor) and for an `agora executor` process per task
//! (`--executor-supervisor=false`).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use agora_e2e::{Cluster, agora_bin, all_tasks, wait_for};

const RESOURCES: &str = "cpus:2;mem:1024";
const DEADLINE: Duration = Duration::from_secs(60);

/// The pid of the process whose environment names executor `executor_id`
/// and whose command line is `agora executor`.
fn executor_pid(executor_id: &str) -> Option<u32> {
    let wanted = format!("AGORA_EXECUTOR_ID={executor_id}");
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            if args.get(1) != Some(&b"executor".as_slice()) {
                return None;
            }
            let environ = std::fs::read(entry.path().join("environ")).ok()?;
            environ
                .split(|b| *b == 0)
                .any(|v| v == wanted.as_bytes())
                .then_some(pid)
        })
}

/// The `agora supervisor` process working in `work_dir`.
fn supervisor_pid(work_dir: &Path, worker: bool) -> Option<u32> {
    let found: Vec<u32> = agora_e2e::everything_under(work_dir)
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let mut args = c.split(|b| *b == 0).skip(1);
                args.next() == Some(b"supervisor".as_slice())
                    && (args.next() == Some(b"--worker".as_slice())) == worker
            })
        })
        .collect();
    match found.as_slice() {
        [pid] => Some(*pid),
        _ => None,
    }
}

/// What each open descriptor of `pid` points at (`/dev/null`, `socket:[N]`, ...).
fn descriptors(pid: u32) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let fd = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            Some((fd, target.to_string_lossy().into_owned()))
        })
        .collect()
}

fn socket_inodes(pid: u32) -> BTreeSet<u64> {
    descriptors(pid)
        .into_iter()
        .filter_map(|(_, target)| {
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// The inodes of the sockets listed in `/proc/net/<table>` (the inode is
/// the tenth column of tcp/tcp6 and the seventh of unix).
fn table_inodes(table: &str, column: usize) -> BTreeSet<u64> {
    std::fs::read_to_string(Path::new("/proc/net").join(table))
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().nth(column)?.parse().ok())
        .collect()
}

fn tcp_inodes() -> BTreeSet<u64> {
    let mut all = table_inodes("tcp", 9);
    all.extend(table_inodes("tcp6", 9));
    all
}

/// The processes whose parent is `pid`, and theirs, and so on.
fn descendants(pid: u32) -> Vec<u32> {
    let parent_of = |child: u32| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
        // The command name may hold spaces: fields start after its ')'.
        let after = &stat[stat.rfind(')')? + 2..];
        after.split_whitespace().nth(1)?.parse().ok()
    };
    let all: Vec<u32> = std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let current = found[i];
        found.extend(
            all.iter()
                .copied()
                .filter(|p| parent_of(*p) == Some(current)),
        );
        i += 1;
    }
    found.remove(0);
    found
}

fn task_state(cluster: &Cluster, task_id: &str) -> Option<String> {
    let state = cluster.state().ok()?;
    all_tasks(&state)
        .iter()
        .find(|t| t["id"] == task_id)
        .and_then(|t| t["state"].as_str().map(str::to_string))
}

/// `agora run`, killed and reaped when dropped, also when the test fails.
struct Runner(Child);

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_run(cluster: &Cluster) -> Child {
    Command::new(agora_bin())
        .args(["run", "--master", &cluster.master_address()])
        .args(["--name", "held", "--command", "sleep 600"])
        .args(["--cpus", "0.1", "--mem", "32"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("agora run starts")
}

#[test]
fn the_supervisor_connects_over_a_private_pair_then_over_the_port_after_a_restart() {
    connects_over_a_private_pair_then_over_the_port(true);
}

#[test]
fn an_executor_process_connects_over_a_private_pair_then_over_the_port_after_a_restart() {
    connects_over_a_private_pair_then_over_the_port(false);
}

/// `hosted`: the executor runs in the agent's supervisor; else in an
/// `agora executor` process of its own.
fn connects_over_a_private_pair_then_over_the_port(hosted: bool) {
    let envs: &[(&str, &str)] = if hosted {
        &[]
    } else {
        &[("AGORA_EXECUTOR_SUPERVISOR", "false")]
    };
    let (mut cluster, port) =
        Cluster::with_agent_on_known_port(RESOURCES, envs).expect("master and agent start");
    let _runner = Runner(spawn_run(&cluster));

    wait_for("held-0 running", DEADLINE, || {
        (task_state(&cluster, "held-0").as_deref() == Some("TASK_RUNNING")).then_some(())
    })
    .expect("the task runs");
    let work_dir = cluster.agent_dir(0);
    let executor = wait_for("the executor of held-0", DEADLINE, || {
        if hosted {
            // The worker hosts the executors; its keeper holds nothing.
            supervisor_pid(&work_dir, true)
        } else {
            executor_pid("held-0")
        }
    })
    .expect("executor found");

    // The executor's standard input is /dev/null again, and its only
    // connection to the agent is a Unix socket: nothing over TCP.
    let fds = descriptors(executor);
    assert!(
        fds.iter().any(|(fd, t)| *fd == 0 && t == "/dev/null"),
        "the executor's stdin is /dev/null: {fds:?}"
    );
    let sockets = socket_inodes(executor);
    let unix = table_inodes("unix", 6);
    assert!(
        sockets.iter().any(|s| unix.contains(s)),
        "the executor holds a unix socket: {fds:?}"
    );
    assert!(
        sockets.is_disjoint(&tcp_inodes()),
        "the executor has no TCP connection: {fds:?}"
    );

    // The supervisor's keeper let go of the pair: it holds no socket.
    if hosted {
        let keeper = supervisor_pid(&work_dir, false).expect("the keeper");
        let fds = descriptors(keeper);
        assert!(
            fds.iter().any(|(fd, t)| *fd == 0 && t == "/dev/null"),
            "the keeper's stdin is /dev/null: {fds:?}"
        );
        assert!(
            socket_inodes(keeper).is_empty(),
            "the keeper holds no socket: {fds:?}"
        );
    }

    // The task inherits neither the pair nor any other socket.
    let task = descendants(executor);
    assert!(!task.is_empty(), "the task runs under its executor");
    for pid in &task {
        let fds = descriptors(*pid);
        assert!(
            fds.iter().any(|(fd, t)| *fd == 0 && t == "/dev/null"),
            "task process {pid}'s stdin is /dev/null: {fds:?}"
        );
        assert!(
            socket_inodes(*pid).is_empty(),
            "task process {pid} holds no socket: {fds:?}"
        );
    }

    // The agent restarts: the pair is gone, and the executor re-subscribes
    // over the agent's port.
    cluster.agents[0].kill();
    cluster.agents[0] = cluster.start_agent_on(0, port, RESOURCES, "agent-0-again.log", envs);
    wait_for("the executor re-subscribed over TCP", DEADLINE, || {
        let tcp = tcp_inodes();
        socket_inodes(executor)
            .iter()
            .any(|s| tcp.contains(s))
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", descriptors(executor)));
    cluster.wait_agents(1).expect("the agent is back");

    // Over that connection the task is still the executor's to kill.
    let killed = Command::new(agora_bin())
        .args(["kill", "--master", &cluster.master_address(), "held-0"])
        .output()
        .expect("agora kill runs");
    assert!(
        killed.status.success(),
        "agora kill: {}",
        String::from_utf8_lossy(&killed.stderr)
    );
    wait_for("held-0 killed", DEADLINE, || {
        (task_state(&cluster, "held-0").as_deref() == Some("TASK_KILLED")).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", task_state(&cluster, "held-0")));
}
