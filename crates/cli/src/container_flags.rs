//! The agent's container flags: isolation, users, the fetcher, the
//! executors' environment (Mesos' names, kebab-case, with the underscore
//! spellings as aliases).

use std::collections::BTreeMap;
use std::path::PathBuf;

use agora_agent::containers::{ContainerOptions, DEFAULT_ISOLATION};
use agora_agent::launch::{FetcherSpec, parse_environment_flag};
use clap::ArgAction;

#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ContainerArgs {
    /// Isolators, Mesos style: any of cgroups/cpu, cgroups/mem, cgroups/pids, cgroups/all,
    /// disk/du, posix/cpu, posix/mem. Where cgroups are not usable the agent warns and
    /// falls back to posix.
    #[arg(long, env = "AGORA_ISOLATION", default_value = DEFAULT_ISOLATION, value_parser = parse_isolation)]
    isolation: String,
    /// The cgroup (under each hierarchy) that holds this agent's containers.
    #[arg(long, env = "AGORA_CGROUPS_ROOT", default_value = "agora", alias = "cgroups_root", value_parser = parse_cgroups_root)]
    cgroups_root: String,
    /// Enforce a hard CPU limit (CFS quota) at the task's cpus, not only shares.
    #[arg(long, env = "AGORA_CGROUPS_ENABLE_CFS", alias = "cgroups_enable_cfs", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    cgroups_enable_cfs: bool,
    /// Run tasks as their framework's (or command's) user when the agent runs as root.
    #[arg(long, env = "AGORA_SWITCH_USER", alias = "switch_user", default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    switch_user: bool,
    /// Cache fetched URIs marked `cache` here (shared by all tasks of this agent); default
    /// `<work_dir>/fetcher-cache`.
    #[arg(long, env = "AGORA_FETCHER_CACHE_DIR", alias = "fetcher_cache_dir")]
    fetcher_cache_dir: Option<PathBuf>,
    /// Size bound of the fetcher cache, e.g. 2GB, 500MB or bytes.
    #[arg(long, env = "AGORA_FETCHER_CACHE_SIZE", alias = "fetcher_cache_size", default_value = "2GB", value_parser = parse_bytes)]
    fetcher_cache_size: u64,
    /// A download that receives nothing for this many seconds fails.
    #[arg(long, env = "AGORA_FETCHER_STALL_TIMEOUT", alias = "fetcher_stall_timeout", default_value_t = 60.0, value_parser = parse_seconds)]
    fetcher_stall_timeout: f64,
    /// Refuse downloads larger than this (e.g. 1GB); unlimited when omitted.
    #[arg(long, env = "AGORA_FETCHER_MAX_SIZE", value_parser = parse_bytes)]
    fetcher_max_size: Option<u64>,
    /// An archive whose extraction would write more than this fails and its partial output is
    /// removed (a compression bomb cannot fill the disk).
    #[arg(long, env = "AGORA_FETCHER_MAX_EXTRACT_SIZE", alias = "fetcher_max_extract_size", default_value = "10GB", value_parser = parse_bytes)]
    fetcher_max_extract_size: u64,
    /// Relative URI paths resolve under this directory [default: none: a relative URI is refused].
    #[arg(long, env = "AGORA_FRAMEWORKS_HOME", alias = "frameworks_home")]
    frameworks_home: Option<PathBuf>,
    /// Variables for every executor and task, as a JSON object of strings [default: none].
    #[arg(long, env = "AGORA_EXECUTOR_ENVIRONMENT_VARIABLES", alias = "executor_environment_variables", value_parser = parse_environment)]
    executor_environment_variables: Option<BTreeMap<String, String>>,
    /// How often sandboxes are measured against their task's disk (disk/du), seconds.
    #[arg(long, env = "AGORA_CONTAINER_DISK_WATCH_INTERVAL", alias = "container_disk_watch_interval", default_value_t = 15.0, value_parser = parse_seconds)]
    container_disk_watch_interval: f64,
    /// Processes and threads one container may hold (cgroups/pids).
    #[arg(long, env = "AGORA_CONTAINER_PIDS_LIMIT", default_value_t = agora_agent::containers::DEFAULT_PIDS_LIMIT, value_parser = clap::value_parser!(u64).range(1..))]
    container_pids_limit: u64,
    /// Run command tasks' executors inside one `agora supervisor` process per agent instead of
    /// an `agora executor` process per task (custom executors always run as their own process).
    #[arg(long, env = "AGORA_EXECUTOR_SUPERVISOR", alias = "executor_supervisor", default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    executor_supervisor: bool,
}

