//! Authentication end to end (issue 13): a master started with
//! `--credentials` and every `--authenticate-*` flag, agents with and
//! without their `--credential`, frameworks through `agora run` and the SDK,
//! and the HTTP realms. Every refusal is observed from the outside: exit
//! statuses and messages, 401s with their realm, `/state`, the daemons'
//! logs.

use std::path::Path;
use std::time::Duration;

use agora_e2e::auth::{
    basic, get_json_as, http_with_auth, start_master_only, write_credential, write_credentials,
};
use agora_e2e::{Cluster, all_tasks, run_with_deadline, wait_for};
use agora_scheduler::{Credential, Event, FrameworkBuilder, SchedulerClient, SubscribeOptions};

const RESOURCES: &str = "cpus:2;mem:1024";
const OPS_SECRET: &str = "ops-S3cret-a91";
const FW_SECRET: &str = "fw-S3cret-b72";
const AGENT_SECRET: &str = "agent-S3cret-c53";
const AGENT_HTTP_SECRET: &str = "agent-http-S3cret-d34";
const SECRETS: [&str; 4] = [OPS_SECRET, FW_SECRET, AGENT_SECRET, AGENT_HTTP_SECRET];

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A master that requires authentication everywhere.
fn secure_master() -> Cluster {
    start_master_only(|dir: &Path| {
        let credentials = write_credentials(
            &dir.join("credentials.json"),
            &[
                ("ops", OPS_SECRET),
                ("fw", FW_SECRET),
                ("agent", AGENT_SECRET),
            ],
        );
        vec![
            "--credentials".into(),
            format!("file://{}", credentials.display()),
            "--authenticate-frameworks".into(),
            // Mesos' spelling is accepted too.
            "--authenticate_agents".into(),
            "--authenticate-http-readonly".into(),
            "--authenticate-http-readwrite".into(),
            "--authenticate-http-frameworks".into(),
        ]
    })
    .expect("master starts")
}

fn ops() -> String {
    basic("ops", OPS_SECRET)
}

/// The master's `/state`, as the operator.
fn state(cluster: &Cluster) -> serde_json::Value {
    get_json_as(cluster.master_port, "/state", &ops()).expect("/state as ops")
}

fn active_agents(state: &serde_json::Value) -> usize {
    state["agents"]
        .as_array()
        .map_or(0, |a| a.iter().filter(|a| a["active"] == true).count())
}

