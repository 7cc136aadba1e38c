//! Mesos' v1 scheduler HTTP API on a real `agora master` and `agora agent`,
//! seen on the wire: SUBSCRIBE's chunked RecordIO stream (one record per
//! chunk), calls answered 202, a task launched and finished in JSON and in
//! protobuf, heartbeats, and every refusal with Mesos' status code.

use std::time::{Duration, Instant};

use agora_e2e::mesos_http::{Response, post_json, request};
use agora_e2e::{Cluster, Proc, free_port, http_get, wait_for};
use agora_proto::v1 as pb;
use agora_proto::v1::scheduler as sched;
use prost::Message;
use serde_json::{Value, json};

const API: &str = "/api/v1/scheduler";

fn subscribe_json(name: &str) -> Value {
    json!({
        "type": "SUBSCRIBE",
        "subscribe": {"framework_info": {
            "user": "nobody", "name": name, "failover_timeout": 0.0,
            "capabilities": [{"type": "MULTI_ROLE"}], "roles": ["*"],
            "some_key_from_the_future": {"ignored": true}
        }}
    })
}

/// A JSON subscription and the events read from it.
struct JsonFramework {
    port: u16,
    stream: Response,
    stream_id: String,
    framework_id: String,
}

impl JsonFramework {
    fn subscribe(port: u16, name: &str) -> JsonFramework {
        // pymesos sends SUBSCRIBE with `Connection: close`: the stream must flow anyway.
        let body = serde_json::to_vec(&subscribe_json(name)).expect("json");
        let mut stream = request(
            port,
            "POST",
            API,
            &[
                ("Content-Type", "application/json"),
                ("Accept", "application/json"),
                ("Connection", "close"),
            ],
            &body,
        )
        .expect("subscribe");
        assert_eq!(stream.status, 200);
        assert_eq!(stream.header("content-type"), Some("application/json"));
        assert_eq!(stream.header("transfer-encoding"), Some("chunked"));
        let stream_id = stream
            .header("mesos-stream-id")
            .expect("Mesos-Stream-Id header")
            .to_string();
        let subscribed = next_event(&mut stream);
        assert_eq!(subscribed["type"], "SUBSCRIBED", "{subscribed}");
        assert_eq!(
            subscribed["subscribed"]["heartbeat_interval_seconds"], 15.0,
            "{subscribed}"
        );
        let framework_id = subscribed["subscribed"]["framework_id"]["value"]
            .as_str()
            .expect("framework id")
            .to_string();
        JsonFramework {
            port,
            stream,
            stream_id,
            framework_id,
        }
    }

    fn call(&self, mut call: Value) -> Response {
        call["framework_id"] = json!({"value": self.framework_id});
        post_json(self.port, API, Some(&self.stream_id), &call).expect("call")
    }

    fn call_accepted(&self, call: Value) {
        let kind = call["type"].clone();
        let response = self.call(call);
        let status = response.status;
        let body = response.text().expect("body");
        assert_eq!(status, 202, "{kind}: {body}");
        assert!(body.is_empty(), "202 has an empty body: {body:?}");
    }

    /// Events until one of `kind` (others but heartbeats are kept in `seen`).
    fn until(&mut self, kind: &str, seen: &mut Vec<Value>) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let event = next_event(&mut self.stream);
            if event["type"] == kind {
                return event;
            }
            seen.push(event);
        }
        panic!("no {kind} event within a minute; saw {seen:?}");
    }
}

/// The next event: one record in one chunk, on one line, valid JSON.
fn next_event(stream: &mut Response) -> Value {
    let record = stream
        .next_record()
        .expect("a record")
        .expect("the stream is open");
    assert!(
        !record.contains(&b'\n'),
        "a JSON record is a single line: {}",
        String::from_utf8_lossy(&record)
    );
    serde_json::from_slice(&record).expect("json event")
}

