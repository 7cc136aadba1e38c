//! The JSON shapes the UI reads. Resources are the four the UI shows, in
//! Mesos' units: cpus in cores, mem and disk in MB.

use std::collections::BTreeMap;

use agora_core::resources::SummaryValue;
use serde::Serialize;
// ---------------------------------------------------------------------------
// Shapes
// ---------------------------------------------------------------------------

/// The four resources the UI shows; cpus in cores, mem and disk in MB.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub(super) struct Res {
    pub(super) cpus: f64,
    pub(super) mem: f64,
    pub(super) disk: f64,
    pub(super) gpus: f64,
}

pub(super) const RESOURCE_NAMES: [&str; 4] = ["cpus", "mem", "disk", "gpus"];

impl Res {
    pub(super) fn from_summary(summary: &BTreeMap<String, SummaryValue>) -> Self {
        let get = |name: &str| match summary.get(name) {
            Some(SummaryValue::Number(n)) => *n,
            _ => 0.0,
        };
        Res {
            cpus: get("cpus"),
            mem: get("mem"),
            disk: get("disk"),
            gpus: get("gpus"),
        }
    }

    pub(super) fn from_scalars(scalars: &BTreeMap<String, f64>) -> Self {
        let get = |name: &str| scalars.get(name).copied().unwrap_or(0.0);
        Res {
            cpus: get("cpus"),
            mem: get("mem"),
            disk: get("disk"),
            gpus: get("gpus"),
        }
    }

    pub(super) fn add(&mut self, other: &Res) {
        self.cpus += other.cpus;
        self.mem += other.mem;
        self.disk += other.disk;
        self.gpus += other.gpus;
    }

    pub(super) fn get(&self, name: &str) -> f64 {
        match name {
            "cpus" => self.cpus,
            "mem" => self.mem,
            "disk" => self.disk,
            _ => self.gpus,
        }
    }
}

/// One resource across the cluster; `idle` is neither allocated nor offered.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub(super) struct Usage {
    pub(super) total: f64,
    pub(super) allocated: f64,
    pub(super) offered: f64,
    /// On agents that are disconnected or unreachable (not offered, not idle).
    pub(super) unavailable: f64,
    pub(super) idle: f64,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct Sample {
    pub(super) time: f64,
    pub(super) resources: BTreeMap<&'static str, Usage>,
}

#[derive(Debug, Serialize)]
pub(super) struct Page<T> {
    pub(super) total: usize,
    pub(super) offset: usize,
    pub(super) limit: usize,
    pub(super) items: Vec<T>,
}

#[derive(Debug, Serialize)]
pub(super) struct MasterInfo {
    pub(super) id: String,
    pub(super) version: String,
    pub(super) hostname: String,
    /// No cluster name is configured: the master's hostname stands in, or
    /// the machine's name where that hostname is an IP address.
    pub(super) cluster: String,
    pub(super) leader: String,
    pub(super) elected: bool,
    pub(super) epoch: Option<u64>,
    pub(super) start_time: f64,
    pub(super) uptime_secs: Option<f64>,
    pub(super) snapshot_time: f64,
    pub(super) recovering_agents: usize,
}

#[derive(Debug, Serialize)]
pub(super) struct AgentRow {
    pub(super) id: String,
    pub(super) hostname: String,
    pub(super) address: String,
    pub(super) status: &'static str,
    pub(super) active: bool,
    pub(super) registered_time: f64,
    pub(super) unreachable_since: Option<f64>,
    pub(super) attributes: BTreeMap<String, String>,
    pub(super) total: Res,
    pub(super) used: Res,
    pub(super) offered: Res,
    pub(super) tasks: usize,
}

#[derive(Debug, Serialize)]
pub(super) struct FrameworkRow {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) user: String,
    pub(super) principal: Option<String>,
    pub(super) hostname: Option<String>,
    pub(super) roles: Vec<String>,
    /// `active`, `inactive` (scheduler disconnected, within its failover
    /// timeout) or `completed`.
    pub(super) status: &'static str,
    pub(super) registered_time: f64,
    pub(super) reregistered_time: Option<f64>,
    pub(super) unregistered_time: Option<f64>,
    pub(super) failover_timeout: Option<f64>,
    pub(super) active_tasks: usize,
    pub(super) completed_tasks: usize,
    pub(super) used: Res,
    pub(super) offered: Res,
    pub(super) outstanding_offers: usize,
}

#[derive(Debug, Serialize)]
pub(super) struct TaskRow {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) state: &'static str,
    pub(super) framework_id: String,
    pub(super) framework_name: String,
    pub(super) agent_id: String,
    pub(super) agent_hostname: String,
    /// The agent's `hostname:port` (empty once the master forgot the agent).
    pub(super) agent_address: String,
    /// Whether its sandbox can be read: `active`, `disconnected`,
    /// `unreachable`, or `unknown` once the master forgot the agent.
    pub(super) agent_status: &'static str,
    pub(super) executor_id: String,
    pub(super) role: String,
    pub(super) resources: Res,
    pub(super) message: Option<String>,
    pub(super) status_time: Option<f64>,
    pub(super) healthy: Option<bool>,
    /// The sandbox's virtual path for the files API on the agent.
    pub(super) sandbox: String,
}

#[derive(Debug, Serialize)]
pub(super) struct OfferRow {
    pub(super) id: String,
    pub(super) framework_id: String,
    pub(super) framework_name: String,
    pub(super) agent_id: String,
    pub(super) agent_hostname: String,
    /// The agent's `hostname:port`.
    pub(super) agent_address: String,
    pub(super) role: String,
    pub(super) resources: Res,
}

/// "Why no offer?" for one role of a framework, with a sentence for people.
#[derive(Debug, Serialize)]
pub(super) struct OfferStatusRow {
    pub(super) role: String,
    pub(super) last_offered_secs_ago: Option<f64>,
    pub(super) reason: Option<&'static str>,
    pub(super) explanation: Option<&'static str>,
    pub(super) filtered_agents: usize,
}

#[derive(Debug, Serialize)]
pub(super) struct RoleRow {
    pub(super) name: String,
    pub(super) weight: f64,
    pub(super) frameworks: Vec<String>,
    pub(super) allocated: Res,
    pub(super) offered: Res,
    pub(super) reserved: Res,
    pub(super) consumed: Res,
    pub(super) guarantee: Option<Res>,
    pub(super) limit: Option<Res>,
}
