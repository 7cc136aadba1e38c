//! `agora run`'s flags and the pure logic behind them: parsing `--uri`,
//! `--env` and `--health-check`, sizing offers, picking ports, and building
//! the `TaskInfo` each instance is launched with.

use agora_scheduler::proto::{CommandInfo, HealthCheck, Offer, Resource, TaskInfo, value};
use agora_scheduler::proto::{command_info, health_check};
use agora_scheduler::{TaskBuilder, scalar_sum};
use anyhow::{bail, ensure};

/// Slack for floating-point resource arithmetic.
const EPSILON: f64 = 1e-6;

/// Run a shell command as one or more tasks and wait for them to end.
#[derive(clap::Args, Debug)]
pub(crate) struct RunArgs {
    /// Master to run on: HOST:PORT (or http://HOST:PORT, https://HOST:PORT),
    /// or zk://HOST:PORT[,HOST:PORT...]/PATH for whichever master ZooKeeper
    /// elected.
    #[arg(long, env = "AGORA_MASTER", value_name = "ADDRESS")]
    pub(crate) master: String,

    #[command(flatten)]
    pub(crate) auth: crate::auth_flags::ClientAuthArgs,

    #[command(flatten)]
    pub(crate) tls: crate::tls_flags::ClientTlsArgs,

    /// Framework name; also each task's name, and the prefix of the task ids
    /// NAME-0, NAME-1, ...
    #[arg(long, env = "AGORA_NAME")]
    pub(crate) name: String,

    /// Shell command each instance runs (with `sh -c`).
    #[arg(long, env = "AGORA_COMMAND", value_name = "CMD")]
    pub(crate) command: String,

    /// Number of instances (tasks) to launch.
    #[arg(long, env = "AGORA_INSTANCES", value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) instances: u32,

    /// CPUs per instance.
    #[arg(long, env = "AGORA_CPUS", value_name = "C", default_value_t = 0.1)]
    pub(crate) cpus: f64,

    /// Memory per instance, in MB.
    #[arg(long, env = "AGORA_MEM", value_name = "MB", default_value_t = 32.0)]
    pub(crate) mem: f64,

    /// Disk per instance, in MB [default: none asked for].
    #[arg(long, env = "AGORA_DISK", value_name = "MB")]
    pub(crate) disk: Option<f64>,

    /// Ports per instance, taken from the offers' `ports` ranges; the task
    /// sees them as $PORT0..$PORT{N-1} and $PORTS.
    #[arg(long, env = "AGORA_PORTS", value_name = "N", default_value_t = 0)]
    pub(crate) ports: u32,

