//! What the agent checkpoints so that a restarted agent (even after SIGKILL)
//! finds its frameworks, executors, tasks and undelivered status updates.
//!
//! The state machine decides *what* to persist and emits
//! [`Checkpoint`] records as effects, ordered before the effects that rely
//! on them (an executor's update is written before the agent acknowledges
//! it to the executor). This module maps records to files in a
//! [`MetaStore`] and reads them back at start ([`recover`]). The real store
//! is [`journal::JournalStore`]: every change to those files is a frame
//! appended to one file, `<work_dir>/meta/journal`, written a group at a
//! time and compacted when it has grown, so a launch costs a few appends,
//! not a dozen inodes. [`FsStore`] keeps one file per path (atomic writes:
//! temp file, rename): it is how agents before the journal stored the
//! checkpoint, read once at start and carried into the journal.
//!
//! Files (paths in the journal, after Mesos' `src/slave/paths.hpp`):
//!
//! ```text
//! boot_id                                   the boot this checkpoint belongs to
//! slaves/latest                             the agent id
//! frameworks/<fid>/framework.info           FrameworkInfo (protobuf)
//! frameworks/<fid>/executors/<eid>/executor.info
//!                                           task id, run id, sandbox, pid, start time (JSON)
//! frameworks/<fid>/executors/<eid>/tasks/<tid>/task.info     TaskInfo (protobuf)
//! frameworks/<fid>/executors/<eid>/tasks/<tid>/task.updates  latest state and the
//!                                           updates not yet acknowledged (protobuf)
//! ```
//!
//! Unlike Mesos, frameworks are not nested under the agent id: the agent
//! keeps running its tasks whatever id the master gives it.
//!
//! Files are only ever replaced whole (a journal frame, or a rename), so a
//! reader sees the old or the new content, never a mix. A file that cannot be decoded anyway (a
//! damaged disk, a hand edit) is skipped with a warning naming it; recovery
//! never panics.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use agora_core::{AgentId, ExecutorId, FrameworkId, TaskId};
use agora_proto::v1 as pb;
use prost::Message as _;
use serde::{Deserialize, Serialize};

/// One executor run: what the agent needs to find its process again.
///
/// A run is recorded twice: before anything of it is created (its id and
/// sandbox, `pid` still `None`), and once its process runs. No task
/// reaches an executor before its run's process is recorded, so a run
/// recovered without a pid never had a task: whatever of it exists is
/// destroyed and its executor launched again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorRun {
    pub run_id: String,
    pub sandbox: PathBuf,
    /// The executor's process (a hosted run: its supervisor's); `None`
    /// while the run is being started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Field 22 of `/proc/<pid>/stat` (clock ticks since boot): a pid with
    /// another start time is another process (pid reuse).
    #[serde(default)]
    pub start_time: u64,
    /// Hosted by the agent's supervisor (`crate::host`): `pid` and
    /// `start_time` are the supervisor's, which hosts other runs too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hosted: bool,
}

/// A record the state machine asks the shell to persist (or remove).
// Moved once from the state machine to the shell; boxing would only add allocations.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Checkpoint {
    AgentId(AgentId),
    Framework(pb::FrameworkInfo),
    /// The framework has no executors or tasks left here.
    RemoveFramework(FrameworkId),
    Executor {
        framework_id: FrameworkId,
        executor_id: ExecutorId,
        task_id: TaskId,
        /// A framework's own executor; `None` for the command executor.
        info: Option<pb::ExecutorInfo>,
        run: Option<ExecutorRun>,
    },
    /// The executor is gone (its task's records stay while it has any).
    RemoveExecutor {
        framework_id: FrameworkId,
        executor_id: ExecutorId,
    },
    Task {
        framework_id: FrameworkId,
        executor_id: ExecutorId,
        info: pb::TaskInfo,
    },
    /// The task's latest state and its updates not yet acknowledged by the
    /// master, in order (the whole queue, replacing the previous one).
    TaskUpdates {
        framework_id: FrameworkId,
        executor_id: ExecutorId,
        task_id: TaskId,
        state: pb::TaskState,
        pending: Vec<pb::TaskStatus>,
        /// The uuids of the task's latest updates (`TaskRecord::received`).
        received: Vec<Vec<u8>>,
    },
    /// The task is terminal and every update for it was acknowledged.
    RemoveTask {
        framework_id: FrameworkId,
        executor_id: ExecutorId,
        task_id: TaskId,
    },
}

