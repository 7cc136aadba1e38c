//! The agent's checkpoint on disk: opened (and recovered) at start, then
//! written by one ordered writer thread, never on the event loop.

use std::collections::VecDeque;

use tokio::sync::mpsc;

use super::command::AgentCommand;
use crate::checkpoint::journal::{JournalStore, WorkDirLock};
use crate::checkpoint::{self, Checkpoint, FsStore, MetaStore, Recovered};
use crate::options::AgentError;
use crate::procfs;
use crate::state::Effect;

/// Checkpoint records are written by a dedicated thread, in order; the
/// effects of a batch wait here until its records are on disk (so an update
/// is persisted before it is acknowledged or forwarded), and batches leave
/// in the order they came, whether they had records or not.
pub(super) struct CheckpointPipeline {
    writer: std::sync::mpsc::Sender<WriteJob>,
    waiting: VecDeque<Batch>,
    next_seq: u64,
    /// Set while effects run, so that effects they cause queue behind.
    pub(super) draining: bool,
}

/// The most batches one flush writes.
const MAX_GROUP: usize = 256;

struct WriteJob {
    seq: u64,
    records: Vec<Checkpoint>,
}

struct Batch {
    seq: u64,
    effects: Vec<Effect>,
    /// `None` while its records are being written; then whether that failed.
    written: Option<bool>,
}

impl CheckpointPipeline {
    /// Starts the writer thread, which owns the store and reports each
    /// batch as a command to the actor.
    pub(super) fn start(
        mut store: Box<dyn MetaStore + Send>,
        commands: mpsc::Sender<AgentCommand>,
    ) -> std::io::Result<Self> {
        let (writer, jobs) = std::sync::mpsc::channel::<WriteJob>();
        std::thread::Builder::new()
            .name("agent-checkpoint".into())
            .spawn(move || {
                // Group commit: every job waiting when the writer gets to
                // them is written with one flush, then each is reported.
                while let Ok(first) = jobs.recv() {
                    let mut group = vec![first];
                    while group.len() < MAX_GROUP {
                        match jobs.try_recv() {
                            Ok(job) => group.push(job),
                            Err(_) => break,
                        }
                    }
                    let mut failed = vec![false; group.len()];
                    for (job, failed) in group.iter().zip(failed.iter_mut()) {
                        for record in &job.records {
                            if let Err(e) = checkpoint::apply(store.as_mut(), record) {
                                tracing::error!(error = %e, record = %record_name(record), "checkpoint write failed");
                                *failed = true;
                            }
                        }
                    }
                    if let Err(e) = store.flush() {
                        tracing::error!(error = %e, batches = group.len(), "checkpoint write failed");
                        failed.iter_mut().for_each(|f| *f = true);
                    }
                    for (job, failed) in group.iter().zip(failed) {
                        let done = AgentCommand::CheckpointWritten {
                            seq: job.seq,
                            failed,
                        };
                        // Blocks this writer (not the actor) while the
                        // actor's queue is full.
                        if commands.blocking_send(done).is_err() {
                            return;
                        }
                    }
                }
            })?;
        Ok(Self {
            writer,
            waiting: VecDeque::new(),
            next_seq: 0,
            draining: false,
        })
    }

    /// Queues a batch: its records go to the writer, its other effects wait.
    pub(super) fn push(&mut self, effects: Vec<Effect>) {
        let (records, effects): (Vec<Effect>, Vec<Effect>) = effects
            .into_iter()
            .partition(|e| matches!(e, Effect::Checkpoint(_)));
        let records: Vec<Checkpoint> = records
            .into_iter()
            .filter_map(|e| match e {
                Effect::Checkpoint(record) => Some(record),
                _ => None,
            })
            .collect();
        let seq = self.next_seq;
        self.next_seq += 1;
        let written = if records.is_empty() {
            Some(false)
        } else {
            let records = checkpoint::coalesce(records);
            // A writer that is gone wrote nothing: the batch counts as failed.
            self.writer
                .send(WriteJob { seq, records })
                .err()
                .map(|_| true)
        };
        self.waiting.push_back(Batch {
            seq,
            effects,
            written,
        });
    }

    pub(super) fn written(&mut self, seq: u64, failed: bool) {
        if let Some(batch) = self.waiting.iter_mut().find(|b| b.seq == seq) {
            batch.written = Some(failed);
        }
    }

