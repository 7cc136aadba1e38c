//! Reconciliation questions answered later. After a failover the master
//! cannot tell a framework about a task whose agent may still re-register
//! (Mesos stays silent, and frameworks ask again with a backoff). Agora keeps
//! the question instead and answers it as soon as it can: when the task's
//! agent (or the agent the question named) re-registers, or when the
//! re-registration window ends for everyone. A framework that asks again
//! meanwhile changes nothing (one question per framework and task), and the
//! answer is the one an explicit reconciliation would give at that moment.
//!
//! Invariants: every question kept is answered at most once, and all of them
//! are answered (or dropped with their framework) by the time recovery ends.
//! Memory is bounded by [`MAX_DEFERRED`]; beyond it a question gets Mesos'
//! silence and the framework's retry finds the answer.

use std::collections::{BTreeMap, BTreeSet};

use agora_core::{AgentId, FrameworkId, TaskId};

use super::{Effect, Master, Now};

/// Questions kept at most, over all frameworks (about 150 bytes each).
pub(super) const MAX_DEFERRED: usize = 1_000_000;

/// One question: a framework's task, and the agent it named, if any.
pub(super) type Question = (FrameworkId, TaskId, Option<AgentId>);

#[derive(Debug, Default, Clone)]
pub(super) struct Deferred {
    /// Per framework, the tasks asked about and the agent each question named.
    by_framework: BTreeMap<FrameworkId, BTreeMap<TaskId, Option<AgentId>>>,
    /// The questions that named an agent, by that agent.
    by_agent: BTreeMap<AgentId, BTreeSet<(FrameworkId, TaskId)>>,
    len: usize,
}

impl Deferred {
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Keeps a question; `false` when full (the question is not kept). A
    /// question already kept for the framework and task replaces the agent it
    /// named.
    pub(super) fn defer(
        &mut self,
        framework_id: &FrameworkId,
        task_id: &TaskId,
        agent_id: Option<&AgentId>,
    ) -> bool {
        let tasks = self.by_framework.get(framework_id);
        let previous = tasks.and_then(|t| t.get(task_id));
        if previous.is_none() && self.len >= MAX_DEFERRED {
            return false;
        }
        if let Some(Some(old)) = previous.cloned() {
            self.unindex(&old, framework_id, task_id);
        }
        let replaced = self
            .by_framework
            .entry(framework_id.clone())
            .or_default()
            .insert(task_id.clone(), agent_id.cloned());
        if replaced.is_none() {
            self.len += 1;
        }
        if let Some(agent_id) = agent_id {
            self.by_agent
                .entry(agent_id.clone())
                .or_default()
                .insert((framework_id.clone(), task_id.clone()));
        }
        true
    }

    /// Takes the questions an agent's re-registration answers: those about
    /// `tasks` (what the master now knows runs there) and those that named
    /// the agent.
    pub(super) fn take_for_agent<'a>(
        &mut self,
        agent_id: &AgentId,
        tasks: impl Iterator<Item = &'a (FrameworkId, TaskId)>,
    ) -> Vec<Question> {
        let mut keys: BTreeSet<(FrameworkId, TaskId)> =
            self.by_agent.remove(agent_id).unwrap_or_default();
        keys.extend(tasks.filter(|(f, t)| self.contains(f, t)).cloned());
        keys.into_iter()
            .filter_map(|(framework_id, task_id)| self.take(framework_id, task_id))
            .collect()
    }

    /// Takes every question (recovery ended).
    pub(super) fn take_all(&mut self) -> Vec<Question> {
        let by_framework = std::mem::take(&mut self.by_framework);
        self.by_agent.clear();
        self.len = 0;
        by_framework
            .into_iter()
            .flat_map(|(framework_id, tasks)| {
                tasks
                    .into_iter()
                    .map(move |(task_id, agent_id)| (framework_id.clone(), task_id, agent_id))
            })
            .collect()
    }

    /// Drops a framework's questions (it was removed: nobody to answer).
    pub(super) fn forget_framework(&mut self, framework_id: &FrameworkId) {
        let Some(tasks) = self.by_framework.remove(framework_id) else {
            return;
        };
        self.len -= tasks.len();
        for (task_id, agent_id) in tasks {
            if let Some(agent_id) = agent_id {
                self.unindex(&agent_id, framework_id, &task_id);
            }
        }
    }

    fn contains(&self, framework_id: &FrameworkId, task_id: &TaskId) -> bool {
        self.by_framework
            .get(framework_id)
            .is_some_and(|t| t.contains_key(task_id))
    }

    fn take(&mut self, framework_id: FrameworkId, task_id: TaskId) -> Option<Question> {
        let tasks = self.by_framework.get_mut(&framework_id)?;
        let agent_id = tasks.remove(&task_id)?;
        if tasks.is_empty() {
            self.by_framework.remove(&framework_id);
        }
        self.len -= 1;
        if let Some(agent_id) = &agent_id {
            self.unindex(agent_id, &framework_id, &task_id);
        }
        Some((framework_id, task_id, agent_id))
    }

    fn unindex(&mut self, agent_id: &AgentId, framework_id: &FrameworkId, task_id: &TaskId) {
        if let Some(keys) = self.by_agent.get_mut(agent_id) {
            keys.remove(&(framework_id.clone(), task_id.clone()));
            if keys.is_empty() {
                self.by_agent.remove(agent_id);
            }
        }
    }
}

