//! `agora master`, `agora agent` and `agora dev`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Listening on 127.0.0.1 unless told otherwise: whoever reaches a master
/// can run commands on every agent, so exposing one is an explicit choice.
const DEFAULT_IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[derive(clap::Args, Debug)]
pub(crate) struct MasterArgs {
    /// Address to listen on; 0.0.0.0 for every interface (whoever reaches the master can run commands on every agent, so the default keeps it on this machine).
    #[arg(long, default_value_t = DEFAULT_IP, env = "AGORA_IP")]
    ip: IpAddr,
    /// Port of the scheduler and operator APIs (gRPC and HTTP on one port), the HTTP endpoints and the web UI.
    #[arg(long, default_value_t = 5050, env = "AGORA_PORT")]
    port: u16,
    /// Where the master keeps its registry of admitted agents (<work-dir>/registry), so that a restarted master knows them; with --zk the registry is in ZooKeeper instead [default: none: in memory only, lost when the master stops].
    #[arg(long, env = "AGORA_WORK_DIR", alias = "work_dir")]
    work_dir: Option<PathBuf>,
    /// Name agents, frameworks and the web UI are told [default: the --ip, or this machine's name when listening on all addresses].
    #[arg(long, env = "AGORA_HOSTNAME")]
    hostname: Option<String>,
    /// Seconds between periodic allocation cycles (allocation is also event-driven).
    #[arg(long, default_value_t = 1.0, env = "AGORA_ALLOCATION_INTERVAL", alias = "allocation_interval", value_parser = parse_interval)]
    allocation_interval: f64,
    /// Seconds an agent has to answer each of the master's pings; the next ping is sent when they run out, so a ping goes to each agent this often (Mesos' default is 15 s).
    #[arg(long, default_value_t = 2.0, env = "AGORA_AGENT_PING_TIMEOUT", alias = "agent_ping_timeout", value_parser = parse_interval)]
    agent_ping_timeout: f64,
    /// Missed pings (or ping periods without a session) before an agent is unreachable; with the defaults a dead agent is noticed within about 9 s.
    #[arg(long, default_value_t = 3, env = "AGORA_MAX_AGENT_PING_TIMEOUTS", alias = "max_agent_ping_timeouts", value_parser = clap::value_parser!(u32).range(1..=100))]
    max_agent_ping_timeouts: u32,
    /// Seconds an unreachable agent has to come back before its tasks of frameworks that are not partition-aware are reported TASK_LOST (partition-aware ones are told TASK_UNREACHABLE as soon as it is detected); as Mesos' 75 s.
    #[arg(long, default_value_t = 75.0, env = "AGORA_AGENT_REMOVAL_TIMEOUT", alias = "agent_removal_timeout", value_parser = parse_interval)]
    agent_removal_timeout: f64,
    /// Removed frameworks kept for /state and the web UI, oldest dropped first (Mesos' --max_completed_frameworks).
    #[arg(long, default_value_t = agora_master::state::DEFAULT_MAX_COMPLETED_FRAMEWORKS, env = "AGORA_MAX_COMPLETED_FRAMEWORKS", alias = "max_completed_frameworks", value_parser = parse_count)]
    max_completed_frameworks: usize,
    /// Finished tasks kept per framework for /state and reconciliation, oldest dropped first (Mesos' --max_completed_tasks_per_framework).
    #[arg(long, default_value_t = agora_master::state::DEFAULT_MAX_COMPLETED_TASKS_PER_FRAMEWORK, env = "AGORA_MAX_COMPLETED_TASKS_PER_FRAMEWORK", alias = "max_completed_tasks_per_framework", value_parser = parse_count)]
    max_completed_tasks_per_framework: usize,
    /// Unreachable and gone agents are forgotten (in memory and in the registry) once they have been so this long; one that comes back afterwards registers as a new agent: seconds, or Mesos style (2weeks, 3days).
    #[arg(long, default_value = "2weeks", env = "AGORA_REGISTRY_MAX_AGENT_AGE", alias = "registry_max_agent_age", value_parser = parse_positive_duration)]
    registry_max_agent_age: Duration,
    /// Unreachable agents remembered at most, and as many gone ones; the oldest beyond it are forgotten (Mesos' default, 100 x 1024).
    #[arg(long, default_value_t = agora_master::state::DEFAULT_REGISTRY_MAX_AGENT_COUNT, env = "AGORA_REGISTRY_MAX_AGENT_COUNT", alias = "registry_max_agent_count", value_parser = parse_count)]
    registry_max_agent_count: usize,
    /// How often the two registry bounds above are applied: seconds, or Mesos style (15mins).
    #[arg(long, default_value = "15mins", env = "AGORA_REGISTRY_GC_INTERVAL", alias = "registry_gc_interval", value_parser = parse_positive_duration)]
    registry_gc_interval: Duration,
    /// Contend for leadership and keep the registry in ZooKeeper: zk://host1:2181,host2:2181/agora [default: none: this master leads alone].
    #[arg(long, env = "AGORA_ZK", value_parser = parse_zk)]
    zk: Option<agora_coord::ZkUrl>,
    /// ZooKeeper session timeout in seconds; a leader that loses its session steps down at once.
    #[arg(long, default_value_t = 10.0, env = "AGORA_ZK_SESSION_TIMEOUT", alias = "zk_session_timeout", value_parser = parse_interval)]
    zk_session_timeout: f64,
    /// Rescind offers a framework has not answered within this many seconds (unset: offers never time out, as in Mesos).
    #[arg(long, env = "AGORA_OFFER_TIMEOUT", alias = "offer_timeout", value_parser = parse_interval)]
    offer_timeout: Option<f64>,
    /// After a failover, seconds admitted agents have to re-register before they are marked unreachable.
    #[arg(long, default_value_t = 600.0, env = "AGORA_AGENT_REREGISTER_TIMEOUT", aliases = ["agent_reregister_timeout", "slave_reregister_timeout"], value_parser = parse_interval)]
    agent_reregister_timeout: f64,
    #[command(flatten)]
    acls: crate::acl_flags::AclArgs,
    #[command(flatten)]
    auth: crate::auth_flags::MasterAuthArgs,
    #[command(flatten)]
    tls: crate::tls_flags::ServerTlsArgs,
}

