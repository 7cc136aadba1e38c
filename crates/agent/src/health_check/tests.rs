use super::*;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[allow(clippy::disallowed_methods)] // a test's own finite seconds
fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn tcp_check(port: u32) -> pb::HealthCheck {
    pb::HealthCheck {
        r#type: Some(pb::health_check::Type::Tcp as i32),
        tcp: Some(pb::health_check::TcpCheckInfo { port }),
        ..Default::default()
    }
}

fn http_check(port: u32, path: Option<&str>) -> pb::HealthCheck {
    pb::HealthCheck {
        r#type: Some(pb::health_check::Type::Http as i32),
        http: Some(pb::health_check::HttpCheckInfo {
            port,
            path: path.map(str::to_owned),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn cmd_check(value: &str) -> pb::HealthCheck {
    pb::HealthCheck {
        r#type: Some(pb::health_check::Type::Command as i32),
        command: Some(pb::CommandInfo {
            value: Some(value.to_owned()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn from_proto_applies_mesos_defaults() {
    let (policy, probe) = HealthPolicy::from_proto(&tcp_check(8080)).expect("valid");
    assert_eq!(policy, HealthPolicy::default());
    assert_eq!(policy.delay, secs(15.0));
    assert_eq!(policy.interval, secs(10.0));
    assert_eq!(policy.timeout, secs(20.0));
    assert_eq!(policy.consecutive_failures, 3);
    assert_eq!(policy.grace_period, secs(10.0));
    assert_eq!(probe.kind, ProbeKind::Tcp { port: 8080 });
    assert_eq!(probe.timeout, secs(20.0));

    let mut check = http_check(80, None);
    check.delay_seconds = Some(0.5);
    check.interval_seconds = Some(1.0);
    check.timeout_seconds = Some(2.0);
    check.consecutive_failures = Some(5);
    check.grace_period_seconds = Some(0.0);
    let (policy, probe) = HealthPolicy::from_proto(&check).expect("valid");
    assert_eq!(
        policy,
        HealthPolicy {
            delay: secs(0.5),
            interval: secs(1.0),
            timeout: secs(2.0),
            consecutive_failures: 5,
            grace_period: Duration::ZERO,
        }
    );
    assert_eq!(
        probe.kind,
        ProbeKind::Http {
            port: 80,
            path: "/".into(),
            statuses: vec![]
        }
    );

    let mut check = cmd_check("exit 0");
    if let Some(command) = check.command.as_mut() {
        command.environment = Some(pb::Environment {
            variables: vec![pb::environment::Variable {
                name: "A".into(),
                value: Some("b".into()),
            }],
        });
    }
    let (_, probe) = HealthPolicy::from_proto(&check).expect("valid");
    assert_eq!(
        probe.kind,
        ProbeKind::Command {
            shell: true,
            value: "exit 0".into(),
            arguments: vec![],
            env: vec![("A".into(), "b".into())],
        }
    );
}

#[test]
fn from_proto_rejects_invalid_checks() {
    use HealthCheckError as E;
    let err = |check: pb::HealthCheck| HealthPolicy::from_proto(&check).expect_err("invalid");

    assert_eq!(err(pb::HealthCheck::default()), E::UnknownType(0));
    let mut check = tcp_check(1);
    check.r#type = Some(42);
    assert_eq!(err(check), E::UnknownType(42));
    let mut check = tcp_check(1);
    check.tcp = None;
    assert_eq!(err(check), E::Missing("TCP", "tcp"));
    let mut check = http_check(1, None);
    check.http = None;
    assert_eq!(err(check), E::Missing("HTTP", "http"));
    let mut check = cmd_check("x");
    check.command = None;
    assert_eq!(err(check), E::Missing("COMMAND", "command"));
    assert_eq!(err(cmd_check("  ")), E::EmptyCommand);

    assert_eq!(err(tcp_check(0)), E::InvalidPort(0));
    assert_eq!(err(tcp_check(70000)), E::InvalidPort(70000));
    assert_eq!(err(http_check(0, None)), E::InvalidPort(0));
    assert_eq!(
        err(http_check(80, Some("health"))),
        E::InvalidPath("health".into())
    );
    assert!(matches!(
        err(http_check(80, Some("/a b"))),
        E::InvalidPath(_)
    ));
    let mut check = http_check(80, None);
    if let Some(http) = check.http.as_mut() {
        http.scheme = Some("https".into());
    }
    let e = err(check);
    assert_eq!(e, E::UnsupportedScheme("https".into()));
    assert!(
        e.to_string()
            .contains("https health checks are not supported")
    );
    let mut check = http_check(80, None);
    if let Some(http) = check.http.as_mut() {
        http.statuses = vec![200, 1000];
    }
    assert_eq!(err(check), E::InvalidStatus(1000));

    let mut check = tcp_check(1);
    check.interval_seconds = Some(-1.0);
    assert!(matches!(
        err(check),
        E::InvalidSeconds("interval_seconds", _)
    ));
    let mut check = tcp_check(1);
    check.timeout_seconds = Some(f64::NAN);
    let e = err(check);
    assert!(matches!(e, E::InvalidSeconds("timeout_seconds", _)), "{e}");
    let mut check = tcp_check(1);
    check.delay_seconds = Some(f64::INFINITY);
    assert!(matches!(err(check), E::InvalidSeconds("delay_seconds", _)));
    let mut check = tcp_check(1);
    check.grace_period_seconds = Some(-0.5);
    assert!(matches!(
        err(check),
        E::InvalidSeconds("grace_period_seconds", _)
    ));
}

fn policy(failures: u32, grace: f64) -> HealthPolicy {
    HealthPolicy {
        delay: secs(1.0),
        interval: secs(2.0),
        timeout: secs(1.0),
        consecutive_failures: failures,
        grace_period: secs(grace),
    }
}

fn fail() -> Result<(), String> {
    Err("boom".into())
}

#[test]
fn schedules_first_check_after_delay_then_every_interval() {
    let started = secs(100.0);
    let mut t = HealthTracker::new(policy(3, 0.0), started);
    assert_eq!(t.next_check_at(), secs(101.0));
    t.record(secs(101.1), Ok(()));
    assert_eq!(t.next_check_at(), secs(103.0));
    t.record(secs(103.5), Ok(()));
    assert_eq!(t.next_check_at(), secs(105.0));
    // A check that outran the interval: the next one is due at once, and
    // missed checks do not pile up.
    t.record(secs(110.0), Ok(()));
    assert_eq!(t.next_check_at(), secs(110.0));
}

#[test]
fn failures_in_the_grace_period_are_ignored_until_the_first_success() {
    let mut t = HealthTracker::new(policy(1, 10.0), Duration::ZERO);
    for at in [1.0, 3.0, 5.0, 9.9] {
        let v = t.record(secs(at), fail());
        assert_eq!(v.report, None, "at {at}");
        assert!(!v.kill, "at {at}");
        assert!(v.message.contains("grace period"), "{}", v.message);
    }
    assert_eq!(t.consecutive_failures(), 0);
    // Past the grace period a single failure (the limit is 1) kills.
    let v = t.record(secs(10.0), fail());
    assert_eq!(v.report, Some(false));
    assert!(v.kill);

    // A success inside the grace period ends it: the next failure counts.
    let mut t = HealthTracker::new(policy(1, 10.0), Duration::ZERO);
    assert_eq!(t.record(secs(1.0), Ok(())).report, Some(true));
    let v = t.record(secs(2.0), fail());
    assert_eq!(v.report, Some(false));
    assert!(v.kill);
}

#[test]
fn consecutive_failures_kill_once_and_success_resets_the_count() {
    let mut t = HealthTracker::new(policy(3, 0.0), Duration::ZERO);
    let v = t.record(secs(1.0), fail());
    assert_eq!((v.report, v.kill), (Some(false), false));
    assert!(v.message.contains("1 of 3"), "{}", v.message);
    assert!(v.message.contains("boom"), "{}", v.message);
    assert!(!t.record(secs(3.0), fail()).kill);
    assert_eq!(t.consecutive_failures(), 2);
    // A success resets the count.
    assert_eq!(t.record(secs(5.0), Ok(())).report, Some(true));
    assert_eq!(t.consecutive_failures(), 0);
    assert!(!t.record(secs(7.0), fail()).kill);
    assert!(!t.record(secs(9.0), fail()).kill);
    assert!(!t.killed());
    let v = t.record(secs(11.0), fail());
    assert_eq!((v.report, v.kill), (Some(false), true));
    assert!(v.message.contains("3 consecutive times"), "{}", v.message);
    assert!(t.killed());
    // Exactly once: later outcomes neither kill nor report.
    for at in [13.0, 15.0] {
        let v = t.record(secs(at), fail());
        assert_eq!((v.report, v.kill), (None, false));
    }
    assert_eq!(t.record(secs(17.0), Ok(())).report, None);
}

#[test]
fn reports_changes_and_every_unhealthy_result_never_healthy_twice() {
    let mut t = HealthTracker::new(policy(10, 0.0), Duration::ZERO);
    let outcomes = [true, true, false, false, true, true, false, true];
    let reports: Vec<Option<bool>> = outcomes
        .iter()
        .enumerate()
        .map(|(i, &ok)| {
            let outcome = if ok { Ok(()) } else { fail() };
            t.record(secs(1.0 + 2.0 * i as f64), outcome).report
        })
        .collect();
    assert_eq!(
        reports,
        vec![
            Some(true),
            None,
            Some(false),
            Some(false),
            Some(true),
            None,
            Some(false),
            Some(true)
        ]
    );
}

#[test]
fn zero_consecutive_failures_acts_as_one() {
    let mut t = HealthTracker::new(policy(0, 0.0), Duration::ZERO);
    assert!(t.record(secs(1.0), fail()).kill);
}

/// A server on 127.0.0.1 answering each connection with the next status of
/// `statuses`; returns its port.
async fn http_server(statuses: Vec<u16>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        for status in statuses {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 65536 {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&request);
            assert!(text.starts_with("GET /health HTTP/1.1\r\n"), "{text}");
            assert!(text.contains("Connection: close\r\n"), "{text}");
            assert!(
                text.contains("User-Agent: agora-health-check\r\n"),
                "{text}"
            );
            let response = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
            let _ = stream.write_all(response.as_bytes()).await;
        }
    });
    port
}

fn probe_of(check: pb::HealthCheck) -> Probe {
    HealthPolicy::from_proto(&check).expect("valid").1
}

fn with_timeout(mut check: pb::HealthCheck, seconds: f64) -> pb::HealthCheck {
    check.timeout_seconds = Some(seconds);
    check
}

/// A port nothing listens on (bound, then released).
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr").port()
}

#[tokio::test]
async fn http_probe_accepts_2xx_3xx_and_rejects_others() {
    let ctx = ProbeContext::default();
    let port = http_server(vec![200, 500, 302]).await;
    let probe = probe_of(with_timeout(http_check(port.into(), Some("/health")), 5.0));
    assert_eq!(super::probe(&probe, &ctx).await, Ok(()));
    let err = super::probe(&probe, &ctx)
        .await
        .expect_err("500 is unhealthy");
    assert!(err.contains("500"), "{err}");
    assert_eq!(super::probe(&probe, &ctx).await, Ok(()));

    // Explicit statuses replace the 200-399 rule.
    let port = http_server(vec![500, 200]).await;
    let mut check = with_timeout(http_check(port.into(), Some("/health")), 5.0);
    if let Some(http) = check.http.as_mut() {
        http.statuses = vec![500];
    }
    let probe = probe_of(check);
    assert_eq!(super::probe(&probe, &ctx).await, Ok(()));
    assert!(super::probe(&probe, &ctx).await.is_err());

    let probe = probe_of(with_timeout(
        http_check(closed_port().await.into(), None),
        5.0,
    ));
    let err = super::probe(&probe, &ctx).await.expect_err("closed port");
    assert!(err.contains("cannot connect"), "{err}");
}

#[tokio::test]
async fn http_probe_times_out_on_a_silent_server() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // Accepts (via the backlog) but never answers.
    let probe = probe_of(with_timeout(http_check(port.into(), None), 0.2));
    // The probe's own timeout ends it (the message says so); the outer one
    // only keeps a broken probe from hanging the suite.
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        super::probe(&probe, &ProbeContext::default()),
    )
    .await
    .expect("the probe ended")
    .expect_err("silent server");
    assert_eq!(err, "timed out after 0.2s");
    drop(listener);
}

#[tokio::test]
async fn http_probe_refuses_an_answer_that_is_not_http() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        if let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").await;
        }
    });
    let probe = probe_of(with_timeout(http_check(port.into(), None), 5.0));
    let err = super::probe(&probe, &ProbeContext::default())
        .await
        .expect_err("not http");
    assert!(err.contains("no http response from 127.0.0.1"), "{err}");
}