/// What a restarted agent finds in its checkpoint.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recovered {
    pub agent_id: Option<AgentId>,
    pub frameworks: Vec<pb::FrameworkInfo>,
    pub executors: Vec<RecoveredExecutor>,
    pub tasks: Vec<RecoveredTask>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RecoveredExecutor {
    pub framework_id: FrameworkId,
    pub executor_id: ExecutorId,
    pub task_id: TaskId,
    pub info: Option<pb::ExecutorInfo>,
    pub run: Option<ExecutorRun>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RecoveredTask {
    pub framework_id: FrameworkId,
    pub executor_id: ExecutorId,
    pub info: pb::TaskInfo,
    pub state: pb::TaskState,
    pub pending: Vec<pb::TaskStatus>,
    pub received: Vec<Vec<u8>>,
}

/// `task.updates`: the latest state and the pending queue.
#[derive(Clone, PartialEq, prost::Message)]
struct TaskUpdatesRecord {
    #[prost(int32, tag = "1")]
    state: i32,
    #[prost(message, repeated, tag = "2")]
    pending: Vec<pb::TaskStatus>,
    /// Absent in records of older agents: their tasks remember only
    /// `pending` (the duplicates they missed were not caught then either).
    #[prost(bytes = "vec", repeated, tag = "3")]
    received: Vec<Vec<u8>>,
}

/// `executor.info`.
#[derive(Debug, Serialize, Deserialize)]
struct ExecutorRecord {
    task_id: String,
    run: Option<ExecutorRun>,
    /// A custom executor's `ExecutorInfo`, protobuf bytes in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    info: Option<String>,
}

/// The files behind the checkpoint, relative to `meta/`.
pub trait MetaStore {
    /// Replaces `path` whole, atomically; creates parent directories.
    fn write(&mut self, path: &Path, bytes: &[u8]) -> std::io::Result<()>;
    /// `Ok(None)` when the file does not exist.
    fn read(&self, path: &Path) -> std::io::Result<Option<Vec<u8>>>;
    /// Removes a file or a directory tree; absent is fine.
    fn remove(&mut self, path: &Path) -> std::io::Result<()>;
    /// The names of the subdirectories of `path` (none when absent).
    fn list_dirs(&self, path: &Path) -> std::io::Result<Vec<String>>;
    /// Removes `path` and then its parents up to (not including) `stop`,
    /// each only while empty.
    fn prune(&mut self, path: &Path, stop: &Path);
    /// Makes everything written so far durable as far as this store goes
    /// (a journal writes its buffered frames); called once per group of
    /// batches, before any of them counts as written.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub const BOOT_ID: &str = "boot_id";
const AGENT_ID: &str = "slaves/latest";
const FRAMEWORK_INFO: &str = "framework.info";
const EXECUTOR_INFO: &str = "executor.info";
const TASK_INFO: &str = "task.info";
const TASK_UPDATES: &str = "task.updates";

/// An id used as one path component: never empty, `.`, `..` or with a `/`.
fn component(id: &str) -> std::io::Result<&str> {
    if id.is_empty() || id == "." || id == ".." || id.contains('/') || id.contains('\0') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("id {id:?} cannot name a checkpoint directory"),
        ));
    }
    Ok(id)
}

fn framework_dir(framework_id: &str) -> std::io::Result<PathBuf> {
    Ok(Path::new("frameworks").join(component(framework_id)?))
}