fn parse_zk(text: &str) -> Result<agora_coord::ZkUrl, String> {
    agora_coord::ZkUrl::parse(text).map_err(|e| e.to_string())
}

#[derive(clap::Args, Debug)]
pub(crate) struct AgentArgs {
    /// The master: HOST:PORT (or http://HOST:PORT, https://HOST:PORT), or zk://HOST:PORT[,HOST:PORT...]/PATH to follow whichever master ZooKeeper elected (the masters' --zk).
    #[arg(long, env = "AGORA_MASTER")]
    master: String,
    /// Address to listen on; executors and the master reach the agent there. 0.0.0.0 for every interface.
    #[arg(long, default_value_t = DEFAULT_IP, env = "AGORA_IP")]
    ip: IpAddr,
    /// Port of the agent's HTTP endpoints and executor API.
    #[arg(long, default_value_t = 5051, env = "AGORA_PORT")]
    port: u16,
    /// Where sandboxes and the agent's checkpoint (an append-only journal under meta/, from which a restarted agent recovers its tasks) live.
    #[arg(long, env = "AGORA_WORK_DIR", alias = "work_dir")]
    work_dir: PathBuf,
    /// Resources to advertise, e.g. 'cpus:4;mem:8192;disk:20000;ports:[31000-32000]'; names not given are detected [default: as Mesos: cpus = cores, mem = memory - 1 GiB, disk = the work dir's file system - 5 GiB, ports 31000-32000].
    #[arg(long, env = "AGORA_RESOURCES")]
    resources: Option<String>,
    /// Attributes, e.g. 'rack:r1;zone:a' [default: none].
    #[arg(long, env = "AGORA_ATTRIBUTES")]
    attributes: Option<String>,
    /// Name the master, frameworks and the web UI are told [default: the --ip, or this machine's name when listening on all addresses].
    #[arg(long, env = "AGORA_HOSTNAME")]
    hostname: Option<String>,
    /// How long a finished executor's sandbox is kept, shortened as the disk fills
    /// (delay x (1 - headroom - disk usage)): seconds, or Mesos style (1weeks, 2days, 30mins).
    #[arg(long, env = "AGORA_GC_DELAY", alias = "gc_delay", default_value = "1weeks", value_parser = parse_duration)]
    gc_delay: Duration,
    /// Fraction of the work dir's disk the sandbox gc tries to keep free, in [0, 1].
    #[arg(long, env = "AGORA_GC_DISK_HEADROOM", alias = "gc_disk_headroom", default_value_t = agora_agent::gc::DEFAULT_GC_DISK_HEADROOM, value_parser = parse_fraction)]
    gc_disk_headroom: f64,
    #[command(flatten)]
    containers: crate::container_flags::ContainerArgs,
    #[command(flatten)]
    acls: crate::acl_flags::AclArgs,
    #[command(flatten)]
    auth: crate::auth_flags::AgentAuthArgs,
    #[command(flatten)]
    executor_auth: crate::executor_auth_flags::ExecutorAuthArgs,
    #[command(flatten)]
    tls: crate::tls_flags::ServerTlsArgs,
}

