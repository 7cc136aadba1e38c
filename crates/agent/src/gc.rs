//! Sandbox garbage collection and the work dir's disk, as Mesos' agent
//! does it (`--gc_delay`, `--gc_disk_headroom`).
//!
//! A sandbox is scheduled for removal when its executor run is over (or when
//! it is found on disk at start without a live executor). It is removed once
//! it is older than `gc_delay * max(0, 1 - gc_disk_headroom - disk usage)`:
//! a week on an empty disk, sooner as the disk fills, at once when usage
//! passes `1 - headroom`. [`Gc`] is the pure policy (the time and the usage
//! are inputs); the measuring and removing functions below do blocking I/O
//! and are run by the shell on a worker, never on its event loop.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Mesos' `--gc_delay` default: one week.
pub const DEFAULT_GC_DELAY: Duration = Duration::from_secs(7 * 24 * 3600);

/// Mesos' `--gc_disk_headroom` default.
pub const DEFAULT_GC_DISK_HEADROOM: f64 = 0.1;

/// The disk counts as full below this much free space (or 1 % of the
/// filesystem, when that is less): no new sandbox is started.
pub const DISK_FULL_BELOW_BYTES: u64 = 64 << 20;

/// When sandboxes go.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GcPolicy {
    pub delay: Duration,
    /// Fraction of the disk kept free: in `[0, 1]`.
    pub disk_headroom: f64,
}

impl Default for GcPolicy {
    fn default() -> Self {
        Self {
            delay: DEFAULT_GC_DELAY,
            disk_headroom: DEFAULT_GC_DISK_HEADROOM,
        }
    }
}

impl GcPolicy {
    /// How old a scheduled sandbox may get at this disk usage (a fraction in
    /// `[0, 1]`; anything else, NaN included, is clamped).
    pub fn max_age(&self, disk_usage: f64) -> Duration {
        let usage = if disk_usage.is_nan() {
            0.0
        } else {
            disk_usage.clamp(0.0, 1.0)
        };
        let factor = (1.0 - self.disk_headroom - usage).clamp(0.0, 1.0);
        self.delay.mul_f64(factor)
    }
}

/// The sandboxes waiting for removal, and since when.
#[derive(Debug, Default)]
pub struct Gc {
    policy: GcPolicy,
    scheduled: BTreeMap<PathBuf, SystemTime>,
    disk_usage: f64,
}

impl Gc {
    pub fn new(policy: GcPolicy) -> Self {
        Self {
            policy,
            scheduled: BTreeMap::new(),
            disk_usage: 0.0,
        }
    }

    /// Schedules `path`, its age counted from `since`; a path already
    /// scheduled keeps its earlier time.
    pub fn schedule(&mut self, path: PathBuf, since: SystemTime) {
        self.scheduled.entry(path).or_insert(since);
    }

    /// Takes `path` off the schedule (it is in use again).
    pub fn unschedule(&mut self, path: &Path) -> bool {
        self.scheduled.remove(path).is_some()
    }

    /// The latest measured usage of the work dir's filesystem.
    pub fn set_disk_usage(&mut self, usage: f64) {
        self.disk_usage = usage;
    }

    pub fn scheduled(&self) -> usize {
        self.scheduled.len()
    }

    /// The sandboxes old enough to go at `now`, taken off the schedule.
    pub fn due(&mut self, now: SystemTime) -> Vec<PathBuf> {
        let max_age = self.policy.max_age(self.disk_usage);
        let due: Vec<PathBuf> = self
            .scheduled
            .iter()
            .filter(|(_, since)| now.duration_since(**since).unwrap_or_default() >= max_age)
            .map(|(path, _)| path.clone())
            .collect();
        for path in &due {
            self.scheduled.remove(path);
        }
        due
    }
}

/// The work dir's filesystem, as `statvfs` sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct DiskSpace {
    pub total_bytes: u64,
    /// Free for unprivileged users (what a task can still write).
    pub available_bytes: u64,
    pub used_bytes: u64,
}

impl DiskSpace {
    /// Used fraction, as Mesos computes it for the gc (`0` when unknown).
    pub fn usage(&self) -> f64 {
        if self.total_bytes == 0 {
            return 0.0;
        }
        self.used_bytes as f64 / self.total_bytes as f64
    }

    /// Too little left to start a sandbox in.
    pub fn is_full(&self) -> bool {
        if self.total_bytes == 0 {
            return false;
        }
        let floor = DISK_FULL_BELOW_BYTES.min(self.total_bytes / 100);
        self.available_bytes < floor.max(1)
    }
}

/// Measures the filesystem holding `path` (blocking).
/// How the agent measures its work dir's file system: [`measure`] in
/// production; tests give a fixed answer so that no real measure races theirs.
pub type DiskProbe = fn(&Path) -> io::Result<DiskSpace>;

pub fn measure(path: &Path) -> io::Result<DiskSpace> {
    let s = rustix::fs::statvfs(path)?;
    let unit = s.f_frsize;
    Ok(DiskSpace {
        total_bytes: s.f_blocks.saturating_mul(unit),
        available_bytes: s.f_bavail.saturating_mul(unit),
        used_bytes: s.f_blocks.saturating_sub(s.f_bfree).saturating_mul(unit),
    })
}

/// Removes a sandbox, then the directories above it that it leaves empty,
/// up to (not including) `<work_dir>/slaves` (blocking).
pub fn remove_sandbox(work_dir: &Path, sandbox: &Path) -> io::Result<()> {
    let slaves = work_dir.join("slaves");
    if !sandbox.starts_with(&slaves) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a sandbox under the work dir",
        ));
    }
    match std::fs::remove_dir_all(sandbox) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut dir = sandbox.parent();
    while let Some(d) = dir {
        if d == slaves || !d.starts_with(&slaves) || std::fs::remove_dir(d).is_err() {
            break; // not empty (or not ours): stop climbing
        }
        dir = d.parent();
    }
    Ok(())
}

