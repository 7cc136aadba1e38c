//! The one error type of the crate.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while isolating containers.
#[derive(Debug, thiserror::Error)]
pub enum IsolationError {
    /// The `--isolation` string is empty or names an unknown isolator.
    #[error("invalid isolation {value:?}: {reason}")]
    InvalidIsolation { value: String, reason: String },

    /// The cgroups root is empty or not a relative path of plain components.
    #[error("invalid cgroups root {0:?}: must be a relative path without '.' or '..' components")]
    InvalidCgroupsRoot(String),

    /// A container id that cannot safely be a cgroup directory name.
    #[error("invalid container id {id:?}: {reason}")]
    InvalidContainerId { id: String, reason: &'static str },

    /// A selected cgroup controller cannot be used on this machine; the caller may warn and fall
    /// back to `Isolator::posix()`.
    #[error("cgroup controller {controller} is unusable: {reason}")]
    Unusable {
        controller: &'static str,
        reason: String,
    },

    /// `/proc/self/mountinfo` could not be read.
    #[error("cannot detect cgroup hierarchies: {0}")]
    Detect(#[source] io::Error),

    /// `create` found the container's cgroup already there.
    #[error("container {0} already exists")]
    AlreadyExists(String),

    /// `open` found no cgroup of the container.
    #[error("container {0} not found")]
    NotFound(String),

    /// A cgroupfs or procfs operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The closure given to `spawn_inside` failed (the caller is back in its cgroups).
    #[error("spawning inside the container failed: {0}")]
    Spawn(#[source] io::Error),

    /// `spawn_inside` could not return the calling process to its own cgroups. What the closure
    /// spawned was dropped and still runs inside the container: destroy the container.
    #[error("cannot move the calling process back to {}: {source}", path.display())]
    Restore {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Processes of the container were still alive when the deadline passed.
    #[error("container {id}: {} processes still alive after {waited:?}", pids.len())]
    KillTimeout {
        id: String,
        pids: Vec<u32>,
        waited: Duration,
    },

    /// A cgroup directory could not be removed before the deadline.
    #[error("cgroup {} still busy after {waited:?}", path.display())]
    Busy { path: PathBuf, waited: Duration },
}

impl IsolationError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        IsolationError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
