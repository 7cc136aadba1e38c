//! Resource statistics in Mesos' `ResourceStatistics` shape, from cgroups or from /proc.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::cgroupfs::CgroupDir;
use crate::container::Container;
use crate::layout::{Controller, Version};
use crate::parse;
use crate::procfs::ProcTotals;

/// Clock ticks per second in /proc and `cpuacct.stat` (`USER_HZ`, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// Mesos' `ResourceStatistics` (the fields Agora fills). Unknown values are `None` and left out
/// of the JSON, as Mesos leaves unset optional fields out.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ResourceStatistics {
    /// Seconds since the epoch when the statistics were taken.
    pub timestamp: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processes: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus_user_time_secs: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus_system_time_secs: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus_limit: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus_nr_periods: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus_nr_throttled: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus_throttled_time_secs: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem_total_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem_rss_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem_cache_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem_limit_bytes: Option<u64>,
    /// Filled by the caller (`disk/du`: `disk_usage` of the sandbox, and its disk resource).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_limit_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_used_bytes: Option<u64>,
}

impl Container {
    /// Statistics of the container now. Cgroup files where the container has the controller
    /// (v1: `cpuacct.stat`, `cpu.stat`, `memory.usage_in_bytes`, `memory.stat`; v2: `cpu.stat`,
    /// `memory.current`, `memory.stat`); /proc summed over the container's processes for what
    /// it lacks (and for posix containers). Limits are the ones applied through this handle, or
    /// read back from the cgroup for an opened container.
    pub fn stats(&self) -> ResourceStatistics {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let pids = self.pids();
        let mut s = ResourceStatistics {
            timestamp,
            processes: u32::try_from(pids.len()).ok(),
            ..ResourceStatistics::default()
        };
        let mut procs: Option<ProcTotals> = None;
        let mut totals = || *procs.get_or_insert_with(|| ProcTotals::of(&pids));

        s.threads = self
            .dirs()
            .first()
            .and_then(thread_count)
            .or_else(|| u32::try_from(totals().threads).ok());

        match self.dir(Controller::Cpuacct) {
            Some(d) => cpu_usage(d, &mut s),
            None => {
                let t = totals();
                s.cpus_user_time_secs = Some(t.utime as f64 / USER_HZ);
                s.cpus_system_time_secs = Some(t.stime as f64 / USER_HZ);
            }
        }
        if let Some(d) = self.dir(Controller::Cpu) {
            cpu_throttling(d, &mut s);
        }
        match self.dir(Controller::Memory) {
            Some(d) => memory_usage(d, &mut s),
            None => s.mem_rss_bytes = Some(totals().rss),
        }

        let limits = self.limits();
        s.cpus_limit = limits
            .map(|l| l.cpus)
            .or_else(|| self.dir(Controller::Cpu).and_then(cpus_limit_of));
        s.mem_limit_bytes = match (self.dir(Controller::Memory), limits) {
            (Some(d), _) => memory_limit_of(d),
            (None, Some(l)) => l.mem_bytes,
            (None, None) => None,
        };
        s
    }
}

fn thread_count(d: &CgroupDir) -> Option<u32> {
    let file = match d.version {
        Version::V1 => "tasks",
        Version::V2 => "cgroup.threads",
    };
    let text = d.read(file)?;
    u32::try_from(parse::pid_list(&text).len()).ok()
}

fn cpu_usage(d: &CgroupDir, s: &mut ResourceStatistics) {
    match d.version {
        Version::V1 => {
            let text = d.read("cpuacct.stat");
            let ticks = |key| text.as_deref().and_then(|t| parse::keyed(t, key));
            s.cpus_user_time_secs = ticks("user").map(|t| t as f64 / USER_HZ);
            s.cpus_system_time_secs = ticks("system").map(|t| t as f64 / USER_HZ);
        }
        Version::V2 => {
            let text = d.read("cpu.stat");
            let usec = |key| text.as_deref().and_then(|t| parse::keyed(t, key));
            s.cpus_user_time_secs = usec("user_usec").map(|u| u as f64 / 1e6);
            s.cpus_system_time_secs = usec("system_usec").map(|u| u as f64 / 1e6);
        }
    }
}

fn cpu_throttling(d: &CgroupDir, s: &mut ResourceStatistics) {
    let Some(text) = d.read("cpu.stat") else {
        return;
    };
    s.cpus_nr_periods = parse::keyed(&text, "nr_periods");
    s.cpus_nr_throttled = parse::keyed(&text, "nr_throttled");
    s.cpus_throttled_time_secs = match d.version {
        Version::V1 => parse::keyed(&text, "throttled_time").map(|ns| ns as f64 / 1e9),
        Version::V2 => parse::keyed(&text, "throttled_usec").map(|us| us as f64 / 1e6),
    };
}

fn memory_usage(d: &CgroupDir, s: &mut ResourceStatistics) {
    let stat = d.read("memory.stat").unwrap_or_default();
    match d.version {
        Version::V1 => {
            s.mem_total_bytes = d
                .read("memory.usage_in_bytes")
                .and_then(|t| parse::single_u64(&t));
            s.mem_rss_bytes =
                parse::keyed(&stat, "total_rss").or_else(|| parse::keyed(&stat, "rss"));
            s.mem_cache_bytes =
                parse::keyed(&stat, "total_cache").or_else(|| parse::keyed(&stat, "cache"));
        }
        Version::V2 => {
            s.mem_total_bytes = d.read("memory.current").and_then(|t| parse::single_u64(&t));
            s.mem_rss_bytes = parse::keyed(&stat, "anon");
            s.mem_cache_bytes = parse::keyed(&stat, "file");
        }
    }
}

fn memory_limit_of(d: &CgroupDir) -> Option<u64> {
    match d.version {
        Version::V1 => d
            .read("memory.limit_in_bytes")
            .and_then(|t| parse::v1_memory_limit(&t)),
        Version::V2 => d
            .read("memory.max")
            .and_then(|t| parse::limit_or_max(&t))
            .flatten(),
    }
}

/// The cpu limit a cgroup expresses: the CFS quota when set, else shares / 1024.
fn cpus_limit_of(d: &CgroupDir) -> Option<f64> {
    match d.version {
        Version::V1 => {
            let quota = d
                .read("cpu.cfs_quota_us")
                .and_then(|t| t.trim().parse::<i64>().ok());
            let period = d
                .read("cpu.cfs_period_us")
                .and_then(|t| parse::single_u64(&t));
            match (quota, period) {
                (Some(q), Some(p)) if q > 0 && p > 0 => Some(q as f64 / p as f64),
                _ => d
                    .read("cpu.shares")
                    .and_then(|t| parse::single_u64(&t))
                    .map(|s| s as f64 / 1024.0),
            }
        }
        Version::V2 => match d.read("cpu.max").and_then(|t| parse::cpu_max(&t)) {
            Some((Some(q), p)) if p > 0 => Some(q as f64 / p as f64),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_uses_mesos_names_and_omits_unknowns() {
        let s = ResourceStatistics {
            timestamp: 1.5,
            processes: Some(2),
            mem_limit_bytes: Some(1 << 25),
            ..ResourceStatistics::default()
        };
        let json = serde_json::to_value(&s).expect("serialises");
        assert_eq!(
            json,
            serde_json::json!({"timestamp": 1.5, "processes": 2, "mem_limit_bytes": 33554432})
        );
    }
}
