//! A process's CPU time and resident memory from `/proc`: the simulator
//! reports its own, and benchmarks read the master's the same way.

use std::time::Duration;

/// CPU time (user + system) and resident set size of one process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub cpu: Duration,
    pub rss_bytes: u64,
}

impl Usage {
    pub fn rss_mb(&self) -> f64 {
        self.rss_bytes as f64 / (1024.0 * 1024.0)
    }
}

/// This process's usage.
pub fn own() -> Option<Usage> {
    read("self")
}

/// The usage of process `pid`; `None` when it is gone or unreadable.
pub fn of(pid: u32) -> Option<Usage> {
    read(&pid.to_string())
}

fn read(which: &str) -> Option<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{which}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{which}/status")).ok()?;
    Some(Usage {
        cpu: cpu_from_stat(&stat, rustix::param::clock_ticks_per_second())?,
        rss_bytes: rss_from_status(&status)?,
    })
}

/// utime + stime (fields 14 and 15, after the parenthesised command name,
/// which may itself contain spaces and parentheses).
fn cpu_from_stat(stat: &str, ticks_per_second: u64) -> Option<Duration> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    let ticks = user + system;
    let per = ticks_per_second.max(1);
    Some(
        Duration::from_secs(ticks / per)
            + Duration::from_nanos((ticks % per) * 1_000_000_000 / per),
    )
}

/// The CPU time the whole machine spent busy since boot, every core
/// summed (`/proc/stat`): with [`of`] sampled at the same moments, what the
/// processes measured left to everything else.
pub fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    busy_from_stat(&stat, rustix::param::clock_ticks_per_second())
}

/// user + nice + system + irq + softirq + steal of the `cpu` line (idle
/// and iowait left out; guest time is counted in user already).
fn busy_from_stat(stat: &str, ticks_per_second: u64) -> Option<Duration> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let busy: u64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .map(|&i| ticks.get(i).copied().unwrap_or(0))
        .sum();
    let per = ticks_per_second.max(1);
    Some(Duration::from_secs(busy / per) + Duration::from_nanos((busy % per) * 1_000_000_000 / per))
}

fn rss_from_status(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_rss_are_read_from_procfs_text() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 130 0 0 20 0 3 0 1000 0 0";
        assert_eq!(cpu_from_stat(stat, 100), Some(Duration::from_millis(3800)));
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t  2048 kB\n";
        assert_eq!(rss_from_status(status), Some(2 * 1024 * 1024));
    }

    #[test]
    fn the_machines_busy_time_leaves_idle_and_iowait_out() {
        let stat = "cpu  100 20 30 5000 70 4 6 2 0 0\ncpu0 50 10 15 2500 35 2 3 1 0 0\n";
        // 100 + 20 + 30 + 4 + 6 + 2 ticks at 100 a second.
        assert_eq!(busy_from_stat(stat, 100), Some(Duration::from_millis(1620)));
        assert_eq!(busy_from_stat("cpu  1 2 x\n", 100), None);
        assert!(machine_busy().is_some_and(|busy| busy > Duration::ZERO));
    }

    #[test]
    fn this_process_has_a_usage() {
        let usage = own().expect("/proc/self is readable");
        assert!(usage.rss_bytes > 0, "{usage:?}");
    }
}
