//! The watch-latency workload: watchers on a prefix, a paced writer, put → event latency.

use anyhow::Context;
use futures::StreamExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use anyhow::bail;
use hdrhistogram::Histogram;
use keel_proto::etcdserverpb::kv_client::KvClient;
use keel_proto::etcdserverpb::watch_client::WatchClient;
use keel_proto::etcdserverpb::{
    watch_request, PutRequest, WatchCreateRequest, WatchRequest, WatchResponse,
};
use keel_proto::mvccpb::event::EventType;
use tonic::transport::Channel;

use super::*;

/// Opens a watch on `[prefix, prefix_end)` from "now" and waits for its `created` response.
pub(super) async fn open_watch(
    channel: Channel,
    prefix: &[u8],
) -> anyhow::Result<tonic::Streaming<WatchResponse>> {
    let create = WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key: prefix.to_vec(),
                range_end: prefix_range_end(prefix),
                ..Default::default()
            },
        )),
    };
    // The request side stays open (pending) for as long as the stream is used.
    let outbound = futures::stream::iter([create]).chain(futures::stream::pending());
    let mut inbound = WatchClient::new(channel)
        .watch(outbound)
        .await
        .context("opening watch stream")?
        .into_inner();
    loop {
        match inbound
            .message()
            .await
            .context("waiting for watch creation")?
        {
            Some(resp) if resp.canceled => {
                bail!("watch canceled on creation: {}", resp.cancel_reason)
            }
            Some(resp) if resp.created => return Ok(inbound),
            Some(_) => continue,
            None => bail!("watch stream closed before the watch was created"),
        }
    }
}

/// What one watcher saw.
pub(super) struct WatcherResult {
    pub(super) hist: Histogram<u64>,
    pub(super) received: u64,
    /// When the last counted event arrived.
    pub(super) last_event: Option<Instant>,
    pub(super) error: Option<String>,
}

/// After the writer is done, a watcher gives up once no message came for this long.
pub(super) const WATCH_IDLE_GRACE: Duration = Duration::from_secs(5);

/// Receives events until it has seen `target` of them (`None` while the writer runs),
/// or the stream breaks, or it stays idle for [`WATCH_IDLE_GRACE`] after the target is known.
pub(super) async fn watcher(
    mut inbound: tonic::Streaming<WatchResponse>,
    run_id: u64,
    base: Instant,
    mut target: tokio::sync::watch::Receiver<Option<u64>>,
) -> anyhow::Result<WatcherResult> {
    let mut res = WatcherResult {
        hist: new_histogram()?,
        received: 0,
        last_event: None,
        error: None,
    };
    loop {
        let goal = *target.borrow_and_update();
        if goal.is_some_and(|n| res.received >= n) {
            break;
        }
        let idle = async {
            match goal {
                Some(_) => tokio::time::sleep(WATCH_IDLE_GRACE).await,
                None => futures::future::pending().await,
            }
        };
        tokio::select! {
            msg = inbound.message() => match msg {
                Ok(Some(resp)) => {
                    let now = Instant::now();
                    let now_ns = nanos(now.duration_since(base));
                    for ev in resp.events {
                        if ev.r#type != EventType::Put as i32 {
                            continue;
                        }
                        let Some(sent_ns) = ev.kv.as_ref().and_then(|kv| decode_ts(&kv.value, run_id)) else { continue };
                        res.hist.saturating_record((now_ns.saturating_sub(sent_ns) / 1000).max(1));
                        res.received += 1;
                        res.last_event = Some(now);
                    }
                    if resp.canceled {
                        res.error = Some(format!("watch canceled: {}", resp.cancel_reason));
                        break;
                    }
                }
                Ok(None) => {
                    res.error = Some("watch stream ended".to_string());
                    break;
                }
                Err(status) => {
                    res.error = Some(format!("watch stream: {:?}: {}", status.code(), status.message()));
                    break;
                }
            },
            changed = target.changed() => if changed.is_err() { break },
            () = idle => break,
        }
    }
    Ok(res)
}

pub(super) async fn watch_latency(plan: &Plan, channels: &[Channel]) -> anyhow::Result<Outcome> {
    let base = Instant::now();
    let run_id: u64 = rand::rng().random();
    let (target_tx, target_rx) = tokio::sync::watch::channel::<Option<u64>>(None);
    let mut handles = Vec::with_capacity(plan.watchers);
    for w in 0..plan.watchers {
        let inbound = open_watch(channels[w % channels.len()].clone(), &plan.keys.prefix).await?;
        handles.push(tokio::spawn(watcher(
            inbound,
            run_id,
            base,
            target_rx.clone(),
        )));
    }
    drop(target_rx);

    // Writer: fixed-rate puts, at most `clients` in flight.
    let start = Instant::now();
    let deadline = plan.duration.map(|d| start + d);
    let permits = u32::try_from(plan.clients).context("--clients too large")?;
    let sem = Arc::new(tokio::sync::Semaphore::new(plan.clients));
    let put_ok = Arc::new(AtomicU64::new(0));
    let put_err = Arc::new(AtomicU64::new(0));
    let first_put_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let mut ticker = (plan.rate > 0).then(|| {
        let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / plan.rate as f64));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let mut i = 0u64;
    while i < plan.total && deadline.is_none_or(|d| Instant::now() < d) {
        if let Some(t) = ticker.as_mut() {
            t.tick().await;
        }
        let permit = Arc::clone(&sem)
            .acquire_owned()
            .await
            .context("writer semaphore closed")?;
        let mut kv = KvClient::new(channels[(i as usize) % channels.len()].clone());
        let key = plan.keys.key(i);
        let (val_size, limit) = (plan.val_size, plan.timeout);
        let (ok, err, first) = (
            Arc::clone(&put_ok),
            Arc::clone(&put_err),
            Arc::clone(&first_put_error),
        );
        tokio::spawn(async move {
            let value = encode_ts(run_id, nanos(base.elapsed()), val_size);
            match with_timeout(
                limit,
                kv.put(PutRequest {
                    key,
                    value,
                    ..Default::default()
                }),
            )
            .await
            {
                Ok(_) => {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
                Err(status) => {
                    err.fetch_add(1, Ordering::Relaxed);
                    {
                        let mut f = first.lock().unwrap_or_else(PoisonError::into_inner);
                        f.get_or_insert_with(|| {
                            format!("put: {:?}: {}", status.code(), status.message())
                        });
                    }
                }
            }
            drop(permit);
        });
        i += 1;
    }
    // Wait for every in-flight put.
    let _all = sem
        .acquire_many(permits)
        .await
        .context("writer semaphore closed")?;
    let ok = put_ok.load(Ordering::Relaxed);
    let writer_elapsed = start.elapsed();
    // Tell the watchers how many events to expect; they stop when they have them or go idle.
    let _ = target_tx.send(Some(ok));

    let mut out = Outcome::new()?;
    out.errors = put_err.load(Ordering::Relaxed);
    out.first_error = first_put_error
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let mut last_event: Option<Instant> = None;
    for h in handles {
        let r = h.await.context("watcher panicked")??;
        out.hist.add(&r.hist).context("merging histograms")?;
        out.ops += r.received;
        // Events a watcher should have seen but did not.
        out.errors += ok.saturating_sub(r.received);
        if out.first_error.is_none() {
            out.first_error = r.error.or_else(|| {
                (r.received < ok).then(|| format!("a watcher saw {} of {ok} events", r.received))
            });
        }
        last_event = last_event.max(r.last_event);
    }
    out.elapsed = last_event.map_or(writer_elapsed, |t| {
        t.duration_since(start).max(writer_elapsed)
    });
    Ok(out)
}
