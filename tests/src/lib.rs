//! Harness for end-to-end tests: builds the `agora` binary once, starts real
//! master and agent processes on 127.0.0.1 with free ports, and waits on
//! conditions with deadlines (never on bare sleeps).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use agora_core::Backoff;
use anyhow::{Context, bail};

pub mod auth;
pub mod browser;
pub mod mesos_http;
pub mod mesos_schema;
pub mod spark;

/// The `agora` binary, built once per test process with the same cargo
/// that runs the tests.
pub fn agora_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "agora-cli", "--bin", "agora"])
            .status()
            .expect("cargo can be run");
        assert!(status.success(), "building the agora binary failed");
        let exe = std::env::current_exe().expect("test binary path");
        // target/<profile>/deps/<test> -> target/<profile>/agora
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test binary lives in target/<profile>/deps");
        let bin = profile_dir.join("agora");
        assert!(bin.exists(), "{} was not built", bin.display());
        bin
    })
    .clone()
}

/// Builds (or takes from `AGORA_BENCH_BIN`) the `agora` binary the daemons
/// run: release for the real figures, debug for the smoke run.
pub fn agora_binary(release: bool) -> anyhow::Result<PathBuf> {
    built_artifact(
        "AGORA_BENCH_BIN",
        &["-p", "agora-cli", "--bin", "agora"],
        release,
        |message| {
            (message["target"]["name"] == "agora")
                .then(|| message["executable"].as_str().map(PathBuf::from))
                .flatten()
        },
    )
}

/// Builds (or takes from `AGORA_BENCH_LIBMESOS`) `libmesos.so` (crate
/// `agora-libmesos`) for benches, like [`agora_binary`]: release for the
/// real figures, debug for the smoke run.
pub fn libmesos_library(release: bool) -> anyhow::Result<PathBuf> {
    built_artifact(
        "AGORA_BENCH_LIBMESOS",
        &["-p", "agora-libmesos", "--lib"],
        release,
        |message| {
            if message["target"]["name"] != "mesos" {
                return None;
            }
            message["filenames"]
                .as_array()?
                .iter()
                .filter_map(serde_json::Value::as_str)
                .find(|f| f.ends_with("/libmesos.so"))
                .map(PathBuf::from)
        },
    )
}

/// A bench artifact: the path in `override_env` if set (it must exist),
/// else what `cargo build <args>` reports as the artifact `pick` finds
/// among its compiler-artifact messages.
fn built_artifact(
    override_env: &str,
    args: &[&str],
    release: bool,
    pick: impl Fn(&serde_json::Value) -> Option<PathBuf>,
) -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var(override_env) {
        let path = PathBuf::from(path);
        if !path.exists() {
            bail!("{override_env}={} does not exist", path.display());
        }
        return Ok(path);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .arg("build")
        .args(args)
        .arg("--message-format=json-render-diagnostics");
    if release {
        command.arg("--release");
    }
    let what = args.join(" ");
    let output = command
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running cargo build {what}"))?;
    if !output.status.success() {
        bail!("cargo build {what} failed");
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact")
        .find_map(|message| pick(&message))
        .with_context(|| format!("cargo build {what} reported no artifact"))
}

/// `libmesos.so` (crate `agora-libmesos`), built once per test process with
/// the same cargo and profile as the tests: what `MESOS_NATIVE_JAVA_LIBRARY`
/// names for JVM frameworks.
pub fn libmesos() -> PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "agora-libmesos", "--lib"])
            .status()
            .expect("cargo can be run");
        assert!(status.success(), "building libmesos.so failed");
        let lib = agora_bin()
            .parent()
            .expect("target/<profile>")
            .join("libmesos.so");
        assert!(lib.exists(), "{} was not built", lib.display());
        lib
    })
    .clone()
}