    /// A URI the agent fetches into each sandbox before the task starts
    /// (repeatable). Options after `;`: `extract=BOOL` (default true: archives
    /// are unpacked), `executable`, `cache`, `output_file=NAME`.
    #[arg(long = "uri", env = "AGORA_URI", value_name = "URL[;OPTION]...",
          value_parser = parse_uri)]
    pub(crate) uris: Vec<command_info::Uri>,

    /// An environment variable of each task, NAME=VALUE (repeatable).
    #[arg(long = "env", env = "AGORA_ENV", value_name = "NAME=VALUE",
          value_parser = parse_env)]
    pub(crate) env: Vec<(String, String)>,

    /// Role to subscribe in and take resources from.
    #[arg(long, env = "AGORA_ROLE", value_name = "ROLE", default_value = "*")]
    pub(crate) role: String,

    /// Seconds to keep trying to reach the master and subscribe before giving
    /// up with exit status 2.
    #[arg(
        long,
        env = "AGORA_TIMEOUT",
        value_name = "SECONDS",
        default_value_t = 30
    )]
    pub(crate) timeout: u64,

    /// Seconds instances may wait for room on the cluster before the job
    /// fails [default: wait as long as it takes; a task bigger than every
    /// agent fails at once].
    #[arg(
        long,
        alias = "launch_timeout",
        env = "AGORA_LAUNCH_TIMEOUT",
        value_name = "SECONDS"
    )]
    pub(crate) launch_timeout: Option<u64>,

    /// User the tasks run as (also the framework's user) [default: the
    /// framework runs as $USER, else root, and tasks as the agent decides].
    #[arg(long, env = "AGORA_USER", value_name = "USER")]
    pub(crate) user: Option<String>,

    /// Once every instance has been launched and is TASK_RUNNING (or has
    /// already ended), wait SECONDS more, then kill, through the scheduler
    /// API, every task that has not ended yet; those end TASK_KILLED and the
    /// exit status is 1. 0 kills as soon as all are running. Without this
    /// flag tasks run until they end on their own [default: never killed].
    #[arg(
        long,
        alias = "kill_after",
        env = "AGORA_KILL_AFTER",
        value_name = "SECONDS"
    )]
    pub(crate) kill_after: Option<u64>,

    /// Health check of each task, run by its executor: `http:PORT/PATH`
    /// (healthy on status 200-399), `tcp:PORT` or `cmd:COMMAND` (healthy on
    /// exit 0). PORT is a number or PORT0..PORT{N-1}, one of the task's
    /// `--ports`. A task failing it `--health-failures` times in a row is
    /// killed [default: none: no health check].
    #[arg(long, alias = "health_check", env = "AGORA_HEALTH_CHECK",
          value_name = "SPEC", value_parser = parse_health_check)]
    pub(crate) health_check: Option<HealthCheckSpec>,

    /// Seconds from the task's start to the first check [agent default: 15].
    #[arg(long, alias = "health_delay", env = "AGORA_HEALTH_DELAY",
          value_name = "SECONDS", value_parser = parse_seconds)]
    pub(crate) health_delay: Option<f64>,

    /// Seconds between checks [agent default: 10].
    #[arg(long, alias = "health_interval", env = "AGORA_HEALTH_INTERVAL",
          value_name = "SECONDS", value_parser = parse_seconds)]
    pub(crate) health_interval: Option<f64>,

    /// Seconds one check may take [agent default: 20].
    #[arg(long, alias = "health_timeout", env = "AGORA_HEALTH_TIMEOUT",
          value_name = "SECONDS", value_parser = parse_seconds)]
    pub(crate) health_timeout: Option<f64>,

    /// Seconds from the task's start in which failures are ignored until
    /// the first success [agent default: 10].
    #[arg(long, alias = "health_grace", env = "AGORA_HEALTH_GRACE",
          value_name = "SECONDS", value_parser = parse_seconds)]
    pub(crate) health_grace: Option<f64>,

    /// Failed checks in a row that kill the task [agent default: 3].
    #[arg(
        long,
        alias = "health_failures",
        env = "AGORA_HEALTH_FAILURES",
        value_name = "N"
    )]
    pub(crate) health_failures: Option<u32>,

    /// Print only how each task ended and the summary: not each state
    /// change as it happens (on stderr, with the time).
    #[arg(long, short = 'q', env = "AGORA_QUIET")]
    pub(crate) quiet: bool,

    /// Run the tasks under this custom executor program (run with `sh -c`;
    /// one executor per agent, shared by the tasks there) instead of
    /// Agora's command executor [default: Agora's command executor].
    #[arg(long, env = "AGORA_EXECUTOR", value_name = "CMD")]
    pub(crate) executor: Option<String>,
}

impl RunArgs {
    /// Checks what clap cannot: numbers in range and flags that go together.
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        // Positive, and an amount `Resources` keeps: `--cpus 0.0001` would
        // round to nothing and launch a task with no cpus.
        let amount = |flag: &str, unit: &str, v: f64| -> anyhow::Result<()> {
            ensure!(
                v.is_finite() && v > 0.0,
                "{flag} must be a positive number{unit}, got {v}"
            );
            agora_core::resources::check_scalar(v)
                .map_err(|why| anyhow::anyhow!("{flag} {v} {why}"))
        };
        amount("--cpus", "", self.cpus)?;
        amount("--mem", " of MB", self.mem)?;
        if let Some(disk) = self.disk {
            amount("--disk", " of MB", disk)?;
        }
        // The master would refuse these tasks on every offer: say so now.
        for instance in [0, self.instances.saturating_sub(1)] {
            let task_id = format!("{}-{instance}", self.name);
            if let Err(e) = agora_core::ids::validate_id(&task_id) {
                bail!(
                    "--name {:?} cannot name tasks (task id {task_id:?}: {e})",
                    self.name
                );
            }
        }
        ensure!(!self.name.trim().is_empty(), "--name must not be empty");
        ensure!(
            !self.command.trim().is_empty(),
            "--command must not be empty"
        );
        if let Some(executor) = &self.executor {
            ensure!(!executor.trim().is_empty(), "--executor must not be empty");
        }
        match &self.health_check {
            Some(check) => {
                if let Some(index) = check.allocated_port() {
                    ensure!(
                        index < self.ports as usize,
                        "--health-check uses PORT{index} but each task gets {} port(s) (--ports)",
                        self.ports
                    );
                }
            }
            None => {
                let tuned = self.health_delay.is_some()
                    || self.health_interval.is_some()
                    || self.health_timeout.is_some()
                    || self.health_grace.is_some()
                    || self.health_failures.is_some();
                ensure!(!tuned, "--health-* settings need --health-check");
            }
        }
        Ok(())
    }

    /// What one instance asks of an offer.
    pub(crate) fn demand(&self) -> Demand {
        Demand {
            cpus: self.cpus,
            mem: self.mem,
            disk: self.disk.unwrap_or(0.0),
            ports: self.ports as usize,
        }
    }
}