fn executor_dir(framework_id: &str, executor_id: &str) -> std::io::Result<PathBuf> {
    Ok(framework_dir(framework_id)?
        .join("executors")
        .join(component(executor_id)?))
}

fn task_dir(framework_id: &str, executor_id: &str, task_id: &str) -> std::io::Result<PathBuf> {
    Ok(executor_dir(framework_id, executor_id)?
        .join("tasks")
        .join(component(task_id)?))
}

/// Carries out one record.
pub fn apply(store: &mut dyn MetaStore, record: &Checkpoint) -> std::io::Result<()> {
    match record {
        Checkpoint::AgentId(agent_id) => {
            store.write(Path::new(AGENT_ID), agent_id.as_str().as_bytes())
        }
        Checkpoint::Framework(info) => {
            let id = info.id.as_ref().map(|i| i.value.as_str()).unwrap_or("");
            store.write(
                &framework_dir(id)?.join(FRAMEWORK_INFO),
                &info.encode_to_vec(),
            )
        }
        Checkpoint::RemoveFramework(framework_id) => {
            store.remove(&framework_dir(framework_id.as_str())?)
        }
        Checkpoint::Executor {
            framework_id,
            executor_id,
            task_id,
            info,
            run,
        } => {
            let record = ExecutorRecord {
                task_id: task_id.as_str().to_string(),
                run: run.clone(),
                info: info.as_ref().map(|i| hex::encode(i.encode_to_vec())),
            };
            let bytes = serde_json::to_vec(&record).map_err(std::io::Error::other)?;
            let dir = executor_dir(framework_id.as_str(), executor_id.as_str())?;
            store.write(&dir.join(EXECUTOR_INFO), &bytes)
        }
        Checkpoint::RemoveExecutor {
            framework_id,
            executor_id,
        } => {
            let dir = executor_dir(framework_id.as_str(), executor_id.as_str())?;
            store.remove(&dir.join(EXECUTOR_INFO))?;
            store.prune(&dir, Path::new("frameworks"));
            Ok(())
        }
        Checkpoint::Task {
            framework_id,
            executor_id,
            info,
        } => {
            let task_id = info
                .task_id
                .as_ref()
                .map(|t| t.value.as_str())
                .unwrap_or("");
            let dir = task_dir(framework_id.as_str(), executor_id.as_str(), task_id)?;
            store.write(&dir.join(TASK_INFO), &info.encode_to_vec())
        }
        Checkpoint::TaskUpdates {
            framework_id,
            executor_id,
            task_id,
            state,
            pending,
            received,
        } => {
            let record = TaskUpdatesRecord {
                state: *state as i32,
                pending: pending.clone(),
                received: received.clone(),
            };
            let dir = task_dir(
                framework_id.as_str(),
                executor_id.as_str(),
                task_id.as_str(),
            )?;
            store.write(&dir.join(TASK_UPDATES), &record.encode_to_vec())
        }
        Checkpoint::RemoveTask {
            framework_id,
            executor_id,
            task_id,
        } => {
            let dir = task_dir(
                framework_id.as_str(),
                executor_id.as_str(),
                task_id.as_str(),
            )?;
            store.remove(&dir)?;
            store.prune(
                &executor_dir(framework_id.as_str(), executor_id.as_str())?.join("tasks"),
                Path::new("frameworks"),
            );
            Ok(())
        }
    }
}

