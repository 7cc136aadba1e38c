//! The cgroup v2 paths (moving in and out, `cgroup.kill`, `cgroup.freeze`, `cpu.stat`) on the
//! machine's cgroup2 mount, which needs no controller for them: on a hybrid machine (CI) the
//! unified hierarchy has none of ours, so `Isolator` never picks these paths there.

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::cgroupfs::CgroupDir;
use crate::container::{Backend, Container};
use crate::layout::{Controller, Version};

/// A parent cgroup for this test process under the cgroup2 mount, removed on drop.
struct Parent(PathBuf, PathBuf);

impl Parent {
    /// Fails without a cgroup2 mount: these tests could show nothing then.
    fn new(tag: &str) -> Parent {
        let layout = crate::layout::detect().expect("mountinfo");
        let (mount, root) = layout.v2.expect(
            "these tests need a cgroup2 mount: as root, `mkdir -p /sys/fs/cgroup/unified && \
             mount -t cgroup2 none /sys/fs/cgroup/unified` (as .ci/run does), then run the suite as root",
        );
        let parent = mount.join(format!("agora-unit-{tag}-{}", std::process::id()));
        fs::create_dir(&parent).expect("create the test's cgroup2 parent (run as root)");
        Parent(parent, mount.join(root.trim_start_matches('/')))
    }

    fn container(&self, id: &str) -> Container {
        let path = self.0.join(id);
        fs::create_dir(&path).expect("create container cgroup");
        let dir = CgroupDir {
            version: Version::V2,
            path,
            mount_point: self.1.clone(),
            mount_root: "/".to_owned(),
            controllers: vec![Controller::Cpuacct, Controller::Freezer],
        };
        Container::new(id, Backend::Cgroups(vec![dir]), None)
    }
}

impl Drop for Parent {
    /// On failure, kills what is left (`cgroup.kill` covers the subtree) and removes the
    /// cgroups, polling briefly while the killed processes are reaped.
    fn drop(&mut self) {
        if fs::read_dir(&self.0).is_ok_and(|mut d| d.any(|e| e.is_ok_and(|e| e.path().is_dir()))) {
            let _ = crate::cgroupfs::write_value(&self.0.join("cgroup.kill"), "1");
        }
        let start = Instant::now();
        for _ in 0..5000 {
            let _ = fs::remove_dir(self.0.join("c"));
            if fs::remove_dir(&self.0).is_ok() || start.elapsed() > Duration::from_secs(5) {
                break;
            }
            thread::sleep(Duration::from_millis(1));
        }
    }
}

/// The tests compare the process's own cgroups before and after, so they run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn wait_with_deadline(child: &mut Child, deadline: Duration) -> ExitStatus {
    let start = Instant::now();
    for _ in 0..100_000 {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(start.elapsed() < deadline, "child still running");
        thread::sleep(Duration::from_millis(5));
    }
    panic!("child still running");
}

fn check_kill(use_cgroup_kill: bool, tag: &str) {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let parent = Parent::new(tag);
    let c = parent.container("c");
    let before = fs::read_to_string("/proc/self/cgroup").expect("own cgroups");
    let mut child = c
        .spawn_inside(|| {
            Command::new("sh")
                .args(["-c", "sleep 60 & sleep 60 & while :; do :; done"])
                .spawn()
        })
        .expect("spawn inside v2 cgroup");
    assert_eq!(
        fs::read_to_string("/proc/self/cgroup").expect("own"),
        before
    );
    let start = Instant::now();
    for _ in 0..2000 {
        if c.pids().len() >= 3 || start.elapsed() > Duration::from_secs(10) {
            break;
        }
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(c.pids().len(), 3, "{:?}", c.pids());
    assert!(c.pids().contains(&child.id()));
    let s = c.stats();
    assert!(s.cpus_user_time_secs.is_some(), "{s:?}");
    assert_eq!(s.processes, Some(3));

    c.kill_all_with(Duration::from_secs(10), use_cgroup_kill)
        .expect("kill_all");
    assert!(c.pids().is_empty());
    assert_eq!(
        wait_with_deadline(&mut child, Duration::from_secs(10)).signal(),
        Some(9)
    );
    let path = c.cgroup_paths().remove(0);
    c.destroy().expect("destroy");
    assert!(!path.exists());
}

#[test]
fn v2_cgroup_kill() {
    check_kill(true, "kill");
}

#[test]
fn v2_freeze_and_signal() {
    check_kill(false, "freeze");
}
