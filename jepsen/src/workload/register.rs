//! Register workload: reads, writes and compare-and-sets on many keys. Each key takes a bounded
//! number of operations before the processes move on to fresh keys, which keeps every key's
//! linearizability search small (as Jepsen's independent keys do).

use std::collections::HashMap;
use std::sync::PoisonError;
use std::sync::{Arc, Mutex};

use keel_proto::etcdserverpb::{
    compare, request_op, Compare, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use rand::Rng;
use serde_json::{json, Value};

use super::{Ctx, Outcome, Process};
use crate::client::timed;
use crate::Error;

/// Keys in use at once.
const ACTIVE_KEYS: u64 = 5;
/// Operations per key, roughly.
const OPS_PER_KEY: u64 = 120;

fn parse(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

async fn one(p: &mut Process, ctx: &Ctx, key: &str, last: &Mutex<HashMap<String, u64>>) {
    let mut kv = p.client.kv.clone();
    let k = key.as_bytes().to_vec();
    match rand::rng().random_range(0..10) {
        0..=3 => {
            let req = RangeRequest {
                key: k,
                ..Default::default()
            };
            let out = p
                .op("read", Some(key), Value::Null, async {
                    match timed(kv.range(req)).await {
                        Ok(r) => {
                            let v = r.kvs.first().and_then(|kv| parse(&kv.value));
                            Outcome::Ok(json!(v))
                        }
                        // A read changes nothing: whatever went wrong, it did not happen.
                        Err(s) => Outcome::Fail(crate::client::describe(&s)),
                    }
                })
                .await;
            if let Outcome::Ok(Value::Number(n)) = out {
                if let Some(n) = n.as_u64() {
                    last.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(key.to_string(), n);
                }
            }
        }
        4..=6 => {
            let v = ctx.next_value();
            let req = PutRequest {
                key: k,
                value: v.to_string().into_bytes(),
                ..Default::default()
            };
            p.op("write", Some(key), json!(v), async {
                match timed(kv.put(req)).await {
                    Ok(_) => Outcome::Ok(Value::Null),
                    Err(s) => Outcome::from_status(&s),
                }
            })
            .await;
        }
        _ => {
            let from = last
                .lock()
                .ok()
                .and_then(|l| l.get(key).copied())
                .unwrap_or_else(|| {
                    rand::rng().random_range(
                        1..=ctx
                            .counter
                            .load(std::sync::atomic::Ordering::Relaxed)
                            .max(1),
                    )
                });
            let to = ctx.next_value();
            let req = TxnRequest {
                compare: vec![Compare {
                    result: compare::CompareResult::Equal as i32,
                    target: compare::CompareTarget::Value as i32,
                    key: k.clone(),
                    target_union: Some(compare::TargetUnion::Value(from.to_string().into_bytes())),
                    range_end: Vec::new(),
                }],
                success: vec![RequestOp {
                    request: Some(request_op::Request::RequestPut(PutRequest {
                        key: k,
                        value: to.to_string().into_bytes(),
                        ..Default::default()
                    })),
                }],
                failure: vec![],
            };
            p.op("cas", Some(key), json!([from, to]), async {
                match timed(kv.txn(req)).await {
                    Ok(r) => Outcome::Ok(json!(r.succeeded)),
                    Err(s) => Outcome::from_status(&s),
                }
            })
            .await;
        }
    }
}

pub async fn run(
    ctx: &Ctx,
    heal: impl std::future::Future<Output = ()>,
) -> Result<super::Extra, Error> {
    let issued = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let last: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let procs = ctx.processes().into_iter().map(|mut p| {
        let (ctx, issued, last) = (ctx.clone(), issued.clone(), last.clone());
        async move {
            while ctx.running() {
                let n = issued.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let generation = n / (OPS_PER_KEY * ACTIVE_KEYS);
                let key = format!(
                    "{}r{generation}-{}",
                    ctx.prefix,
                    rand::rng().random_range(0..ACTIVE_KEYS)
                );
                one(&mut p, &ctx, &key, &last).await;
                ctx.think().await;
            }
        }
    });
    futures::future::join_all(procs).await;
    heal.await;
    Ok(None)
}
