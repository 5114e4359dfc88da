//! Closed-loop workloads (put, get, txn CAS): one worker per client, each op timed.

use anyhow::Context;
use rand::SeedableRng;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use keel_proto::etcdserverpb::kv_client::KvClient;
use keel_proto::etcdserverpb::{
    compare, request_op, Compare, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use rand::rngs::StdRng;
use tonic::transport::Channel;
use tonic::Status;

use super::*;

/// What a run produced (merged over workers).
pub(super) struct Outcome {
    pub(super) hist: Histogram<u64>,
    pub(super) ops: u64,
    pub(super) errors: u64,
    pub(super) conflicts: u64,
    pub(super) elapsed: Duration,
    /// Longest time without a successful op (from the start, between successes, and from the
    /// last success to the end): a leader failover shows up here.
    pub(super) max_gap: Duration,
    pub(super) first_error: Option<String>,
}

impl Outcome {
    pub(super) fn new() -> anyhow::Result<Outcome> {
        Ok(Outcome {
            hist: new_histogram()?,
            ops: 0,
            errors: 0,
            conflicts: 0,
            elapsed: Duration::ZERO,
            max_gap: Duration::ZERO,
            first_error: None,
        })
    }

    pub(super) fn merge(&mut self, other: Outcome) -> anyhow::Result<()> {
        self.hist.add(&other.hist).context("merging histograms")?;
        self.ops += other.ops;
        self.errors += other.errors;
        self.conflicts += other.conflicts;
        self.max_gap = self.max_gap.max(other.max_gap);
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        Ok(())
    }

    pub(super) fn record_error(&mut self, status: &Status) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(format!("{:?}: {}", status.code(), status.message()));
        }
    }
}

/// Shared state of the closed-loop workers.
pub(super) struct LoopCtx {
    pub(super) kind: Workload,
    /// Next op number to claim.
    pub(super) next: AtomicU64,
    pub(super) total: u64,
    pub(super) deadline: Option<Instant>,
    pub(super) keys: KeyGen,
    pub(super) value: Vec<u8>,
    pub(super) timeout: Duration,
    /// Puts per transaction of the fill workload.
    pub(super) txn_ops: u64,
    pub(super) gaps: GapTracker,
}

/// The longest stretch without a successful op, over all workers, without a shared lock: each
/// success moves a shared "last success" mark forward and measures how far it moved.
pub(super) struct GapTracker {
    start: Instant,
    last_ok_ns: AtomicU64,
    max_gap_ns: AtomicU64,
}

impl GapTracker {
    pub(super) fn new(start: Instant) -> GapTracker {
        GapTracker {
            start,
            last_ok_ns: AtomicU64::new(0),
            max_gap_ns: AtomicU64::new(0),
        }
    }

    /// Records a success that completed at `at`.
    pub(super) fn success(&self, at: Instant) {
        let now = nanos(at.saturating_duration_since(self.start));
        let before = self.last_ok_ns.fetch_max(now, Ordering::Relaxed);
        if now > before {
            self.max_gap_ns.fetch_max(now - before, Ordering::Relaxed);
        }
    }

    /// The longest gap, counting the stretch from the last success to `end`.
    pub(super) fn longest(&self, end: Instant) -> Duration {
        let end = nanos(end.saturating_duration_since(self.start));
        let tail = end.saturating_sub(self.last_ok_ns.load(Ordering::Relaxed));
        Duration::from_nanos(self.max_gap_ns.load(Ordering::Relaxed).max(tail))
    }
}

/// Runs `total` ops of `kind` with `--clients` workers; `sequential` makes op `i` use
/// key `i` (pre-population) instead of a random key. A worker whose request fails moves to the
/// next connection, as an etcd client moves to another endpoint, so a dead member stalls only
/// the requests it had in flight.
pub(super) async fn closed_loop(
    plan: &Plan,
    channels: &[Channel],
    kind: Workload,
    total: u64,
    sequential: bool,
) -> anyhow::Result<Outcome> {
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let start = Instant::now();
    let ctx = Arc::new(LoopCtx {
        kind,
        next: AtomicU64::new(0),
        total,
        deadline: plan.duration.map(|d| start + d),
        keys: plan.keys.clone(),
        value: random_value(&mut rng, plan.val_size),
        timeout: plan.timeout,
        txn_ops: plan.txn_ops,
        gaps: GapTracker::new(start),
    });
    let mut handles = Vec::with_capacity(plan.clients);
    for i in 0..plan.clients {
        let channels = channels.to_vec();
        handles.push(tokio::spawn(worker(
            channels,
            i,
            Arc::clone(&ctx),
            sequential,
        )));
    }
    let mut outcome = Outcome::new()?;
    for h in handles {
        outcome.merge(h.await.context("bench worker panicked")??)?;
    }
    let end = Instant::now();
    outcome.elapsed = end - start;
    outcome.max_gap = ctx.gaps.longest(end);
    Ok(outcome)
}

