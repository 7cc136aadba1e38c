//! The isolator: detects hierarchies once, then creates, opens and lists containers.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::PathBuf;

use crate::cgroupfs::{CgroupDir, write_value};
use crate::config::{validate_cgroups_root, validate_container_id};
use crate::container::{Backend, Container};
use crate::layout::{self, Controller, Hierarchy, Layout, Version};
use crate::{IsolationConfig, IsolationError, Limits, limits};

/// Creates and finds containers. Cheap to share (`&self` everywhere, no interior state).
#[derive(Debug, Clone)]
pub struct Isolator {
    config: IsolationConfig,
    /// Empty for posix isolation; otherwise each used hierarchy once.
    hierarchies: Vec<Hierarchy>,
}

impl Isolator {
    /// Detects the cgroup hierarchies of the selected isolators and checks that containers can be
    /// created under `<hierarchy>/<cgroups_root>` in each. Without cgroups isolators this is
    /// `posix` with the given config. An `Unusable` error names the controller and the reason
    /// (not mounted, not root, read-only, ...), so the caller can warn and fall back to posix.
    pub fn new(config: IsolationConfig) -> Result<Isolator, IsolationError> {
        validate_cgroups_root(&config.cgroups_root)?;
        if !config.isolators.uses_cgroups() {
            return Ok(Isolator {
                config,
                hierarchies: Vec::new(),
            });
        }
        let layout = layout::detect().map_err(IsolationError::Detect)?;
        let hierarchies = plan(&config, &layout)?;
        for h in &hierarchies {
            prepare_root(h, &config.cgroups_root)?;
        }
        tracing::debug!(
            hierarchies = ?hierarchies.iter().map(|h| &h.mount_point).collect::<Vec<_>>(),
            root = %config.cgroups_root,
            "cgroup isolation ready"
        );
        Ok(Isolator {
            config,
            hierarchies,
        })
    }

    /// No enforcement: containers only track the pids the caller registers, and their
    /// statistics come from /proc.
    pub fn posix() -> Isolator {
        Isolator {
            config: IsolationConfig::default(),
            hierarchies: Vec::new(),
        }
    }

    pub fn config(&self) -> &IsolationConfig {
        &self.config
    }

    /// Whether containers are cgroups (false for posix isolation).
    pub fn uses_cgroups(&self) -> bool {
        !self.hierarchies.is_empty()
    }

    /// `<mount>/<cgroups_root>` of every hierarchy used.
    pub fn roots(&self) -> Vec<PathBuf> {
        self.hierarchies.iter().map(|h| self.root_of(h)).collect()
    }

    fn root_of(&self, h: &Hierarchy) -> PathBuf {
        h.mount_point.join(&self.config.cgroups_root)
    }

    fn dirs(&self, container_id: &str) -> Vec<CgroupDir> {
        self.hierarchies
            .iter()
            .map(|h| CgroupDir::new(h, self.root_of(h).join(container_id)))
            .collect()
    }

    /// Creates the container's cgroup in every hierarchy and applies `limits`. On any failure
    /// the directories created so far are removed again.
    pub fn create(&self, container_id: &str, limits: &Limits) -> Result<Container, IsolationError> {
        validate_container_id(container_id)?;
        if !self.uses_cgroups() {
            return Ok(Container::new(container_id, Backend::Posix, Some(*limits)));
        }
        let dirs = self.dirs(container_id);
        let mut created: Vec<&CgroupDir> = Vec::new();
        let result = dirs
            .iter()
            .try_for_each(|dir| match fs::create_dir(&dir.path) {
                Ok(()) => {
                    created.push(dir);
                    Ok(())
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    Err(IsolationError::AlreadyExists(container_id.to_owned()))
                }
                Err(e) => Err(IsolationError::io("create", &dir.path, e)),
            })
            .and_then(|()| limits::apply(&dirs, limits, self.config.enable_cfs));
        if let Err(e) = result {
            for dir in created {
                if let Err(rm) = fs::remove_dir(&dir.path) {
                    tracing::warn!(path = %dir.path.display(), error = %rm, "cannot remove cgroup after failed create");
                }
            }
            return Err(e);
        }
        tracing::debug!(container = container_id, ?limits, "container created");
        Ok(Container::new(
            container_id,
            Backend::Cgroups(dirs),
            Some(*limits),
        ))
    }

