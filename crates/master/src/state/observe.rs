//! The master's books in the shapes of Mesos' v1 operator API
//! (`agora.v1.master`), and the changes to them that operators subscribed
//! to its event stream (`SUBSCRIBE` on `/api/v1`) are told.
//!
//! The books change in a few places, and each reports itself here as an
//! [`Effect::Observed`] event, in the order the changes happen: a task
//! added (launched, or adopted from an agent's report: TASK_ADDED), a
//! task's state or latest status changed (`set_task_state`; and the two
//! places that change a state without it, an agent marked unreachable or
//! back: TASK_UPDATED), an agent admitted or back from unreachable
//! (AGENT_ADDED), an agent unreachable or gone (AGENT_REMOVED: Mesos lists
//! only reachable agents), a framework subscribed or recreated from an
//! agent's report (FRAMEWORK_ADDED), re-subscribed or disconnected
//! (FRAMEWORK_UPDATED), removed (FRAMEWORK_REMOVED).
//!
//! Events are made only while [`Master::set_observed`] is on (the shell
//! turns it on while an operator is subscribed): nobody pays for what
//! nobody reads.
//!
//! The snapshot's operator view ([`Master::operator_state`]) is made by the
//! same builders, so an event and a listing never disagree on shape.

use std::collections::{BTreeMap, BTreeSet};

use agora_core::{AgentId, FrameworkId, Resources, TaskId};
use agora_proto::v1 as pb;
use agora_proto::v1::master::{self as mpb, event, response};

use super::{Agent, Effect, Framework, Master, Offer, Task};

/// The Mesos release whose APIs (the operator API's and the `/master/*`
/// endpoints') this master follows.
pub const MESOS_VERSION: &str = "1.11.0";

/// A wall-clock time (seconds since the epoch) as Mesos' `TimeInfo`.
fn time_info(secs: f64) -> pb::TimeInfo {
    // `as` saturates (and makes NaN 0): a time is never out of range.
    pb::TimeInfo {
        nanoseconds: (secs * 1e9) as i64,
    }
}

/// The executor a task runs under when it is a framework's own (a command
/// task's executor has the task's id, and Mesos leaves it out).
fn custom_executor(task: &Task) -> Option<&pb::ExecutorId> {
    task.last_status
        .as_ref()
        .and_then(|s| s.executor_id.as_ref())
        .filter(|e| !e.value.is_empty() && e.value != task.id.as_str())
}

/// A task as Mesos' `Task`: its latest status is its only one (the master
/// keeps no history).
fn task_proto(task: &Task) -> pb::Task {
    pb::Task {
        name: task.name.clone(),
        task_id: task.id.to_field(),
        framework_id: task.framework_id.to_field(),
        executor_id: custom_executor(task).cloned(),
        agent_id: task.agent_id.to_field(),
        state: Some(task.state as i32),
        resources: task.resources.to_proto(Some(&task.role)),
        statuses: task.last_status.iter().cloned().collect(),
        status_update_state: task.update_state.map(|s| s as i32),
        status_update_uuid: task.last_status.as_ref().and_then(|s| s.uuid.clone()),
    }
}

/// Whether a task's resources are in use (Mesos' `allocated_resources`).
fn holds_resources(task: &Task) -> bool {
    !agora_core::task::is_terminal(task.state) && task.state != pb::TaskState::TaskUnreachable
}

/// Resources by the role they are allocated to, each entry with its role.
fn by_role<'a>(items: impl Iterator<Item = (&'a str, &'a Resources)>) -> Vec<pb::Resource> {
    let mut sums: BTreeMap<&str, Resources> = BTreeMap::new();
    for (role, resources) in items {
        sums.entry(role).or_default().add(resources);
    }
    sums.iter()
        .flat_map(|(role, resources)| resources.to_proto(Some(role)))
        .collect()
}

fn agent_proto(agent: &Agent, offered: &Resources) -> response::get_agents::Agent {
    let port = agent.info.port.unwrap_or(5051);
    let mut info = agent.info.clone();
    info.id = agent.id.to_field();
    response::get_agents::Agent {
        agent_info: Some(info),
        active: Some(agent.conn.is_some() && agent.unreachable_since.is_none()),
        // Mesos' `deactivated` is an operator's doing (maintenance,
        // draining); Agora has no such thing.
        deactivated: Some(false),
        version: MESOS_VERSION.to_string(),
        pid: Some(format!("slave(1)@{}:{port}", agent.info.hostname)),
        registered_time: Some(time_info(agent.registered_at)),
        reregistered_time: None,
        total_resources: agent.total.to_proto(None),
        allocated_resources: agent.used.to_proto(None),
        offered_resources: offered.to_proto(None),
        capabilities: Vec::new(),
        estimated_drain_start_time: None,
    }
}

impl Master {
    /// Turns operator events ([`Effect::Observed`]) on or off.
    pub fn set_observed(&mut self, on: bool) {
        self.observed = on;
    }

    pub fn observed(&self) -> bool {
        self.observed
    }

