//! The space quota (`--quota-backend-bytes`): once the keyspace outgrows it, writes that need
//! space are refused on every member with etcd's NOSPACE alarm and message, while reads, deletes
//! and compaction go on; after compaction, defragmentation and `etcdctl alarm disarm`, writes
//! are accepted again. Nothing acknowledged is lost on the way.

use anyhow::{bail, Result};
use keel_proto::etcdserverpb::{PutRequest, RangeRequest};
use keel_tests::etcdctl::etcdctl;
use keel_tests::{Cluster, Flavor};
use rand::RngCore;

const QUOTA: u64 = 4 << 20;

fn put_request(key: &str) -> PutRequest {
    let mut value = vec![0u8; 16 * 1024];
    // Random bytes: compression must not hide the size.
    rand::rng().fill_bytes(&mut value);
    PutRequest {
        key: key.as_bytes().to_vec(),
        value,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_keyspace_raises_nospace_until_compacted_defragmented_and_disarmed() -> Result<()> {
    let cluster = Cluster::start_with(
        Flavor::KeelStore,
        3,
        &[format!("--quota-backend-bytes={QUOTA}")],
    )
    .await?;
    let mut kv = cluster.kv(0).await?;
    let mut acked = 0usize;
    let refusal = loop {
        match kv.put(put_request(&format!("q/{acked:05}"))).await {
            Ok(_) => acked += 1,
            Err(status) => break status,
        }
        if acked > 2000 {
            bail!("4 MiB quota never reached after {acked} puts of 16 KiB");
        }
    };
    assert_eq!(refusal.code(), tonic::Code::ResourceExhausted);
    assert_eq!(
        refusal.message(),
        "etcdserver: mvcc: database space exceeded"
    );
    assert!(acked >= 100, "refused after only {acked} puts");

    // The alarm is the cluster's: another member refuses too, and etcdctl lists it.
    let other = cluster
        .kv(2)
        .await?
        .put(put_request("q/elsewhere"))
        .await
        .expect_err("the alarm holds on every member");
    assert_eq!(other.code(), tonic::Code::ResourceExhausted);
    let listed = etcdctl(&cluster.endpoints(), &["alarm", "list"], None)?;
    assert!(listed.stdout.contains("alarm:NOSPACE"), "{listed:?}");

    // Reads still work and every acknowledged put is there.
    let count = kv
        .range(RangeRequest {
            key: b"q/".to_vec(),
            range_end: b"q0".to_vec(),
            count_only: true,
            ..Default::default()
        })
        .await?
        .into_inner()
        .count;
    assert_eq!(count as usize, acked);

    // The way out: delete, compact, defragment, disarm.
    let eps = cluster.endpoints();
    let del = etcdctl(&eps, &["del", "--prefix", "q/"], None)?;
    assert_eq!(del.stdout.trim(), acked.to_string(), "{del:?}");
    let rev = kv
        .range(RangeRequest {
            key: b"q/".to_vec(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .header
        .map(|h| h.revision)
        .unwrap_or(0);
    let compact = etcdctl(&eps, &["compact", &rev.to_string(), "--physical"], None)?;
    assert_eq!(compact.status, 0, "{compact:?}");
    let defrag = etcdctl(&eps, &["defrag"], None)?;
    assert_eq!(defrag.status, 0, "{defrag:?}");
    let disarm = etcdctl(&eps, &["alarm", "disarm"], None)?;
    assert!(disarm.stdout.contains("alarm:NOSPACE"), "{disarm:?}");
    let after = etcdctl(&eps, &["alarm", "list"], None)?;
    assert_eq!(after.stdout.trim(), "", "{after:?}");
    kv.put(put_request("q/after"))
        .await
        .expect("writes are accepted again");
    Ok(())
}
