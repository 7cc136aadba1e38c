//! The agent's side of containers: one per executor run. It picks the
//! isolator at start (cgroups where usable, else posix with a warning),
//! creates a container's cgroups with limits before its executor starts,
//! grows them when a custom executor takes more tasks, reads statistics,
//! and destroys the container (killing whatever is left) when the executor
//! is gone. The executor process joins the container itself
//! (see [`crate::launch`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use agora_core::{ExecutorId, FrameworkId, Resources};
use agora_isolation::{Container, IsolationConfig, Isolator, Limits, ResourceStatistics};

use crate::launch::{CgroupsSpec, FetcherSpec};

/// Isolation and launch settings of an agent (its `--isolation`,
/// `--switch-user`, fetcher and environment flags).
#[derive(Debug, Clone)]
pub struct ContainerOptions {
    /// Mesos-style `--isolation` value.
    pub isolation: String,
    pub cgroups_root: String,
    pub enable_cfs: bool,
    /// Run tasks as their framework's (or command's) user when the agent is root.
    pub switch_user: bool,
    pub fetcher: FetcherSpec,
    /// `--executor-environment-variables`.
    pub executor_environment: BTreeMap<String, String>,
    /// `--container-disk-watch-interval`, seconds.
    pub disk_watch_interval_secs: f64,
    /// `--container-pids-limit`: processes and threads a container may hold
    /// (cgroups/pids), so that a fork bomb stays inside its container.
    pub pids_limit: u64,
    /// `--executor-supervisor`: command executors run inside the agent's
    /// one `agora supervisor` process (`crate::host`) instead of an
    /// `agora executor` process each.
    pub hosted_executors: bool,
}

impl Default for ContainerOptions {
    fn default() -> Self {
        Self {
            isolation: DEFAULT_ISOLATION.to_string(),
            cgroups_root: "agora".to_string(),
            enable_cfs: false,
            switch_user: true,
            fetcher: FetcherSpec {
                cache_dir: None,
                cache_max_bytes: 2 << 30,
                stall_timeout_secs: 60.0,
                max_download_bytes: None,
                frameworks_home: None,
                max_extract_bytes: None,
            },
            executor_environment: BTreeMap::new(),
            disk_watch_interval_secs: 15.0,
            pids_limit: DEFAULT_PIDS_LIMIT,
            hosted_executors: true,
        }
    }
}

/// Enough for any sane task, few enough to stop a fork bomb.
pub const DEFAULT_PIDS_LIMIT: u64 = 4096;

/// Agora isolates by default: cpu, memory and pids cgroups plus disk
/// accounting, falling back to posix (with a warning) where cgroups are
/// not usable (not root, not mounted).
pub const DEFAULT_ISOLATION: &str = "cgroups/cpu,cgroups/mem,cgroups/pids,disk/du";

/// Executor overhead Mesos adds to a command executor's container is not
/// added here: the executor stays outside the container, which holds only
/// the task's process tree.
pub struct Containers {
    isolator: Isolator,
    config: IsolationConfig,
    /// The `--isolation` value in effect (after any fallback).
    effective: String,
    disk: bool,
    /// Shared so that statistics can be read on a worker while the actor
    /// goes on; a destroyed container is taken out of here first.
    live: HashMap<(FrameworkId, ExecutorId), Arc<Container>>,
    /// The limits last asked for of each container whose limits changed,
    /// for the [`UpdateJob`]s that apply them on workers.
    updates: HashMap<(FrameworkId, ExecutorId), Arc<PendingLimits>>,
    pids_limit: u64,
    /// Runs inside every [`Destroy`] before the real work: tests hold one
    /// to model a cgroup that takes long to empty.
    #[cfg(test)]
    pub(crate) destroy_hook: Option<Arc<dyn Fn() + Send + Sync>>,
    /// Runs inside every [`CreateJob`] before the real work: tests hold one
    /// to model a launch stuck on a hung disk or a slow name service.
    #[cfg(test)]
    pub(crate) launch_hook: Option<Arc<dyn Fn() + Send + Sync>>,
}