/// Drops records another record of the same batch makes moot: of several
/// writes of one task's updates (or one executor's record) only the last
/// counts, written at the first one's place. Removals keep their order.
/// The shell writes a batch's records before sending any of the batch's
/// messages, so every record still precedes what relies on it; this saves
/// a file write (a new inode and a rename) per superseded record under load.
pub fn coalesce(records: Vec<Checkpoint>) -> Vec<Checkpoint> {
    #[derive(PartialEq, Eq, Hash)]
    enum Key {
        Updates(FrameworkId, ExecutorId, TaskId),
        Executor(FrameworkId, ExecutorId),
    }
    let mut out: Vec<Checkpoint> = Vec::with_capacity(records.len());
    let mut at: std::collections::HashMap<Key, usize> = std::collections::HashMap::new();
    for record in records {
        let key = match &record {
            Checkpoint::TaskUpdates {
                framework_id,
                executor_id,
                task_id,
                ..
            } => Some(Key::Updates(
                framework_id.clone(),
                executor_id.clone(),
                task_id.clone(),
            )),
            Checkpoint::Executor {
                framework_id,
                executor_id,
                ..
            } => Some(Key::Executor(framework_id.clone(), executor_id.clone())),
            Checkpoint::RemoveTask {
                framework_id,
                executor_id,
                task_id,
            } => {
                at.remove(&Key::Updates(
                    framework_id.clone(),
                    executor_id.clone(),
                    task_id.clone(),
                ));
                None
            }
            Checkpoint::RemoveExecutor {
                framework_id,
                executor_id,
            } => {
                at.retain(|key, _| match key {
                    Key::Updates(f, e, _) | Key::Executor(f, e) => {
                        f != framework_id || e != executor_id
                    }
                });
                None
            }
            Checkpoint::RemoveFramework(framework_id) => {
                at.retain(|key, _| match key {
                    Key::Updates(f, _, _) | Key::Executor(f, _) => f != framework_id,
                });
                None
            }
            Checkpoint::AgentId(_) | Checkpoint::Framework(_) | Checkpoint::Task { .. } => None,
        };
        match key.and_then(|k| match at.get(&k) {
            Some(&index) => Some(index),
            None => {
                at.insert(k, out.len());
                None
            }
        }) {
            Some(index) => out[index] = record,
            None => out.push(record),
        }
    }
    out
}

/// Reads one file; `None` (with a warning) when it is unreadable.
fn read_file(store: &dyn MetaStore, path: &Path) -> Option<Vec<u8>> {
    match store.read(path) {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "checkpoint file unreadable; skipped");
            None
        }
    }
}

fn list(store: &dyn MetaStore, path: &Path) -> Vec<String> {
    match store.list_dirs(path) {
        Ok(names) => names,
        Err(e) => {
            tracing::warn!(dir = %path.display(), error = %e, "checkpoint directory unreadable; skipped");
            Vec::new()
        }
    }
}

fn corrupt(path: &Path, error: impl std::fmt::Display) {
    tracing::warn!(file = %path.display(), error = %error, "checkpoint file is corrupt; skipped");
}

