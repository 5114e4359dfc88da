//! Automatic compaction: with `--auto-compaction-mode=periodic`, the leader keeps only the last
//! retention period of history, and reads before it get etcd's "compacted" error.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use keel_proto::etcdserverpb::{PutRequest, RangeRequest};
use keel_tests::{Cluster, Flavor};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn periodic_auto_compaction_drops_history_older_than_the_retention() -> Result<()> {
    let cluster = Cluster::start_with(
        Flavor::KeelStore,
        3,
        &[
            "--auto-compaction-mode=periodic".to_string(),
            "--auto-compaction-retention=2s".to_string(),
        ],
    )
    .await?;
    let mut kv = cluster.kv(1).await?;
    let first = kv
        .put(PutRequest {
            key: b"k".to_vec(),
            value: b"first".to_vec(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .header
        .map(|h| h.revision)
        .unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        kv.put(PutRequest {
            key: b"k".to_vec(),
            value: b"later".to_vec(),
            ..Default::default()
        })
        .await?;
        let old = kv
            .range(RangeRequest {
                key: b"k".to_vec(),
                revision: first,
                ..Default::default()
            })
            .await;
        match old {
            Err(e) if e.code() == tonic::Code::OutOfRange => {
                assert_eq!(
                    e.message(),
                    "etcdserver: mvcc: required revision has been compacted"
                );
                return Ok(());
            }
            Err(e) => return Err(e.into()),
            Ok(_) if Instant::now() > deadline => {
                bail!("revision {first} still readable 20 s later with a 2 s retention")
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
