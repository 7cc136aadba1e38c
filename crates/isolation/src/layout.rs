//! Where each cgroup controller lives on this machine: pure parsing of `/proc/self/mountinfo`
//! and of a cgroup2 root's `cgroup.controllers`, then one small function that reads both.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The controllers this crate uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Controller {
    Cpu,
    Cpuacct,
    Memory,
    Pids,
    Freezer,
}

impl Controller {
    pub const ALL: [Controller; 5] = [
        Controller::Cpu,
        Controller::Cpuacct,
        Controller::Memory,
        Controller::Pids,
        Controller::Freezer,
    ];

    /// The kernel's name of the controller.
    pub fn name(self) -> &'static str {
        match self {
            Controller::Cpu => "cpu",
            Controller::Cpuacct => "cpuacct",
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Freezer => "freezer",
        }
    }

    /// On cgroup v2, cpu accounting (`cpu.stat` usage) and freezing (`cgroup.freeze`) are core
    /// files of every cgroup, not controllers listed in `cgroup.controllers`.
    fn is_core_on_v2(self) -> bool {
        matches!(self, Controller::Cpuacct | Controller::Freezer)
    }
}

impl fmt::Display for Controller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A cgroup filesystem mount from mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    pub mount_point: PathBuf,
    /// The cgroup path the mount shows at its mount point (`/` unless bind-mounted or namespaced).
    pub root: String,
    /// `None` for cgroup2; for v1 the controllers named in its super options.
    pub v1_controllers: Option<Vec<String>>,
}

/// Parses `/proc/self/mountinfo`, keeping the `cgroup` and `cgroup2` mounts in file order.
/// Malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<CgroupMount> {
    text.lines().filter_map(parse_mountinfo_line).collect()
}

