//! Posix isolation: no enforcement, membership by registered pid and its process group.

mod common;
use common::wait_with_deadline;

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use agora_isolation::{IsolationConfig, Isolator, Limits};

#[test]
fn posix_container_tracks_and_kills_its_process_group() {
    let iso = Isolator::posix();
    assert!(!iso.uses_cgroups());
    assert!(iso.containers().is_empty());
    let limits = Limits {
        cpus: 0.5,
        mem_bytes: Some(64 << 20),
        pids_max: None,
    };
    let c = iso.create("posix-1", &limits).expect("create");
    assert!(c.cgroup_paths().is_empty());
    // A shell in its own process group with a background child: both belong to the container.
    let mut shell = c
        .spawn_inside(|| {
            Command::new("sh")
                .args(["-c", "sleep 60 & wait"])
                .process_group(0)
                .spawn()
        })
        .expect("spawn");
    c.add_process(shell.id()).expect("register");

    let start = Instant::now();
    let mut pids = c.pids();
    for _ in 0..1000 {
        if pids.len() >= 2 || start.elapsed() > Duration::from_secs(10) {
            break;
        }
        thread::sleep(Duration::from_millis(5));
        pids = c.pids();
    }
    assert!(pids.contains(&shell.id()) && pids.len() >= 2, "{pids:?}");

    let s = c.stats();
    assert!(s.processes.is_some_and(|n| n >= 2), "{s:?}");
    assert_eq!(s.cpus_limit, Some(0.5));
    assert_eq!(s.mem_limit_bytes, Some(64 << 20));
    assert!(s.mem_rss_bytes.is_some_and(|r| r > 0));
    assert!(!c.oom_killed());

    c.destroy().expect("destroy");
    assert_eq!(
        wait_with_deadline(&mut shell, Duration::from_secs(10)).signal(),
        Some(9)
    );
}

#[test]
fn config_without_cgroups_is_posix() {
    let config = IsolationConfig::from_isolation("posix/cpu,posix/mem,disk/du").expect("valid");
    let iso = Isolator::new(config).expect("posix needs nothing");
    assert!(!iso.uses_cgroups());
    assert!(iso.create("a/b", &Limits::default()).is_err());
    assert!(
        Isolator::new(IsolationConfig {
            cgroups_root: "../x".to_owned(),
            ..IsolationConfig::default()
        })
        .is_err()
    );
}
