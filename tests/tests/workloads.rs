//! Real workloads on real agents: cgroups limits (memory, CFS, pids), the
//! fetcher and its cache, ports, users, health checks and a custom
//! executor. Every test starts its own master and agents; tasks are
//! submitted with `agora run`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use agora_e2e::{Cluster, agora_bin, get_json, processes_under, sdk_example, wait_for};

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A cluster of one master and one agent with these extra agent flags.
fn cluster(resources: &str, agent_flags: &[&str]) -> (Cluster, u16) {
    let mut cluster = Cluster::start(0, resources).expect("master starts");
    let port = cluster.add_agent_with(0, resources, agent_flags);
    cluster.wait_agents(1).expect("agent registers");
    (cluster, port)
}

/// `agora run` in the background, for tests that watch a task while it runs.
fn spawn_run(cluster: &Cluster, args: &[&str]) -> std::process::Child {
    Command::new(agora_bin())
        .arg("run")
        .arg("--master")
        .arg(cluster.master_address())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agora run starts")
}

fn wait_output(mut child: std::process::Child, deadline: Duration) -> Output {
    let started = Instant::now();
    while child.try_wait().expect("wait works").is_none() {
        if started.elapsed() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn a_task_over_its_memory_fails_with_the_memory_reason_and_spares_its_neighbour() {
    let (cluster, _) = cluster("cpus:2;mem:1024;disk:1000", &[]);
    let neighbour = spawn_run(
        &cluster,
        &[
            "--name",
            "calm",
            "--mem",
            "64",
            "--command",
            "sleep 3; echo still here",
        ],
    );
    // dd allocates its 200 MB block and fills it: far past a 32 MB limit.
    let hog = cluster.run(&[
        "--name",
        "hog",
        "--mem",
        "32",
        "--command",
        "dd if=/dev/zero of=/dev/null bs=200M count=1",
    ]);
    let out = text(&hog);
    assert!(!hog.status.success(), "{out}");
    assert!(out.contains("TASK_FAILED"), "{out}");
    assert!(out.contains("REASON_CONTAINER_LIMITATION_MEMORY"), "{out}");
    assert!(out.contains("memory limit exceeded"), "{out}");
    let calm = wait_output(neighbour, Duration::from_secs(60));
    assert!(calm.status.success(), "{}", text(&calm));
}

#[test]
fn cfs_holds_a_half_cpu_task_to_half_a_core() {
    let (cluster, agent_port) = cluster("cpus:2;mem:1024", &["--cgroups-enable-cfs"]);
    let busy = spawn_run(
        &cluster,
        &[
            "--name",
            "busy",
            "--cpus",
            "0.5",
            "--command",
            "timeout 6 sh -c 'while :; do :; done'; exit 0",
        ],
    );
    let cpu_seconds = || -> Option<(f64, Instant)> {
        let stats = get_json(agent_port, "/monitor/statistics").ok()?;
        let entry = stats.as_array()?.first()?.clone();
        let s = &entry["statistics"];
        let used = s["cpus_user_time_secs"].as_f64()? + s["cpus_system_time_secs"].as_f64()?;
        Some((used, Instant::now()))
    };
    let (first, at) = wait_for(
        "the busy task's statistics",
        Duration::from_secs(30),
        || cpu_seconds().filter(|(used, _)| *used > 0.05),
    )
    .expect("statistics");
    // Sample again two seconds of wall time later (a condition on elapsed time).
    let (second, later) = wait_for("a second sample", Duration::from_secs(10), || {
        (at.elapsed() >= Duration::from_secs(2))
            .then(cpu_seconds)
            .flatten()
    })
    .expect("second sample");
    let rate = (second - first) / later.duration_since(at).as_secs_f64();
    assert!(rate <= 0.62, "a 0.5-cpu task used {rate:.2} cores");
    assert!(
        rate >= 0.2,
        "the task hardly ran ({rate:.2} cores): is it busy?"
    );
    let out = wait_output(busy, Duration::from_secs(60));
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_fork_bomb_stays_within_its_pids_limit_and_leaves_nothing_behind() {
    let (cluster, _) = cluster("cpus:2;mem:1024", &["--container-pids-limit", "24"]);
    let out = cluster.run(&[
        "--name",
        "bomb",
        "--command",
        "for i in $(seq 1 100); do sleep 120 & done; sleep 1; exit 0",
    ]);
    // The shell may give up when a fork fails; either way the task ends.
    let printed = text(&out);
    assert!(
        printed.contains("bomb-0 TASK_FINISHED") || printed.contains("bomb-0 TASK_FAILED"),
        "{printed}"
    );
    let stderr: String = cluster
        .sandbox_files("bomb-0", "stderr")
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect();
    assert!(
        stderr.contains("fork") || stderr.contains("Resource temporarily unavailable"),
        "forks past the limit should have failed: {stderr}"
    );
    let sleepers = |dir: &Path| {
        processes_under(dir)
            .into_iter()
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.starts_with("sleep"))
            })
            .count()
    };
    wait_for("no sleeper left", Duration::from_secs(10), || {
        (sleepers(cluster.dir.path()) == 0).then_some(())
    })
    .expect("the task's processes are gone with it");
}