fn launch_call(offer: &Value, task_id: &str, command: &str) -> Value {
    json!({
        "type": "ACCEPT",
        "accept": {
            "offer_ids": [offer["id"]],
            "operations": [{"type": "LAUNCH", "launch": {"task_infos": [{
                "name": task_id,
                "task_id": {"value": task_id},
                "agent_id": offer["agent_id"],
                "resources": [
                    {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                    {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}
                ],
                "command": {"value": command}
            }]}}],
            "filters": {"refuse_seconds": 1.0}
        }
    })
}

#[test]
fn a_json_framework_launches_a_task_and_sees_it_finish() {
    let cluster = Cluster::start(1, "cpus:2;mem:512").expect("cluster");
    let mut fw = JsonFramework::subscribe(cluster.master_port, "http-json");

    let mut seen = Vec::new();
    let offers = fw.until("OFFERS", &mut seen);
    let offer = &offers["offers"]["offers"][0];
    // Every resource says its type, SCALAR included (Mesos' decoders require it).
    for resource in offer["resources"].as_array().expect("resources") {
        assert!(resource["type"].is_string(), "{resource}");
    }
    fw.call_accepted(launch_call(offer, "t1", "echo hello-from-http"));

    let mut states = Vec::new();
    loop {
        let update = fw.until("UPDATE", &mut seen);
        let status = &update["update"]["status"];
        let state = status["state"]
            .as_str()
            .unwrap_or_else(|| panic!("every status says its state: {status}"))
            .to_string();
        states.push(state.clone());
        if let Some(uuid) = status["uuid"].as_str() {
            fw.call_accepted(json!({
                "type": "ACKNOWLEDGE",
                "acknowledge": {"agent_id": status["agent_id"], "task_id": status["task_id"], "uuid": uuid}
            }));
        }
        if state == "TASK_FINISHED" {
            break;
        }
        assert!(
            ["TASK_STAGING", "TASK_STARTING", "TASK_RUNNING"].contains(&state.as_str()),
            "{states:?}"
        );
    }
    assert!(states.contains(&"TASK_RUNNING".to_string()), "{states:?}");

    // Explicit reconciliation answers with the task's latest state.
    fw.call_accepted(
        json!({"type": "RECONCILE", "reconcile": {"tasks": [{"task_id": {"value": "t1"}}]}}),
    );
    let update = fw.until("UPDATE", &mut seen);
    assert_eq!(
        update["update"]["status"]["state"], "TASK_FINISHED",
        "{update}"
    );
    assert_eq!(
        update["update"]["status"]["reason"],
        "REASON_RECONCILIATION"
    );

    fw.call_accepted(json!({"type": "TEARDOWN"}));
    // The stream ends after the framework is removed.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            Instant::now() < deadline,
            "stream still open after TEARDOWN"
        );
        match fw.stream.next_record() {
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => break,
        }
    }
    let id = fw.framework_id.clone();
    cluster
        .wait_state("the framework among the completed ones", |s| {
            s["completed_frameworks"][0]["id"] == id.as_str()
        })
        .expect("framework completed");
}

