//! What the agent tells an executor through its environment.

use std::time::Duration;

/// Why the environment does not describe an executor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A variable the driver needs is not set (or empty).
    #[error("{names} is not set: this executor must be started by an agora agent")]
    Missing {
        /// The variables that may carry it, in the order they are read.
        names: &'static str,
    },
    /// `LIBPROCESS_SSL_*` asks for TLS but does not say how.
    #[error("invalid TLS settings (LIBPROCESS_SSL_*): {0}")]
    Tls(String),
}

/// The agent's endpoint and this executor's ids, from the environment.
#[derive(Clone, PartialEq)]
pub struct ExecutorConfig {
    /// The agent's executor endpoint, `http://host:port`.
    pub endpoint: String,
    /// The framework the executor runs for.
    pub framework_id: String,
    /// This executor.
    pub executor_id: String,
    /// The agent, when the environment names it (else learnt on SUBSCRIBED).
    pub agent_id: Option<String>,
    /// How long the first subscription may take before `error(...)`.
    pub connect_timeout: Duration,
    /// How long a lost agent is waited for (it may be restarting) before
    /// the executor is told to shut down, as Mesos' `MESOS_RECOVERY_TIMEOUT`.
    pub recovery_timeout: Duration,
    /// The token the agent gave this executor
    /// (`MESOS_EXECUTOR_AUTHENTICATION_TOKEN`), sent with every
    /// subscription as `authorization: Bearer`; never printed.
    pub authentication_token: Option<String>,
    /// TLS to the agent, from Mesos' `LIBPROCESS_SSL_*` variables (which an
    /// agent serving TLS passes to its executors); `None`: plaintext.
    pub tls: Option<agora_tls::TlsFiles>,
}

impl std::fmt::Debug for ExecutorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutorConfig")
            .field("endpoint", &self.endpoint)
            .field("framework_id", &self.framework_id)
            .field("executor_id", &self.executor_id)
            .field("agent_id", &self.agent_id)
            .field("connect_timeout", &self.connect_timeout)
            .field("recovery_timeout", &self.recovery_timeout)
            .field("tls", &self.tls)
            .field(
                "authentication_token",
                &self.authentication_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Mesos' default `MESOS_RECOVERY_TIMEOUT`.
const DEFAULT_RECOVERY_TIMEOUT: Duration = Duration::from_secs(15 * 60);

impl ExecutorConfig {
    /// Reads the configuration with `get` (the process environment in
    /// production). Agora's names come first, Mesos' are the fallback.
    pub fn from_env(
        get: impl Fn(&str) -> Option<String>,
        connect_timeout: Duration,
    ) -> Result<Self, ConfigError> {
        let first = |names: &[&str]| {
            names
                .iter()
                .filter_map(|n| get(n))
                .map(|v| v.trim().to_owned())
                .find(|v| !v.is_empty())
        };
        let endpoint = first(&["AGORA_AGENT_ENDPOINT", "MESOS_AGENT_ENDPOINT"]).ok_or(
            ConfigError::Missing {
                names: "AGORA_AGENT_ENDPOINT (or MESOS_AGENT_ENDPOINT)",
            },
        )?;
        let tls = agora_tls::TlsFiles::from_libprocess_env(&get)
            .map_err(|e| ConfigError::Tls(e.to_string()))?;
        // With TLS the agent is reached at https, whatever scheme it named.
        let rest = endpoint
            .strip_prefix("http://")
            .or_else(|| endpoint.strip_prefix("https://"))
            .unwrap_or(&endpoint);
        let scheme = if tls.is_some() { "https" } else { "http" };
        let endpoint = format!("{scheme}://{rest}");
        let framework_id =
            first(&["AGORA_FRAMEWORK_ID", "MESOS_FRAMEWORK_ID"]).ok_or(ConfigError::Missing {
                names: "AGORA_FRAMEWORK_ID (or MESOS_FRAMEWORK_ID)",
            })?;
        let executor_id =
            first(&["AGORA_EXECUTOR_ID", "MESOS_EXECUTOR_ID"]).ok_or(ConfigError::Missing {
                names: "AGORA_EXECUTOR_ID (or MESOS_EXECUTOR_ID)",
            })?;
        let agent_id = first(&["AGORA_AGENT_ID", "MESOS_AGENT_ID", "MESOS_SLAVE_ID"]);
        let recovery_timeout = get("MESOS_RECOVERY_TIMEOUT")
            .and_then(|v| parse_mesos_duration(&v))
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_RECOVERY_TIMEOUT);
        Ok(Self {
            endpoint,
            framework_id,
            executor_id,
            agent_id,
            connect_timeout,
            recovery_timeout,
            authentication_token: first(&["MESOS_EXECUTOR_AUTHENTICATION_TOKEN"]),
            tls,
        })
    }
}

/// A duration as Mesos writes it: a number and a unit (`15mins`, `30secs`,
/// `500ms`, `1.5hrs`); `None` when it is not one.
pub(crate) fn parse_mesos_duration(text: &str) -> Option<Duration> {
    agora_core::time::parse_mesos_duration(text).ok()
}
