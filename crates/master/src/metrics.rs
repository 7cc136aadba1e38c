//! The master's `/metrics`, Prometheus text exposition (version 0.0.4).
//!
//! Two sources, neither of them the live state machine:
//! - the published [`StateSnapshot`]: agents and frameworks by state, tasks
//!   by state, and the state machine's [`Counters`](crate::state::Counters)
//!   (offers sent, declined, rescinded; task state transitions);
//! - [`MasterMetrics`]: latencies the shell measures (allocation cycles,
//!   registry writes, status-update round trips) and leadership, kept in
//!   atomics so that recording never waits and a scrape never blocks anyone.
//!   One per master, made by `run_master` and handed to whoever records
//!   (the actor, the leadership terms) or reads (the routes): no static.
//!
//! The status-update round trip is measured from a status update (one that
//! carries a uuid) reaching the master's actor from an agent to the
//! framework's ACKNOWLEDGE of that uuid reaching the actor: it covers the
//! forward to the framework, the framework's handling and its answer.
//! Registry write latency is from the state machine asking for the write to
//! the writer being done with it (queueing included; a write given up after
//! its retries counts too).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::{mpsc, watch};

use crate::protocol::Gate;
use crate::registry_writer::RegistryWrite;
use crate::snapshot::StateSnapshot;

