//! Watch workload: processes put and delete a few keys under one prefix while watchers watch the
//! prefix with prev_kv, each dropping its stream now and then and resuming from the revision
//! after the last event it saw. After the faults heal, a sentinel write marks the end; the
//! watchers run until they saw it, and a fresh watch from the first revision reads the truth.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use keel_proto::etcdserverpb::{
    watch_request, DeleteRangeRequest, PutRequest, RangeRequest, WatchCreateRequest, WatchRequest,
};
use keel_proto::mvccpb;
use rand::Rng;
use serde_json::json;

use super::{Ctx, Outcome, Process};
use crate::check::watch::{Kv, Stream, WatchEvent, WatchRecord, Watcher};
use crate::client::{describe, prefix_end, timed, Client};
use crate::Error;

const KEYS: u32 = 5;
const WATCHERS: u64 = 3;
/// How long watchers may take to catch up once the end is known.
const CATCH_UP: Duration = Duration::from_secs(30);

fn kv_of(kv: &mvccpb::KeyValue) -> Kv {
    Kv {
        value: String::from_utf8_lossy(&kv.value).into_owned(),
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
    }
}

fn convert(ev: mvccpb::Event) -> Option<WatchEvent> {
    let kv = ev.kv?;
    Some(WatchEvent {
        revision: kv.mod_revision,
        key: String::from_utf8_lossy(&kv.key).into_owned(),
        delete: ev.r#type == mvccpb::event::EventType::Delete as i32,
        kv: kv_of(&kv),
        prev: ev.prev_kv.as_ref().map(kv_of),
    })
}

async fn open(
    client: &Client,
    prefix: &str,
    from: i64,
) -> Result<tonic::Streaming<keel_proto::etcdserverpb::WatchResponse>, tonic::Status> {
    let create = WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key: prefix.as_bytes().to_vec(),
                range_end: prefix_end(prefix.as_bytes()),
                start_revision: from,
                prev_kv: true,
                ..Default::default()
            },
        )),
    };
    let outbound = futures::stream::iter([create]).chain(futures::stream::pending());
    let mut watch = client.watch.clone();
    let opened = tokio::time::timeout(Duration::from_secs(2), watch.watch(outbound)).await;
    match opened {
        Ok(r) => Ok(r?.into_inner()),
        Err(_) => Err(tonic::Status::deadline_exceeded("opening the watch")),
    }
}

/// One watcher: streams until it saw the end revision (or gave up catching up).
async fn watcher(
    id: u64,
    client: Client,
    prefix: String,
    start: i64,
    mut end: tokio::sync::watch::Receiver<Option<i64>>,
) -> Watcher {
    let mut w = Watcher {
        id,
        streams: Vec::new(),
    };
    let mut next = start;
    let mut end_known_at: Option<Instant> = None;
    loop {
        let goal = *end.borrow_and_update();
        if let Some(goal) = goal {
            let known = *end_known_at.get_or_insert_with(Instant::now);
            if next > goal || known.elapsed() > CATCH_UP {
                return w;
            }
        }
        let Ok(mut inbound) = open(&client, &prefix, next).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        w.streams.push(Stream {
            start_revision: next,
            events: Vec::new(),
        });
        let life = tokio::time::sleep(Duration::from_millis(rand::rng().random_range(500..3000)));
        tokio::pin!(life);
        loop {
            tokio::select! {
                msg = inbound.message() => match msg {
                    Ok(Some(resp)) => {
                        if let Some(s) = w.streams.last_mut() {
                            for ev in resp.events.into_iter().filter_map(convert) {
                                next = next.max(ev.revision + 1);
                                s.events.push(ev);
                            }
                        }
                        if resp.canceled || resp.compact_revision != 0 {
                            break;
                        }
                        if end.borrow().is_some_and(|g| next > g) {
                            break;
                        }
                    }
                    _ => break,
                },
                () = &mut life => break,
                changed = end.changed() => if changed.is_err() { break },
            }
        }
    }
}

async fn write(p: &mut Process, ctx: &Ctx, prefix: &str) {
    let key = format!("{prefix}k{}", rand::rng().random_range(0..KEYS));
    let mut kv = p.client.kv.clone();
    if rand::rng().random_bool(0.15) {
        let req = DeleteRangeRequest {
            key: key.clone().into_bytes(),
            ..Default::default()
        };
        p.op("delete", Some(&key), serde_json::Value::Null, async {
            match timed(kv.delete_range(req)).await {
                Ok(r) => Outcome::Ok(
                    json!({"revision": r.header.map_or(0, |h| h.revision), "deleted": r.deleted}),
                ),
                Err(s) => Outcome::from_status(&s),
            }
        })
        .await;
    } else {
        let value = format!("v{}", ctx.next_value());
        let req = PutRequest {
            key: key.clone().into_bytes(),
            value: value.clone().into_bytes(),
            ..Default::default()
        };
        p.op("put", Some(&key), json!(value), async {
            match timed(kv.put(req)).await {
                Ok(r) => Outcome::Ok(json!({"revision": r.header.map_or(0, |h| h.revision)})),
                Err(s) => Outcome::from_status(&s),
            }
        })
        .await;
    }
}

