//! Election, detection and the registry against a real ZooKeeper server
//! (Debian package `zookeeper`), partitions through a cuttable proxy.
//!
//! Tests synchronise only by waiting on watches with deadlines; every
//! test uses its own znode path.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use agora_coord::testing::{Proxy, ZooKeeper, check_registry_store, unique_path};
use agora_coord::{
    Contender, LeaderDetector, Leadership, MasterRecord, RegistryError, RegistryStore, Version,
    ZkOptions, ZkRegistryStore,
};
use anyhow::{Context, Result, bail, ensure};
use tokio::sync::watch;

/// One server shared by the tests running at the same time; killed when the
/// last of them drops it.
async fn server() -> Result<Arc<ZooKeeper>> {
    static SERVER: tokio::sync::Mutex<Weak<ZooKeeper>> = tokio::sync::Mutex::const_new(Weak::new());
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let mut slot = SERVER.lock().await;
    if let Some(server) = slot.upgrade() {
        return Ok(server);
    }
    let server = Arc::new(ZooKeeper::start().await.context("starting zookeeper")?);
    *slot = Arc::downgrade(&server);
    Ok(server)
}

fn record(name: &str, port: u16) -> MasterRecord {
    MasterRecord::new(
        format!("id-{name}"),
        name,
        "127.0.0.1".parse().expect("ip literal"),
        port,
        "test",
    )
}

fn options(session_timeout_ms: u64) -> ZkOptions {
    ZkOptions::default().with_session_timeout(Duration::from_millis(session_timeout_ms))
}

/// Waits until `rx` satisfies `ok`, at most `limit`.
async fn wait<T: Clone>(
    rx: &watch::Receiver<T>,
    limit: Duration,
    what: &str,
    ok: impl FnMut(&T) -> bool,
) -> Result<T> {
    let mut rx = rx.clone();
    match tokio::time::timeout(limit, rx.wait_for(ok)).await {
        Ok(Ok(value)) => Ok(value.clone()),
        Ok(Err(_)) => bail!("{what}: channel closed"),
        Err(_) => bail!("{what}: not within {limit:?}"),
    }
}

fn leader_is(name: &'static str) -> impl FnMut(&Option<MasterRecord>) -> bool {
    move |leader| leader.as_ref().is_some_and(|r| r.hostname == name)
}

fn follows(name: &'static str) -> impl FnMut(&Leadership) -> bool {
    move |l| matches!(l, Leadership::Follower { leader: Some(r) } if r.hostname == name)
}

type History = Arc<Mutex<Vec<(Instant, Leadership)>>>;

/// Records every value `rx` takes, with the time it was seen.
fn history(mut rx: watch::Receiver<Leadership>) -> History {
    let log: History = Arc::default();
    let sink = log.clone();
    tokio::spawn(async move {
        loop {
            let value = rx.borrow_and_update().clone();
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((Instant::now(), value));
            if rx.changed().await.is_err() {
                break;
            }
        }
    });
    log
}

/// The intervals during which a history says "leading".
fn leading_intervals(history: &History, until: Instant) -> Vec<(Instant, Instant, u64)> {
    let entries = history.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut intervals = Vec::new();
    let mut open: Option<(Instant, u64)> = None;
    for (at, value) in entries {
        match (value, open) {
            (Leadership::Leading { epoch }, None) => open = Some((at, epoch)),
            (Leadership::Follower { .. }, Some((start, epoch))) => {
                intervals.push((start, at, epoch));
                open = None;
            }
            _ => {}
        }
    }
    if let Some((start, epoch)) = open {
        intervals.push((start, until, epoch));
    }
    intervals
}

