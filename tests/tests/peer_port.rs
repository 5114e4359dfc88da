//! The peer port refuses what it cannot read, and the cluster carries on.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use keel_proto::etcdserverpb::{PutRequest, RangeRequest};
use keel_proto::keelpb::raft_peer_client::RaftPeerClient;
use keel_proto::keelpb::RaftRequest;
use keel_tests::{cluster::connect, Cluster, Flavor};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_append_stream_is_refused_and_replication_goes_on() -> Result<()> {
    let cluster = Cluster::start(Flavor::KeelStore, 3).await?;
    cluster.wait_writable(Duration::from_secs(20)).await?;
    let leader = cluster.leader().await?;
    let follower = (leader + 1) % 3;
    let mut peer = RaftPeerClient::new(connect(&cluster.members[follower].peer_url()).await?);

    let garbage = RaftRequest {
        data: vec![0xff; 64],
    };
    let mut replies = peer
        .append_stream(futures::stream::iter(vec![garbage]))
        .await
        .context("opening an append stream")?
        .into_inner();
    let first = replies.message().await;
    let status = first.err().context("a garbage append was not refused")?;
    ensure!(
        status.code() == tonic::Code::InvalidArgument,
        "refused with {status:?}, expected InvalidArgument"
    );

    // Replication to that follower still works: a write through the leader is read back from
    // the follower itself.
    cluster
        .kv(leader)
        .await?
        .put(PutRequest {
            key: b"after".to_vec(),
            value: b"garbage".to_vec(),
            ..Default::default()
        })
        .await?;
    let mut kv = cluster.kv(follower).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = kv
            .range(RangeRequest {
                key: b"after".to_vec(),
                serializable: true,
                ..Default::default()
            })
            .await?
            .into_inner();
        if got.kvs.first().map(|kv| kv.value.as_slice()) == Some(b"garbage".as_slice()) {
            return Ok(());
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the follower never applied the write"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