#[tokio::test]
async fn tcp_probe_connects_or_fails() {
    let ctx = ProbeContext::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let probe = probe_of(with_timeout(tcp_check(port.into()), 5.0));
    assert_eq!(super::probe(&probe, &ctx).await, Ok(()));
    drop(listener);
    let probe = probe_of(with_timeout(tcp_check(closed_port().await.into()), 5.0));
    let err = super::probe(&probe, &ctx).await.expect_err("closed");
    assert!(err.contains("cannot connect to 127.0.0.1"), "{err}");
}

fn sandbox_ctx() -> (tempfile::TempDir, ProbeContext) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = ProbeContext {
        sandbox: dir.path().to_owned(),
        env: vec![("TASK_VAR".into(), "task".into())],
        uid_gid: None,
        ports: vec![],
        private_env: &[],
    };
    (dir, ctx)
}

#[tokio::test]
async fn command_probe_uses_exit_status_sandbox_and_environment() {
    let (dir, ctx) = sandbox_ctx();
    let run = |cmd: &str| probe_of(with_timeout(cmd_check(cmd), 5.0));
    assert_eq!(super::probe(&run("exit 0"), &ctx).await, Ok(()));
    let err = super::probe(&run("echo sick >&2; exit 1"), &ctx)
        .await
        .expect_err("exit 1");
    assert_eq!(err, "health check command exited with status 1: sick");

    let expected = dir.path().canonicalize().expect("canonical");
    let cmd = format!(
        "test \"$(pwd -P)\" = '{}' && test \"$TASK_VAR\" = task && test \"$OWN\" = own",
        expected.display()
    );
    let mut check = with_timeout(cmd_check(&cmd), 5.0);
    if let Some(command) = check.command.as_mut() {
        command.environment = Some(pb::Environment {
            variables: vec![pb::environment::Variable {
                name: "OWN".into(),
                value: Some("own".into()),
            }],
        });
    }
    assert_eq!(super::probe(&probe_of(check), &ctx).await, Ok(()));

    // Without a shell: the program and arguments[1..].
    let mut check = with_timeout(cmd_check("/bin/sh"), 5.0);
    if let Some(command) = check.command.as_mut() {
        command.shell = Some(false);
        command.arguments = vec!["sh".into(), "-c".into(), "exit 3".into()];
    }
    let err = super::probe(&probe_of(check), &ctx).await.expect_err("3");
    assert_eq!(err, "health check command exited with status 3");

    let err = super::probe(&run("kill -9 $$"), &ctx)
        .await
        .expect_err("sig");
    assert!(err.contains("signal 9"), "{err}");
}

