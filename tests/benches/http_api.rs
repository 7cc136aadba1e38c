//! The Mesos v1 HTTP APIs on real processes (a release-built master and one
//! agent on 127.0.0.1), next to the gRPC API they frame:
//!
//! * `accept_to_running`: from sending ACCEPT (one LAUNCH of one `true`
//!   task) to receiving its TASK_RUNNING, for a framework on
//!   `POST /api/v1/scheduler` (JSON both ways) and one on gRPC (the SDK),
//!   launching in alternating blocks so that both see the same machine.
//! * `http_subscriptions`: N frameworks subscribed over HTTP at once (each
//!   its own connection with SUBSCRIBED read); the master's resident memory
//!   before and after, per subscription.
//!
//! `cargo bench -p agora-e2e --bench http_api` (release daemons; full
//! counts); without `--bench` a smoke run. Knobs: `AGORA_BENCH_LAUNCHES`
//! (200 per API), `AGORA_BENCH_SUBSCRIPTIONS` (1000).

use std::sync::mpsc;
use std::time::{Duration, Instant};

use agora_e2e::mesos_http::{Response, post_json};
use agora_e2e::{Proc, agora_binary, free_port, get_json, http_get, wait_for};
use agora_scheduler::proto::{Filters, TaskState};
use agora_scheduler::{
    Event, FrameworkBuilder, SchedulerClient, SubscribeOptions, TaskBuilder, offer_cpus_mem,
};
use anyhow::{Context, bail};
use serde_json::{Value, json};

const API: &str = "/api/v1/scheduler";
const AGENT_RESOURCES: &str = "cpus:64;mem:65536";
const BLOCK: usize = 10;
const STEP: Duration = Duration::from_secs(60);

/// The user tasks run as: whoever runs the bench (the agent runs as them too).
fn bench_user() -> String {
    std::env::var("USER").unwrap_or_else(|_| "root".into())
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn sorted_ms(samples: &[Duration]) -> Vec<f64> {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    ms
}

/// A JSON framework on the HTTP API: its events arrive on a reader thread
/// with the instant each was read.
struct HttpFramework {
    port: u16,
    stream_id: String,
    framework_id: String,
    events: mpsc::Receiver<(Value, Instant)>,
    /// Offers received and not used yet (never declined: no offer churn).
    offers: Vec<Value>,
}

fn read_event(stream: &mut Response) -> anyhow::Result<Value> {
    let record = stream.next_record()?.context("stream ended")?;
    Ok(serde_json::from_slice(&record)?)
}

impl HttpFramework {
    fn subscribe(port: u16, name: &str) -> anyhow::Result<HttpFramework> {
        let call = json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": {
            "user": bench_user(), "name": name, "failover_timeout": 60.0}}});
        let mut stream = post_json(port, API, None, &call)?;
        if stream.status != 200 {
            bail!("SUBSCRIBE answered {}", stream.status);
        }
        let stream_id = stream
            .header("mesos-stream-id")
            .context("stream id")?
            .to_string();
        let subscribed = read_event(&mut stream)?;
        let framework_id = subscribed["subscribed"]["framework_id"]["value"]
            .as_str()
            .context("framework id")?
            .to_string();
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            while let Ok(event) = read_event(&mut stream) {
                if tx.send((event, Instant::now())).is_err() {
                    break;
                }
            }
        });
        Ok(HttpFramework {
            port,
            stream_id,
            framework_id,
            events,
            offers: Vec::new(),
        })
    }

    fn call(&self, mut call: Value) -> anyhow::Result<()> {
        call["framework_id"] = json!({"value": self.framework_id});
        let response = post_json(self.port, API, Some(&self.stream_id), &call)?;
        let status = response.status;
        if status != 202 {
            bail!("{} answered {status}: {}", call["type"], response.text()?);
        }
        Ok(())
    }

    /// The next event; offers are kept for later launches.
    fn next(&mut self) -> anyhow::Result<(Value, Instant)> {
        let (event, at) = self
            .events
            .recv_timeout(STEP)
            .context("no event within a minute")?;
        if let Some(offers) = event["offers"]["offers"].as_array() {
            self.offers.extend(offers.iter().cloned());
        }
        Ok((event, at))
    }

    /// One launch: the ACCEPT-to-RUNNING time.
    fn launch_one(&mut self, id: &str) -> anyhow::Result<Duration> {
        let offer = loop {
            if let Some(offer) = self.offers.pop() {
                break offer;
            }
            self.next()?;
        };
        let accept = json!({"type": "ACCEPT", "accept": {
            "offer_ids": [offer["id"]],
            "operations": [{"type": "LAUNCH", "launch": {"task_infos": [{
                "name": id, "task_id": {"value": id}, "agent_id": offer["agent_id"],
                "resources": [
                    {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                    {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}],
                "command": {"value": "true"}}]}}],
            "filters": {"refuse_seconds": 0.0}}});
        let sent = Instant::now();
        self.call(accept)?;
        let mut running = None;
        loop {
            let (event, at) = self.next()?;
            if event["type"] != "UPDATE" {
                continue;
            }
            let status = &event["update"]["status"];
            if let Some(uuid) = status["uuid"].as_str() {
                self.call(json!({"type": "ACKNOWLEDGE", "acknowledge": {
                    "agent_id": status["agent_id"], "task_id": status["task_id"], "uuid": uuid}}))?;
            }
            if status["task_id"]["value"] != id {
                continue;
            }
            match status["state"].as_str() {
                Some("TASK_RUNNING") => running = Some(at - sent),
                Some("TASK_FINISHED") => break,
                Some("TASK_STARTING") | Some("TASK_STAGING") => {}
                other => bail!("task {id} ended {other:?}: {status}"),
            }
        }
        running.with_context(|| format!("{id} finished without TASK_RUNNING"))
    }
}

