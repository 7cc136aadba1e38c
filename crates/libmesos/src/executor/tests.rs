use std::time::Duration;

use super::books::Books;
use super::config::parse_mesos_duration;
use super::*;

fn status(task: &str, state: v1::TaskState, uuid: u8) -> v1::TaskStatus {
    v1::TaskStatus {
        task_id: Some(v1::TaskId { value: task.into() }),
        state: Some(state as i32),
        uuid: Some(vec![uuid; 16]),
        ..Default::default()
    }
}

fn task(id: &str) -> v1::TaskInfo {
    v1::TaskInfo {
        name: id.into(),
        task_id: Some(v1::TaskId { value: id.into() }),
        ..Default::default()
    }
}

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

#[test]
fn unacknowledged_updates_are_kept_in_order_and_resent_on_subscribe() {
    let mut books = Books::new();
    books.launched(task("t1"));
    books.sent(status("t1", v1::TaskState::TaskRunning, 1));
    books.sent(status("t1", v1::TaskState::TaskFinished, 2));
    let subscribe = books.subscribe();
    let uuids: Vec<_> = subscribe
        .unacknowledged_updates
        .iter()
        .map(|u| u.status.as_ref().and_then(|s| s.uuid.clone()).unwrap())
        .collect();
    assert_eq!(uuids, vec![vec![1; 16], vec![2; 16]], "oldest first");
    assert_eq!(subscribe.unacknowledged_tasks, vec![task("t1")]);
    assert!(!books.all_acknowledged());
}

#[test]
fn acknowledged_updates_are_removed_and_a_terminal_one_releases_its_task() {
    let mut books = Books::new();
    books.launched(task("t1"));
    books.launched(task("t2"));
    books.sent(status("t1", v1::TaskState::TaskRunning, 1));
    books.sent(status("t1", v1::TaskState::TaskFinished, 2));
    books.sent(status("t2", v1::TaskState::TaskRunning, 3));

    assert!(books.acknowledged(&[1; 16]));
    assert_eq!(books.updates().len(), 2);
    assert_eq!(books.tasks().len(), 2, "RUNNING acknowledged: still held");

    assert!(!books.acknowledged(&[9; 16]), "unknown uuid");
    assert!(!books.acknowledged(&[1; 16]), "acknowledged once only");

    assert!(books.acknowledged(&[2; 16]));
    assert_eq!(
        books.tasks(),
        &[task("t2")],
        "t1's terminal update is taken"
    );
    assert_eq!(
        books.updates(),
        &[status("t2", v1::TaskState::TaskRunning, 3)]
    );

    assert!(books.acknowledged(&[3; 16]));
    assert!(books.all_acknowledged());
    assert_eq!(books.subscribe().unacknowledged_updates, vec![]);
    assert_eq!(books.subscribe().unacknowledged_tasks, vec![task("t2")]);
}

#[test]
fn a_terminal_update_not_yet_acknowledged_keeps_its_task_held() {
    // Else a re-subscription would have the agent launch it again before
    // it reads the update in the same SUBSCRIBE.
    let mut books = Books::new();
    books.launched(task("t1"));
    books.sent(status("t1", v1::TaskState::TaskFailed, 1));
    assert_eq!(books.subscribe().unacknowledged_tasks, vec![task("t1")]);
}

#[test]
fn a_task_launched_again_is_held_once_and_updates_without_uuid_are_not_kept() {
    let mut books = Books::new();
    books.launched(task("t1"));
    let mut again = task("t1");
    again.name = "second".into();
    books.launched(again.clone());
    assert_eq!(books.tasks(), &[again]);
    let mut no_uuid = status("t1", v1::TaskState::TaskRunning, 0);
    no_uuid.uuid = None;
    books.sent(no_uuid);
    assert!(books.all_acknowledged());
}

#[test]
fn updates_are_completed_as_libmesos_does() {
    let from_java = v0::TaskStatus {
        task_id: v0::TaskId { value: "t1".into() },
        state: v0::TaskState::TaskFinished as i32,
        data: Some(b"result".to_vec()),
        uuid: Some(b"java's".to_vec()),
        ..Default::default()
    };
    let update = prepare_update(&from_java, "e1", 12.5, [7; 16]).expect("converts");
    assert_eq!(update.task_id.unwrap().value, "t1");
    assert_eq!(update.state, Some(v1::TaskState::TaskFinished as i32));
    assert_eq!(update.data.as_deref(), Some(&b"result"[..]));
    assert_eq!(update.uuid, Some(vec![7; 16]), "a fresh uuid, always");
    assert_eq!(
        update.source,
        Some(v1::task_status::Source::Executor as i32)
    );
    assert_eq!(update.executor_id.unwrap().value, "e1");
    assert_eq!(update.timestamp, Some(12.5));

    let mut set = from_java.clone();
    set.executor_id = Some(v0::ExecutorId {
        value: "mine".into(),
    });
    set.timestamp = Some(1.0);
    let update = prepare_update(&set, "e1", 12.5, [7; 16]).expect("converts");
    assert_eq!(update.executor_id.unwrap().value, "mine", "java's kept");
    assert_eq!(update.timestamp, Some(1.0), "java's kept");
}