/// What creating one container needs, for a worker: cgroup writes can
/// block on a busy kernel, and the loop must not wait for them.
pub struct CreateJob {
    isolator: Isolator,
    limits: Limits,
    /// The cgroups an executor joins, without the container id; `None`
    /// without cgroups.
    spec: Option<CgroupsSpec>,
    #[cfg(test)]
    hook: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl CreateJob {
    /// Runs the test hook, if any (the start of a launch's blocking work).
    pub fn before(&self) {
        #[cfg(test)]
        if let Some(hook) = &self.hook {
            hook();
        }
    }

    /// Creates the container (blocking). Returns it, with what the
    /// executor needs to join it.
    pub fn run(
        self,
        container_id: &str,
    ) -> Result<(Container, Option<CgroupsSpec>), agora_isolation::IsolationError> {
        let container = self.isolator.create(container_id, &self.limits)?;
        let spec = self.spec.map(|spec| CgroupsSpec {
            container_id: container_id.to_string(),
            ..spec
        });
        Ok((container, spec))
    }
}

/// A container taken out of service, to be destroyed off the event loop
/// ([`Container::destroy`] can wait up to ten seconds for its processes).
pub struct Destroy {
    executor_id: ExecutorId,
    container: Arc<Container>,
    #[cfg(test)]
    hook: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl Destroy {
    /// Kills everything in the container and removes it (blocking).
    pub fn run(self) {
        #[cfg(test)]
        if let Some(hook) = &self.hook {
            hook();
        }
        if let Err(e) = self.container.destroy() {
            tracing::warn!(executor_id = %self.executor_id, error = %e, "cannot destroy the container");
        }
    }
}

/// The limits last asked for of one container, and the turn to apply
/// them: jobs of one container may start in any order, but each applies
/// the latest limits asked for, one at a time, so the last asked for is
/// the one that stays.
#[derive(Default)]
pub struct PendingLimits {
    wanted: Mutex<Option<Limits>>,
    applying: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Applies a container's latest limits ([`Containers::update_job`]).
pub struct UpdateJob {
    executor_id: ExecutorId,
    isolator: Isolator,
    container: Arc<Container>,
    pending: Arc<PendingLimits>,
}

impl UpdateJob {
    /// Writes the latest limits asked for (blocking); nothing if another
    /// job already wrote them.
    pub fn run(self) {
        let _turn = lock(&self.pending.applying);
        // Taken under the turn, so a later job finds what is newer or nothing.
        let Some(limits) = lock(&self.pending.wanted).take() else {
            return;
        };
        if let Err(e) = self.isolator.update(&self.container, &limits) {
            tracing::warn!(executor_id = %self.executor_id, error = %e, "cannot update the container's limits");
        }
    }
}

/// A container's OOM count, read on a worker ([`Containers::oom_probe`]).
pub struct OomProbe(Arc<Container>);

impl OomProbe {
    /// Whether the kernel's OOM killer struck inside the container (blocking).
    pub fn oom_killed(&self) -> bool {
        self.0.oom_killed()
    }
}

/// What `/monitor/statistics` needs of one container, read on a worker.
pub struct StatsJob {
    pub key: (FrameworkId, ExecutorId),
    container: Arc<Container>,
    disk: bool,
    sandbox: Option<PathBuf>,
    resources: Resources,
}

impl StatsJob {
    /// Reads the container's cgroups and walks its sandbox (blocking).
    pub fn run(&self) -> ResourceStatistics {
        let mut stats = self.container.stats();
        if self.disk
            && let Some(sandbox) = &self.sandbox
        {
            stats.disk_used_bytes = agora_isolation::disk_usage(sandbox).ok();
        }
        let disk = self.resources.scalar_value("disk");
        if disk > 0.0 {
            stats.disk_limit_bytes = Some((disk * 1024.0 * 1024.0) as u64);
        }
        stats
    }
}

impl Containers {
    /// Picks the isolator. A bad `--isolation` value is an error (the CLI
    /// validates it first); unusable cgroups fall back to posix.
    pub fn new(options: &ContainerOptions) -> Result<Self, agora_isolation::IsolationError> {
        let mut config = IsolationConfig::from_isolation(&options.isolation)?;
        config.cgroups_root = options.cgroups_root.clone();
        config.enable_cfs = options.enable_cfs;
        let disk = config.isolators.disk;
        let (isolator, effective) = if config.isolators.uses_cgroups() {
            match Isolator::new(config.clone()) {
                Ok(isolator) => (isolator, options.isolation.clone()),
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        isolation = %options.isolation,
                        "cgroups are not usable here; falling back to posix isolation (no cpu, memory or pids limits are enforced)"
                    );
                    config.isolators = config.isolators.posix_fallback();
                    (Isolator::posix(), "posix/cpu,posix/mem".to_string())
                }
            }
        } else {
            (Isolator::posix(), options.isolation.clone())
        };
        tracing::info!(isolation = %effective, "container isolation");
        Ok(Self {
            isolator,
            config,
            effective,
            disk,
            live: HashMap::new(),
            updates: HashMap::new(),
            pids_limit: options.pids_limit,
            #[cfg(test)]
            destroy_hook: None,
            #[cfg(test)]
            launch_hook: None,
        })
    }

