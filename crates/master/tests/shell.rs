//! The master's shell with real sockets: operator changes are answered only
//! once durable (a store that fails or conflicts makes the master step
//! down; an entry too large for the store is refused before anything
//! changes), and a framework that reads slowly loses no event.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use agora_coord::testing::{FaultyRegistryStore, RegistryFault};
use agora_coord::{MemoryRegistryStore, RegistryStore};
use agora_master::shell::ShellError;
use agora_master::{MasterOptions, run_master_with_store};
use agora_proto::v1 as pb;
use agora_proto::v1::scheduler as sched;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Generous: these wait on conditions, never on time alone.
const DEADLINE: Duration = Duration::from_secs(60);

struct Running {
    address: SocketAddr,
    shutdown: CancellationToken,
    handle: JoinHandle<Result<(), ShellError>>,
}

async fn start(store: Arc<dyn RegistryStore>) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(run_master_with_store(
        listener,
        MasterOptions::new(address, "127.0.0.1"),
        store,
        shutdown.clone(),
    ));
    // Leading once operator endpoints answer.
    tokio::time::timeout(DEADLINE, async {
        while http(address, "GET", "/weights", "").await.0 != 200 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the master leads");
    Running {
        address,
        shutdown,
        handle,
    }
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        let outcome = tokio::time::timeout(DEADLINE, self.handle)
            .await
            .expect("the master stops")
            .expect("no panic");
        assert!(outcome.is_ok(), "{outcome:?}");
    }

    /// Waits for the master to end on its own, and returns why.
    async fn ended(self) -> Result<(), ShellError> {
        tokio::time::timeout(DEADLINE, self.handle)
            .await
            .expect("the master steps down")
            .expect("no panic")
    }
}

