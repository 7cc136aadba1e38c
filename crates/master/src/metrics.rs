//! The master's `/metrics`, OpenMetrics text as `prometheus-client` encodes
//! it (Prometheus scrapes it natively; the output ends with `# EOF`).
//!
//! Two sources, neither of them the live state machine:
//! - the published [`StateSnapshot`]: agents and frameworks by state, tasks
//!   by state, and the state machine's [`Counters`](crate::state::Counters)
//!   (offers sent, declined, rescinded; task state transitions), encoded at
//!   scrape time by a [`Collector`] over that snapshot;
//! - [`MasterMetrics`]: latencies the shell measures (allocation cycles,
//!   registry writes, status-update round trips), recorded as they happen
//!   into `prometheus-client` histograms registered once in the metrics' own
//!   [`Registry`] (each behind a short lock: a recording waits at most for a
//!   scrape's copy of that one histogram), and leader changes, an atomic
//!   count that Mesos' `/metrics/snapshot` reads too. One per master, made
//!   by `run_master` and handed to whoever records (the actor, the
//!   leadership terms) or reads (the routes): no static.
//!
//! The status-update round trip is measured from a status update (one that
//! carries a uuid) reaching the master's actor from an agent to the
//! framework's ACKNOWLEDGE of that uuid reaching the actor: it covers the
//! forward to the framework, the framework's handling and its answer.
//! Registry write latency is from the state machine asking for the write to
//! the writer being done with it (queueing included; a write given up after
//! its retries counts too).
//!
//! Names follow OpenMetrics: a counter is described under its family name
//! and its sample carries `_total` (`agora_master_offers_sent` /
//! `agora_master_offers_sent_total`), so every sample keeps the name it had
//! in the Prometheus 0.0.4 text this replaced.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};
use tokio::sync::{mpsc, watch};

use crate::protocol::Gate;
use crate::registry_writer::RegistryWrite;
use crate::snapshot::StateSnapshot;

