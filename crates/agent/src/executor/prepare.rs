//! What `agora executor` does before a task's (or a custom executor's)
//! program starts: fetch its URIs into the sandbox, hand the sandbox to the
//! task user, build its environment, and find its container.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use agora_fetcher::{FetchUri, FetcherConfig};
use agora_isolation::{Container, IsolationConfig, Isolator};
use agora_proto::v1 as pb;

use super::ExecutorEnv;
use crate::launch::{self, CgroupsSpec, FetcherSpec, LaunchConfig, TaskUser};

/// Directory levels walked when handing fetched files to the task user.
const MAX_CHOWN_DEPTH: usize = 32;

fn fetcher_config(spec: &FetcherSpec) -> FetcherConfig {
    FetcherConfig {
        cache_dir: spec.cache_dir.clone(),
        cache_max_bytes: spec.cache_max_bytes,
        stall_timeout: Duration::try_from_secs_f64(spec.stall_timeout_secs)
            .unwrap_or(Duration::from_secs(60)),
        max_download_bytes: spec.max_download_bytes,
        frameworks_home: spec.frameworks_home.clone(),
        max_extract_bytes: spec
            .max_extract_bytes
            .unwrap_or(agora_fetcher::DEFAULT_MAX_EXTRACT_BYTES),
    }
}

fn fetch_uris(command: &pb::CommandInfo) -> Vec<FetchUri> {
    command
        .uris
        .iter()
        .map(|uri| FetchUri {
            value: uri.value.clone(),
            executable: uri.executable.unwrap_or(false),
            extract: uri.extract.unwrap_or(true),
            cache: uri.cache.unwrap_or(false),
            output_file: uri.output_file.clone().filter(|f| !f.is_empty()),
        })
        .collect()
}

/// Fetches a command's URIs into the sandbox, reporting progress and errors
/// to the sandbox's `stderr`, then gives what landed there to the task user.
/// Local sources are opened as the task user (`agora_fetcher::fetch_all_as`).
/// The error names the URI and the cause.
pub(crate) async fn fetch(
    sandbox: &Path,
    command: &pb::CommandInfo,
    config: &LaunchConfig,
) -> Result<(), String> {
    let uris = fetch_uris(command);
    if uris.is_empty() {
        return Ok(());
    }
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(sandbox.join("stderr"))
        .map_err(|e| format!("cannot open the sandbox's stderr: {e}"))?;
    // Local files are read with the task user's rights, and its cache
    // entries are its own: the fetch can reach no more than the task could.
    let user = config.user.as_ref().map(|u| agora_fetcher::FetchUser {
        uid: u.uid,
        gid: u.gid,
    });
    agora_fetcher::fetch_all_as(
        &uris,
        sandbox,
        &fetcher_config(&config.fetcher),
        user,
        &mut log,
    )
    .await
    .map_err(|e| {
        use std::io::Write;
        let _ = writeln!(log, "agora fetcher: {e}");
        e.to_string()
    })?;
    if let Some(user) = &config.user {
        chown_tree(sandbox, user, 0);
    }
    Ok(())
}

/// Gives a directory tree to the task user (not following symlinks).
fn chown_tree(path: &Path, user: &TaskUser, depth: usize) {
    let _ = std::os::unix::fs::lchown(path, Some(user.uid), Some(user.gid));
    if depth >= MAX_CHOWN_DEPTH {
        return;
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            chown_tree(&entry.path(), user, depth + 1);
        } else {
            let _ = std::os::unix::fs::lchown(entry.path(), Some(user.uid), Some(user.gid));
        }
    }
}

/// The isolator the executors of one process share: finding the cgroup
/// hierarchies reads `/proc` and prepares the root, which a supervisor
/// hosting many executors does once per setting, not once per task.
#[derive(Debug, Default)]
pub struct IsolatorCache(std::sync::Mutex<Option<(IsolationConfig, std::sync::Arc<Isolator>)>>);

impl IsolatorCache {
    fn get(&self, config: IsolationConfig) -> Result<std::sync::Arc<Isolator>, String> {
        let mut slot = self
            .0
            .lock()
            .map_err(|_| "the isolator cache is poisoned".to_string())?;
        if let Some((cached, isolator)) = slot.as_ref()
            && *cached == config
        {
            return Ok(isolator.clone());
        }
        let isolator = std::sync::Arc::new(
            Isolator::new(config.clone())
                .map_err(|e| format!("cannot find the container's cgroups: {e}"))?,
        );
        *slot = Some((config, isolator.clone()));
        Ok(isolator)
    }
}

/// The container the agent created for this executor run, if it isolates
/// with cgroups.
pub(crate) fn open_container(
    spec: Option<&CgroupsSpec>,
    cache: &IsolatorCache,
) -> Result<Option<Container>, String> {
    let Some(spec) = spec else {
        return Ok(None);
    };
    let mut config = IsolationConfig::from_isolation(&spec.isolation)
        .map_err(|e| format!("bad isolation settings from the agent: {e}"))?;
    config.cgroups_root = spec.cgroups_root.clone();
    config.enable_cfs = spec.enable_cfs;
    let isolator = cache.get(config)?;
    isolator
        .open(&spec.container_id)
        .map(Some)
        .map_err(|e| format!("cannot open container {}: {e}", spec.container_id))
}

/// The environment of a task or custom executor: the agent's
/// `--executor-environment-variables`, the ids and sandbox (under Agora and
/// Mesos names), the user, the task's ports, then the command's own
/// variables, which win.
pub(crate) fn environment(
    env: &ExecutorEnv,
    config: &LaunchConfig,
    command: &pb::CommandInfo,
    task: Option<&pb::TaskInfo>,
) -> BTreeMap<String, String> {
    let mut vars = config.environment.clone();
    let sandbox = env.sandbox.display().to_string();
    let task_id = task
        .and_then(|t| t.task_id.as_ref())
        .map(|t| t.value.clone());
    let mut set = |name: &str, value: &str| {
        vars.insert(name.to_string(), value.to_string());
    };
    for (agora, mesos, value) in [
        ("AGORA_SANDBOX", "MESOS_SANDBOX", sandbox.as_str()),
        ("AGORA_AGENT_ID", "MESOS_AGENT_ID", env.agent_id.as_str()),
        (
            "AGORA_FRAMEWORK_ID",
            "MESOS_FRAMEWORK_ID",
            env.framework_id.as_str(),
        ),
        (
            "AGORA_EXECUTOR_ID",
            "MESOS_EXECUTOR_ID",
            env.executor_id.as_str(),
        ),
    ] {
        set(agora, value);
        set(mesos, value);
    }
    set("MESOS_DIRECTORY", &sandbox);
    if let Some(task_id) = &task_id {
        set("AGORA_TASK_ID", task_id);
        set("MESOS_TASK_ID", task_id);
    }
    if let Some(user) = &config.user {
        set("USER", &user.name);
        set("LOGNAME", &user.name);
        set("HOME", &user.home.display().to_string());
    }
    if let Some(task) = task {
        for (name, value) in launch::port_variables(&launch::task_ports(&task.resources)) {
            set(&name, &value);
        }
    }
    if let Some(environment) = &command.environment {
        for variable in &environment.variables {
            set(&variable.name, variable.value.as_deref().unwrap_or(""));
        }
    }
    vars
}
