//! Reports: per run a directory with the history, the nemesis timeline, the verdict (with the
//! events of a small failing sub-history) and a plot; across runs an index.

pub mod plot;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::check::{Validity, Verdict};
use crate::history::{pair, write_jsonl, Event, Kind};
use crate::nemesis::Window;
use crate::Error;

/// Client-side numbers of one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpStats {
    pub ops: u64,
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
    pub seconds: f64,
    /// Acknowledged operations per second.
    pub ok_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Counts and latency percentiles of the completed operations.
pub fn op_stats(events: &[Event]) -> OpStats {
    let ops = pair(events);
    let mut lat: Vec<f64> = Vec::new();
    let mut s = OpStats {
        ops: ops.len() as u64,
        ..Default::default()
    };
    for o in &ops {
        match o.kind() {
            Kind::Ok => {
                s.ok += 1;
                if let Some(c) = o.complete {
                    lat.push(c.time.saturating_sub(o.invoke.time) as f64 / 1e6);
                }
            }
            Kind::Fail => s.fail += 1,
            _ => s.info += 1,
        }
    }
    lat.sort_by(f64::total_cmp);
    let q = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    s.p50_ms = q(0.5);
    s.p99_ms = q(0.99);
    s.max_ms = lat.last().copied().unwrap_or(0.0);
    s.seconds = events.iter().map(|e| e.time).max().unwrap_or(0) as f64 / 1e9;
    if s.seconds > 0.0 {
        s.ok_per_sec = s.ok as f64 / s.seconds;
    }
    s
}

/// Everything verdict.json holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub name: String,
    pub workload: String,
    pub nemesis: String,
    pub target: String,
    pub nodes: usize,
    pub time_limit_s: u64,
    /// Whether members ran in network namespaces (false: loopback).
    pub namespaces: bool,
    pub valid: Validity,
    pub verdict: Verdict,
    pub stats: OpStats,
    pub faults: usize,
    /// The invocations and completions of the witness operations.
    pub failing_subhistory: Vec<Event>,
    /// Set when the run could not complete (then `valid` is unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The witness's events: each witness invocation and its completion.
pub fn subhistory(events: &[Event], witness: &[u64]) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::new();
    for op in pair(events) {
        if witness.contains(&op.invoke.index) {
            out.push(op.invoke.clone());
            out.extend(op.complete.cloned());
        }
    }
    out.sort_by_key(|e| e.index);
    out
}

/// Writes history.jsonl, nemesis.jsonl, verdict.json and latency.svg into `dir`.
pub fn write_run(
    dir: &Path,
    report: &RunReport,
    events: &[Event],
    timeline: &[Window],
    extra: &Option<serde_json::Value>,
) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    write_jsonl(&dir.join("history.jsonl"), events)?;
    let mut nem = String::new();
    for w in timeline {
        nem.push_str(&serde_json::to_string(w)?);
        nem.push('\n');
    }
    let path = dir.join("nemesis.jsonl");
    std::fs::write(&path, nem).map_err(|e| Error::io(&path, e))?;
    let path = dir.join("verdict.json");
    std::fs::write(&path, serde_json::to_string_pretty(report)?)
        .map_err(|e| Error::io(&path, e))?;
    if let Some(x) = extra {
        let path = dir.join("watch.json");
        std::fs::write(&path, serde_json::to_string(x)?).map_err(|e| Error::io(&path, e))?;
    }
    let title = format!(
        "{} / {} / {}: {:?}",
        report.target, report.workload, report.nemesis, report.valid
    );
    let path = dir.join("latency.svg");
    std::fs::write(&path, plot::svg(events, timeline, &title)).map_err(|e| Error::io(&path, e))
}

/// Reads every `*/verdict.json` under `out`.
pub fn collect(out: &Path) -> Vec<(PathBuf, RunReport)> {
    let mut runs = Vec::new();
    let Ok(entries) = std::fs::read_dir(out) else {
        return runs;
    };
    for e in entries.flatten() {
        let path = e.path().join("verdict.json");
        if let Ok(text) = std::fs::read_to_string(&path) {
            if let Ok(r) = serde_json::from_str::<RunReport>(&text) {
                runs.push((e.path(), r));
            }
        }
    }
    runs.sort_by(|a, b| a.0.cmp(&b.0));
    runs
}

