//! Which tasks and offers are on each agent: an index beside the books, so
//! that what happens to one agent (unreachable, removed, gone, forgotten)
//! costs what is on it, not a pass over every task and offer of the cluster.
//! A scan of every task per agent made a partition of 10,000 agents with
//! 100,000 tasks cost 10^9 comparisons on the actor.
//!
//! *Invariant:* every task in a framework's `tasks` and every outstanding
//! offer is listed under its agent. An entry may outlive what it names for
//! a while (the readers check what they find against the books), never the
//! other way round.

use std::collections::{BTreeSet, HashMap};

use agora_core::{AgentId, FrameworkId, OfferId, TaskId};

#[derive(Debug, Default)]
pub(super) struct ByAgent {
    tasks: HashMap<AgentId, BTreeSet<(FrameworkId, TaskId)>>,
    offers: HashMap<AgentId, BTreeSet<OfferId>>,
}

impl ByAgent {
    pub(super) fn task_added(
        &mut self,
        agent_id: &AgentId,
        framework_id: &FrameworkId,
        task_id: &TaskId,
    ) {
        self.tasks
            .entry(agent_id.clone())
            .or_default()
            .insert((framework_id.clone(), task_id.clone()));
    }

    pub(super) fn task_removed(
        &mut self,
        agent_id: &AgentId,
        framework_id: &FrameworkId,
        task_id: &TaskId,
    ) {
        if let Some(tasks) = self.tasks.get_mut(agent_id) {
            tasks.remove(&(framework_id.clone(), task_id.clone()));
            if tasks.is_empty() {
                self.tasks.remove(agent_id);
            }
        }
    }

    /// The tasks listed under `agent_id` (check each against the books).
    pub(super) fn tasks_on(
        &self,
        agent_id: &AgentId,
    ) -> impl Iterator<Item = &(FrameworkId, TaskId)> {
        self.tasks.get(agent_id).into_iter().flatten()
    }

    pub(super) fn offer_added(&mut self, agent_id: &AgentId, offer_id: &OfferId) {
        self.offers
            .entry(agent_id.clone())
            .or_default()
            .insert(offer_id.clone());
    }

    pub(super) fn offer_removed(&mut self, agent_id: &AgentId, offer_id: &OfferId) {
        if let Some(offers) = self.offers.get_mut(agent_id) {
            offers.remove(offer_id);
            if offers.is_empty() {
                self.offers.remove(agent_id);
            }
        }
    }

    /// The offers listed under `agent_id` (check each against the books).
    pub(super) fn offers_on(&self, agent_id: &AgentId) -> impl Iterator<Item = &OfferId> {
        self.offers.get(agent_id).into_iter().flatten()
    }

    /// Every (agent, framework, task) listed, for the books' check.
    #[cfg(test)]
    pub(super) fn all_tasks(&self) -> BTreeSet<(AgentId, FrameworkId, TaskId)> {
        self.tasks
            .iter()
            .flat_map(|(a, tasks)| tasks.iter().map(|(f, t)| (a.clone(), f.clone(), t.clone())))
            .collect()
    }

    /// Every (agent, offer) listed, for the books' check.
    #[cfg(test)]
    pub(super) fn all_offers(&self) -> BTreeSet<(AgentId, OfferId)> {
        self.offers
            .iter()
            .flat_map(|(a, offers)| offers.iter().map(|o| (a.clone(), o.clone())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_what_is_added_until_it_is_removed() {
        let mut index = ByAgent::default();
        let (a1, a2) = (AgentId::new("a1"), AgentId::new("a2"));
        let f = FrameworkId::new("f");
        index.task_added(&a1, &f, &TaskId::new("t1"));
        index.task_added(&a1, &f, &TaskId::new("t2"));
        index.task_added(&a2, &f, &TaskId::new("t3"));
        index.offer_added(&a1, &OfferId::new("o1"));
        assert_eq!(index.tasks_on(&a1).count(), 2);
        index.task_removed(&a1, &f, &TaskId::new("t1"));
        index.task_removed(&a1, &f, &TaskId::new("t9"));
        let on_a1: Vec<_> = index.tasks_on(&a1).map(|(_, t)| t.as_str()).collect();
        assert_eq!(on_a1, ["t2"]);
        index.task_removed(&a1, &f, &TaskId::new("t2"));
        assert_eq!(index.tasks_on(&a1).count(), 0);
        assert!(
            !index.tasks.contains_key(&a1),
            "an empty agent's entry goes"
        );
        assert_eq!(index.offers_on(&a1).count(), 1);
        index.offer_removed(&a1, &OfferId::new("o1"));
        assert!(index.offers.is_empty());
        assert_eq!(index.tasks_on(&a2).count(), 1);
    }
}