    fn observe(&self, out: &mut Vec<Effect>, make: impl FnOnce() -> Option<mpb::Event>) {
        if self.observed
            && let Some(event) = make()
        {
            out.push(Effect::Observed(Box::new(event)));
        }
    }

    pub(super) fn observe_task_added(
        &self,
        framework_id: &FrameworkId,
        task_id: &TaskId,
        out: &mut Vec<Effect>,
    ) {
        self.observe(out, || {
            let task = self.frameworks.get(framework_id)?.tasks.get(task_id)?;
            Some(mpb::Event {
                r#type: event::Type::TaskAdded as i32,
                task_added: Some(event::TaskAdded {
                    task: Some(task_proto(task)),
                }),
                ..Default::default()
            })
        });
    }

    /// A task's state or latest status changed: `status` says what
    /// happened, the event carries the task's state as it now is.
    pub(super) fn observe_task_updated(
        &self,
        framework_id: &FrameworkId,
        task_id: &TaskId,
        status: &pb::TaskStatus,
        out: &mut Vec<Effect>,
    ) {
        self.observe(out, || {
            let task = self.frameworks.get(framework_id)?.tasks.get(task_id)?;
            Some(mpb::Event {
                r#type: event::Type::TaskUpdated as i32,
                task_updated: Some(event::TaskUpdated {
                    framework_id: framework_id.to_field(),
                    status: Some(status.clone()),
                    state: Some(task.state as i32),
                }),
                ..Default::default()
            })
        });
    }

    pub(super) fn observe_agent_added(&self, agent_id: &AgentId, out: &mut Vec<Effect>) {
        self.observe(out, || {
            let agent = self.agents.get(agent_id)?;
            let mut offered = Resources::new();
            for offer in self.offers.values().filter(|o| &o.agent_id == agent_id) {
                offered.add(&offer.resources);
            }
            Some(mpb::Event {
                r#type: event::Type::AgentAdded as i32,
                agent_added: Some(event::AgentAdded {
                    agent: Some(agent_proto(agent, &offered)),
                }),
                ..Default::default()
            })
        });
    }

    pub(super) fn observe_agent_removed(&self, agent_id: &AgentId, out: &mut Vec<Effect>) {
        self.observe(out, || {
            Some(mpb::Event {
                r#type: event::Type::AgentRemoved as i32,
                agent_removed: Some(event::AgentRemoved {
                    agent_id: agent_id.to_field(),
                }),
                ..Default::default()
            })
        });
    }

    pub(super) fn observe_framework_added(
        &self,
        framework_id: &FrameworkId,
        out: &mut Vec<Effect>,
    ) {
        self.observe(out, || {
            let framework = self.frameworks.get(framework_id)?;
            Some(mpb::Event {
                r#type: event::Type::FrameworkAdded as i32,
                framework_added: Some(event::FrameworkAdded {
                    framework: Some(self.live_framework_proto(framework)),
                }),
                ..Default::default()
            })
        });
    }

    pub(super) fn observe_framework_updated(
        &self,
        framework_id: &FrameworkId,
        out: &mut Vec<Effect>,
    ) {
        self.observe(out, || {
            let framework = self.frameworks.get(framework_id)?;
            Some(mpb::Event {
                r#type: event::Type::FrameworkUpdated as i32,
                framework_updated: Some(event::FrameworkUpdated {
                    framework: Some(self.live_framework_proto(framework)),
                }),
                ..Default::default()
            })
        });
    }

    pub(super) fn observe_framework_removed(
        &self,
        info: &pb::FrameworkInfo,
        out: &mut Vec<Effect>,
    ) {
        self.observe(out, || {
            Some(mpb::Event {
                r#type: event::Type::FrameworkRemoved as i32,
                framework_removed: Some(event::FrameworkRemoved {
                    framework_info: Some(info.clone()),
                }),
                ..Default::default()
            })
        });
    }

    /// An outstanding offer as the framework was sent it.
    fn offer_proto(&self, offer: &Offer) -> pb::Offer {
        let agent = self.agents.get(&offer.agent_id);
        pb::Offer {
            id: offer.id.to_field(),
            framework_id: offer.framework_id.to_field(),
            agent_id: offer.agent_id.to_field(),
            hostname: agent.map(|a| a.info.hostname.clone()).unwrap_or_default(),
            resources: offer.resources.to_proto(Some(&offer.role)),
            attributes: agent.map(|a| a.info.attributes.clone()).unwrap_or_default(),
            executor_ids: Vec::new(),
            allocation_info: Some(pb::resource::AllocationInfo {
                role: Some(offer.role.clone()),
            }),
        }
    }

    fn live_framework_proto(&self, framework: &Framework) -> response::get_frameworks::Framework {
        let offers: Vec<&Offer> = framework
            .offers
            .iter()
            .filter_map(|id| self.offers.get(id))
            .collect();
        self.framework_proto(framework, &offers, true)
    }

