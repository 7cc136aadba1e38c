//! Container limits and how they become cgroup settings (Mesos' constants).

use crate::IsolationError;
use crate::cgroupfs::{CgroupDir, is_unsupported};
use crate::layout::{Controller, Version};

/// Resource limits of one container.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Limits {
    /// CPU share, in cpus (`0.5` = half a core).
    pub cpus: f64,
    /// Memory hard limit; raised to `MIN_MEMORY_BYTES` when smaller. `None`: unlimited.
    pub mem_bytes: Option<u64>,
    /// Maximum number of tasks (threads and processes). `None`: unlimited.
    pub pids_max: Option<u64>,
}

/// Mesos' minimum cpu shares.
pub const MIN_CPU_SHARES: u64 = 2;
/// Kernel's maximum v1 cpu shares.
pub const MAX_CPU_SHARES: u64 = 262_144;
/// Shares per cpu.
pub const CPU_SHARES_PER_CPU: u64 = 1024;
/// CFS period (100 ms), in microseconds.
pub const CFS_PERIOD_US: u64 = 100_000;
/// Minimum CFS quota (1 ms), in microseconds.
pub const MIN_CFS_QUOTA_US: u64 = 1_000;
/// Mesos' minimum memory limit (32 MiB).
pub const MIN_MEMORY_BYTES: u64 = 32 * 1024 * 1024;

/// `max(2, 1024 * cpus)`, capped at the kernel's maximum.
pub fn cpu_shares(cpus: f64) -> u64 {
    let shares = (CPU_SHARES_PER_CPU as f64 * cpus.max(0.0)) as u64;
    shares.clamp(MIN_CPU_SHARES, MAX_CPU_SHARES)
}

/// v2 `cpu.weight` from v1 shares, as runc converts: `1 + ((shares - 2) * 9999) / 262142`.
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(MIN_CPU_SHARES, MAX_CPU_SHARES);
    1 + ((shares - 2) * 9999) / 262_142
}

/// CFS quota for `cpus` over `CFS_PERIOD_US`: `max(1 ms, cpus * period)`.
pub fn cfs_quota_us(cpus: f64) -> u64 {
    ((cpus.max(0.0) * CFS_PERIOD_US as f64) as u64).max(MIN_CFS_QUOTA_US)
}

/// The memory hard limit written for `mem_bytes`: at least `MIN_MEMORY_BYTES`.
pub fn memory_limit(mem_bytes: u64) -> u64 {
    mem_bytes.max(MIN_MEMORY_BYTES)
}

/// Writes the limits of every controller the directories serve. Used by create and update, so
/// each write is ordered to be valid both when raising and when lowering a limit.
pub(crate) fn apply(dirs: &[CgroupDir], limits: &Limits, cfs: bool) -> Result<(), IsolationError> {
    for dir in dirs {
        if dir.serves(Controller::Cpu) {
            apply_cpu(dir, limits.cpus, cfs)?;
        }
        if dir.serves(Controller::Memory) {
            apply_memory(dir, limits.mem_bytes)?;
        }
        if dir.serves(Controller::Pids) {
            let value = limits
                .pids_max
                .map_or_else(|| "max".to_owned(), |n| n.to_string());
            dir.write("pids.max", &value)?;
        }
    }
    Ok(())
}

fn apply_cpu(dir: &CgroupDir, cpus: f64, cfs: bool) -> Result<(), IsolationError> {
    let shares = cpu_shares(cpus);
    match dir.version {
        Version::V1 => {
            dir.write("cpu.shares", &shares.to_string())?;
            if cfs {
                dir.write("cpu.cfs_period_us", &CFS_PERIOD_US.to_string())?;
                dir.write("cpu.cfs_quota_us", &cfs_quota_us(cpus).to_string())?;
            }
        }
        Version::V2 => {
            dir.write("cpu.weight", &shares_to_weight(shares).to_string())?;
            if cfs {
                let value = format!("{} {}", cfs_quota_us(cpus), CFS_PERIOD_US);
                dir.write("cpu.max", &value)?;
            }
        }
    }
    Ok(())
}

fn apply_memory(dir: &CgroupDir, mem_bytes: Option<u64>) -> Result<(), IsolationError> {
    let limit = mem_bytes.map(memory_limit);
    match dir.version {
        Version::V1 => {
            let value = limit.map_or_else(|| "-1".to_owned(), |l| l.to_string());
            // memsw must stay >= the memory limit: writing memsw first works when raising,
            // writing it again last works when lowering. Without swap accounting the file is
            // missing (ENOENT) and the first write may be refused (EINVAL); both are tolerated.
            let memsw = "memory.memsw.limit_in_bytes";
            if let Err(e) = dir.write(memsw, &value)
                && !is_unsupported(&e)
            {
                return Err(e);
            }
            dir.write("memory.limit_in_bytes", &value)?;
            if let Err(e) = dir.write(memsw, &value)
                && !is_unsupported(&e)
            {
                return Err(e);
            }
        }
        Version::V2 => {
            let value = limit.map_or_else(|| "max".to_owned(), |l| l.to_string());
            dir.write("memory.max", &value)?;
            // No swap at all when limited, so swap cannot dodge the limit.
            if dir.has("memory.swap.max") {
                let swap = if limit.is_some() { "0" } else { "max" };
                dir.write("memory.swap.max", swap)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mesos_cpu_constants() {
        assert_eq!(cpu_shares(0.0), 2);
        assert_eq!(cpu_shares(0.001), 2);
        assert_eq!(cpu_shares(0.5), 512);
        assert_eq!(cpu_shares(2.0), 2048);
        assert_eq!(cpu_shares(1e9), MAX_CPU_SHARES);
        assert_eq!(cpu_shares(f64::NAN), 2);
        assert_eq!(cfs_quota_us(0.5), 50_000);
        assert_eq!(cfs_quota_us(0.001), 1_000);
        assert_eq!(cfs_quota_us(4.0), 400_000);
    }

    #[test]
    fn runc_weight_conversion() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(MAX_CPU_SHARES), 10_000);
        assert_eq!(shares_to_weight(0), 1);
    }

    #[test]
    fn memory_minimum() {
        assert_eq!(memory_limit(1), MIN_MEMORY_BYTES);
        assert_eq!(memory_limit(1 << 30), 1 << 30);
    }
}
