//! Pure parsers for cgroupfs and procfs files. Garbage gives `None` or is skipped, never a
//! panic: these files come from the kernel but may be truncated, missing or from a kernel with
//! a different format.

/// A single unsigned integer (`pids.current`, `memory.usage_in_bytes`, ...).
pub(crate) fn single_u64(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// A v2 limit: `max` is `Some(None)`, a number is `Some(Some(n))`, garbage is `None`.
pub(crate) fn limit_or_max(text: &str) -> Option<Option<u64>> {
    match text.trim() {
        "max" => Some(None),
        other => other.parse().ok().map(Some),
    }
}

/// Value of `key` in a flat keyed file (`key value` lines: `cpu.stat`, `memory.stat`,
/// `cpuacct.stat`, `memory.events`, `memory.oom_control`).
pub(crate) fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        if parts.next()? != key {
            return None;
        }
        parts.next()?.parse().ok()
    })
}

/// Process or thread ids, one per line (`cgroup.procs`, `tasks`); garbage lines are skipped.
pub(crate) fn pid_list(text: &str) -> Vec<u32> {
    text.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// A v2 `cpu.max` value: (quota in µs or `None` for `max`, period in µs).
pub(crate) fn cpu_max(text: &str) -> Option<(Option<u64>, u64)> {
    let mut parts = text.split_whitespace();
    let quota = limit_or_max(parts.next()?)?;
    let period = parts.next()?.parse().ok()?;
    Some((quota, period))
}

/// One line of `/proc/<pid>/cgroup`: `hierarchy-id:controllers:path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcCgroup {
    /// Empty for the cgroup2 line (`0::/path`).
    pub(crate) controllers: Vec<String>,
    pub(crate) path: String,
}

/// Parses `/proc/<pid>/cgroup`; malformed lines are skipped.
pub(crate) fn proc_cgroup(text: &str) -> Vec<ProcCgroup> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            if !path.starts_with('/') {
                return None;
            }
            Some(ProcCgroup {
                controllers: controllers
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect(),
                path: path.to_owned(),
            })
        })
        .collect()
}

/// The fields of `/proc/<pid>/stat` this crate uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    pub(crate) state: char,
    pub(crate) ppid: u32,
    pub(crate) pgrp: u32,
    pub(crate) session: u32,
    /// In clock ticks (`USER_HZ`).
    pub(crate) utime: u64,
    pub(crate) stime: u64,
    pub(crate) num_threads: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) may hold spaces and parentheses, so
/// the fields are counted after its last `)`.
pub(crate) fn proc_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `fields[0]` is field 3 (state) of proc(5).
    let field = |n: usize| fields.get(n - 3).copied();
    let num = |n: usize| field(n)?.parse::<u64>().ok();
    let id = |n: usize| field(n)?.parse::<u32>().ok();
    Some(ProcStat {
        state: field(3)?.chars().next()?,
        ppid: id(4)?,
        pgrp: id(5)?,
        session: id(6)?,
        utime: num(14)?,
        stime: num(15)?,
        num_threads: num(20)?,
    })
}

/// A `kB` value from `/proc/<pid>/status` (e.g. `VmRSS`), in bytes.
pub(crate) fn status_kb(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        let mut parts = value.split_whitespace();
        let n: u64 = parts.next()?.parse().ok()?;
        match parts.next() {
            Some("kB") => n.checked_mul(1024),
            _ => None,
        }
    })
}

/// A plain number from `/proc/<pid>/status` (e.g. `Threads`).
pub(crate) fn status_num(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        value.trim().parse().ok()
    })
}