/// An example program of the SDK crate, built with the same cargo.
pub fn sdk_example(name: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "agora-scheduler",
            "--example",
            name,
        ])
        .status()
        .expect("cargo can be run");
    assert!(status.success(), "building example {name} failed");
    let bin = agora_bin()
        .parent()
        .expect("profile dir")
        .join("examples")
        .join(name);
    assert!(bin.exists(), "{} was not built", bin.display());
    bin
}

/// A port that was free a moment ago on 127.0.0.1, and that this test
/// process has not handed out before (the kernel may offer a just-released
/// port again before the process it was meant for has bound it).
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("an ephemeral port is available");
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
    panic!("no fresh ephemeral port after 100 tries");
}

/// Pids of the executor and task processes a test's agents started under
/// `dir`: every process working there except the agents' executor
/// supervisors (`agora supervisor`, which work in their agent's work dir and
/// belong to the agent, not to any task).
pub fn processes_under(dir: &Path) -> Vec<u32> {
    everything_under(dir)
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| c.split(|b| *b == 0).nth(1) != Some(b"supervisor".as_slice()))
                .unwrap_or(true)
        })
        .collect()
}

/// Pids of every process whose working directory is under `dir`,
/// supervisors included.
pub fn everything_under(dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(dir))
        })
        .collect()
}

/// Field 22 of `/proc/<pid>/stat` (clock ticks since boot), or `None`
/// when there is no live process (a zombie counts as dead): a pid with
/// another start time is another process.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Kills, when dropped, every process still working under a test's
/// directory. Executors deliberately outlive their agents; a test must not
/// leave them (or their tasks) behind.
pub struct Sweeper(pub PathBuf);

impl Drop for Sweeper {
    fn drop(&mut self) {
        for pid in everything_under(&self.0) {
            if let Some(pid) = i32::try_from(pid)
                .ok()
                .and_then(rustix::process::Pid::from_raw)
            {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
}

/// The cgroup hierarchies' mount points (v1 controllers and v2).
pub fn cgroup_mounts() -> Vec<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mountinfo
        .lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            after.starts_with("cgroup").then_some(())?;
            Some(PathBuf::from(before.split_whitespace().nth(4)?))
        })
        .collect()
}

/// SIGKILLs every process in a cgroup directory and those under it.
fn kill_cgroup_tree(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            kill_cgroup_tree(&entry.path());
        }
    }
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

