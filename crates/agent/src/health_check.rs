//! Task health checks, as Mesos' built-in executors run them.
//!
//! The executor turns a task's `HealthCheck` into a [`HealthPolicy`] and a
//! [`Probe`] with [`HealthPolicy::from_proto`], then loops: wait until
//! [`HealthTracker::next_check_at`], run [`probe`], and feed the outcome to
//! [`HealthTracker::record`], whose [`Verdict`] says whether to send a status
//! update with `healthy` set (reason `REASON_TASK_HEALTH_CHECK_STATUS_UPDATED`)
//! and whether to kill the task.
//!
//! The tracker is pure (times are passed in, measured from any fixed origin)
//! so the policy is tested without clocks; the probes do the I/O, each bounded
//! by the check's timeout.

use std::path::PathBuf;
use std::time::Duration;

use agora_proto::v1 as pb;

mod probes;

pub use probes::probe;

/// Mesos' default wait between the task starting and the first check.
pub const DEFAULT_DELAY: Duration = Duration::from_secs(15);
/// Mesos' default wait between the starts of two checks.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Mesos' default bound on one check.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);
/// Mesos' default number of consecutive failures that kills the task.
pub const DEFAULT_CONSECUTIVE_FAILURES: u32 = 3;
/// Mesos' default grace period, from the task's start.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(10);

/// Why a `HealthCheck` cannot be run; the message suits a TASK_ERROR.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum HealthCheckError {
    #[error("health check type {0} is not supported (expected COMMAND, HTTP or TCP)")]
    UnknownType(i32),
    #[error("{0} health check needs its `{1}` field")]
    Missing(&'static str, &'static str),
    #[error("health check port {0} is invalid (expected 1-65535)")]
    InvalidPort(u32),
    #[error("health check {0} must be a non-negative finite number of seconds, got {1}")]
    InvalidSeconds(&'static str, f64),
    #[error("http health check path must start with '/', got {0:?}")]
    InvalidPath(String),
    #[error("http health check status {0} is invalid (expected 100-599)")]
    InvalidStatus(u32),
    #[error("command health check has an empty command")]
    EmptyCommand,
    #[error("https health checks are not supported (scheme {0:?})")]
    UnsupportedScheme(String),
}

/// When to check and when to give up on the task (Mesos' numbers, defaults
/// applied).
#[derive(Debug, Clone, PartialEq)]
pub struct HealthPolicy {
    /// From the task's start to the first check.
    pub delay: Duration,
    /// Between the starts of two checks.
    pub interval: Duration,
    /// Bound on one check (also carried by the [`Probe`]).
    pub timeout: Duration,
    /// This many failures in a row kill the task (0 acts as 1).
    pub consecutive_failures: u32,
    /// From the task's start; failures inside it are ignored until the
    /// first success.
    pub grace_period: Duration,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        Self {
            delay: DEFAULT_DELAY,
            interval: DEFAULT_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            consecutive_failures: DEFAULT_CONSECUTIVE_FAILURES,
            grace_period: DEFAULT_GRACE_PERIOD,
        }
    }
}

/// What one check does.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeKind {
    /// Runs a command; exit status 0 is healthy. With `shell`, `value` runs
    /// under `sh -c`; otherwise `value` is the program and `arguments[1..]`
    /// its arguments (`arguments[0]` is argv\[0\], as in Mesos).
    Command {
        shell: bool,
        value: String,
        arguments: Vec<String>,
        /// The check's own variables, set over the task's.
        env: Vec<(String, String)>,
    },
    /// `GET path` on 127.0.0.1:port over plain HTTP/1.1; healthy iff the
    /// status is in `statuses`, or 200-399 when that is empty. HTTPS is not
    /// supported: [`HealthPolicy::from_proto`] refuses any scheme but `http`.
    Http {
        port: u16,
        path: String,
        statuses: Vec<u16>,
    },
    /// A TCP connection to 127.0.0.1:port is accepted.
    Tcp { port: u16 },
}

