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
            first_error: None,
        })
    }

    pub(super) fn merge(&mut self, other: Outcome) -> anyhow::Result<()> {
        self.hist.add(&other.hist).context("merging histograms")?;
        self.ops += other.ops;
        self.errors += other.errors;
        self.conflicts += other.conflicts;
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
}

/// Runs `total` ops of `kind` with `--clients` workers; `sequential` makes op `i` use
/// key `i` (pre-population) instead of a random key.
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
    });
    let mut handles = Vec::with_capacity(plan.clients);
    for i in 0..plan.clients {
        let kv = KvClient::new(channels[i % channels.len()].clone());
        handles.push(tokio::spawn(worker(kv, Arc::clone(&ctx), sequential)));
    }
    let mut outcome = Outcome::new()?;
    for h in handles {
        outcome.merge(h.await.context("bench worker panicked")??)?;
    }
    outcome.elapsed = start.elapsed();
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
    mut kv: KvClient<Channel>,
    ctx: Arc<LoopCtx>,
    sequential: bool,
) -> anyhow::Result<Outcome> {
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let mut out = Outcome::new()?;
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
        match one_op(&mut kv, &ctx, key).await {
            Ok((latency, conflict)) => {
                out.hist.saturating_record(micros(latency).max(1));
                out.ops += 1;
                if conflict {
                    out.conflicts += 1;
                }
            }
            Err(status) => out.record_error(&status),
        }
    }
    Ok(out)
}

/// One measured op: its latency and whether it was a (txn-cas) conflict.
pub(super) async fn one_op(
    kv: &mut KvClient<Channel>,
    ctx: &LoopCtx,
    key: Vec<u8>,
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
    }
}