/// A port in `--health-check`: a number, or the task's N-th allocated port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PortRef {
    Number(u16),
    Allocated(usize),
}

/// A parsed `--health-check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HealthCheckSpec {
    Http { port: PortRef, path: String },
    Tcp { port: PortRef },
    Command(String),
}

impl HealthCheckSpec {
    /// The allocated port this check refers to, if any.
    fn allocated_port(&self) -> Option<usize> {
        match self {
            Self::Http { port, .. } | Self::Tcp { port } => match port {
                PortRef::Allocated(index) => Some(*index),
                PortRef::Number(_) => None,
            },
            Self::Command(_) => None,
        }
    }
}

fn parse_port_ref(text: &str) -> Result<PortRef, String> {
    if let Some(index) = text.strip_prefix("PORT") {
        return index
            .parse()
            .map(PortRef::Allocated)
            .map_err(|_| format!("invalid port {text:?} (expected 1-65535 or PORT0, PORT1, ...)"));
    }
    match text.parse::<u16>() {
        Ok(port) if port != 0 => Ok(PortRef::Number(port)),
        _ => Err(format!(
            "invalid port {text:?} (expected 1-65535 or PORT0, PORT1, ...)"
        )),
    }
}

/// Parses `http:PORT[/PATH]`, `tcp:PORT` or `cmd:COMMAND`.
pub(crate) fn parse_health_check(text: &str) -> Result<HealthCheckSpec, String> {
    if let Some(rest) = text.strip_prefix("http:") {
        let (port, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, "/"),
        };
        if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("invalid http path {path:?}"));
        }
        Ok(HealthCheckSpec::Http {
            port: parse_port_ref(port)?,
            path: path.to_owned(),
        })
    } else if let Some(port) = text.strip_prefix("tcp:") {
        Ok(HealthCheckSpec::Tcp {
            port: parse_port_ref(port)?,
        })
    } else if let Some(command) = text.strip_prefix("cmd:") {
        if command.trim().is_empty() {
            return Err("cmd: needs a command".to_owned());
        }
        Ok(HealthCheckSpec::Command(command.to_owned()))
    } else {
        Err(format!(
            "invalid health check {text:?} (expected http:PORT/PATH, tcp:PORT or cmd:COMMAND)"
        ))
    }
}

/// Parses a non-negative, finite number of seconds.
pub(crate) fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!(
            "invalid number of seconds {text:?} (expected a non-negative number)"
        )),
    }
}

/// Parses `NAME=VALUE` (NAME non-empty; VALUE may contain `=`).
pub(crate) fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("invalid variable {text:?} (expected NAME=VALUE)")),
    }
}

fn parse_bool(option: &str, text: &str) -> Result<bool, String> {
    match text {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!(
            "invalid {option}={text:?} (expected true or false)"
        )),
    }
}

/// Parses `URL[;extract=BOOL][;executable][;cache][;output_file=NAME]`.
/// `extract` defaults to true as in Mesos; `executable` and `cache` may
/// also be given as `=BOOL`.
pub(crate) fn parse_uri(text: &str) -> Result<command_info::Uri, String> {
    let mut parts = text.split(';');
    let value = parts.next().unwrap_or_default().trim();
    if value.is_empty() {
        return Err(format!("invalid uri {text:?}: the URL is empty"));
    }
    let mut uri = command_info::Uri {
        value: value.to_owned(),
        executable: Some(false),
        extract: Some(true),
        cache: Some(false),
        output_file: None,
    };
    for option in parts.map(str::trim).filter(|o| !o.is_empty()) {
        let (name, setting) = match option.split_once('=') {
            Some((name, setting)) => (name, Some(setting)),
            None => (option, None),
        };
        let flag = |name: &str| setting.map_or(Ok(true), |s| parse_bool(name, s));
        match name {
            "extract" => uri.extract = Some(flag(name)?),
            "executable" => uri.executable = Some(flag(name)?),
            "cache" => uri.cache = Some(flag(name)?),
            "output_file" => match setting {
                Some(file) if !file.is_empty() && !file.contains('/') => {
                    uri.output_file = Some(file.to_owned());
                }
                _ => return Err(format!("invalid {option:?}: expected output_file=NAME")),
            },
            _ => {
                return Err(format!(
                    "unknown uri option {name:?} (expected extract, executable, cache or output_file)"
                ));
            }
        }
    }
    Ok(uri)
}

