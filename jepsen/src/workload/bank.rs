//! Bank workload: accounts under one prefix, transfers as one transaction that compares both
//! accounts' mod revisions and writes both balances; reads of all accounts in one range must
//! always see the same total.

use std::collections::BTreeMap;

use keel_proto::etcdserverpb::{
    compare, request_op, Compare, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use rand::Rng;
use serde_json::{json, Value};

use super::{Ctx, Outcome, Process};
use crate::client::{describe, prefix_end, timed};
use crate::Error;

pub const ACCOUNTS: usize = 5;
pub const BALANCE: i64 = 100;

fn account(ctx: &Ctx, i: usize) -> String {
    format!("{}a{i}", ctx.prefix)
}

fn put(key: &str, balance: i64) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: key.as_bytes().to_vec(),
            value: balance.to_string().into_bytes(),
            ..Default::default()
        })),
    }
}

fn range_all(ctx: &Ctx) -> RangeRequest {
    let prefix = format!("{}a", ctx.prefix).into_bytes();
    RangeRequest {
        range_end: prefix_end(&prefix),
        key: prefix,
        ..Default::default()
    }
}

/// Balances and mod revisions by account key.
fn balances(kvs: &[keel_proto::mvccpb::KeyValue]) -> BTreeMap<String, (i64, i64)> {
    kvs.iter()
        .map(|kv| {
            let b = String::from_utf8_lossy(&kv.value)
                .parse()
                .unwrap_or(i64::MIN);
            (
                String::from_utf8_lossy(&kv.key).into_owned(),
                (b, kv.mod_revision),
            )
        })
        .collect()
}

pub async fn read(p: &mut Process, ctx: &Ctx) -> Outcome {
    let mut kv = p.client.kv.clone();
    let req = range_all(ctx);
    p.op("read", None, Value::Null, async {
        match timed(kv.range(req)).await {
            Ok(r) => Outcome::Ok(json!(balances(&r.kvs)
                .into_iter()
                .map(|(k, (b, _))| (k, b))
                .collect::<BTreeMap<_, _>>())),
            Err(s) => Outcome::Fail(describe(&s)),
        }
    })
    .await
}

async fn transfer(p: &mut Process, ctx: &Ctx) {
    let (from, to) = {
        let mut rng = rand::rng();
        let from = rng.random_range(0..ACCOUNTS);
        (from, (from + rng.random_range(1..ACCOUNTS)) % ACCOUNTS)
    };
    let amount = rand::rng().random_range(1..=5i64);
    let (fk, tk) = (account(ctx, from), account(ctx, to));
    let mut kv = p.client.kv.clone();
    let req = range_all(ctx);
    p.op(
        "transfer",
        None,
        json!({"from": fk, "to": tk, "amount": amount}),
        async {
            let now = match timed(kv.range(req)).await {
                Ok(r) => balances(&r.kvs),
                Err(s) => return Outcome::Fail(describe(&s)),
            };
            let (Some(&(fb, frev)), Some(&(tb, trev))) = (now.get(&fk), now.get(&tk)) else {
                return Outcome::Fail("account missing".into());
            };
            if fb < amount {
                return Outcome::Fail("insufficient funds".into());
            }
            let cmp = |key: &str, rev| Compare {
                result: compare::CompareResult::Equal as i32,
                target: compare::CompareTarget::Mod as i32,
                key: key.as_bytes().to_vec(),
                target_union: Some(compare::TargetUnion::ModRevision(rev)),
                range_end: Vec::new(),
            };
            let txn = TxnRequest {
                compare: vec![cmp(&fk, frev), cmp(&tk, trev)],
                success: vec![put(&fk, fb - amount), put(&tk, tb + amount)],
                failure: vec![],
            };
            match timed(kv.txn(txn)).await {
                Ok(r) if r.succeeded => {
                    Outcome::Ok(json!({"from": fk, "to": tk, "amount": amount}))
                }
                Ok(_) => Outcome::Fail("conflict".into()),
                Err(s) => Outcome::from_status(&s),
            }
        },
    )
    .await;
}

/// Creates the accounts in one transaction.
async fn setup(ctx: &Ctx) -> Result<(), Error> {
    let mut p = Process::new(
        ctx.concurrency * 1000 + 99,
        1,
        0,
        ctx.clients[0].clone(),
        ctx.rec.clone(),
    );
    let mut kv = p.client.kv.clone();
    let txn = TxnRequest {
        compare: vec![],
        success: (0..ACCOUNTS)
            .map(|i| put(&account(ctx, i), BALANCE))
            .collect(),
        failure: vec![],
    };
    let total = BALANCE * ACCOUNTS as i64;
    match p
        .op(
            "setup",
            None,
            json!({"accounts": ACCOUNTS, "total": total}),
            async {
                match timed(kv.txn(txn)).await {
                    Ok(_) => Outcome::Ok(json!({"accounts": ACCOUNTS, "total": total})),
                    Err(s) => Outcome::Info(describe(&s)),
                }
            },
        )
        .await
    {
        Outcome::Ok(_) => Ok(()),
        _ => Err(Error::NotReady("could not create the bank accounts".into())),
    }
}

pub async fn run(
    ctx: &Ctx,
    heal: impl std::future::Future<Output = ()>,
) -> Result<super::Extra, Error> {
    setup(ctx).await?;
    let procs = ctx.processes().into_iter().map(|mut p| {
        let ctx = ctx.clone();
        async move {
            while ctx.running() {
                if rand::rng().random_bool(0.3) {
                    read(&mut p, &ctx).await;
                } else {
                    transfer(&mut p, &ctx).await;
                }
                ctx.think().await;
            }
        }
    });
    futures::future::join_all(procs).await;
    heal.await;
    super::set::final_read(ctx, super::set::FinalRead::Bank).await
}