/// A one-file HTTP server on 127.0.0.1 that counts its requests.
struct FileServer {
    port: u16,
    requests: Arc<AtomicUsize>,
}

fn serve_file(body: Vec<u8>) -> FileServer {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    std::thread::spawn(move || {
        // Bounded: the test process ends long before this many requests.
        for stream in listener.incoming().take(1000) {
            let Ok(mut stream) = stream else { continue };
            let mut buffer = [0u8; 4096];
            let _ = stream.read(&mut buffer);
            counter.fetch_add(1, Ordering::SeqCst);
            let header = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/gzip\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(header.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    FileServer { port, requests }
}

/// Builds `pkg.tar.gz` in `dir`: a directory `pkg/` holding an executable
/// `run.sh` with this script and, when `blob_megabytes` > 0, a `blob` of
/// that many megabytes of random (incompressible) bytes. Returns its bytes.
fn package_archive(dir: &Path, script: &str, blob_megabytes: usize) -> Vec<u8> {
    let pkg = dir.join("pkg");
    std::fs::create_dir_all(&pkg).expect("pkg dir");
    std::fs::write(pkg.join("run.sh"), script).expect("script");
    std::fs::set_permissions(
        pkg.join("run.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    if blob_megabytes > 0 {
        let mut blob = vec![0u8; blob_megabytes << 20];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut blob))
            .expect("random bytes");
        std::fs::write(pkg.join("blob"), &blob).expect("blob");
    }
    let archive = dir.join("pkg.tar.gz");
    let status = Command::new("tar")
        .arg("czf")
        .arg(&archive)
        .arg("-C")
        .arg(dir)
        .arg("pkg")
        .status()
        .expect("tar runs");
    assert!(status.success());
    std::fs::read(&archive).expect("archive")
}

#[test]
fn an_archive_is_fetched_extracted_run_and_cached_and_a_bad_uri_fails_the_task() {
    let build = tempfile::tempdir().expect("tempdir");
    let archive = package_archive(build.path(), "#!/bin/sh\necho package says hello\n", 0);
    let server = serve_file(archive);
    let cache = build.path().join("cache");
    let (cluster, _) = cluster(
        "cpus:2;mem:1024",
        &["--fetcher-cache-dir", cache.to_str().expect("utf-8")],
    );
    let uri = format!("http://127.0.0.1:{}/pkg.tar.gz;cache", server.port);
    for name in ["fetch-a", "fetch-b"] {
        let out = cluster.run(&["--name", name, "--uri", &uri, "--command", "./pkg/run.sh"]);
        assert!(out.status.success(), "{}", text(&out));
        let stdout: String = cluster
            .sandbox_files(&format!("{name}-0"), "stdout")
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .collect();
        assert!(stdout.contains("package says hello"), "{stdout}");
    }
    assert_eq!(
        server.requests.load(Ordering::SeqCst),
        1,
        "the second task must be served from the cache"
    );
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead_port = closed.local_addr().expect("addr").port();
    drop(closed);
    let out = cluster.run(&[
        "--name",
        "unfetchable",
        "--uri",
        &format!("http://127.0.0.1:{dead_port}/nothing.tar.gz"),
        "--command",
        "true",
    ]);
    let out = text(&out);
    assert!(out.contains("TASK_FAILED"), "{out}");
    assert!(out.contains("REASON_FETCHER_FAILED"), "{out}");
    assert!(out.contains("nothing.tar.gz"), "{out}");
}

/// Issue 5's fetch scenario: 100 tasks on 2 agents that all need the same
/// archive download it once per agent (each agent has its own cache).
/// `AGORA_TEST_FETCH_ARCHIVE_MB` sets the archive's size (default 4; the
/// figure in `docs/benchmarks.md` was taken with 50).
#[test]
fn a_hundred_tasks_on_two_agents_download_a_shared_archive_once_per_agent() {
    let megabytes: usize = std::env::var("AGORA_TEST_FETCH_ARCHIVE_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let build = tempfile::tempdir().expect("tempdir");
    let archive = package_archive(
        build.path(),
        "#!/bin/sh\ntest -s pkg/blob && echo unpacked\n",
        megabytes,
    );
    let server = serve_file(archive);

    let resources = "cpus:8;mem:4096";
    let mut cluster = Cluster::start(0, resources).expect("master starts");
    for n in 0..2 {
        let cache = build.path().join(format!("cache-{n}"));
        cluster.add_agent_with(
            n,
            resources,
            &["--fetcher-cache-dir", cache.to_str().expect("utf-8")],
        );
    }
    cluster.wait_agents(2).expect("both agents register");
    let uri = format!("http://127.0.0.1:{}/pkg.tar.gz;cache", server.port);
    let out = cluster.run(&[
        "--name",
        "spark-like",
        "--instances",
        "100",
        "--uri",
        &uri,
        "--command",
        "./pkg/run.sh",
    ]);
    assert!(out.status.success(), "{}", text(&out));

    let state = cluster
        .wait_state("100 tasks finished in /state", |state| {
            let tasks = agora_e2e::all_tasks(state);
            tasks.len() == 100 && tasks.iter().all(|t| t["state"] == "TASK_FINISHED")
        })
        .expect("state");
    let tasks = agora_e2e::all_tasks(&state);
    let mut per_agent = std::collections::BTreeMap::<String, usize>::new();
    for task in &tasks {
        assert_eq!(task["state"], "TASK_FINISHED", "{task}");
        *per_agent
            .entry(task["agent_id"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    assert_eq!(tasks.len(), 100, "{per_agent:?}");
    assert_eq!(
        per_agent.len(),
        2,
        "tasks ran on both agents: {per_agent:?}"
    );
    let unpacked = cluster
        .sandbox_files("spark-like-42", "stdout")
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect::<String>();
    assert!(unpacked.contains("unpacked"), "{unpacked}");
    assert_eq!(
        server.requests.load(Ordering::SeqCst),
        2,
        "one download per agent, {megabytes} MB archive, tasks per agent {per_agent:?}"
    );
}

#[test]
fn tasks_on_one_agent_get_distinct_ports_they_can_listen_on() {
    let (cluster, _) = cluster("cpus:2;mem:1024;ports:[31500-31509]", &[]);
    let serve =
        "echo $PORT0 > port.txt; timeout 8 python3 -m http.server $PORT0 --bind 127.0.0.1; exit 0";
    let runs: Vec<_> = ["web-a", "web-b"]
        .iter()
        .map(|name| {
            spawn_run(
                &cluster,
                &["--name", name, "--ports", "1", "--command", serve],
            )
        })
        .collect();
    let ports = wait_for("both tasks listening", Duration::from_secs(40), || {
        let mut ports = Vec::new();
        for name in ["web-a-0", "web-b-0"] {
            let file = cluster.sandbox_files(name, "port.txt").into_iter().next()?;
            let port: u16 = std::fs::read_to_string(file).ok()?.trim().parse().ok()?;
            TcpStream::connect(("127.0.0.1", port)).ok()?;
            ports.push(port);
        }
        Some(ports)
    })
    .expect("both tasks serve on their ports");
    assert_ne!(ports[0], ports[1], "two tasks got the same port");
    for port in &ports {
        assert!(
            (31500..=31509).contains(port),
            "port {port} is not from the offer"
        );
    }
    for run in runs {
        let out = wait_output(run, Duration::from_secs(60));
        assert!(out.status.success(), "{}", text(&out));
    }
}

#[test]
fn a_task_failing_its_http_health_check_is_killed_and_reported_unhealthy() {
    let (cluster, _) = cluster("cpus:2;mem:1024;ports:[31600-31609]", &[]);
    // Serves for three seconds, then stops answering but keeps running.
    let out = cluster.run(&[
        "--name",
        "flaky",
        "--ports",
        "1",
        "--command",
        "timeout 3 python3 -m http.server $PORT0 --bind 127.0.0.1; sleep 120",
        "--health-check",
        "http:PORT0/",
        "--health-delay",
        "0.5",
        "--health-interval",
        "0.5",
        "--health-timeout",
        "1",
        "--health-grace",
        "5",
        "--health-failures",
        "2",
    ]);
    let out = text(&out);
    assert!(out.contains("healthy=true"), "{out}");
    assert!(out.contains("healthy=false"), "{out}");
    assert!(out.contains("TASK_KILLED"), "{out}");
    assert!(
        out.contains("REASON_TASK_HEALTH_CHECK_STATUS_UPDATED"),
        "{out}"
    );
}

#[test]
fn tasks_run_as_the_requested_user_and_an_unknown_user_is_a_clear_failure() {
    let (cluster, _) = cluster("cpus:2;mem:1024", &[]);
    let out = cluster.run(&[
        "--name",
        "as-nobody",
        "--user",
        "nobody",
        "--command",
        "id -un",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout: String = cluster
        .sandbox_files("as-nobody-0", "stdout")
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect();
    assert_eq!(stdout.trim(), "nobody");
    let out = cluster.run(&[
        "--name",
        "ghost",
        "--user",
        "no-such-user-here",
        "--command",
        "true",
    ]);
    let out = text(&out);
    assert!(out.contains("TASK_FAILED"), "{out}");
    assert!(out.contains("'no-such-user-here' does not exist"), "{out}");
}

#[test]
fn the_switch_user_flag_off_runs_tasks_as_the_agent_user() {
    let (cluster, _) = cluster("cpus:2;mem:1024", &["--switch_user=false"]);
    let out = cluster.run(&["--name", "me", "--user", "nobody", "--command", "id -u"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout: String = cluster
        .sandbox_files("me-0", "stdout")
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect();
    let own = rustix::process::geteuid().as_raw().to_string();
    assert_eq!(stdout.trim(), own);
}

#[test]
fn a_custom_executor_runs_three_tasks_to_finished() {
    let executor = sdk_example("custom_executor");
    let (cluster, _) = cluster("cpus:2;mem:1024", &[]);
    let out = cluster.run(&[
        "--name",
        "custom",
        "--instances",
        "3",
        "--executor",
        executor.to_str().expect("utf-8"),
        "--command",
        "echo hello from $AGORA_TASK_ID",
    ]);
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    // `agora run` exits on the last FINISHED it receives; the published
    // `/state` may trail that by a publishing interval, so wait for it.
    let finished = |state: &serde_json::Value| {
        agora_e2e::all_tasks(state)
            .into_iter()
            .filter(|t| t["state"] == "TASK_FINISHED")
            .count()
    };
    let state = cluster
        .wait_state("3 tasks finished in /state", |state| finished(state) == 3)
        .expect("state");
    assert_eq!(finished(&state), 3, "{state}");
}
