//! Running a batch of the state machine's effects, in order, once its
//! checkpoint records are on disk (`checkpoint_writer.rs`).

use std::io::Write;

use agora_core::{ExecutorId, FrameworkId};
use agora_proto::v1::executor as exec;

use super::Actor;
use crate::state::Effect;

impl Actor {
    /// Runs a batch of effects once its checkpoint records are on disk.
    pub(in crate::shell) fn execute(&mut self, effects: Vec<Effect>) {
        self.checkpoint.push(effects);
        self.drain();
    }

    /// Runs every batch whose records are written, in order.
    pub(in crate::shell) fn drain(&mut self) {
        if self.checkpoint.draining {
            return; // the outer drain picks up what effects add
        }
        self.checkpoint.draining = true;
        while let Some((effects, failed)) = self.checkpoint.next_ready() {
            self.run_effects(effects, failed);
        }
        self.checkpoint.draining = false;
    }

    /// A batch's effects. If one of its records could not be written, no
    /// acknowledgement of this batch reaches an executor: the executor keeps
    /// the update and sends it again, and the write is retried then.
    pub(in crate::shell) fn run_effects(&mut self, effects: Vec<Effect>, checkpoint_failed: bool) {
        for effect in effects {
            match effect {
                Effect::Checkpoint(_) => {}
                Effect::ToExecutor { event, .. }
                    if checkpoint_failed
                        && event.r#type == exec::event::Type::Acknowledged as i32 =>
                {
                    tracing::warn!("acknowledgement held back: its update is not checkpointed");
                }
                Effect::ToMaster(message) => self.send_to_master(message),
                Effect::LaunchExecutor {
                    framework_id,
                    executor_id,
                } => self.launch_executor((framework_id, executor_id), checkpoint_failed),
                Effect::ToExecutor { conn, event } => self.send_to_executor(conn, event),
                Effect::ExecutorRecorded {
                    framework_id,
                    executor_id,
                } => self.open_start_gate(&(framework_id, executor_id), checkpoint_failed),
                Effect::DestroyExecutor {
                    framework_id,
                    executor_id,
                } => {
                    let key = (framework_id, executor_id);
                    // A launch in flight is given up: what it starts is
                    // destroyed when its result comes.
                    self.launches.remove(&key);
                    let process = self.processes.get(&key).cloned();
                    self.destroy_later(&key, process);
                }
                Effect::UpdateContainer {
                    framework_id,
                    executor_id,
                } => {
                    let resources = self.state.container_resources(&framework_id, &executor_id);
                    self.update_container(&(framework_id, executor_id), &resources);
                }
            }
        }
    }

    /// Lets a custom executor held at its start gate run its program: its
    /// run is recorded with its process. If the record could not be
    /// written the gate is closed instead, and the executor ends without
    /// running anything (an agent stopping now would not know of it).
    fn open_start_gate(&mut self, key: &(FrameworkId, ExecutorId), checkpoint_failed: bool) {
        let Some(mut gate) = self.start_gates.remove(key) else {
            return; // not a custom executor, or it is gone already
        };
        if checkpoint_failed {
            tracing::warn!(executor_id = %key.1, "executor's start not recorded: it ends without running");
            return;
        }
        // One byte into an empty socket buffer: it does not block.
        if let Err(e) = gate.write_all(&[crate::executor::custom::GATE_OPEN]) {
            tracing::warn!(executor_id = %key.1, error = %e, "cannot open the executor's start gate");
        }
    }
}
