//! What the agent tells `agora executor` about how to run a container, and
//! the pieces both sides share: the task user, the environment, ports.
//!
//! The agent decides (isolation, fetcher settings, which user, which
//! variables); the executor process carries it out. The decision travels as
//! one JSON document in [`ENV_LAUNCH`], removed from the environment before
//! anything of the framework's runs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use agora_proto::v1 as pb;
use prost::Message;
use serde::{Deserialize, Serialize};

/// The environment variable holding a [`LaunchConfig`] as JSON.
pub const ENV_LAUNCH: &str = "AGORA_LAUNCH";

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LaunchConfig {
    /// The container's cgroups, when the agent isolates with cgroups.
    pub cgroups: Option<CgroupsSpec>,
    pub fetcher: FetcherSpec,
    /// The user tasks run as; `None` keeps the executor's own (the agent's).
    pub user: Option<TaskUser>,
    /// `--executor-environment-variables`: added to every task's and
    /// executor's environment.
    pub environment: BTreeMap<String, String>,
    /// Check the sandbox's disk use against the task's `disk` this often
    /// (seconds); `None` disables the check (`disk/du` not selected).
    pub disk_check_interval_secs: Option<f64>,
    /// A framework's own executor: its `CommandInfo`, protobuf in hex.
    /// `agora executor` joins the container, fetches, then becomes it.
    pub custom_command: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CgroupsSpec {
    pub isolation: String,
    pub cgroups_root: String,
    pub enable_cfs: bool,
    pub container_id: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FetcherSpec {
    pub cache_dir: Option<PathBuf>,
    pub cache_max_bytes: u64,
    pub stall_timeout_secs: f64,
    pub max_download_bytes: Option<u64>,
    pub frameworks_home: Option<PathBuf>,
    /// `--fetcher-max-extract-size`; `None`: the fetcher's default cap.
    #[serde(default)]
    pub max_extract_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// What a launch wrapper could not do, left in the sandbox for the agent
/// (a custom executor that never started cannot report it otherwise).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LaunchFailure {
    /// The fetcher failed (else: joining the container or starting the program).
    pub fetcher: bool,
    pub message: String,
}

impl LaunchFailure {
    pub fn reason(&self) -> pb::task_status::Reason {
        if self.fetcher {
            pb::task_status::Reason::FetcherFailed
        } else {
            pb::task_status::Reason::ContainerLaunchFailed
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LaunchError {
    #[error("user '{0}' does not exist on this agent")]
    NoSuchUser(String),
    #[error("cannot look up user '{user}': {message}")]
    Lookup { user: String, message: String },
    #[error("malformed launch configuration: {0}")]
    Malformed(String),
}

impl LaunchConfig {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(text: &str) -> Result<Self, LaunchError> {
        serde_json::from_str(text).map_err(|e| LaunchError::Malformed(e.to_string()))
    }

    pub fn set_custom_command(&mut self, command: &pb::CommandInfo) {
        // Protobuf bytes are carried in the JSON document as lower-case hex.
        self.custom_command = Some(hex::encode(command.encode_to_vec()));
    }

    pub fn custom_command(&self) -> Result<Option<pb::CommandInfo>, LaunchError> {
        let Some(encoded) = &self.custom_command else {
            return Ok(None);
        };
        let bytes = hex::decode(encoded)
            .map_err(|e| LaunchError::Malformed(format!("custom command: {e}")))?;
        pb::CommandInfo::decode(bytes.as_slice())
            .map(Some)
            .map_err(|e| LaunchError::Malformed(e.to_string()))
    }
}

/// Looks a user up through the system's name service (NSS: files, LDAP...).
pub fn lookup_user(name: &str) -> Result<TaskUser, LaunchError> {
    match nix::unistd::User::from_name(name) {
        Ok(Some(user)) => Ok(TaskUser {
            name: name.to_string(),
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            home: user.dir,
        }),
        Ok(None) => Err(LaunchError::NoSuchUser(name.to_string())),
        Err(e) => Err(LaunchError::Lookup {
            user: name.to_string(),
            message: e.to_string(),
        }),
    }
}

/// Which user a container runs as, as Mesos decides it: with
/// `--switch-user` and an agent running as root, the command's user, else
/// the framework's; without either, or when the agent is not root, the
/// agent's own user.
pub fn task_user_name(
    switch_user: bool,
    agent_is_root: bool,
    command_user: Option<&str>,
    framework_user: &str,
) -> Option<String> {
    if !switch_user || !agent_is_root {
        return None;
    }
    command_user
        .filter(|u| !u.is_empty())
        .or(Some(framework_user).filter(|u| !u.is_empty()))
        .map(str::to_string)
}

/// The port numbers a task holds, in the order of its `ports` ranges.
pub fn task_ports(resources: &[pb::Resource]) -> Vec<u64> {
    let mut ports = Vec::new();
    for resource in resources.iter().filter(|r| r.name == "ports") {
        for range in resource.ranges.iter().flat_map(|r| r.range.iter()) {
            // Bounded: a port range never exceeds 65536 values.
            let end = range.end.min(65_535);
            if range.begin <= end {
                ports.extend(range.begin..=end);
            }
        }
    }
    ports
}

/// `PORT0`, `PORT1`, ... and `PORTS` (comma separated), as Marathon and
/// the field guides' tasks expect.
pub fn port_variables(ports: &[u64]) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| (format!("PORT{i}"), p.to_string()))
        .collect();
    if let Some(first) = ports.first() {
        vars.push(("PORT".to_string(), first.to_string()));
    }
    if !ports.is_empty() {
        let all: Vec<String> = ports.iter().map(u64::to_string).collect();
        vars.push(("PORTS".to_string(), all.join(",")));
    }
    vars
}

/// Parses `--executor-environment-variables`: a JSON object of strings.
pub fn parse_environment_flag(text: &str) -> Result<BTreeMap<String, String>, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let object = value
        .as_object()
        .ok_or("expected a JSON object of strings, e.g. {\"PATH\": \"/bin:/usr/bin\"}")?;
    let mut vars = BTreeMap::new();
    for (name, value) in object {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return Err(format!("invalid variable name {name:?}"));
        }
        let value = value
            .as_str()
            .ok_or_else(|| format!("the value of {name} must be a string"))?;
        if value.contains('\0') {
            return Err(format!("the value of {name} contains a NUL byte"));
        }
        vars.insert(name.clone(), value.to_string());
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports_resource(ranges: &[(u64, u64)]) -> pb::Resource {
        pb::Resource {
            name: "ports".into(),
            r#type: Some(pb::value::Type::Ranges as i32),
            ranges: Some(pb::value::Ranges {
                range: ranges
                    .iter()
                    .map(|&(begin, end)| pb::value::Range { begin, end })
                    .collect(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn ports_become_variables_in_range_order() {
        let ports = task_ports(&[ports_resource(&[(31000, 31001), (31005, 31005)])]);
        assert_eq!(ports, vec![31000, 31001, 31005]);
        let vars = port_variables(&ports);
        assert!(vars.contains(&("PORT0".into(), "31000".into())));
        assert!(vars.contains(&("PORT2".into(), "31005".into())));
        assert!(vars.contains(&("PORTS".into(), "31000,31001,31005".into())));
        assert!(port_variables(&[]).is_empty());
    }

    #[test]
    fn an_inverted_or_huge_range_does_not_explode() {
        assert!(task_ports(&[ports_resource(&[(5, 1)])]).is_empty());
        assert_eq!(
            task_ports(&[ports_resource(&[(65_530, u64::MAX)])]).len(),
            6
        );
    }

    #[test]
    fn the_task_user_follows_mesos_rules() {
        assert_eq!(
            task_user_name(true, true, Some("bob"), "alice"),
            Some("bob".into())
        );
        assert_eq!(
            task_user_name(true, true, None, "alice"),
            Some("alice".into())
        );
        assert_eq!(task_user_name(true, true, Some(""), ""), None);
        assert_eq!(task_user_name(false, true, Some("bob"), "alice"), None);
        assert_eq!(task_user_name(true, false, Some("bob"), "alice"), None);
    }

    #[test]
    fn users_are_looked_up_and_unknown_ones_named() {
        assert_eq!(lookup_user("root").map(|u| u.uid), Ok(0));
        assert_eq!(
            lookup_user("no-such-user-agora"),
            Err(LaunchError::NoSuchUser("no-such-user-agora".into()))
        );
    }

    #[test]
    fn the_environment_flag_is_a_json_object_of_strings() {
        let vars = parse_environment_flag(r#"{"PATH": "/bin", "A": "b c"}"#).expect("valid");
        assert_eq!(vars.get("A").map(String::as_str), Some("b c"));
        assert!(parse_environment_flag("[1]").is_err());
        assert!(parse_environment_flag(r#"{"A": 1}"#).is_err());
        assert!(parse_environment_flag(r#"{"A=B": "x"}"#).is_err());
        assert!(parse_environment_flag("{").is_err());
    }

    #[test]
    fn the_config_round_trips_through_json_with_a_custom_command() {
        let mut config = LaunchConfig::default();
        let command = pb::CommandInfo {
            value: Some("./executor --flag".into()),
            ..Default::default()
        };
        config.set_custom_command(&command);
        let back = LaunchConfig::from_json(&config.to_json()).expect("parses");
        assert_eq!(back.custom_command(), Ok(Some(command)));
        assert!(
            LaunchConfig::from_json("{\"custom_command\": \"zz\"}")
                .expect("json")
                .custom_command()
                .is_err()
        );
    }
}
