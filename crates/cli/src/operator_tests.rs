//! `agora kill` and `agora teardown` against fake masters on 127.0.0.1:
//! the calls' JSON, a follower's 307 followed to the leader, refusals with
//! the master's message, retries while no leader answers, and framework
//! names resolved from `/state`.

use std::sync::{Arc, Mutex};

use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use super::*;

/// A request a fake master saw.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    content_type: String,
    authorization: String,
    body: String,
}

/// What a fake master answers: status, extra headers, body.
type Answer = (u16, Vec<(String, String)>, String);
type Answers = Arc<dyn Fn(&Seen, usize) -> Answer + Send + Sync>;

struct FakeMaster {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeMaster {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeMaster {
    /// Serves one request per connection, answering the `n`th with `answers(seen, n)`.
    async fn start(answers: Answers) -> FakeMaster {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = seen.clone();
        let server = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let Some(request) = read_request(&mut stream).await else {
                    continue;
                };
                let n = {
                    let mut log = log.lock().expect("lock");
                    log.push(request.clone());
                    log.len() - 1
                };
                let (status, headers, body) = answers(&request, n);
                let mut head = format!(
                    "HTTP/1.1 {status} Fake\r\nContent-Length: {}\r\nConnection: close\r\n",
                    body.len()
                );
                for (name, value) in headers {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
                head.push_str("\r\n");
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(body.as_bytes()).await;
                let _ = stream.shutdown().await;
            }
        });
        FakeMaster { port, seen, server }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    fn opt(&self, timeout: u64) -> MasterOpt {
        MasterOpt {
            master: format!("127.0.0.1:{}", self.port),
            timeout,
            tls: Default::default(),
        }
    }
}

async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<Seen> {
    let mut raw = Vec::new();
    let mut buffer = [0u8; 4096];
    let end = loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = stream.read(&mut buffer).await.ok()?;
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(&buffer[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let header = |name: &str| {
        head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_string())
        })
    };
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = raw[end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut buffer).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buffer[..n]);
    }
    let mut first = head.lines().next()?.split_whitespace();
    Some(Seen {
        method: first.next()?.to_string(),
        path: first.next()?.to_string(),
        content_type: header("content-type").unwrap_or_default(),
        authorization: header("authorization").unwrap_or_default(),
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Mesos' redirect: protocol-relative, to the same path on `port`.
fn redirect_to(port: u16) -> Answers {
    Arc::new(move |seen, _| {
        (
            307,
            vec![(
                "Location".into(),
                format!("//127.0.0.1:{port}{}", seen.path),
            )],
            String::new(),
        )
    })
}

fn ok() -> Answer {
    (200, Vec::new(), String::new())
}

#[test]
fn calls_are_mesos_json() {
    let kill = kill_call("sleepy-0", None, "killed with `agora kill` by alice");
    let json: Value = serde_json::from_slice(&encode(Media::Json, &kill)).expect("json");
    assert_eq!(
        json,
        json!({
            "type": "KILL_TASK",
            "kill_task": {
                "task_id": {"value": "sleepy-0"},
                "reason": "killed with `agora kill` by alice",
            },
        })
    );
    let kill = kill_call("t", Some("fw-1"), "why");
    let json: Value = serde_json::from_slice(&encode(Media::Json, &kill)).expect("json");
    assert_eq!(json["kill_task"]["framework_id"], json!({"value": "fw-1"}));
    let teardown = teardown_call("fw-1");
    let json: Value = serde_json::from_slice(&encode(Media::Json, &teardown)).expect("json");
    assert_eq!(
        json,
        json!({"type": "TEARDOWN", "teardown": {"framework_id": {"value": "fw-1"}}})
    );
    assert!(default_reason().starts_with("killed with `agora kill` by "));
}

#[test]
fn frameworks_resolve_by_id_or_unique_name() {
    let state = json!({
        "frameworks": [
            {"id": "m-0001", "name": "etl", "active": true},
            {"id": "m-0002", "name": "spark", "active": true},
            {"id": "m-0003", "name": "spark", "active": false},
        ],
        "completed_frameworks": [
            {"id": "m-0000", "name": "old"},
        ],
    });
    let pair = |id: &str, name: &str| (id.to_string(), name.to_string());
    assert_eq!(
        resolve_framework(&state, "m-0002"),
        Ok(pair("m-0002", "spark"))
    );
    assert_eq!(resolve_framework(&state, "etl"), Ok(pair("m-0001", "etl")));
    let Err(Failure::Invalid(several)) = resolve_framework(&state, "spark") else {
        panic!("two frameworks are named spark");
    };
    assert!(
        several.contains("m-0002") && several.contains("m-0003"),
        "{several}"
    );
    let Err(Failure::Invalid(completed)) = resolve_framework(&state, "old") else {
        panic!("old has completed");
    };
    assert!(
        completed.contains("completed already: m-0000"),
        "{completed}"
    );
    let Err(Failure::Invalid(none)) = resolve_framework(&state, "nope") else {
        panic!("nothing is named nope");
    };
    assert!(
        none.contains("m-0001 (etl)") && none.contains("m-0003 (spark)"),
        "{none}"
    );
    let Err(Failure::Invalid(empty)) = resolve_framework(&json!({"frameworks": []}), "x") else {
        panic!("no frameworks at all");
    };
    assert!(empty.contains("there are none"), "{empty}");
}

#[tokio::test]
async fn a_kill_sent_to_a_follower_reaches_the_leader() {
    let leader = FakeMaster::start(Arc::new(|_, _| ok())).await;
    let leader_port = leader.port;
    let follower = FakeMaster::start(redirect_to(leader_port)).await;
    let master = Master::new(&follower.opt(5)).expect("valid address");
    master
        .call(&kill_call("sleepy-0", None, "tests"))
        .await
        .expect("the leader accepts");
    assert_eq!(follower.seen().len(), 1);
    let seen = leader.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/api/v1");
    assert_eq!(seen[0].content_type, "application/json");
    let body: Value = serde_json::from_str(&seen[0].body).expect("json body");
    assert_eq!(body["type"], "KILL_TASK");
    assert_eq!(body["kill_task"]["task_id"]["value"], "sleepy-0");
    assert_eq!(body["kill_task"]["reason"], "tests");
}

#[tokio::test]
async fn the_credential_follows_the_redirect_to_the_leader() {
    let leader = FakeMaster::start(Arc::new(|_, _| ok())).await;
    let leader_port = leader.port;
    let follower = FakeMaster::start(redirect_to(leader_port)).await;
    let auth = crate::auth_flags::ClientAuthArgs::with_secret("ops", "ops-secret");
    let master = Master::new(&follower.opt(5))
        .expect("valid address")
        .with_credential(&auth)
        .expect("a credential");
    master
        .call(&kill_call("sleepy-0", None, "tests"))
        .await
        .expect("the leader accepts");
    // "ops:ops-secret" in base64.
    let expected = "Basic b3BzOm9wcy1zZWNyZXQ=";
    assert_eq!(follower.seen()[0].authorization, expected);
    let seen = leader.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        seen[0].authorization, expected,
        "the leader gets the credential too"
    );
}

#[tokio::test]
async fn redirects_are_followed_a_bounded_number_of_times() {
    // A master that redirects to itself forever.
    let port = Arc::new(Mutex::new(0u16));
    let own = port.clone();
    let looping = FakeMaster::start(Arc::new(move |seen, _| {
        let port = *own.lock().expect("lock");
        (
            307,
            vec![(
                "Location".into(),
                format!("//127.0.0.1:{port}{}", seen.path),
            )],
            String::new(),
        )
    }))
    .await;
    *port.lock().expect("lock") = looping.port;
    let failure = Master::new(&looping.opt(5))
        .expect("valid address")
        .call(&kill_call("sleepy-0", None, "tests"))
        .await
        .expect_err("never answered");
    assert!(matches!(failure, Failure::Refused(_)), "{failure:?}");
    assert_eq!(looping.seen().len(), MAX_REDIRECTS + 1);
}

#[tokio::test]
async fn a_refusal_carries_the_masters_message_and_exit_status_1() {
    let master = FakeMaster::start(Arc::new(|_, _| {
        (404, Vec::new(), "no running task t9\n".into())
    }))
    .await;
    let failure = Master::new(&master.opt(5))
        .expect("valid address")
        .call(&kill_call("t9", None, "why"))
        .await
        .expect_err("refused");
    assert_eq!(
        failure,
        Failure::Refused("404 Not Found: no running task t9".into())
    );
    assert_eq!(failure.exit_code(), ExitCode::FAILURE);
    assert_eq!(
        failure.to_string(),
        "the master refused: 404 Not Found: no running task t9"
    );
    // A refusal is final: sent once.
    assert_eq!(master.seen().len(), 1);
}

#[tokio::test]
async fn no_leader_yet_is_waited_for() {
    let master = FakeMaster::start(Arc::new(|_, n| {
        if n < 2 {
            (503, Vec::new(), "No leader elected".into())
        } else {
            ok()
        }
    }))
    .await;
    Master::new(&master.opt(10))
        .expect("valid address")
        .call(&teardown_call("fw-1"))
        .await
        .expect("accepted once a leader is there");
    assert_eq!(master.seen().len(), 3);
}

#[tokio::test]
async fn an_unreachable_master_is_exit_status_2() {
    // A port nothing listens on: bound, then closed.
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let opt = MasterOpt {
        master: format!("127.0.0.1:{port}"),
        timeout: 1,
        tls: Default::default(),
    };
    let failure = Master::new(&opt)
        .expect("valid address")
        .call(&teardown_call("fw-1"))
        .await
        .expect_err("nobody answers");
    assert!(matches!(failure, Failure::Unreachable(_)), "{failure:?}");
    assert!(failure.to_string().contains("within 1 s"), "{failure}");
    assert_eq!(failure.exit_code(), ExitCode::from(2));
    let invalid = MasterOpt {
        master: "ftp://h:1".into(),
        timeout: 1,
        tls: Default::default(),
    };
    let failure = Master::new(&invalid).err().expect("invalid address");
    assert_eq!(failure.exit_code(), ExitCode::from(2));
}

#[tokio::test]
async fn a_teardown_by_name_sends_the_frameworks_id() {
    let master = FakeMaster::start(Arc::new(|seen, _| {
        if seen.method == "GET" && seen.path == "/state" {
            let state = json!({
                "frameworks": [
                    {"id": "m-0001", "name": "etl"},
                    {"id": "m-0002", "name": "spark"},
                ],
            });
            (200, Vec::new(), state.to_string())
        } else {
            ok()
        }
    }))
    .await;
    let master_opt = master.opt(5);
    let code = teardown(TeardownArgs {
        framework: "spark".into(),
        master: master_opt,
        auth: Default::default(),
    })
    .await
    .expect("runs");
    assert_eq!(code, ExitCode::SUCCESS);
    let seen = master.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let body: Value = serde_json::from_str(&seen[1].body).expect("json body");
    assert_eq!(
        body,
        json!({"type": "TEARDOWN", "teardown": {"framework_id": {"value": "m-0002"}}})
    );
    // An unknown name sends nothing but the read.
    let code = teardown(TeardownArgs {
        framework: "nope".into(),
        master: master.opt(5),
        auth: Default::default(),
    })
    .await
    .expect("runs");
    assert_eq!(code, ExitCode::FAILURE);
    assert_eq!(master.seen().len(), 3);
}
