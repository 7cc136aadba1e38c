//! What isolation reads of /proc: a posix container's members and their
//! CPU, thread and memory totals (the cgroup-less fallback of statistics).

use std::fs;

use crate::parse::{self, ProcStat};

/// Sums over processes read from /proc.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProcTotals {
    /// User and system CPU time, in clock ticks (`USER_HZ`).
    pub(crate) utime: u64,
    pub(crate) stime: u64,
    pub(crate) threads: u64,
    /// Resident set size, in bytes.
    pub(crate) rss: u64,
}

impl ProcTotals {
    pub(crate) fn of(pids: &[u32]) -> ProcTotals {
        let mut t = ProcTotals::default();
        for &pid in pids {
            let Some(stat) = read_stat(pid) else { continue };
            t.utime = t.utime.saturating_add(stat.utime);
            t.stime = t.stime.saturating_add(stat.stime);
            t.threads = t.threads.saturating_add(stat.num_threads);
            let rss = fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| parse::status_kb(&s, "VmRSS"));
            t.rss = t.rss.saturating_add(rss.unwrap_or(0));
        }
        t
    }
}

fn read_stat(pid: u32) -> Option<ProcStat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse::proc_stat(&text)
}

/// Live members of a posix container: the registered pids and every process in a process group
/// or session one of them leads, zombies excluded, sorted.
pub(crate) fn posix_members(tracked: &[u32]) -> Vec<u32> {
    if tracked.is_empty() {
        return Vec::new();
    }
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut members: Vec<u32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            read_stat(pid).is_some_and(|s| {
                s.state != 'Z'
                    && (tracked.contains(&pid)
                        || tracked.contains(&s.pgrp)
                        || tracked.contains(&s.session))
            })
        })
        .collect();
    members.sort_unstable();
    members
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posix_stats_of_this_process() {
        let me = std::process::id();
        let members = posix_members(&[me]);
        assert!(members.contains(&me), "{members:?}");
        let t = ProcTotals::of(&[me]);
        assert!(t.threads >= 1 && t.rss > 0, "{t:?}");
        assert!(posix_members(&[]).is_empty());
    }
}
