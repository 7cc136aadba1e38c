//! How a master is configured: timeouts, limits, the ACLs, and what it
//! says about itself.

use std::time::Duration;

use agora_proto::v1 as pb;

/// The default of [`MasterConfig::agent_removal_timeout`].
pub const DEFAULT_AGENT_REMOVAL_TIMEOUT: Duration = Duration::from_secs(75);
/// The default of [`MasterConfig::max_completed_frameworks`] (Mesos').
pub const DEFAULT_MAX_COMPLETED_FRAMEWORKS: usize = 50;
/// The default of [`MasterConfig::max_completed_tasks_per_framework`] (Mesos').
pub const DEFAULT_MAX_COMPLETED_TASKS_PER_FRAMEWORK: usize = 1000;
/// The default of [`MasterConfig::registry_max_agent_age`]: two weeks, as Mesos.
pub const DEFAULT_REGISTRY_MAX_AGENT_AGE: Duration = Duration::from_secs(14 * 24 * 3600);
/// The default of [`MasterConfig::registry_max_agent_count`]: 100 x 1024, as Mesos.
pub const DEFAULT_REGISTRY_MAX_AGENT_COUNT: usize = 100 * 1024;
/// The default of [`MasterConfig::registry_gc_interval`]: 15 minutes, as Mesos.
pub const DEFAULT_REGISTRY_GC_INTERVAL: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone)]
pub struct MasterConfig {
    pub master_info: pb::MasterInfo,
    pub heartbeat_interval: Duration,
    /// Terminal tasks kept per framework for `/state` and reconciliation
    /// (`--max-completed-tasks-per-framework`), oldest dropped first.
    pub max_completed_tasks_per_framework: usize,
    /// Removed frameworks kept for `/state` (`--max-completed-frameworks`).
    pub max_completed_frameworks: usize,
    /// Unreachable and gone agents are forgotten (in memory and in the
    /// registry) once they have been so this long (`--registry-max-agent-age`).
    pub registry_max_agent_age: Duration,
    /// At most this many unreachable agents, and as many gone ones, are
    /// remembered; the oldest beyond it are forgotten
    /// (`--registry-max-agent-count`).
    pub registry_max_agent_count: usize,
    /// How often the two bounds above are applied (`--registry-gc-interval`).
    pub registry_gc_interval: Duration,
    /// How often the master pings each agent (`--agent-ping-timeout`).
    pub agent_ping_timeout: Duration,
    /// Unanswered pings (or ping periods without a session) before an agent
    /// is marked unreachable (`--max-agent-ping-timeouts`). That is
    /// *detection*: its resources stop being offered and partition-aware
    /// frameworks are told TASK_UNREACHABLE; nobody else is told anything.
    pub max_agent_ping_timeouts: u32,
    /// How long an agent may stay unreachable before it is *removed*: its
    /// tasks of frameworks that are not partition-aware become TASK_LOST
    /// (`--agent-removal-timeout`; 75 s by default, Mesos' 15 s x 5 ping
    /// window, so a routine agent restart or a short freeze is invisible to them).
    pub agent_removal_timeout: Duration,
    /// The leadership term this master state serves (None: not elected through ZooKeeper).
    pub epoch: Option<u64>,
    /// Offers not answered within this long are rescinded (`--offer-timeout`;
    /// None, the default as in Mesos: offers never time out).
    pub offer_timeout: Option<Duration>,
    /// A framework this master knows only from an agent's report (it took
    /// over from another leader, or restarted) keeps its tasks at least this
    /// long for its scheduler to find this master, whatever its failover
    /// timeout: the scheduler never disconnected from *this* master, it lost
    /// the old one. Without it a framework with a zero failover timeout
    /// (Spark's) loses every task on a master failover whenever an agent
    /// re-registers before the scheduler does. Mesos never removes such a
    /// framework on a timer at all.
    pub adopted_framework_grace: Duration,
    /// Who may do what (`--acls`); the default allows everything.
    pub acls: std::sync::Arc<agora_auth::acl::Acls>,
    /// The settings only the shell acts on (ZooKeeper, the work dir, the
    /// timers, authentication), under Mesos' flag names, for `/flags` and
    /// GET_FLAGS; never a secret (`crate::options::MasterOptions::flags`).
    pub shell_flags: std::collections::BTreeMap<String, String>,
    /// Seeds the random part of framework ids, so that one framework's id
    /// says nothing about another's. The shell draws it from the operating
    /// system; tests fix it, and the state machine stays deterministic.
    pub framework_id_seed: [u8; 32],
}

/// The default of [`MasterConfig::adopted_framework_grace`].
pub const DEFAULT_ADOPTED_FRAMEWORK_GRACE: Duration = Duration::from_secs(120);

impl MasterConfig {
    pub fn new(master_info: pb::MasterInfo) -> Self {
        Self {
            master_info,
            heartbeat_interval: Duration::from_secs(15),
            max_completed_tasks_per_framework: DEFAULT_MAX_COMPLETED_TASKS_PER_FRAMEWORK,
            max_completed_frameworks: DEFAULT_MAX_COMPLETED_FRAMEWORKS,
            registry_max_agent_age: DEFAULT_REGISTRY_MAX_AGENT_AGE,
            registry_max_agent_count: DEFAULT_REGISTRY_MAX_AGENT_COUNT,
            registry_gc_interval: DEFAULT_REGISTRY_GC_INTERVAL,
            // A frozen agent is noticed between max x interval and (max + 1) x
            // interval after it stops answering: 6 to 8 s with 2 s x 3, plus at
            // most the shell's 250 ms recheck of the next deadline
            // (Mesos: 15 s x 5 = 75 to 90 s).
            agent_ping_timeout: Duration::from_secs(2),
            max_agent_ping_timeouts: 3,
            agent_removal_timeout: DEFAULT_AGENT_REMOVAL_TIMEOUT,
            epoch: None,
            offer_timeout: None,
            adopted_framework_grace: DEFAULT_ADOPTED_FRAMEWORK_GRACE,
            acls: std::sync::Arc::default(),
            shell_flags: std::collections::BTreeMap::new(),
            framework_id_seed: [0; 32],
        }
    }
}