#[derive(clap::Args, Debug)]
pub(crate) struct DevArgs {
    /// The master's port (APIs and web UI); agents take the next ports (5051, 5052, ...), or any free one.
    #[arg(long, default_value_t = 5050, env = "AGORA_PORT")]
    port: u16,
    /// Agents to start (1-64); this machine's cpus, memory, disk and ports are divided among them, unless --resources is given.
    #[arg(long, default_value_t = 2, env = "AGORA_AGENTS", value_parser = clap::value_parser!(u16).range(1..=64))]
    agents: u16,
    /// Address the master and agents listen on; 0.0.0.0 for every interface.
    #[arg(long, default_value_t = DEFAULT_IP, env = "AGORA_IP")]
    ip: IpAddr,
    /// The master's and each agent's work dirs go under here (master/, agent-0/, ...).
    #[arg(
        long,
        default_value = ".agora",
        env = "AGORA_WORK_DIR",
        alias = "work_dir"
    )]
    work_dir: PathBuf,
    /// Resources each agent advertises, as the agent's --resources [default: this machine's, divided among the agents].
    #[arg(long, env = "AGORA_RESOURCES")]
    resources: Option<String>,
    /// TLS on every port: a throw-away CA and certificates for this machine are generated under the work dir (tls/), master and agents serve and verify with them.
    #[arg(long, env = "AGORA_DEV_TLS")]
    tls: bool,
    /// The cgroup (under each hierarchy) that holds the agents' containers.
    #[arg(long, env = "AGORA_CGROUPS_ROOT", default_value = "agora", alias = "cgroups_root", value_parser = crate::container_flags::parse_cgroups_root)]
    cgroups_root: String,
}

fn parse_interval(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("'{text}' is not a number of seconds"))?;
    if !(0.001..=3600.0).contains(&value) {
        return Err("must be between 0.001 and 3600 seconds".into());
    }
    Ok(value)
}

/// Plain seconds (`1.5`, or `1.5s`), or a number with a Mesos duration unit
/// (`agora_core::time::parse_mesos_duration`: ns, us, ms, secs, mins, hrs,
/// days, weeks).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let seconds = trimmed.strip_suffix('s').unwrap_or(trimmed);
    if let Ok(secs) = seconds.parse::<f64>() {
        return match agora_core::time::duration_from_secs(secs) {
            Some(duration) if duration < agora_core::time::MAX_DURATION => Ok(duration),
            _ => Err(format!("'{text}' is not a duration this agent can wait")),
        };
    }
    agora_core::time::parse_mesos_duration(text).map_err(|e| e.to_string())
}

/// A duration as [`parse_duration`] reads it, more than zero.
fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration.is_zero() {
        return Err("must be more than 0".into());
    }
    Ok(duration)
}