#[test]
fn uuids_are_distinct() {
    let a = new_uuid();
    let b = new_uuid();
    assert_ne!(a, b);
}

#[test]
fn config_reads_agora_names_then_mesos_names() {
    let config = ExecutorConfig::from_env(
        env(&[
            ("AGORA_AGENT_ENDPOINT", "http://127.0.0.1:5051"),
            ("AGORA_FRAMEWORK_ID", "f1"),
            ("AGORA_EXECUTOR_ID", "e1"),
            ("AGORA_AGENT_ID", "a1"),
        ]),
        Duration::from_secs(3),
    )
    .expect("complete");
    assert_eq!(config.endpoint, "http://127.0.0.1:5051");
    assert_eq!(config.framework_id, "f1");
    assert_eq!(config.executor_id, "e1");
    assert_eq!(config.agent_id.as_deref(), Some("a1"));
    assert_eq!(config.connect_timeout, Duration::from_secs(3));
    assert_eq!(config.recovery_timeout, Duration::from_secs(900));

    let config = ExecutorConfig::from_env(
        env(&[
            ("MESOS_AGENT_ENDPOINT", "127.0.0.1:5051"),
            ("MESOS_FRAMEWORK_ID", "f1"),
            ("MESOS_EXECUTOR_ID", "e1"),
            ("MESOS_RECOVERY_TIMEOUT", "30secs"),
        ]),
        Duration::from_secs(3),
    )
    .expect("complete");
    assert_eq!(config.endpoint, "http://127.0.0.1:5051");
    assert_eq!(config.agent_id, None);
    assert_eq!(config.recovery_timeout, Duration::from_secs(30));
}

#[test]
fn config_names_what_is_missing() {
    let err = ExecutorConfig::from_env(env(&[]), Duration::from_secs(3)).unwrap_err();
    assert!(err.to_string().contains("AGORA_AGENT_ENDPOINT"), "{err}");
    let err = ExecutorConfig::from_env(
        env(&[
            ("AGORA_AGENT_ENDPOINT", "http://127.0.0.1:1"),
            ("AGORA_FRAMEWORK_ID", "  "),
        ]),
        Duration::from_secs(3),
    )
    .unwrap_err();
    assert!(err.to_string().contains("AGORA_FRAMEWORK_ID"), "{err}");
}

