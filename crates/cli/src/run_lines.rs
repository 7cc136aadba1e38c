//! The lines `agora run` prints: progress as each update comes (stderr),
//! a task's end and health changes, and the summary at the end (stdout).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use agora_scheduler::proto::{TaskState, task_status};

/// A progress line (stderr): the UTC time of day to the millisecond, the
/// task, its new state, the agent it was launched on, the update's message.
pub(super) fn progress_line(
    now: SystemTime,
    task_id: &str,
    state: TaskState,
    agent_id: Option<&str>,
    message: Option<&str>,
) -> String {
    let millis = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() % 86_400_000);
    let (hours, minutes) = (millis / 3_600_000, millis / 60_000 % 60);
    let (seconds, millis) = (millis / 1000 % 60, millis % 1000);
    let mut line = format!(
        "{hours:02}:{minutes:02}:{seconds:02}.{millis:03} {task_id} {}",
        state.as_str_name()
    );
    if let Some(agent_id) = agent_id {
        line.push_str(&format!(" on agent {agent_id}"));
    }
    if let Some(message) = message.filter(|m| !m.is_empty()) {
        line.push_str(": ");
        line.push_str(message);
    }
    line
}

/// The last line: how many tasks ended how, and how long the job took
/// (`4 tasks: 3 finished, 1 failed in 2.5 s`).
pub(super) fn summary_line(ended: impl Iterator<Item = TaskState>, took: Duration) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut total = 0;
    for state in ended {
        total += 1;
        let name = state
            .as_str_name()
            .trim_start_matches("TASK_")
            .to_lowercase();
        *counts.entry(name).or_default() += 1;
    }
    // Finished first, the other outcomes after it by name.
    let finished = counts.remove("finished");
    let outcomes: Vec<String> = finished
        .map(|n| ("finished".to_owned(), n))
        .into_iter()
        .chain(counts)
        .map(|(name, n)| format!("{n} {name}"))
        .collect();
    let noun = if total == 1 { "task" } else { "tasks" };
    format!(
        "{total} {noun}: {} in {:.1} s",
        outcomes.join(", "),
        took.as_secs_f64()
    )
}

/// The line printed when a task's health changes.
pub(super) fn health_line(task_id: &str, healthy: bool, message: Option<&str>) -> String {
    match message.filter(|m| !m.is_empty()) {
        Some(message) => format!("task {task_id} healthy={healthy}: {message}"),
        None => format!("task {task_id} healthy={healthy}"),
    }
}

/// The line printed when a task ends.
pub(super) fn status_line(
    task_id: &str,
    state: TaskState,
    agent_id: &str,
    message: Option<&str>,
    reason: Option<task_status::Reason>,
) -> String {
    let mut line = format!("task {task_id} {} on agent {agent_id}", state.as_str_name());
    if state != TaskState::TaskFinished {
        if let Some(message) = message.filter(|m| !m.is_empty()) {
            line.push_str(": ");
            line.push_str(message);
        }
        if let Some(reason) = reason {
            line.push_str(&format!(" ({})", reason.as_str_name()));
        }
    }
    line
}
