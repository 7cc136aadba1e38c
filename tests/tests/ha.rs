//! High availability end to end: several real masters elect a leader in a
//! real ZooKeeper; agents and frameworks follow it with `zk://` addresses;
//! killing the leader costs no task.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agora_coord::testing::{Proxy, ZooKeeper};
use agora_e2e::{
    Proc, agora_bin, all_tasks, free_port, get_json, http_get, run_with_deadline, spawn_zk_master,
    wait_for,
};
use rustix::process::{Pid, Signal, kill_process};

struct Master {
    port: u16,
    proc: Proc,
}

fn start_master(dir: &Path, n: usize, port: u16, zk: &str) -> Master {
    // A fresh log per start: a restarted master must not overwrite the log
    // of the one it replaces.
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let log = dir.join(format!("master-{n}-{stamp}.log"));
    let proc = spawn_zk_master(dir, n, port, zk, log);
    Master { port, proc }
}

/// A master as [`start_master`] starts one, with ZooKeeper session timeout
/// `session` (whole seconds) instead of the harness's 2 s.
fn start_master_with_session(
    dir: &Path,
    n: usize,
    port: u16,
    zk: &str,
    session: Duration,
) -> Master {
    let work_dir = dir.join(format!("master-{n}"));
    let proc = Proc::spawn(
        &[
            "master",
            "--ip",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--work-dir",
            work_dir.to_str().expect("utf-8"),
            "--zk",
            zk,
            "--zk-session-timeout",
            &session.as_secs().to_string(),
        ],
        dir.join(format!("master-{n}.log")),
    );
    Master { port, proc }
}

/// Agent `n`, its containers under `cgroups_root` (a test's own).
fn start_agent(dir: &Path, n: usize, zk: &str, cgroups_root: &str) -> Proc {
    let work_dir: PathBuf = dir.join(format!("agent-{n}"));
    Proc::spawn(
        &[
            "agent",
            "--master",
            zk,
            "--ip",
            "127.0.0.1",
            "--port",
            &free_port().to_string(),
            "--work-dir",
            work_dir.to_str().expect("utf-8"),
            "--resources",
            "cpus:2;mem:1024",
            "--cgroups-root",
            &format!("{cgroups_root}/a{n}"),
        ],
        dir.join(format!("agent-{n}.log")),
    )
}

/// Which masters say they lead right now (by index).
fn leaders(masters: &[Master]) -> Vec<usize> {
    masters
        .iter()
        .enumerate()
        .filter(|(_, m)| get_json(m.port, "/state").is_ok_and(|s| s["elected"] == true))
        .map(|(i, _)| i)
        .collect()
}

fn wait_leader(masters: &[Master], not: Option<usize>, timeout: Duration) -> usize {
    wait_for(
        "one leading master",
        timeout,
        || match leaders(masters)[..] {
            [one] if Some(one) != not => Some(one),
            _ => None,
        },
    )
    .expect("a leader is elected")
}

fn active_agents(port: u16) -> usize {
    get_json(port, "/state")
        .ok()
        .and_then(|s| {
            s["agents"]
                .as_array()
                .map(|a| a.iter().filter(|a| a["active"] == true).count())
        })
        .unwrap_or(0)
}

fn sigkill(proc: &mut Proc) {
    proc.kill();
}

