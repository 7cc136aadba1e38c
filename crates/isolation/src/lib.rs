//! Linux resource isolation for executor containers, in the manner of Mesos' cgroups isolators.
//!
//! The agent builds an [`Isolator`] once from its `--isolation` flags ([`IsolationConfig`]);
//! `Isolator::new` detects, per controller, whether it lives on cgroup v1 or v2 (hybrid machines
//! included) and says exactly which controller is unusable and why, so the agent can fall back to
//! [`Isolator::posix`]. Per executor it calls [`Isolator::create`] with [`Limits`]; the
//! supervisor starts the task with [`Container::spawn_inside`] (the task starts inside the
//! container's cgroups, never moved later), asks [`Container::oom_killed`] after it ends, and
//! [`Container::kill_all`]s the rest; the agent then [`Container::destroy`]s the container and
//! reads [`Container::stats`] for `/monitor/statistics`. [`disk_usage`] is Mesos' `disk/du`.
//!
//! Cgroup files are read and written directly (a thin cgroupfs layer); every file format has a
//! pure parser with unit tests.

mod cgroupfs;
mod config;
mod container;
mod disk;
mod error;
mod isolator;
mod kill;
mod layout;
mod limits;
mod parse;
mod procfs;
mod stats;

pub use config::{
    DEFAULT_CGROUPS_ROOT, DEFAULT_ISOLATION, IsolationConfig, Isolators, validate_container_id,
};
pub use container::Container;
pub use disk::{MAX_DEPTH as DISK_USAGE_MAX_DEPTH, disk_usage};
pub use error::IsolationError;
pub use isolator::Isolator;
pub use kill::DESTROY_TIMEOUT;
pub use layout::{CgroupMount, Controller, Hierarchy, Layout, Version, detect, parse_mountinfo};
pub use limits::{
    CFS_PERIOD_US, CPU_SHARES_PER_CPU, Limits, MAX_CPU_SHARES, MIN_CFS_QUOTA_US, MIN_CPU_SHARES,
    MIN_MEMORY_BYTES, cfs_quota_us, cpu_shares, memory_limit, shares_to_weight,
};
pub use stats::ResourceStatistics;