#[tokio::test]
async fn command_probe_timeout_kills_the_process_group() {
    let (dir, ctx) = sandbox_ctx();
    let probe = probe_of(with_timeout(
        cmd_check("sleep 30 & echo $! > bg.pid; sleep 30"),
        0.2,
    ));
    let started = Instant::now();
    let err = super::probe(&probe, &ctx).await.expect_err("times out");
    assert_eq!(err, "timed out after 0.2s");
    // Ended by the timeout, not by the command's own end.
    assert!(started.elapsed() < Duration::from_secs(30));

    // The background sleep was in the check's group: it is gone (or a
    // zombie about to be reaped by init) soon after: well before its own
    // 30 s are up.
    let pid = std::fs::read_to_string(dir.path().join("bg.pid")).expect("pid file");
    let stat = format!("/proc/{}/stat", pid.trim());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let alive = std::fs::read_to_string(&stat)
            .map(|s| s.split(' ').nth(2).is_none_or(|state| state != "Z"))
            .unwrap_or(false);
        if !alive {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "background process {pid} survived"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn command_probe_runs_as_the_given_user() {
    // Changing users needs root: without it this test could not show
    // anything, so it fails.
    assert!(
        rustix::process::geteuid().is_root(),
        "this test needs root (the probe runs as the user 'nobody'): run the suite as root, as .ci/run does"
    );
    let (_dir, mut ctx) = sandbox_ctx();
    // The sandbox must be reachable by the unprivileged user.
    ctx.sandbox = std::env::temp_dir();
    ctx.uid_gid = Some((65534, 65534));
    let probe = probe_of(with_timeout(
        cmd_check(
            "test \"$(id -u)\" = 65534 && test \"$(id -g)\" = 65534 && test -z \"$(id -G | tr -d ' 65534')\"",
        ),
        5.0,
    ));
    assert_eq!(super::probe(&probe, &ctx).await, Ok(()));
}
