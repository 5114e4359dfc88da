//! The controller manager's metrics, under Kubernetes' work queue names so the same
//! dashboards read them: `workqueue_depth{name}` (keys due and waiting),
//! `workqueue_work_duration_seconds{name}` (how long reconciles take) and
//! `workqueue_retries_total{name}` (reconciles that failed and were retried). One registry
//! per process, rendered in Prometheus' text format onto the master's `/metrics`.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// Upper bounds of the duration buckets, in seconds (Kubernetes' work queue buckets:
/// 10 ns to 10 s by powers of ten).
const BUCKETS: [f64; 10] = [1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0];

/// One controller's numbers.
#[derive(Debug, Default)]
pub struct ControllerMetrics {
    pub depth: Arc<AtomicUsize>,
    retries: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl ControllerMetrics {
    /// Records one reconcile that took `took` and failed or not.
    pub fn observe(&self, took: Duration, failed: bool) {
        let seconds = took.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(
            took.as_nanos().min(u128::from(u64::MAX)) as u64,
            Ordering::Relaxed,
        );
        if failed {
            self.retries.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn registry() -> &'static Mutex<BTreeMap<&'static str, Arc<ControllerMetrics>>> {
    static REGISTRY: OnceLock<Mutex<BTreeMap<&'static str, Arc<ControllerMetrics>>>> =
        OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(BTreeMap::new()))
}

/// The metrics of the controller `name` (the same ones across leadership terms).
pub fn of(name: &'static str) -> Arc<ControllerMetrics> {
    registry()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(name)
        .or_default()
        .clone()
}

/// A boxed reconcile future.
pub type Reconciling<E> =
    Pin<Box<dyn Future<Output = Result<keel_client::runtime::Action, E>> + Send>>;

/// `reconcile`, timed into `metrics`.
pub fn timed<K, S, E, F, Fut>(
    metrics: Arc<ControllerMetrics>,
    reconcile: F,
) -> impl Fn(Arc<K>, Arc<S>) -> Reconciling<E> + Send + Sync + 'static
where
    K: Send + Sync + 'static,
    S: Send + Sync + 'static,
    E: Send + 'static,
    F: Fn(Arc<K>, Arc<S>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<keel_client::runtime::Action, E>> + Send + 'static,
{
    move |object, state| {
        let metrics = metrics.clone();
        let running = reconcile(object, state);
        Box::pin(async move {
            let started = Instant::now();
            let result = running.await;
            metrics.observe(started.elapsed(), result.is_err());
            result
        })
    }
}

/// Every controller's metrics in Prometheus' text format.
pub fn render(out: &mut String) {
    use std::fmt::Write;
    let all: Vec<(&'static str, Arc<ControllerMetrics>)> = registry()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|(n, m)| (*n, m.clone()))
        .collect();
    if all.is_empty() {
        return;
    }
    let _ = writeln!(out, "# HELP workqueue_depth Current depth of workqueue");
    let _ = writeln!(out, "# TYPE workqueue_depth gauge");
    for (name, m) in &all {
        let _ = writeln!(
            out,
            "workqueue_depth{{name=\"{name}\"}} {}",
            m.depth.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        out,
        "# HELP workqueue_retries_total Total number of retries handled by workqueue"
    );
    let _ = writeln!(out, "# TYPE workqueue_retries_total counter");
    for (name, m) in &all {
        let _ = writeln!(
            out,
            "workqueue_retries_total{{name=\"{name}\"}} {}",
            m.retries.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(out, "# HELP workqueue_work_duration_seconds How long in seconds processing an item from workqueue takes.");
    let _ = writeln!(out, "# TYPE workqueue_work_duration_seconds histogram");
    for (name, m) in &all {
        for (i, bound) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "workqueue_work_duration_seconds_bucket{{name=\"{name}\",le=\"{bound:e}\"}} {}",
                m.buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = m.count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "workqueue_work_duration_seconds_bucket{{name=\"{name}\",le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "workqueue_work_duration_seconds_sum{{name=\"{name}\"}} {}",
            m.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9
        );
        let _ = writeln!(
            out,
            "workqueue_work_duration_seconds_count{{name=\"{name}\"}} {count}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_cumulative_buckets_and_failures_count_as_retries() {
        let m = of("metrics-test");
        m.observe(Duration::from_micros(50), false);
        m.observe(Duration::from_millis(50), true);
        m.depth.store(7, Ordering::Relaxed);
        let mut out = String::new();
        render(&mut out);
        assert!(
            out.contains("workqueue_depth{name=\"metrics-test\"} 7\n"),
            "{out}"
        );
        assert!(
            out.contains("workqueue_retries_total{name=\"metrics-test\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains(
                "workqueue_work_duration_seconds_bucket{name=\"metrics-test\",le=\"1e-4\"} 1\n"
            ),
            "{out}"
        );
        assert!(
            out.contains(
                "workqueue_work_duration_seconds_bucket{name=\"metrics-test\",le=\"1e-1\"} 2\n"
            ),
            "{out}"
        );
        assert!(
            out.contains("workqueue_work_duration_seconds_count{name=\"metrics-test\"} 2\n"),
            "{out}"
        );
    }
}