/// The media type of `/metrics`.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the latency histograms' buckets, seconds (`+Inf` implied).
pub const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram over [`BUCKETS`], in seconds: `prometheus-client`'s
/// histogram, observed with [`Duration`]s. Clones share their counts (the
/// registry holds one, the recorder another).
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    seconds: prometheus_client::metrics::histogram::Histogram,
    /// Observations so far, for the Mesos-style `allocation_runs` of
    /// `/metrics/snapshot` (the crate's histogram does not expose its count).
    observed: Arc<AtomicU64>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    pub fn new() -> Self {
        LatencyHistogram {
            seconds: prometheus_client::metrics::histogram::Histogram::new(BUCKETS),
            observed: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn observe(&self, elapsed: Duration) {
        self.seconds.observe(elapsed.as_secs_f64());
        self.observed.fetch_add(1, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.observed.load(Ordering::Relaxed)
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.seconds.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// One `kind` label (`periodic` or `event`) of the allocation histograms.
type KindLabel = [(&'static str, &'static str); 1];

/// What the shell measures; one per master (`run_master` makes it).
#[derive(Debug)]
pub struct MasterMetrics {
    /// The periodic full allocation cycle (the safety net).
    pub allocation_periodic: LatencyHistogram,
    /// Allocations run after a batch of events: the agents whose free
    /// resources grew, or a full cycle after a subscribe, revive or policy change.
    pub allocation_event: LatencyHistogram,
    pub registry_write: LatencyHistogram,
    pub status_update_round_trip: LatencyHistogram,
    /// Times the leader this master knows of changed (itself included);
    /// exposed as the counter `agora_master_leader_changes_total`.
    pub leader_changes: AtomicU64,
    /// The leader last known (`Some("")`: this master), for
    /// [`leader_changes`](Self::leader_changes).
    known_leader: std::sync::Mutex<Option<String>>,
    /// The histograms above, registered once under their exposed names.
    registry: Registry,
}

impl Default for MasterMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl MasterMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let allocation_cycles: Family<KindLabel, LatencyHistogram, fn() -> LatencyHistogram> =
            Family::new_with_constructor(LatencyHistogram::new);
        let allocation_periodic = allocation_cycles.get_or_create_owned(&[("kind", "periodic")]);
        let allocation_event = allocation_cycles.get_or_create_owned(&[("kind", "event")]);
        // Help texts without a final full stop: the registry adds one.
        registry.register_with_unit(
            "agora_master_allocation_cycle",
            "Time the allocator took per allocation (kind: periodic full cycle, or event-driven after a batch of events)",
            Unit::Seconds,
            allocation_cycles,
        );
        let registry_write = LatencyHistogram::new();
        registry.register_with_unit(
            "agora_master_registry_write",
            "From the state machine asking for a registry write to the write being done, queueing included",
            Unit::Seconds,
            registry_write.clone(),
        );
        let status_update_round_trip = LatencyHistogram::new();
        registry.register_with_unit(
            "agora_master_status_update_round_trip",
            "From an agent's status update reaching the master to its framework's acknowledgement reaching the master",
            Unit::Seconds,
            status_update_round_trip.clone(),
        );
        MasterMetrics {
            allocation_periodic,
            allocation_event,
            registry_write,
            status_update_round_trip,
            leader_changes: AtomicU64::new(0),
            known_leader: std::sync::Mutex::new(None),
            registry,
        }
    }

    /// The gate moved to `gate`: counts a leader change when it names a
    /// leader other than the last one known (a gate that names none, while
    /// recovering or with no leader elected, changes nothing).
    pub(crate) fn gate_changed(&self, gate: &Gate) {
        let Some(leader) = leader_of(gate) else {
            return;
        };
        let mut known = self
            .known_leader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if known.as_ref() != Some(&leader) {
            self.leader_changes.fetch_add(1, Ordering::Relaxed);
            *known = Some(leader);
        }
    }
}

/// Status updates waiting for their framework's acknowledgement, by uuid,
/// for the round-trip histogram. Bounded: past [`RoundTrips::MAX`] entries
/// the oldest half is dropped (their frameworks are gone or very late).
/// A uuid is its 16 bytes as one number (no allocation per update); one of
/// another length is not a uuid the master accepts, and is not timed.
#[derive(Debug, Default)]
pub struct RoundTrips {
    started: HashMap<u128, Instant>,
}

impl RoundTrips {
    pub const MAX: usize = 100_000;

    /// An update with this uuid reached the master.
    /// A status update's uuid as the key it is timed by, if it is 16 bytes.
    pub fn key(uuid: &[u8]) -> Option<u128> {
        <[u8; 16]>::try_from(uuid).ok().map(u128::from_be_bytes)
    }

    pub fn update_arrived(&mut self, key: u128, now: Instant) {
        if self.started.len() >= Self::MAX {
            let mut times: Vec<Instant> = self.started.values().copied().collect();
            times.sort_unstable();
            let cutoff = times[times.len() / 2];
            self.started.retain(|_, at| *at > cutoff);
        }
        self.started.entry(key).or_insert(now);
    }

    /// The framework acknowledged this uuid: records and returns the round trip.
    pub fn acknowledged(
        &mut self,
        key: u128,
        now: Instant,
        into: &LatencyHistogram,
    ) -> Option<Duration> {
        let started = self.started.remove(&key)?;
        let elapsed = now.saturating_duration_since(started);
        into.observe(elapsed);
        Some(elapsed)
    }

    pub fn len(&self) -> usize {
        self.started.len()
    }

    pub fn is_empty(&self) -> bool {
        self.started.is_empty()
    }
}

/// Times one registry write: queues a flush marker behind it and records
/// when the writer reaches the marker.
pub(crate) fn time_registry_write(
    registry: &mpsc::UnboundedSender<RegistryWrite>,
    metrics: &Arc<MasterMetrics>,
) {
    let (done, flushed) = tokio::sync::oneshot::channel();
    if registry.send(RegistryWrite::Flushed(done)).is_err() {
        return;
    }
    let asked = Instant::now();
    let metrics = metrics.clone();
    tokio::spawn(async move {
        // An error: the writer ended with its term; nothing to record.
        if let Ok(Ok(())) = flushed.await {
            metrics.registry_write.observe(asked.elapsed());
        }
    });
}

/// The snapshot's figures and this master's leadership, encoded at scrape
/// time (what the state machine counts is in the snapshot, not here).
#[derive(Debug)]
struct ScrapedState {
    snapshot: Arc<StateSnapshot>,
    is_leader: bool,
    leader_changes: u64,
}

/// One family without labels.
fn single(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// One family with a `state` label per value.
fn by_state<'a, M: EncodeMetric + TypedMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (&'a str, M)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, M::TYPE)?;
    for (state, metric) in values {
        metric.encode(family.encode_family(&[("state", state)])?)?;
    }
    Ok(())
}