/// Every executor run's sandbox under `<work_dir>/slaves` with its last
/// modification time: `slaves/*/frameworks/*/executors/*/runs/*` (blocking;
/// a fixed depth, so nothing a task wrote is walked).
pub fn find_sandboxes(work_dir: &Path) -> Vec<(PathBuf, SystemTime)> {
    const LEVELS: [Option<&str>; 7] = [
        None,
        Some("frameworks"),
        None,
        Some("executors"),
        None,
        Some("runs"),
        None,
    ];
    let mut found = vec![work_dir.join("slaves")];
    for level in LEVELS {
        found = match level {
            Some(name) => found.into_iter().map(|d| d.join(name)).collect(),
            None => found.iter().flat_map(|d| subdirs(d)).collect(),
        };
    }
    found
        .into_iter()
        .filter_map(|path| {
            let modified = std::fs::symlink_metadata(&path).ok()?.modified().ok()?;
            Some((path, modified))
        })
        .collect()
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn the_delay_shrinks_as_the_disk_fills() {
        let policy = GcPolicy {
            delay: 100 * HOUR,
            disk_headroom: 0.1,
        };
        assert_eq!(policy.max_age(0.0), 90 * HOUR);
        assert_eq!(policy.max_age(0.5), 40 * HOUR);
        assert_eq!(policy.max_age(0.9), Duration::ZERO);
        assert_eq!(policy.max_age(0.95), Duration::ZERO);
        // Nonsense measures never make it longer than the delay nor panic.
        assert_eq!(policy.max_age(-3.0), 90 * HOUR);
        assert_eq!(policy.max_age(f64::NAN), 90 * HOUR);
        assert_eq!(policy.max_age(f64::INFINITY), Duration::ZERO);
    }

    #[test]
    fn sandboxes_are_due_once_older_than_the_scaled_delay() {
        let t0 = SystemTime::UNIX_EPOCH + 1000 * HOUR;
        let mut gc = Gc::new(GcPolicy {
            delay: 10 * HOUR,
            disk_headroom: 0.0,
        });
        gc.schedule("/w/slaves/a".into(), t0);
        gc.schedule("/w/slaves/b".into(), t0 + 5 * HOUR);
        // Rescheduling keeps the first time.
        gc.schedule("/w/slaves/a".into(), t0 + 9 * HOUR);
        assert!(gc.due(t0 + 9 * HOUR).is_empty());
        assert_eq!(gc.due(t0 + 10 * HOUR), vec![PathBuf::from("/w/slaves/a")]);
        assert_eq!(gc.scheduled(), 1);
        // Half the disk used: half the delay.
        gc.set_disk_usage(0.5);
        assert_eq!(gc.due(t0 + 10 * HOUR), vec![PathBuf::from("/w/slaves/b")]);
        // A clock that went back keeps a sandbox, it does not panic.
        gc.schedule("/w/slaves/c".into(), t0 + 100 * HOUR);
        assert!(gc.due(t0).is_empty());
        assert!(gc.unschedule(Path::new("/w/slaves/c")));
        assert_eq!(gc.scheduled(), 0);
    }

    #[test]
    fn a_disk_is_full_when_almost_nothing_is_available() {
        let gib = 1u64 << 30;
        let space = |available| DiskSpace {
            total_bytes: 100 * gib,
            available_bytes: available,
            used_bytes: 100 * gib - available,
        };
        assert!(!space(gib).is_full());
        assert!(space(1 << 20).is_full());
        assert!(space(0).is_full());
        // A tiny filesystem: 1 % of it is the floor.
        let tiny = DiskSpace {
            total_bytes: 100 << 20,
            available_bytes: 2 << 20,
            used_bytes: 98 << 20,
        };
        assert!(!tiny.is_full());
        assert!(!DiskSpace::default().is_full());
        assert!((space(50 * gib).usage() - 0.5).abs() < 1e-9);
    }

    #[test]
    fn sandboxes_are_found_and_removed_with_their_empty_parents() {
        let work = tempfile::tempdir().expect("tempdir");
        let run = |e: &str, r: &str| {
            work.path()
                .join(format!("slaves/a1/frameworks/f1/executors/{e}/runs/{r}"))
        };
        for (e, r) in [("e1", "r1"), ("e1", "r2"), ("e2", "r1")] {
            std::fs::create_dir_all(run(e, r).join("deep/er")).expect("mkdir");
            std::fs::write(run(e, r).join("stdout"), b"x").expect("write");
        }
        let mut found: Vec<PathBuf> = find_sandboxes(work.path())
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        found.sort();
        assert_eq!(
            found,
            vec![run("e1", "r1"), run("e1", "r2"), run("e2", "r1")]
        );
        remove_sandbox(work.path(), &run("e2", "r1")).expect("remove");
        assert!(
            !work
                .path()
                .join("slaves/a1/frameworks/f1/executors/e2")
                .exists()
        );
        remove_sandbox(work.path(), &run("e1", "r1")).expect("remove");
        assert!(run("e1", "r2").exists(), "a sibling run stays");
        remove_sandbox(work.path(), &run("e1", "r2")).expect("remove");
        assert!(!work.path().join("slaves/a1").exists());
        assert!(work.path().join("slaves").exists());
        assert!(remove_sandbox(work.path(), Path::new("/etc")).is_err());
        assert!(measure(work.path()).expect("statvfs").total_bytes > 0);
    }
}