/// A count: a whole number, 0 or more.
fn parse_count(text: &str) -> Result<usize, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a whole number (0 or more)"))
}

fn parse_fraction(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("'{text}' is not a number"))?;
    if !(0.0..=1.0).contains(&value) {
        return Err("must be between 0 and 1".into());
    }
    Ok(value)
}

fn hostname_for(ip: IpAddr, given: Option<String>) -> String {
    if let Some(name) = given {
        return name;
    }
    if ip.is_unspecified() {
        return rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
    }
    ip.to_string()
}

fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
        trigger.cancel();
    });
    token
}

/// Connections waiting to be accepted. tokio's default (1,024) overflows
/// when thousands of agents re-register at once after a failover: the kernel
/// drops their SYNs and each waits out TCP's 1 s (then 3 s, 7 s)
/// retransmission. The kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 65_535;

/// Listens on `ip:port` with [`LISTEN_BACKLOG`] (and `SO_REUSEADDR`, as
/// `TcpListener::bind` sets it).
fn listen(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

async fn bind(ip: IpAddr, port: u16) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = match listen(SocketAddr::new(ip, port)) {
        Ok(listener) => listener,
        // What to do about it is a flag away: say which.
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => anyhow::bail!(
            "cannot listen on {ip}:{port}: the port is in use (another agora, or another program): \
             stop it, or choose another port with --port (or another address with --ip)"
        ),
        Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => anyhow::bail!(
            "cannot listen on {ip}:{port}: {ip} is not an address of this machine: choose one with --ip"
        ),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot listen on {ip}:{port}"));
        }
    };
    let address = listener.local_addr().context("listener has no address")?;
    Ok((listener, address))
}

/// Checks a `--resources` text: what does not parse is an error that shows
/// the form; a name one edit away from a well-known one (`cpsu:4`) is a
/// warning, as it is advertised as a custom resource nobody asks for.
fn check_resources(text: &str) -> anyhow::Result<()> {
    let resources = agora_core::Resources::parse_input(text).map_err(|e| match e {
        // It says what to write instead.
        agora_core::ResourcesError::DidYouMean { .. } => {
            anyhow::anyhow!("invalid --resources: {e}")
        }
        e => anyhow::anyhow!(
            "invalid --resources: {e}; write NAME:VALUE pairs separated by ';', \
             e.g. 'cpus:4;mem:8192;disk:20000;ports:[31000-32000]'"
        ),
    })?;
    for name in resources.names() {
        if let Some(meant) = agora_core::resources::names::likely_meant(name) {
            tracing::warn!(
                resource = name,
                meant,
                "--resources: '{name}' is not a known resource and is advertised as a custom one; did you mean '{meant}'?"
            );
        }
    }
    Ok(())
}

/// What each of `agents` dev agents advertises when --resources is not
/// given: this machine's resources (as one agent would detect them) divided
/// among them, ports split into disjoint ranges, so that the cluster adds up
/// to the machine and no two tasks are given the same port.
fn dev_share(detected: &agora_core::Resources, agents: u16, n: u16) -> String {
    let share = f64::from(agents.max(1));
    // Thousandths of a cpu (the smallest amount resources keep), whole MB.
    let cpus = ((detected.scalar_value("cpus") / share) * 1000.0)
        .floor()
        .max(1.0)
        / 1000.0;
    let mem = (detected.scalar_value("mem") / share).floor().max(1.0);
    let disk = (detected.scalar_value("disk") / share).floor().max(1.0);
    let (first, last) = DEV_PORTS;
    let per_agent = (u32::from(last - first) + 1) / u32::from(agents.max(1));
    let begin = u32::from(first) + per_agent * u32::from(n);
    let end = begin + per_agent.max(1) - 1;
    format!("cpus:{cpus};mem:{mem};disk:{disk};ports:[{begin}-{end}]")
}

/// The port range an agent detects (`agora_agent::resources::detect`), which
/// dev agents share out.
const DEV_PORTS: (u16, u16) = (31000, 32000);