impl Collector for ScrapedState {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.snapshot;
        let c = &s.counters;
        let e = &mut encoder;
        single(
            e,
            "agora_master_is_leader",
            "1 while this master is the elected leader and serving.",
            ConstGauge::new(i64::from(self.is_leader)),
        )?;
        single(
            e,
            "agora_master_leader_changes",
            "Times the leading master this master knows of changed (its own election included).",
            ConstCounter::new(self.leader_changes),
        )?;
        let count = |n: usize| ConstGauge::new(n);
        let agents_in =
            |status: &str| count(s.agents.iter().filter(|a| a.status == status).count());
        by_state(
            e,
            "agora_master_agents",
            "Agents known to the master by state (inactive: session down, within its grace).",
            [
                ("active", agents_in("active")),
                ("inactive", agents_in("disconnected")),
                ("unreachable", agents_in("unreachable")),
            ],
        )?;
        let active_frameworks = s.frameworks.iter().filter(|f| f.active).count();
        by_state(
            e,
            "agora_master_frameworks",
            "Frameworks by state.",
            [
                ("active", count(active_frameworks)),
                ("inactive", count(s.frameworks.len() - active_frameworks)),
                ("completed", count(s.completed_frameworks.len())),
            ],
        )?;
        let mut tasks: BTreeMap<&str, usize> = BTreeMap::new();
        for framework in s.frameworks.iter().chain(&s.completed_frameworks) {
            for task in framework.tasks.iter().chain(&framework.completed_tasks) {
                *tasks.entry(task.state).or_default() += 1;
            }
        }
        by_state(
            e,
            "agora_master_tasks",
            "Tasks the master knows, by current state.",
            tasks.into_iter().map(|(state, n)| (state, count(n))),
        )?;
        by_state(
            e,
            "agora_master_task_transitions",
            "Task state transitions seen by the master, by the state entered.",
            c.task_transitions
                .iter()
                .map(|(state, n)| (*state, ConstCounter::new(*n))),
        )?;
        let counters: [(&str, &str, u64); 7] = [
            (
                "agora_master_offers_sent",
                "Offers sent to frameworks.",
                c.offers_sent,
            ),
            (
                "agora_master_offers_declined",
                "Offers declined by frameworks.",
                c.offers_declined,
            ),
            (
                "agora_master_offers_accepted",
                "Offers accepted by frameworks.",
                c.offers_accepted,
            ),
            (
                "agora_master_offers_rescinded",
                "Offers rescinded by the master.",
                c.offers_rescinded,
            ),
            (
                "agora_master_tasks_launched",
                "Tasks launched.",
                c.tasks_launched,
            ),
            (
                "agora_master_invalid_calls",
                "Framework calls refused as invalid.",
                c.invalid_calls,
            ),
            (
                "agora_master_agents_marked_unreachable",
                "Agents marked unreachable.",
                c.agents_marked_unreachable,
            ),
        ];
        for (name, help, value) in counters {
            single(e, name, help, ConstCounter::new(value))?;
        }
        single(
            e,
            "agora_master_offers_outstanding",
            "Offers not yet answered.",
            count(s.outstanding_offers),
        )
    }
}

/// OpenMetrics text of a snapshot, the shell's measurements, and whether
/// this master leads.
pub fn render(
    snapshot: &Arc<StateSnapshot>,
    m: &MasterMetrics,
    is_leader: bool,
) -> Result<String, std::fmt::Error> {
    let mut scraped = Registry::default();
    scraped.register_collector(Box::new(ScrapedState {
        snapshot: snapshot.clone(),
        is_leader,
        leader_changes: m.leader_changes.load(Ordering::Relaxed),
    }));
    let mut text = String::new();
    encode_registry(&mut text, &scraped)?;
    encode_registry(&mut text, &m.registry)?;
    encode_eof(&mut text)?;
    Ok(text)
}

/// Who this gate says leads: `Some("")` for this master itself.
fn leader_of(gate: &Gate) -> Option<String> {
    match gate {
        Gate::Leading { .. } => Some(String::new()),
        Gate::Following { leader } => leader.clone(),
        Gate::Recovering => None,
    }
}

