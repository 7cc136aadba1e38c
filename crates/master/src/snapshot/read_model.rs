//! The incremental read model: the actor's [`ReadModel`] makes each
//! snapshot from the previous one and the master's marks of what changed
//! (`Master::take_changes`), so publishing costs what changed, not the
//! cluster's size.
//!
//! Invariant: after [`ReadModel::update`] its snapshot equals what
//! [`Master::snapshot`] builds from scratch at the same instant (checked
//! after every step of the seeded simulation, `tests/simulation.rs`).
//!
//! Per update it does O(changed agents, offers and tasks) list work (each
//! a few chunk copies, see `list.rs`), plus O(frameworks + roles) for the
//! parts rebuilt whole every time: each framework's row (its "why no
//! offer?" ages move with the clock; its task lists are carried over and
//! changed in place), the roles, weights and quotas, the counters. It never
//! walks every agent, task or offer; nothing here may (the snapshot is
//! built on the actor, which answers nobody meanwhile).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use agora_core::{AgentId, Resources, TaskId};

use super::build::{
    RecentSummary, agent_resources, agent_view, framework_view, next_task_view, offer_view,
    task_views,
};
use super::{FrameworkView, Keyed, SharedList, StateSnapshot, TaskView};
use crate::state::{Agent, Framework, Master, Task, Tracked};

/// Above this share of a list changed, it is rebuilt in one merge pass
/// (unchanged items still shared) instead of item by item.
const MERGE_SHARE: usize = 4;

/// The actor's read model (see the module docs).
pub struct ReadModel {
    /// The snapshot as of the last update; published snapshots share its
    /// lists.
    current: StateSnapshot,
    /// Each outstanding offer's role and resources, by offer id, so that
    /// `offered` can be kept as offers come and go.
    offers: HashMap<String, (String, Resources)>,
    /// What outstanding offers hold, by role (for `/roles`).
    offered: BTreeMap<String, Resources>,
    /// Completed frameworks pushed so far (see `History`).
    completed_frameworks_seen: u64,
    /// Per framework id (live or completed): its completed tasks' pushes
    /// and rewrites that its row holds.
    completed_tasks_seen: HashMap<String, (u64, u64)>,
}

impl ReadModel {
    /// A read model of `master` as it is: built from scratch once (a new
    /// term), after which only changes are applied.
    pub fn new(master: &mut Master, start_time: f64, now_wall: f64) -> Self {
        master.take_changes();
        let current = master.snapshot(start_time, now_wall);
        let mut offers = HashMap::new();
        let mut offered: BTreeMap<String, Resources> = BTreeMap::new();
        for offer in master.offers.values() {
            offers.insert(
                offer.id.to_string(),
                (offer.role.clone(), offer.resources.clone()),
            );
            offered
                .entry(offer.role.clone())
                .or_default()
                .add(&offer.resources);
        }
        let completed_tasks_seen = master
            .frameworks
            .values()
            .chain(&master.completed_frameworks)
            .map(|f| (f.id.to_string(), completed_seen(f)))
            .collect();
        Self {
            current,
            offers,
            offered,
            completed_frameworks_seen: master.completed_frameworks.pushed(),
            completed_tasks_seen,
        }
    }

    /// The snapshot as of the last update.
    pub fn current(&self) -> &StateSnapshot {
        &self.current
    }

