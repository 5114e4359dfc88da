//! Linearizable reads in both modes (ReadIndex rounds, and the leader lease): a read through any
//! member sees every write acknowledged before it began, through whichever member, including
//! reads that share a batched round with many concurrent readers.

use anyhow::Result;
use keel_proto::etcdserverpb::{PutRequest, RangeRequest};
use keel_tests::{Cluster, Flavor};

async fn writes_are_seen_by_later_reads_anywhere(mode: &str) -> Result<()> {
    let cluster = Cluster::start_with(
        Flavor::KeelStore,
        3,
        &[format!("--linearizable-read={mode}")],
    )
    .await?;
    let mut kvs = Vec::new();
    for i in 0..3 {
        kvs.push(cluster.kv(i).await?);
    }
    for n in 0..150u32 {
        kvs[(n % 3) as usize]
            .put(PutRequest {
                key: b"counter".to_vec(),
                value: n.to_string().into_bytes(),
                ..Default::default()
            })
            .await?;
        // Many concurrent readers through the other two members: they share rounds.
        let mut readers = Vec::new();
        for r in 0..8 {
            let mut kv = kvs[((n + 1 + r % 2) % 3) as usize].clone();
            readers.push(tokio::spawn(async move {
                kv.range(RangeRequest {
                    key: b"counter".to_vec(),
                    ..Default::default()
                })
                .await
            }));
        }
        for reader in readers {
            let resp = reader.await??.into_inner();
            let seen = String::from_utf8_lossy(&resp.kvs[0].value).into_owned();
            assert_eq!(seen, n.to_string(), "{mode}: a read missed write {n}");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_index_reads_see_every_acknowledged_write() -> Result<()> {
    writes_are_seen_by_later_reads_anywhere("read-index").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lease_reads_see_every_acknowledged_write() -> Result<()> {
    writes_are_seen_by_later_reads_anywhere("lease").await
}