    /// The next batch whose records are written, in order.
    pub(super) fn next_ready(&mut self) -> Option<(Vec<Effect>, bool)> {
        let failed = self.waiting.front()?.written?;
        self.waiting.pop_front().map(|b| (b.effects, failed))
    }
}

/// Names a checkpoint record for logs (without its payload).
fn record_name(record: &Checkpoint) -> String {
    match record {
        Checkpoint::AgentId(id) => format!("agent id {id}"),
        Checkpoint::Framework(info) => format!(
            "framework {}",
            info.id.as_ref().map(|i| i.value.as_str()).unwrap_or("")
        ),
        Checkpoint::RemoveFramework(id) => format!("removal of framework {id}"),
        Checkpoint::Executor { executor_id, .. } => format!("executor {executor_id}"),
        Checkpoint::RemoveExecutor { executor_id, .. } => {
            format!("removal of executor {executor_id}")
        }
        Checkpoint::Task { info, .. } => format!(
            "task {}",
            info.task_id
                .as_ref()
                .map(|i| i.value.as_str())
                .unwrap_or("")
        ),
        Checkpoint::TaskUpdates { task_id, .. } => format!("updates of task {task_id}"),
        Checkpoint::RemoveTask { task_id, .. } => format!("removal of task {task_id}"),
    }
}

/// Opens the checkpoint under `<work_dir>/meta`. Same boot: what it holds.
/// Another boot (the machine rebooted, so every executor is gone): the
/// checkpoint is discarded and the agent starts as a new one; sandboxes are
/// left on disk. A checkpoint in the older file-per-record layout is carried
/// into the journal once, then its files are removed.
pub(super) fn open_checkpoint(
    work_dir: &std::path::Path,
) -> Result<(JournalStore, Recovered), AgentError> {
    let meta = work_dir.join("meta");
    let fail = |source| AgentError::Checkpoint {
        path: meta.clone(),
        source,
    };
    let boot_id = match procfs::current_boot_id() {
        Ok(id) => id,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the boot id; a reboot will not be noticed");
            "unknown".to_string()
        }
    };
    // First of all, so that a second agent on this work directory changes
    // nothing.
    let lock = WorkDirLock::acquire(&meta).map_err(AgentError::from)?;
    let mut files = FsStore::new(meta.clone());
    // A checkpoint written by an older agent (or by hand) becomes readable
    // by root only before anything is read from it.
    match files.harden() {
        Ok(0) => {}
        Ok(changed) => {
            tracing::info!(dir = %meta.display(), changed, "checkpoint made readable by root only")
        }
        Err(e) => return Err(fail(e)),
    }
    let stored = files
        .read(std::path::Path::new(checkpoint::BOOT_ID))
        .map_err(fail)?;
    let stored = stored.map(|b| String::from_utf8_lossy(&b).trim().to_string());
    let same_boot = match stored {
        Some(previous) if previous == boot_id => true,
        Some(previous) => {
            tracing::info!(
                previous_boot_id = %previous,
                boot_id = %boot_id,
                "the machine rebooted since the last checkpoint: starting clean as a new agent (old sandboxes are kept, the checkpoint is discarded)"
            );
            checkpoint::discard(&meta).map_err(fail)?;
            false
        }
        None => {
            if checkpoint::discard(&meta).map_err(fail)? > 0 {
                tracing::warn!(dir = %meta.display(), "checkpoint without a boot id discarded");
            }
            false
        }
    };
    let legacy = if same_boot {
        checkpoint::legacy_image(&meta).map_err(fail)?
    } else {
        None
    };
    let (mut store, mut image) = JournalStore::open(&meta, lock).map_err(AgentError::from)?;
    if let Some(legacy) = legacy {
        tracing::info!(dir = %meta.display(), files = legacy.files.len(), "checkpoint carried from files into the journal");
        store.import(&legacy);
        store.flush().map_err(fail)?;
        checkpoint::remove_legacy(&meta).map_err(fail)?;
        for (path, bytes) in legacy.files {
            image.files.insert(path, bytes);
        }
    }
    let recovered = if same_boot {
        checkpoint::recover(&image)
    } else {
        Recovered::default()
    };
    files
        .write(
            std::path::Path::new(checkpoint::BOOT_ID),
            boot_id.as_bytes(),
        )
        .map_err(fail)?;
    Ok((store, recovered))
}

#[cfg(test)]
mod tests;
