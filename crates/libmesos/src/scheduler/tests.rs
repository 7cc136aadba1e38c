//! The driver without a JVM: its state rules, and errors that must reach
//! the application instead of hanging it. (Against a real master: the
//! Java and Spark end-to-end tests in `tests/`.)

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::*;

fn driver(master: &str) -> (SchedulerDriver, Receiver<Callback>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let config = DriverConfig {
        framework: v1::FrameworkInfo {
            user: "root".into(),
            name: "test".into(),
            ..Default::default()
        },
        master: master.into(),
        implicit_acknowledgements: true,
        connect_timeout: Duration::from_millis(500),
        credential: None,
    };
    (SchedulerDriver::new(config, tx), rx)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

fn next(rx: &Receiver<Callback>) -> Callback {
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(c) => c,
        Err(RecvTimeoutError::Timeout) => panic!("no callback within 20 s"),
        Err(RecvTimeoutError::Disconnected) => panic!("callbacks ended"),
    }
}

fn task_id(value: &str) -> v0::TaskId {
    v0::TaskId {
        value: value.into(),
    }
}

#[test]
fn calls_before_start_do_nothing() {
    let (d, rx) = driver("127.0.0.1:1");
    assert_eq!(d.kill_task(&task_id("t")), DriverStatus::NotStarted);
    assert_eq!(d.revive_offers(), DriverStatus::NotStarted);
    assert_eq!(d.join(), DriverStatus::NotStarted, "join does not block");
    assert_eq!(d.abort(), DriverStatus::NotStarted);
    assert!(rx.try_recv().is_err());
}

#[test]
fn a_bad_master_string_is_an_error_and_aborts() {
    let rt = runtime();
    let (d, rx) = driver("nonsense:::");
    assert_eq!(d.start(rt.handle()), DriverStatus::Running);
    match next(&rx) {
        Callback::Error(message) => assert!(message.contains("invalid master"), "{message}"),
        other => panic!("expected an error, got {other:?}"),
    }
    assert_eq!(d.join(), DriverStatus::Aborted);
    assert!(
        d.delivers(&Callback::Error("x".into())),
        "the aborting error is still delivered"
    );
    assert!(!d.delivers(&Callback::Disconnected));
    assert_eq!(d.revive_offers(), DriverStatus::Aborted);
    assert_eq!(d.stop(false), DriverStatus::Aborted);
    assert_eq!(d.status(), DriverStatus::Stopped);
}

#[test]
fn an_unreachable_master_is_an_error_within_the_connect_timeout() {
    let rt = runtime();
    // A port nothing listens on: bind one, note it, drop it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let (d, rx) = driver(&format!("127.0.0.1:{port}"));
    let started = Instant::now();
    d.start(rt.handle());
    // join() returns without waiting for anyone to take the error.
    assert_eq!(d.join(), DriverStatus::Aborted);
    assert!(started.elapsed() < Duration::from_secs(20));
    match next(&rx) {
        Callback::Error(message) => {
            assert!(
                message.contains("cannot register with the master"),
                "{message}"
            );
            assert!(message.contains(&port.to_string()), "{message}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn stop_is_final_and_start_does_not_restart() {
    let rt = runtime();
    let (d, _rx) = driver("127.0.0.1:1");
    assert_eq!(d.start(rt.handle()), DriverStatus::Running);
    assert_eq!(d.start(rt.handle()), DriverStatus::Running);
    assert_eq!(d.stop(true), DriverStatus::Stopped);
    assert_eq!(d.join(), DriverStatus::Stopped);
    assert_eq!(d.start(rt.handle()), DriverStatus::Stopped);
    assert_eq!(d.kill_task(&task_id("t")), DriverStatus::Stopped);
    assert_eq!(
        d.decline_offer(&v0::OfferId { value: "o".into() }, None),
        DriverStatus::Stopped
    );
    assert_eq!(d.abort(), DriverStatus::Stopped);
}

#[test]
fn launching_an_image_task_fails_it_with_task_error() {
    let rt = runtime();
    let (d, rx) = driver("127.0.0.1:1");
    d.start(rt.handle());
    let task = v0::TaskInfo {
        name: "t".into(),
        task_id: task_id("img"),
        slave_id: v0::SlaveId { value: "a".into() },
        container: Some(v0::ContainerInfo {
            r#type: v0::container_info::Type::Docker as i32,
            docker: Some(v0::container_info::DockerInfo {
                image: "busybox".into(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        d.launch_tasks(&[v0::OfferId { value: "o".into() }], &[task], None),
        DriverStatus::Running
    );
    match next(&rx) {
        Callback::Status(s) => {
            assert_eq!(s.task_id.value, "img");
            assert_eq!(s.state(), v0::TaskState::TaskError);
            assert_eq!(s.slave_id.as_ref().map(|a| a.value.as_str()), Some("a"));
            assert!(s.message().contains("busybox"), "{:?}", s.message);
        }
        other => panic!("expected a status, got {other:?}"),
    }
    d.stop(true);
}