    /// Applies what changed in `master` since the last update and returns
    /// the new snapshot (which shares all that did not change).
    pub fn update(&mut self, master: &mut Master, now_wall: f64) -> StateSnapshot {
        let changes = master.take_changes();
        let start_time = self.current.start_time;

        // Agents: their rows and their totals for Mesos' shapes.
        let agents: BTreeSet<&AgentId> = changes.agents.union(&changes.free).collect();
        let rows = &mut self.current.agents;
        let totals = &mut self.current.mesos.agent_resources;
        if agents.len() > rows.len() / MERGE_SHARE {
            let sources = || master.agents.iter().map(|(id, a)| (id.as_str(), (id, a)));
            let row =
                |(id, a): &(&AgentId, &Agent)| Arc::new(agent_view(a, master.free_of(id).as_ref()));
            *rows = rows.merged(sources(), |s, _| agents.contains(s.0).then(|| row(s)), row);
            let total = |(_, a): &(&AgentId, &Agent)| Arc::new(agent_resources(a));
            *totals = totals.merged(
                sources(),
                |s, _| agents.contains(s.0).then(|| total(s)),
                total,
            );
        } else {
            // In key order (a sorted set): each search starts where the last one was.
            let (mut rows, mut totals) = (rows.sweep(), totals.sweep());
            for id in agents {
                match master.agents.get(id) {
                    Some(agent) => {
                        let free = master.free_of(id);
                        rows.upsert(Arc::new(agent_view(agent, free.as_ref())));
                        totals.upsert(Arc::new(agent_resources(agent)));
                    }
                    None => {
                        rows.remove(id.as_str());
                        totals.remove(id.as_str());
                    }
                }
            }
        }

        // Offers, and what they hold by role.
        let mut offer_rows = self.current.offers.sweep();
        for id in &changes.offers {
            if let Some((role, resources)) = self.offers.remove(id.as_str())
                && let Some(sum) = self.offered.get_mut(&role)
            {
                sum.subtract(&resources);
                if sum.is_empty() {
                    self.offered.remove(&role);
                }
            }
            match master.offers.get(id) {
                Some(offer) => {
                    offer_rows.upsert(Arc::new(offer_view(offer)));
                    self.offers.insert(
                        id.to_string(),
                        (offer.role.clone(), offer.resources.clone()),
                    );
                    self.offered
                        .entry(offer.role.clone())
                        .or_default()
                        .add(&offer.resources);
                }
                None => {
                    offer_rows.remove(id.as_str());
                }
            }
        }

        // Frameworks: every row anew around its carried-over task lists.
        // Completed ones first: a framework that just completed starts from
        // its live row in the previous snapshot.
        let previous_live = self.current.frameworks.clone();
        let no_tasks = BTreeSet::new();
        let mut rows = |f: &Framework, offer_status, previous: Option<&FrameworkView>| {
            let changed = changes.tasks.get(&f.id).unwrap_or(&no_tasks);
            let seen = self
                .completed_tasks_seen
                .entry(f.id.to_string())
                .or_default();
            let (tasks, completed) = task_lists(f, previous, changed, seen);
            framework_view(f, offer_status, tasks, completed)
        };
        let completed_list = &mut self.current.completed_frameworks;
        let history = &master.completed_frameworks;
        let new = (history.pushed() - self.completed_frameworks_seen).min(history.len() as u64);
        let new = new as usize;
        while completed_list.len() > history.len() - new {
            completed_list.pop_front();
        }
        for f in history.iter().skip(history.len() - new) {
            let previous = previous_live.get_key(f.id.as_str());
            completed_list.push_back(Arc::new(rows(f, Vec::new(), previous)));
        }
        self.completed_frameworks_seen = history.pushed();
        let mut previous = previous_live.arcs().peekable();
        self.current.frameworks = SharedList::from_arcs(master.frameworks.values().map(|f| {
            while previous.next_if(|p| p.key() < f.id.as_str()).is_some() {}
            let before = previous.next_if(|p| p.key() == f.id.as_str());
            let status = master.offer_status_views(f, now_wall);
            Arc::new(rows(f, status, before.map(|p| p.as_ref())))
        }));
        // Frameworks gone from both lists take their marks with them.
        if self.completed_tasks_seen.len()
            > master.frameworks.len() + master.completed_frameworks.len()
        {
            let known: BTreeSet<&str> = master
                .frameworks
                .keys()
                .map(|id| id.as_str())
                .chain(master.completed_frameworks.iter().map(|f| f.id.as_str()))
                .collect();
            self.completed_tasks_seen
                .retain(|id, _| known.contains(id.as_str()));
        }

        // The small parts, whole.
        let mut next = master.snapshot_small_parts(start_time, now_wall, &self.offered);
        next.agents = self.current.agents.clone();
        next.frameworks = self.current.frameworks.clone();
        next.completed_frameworks = self.current.completed_frameworks.clone();
        next.offers = self.current.offers.clone();
        next.mesos.agent_resources = self.current.mesos.agent_resources.clone();
        self.current = next;
        self.current.clone()
    }
}

/// (pushes, rewrites) of a framework's completed tasks.
fn completed_seen(f: &Framework) -> (u64, u64) {
    (f.completed_tasks.pushed(), f.completed_tasks.rewrites())
}

/// A framework's live and completed task lists: its previous row's, with
/// the tasks in `changed` and the completed tasks pushed since `seen`
/// applied; built from scratch when there is no previous row or its
/// completed tasks were rewritten.
fn task_lists(
    f: &Framework,
    previous: Option<&FrameworkView>,
    changed: &BTreeSet<TaskId>,
    seen: &mut (u64, u64),
) -> (SharedList<TaskView>, SharedList<TaskView>) {
    let Some(previous) = previous else {
        *seen = completed_seen(f);
        let tasks = task_views(f.tasks.values());
        let completed = task_views(f.completed_tasks.iter());
        return (tasks, completed);
    };
    let tasks = changed_tasks(&previous.tasks, &f.tasks, changed);
    let history = &f.completed_tasks;
    let completed = if seen.1 != history.rewrites() {
        task_views(history.iter())
    } else {
        let mut list = previous.completed_tasks.clone();
        let recent = RecentSummary::default();
        let new = ((history.pushed() - seen.0).min(history.len() as u64)) as usize;
        while list.len() > history.len() - new {
            list.pop_front();
        }
        for task in history.iter().skip(history.len() - new) {
            // A task that just ended was live in the previous row.
            let before = previous.tasks.get_key(task.id.as_str());
            list.push_back(Arc::new(next_task_view(task, before, &recent)));
        }
        list
    };
    *seen = completed_seen(f);
    (tasks, completed)
}

/// `previous` with the tasks in `changed` made again from `tasks` (or
/// removed); in one merge pass when much changed. A task's new view shares
/// its previous one's fixed part where it can (`build::next_task_view`).
fn changed_tasks(
    previous: &SharedList<TaskView>,
    tasks: &Tracked<TaskId, Task>,
    changed: &BTreeSet<TaskId>,
) -> SharedList<TaskView> {
    let mut list = previous.clone();
    if changed.is_empty() {
        return list;
    }
    let recent = RecentSummary::default();
    if changed.len() > list.len() / MERGE_SHARE {
        return list.merged(
            tasks.iter().map(|(id, task)| (id.as_str(), (id, task))),
            |(id, task), before| {
                changed
                    .contains(*id)
                    .then(|| Arc::new(next_task_view(task, before, &recent)))
            },
            |(_, task)| Arc::new(next_task_view(task, None, &recent)),
        );
    }
    // In key order (a sorted set): each search starts where the last one was.
    let mut sweep = list.sweep();
    for id in changed {
        match tasks.get(id) {
            Some(task) => {
                sweep.upsert_with(id.as_str(), |before| {
                    Arc::new(next_task_view(task, before, &recent))
                });
            }
            None => {
                sweep.remove(id.as_str());
            }
        }
    }
    list
}