/// Removes a cgroup directory and those under it, deepest first (a cgroup
/// goes only once it is empty of processes and children).
pub fn remove_cgroup_tree(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup_tree(&entry.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// A cgroups root of a test's own (`--cgroups-root`, or the agents'
/// `AGORA_CGROUPS_ROOT`), unique per process and guard: its tree is
/// removed in every hierarchy when dropped, after the test's processes are
/// gone. An agent killed with its tasks (tests do that on purpose) cannot
/// destroy their containers; without this their cgroups stayed behind,
/// thousands per suite run.
pub struct TestCgroups {
    pub root: String,
}

impl TestCgroups {
    pub fn new(name: &str) -> TestCgroups {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        TestCgroups {
            root: format!("agora-test-{name}-{}-{n}", std::process::id()),
        }
    }
}

impl Drop for TestCgroups {
    fn drop(&mut self) {
        for mount in cgroup_mounts() {
            let dir = mount.join(&self.root);
            if !dir.exists() {
                continue;
            }
            // Processes killed just before may still be leaving; any
            // still working there are this test's tasks (the root is the
            // test's alone), which its agents left behind on purpose.
            let _ = wait_for(
                "the test's cgroups emptied",
                Duration::from_secs(10),
                || {
                    kill_cgroup_tree(&dir);
                    remove_cgroup_tree(&dir);
                    (!dir.exists()).then_some(())
                },
            );
        }
    }
}

/// Refuses to start an agent (or a dev cluster) under the default cgroups
/// root: it is every other agent's on this machine, tests run side by side,
/// and an agent killed with its tasks leaves their cgroups there for good.
/// A test gives its agents a [`TestCgroups`] root, removed when dropped.
fn assert_own_cgroups_root(args: &[&str], envs: &[(&str, &str)]) {
    let starts_agents = matches!(args.first(), Some(&"agent") | Some(&"dev"));
    let given = args
        .iter()
        .any(|a| a.starts_with("--cgroups-root") || a.starts_with("--cgroups_root"))
        || envs.iter().any(|(name, _)| *name == "AGORA_CGROUPS_ROOT");
    assert!(
        !starts_agents || given,
        "`agora {}` in a test needs a cgroups root of its own: pass --cgroups-root \
         (or AGORA_CGROUPS_ROOT) from agora_e2e::TestCgroups::new(..).root",
        args.first().unwrap_or(&"")
    );
}

/// A process this test started; killed (by its pid) when dropped.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(args: &[&str], log: PathBuf) -> Proc {
        Self::spawn_bin(&agora_bin(), args, log)
    }

    /// Like [`Proc::spawn`], with a given `agora` binary (e.g. a release build for benches).
    pub fn spawn_bin(bin: &Path, args: &[&str], log: PathBuf) -> Proc {
        Self::spawn_bin_with_env(bin, args, log, &[])
    }

    /// Like [`Proc::spawn`], with extra environment variables.
    pub fn spawn_with_env(args: &[&str], log: PathBuf, envs: &[(&str, &str)]) -> Proc {
        Self::spawn_bin_with_env(&agora_bin(), args, log, envs)
    }

    fn spawn_bin_with_env(bin: &Path, args: &[&str], log: PathBuf, envs: &[(&str, &str)]) -> Proc {
        assert_own_cgroups_root(args, envs);
        let file = std::fs::File::create(&log).expect("log file can be created");
        let child = Command::new(bin)
            .args(args)
            .env("AGORA_LOG", "info")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file clone"))
            .stderr(file)
            .spawn()
            .expect("agora starts");
        Proc { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `check` until it returns `Some` or the deadline passes.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    let mut pause = Backoff::new(Duration::from_millis(10), Duration::from_millis(200));
    loop {
        if let Some(value) = check() {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(pause.next_delay());
    }
}

/// A plain HTTP/1.1 GET; returns (status code, body).
pub fn http_get(port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    let answer = send(port, "GET", path, &[], None)?;
    Ok((answer.status, answer.body))
}

/// A plain HTTP/1.1 request with an optional JSON body; returns (status
/// code, body). For the master's operator endpoints (`PUT /weights`, ...).
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let answer = send(
        port,
        method,
        path,
        &[("Content-Type", "application/json")],
        Some(body.unwrap_or("")),
    )?;
    Ok((answer.status, answer.body))
}

/// Sends `request` as it is (head and any body) on a fresh connection and
/// reads the whole response: for requests no helper here would make. It
/// stays on a bare socket on purpose: tests send malformed requests with it.
pub fn http_raw(port: u16, request: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").context("no http header end")?;
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .context("no status code")?
        .parse()?;
    Ok((code, body.to_string()))
}

/// How long one of the helpers' requests may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// A response: status, headers (names lower-cased) and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The body as it came (`body` is it as text).
    pub bytes: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The helpers' one HTTP client: plain HTTP/1.1 to 127.0.0.1, no proxy from
/// the environment, no redirect followed (a test sees the 3xx itself), no
/// pooled connection (tests restart processes on the same port, so every
/// request connects afresh, as `Connection: close` did before).
fn http_client() -> anyhow::Result<&'static reqwest::blocking::Client> {
    static CLIENT: OnceLock<Result<reqwest::blocking::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            // reqwest's rustls backend is compiled in (agora-tls asks for it)
            // and wants a process-wide crypto provider even for plain HTTP:
            // the ring provider agora-tls uses. Installing it twice, or after
            // another one, is harmless.
            let _ = std::sync::Arc::unwrap_or_clone(agora_tls::provider()).install_default();
            reqwest::blocking::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .pool_max_idle_per_host(0)
                .timeout(HTTP_TIMEOUT)
                .build()
                .map_err(|e| format!("cannot build the http client: {e:#}"))
        })
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// One request to 127.0.0.1:`port` with the shared client; the whole
/// response. `reqwest::blocking` refuses to run inside an async runtime, so
/// a caller on a runtime thread (a `#[tokio::test]`) has the request made
/// on a plain thread of its own.
pub(crate) fn send(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> anyhow::Result<Answer> {
    let request = || -> anyhow::Result<Answer> {
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .with_context(|| format!("http method {method:?}"))?;
        let url = reqwest::Url::parse(&format!("http://127.0.0.1:{port}{path}"))
            .with_context(|| format!("http path {path:?}"))?;
        // The URL parser resolves `..` and `%2e%2e` segments: a test that
        // sends a path trick through here would test another path. Such
        // paths go through `http_raw`, which sends them as written.
        let sent = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        anyhow::ensure!(
            sent == path,
            "{path:?} would be sent as {sent:?}: send it with http_raw to test it as written"
        );
        let mut request = http_client()?.request(method, url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body.to_owned());
        }
        let response = request.send()?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes());
                (name.as_str().to_owned(), value.trim().to_owned())
            })
            .collect();
        let bytes = response.bytes()?.to_vec();
        let body = String::from_utf8_lossy(&bytes).into_owned();
        Ok(Answer {
            status,
            headers,
            body,
            bytes,
        })
    };
    if tokio::runtime::Handle::try_current().is_err() {
        return request();
    }
    std::thread::scope(|scope| {
        scope
            .spawn(request)
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

pub fn get_json(port: u16, path: &str) -> anyhow::Result<serde_json::Value> {
    let (code, body) = http_get(port, path)?;
    if code != 200 {
        bail!("GET {path} answered {code}: {body}");
    }
    Ok(serde_json::from_str(&body)?)
}

/// `GET path` asking for gzip, as browsers and most HTTP libraries do: the
/// JSON of the answer, which must be in gzip, inflated.
pub fn get_json_gzip(port: u16, path: &str) -> anyhow::Result<serde_json::Value> {
    use std::io::Read;
    let answer = send(port, "GET", path, &[("Accept-Encoding", "gzip")], None)?;
    if answer.status != 200 {
        bail!("GET {path} answered {}: {}", answer.status, answer.body);
    }
    anyhow::ensure!(
        answer.header("content-encoding") == Some("gzip"),
        "GET {path} asked for gzip and was answered {:?}",
        answer.header("content-encoding")
    );
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(&answer.bytes[..])
        .read_to_end(&mut json)
        .with_context(|| format!("GET {path}: the gzip does not decode"))?;
    Ok(serde_json::from_slice(&json)?)
}

/// A master and agents, each a real `agora` process.
pub struct Cluster {
    /// Declared first so that it runs before the directory is removed.
    _sweeper: Sweeper,
    /// The agents' cgroups root: removed after the sweep.
    pub cgroups: TestCgroups,
    pub dir: tempfile::TempDir,
    pub master_port: u16,
    pub master: Proc,
    pub agents: Vec<Proc>,
    pub agent_dirs: Vec<PathBuf>,
}

impl Cluster {
    pub fn start(agents: usize, resources: &str) -> anyhow::Result<Cluster> {
        let cluster = Self::start_with_master(agents, resources, |_| Vec::new())?;
        cluster.wait_agents(agents)?;
        Ok(cluster)
    }

    /// As [`Cluster::start`], the master started with `master_args` too
    /// (files they name can live in the returned cluster's `dir`, written
    /// by `prepare` before the master starts). A restarted master
    /// ([`Cluster::restart_master`]) does not get them again.
    pub fn start_with_master(
        agents: usize,
        resources: &str,
        prepare: impl FnOnce(&Path) -> Vec<String>,
    ) -> anyhow::Result<Cluster> {
        let dir = tempfile::tempdir()?;
        let master_port = free_port();
        let extra = prepare(dir.path());
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let master = start_master_with(dir.path(), master_port, &extra);
        let mut cluster = Cluster {
            _sweeper: Sweeper(dir.path().to_path_buf()),
            cgroups: TestCgroups::new("cluster"),
            dir,
            master_port,
            master,
            agents: Vec::new(),
            agent_dirs: Vec::new(),
        };
        wait_for("master /health", Duration::from_secs(30), || {
            http_get(master_port, "/health")
                .ok()
                .filter(|(c, _)| *c == 200)
        })?;
        for n in 0..agents {
            cluster.add_agent(n, resources);
        }
        Ok(cluster)
    }

    pub fn master_address(&self) -> String {
        format!("127.0.0.1:{}", self.master_port)
    }

    /// Starts `agora run --name NAME --command COMMAND` against this
    /// cluster's master in the background, with `extra` flags (sizes,
    /// instances); its output goes to `run-NAME.log` in the cluster's dir.
    pub fn spawn_run(&self, name: &str, command: &str, extra: &[&str]) -> Proc {
        let master = self.master_address();
        let mut args = vec![
            "run",
            "--master",
            master.as_str(),
            "--name",
            name,
            "--command",
            command,
        ];
        args.extend_from_slice(extra);
        Proc::spawn(&args, self.dir.path().join(format!("run-{name}.log")))
    }

    pub fn add_agent(&mut self, n: usize, resources: &str) {
        self.add_agent_with(n, resources, &[]);
    }

    /// Adds agent `n` with extra flags (isolation, fetcher cache, ...).
    /// Returns its HTTP port.
    pub fn add_agent_with(&mut self, n: usize, resources: &str, extra: &[&str]) -> u16 {
        let work_dir = self.dir.path().join(format!("agent-{n}"));
        let port = free_port();
        let port_text = port.to_string();
        let mut args = vec![
            "agent",
            "--master",
            &self.master_address(),
            "--ip",
            "127.0.0.1",
            "--port",
            &port_text,
            "--work-dir",
            work_dir.to_str().expect("utf-8 temp path"),
            "--resources",
            resources,
        ]
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>();
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let agent = Proc::spawn_with_env(
            &args,
            self.dir.path().join(format!("agent-{n}.log")),
            &[("AGORA_CGROUPS_ROOT", &self.agent_cgroups_root(n))],
        );
        self.agents.push(agent);
        self.agent_dirs.push(work_dir);
        port
    }

    /// Starts agent `n` (work dir `agent-<n>` in the cluster's directory) on
    /// `port`, logging to `log_name` there, with extra environment variables.
    /// For tests that stop an agent and start it again with the same work
    /// dir, port and flags; the caller keeps the returned process.
    pub fn start_agent_on(
        &self,
        n: usize,
        port: u16,
        resources: &str,
        log_name: &str,
        envs: &[(&str, &str)],
    ) -> Proc {
        let work_dir = self.agent_dir(n);
        let port = port.to_string();
        let root = self.agent_cgroups_root(n);
        let mut envs = envs.to_vec();
        envs.push(("AGORA_CGROUPS_ROOT", &root));
        Proc::spawn_with_env(
            &[
                "agent",
                "--master",
                &self.master_address(),
                "--ip",
                "127.0.0.1",
                "--port",
                &port,
                "--work-dir",
                work_dir.to_str().expect("utf-8 temp path"),
                "--resources",
                resources,
            ],
            self.dir.path().join(log_name),
            &envs,
        )
    }

    /// Agent `n`'s cgroups root, under the cluster's own
    /// ([`Cluster::cgroups`]); the same for a restarted agent `n`.
    pub fn agent_cgroups_root(&self, n: usize) -> String {
        format!("{}/a{n}", self.cgroups.root)
    }

    /// A master and agent 0 on a port the caller knows (so that a test
    /// can restart the agent on it with [`Cluster::start_agent_on`]),
    /// registered; `envs` go to the agent.
    pub fn with_agent_on_known_port(
        resources: &str,
        envs: &[(&str, &str)],
    ) -> anyhow::Result<(Cluster, u16)> {
        let mut cluster = Cluster::start(0, resources)?;
        let port = free_port();
        let agent = cluster.start_agent_on(0, port, resources, "agent-0.log", envs);
        cluster.agents.push(agent);
        cluster.agent_dirs.push(cluster.agent_dir(0));
        cluster.wait_agents(1)?;
        Ok((cluster, port))
    }

    /// The work dir [`Cluster::add_agent`] and [`Cluster::start_agent_on`] give agent `n`.
    pub fn agent_dir(&self, n: usize) -> PathBuf {
        self.dir.path().join(format!("agent-{n}"))
    }

    pub fn state(&self) -> anyhow::Result<serde_json::Value> {
        get_json(self.master_port, "/state")
    }

    /// The master's `/state` once `check` holds on it. `/state` is a
    /// published snapshot that trails the master's books by up to one
    /// publishing interval (`docs/operations.md`), so an assertion about
    /// the effect of an action waits for it instead of reading once.
    pub fn wait_state(
        &self,
        what: &str,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> anyhow::Result<serde_json::Value> {
        let mut last = None;
        wait_for(what, Duration::from_secs(30), || {
            let state = self.state().ok()?;
            if check(&state) {
                return Some(state);
            }
            last = Some(state);
            None
        })
        .with_context(|| format!("last /state seen: {}", last.unwrap_or_default()))
    }

    pub fn wait_agents(&self, count: usize) -> anyhow::Result<serde_json::Value> {
        wait_for(
            &format!("a leading master with {count} active agents"),
            Duration::from_secs(30),
            || {
                let state = self.state().ok()?;
                // A master answers /health (and /state, as a follower)
                // before its term starts: a test that talks to it at once
                // would get 503s.
                if state["elected"] != true {
                    return None;
                }
                let active = state["agents"]
                    .as_array()?
                    .iter()
                    .filter(|a| a["active"] == true)
                    .count();
                (active == count).then_some(state)
            },
        )
    }

    pub fn restart_master(&mut self) {
        self.master.kill();
        self.master = start_master(self.dir.path(), self.master_port);
    }

    /// Runs `agora run` with these extra arguments against the cluster.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut command = Command::new(agora_bin());
        command
            .arg("run")
            .arg("--master")
            .arg(self.master_address())
            .args(args);
        run_with_deadline(command, Duration::from_secs(120))
    }

    /// Every sandbox `stdout` of a task with this id, on any agent.
    pub fn sandbox_files(&self, task_id: &str, file: &str) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for dir in &self.agent_dirs {
            collect(dir, &mut |path| {
                let parts: Vec<String> = path
                    .iter()
                    .map(|p| p.to_string_lossy().into_owned())
                    .collect();
                let n = parts.len();
                if n >= 5
                    && parts[n - 1] == file
                    && parts[n - 3] == "runs"
                    && parts[n - 4] == task_id
                {
                    found.push(path.to_path_buf());
                }
            });
        }
        found
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Agents and master first, so that no agent starts an executor after
        // the sweep; the sweeper (a field) then runs as the fields drop.
        for agent in &mut self.agents {
            agent.kill();
        }
        self.master.kill();
    }
}

/// Master `n` of an HA set: its work dir `<dir>/master-<n>`, contending
/// through ZooKeeper at `zk` with a 2 s session timeout, logging to `log`.
pub fn spawn_zk_master(dir: &Path, n: usize, port: u16, zk: &str, log: PathBuf) -> Proc {
    spawn_zk_master_with_env(dir, n, port, zk, log, &[])
}

/// [`spawn_zk_master`] with extra environment variables.
pub fn spawn_zk_master_with_env(
    dir: &Path,
    n: usize,
    port: u16,
    zk: &str,
    log: PathBuf,
    envs: &[(&str, &str)],
) -> Proc {
    let work_dir = dir.join(format!("master-{n}"));
    Proc::spawn_with_env(
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
            "2",
        ],
        log,
        envs,
    )
}