fn sigterm(proc: &Proc) {
    let pid = Pid::from_raw(proc.pid() as i32).expect("live child");
    kill_process(pid, Signal::TERM).expect("signal our own master");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_three_times_loses_no_task() {
    let zk = ZooKeeper::start()
        .await
        .expect("zookeeper starts (Debian package zookeeper)");
    let url = zk.unique_url("agora-ha").to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let cgroups = agora_e2e::TestCgroups::new("ha");
    let _sweeper = agora_e2e::Sweeper(dir.path().to_path_buf());
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut masters: Vec<Master> = ports
        .iter()
        .enumerate()
        .map(|(n, p)| start_master(dir.path(), n, *p, &url))
        .collect();
    let mut leader = wait_leader(&masters, None, Duration::from_secs(30));

    // Followers say who leads and send users there.
    let follower = (leader + 1) % 3;
    let leader_address = format!("127.0.0.1:{}", masters[leader].port);
    // A follower learns the leader from its own ZooKeeper watch, which may
    // fire after the leader already serves: wait for it.
    wait_for(
        "the follower names the leader",
        Duration::from_secs(30),
        || {
            let state = get_json(masters[follower].port, "/state").ok()?;
            (state["leader"] == leader_address.as_str()).then_some(())
        },
    )
    .expect("follower state");
    let (code, body) = http_get(masters[follower].port, "/").expect("follower page");
    assert_eq!(code, 307, "{body}");
    assert!(body.contains(&leader_address), "{body}");

    let _agents: Vec<Proc> = (0..3)
        .map(|n| start_agent(dir.path(), n, &url, &cgroups.root))
        .collect();
    wait_for(
        "agents registered with the leader",
        Duration::from_secs(30),
        || (active_agents(masters[leader].port) == 3).then_some(()),
    )
    .expect("agents follow the leader");

    // Tasks that run until the test releases them.
    let release = dir.path().join("release");
    let command = format!("while [ ! -e {} ]; do sleep 0.1; done", release.display());
    let mut run = std::process::Command::new(agora_bin());
    run.args([
        "run",
        "--master",
        &url,
        "--name",
        "ha",
        "--command",
        &command,
        "--instances",
        "30",
        "--cpus",
        "0.1",
        "--mem",
        "16",
        "--timeout",
        "60",
    ]);
    let runner = std::thread::spawn(move || run_with_deadline(run, Duration::from_secs(240)));
    wait_for("thirty tasks running", Duration::from_secs(60), || {
        let state = get_json(masters[leader].port, "/state").ok()?;
        let running = all_tasks(&state)
            .iter()
            .filter(|t| t["state"] == "TASK_RUNNING")
            .count();
        (running == 30).then_some(())
    })
    .expect("tasks run");

    let epoch_of = |port: u16| {
        get_json(port, "/state")
            .ok()
            .and_then(|s| s["epoch"].as_u64())
    };
    let mut epoch = epoch_of(masters[leader].port).expect("a leader announces its epoch");
    for round in 0..3 {
        let killed = leader;
        let started = Instant::now();
        sigkill(&mut masters[killed].proc);
        leader = wait_leader(&masters, Some(killed), Duration::from_secs(30));
        let failover = started.elapsed();
        let new_epoch = epoch_of(masters[leader].port).expect("the new leader announces its epoch");
        assert!(
            new_epoch > epoch,
            "epochs only grow: {epoch} then {new_epoch}"
        );
        epoch = new_epoch;
        // The killed master comes back as a follower.
        masters[killed] = start_master(dir.path(), killed, ports[killed], &url);
        wait_for("agents re-registered", Duration::from_secs(60), || {
            (active_agents(masters[leader].port) == 3).then_some(())
        })
        .expect("agents follow the new leader");
        wait_for(
            "tasks re-adopted and running",
            Duration::from_secs(60),
            || {
                let state = get_json(masters[leader].port, "/state").ok()?;
                let tasks = all_tasks(&state);
                let running = tasks
                    .iter()
                    .filter(|t| t["state"] == "TASK_RUNNING")
                    .count();
                (running == 30).then_some(())
            },
        )
        .unwrap_or_else(|e| panic!("round {round}: {e}"));
        eprintln!("round {round}: leader killed, new leader in {failover:?}");
    }

    std::fs::write(&release, b"go").expect("release the tasks");
    let output = runner.join().expect("runner thread");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.matches("TASK_FINISHED").count(), 30, "{stdout}");
    assert!(!stdout.contains("TASK_LOST"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_stopped_with_sigterm_hands_over_before_its_session_could_expire() {
    // A long session: the other master can lead before it is up only if the
    // stopped leader deleted its election node itself (a crashed leader's
    // node lives on until its session expires).
    const SESSION: Duration = Duration::from_secs(30);
    let zk = ZooKeeper::start().await.expect("zookeeper starts");
    let url = zk.unique_url("agora-term").to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let _sweeper = agora_e2e::Sweeper(dir.path().to_path_buf());
    let masters: Vec<Master> = (0..2)
        .map(|n| start_master_with_session(dir.path(), n, free_port(), &url, SESSION))
        .collect();
    let leader = wait_leader(&masters, None, Duration::from_secs(30));
    let other = 1 - leader;
    let started = Instant::now();
    sigterm(&masters[leader].proc);
    let mut handed_over = None;
    while started.elapsed() < SESSION {
        if get_json(masters[other].port, "/state").is_ok_and(|s| s["elected"] == true) {
            handed_over = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let handed_over = handed_over.expect("the other master leads before the session timeout");
    eprintln!("hand-over took {handed_over:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_zookeeper_stops_acting_before_anyone_else_leads() {
    let zk = ZooKeeper::start().await.expect("zookeeper starts");
    let path = agora_coord::testing::unique_path("agora-cut");
    let proxy = Proxy::start(zk.addr()).await.expect("proxy");
    let dir = tempfile::tempdir().expect("temp dir");
    let _sweeper = agora_e2e::Sweeper(dir.path().to_path_buf());
    // Master 0 reaches ZooKeeper through the proxy; it starts first so it leads.
    let mut masters = vec![start_master(
        dir.path(),
        0,
        free_port(),
        &proxy.url(&path).to_string(),
    )];
    let first = wait_leader(&masters, None, Duration::from_secs(30));
    assert_eq!(first, 0);
    masters.push(start_master(
        dir.path(),
        1,
        free_port(),
        &zk.url(&path).to_string(),
    ));
    wait_for("second master follows", Duration::from_secs(30), || {
        get_json(masters[1].port, "/state")
            .ok()
            .filter(|s| s["elected"] == false && s["leader"] != "")
            .map(|_| ())
    })
    .expect("follower sees the leader");

    proxy.cut();
    let cut_at = Instant::now();
    let mut stopped_at = None;
    let mut new_leader_at = None;
    while cut_at.elapsed() < Duration::from_secs(20) && new_leader_at.is_none() {
        let old_leads = get_json(masters[0].port, "/state").is_ok_and(|s| s["elected"] == true);
        let new_leads = get_json(masters[1].port, "/state").is_ok_and(|s| s["elected"] == true);
        assert!(!(old_leads && new_leads), "two masters lead at once");
        if !old_leads && stopped_at.is_none() {
            stopped_at = Some(cut_at.elapsed());
        }
        if new_leads {
            new_leader_at = Some(cut_at.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let stopped_at = stopped_at.expect("the cut-off leader stops acting");
    let new_leader_at = new_leader_at.expect("the other master takes over");
    // The safety ordering: the deposed leader stops before anyone else leads.
    eprintln!("stopped acting after {stopped_at:?}, new leader after {new_leader_at:?}");
    assert!(stopped_at < new_leader_at);
    let exited = wait_for("the deposed leader exits", Duration::from_secs(15), || {
        masters[0].proc.exited()
    })
    .expect("a deposed leader exits so that it can rejoin as a follower");
    assert!(
        !exited.success(),
        "losing leadership is a failure exit: {exited:?}"
    );
}

/// A ZooKeeper master with test faults on (`POST /test/actor-panic`, debug builds only).
fn start_master_with_faults(dir: &Path, n: usize, port: u16, zk: &str) -> Master {
    let log = dir.join(format!("master-{n}.log"));
    let proc =
        agora_e2e::spawn_zk_master_with_env(dir, n, port, zk, log, &[("AGORA_TEST_FAULTS", "1")]);
    Master { port, proc }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_actor_dies_exits_and_another_master_leads() {
    let zk = ZooKeeper::start().await.expect("zookeeper starts");
    let url = zk.unique_url("agora-actor").to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let _sweeper = agora_e2e::Sweeper(dir.path().to_path_buf());
    let mut masters: Vec<Master> = (0..2)
        .map(|n| start_master_with_faults(dir.path(), n, free_port(), &url))
        .collect();
    let leader = wait_leader(&masters, None, Duration::from_secs(30));

    // The actor panics, as a bug would make it.
    let (code, body) =
        agora_e2e::http_request(masters[leader].port, "POST", "/test/actor-panic", None)
            .expect("request");
    assert_eq!(code, 202, "{body}");

    // The process does not linger as a leader that answers nothing: it exits
    // non-zero, saying why, and the other master takes over.
    let status = wait_for("the leader exits", Duration::from_secs(30), || {
        masters[leader].proc.exited()
    })
    .expect("the leader exits");
    assert!(!status.success(), "{status:?}");
    let log = masters[leader].proc.log_text();
    assert!(log.contains("leadership term ended"), "{log}");
    assert!(log.contains("actor ended unexpectedly"), "{log}");
    wait_leader(&masters, Some(leader), Duration::from_secs(30));
}
