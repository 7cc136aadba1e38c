//! The spine's simple fair allocator (see the crate docs).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use agora_core::{AgentId, FrameworkId, Resources};

use crate::{Allocation, Allocator};

/// Smallest offer worth making (Mesos' `--min_allocatable_resources`
/// default `cpus:0.01|mem:32`): at least this many cpus or this much mem.
const MIN_CPUS: f64 = 0.01;
const MIN_MEM: f64 = 32.0;

/// Resource names that count towards a framework's dominant share.
const SHARE_RESOURCES: [&str; 4] = ["cpus", "mem", "disk", "gpus"];

#[derive(Debug)]
struct AgentBooks {
    total: Resources,
    /// Allocated to frameworks: offered or in use.
    allocated: Resources,
    active: bool,
}

#[derive(Debug)]
struct RefuseFilter {
    agent_id: AgentId,
    resources: Resources,
    expires: Duration,
}

#[derive(Debug)]
struct FrameworkBooks {
    roles: BTreeSet<String>,
    suppressed: BTreeSet<String>,
    active: bool,
    allocated: BTreeMap<AgentId, Resources>,
    filters: Vec<RefuseFilter>,
}

#[derive(Debug, Default)]
pub struct FairAllocator {
    agents: BTreeMap<AgentId, AgentBooks>,
    frameworks: BTreeMap<FrameworkId, FrameworkBooks>,
}

impl FairAllocator {
    pub fn new() -> Self {
        Self::default()
    }

    fn cluster_total(&self) -> Resources {
        let mut total = Resources::new();
        for agent in self.agents.values() {
            total.add(&agent.total);
        }
        total
    }

    fn dominant_share(total: &Resources, allocated: &Resources) -> f64 {
        SHARE_RESOURCES
            .iter()
            .filter_map(|name| {
                let t = total.scalar_value(name);
                (t > 0.0).then(|| allocated.scalar_value(name) / t)
            })
            .fold(0.0, f64::max)
    }

    fn is_filtered(
        framework: &FrameworkBooks,
        agent_id: &AgentId,
        candidate: &Resources,
        now: Duration,
    ) -> bool {
        framework
            .filters
            .iter()
            .any(|f| &f.agent_id == agent_id && f.expires > now && f.resources.contains(candidate))
    }

    fn worth_offering(resources: &Resources) -> bool {
        resources.scalar_value("cpus") >= MIN_CPUS || resources.scalar_value("mem") >= MIN_MEM
    }
}

impl Allocator for FairAllocator {
    fn add_agent(
        &mut self,
        agent_id: AgentId,
        total: Resources,
        used: &[(FrameworkId, Resources)],
    ) {
        self.agents.insert(
            agent_id.clone(),
            AgentBooks {
                total,
                allocated: Resources::new(),
                active: true,
            },
        );
        for (framework_id, resources) in used {
            self.add_used(&agent_id, framework_id, resources);
        }
    }

    fn remove_agent(&mut self, agent_id: &AgentId) {
        self.agents.remove(agent_id);
        for framework in self.frameworks.values_mut() {
            framework.allocated.remove(agent_id);
            framework.filters.retain(|f| &f.agent_id != agent_id);
        }
    }

    fn set_agent_active(&mut self, agent_id: &AgentId, active: bool) {
        if let Some(agent) = self.agents.get_mut(agent_id) {
            agent.active = active;
        }
    }

    fn add_framework(
        &mut self,
        framework_id: FrameworkId,
        roles: BTreeSet<String>,
        suppressed_roles: BTreeSet<String>,
    ) {
        let books = self
            .frameworks
            .entry(framework_id)
            .or_insert_with(|| FrameworkBooks {
                roles: BTreeSet::new(),
                suppressed: BTreeSet::new(),
                active: true,
                allocated: BTreeMap::new(),
                filters: Vec::new(),
            });
        books.roles = roles;
        books.suppressed = suppressed_roles;
        books.active = true;
    }

    fn remove_framework(&mut self, framework_id: &FrameworkId) {
        if let Some(framework) = self.frameworks.remove(framework_id) {
            for (agent_id, resources) in framework.allocated {
                if let Some(agent) = self.agents.get_mut(&agent_id) {
                    agent.allocated.subtract(&resources);
                }
            }
        }
    }

    fn set_framework_active(&mut self, framework_id: &FrameworkId, active: bool) {
        if let Some(framework) = self.frameworks.get_mut(framework_id) {
            framework.active = active;
        }
    }

    fn add_used(&mut self, agent_id: &AgentId, framework_id: &FrameworkId, resources: &Resources) {
        if let Some(agent) = self.agents.get_mut(agent_id) {
            agent.allocated.add(resources);
        }
        if let Some(framework) = self.frameworks.get_mut(framework_id) {
            framework
                .allocated
                .entry(agent_id.clone())
                .or_default()
                .add(resources);
        }
    }