impl Master {
    /// Keeps a question asked while recovering (silence when full).
    pub(super) fn defer_reconciliation(
        &mut self,
        framework_id: &FrameworkId,
        task_id: &TaskId,
        agent_id: Option<&AgentId>,
    ) {
        let Some(recovery) = self.recovery.as_mut() else {
            return;
        };
        if !recovery.deferred.defer(framework_id, task_id, agent_id) {
            tracing::debug!(framework_id = %framework_id, task_id = %task_id, "too many reconciliation questions kept; this one gets silence");
        }
    }

    /// Answers what an agent's (re-)registration settles: the questions
    /// about the tasks it runs and those that named it; and all of them when
    /// it was the last agent expected.
    pub(super) fn answer_deferred_for_agent(
        &mut self,
        now: Now,
        agent_id: &AgentId,
        out: &mut Vec<Effect>,
    ) {
        let Some(recovery) = self.recovery.as_mut() else {
            return;
        };
        let mut questions = recovery
            .deferred
            .take_for_agent(agent_id, self.by_agent.tasks_on(agent_id));
        if recovery.expected.is_empty() {
            let rest = recovery.deferred.take_all();
            if !rest.is_empty() {
                tracing::info!(
                    answered = rest.len(),
                    "every expected agent is back: the reconciliation questions kept are answered"
                );
            }
            questions.extend(rest);
        }
        self.answer_deferred(now, questions, out);
    }

    /// Answers every question still kept (the re-registration window ended).
    pub(super) fn answer_all_deferred(
        &mut self,
        now: Now,
        deferred: &mut Deferred,
        out: &mut Vec<Effect>,
    ) {
        let questions = deferred.take_all();
        if !questions.is_empty() {
            tracing::info!(
                answered = questions.len(),
                "the re-registration window ended: the reconciliation questions kept are answered"
            );
        }
        self.answer_deferred(now, questions, out);
    }

    fn answer_deferred(&mut self, now: Now, questions: Vec<Question>, out: &mut Vec<Effect>) {
        for (framework_id, task_id, agent_id) in questions {
            match self.reconciliation_answer(&framework_id, &task_id, agent_id.as_ref(), now) {
                Some(event) => self.send_to_framework(&framework_id, event, out),
                // Its agent is still expected (the question named another
                // agent than the task's): keep waiting.
                None => self.defer_reconciliation(&framework_id, &task_id, agent_id.as_ref()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> FrameworkId {
        FrameworkId::new(s)
    }
    fn t(s: &str) -> TaskId {
        TaskId::new(s)
    }
    fn a(s: &str) -> AgentId {
        AgentId::new(s)
    }

    #[test]
    fn a_question_is_answered_once_by_its_task_or_its_agent() {
        let mut d = Deferred::default();
        assert!(d.defer(&f("f1"), &t("t1"), None));
        assert!(d.defer(&f("f1"), &t("t2"), Some(&a("a2"))));
        assert!(d.defer(&f("f1"), &t("t2"), Some(&a("a2"))), "asked again");
        assert!(d.defer(&f("f2"), &t("t1"), Some(&a("a9"))));
        assert_eq!(d.len(), 3);
        // a1 re-registers running f1's t1; a2 re-registers without t2.
        let on_a1 = [(f("f1"), t("t1"))];
        assert_eq!(
            d.take_for_agent(&a("a1"), on_a1.iter()),
            vec![(f("f1"), t("t1"), None)]
        );
        assert_eq!(
            d.take_for_agent(&a("a2"), [].iter()),
            vec![(f("f1"), t("t2"), Some(a("a2")))]
        );
        assert!(
            d.take_for_agent(&a("a2"), on_a1.iter()).is_empty(),
            "answered once"
        );
        assert_eq!(d.take_all(), vec![(f("f2"), t("t1"), Some(a("a9")))]);
        assert_eq!(d.len(), 0);
        assert!(d.take_all().is_empty());
    }

    #[test]
    fn asking_again_naming_another_agent_moves_the_question() {
        let mut d = Deferred::default();
        d.defer(&f("f1"), &t("t1"), Some(&a("a1")));
        d.defer(&f("f1"), &t("t1"), Some(&a("a2")));
        assert_eq!(d.len(), 1);
        assert!(d.take_for_agent(&a("a1"), [].iter()).is_empty());
        assert_eq!(d.take_for_agent(&a("a2"), [].iter()).len(), 1);
        assert!(d.by_agent.is_empty());
    }

    #[test]
    fn a_removed_framework_takes_its_questions_with_it() {
        let mut d = Deferred::default();
        d.defer(&f("f1"), &t("t1"), Some(&a("a1")));
        d.defer(&f("f2"), &t("t1"), None);
        d.forget_framework(&f("f1"));
        assert_eq!(d.len(), 1);
        assert!(d.by_agent.is_empty());
        assert_eq!(d.take_all(), vec![(f("f2"), t("t1"), None)]);
    }
}