#[derive(Clone)]
struct MetricsState {
    snapshot: watch::Receiver<Arc<StateSnapshot>>,
    gate: watch::Receiver<Gate>,
    metrics: Arc<MasterMetrics>,
}

/// `GET /metrics` (served by every master, leading or not).
pub(crate) fn router(
    snapshot: watch::Receiver<Arc<StateSnapshot>>,
    gate: watch::Receiver<Gate>,
    metrics: Arc<MasterMetrics>,
) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(MetricsState {
            snapshot,
            gate,
            metrics,
        })
}

async fn scrape(State(state): State<MetricsState>) -> Response {
    let current = state.snapshot.borrow().clone();
    let is_leader = matches!(&*state.gate.borrow(), Gate::Leading { .. });
    let metrics = state.metrics.clone();
    // It sums over every agent.
    crate::snapshot_body::answer_off_workers(move || match render(&current, &metrics, is_leader) {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(error) => {
            tracing::warn!(%error, "cannot encode the metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value_of(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        // `x` with a `kind` label, `y` plain and never observed. The crate
        // writes `le` before the family's labels.
        let mut registry = Registry::default();
        let x: Family<KindLabel, LatencyHistogram> = Family::default();
        let h = x.get_or_create_owned(&[("kind", "a")]);
        registry.register("x", "X", x);
        registry.register("y", "Y", LatencyHistogram::new());
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        assert_eq!(h.count(), 4);
        let mut out = String::new();
        encode_registry(&mut out, &registry).expect("encodes");
        for (series, value) in [
            ("x_bucket{le=\"0.0005\",kind=\"a\"}", 1.0),
            ("x_bucket{le=\"0.0025\",kind=\"a\"}", 1.0),
            ("x_bucket{le=\"0.005\",kind=\"a\"}", 3.0),
            ("x_bucket{le=\"10.0\",kind=\"a\"}", 3.0),
            ("x_bucket{le=\"+Inf\",kind=\"a\"}", 4.0),
            ("x_count{kind=\"a\"}", 4.0),
            ("y_bucket{le=\"+Inf\"}", 0.0),
            ("y_count", 0.0),
        ] {
            assert_eq!(value_of(&out, series), Some(value), "{series} in\n{out}");
        }
        let sum = value_of(&out, "x_sum{kind=\"a\"}").expect("sum");
        assert!((sum - 60.0063).abs() < 1e-9, "{sum}");
        assert_eq!(out.matches("# TYPE x histogram\n").count(), 1, "{out}");
    }

    #[test]
    fn render_shows_counters_transitions_and_measurements() {
        let mut snapshot = StateSnapshot::default();
        snapshot.counters.offers_sent = 7;
        snapshot.counters.offers_declined = 2;
        snapshot.counters.offers_rescinded = 1;
        snapshot.counters.task_transitions.insert("TASK_RUNNING", 3);
        snapshot
            .counters
            .task_transitions
            .insert("TASK_FINISHED", 2);
        let snapshot = Arc::new(snapshot);
        let m = MasterMetrics::new();
        m.allocation_periodic.observe(Duration::from_millis(2));
        m.allocation_event.observe(Duration::from_micros(100));
        m.registry_write.observe(Duration::from_millis(20));
        m.leader_changes.store(2, Ordering::Relaxed);
        let text = render(&snapshot, &m, true).expect("renders");
        for (series, value) in [
            ("agora_master_is_leader", 1.0),
            ("agora_master_leader_changes_total", 2.0),
            ("agora_master_offers_sent_total", 7.0),
            ("agora_master_offers_declined_total", 2.0),
            ("agora_master_offers_rescinded_total", 1.0),
            ("agora_master_offers_outstanding", 0.0),
            (
                "agora_master_task_transitions_total{state=\"TASK_RUNNING\"}",
                3.0,
            ),
            (
                "agora_master_task_transitions_total{state=\"TASK_FINISHED\"}",
                2.0,
            ),
            ("agora_master_agents{state=\"active\"}", 0.0),
            ("agora_master_agents{state=\"inactive\"}", 0.0),
            ("agora_master_agents{state=\"unreachable\"}", 0.0),
            ("agora_master_frameworks{state=\"active\"}", 0.0),
            (
                "agora_master_allocation_cycle_seconds_count{kind=\"periodic\"}",
                1.0,
            ),
            (
                "agora_master_allocation_cycle_seconds_bucket{le=\"0.001\",kind=\"periodic\"}",
                0.0,
            ),
            (
                "agora_master_allocation_cycle_seconds_bucket{le=\"0.0025\",kind=\"periodic\"}",
                1.0,
            ),
            (
                "agora_master_allocation_cycle_seconds_count{kind=\"event\"}",
                1.0,
            ),
            ("agora_master_registry_write_seconds_count", 1.0),
            ("agora_master_status_update_round_trip_seconds_count", 0.0),
        ] {
            assert_eq!(value_of(&text, series), Some(value), "{series} in\n{text}");
        }
        // One HELP and TYPE per family, typed as such; counters described
        // under their family name, histograms with their unit.
        for line in [
            "# TYPE agora_master_allocation_cycle_seconds histogram\n",
            "# UNIT agora_master_allocation_cycle_seconds seconds\n",
            "# TYPE agora_master_offers_sent counter\n",
            "# TYPE agora_master_task_transitions counter\n",
            "# TYPE agora_master_agents gauge\n",
            "# HELP agora_master_offers_sent Offers sent to frameworks.\n",
            "# HELP agora_master_registry_write_seconds From the state machine asking for a registry write to the write being done, queueing included.\n",
        ] {
            assert_eq!(text.matches(line).count(), 1, "{line} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1);
        let follower = render(&snapshot, &m, false).expect("renders");
        assert_eq!(value_of(&follower, "agora_master_is_leader"), Some(0.0));
    }

    #[test]
    fn round_trips_are_matched_by_uuid_and_bounded() {
        let h = LatencyHistogram::new();
        let mut trips = RoundTrips::default();
        let start = Instant::now();
        let (u1, u2) = ([1; 16], [2; 16]);
        assert_eq!(RoundTrips::key(b"not 16 bytes"), None);
        let [k1, k2] = [u1, u2].map(|u| RoundTrips::key(&u).expect("16 bytes"));
        assert_ne!(k1, k2);
        trips.update_arrived(k1, start);
        assert_eq!(trips.acknowledged(k2, start, &h), None);
        let elapsed = trips.acknowledged(k1, start + Duration::from_millis(5), &h);
        assert_eq!(elapsed, Some(Duration::from_millis(5)));
        assert_eq!(h.count(), 1);
        // Acknowledged twice: recorded once.
        assert_eq!(trips.acknowledged(k1, start, &h), None);
        for i in 0..(RoundTrips::MAX as u64 + 10) {
            trips.update_arrived(u128::from(i), start + Duration::from_nanos(i));
        }
        assert!(trips.len() <= RoundTrips::MAX, "{}", trips.len());
        // The newest survive.
        let newest = RoundTrips::MAX as u128 + 9;
        assert!(
            trips
                .acknowledged(newest, start + Duration::from_secs(1), &h)
                .is_some()
        );
    }

    #[test]
    fn leader_identity_follows_the_gate() {
        assert_eq!(
            leader_of(&Gate::Following {
                leader: Some("a:1".into())
            }),
            Some("a:1".to_string())
        );
        assert_eq!(leader_of(&Gate::Following { leader: None }), None);
        assert_eq!(leader_of(&Gate::Recovering), None);
    }

    #[test]
    fn a_leader_change_is_counted_once_and_no_leader_is_no_change() {
        let m = MasterMetrics::new();
        let following = |leader: Option<&str>| Gate::Following {
            leader: leader.map(str::to_string),
        };
        m.gate_changed(&following(None));
        assert_eq!(m.leader_changes.load(Ordering::Relaxed), 0);
        m.gate_changed(&following(Some("a:1")));
        m.gate_changed(&following(Some("a:1")));
        assert_eq!(m.leader_changes.load(Ordering::Relaxed), 1);
        // The leader goes; until another is known, nothing changed.
        m.gate_changed(&following(None));
        m.gate_changed(&Gate::Recovering);
        m.gate_changed(&following(Some("a:1")));
        assert_eq!(m.leader_changes.load(Ordering::Relaxed), 1);
        // This master is elected: a change.
        let (commands, _) = mpsc::channel(1);
        m.gate_changed(&Gate::Leading { commands });
        assert_eq!(m.leader_changes.load(Ordering::Relaxed), 2);
    }
}
