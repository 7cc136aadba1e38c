//! The paged lists: filters checked, every match counted and sorted, one
//! page kept. Default orders: tasks newest update first, agents by
//! `hostname:port`, frameworks newest first, offers by agent.

use super::shapes::{AgentRow, FrameworkRow, OfferRow, Page, Res, TaskRow};
use super::sort::{Key, order, time};
use super::views::{
    Lookup, active_tasks_by_agent, agent_row, all_frameworks, all_tasks, contains, framework_row,
    offer_row, task_row,
};
use super::{ApiError, ListQuery, bad, newest};
use crate::snapshot::{FrameworkView, SharedList, StateSnapshot, TaskView};

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

/// The columns a task list sorts by.
pub(super) const TASK_COLUMNS: [&str; 8] = [
    "id",
    "name",
    "state",
    "framework",
    "agent",
    "cpus",
    "mem",
    "updated",
];

pub(super) fn task_page(s: &StateSnapshot, query: &ListQuery) -> Result<Page<TaskRow>, ApiError> {
    let state = state_filter(query.filter("state"))?;
    let order = order(query, &TASK_COLUMNS, "-updated")?;
    let newest_first = order.column == "updated" && order.descending;
    let filtered = state.is_some() || query.filter("agent_id").is_some() || query.text().is_some();
    // The default order's first pages are read from the newest chunks
    // down (`newest.rs`); a page deep in the list is cheaper walked.
    let wanted = query.offset.saturating_add(query.limit);
    if newest_first
        && !filtered
        && wanted.saturating_mul(8) <= newest_lists(s, query).map(|(l, _)| l.len()).sum()
    {
        return newest_task_page(s, query);
    }
    walked_task_page(s, query)
}

/// The task lists a page in the default order reads: every framework's, or
/// the one `framework_id` names, live tasks then completed ones.
fn newest_lists<'s>(
    s: &'s StateSnapshot,
    query: &ListQuery,
) -> impl Iterator<Item = (&'s SharedList<TaskView>, &'s FrameworkView)> {
    let framework_id = query.filter("framework_id").map(str::to_owned);
    all_frameworks(s)
        .filter(move |(f, _)| framework_id.as_deref().is_none_or(|id| f.id == id))
        .flat_map(|(f, _)| [(&f.tasks, f), (&f.completed_tasks, f)])
}

/// A task page in the default order (newest update first) with no filter
/// but the framework, read from the newest chunks down.
pub(super) fn newest_task_page(
    s: &StateSnapshot,
    query: &ListQuery,
) -> Result<Page<TaskRow>, ApiError> {
    let lookup = Lookup::new(s);
    let (total, rows) = newest::newest_first(newest_lists(s, query), query.offset, query.limit);
    Ok(Page {
        total,
        offset: query.offset,
        limit: query.limit,
        items: rows
            .into_iter()
            .map(|(t, f)| task_row(t, f, &lookup))
            .collect(),
    })
}

/// A task page from a walk over every task (any filter and order).
pub(super) fn walked_task_page<'s>(
    s: &'s StateSnapshot,
    query: &ListQuery,
) -> Result<Page<TaskRow>, ApiError> {
    let state = state_filter(query.filter("state"))?;
    let order = order(query, &TASK_COLUMNS, "-updated")?;
    let lookup = Lookup::new(s);
    let framework_id = query.filter("framework_id");
    let agent_id = query.filter("agent_id");
    let text = query.text();
    // The column is chosen once, not per task (100k string comparisons).
    type Row<'s> = (&'s TaskView, &'s FrameworkView);
    let column: Box<dyn Fn(&Row<'s>) -> Key<'s> + '_> = match order.column {
        "id" => Box::new(|&(t, _)| Key::Text(t.id.as_str())),
        "name" => Box::new(|&(t, _)| Key::Text(&t.name)),
        "state" => Box::new(|&(t, _)| Key::Text(t.state)),
        "framework" => {
            Box::new(|&(_, f)| Key::Text(if f.name.is_empty() { &f.id } else { &f.name }))
        }
        "agent" => Box::new(|&(t, _)| Key::Text(lookup.address_of(t.agent_id.as_str()))),
        name @ ("cpus" | "mem") => {
            Box::new(move |&(t, _)| Key::Num(Res::from_summary(&t.resources).get(name)))
        }
        _ => Box::new(|&(t, _)| time(t.status_time)),
    };
    Ok(query.sorted_page(
        all_tasks(s),
        |(t, _)| {
            state.is_none_or(|f| f.matches(t.state))
                && framework_id.is_none_or(|id| t.framework_id.as_str() == id)
                && agent_id.is_none_or(|id| t.agent_id.as_str() == id)
                && text
                    .as_deref()
                    .is_none_or(|q| contains(&t.name, q) || contains(t.id.as_str(), q))
        },
        order,
        |row| (column(row), row.0.id.as_str()),
        |(t, f)| task_row(t, f, &lookup),
    ))
}