    /// A framework as Mesos' `GetFrameworks.Framework`; `live` is false for
    /// a removed (completed) one.
    fn framework_proto(
        &self,
        framework: &Framework,
        offers: &[&Offer],
        live: bool,
    ) -> response::get_frameworks::Framework {
        let active = live && framework.active();
        let mut info = framework.info.clone();
        info.id = framework.id.to_field();
        response::get_frameworks::Framework {
            framework_info: Some(info),
            active: Some(active),
            connected: Some(active),
            recovered: Some(false),
            registered_time: Some(time_info(framework.registered_at)),
            reregistered_time: framework.reregistered_at.map(time_info),
            unregistered_time: framework.disconnected_at.map(time_info),
            offers: offers.iter().map(|o| self.offer_proto(o)).collect(),
            allocated_resources: by_role(
                framework
                    .tasks
                    .values()
                    .filter(|t| holds_resources(t))
                    .map(|t| (t.role.as_str(), &t.resources)),
            ),
            offered_resources: by_role(offers.iter().map(|o| (o.role.as_str(), &o.resources))),
        }
    }

    /// Everything `GET_STATE` shows, in one pass over the books: agents
    /// (reachable ones; those expected back after a failover as
    /// `recovered_agents`), frameworks (removed ones as completed), tasks
    /// (unreachable and completed ones apart) and the frameworks' own
    /// executors that live tasks run under.
    pub fn operator_state(&self) -> response::GetState {
        let mut offered_on: BTreeMap<&AgentId, Resources> = BTreeMap::new();
        let mut offers_of: BTreeMap<&FrameworkId, Vec<&Offer>> = BTreeMap::new();
        for offer in self.offers.values() {
            offered_on
                .entry(&offer.agent_id)
                .or_default()
                .add(&offer.resources);
            offers_of
                .entry(&offer.framework_id)
                .or_default()
                .push(offer);
        }
        let none = Resources::new();
        let agents = response::GetAgents {
            agents: self
                .agents
                .values()
                .filter(|a| a.unreachable_since.is_none())
                .map(|a| agent_proto(a, offered_on.get(&a.id).unwrap_or(&none)))
                .collect(),
            recovered_agents: self
                .recovery
                .iter()
                .flat_map(|r| r.expected.values())
                .map(|entry| pb::AgentInfo {
                    hostname: entry.hostname.clone(),
                    port: Some(entry.port),
                    resources: Resources::parse(&entry.resources)
                        .map(|r| r.to_proto(None))
                        .unwrap_or_default(),
                    attributes: Vec::new(),
                    id: Some(pb::AgentId {
                        value: entry.id.clone(),
                    }),
                })
                .collect(),
        };
        let frameworks = response::GetFrameworks {
            frameworks: self
                .frameworks
                .values()
                .map(|f| {
                    let offers = offers_of.get(&f.id).map_or(&[][..], Vec::as_slice);
                    self.framework_proto(f, offers, true)
                })
                .collect(),
            completed_frameworks: self
                .completed_frameworks
                .iter()
                .map(|f| self.framework_proto(f, &[], false))
                .collect(),
            recovered_frameworks: Vec::new(),
        };
        let mut tasks = response::GetTasks::default();
        let mut executors = BTreeSet::new();
        for framework in self.frameworks.values() {
            for task in framework.tasks.values() {
                if task.state == pb::TaskState::TaskUnreachable {
                    tasks.unreachable_tasks.push(task_proto(task));
                } else {
                    tasks.tasks.push(task_proto(task));
                }
                if !agora_core::task::is_terminal(task.state)
                    && let Some(executor_id) = custom_executor(task)
                {
                    executors.insert((
                        executor_id.value.as_str(),
                        framework.id.as_str(),
                        task.agent_id.as_str(),
                    ));
                }
            }
            tasks
                .completed_tasks
                .extend(framework.completed_tasks.iter().map(task_proto));
        }
        for framework in &self.completed_frameworks {
            tasks.completed_tasks.extend(
                framework
                    .tasks
                    .values()
                    .chain(&framework.completed_tasks)
                    .map(task_proto),
            );
        }
        let executors = response::GetExecutors {
            executors: executors
                .into_iter()
                .map(
                    |(executor_id, framework_id, agent_id)| response::get_executors::Executor {
                        executor_info: Some(pb::ExecutorInfo {
                            r#type: Some(pb::executor_info::Type::Custom as i32),
                            executor_id: Some(pb::ExecutorId {
                                value: executor_id.to_string(),
                            }),
                            framework_id: Some(pb::FrameworkId {
                                value: framework_id.to_string(),
                            }),
                            ..Default::default()
                        }),
                        agent_id: Some(pb::AgentId {
                            value: agent_id.to_string(),
                        }),
                    },
                )
                .collect(),
            orphan_executors: Vec::new(),
        };
        response::GetState {
            get_tasks: Some(tasks),
            get_executors: Some(executors),
            get_frameworks: Some(frameworks),
            get_agents: Some(agents),
        }
    }
}
