//! TLS end to end: a master and an agent serving TLS with certificates of
//! `agora_tls::dev_pki` (the generator of `agora dev --tls`); the agent
//! registers over TLS, executors reach their agent over TLS, and
//! `agora run --tls-ca` runs a task to TASK_FINISHED, whose output the
//! master's files proxy reads from the agent over https. Refusals seen from
//! the outside: a client trusting another CA fails with a TLS error, a
//! plaintext request to the master's port gets no HTTP answer, and with
//! `--tls-require-client-cert` a client without a certificate is refused
//! while the agent, presenting its certificate, still registers.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use agora_e2e::{Proc, Sweeper, TestCgroups, agora_bin, free_port, run_with_deadline, wait_for};

const RESOURCES: &str = "cpus:2;mem:1024;disk:1024";
const DEADLINE: Duration = Duration::from_secs(60);

struct TlsCluster {
    _sweeper: Sweeper,
    dir: tempfile::TempDir,
    pki: agora_tls::DevPki,
    port: u16,
    _master: Proc,
    _agent: Proc,
    /// The agent's containers; dropped after it.
    _cgroups: TestCgroups,
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// A TLS master and one TLS agent (which verifies the master with the CA
/// and presents its own certificate to it).
fn start(require_client_cert: bool) -> TlsCluster {
    start_with(require_client_cert, None)
}

/// [`start`], the master contending in ZooKeeper at `zk` (a `zk://` URL)
/// and the agent finding it there.
fn start_with(require_client_cert: bool, zk: Option<&str>) -> TlsCluster {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = agora_tls::dev_pki(&dir.path().join("tls")).expect("dev pki");
    let port = free_port();
    let port_text = port.to_string();
    let tls_flags = [
        "--tls-cert",
        path(&pki.server_cert),
        "--tls-key",
        path(&pki.server_key),
        "--tls-ca",
        path(&pki.ca),
    ];
    let mut master_args = vec!["master", "--ip", "127.0.0.1", "--port", &port_text];
    master_args.extend(tls_flags);
    if require_client_cert {
        master_args.push("--tls-require-client-cert");
    }
    if let Some(zk) = zk {
        master_args.extend(["--zk", zk, "--zk-session-timeout", "2"]);
    }
    let master = Proc::spawn(&master_args, dir.path().join("master.log"));
    let agent_port = free_port().to_string();
    let master_address = zk.map_or_else(|| format!("127.0.0.1:{port}"), str::to_string);
    let agent_dir = dir.path().join("agent-0");
    let cgroups = TestCgroups::new("tls");
    let mut agent_args = vec![
        "agent",
        "--master",
        &master_address,
        "--ip",
        "127.0.0.1",
        "--port",
        &agent_port,
        "--work-dir",
        path(&agent_dir),
        "--resources",
        RESOURCES,
        "--cgroups-root",
        &cgroups.root,
    ];
    agent_args.extend(tls_flags);
    let agent = Proc::spawn(&agent_args, dir.path().join("agent-0.log"));
    TlsCluster {
        _sweeper: Sweeper(dir.path().to_path_buf()),
        pki,
        port,
        _master: master,
        _agent: agent,
        dir,
        _cgroups: cgroups,
    }
}

impl TlsCluster {
    /// `GET path` over https, as a client with `files`; the body.
    async fn get(&self, files: &agora_tls::TlsFiles, path: &str) -> Result<String, String> {
        let tls = files.client().map_err(|e| e.to_string())?.expect("a CA");
        let client = tls
            .reqwest_builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        let url = format!("https://127.0.0.1:{}{path}", self.port);
        let response = client.get(&url).send().await.map_err(|e| chain(&e))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| chain(&e))?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(format!("{status}: {body}"))
        }
    }

    /// Waits until the master's `/state` (read with a client certificate)
    /// lists `count` agents.
    async fn wait_agents(&self, count: usize) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Ok(body) = self.get(&self.pki.client_files(), "/state").await {
                let state: serde_json::Value = serde_json::from_str(&body).expect("json");
                if state["agents"].as_array().is_some_and(|a| a.len() == count) {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "agents did not register over TLS; master log:\n{}\nagent log:\n{}",
                std::fs::read_to_string(self.dir.path().join("master.log")).unwrap_or_default(),
                std::fs::read_to_string(self.dir.path().join("agent-0.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `agora run` against the master with these TLS arguments.
    fn run(&self, name: &str, tls_args: &[&str]) -> Output {
        self.run_at(&format!("127.0.0.1:{}", self.port), name, tls_args)
    }

    /// `agora run --master master` with these TLS arguments.
    fn run_at(&self, master: &str, name: &str, tls_args: &[&str]) -> Output {
        let mut command = Command::new(agora_bin());
        command
            .arg("run")
            .arg("--master")
            .arg(master)
            .args(tls_args)
            .args([
                "--name",
                name,
                "--command",
                "echo over-tls",
                "--cpus",
                "0.25",
                "--mem",
                "32",
                "--timeout",
                "10",
            ]);
        run_with_deadline(command, Duration::from_secs(120))
    }
}

fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// What a plaintext HTTP request to `port` gets back before the close.
fn plaintext_answer(port: u16) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut answer = Vec::new();
    // A reset counts as a close too.
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_cluster_runs_a_task_and_refuses_other_cas_and_plaintext() {
    let cluster = start(false);
    cluster.wait_agents(1).await;

    let ca = path(&cluster.pki.ca).to_string();
    let output = cluster.run("tls-ok", &["--tls-ca", &ca]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("TASK_FINISHED"), "{stdout}\n{stderr}");
    // The executor reached its agent over TLS: the task's output is there.
    let stdout_file = wait_for("the task's stdout", DEADLINE, || {
        find_file(&cluster.dir.path().join("agent-0"), "stdout")
    })
    .expect("a sandbox");
    let out = std::fs::read_to_string(&stdout_file).expect("stdout");
    assert!(out.contains("over-tls"), "{out}");

    // The master's files proxy reaches the TLS agent over https.
    let state: serde_json::Value = serde_json::from_str(
        &cluster
            .get(&cluster.pki.client_files(), "/state")
            .await
            .expect("state"),
    )
    .expect("json");
    let agent_id = state["agents"][0]["id"].as_str().expect("agent id");
    let target = format!(
        "/agents/{agent_id}/files/read?path={}&offset=0",
        stdout_file.display()
    );
    let chunk = cluster
        .get(&cluster.pki.client_files(), &target)
        .await
        .expect("the files proxy answers");
    assert!(chunk.contains("over-tls"), "{chunk}");

    // A client trusting another CA: a clear TLS error, nothing launched.
    let other = agora_tls::dev_pki(&cluster.dir.path().join("other-tls")).expect("other pki");
    let output = cluster.run("tls-wrong-ca", &["--tls-ca", path(&other.ca)]);
    let (stdout, stderr) = text(&output);
    assert!(!output.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("certificate"), "{stdout}\n{stderr}");
    let state = cluster
        .get(&cluster.pki.client_files(), "/state")
        .await
        .expect("state");
    assert!(!state.contains("tls-wrong-ca"), "{state}");

    // Plaintext to the TLS port: closed without an HTTP answer.
    let answer = plaintext_answer(cluster.port);
    assert!(!answer.contains("HTTP/"), "{answer:?}");
    // And a client without TLS: no subscription.
    let output = cluster.run("tls-plaintext", &[]);
    assert!(!output.status.success(), "{:?}", text(&output));
}

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_admits_the_agent_and_refuses_a_client_without_a_certificate() {
    let cluster = start(true);
    // The agent presented its certificate: it registered.
    cluster.wait_agents(1).await;

    // Without a certificate: refused, over HTTP and gRPC alike.
    let anonymous = agora_tls::TlsFiles {
        ca: Some(cluster.pki.ca.clone()),
        ..Default::default()
    };
    let refused = cluster
        .get(&anonymous, "/health")
        .await
        .expect_err("refused");
    assert!(!refused.is_empty());
    let ca = path(&cluster.pki.ca).to_string();
    let output = cluster.run("mtls-anonymous", &["--tls-ca", &ca]);
    let (stdout, stderr) = text(&output);
    assert!(!output.status.success(), "{stdout}\n{stderr}");

    // With the client certificate: the task runs.
    let output = cluster.run(
        "mtls-ok",
        &[
            "--tls-ca",
            &ca,
            "--tls-cert",
            path(&cluster.pki.client_cert),
            "--tls-key",
            path(&cluster.pki.client_key),
        ],
    );
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("TASK_FINISHED"), "{stdout}\n{stderr}");
}

/// The first file named `name` under `dir`.
fn find_file(dir: &Path, name: &str) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let p = entry.path();
        if p.is_dir() && !p.is_symlink() {
            if let Some(found) = find_file(&p, name) {
                return Some(found);
            }
        } else if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn the_zookeeper_record_keeps_https_for_agents_frameworks_and_operators() {
    let zk = agora_coord::testing::ZooKeeper::start()
        .await
        .expect("zookeeper starts (Debian package zookeeper)");
    let url = zk.unique_url("agora-tls").to_string();
    let cluster = start_with(false, Some(&url));
    // The agent found the leader in ZooKeeper and reached it over https.
    cluster.wait_agents(1).await;

    let ca = path(&cluster.pki.ca).to_string();
    let output = cluster.run_at(&url, "zk-tls", &["--tls-ca", &ca]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("TASK_FINISHED"), "{stdout}\n{stderr}");

    // Without a CA, the https leader is refused rather than tried unverified.
    let output = cluster.run_at(&url, "zk-no-ca", &[]);
    let (stdout, stderr) = text(&output);
    assert!(!output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("no CA") || stderr.contains("--tls-ca"),
        "{stderr}"
    );
    let mut kill = Command::new(agora_bin());
    kill.args(["kill", "--master", &url, "--timeout", "10", "no-such-task"]);
    let output = run_with_deadline(kill, Duration::from_secs(60));
    let (stdout, stderr) = text(&output);
    assert!(!output.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("--tls-ca"), "{stderr}");
}

#[test]
fn agora_dev_tls_generates_its_certificates_and_serves_with_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cgroups = TestCgroups::new("tls-dev");
    let _sweeper = Sweeper(dir.path().to_path_buf());
    let port = free_port();
    // As a user runs it: from a directory, with the default work dir
    // `./.agora`, so the certificates' paths are relative (an executor,
    // which runs in its sandbox, must still find the CA).
    let work_dir = dir.path().join(".agora");
    let log = dir.path().join("dev.log");
    let log_file = std::fs::File::create(&log).expect("log file");
    let child = Command::new(agora_bin())
        .args(["dev", "--tls", "--port", &port.to_string(), "--agents", "1"])
        .args(["--resources", RESOURCES])
        .current_dir(dir.path())
        .env("AGORA_LOG", "info")
        .env("AGORA_CGROUPS_ROOT", &cgroups.root)
        .stdin(std::process::Stdio::null())
        .stdout(log_file.try_clone().expect("log file clone"))
        .stderr(log_file)
        .spawn()
        .expect("agora dev starts");
    let _dev = Proc {
        child,
        log: log.clone(),
    };
    let ca = work_dir.join("tls").join("ca.pem");
    // It says how to reach it: https, and the CA to pass.
    wait_for("agora dev's instructions", DEADLINE, || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        (text.contains(&format!("https://127.0.0.1:{port}/")) && text.contains("--tls-ca"))
            .then_some(())
    })
    .expect("instructions");
    let key = work_dir.join("tls").join("server-key.pem");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&key).expect("key").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // Its agent registers (over TLS) and a task runs, verified with the CA.
    let mut command = Command::new(agora_bin());
    command.args([
        "run",
        "--master",
        &format!("https://127.0.0.1:{port}"),
        "--tls-ca",
        path(&ca),
        "--name",
        "dev-tls",
        "--command",
        "true",
        "--cpus",
        "0.25",
        "--mem",
        "32",
        "--timeout",
        "30",
    ]);
    let output = run_with_deadline(command, Duration::from_secs(120));
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("TASK_FINISHED"), "{stdout}\n{stderr}");
    // Plaintext gets no HTTP answer there either.
    assert!(!plaintext_answer(port).contains("HTTP/"));
}