    /// Applies new limits to an existing container (e.g. a custom executor gained a task).
    pub fn update(&self, container: &Container, limits: &Limits) -> Result<(), IsolationError> {
        if let Backend::Cgroups(dirs) = container.backend() {
            limits::apply(dirs, limits, self.config.enable_cfs)?;
        }
        container.set_limits(*limits);
        Ok(())
    }

    /// A handle on an existing container (agent recovery). Its limits are read back from the
    /// cgroup files when statistics are taken. With posix isolation nothing persists, so this is
    /// an empty container to `add_process` to.
    pub fn open(&self, container_id: &str) -> Result<Container, IsolationError> {
        validate_container_id(container_id)?;
        if !self.uses_cgroups() {
            return Ok(Container::new(container_id, Backend::Posix, None));
        }
        let dirs: Vec<CgroupDir> = self
            .dirs(container_id)
            .into_iter()
            .filter(|d| d.path.is_dir())
            .collect();
        if dirs.is_empty() {
            return Err(IsolationError::NotFound(container_id.to_owned()));
        }
        Ok(Container::new(container_id, Backend::Cgroups(dirs), None))
    }

    /// Ids of the containers that exist in any hierarchy, sorted (to destroy orphans after a
    /// restart). Always empty with posix isolation.
    pub fn containers(&self) -> Vec<String> {
        let mut ids = BTreeSet::new();
        for h in &self.hierarchies {
            let Ok(entries) = fs::read_dir(self.root_of(h)) else {
                continue;
            };
            for entry in entries.flatten() {
                let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                if let (true, Some(name)) = (is_dir, entry.file_name().to_str())
                    && validate_container_id(name).is_ok()
                {
                    ids.insert(name.to_owned());
                }
            }
        }
        ids.into_iter().collect()
    }
}

/// The controllers each isolator needs (`required`) and may use (`optional`).
fn wanted(config: &IsolationConfig) -> (Vec<Controller>, Vec<Controller>) {
    let mut required = Vec::new();
    let i = &config.isolators;
    if i.cgroups_cpu {
        required.extend([Controller::Cpu, Controller::Cpuacct]);
    }
    if i.cgroups_mem {
        required.push(Controller::Memory);
    }
    if i.cgroups_pids {
        required.push(Controller::Pids);
    }
    // The freezer only makes kill_all race-free; without it kill_all still loops.
    (required, vec![Controller::Freezer])
}

fn plan(config: &IsolationConfig, layout: &Layout) -> Result<Vec<Hierarchy>, IsolationError> {
    let (required, optional) = wanted(config);
    for &c in &required {
        if layout.hierarchy(c).is_none() {
            let reason = if layout.v2.is_some() {
                "not mounted: no cgroup v1 hierarchy names it and the cgroup2 root does not offer it"
            } else {
                "not mounted: no cgroup hierarchy names it"
            };
            return Err(IsolationError::Unusable {
                controller: c.name(),
                reason: reason.to_owned(),
            });
        }
    }
    let mut all = required;
    all.extend(
        optional
            .into_iter()
            .filter(|&c| layout.hierarchy(c).is_some()),
    );
    Ok(layout.select(&all))
}