fn start_master(dir: &Path, port: u16) -> Proc {
    start_master_with(dir, port, &[])
}

/// The master with extra flags (`--acls`, `--credentials`, ...).
fn start_master_with(dir: &Path, port: u16, extra: &[&str]) -> Proc {
    let port = port.to_string();
    let work_dir = dir.join("master");
    let mut args = vec![
        "master",
        "--ip",
        "127.0.0.1",
        "--port",
        &port,
        "--work-dir",
        work_dir.to_str().expect("utf-8 temp path"),
    ];
    args.extend_from_slice(extra);
    Proc::spawn(&args, dir.join("master.log"))
}

fn collect(dir: &Path, found: &mut dyn FnMut(&Path)) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, found);
        } else {
            found(&path);
        }
    }
}

/// Runs a command to completion, killing it if it outlives the deadline.
///
/// The command runs in a process group of its own (its pid is the group id),
/// and the whole group is killed once the command has exited or the deadline
/// has passed: a command that starts children (`spark-submit` runs a JVM,
/// which runs Python) leaves none behind, and none of them can hold the
/// output pipes open after it. The group is killed while the command is not
/// yet reaped, so its id cannot have been reused.
pub fn run_with_deadline(mut command: Command, deadline: Duration) -> Output {
    use rustix::process::{Pid, Signal, WaitId, WaitIdOptions};
    use std::os::unix::process::CommandExt;

    let mut child = command
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("command starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || read_all(stdout));
    let err_reader = std::thread::spawn(move || read_all(stderr));
    let pid = Pid::from_child(&child);
    let started = Instant::now();
    loop {
        // Exited, but left unreaped (NOWAIT) until its group is killed.
        let exited = rustix::process::waitid(
            WaitId::Pid(pid),
            WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT,
        );
        if !matches!(exited, Ok(None)) || started.elapsed() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = rustix::process::kill_process_group(pid, Signal::KILL);
    let status = child.wait().expect("wait works");
    Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

fn read_all(mut source: impl Read) -> Vec<u8> {
    let mut buffer = Vec::new();
    let _ = source.read_to_end(&mut buffer);
    buffer
}

/// All tasks in `/state`, from active and completed frameworks.
pub fn all_tasks(state: &serde_json::Value) -> Vec<serde_json::Value> {
    let mut tasks = Vec::new();
    for list in ["frameworks", "completed_frameworks"] {
        for framework in state[list].as_array().into_iter().flatten() {
            for key in ["tasks", "completed_tasks"] {
                tasks.extend(framework[key].as_array().into_iter().flatten().cloned());
            }
        }
    }
    tasks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_the_client_would_rewrite_is_refused_before_anything_is_sent() {
        // Nothing listens on this port: a request that went out would fail
        // to connect, with another message.
        let port = free_port();
        for path in ["/../secret.txt", "/%2e%2e/secret.txt", "/a/./b"] {
            let error = http_get(port, path).expect_err(path);
            assert!(error.to_string().contains("http_raw"), "{path}: {error:#}");
        }
        let error = http_get(port, "/files/read?path=/x&offset=0").expect_err("nobody listens");
        assert!(!error.to_string().contains("http_raw"), "{error:#}");
    }

    #[test]
    fn agents_in_tests_need_a_cgroups_root_of_their_own() {
        let refused = |args: &'static [&'static str],
                       envs: &'static [(&'static str, &'static str)]| {
            std::panic::catch_unwind(|| assert_own_cgroups_root(args, envs)).is_err()
        };
        assert!(refused(&["agent", "--master", "127.0.0.1:5050"], &[]));
        assert!(refused(&["dev", "--port", "0"], &[]));
        assert!(!refused(&["agent", "--cgroups-root", "agora-test-x"], &[]));
        assert!(!refused(&["agent", "--cgroups_root=agora-test-x"], &[]));
        assert!(!refused(
            &["dev"],
            &[("AGORA_CGROUPS_ROOT", "agora-test-x")]
        ));
        assert!(!refused(&["master", "--port", "0"], &[]));
    }
}
