//! Real-cgroup tests: run as root on a machine with cgroups (CI: v1 controllers plus a cgroup2
//! mount with only hugetlb). Tests are serialised, since `spawn_inside` moves the calling
//! thread (v1) or the whole test process (v2), and each uses its own cgroups root, removed at
//! the end.

mod common;
use common::wait_with_deadline;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use agora_isolation::{Container, IsolationConfig, IsolationError, Isolator, Isolators, Limits};

const MIB: u64 = 1024 * 1024;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

fn root() -> String {
    format!("agora-test-{}", std::process::id())
}

fn isolator(isolation: &str, enable_cfs: bool) -> Isolator {
    Isolator::new(IsolationConfig {
        isolators: Isolators::parse(isolation).expect("valid isolation"),
        cgroups_root: root(),
        enable_cfs,
    })
    .expect("cgroups usable (the tests run as root)")
}

fn id(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

/// Destroys the container when the test ends, failed or not, then removes the test's cgroups
/// root where it is empty.
struct Guard {
    container: Option<Container>,
    roots: Vec<PathBuf>,
}

impl Guard {
    fn new(isolator: &Isolator, container: Container) -> Guard {
        Guard {
            container: Some(container),
            roots: isolator.roots(),
        }
    }

    fn get(&self) -> &Container {
        self.container.as_ref().expect("not yet destroyed")
    }

    fn destroy(&mut self) -> Result<(), IsolationError> {
        match self.container.take() {
            Some(c) => c.destroy(),
            None => Ok(()),
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(e) = self.destroy() {
            eprintln!("cleanup: {e}");
        }
        for root in &self.roots {
            // Fails while another container of this test still lives there; its guard retries.
            let _ = fs::remove_dir(root);
        }
    }
}

fn sleeper(container: &Container) -> Child {
    container
        .spawn_inside(|| Command::new("sleep").arg("60").spawn())
        .expect("spawn sleep")
}

#[test]
fn memory_limit_oom_kills_only_the_offender() {
    let _serial = serial();
    let iso = isolator("cgroups/all", false);
    let limits = |mem| Limits {
        cpus: 1.0,
        mem_bytes: Some(mem),
        pids_max: None,
    };
    let hog = Guard::new(
        &iso,
        iso.create(&id("oom"), &limits(32 * MIB)).expect("create"),
    );
    let calm = Guard::new(
        &iso,
        iso.create(&id("calm"), &limits(64 * MIB)).expect("create"),
    );
    let mut neighbour = sleeper(calm.get());

    let mut dd = hog
        .get()
        .spawn_inside(|| {
            Command::new("dd")
                .args(["if=/dev/zero", "of=/dev/null", "bs=200M", "count=1"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
        })
        .expect("spawn dd");
    let status = wait_with_deadline(&mut dd, Duration::from_secs(30));
    assert_eq!(status.signal(), Some(9), "dd must be SIGKILLed: {status:?}");
    assert!(hog.get().oom_killed());
    // Readable; recent kernels do not always count failures of a v1 limit, so not asserted > 0.
    assert!(hog.get().mem_failcnt().is_some());

    assert!(
        neighbour.try_wait().expect("try_wait").is_none(),
        "neighbour died"
    );
    assert!(!calm.get().oom_killed());
    assert_eq!(calm.get().pids(), vec![neighbour.id()]);

    drop(calm);
    let status = wait_with_deadline(&mut neighbour, Duration::from_secs(10));
    assert_eq!(status.signal(), Some(9));
}

#[test]
fn cfs_quota_caps_a_busy_loop() {
    let _serial = serial();
    let iso = isolator("cgroups/cpu", true);
    let limits = Limits {
        cpus: 0.5,
        mem_bytes: None,
        pids_max: None,
    };
    let c = Guard::new(&iso, iso.create(&id("cfs"), &limits).expect("create"));
    let mut busy = c
        .get()
        .spawn_inside(|| {
            Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .spawn()
        })
        .expect("spawn busy loop");

    // Let the loop be runnable for enough CFS periods (the deadline only
    // guards against a loop that never runs).
    let deadline = Instant::now() + Duration::from_secs(60);
    let stats = loop {
        let stats = c.get().stats();
        if stats.cpus_nr_periods.is_some_and(|n| n >= 20) {
            break stats;
        }
        assert!(
            Instant::now() < deadline,
            "the busy loop was not runnable for 20 periods: {stats:?}"
        );
        thread::sleep(Duration::from_millis(20));
    };
    let used = stats.cpus_user_time_secs.expect("user time")
        + stats.cpus_system_time_secs.expect("system time");
    let periods = stats.cpus_nr_periods.expect("periods");
    // The quota's rule, whatever the machine's load: at most 0.5 CPU x 100 ms
    // in each period the loop was runnable in. Two periods more because usage
    // and periods are read from two files, plus the 10 ms ticks user and
    // system time are counted in.
    let quota_secs = 0.5 * agora_isolation::CFS_PERIOD_US as f64 / 1e6;
    let allowed = quota_secs * (periods + 2) as f64 + 0.02;
    eprintln!("busy loop: {used:.3} cpu-s in {periods} periods (allowed {allowed:.3}); {stats:?}");
    assert!(
        used <= allowed,
        "{used} cpu-s in {periods} periods with a 0.5 quota"
    );
    assert!(used > 0.0, "the loop never ran: {stats:?}");
    assert!(stats.cpus_nr_throttled.is_some(), "{stats:?}");
    assert_eq!(stats.cpus_limit, Some(0.5));

    let mut c = c;
    c.destroy().expect("destroy");
    assert_eq!(
        wait_with_deadline(&mut busy, Duration::from_secs(10)).signal(),
        Some(9)
    );
}

#[test]
fn pids_limit_contains_a_fork_bomb_and_kill_all_ends_it() {
    let _serial = serial();
    let iso = isolator("cgroups/pids", false);
    let limits = Limits {
        cpus: 1.0,
        mem_bytes: None,
        pids_max: Some(16),
    };
    let container_id = id("bomb");
    let mut c = Guard::new(&iso, iso.create(&container_id, &limits).expect("create"));
    let paths = c.get().cgroup_paths();
    let pids_current = paths
        .iter()
        .map(|p| p.join("pids.current"))
        .find(|p| p.exists())
        .expect("a pids cgroup");

    let mut bomb = c
        .get()
        .spawn_inside(|| {
            Command::new("sh")
                .args(["-c", "f(){ f|f& sleep 5; }; f"])
                .stderr(Stdio::null())
                .spawn()
        })
        .expect("spawn fork bomb");

    let mut seen = BTreeSet::new();
    let mut most = 0;
    let start = Instant::now();
    // Sample for at least 800 ms, and until the bomb has forked (it may be
    // slow to start on a loaded machine), within a 10 s deadline.
    for _ in 0..10_000 {
        let sampled_enough = start.elapsed() > Duration::from_millis(800) && seen.len() >= 2;
        if sampled_enough || start.elapsed() > Duration::from_secs(10) {
            break;
        }
        let pids = c.get().pids();
        let current: usize = fs::read_to_string(&pids_current)
            .expect("pids.current")
            .trim()
            .parse()
            .expect("number");
        most = most.max(current).max(pids.len());
        seen.extend(pids);
        thread::sleep(Duration::from_millis(2));
    }
    eprintln!(
        "fork bomb: at most {most} tasks, {} distinct pids seen",
        seen.len()
    );
    assert!(most <= 16, "{most} tasks with pids.max 16");
    assert!(seen.len() >= 2, "the bomb did not fork: {seen:?}");

    c.get().kill_all(Duration::from_secs(10)).expect("kill_all");
    assert!(c.get().pids().is_empty());
    c.destroy().expect("destroy");
    for p in &paths {
        assert!(!p.exists(), "{} left behind", p.display());
    }
    wait_with_deadline(&mut bomb, Duration::from_secs(10));
    for pid in seen {
        let alive = fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
        });
        // A live process with this pid must be an unrelated one that reused it.
        let ours = fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .is_ok_and(|s| s.contains(&container_id));
        assert!(!(alive && ours), "pid {pid} of the fork bomb survived");
    }
}

#[test]
fn process_starts_inside_and_caller_returns() {
    let _serial = serial();
    let iso = isolator("cgroups/all", true);
    let limits = Limits {
        cpus: 1.0,
        mem_bytes: Some(128 * MIB),
        pids_max: Some(64),
    };
    let container_id = id("inside");
    let c = Guard::new(&iso, iso.create(&container_id, &limits).expect("create"));
    let paths = c.get().cgroup_paths();
    let before = fs::read_to_string("/proc/self/cgroup").expect("own cgroups");

    // `cat` reports its own cgroups as soon as it runs.
    let out = c
        .get()
        .spawn_inside(|| {
            Command::new("cat")
                .arg("/proc/self/cgroup")
                .stdout(Stdio::piped())
                .spawn()
        })
        .expect("spawn cat")
        .wait_with_output()
        .expect("cat output");
    let after = fs::read_to_string("/proc/self/cgroup").expect("own cgroups");
    assert_eq!(before, after, "the caller is back in its cgroups");
    let seen = String::from_utf8_lossy(&out.stdout);
    let suffix = format!("/{}/{container_id}", root());
    let inside = seen.lines().filter(|l| l.ends_with(&suffix)).count();
    assert!(inside >= paths.len(), "cat ran in:\n{seen}");

    // A failing or panicking spawn leaves the caller where it was, too.
    let failed = c
        .get()
        .spawn_inside(|| Command::new("/nonexistent/agora").spawn());
    assert!(
        matches!(failed, Err(IsolationError::Spawn(_))),
        "{failed:?}"
    );
    assert_eq!(
        fs::read_to_string("/proc/self/cgroup").expect("own"),
        before
    );
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        c.get()
            .spawn_inside(|| -> std::io::Result<()> { panic!("spawn closure panics") })
    }));
    assert!(panicked.is_err());
    assert_eq!(
        fs::read_to_string("/proc/self/cgroup").expect("own"),
        before
    );

    let mut child = sleeper(c.get());
    c.get()
        .add_process(child.id())
        .expect("add_process of a member");
    let cgroups = fs::read_to_string(format!("/proc/{}/cgroup", child.id())).expect("cgroup");
    assert!(cgroups.lines().filter(|l| l.ends_with(&suffix)).count() >= paths.len());
    assert_eq!(c.get().pids(), vec![child.id()]);
    assert_eq!(
        fs::read_to_string("/proc/self/cgroup").expect("own"),
        before
    );
    drop(c);
    assert_eq!(
        wait_with_deadline(&mut child, Duration::from_secs(10)).signal(),
        Some(9)
    );
    for p in &paths {
        assert!(!p.exists(), "{} left behind", p.display());
    }
}

