//! The allocator end to end, against real `agora` processes on 127.0.0.1:
//! - two frameworks with endless work in roles weighted 1 and 3 (`PUT
//!   /weights`) converge to 1:3 of the cluster's cpus (`GET /roles`);
//! - starvation, small: 20 frameworks declining everything with the default
//!   filter, and a newcomer offered at once (the 200-framework version is a
//!   state-machine test with the real allocator:
//!   `a_new_framework_is_offered_within_two_cycles_among_200_decliners`);
//! - the operator endpoints (`/roles`, `/weights`, `/quota`, `/reserve`,
//!   `/unreserve`) with their 4xx answers, and "why no offer?" in `/roles`
//!   and `/state` (a suppressed framework shows `suppressed`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use agora_e2e::{Cluster, all_tasks, get_json, http_request, processes_under, wait_for};
use agora_scheduler::proto::Filters;
use agora_scheduler::{
    Event, FrameworkBuilder, SchedulerClient, SubscribeOptions, TaskBuilder, offer_cpus_mem,
};

const TASK_CPUS: f64 = 0.5;
const TASK_MEM: f64 = 16.0;

/// Subscribes and waits for SUBSCRIBED.
async fn subscribe(
    master: &str,
    name: &str,
    role: &str,
    options: SubscribeOptions,
) -> (SchedulerClient, agora_scheduler::EventStream, String) {
    let info = FrameworkBuilder::new(name).role(role).build();
    let (client, mut events) = SchedulerClient::connect(master, info, options)
        .await
        .expect("subscribe");
    let id = loop {
        match tokio::time::timeout(Duration::from_secs(30), events.recv()).await {
            Ok(Some(Event::Subscribed { framework_id, .. })) => break framework_id.value,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("{name}: stream ended before SUBSCRIBED"),
            Err(_) => panic!("{name}: no SUBSCRIBED within 30 s"),
        }
    };
    (client, events, id)
}

/// A framework with endless work: on every offer it launches one `sleep`
/// task of 0.5 cpus and gives the rest back without a filter, so that the
/// allocator decides at once who gets the rest. Offers too small for a task
/// are declined with the default filter.
fn endless_work(
    name: &'static str,
    client: SchedulerClient,
    mut events: agora_scheduler::EventStream,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<agora_scheduler::EventStream> {
    // The stream is handed back: dropping it would end the subscription
    // before the test tears the framework down.
    tokio::spawn(async move {
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let event = match tokio::time::timeout(Duration::from_millis(200), events.recv()).await
            {
                Ok(Some(event)) => event,
                Ok(None) => return events,
                Err(_) => continue,
            };
            let Event::Offers(offers) = event else {
                continue;
            };
            for offer in offers {
                let Some(offer_id) = offer.id.clone() else {
                    continue;
                };
                let (cpus, mem) = offer_cpus_mem(&offer);
                if stop.load(Ordering::Relaxed) || cpus < TASK_CPUS || mem < TASK_MEM {
                    let _ = client.decline(vec![offer_id], None).await;
                    continue;
                }
                n += 1;
                let task = TaskBuilder::command(format!("{name}-{n}"), "work", "sleep 30")
                    .cpus(TASK_CPUS)
                    .mem(TASK_MEM)
                    .build_for_offer(&offer);
                let _ = client
                    .launch(
                        vec![offer_id],
                        vec![task],
                        Some(Filters {
                            refuse_seconds: Some(0.0),
                        }),
                    )
                    .await;
            }
        }
        events
    })
}

fn role<'a>(roles: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    roles["roles"]
        .as_array()?
        .iter()
        .find(|r| r["name"] == name)
}