/// Master settings beyond the address; `agora dev` uses the defaults.
struct MasterTuning {
    allocation_interval: f64,
    agent_ping_timeout: f64,
    max_agent_ping_timeouts: u32,
    agent_removal_timeout: f64,
    max_completed_frameworks: usize,
    max_completed_tasks_per_framework: usize,
    registry_max_agent_age: Duration,
    registry_max_agent_count: usize,
    registry_gc_interval: Duration,
    zk: Option<agora_coord::ZkUrl>,
    zk_session_timeout: f64,
    agent_reregister_timeout: f64,
    offer_timeout: Option<f64>,
    work_dir: Option<PathBuf>,
}

fn default_tuning(work_dir: Option<PathBuf>) -> MasterTuning {
    MasterTuning {
        allocation_interval: 1.0,
        agent_ping_timeout: 2.0,
        max_agent_ping_timeouts: 3,
        agent_removal_timeout: agora_master::state::DEFAULT_AGENT_REMOVAL_TIMEOUT.as_secs_f64(),
        max_completed_frameworks: agora_master::state::DEFAULT_MAX_COMPLETED_FRAMEWORKS,
        max_completed_tasks_per_framework:
            agora_master::state::DEFAULT_MAX_COMPLETED_TASKS_PER_FRAMEWORK,
        registry_max_agent_age: agora_master::state::DEFAULT_REGISTRY_MAX_AGENT_AGE,
        registry_max_agent_count: agora_master::state::DEFAULT_REGISTRY_MAX_AGENT_COUNT,
        registry_gc_interval: agora_master::state::DEFAULT_REGISTRY_GC_INTERVAL,
        zk: None,
        zk_session_timeout: 10.0,
        agent_reregister_timeout: 600.0,
        offer_timeout: None,
        work_dir,
    }
}

/// A flag's seconds as a `Duration`. The flags' parsers already bound them
/// (`parse_interval`); the checked conversion keeps that from being the only guard.
fn flag_duration(secs: f64) -> Duration {
    agora_core::time::duration_from_secs(secs).unwrap_or(Duration::ZERO)
}

fn master_options(
    address: SocketAddr,
    hostname: String,
    tuning: &MasterTuning,
) -> agora_master::MasterOptions {
    agora_master::MasterOptions {
        advertise: address,
        hostname,
        allocation_interval: flag_duration(tuning.allocation_interval),
        agent_ping_timeout: flag_duration(tuning.agent_ping_timeout),
        max_agent_ping_timeouts: tuning.max_agent_ping_timeouts,
        agent_removal_timeout: flag_duration(tuning.agent_removal_timeout),
        max_completed_frameworks: tuning.max_completed_frameworks,
        max_completed_tasks_per_framework: tuning.max_completed_tasks_per_framework,
        registry_max_agent_age: tuning.registry_max_agent_age,
        registry_max_agent_count: tuning.registry_max_agent_count,
        registry_gc_interval: tuning.registry_gc_interval,
        zk: tuning.zk.clone(),
        zk_session_timeout: flag_duration(tuning.zk_session_timeout),
        work_dir: tuning.work_dir.clone(),
        agent_reregister_timeout: flag_duration(tuning.agent_reregister_timeout),
        offer_timeout: tuning.offer_timeout.map(flag_duration),
        acls: Default::default(),
        authentication: agora_master::Authentication::default(),
        tls: Default::default(),
    }
}

pub(crate) async fn master(args: MasterArgs) -> anyhow::Result<()> {
    // An --authenticate-* flag without usable credentials stops the master here.
    let authentication = args.auth.load()?;
    // Rules that do not parse stop the master before it serves anything.
    let acls = args.acls.load()?;
    let tls = args.tls.load()?;
    if let Some(dir) = &args.work_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create work dir {}", dir.display()))?;
    }
    let (listener, address) = bind(args.ip, args.port).await?;
    let hostname = hostname_for(args.ip, args.hostname);
    let tuning = MasterTuning {
        allocation_interval: args.allocation_interval,
        agent_ping_timeout: args.agent_ping_timeout,
        max_agent_ping_timeouts: args.max_agent_ping_timeouts,
        agent_removal_timeout: args.agent_removal_timeout,
        max_completed_frameworks: args.max_completed_frameworks,
        max_completed_tasks_per_framework: args.max_completed_tasks_per_framework,
        registry_max_agent_age: args.registry_max_agent_age,
        registry_max_agent_count: args.registry_max_agent_count,
        registry_gc_interval: args.registry_gc_interval,
        zk: args.zk,
        zk_session_timeout: args.zk_session_timeout,
        agent_reregister_timeout: args.agent_reregister_timeout,
        offer_timeout: args.offer_timeout,
        work_dir: args.work_dir,
    };
    let mut options = master_options(address, hostname, &tuning);
    options.acls = acls;
    options.authentication = authentication;
    options.tls = tls;
    agora_master::run_master(listener, options, shutdown_on_signal())
        .await
        .context("master failed")
}