#[test]
fn stats_update_open_and_list() {
    let _serial = serial();
    let iso = isolator("cgroups/all", true);
    let limits = Limits {
        cpus: 0.25,
        mem_bytes: Some(64 * MIB),
        pids_max: Some(32),
    };
    let container_id = id("stats");
    let c = Guard::new(&iso, iso.create(&container_id, &limits).expect("create"));
    assert!(matches!(
        iso.create(&container_id, &limits),
        Err(IsolationError::AlreadyExists(_))
    ));
    assert!(iso.create("../escape", &limits).is_err());
    let mut child = sleeper(c.get());

    let s = c.get().stats();
    assert!(s.processes.is_some_and(|n| n >= 1), "{s:?}");
    assert!(s.threads.is_some_and(|n| n >= 1), "{s:?}");
    assert_eq!(s.mem_limit_bytes, Some(64 * MIB));
    assert_eq!(s.cpus_limit, Some(0.25));
    assert!(s.mem_total_bytes.is_some() && s.mem_rss_bytes.is_some());
    assert!(s.cpus_user_time_secs.is_some() && s.timestamp > 0.0);
    assert!(!c.get().oom_killed());

    let bigger = Limits {
        mem_bytes: Some(128 * MIB),
        ..limits
    };
    iso.update(c.get(), &bigger).expect("update");
    assert_eq!(c.get().stats().mem_limit_bytes, Some(128 * MIB));
    let smaller = Limits {
        mem_bytes: Some(48 * MIB),
        ..limits
    };
    iso.update(c.get(), &smaller).expect("update");
    assert_eq!(c.get().stats().mem_limit_bytes, Some(48 * MIB));

    assert!(iso.containers().contains(&container_id));
    let reopened = iso.open(&container_id).expect("open");
    let s = reopened.stats();
    assert_eq!(s.mem_limit_bytes, Some(48 * MIB));
    assert_eq!(s.cpus_limit, Some(0.25));
    assert_eq!(reopened.pids(), vec![child.id()]);
    let json = serde_json::to_value(&s).expect("json");
    assert!(json.get("mem_limit_bytes").is_some() && json.get("disk_used_bytes").is_none());

    reopened.destroy().expect("destroy reopened");
    assert_eq!(
        wait_with_deadline(&mut child, Duration::from_secs(10)).signal(),
        Some(9)
    );
    assert!(!iso.containers().contains(&container_id));
    assert!(matches!(
        iso.open(&container_id),
        Err(IsolationError::NotFound(_))
    ));
    drop(c);
}