/// One check and its time bound.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub kind: ProbeKind,
    pub timeout: Duration,
}

/// What a probe needs to know about the task.
#[derive(Debug, Clone, Default)]
pub struct ProbeContext {
    /// Working directory of command checks.
    pub sandbox: PathBuf,
    /// The task's environment, added to the executor's (as for the task).
    pub env: Vec<(String, String)>,
    /// Command checks run as this (uid, gid) when set.
    pub uid_gid: Option<(u32, u32)>,
    /// The task's allocated ports, in order (informational; ports in the
    /// check are already concrete).
    pub ports: Vec<u16>,
    /// Variables of the executor's own environment a command check must
    /// not inherit (the executor's `EXECUTOR_ONLY_ENV`).
    pub private_env: &'static [&'static str],
}

fn seconds(
    name: &'static str,
    value: Option<f64>,
    default: Duration,
) -> Result<Duration, HealthCheckError> {
    match value {
        None => Ok(default),
        Some(v) if v >= 0.0 => {
            Duration::try_from_secs_f64(v).map_err(|_| HealthCheckError::InvalidSeconds(name, v))
        }
        Some(v) => Err(HealthCheckError::InvalidSeconds(name, v)),
    }
}

fn port(value: u32) -> Result<u16, HealthCheckError> {
    match u16::try_from(value) {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(HealthCheckError::InvalidPort(value)),
    }
}

impl HealthPolicy {
    /// Validates `check` and applies Mesos' defaults to its unset numbers.
    pub fn from_proto(check: &pb::HealthCheck) -> Result<(HealthPolicy, Probe), HealthCheckError> {
        use pb::health_check::Type;
        let policy = HealthPolicy {
            delay: seconds("delay_seconds", check.delay_seconds, DEFAULT_DELAY)?,
            interval: seconds("interval_seconds", check.interval_seconds, DEFAULT_INTERVAL)?,
            timeout: seconds("timeout_seconds", check.timeout_seconds, DEFAULT_TIMEOUT)?,
            consecutive_failures: check
                .consecutive_failures
                .unwrap_or(DEFAULT_CONSECUTIVE_FAILURES),
            grace_period: seconds(
                "grace_period_seconds",
                check.grace_period_seconds,
                DEFAULT_GRACE_PERIOD,
            )?,
        };
        let raw_type = check.r#type.unwrap_or(Type::Unknown as i32);
        let kind = match Type::try_from(raw_type) {
            Ok(Type::Command) => {
                let command = check
                    .command
                    .as_ref()
                    .ok_or(HealthCheckError::Missing("COMMAND", "command"))?;
                let value = command.value.clone().unwrap_or_default();
                if value.trim().is_empty() {
                    return Err(HealthCheckError::EmptyCommand);
                }
                let env = command
                    .environment
                    .iter()
                    .flat_map(|e| &e.variables)
                    .map(|v| (v.name.clone(), v.value.clone().unwrap_or_default()))
                    .collect();
                ProbeKind::Command {
                    shell: command.shell.unwrap_or(true),
                    value,
                    arguments: command.arguments.clone(),
                    env,
                }
            }
            Ok(Type::Http) => {
                let http = check
                    .http
                    .as_ref()
                    .ok_or(HealthCheckError::Missing("HTTP", "http"))?;
                let scheme = http.scheme.as_deref().unwrap_or("http");
                if scheme != "http" {
                    return Err(HealthCheckError::UnsupportedScheme(scheme.to_owned()));
                }
                let path = http.path.clone().unwrap_or_else(|| "/".to_owned());
                if !path.starts_with('/') {
                    return Err(HealthCheckError::InvalidPath(path));
                }
                // A request line must not be split or smuggled through the path.
                if path
                    .chars()
                    .any(|c| c.is_ascii_whitespace() || c.is_control())
                {
                    return Err(HealthCheckError::InvalidPath(path));
                }
                let statuses = http
                    .statuses
                    .iter()
                    .map(|&s| match u16::try_from(s) {
                        Ok(s) if (100..=599).contains(&s) => Ok(s),
                        _ => Err(HealthCheckError::InvalidStatus(s)),
                    })
                    .collect::<Result<_, _>>()?;
                ProbeKind::Http {
                    port: port(http.port)?,
                    path,
                    statuses,
                }
            }
            Ok(Type::Tcp) => {
                let tcp = check
                    .tcp
                    .as_ref()
                    .ok_or(HealthCheckError::Missing("TCP", "tcp"))?;
                ProbeKind::Tcp {
                    port: port(tcp.port)?,
                }
            }
            Ok(Type::Unknown) | Err(_) => return Err(HealthCheckError::UnknownType(raw_type)),
        };
        let probe = Probe {
            kind,
            timeout: policy.timeout,
        };
        Ok((policy, probe))
    }
}