/// The fetcher cache's directory under the agent's work dir when
/// `--fetcher-cache-dir` is not given.
const DEFAULT_FETCHER_CACHE_DIR: &str = "fetcher-cache";

fn agent_options(
    master: String,
    address: SocketAddr,
    hostname: String,
    work_dir: PathBuf,
    resources: Option<&str>,
    attributes: Option<&str>,
    mut containers: agora_agent::containers::ContainerOptions,
) -> anyhow::Result<agora_agent::AgentOptions> {
    std::fs::create_dir_all(&work_dir)
        .with_context(|| format!("cannot create work dir {}", work_dir.display()))?;
    let work_dir = work_dir
        .canonicalize()
        .with_context(|| format!("cannot resolve work dir {}", work_dir.display()))?;
    let resources = agora_agent::resources::advertised(resources, &work_dir)?;
    let attributes = match attributes {
        Some(text) => agora_agent::resources::parse_attributes(text)?,
        None => Vec::new(),
    };
    // As in Mesos, the fetcher cache is on unless placed elsewhere: URIs a
    // framework marks `cache` (Spark's package with
    // spark.mesos.fetcherCache.enable) are downloaded once per agent.
    if containers.fetcher.cache_dir.is_none() {
        containers.fetcher.cache_dir = Some(work_dir.join(DEFAULT_FETCHER_CACHE_DIR));
    }
    let executor_program = std::env::current_exe().context("cannot find the agora binary")?;
    Ok(agora_agent::AgentOptions {
        master,
        advertise: address,
        hostname,
        work_dir,
        resources,
        attributes,
        executor_program,
        containers,
        gc: agora_agent::gc::GcPolicy::default(),
        authentication: Default::default(),
        disk_probe: agora_agent::gc::measure,
        jwt_secret_key: None,
        tls: Default::default(),
        acls: Default::default(),
        stop_on_exit: false,
    })
}

pub(crate) async fn agent(args: AgentArgs) -> anyhow::Result<()> {
    // Validate everything before binding, so bad flags change nothing.
    let authentication = args.auth.load()?;
    let tls = args.tls.load()?;
    let acls = args.acls.load()?;
    if args.master.starts_with("zk://") {
        agora_coord::ZkUrl::parse(&args.master).context("invalid --master")?;
    }
    if let Some(text) = &args.resources {
        check_resources(text)?;
    }
    agora_agent::resources::advertised(args.resources.as_deref(), std::path::Path::new("/"))?;
    if let Some(text) = &args.attributes {
        agora_agent::resources::parse_attributes(text)?;
    }
    let (listener, address) = bind(args.ip, args.port).await?;
    let hostname = hostname_for(args.ip, args.hostname);
    let mut options = agent_options(
        args.master,
        address,
        hostname,
        args.work_dir,
        args.resources.as_deref(),
        args.attributes.as_deref(),
        args.containers.options(),
    )?;
    options.gc = agora_agent::gc::GcPolicy {
        delay: args.gc_delay,
        disk_headroom: args.gc_disk_headroom,
    };
    options.authentication = authentication;
    options.jwt_secret_key = args.executor_auth.jwt_secret_key;
    options.tls = tls;
    options.acls = acls;
    agora_agent::run_agent(listener, options, shutdown_on_signal())
        .await
        .context("agent failed")
}

