//! Task states and the rules for moving between them.

use agora_proto::v1 as pb;

pub use pb::TaskState;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskStateError {
    #[error("task is already in terminal state {0}")]
    AlreadyTerminal(&'static str),
    #[error("unknown task state number {0}")]
    Unknown(i32),
}

/// Whether no further state can follow (Mesos' `isTerminalState`).
/// TASK_UNREACHABLE is not terminal: the agent may come back.
pub fn is_terminal(state: TaskState) -> bool {
    matches!(
        state,
        TaskState::TaskFinished
            | TaskState::TaskFailed
            | TaskState::TaskKilled
            | TaskState::TaskError
            | TaskState::TaskLost
            | TaskState::TaskDropped
            | TaskState::TaskGone
            | TaskState::TaskGoneByOperator
    )
}

/// The Mesos name of a state, e.g. `TASK_RUNNING`.
pub fn name(state: TaskState) -> &'static str {
    state.as_str_name()
}

pub fn from_i32(value: i32) -> Result<TaskState, TaskStateError> {
    TaskState::try_from(value).map_err(|_| TaskStateError::Unknown(value))
}

/// Checks a transition reported for a task. Once terminal, a task never
/// changes state again; any non-terminal state may follow any non-terminal
/// state (updates can be retried and reordered across reconnections, and
/// TASK_UNREACHABLE may go back to TASK_RUNNING when an agent returns).
pub fn check_transition(from: TaskState, to: TaskState) -> Result<(), TaskStateError> {
    if is_terminal(from) && from != to {
        return Err(TaskStateError::AlreadyTerminal(name(from)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const ALL: [TaskState; 14] = [
        TaskState::TaskStaging,
        TaskState::TaskStarting,
        TaskState::TaskRunning,
        TaskState::TaskKilling,
        TaskState::TaskFinished,
        TaskState::TaskFailed,
        TaskState::TaskKilled,
        TaskState::TaskError,
        TaskState::TaskLost,
        TaskState::TaskDropped,
        TaskState::TaskUnreachable,
        TaskState::TaskGone,
        TaskState::TaskGoneByOperator,
        TaskState::TaskUnknown,
    ];

    #[test]
    fn mesos_numbers_and_names() {
        assert_eq!(TaskState::TaskStaging as i32, 6);
        assert_eq!(TaskState::TaskStarting as i32, 0);
        assert_eq!(TaskState::TaskUnknown as i32, 13);
        assert_eq!(name(TaskState::TaskFinished), "TASK_FINISHED");
        assert_eq!(ALL.iter().filter(|s| is_terminal(**s)).count(), 8);
        assert!(from_i32(99).is_err());
    }

    proptest! {
        #[test]
        fn terminal_states_are_final(from in 0usize..14, to in 0usize..14) {
            let (from, to) = (ALL[from], ALL[to]);
            let result = check_transition(from, to);
            if is_terminal(from) && from != to {
                prop_assert!(result.is_err());
            } else {
                prop_assert!(result.is_ok());
            }
        }
    }
}
