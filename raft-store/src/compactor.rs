//! Automatic compaction (etcd's `--auto-compaction-mode` and `--auto-compaction-retention`),
//! decided by the leader: `periodic` keeps the history of the last retention period, `revision`
//! keeps the last N revisions. The decision is a pure function of observed (time, revision)
//! samples; the leader's loop proposes the compaction it returns.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How much history to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Everything written in the last period.
    Periodic(Duration),
    /// The last N revisions.
    Revisions(i64),
}

impl Retention {
    /// How often the leader looks: a tenth of the period (between 1 s and an hour), or every
    /// 5 minutes for revision retention, as etcd does.
    pub fn interval(&self) -> Duration {
        match self {
            Retention::Periodic(p) => {
                (*p / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600))
            }
            Retention::Revisions(_) => Duration::from_secs(300),
        }
    }

    /// Parses etcd's flag pair: mode `periodic` takes a duration (`90m`, `1h`, `30s`) or a number
    /// of hours; mode `revision` a count. A zero retention turns compaction off (`None`).
    pub fn parse(mode: &str, retention: &str) -> Result<Option<Retention>, String> {
        let bad =
            || format!("--auto-compaction-retention {retention:?} is not valid for mode {mode}");
        match mode {
            "periodic" => {
                let secs = if let Ok(hours) = retention.parse::<u64>() {
                    hours * 3600
                } else {
                    let (num, unit) = retention.split_at(retention.len().saturating_sub(1));
                    let n: u64 = num.parse().map_err(|_| bad())?;
                    match unit {
                        "s" => n,
                        "m" => n * 60,
                        "h" => n * 3600,
                        _ => return Err(bad()),
                    }
                };
                Ok((secs > 0).then(|| Retention::Periodic(Duration::from_secs(secs))))
            }
            "revision" => {
                let n: i64 = retention.parse().map_err(|_| bad())?;
                if n < 0 {
                    return Err(bad());
                }
                Ok((n > 0).then_some(Retention::Revisions(n)))
            }
            other => Err(format!(
                "--auto-compaction-mode must be periodic or revision, not {other:?}"
            )),
        }
    }
}

/// The leader's compaction state.
#[derive(Debug)]
pub struct Compactor {
    retention: Retention,
    samples: VecDeque<(Instant, i64)>,
    compacted: i64,
}

impl Compactor {
    pub fn new(retention: Retention) -> Self {
        Self {
            retention,
            samples: VecDeque::new(),
            compacted: 0,
        }
    }

    /// Observes the current revision at `now`; returns the revision to compact to, if any.
    pub fn tick(&mut self, now: Instant, current: i64) -> Option<i64> {
        let target = match self.retention {
            Retention::Revisions(keep) => current - keep,
            Retention::Periodic(period) => {
                self.samples.push_back((now, current));
                // The newest sample at least a period old marks where kept history begins.
                let mut target = None;
                while let Some(&(at, rev)) = self.samples.front() {
                    if now.duration_since(at) >= period {
                        target = Some(rev);
                        self.samples.pop_front();
                    } else {
                        break;
                    }
                }
                target?
            }
        };
        (target > self.compacted).then(|| {
            self.compacted = target;
            target
        })
    }

    /// Leadership moved: start over, as the new leader's history of samples is its own.
    pub fn reset(&mut self) {
        self.samples.clear();
    }

    /// A compaction failed (say, the revision was already compacted by an operator): forget it.
    pub fn failed(&mut self, to: i64, already_compacted: i64) {
        if self.compacted == to {
            self.compacted = already_compacted;
        }
    }
}

impl crate::node::Node {
    /// The leader's compaction loop; runs until dropped.
    pub async fn auto_compact(&self, retention: Retention) {
        let mut compactor = Compactor::new(retention);
        let mut tick = tokio::time::interval(retention.interval());
        let mut leading = false;
        loop {
            tick.tick().await;
            if !self.is_leader() {
                if leading {
                    compactor.reset();
                }
                leading = false;
                continue;
            }
            leading = true;
            let Some(to) = compactor.tick(Instant::now(), self.state().current_revision()) else {
                continue;
            };
            let req =
                crate::mvcc::WriteRequest::Compact(keel_proto::etcdserverpb::CompactionRequest {
                    revision: to,
                    physical: false,
                });
            match self.write(&req).await {
                Ok(_) => tracing::info!(revision = to, "auto-compacted"),
                Err(e) => {
                    tracing::warn!(revision = to, error = %e, "auto-compaction failed");
                    let compacted = self
                        .state()
                        .mvcc()
                        .map(|m| m.compacted_revision())
                        .unwrap_or(0);
                    compactor.failed(to, compacted);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_as_etcd_reads_them() {
        assert_eq!(
            Retention::parse("periodic", "1").expect("valid flag"),
            Some(Retention::Periodic(Duration::from_secs(3600)))
        );
        assert_eq!(
            Retention::parse("periodic", "90m").expect("valid flag"),
            Some(Retention::Periodic(Duration::from_secs(5400)))
        );
        assert_eq!(Retention::parse("periodic", "0").expect("valid flag"), None);
        assert_eq!(
            Retention::parse("revision", "1000").expect("valid flag"),
            Some(Retention::Revisions(1000))
        );
        assert!(Retention::parse("periodic", "soon").is_err());
        assert!(Retention::parse("hourly", "1").is_err());
    }

    #[test]
    fn periodic_keeps_the_last_period_of_history() {
        let start = Instant::now();
        let mut c = Compactor::new(Retention::Periodic(Duration::from_secs(10)));
        // Revisions grow by 100 a second; nothing is a period old for the first 10 s.
        for s in 0..10 {
            assert_eq!(
                c.tick(start + Duration::from_secs(s), 100 * s as i64 + 1),
                None
            );
        }
        assert_eq!(c.tick(start + Duration::from_secs(10), 1001), Some(1));
        assert_eq!(c.tick(start + Duration::from_secs(11), 1101), Some(101));
        // Idle: the revision stops growing, compaction catches up, then stops.
        assert_eq!(c.tick(start + Duration::from_secs(25), 1101), Some(1101));
        assert_eq!(c.tick(start + Duration::from_secs(40), 1101), None);
    }

    #[test]
    fn revision_mode_keeps_the_last_n_revisions() {
        let now = Instant::now();
        let mut c = Compactor::new(Retention::Revisions(100));
        assert_eq!(c.tick(now, 50), None);
        assert_eq!(c.tick(now, 150), Some(50));
        assert_eq!(c.tick(now, 150), None);
        assert_eq!(c.tick(now, 400), Some(300));
    }
}
