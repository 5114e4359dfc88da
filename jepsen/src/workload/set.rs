//! Set workload: processes add unique elements to a few keys, each key holding a comma-separated
//! list appended by compare-and-swap on its mod revision; some processes read the whole set now
//! and then; a final read after the faults healed must hold every acknowledged add exactly once.

use keel_proto::etcdserverpb::{
    compare, request_op, Compare, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use rand::Rng;
use serde_json::{json, Value};

use super::{Ctx, Outcome, Process};
use crate::client::{describe, prefix_end, timed};
use crate::Error;

const KEYS: u32 = 5;
/// Compare-and-swap attempts per add before it gives up (certainly without effect).
const ATTEMPTS: usize = 20;

fn elements(v: &[u8]) -> Vec<u64> {
    String::from_utf8_lossy(v)
        .split(',')
        .filter_map(|s| s.parse().ok())
        .collect()
}

async fn add(p: &mut Process, ctx: &Ctx, element: u64) {
    let key = format!("{}s{}", ctx.prefix, rand::rng().random_range(0..KEYS));
    let mut kv = p.client.kv.clone();
    let k = key.clone().into_bytes();
    p.op("add", Some(&key), json!(element), async {
        for _ in 0..ATTEMPTS {
            let current = match timed(kv.range(RangeRequest {
                key: k.clone(),
                ..Default::default()
            }))
            .await
            {
                Ok(r) => r.kvs.into_iter().next(),
                // Nothing was written yet in this attempt, nor in an earlier one (those failed
                // their compare).
                Err(s) => return Outcome::Fail(describe(&s)),
            };
            let (rev, mut value) =
                current.map_or((0, Vec::new()), |kv| (kv.mod_revision, kv.value));
            if !value.is_empty() {
                value.push(b',');
            }
            value.extend(element.to_string().into_bytes());
            let txn = TxnRequest {
                compare: vec![Compare {
                    result: compare::CompareResult::Equal as i32,
                    target: compare::CompareTarget::Mod as i32,
                    key: k.clone(),
                    target_union: Some(compare::TargetUnion::ModRevision(rev)),
                    range_end: Vec::new(),
                }],
                success: vec![RequestOp {
                    request: Some(request_op::Request::RequestPut(PutRequest {
                        key: k.clone(),
                        value,
                        ..Default::default()
                    })),
                }],
                failure: vec![],
            };
            match timed(kv.txn(txn)).await {
                Ok(r) if r.succeeded => return Outcome::Ok(json!(element)),
                Ok(_) => continue,
                Err(s) => return Outcome::from_status(&s),
            }
        }
        Outcome::Fail("too much contention".into())
    })
    .await;
}

/// Reads every key of the set in one range (one revision).
pub async fn read(p: &mut Process, ctx: &Ctx) -> Outcome {
    let prefix = format!("{}s", ctx.prefix).into_bytes();
    let mut kv = p.client.kv.clone();
    let req = RangeRequest {
        range_end: prefix_end(&prefix),
        key: prefix,
        ..Default::default()
    };
    p.op("read", None, Value::Null, async {
        match timed(kv.range(req)).await {
            Ok(r) => Outcome::Ok(json!(r
                .kvs
                .iter()
                .flat_map(|kv| elements(&kv.value))
                .collect::<Vec<_>>())),
            Err(s) => Outcome::Fail(describe(&s)),
        }
    })
    .await
}

pub async fn run(
    ctx: &Ctx,
    heal: impl std::future::Future<Output = ()>,
) -> Result<super::Extra, Error> {
    let procs = ctx.processes().into_iter().map(|mut p| {
        let ctx = ctx.clone();
        async move {
            while ctx.running() {
                if rand::rng().random_bool(0.05) {
                    read(&mut p, &ctx).await;
                } else {
                    let e = ctx.next_value();
                    add(&mut p, &ctx, e).await;
                }
                ctx.think().await;
            }
        }
    });
    futures::future::join_all(procs).await;
    heal.await;
    final_read(ctx, FinalRead::Set).await
}

/// Which final read a workload takes after the faults healed.
#[derive(Debug, Clone, Copy)]
pub enum FinalRead {
    Set,
    Bank,
    /// The lock's data key history from this revision.
    LockData(i64),
}

/// The final read: through each member in turn until one answers.
pub async fn final_read(ctx: &Ctx, which: FinalRead) -> Result<super::Extra, Error> {
    let mut finals: Vec<Process> = (0..ctx.clients.len())
        .map(|n| {
            Process::new(
                ctx.concurrency * 1000 + n,
                1,
                n,
                ctx.clients[n].clone(),
                ctx.rec.clone(),
            )
        })
        .collect();
    for _ in 0..10 {
        for p in &mut finals {
            let out = match which {
                FinalRead::Set => read(p, ctx).await,
                FinalRead::Bank => super::bank::read(p, ctx).await,
                FinalRead::LockData(from) => super::lock::data_history(p, ctx, from).await,
            };
            if let Outcome::Ok(_) = out {
                return Ok(None);
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    Err(Error::NotReady("no member answered the final read".into()))
}
