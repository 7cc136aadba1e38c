//! A thin cgroupfs reader/writer: every cgroup file is read whole and written with a single
//! `write(2)` of the whole value (cgroupfs acts on each write call, and does not truncate).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::IsolationError;
use crate::layout::{Controller, Hierarchy, Version};

/// One cgroup directory of a container (or of the caller) in one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CgroupDir {
    pub(crate) version: Version,
    /// The directory itself.
    pub(crate) path: PathBuf,
    /// The hierarchy it belongs to (for finding the caller's own cgroup).
    pub(crate) mount_point: PathBuf,
    pub(crate) mount_root: String,
    /// Our controllers served by this hierarchy.
    pub(crate) controllers: Vec<Controller>,
}

impl CgroupDir {
    pub(crate) fn new(h: &Hierarchy, path: PathBuf) -> CgroupDir {
        CgroupDir {
            version: h.version,
            path,
            mount_point: h.mount_point.clone(),
            mount_root: h.root.clone(),
            controllers: h.controllers.clone(),
        }
    }

    pub(crate) fn serves(&self, c: Controller) -> bool {
        self.controllers.contains(&c)
    }

    pub(crate) fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Reads a file of this cgroup; `None` when missing or unreadable.
    pub(crate) fn read(&self, name: &str) -> Option<String> {
        fs::read_to_string(self.file(name)).ok()
    }

    pub(crate) fn write(&self, name: &str, value: &str) -> Result<(), IsolationError> {
        let path = self.file(name);
        write_value(&path, value).map_err(|e| IsolationError::io("write", path, e))
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.file(name).exists()
    }

    /// Process ids in this cgroup (`cgroup.procs`); empty when unreadable.
    pub(crate) fn procs(&self) -> Vec<u32> {
        self.read("cgroup.procs")
            .map(|t| crate::parse::pid_list(&t))
            .unwrap_or_default()
    }
}

/// Writes `value` to an existing cgroup or proc file in one `write(2)`.
pub(crate) fn write_value(path: &Path, value: &str) -> io::Result<()> {
    let mut file = fs::OpenOptions::new().write(true).open(path)?;
    let written = file.write(value.as_bytes())?;
    if written != value.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "short write to a cgroup file",
        ));
    }
    Ok(())
}

/// Whether an error means "the kernel does not offer this here" (missing file, unsupported
/// value), which optional settings tolerate.
pub(crate) fn is_unsupported(e: &IsolationError) -> bool {
    match e {
        IsolationError::Io { source, .. } => {
            source.kind() == io::ErrorKind::NotFound
                || source.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error())
                || source.raw_os_error() == Some(rustix::io::Errno::OPNOTSUPP.raw_os_error())
        }
        _ => false,
    }
}