pub(crate) async fn dev(args: DevArgs) -> anyhow::Result<()> {
    if let Some(text) = &args.resources {
        check_resources(text)?;
    }
    // The throw-away PKI first: its files are the daemons' flags.
    let pki = if args.tls {
        let dir = args.work_dir.join("tls");
        Some(
            agora_tls::dev_pki(&dir)
                .with_context(|| format!("cannot generate certificates under {}", dir.display()))?,
        )
    } else {
        None
    };
    let tls = pki
        .as_ref()
        .map(|pki| pki.server_files(false))
        .unwrap_or_default();
    let shutdown = shutdown_on_signal();
    let (listener, master_address) = bind(args.ip, args.port).await?;
    let hostname = hostname_for(args.ip, None);
    let mut options = master_options(
        master_address,
        hostname.clone(),
        &default_tuning(Some(args.work_dir.join("master"))),
    );
    options.tls = tls.clone();
    let master = tokio::spawn(agora_master::run_master(
        listener,
        options,
        shutdown.clone(),
    ));
    std::fs::create_dir_all(&args.work_dir)
        .with_context(|| format!("cannot create work dir {}", args.work_dir.display()))?;
    // Measured once, on the work dirs' file system, and shared out.
    let detected = agora_agent::resources::detect(&args.work_dir);
    let mut agents = Vec::new();
    for n in 0..args.agents {
        let share = match &args.resources {
            Some(text) => text.clone(),
            None => dev_share(&detected, args.agents, n),
        };
        // Agents on 5051, 5052, ... when free, else any free port.
        let preferred = args.port.checked_add(1 + n).unwrap_or(0);
        let (listener, address) = match bind(args.ip, preferred).await {
            Ok(bound) => bound,
            Err(_) => bind(args.ip, 0).await?,
        };
        let mut options = agent_options(
            master_address.to_string(),
            address,
            hostname.clone(),
            args.work_dir.join(format!("agent-{n}")),
            Some(&share),
            None,
            agora_agent::containers::ContainerOptions {
                cgroups_root: args.cgroups_root.clone(),
                ..Default::default()
            },
        )?;
        options.tls = tls.clone();
        // Ctrl-C stops the whole cluster, tasks included.
        options.stop_on_exit = true;
        println!(
            "agora dev: agent {n} on {address}, work dir {}, resources {share}",
            options.work_dir.display()
        );
        agents.push(tokio::spawn(agora_agent::run_agent(
            listener,
            options,
            shutdown.clone(),
        )));
    }
    match &pki {
        None => {
            println!(
                "agora dev: master and web UI on http://{master_address}/ (Ctrl-C stops the cluster)"
            );
            println!(
                "agora dev: try: agora run --master {master_address} --name hello --command 'echo hello' --instances 4"
            );
        }
        Some(pki) => {
            let ca = pki.ca.canonicalize().unwrap_or_else(|_| pki.ca.clone());
            println!(
                "agora dev: master and web UI on https://{master_address}/ (Ctrl-C stops the cluster)"
            );
            println!(
                "agora dev: TLS on every port; certificates under {} (throw-away CA: {})",
                ca.parent().unwrap_or(&ca).display(),
                ca.display()
            );
            println!(
                "agora dev: try: agora run --master https://{master_address} --tls-ca {} --name hello --command 'echo hello' --instances 4",
                ca.display()
            );
            println!(
                "agora dev: or: curl --cacert {} https://{master_address}/health",
                ca.display()
            );
        }
    }
    let master_result = master.await.context("master task panicked")?;
    shutdown.cancel();
    for agent in agents {
        agent
            .await
            .context("agent task panicked")?
            .context("agent failed")?;
    }
    master_result.context("master failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_seconds_or_mesos_units() {
        assert_eq!(parse_duration("1weeks"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("2days"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3fortnights").is_err());
        assert!(parse_duration("-1secs").is_err());
        assert!(parse_duration("1e300weeks").is_err());
        assert_eq!(parse_fraction("0.1"), Ok(0.1));
        assert!(parse_fraction("1.5").is_err());
        assert!(parse_fraction("NaN").is_err());
    }

    #[test]
    fn the_bounds_flags_have_mesos_defaults_and_refuse_bad_values() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            master: MasterArgs,
        }
        let parse = |extra: &[&str]| {
            let argv = ["master"].iter().chain(extra).copied();
            <Cli as clap::Parser>::try_parse_from(argv).map(|cli| cli.master)
        };
        let defaults = parse(&[]).expect("defaults parse");
        assert_eq!(defaults.max_completed_frameworks, 50);
        assert_eq!(defaults.max_completed_tasks_per_framework, 1000);
        assert_eq!(
            defaults.registry_max_agent_age,
            Duration::from_secs(14 * 86_400)
        );
        assert_eq!(defaults.registry_max_agent_count, 102_400);
        assert_eq!(defaults.registry_gc_interval, Duration::from_secs(900));
        let set = parse(&[
            "--registry-max-agent-age",
            "3days",
            "--registry_gc_interval",
            "30secs",
            "--max-completed-tasks-per-framework",
            "0",
        ])
        .expect("parses");
        assert_eq!(set.registry_max_agent_age, Duration::from_secs(3 * 86_400));
        assert_eq!(set.registry_gc_interval, Duration::from_secs(30));
        assert_eq!(set.max_completed_tasks_per_framework, 0);
        for (flag, value) in [
            ("--registry-gc-interval", "0"),
            ("--registry-max-agent-age", "forever"),
            ("--registry-max-agent-count", "-1"),
            ("--max-completed-frameworks", "lots"),
        ] {
            let arg = format!("{flag}={value}");
            let Err(error) = parse(&[&arg]) else {
                panic!("{arg}: accepted");
            };
            let error = error.to_string();
            assert!(error.contains(flag), "{arg}: {error}");
        }
    }

    #[test]
    fn dev_agents_share_the_machine_out() {
        let machine =
            agora_core::Resources::parse("cpus:2;mem:8000;disk:100001;ports:[31000-32000]")
                .expect("resources");
        assert_eq!(
            dev_share(&machine, 2, 0),
            "cpus:1;mem:4000;disk:50000;ports:[31000-31499]"
        );
        assert_eq!(
            dev_share(&machine, 2, 1),
            "cpus:1;mem:4000;disk:50000;ports:[31500-31999]"
        );
        // Thousandths of a cpu; each share parses and the shares add up to
        // no more than the machine.
        let mut total = agora_core::Resources::new();
        for n in 0..3 {
            let share = dev_share(&machine, 3, n);
            let share = agora_core::Resources::parse_input(&share).expect(&share);
            total.add(&share);
        }
        assert_eq!(total.scalar_value("cpus"), 1.998);
        assert!(machine.contains(&total), "{total}");
        assert_eq!(
            dev_share(&machine, 1, 0),
            "cpus:2;mem:8000;disk:100001;ports:[31000-32000]"
        );
    }

    #[test]
    fn the_fetcher_cache_is_on_by_default_under_the_work_dir() {
        let dir = std::env::temp_dir().join(format!("agora-cli-cache-{}", std::process::id()));
        let address: SocketAddr = "127.0.0.1:5051".parse().expect("address");
        let options = agent_options(
            "127.0.0.1:5050".into(),
            address,
            "localhost".into(),
            dir.clone(),
            Some("cpus:1;mem:128;disk:10"),
            None,
            Default::default(),
        )
        .expect("options");
        assert_eq!(
            options.containers.fetcher.cache_dir,
            Some(options.work_dir.join("fetcher-cache"))
        );
        let mut elsewhere = agora_agent::containers::ContainerOptions::default();
        elsewhere.fetcher.cache_dir = Some(dir.join("mine"));
        let options = agent_options(
            "127.0.0.1:5050".into(),
            address,
            "localhost".into(),
            dir.clone(),
            Some("cpus:1;mem:128;disk:10"),
            None,
            elsewhere,
        )
        .expect("options");
        assert_eq!(options.containers.fetcher.cache_dir, Some(dir.join("mine")));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
