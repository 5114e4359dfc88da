//! Percentiles and the printed report (text and JSON).

use hdrhistogram::Histogram;

use super::*;

/// Latency percentiles in microseconds: p50, p90, p99, p99.9, max.
pub(super) fn percentiles(h: &Histogram<u64>) -> [u64; 5] {
    if h.is_empty() {
        return [0; 5];
    }
    [
        h.value_at_quantile(0.50),
        h.value_at_quantile(0.90),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
    ]
}

/// Microseconds → milliseconds with 3 decimals, as text.
pub(super) fn fmt_ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

/// Microseconds → milliseconds rounded to 3 decimals, as a number.
pub(super) fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

pub(super) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// One result row.
pub(super) struct Report {
    pub(super) label: String,
    pub(super) workload: &'static str,
    pub(super) ops: u64,
    pub(super) errors: u64,
    pub(super) conflicts: u64,
    pub(super) elapsed_s: f64,
    pub(super) ops_per_s: f64,
    pub(super) lat_us: [u64; 5],
    pub(super) max_gap_us: u64,
    pub(super) clients: usize,
    pub(super) conns: usize,
    pub(super) endpoints: usize,
}

impl Report {
    pub(super) fn new(plan: &Plan, o: &Outcome) -> Report {
        let elapsed_s = o.elapsed.as_secs_f64();
        Report {
            label: plan.label.clone(),
            workload: plan.workload.name(),
            ops: o.ops,
            errors: o.errors,
            conflicts: o.conflicts,
            elapsed_s,
            ops_per_s: if elapsed_s > 0.0 {
                o.ops as f64 / elapsed_s
            } else {
                0.0
            },
            lat_us: percentiles(&o.hist),
            max_gap_us: micros(o.max_gap),
            clients: plan.clients,
            conns: plan.conns,
            endpoints: plan.endpoints.len(),
        }
    }

    pub(super) fn header() -> String {
        format!(
            "{:<12} {:<16} {:>9} {:>7} {:>9} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10}",
            "label",
            "workload",
            "ops",
            "errors",
            "conflicts",
            "elapsed_s",
            "ops/s",
            "p50_ms",
            "p90_ms",
            "p99_ms",
            "p999_ms",
            "max_ms",
            "max_gap_ms"
        )
    }

    pub(super) fn row(&self) -> String {
        let [p50, p90, p99, p999, max] = self.lat_us;
        format!(
            "{:<12} {:<16} {:>9} {:>7} {:>9} {:>9.3} {:>10.1} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10}",
            self.label,
            self.workload,
            self.ops,
            self.errors,
            self.conflicts,
            self.elapsed_s,
            self.ops_per_s,
            fmt_ms(p50),
            fmt_ms(p90),
            fmt_ms(p99),
            fmt_ms(p999),
            fmt_ms(max),
            fmt_ms(self.max_gap_us)
        )
    }

    pub(super) fn json(&self) -> serde_json::Value {
        let [p50, p90, p99, p999, max] = self.lat_us;
        serde_json::json!({
            "label": self.label,
            "workload": self.workload,
            "ops": self.ops,
            "errors": self.errors,
            "conflicts": self.conflicts,
            "elapsed_s": round3(self.elapsed_s),
            "ops_per_s": round3(self.ops_per_s),
            "p50_ms": ms(p50),
            "p90_ms": ms(p90),
            "p99_ms": ms(p99),
            "p999_ms": ms(p999),
            "max_ms": ms(max),
            "max_gap_ms": ms(self.max_gap_us),
            "clients": self.clients,
            "conns": self.conns,
            "endpoints": self.endpoints,
        })
    }
}