#[test]
fn agents_without_the_right_credential_are_not_registered() {
    let mut cluster = secure_master();
    let dir = cluster.dir.path().to_path_buf();
    let wrong = write_credential(&dir.join("wrong.json"), "agent", "not-the-secret");
    let right = write_credential(&dir.join("right.json"), "agent", AGENT_SECRET);
    let agent_http = write_credentials(&dir.join("agent-http.json"), &[("ops", AGENT_HTTP_SECRET)]);
    cluster.add_agent(0, RESOURCES);
    cluster.add_agent_with(
        1,
        RESOURCES,
        &["--credential", wrong.to_str().expect("utf-8")],
    );
    let agent_port = cluster.add_agent_with(
        2,
        RESOURCES,
        &[
            "--credential",
            right.to_str().expect("utf-8"),
            "--http-credentials",
            agent_http.to_str().expect("utf-8"),
            "--authenticate-http-readonly",
            "--authenticate-http-readwrite",
        ],
    );

    // The agent with its credential registers...
    wait_for("one active agent", Duration::from_secs(30), || {
        (active_agents(&state(&cluster)) == 1).then_some(())
    })
    .expect("the agent with the right credential registers");
    // ...and the other two are refused, say why, and keep trying.
    for n in [0, 1] {
        let agent = &cluster.agents[n];
        wait_for(
            &format!("agent {n} to log its refusal"),
            Duration::from_secs(30),
            || {
                let log = agent.log_text();
                log.contains("refused this agent's credential")
                    .then_some(())
            },
        )
        .unwrap_or_else(|e| panic!("{e}: {}", agent.log_text()));
    }
    let log = cluster.agents[0].log_text();
    assert!(log.contains("authentication required"), "{log}");
    let log = cluster.agents[1].log_text();
    assert!(log.contains("invalid credentials"), "{log}");
    let state = state(&cluster);
    assert_eq!(active_agents(&state), 1, "{state}");
    assert_eq!(state["agents"].as_array().map(Vec::len), Some(1), "{state}");
    let address = state["agents"][0]["address"].as_str().unwrap_or_default();
    assert!(address.ends_with(&format!(":{agent_port}")), "{state}");

    // The agent's own HTTP realms.
    let refused = http_with_auth(agent_port, "GET", "/state", None, None).expect("agent /state");
    assert_eq!(refused.status, 401, "{refused:?}");
    assert_eq!(
        refused.header("www-authenticate"),
        Some("Basic realm=\"mesos-agent-readonly\"")
    );
    let agent_ops = basic("ops", AGENT_HTTP_SECRET);
    let ok = http_with_auth(agent_port, "GET", "/state", Some(&agent_ops), None).expect("agent");
    assert_eq!(ok.status, 200, "{ok:?}");
    let refused = http_with_auth(
        agent_port,
        "POST",
        "/api/v1",
        None,
        Some(r#"{"type":"GET_HEALTH"}"#),
    )
    .expect("agent operator API");
    assert_eq!(refused.status, 401, "{refused:?}");
    assert_eq!(
        refused.header("www-authenticate"),
        Some("Basic realm=\"mesos-agent-readwrite\"")
    );
    let ok = http_with_auth(
        agent_port,
        "POST",
        "/api/v1",
        Some(&agent_ops),
        Some(r#"{"type":"GET_HEALTH"}"#),
    )
    .expect("agent operator API");
    assert_eq!(ok.status, 200, "{ok:?}");
    let health = http_with_auth(agent_port, "GET", "/health", None, None).expect("health");
    assert_eq!(health.status, 200, "{health:?}");

    // No secret in the logs.
    let mut logs = vec![cluster.master.log_text()];
    logs.extend(cluster.agents.iter().map(|a| a.log_text()));
    for log in &logs {
        for secret in SECRETS {
            assert!(!log.contains(secret), "a secret is in a log: {log}");
        }
    }
}

#[test]
fn http_realms_refuse_without_credentials_and_serve_with_them() {
    let cluster = secure_master();
    let port = cluster.master_port;

    // Open: the health check and the UI's page.
    for path in ["/health", "/"] {
        let answer = http_with_auth(port, "GET", path, None, None).expect(path);
        assert_eq!(answer.status, 200, "{path}: {answer:?}");
    }

    // Readonly.
    for path in [
        "/state",
        "/master/state",
        "/metrics/snapshot",
        "/api/overview",
    ] {
        let refused = http_with_auth(port, "GET", path, None, None).expect(path);
        assert_eq!(refused.status, 401, "{path}: {refused:?}");
        assert_eq!(
            refused.header("www-authenticate"),
            Some("Basic realm=\"mesos-master-readonly\""),
            "{path}"
        );
        assert!(
            refused.body.contains("authentication required"),
            "{refused:?}"
        );
        let wrong =
            http_with_auth(port, "GET", path, Some(&basic("ops", "nope")), None).expect(path);
        assert_eq!(wrong.status, 401, "{path}: {wrong:?}");
        assert!(wrong.body.contains("invalid credentials"), "{wrong:?}");
        let ok = http_with_auth(port, "GET", path, Some(&ops()), None).expect(path);
        assert_eq!(ok.status, 200, "{path}: {ok:?}");
    }

    // Readwrite: refused before anything changes.
    let weights = r#"[{"role":"eng","weight":3.0}]"#;
    let refused = http_with_auth(port, "PUT", "/weights", None, Some(weights)).expect("weights");
    assert_eq!(refused.status, 401, "{refused:?}");
    assert_eq!(
        refused.header("www-authenticate"),
        Some("Basic realm=\"mesos-master-readwrite\"")
    );
    let unchanged = get_json_as(port, "/weights", &ops()).expect("weights");
    assert_eq!(unchanged, serde_json::json!([]), "nothing changed");
    let get_health = r#"{"type":"GET_HEALTH"}"#;
    let refused =
        http_with_auth(port, "POST", "/api/v1", None, Some(get_health)).expect("operator");
    assert_eq!(refused.status, 401, "{refused:?}");
    let ok =
        http_with_auth(port, "POST", "/api/v1", Some(&ops()), Some(get_health)).expect("operator");
    assert_eq!(ok.status, 200, "{ok:?}");
    let ok = http_with_auth(port, "PUT", "/weights", Some(&ops()), Some(weights)).expect("put");
    assert_eq!(ok.status, 200, "{ok:?}");

    // The HTTP scheduler API.
    let subscribe = r#"{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"u","name":"n","principal":"fw"}}}"#;
    let refused = http_with_auth(port, "POST", "/api/v1/scheduler", None, Some(subscribe))
        .expect("scheduler api");
    assert_eq!(refused.status, 401, "{refused:?}");
    assert_eq!(
        refused.header("www-authenticate"),
        Some("Basic realm=\"mesos-master-scheduler\"")
    );
    // Authenticated as another principal than FrameworkInfo.principal: 400,
    // as Mesos answers.
    let mismatched = http_with_auth(
        port,
        "POST",
        "/api/v1/scheduler",
        Some(&ops()),
        Some(subscribe),
    )
    .expect("scheduler api");
    assert_eq!(mismatched.status, 400, "{mismatched:?}");
    assert!(
        mismatched
            .body
            .contains("the authenticated principal 'ops' does not match"),
        "{mismatched:?}"
    );

    // No secret in what the master shows, nor in its log.
    let get_flags = r#"{"type":"GET_FLAGS"}"#;
    let flags =
        http_with_auth(port, "POST", "/api/v1", Some(&ops()), Some(get_flags)).expect("GET_FLAGS");
    assert_eq!(flags.status, 200, "{flags:?}");
    // The settings are shown, the credentials file by its path only.
    assert!(flags.body.contains("authenticate_agents"), "{}", flags.body);
    let path = cluster.dir.path().join("credentials.json");
    assert!(
        flags.body.contains(path.to_str().expect("utf-8")),
        "{}",
        flags.body
    );
    // And where it keeps its registry, as Mesos' `work_dir` flag.
    let work_dir = cluster.dir.path().join("master");
    let shown = http_with_auth(port, "GET", "/flags", Some(&ops()), None).expect("/flags");
    let shown: serde_json::Value = serde_json::from_str(&shown.body).expect("json");
    assert_eq!(
        shown["flags"]["work_dir"],
        work_dir.to_str().expect("utf-8")
    );
    assert_eq!(shown["flags"]["registry"], "file");
    let mut shown = vec![flags.body];
    for path in [
        "/flags",
        "/master/flags",
        "/state",
        "/master/state",
        "/api/master",
    ] {
        shown.push(
            http_with_auth(port, "GET", path, Some(&ops()), None)
                .expect(path)
                .body,
        );
    }
    shown.push(cluster.master.log_text());
    for text in &shown {
        for secret in SECRETS {
            assert!(!text.contains(secret), "a secret is shown: {text}");
        }
    }
}

#[test]
fn frameworks_authenticate_as_their_principal() {
    let mut cluster = secure_master();
    let dir = cluster.dir.path().to_path_buf();
    let agent = write_credential(&dir.join("agent.json"), "agent", AGENT_SECRET);
    cluster.add_agent_with(
        0,
        RESOURCES,
        &["--credential", agent.to_str().expect("utf-8")],
    );
    wait_for("one active agent", Duration::from_secs(30), || {
        (active_agents(&state(&cluster)) == 1).then_some(())
    })
    .expect("agent registers");
    let wrong_file = dir.join("wrong-secret");
    std::fs::write(&wrong_file, "not-the-secret\n").expect("secret file");
    let right_file = dir.join("fw-secret");
    std::fs::write(&right_file, format!("{FW_SECRET}\n")).expect("secret file");

    let agora_run = |extra: &[&str]| {
        let mut command = std::process::Command::new(agora_e2e::agora_bin());
        command
            .args([
                "run",
                "--master",
                &cluster.master_address(),
                "--timeout",
                "20",
            ])
            .args(extra);
        run_with_deadline(command, Duration::from_secs(120))
    };

    // Without credentials, and with a wrong secret: refused, with a clear
    // error, and nothing is offered or run.
    let without = agora_run(&["--name", "anon", "--command", "true"]);
    assert!(!without.status.success(), "{}", text(&without.stdout));
    let stderr = text(&without.stderr);
    assert!(stderr.contains("Unauthenticated"), "{stderr}");
    assert!(stderr.contains("authentication required"), "{stderr}");
    let wrong = agora_run(&[
        "--name",
        "wrong",
        "--command",
        "true",
        "--principal",
        "fw",
        "--secret-file",
        wrong_file.to_str().expect("utf-8"),
    ]);
    assert!(!wrong.status.success(), "{}", text(&wrong.stdout));
    let stderr = text(&wrong.stderr);
    assert!(
        stderr.contains("invalid credentials for principal 'fw'"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-secret"), "{stderr}");
    assert!(!text(&wrong.stdout).contains("TASK_"), "no task ran");
    let frameworks = state(&cluster)["frameworks"].clone();
    assert_eq!(frameworks, serde_json::json!([]), "no framework registered");

    // The right secret (from the environment this time): the task runs.
    let mut command = std::process::Command::new(agora_e2e::agora_bin());
    command
        .args([
            "run",
            "--master",
            &cluster.master_address(),
            "--timeout",
            "20",
        ])
        .args(["--name", "right", "--command", "echo authenticated"])
        .args(["--principal", "fw"])
        .env("AGORA_SECRET", FW_SECRET);
    let right = run_with_deadline(command, Duration::from_secs(120));
    let stdout = text(&right.stdout);
    assert!(right.status.success(), "{stdout}\n{}", text(&right.stderr));
    assert!(stdout.contains("TASK_FINISHED"), "{stdout}");
    // `/state` is a published snapshot: wait for it to show the task.
    wait_for(
        "the finished task in /state",
        Duration::from_secs(30),
        || {
            let finished = all_tasks(&state(&cluster))
                .into_iter()
                .filter(|t| t["name"] == "right" && t["state"] == "TASK_FINISHED")
                .count();
            (finished == 1).then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}: {}", state(&cluster)));

    // The SDK: a FrameworkInfo.principal other than the authenticated one
    // is refused (INVALID_ARGUMENT, as Mesos' 400).
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let master = cluster.master_address();
    runtime.block_on(async {
        let mismatched = FrameworkBuilder::new("mismatch")
            .principal("someone-else")
            .build();
        let options = SubscribeOptions {
            connect_timeout: Duration::from_secs(10),
            credential: Some(Credential::new("fw", FW_SECRET)),
            ..SubscribeOptions::default()
        };
        match SchedulerClient::connect(&master, mismatched, options.clone()).await {
            Ok(_) => panic!("a mismatched principal subscribed"),
            Err(e) => {
                // The gRPC code, without naming tonic (not a dependency here).
                assert_eq!(format!("{:?}", e.code()), "Some(InvalidArgument)", "{e}");
                assert!(e.to_string().contains("does not match"), "{e}");
            }
        }
        // The matching principal subscribes and is offered the agent.
        let info = FrameworkBuilder::new("sdk").principal("fw").build();
        let (_client, mut events) = SchedulerClient::connect(&master, info, options)
            .await
            .expect("the matching principal subscribes");
        loop {
            match tokio::time::timeout(Duration::from_secs(30), events.recv()).await {
                Ok(Some(Event::Offers(offers))) if !offers.is_empty() => break,
                Ok(Some(_)) => {}
                other => panic!("no offer: {other:?}"),
            }
        }
    });

    for log in [cluster.master.log_text(), cluster.agents[0].log_text()] {
        for secret in SECRETS {
            assert!(!log.contains(secret), "a secret is in a log: {log}");
        }
    }
}

#[test]
fn an_authenticate_flag_without_credentials_stops_the_master() {
    let mut command = std::process::Command::new(agora_e2e::agora_bin());
    command.args(["master", "--port", "0", "--authenticate-http-readonly"]);
    let output = run_with_deadline(command, Duration::from_secs(30));
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("--authenticate-http-readonly needs --credentials"),
        "{stderr}"
    );
}
