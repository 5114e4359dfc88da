//! Lease-lock workload: a process grants a short lease, takes the lock key under it if nobody
//! holds it (the key's revision is its fencing token), then writes the data key a few times, each
//! in a transaction that checks the lock key still has the token's revision, and releases.
//! Processes that stall (paused, partitioned) lose the lease; their late writes must be fenced off.

use std::time::Duration;

use futures::StreamExt;
use keel_proto::etcdserverpb::{
    compare, request_op, watch_request, Compare, DeleteRangeRequest, LeaseGrantRequest, PutRequest,
    RangeRequest, RequestOp, TxnRequest, WatchCreateRequest, WatchRequest,
};
use serde_json::{json, Value};

use super::{Ctx, Outcome, Process};
use crate::client::{describe, timed};
use crate::Error;

/// The lease's time to live: short, so stalled holders lose it within a fault window.
const TTL: i64 = 2;
const WRITES_PER_HOLD: usize = 3;

fn fence(lock: &[u8], token: i64) -> Compare {
    Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Mod as i32,
        key: lock.to_vec(),
        target_union: Some(compare::TargetUnion::ModRevision(token)),
        range_end: Vec::new(),
    }
}

async fn hold(p: &mut Process, ctx: &Ctx) {
    let lock = format!("{}lock", ctx.prefix);
    let data = format!("{}data", ctx.prefix).into_bytes();
    let mut lease = p.client.lease.clone();
    let Ok(grant) = timed(lease.lease_grant(LeaseGrantRequest { ttl: TTL, id: 0 })).await else {
        tokio::time::sleep(Duration::from_millis(200)).await;
        return;
    };
    let mut kv = p.client.kv.clone();
    let acquire = TxnRequest {
        compare: vec![Compare {
            result: compare::CompareResult::Equal as i32,
            target: compare::CompareTarget::Create as i32,
            key: lock.clone().into_bytes(),
            target_union: Some(compare::TargetUnion::CreateRevision(0)),
            range_end: Vec::new(),
        }],
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: lock.clone().into_bytes(),
                value: p.id.to_string().into_bytes(),
                lease: grant.id,
                ..Default::default()
            })),
        }],
        failure: vec![],
    };
    let got = p
        .op("acquire", Some(&lock), json!({"lease": grant.id}), async {
            match timed(kv.txn(acquire)).await {
                Ok(r) if r.succeeded => Outcome::Ok(
                    json!({"lease": grant.id, "token": r.header.map_or(0, |h| h.revision)}),
                ),
                Ok(_) => Outcome::Fail("held".into()),
                Err(s) => Outcome::from_status(&s),
            }
        })
        .await;
    let Outcome::Ok(v) = got else {
        tokio::time::sleep(Duration::from_millis(50)).await;
        return;
    };
    let token = v["token"].as_i64().unwrap_or(0);
    for n in 0..WRITES_PER_HOLD {
        let value = format!("t{token}-p{}-n{n}", p.id);
        let txn = TxnRequest {
            compare: vec![fence(lock.as_bytes(), token)],
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: data.clone(),
                    value: value.clone().into_bytes(),
                    ..Default::default()
                })),
            }],
            failure: vec![],
        };
        let out = p
            .op(
                "write",
                None,
                json!({"token": token, "value": value}),
                async {
                    match timed(kv.txn(txn)).await {
                        Ok(r) if r.succeeded => {
                            Outcome::Ok(json!({"revision": r.header.map_or(0, |h| h.revision)}))
                        }
                        Ok(_) => Outcome::Fail("fenced off".into()),
                        Err(s) => Outcome::from_status(&s),
                    }
                },
            )
            .await;
        if !matches!(out, Outcome::Ok(_)) {
            return;
        }
        ctx.think().await;
    }
    let release = TxnRequest {
        compare: vec![fence(lock.as_bytes(), token)],
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestDeleteRange(
                DeleteRangeRequest {
                    key: lock.clone().into_bytes(),
                    ..Default::default()
                },
            )),
        }],
        failure: vec![],
    };
    p.op("release", Some(&lock), json!({"token": token}), async {
        match timed(kv.txn(release)).await {
            Ok(r) => Outcome::Ok(json!(r.succeeded)),
            Err(s) => Outcome::from_status(&s),
        }
    })
    .await;
}

/// Every version of the data key since `from`, via a watch from that revision.
pub async fn data_history(p: &mut Process, ctx: &Ctx, from: i64) -> Outcome {
    let data = format!("{}data", ctx.prefix).into_bytes();
    let mut kv = p.client.kv.clone();
    let mut watch = p.client.watch.clone();
    p.op("data-history", None, Value::Null, async {
        let current = match timed(kv.range(RangeRequest {
            key: data.clone(),
            ..Default::default()
        }))
        .await
        {
            Ok(r) => r.kvs.first().map_or(0, |kv| kv.mod_revision),
            Err(s) => return Outcome::Fail(describe(&s)),
        };
        if current == 0 {
            return Outcome::Ok(json!([]));
        }
        let create = WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: data.clone(),
                    start_revision: from,
                    ..Default::default()
                },
            )),
        };
        let outbound = futures::stream::iter([create]).chain(futures::stream::pending());
        let collect = async {
            let mut inbound = watch.watch(outbound).await?.into_inner();
            let mut versions = Vec::new();
            while let Some(resp) = inbound.message().await? {
                for ev in resp.events {
                    if let Some(kv) = ev.kv {
                        if ev.r#type == 0 {
                            versions
                                .push(json!([kv.mod_revision, String::from_utf8_lossy(&kv.value)]));
                        }
                        if kv.mod_revision >= current {
                            return Ok::<_, tonic::Status>(versions);
                        }
                    }
                }
            }
            Err(tonic::Status::unavailable("watch ended early"))
        };
        match tokio::time::timeout(Duration::from_secs(20), collect).await {
            Ok(Ok(v)) => Outcome::Ok(Value::Array(v)),
            Ok(Err(s)) => Outcome::Fail(describe(&s)),
            Err(_) => Outcome::Fail("timed out reading the data key's history".into()),
        }
    })
    .await
}

pub async fn run(
    ctx: &Ctx,
    heal: impl std::future::Future<Output = ()>,
) -> Result<super::Extra, Error> {
    let mut kv = ctx.clients[0].kv.clone();
    let start = timed(kv.range(RangeRequest {
        key: b"__start".to_vec(),
        ..Default::default()
    }))
    .await
    .map_err(|status| Error::Rpc {
        what: "reading the start revision".into(),
        status,
    })?
    .header
    .map_or(1, |h| h.revision + 1);
    let procs = ctx.processes().into_iter().map(|mut p| {
        let ctx = ctx.clone();
        async move {
            while ctx.running() {
                hold(&mut p, &ctx).await;
                ctx.think().await;
            }
        }
    });
    futures::future::join_all(procs).await;
    heal.await;
    super::set::final_read(ctx, super::set::FinalRead::LockData(start)).await
}
