//! A container: its cgroups (or, with posix isolation, the pids registered with it), starting
//! processes straight inside them, and OOM detection.

use std::collections::BTreeSet;
use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::cgroupfs::{CgroupDir, write_value};
use crate::layout::{Controller, Version};
use crate::parse;
use crate::{IsolationError, Limits};

/// Serialises `spawn_inside` within this process: the calling process can only be in one
/// container at a time.
static SPAWN_LOCK: Mutex<()> = Mutex::new(());

#[derive(Debug)]
pub(crate) enum Backend {
    Posix,
    Cgroups(Vec<CgroupDir>),
}

/// One executor container. Dropping the handle leaves the container as it is (it outlives the
/// process holding the handle); `destroy` removes it.
#[derive(Debug)]
pub struct Container {
    id: String,
    backend: Backend,
    /// Limits as last applied through this handle; `None` for an opened container.
    limits: Mutex<Option<Limits>>,
    /// Pids registered with `add_process` (the only membership posix containers have).
    tracked: Mutex<BTreeSet<u32>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Container {
    pub(crate) fn new(id: &str, backend: Backend, limits: Option<Limits>) -> Container {
        Container {
            id: id.to_owned(),
            backend,
            limits: Mutex::new(limits),
            tracked: Mutex::new(BTreeSet::new()),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether this container's limits are enforced by cgroups.
    pub fn is_cgroups(&self) -> bool {
        matches!(self.backend, Backend::Cgroups(_))
    }

    /// The container's cgroup directories, one per hierarchy (empty for posix).
    pub fn cgroup_paths(&self) -> Vec<PathBuf> {
        self.dirs().iter().map(|d| d.path.clone()).collect()
    }

    pub(crate) fn backend(&self) -> &Backend {
        &self.backend
    }

    pub(crate) fn dirs(&self) -> &[CgroupDir] {
        match &self.backend {
            Backend::Posix => &[],
            Backend::Cgroups(dirs) => dirs,
        }
    }

    pub(crate) fn dir(&self, c: Controller) -> Option<&CgroupDir> {
        self.dirs().iter().find(|d| d.serves(c))
    }

    pub(crate) fn limits(&self) -> Option<Limits> {
        *lock(&self.limits)
    }

    pub(crate) fn set_limits(&self, limits: Limits) {
        *lock(&self.limits) = Some(limits);
    }

    pub(crate) fn tracked(&self) -> Vec<u32> {
        lock(&self.tracked).iter().copied().collect()
    }

    /// Runs `spawn` with the calling thread (cgroup v1) or process (v2) inside the container's
    /// cgroups, so that whatever it forks starts straight inside them, then moves it back to
    /// the cgroups it was in (read from `/proc/thread-self/cgroup` or `/proc/self/cgroup`).
    ///
    /// Why this is sound without `unsafe`/`pre_exec`: a forked child inherits the cgroups of
    /// the thread that forks, at fork time, atomically, so the child is charged and limited
    /// from its first instruction and never needs moving. Migration is synchronous.
    ///
    /// On v1 only the calling thread moves (its id written to `tasks`): the other threads of a
    /// process that hosts many executors go on outside, neither counted in `pids.max` nor
    /// charged to the container's memory (v1 charges a process's memory to the cgroup of its
    /// leader). Moving the whole process put every thread's allocations in a task's memory
    /// cgroup for the spawn: a supervisor hosting thousands of executors was OOM-killed inside
    /// a 4 MB task's. v2 has no per-thread membership for these controllers, so there the whole
    /// process moves (`clone3(CLONE_INTO_CGROUP)` would avoid it), with those caveats: while
    /// `spawn` runs, anything the process forks lands in the container, its threads count
    /// towards `pids.max` and memory it touches may be charged to the container. Calls within
    /// this process are serialised; `pids.max` is raised by the number of threads moved for the
    /// duration and restored before they leave, so the container's own tasks stay within the
    /// limit. With posix isolation this just calls `spawn`.
    pub fn spawn_inside<T>(
        &self,
        spawn: impl FnOnce() -> std::io::Result<T>,
    ) -> Result<T, IsolationError> {
        let dirs = self.dirs();
        if dirs.is_empty() {
            return spawn().map_err(IsolationError::Spawn);
        }
        let _serial = lock(&SPAWN_LOCK);
        let per_thread = dirs.iter().all(|d| d.version == Version::V1);
        let (own_file, member_file, member) = if per_thread {
            let thread =
                thread_id().map_err(|e| IsolationError::io("read", "/proc/thread-self", e))?;
            ("/proc/thread-self/cgroup", "tasks", thread)
        } else {
            (
                "/proc/self/cgroup",
                "cgroup.procs",
                std::process::id().to_string(),
            )
        };
        let own_text =
            fs::read_to_string(own_file).map_err(|e| IsolationError::io("read", own_file, e))?;
        let own = parse::proc_cgroup(&own_text);
        let origins = dirs
            .iter()
            .map(|d| {
                origin_of(d, &own).ok_or_else(|| {
                    let e =
                        std::io::Error::other("the caller's cgroup in this hierarchy is unknown");
                    IsolationError::io("locate", d.mount_point.clone(), e)
                })
            })
            .collect::<Result<Vec<PathBuf>, _>>()?;
        let headroom = PidsHeadroom::raise(self.dir(Controller::Pids), per_thread);
        let mut moved = 0;
        let mut result = Ok(());
        for d in dirs {
            if let Err(e) = d.write(member_file, &member) {
                result = Err(e);
                break;
            }
            moved += 1;
        }
        // A panicking closure must not leave the caller inside: restore, then resume the panic.
        let spawned = match result {
            Ok(()) => {
                panic::catch_unwind(AssertUnwindSafe(|| spawn().map_err(IsolationError::Spawn)))
            }
            Err(e) => Ok(Err(e)),
        };
        // Leave first, then lower the limit: the other order leaves a window
        // in which the caller's threads still count and the new task's
        // first forks fail with EAGAIN.
        let restored = move_back(&origins[..moved], member_file, &member);
        headroom.restore();
        let spawned = match spawned {
            Ok(r) => r,
            Err(payload) => panic::resume_unwind(payload),
        };
        match (spawned, restored) {
            (Ok(value), Ok(())) => Ok(value),
            (Ok(_dropped), Err(e)) => {
                tracing::error!(container = %self.id, error = %e, "caller stuck inside the container; destroy it");
                Err(e)
            }
            (Err(e), Ok(())) => Err(e),
            (Err(e), Err(restore)) => {
                tracing::error!(container = %self.id, error = %restore, "caller stuck inside the container; destroy it");
                Err(e)
            }
        }
    }

    /// Moves `pid` (all its threads) into the container's cgroups; with posix isolation,
    /// registers it so `pids`, `stats` and `kill_all` cover it, its process group and session.
    pub fn add_process(&self, pid: u32) -> Result<(), IsolationError> {
        lock(&self.tracked).insert(pid);
        for d in self.dirs() {
            // A process started by `spawn_inside` is already there: skip the costly migration.
            if !d.procs().contains(&pid) {
                d.write("cgroup.procs", &pid.to_string())?;
            }
        }
        Ok(())
    }

    /// Live process ids of the container, sorted: the union of `cgroup.procs` over its
    /// hierarchies; for posix, the registered pids and every process whose process group or
    /// session one of them leads (zombies excluded).
    pub fn pids(&self) -> Vec<u32> {
        match &self.backend {
            Backend::Cgroups(dirs) => {
                let set: BTreeSet<u32> = dirs.iter().flat_map(|d| d.procs()).collect();
                set.into_iter().collect()
            }
            Backend::Posix => crate::procfs::posix_members(&self.tracked()),
        }
    }

    /// Whether the kernel OOM-killed a process of the container: the `oom_kill` count of v2
    /// `memory.events`, or of v1 `memory.oom_control` (kernels from 4.13), is positive. False
    /// without a memory cgroup or when the kernel does not report it; older v1 kernels only
    /// offer `mem_failcnt` (positive, with the task dead by SIGKILL, is the usual inference).
    pub fn oom_killed(&self) -> bool {
        let Some(d) = self.dir(Controller::Memory) else {
            return false;
        };
        let (file, key) = match d.version {
            Version::V2 => ("memory.events", "oom_kill"),
            Version::V1 => ("memory.oom_control", "oom_kill"),
        };
        d.read(file)
            .and_then(|t| parse::keyed(&t, key))
            .is_some_and(|n| n > 0)
    }

    /// How often the memory limit was hit: v1 the larger of `memory.failcnt` and
    /// `memory.memsw.failcnt` (with swap accounting the memsw limit is the one hit), v2
    /// `memory.events` `max`.
    pub fn mem_failcnt(&self) -> Option<u64> {
        let d = self.dir(Controller::Memory)?;
        let count = |file| d.read(file).and_then(|t| parse::single_u64(&t));
        match d.version {
            Version::V1 => count("memory.failcnt").max(count("memory.memsw.failcnt")),
            Version::V2 => d
                .read("memory.events")
                .and_then(|t| parse::keyed(&t, "max")),
        }
    }
}

/// The caller's own cgroup directory in `dir`'s hierarchy, from parsed `/proc/self/cgroup`.
fn origin_of(dir: &CgroupDir, own: &[parse::ProcCgroup]) -> Option<PathBuf> {
    let line = own.iter().find(|l| match dir.version {
        Version::V2 => l.controllers.is_empty(),
        Version::V1 => dir
            .controllers
            .iter()
            .any(|c| l.controllers.iter().any(|n| n == c.name())),
    })?;
    // Paths are relative to the hierarchy's root; a mount of a subtree shows that subtree.
    let root = dir.mount_root.trim_end_matches('/');
    let relative = match line.path.strip_prefix(root) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
        _ => &line.path,
    };
    Some(dir.mount_point.join(relative.trim_start_matches('/')))
}

/// Moves the caller back, each hierarchy tried a few times; the first persistent failure is
/// returned after every hierarchy was tried.
/// The calling thread's id, from `/proc/thread-self` (a link to `<pid>/task/<tid>`).
fn thread_id() -> std::io::Result<String> {
    let link = fs::read_link("/proc/thread-self")?;
    link.file_name()
        .and_then(|n| n.to_str())
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_owned)
        .ok_or_else(|| std::io::Error::other(format!("unexpected link {}", link.display())))
}

fn move_back(origins: &[PathBuf], member_file: &str, member: &str) -> Result<(), IsolationError> {
    let mut first_error = None;
    for origin in origins {
        let file = origin.join(member_file);
        let mut outcome = Ok(());
        for _attempt in 0..3 {
            outcome = write_value(&file, member);
            if outcome.is_ok() {
                break;
            }
        }
        if let Err(source) = outcome
            && first_error.is_none()
        {
            first_error = Some(IsolationError::Restore {
                path: origin.clone(),
                source,
            });
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Raises a finite `pids.max` by the caller's thread count while the caller sits in the
/// container, so the spawn is not refused because of the caller's own threads.
struct PidsHeadroom<'a> {
    dir: Option<(&'a CgroupDir, String)>,
}

impl<'a> PidsHeadroom<'a> {
    /// Raises the limit by the threads about to move in: one, or all of the process's.
    fn raise(dir: Option<&'a CgroupDir>, one_thread: bool) -> PidsHeadroom<'a> {
        let raised = dir.and_then(|d| {
            let original = d.read("pids.max")?;
            let limit = parse::limit_or_max(&original)??;
            let threads = if one_thread {
                1
            } else {
                fs::read_to_string("/proc/self/status")
                    .ok()
                    .and_then(|t| parse::status_num(&t, "Threads"))
                    .unwrap_or(1)
            };
            let raised = limit.saturating_add(threads).to_string();
            match d.write("pids.max", &raised) {
                Ok(()) => Some((d, original.trim().to_owned())),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot raise pids.max for the spawn");
                    None
                }
            }
        });
        PidsHeadroom { dir: raised }
    }

    /// Puts the limit back (before the caller leaves: a limit below the current count is
    /// allowed and only blocks further forks).
    fn restore(self) {
        if let Some((d, original)) = self.dir
            && let Err(e) = d.write("pids.max", &original)
        {
            tracing::error!(error = %e, "cannot restore pids.max after the spawn");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Version;

    fn dir(version: Version, mount: &str, root: &str, cs: &[Controller]) -> CgroupDir {
        CgroupDir {
            version,
            path: PathBuf::from(mount).join("agora/c"),
            mount_point: PathBuf::from(mount),
            mount_root: root.to_owned(),
            controllers: cs.to_vec(),
        }
    }

    #[test]
    fn origin_from_proc_self_cgroup() {
        let own = parse::proc_cgroup(
            "5:cpu,cpuacct:/sys.slice\n4:memory:/user/x\n1:name=systemd:/\n0::/init.scope\n",
        );
        let cpu = dir(V1, "/cg/cpu,cpuacct", "/", &[Controller::Cpuacct]);
        assert_eq!(
            origin_of(&cpu, &own),
            Some(PathBuf::from("/cg/cpu,cpuacct/sys.slice"))
        );
        let mem = dir(V1, "/cg/memory", "/user", &[Controller::Memory]);
        assert_eq!(origin_of(&mem, &own), Some(PathBuf::from("/cg/memory/x")));
        let v2 = dir(Version::V2, "/cg2", "/", &[Controller::Pids]);
        assert_eq!(origin_of(&v2, &own), Some(PathBuf::from("/cg2/init.scope")));
        let pids = dir(V1, "/cg/pids", "/", &[Controller::Pids]);
        assert_eq!(origin_of(&pids, &own), None);
        let root = parse::proc_cgroup("3:pids:/\n");
        assert_eq!(origin_of(&pids, &root), Some(PathBuf::from("/cg/pids")));
    }

    const V1: Version = Version::V1;
}
