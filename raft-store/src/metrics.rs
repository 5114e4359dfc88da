//! Prometheus metrics and the health check, under etcd's metric names so existing dashboards
//! and alerts work, served on `--listen-metrics-urls` at `/metrics` and `/health`.
//!
//! Counters and histograms are process-wide atomics updated where things happen (the log's
//! fsync, the state machine's batch commit, watch sessions); gauges are read from the node
//! when scraped.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::node::Node;

/// Upper bounds of histogram buckets in seconds: 1 ms doubling to about 8 s, as etcd's disk
/// histograms.
const BUCKETS: [f64; 14] = [
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192,
];

/// A latency histogram with fixed buckets.
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    const fn new() -> Self {
        Self {
            buckets: [const { AtomicU64::new(0) }; BUCKETS.len()],
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, n) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// The process's counters and histograms.
pub struct Metrics {
    pub wal_fsync: Histogram,
    pub backend_commit: Histogram,
    pub proposals_failed: AtomicU64,
    pub proposals_pending: AtomicI64,
    pub leader_changes: AtomicU64,
    pub watchers: AtomicI64,
}

pub static METRICS: Metrics = Metrics {
    wal_fsync: Histogram::new(),
    backend_commit: Histogram::new(),
    proposals_failed: AtomicU64::new(0),
    proposals_pending: AtomicI64::new(0),
    leader_changes: AtomicU64::new(0),
    watchers: AtomicI64::new(0),
};

fn scalar(out: &mut String, kind: &str, name: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

/// The metrics page in Prometheus' text format.
pub fn render(node: &Node) -> String {
    let m = &METRICS;
    let raft = node.metrics();
    let mut out = String::new();
    let leader = raft.current_leader;
    scalar(
        &mut out,
        "gauge",
        "etcd_server_has_leader",
        "Whether a leader exists (1) or not (0).",
        u8::from(leader.is_some()),
    );
    scalar(
        &mut out,
        "gauge",
        "etcd_server_is_leader",
        "Whether this member is the leader.",
        u8::from(leader == Some(node.id)),
    );
    scalar(
        &mut out,
        "counter",
        "etcd_server_leader_changes_seen_total",
        "Leader changes seen.",
        m.leader_changes.load(Ordering::Relaxed),
    );
    scalar(
        &mut out,
        "gauge",
        "etcd_server_proposals_committed_total",
        "Index of the last committed log entry.",
        raft.local_committed
            .as_ref()
            .map(|l| l.index())
            .unwrap_or(0),
    );
    scalar(
        &mut out,
        "gauge",
        "etcd_server_proposals_applied_total",
        "Index of the last applied log entry.",
        raft.last_applied.as_ref().map(|l| l.index()).unwrap_or(0),
    );
    scalar(
        &mut out,
        "gauge",
        "etcd_server_proposals_pending",
        "Proposals waiting to commit.",
        m.proposals_pending.load(Ordering::Relaxed),
    );
    scalar(
        &mut out,
        "counter",
        "etcd_server_proposals_failed_total",
        "Proposals that failed.",
        m.proposals_failed.load(Ordering::Relaxed),
    );
    scalar(
        &mut out,
        "gauge",
        "etcd_server_term",
        "The current raft term.",
        raft.current_term,
    );
    scalar(
        &mut out,
        "gauge",
        "etcd_mvcc_db_total_size_in_bytes",
        "Bytes on disk, raft log included.",
        node.state().db().size_bytes(),
    );
    scalar(
        &mut out,
        "gauge",
        "etcd_mvcc_db_total_size_in_use_in_bytes",
        "Bytes the keyspace takes (what the quota limits).",
        node.state().db().state_size_bytes(),
    );
    scalar(
        &mut out,
        "gauge",
        "etcd_server_quota_backend_bytes",
        "The space quota.",
        node.config().quota_backend_bytes,
    );
    scalar(
        &mut out,
        "gauge",
        "etcd_debugging_mvcc_current_revision",
        "The current revision.",
        node.state().current_revision(),
    );
    scalar(
        &mut out,
        "gauge",
        "etcd_debugging_mvcc_watcher_total",
        "Watchers registered on this member.",
        m.watchers.load(Ordering::Relaxed),
    );
    m.wal_fsync.render(
        &mut out,
        "etcd_disk_wal_fsync_duration_seconds",
        "Latency of fsyncs of the raft log.",
    );
    m.backend_commit.render(
        &mut out,
        "etcd_disk_backend_commit_duration_seconds",
        "Latency of committing an applied batch to the state machine.",
    );
    for source in sources()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
    {
        source(&mut out);
    }
    out
}

/// Metrics of other components of the same process (the controller manager's work queues),
/// appended to the page in Prometheus' text format.
pub type Source = Arc<dyn Fn(&mut String) + Send + Sync>;

fn sources() -> &'static std::sync::Mutex<Vec<Source>> {
    static SOURCES: std::sync::OnceLock<std::sync::Mutex<Vec<Source>>> = std::sync::OnceLock::new();
    SOURCES.get_or_init(|| std::sync::Mutex::new(Vec::new()))
}

/// Adds `source` to every `/metrics` page this process serves.
pub fn add_source(source: Source) {
    sources()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(source);
}

/// Healthy: a leader is known and no alarm is raised (etcd's `/health`).
pub fn healthy(node: &Node) -> bool {
    node.leader().is_some() && node.state().alarms().is_empty()
}

async fn metrics_page(State(node): State<Arc<Node>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render(&node),
    )
}

async fn health(State(node): State<Arc<Node>>) -> impl IntoResponse {
    if healthy(&node) {
        (StatusCode::OK, "{\"health\":\"true\"}\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "{\"health\":\"false\"}\n")
    }
}

/// Serves `/metrics` and `/health` on `listener` until `stop`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    node: Arc<Node>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let app = axum::Router::new()
        .route("/metrics", get(metrics_page))
        .route("/health", get(health))
        .with_state(node);
    axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
}

/// The address of a metrics URL (`http://host:port`).
pub fn addr_of(url: &str) -> Option<SocketAddr> {
    use std::net::ToSocketAddrs;
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    rest.trim_end_matches('/').to_socket_addrs().ok()?.next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_count_everything() {
        let h = Histogram::new();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(20));
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"0.001\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.004\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"8.192\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count 3\n"), "{out}");
    }
}
