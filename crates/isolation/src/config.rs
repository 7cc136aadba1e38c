//! Isolation configuration and the Mesos-style `--isolation` parser.

use crate::IsolationError;

/// Which isolators are on. Each flag maps to one or more `--isolation` names, as in Mesos:
///
/// | name           | effect                                                        |
/// |----------------|---------------------------------------------------------------|
/// | `cgroups/cpu`  | `cgroups_cpu`: cpu shares (+ CFS quota), cpuacct statistics   |
/// | `cgroups/mem`  | `cgroups_mem`: hard memory limit, OOM detection               |
/// | `cgroups/pids` | `cgroups_pids`: `pids.max`                                    |
/// | `cgroups/all`  | all three above                                               |
/// | `posix/cpu`    | `posix_cpu`: cpu statistics from /proc, no enforcement        |
/// | `posix/mem`    | `posix_mem`: memory statistics from /proc, no enforcement     |
/// | `disk/du`, `posix/disk` | `disk`: the caller measures sandboxes with `disk_usage` |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Isolators {
    pub cgroups_cpu: bool,
    pub cgroups_mem: bool,
    pub cgroups_pids: bool,
    pub posix_cpu: bool,
    pub posix_mem: bool,
    pub disk: bool,
}

impl Isolators {
    /// Parses a comma-separated `--isolation` value. Blank entries (`"a,,b"`) are skipped; an
    /// empty list or an unknown name is an error naming the bad entry.
    pub fn parse(value: &str) -> Result<Isolators, IsolationError> {
        let invalid = |reason: String| IsolationError::InvalidIsolation {
            value: value.to_owned(),
            reason,
        };
        let mut isolators = Isolators::default();
        let mut any = false;
        for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            any = true;
            match entry {
                "cgroups/cpu" => isolators.cgroups_cpu = true,
                "cgroups/mem" => isolators.cgroups_mem = true,
                "cgroups/pids" => isolators.cgroups_pids = true,
                "cgroups/all" => {
                    isolators.cgroups_cpu = true;
                    isolators.cgroups_mem = true;
                    isolators.cgroups_pids = true;
                }
                "posix/cpu" => isolators.posix_cpu = true,
                "posix/mem" => isolators.posix_mem = true,
                "disk/du" | "posix/disk" => isolators.disk = true,
                other => return Err(invalid(format!("unknown isolator {other:?}"))),
            }
        }
        if !any {
            return Err(invalid("no isolator named".to_owned()));
        }
        Ok(isolators)
    }

    /// Whether any cgroups isolator is selected.
    pub fn uses_cgroups(&self) -> bool {
        self.cgroups_cpu || self.cgroups_mem || self.cgroups_pids
    }

    /// The posix equivalent of this selection, for a caller falling back after
    /// `Isolator::new` said cgroups are unusable.
    pub fn posix_fallback(&self) -> Isolators {
        Isolators {
            cgroups_cpu: false,
            cgroups_mem: false,
            cgroups_pids: false,
            posix_cpu: self.posix_cpu || self.cgroups_cpu,
            posix_mem: self.posix_mem || self.cgroups_mem,
            disk: self.disk,
        }
    }
}

/// Mesos' default isolation: `posix/cpu,posix/mem`.
pub const DEFAULT_ISOLATION: &str = "posix/cpu,posix/mem";

/// Default name of the cgroup directory under each hierarchy that holds all containers.
pub const DEFAULT_CGROUPS_ROOT: &str = "agora";

/// How the agent isolates its containers.
#[derive(Debug, Clone, PartialEq)]
pub struct IsolationConfig {
    pub isolators: Isolators,
    /// Relative path under each hierarchy's mount point (`agora` by default).
    pub cgroups_root: String,
    /// Enforce a CFS bandwidth quota of `cpus` (Mesos' `--cgroups_enable_cfs`).
    pub enable_cfs: bool,
}

impl Default for IsolationConfig {
    fn default() -> Self {
        IsolationConfig {
            isolators: Isolators {
                posix_cpu: true,
                posix_mem: true,
                ..Isolators::default()
            },
            cgroups_root: DEFAULT_CGROUPS_ROOT.to_owned(),
            enable_cfs: false,
        }
    }
}

