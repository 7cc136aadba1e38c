//! The session with the master: leader fencing by epoch, the registration
//! message, and what registering and losing the master change.

use std::time::Duration;

use agora_core::AgentId;
use agora_proto::v1 as pb;
use agora_proto::v1::agent::{AgentMessage, agent_message};

use crate::checkpoint::Checkpoint;

use super::{AgentState, Effect};

impl AgentState {
    /// Leader fencing: accepts a master's registration unless its epoch is
    /// older than one already seen (a deposed leader that still serves).
    /// Masters without ZooKeeper have no epoch and are always accepted.
    pub fn accept_master_epoch(&mut self, epoch: Option<u64>) -> bool {
        match (epoch, self.max_master_epoch) {
            (Some(epoch), Some(max)) if epoch < max => false,
            (Some(epoch), _) => {
                self.max_master_epoch = Some(epoch);
                true
            }
            (None, _) => true,
        }
    }

    pub fn registered(&self) -> bool {
        self.registered
    }

    /// The first message of a master session: who we are and what we run.
    pub fn register_message(&self) -> AgentMessage {
        let info = self.agent_info();
        let tasks = self
            .tasks
            .values()
            .map(|t| pb::Task {
                name: t.info.name.clone(),
                task_id: t.info.task_id.clone(),
                framework_id: t.framework_id.to_field(),
                executor_id: t.executor_id.to_field(),
                agent_id: info.id.clone(),
                state: Some(t.state as i32),
                resources: t.info.resources.clone(),
                statuses: Vec::new(),
                status_update_state: t.pending.front().map(|s| s.state.unwrap_or_default()),
                status_update_uuid: t.pending.front().and_then(|s| s.uuid.clone()),
            })
            .collect();
        AgentMessage {
            kind: Some(agent_message::Kind::Register(agent_message::Register {
                agent_info: Some(info),
                version: env!("CARGO_PKG_VERSION").to_string(),
                tasks,
                frameworks: self.frameworks.values().cloned().collect(),
            })),
        }
    }

    /// The master accepted our registration.
    pub fn on_registered(&mut self, now: Duration, agent_id: AgentId, out: &mut Vec<Effect>) {
        if let Some(previous) = &self.agent_id
            && previous != &agent_id
        {
            tracing::warn!(previous = %previous, new = %agent_id, "master assigned a new agent id");
        }
        if self.agent_id.as_ref() != Some(&agent_id) {
            out.push(Effect::Checkpoint(Checkpoint::AgentId(agent_id.clone())));
        }
        self.agent_id = Some(agent_id);
        self.registered = true;
        // Everything in flight was sent on an older session: send it again now.
        let keys: Vec<_> = self.tasks.keys().cloned().collect();
        for key in keys {
            self.send_head(now, &key, out);
        }
    }

    pub fn on_master_disconnected(&mut self) {
        self.registered = false;
    }
}
