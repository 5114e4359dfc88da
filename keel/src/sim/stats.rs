//! Counts of what the sim wrote, logged as rates once a minute: the load it puts on the
//! masters, read off its own log.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// How often the rates are logged.
const EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct Stats {
    pub lease_renewals: AtomicU64,
    pub node_statuses: AtomicU64,
    pub pod_statuses: AtomicU64,
    pub pod_deletions: AtomicU64,
    pub failed_writes: AtomicU64,
}

/// One reading of every counter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Reading {
    lease_renewals: u64,
    node_statuses: u64,
    pod_statuses: u64,
    pod_deletions: u64,
    failed_writes: u64,
}

impl Stats {
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn read(&self) -> Reading {
        Reading {
            lease_renewals: self.lease_renewals.load(Ordering::Relaxed),
            node_statuses: self.node_statuses.load(Ordering::Relaxed),
            pod_statuses: self.pod_statuses.load(Ordering::Relaxed),
            pod_deletions: self.pod_deletions.load(Ordering::Relaxed),
            failed_writes: self.failed_writes.load(Ordering::Relaxed),
        }
    }

    /// Logs the rates of the last minute until `shutdown`.
    pub async fn report(&self, shutdown: CancellationToken) {
        let mut last = (Instant::now(), self.read());
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(EVERY) => {}
            }
            let now = (Instant::now(), self.read());
            let secs = now.0.duration_since(last.0).as_secs_f64().max(f64::EPSILON);
            let rate = |pick: fn(&Reading) -> u64| {
                pick(&now.1).saturating_sub(pick(&last.1)) as f64 / secs
            };
            tracing::info!(
                lease_renewals_per_s = format!("{:.1}", rate(|r| r.lease_renewals)),
                node_statuses_per_s = format!("{:.2}", rate(|r| r.node_statuses)),
                pod_statuses_per_s = format!("{:.1}", rate(|r| r.pod_statuses)),
                pod_deletions_per_s = format!("{:.1}", rate(|r| r.pod_deletions)),
                failed_writes = now.1.failed_writes.saturating_sub(last.1.failed_writes),
                "sim write rates"
            );
            last = now;
        }
    }
}