/// Reads everything back. Damaged or missing pieces are skipped with a
/// warning; whatever can be recovered is.
pub fn recover(store: &dyn MetaStore) -> Recovered {
    let mut recovered = Recovered::default();
    if let Some(bytes) = read_file(store, Path::new(AGENT_ID)) {
        match std::str::from_utf8(&bytes)
            .map_err(|e| e.to_string())
            .and_then(|text| AgentId::parse(text.trim()).map_err(|e| e.to_string()))
        {
            Ok(id) => recovered.agent_id = Some(id),
            Err(e) => corrupt(Path::new(AGENT_ID), e),
        }
    }
    for framework in list(store, Path::new("frameworks")) {
        let Ok(framework_id) = FrameworkId::parse(&framework) else {
            tracing::warn!(dir = %framework, "checkpoint directory is not a framework id; skipped");
            continue;
        };
        let dir = Path::new("frameworks").join(&framework);
        let info_path = dir.join(FRAMEWORK_INFO);
        match read_file(store, &info_path).map(|b| pb::FrameworkInfo::decode(b.as_slice())) {
            Some(Ok(info)) => recovered.frameworks.push(info),
            Some(Err(e)) => corrupt(&info_path, e),
            None => {
                // Tasks without their framework's info cannot be reported; keep
                // them with a minimal info rather than dropping their updates.
                tracing::warn!(file = %info_path.display(), "framework info missing");
                recovered.frameworks.push(pb::FrameworkInfo {
                    id: framework_id.to_field(),
                    ..Default::default()
                });
            }
        }
        for executor in list(store, &dir.join("executors")) {
            let Ok(executor_id) = ExecutorId::parse(&executor) else {
                tracing::warn!(dir = %executor, "checkpoint directory is not an executor id; skipped");
                continue;
            };
            let executor_dir = dir.join("executors").join(&executor);
            let info_path = executor_dir.join(EXECUTOR_INFO);
            if let Some(bytes) = read_file(store, &info_path) {
                match serde_json::from_slice::<ExecutorRecord>(&bytes)
                    .map_err(|e| e.to_string())
                    .and_then(|r| {
                        let task_id = TaskId::parse(&r.task_id).map_err(|e| e.to_string())?;
                        let info = match &r.info {
                            None => None,
                            Some(encoded) => Some(
                                hex::decode(encoded)
                                    .ok()
                                    .and_then(|b| pb::ExecutorInfo::decode(b.as_slice()).ok())
                                    .ok_or("undecodable executor info")?,
                            ),
                        };
                        Ok((task_id, info, r.run))
                    }) {
                    Ok((task_id, info, run)) => recovered.executors.push(RecoveredExecutor {
                        framework_id: framework_id.clone(),
                        executor_id: executor_id.clone(),
                        task_id,
                        info,
                        run,
                    }),
                    Err(e) => corrupt(&info_path, e),
                }
            }
            for task in list(store, &executor_dir.join("tasks")) {
                let task_dir = executor_dir.join("tasks").join(&task);
                let info_path = task_dir.join(TASK_INFO);
                let info = match read_file(store, &info_path)
                    .map(|b| pb::TaskInfo::decode(b.as_slice()))
                {
                    Some(Ok(info)) => info,
                    Some(Err(e)) => {
                        corrupt(&info_path, e);
                        continue;
                    }
                    None => {
                        tracing::warn!(file = %info_path.display(), "task info missing; task skipped");
                        continue;
                    }
                };
                if info.task_id.as_ref().map(|t| t.value.as_str()) != Some(task.as_str()) {
                    corrupt(&info_path, "task id does not match its directory");
                    continue;
                }
                let updates_path = task_dir.join(TASK_UPDATES);
                let (state, pending, mut received) = match read_file(store, &updates_path)
                    .map(|b| TaskUpdatesRecord::decode(b.as_slice()))
                {
                    None => (pb::TaskState::TaskStaging, Vec::new(), Vec::new()),
                    Some(Ok(record)) => match agora_core::task::from_i32(record.state) {
                        Ok(state) => (state, record.pending, record.received),
                        Err(e) => {
                            corrupt(&updates_path, e);
                            (pb::TaskState::TaskStaging, Vec::new(), Vec::new())
                        }
                    },
                    Some(Err(e)) => {
                        corrupt(&updates_path, e);
                        (pb::TaskState::TaskStaging, Vec::new(), Vec::new())
                    }
                };
                // An older agent's record lists no uuids: its pending ones
                // at least were taken.
                for uuid in pending.iter().filter_map(|s| s.uuid.clone()) {
                    if !received.contains(&uuid) {
                        received.push(uuid);
                    }
                }
                recovered.tasks.push(RecoveredTask {
                    framework_id: framework_id.clone(),
                    executor_id: executor_id.clone(),
                    info,
                    state,
                    pending,
                    received,
                });
            }
        }
    }
    recovered
}

/// The checkpoint on disk, under `<work_dir>/meta`.
///
/// *Invariant:* readable by root (the agent's user) only: task definitions
/// hold their environment, secrets included, and the executor token key
/// lives here. Directories are created 0700 and files 0600; [`FsStore::harden`]
/// brings a checkpoint written by an older agent (0755/0644) to those modes.
pub struct FsStore {
    root: PathBuf,
}