/// One HTTP/1.1 request; the status and body.
async fn http(address: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let Ok(mut stream) = TcpStream::connect(address).await else {
        return (0, String::new());
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: master\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(request.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    (status, body)
}

async fn weight_of(address: SocketAddr, role: &str) -> Option<f64> {
    let (status, body) = http(address, "GET", "/weights", "").await;
    assert_eq!(status, 200, "{body}");
    let weights: serde_json::Value = serde_json::from_str(&body).expect("json");
    weights
        .as_array()
        .expect("array")
        .iter()
        .find(|w| w["role"] == role)
        .and_then(|w| w["weight"].as_f64())
}

fn weights_body(role: &str, weight: f64) -> String {
    format!(r#"[{{"role": "{role}", "weight": {weight}}}]"#)
}

#[tokio::test]
async fn a_change_the_registry_cannot_store_is_a_503_the_master_steps_down_and_it_is_not_kept() {
    let memory = MemoryRegistryStore::new();
    let faulty = FaultyRegistryStore::new(Arc::new(memory.clone()));
    let master = start(Arc::new(faulty.clone())).await;
    let (status, body) = http(master.address, "PUT", "/weights", &weights_body("eng", 2.0)).await;
    assert_eq!(status, 200, "{body}");

    faulty.set_fault(Some(RegistryFault::DiskFull));
    let (status, body) = http(master.address, "PUT", "/weights", &weights_body("eng", 5.0)).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not kept"), "{body}");
    let outcome = master.ended().await;
    assert!(
        matches!(outcome, Err(ShellError::Registry(_))),
        "{outcome:?}"
    );

    // The next leader knows what the operator was told.
    faulty.set_fault(None);
    let master = start(Arc::new(memory)).await;
    assert_eq!(weight_of(master.address, "eng").await, Some(2.0));
    master.stop().await;
}

#[tokio::test]
async fn a_conflict_in_the_registry_makes_the_master_step_down_without_overwriting() {
    let memory = MemoryRegistryStore::new();
    let master = start(Arc::new(memory.clone())).await;
    let (status, body) = http(master.address, "PUT", "/weights", &weights_body("eng", 2.0)).await;
    assert_eq!(status, 200, "{body}");
    // Someone else (another master) writes the key behind this one's back.
    let current = memory.load().await.expect("load");
    let version = current
        .iter()
        .find(|e| e.key == "weights")
        .expect("weights stored")
        .version;
    let theirs = br#"{"ops":7.0}"#.to_vec();
    memory
        .put("weights", theirs.clone(), Some(version))
        .await
        .expect("their write");

    let (status, body) = http(master.address, "PUT", "/weights", &weights_body("eng", 3.0)).await;
    assert_eq!(status, 503, "{body}");
    let outcome = master.ended().await;
    assert!(
        matches!(&outcome, Err(ShellError::Registry(why)) if why.contains("someone else")),
        "{outcome:?}"
    );
    let stored = memory.load().await.expect("load");
    let weights = stored.iter().find(|e| e.key == "weights").expect("weights");
    assert_eq!(weights.value, theirs, "their write is not overwritten");
}

#[tokio::test]
async fn weights_too_large_for_the_registry_are_refused_with_507_and_change_nothing() {
    let memory = MemoryRegistryStore::new();
    let master = start(Arc::new(memory.clone())).await;
    let (status, body) = http(master.address, "PUT", "/weights", &weights_body("eng", 2.0)).await;
    assert_eq!(status, 200, "{body}");

    let many: Vec<String> = (0..60_000)
        .map(|n| format!(r#"{{"role":"r{n}","weight":2}}"#))
        .collect();
    let (status, body) = http(
        master.address,
        "PUT",
        "/weights",
        &format!("[{}]", many.join(",")),
    )
    .await;
    assert_eq!(status, 507, "{body}");
    assert_eq!(weight_of(master.address, "r1").await, None);
    // Still leading, still writing.
    let (status, body) = http(master.address, "PUT", "/weights", &weights_body("eng", 3.0)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(weight_of(master.address, "eng").await, Some(3.0));
    master.stop().await;
}

#[tokio::test]
async fn a_reconcile_of_5000_tasks_is_answered_in_full_to_a_framework_that_reads_late() {
    let master = start(Arc::new(MemoryRegistryStore::new())).await;
    let endpoint = format!("http://{}", master.address);
    let mut client = sched::scheduler_client::SchedulerClient::connect(endpoint)
        .await
        .expect("connect");
    let info = pb::FrameworkInfo {
        user: "test".into(),
        name: "reconciler".into(),
        ..Default::default()
    };
    let subscribe = sched::Call {
        r#type: sched::call::Type::Subscribe as i32,
        subscribe: Some(sched::call::Subscribe {
            framework_info: Some(info),
            suppressed_roles: Vec::new(),
        }),
        ..Default::default()
    };
    let mut events = client
        .subscribe(subscribe)
        .await
        .expect("subscribed")
        .into_inner();
    let subscribed = events
        .message()
        .await
        .expect("stream")
        .and_then(|e| e.subscribed)
        .expect("SUBSCRIBED first");
    let tasks: Vec<sched::call::reconcile::Task> = (0..5_000)
        .map(|n| sched::call::reconcile::Task {
            task_id: Some(pb::TaskId {
                value: format!("task-{n}"),
            }),
            agent_id: None,
        })
        .collect();
    let mut reconcile = tonic::Request::new(sched::Call {
        framework_id: subscribed.framework_id.clone(),
        r#type: sched::call::Type::Reconcile as i32,
        reconcile: Some(sched::call::Reconcile { tasks }),
        ..Default::default()
    });
    reconcile.metadata_mut().insert(
        "agora-stream-id",
        subscribed.stream_id.parse().expect("ascii"),
    );
    // Nothing is read until the call is answered: all 5,000 updates are
    // queued for this one stream at once.
    client.send(reconcile).await.expect("reconcile accepted");
    let mut updates = std::collections::BTreeSet::new();
    tokio::time::timeout(DEADLINE, async {
        while updates.len() < 5_000 {
            let event = events
                .message()
                .await
                .expect("the stream stays open")
                .expect("the stream is not closed");
            if let Some(update) = event.update {
                let status = update.status.expect("status");
                updates.insert(status.task_id.expect("task id").value);
            }
        }
    })
    .await
    .expect("every update arrives");
    assert_eq!(updates.len(), 5_000);
    master.stop().await;
}