/// The columns an agent list sorts by (`cpus` and the other resources: what is used).
pub(super) const AGENT_COLUMNS: [&str; 10] = [
    "id",
    "hostname",
    "address",
    "status",
    "cpus",
    "mem",
    "disk",
    "gpus",
    "tasks",
    "registered",
];

pub(super) fn agent_page(s: &StateSnapshot, query: &ListQuery) -> Result<Page<AgentRow>, ApiError> {
    let status = query.filter("status");
    if let Some(status) = status
        && !["active", "disconnected", "unreachable"].contains(&status)
    {
        return Err(bad(format!(
            "status must be active, disconnected or unreachable, not '{status}'"
        )));
    }
    let order = order(query, &AGENT_COLUMNS, "hostname")?;
    let lookup = Lookup::new(s);
    let tasks = active_tasks_by_agent(s);
    let text = query.text();
    Ok(query.sorted_page(
        s.agents.iter(),
        |a| {
            status.is_none_or(|st| a.status == st)
                && text
                    .as_deref()
                    .is_none_or(|q| contains(&a.id, q) || contains(&a.hostname, q))
        },
        order,
        |a| {
            let used = |name| Key::Num(Res::from_summary(&a.used).get(name));
            let key = match order.column {
                "id" => Key::Text(&a.id),
                // hostname:port: two agents on one host in port order.
                "hostname" | "address" => Key::Text(&a.address),
                "status" => Key::Text(a.status),
                "cpus" | "mem" | "disk" | "gpus" => used(order.column),
                "tasks" => Key::Num(tasks.get(a.id.as_str()).copied().unwrap_or(0) as f64),
                _ => Key::Num(a.registered_time),
            };
            (key, a.id.as_str())
        },
        |a| agent_row(a, &lookup, &tasks),
    ))
}

/// The columns a framework list sorts by (`cpus` and the other resources: what its tasks use).
pub(super) const FRAMEWORK_COLUMNS: [&str; 13] = [
    "id",
    "name",
    "status",
    "user",
    "principal",
    "roles",
    "tasks",
    "cpus",
    "mem",
    "disk",
    "gpus",
    "offers",
    "registered",
];

fn framework_status(f: &FrameworkView, completed: bool) -> &'static str {
    match (completed, f.active) {
        (true, _) => "completed",
        (false, true) => "active",
        (false, false) => "inactive",
    }
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
    let order = order(query, &FRAMEWORK_COLUMNS, "-registered")?;
    let lookup = Lookup::new(s);
    let text = query.text();
    Ok(query.sorted_page(
        all_frameworks(s),
        |&(f, completed)| {
            status.is_none_or(|st| st == framework_status(f, completed))
                && text.as_deref().is_none_or(|q| {
                    contains(&f.name, q)
                        || contains(&f.id, q)
                        || contains(&f.user, q)
                        || f.roles.iter().any(|r| contains(r, q))
                })
        },
        order,
        |&(f, completed)| {
            let used = |name| {
                let mut used = Res::default();
                for task in &f.tasks {
                    used.add(&Res::from_summary(&task.resources));
                }
                Key::Num(used.get(name))
            };
            let key = match order.column {
                "id" => Key::Text(&f.id),
                "name" => Key::Text(&f.name),
                "status" => Key::Text(framework_status(f, completed)),
                "user" => Key::Text(&f.user),
                "principal" => Key::Text(f.principal.as_deref().unwrap_or_default()),
                "roles" => Key::Text(f.roles.first().map_or("", String::as_str)),
                "tasks" => Key::Num(f.tasks.len() as f64),
                "cpus" | "mem" | "disk" | "gpus" => used(order.column),
                "offers" => Key::Num(f.outstanding_offers as f64),
                _ => Key::Num(f.registered_time),
            };
            (key, f.id.as_str())
        },
        |(f, completed)| framework_row(f, completed, &lookup),
    ))
}

/// The columns an offer list sorts by.
pub(super) const OFFER_COLUMNS: [&str; 8] = [
    "id",
    "framework",
    "role",
    "agent",
    "cpus",
    "mem",
    "disk",
    "gpus",
];

pub(super) fn offer_page(s: &StateSnapshot, query: &ListQuery) -> Result<Page<OfferRow>, ApiError> {
    let order = order(query, &OFFER_COLUMNS, "agent")?;
    let lookup = Lookup::new(s);
    let framework_id = query.filter("framework_id");
    let agent_id = query.filter("agent_id");
    Ok(query.sorted_page(
        s.offers.iter(),
        |o| {
            framework_id.is_none_or(|id| o.framework_id == id)
                && agent_id.is_none_or(|id| o.agent_id == id)
        },
        order,
        |o| {
            let key = match order.column {
                "id" => Key::Text(&o.id),
                "framework" => {
                    let name = lookup.framework_name_of(&o.framework_id);
                    Key::Text(if name.is_empty() {
                        &o.framework_id
                    } else {
                        name
                    })
                }
                "role" => Key::Text(&o.role),
                "agent" => Key::Text(lookup.address_of(&o.agent_id)),
                name => Key::Num(Res::from_summary(&o.resources).get(name)),
            };
            (key, o.id.as_str())
        },
        |o| offer_row(o, &lookup),
    ))
}
