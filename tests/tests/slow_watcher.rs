//! A watcher that stops reading never holds up writes, and one that falls behind a compaction is
//! told so: it gets the events it can still be given, in order and without gaps, then a cancel
//! carrying the compacted revision. Checked against a real etcd in the same run.

use std::time::Duration;

use keel_proto::etcdserverpb::kv_client::KvClient;
use keel_proto::etcdserverpb::watch_client::WatchClient;
use keel_proto::etcdserverpb::watch_request::RequestUnion;
use keel_proto::etcdserverpb::{
    CompactionRequest, PutRequest, WatchCreateRequest, WatchRequest, WatchResponse,
};
use keel_tests::{cluster::connect, Cluster, Flavor};
use tokio_stream::StreamExt;

const PUTS: usize = 6000;

#[derive(Debug)]
struct Outcome {
    /// Revisions of the events delivered before the cancel.
    delivered: Vec<i64>,
    first: i64,
    compacted_at: i64,
    cancel: WatchResponse,
}

async fn run(url: &str) -> anyhow::Result<Outcome> {
    let channel = connect(url).await?;
    let mut kv = KvClient::new(channel.clone());
    let start = kv
        .put(PutRequest {
            key: b"other".to_vec(),
            value: b"x".to_vec(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .header
        .map_or(0, |h| h.revision)
        + 1;

    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: b"w/".to_vec(),
            range_end: b"w0".to_vec(),
            start_revision: start,
            ..Default::default()
        })),
    })
    .await?;
    let mut stream = WatchClient::new(channel)
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let created = stream.next().await.expect("created response")?;
    assert!(created.created, "{created:?}");

    // The watcher reads nothing while the writes go in: they must all be acknowledged.
    // Values large enough that the transport buffers hold only a few hundred events.
    let value = vec![b'v'; 16 * 1024];
    let mut last = 0;
    for i in 0..PUTS {
        let resp = tokio::time::timeout(
            Duration::from_secs(10),
            kv.put(PutRequest {
                key: format!("w/{}", i % 50).into_bytes(),
                value: value.clone(),
                ..Default::default()
            }),
        )
        .await
        .map_err(|_| anyhow::anyhow!("put {i} blocked behind a slow watcher"))??;
        last = resp.into_inner().header.map_or(0, |h| h.revision);
    }
    kv.compact(CompactionRequest {
        revision: last,
        physical: true,
    })
    .await?;

    let mut delivered = Vec::new();
    let cancel = loop {
        let resp = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .map_err(|_| anyhow::anyhow!("no cancel after {} events", delivered.len()))?
            .expect("stream open")?;
        delivered.extend(
            resp.events
                .iter()
                .map(|e| e.kv.as_ref().map_or(0, |kv| kv.mod_revision)),
        );
        if resp.canceled {
            break resp;
        }
    };
    drop(tx);
    Ok(Outcome {
        delivered,
        first: start,
        compacted_at: last,
        cancel,
    })
}

fn check(name: &str, o: &Outcome) {
    assert_eq!(
        o.cancel.compact_revision, o.compacted_at,
        "{name}: cancel names the compacted revision: {:?}",
        o.cancel
    );
    assert!(
        (o.delivered.len()) < PUTS,
        "{name}: the watcher fell behind (got all {PUTS} events)"
    );
    for (i, rev) in o.delivered.iter().enumerate() {
        assert_eq!(*rev, o.first + i as i64, "{name}: events in order, no gaps");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_behind_a_compaction_is_canceled_as_on_etcd() -> anyhow::Result<()> {
    let etcd = Cluster::start(Flavor::Etcd, 1).await?;
    let keel = Cluster::start(Flavor::KeelStore, 1).await?;
    let on_keel = run(&keel.members[0].client_url()).await?;
    check("keel", &on_keel);
    let on_etcd = run(&etcd.members[0].client_url()).await?;
    check("etcd", &on_etcd);
    let header = |o: &Outcome| {
        let h = o.cancel.header.unwrap_or_default();
        (h.revision, o.cancel.created, o.cancel.events.len())
    };
    assert_eq!(header(&on_keel), header(&on_etcd), "cancel response shape");
    Ok(())
}