fn scalar(value: &serde_json::Value, name: &str) -> f64 {
    value[name].as_f64().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_roles_weighted_1_and_3_converge_to_1_to_3_of_the_cpus() {
    let cluster = Cluster::start(2, "cpus:8;mem:4096").expect("cluster starts");
    let port = cluster.master_port;
    let master = cluster.master_address();
    let (code, body) = http_request(
        port,
        "PUT",
        "/weights",
        Some(r#"[{"role":"a","weight":1},{"role":"b","weight":3}]"#),
    )
    .expect("PUT /weights");
    assert_eq!(code, 200, "{body}");
    let weights = get_json(port, "/weights").expect("GET /weights");
    assert_eq!(
        weights,
        serde_json::json!([{"role": "a", "weight": 1.0}, {"role": "b", "weight": 3.0}])
    );

    let stop = Arc::new(AtomicBool::new(false));
    let (client_a, events_a, _) =
        subscribe(&master, "fw-a", "a", SubscribeOptions::default()).await;
    let (client_b, events_b, _) =
        subscribe(&master, "fw-b", "b", SubscribeOptions::default()).await;
    let started = Instant::now();
    let work_a = endless_work("a", client_a.clone(), events_a, stop.clone());
    let work_b = endless_work("b", client_b.clone(), events_b, stop.clone());

    // The cluster fills up (16 cpus in tasks of 0.5) and the split is 4:12,
    // give or take a task.
    let (a, b) = wait_for("the cpus split 1:3", Duration::from_secs(30), || {
        let roles = get_json(port, "/roles").ok()?;
        let a = role(&roles, "a")?;
        let b = role(&roles, "b")?;
        let used =
            |r: &serde_json::Value| scalar(&r["allocated"], "cpus") - scalar(&r["offered"], "cpus");
        let (a, b) = (used(a), used(b));
        ((a + b) >= 16.0 - TASK_CPUS && (a - 4.0).abs() <= 0.5 && (b - 12.0).abs() <= 0.5)
            .then_some((a, b))
    })
    .unwrap_or_else(|e| {
        let roles = get_json(port, "/roles").unwrap_or_default();
        panic!("{e}; /roles: {roles}")
    });
    eprintln!("converged to a={a} b={b} cpus in {:?}", started.elapsed());
    let roles = get_json(port, "/roles").expect("GET /roles");
    let b_role = role(&roles, "b").expect("role b");
    assert_eq!(b_role["weight"], 3.0);
    assert_eq!(b_role["frameworks"].as_array().map(Vec::len), Some(1));

    stop.store(true, Ordering::Relaxed);
    let _events_a = work_a.await.expect("framework a's loop");
    let _events_b = work_b.await.expect("framework b's loop");
    // Every launch has reached its executor before the teardown, so that
    // the teardown's shutdown finds every executor (one started after it
    // would outlive the test).
    wait_for("every task running", Duration::from_secs(30), || {
        let state = cluster.state().ok()?;
        let tasks = all_tasks(&state);
        tasks
            .iter()
            .all(|t| t["state"] == "TASK_RUNNING")
            .then_some(())
    })
    .expect("tasks running");
    client_a.teardown().await.expect("teardown a");
    client_b.teardown().await.expect("teardown b");
    wait_for("tasks killed", Duration::from_secs(30), || {
        let state = cluster.state().ok()?;
        state["frameworks"]
            .as_array()
            .is_some_and(Vec::is_empty)
            .then_some(())
    })
    .expect("frameworks gone");
    wait_for("executors gone", Duration::from_secs(30), || {
        processes_under(cluster.dir.path()).is_empty().then_some(())
    })
    .expect("no executor left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_is_offered_at_once_among_frameworks_that_decline_everything() {
    let cluster = Cluster::start(2, "cpus:4;mem:2048").expect("cluster starts");
    let master = cluster.master_address();
    const DECLINERS: usize = 20;
    let offered = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    let mut loops = Vec::new();
    for n in 0..DECLINERS {
        let (client, mut events, _) = subscribe(
            &master,
            &format!("decliner-{n}"),
            "*",
            SubscribeOptions::default(),
        )
        .await;
        clients.push(client.clone());
        let offered = offered.clone();
        let stop = stop.clone();
        loops.push(tokio::spawn(async move {
            let mut counted = false;
            while !stop.load(Ordering::Relaxed) {
                let Ok(Some(event)) =
                    tokio::time::timeout(Duration::from_millis(200), events.recv()).await
                else {
                    continue;
                };
                if let Event::Offers(offers) = event {
                    if !counted {
                        counted = true;
                        offered.fetch_add(1, Ordering::Relaxed);
                    }
                    let ids = offers.into_iter().filter_map(|o| o.id).collect();
                    // The default filter (5 s).
                    let _ = client.decline(ids, None).await;
                }
            }
            // Kept until the test tears the framework down.
            events
        }));
    }
    // Every decliner has been offered something and declined it.
    wait_for("every decliner offered", Duration::from_secs(30), || {
        (offered.load(Ordering::Relaxed) == DECLINERS).then_some(())
    })
    .expect("decliners offered");

    // A newcomer with work: offered within two allocation cycles (2 s).
    let (newcomer, mut events, _) =
        subscribe(&master, "newcomer", "*", SubscribeOptions::default()).await;
    let subscribed = Instant::now();
    let offer = loop {
        match tokio::time::timeout(Duration::from_secs(2), events.recv()).await {
            Ok(Some(Event::Offers(offers))) => break offers,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("newcomer's stream ended"),
            Err(_) => panic!("no offer to the newcomer within two allocation cycles (2 s)"),
        }
    };
    eprintln!(
        "newcomer offered {} offer(s) {:?} after subscribing",
        offer.len(),
        subscribed.elapsed()
    );
    stop.store(true, Ordering::Relaxed);
    let mut streams = Vec::new();
    for l in loops {
        streams.push(l.await.expect("decliner loop"));
    }
    newcomer.teardown().await.expect("teardown");
    for client in clients {
        client.teardown().await.expect("teardown decliner");
    }
    drop(streams);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_endpoints_and_why_no_offer_against_a_running_cluster() {
    let cluster = Cluster::start(1, "cpus:4;mem:1024").expect("cluster starts");
    let port = cluster.master_port;
    let master = cluster.master_address();
    let error_of = |method: &str, path: &str, body: &str| -> (u16, String) {
        let (code, text) = http_request(port, method, path, Some(body)).expect("request");
        let json: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: body is not JSON ({e}): {text}"));
        let message = json["error"].as_str().unwrap_or_default().to_string();
        (code, message)
    };

    // Clear 4xx with a JSON error.
    let (code, message) = error_of("PUT", "/weights", r#"[{"role":"a","weight":0}]"#);
    assert_eq!(code, 400, "{message}");
    assert!(message.contains("positive"), "{message}");
    let (code, _) = error_of("PUT", "/weights", "not json");
    assert_eq!(code, 400);
    let (code, message) = error_of(
        "POST",
        "/quota",
        r#"{"role":"eng","guarantee":{"cpus":100}}"#,
    );
    assert_eq!(
        code, 409,
        "guarantee beyond the cluster without force: {message}"
    );
    let (code, _) = error_of("DELETE", "/quota/eng", "");
    assert_eq!(code, 404);
    let (code, _) = error_of(
        "POST",
        "/reserve",
        r#"{"agent_id":"nope-S1","resources":"cpus(ops):1"}"#,
    );
    assert_eq!(code, 404);

    // Quota (text form and map form), reservation.
    let (code, text) = http_request(
        port,
        "POST",
        "/quota",
        Some(r#"{"role":"eng/ml","guarantee":"cpus:1","limit":{"cpus":2,"mem":512}}"#),
    )
    .expect("POST /quota");
    assert_eq!(code, 200, "{text}");
    let quotas = get_json(port, "/quota").expect("GET /quota");
    assert_eq!(quotas["quotas"][0]["role"], "eng/ml");
    assert_eq!(
        quotas["quotas"][0]["limit"],
        serde_json::json!({"cpus": 2.0, "mem": 512.0})
    );
    let state = cluster.state().expect("state");
    let agent_id = state["agents"][0]["id"]
        .as_str()
        .expect("agent id")
        .to_string();
    let reserve = format!(r#"{{"agent_id":"{agent_id}","resources":"cpus(ops):1;mem(ops):256"}}"#);
    let (code, text) = http_request(port, "POST", "/reserve", Some(&reserve)).expect("reserve");
    assert_eq!(code, 200, "{text}");
    let (code, _) = error_of(
        "POST",
        "/reserve",
        &format!(r#"{{"agent_id":"{agent_id}","resources":"cpus(ops):10"}}"#),
    );
    assert_eq!(code, 409, "more than is free");
    let roles = get_json(port, "/roles").expect("GET /roles");
    let ops = role(&roles, "ops").expect("role ops");
    assert_eq!(
        ops["reserved"],
        serde_json::json!({"cpus": 1.0, "mem": 256.0})
    );
    let eng = role(&roles, "eng/ml").expect("role eng/ml");
    assert_eq!(eng["quota"]["guarantee"], serde_json::json!({"cpus": 1.0}));

    // A suppressed framework: "why no offer?" says so.
    let options = SubscribeOptions {
        suppressed_roles: vec!["quiet".into()],
        ..SubscribeOptions::default()
    };
    let (quiet, _quiet_events, quiet_id) = subscribe(&master, "quiet", "quiet", options).await;
    let status = wait_for("quiet shows suppressed", Duration::from_secs(10), || {
        let roles = get_json(port, "/roles").ok()?;
        let status = role(&roles, "quiet")?["offer_status"].get(0)?.clone();
        (status["reason"] == "suppressed").then_some(status)
    })
    .expect("suppressed in /roles");
    assert_eq!(status["framework_id"], quiet_id.as_str());
    assert!(status["last_offered_secs_ago"].is_null(), "{status}");
    let quiet_in = |state: &serde_json::Value| {
        state["frameworks"]
            .as_array()?
            .iter()
            .find(|f| f["id"] == quiet_id.as_str())
            .cloned()
    };
    let state = cluster
        .wait_state("quiet suppressed in /state", |state| {
            quiet_in(state).is_some_and(|f| f["offer_status"][0]["reason"] == "suppressed")
        })
        .expect("state");
    let framework = quiet_in(&state).expect("quiet in /state");
    assert_eq!(framework["offer_status"][0]["role"], "quiet");
    assert_eq!(framework["offer_status"][0]["reason"], "suppressed");

    // A framework in `ops` is offered the reservation; it shows as offered.
    let (ops_client, mut ops_events, _) =
        subscribe(&master, "ops", "ops", SubscribeOptions::default()).await;
    let offers = loop {
        match tokio::time::timeout(Duration::from_secs(10), ops_events.recv()).await {
            Ok(Some(Event::Offers(offers))) => break offers,
            Ok(Some(_)) => continue,
            other => panic!("no offer to ops: {other:?}"),
        }
    };
    assert!(offer_cpus_mem(&offers[0]).0 >= 1.0);
    let roles = wait_for("ops offered in /roles", Duration::from_secs(10), || {
        let roles = get_json(port, "/roles").ok()?;
        (scalar(&role(&roles, "ops")?["offered"], "cpus") >= 1.0).then_some(roles)
    })
    .expect("offered shows");
    assert!(scalar(&role(&roles, "ops").expect("ops")["allocated"], "cpus") >= 1.0);

    // Tightening a limit with force rescinds the offer.
    let (code, text) = http_request(
        port,
        "POST",
        "/quota",
        Some(r#"{"role":"ops","limit":{"cpus":1},"force":true}"#),
    )
    .expect("POST /quota");
    assert_eq!(code, 200, "{text}");
    let rescinded = loop {
        match tokio::time::timeout(Duration::from_secs(10), ops_events.recv()).await {
            Ok(Some(Event::Rescind(id))) => break id,
            Ok(Some(_)) => continue,
            other => panic!("no RESCIND to ops: {other:?}"),
        }
    };
    assert_eq!(Some(rescinded), offers[0].id);
    let (code, text) = http_request(port, "DELETE", "/quota/ops", None).expect("DELETE");
    assert_eq!(code, 200, "{text}");

    ops_client.teardown().await.expect("teardown ops");
    quiet.teardown().await.expect("teardown quiet");
    // Unreserve once nothing holds the reservation.
    wait_for("unreserve", Duration::from_secs(10), || {
        let (code, _) = http_request(port, "POST", "/unreserve", Some(&reserve)).ok()?;
        (code == 200).then_some(())
    })
    .expect("unreserved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_quota_and_reservations_survive_a_master_restart() {
    let mut cluster = Cluster::start(1, "cpus:4;mem:1024").expect("cluster starts");
    let port = cluster.master_port;
    let put = |method: &str, path: &str, body: &str| {
        let (code, text) = http_request(port, method, path, Some(body)).expect("request");
        assert_eq!(code, 200, "{method} {path}: {text}");
    };
    put("PUT", "/weights", r#"[{"role":"eng/ml","weight":2.5}]"#);
    put(
        "POST",
        "/quota",
        r#"{"role":"eng/ml","guarantee":"cpus:1","limit":"cpus:3"}"#,
    );
    put("POST", "/quota", r#"{"role":"gone","limit":"cpus:1"}"#);
    put("DELETE", "/quota/gone", "");
    let state = cluster.state().expect("state");
    let agent_id = state["agents"][0]["id"]
        .as_str()
        .expect("agent id")
        .to_string();
    put(
        "POST",
        "/reserve",
        &format!(r#"{{"agent_id":"{agent_id}","resources":"cpus(ops):1"}}"#),
    );
    let before = get_json(port, "/roles").expect("GET /roles");

    cluster.restart_master();
    cluster.wait_agents(1).expect("the agent re-registers");
    let roles = wait_for("roles restored", Duration::from_secs(30), || {
        let roles = get_json(port, "/roles").ok()?;
        role(&roles, "ops").is_some().then_some(roles)
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}: /roles {:?}\nmaster log:\n{}",
            get_json(port, "/roles").ok(),
            cluster.master.log_text()
        )
    });
    let eng = role(&roles, "eng/ml").expect("eng/ml");
    assert_eq!(eng["weight"], 2.5);
    assert_eq!(
        eng["quota"],
        serde_json::json!({"guarantee": {"cpus": 1.0}, "limit": {"cpus": 3.0}})
    );
    assert!(
        role(&roles, "gone").is_none(),
        "removed quota stays removed"
    );
    assert_eq!(
        role(&roles, "ops").expect("ops")["reserved"],
        role(&before, "ops").expect("ops before")["reserved"]
    );
    let quotas = get_json(port, "/quota").expect("GET /quota");
    assert_eq!(
        quotas["quotas"].as_array().map(Vec::len),
        Some(1),
        "{quotas}"
    );
}
