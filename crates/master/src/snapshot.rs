//! What readers see of the master: a snapshot the state machine's owner
//! publishes, so that `/state`, `/metrics` and the UI never touch live state.

use std::collections::BTreeMap;

use agora_core::resources::SummaryValue;
use serde::Serialize;

use crate::state::{Agent, Counters, Framework, Master, Task};

#[derive(Debug, Clone, Serialize, Default)]
pub struct StateSnapshot {
    pub version: String,
    pub id: String,
    /// `host:port` of the leading master (this one, until HA arrives).
    pub leader: String,
    /// Whether this master leads (a follower's snapshot holds little else).
    pub elected: bool,
    /// This term's epoch (the leader's ZooKeeper sequence number; 0 without ZooKeeper).
    pub epoch: Option<u64>,
    /// Admitted agents still expected to re-register after a failover.
    pub recovering_agents: usize,
    pub hostname: String,
    pub start_time: f64,
    pub snapshot_time: f64,
    pub agents: Vec<AgentView>,
    pub frameworks: Vec<FrameworkView>,
    pub completed_frameworks: Vec<FrameworkView>,
    pub outstanding_offers: usize,
    #[serde(skip)]
    pub counters: Counters,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentView {
    pub id: String,
    pub hostname: String,
    pub address: String,
    pub resources: BTreeMap<String, SummaryValue>,
    pub used: BTreeMap<String, SummaryValue>,
    pub free: BTreeMap<String, SummaryValue>,
    pub attributes: BTreeMap<String, String>,
    /// Connected and reachable.
    pub active: bool,
    /// `active`, `disconnected` (session down, within its grace) or `unreachable`.
    pub status: &'static str,
    pub unreachable_since: Option<f64>,
    pub registered_time: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FrameworkView {
    pub id: String,
    pub name: String,
    pub user: String,
    pub roles: Vec<String>,
    pub active: bool,
    pub registered_time: f64,
    pub outstanding_offers: usize,
    pub tasks: Vec<TaskView>,
    pub completed_tasks: Vec<TaskView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    pub id: String,
    pub name: String,
    pub state: &'static str,
    pub framework_id: String,
    pub agent_id: String,
    pub resources: BTreeMap<String, SummaryValue>,
    pub message: Option<String>,
}

impl StateSnapshot {
    /// What a master that does not lead shows: who leads, if anyone.
    pub fn follower(id: &str, hostname: &str, leader: Option<&str>) -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION").to_string(),
            id: id.to_string(),
            leader: leader.unwrap_or_default().to_string(),
            elected: false,
            hostname: hostname.to_string(),
            ..Self::default()
        }
    }
}

fn task_view(task: &Task) -> TaskView {
    TaskView {
        id: task.id.to_string(),
        name: task.name.clone(),
        state: agora_core::task::name(task.state),
        framework_id: task.framework_id.to_string(),
        agent_id: task.agent_id.to_string(),
        resources: task.resources.summary(),
        message: task.last_status.as_ref().and_then(|s| s.message.clone()),
    }
}

fn framework_view(framework: &Framework) -> FrameworkView {
    FrameworkView {
        id: framework.id.to_string(),
        name: framework.info.name.clone(),
        user: framework.info.user.clone(),
        roles: framework.roles.iter().cloned().collect(),
        active: framework.active(),
        registered_time: framework.registered_at,
        outstanding_offers: framework.offers.len(),
        tasks: framework.tasks.values().map(task_view).collect(),
        completed_tasks: framework.completed_tasks.iter().map(task_view).collect(),
    }
}

fn attribute_text(attribute: &agora_proto::v1::Attribute) -> String {
    if let Some(text) = &attribute.text {
        return text.value.clone();
    }
    if let Some(scalar) = &attribute.scalar {
        return scalar.value.to_string();
    }
    if let Some(set) = &attribute.set {
        return format!("{{{}}}", set.item.join(","));
    }
    if let Some(ranges) = &attribute.ranges {
        let parts: Vec<String> = ranges
            .range
            .iter()
            .map(|r| format!("{}-{}", r.begin, r.end))
            .collect();
        return format!("[{}]", parts.join(","));
    }
    String::new()
}

fn agent_view(agent: &Agent, free: Option<&agora_core::Resources>) -> AgentView {
    let port = agent.info.port.unwrap_or(5051);
    AgentView {
        id: agent.id.to_string(),
        hostname: agent.info.hostname.clone(),
        address: format!("{}:{port}", agent.info.hostname),
        resources: agent.total.summary(),
        used: agent.used.summary(),
        free: free.map(agora_core::Resources::summary).unwrap_or_default(),
        attributes: agent
            .info
            .attributes
            .iter()
            .map(|a| (a.name.clone(), attribute_text(a)))
            .collect(),
        active: agent.conn.is_some() && agent.unreachable_since.is_none(),
        status: match (agent.conn.is_some(), agent.unreachable_since.is_some()) {
            (_, true) => "unreachable",
            (true, false) => "active",
            (false, false) => "disconnected",
        },
        unreachable_since: agent.unreachable_since,
        registered_time: agent.registered_at,
    }
}

impl Master {
    /// Builds the snapshot readers see. `start_time` and `now_wall` are wall
    /// clock seconds given by the shell.
    pub fn snapshot(&self, start_time: f64, now_wall: f64) -> StateSnapshot {
        let info = &self.config().master_info;
        let free = self.free_resources();
        StateSnapshot {
            version: env!("CARGO_PKG_VERSION").to_string(),
            id: info.id.clone(),
            leader: format!(
                "{}:{}",
                info.hostname.clone().unwrap_or_default(),
                info.port
            ),
            elected: true,
            epoch: self.epoch(),
            recovering_agents: self.recovering_agents(),
            hostname: info.hostname.clone().unwrap_or_default(),
            start_time,
            snapshot_time: now_wall,
            agents: self
                .agents
                .values()
                .map(|a| agent_view(a, free.get(&a.id)))
                .collect(),
            frameworks: self.frameworks.values().map(framework_view).collect(),
            completed_frameworks: self
                .completed_frameworks
                .iter()
                .map(framework_view)
                .collect(),
            outstanding_offers: self.offers.len(),
            counters: self.counters.clone(),
        }
    }
}