impl IsolationConfig {
    /// A config with the given `--isolation` value and the default root, CFS off.
    pub fn from_isolation(value: &str) -> Result<IsolationConfig, IsolationError> {
        Ok(IsolationConfig {
            isolators: Isolators::parse(value)?,
            ..IsolationConfig::default()
        })
    }
}

/// Checks a cgroups root: non-empty, relative, components neither empty, `.` nor `..`.
pub(crate) fn validate_cgroups_root(root: &str) -> Result<(), IsolationError> {
    let bad = root.is_empty()
        || root.starts_with('/')
        || root
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == ".." || c.contains('\0'));
    if bad {
        Err(IsolationError::InvalidCgroupsRoot(root.to_owned()))
    } else {
        Ok(())
    }
}

/// Checks that a container id can be a single directory name: not empty, at most 255 bytes,
/// printable ASCII, no `/` or `\`, no `..`, and no leading `.` (names starting with a dot are
/// reserved for the isolator's own probes).
pub fn validate_container_id(id: &str) -> Result<(), IsolationError> {
    let reason = if id.is_empty() {
        Some("empty")
    } else if id.len() > 255 {
        Some("longer than 255 bytes")
    } else if id.contains('/') || id.contains('\\') {
        Some("contains a path separator")
    } else if id.contains("..") {
        Some("contains '..'")
    } else if id.starts_with('.') {
        Some("starts with '.'")
    } else if !id.bytes().all(|b| b.is_ascii_graphic()) {
        Some("contains a character that is not printable ASCII")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(IsolationError::InvalidContainerId {
            id: id.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_name() {
        let i = Isolators::parse("cgroups/cpu, cgroups/mem,disk/du").expect("valid");
        assert!(i.cgroups_cpu && i.cgroups_mem && i.disk);
        assert!(!i.cgroups_pids && !i.posix_cpu && !i.posix_mem);
        assert!(i.uses_cgroups());

        let all = Isolators::parse("cgroups/all").expect("valid");
        assert!(all.cgroups_cpu && all.cgroups_mem && all.cgroups_pids);

        let posix = Isolators::parse(DEFAULT_ISOLATION).expect("valid");
        assert!(posix.posix_cpu && posix.posix_mem && !posix.uses_cgroups());
        assert!(Isolators::parse("posix/disk").expect("valid").disk);
        assert!(
            Isolators::parse("cgroups/pids")
                .expect("valid")
                .cgroups_pids
        );
    }

    #[test]
    fn rejects_unknown_and_empty() {
        let err = Isolators::parse("cgroups/cpu,cgroups/blkio").expect_err("unknown");
        assert!(err.to_string().contains("cgroups/blkio"), "{err}");
        assert!(Isolators::parse("").is_err());
        assert!(Isolators::parse(" , ,").is_err());
    }

    #[test]
    fn posix_fallback_keeps_what_can_be_measured() {
        let f = Isolators::parse("cgroups/all,disk/du")
            .expect("valid")
            .posix_fallback();
        assert!(!f.uses_cgroups() && f.posix_cpu && f.posix_mem && f.disk);
    }

    #[test]
    fn container_ids() {
        assert!(validate_container_id("0b1e-task.1_x").is_ok());
        assert!(validate_container_id(&"a".repeat(255)).is_ok());
        for bad in ["", "a/b", "..", "a..b", ".hidden", "a b", "a\nb", "a\\b"] {
            assert!(validate_container_id(bad).is_err(), "{bad:?}");
        }
        assert!(validate_container_id(&"a".repeat(256)).is_err());
    }

    #[test]
    fn cgroups_roots() {
        assert!(validate_cgroups_root("agora").is_ok());
        assert!(validate_cgroups_root("system.slice/agora").is_ok());
        for bad in ["", "/agora", "a//b", "a/../b", "./a", "a/"] {
            assert!(validate_cgroups_root(bad).is_err(), "{bad:?}");
        }
    }
}
