//! What a master is started with (the `agora master` flags).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use agora_proto::v1 as pb;

use crate::state::MasterConfig;

/// Operator event streams at most (Mesos' `--max_operator_event_stream_subscribers`
/// default; fixed here, and shown as that flag in `/flags`).
pub(crate) const MAX_OPERATOR_SUBSCRIBERS: usize = 1000;

#[derive(Debug, Clone)]
pub struct MasterOptions {
    /// Contend for leadership and keep the registry in this ZooKeeper.
    pub zk: Option<agora_coord::ZkUrl>,
    pub zk_session_timeout: Duration,
    /// Without ZooKeeper, the registry lives in a file under here (in
    /// memory only when neither is given).
    pub work_dir: Option<std::path::PathBuf>,
    /// After a failover, how long admitted agents have to re-register.
    pub agent_reregister_timeout: Duration,
    /// Rescind offers not answered within this long (`--offer-timeout`).
    pub offer_timeout: Option<Duration>,
    /// The address agents and frameworks are told to use.
    pub advertise: SocketAddr,
    pub hostname: String,
    pub allocation_interval: Duration,
    /// How often agents are pinged; see [`MasterConfig`].
    pub agent_ping_timeout: Duration,
    pub max_agent_ping_timeouts: u32,
    /// How long an unreachable agent has before its tasks are lost; see [`MasterConfig`].
    pub agent_removal_timeout: Duration,
    /// Bounds on what a long-running master remembers; see [`MasterConfig`].
    pub max_completed_frameworks: usize,
    pub max_completed_tasks_per_framework: usize,
    pub registry_max_agent_age: Duration,
    pub registry_max_agent_count: usize,
    pub registry_gc_interval: Duration,
    /// Who may do what (`--acls`); the default allows everything.
    pub acls: Arc<agora_auth::acl::Acls>,
    /// Who must authenticate, against which credentials (see [`crate::authn`]).
    pub authentication: crate::authn::Authentication,
    /// TLS (`--tls-*`): with a certificate, every route of the master's port
    /// (gRPC, HTTP, the web UI) is served over TLS only.
    pub tls: agora_tls::TlsFiles,
}

impl MasterOptions {
    /// A standalone master (no ZooKeeper, registry in memory) advertising
    /// `advertise`, with the defaults of `agora master`'s flags.
    pub fn new(advertise: SocketAddr, hostname: impl Into<String>) -> Self {
        let defaults = MasterConfig::new(pb::MasterInfo::default());
        Self {
            zk: None,
            zk_session_timeout: Duration::from_secs(10),
            work_dir: None,
            agent_reregister_timeout: Duration::from_secs(600),
            offer_timeout: None,
            advertise,
            hostname: hostname.into(),
            allocation_interval: Duration::from_secs(1),
            agent_ping_timeout: defaults.agent_ping_timeout,
            max_agent_ping_timeouts: defaults.max_agent_ping_timeouts,
            agent_removal_timeout: defaults.agent_removal_timeout,
            max_completed_frameworks: defaults.max_completed_frameworks,
            max_completed_tasks_per_framework: defaults.max_completed_tasks_per_framework,
            registry_max_agent_age: defaults.registry_max_agent_age,
            registry_max_agent_count: defaults.registry_max_agent_count,
            registry_gc_interval: defaults.registry_gc_interval,
            acls: defaults.acls,
            authentication: crate::authn::Authentication::default(),
            tls: agora_tls::TlsFiles::default(),
        }
    }

    /// The settings only the shell acts on, under Mesos' flag names, as
    /// `/flags` shows them (the state machine adds its own): where the
    /// master keeps its registry, how it is elected, its timers, and who
    /// must authenticate (the credentials file by its path, never a
    /// secret). `registry` is Agora's: `zookeeper`, `file` (under
    /// `work_dir`) or `in_memory`.
    pub fn flags(&self) -> std::collections::BTreeMap<String, String> {
        let mut flags = self.authentication.flags();
        let mut set = |name: &str, value: String| {
            flags.insert(name.to_string(), value);
        };
        let registry = match (&self.zk, &self.work_dir) {
            (Some(_), _) => "zookeeper",
            (None, Some(_)) => "file",
            (None, None) => "in_memory",
        };
        set("registry", registry.to_string());
        if let Some(zk) = &self.zk {
            set("zk", zk.to_string());
        }
        set(
            "zk_session_timeout",
            agora_core::time::mesos_duration(self.zk_session_timeout),
        );
        if let Some(dir) = &self.work_dir {
            set("work_dir", dir.display().to_string());
        }
        set(
            "agent_reregister_timeout",
            agora_core::time::mesos_duration(self.agent_reregister_timeout),
        );
        set(
            "allocation_interval",
            agora_core::time::mesos_duration(self.allocation_interval),
        );
        flags
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_name_the_registry_zookeeper_and_work_dir_as_started() {
        let address: SocketAddr = "127.0.0.1:5050".parse().expect("address");
        let mut options = MasterOptions::new(address, "m1");
        let flags = options.flags();
        assert_eq!(flags["registry"], "in_memory");
        assert!(!flags.contains_key("zk") && !flags.contains_key("work_dir"));
        assert_eq!(flags["agent_reregister_timeout"], "10mins");
        assert_eq!(flags["allocation_interval"], "1secs");
        assert_eq!(flags["authenticate_agents"], "false");

        options.work_dir = Some("/var/lib/agora".into());
        assert_eq!(options.flags()["registry"], "file");
        assert_eq!(options.flags()["work_dir"], "/var/lib/agora");

        options.zk = Some(agora_coord::ZkUrl::parse("zk://h1:2181,h2/agora").expect("url"));
        let flags = options.flags();
        assert_eq!(flags["registry"], "zookeeper");
        assert_eq!(flags["zk"], "zk://h1:2181,h2:2181/agora");
        assert_eq!(flags["zk_session_timeout"], "10secs");
    }
}