/// A v1 memory limit: values from 2^62 up mean "unlimited" (the kernel reports
/// `PAGE_COUNTER_MAX` pages rounded, 9223372036854771712 on 4 KiB pages).
pub(crate) fn v1_memory_limit(text: &str) -> Option<u64> {
    single_u64(text).filter(|&v| v < (1 << 62))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_limits() {
        assert_eq!(single_u64("42\n"), Some(42));
        assert_eq!(single_u64(""), None);
        assert_eq!(single_u64("-1"), None);
        assert_eq!(limit_or_max("max\n"), Some(None));
        assert_eq!(limit_or_max("33554432\n"), Some(Some(33554432)));
        assert_eq!(limit_or_max("x"), None);
        assert_eq!(v1_memory_limit("9223372036854771712\n"), None);
        assert_eq!(v1_memory_limit("33554432\n"), Some(33554432));
        assert_eq!(cpu_max("50000 100000\n"), Some((Some(50000), 100000)));
        assert_eq!(cpu_max("max 100000"), Some((None, 100000)));
        assert_eq!(cpu_max("max"), None);
        assert_eq!(cpu_max(""), None);
    }

    #[test]
    fn keyed_files() {
        let v1_cpu = "nr_periods 15\nnr_throttled 7\nthrottled_time 1234567\n";
        assert_eq!(keyed(v1_cpu, "nr_throttled"), Some(7));
        assert_eq!(keyed(v1_cpu, "throttled_time"), Some(1234567));
        let v2_cpu = "usage_usec 1000\nuser_usec 600\nsystem_usec 400\nnr_periods 3\n";
        assert_eq!(keyed(v2_cpu, "user_usec"), Some(600));
        assert_eq!(keyed(v2_cpu, "usage"), None);
        let acct = "user 150\nsystem 25\n";
        assert_eq!(keyed(acct, "system"), Some(25));
        let oom = "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n";
        assert_eq!(keyed(oom, "oom_kill"), Some(1));
        assert_eq!(keyed(oom, "oom_kill_disable"), Some(0));
        let events = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(keyed(events, "oom_kill"), Some(1));
        let stat = "cache 4096\nrss 8192\ntotal_rss 12288\n";
        assert_eq!(keyed(stat, "total_rss"), Some(12288));
        assert_eq!(keyed("garbage\nrss x\n\n", "rss"), None);
        assert_eq!(keyed("", "rss"), None);
    }

    #[test]
    fn pid_lists() {
        assert_eq!(pid_list("1\n22\nx\n\n333\n"), vec![1, 22, 333]);
        assert!(pid_list("").is_empty());
    }

    #[test]
    fn proc_cgroup_lines() {
        let text =
            "12:pids:/agora/c1\n4:cpu,cpuacct:/\n1:name=systemd:/user.slice\n0::/init.scope\nbad\n";
        let parsed = proc_cgroup(text);
        assert_eq!(parsed.len(), 4);
        assert_eq!(parsed[0].controllers, vec!["pids"]);
        assert_eq!(parsed[0].path, "/agora/c1");
        assert_eq!(parsed[1].controllers, vec!["cpu", "cpuacct"]);
        assert!(parsed[3].controllers.is_empty());
        assert_eq!(parsed[3].path, "/init.scope");
    }

    #[test]
    fn proc_stat_with_odd_command_name() {
        let text = "4242 (a b) c)) S 1 4242 4242 0 -1 4194304 100 0 0 0 \
                    250 30 0 0 20 0 3 0 12345 1000000 200 18446744073709551615\n";
        let s = proc_stat(text).expect("parses");
        assert_eq!(s.state, 'S');
        assert_eq!((s.ppid, s.pgrp, s.session), (1, 4242, 4242));
        assert_eq!((s.utime, s.stime, s.num_threads), (250, 30, 3));
        assert_eq!(proc_stat("4242 (x) S 1 2"), None);
        assert_eq!(proc_stat("no paren"), None);
        assert_eq!(proc_stat(""), None);
    }

    #[test]
    fn proc_status() {
        let text = "Name:\tsleep\nThreads:\t4\nVmRSS:\t    1024 kB\n";
        assert_eq!(status_kb(text, "VmRSS"), Some(1024 * 1024));
        assert_eq!(status_num(text, "Threads"), Some(4));
        assert_eq!(status_kb(text, "VmSwap"), None);
        assert_eq!(status_kb("VmRSS: 12\n", "VmRSS"), None);
        assert_eq!(status_num("Threads: many\n", "Threads"), None);
    }
}