/// What the executor should do after a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Send a status update with `healthy` set to this.
    pub report: Option<bool>,
    /// Kill the task (true at most once per tracker).
    pub kill: bool,
    /// What happened, for the update's message and the logs.
    pub message: String,
}

/// The health-check policy applied to a sequence of outcomes. Pure: every
/// time is passed in, as a `Duration` since a fixed origin of the caller's.
#[derive(Debug, Clone)]
pub struct HealthTracker {
    policy: HealthPolicy,
    started_at: Duration,
    next_at: Duration,
    consecutive_failures: u32,
    /// A check has succeeded: the grace period no longer applies.
    succeeded: bool,
    last_reported: Option<bool>,
    killed: bool,
}

impl HealthTracker {
    /// A tracker for a task that started at `started_at`.
    pub fn new(policy: HealthPolicy, started_at: Duration) -> Self {
        let next_at = started_at.saturating_add(policy.delay);
        Self {
            policy,
            started_at,
            next_at,
            consecutive_failures: 0,
            succeeded: false,
            last_reported: None,
            killed: false,
        }
    }

    /// When the next check should begin: `started_at + delay` for the first,
    /// then `interval` after the previous one was due (or at once, when that
    /// check outran the interval).
    pub fn next_check_at(&self) -> Duration {
        self.next_at
    }

    /// Whether a verdict has already said to kill the task; checks may stop.
    pub fn killed(&self) -> bool {
        self.killed
    }

    /// The failures in a row counted so far.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Records the outcome of the check that was due at
    /// [`next_check_at`](Self::next_check_at) and finished at `now`.
    pub fn record(&mut self, now: Duration, outcome: Result<(), String>) -> Verdict {
        let began = self.next_at;
        self.next_at = began.saturating_add(self.policy.interval).max(now);
        if self.killed {
            return Verdict {
                report: None,
                kill: false,
                message: "the task is already being killed".to_owned(),
            };
        }
        match outcome {
            Ok(()) => {
                self.succeeded = true;
                self.consecutive_failures = 0;
                let report = (self.last_reported != Some(true)).then_some(true);
                if report.is_some() {
                    self.last_reported = Some(true);
                }
                Verdict {
                    report,
                    kill: false,
                    message: "health check passed".to_owned(),
                }
            }
            Err(error) => {
                let in_grace = now < self.started_at.saturating_add(self.policy.grace_period);
                if in_grace && !self.succeeded {
                    return Verdict {
                        report: None,
                        kill: false,
                        message: format!("health check failed in the grace period: {error}"),
                    };
                }
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                self.last_reported = Some(false);
                let limit = self.policy.consecutive_failures.max(1);
                let kill = self.consecutive_failures >= limit;
                self.killed = kill;
                let message = if kill {
                    format!(
                        "health check failed {} consecutive times: {error}",
                        self.consecutive_failures
                    )
                } else {
                    format!(
                        "health check failed ({} of {limit} consecutive): {error}",
                        self.consecutive_failures
                    )
                };
                Verdict {
                    report: Some(false),
                    kill,
                    message,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