pub(super) async fn with_timeout<T>(
    limit: Duration,
    fut: impl std::future::Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, Status> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.map(tonic::Response::into_inner),
        Err(_) => Err(Status::deadline_exceeded(format!(
            "no response within {limit:?}"
        ))),
    }
}

pub(super) async fn worker(
    channels: Vec<Channel>,
    first: usize,
    ctx: Arc<LoopCtx>,
    sequential: bool,
) -> anyhow::Result<Outcome> {
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let mut out = Outcome::new()?;
    let mut conn = first % channels.len();
    let mut kv = KvClient::new(channels[conn].clone());
    loop {
        let i = ctx.next.fetch_add(1, Ordering::Relaxed);
        if i >= ctx.total || ctx.deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let key = if sequential {
            ctx.keys.key(i)
        } else {
            ctx.keys.random_key(&mut rng)
        };
        match one_op(&mut kv, &ctx, key, i).await {
            Ok((latency, conflict)) => {
                ctx.gaps.success(Instant::now());
                out.hist.saturating_record(micros(latency).max(1));
                out.ops += 1;
                if conflict {
                    out.conflicts += 1;
                }
            }
            Err(status) => {
                out.record_error(&status);
                conn = (conn + 1) % channels.len();
                kv = KvClient::new(channels[conn].clone());
            }
        }
    }
    Ok(out)
}

/// One measured op (the `op`th of the run): its latency and whether it was a (txn-cas)
/// conflict.
pub(super) async fn one_op(
    kv: &mut KvClient<Channel>,
    ctx: &LoopCtx,
    key: Vec<u8>,
    op: u64,
) -> Result<(Duration, bool), Status> {
    let put = |key: Vec<u8>| PutRequest {
        key,
        value: ctx.value.clone(),
        ..Default::default()
    };
    match ctx.kind {
        Workload::Put | Workload::WatchLatency => {
            let start = Instant::now();
            with_timeout(ctx.timeout, kv.put(put(key))).await?;
            Ok((start.elapsed(), false))
        }
        Workload::GetLinearizable | Workload::GetSerializable => {
            let req = RangeRequest {
                key,
                serializable: ctx.kind == Workload::GetSerializable,
                ..Default::default()
            };
            let start = Instant::now();
            with_timeout(ctx.timeout, kv.range(req)).await?;
            Ok((start.elapsed(), false))
        }
        Workload::TxnCas => {
            let read = with_timeout(
                ctx.timeout,
                kv.range(RangeRequest {
                    key: key.clone(),
                    ..Default::default()
                }),
            )
            .await?;
            // A missing key has mod_revision 0, which the comparison also matches.
            let rev = read.kvs.first().map_or(0, |kv| kv.mod_revision);
            let txn = TxnRequest {
                compare: vec![Compare {
                    result: compare::CompareResult::Equal as i32,
                    target: compare::CompareTarget::Mod as i32,
                    key: key.clone(),
                    target_union: Some(compare::TargetUnion::ModRevision(rev)),
                    range_end: Vec::new(),
                }],
                success: vec![RequestOp {
                    request: Some(request_op::Request::RequestPut(put(key))),
                }],
                failure: Vec::new(),
            };
            let start = Instant::now();
            let resp = with_timeout(ctx.timeout, kv.txn(txn)).await?;
            Ok((start.elapsed(), !resp.succeeded))
        }
        Workload::Fill => {
            // Op `op` writes keys [op * txn_ops, (op + 1) * txn_ops) of the key space.
            let first = op.saturating_mul(ctx.txn_ops);
            let end = first.saturating_add(ctx.txn_ops).min(ctx.keys.space);
            let txn = TxnRequest {
                compare: Vec::new(),
                success: (first..end)
                    .map(|i| RequestOp {
                        request: Some(request_op::Request::RequestPut(put(ctx.keys.key(i)))),
                    })
                    .collect(),
                failure: Vec::new(),
            };
            let start = Instant::now();
            with_timeout(ctx.timeout, kv.txn(txn)).await?;
            Ok((start.elapsed(), false))
        }
    }
}