    /// Whether containers get cgroups (else the executor runs tasks plainly).
    pub fn uses_cgroups(&self) -> bool {
        self.config.isolators.uses_cgroups()
    }

    pub fn checks_disk(&self) -> bool {
        self.disk
    }

    /// What creating the container of an executor run, sized for
    /// `resources`, needs; run it on a worker and [`Self::adopt`] the result.
    pub fn create_job(&self, resources: &Resources) -> CreateJob {
        CreateJob {
            isolator: self.isolator.clone(),
            limits: limits(resources, self.pids_limit),
            spec: self.uses_cgroups().then(|| CgroupsSpec {
                isolation: self.effective.clone(),
                cgroups_root: self.config.cgroups_root.clone(),
                enable_cfs: self.config.enable_cfs,
                container_id: String::new(),
            }),
            #[cfg(test)]
            hook: self.launch_hook.clone(),
        }
    }

    /// Takes a container created on a worker into service for `key`.
    pub fn adopt(&mut self, key: (FrameworkId, ExecutorId), container: Container) {
        self.updates.remove(&key);
        self.live.insert(key, Arc::new(container));
    }

    /// A container created on a worker for a launch that was given up (its
    /// executor was killed meanwhile): to be destroyed on a worker.
    pub fn discard(&self, executor_id: ExecutorId, container: Container) -> Destroy {
        Destroy {
            executor_id,
            container: Arc::new(container),
            #[cfg(test)]
            hook: None,
        }
    }

    /// Creates the container of an executor run in place (tests only: the
    /// agent creates containers on a worker).
    #[cfg(test)]
    pub fn create(
        &mut self,
        key: (FrameworkId, ExecutorId),
        container_id: &str,
        resources: &Resources,
    ) -> Result<Option<CgroupsSpec>, agora_isolation::IsolationError> {
        let (container, spec) = self.create_job(resources).run(container_id)?;
        self.adopt(key, container);
        Ok(spec)
    }

    /// Re-attaches to the container of an executor found alive at recovery.
    pub fn recover(&mut self, key: (FrameworkId, ExecutorId), container_id: &str) {
        match self.isolator.open(container_id) {
            Ok(container) => {
                self.live.insert(key, Arc::new(container));
            }
            Err(e) => {
                tracing::debug!(container_id, error = %e, "no container to re-attach to")
            }
        }
    }

    /// New limits for a live container (a custom executor gained or lost
    /// a task), to apply on a worker: lowering a memory limit makes the
    /// kernel reclaim before the write returns. `None`: no such container.
    pub fn update_job(
        &mut self,
        key: &(FrameworkId, ExecutorId),
        resources: &Resources,
    ) -> Option<UpdateJob> {
        let container = self.live.get(key)?.clone();
        let pending = self.updates.entry(key.clone()).or_default().clone();
        *lock(&pending.wanted) = Some(limits(resources, self.pids_limit));
        Some(UpdateJob {
            executor_id: key.1.clone(),
            isolator: self.isolator.clone(),
            container,
            pending,
        })
    }