struct GrpcFramework {
    client: SchedulerClient,
    events: agora_scheduler::EventStream,
    offers: Vec<agora_scheduler::proto::Offer>,
}

impl GrpcFramework {
    async fn subscribe(master: &str) -> anyhow::Result<GrpcFramework> {
        let info = FrameworkBuilder::new("bench-grpc")
            .failover_timeout(Duration::from_secs(60))
            .build();
        let (client, mut events) =
            SchedulerClient::connect(master, info, SubscribeOptions::default()).await?;
        match tokio::time::timeout(STEP, events.recv()).await {
            Ok(Some(Event::Subscribed { .. })) => {}
            other => bail!("expected SUBSCRIBED first, got {other:?}"),
        }
        Ok(GrpcFramework {
            client,
            events,
            offers: Vec::new(),
        })
    }

    /// The next event; offers are kept for later launches.
    async fn next(&mut self) -> anyhow::Result<Event> {
        let event = tokio::time::timeout(STEP, self.events.recv())
            .await
            .context("no event within a minute")?
            .context("subscription ended")?;
        if let Event::Offers(offers) = &event {
            self.offers.extend(offers.iter().cloned());
        }
        Ok(event)
    }

    async fn launch_one(&mut self, id: &str) -> anyhow::Result<Duration> {
        let offer = loop {
            if let Some(offer) = self.offers.pop() {
                break offer;
            }
            self.next().await?;
        };
        let (cpus, mem) = offer_cpus_mem(&offer);
        if cpus < 0.1 || mem < 32.0 {
            bail!("offer too small");
        }
        let task = TaskBuilder::command(id, "bench", "true")
            .cpus(0.1)
            .mem(32.0)
            .build_for_offer(&offer);
        let ids = offer.id.clone().into_iter().collect();
        let sent = Instant::now();
        self.client
            .launch(
                ids,
                vec![task],
                Some(Filters {
                    refuse_seconds: Some(0.0),
                }),
            )
            .await?;
        let mut running = None;
        loop {
            if let Event::Update(status) = self.next().await? {
                let at = Instant::now();
                if status.task_id.as_ref().map(|t| t.value.as_str()) != Some(id) {
                    continue;
                }
                match TaskState::try_from(status.state.unwrap_or_default())
                    .unwrap_or(TaskState::TaskUnknown)
                {
                    TaskState::TaskRunning => running = Some(at - sent),
                    TaskState::TaskFinished => break,
                    TaskState::TaskStarting | TaskState::TaskStaging => {}
                    other => bail!("task {id} ended {other:?}"),
                }
            }
        }
        running.with_context(|| format!("{id} finished without TASK_RUNNING"))
    }
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("VmRSS")
}