fn parse_mountinfo_line(line: &str) -> Option<CgroupMount> {
    let (left, right) = line.split_once(" - ")?;
    let left: Vec<&str> = left.split(' ').collect();
    let root = unescape(left.get(3)?);
    let mount_point = PathBuf::from(unescape(left.get(4)?));
    let mut right = right.split(' ');
    let fstype = right.next()?;
    let _source = right.next()?;
    let super_options = right.next().unwrap_or("");
    let v1_controllers = match fstype {
        "cgroup2" => None,
        "cgroup" => Some(
            super_options
                .split(',')
                .filter(|o| !o.is_empty() && *o != "rw" && *o != "ro" && !o.contains('='))
                .map(str::to_owned)
                .collect(),
        ),
        _ => return None,
    };
    Some(CgroupMount {
        mount_point,
        root,
        v1_controllers,
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                let value = d.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Cgroup version of a hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// One mounted hierarchy and the controllers of ours it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub version: Version,
    pub mount_point: PathBuf,
    pub root: String,
    pub controllers: Vec<Controller>,
}

/// Where each controller lives: a controller is on v2 when the cgroup2 mount's
/// `cgroup.controllers` lists it (cpu accounting and the freezer are core v2 features, used when
/// no v1 hierarchy names them), otherwise on the first v1 mount whose super options name it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Layout {
    /// The cgroup2 mount, if any (first one wins).
    pub v2: Option<(PathBuf, String)>,
    /// Controller -> index into `hierarchies`.
    placement: BTreeMap<Controller, usize>,
    hierarchies: Vec<Hierarchy>,
}

impl Layout {
    /// Resolves placements from parsed mounts and the text of the cgroup2 mount's
    /// `cgroup.controllers` (`None` when unreadable or when there is no cgroup2 mount).
    pub fn resolve(mounts: &[CgroupMount], v2_controllers: Option<&str>) -> Layout {
        let v2 = mounts
            .iter()
            .find(|m| m.v1_controllers.is_none())
            .map(|m| (m.mount_point.clone(), m.root.clone()));
        let v2_listed: Vec<&str> = v2_controllers
            .map(|t| t.split_whitespace().collect())
            .unwrap_or_default();
        let mut layout = Layout {
            v2: v2.clone(),
            ..Layout::default()
        };
        for controller in Controller::ALL {
            let v1 = mounts.iter().find(|m| {
                m.v1_controllers
                    .as_ref()
                    .is_some_and(|cs| cs.iter().any(|c| c == controller.name()))
            });
            let on_v2 = v2.is_some()
                && (v2_listed.contains(&controller.name())
                    || (controller.is_core_on_v2() && v1.is_none()));
            if on_v2 {
                if let Some((mount_point, root)) = &v2 {
                    layout.place(controller, Version::V2, mount_point, root);
                }
            } else if let Some(m) = v1 {
                layout.place(controller, Version::V1, &m.mount_point, &m.root);
            }
        }
        layout
    }

    fn place(&mut self, controller: Controller, version: Version, mount_point: &Path, root: &str) {
        let index = match self
            .hierarchies
            .iter()
            .position(|h| h.mount_point == mount_point)
        {
            Some(i) => i,
            None => {
                self.hierarchies.push(Hierarchy {
                    version,
                    mount_point: mount_point.to_path_buf(),
                    root: root.to_owned(),
                    controllers: Vec::new(),
                });
                self.hierarchies.len() - 1
            }
        };
        self.hierarchies[index].controllers.push(controller);
        self.placement.insert(controller, index);
    }

    /// The hierarchy serving `controller`, if it is available at all.
    pub fn hierarchy(&self, controller: Controller) -> Option<&Hierarchy> {
        self.placement
            .get(&controller)
            .and_then(|&i| self.hierarchies.get(i))
    }

    /// The hierarchies serving any of `controllers`, each once, each listing only the wanted
    /// controllers it serves.
    pub fn select(&self, controllers: &[Controller]) -> Vec<Hierarchy> {
        let mut out: Vec<Hierarchy> = Vec::new();
        for &c in controllers {
            let Some(h) = self.hierarchy(c) else { continue };
            match out.iter_mut().find(|o| o.mount_point == h.mount_point) {
                Some(o) => o.controllers.push(c),
                None => out.push(Hierarchy {
                    controllers: vec![c],
                    ..h.clone()
                }),
            }
        }
        out
    }
}

/// Reads mountinfo and the cgroup2 root's `cgroup.controllers` and resolves the layout.
pub fn detect() -> std::io::Result<Layout> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mounts = parse_mountinfo(&text);
    let v2_controllers = mounts
        .iter()
        .find(|m| m.v1_controllers.is_none())
        .and_then(|m| std::fs::read_to_string(m.mount_point.join("cgroup.controllers")).ok());
    Ok(Layout::resolve(&mounts, v2_controllers.as_deref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1_ONLY: &str = "\
22 1 0:20 / /sys rw,nosuid - sysfs sysfs rw
25 22 0:23 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/systemd rw shared:10 - cgroup cgroup rw,xattr,name=systemd
30 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw shared:14 - cgroup cgroup rw,cpu,cpuacct
31 25 0:29 / /sys/fs/cgroup/memory rw shared:15 - cgroup cgroup rw,memory
32 25 0:30 / /sys/fs/cgroup/pids rw shared:16 - cgroup cgroup rw,pids
33 25 0:31 / /sys/fs/cgroup/freezer rw shared:17 - cgroup cgroup rw,freezer
";

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    const PURE_V2: &str = "\
24 18 0:21 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
25 18 0:22 / /proc rw - proc proc rw
";

    #[test]
    fn v1_only_with_comounted_cpu() {
        let layout = Layout::resolve(&parse_mountinfo(V1_ONLY), None);
        assert!(layout.v2.is_none());
        let cpu = layout.hierarchy(Controller::Cpu).expect("cpu");
        assert_eq!(cpu.mount_point, Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(cpu.version, Version::V1);
        let acct = layout.hierarchy(Controller::Cpuacct).expect("cpuacct");
        assert_eq!(acct.mount_point, cpu.mount_point);
        let wanted = [Controller::Cpu, Controller::Cpuacct, Controller::Memory];
        let sel = layout.select(&wanted);
        assert_eq!(sel.len(), 2);
        assert_eq!(
            sel[0].controllers,
            vec![Controller::Cpu, Controller::Cpuacct]
        );
        assert_eq!(
            layout
                .hierarchy(Controller::Freezer)
                .expect("freezer")
                .version,
            Version::V1
        );
    }

    #[test]
    fn hybrid_uses_v1_for_everything_v2_lacks() {
        let layout = Layout::resolve(&parse_mountinfo(HYBRID), Some("hugetlb\n"));
        assert_eq!(
            layout.v2,
            Some((PathBuf::from("/sys/fs/cgroup/unified"), "/".to_owned()))
        );
        for c in Controller::ALL {
            let h = layout.hierarchy(c).expect("placed");
            assert_eq!(h.version, Version::V1, "{c}");
            assert_eq!(h.mount_point, Path::new("/sys/fs/cgroup").join(c.name()));
        }
        let sel = layout.select(&Controller::ALL);
        assert_eq!(sel.len(), 5);
    }

    #[test]
    fn hybrid_with_memory_on_v2() {
        let text = HYBRID.replace("rw,memory", "rw");
        let layout = Layout::resolve(&parse_mountinfo(&text), Some("memory hugetlb"));
        let mem = layout.hierarchy(Controller::Memory).expect("memory");
        assert_eq!(mem.version, Version::V2);
        assert_eq!(
            layout.hierarchy(Controller::Freezer).expect("f").version,
            Version::V1
        );
    }

    #[test]
    fn pure_v2() {
        let layout = Layout::resolve(
            &parse_mountinfo(PURE_V2),
            Some("cpuset cpu io memory hugetlb pids rdma misc\n"),
        );
        for c in Controller::ALL {
            let h = layout.hierarchy(c).expect("placed");
            assert_eq!(h.version, Version::V2, "{c}");
            assert_eq!(h.mount_point, Path::new("/sys/fs/cgroup"));
        }
        let sel = layout.select(&Controller::ALL);
        assert_eq!(sel.len(), 1);
        assert_eq!(sel[0].controllers.len(), 5);
    }

    #[test]
    fn v2_without_delegated_controller_leaves_it_unplaced() {
        let layout = Layout::resolve(&parse_mountinfo(PURE_V2), Some("cpu memory"));
        assert!(layout.hierarchy(Controller::Pids).is_none());
        assert!(layout.hierarchy(Controller::Freezer).is_some());
        let none = Layout::resolve(&parse_mountinfo(PURE_V2), None);
        assert!(none.hierarchy(Controller::Memory).is_none());
    }

    #[test]
    fn garbage_and_escapes() {
        assert!(parse_mountinfo("garbage\n\n1 2 3\n - - -").is_empty());
        let m = parse_mountinfo("1 2 0:1 /a\\040b /mnt/x\\040y rw - cgroup none rw,memory\n");
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].mount_point, Path::new("/mnt/x y"));
        assert_eq!(m[0].root, "/a b");
        assert_eq!(unescape("\\\\9\\"), "\\\\9\\");
    }
}
