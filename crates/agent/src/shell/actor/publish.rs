//! The snapshot readers see, published from the state machine at most
//! every [`SNAPSHOT_INTERVAL`].

use std::sync::Arc;

use agora_core::{ExecutorId, FrameworkId};
use tokio::time::Instant;

use super::{Actor, SNAPSHOT_COST_FACTOR, SNAPSHOT_INTERVAL};
use crate::snapshot::{AgentSnapshot, TaskView};

impl Actor {
    /// Publishes the snapshot readers see, at most every [`SNAPSHOT_INTERVAL`]
    /// (its cost grows with the tasks kept, so never once per event).
    pub(in crate::shell) fn publish(&mut self, force: bool) {
        if !self.dirty || (!force && self.last_snapshot.elapsed() < self.snapshot_interval()) {
            return;
        }
        self.dirty = false;
        let began = Instant::now();
        self.last_snapshot = began;
        // The state changed since the last publication: its deadlines may have.
        self.refresh_deadline();
        // Sandboxes are only kept for tasks the snapshot still shows.
        if self.sandboxes.len() > self.state.tasks.len() + self.state.completed.len() {
            let keep: std::collections::HashSet<(FrameworkId, ExecutorId)> = self
                .state
                .tasks
                .values()
                .chain(self.state.completed.iter())
                .map(|t| (t.framework_id.clone(), t.executor_id.clone()))
                .collect();
            self.sandboxes.retain(|key, _| keep.contains(key));
        }
        let view = |t: &crate::state::TaskRecord| TaskView {
            id: t
                .info
                .task_id
                .as_ref()
                .map(|i| i.value.clone())
                .unwrap_or_default(),
            framework_id: t.framework_id.to_string(),
            state: agora_core::task::name(t.state),
            sandbox: self
                .sandboxes
                .get(&(t.framework_id.clone(), t.executor_id.clone()))
                .map(|p| p.display().to_string()),
        };
        let snapshot = AgentSnapshot {
            id: self.state.agent_id.as_ref().map(|a| a.to_string()),
            hostname: self.options.hostname.clone(),
            master: self.options.master.clone(),
            registered: self.state.registered(),
            resources: self.options.resources.summary(),
            tasks: self.state.tasks.values().map(view).collect(),
            completed_tasks: self.state.completed.iter().map(view).collect(),
            disk_full: self.state.disk_full(),
            disk: self.disk,
            sandboxes_awaiting_gc: self.gc.scheduled(),
            refused: self.refused.clone(),
            gauges: Some(crate::metrics::gauges_from_state(&self.state)),
            mesos: crate::mesos_v0::MesosView::build(
                &self.state,
                &self.sandboxes,
                self.master_hostname.as_deref(),
            ),
        };
        self.snapshot.send_replace(Arc::new(snapshot));
        self.snapshot_cost = began.elapsed();
    }

    /// How long after the last publication the next may come: at least
    /// [`SNAPSHOT_INTERVAL`], and [`SNAPSHOT_COST_FACTOR`] times what the
    /// last one cost.
    pub(in crate::shell) fn snapshot_interval(&self) -> std::time::Duration {
        SNAPSHOT_INTERVAL.max(self.snapshot_cost * SNAPSHOT_COST_FACTOR)
    }
}