fn main() {
    if let Err(e) = run() {
        eprintln!("http_api bench failed: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let full = std::env::args().any(|a| a == "--bench");
    let launches = env_usize("AGORA_BENCH_LAUNCHES", if full { 200 } else { 10 });
    let subscriptions = env_usize("AGORA_BENCH_SUBSCRIPTIONS", if full { 1000 } else { 50 });
    let bin = agora_binary(full)?;
    let dir = tempfile::tempdir()?;
    let cgroups = agora_e2e::TestCgroups::new("bench-http-api");
    let _sweeper = agora_e2e::Sweeper(dir.path().to_path_buf());
    let master_port = free_port();
    let master = Proc::spawn_bin(
        &bin,
        &[
            "master",
            "--ip",
            "127.0.0.1",
            "--port",
            &master_port.to_string(),
            "--work-dir",
            dir.path().join("master").to_str().context("utf-8")?,
        ],
        dir.path().join("master.log"),
    );
    wait_for("master /health", STEP, || {
        http_get(master_port, "/health")
            .ok()
            .filter(|(c, _)| *c == 200)
    })?;
    let _agent = Proc::spawn_bin(
        &bin,
        &[
            "agent",
            "--master",
            &format!("127.0.0.1:{master_port}"),
            "--ip",
            "127.0.0.1",
            "--port",
            &free_port().to_string(),
            "--work-dir",
            dir.path().join("agent").to_str().context("utf-8")?,
            "--resources",
            AGENT_RESOURCES,
            "--cgroups-root",
            &cgroups.root,
        ],
        dir.path().join("agent.log"),
    );
    wait_for("the agent to be active", STEP, || {
        let state = get_json(master_port, "/state").ok()?;
        (state["agents"].as_array()?.len() == 1).then_some(())
    })?;
    println!(
        "BENCH-CONFIG daemons={} launches_per_api={launches} subscriptions={subscriptions}",
        if full { "release" } else { "debug" }
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut http = HttpFramework::subscribe(master_port, "bench-http")?;
    let master_address = format!("127.0.0.1:{master_port}");
    let mut grpc = runtime.block_on(GrpcFramework::subscribe(&master_address))?;
    // Warm-up, then alternating blocks.
    http.launch_one("warm-http")?;
    runtime.block_on(grpc.launch_one("warm-grpc"))?;
    let (mut over_http, mut over_grpc) = (Vec::new(), Vec::new());
    let mut n = 0;
    while over_http.len() < launches {
        for _ in 0..BLOCK.min(launches - over_http.len()) {
            over_http.push(http.launch_one(&format!("h{n}"))?);
            n += 1;
        }
        for _ in 0..BLOCK.min(launches - over_grpc.len()) {
            over_grpc.push(runtime.block_on(grpc.launch_one(&format!("g{n}")))?);
            n += 1;
        }
    }
    for (api, samples) in [("http_json", &over_http), ("grpc", &over_grpc)] {
        let ms = sorted_ms(samples);
        println!(
            "BENCH accept_to_running api={api} p50_ms={:.2} p99_ms={:.2} launches={}",
            percentile(&ms, 0.5),
            percentile(&ms, 0.99),
            ms.len()
        );
    }
    drop(http);
    runtime.block_on(grpc.client.teardown())?;

    // Many HTTP subscriptions at once.
    let before = rss_kib(master.pid())?;
    let mut streams = Vec::with_capacity(subscriptions);
    let started = Instant::now();
    for i in 0..subscriptions {
        let call = json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": {
            "user": bench_user(), "name": format!("many-{i}")}}});
        let mut stream = post_json(master_port, API, None, &call)?;
        if stream.status != 200 {
            bail!("subscription {i} answered {}", stream.status);
        }
        let first = read_event(&mut stream)?;
        if first["type"] != "SUBSCRIBED" {
            bail!("subscription {i} began with {first}");
        }
        streams.push(stream);
    }
    let took = started.elapsed();
    // `/state` is a snapshot published after the fact: wait for it to count them all.
    let active = |state: &Value| {
        state["frameworks"]
            .as_array()
            .map_or(0, |f| f.iter().filter(|f| f["active"] == true).count())
    };
    let active = wait_for("every subscription active in /state", STEP, || {
        let count = active(&get_json(master_port, "/state").ok()?);
        (count >= subscriptions).then_some(count)
    })?;
    let after = rss_kib(master.pid())?;
    println!(
        "BENCH http_subscriptions subscribed={subscriptions} active_frameworks={active} seconds={:.2} master_rss_before_kib={before} master_rss_after_kib={after} per_subscription_kib={:.1}",
        took.as_secs_f64(),
        (after.saturating_sub(before)) as f64 / subscriptions as f64
    );
    if active < subscriptions {
        bail!("only {active} of {subscriptions} subscriptions are active");
    }
    drop(streams);
    Ok(())
}