impl ContainerArgs {
    pub(crate) fn options(&self) -> ContainerOptions {
        ContainerOptions {
            isolation: self.isolation.clone(),
            cgroups_root: self.cgroups_root.clone(),
            enable_cfs: self.cgroups_enable_cfs,
            switch_user: self.switch_user,
            fetcher: FetcherSpec {
                cache_dir: self.fetcher_cache_dir.clone(),
                cache_max_bytes: self.fetcher_cache_size,
                stall_timeout_secs: self.fetcher_stall_timeout,
                max_download_bytes: self.fetcher_max_size,
                frameworks_home: self.frameworks_home.clone(),
                max_extract_bytes: Some(self.fetcher_max_extract_size),
            },
            executor_environment: self
                .executor_environment_variables
                .clone()
                .unwrap_or_default(),
            disk_watch_interval_secs: self.container_disk_watch_interval,
            pids_limit: self.container_pids_limit,
            hosted_executors: self.executor_supervisor,
        }
    }
}

fn parse_isolation(text: &str) -> Result<String, String> {
    agora_isolation::Isolators::parse(text)
        .map(|_| text.to_string())
        .map_err(|e| e.to_string())
}

pub(crate) fn parse_cgroups_root(text: &str) -> Result<String, String> {
    let bad = text.is_empty()
        || text.starts_with('/')
        || text
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err("must be a relative path without '.' or '..' components".into());
    }
    Ok(text.to_string())
}

fn parse_environment(text: &str) -> Result<BTreeMap<String, String>, String> {
    parse_environment_flag(text)
}

fn parse_seconds(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("'{text}' is not a number of seconds"))?;
    if !(0.001..=86_400.0).contains(&value) {
        return Err("must be between 0.001 and 86400 seconds".into());
    }
    Ok(value)
}

/// `2GB`, `500MB`, `64KB`, `1024B` or plain bytes (powers of 1024, as Mesos' Bytes).
pub(crate) fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let upper = text.to_ascii_uppercase();
    let (number, unit) = match upper.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => upper.split_at(i),
        None => (upper.as_str(), "B"),
    };
    let number: u64 = number
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a size like 2GB, 500MB or 1048576"))?;
    let factor: u64 = match unit.trim() {
        "B" => 1,
        "KB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        "TB" => 1 << 40,
        other => return Err(format!("unknown unit '{other}' (use B, KB, MB, GB or TB)")),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("'{text}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units_and_refuse_garbage() {
        assert_eq!(parse_bytes("2GB"), Ok(2 << 30));
        assert_eq!(parse_bytes("500mb"), Ok(500 << 20));
        assert_eq!(parse_bytes("1234"), Ok(1234));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("5XB").is_err());
        assert!(parse_bytes("99999999999TB").is_err());
    }

    #[test]
    fn isolation_and_root_are_checked() {
        assert!(parse_isolation("cgroups/cpu,disk/du").is_ok());
        assert!(parse_isolation("cgroups/gpu").is_err());
        assert!(parse_cgroups_root("agora/a1").is_ok());
        assert!(parse_cgroups_root("../x").is_err());
        assert!(parse_cgroups_root("/abs").is_err());
    }
}
