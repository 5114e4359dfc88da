//! Durability and availability of a 3-member keel cluster under process kills.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_proto::etcdserverpb::PutRequest;
use keel_tests::{Cluster, Flavor};
use tokio_util::sync::CancellationToken as CancelFlag;

/// Writes unique keys through `endpoint` until stopped, recording each acknowledged one.
async fn writer(
    channel: tonic::transport::Channel,
    prefix: String,
    acked: Arc<Mutex<BTreeSet<String>>>,
    stop: CancelFlag,
) {
    let mut n = 0u64;
    let mut client = None;
    while !stop.is_cancelled() {
        if client.is_none() {
            // The channel connects lazily, again after its member restarts.
            client = Some(keel_proto::etcdserverpb::kv_client::KvClient::new(
                channel.clone(),
            ));
            if client.is_none() {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        }
        let Some(kv) = client.as_mut() else { continue };
        let key = format!("{prefix}/{n:08}");
        let put = kv.put(PutRequest {
            key: key.clone().into_bytes(),
            value: b"v".to_vec(),
            ..Default::default()
        });
        match tokio::time::timeout(Duration::from_secs(2), put).await {
            Ok(Ok(_)) => {
                acked.lock().expect("acked lock").insert(key);
            }
            Ok(Err(_)) | Err(_) => {
                client = None;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        n += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_puts_survive_kill_9_of_every_member_under_load() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(Flavor::Keel, 3).await?;
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = CancelFlag::default();
    let mut writers = Vec::new();
    for w in 0..cluster.members.len() {
        let channel = cluster.channel(w).await?;
        for t in 0..2 {
            writers.push(tokio::spawn(writer(
                channel.clone(),
                format!("load/w{w}t{t}"),
                acked.clone(),
                stop.clone(),
            )));
        }
    }
    for victim in 0..3 {
        tokio::time::sleep(Duration::from_millis(800)).await;
        cluster.kill(victim)?;
        tokio::time::sleep(Duration::from_millis(800)).await;
        cluster.restart(victim)?;
        cluster.wait_writable(Duration::from_secs(20)).await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    for w in writers {
        w.await?;
    }
    let acked = acked.lock().expect("acked lock").clone();
    assert!(
        acked.len() > 100,
        "load too light to mean anything: {} acked puts",
        acked.len()
    );
    for member in 0..3 {
        let stored = cluster.keys_under(member, "load/").await?;
        let lost: Vec<_> = acked.difference(&stored).take(5).collect();
        assert!(
            lost.is_empty(),
            "member {member} lost acknowledged puts (first few): {lost:?}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_leader_elects_a_new_one_and_writes_resume_within_two_seconds(
) -> anyhow::Result<()> {
    let mut cluster = Cluster::start(Flavor::Keel, 3).await?;
    let leader = cluster.leader().await?;
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = CancelFlag::default();
    let mut writers = Vec::new();
    for (n, s) in survivors.iter().enumerate() {
        writers.push(tokio::spawn(writer(
            cluster.channel(*s).await?,
            format!("gap/{n}"),
            acked.clone(),
            stop.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = acked.lock().expect("acked lock").len();
    let killed_at = Instant::now();
    cluster.kill(leader)?;

    // Writes resume when the acknowledged count grows past what was in flight at the kill.
    let resumed = loop {
        let now = acked.lock().expect("acked lock").len();
        if now > before + 10 {
            break killed_at.elapsed();
        }
        if killed_at.elapsed() > Duration::from_secs(10) {
            anyhow::bail!("writes did not resume within 10 s of killing the leader");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let new_leader = cluster.leader().await?;
    assert_ne!(new_leader, leader);
    stop.cancel();
    for w in writers {
        w.await?;
    }
    println!("writes resumed {resumed:?} after the leader was killed");
    assert!(
        resumed < Duration::from_secs(2),
        "writes took {resumed:?} to resume"
    );

    let acked = acked.lock().expect("acked lock").clone();
    let stored = cluster.keys_under(new_leader, "gap/").await?;
    assert!(
        acked.is_subset(&stored),
        "acknowledged writes lost across the leader change"
    );
    Ok(())
}
