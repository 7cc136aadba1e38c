//! The simulator's books as it serves them (`GET /books`, `GET /stats`):
//! plain serde types, so tests and benchmarks read them back typed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Every simulated agent: who it is, where it stands with the master, and
/// every task it holds or has ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Books {
    pub agents: Vec<AgentBooks>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentBooks {
    pub index: usize,
    pub hostname: String,
    /// The id the master gave it; `None` until first registered.
    pub agent_id: Option<String>,
    /// `disconnected`, `registering`, `registered` or `refused`.
    pub session: String,
    /// The master that accepted its current session, with that master's epoch.
    pub master_id: Option<String>,
    pub epoch: Option<u64>,
    /// Tasks on the books: not terminal, or with updates not acknowledged.
    pub live: Vec<TaskBooks>,
    /// Tasks that ended with every update acknowledged, in that order.
    pub ended: Vec<TaskBooks>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskBooks {
    pub framework_id: String,
    pub task_id: String,
    /// Mesos' name of the latest state (`TASK_RUNNING`).
    pub state: String,
    /// Updates the master has not acknowledged yet (live tasks only).
    #[serde(default)]
    pub unacknowledged: usize,
}

/// Totals over all agents, and the simulator's own cost: what a benchmark
/// subtracts to show the master's figures alone.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub agents: usize,
    pub registered: usize,
    /// Registered agents per master id.
    pub registered_by_master: BTreeMap<String, usize>,
    pub refused: usize,
    pub live_tasks: usize,
    /// Live tasks per latest state.
    pub live_by_state: BTreeMap<String, usize>,
    pub unacknowledged: usize,
    pub ended: usize,
    pub finished: usize,
    pub registrations: u64,
    pub launches: u64,
    pub updates_sent: u64,
    pub updates_resent: u64,
    pub acks: u64,
    pub pings: u64,
    /// The simulator process's user + system CPU time and resident memory.
    pub cpu_seconds: f64,
    pub rss_mb: f64,
}