    fn recover(
        &mut self,
        agent_id: &AgentId,
        framework_id: &FrameworkId,
        resources: &Resources,
        refuse: Option<Duration>,
        now: Duration,
    ) {
        if let Some(agent) = self.agents.get_mut(agent_id) {
            agent.allocated.subtract(resources);
        }
        let Some(framework) = self.frameworks.get_mut(framework_id) else {
            return;
        };
        if let Some(allocated) = framework.allocated.get_mut(agent_id) {
            allocated.subtract(resources);
            if allocated.is_empty() {
                framework.allocated.remove(agent_id);
            }
        }
        if let Some(refuse) = refuse.filter(|r| !r.is_zero())
            && !resources.is_empty()
        {
            framework.filters.push(RefuseFilter {
                agent_id: agent_id.clone(),
                resources: resources.clone(),
                expires: now + refuse,
            });
        }
    }

    fn suppress(&mut self, framework_id: &FrameworkId, roles: &[String]) {
        if let Some(framework) = self.frameworks.get_mut(framework_id) {
            if roles.is_empty() {
                framework.suppressed = framework.roles.clone();
            } else {
                framework.suppressed.extend(roles.iter().cloned());
            }
        }
    }

    fn revive(&mut self, framework_id: &FrameworkId, roles: &[String]) {
        if let Some(framework) = self.frameworks.get_mut(framework_id) {
            if roles.is_empty() {
                framework.suppressed.clear();
            } else {
                framework.suppressed.retain(|r| !roles.contains(r));
            }
            // Filters are per framework here (not per role): reviving clears them all.
            framework.filters.clear();
        }
    }

    fn allocate(&mut self, now: Duration) -> Vec<Allocation> {
        for framework in self.frameworks.values_mut() {
            framework.filters.retain(|f| f.expires > now);
        }
        let total = self.cluster_total();
        // (share, framework, role): the sort order of candidates this cycle.
        let mut candidates: Vec<(f64, FrameworkId, String)> = Vec::new();
        for (framework_id, framework) in &self.frameworks {
            if !framework.active {
                continue;
            }
            let mut allocated = Resources::new();
            for r in framework.allocated.values() {
                allocated.add(r);
            }
            let share = Self::dominant_share(&total, &allocated);
            for role in framework.roles.difference(&framework.suppressed) {
                candidates.push((share, framework_id.clone(), role.clone()));
            }
        }
        let mut allocations = Vec::new();
        if candidates.is_empty() {
            return allocations;
        }
        let agent_ids: Vec<AgentId> = self.agents.keys().cloned().collect();
        for agent_id in agent_ids {
            candidates.sort_by(|a, b| {
                a.0.total_cmp(&b.0)
                    .then_with(|| a.1.cmp(&b.1))
                    .then_with(|| a.2.cmp(&b.2))
            });
            let Some(agent) = self.agents.get(&agent_id) else {
                continue;
            };
            if !agent.active {
                continue;
            }
            let mut free = agent.total.clone();
            free.subtract(&agent.allocated);
            let mut granted: Vec<(usize, Resources)> = Vec::new();
            for (index, (_, framework_id, role)) in candidates.iter().enumerate() {
                let offerable = free.allocatable_to(role);
                if !Self::worth_offering(&offerable) {
                    continue;
                }
                let Some(framework) = self.frameworks.get(framework_id) else {
                    continue;
                };
                if Self::is_filtered(framework, &agent_id, &offerable, now) {
                    continue;
                }
                free.subtract(&offerable);
                granted.push((index, offerable));
            }
            for (index, resources) in granted {
                let (share, framework_id, role) = &mut candidates[index];
                if let Some(agent) = self.agents.get_mut(&agent_id) {
                    agent.allocated.add(&resources);
                }
                if let Some(framework) = self.frameworks.get_mut(framework_id) {
                    let on_agent = framework.allocated.entry(agent_id.clone()).or_default();
                    on_agent.add(&resources);
                    let mut all = Resources::new();
                    for r in framework.allocated.values() {
                        all.add(r);
                    }
                    *share = Self::dominant_share(&total, &all);
                }
                allocations.push(Allocation {
                    framework_id: framework_id.clone(),
                    role: role.clone(),
                    agent_id: agent_id.clone(),
                    resources,
                });
            }
        }
        allocations
    }

    fn free(&self) -> BTreeMap<AgentId, Resources> {
        self.agents
            .iter()
            .map(|(id, books)| {
                let mut free = books.total.clone();
                free.subtract(&books.allocated);
                (id.clone(), free)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
