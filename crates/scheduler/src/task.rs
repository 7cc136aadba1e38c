//! Helpers that build `TaskInfo`s and read scalar resources out of offers.

use agora_proto::v1::{
    AgentId, CommandInfo, Environment, HealthCheck, Label, Labels, Offer, Resource, TaskId,
    TaskInfo, command_info, environment, value,
};

/// A scalar resource, e.g. `scalar_resource("cpus", 0.5)`.
pub fn scalar_resource(name: &str, value: f64) -> Resource {
    Resource {
        name: name.to_owned(),
        r#type: Some(value::Type::Scalar as i32),
        scalar: Some(value::Scalar { value }),
        ..Default::default()
    }
}

/// The sum of the scalar resources called `name` (all roles and reservations).
pub fn scalar_sum(resources: &[Resource], name: &str) -> f64 {
    resources
        .iter()
        .filter(|r| r.name == name && r.r#type() == value::Type::Scalar)
        .filter_map(|r| r.scalar.as_ref())
        .map(|s| s.value)
        .sum()
}

/// A ranges resource, e.g. `ranges_resource("ports", &[(31000, 31009)])`
/// (each range inclusive, as in Mesos).
fn ranges_resource(name: &str, ranges: &[(u64, u64)]) -> Resource {
    Resource {
        name: name.to_owned(),
        r#type: Some(value::Type::Ranges as i32),
        ranges: Some(value::Ranges {
            range: ranges
                .iter()
                .map(|&(begin, end)| value::Range { begin, end })
                .collect(),
        }),
        ..Default::default()
    }
}

/// `ports` as inclusive ranges: sorted, duplicates dropped, neighbours
/// merged (`[31001, 31000, 31005]` is `[(31000, 31001), (31005, 31005)]`).
fn port_ranges(ports: &[u16]) -> Vec<(u64, u64)> {
    let mut sorted = ports.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for port in sorted.into_iter().map(u64::from) {
        match ranges.last_mut() {
            Some((_, end)) if *end + 1 == port => *end = port,
            _ => ranges.push((port, port)),
        }
    }
    ranges
}

/// The `cpus` and `mem` (MB) of an offer, the two resources most frameworks
/// size their tasks by.
pub fn offer_cpus_mem(offer: &Offer) -> (f64, f64) {
    (
        scalar_sum(&offer.resources, "cpus"),
        scalar_sum(&offer.resources, "mem"),
    )
}

/// Builds a `TaskInfo` that runs a shell command under the default (command)
/// executor.
///
/// ```
/// # use agora_proto::v1::AgentId;
/// # use agora_scheduler::TaskBuilder;
/// let task = TaskBuilder::command("job-1", "job", "echo hello")
///     .cpus(0.1)
///     .mem(16.0)
///     .build(AgentId { value: "agent-1".into() });
/// assert_eq!(task.task_id.unwrap().value, "job-1");
/// ```
#[derive(Debug, Clone)]
pub struct TaskBuilder {
    task_id: String,
    name: String,
    command: CommandInfo,
    resources: Vec<Resource>,
    labels: Vec<Label>,
    health_check: Option<HealthCheck>,
}

impl TaskBuilder {
    /// A task running `cmd` with `sh -c`, with no resources yet.
    pub fn command(
        task_id: impl Into<String>,
        name: impl Into<String>,
        cmd: impl Into<String>,
    ) -> Self {
        Self {
            task_id: task_id.into(),
            name: name.into(),
            command: CommandInfo {
                shell: Some(true),
                value: Some(cmd.into()),
                ..Default::default()
            },
            resources: Vec::new(),
            labels: Vec::new(),
            health_check: None,
        }
    }

    /// Sets the `cpus` scalar resource (replacing an earlier value).
    pub fn cpus(self, cpus: f64) -> Self {
        self.scalar("cpus", cpus)
    }

    /// Sets the `mem` scalar resource in MB (replacing an earlier value).
    pub fn mem(self, mb: f64) -> Self {
        self.scalar("mem", mb)
    }

    /// Sets the `disk` scalar resource in MB (replacing an earlier value).
    pub fn disk(self, mb: f64) -> Self {
        self.scalar("disk", mb)
    }

    /// Sets any scalar resource (replacing an earlier one of that name).
    pub fn scalar(mut self, name: &str, value: f64) -> Self {
        self.resources.retain(|r| r.name != name);
        self.resources.push(scalar_resource(name, value));
        self
    }

    /// Adds a resource as given (ranges, sets, reservations...).
    pub fn resource(mut self, resource: Resource) -> Self {
        self.resources.push(resource);
        self
    }

    /// Adds `ports` as the task's `ports` ranges resource (merged into
    /// ranges; replacing an earlier `ports` resource). No ports, no resource.
    pub fn ports(mut self, ports: &[u16]) -> Self {
        self.resources.retain(|r| r.name != "ports");
        if !ports.is_empty() {
            self.resources
                .push(ranges_resource("ports", &port_ranges(ports)));
        }
        self
    }

    /// Adds a URI for the agent to fetch into the sandbox before the task
    /// starts.
    pub fn uri(mut self, uri: command_info::Uri) -> Self {
        self.command.uris.push(uri);
        self
    }

    /// Sets the task's health check (run by its executor on the agent).
    pub fn health_check(mut self, check: HealthCheck) -> Self {
        self.health_check = Some(check);
        self
    }

    /// Adds an environment variable to the command.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.command
            .environment
            .get_or_insert_with(Environment::default)
            .variables
            .push(environment::Variable {
                name: name.into(),
                value: Some(value.into()),
            });
        self
    }

    /// Runs the command as `user` instead of the framework's user.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.command.user = Some(user.into());
        self
    }

    /// Adds a label to the task.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push(Label {
            key: key.into(),
            value: Some(value.into()),
        });
        self
    }

    /// The task for `agent_id`, its resources without allocation info.
    pub fn build(self, agent_id: AgentId) -> TaskInfo {
        TaskInfo {
            name: self.name,
            task_id: Some(TaskId {
                value: self.task_id,
            }),
            agent_id: Some(agent_id),
            resources: self.resources,
            command: Some(self.command),
            labels: (!self.labels.is_empty()).then_some(Labels {
                labels: self.labels,
            }),
            health_check: self.health_check,
            ..Default::default()
        }
    }

    /// The task for the agent of `offer`, its resources carrying the offer's
    /// allocation info (the role they were offered to), as Mesos requires
    /// when launching on resources offered to a role.
    pub fn build_for_offer(self, offer: &Offer) -> TaskInfo {
        let allocation = offer.allocation_info.clone().or_else(|| {
            offer
                .resources
                .iter()
                .find_map(|r| r.allocation_info.clone())
        });
        let mut task = self.build(offer.agent_id.clone().unwrap_or_default());
        if let Some(allocation) = allocation {
            for resource in &mut task.resources {
                if resource.allocation_info.is_none() {
                    resource.allocation_info = Some(allocation.clone());
                }
            }
        }
        task
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_proto::v1::resource::AllocationInfo;

    fn agent(id: &str) -> AgentId {
        AgentId { value: id.into() }
    }

    #[test]
    fn builds_a_command_task_with_scalar_resources() {
        let task = TaskBuilder::command("t-1", "t", "echo hi")
            .cpus(0.1)
            .mem(16.0)
            .build(agent("a1"));

        assert_eq!(task.name, "t");
        assert_eq!(
            task.task_id,
            Some(TaskId {
                value: "t-1".into()
            })
        );
        assert_eq!(task.agent_id, Some(agent("a1")));
        let command = task.command.as_ref().expect("command set");
        assert_eq!(command.value.as_deref(), Some("echo hi"));
        assert_eq!(command.shell, Some(true));
        assert!(task.executor.is_none());
        assert!(task.labels.is_none());

        assert_eq!(task.resources.len(), 2);
        let cpus = &task.resources[0];
        assert_eq!(cpus.name, "cpus");
        assert_eq!(cpus.r#type, Some(value::Type::Scalar as i32));
        assert_eq!(cpus.scalar.as_ref().map(|s| s.value), Some(0.1));
        assert!(cpus.allocation_info.is_none());
        assert_eq!(scalar_sum(&task.resources, "mem"), 16.0);
    }

    #[test]
    fn setting_a_scalar_twice_replaces_it() {
        let task = TaskBuilder::command("t", "t", "true")
            .cpus(1.0)
            .cpus(2.0)
            .disk(5.0)
            .build(agent("a"));
        assert_eq!(scalar_sum(&task.resources, "cpus"), 2.0);
        assert_eq!(scalar_sum(&task.resources, "disk"), 5.0);
        assert_eq!(task.resources.len(), 2);
    }

    #[test]
    fn env_user_and_labels_are_carried() {
        let task = TaskBuilder::command("t", "t", "true")
            .env("K", "V")
            .user("nobody")
            .label("team", "infra")
            .build(agent("a"));
        let command = task.command.expect("command set");
        assert_eq!(command.user.as_deref(), Some("nobody"));
        let vars = command.environment.expect("environment set").variables;
        assert_eq!(vars.len(), 1);
        assert_eq!(vars[0].name, "K");
        assert_eq!(vars[0].value.as_deref(), Some("V"));
        let labels = task.labels.expect("labels set").labels;
        assert_eq!(labels[0].key, "team");
    }

    #[test]
    fn ports_uris_and_health_check_are_carried() {
        let uri = command_info::Uri {
            value: "http://h/a.tgz".into(),
            extract: Some(true),
            ..Default::default()
        };
        let check = HealthCheck {
            consecutive_failures: Some(2),
            ..Default::default()
        };
        let task = TaskBuilder::command("t", "t", "true")
            .ports(&[31005, 31000, 31001, 31002, 31001])
            .ports(&[31000, 31001, 31002, 31005])
            .uri(uri.clone())
            .health_check(check.clone())
            .build(agent("a"));
        assert_eq!(task.health_check, Some(check));
        assert_eq!(task.command.expect("command set").uris, vec![uri]);
        assert_eq!(task.resources.len(), 1, "ports replaced, not added");
        let ports = &task.resources[0];
        assert_eq!(ports.name, "ports");
        assert_eq!(ports.r#type, Some(value::Type::Ranges as i32));
        let ranges: Vec<(u64, u64)> = ports
            .ranges
            .as_ref()
            .expect("ranges")
            .range
            .iter()
            .map(|r| (r.begin, r.end))
            .collect();
        assert_eq!(ranges, vec![(31000, 31002), (31005, 31005)]);

        let task = TaskBuilder::command("t", "t", "true")
            .ports(&[])
            .build(agent("a"));
        assert!(task.resources.is_empty());
        assert!(task.health_check.is_none());
        assert_eq!(port_ranges(&[65535, 1]), vec![(1, 1), (65535, 65535)]);
    }

    #[test]
    fn build_for_offer_copies_agent_and_allocation() {
        let allocation = AllocationInfo {
            role: Some("web".into()),
        };
        let offer = Offer {
            agent_id: Some(agent("a7")),
            allocation_info: Some(allocation.clone()),
            resources: vec![scalar_resource("cpus", 4.0)],
            ..Default::default()
        };
        let task = TaskBuilder::command("t", "t", "true")
            .cpus(1.0)
            .mem(8.0)
            .build_for_offer(&offer);
        assert_eq!(task.agent_id, Some(agent("a7")));
        for r in &task.resources {
            assert_eq!(r.allocation_info.as_ref(), Some(&allocation), "{}", r.name);
        }

        // Without offer-level allocation info, the resources' own is used.
        let mut cpus = scalar_resource("cpus", 4.0);
        cpus.allocation_info = Some(allocation.clone());
        let offer = Offer {
            agent_id: Some(agent("a8")),
            resources: vec![cpus],
            ..Default::default()
        };
        let task = TaskBuilder::command("t", "t", "true")
            .cpus(1.0)
            .build_for_offer(&offer);
        assert_eq!(task.resources[0].allocation_info, Some(allocation));
    }

    #[test]
    fn sums_scalars_by_name_only() {
        let mut ranges = scalar_resource("cpus", 100.0);
        ranges.r#type = Some(value::Type::Ranges as i32);
        let resources = vec![
            scalar_resource("cpus", 1.5),
            scalar_resource("cpus", 0.5),
            scalar_resource("mem", 64.0),
            ranges,
        ];
        assert_eq!(scalar_sum(&resources, "cpus"), 2.0);
        assert_eq!(scalar_sum(&resources, "disk"), 0.0);
        let offer = Offer {
            resources,
            ..Default::default()
        };
        assert_eq!(offer_cpus_mem(&offer), (2.0, 64.0));
    }
}
