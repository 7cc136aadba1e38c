//! The paged lists: filters checked, every match counted, one page kept.

use super::shapes::{AgentRow, FrameworkRow, OfferRow, Page, TaskRow};
use super::views::{
    Lookup, active_tasks_by_agent, agent_row, all_frameworks, all_tasks, contains, framework_row,
    offer_row, task_row,
};
use super::{ApiError, ListQuery, bad};
use crate::snapshot::StateSnapshot;

/// Checks a `state` filter: a task state's name, `active` or `terminal`.
pub(super) fn state_filter(state: Option<&str>) -> Result<Option<StateFilter>, ApiError> {
    Ok(match state {
        None => None,
        Some("active") => Some(StateFilter::Terminal(false)),
        Some("terminal") => Some(StateFilter::Terminal(true)),
        Some(name) => match agora_core::task::TaskState::from_str_name(name) {
            Some(state) => Some(StateFilter::Exact(agora_core::task::name(state))),
            None => {
                return Err(bad(format!(
                    "state must be a task state such as TASK_RUNNING, or active or terminal, not '{name}'"
                )));
            }
        },
    })
}

#[derive(Debug, Clone, Copy)]
pub(super) enum StateFilter {
    Exact(&'static str),
    Terminal(bool),
}

impl StateFilter {
    fn matches(self, state: &str) -> bool {
        match self {
            StateFilter::Exact(name) => name == state,
            StateFilter::Terminal(terminal) => {
                agora_core::task::TaskState::from_str_name(state)
                    .is_some_and(agora_core::task::is_terminal)
                    == terminal
            }
        }
    }
}

pub(super) fn task_page(s: &StateSnapshot, query: &ListQuery) -> Result<Page<TaskRow>, ApiError> {
    let state = state_filter(query.filter("state"))?;
    let lookup = Lookup::new(s);
    let framework_id = query.filter("framework_id");
    let agent_id = query.filter("agent_id");
    let text = query.text();
    Ok(query.page(
        all_tasks(s),
        |(t, _)| {
            state.is_none_or(|f| f.matches(t.state))
                && framework_id.is_none_or(|id| t.framework_id == id)
                && agent_id.is_none_or(|id| t.agent_id == id)
                && text
                    .as_deref()
                    .is_none_or(|q| contains(&t.name, q) || contains(&t.id, q))
        },
        |(t, f)| task_row(t, f, &lookup),
    ))
}

pub(super) fn agent_page(s: &StateSnapshot, query: &ListQuery) -> Result<Page<AgentRow>, ApiError> {
    let status = query.filter("status");
    if let Some(status) = status
        && !["active", "disconnected", "unreachable"].contains(&status)
    {
        return Err(bad(format!(
            "status must be active, disconnected or unreachable, not '{status}'"
        )));
    }
    let lookup = Lookup::new(s);
    let tasks = active_tasks_by_agent(s);
    let text = query.text();
    Ok(query.page(
        s.agents.iter(),
        |a| {
            status.is_none_or(|st| a.status == st)
                && text
                    .as_deref()
                    .is_none_or(|q| contains(&a.id, q) || contains(&a.hostname, q))
        },
        |a| agent_row(a, &lookup, &tasks),
    ))
}

pub(super) fn framework_page(
    s: &StateSnapshot,
    query: &ListQuery,
) -> Result<Page<FrameworkRow>, ApiError> {
    let status = query.filter("status");
    if let Some(status) = status
        && !["active", "inactive", "completed"].contains(&status)
    {
        return Err(bad(format!(
            "status must be active, inactive or completed, not '{status}'"
        )));
    }
    let lookup = Lookup::new(s);
    let text = query.text();
    Ok(query.page(
        all_frameworks(s),
        |(f, completed)| {
            let f_status = match (completed, f.active) {
                (true, _) => "completed",
                (false, true) => "active",
                (false, false) => "inactive",
            };
            status.is_none_or(|st| st == f_status)
                && text.as_deref().is_none_or(|q| {
                    contains(&f.name, q)
                        || contains(&f.id, q)
                        || contains(&f.user, q)
                        || f.roles.iter().any(|r| contains(r, q))
                })
        },
        |(f, completed)| framework_row(f, completed, &lookup),
    ))
}

pub(super) fn offer_page(s: &StateSnapshot, query: &ListQuery) -> Page<OfferRow> {
    let lookup = Lookup::new(s);
    let framework_id = query.filter("framework_id");
    let agent_id = query.filter("agent_id");
    query.page(
        s.offers.iter(),
        |o| {
            framework_id.is_none_or(|id| o.framework_id == id)
                && agent_id.is_none_or(|id| o.agent_id == id)
        },
        |o| offer_row(o, &lookup),
    )
}