    /// What explaining an executor's exit needs of its container, to read
    /// on a worker (cgroup files are read, not on the event loop).
    pub fn oom_probe(&self, key: &(FrameworkId, ExecutorId)) -> Option<OomProbe> {
        self.live.get(key).cloned().map(OomProbe)
    }

    /// Takes the container out of service; the caller runs the returned
    /// [`Destroy`] on a worker.
    pub fn take(&mut self, key: &(FrameworkId, ExecutorId)) -> Option<Destroy> {
        self.updates.remove(key);
        let container = self.live.remove(key)?;
        Some(Destroy {
            executor_id: key.1.clone(),
            container,
            #[cfg(test)]
            hook: self.destroy_hook.clone(),
        })
    }

    /// What reading one container's statistics needs, for a worker.
    pub fn stats_job(
        &self,
        key: &(FrameworkId, ExecutorId),
        sandbox: Option<&Path>,
        resources: Resources,
    ) -> Option<StatsJob> {
        Some(StatsJob {
            key: key.clone(),
            container: self.live.get(key)?.clone(),
            disk: self.disk,
            sandbox: sandbox.map(Path::to_path_buf),
            resources,
        })
    }

    pub fn keys(&self) -> Vec<(FrameworkId, ExecutorId)> {
        self.live.keys().cloned().collect()
    }
}

/// Limits for a container holding `resources`. Memory in MB as Mesos
/// counts it; no memory resource means no memory limit.
pub fn limits(resources: &Resources, pids_limit: u64) -> Limits {
    let mem = resources.scalar_value("mem");
    Limits {
        cpus: resources.scalar_value("cpus"),
        mem_bytes: (mem > 0.0).then_some((mem * 1024.0 * 1024.0) as u64),
        pids_max: Some(pids_limit),
    }
}

/// Where the agent keeps what a launch wrapper could not do (see
/// `agora executor`): read once by the agent when the executor exits.
pub fn launch_failure_path(sandbox: &Path) -> PathBuf {
    sandbox.join(".agora-launch-failure")
}

#[cfg(test)]
mod update_tests {
    use super::*;

    /// Limits are written on workers, whose jobs may start in any order:
    /// whichever runs first writes the latest limits asked for, and a job
    /// that finds them written already writes nothing (an older limit
    /// never overwrites a newer one).
    #[test]
    fn update_jobs_that_run_out_of_order_leave_the_latest_limits() {
        // Posix containers: nothing on the machine is touched.
        let options = ContainerOptions {
            isolation: "posix/cpu,posix/mem".into(),
            ..ContainerOptions::default()
        };
        let mut containers = Containers::new(&options).expect("posix");
        let key = (FrameworkId::new("f1"), ExecutorId::new("e1"));
        containers
            .create(key.clone(), "update-jobs-run", &Resources::default())
            .expect("container");
        let small = Resources::parse("cpus:1;mem:64").expect("resources");
        let large = Resources::parse("cpus:2;mem:128").expect("resources");
        let first = containers
            .update_job(&key, &small)
            .expect("a live container");
        let second = containers
            .update_job(&key, &large)
            .expect("a live container");
        let pending = second.pending.clone();
        assert_eq!(
            *lock(&pending.wanted),
            Some(limits(&large, containers.pids_limit)),
            "the latest limits asked for wait for a worker"
        );
        second.run();
        assert_eq!(
            *lock(&pending.wanted),
            None,
            "written by the first job to run"
        );
        first.run();
        assert_eq!(*lock(&pending.wanted), None);
        let other = (FrameworkId::new("f1"), ExecutorId::new("e2"));
        assert!(
            containers.update_job(&other, &small).is_none(),
            "no such container"
        );
    }
}