/// Upper bounds of the latency histograms' buckets, seconds (`+Inf` implied).
pub const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram with fixed buckets ([`BUCKETS`]), lock-free.
#[derive(Debug)]
pub struct Histogram {
    /// Non-cumulative counts per bucket; the last one is `+Inf`.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    pub const fn new() -> Self {
        Histogram {
            buckets: [const { AtomicU64::new(0) }; BUCKETS.len() + 1],
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Writes the `_bucket`, `_sum` and `_count` samples (no HELP/TYPE).
    fn render_samples(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0u64;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.buckets[BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
        );
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let braces = |labels: &str| {
            if labels.is_empty() {
                String::new()
            } else {
                format!("{{{labels}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
        // The buckets' total, so `_count` agrees with `+Inf` in one scrape.
        let _ = writeln!(out, "{name}_count{} {cumulative}", braces(labels));
    }
}

/// What the shell measures; one per master (`run_master` makes it).
#[derive(Debug, Default)]
pub struct MasterMetrics {
    /// The periodic full allocation cycle (the safety net).
    pub allocation_periodic: Histogram,
    /// Allocations run after a batch of events: the agents whose free
    /// resources grew, or a full cycle after a subscribe, revive or policy change.
    pub allocation_event: Histogram,
    pub registry_write: Histogram,
    pub status_update_round_trip: Histogram,
    /// Times the leader this master knows of changed (itself included).
    pub leader_changes: AtomicU64,
    /// The leader last known (`Some("")`: this master), for
    /// [`leader_changes`](Self::leader_changes).
    known_leader: std::sync::Mutex<Option<String>>,
}

impl MasterMetrics {
    pub const fn new() -> Self {
        MasterMetrics {
            allocation_periodic: Histogram::new(),
            allocation_event: Histogram::new(),
            registry_write: Histogram::new(),
            status_update_round_trip: Histogram::new(),
            leader_changes: AtomicU64::new(0),
            known_leader: std::sync::Mutex::new(None),
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
#[derive(Debug, Default)]
pub struct RoundTrips {
    started: HashMap<Vec<u8>, Instant>,
}

impl RoundTrips {
    pub const MAX: usize = 100_000;

    /// An update with this uuid reached the master.
    pub fn update_arrived(&mut self, uuid: &[u8], now: Instant) {
        if self.started.len() >= Self::MAX {
            let mut times: Vec<Instant> = self.started.values().copied().collect();
            times.sort_unstable();
            let cutoff = times[times.len() / 2];
            self.started.retain(|_, at| *at > cutoff);
        }
        self.started.entry(uuid.to_vec()).or_insert(now);
    }

    /// The framework acknowledged this uuid: records and returns the round trip.
    pub fn acknowledged(
        &mut self,
        uuid: &[u8],
        now: Instant,
        into: &Histogram,
    ) -> Option<Duration> {
        let started = self.started.remove(uuid)?;
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

/// Escapes a label value (backslash, double quote, newline).
fn label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Writer(String);

impl Writer {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, value: f64) {
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {value}");
        } else {
            let _ = writeln!(self.0, "{name}{{{labels}}} {value}");
        }
    }

    fn single(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, "", value);
    }

    fn by_state<'a>(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        values: impl IntoIterator<Item = (&'a str, f64)>,
    ) {
        self.family(name, kind, help);
        for (state, value) in values {
            self.sample(name, &format!("state=\"{}\"", label_value(state)), value);
        }
    }
}

/// Prometheus text of a snapshot, the shell's measurements, and whether
/// this master leads.
pub fn render(s: &StateSnapshot, m: &MasterMetrics, is_leader: bool) -> String {
    let mut w = Writer(String::new());
    w.single(
        "agora_master_is_leader",
        "gauge",
        "1 while this master is the elected leader and serving.",
        f64::from(u8::from(is_leader)),
    );
    w.single(
        "agora_master_leader_changes_total",
        "counter",
        "Times the leading master this master knows of changed (its own election included).",
        m.leader_changes.load(Ordering::Relaxed) as f64,
    );
    let agents_in = |status: &str| s.agents.iter().filter(|a| a.status == status).count() as f64;
    w.by_state(
        "agora_master_agents",
        "gauge",
        "Agents known to the master by state (inactive: session down, within its grace).",
        [
            ("active", agents_in("active")),
            ("inactive", agents_in("disconnected")),
            ("unreachable", agents_in("unreachable")),
        ],
    );
    let active_frameworks = s.frameworks.iter().filter(|f| f.active).count() as f64;
    w.by_state(
        "agora_master_frameworks",
        "gauge",
        "Frameworks by state.",
        [
            ("active", active_frameworks),
            ("inactive", s.frameworks.len() as f64 - active_frameworks),
            ("completed", s.completed_frameworks.len() as f64),
        ],
    );
    let mut tasks: std::collections::BTreeMap<&str, f64> = std::collections::BTreeMap::new();
    for framework in s.frameworks.iter().chain(&s.completed_frameworks) {
        for task in framework.tasks.iter().chain(&framework.completed_tasks) {
            *tasks.entry(task.state).or_default() += 1.0;
        }
    }
    w.by_state(
        "agora_master_tasks",
        "gauge",
        "Tasks the master knows, by current state.",
        tasks,
    );
    let c = &s.counters;
    w.by_state(
        "agora_master_task_transitions_total",
        "counter",
        "Task state transitions seen by the master, by the state entered.",
        c.task_transitions.iter().map(|(k, v)| (*k, *v as f64)),
    );
    let singles: [(&str, &str, &str, f64); 8] = [
        (
            "agora_master_offers_sent_total",
            "counter",
            "Offers sent to frameworks.",
            c.offers_sent as f64,
        ),
        (
            "agora_master_offers_declined_total",
            "counter",
            "Offers declined by frameworks.",
            c.offers_declined as f64,
        ),
        (
            "agora_master_offers_accepted_total",
            "counter",
            "Offers accepted by frameworks.",
            c.offers_accepted as f64,
        ),
        (
            "agora_master_offers_rescinded_total",
            "counter",
            "Offers rescinded by the master.",
            c.offers_rescinded as f64,
        ),
        (
            "agora_master_offers_outstanding",
            "gauge",
            "Offers not yet answered.",
            s.outstanding_offers as f64,
        ),
        (
            "agora_master_tasks_launched_total",
            "counter",
            "Tasks launched.",
            c.tasks_launched as f64,
        ),
        (
            "agora_master_invalid_calls_total",
            "counter",
            "Framework calls refused as invalid.",
            c.invalid_calls as f64,
        ),
        (
            "agora_master_agents_marked_unreachable_total",
            "counter",
            "Agents marked unreachable.",
            c.agents_marked_unreachable as f64,
        ),
    ];
    for (name, kind, help, value) in singles {
        w.single(name, kind, help, value);
    }
    let name = "agora_master_allocation_cycle_seconds";
    w.family(
        name,
        "histogram",
        "Time the allocator took per allocation (kind: periodic full cycle, or event-driven after a batch of events).",
    );
    m.allocation_periodic
        .render_samples(&mut w.0, name, "kind=\"periodic\"");
    m.allocation_event
        .render_samples(&mut w.0, name, "kind=\"event\"");
    let histograms: [(&str, &str, &Histogram); 2] = [
        (
            "agora_master_registry_write_seconds",
            "From the state machine asking for a registry write to the write being done, queueing included.",
            &m.registry_write,
        ),
        (
            "agora_master_status_update_round_trip_seconds",
            "From an agent's status update reaching the master to its framework's acknowledgement reaching the master.",
            &m.status_update_round_trip,
        ),
    ];
    for (name, help, histogram) in histograms {
        w.family(name, "histogram", help);
        histogram.render_samples(&mut w.0, name, "");
    }
    w.0
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
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&current, &state.metrics, is_leader),
    )
        .into_response()
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
        let h = Histogram::new();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let mut out = String::new();
        h.render_samples(&mut out, "x", "kind=\"a\"");
        assert_eq!(
            value_of(&out, "x_bucket{kind=\"a\",le=\"0.0005\"}"),
            Some(1.0)
        );
        assert_eq!(
            value_of(&out, "x_bucket{kind=\"a\",le=\"0.0025\"}"),
            Some(1.0)
        );
        assert_eq!(
            value_of(&out, "x_bucket{kind=\"a\",le=\"0.005\"}"),
            Some(3.0)
        );
        assert_eq!(value_of(&out, "x_bucket{kind=\"a\",le=\"10\"}"), Some(3.0));
        assert_eq!(
            value_of(&out, "x_bucket{kind=\"a\",le=\"+Inf\"}"),
            Some(4.0)
        );
        assert_eq!(value_of(&out, "x_count{kind=\"a\"}"), Some(4.0));
        let sum = value_of(&out, "x_sum{kind=\"a\"}").expect("sum");
        assert!((sum - 60.0063).abs() < 1e-9, "{sum}");
        let mut plain = String::new();
        Histogram::new().render_samples(&mut plain, "y", "");
        assert!(plain.contains("y_bucket{le=\"+Inf\"} 0\n"), "{plain}");
        assert!(plain.contains("y_count 0\n"), "{plain}");
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
        let m = MasterMetrics::new();
        m.allocation_periodic.observe(Duration::from_millis(2));
        m.allocation_event.observe(Duration::from_micros(100));
        m.registry_write.observe(Duration::from_millis(20));
        m.leader_changes.store(2, Ordering::Relaxed);
        let text = render(&snapshot, &m, true);
        for (series, value) in [
            ("agora_master_is_leader", 1.0),
            ("agora_master_leader_changes_total", 2.0),
            ("agora_master_offers_sent_total", 7.0),
            ("agora_master_offers_declined_total", 2.0),
            ("agora_master_offers_rescinded_total", 1.0),
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
                "agora_master_allocation_cycle_seconds_count{kind=\"event\"}",
                1.0,
            ),
            ("agora_master_registry_write_seconds_count", 1.0),
            ("agora_master_status_update_round_trip_seconds_count", 0.0),
        ] {
            assert_eq!(value_of(&text, series), Some(value), "{series} in\n{text}");
        }
        // One HELP and TYPE per family, histograms typed as such.
        assert_eq!(
            text.matches("# TYPE agora_master_allocation_cycle_seconds histogram\n")
                .count(),
            1
        );
        assert_eq!(
            value_of(&render(&snapshot, &m, false), "agora_master_is_leader"),
            Some(0.0)
        );
    }

    #[test]
    fn round_trips_are_matched_by_uuid_and_bounded() {
        let h = Histogram::new();
        let mut trips = RoundTrips::default();
        let start = Instant::now();
        trips.update_arrived(b"u1", start);
        assert_eq!(trips.acknowledged(b"u2", start, &h), None);
        let elapsed = trips.acknowledged(b"u1", start + Duration::from_millis(5), &h);
        assert_eq!(elapsed, Some(Duration::from_millis(5)));
        assert_eq!(h.count(), 1);
        // Acknowledged twice: recorded once.
        assert_eq!(trips.acknowledged(b"u1", start, &h), None);
        for i in 0..(RoundTrips::MAX as u64 + 10) {
            trips.update_arrived(&i.to_be_bytes(), start + Duration::from_nanos(i));
        }
        assert!(trips.len() <= RoundTrips::MAX, "{}", trips.len());
        // The newest survive.
        let newest = (RoundTrips::MAX as u64 + 9).to_be_bytes();
        assert!(
            trips
                .acknowledged(&newest, start + Duration::from_secs(1), &h)
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