/// The mode of the checkpoint's directories.
pub const META_DIR_MODE: u32 = 0o700;
/// The mode of the checkpoint's files.
pub const META_FILE_MODE: u32 = 0o600;

impl FsStore {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Makes every directory under the root (the root included) 0700 and
    /// every file 0600, without following symlinks. Returns how many
    /// entries it had to change.
    pub fn harden(&self) -> std::io::Result<usize> {
        fn walk(path: &Path, depth: usize, changed: &mut usize) -> std::io::Result<()> {
            use std::os::unix::fs::PermissionsExt as _;
            let meta = std::fs::symlink_metadata(path)?;
            let want = if meta.is_dir() {
                META_DIR_MODE
            } else if meta.is_file() {
                META_FILE_MODE
            } else {
                return Ok(()); // symlinks and others: never followed
            };
            if meta.permissions().mode() & 0o7777 != want {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(want))?;
                *changed += 1;
            }
            // The layout is a few levels deep; a deeper tree is not ours.
            if meta.is_dir() && depth < 16 {
                for entry in std::fs::read_dir(path)? {
                    walk(&entry?.path(), depth + 1, changed)?;
                }
            }
            Ok(())
        }
        let mut changed = 0;
        match walk(&self.root, 0, &mut changed) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(changed),
            other => other.map(|()| changed),
        }
    }
}

/// Creates `dir` and its missing parents with [`META_DIR_MODE`].
pub(crate) fn create_private_dirs(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(META_DIR_MODE)
        .create(dir)
}

impl MetaStore for FsStore {
    fn write(&mut self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let target = self.root.join(path);
        let dir = target
            .parent()
            .ok_or_else(|| std::io::Error::other("checkpoint path has no parent"))?;
        create_private_dirs(dir)?;
        let mut name = target.file_name().unwrap_or_default().to_os_string();
        name.push(".tmp");
        let temp = dir.join(name);
        let mut file = {
            use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(META_FILE_MODE)
                .open(&temp)?;
            // A temp file left by a crash keeps its old mode through open.
            file.set_permissions(std::fs::Permissions::from_mode(META_FILE_MODE))?;
            file
        };
        file.write_all(bytes)?;
        // Neither the file nor the directory is synced, on purpose: a
        // checkpoint only matters while the machine has not rebooted (a new
        // boot id discards it, and the tasks died with the machine), and
        // until then the page cache keeps every write and rename even if
        // this process is killed. An fsync here cost a disk flush per
        // status update on the launch path.
        drop(file);
        std::fs::rename(&temp, &target)
    }

    fn read(&self, path: &Path) -> std::io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.root.join(path)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn remove(&mut self, path: &Path) -> std::io::Result<()> {
        let target = self.root.join(path);
        let result = match std::fs::symlink_metadata(&target) {
            Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&target),
            Ok(_) => std::fs::remove_file(&target),
            Err(e) => Err(e),
        };
        match result {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    fn list_dirs(&self, path: &Path) -> std::io::Result<Vec<String>> {
        let entries = match std::fs::read_dir(self.root.join(path)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                match entry.file_name().into_string() {
                    Ok(name) => names.push(name),
                    Err(name) => {
                        tracing::warn!(name = ?name, "checkpoint entry with a non-UTF-8 name skipped");
                    }
                }
            }
        }
        names.sort();
        Ok(names)
    }

    fn prune(&mut self, path: &Path, stop: &Path) {
        let mut current = Some(path);
        while let Some(dir) = current {
            if dir == stop || dir.as_os_str().is_empty() {
                break;
            }
            // Fails (and stops) on the first directory that is not empty.
            if std::fs::remove_dir(self.root.join(dir)).is_err() {
                break;
            }
            current = dir.parent();
        }
    }
}

/// The top-level directories of the older file-per-record layout.
const LEGACY_DIRS: [&str; 2] = ["slaves", "frameworks"];