#[tokio::test]
async fn lowest_leads_others_follow_and_graceful_close_hands_over() -> Result<()> {
    let zk = server().await?;
    let url = zk.url(&unique_path("handover"));
    let detector = LeaderDetector::zookeeper(&url, options(4000));

    let a = Contender::zookeeper(&url, record("a", 1), options(4000));
    let a_epoch = wait(
        &a.leadership(),
        Duration::from_secs(10),
        "a leads",
        Leadership::is_leading,
    )
    .await?
    .epoch()
    .context("epoch")?;
    let b = Contender::zookeeper(&url, record("b", 2), options(4000));
    wait(
        &b.leadership(),
        Duration::from_secs(10),
        "b follows a",
        follows("a"),
    )
    .await?;
    wait(
        &detector.leader(),
        Duration::from_secs(10),
        "detector sees a",
        leader_is("a"),
    )
    .await?;
    assert!(a.current().is_leading(), "a still leads");

    // The znodes are laid out as Mesos-aware tools expect.
    let raw = zookeeper_client::Client::connect(&zk.connect_string()).await?;
    let mut children = raw.list_children(url.path()).await?;
    children.sort();
    assert_eq!(children.len(), 2, "{children:?}");
    assert!(
        children
            .iter()
            .all(|c| c.starts_with("json.info_") && c.len() == 20),
        "{children:?}"
    );
    let (data, _) = raw
        .get_data(&format!("{}/{}", url.path(), children[0]))
        .await?;
    let json: serde_json::Value = serde_json::from_slice(&data)?;
    assert_eq!(json["address"]["ip"], "127.0.0.1");
    assert_eq!(json["address"]["port"], 1);
    assert_eq!(json["pid"], "master@127.0.0.1:1");
    assert_eq!(json["hostname"], "a");
    assert_eq!(children[0], format!("json.info_{a_epoch:010}"));

    // b can lead before a's session (4 s) could expire only if a deleted
    // its node when it closed.
    let closed_at = Instant::now();
    a.close().await;
    let b_lead = wait(
        &b.leadership(),
        Duration::from_millis(4000),
        "b leads before a's session could expire",
        Leadership::is_leading,
    )
    .await?;
    eprintln!("graceful hand-over took {:?}", closed_at.elapsed());
    assert!(
        b_lead.epoch() > Some(a_epoch),
        "epochs grow: {b_lead:?} after {a_epoch}"
    );
    wait(
        &detector.leader(),
        Duration::from_secs(5),
        "detector sees b",
        leader_is("b"),
    )
    .await?;

    // Dropping (not closing) also withdraws promptly.
    let dropped_at = Instant::now();
    drop(b);
    wait(
        &detector.leader(),
        Duration::from_secs(5),
        "no leader",
        Option::is_none,
    )
    .await?;
    eprintln!("drop hand-over took {:?}", dropped_at.elapsed());
    Ok(())
}