#[test]
fn a_protobuf_framework_launches_a_task() {
    let cluster = Cluster::start(1, "cpus:2;mem:512").expect("cluster");
    let port = cluster.master_port;
    let subscribe = sched::Call {
        r#type: sched::call::Type::Subscribe as i32,
        subscribe: Some(sched::call::Subscribe {
            framework_info: Some(pb::FrameworkInfo {
                user: "nobody".into(),
                name: "http-protobuf".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let protobuf = [
        ("Content-Type", "application/x-protobuf"),
        ("Accept", "application/x-protobuf"),
    ];
    let mut stream =
        request(port, "POST", API, &protobuf, &subscribe.encode_to_vec()).expect("subscribe");
    assert_eq!(stream.status, 200);
    assert_eq!(
        stream.header("content-type"),
        Some("application/x-protobuf")
    );
    let stream_id = stream
        .header("mesos-stream-id")
        .expect("stream id")
        .to_string();
    let mut next = || {
        let record = stream.next_record().expect("record").expect("open");
        sched::Event::decode(record.as_slice()).expect("protobuf event")
    };
    let subscribed = next();
    let framework_id = subscribed.subscribed.expect("SUBSCRIBED").framework_id;
    let offer = loop {
        let event = next();
        if let Some(offers) = event.offers {
            break offers.offers[0].clone();
        }
    };
    let task = pb::TaskInfo {
        name: "t".into(),
        task_id: Some(pb::TaskId {
            value: "pb1".into(),
        }),
        agent_id: offer.agent_id.clone(),
        resources: offer
            .resources
            .iter()
            .filter(|r| r.name == "cpus")
            .cloned()
            .map(|mut r| {
                r.scalar = Some(pb::value::Scalar { value: 0.1 });
                r
            })
            .collect(),
        command: Some(pb::CommandInfo {
            value: Some("true".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let accept = sched::Call {
        framework_id: framework_id.clone(),
        r#type: sched::call::Type::Accept as i32,
        accept: Some(sched::call::Accept {
            offer_ids: vec![offer.id.clone().expect("offer id")],
            operations: vec![pb::offer::Operation {
                r#type: Some(pb::offer::operation::Type::Launch as i32),
                launch: Some(pb::offer::operation::Launch {
                    task_infos: vec![task],
                }),
                ..Default::default()
            }],
            filters: None,
        }),
        ..Default::default()
    };
    let mut headers = protobuf.to_vec();
    headers.push(("Mesos-Stream-Id", &stream_id));
    let response = request(port, "POST", API, &headers, &accept.encode_to_vec()).expect("accept");
    assert_eq!(response.status, 202);
    // Every update is acknowledged, or the agent holds back the next one.
    let ack = |status: &pb::TaskStatus| {
        let Some(uuid) = status.uuid.clone() else {
            return;
        };
        let call = sched::Call {
            framework_id: framework_id.clone(),
            r#type: sched::call::Type::Acknowledge as i32,
            acknowledge: Some(sched::call::Acknowledge {
                agent_id: status.agent_id.clone(),
                task_id: status.task_id.clone(),
                uuid,
            }),
            ..Default::default()
        };
        let response =
            request(port, "POST", API, &headers, &call.encode_to_vec()).expect("acknowledge");
        assert_eq!(response.status, 202);
    };
    let finished = loop {
        let event = next();
        if let Some(update) = event.update {
            let status = update.status.expect("status");
            ack(&status);
            if status.state() == pb::TaskState::TaskFinished {
                break status;
            }
        }
    };
    assert_eq!(
        finished.task_id,
        Some(pb::TaskId {
            value: "pb1".into()
        })
    );
}

fn refusal(response: Response) -> (u16, String) {
    let status = response.status;
    (status, response.text().expect("body"))
}

#[test]
fn bad_requests_get_mesos_status_codes_and_change_nothing() {
    let cluster = Cluster::start(1, "cpus:1;mem:256").expect("cluster");
    let port = cluster.master_port;
    let fw = JsonFramework::subscribe(port, "refusals");
    let body = serde_json::to_vec(&subscribe_json("x")).expect("json");

    // No Content-Type: 400; an unsupported one: 415.
    let (code, text) = refusal(request(port, "POST", API, &[], &body).expect("post"));
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("Content-Type"), "{text}");
    let (code, text) = refusal(
        request(port, "POST", API, &[("Content-Type", "text/plain")], &body).expect("post"),
    );
    assert_eq!(code, 415, "{text}");
    // A response type nobody can give: 406.
    let (code, text) = refusal(
        request(
            port,
            "POST",
            API,
            &[
                ("Content-Type", "application/json"),
                ("Accept", "text/html"),
            ],
            &body,
        )
        .expect("post"),
    );
    assert_eq!(code, 406, "{text}");
    // Not JSON, or JSON that is not a call: 400.
    let (code, text) = refusal(
        request(
            port,
            "POST",
            API,
            &[("Content-Type", "application/json")],
            b"{not json",
        )
        .expect("post"),
    );
    assert_eq!(code, 400, "{text}");
    let (code, text) =
        refusal(post_json(port, API, None, &json!({"subscribe": {}})).expect("post"));
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("type"), "{text}");
    // Garbage protobuf: 400.
    let (code, text) = refusal(
        request(
            port,
            "POST",
            API,
            &[("Content-Type", "application/x-protobuf")],
            &[0xff, 0xff, 0xff, 0x01],
        )
        .expect("post"),
    );
    assert_eq!(code, 400, "{text}");
    // Only POST: 405.
    let (code, _) = http_get(port, API).expect("get");
    assert_eq!(code, 405);
    // SUBSCRIBE with a stream id: 400.
    let (code, text) =
        refusal(post_json(port, API, Some(&fw.stream_id), &subscribe_json("x")).expect("post"));
    assert_eq!(code, 400, "{text}");
    // A call without the stream id, or with another: 400.
    let teardown = json!({"type": "TEARDOWN", "framework_id": {"value": fw.framework_id}});
    let (code, text) = refusal(post_json(port, API, None, &teardown).expect("post"));
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("Mesos-Stream-Id"), "{text}");
    let (code, text) =
        refusal(post_json(port, API, Some("not-the-stream"), &teardown).expect("post"));
    assert_eq!(code, 400, "{text}");
    // An unknown framework: 400.
    let (code, text) = refusal(
        post_json(
            port,
            API,
            Some(&fw.stream_id),
            &json!({"type": "REVIVE", "framework_id": {"value": "no-such-framework"}}),
        )
        .expect("post"),
    );
    assert_eq!(code, 400, "{text}");
    // A body larger than any call may be: 413 on its Content-Length alone,
    // before any of it is read.
    let (code, _) = agora_e2e::http_raw(
        port,
        &format!(
            "POST {API} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            80 * 1024 * 1024
        ),
    )
    .expect("post");
    assert_eq!(code, 413);

    // None of it touched the framework: still subscribed, one of it.
    let state = cluster.state().expect("state");
    let frameworks = state["frameworks"].as_array().expect("frameworks");
    assert_eq!(frameworks.len(), 1, "{state}");
    fw.call_accepted(json!({"type": "SUPPRESS", "suppress": {}}));

    // Mesos' `/master/teardown` form: a missing id is 400, a good one removes it.
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let (code, text) =
        refusal(request(port, "POST", "/master/teardown", &form, b"nothing=here").expect("post"));
    assert_eq!(code, 400, "{text}");
    let body = format!("frameworkId={}", fw.framework_id);
    let (code, text) =
        refusal(request(port, "POST", "/master/teardown", &form, body.as_bytes()).expect("post"));
    assert_eq!(code, 200, "{text}");
    let id = fw.framework_id.clone();
    cluster
        .wait_state("the framework among the completed ones", |s| {
            s["completed_frameworks"][0]["id"] == id.as_str()
        })
        .expect("framework completed");
    let (code, text) =
        refusal(request(port, "POST", "/master/teardown", &form, body.as_bytes()).expect("post"));
    assert_eq!(code, 404, "a removed framework is not found again: {text}");
}

#[test]
fn the_stream_carries_heartbeats() {
    let cluster = Cluster::start(0, "cpus:1").expect("cluster");
    let mut fw = JsonFramework::subscribe(cluster.master_port, "heartbeats");
    let mut seen = Vec::new();
    let heartbeat = fw.until("HEARTBEAT", &mut seen);
    assert_eq!(heartbeat, json!({"type": "HEARTBEAT"}));
    assert!(seen.is_empty(), "nothing else was sent: {seen:?}");
}

#[test]
fn a_master_without_a_leader_answers_503() {
    let dir = tempfile::tempdir().expect("dir");
    let _sweeper = agora_e2e::Sweeper(dir.path().to_path_buf());
    // ZooKeeper is not running there: no leader is ever known.
    let zk = format!("zk://127.0.0.1:{}/agora", free_port());
    let port = free_port();
    let _master: Proc =
        agora_e2e::spawn_zk_master(dir.path(), 0, port, &zk, dir.path().join("master.log"));
    wait_for("master /health", Duration::from_secs(30), || {
        http_get(port, "/health").ok().filter(|(c, _)| *c == 200)
    })
    .expect("master up");
    let (code, text) = refusal(post_json(port, API, None, &subscribe_json("x")).expect("post"));
    assert_eq!(code, 503, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_sends_frameworks_to_the_leader() {
    let zk = agora_coord::testing::ZooKeeper::start()
        .await
        .expect("zookeeper starts (Debian package zookeeper)");
    let url = zk.unique_url("agora-http-api").to_string();
    let dir = tempfile::tempdir().expect("dir");
    let _sweeper = agora_e2e::Sweeper(dir.path().to_path_buf());
    let ports = [free_port(), free_port()];
    let _masters: Vec<Proc> = ports
        .iter()
        .enumerate()
        .map(|(n, port)| {
            let log = dir.path().join(format!("master-{n}.log"));
            agora_e2e::spawn_zk_master(dir.path(), n, *port, &url, log)
        })
        .collect();
    let elected = |port: u16| {
        agora_e2e::get_json(port, "/state").ok().map(|s| {
            (
                s["elected"] == true,
                s["leader"].as_str().map(str::to_string),
            )
        })
    };
    // One leads, and the other has learnt who.
    let (leader, follower) = tokio::task::spawn_blocking(move || {
        wait_for(
            "a leader known to both masters",
            Duration::from_secs(60),
            || {
                let a = elected(ports[0])?;
                let b = elected(ports[1])?;
                match (a, b) {
                    ((true, _), (false, Some(l))) if l.ends_with(&ports[0].to_string()) => {
                        Some((ports[0], ports[1]))
                    }
                    ((false, Some(l)), (true, _)) if l.ends_with(&ports[1].to_string()) => {
                        Some((ports[1], ports[0]))
                    }
                    _ => None,
                }
            },
        )
    })
    .await
    .expect("join")
    .expect("leader");
    let response = tokio::task::spawn_blocking(move || {
        post_json(
            follower,
            "/api/v1/scheduler?x=1",
            None,
            &subscribe_json("x"),
        )
        .expect("post")
    })
    .await
    .expect("join");
    assert_eq!(response.status, 307);
    // Mesos' protocol-relative form, with the original path and query.
    assert_eq!(
        response.header("location"),
        Some(format!("//127.0.0.1:{leader}/api/v1/scheduler?x=1").as_str())
    );
}