/// The files of a checkpoint in the older file-per-record layout under
/// `meta`, if there is one (a journal, once written, is the only record).
pub(crate) fn legacy_image(meta: &Path) -> std::io::Result<Option<MemStore>> {
    if meta.join(journal::JOURNAL).exists() {
        return Ok(None);
    }
    fn walk(meta: &Path, dir: &Path, depth: usize, image: &mut MemStore) -> std::io::Result<()> {
        let entries = match std::fs::read_dir(meta.join(dir)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                tracing::warn!(name = ?entry.file_name(), "checkpoint entry with a non-UTF-8 name skipped");
                continue;
            };
            // Temp files of an interrupted write never counted.
            if name.ends_with(".tmp") {
                continue;
            }
            let path = dir.join(&name);
            let kind = entry.file_type()?;
            if kind.is_dir() && depth < 16 {
                walk(meta, &path, depth + 1, image)?;
            } else if kind.is_file() {
                image.files.insert(path, std::fs::read(entry.path())?);
            }
        }
        Ok(())
    }
    let mut image = MemStore::default();
    for dir in LEGACY_DIRS {
        walk(meta, Path::new(dir), 0, &mut image)?;
    }
    Ok((!image.files.is_empty()).then_some(image))
}

/// Removes everything under `meta` but the work directory's lock; returns
/// how many entries there were.
pub(crate) fn discard(meta: &Path) -> std::io::Result<usize> {
    let entries = match std::fs::read_dir(meta) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        if entry.file_name() == journal::LOCK {
            continue;
        }
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
        removed += 1;
    }
    Ok(removed)
}

/// Removes the older layout's files once the journal holds them.
pub(crate) fn remove_legacy(meta: &Path) -> std::io::Result<()> {
    for dir in LEGACY_DIRS {
        match std::fs::remove_dir_all(meta.join(dir)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// A checkpoint in memory: the image a journal replays into, and the store
/// of this crate's tests.
#[derive(Debug, Default, Clone)]
pub struct MemStore {
    pub files: std::collections::BTreeMap<PathBuf, Vec<u8>>,
}

impl MetaStore for MemStore {
    fn write(&mut self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        self.files.insert(path.to_path_buf(), bytes.to_vec());
        Ok(())
    }

    fn read(&self, path: &Path) -> std::io::Result<Option<Vec<u8>>> {
        Ok(self.files.get(path).cloned())
    }

    fn remove(&mut self, path: &Path) -> std::io::Result<()> {
        // Paths order component by component, so `path` and everything
        // under it are one run of keys from `path` on: O(log n + removed),
        // not a scan of every file (a launch removes records of earlier
        // tasks, and a busy agent holds thousands).
        let under: Vec<PathBuf> = self
            .files
            .range::<Path, _>((std::ops::Bound::Included(path), std::ops::Bound::Unbounded))
            .map(|(p, _)| p)
            .take_while(|p| p.starts_with(path))
            .cloned()
            .collect();
        for p in under {
            self.files.remove(&p);
        }
        Ok(())
    }

    fn list_dirs(&self, path: &Path) -> std::io::Result<Vec<String>> {
        // The run of keys under `path`, as in `remove`: recovery lists every
        // framework's, executor's and run's directory, and a scan of every
        // file each time made it quadratic (3 s for 3,000 executors).
        let mut names: Vec<String> = self
            .files
            .range::<Path, _>((std::ops::Bound::Included(path), std::ops::Bound::Unbounded))
            .map(|(p, _)| p)
            .take_while(|p| p.starts_with(path))
            .filter_map(|p| p.strip_prefix(path).ok())
            .filter(|rest| rest.components().count() > 1)
            .filter_map(|rest| rest.components().next())
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        names.dedup();
        Ok(names)
    }

    fn prune(&mut self, _path: &Path, _stop: &Path) {}
}

pub mod journal;

#[cfg(test)]
mod tests;
