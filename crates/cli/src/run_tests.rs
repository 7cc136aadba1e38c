//! `agora run`'s pure helpers: agent totals read from `/state`, which
//! refusals are for good, and the status and health lines it prints.

use super::*;

#[test]
fn reads_agent_totals_from_state() {
    let state = serde_json::json!({
        "agents": [
            {"id": "a1", "resources": {"cpus": 2.0, "mem": 1024.0, "ports": "[31000-31009,32000-32000]"}},
            {"id": "a2", "resources": {"cpus": 8.0, "mem": 256.0, "disk": 100.0}},
            {"id": "a3"}
        ]
    });
    let totals = totals_of_state(&state);
    assert_eq!(totals.len(), 2);
    assert_eq!(totals[0].cpus, 2.0);
    assert_eq!(totals[0].free_ports(), 11);
    assert_eq!(totals[1].disk, 100.0);
    assert!(totals_of_state(&serde_json::json!({})).is_empty());
    assert_eq!(parse_ranges("[70000-1,5-3,x]"), Vec::<(u16, u16)>::new());
}

#[test]
fn only_invalid_tasks_are_refusals_for_good() {
    let call = |code| agora_scheduler::Error::Call {
        call: "ACCEPT",
        status: tonic::Status::new(code, "x"),
    };
    assert!(refused_for_good(&call(tonic::Code::InvalidArgument)));
    assert!(!refused_for_good(&call(tonic::Code::NotFound)));
    assert!(!refused_for_good(&agora_scheduler::Error::NotSubscribed));
}

#[test]
fn formats_health_lines() {
    assert_eq!(
        health_line(
            "t-0",
            false,
            Some("health check failed (1 of 3 consecutive): boom")
        ),
        "task t-0 healthy=false: health check failed (1 of 3 consecutive): boom"
    );
    assert_eq!(health_line("t-1", true, None), "task t-1 healthy=true");
    assert_eq!(health_line("t-1", true, Some("")), "task t-1 healthy=true");
}

#[test]
fn formats_terminal_lines() {
    assert_eq!(
        status_line(
            "smoke-3",
            TaskState::TaskFinished,
            "a1",
            Some("ignored"),
            None
        ),
        "task smoke-3 TASK_FINISHED on agent a1"
    );
    assert_eq!(
        status_line(
            "smoke-0",
            TaskState::TaskFailed,
            "a2",
            Some("command exited with status 3"),
            Some(task_status::Reason::CommandExecutorFailed),
        ),
        "task smoke-0 TASK_FAILED on agent a2: command exited with status 3 (REASON_COMMAND_EXECUTOR_FAILED)"
    );
    assert_eq!(
        status_line("x-1", TaskState::TaskKilled, "a3", Some(""), None),
        "task x-1 TASK_KILLED on agent a3"
    );
}

#[test]
fn formats_progress_lines_with_the_utc_time() {
    // 1970-01-02 03:04:05.678 UTC.
    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(86_400_000 + 11_045_678);
    assert_eq!(
        progress_line(at, "hello-0", TaskState::TaskStaging, Some("S1"), None),
        "03:04:05.678 hello-0 TASK_STAGING on agent S1"
    );
    assert_eq!(
        progress_line(
            at,
            "hello-1",
            TaskState::TaskRunning,
            None,
            Some("command is running")
        ),
        "03:04:05.678 hello-1 TASK_RUNNING: command is running"
    );
    assert_eq!(
        progress_line(at, "hello-1", TaskState::TaskStarting, None, Some("")),
        "03:04:05.678 hello-1 TASK_STARTING"
    );
}

#[test]
fn the_summary_counts_outcomes_finished_first() {
    let took = Duration::from_millis(3_240);
    assert_eq!(
        summary_line([TaskState::TaskFinished; 4].into_iter(), took),
        "4 tasks: 4 finished in 3.2 s"
    );
    assert_eq!(
        summary_line(
            [
                TaskState::TaskKilled,
                TaskState::TaskFinished,
                TaskState::TaskFailed,
                TaskState::TaskFinished
            ]
            .into_iter(),
            took
        ),
        "4 tasks: 2 finished, 1 failed, 1 killed in 3.2 s"
    );
    assert_eq!(
        summary_line([TaskState::TaskLost].into_iter(), Duration::ZERO),
        "1 task: 1 lost in 0.0 s"
    );
}