#[test]
fn mesos_durations() {
    assert_eq!(
        parse_mesos_duration("15mins"),
        Some(Duration::from_secs(900))
    );
    assert_eq!(
        parse_mesos_duration("500ms"),
        Some(Duration::from_millis(500))
    );
    assert_eq!(
        parse_mesos_duration("1.5hrs"),
        Some(Duration::from_secs(5400))
    );
    assert_eq!(parse_mesos_duration("15"), None);
    assert_eq!(parse_mesos_duration("mins"), None);
    assert_eq!(parse_mesos_duration("3 fortnights"), None);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn next(rx: &std::sync::mpsc::Receiver<Callback>) -> Callback {
    rx.recv_timeout(Duration::from_secs(10))
        .expect("a callback within 10 s")
}

#[test]
fn state_rules_start_once_and_calls_after_stop_answer_stopped() {
    let rt = runtime();
    let (tx, rx) = std::sync::mpsc::channel();
    let driver = ExecutorDriver::new(
        Err(ConfigError::Missing {
            names: "AGORA_AGENT_ENDPOINT",
        }),
        tx,
    );
    let update = v0::TaskStatus {
        task_id: v0::TaskId { value: "t".into() },
        state: v0::TaskState::TaskRunning as i32,
        ..Default::default()
    };
    assert_eq!(driver.send_status_update(&update), DriverStatus::NotStarted);
    assert_eq!(driver.start(rt.handle()), DriverStatus::Running);
    assert_eq!(driver.start(rt.handle()), DriverStatus::Running);
    // A driver without its environment reports why (the callback thread
    // then aborts it).
    let callback = rt.block_on(async { tokio::task::spawn_blocking(move || next(&rx)).await });
    let Ok(Callback::Error(reason)) = callback else {
        panic!("expected an error, got {callback:?}");
    };
    assert!(reason.contains("AGORA_AGENT_ENDPOINT"), "{reason}");
    assert_eq!(
        driver.send_framework_message(vec![1]),
        DriverStatus::Running
    );
    assert_eq!(driver.stop(), DriverStatus::Stopped);
    assert_eq!(driver.join(), DriverStatus::Stopped);
    assert_eq!(driver.send_status_update(&update), DriverStatus::Stopped);
    assert_eq!(
        driver.send_framework_message(vec![1]),
        DriverStatus::Stopped
    );
    assert_eq!(driver.abort(), DriverStatus::Stopped);
    assert_eq!(driver.start(rt.handle()), DriverStatus::Stopped);
}

#[test]
fn an_unreachable_agent_is_an_error_within_the_connect_timeout() {
    let rt = runtime();
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let config = ExecutorConfig::from_env(
        env(&[
            ("AGORA_AGENT_ENDPOINT", &format!("http://127.0.0.1:{port}")),
            ("AGORA_FRAMEWORK_ID", "f1"),
            ("AGORA_EXECUTOR_ID", "e1"),
        ]),
        Duration::from_millis(500),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let driver = ExecutorDriver::new(config, tx);
    let started = std::time::Instant::now();
    assert_eq!(driver.start(rt.handle()), DriverStatus::Running);
    let callback = rt.block_on(async { tokio::task::spawn_blocking(move || next(&rx)).await });
    let Ok(Callback::Error(reason)) = callback else {
        panic!("expected an error, got {callback:?}");
    };
    assert!(reason.contains("cannot subscribe"), "{reason}");
    assert!(started.elapsed() < Duration::from_secs(8));
    driver.abort_after_error();
    assert_eq!(driver.join(), DriverStatus::Aborted);
    assert_eq!(driver.stop(), DriverStatus::Aborted);
}

#[test]
fn a_staging_update_aborts_with_an_error() {
    let rt = runtime();
    let (tx, rx) = std::sync::mpsc::channel();
    let driver = ExecutorDriver::new(
        Err(ConfigError::Missing {
            names: "AGORA_AGENT_ENDPOINT",
        }),
        tx,
    );
    driver.start(rt.handle());
    let staging = v0::TaskStatus {
        task_id: v0::TaskId { value: "t".into() },
        state: v0::TaskState::TaskStaging as i32,
        ..Default::default()
    };
    assert_eq!(driver.send_status_update(&staging), DriverStatus::Aborted);
    assert_eq!(driver.join(), DriverStatus::Aborted);
    let errors: Vec<_> = std::iter::from_fn(|| rx.recv_timeout(Duration::from_secs(2)).ok())
        .take(2)
        .collect();
    assert!(
        errors
            .iter()
            .any(|c| matches!(c, Callback::Error(m) if m.contains("TASK_STAGING"))),
        "{errors:?}"
    );
    assert!(driver.delivers(&Callback::Error("why".into())));
    assert!(!driver.delivers(&Callback::Shutdown));
}

#[test]
fn config_reads_the_executor_token_and_never_prints_it() {
    let config = ExecutorConfig::from_env(
        env(&[
            ("MESOS_AGENT_ENDPOINT", "127.0.0.1:5051"),
            ("MESOS_FRAMEWORK_ID", "f1"),
            ("MESOS_EXECUTOR_ID", "e1"),
            ("MESOS_EXECUTOR_AUTHENTICATION_TOKEN", "secret.token.value"),
        ]),
        Duration::from_secs(3),
    )
    .expect("complete");
    assert_eq!(
        config.authentication_token.as_deref(),
        Some("secret.token.value")
    );
    let shown = format!("{config:?}");
    assert!(!shown.contains("secret.token.value"), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
}

#[test]
fn libprocess_ssl_variables_make_the_agent_https() {
    let config = ExecutorConfig::from_env(
        env(&[
            ("MESOS_AGENT_ENDPOINT", "127.0.0.1:5051"),
            ("MESOS_FRAMEWORK_ID", "f1"),
            ("MESOS_EXECUTOR_ID", "e1"),
            ("LIBPROCESS_SSL_ENABLED", "true"),
            ("LIBPROCESS_SSL_CA_FILE", "/etc/agora/ca.pem"),
        ]),
        Duration::from_secs(3),
    )
    .expect("complete");
    assert_eq!(config.endpoint, "https://127.0.0.1:5051");
    let tls = config.tls.expect("tls");
    assert_eq!(
        tls.ca.as_deref(),
        Some(std::path::Path::new("/etc/agora/ca.pem"))
    );
    // TLS without a CA to verify the agent with is refused, not tried.
    let err = ExecutorConfig::from_env(
        env(&[
            ("MESOS_AGENT_ENDPOINT", "127.0.0.1:5051"),
            ("MESOS_FRAMEWORK_ID", "f1"),
            ("MESOS_EXECUTOR_ID", "e1"),
            ("LIBPROCESS_SSL_ENABLED", "1"),
        ]),
        Duration::from_secs(3),
    )
    .unwrap_err();
    assert!(err.to_string().contains("TLS"), "{err}");
}