#[tokio::test]
async fn three_contenders_follow_the_leader_not_only_their_predecessor() -> Result<()> {
    let zk = server().await?;
    let url = zk.url(&unique_path("three"));
    let a = Contender::zookeeper(&url, record("a", 1), options(4000));
    wait(
        &a.leadership(),
        Duration::from_secs(10),
        "a leads",
        Leadership::is_leading,
    )
    .await?;
    let b = Contender::zookeeper(&url, record("b", 2), options(4000));
    wait(
        &b.leadership(),
        Duration::from_secs(10),
        "b follows a",
        follows("a"),
    )
    .await?;
    let c = Contender::zookeeper(&url, record("c", 3), options(4000));
    wait(
        &c.leadership(),
        Duration::from_secs(10),
        "c follows a",
        follows("a"),
    )
    .await?;

    // The middle one leaves: nothing changes for the leader, c still follows a.
    b.close().await;
    assert!(a.current().is_leading());
    wait(
        &c.leadership(),
        Duration::from_secs(5),
        "c follows a",
        follows("a"),
    )
    .await?;

    a.close().await;
    wait(
        &c.leadership(),
        Duration::from_secs(5),
        "c leads",
        Leadership::is_leading,
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn cut_leader_stops_at_once_and_successor_waits_for_expiry() -> Result<()> {
    const SESSION_MS: u64 = 2000;
    let zk = server().await?;
    let proxy = Proxy::start(zk.addr()).await?;
    let path = unique_path("partition");
    let a = Contender::zookeeper(&proxy.url(&path), record("a", 1), options(SESSION_MS));
    let a_history = history(a.leadership());
    let a_epoch = wait(
        &a.leadership(),
        Duration::from_secs(10),
        "a leads",
        Leadership::is_leading,
    )
    .await?
    .epoch()
    .context("epoch")?;
    let b = Contender::zookeeper(&zk.url(&path), record("b", 2), options(SESSION_MS));
    let b_history = history(b.leadership());
    wait(
        &b.leadership(),
        Duration::from_secs(10),
        "b follows a",
        follows("a"),
    )
    .await?;

    let cut_at = Instant::now();
    proxy.cut();
    wait(
        &a.leadership(),
        Duration::from_secs(15),
        "a steps down",
        |l| !l.is_leading(),
    )
    .await?;
    let step_down = cut_at.elapsed();

    let b_lead = wait(
        &b.leadership(),
        Duration::from_secs(15),
        "b leads",
        Leadership::is_leading,
    )
    .await?;
    let takeover = cut_at.elapsed();
    eprintln!("cut leader stepped down after {step_down:?}; successor led after {takeover:?}");
    // The safety ordering: the cut leader stops before its successor leads.
    assert!(
        step_down < takeover,
        "a stepped down after {step_down:?}, b led after {takeover:?}"
    );
    // b may lead only once a's session expired on the server: about the
    // session timeout after a's last message, which was at most one ping
    // interval (well under 500 ms) before the cut.
    assert!(
        takeover >= Duration::from_millis(SESSION_MS - 500),
        "b led {takeover:?} after the cut, before a's session could expire"
    );
    let b_epoch = b_lead.epoch().context("epoch")?;
    assert!(b_epoch > a_epoch);

    // Healing: a's old session is gone; it rejoins with a new node and follows b.
    proxy.restore();
    wait(
        &a.leadership(),
        Duration::from_secs(15),
        "a follows b",
        follows("b"),
    )
    .await?;

    let now = Instant::now();
    let a_terms = leading_intervals(&a_history, now);
    let b_terms = leading_intervals(&b_history, now);
    assert_eq!(a_terms.len(), 1, "a led once: {a_terms:?}");
    assert_eq!(b_terms.len(), 1, "b led once: {b_terms:?}");
    for (a_start, a_end, _) in &a_terms {
        for (b_start, b_end, _) in &b_terms {
            assert!(
                a_end <= b_start || b_end <= a_start,
                "a and b both led at once: a {a_terms:?}, b {b_terms:?}"
            );
        }
    }
    assert!(b_terms[0].0.duration_since(a_terms[0].1) >= Duration::from_millis(SESSION_MS - 500));
    Ok(())
}

#[tokio::test]
async fn silently_partitioned_leader_steps_down_before_its_session_expires() -> Result<()> {
    const SESSION_MS: u64 = 2000;
    let zk = server().await?;
    let proxy = Proxy::start(zk.addr()).await?;
    let path = unique_path("stall");
    let a = Contender::zookeeper(&proxy.url(&path), record("a", 1), options(SESSION_MS));
    let a_history = history(a.leadership());
    wait(
        &a.leadership(),
        Duration::from_secs(10),
        "a leads",
        Leadership::is_leading,
    )
    .await?;
    let b = Contender::zookeeper(&zk.url(&path), record("b", 2), options(SESSION_MS));
    let b_history = history(b.leadership());
    wait(
        &b.leadership(),
        Duration::from_secs(10),
        "b follows a",
        follows("a"),
    )
    .await?;

    // No FIN, no RST: a must notice by its own timeouts.
    let stalled_at = Instant::now();
    proxy.stall();
    wait(
        &a.leadership(),
        Duration::from_secs(15),
        "a steps down",
        |l| !l.is_leading(),
    )
    .await?;
    let step_down = stalled_at.elapsed();
    wait(
        &b.leadership(),
        Duration::from_secs(15),
        "b leads",
        Leadership::is_leading,
    )
    .await?;
    let takeover = stalled_at.elapsed();
    eprintln!("stalled leader stepped down after {step_down:?}; successor led after {takeover:?}");
    // Before its session expires, that is before anyone else can lead.
    assert!(
        step_down < takeover,
        "a stepped down after {step_down:?}, b led after {takeover:?}"
    );

    proxy.restore();
    wait(
        &a.leadership(),
        Duration::from_secs(15),
        "a follows b",
        follows("b"),
    )
    .await?;
    let now = Instant::now();
    let a_terms = leading_intervals(&a_history, now);
    let b_terms = leading_intervals(&b_history, now);
    assert_eq!(
        (a_terms.len(), b_terms.len()),
        (1, 1),
        "a {a_terms:?}, b {b_terms:?}"
    );
    assert!(a_terms[0].1 < b_terms[0].0, "a {a_terms:?}, b {b_terms:?}");
    Ok(())
}

#[tokio::test]
async fn leader_reconnecting_in_time_leads_again_with_the_same_epoch() -> Result<()> {
    const SESSION_MS: u64 = 4000;
    let zk = server().await?;
    let proxy = Proxy::start(zk.addr()).await?;
    let path = unique_path("blip");
    let a = Contender::zookeeper(&proxy.url(&path), record("a", 1), options(SESSION_MS));
    let epoch = wait(
        &a.leadership(),
        Duration::from_secs(10),
        "a leads",
        Leadership::is_leading,
    )
    .await?
    .epoch();
    let b = Contender::zookeeper(&zk.url(&path), record("b", 2), options(SESSION_MS));
    let b_history = history(b.leadership());
    wait(
        &b.leadership(),
        Duration::from_secs(10),
        "b follows a",
        follows("a"),
    )
    .await?;

    proxy.cut();
    // A blip well inside the session: a must notice it and step down, and
    // the link heals before the session could expire.
    wait(
        &a.leadership(),
        Duration::from_millis(SESSION_MS / 2),
        "a steps down",
        |l| !l.is_leading(),
    )
    .await?;
    // Wait on a's channel (not a clock) for the blip to have been seen, then heal.
    proxy.restore();
    let again = wait(
        &a.leadership(),
        Duration::from_secs(10),
        "a leads again",
        Leadership::is_leading,
    )
    .await?;
    assert_eq!(again.epoch(), epoch, "same session, same node, same epoch");
    assert!(
        leading_intervals(&b_history, Instant::now()).is_empty(),
        "b never led while a's session lived"
    );
    Ok(())
}

#[tokio::test]
async fn detector_survives_session_expiry_and_rereads() -> Result<()> {
    let zk = server().await?;
    let proxy = Proxy::start(zk.addr()).await?;
    let path = unique_path("detector");
    let detector = LeaderDetector::zookeeper(&proxy.url(&path), options(1000));
    // No master yet (not even the directory): no leader.
    let a = Contender::zookeeper(&zk.url(&path), record("a", 1), options(4000));
    wait(
        &detector.leader(),
        Duration::from_secs(10),
        "detector sees a",
        leader_is("a"),
    )
    .await?;

    proxy.cut();
    // Leadership changes while the detector is partitioned.
    a.close().await;
    let b = Contender::zookeeper(&zk.url(&path), record("b", 2), options(4000));
    wait(
        &b.leadership(),
        Duration::from_secs(10),
        "b leads",
        Leadership::is_leading,
    )
    .await?;
    // The detector's session expires (client side, 1.4 x 1 s): leader unknown.
    wait(
        &detector.leader(),
        Duration::from_secs(10),
        "leader unknown",
        Option::is_none,
    )
    .await?;

    proxy.restore();
    wait(
        &detector.leader(),
        Duration::from_secs(15),
        "detector sees b",
        leader_is("b"),
    )
    .await?;
    drop(b);
    wait(
        &detector.leader(),
        Duration::from_secs(5),
        "no leader",
        Option::is_none,
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn zookeeper_registry_follows_the_contract() -> Result<()> {
    let zk = server().await?;
    let url = zk.url(&unique_path("registry"));
    let store = ZkRegistryStore::new(&url, options(4000));
    check_registry_store(&store).await;

    // One znode per key under <path>/registry.
    let raw = zookeeper_client::Client::connect(&zk.connect_string()).await?;
    let mut children = raw.list_children(store.directory()).await?;
    children.sort();
    assert_eq!(children, ["a", "agent:0"]);
    assert_eq!(store.directory(), format!("{}/registry", url.path()));
    Ok(())
}

#[tokio::test]
async fn zookeeper_registry_loads_many_entries_in_batches_whole_and_in_order() -> Result<()> {
    let zk = server().await?;
    let url = zk.url(&unique_path("many"));
    let store = ZkRegistryStore::new(&url, options(4000));
    // More than three of the load's batches of reads, the last one partial.
    let count = 1000;
    let puts = (0..count).map(|i| {
        let store = &store;
        async move {
            store
                .put(
                    &format!("agent:{i:04}"),
                    format!("value {i}").into_bytes(),
                    None,
                )
                .await
        }
    });
    futures::future::try_join_all(puts).await?;
    // Entry 7 written twice: its version moves on.
    store
        .put("agent:0007", b"value 7 again".to_vec(), Some(Version(0)))
        .await?;
    let fresh = ZkRegistryStore::new(&url, options(4000));
    let entries = fresh.load().await?;
    assert_eq!(entries.len(), count);
    for (i, entry) in entries.iter().enumerate() {
        assert_eq!(entry.key, format!("agent:{i:04}"));
        if i == 7 {
            assert_eq!(entry.value, b"value 7 again");
            assert_eq!(entry.version, Version(1));
        } else {
            assert_eq!(entry.value, format!("value {i}").into_bytes());
            assert_eq!(entry.version, Version(0));
        }
    }
    Ok(())
}

#[tokio::test]
async fn zookeeper_registry_compare_and_set_across_sessions() -> Result<()> {
    let zk = server().await?;
    let url = zk.url(&unique_path("cas"));
    let one: Arc<dyn RegistryStore> = Arc::new(ZkRegistryStore::new(&url, options(4000)));
    let two: Arc<dyn RegistryStore> = Arc::new(ZkRegistryStore::new(&url, options(4000)));

    let v0 = one.put("agent:1", b"admitted".to_vec(), None).await?;
    let seen = two.load().await?;
    ensure!(seen.len() == 1 && seen[0].version == v0, "{seen:?}");
    let v1 = two
        .put("agent:1", b"unreachable".to_vec(), Some(v0))
        .await?;
    assert_eq!(v1, Version(1));
    // `one` writes from a stale view: refused, nothing changed.
    let stale = one.put("agent:1", b"active".to_vec(), Some(v0)).await;
    assert!(
        matches!(stale, Err(RegistryError::Conflict { .. })),
        "{stale:?}"
    );
    let create_again = one.put("agent:1", b"again".to_vec(), None).await;
    assert!(
        matches!(create_again, Err(RegistryError::Conflict { .. })),
        "{create_again:?}"
    );
    assert_eq!(one.load().await?[0].value, b"unreachable");
    one.delete("agent:1", Some(v1)).await?;
    assert!(two.load().await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn zookeeper_registry_reports_unreachable_servers() -> Result<()> {
    // A proxy that refuses everything stands for a dead ensemble.
    let zk = server().await?;
    let proxy = Proxy::start(zk.addr()).await?;
    proxy.cut();
    let store = ZkRegistryStore::new(&proxy.url(&unique_path("down")), options(1000));
    // It gives up and says so (the outer timeout only keeps a store that
    // retried forever from hanging the suite).
    let result = tokio::time::timeout(Duration::from_secs(60), store.load())
        .await
        .context("the load gave up")?;
    assert!(
        matches!(result, Err(RegistryError::Unavailable { .. })),
        "{result:?}"
    );

    // Once reachable, the same store works.
    proxy.restore();
    assert!(store.load().await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn zookeeper_registry_recovers_after_session_expiry() -> Result<()> {
    let zk = server().await?;
    let proxy = Proxy::start(zk.addr()).await?;
    let store = ZkRegistryStore::new(&proxy.url(&unique_path("expiry")), options(1000));
    let v0 = store.put("weights", b"w1".to_vec(), None).await?;

    proxy.cut();
    let cut_at = Instant::now();
    let failed = store.put("weights", b"w2".to_vec(), Some(v0)).await;
    assert!(
        matches!(failed, Err(RegistryError::Unavailable { .. })),
        "{failed:?}"
    );
    eprintln!(
        "write during a partition failed after {:?}",
        cut_at.elapsed()
    );

    proxy.restore();
    // The old session may have expired meanwhile: the store opens a new one
    // by itself. Bounded retries, as a caller would do.
    let deadline = Instant::now() + Duration::from_secs(15);
    let entries = loop {
        match store.load().await {
            Ok(entries) => break entries,
            Err(RegistryError::Unavailable { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await; // retry backoff
            }
            Err(error) => return Err(error.into()),
        }
    };
    // The failed write did not happen.
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].value, b"w1");
    assert_eq!(entries[0].version, v0);
    Ok(())
}