/// The sentinel write, through whichever member answers; its revision ends the test.
async fn sentinel(ctx: &Ctx, prefix: &str) -> Result<i64, Error> {
    let key = format!("{prefix}~end");
    for attempt in 0..30 {
        let n = attempt % ctx.clients.len();
        let mut p = Process::new(
            ctx.concurrency * 1000 + n,
            1,
            n,
            ctx.clients[n].clone(),
            ctx.rec.clone(),
        );
        let mut kv = p.client.kv.clone();
        let req = PutRequest {
            key: key.clone().into_bytes(),
            value: b"end".to_vec(),
            ..Default::default()
        };
        if let Outcome::Ok(v) = p
            .op("put", Some(&key), json!("end"), async {
                match timed(kv.put(req)).await {
                    Ok(r) => Outcome::Ok(json!({"revision": r.header.map_or(0, |h| h.revision)})),
                    Err(s) => Outcome::from_status(&s),
                }
            })
            .await
        {
            return Ok(v["revision"].as_i64().unwrap_or(0));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(Error::NotReady("the sentinel write never succeeded".into()))
}

/// The truth and the final state, through whichever member answers.
async fn truth(
    ctx: &Ctx,
    prefix: &str,
    start: i64,
    end: i64,
) -> Result<(Vec<WatchEvent>, BTreeMap<String, Kv>), Error> {
    let mut last_err = String::new();
    for attempt in 0..10 {
        let client = &ctx.clients[attempt % ctx.clients.len()];
        let read = async {
            let mut inbound = open(client, prefix, start).await?;
            let mut events = Vec::new();
            while events.last().is_none_or(|e: &WatchEvent| e.revision < end) {
                match inbound.message().await? {
                    Some(resp) => events.extend(resp.events.into_iter().filter_map(convert)),
                    None => return Err(tonic::Status::unavailable("watch ended")),
                }
            }
            let mut kv = client.kv.clone();
            let range = timed(kv.range(RangeRequest {
                key: prefix.as_bytes().to_vec(),
                range_end: prefix_end(prefix.as_bytes()),
                revision: end,
                ..Default::default()
            }))
            .await?;
            let state = range
                .kvs
                .iter()
                .map(|kv| (String::from_utf8_lossy(&kv.key).into_owned(), kv_of(kv)))
                .collect();
            Ok::<_, tonic::Status>((events, state))
        };
        match tokio::time::timeout(Duration::from_secs(20), read).await {
            Ok(Ok(t)) => return Ok(t),
            Ok(Err(s)) => last_err = describe(&s),
            Err(_) => last_err = "timed out".into(),
        }
    }
    Err(Error::NotReady(format!(
        "could not read the watch truth: {last_err}"
    )))
}

pub async fn run(
    ctx: &Ctx,
    heal: impl std::future::Future<Output = ()>,
) -> Result<super::Extra, Error> {
    let prefix = format!("{}w/", ctx.prefix);
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
    let (end_tx, end_rx) = tokio::sync::watch::channel(None::<i64>);
    let watchers = futures::future::join_all((0..WATCHERS).map(|id| {
        let client = ctx.clients[id as usize % ctx.clients.len()].clone();
        watcher(id, client, prefix.clone(), start, end_rx.clone())
    }));
    drop(end_rx);
    let drive = async {
        let writers = ctx.processes().into_iter().map(|mut p| {
            let (ctx, prefix) = (ctx.clone(), prefix.clone());
            async move {
                while ctx.running() {
                    write(&mut p, &ctx, &prefix).await;
                    ctx.think().await;
                }
            }
        });
        futures::future::join_all(writers).await;
        heal.await;
        let end = sentinel(ctx, &prefix).await;
        let _ = end_tx.send(Some(*end.as_ref().unwrap_or(&0)));
        end
    };
    let (watchers, end) = tokio::join!(watchers, drive);
    let end = end?;
    let (truth, final_state) = truth(ctx, &prefix, start, end).await?;
    let record = WatchRecord {
        start_revision: start,
        end_revision: end,
        truth,
        final_state,
        writes: Vec::new(),
        watchers,
    };
    Ok(Some(serde_json::to_value(record)?))
}