/// What one instance needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Demand {
    pub(crate) cpus: f64,
    pub(crate) mem: f64,
    /// MB; 0 when not asked for.
    pub(crate) disk: f64,
    pub(crate) ports: usize,
}

impl Demand {
    /// `cpus:C;mem:M`, then `;disk:D` and `;ports:N` when `asked` asks for
    /// them (the form of `--resources`).
    pub(crate) fn describe(&self, asked: &Demand) -> String {
        let mut text = format!("cpus:{};mem:{}", self.cpus, self.mem);
        if asked.disk > 0.0 {
            text.push_str(&format!(";disk:{}", self.disk));
        }
        if asked.ports > 0 {
            text.push_str(&format!(";ports:{}", self.ports));
        }
        text
    }
}

/// What one agent offers now (all its offers in one event pooled).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Capacity {
    pub(crate) cpus: f64,
    pub(crate) mem: f64,
    pub(crate) disk: f64,
    /// Free ports, as inclusive ranges within 1-65535.
    pub(crate) ports: Vec<(u16, u16)>,
}

impl Capacity {
    pub(crate) fn of(offers: &[Offer]) -> Self {
        let resources: Vec<&Resource> = offers.iter().flat_map(|o| &o.resources).collect();
        let sum = |name: &str| {
            offers
                .iter()
                .map(|o| scalar_sum(&o.resources, name))
                .sum::<f64>()
        };
        let ports = resources
            .iter()
            .filter(|r| r.name == "ports" && r.r#type() == value::Type::Ranges)
            .filter_map(|r| r.ranges.as_ref())
            .flat_map(|r| &r.range)
            .filter_map(|r| {
                let begin = u16::try_from(r.begin.max(1)).ok()?;
                let end = u16::try_from(r.end.min(u64::from(u16::MAX))).ok()?;
                (begin <= end).then_some((begin, end))
            })
            .collect();
        Self {
            cpus: sum("cpus"),
            mem: sum("mem"),
            disk: sum("disk"),
            ports,
        }
    }

    /// The offer in the terms of [`Demand::describe`] (ports counted).
    pub(crate) fn describe(&self, asked: &Demand) -> String {
        Demand {
            cpus: self.cpus,
            mem: self.mem,
            disk: self.disk,
            ports: self.free_ports(),
        }
        .describe(asked)
    }

    pub(crate) fn free_ports(&self) -> usize {
        self.ports
            .iter()
            .map(|&(b, e)| usize::from(e - b) + 1)
            .sum()
    }

    /// How many instances of `demand` fit.
    pub(crate) fn fits(&self, demand: &Demand) -> usize {
        let by = |offered: f64, wanted: f64| {
            let n = ((offered + EPSILON) / wanted).floor();
            if n.is_finite() && n > 0.0 {
                n as usize
            } else {
                0
            }
        };
        let mut n = by(self.cpus, demand.cpus).min(by(self.mem, demand.mem));
        if demand.disk > 0.0 {
            n = n.min(by(self.disk, demand.disk));
        }
        if let Some(by_ports) = self.free_ports().checked_div(demand.ports) {
            n = n.min(by_ports);
        }
        n
    }

    /// How close this comes to fitting one instance (1.0 fits).
    pub(crate) fn closeness(&self, demand: &Demand) -> f64 {
        let mut c = (self.cpus / demand.cpus).min(self.mem / demand.mem);
        if demand.disk > 0.0 {
            c = c.min(self.disk / demand.disk);
        }
        if demand.ports > 0 {
            c = c.min(self.free_ports() as f64 / demand.ports as f64);
        }
        c
    }

    /// Takes the `n` lowest free ports, or none when fewer are free. Ports
    /// taken are gone from `self`, so tasks from one offer never share one.
    pub(crate) fn take_ports(&mut self, n: usize) -> Option<Vec<u16>> {
        if self.free_ports() < n {
            return None;
        }
        self.ports.sort_unstable();
        let mut taken = Vec::with_capacity(n);
        while taken.len() < n {
            let (begin, end) = self.ports.first_mut()?;
            taken.push(*begin);
            if begin == end {
                self.ports.remove(0);
            } else {
                *begin += 1;
            }
        }
        Some(taken)
    }
}

/// How many of `pending` instances to put on each agent, given how many fit
/// on each. When several agents can take an instance, none gets more than
/// ceil(pending / those agents), so instances spread out.
pub(crate) fn plan_placement(fits: &[usize], pending: usize) -> Vec<usize> {
    let usable = fits.iter().filter(|&&n| n > 0).count();
    let cap = if usable > 1 {
        pending.div_ceil(usable)
    } else {
        pending
    };
    let mut left = pending;
    fits.iter()
        .map(|&fit| {
            let n = fit.min(cap).min(left);
            left -= n;
            n
        })
        .collect()
}

/// The `HealthCheck` of `spec` for a task holding `ports`.
fn health_check_info(
    args: &RunArgs,
    spec: &HealthCheckSpec,
    ports: &[u16],
) -> anyhow::Result<HealthCheck> {
    let resolve = |port: PortRef| -> anyhow::Result<u32> {
        match port {
            PortRef::Number(port) => Ok(port.into()),
            PortRef::Allocated(index) => match ports.get(index) {
                Some(&port) => Ok(port.into()),
                None => bail!("the task has no PORT{index}"),
            },
        }
    };
    let mut check = HealthCheck {
        delay_seconds: args.health_delay,
        interval_seconds: args.health_interval,
        timeout_seconds: args.health_timeout,
        consecutive_failures: args.health_failures,
        grace_period_seconds: args.health_grace,
        ..Default::default()
    };
    match spec {
        HealthCheckSpec::Http { port, path } => {
            check.r#type = Some(health_check::Type::Http as i32);
            check.http = Some(health_check::HttpCheckInfo {
                port: resolve(*port)?,
                path: Some(path.clone()),
                scheme: None,
                statuses: Vec::new(),
            });
        }
        HealthCheckSpec::Tcp { port } => {
            check.r#type = Some(health_check::Type::Tcp as i32);
            check.tcp = Some(health_check::TcpCheckInfo {
                port: resolve(*port)?,
            });
        }
        HealthCheckSpec::Command(command) => {
            check.r#type = Some(health_check::Type::Command as i32);
            check.command = Some(CommandInfo {
                shell: Some(true),
                value: Some(command.clone()),
                ..Default::default()
            });
        }
    }
    Ok(check)
}

/// The task of one instance, launched from `offer` (its agent and role)
/// holding `ports`.
pub(crate) fn task_info(
    args: &RunArgs,
    task_id: String,
    offer: &Offer,
    ports: &[u16],
) -> anyhow::Result<TaskInfo> {
    let mut builder = TaskBuilder::command(task_id, args.name.clone(), args.command.clone())
        .cpus(args.cpus)
        .mem(args.mem)
        .ports(ports);
    if let Some(disk) = args.disk {
        builder = builder.disk(disk);
    }
    for uri in &args.uris {
        builder = builder.uri(uri.clone());
    }
    for (name, value) in &args.env {
        builder = builder.env(name.clone(), value.clone());
    }
    if let Some(user) = &args.user {
        builder = builder.user(user.clone());
    }
    if let Some(spec) = &args.health_check {
        builder = builder.health_check(health_check_info(args, spec, ports)?);
    }
    let mut task = builder.build_for_offer(offer);
    if let Some(program) = &args.executor {
        task.executor = Some(custom_executor(&args.name, program));
    }
    Ok(task)
}

/// The custom executor all of a run's tasks share. It holds no resources
/// of its own: its container is sized by its tasks.
fn custom_executor(name: &str, program: &str) -> agora_scheduler::proto::ExecutorInfo {
    use agora_scheduler::proto as pb;
    pb::ExecutorInfo {
        r#type: Some(pb::executor_info::Type::Custom as i32),
        executor_id: Some(pb::ExecutorId {
            value: format!("{name}-executor"),
        }),
        name: Some(format!("{name} executor")),
        command: Some(pb::CommandInfo {
            value: Some(program.to_string()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
#[path = "run_options_tests.rs"]
mod tests;