/// A table of runs: one row per run.
pub fn table(runs: &[(PathBuf, RunReport)]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "| run | target | workload | nemesis | valid | ops | ok | info | ok/s | p50 ms | p99 ms | max ms | faults |");
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (_, r) in runs {
        let st = &r.stats;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:?} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.0} | {} |",
            r.name,
            r.target,
            r.workload,
            r.nemesis,
            r.valid,
            st.ops,
            st.ok,
            st.info,
            st.ok_per_sec,
            st.p50_ms,
            st.p99_ms,
            st.max_ms,
            r.faults
        );
    }
    s
}

/// Rewrites `out/index.md` and `out/index.json` from the runs found there.
pub fn write_index(out: &Path) -> Result<String, Error> {
    let runs = collect(out);
    let t = table(&runs);
    let invalid = runs
        .iter()
        .filter(|(_, r)| r.valid == Validity::Invalid)
        .count();
    let md = format!(
        "# keel-jepsen runs\n\n{} runs, {invalid} invalid.\n\n{t}",
        runs.len()
    );
    let path = out.join("index.md");
    std::fs::write(&path, &md).map_err(|e| Error::io(&path, e))?;
    let path = out.join("index.json");
    let list: Vec<&RunReport> = runs.iter().map(|(_, r)| r).collect();
    std::fs::write(&path, serde_json::to_string_pretty(&list)?).map_err(|e| Error::io(&path, e))?;
    Ok(t)
}

/// One row per (workload, nemesis) present in either set of runs: each side's validity,
/// throughput and latency (runs of the same pair are averaged).
pub fn compare(left: &[(PathBuf, RunReport)], right: &[(PathBuf, RunReport)]) -> String {
    let mut keys: Vec<(String, String)> = left
        .iter()
        .chain(right)
        .map(|(_, r)| (r.workload.clone(), r.nemesis.clone()))
        .collect();
    keys.sort();
    keys.dedup();
    let side = |runs: &[(PathBuf, RunReport)], w: &str, n: &str| -> String {
        let rs: Vec<&RunReport> = runs
            .iter()
            .map(|(_, r)| r)
            .filter(|r| r.workload == w && r.nemesis == n)
            .collect();
        if rs.is_empty() {
            return "- | - | - | - | -".into();
        }
        let k = rs.len() as f64;
        let avg = |f: fn(&OpStats) -> f64| rs.iter().map(|r| f(&r.stats)).sum::<f64>() / k;
        let valid: Vec<String> = rs
            .iter()
            .map(|r| format!("{:?}", r.valid).to_lowercase())
            .collect();
        format!(
            "{} | {:.0} | {:.1} | {:.1} | {:.1}",
            valid.join(","),
            avg(|s| s.ops as f64),
            avg(|s| s.ok_per_sec),
            avg(|s| s.p50_ms),
            avg(|s| s.p99_ms)
        )
    };
    let (ln, rn) = (
        left.first()
            .map_or("left".to_string(), |(_, r)| r.target.clone()),
        right
            .first()
            .map_or("right".to_string(), |(_, r)| r.target.clone()),
    );
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| workload | nemesis | {ln} valid | {ln} ops | {ln} ok/s | {ln} p50 ms | {ln} p99 ms | {rn} valid | {rn} ops | {rn} ok/s | {rn} p50 ms | {rn} p99 ms |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (w, n) in keys {
        let _ = writeln!(
            s,
            "| {w} | {n} | {} | {} |",
            side(left, &w, &n),
            side(right, &w, &n)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn stats_count_outcomes_and_take_latency_of_acknowledged_operations_only() {
        let ev = |index, process, kind, time| Event {
            index,
            process,
            kind,
            f: "write".into(),
            key: None,
            value: Value::Null,
            time,
            node: None,
            error: None,
        };
        let events = vec![
            ev(0, 0, Kind::Invoke, 0),
            ev(1, 0, Kind::Ok, 4_000_000),
            ev(2, 1, Kind::Invoke, 0),
            ev(3, 1, Kind::Info, 2_000_000_000),
            ev(4, 2, Kind::Invoke, 0),
            ev(5, 2, Kind::Fail, 1_000_000),
        ];
        let s = op_stats(&events);
        assert_eq!((s.ops, s.ok, s.fail, s.info), (3, 1, 1, 1));
        assert_eq!(s.p50_ms, 4.0);
        assert_eq!(s.max_ms, 4.0);
        assert_eq!(s.seconds, 2.0);
        assert_eq!(
            subhistory(&events, &[2])
                .iter()
                .map(|e| e.index)
                .collect::<Vec<_>>(),
            vec![2, 3]
        );
    }
}