/// The cgroup path of `file`'s memory line (v1) or unified line (v2).
fn memory_cgroup(file: &str) -> String {
    let text = fs::read_to_string(file).expect("cgroup file");
    let v1 = text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == "memory")
            .then(|| path.to_owned())
    });
    v1.or_else(|| {
        text.lines()
            .find_map(|l| l.strip_prefix("0::").map(str::to_owned))
    })
    .expect("a memory or unified line")
}

#[test]
fn on_v1_only_the_spawning_thread_enters_the_container() {
    let _serial = serial();
    let iso = isolator("cgroups/mem", false);
    let container = Guard::new(
        &iso,
        iso.create(
            &id("thread"),
            &Limits {
                cpus: 1.0,
                mem_bytes: Some(32 * MIB),
                pids_max: None,
            },
        )
        .expect("create"),
    );
    let leader_before = memory_cgroup("/proc/self/cgroup");
    // A test runs on a thread of its own, never the process's first one.
    let (inside, leader_during) = container
        .get()
        .spawn_inside(|| {
            Ok((
                memory_cgroup("/proc/thread-self/cgroup"),
                memory_cgroup("/proc/self/cgroup"),
            ))
        })
        .expect("spawn_inside");
    assert!(
        inside.ends_with(&id("thread")),
        "the spawning thread is inside: {inside}"
    );
    let v1 = fs::read_to_string("/proc/self/cgroup")
        .expect("cgroup file")
        .lines()
        .any(|l| {
            l.split(':')
                .nth(1)
                .is_some_and(|c| c.split(',').any(|c| c == "memory"))
        });
    if v1 {
        assert_eq!(
            leader_during, leader_before,
            "the rest of the process stays out"
        );
    } else {
        assert_eq!(leader_during, inside, "v2 moves the whole process");
    }
    assert_eq!(
        memory_cgroup("/proc/thread-self/cgroup"),
        leader_before,
        "back out"
    );
}