/// Creates `<mount>/<root>`, enables our v2 controllers down to it, and proves a child can be
/// created and removed there.
fn prepare_root(h: &Hierarchy, root: &str) -> Result<(), IsolationError> {
    let controller = h.controllers.first().map_or("cgroup", |c| c.name());
    let unusable = |what: String, e: io::Error| IsolationError::Unusable {
        controller,
        reason: format!("{what}: {}", explain(&e)),
    };
    let mut dir = h.mount_point.clone();
    let components: Vec<&str> = root.split('/').collect();
    for component in &components {
        if h.version == Version::V2 {
            enable_v2_controllers(h, &dir)?;
        }
        dir.push(component);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(unusable(format!("cannot create {}", dir.display()), e)),
        }
    }
    if h.version == Version::V2 {
        enable_v2_controllers(h, &dir)?;
    }
    let probe = dir.join(format!(".probe-{}", std::process::id()));
    fs::create_dir(&probe)
        .or_else(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => Ok(()),
            _ => Err(e),
        })
        .map_err(|e| unusable(format!("cannot create {}", probe.display()), e))?;
    match fs::remove_dir(&probe) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(unusable(format!("cannot remove {}", probe.display()), e))
        }
        _ => Ok(()),
    }
}

/// Writes `+<controller>` to `dir/cgroup.subtree_control` for each real v2 controller we use
/// (cpu accounting and the freezer are core files and need no enabling).
fn enable_v2_controllers(h: &Hierarchy, dir: &std::path::Path) -> Result<(), IsolationError> {
    let file = dir.join("cgroup.subtree_control");
    let enabled = fs::read_to_string(&file).unwrap_or_default();
    for c in &h.controllers {
        if !matches!(c, Controller::Cpu | Controller::Memory | Controller::Pids) {
            continue;
        }
        if enabled.split_whitespace().any(|e| e == c.name()) {
            continue;
        }
        write_value(&file, &format!("+{}", c.name())).map_err(|e| IsolationError::Unusable {
            controller: c.name(),
            reason: format!("cannot enable it in {}: {}", file.display(), explain(&e)),
        })?;
    }
    Ok(())
}

/// An io error with a hint for the usual causes.
fn explain(e: &io::Error) -> String {
    use rustix::io::Errno;
    let code = e.raw_os_error();
    if code == Some(Errno::ACCESS.raw_os_error()) || code == Some(Errno::PERM.raw_os_error()) {
        if rustix::process::geteuid().is_root() {
            format!("{e}")
        } else {
            format!("{e} (not running as root)")
        }
    } else if code == Some(Errno::ROFS.raw_os_error()) {
        format!("{e} (the cgroup filesystem is mounted read-only)")
    } else if code == Some(Errno::BUSY.raw_os_error()) {
        format!("{e} (the parent cgroup holds processes, cgroup v2 forbids enabling controllers)")
    } else {
        format!("{e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Isolators;
    use crate::layout::parse_mountinfo;

    fn config(isolation: &str) -> IsolationConfig {
        IsolationConfig {
            isolators: Isolators::parse(isolation).expect("valid"),
            ..IsolationConfig::default()
        }
    }

    #[test]
    fn plan_names_the_missing_controller() {
        let v2 = "24 18 0:21 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let layout = Layout::resolve(&parse_mountinfo(v2), Some("cpu pids"));
        let err = plan(&config("cgroups/all"), &layout).expect_err("memory missing");
        assert!(
            matches!(
                err,
                IsolationError::Unusable {
                    controller: "memory",
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().contains("cgroup2 root does not offer it"),
            "{err}"
        );

        let ok = plan(&config("cgroups/cpu,cgroups/pids"), &layout).expect("plan");
        assert_eq!(ok.len(), 1);
        assert_eq!(
            ok[0].controllers,
            vec![
                Controller::Cpu,
                Controller::Cpuacct,
                Controller::Pids,
                Controller::Freezer
            ]
        );

        let none = Layout::resolve(&[], None);
        let err = plan(&config("cgroups/cpu"), &none).expect_err("nothing mounted");
        assert!(matches!(
            err,
            IsolationError::Unusable {
                controller: "cpu",
                ..
            }
        ));
    }

    #[test]
    fn explains_common_causes() {
        let rofs = io::Error::from_raw_os_error(rustix::io::Errno::ROFS.raw_os_error());
        assert!(explain(&rofs).contains("read-only"));
        let busy = io::Error::from_raw_os_error(rustix::io::Errno::BUSY.raw_os_error());
        assert!(explain(&busy).contains("holds processes"));
    }
}
