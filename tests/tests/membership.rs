//! Membership changes on a live keel cluster: members join (as a voter, and as a learner that is
//! then promoted with etcdctl) and leave (the leader among them) while clients write, and no
//! acknowledged write is lost. A member that was down past the purged log catches up from a
//! snapshot.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use keel_proto::etcdserverpb::kv_client::KvClient;
use keel_proto::etcdserverpb::{
    MemberAddRequest, MemberListRequest, MemberPromoteRequest, MemberRemoveRequest, PutRequest,
    RangeRequest,
};
use keel_tests::etcdctl::etcdctl;
use keel_tests::{Cluster, Flavor};
use tokio_util::sync::CancellationToken;

/// Clients that write unique keys through whichever endpoints are currently listed, recording
/// every acknowledged key.
struct Writers {
    endpoints: Arc<Mutex<Vec<String>>>,
    acked: Arc<Mutex<BTreeSet<String>>>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    fn start(n: usize, endpoints: Vec<String>) -> Writers {
        let endpoints = Arc::new(Mutex::new(endpoints));
        let acked = Arc::new(Mutex::new(BTreeSet::new()));
        let stop = CancellationToken::new();
        let tasks = (0..n)
            .map(|t| tokio::spawn(writer(t, endpoints.clone(), acked.clone(), stop.clone())))
            .collect();
        Writers {
            endpoints,
            acked,
            stop,
            tasks,
        }
    }

    fn set_endpoints(&self, endpoints: Vec<String>) {
        *self.endpoints.lock().expect("endpoints lock") = endpoints;
    }

    fn acked(&self) -> usize {
        self.acked.lock().expect("acked lock").len()
    }

    async fn finish(self) -> BTreeSet<String> {
        self.stop.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        let acked = self.acked.lock().expect("acked lock").clone();
        acked
    }
}

async fn writer(
    t: usize,
    endpoints: Arc<Mutex<Vec<String>>>,
    acked: Arc<Mutex<BTreeSet<String>>>,
    stop: CancellationToken,
) {
    let mut n = 0u64;
    let mut pick = t;
    let mut client: Option<(String, KvClient<tonic::transport::Channel>)> = None;
    while !stop.is_cancelled() {
        let listed = endpoints.lock().expect("endpoints lock").clone();
        let url = listed[pick % listed.len()].clone();
        if client.as_ref().map(|(u, _)| u != &url).unwrap_or(true) {
            client = match keel_tests::cluster::connect(&url).await {
                Ok(ch) => Some((url.clone(), KvClient::new(ch))),
                Err(_) => {
                    pick += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
        }
        let Some((_, kv)) = client.as_mut() else {
            continue;
        };
        // A put that fails is retried under the same key: the same value twice is harmless,
        // and a key is counted only once it is acknowledged.
        let key = format!("w{t}/{n:08}");
        let put = kv.put(PutRequest {
            key: key.clone().into_bytes(),
            value: b"v".to_vec(),
            ..Default::default()
        });
        match tokio::time::timeout(Duration::from_secs(3), put).await {
            Ok(Ok(_)) => {
                acked.lock().expect("acked lock").insert(key);
                n += 1;
            }
            _ => {
                client = None;
                pick += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Waits until member `i` serves `key` from its own state (a serializable read).
async fn wait_has_key(cluster: &Cluster, i: usize, key: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let found = async {
            let resp = cluster
                .kv(i)
                .await?
                .range(RangeRequest {
                    key: key.as_bytes().to_vec(),
                    serializable: true,
                    ..Default::default()
                })
                .await?
                .into_inner();
            anyhow::Ok(!resp.kvs.is_empty())
        }
        .await;
        if let Ok(true) = found {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "member {i} does not hold {key} after {timeout:?}; log:\n{}",
                cluster.log_of(i)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes a marker through member `i`, retrying while leadership moves (the same value twice is
/// harmless).
async fn put(cluster: &Cluster, i: usize, key: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let attempt = async {
            cluster
                .kv(i)
                .await?
                .put(PutRequest {
                    key: key.as_bytes().to_vec(),
                    value: b"marker".to_vec(),
                    ..Default::default()
                })
                .await?;
            anyhow::Ok(())
        };
        match attempt.await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(e.context(format!("writing {key} through member {i}")))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// HashKV of each listed member at one revision: equal when they hold the same history.
async fn hashes(cluster: &Cluster, members: &[usize]) -> Result<Vec<u32>> {
    let revision = cluster
        .kv(members[0])
        .await?
        .range(RangeRequest {
            key: b"w".to_vec(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .header
        .context("header")?
        .revision;
    let mut out = Vec::new();
    for &i in members {
        out.push(cluster.hash_kv_at(i, revision).await?);
    }
    Ok(out)
}

fn endpoints_of(cluster: &Cluster, members: &[usize]) -> Vec<String> {
    members
        .iter()
        .map(|&i| cluster.members[i].client_url())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn members_join_and_leave_under_load_without_losing_a_write() -> Result<()> {
    let mut cluster = Cluster::start(Flavor::KeelStore, 3).await?;
    let writers = Writers::start(4, endpoints_of(&cluster, &[0, 1, 2]));
    tokio::time::sleep(Duration::from_secs(1)).await;

    // A 4th member joins as a voter while writes go on.
    let (m3, id3) = cluster
        .add_member(0, false)
        .await
        .context("adding a voter")?;
    put(&cluster, 0, "marker/after-add").await?;
    wait_has_key(&cluster, m3, "marker/after-add", Duration::from_secs(30)).await?;
    writers.set_endpoints(endpoints_of(&cluster, &[0, 1, 2, m3]));

    // A 5th joins as a learner and is promoted with etcdctl once it has caught up.
    let (m4, id4) = cluster
        .add_member(1, true)
        .await
        .context("adding a learner")?;
    // The member that served MemberAdd has applied it; others learn of it a moment later.
    let listed = cluster
        .cluster_api(1)
        .await?
        .member_list(MemberListRequest::default())
        .await?
        .into_inner()
        .members;
    assert!(
        listed.iter().any(|m| m.id == id4 && m.is_learner),
        "the new member is listed as a learner: {listed:?}"
    );
    put(&cluster, 0, "marker/learner").await?;
    wait_has_key(&cluster, m4, "marker/learner", Duration::from_secs(30)).await?;
    // As on etcd, a learner a little behind the leader's log is refused; an operator retries.
    let deadline = Instant::now() + Duration::from_secs(30);
    let promote = loop {
        let out = etcdctl(
            &endpoints_of(&cluster, &[2]),
            &["member", "promote", &format!("{id4:x}")],
            None,
        )?;
        let behind = out.stderr.contains("in sync with leader");
        if !behind || Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(promote.status, 0, "etcdctl member promote: {promote:?}");
    assert!(
        promote.stdout.contains("promoted in cluster"),
        "{}",
        promote.stdout
    );

    // The leader leaves, then another founding member; writes go to the members that stay.
    let leader = cluster.leader().await?;
    let staying: Vec<usize> = [0, 1, 2, m3, m4]
        .into_iter()
        .filter(|&i| i != leader)
        .collect();
    writers.set_endpoints(endpoints_of(&cluster, &staying));
    let acked_before = writers.acked();
    let removed_at = Instant::now();
    cluster
        .remove_member(staying[0], leader)
        .await
        .context("removing the leader")?;
    let status = cluster
        .wait_exit(leader, Duration::from_secs(20))
        .await
        .context("the removed leader stops by itself")?;
    assert!(!status.success(), "a removed member exits with an error");
    assert!(
        cluster.log_of(leader).contains("removed from the cluster"),
        "the removed member says why it stopped"
    );
    let other = staying[0];
    let staying: Vec<usize> = staying.into_iter().filter(|&i| i != other).collect();
    writers.set_endpoints(endpoints_of(&cluster, &staying));
    cluster
        .remove_member(staying[0], other)
        .await
        .context("removing a follower")?;
    cluster
        .wait_exit(other, Duration::from_secs(20))
        .await
        .context("the removed follower stops by itself")?;
    let removal_time = removed_at.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let acked_during = writers.acked() - acked_before;
    let acked = writers.finish().await;
    assert!(
        acked_during > 0,
        "writes went on while members were removed"
    );

    // Nothing acknowledged is missing on any member that stays, and they agree on the history.
    for &i in &staying {
        let keys = cluster.keys_under(i, "w").await?;
        let missing: Vec<_> = acked.difference(&keys).take(5).collect();
        assert!(
            missing.is_empty(),
            "member {i} lost acknowledged writes: {missing:?}"
        );
    }
    let h = hashes(&cluster, &staying).await?;
    assert!(h.windows(2).all(|w| w[0] == w[1]), "HashKV differs: {h:?}");

    let members = cluster
        .cluster_api(staying[0])
        .await?
        .member_list(MemberListRequest::default())
        .await?
        .into_inner()
        .members;
    let ids: BTreeSet<u64> = members.iter().map(|m| m.id).collect();
    assert_eq!(members.len(), 3, "{members:?}");
    assert!(ids.contains(&id3) && ids.contains(&id4));
    assert!(members.iter().all(|m| !m.is_learner && !m.name.is_empty()));

    // A member that joined restarts with the identity it was given.
    cluster.restart(m3)?;
    put(&cluster, staying[0], "marker/after-restart").await?;
    wait_has_key(
        &cluster,
        m3,
        "marker/after-restart",
        Duration::from_secs(30),
    )
    .await?;
    println!(
        "membership: {} writes acknowledged, {acked_during} during two removals ({removal_time:?}), none lost",
        acked.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn membership_mistakes_get_etcds_errors_and_change_nothing() -> Result<()> {
    let cluster = Cluster::start(Flavor::KeelStore, 3).await?;
    let mut api = cluster.cluster_api(1).await?;

    let err = api
        .member_remove(MemberRemoveRequest { id: 0x1234 })
        .await
        .expect_err("unknown member");
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert_eq!(err.message(), "etcdserver: member not found");

    let err = api
        .member_add(MemberAddRequest {
            peer_ur_ls: vec![cluster.members[2].peer_url()],
            is_learner: false,
        })
        .await
        .expect_err("peer URL in use");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert_eq!(err.message(), "etcdserver: Peer URLs already exists");

    let err = api
        .member_add(MemberAddRequest {
            peer_ur_ls: vec!["not a url".into()],
            is_learner: true,
        })
        .await
        .expect_err("bad URL");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(err.message(), "etcdserver: given member URLs are invalid");

    let voter = cluster.member_id(0).await?;
    let err = api
        .member_promote(MemberPromoteRequest { id: voter })
        .await
        .expect_err("promote a voter");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert_eq!(
        err.message(),
        "etcdserver: can only promote a learner member"
    );

    // etcdctl shows the same refusal, and the membership is as it was.
    let out = etcdctl(&cluster.endpoints(), &["member", "remove", "1234"], None)?;
    assert_ne!(out.status, 0);
    assert!(
        out.stderr.contains("etcdserver: member not found"),
        "{}",
        out.stderr
    );
    let members = api
        .member_list(MemberListRequest::default())
        .await?
        .into_inner()
        .members;
    assert_eq!(members.len(), 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leadership_moves_with_etcdctl_move_leader() -> Result<()> {
    let cluster = Cluster::start(Flavor::KeelStore, 3).await?;
    let leader = cluster.leader().await?;
    let target = (leader + 1) % 3;
    let target_id = cluster.member_id(target).await?;
    let out = etcdctl(
        &cluster.endpoints(),
        &["move-leader", &format!("{target_id:x}")],
        None,
    )?;
    assert_eq!(out.status, 0, "{out:?}");
    assert!(
        out.stdout.contains("Leadership transferred"),
        "{}",
        out.stdout
    );
    assert_eq!(cluster.leader().await?, target);
    put(&cluster, target, "after/move").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_down_past_the_purged_log_catches_up_from_a_snapshot() -> Result<()> {
    let mut cluster =
        Cluster::start_with(Flavor::KeelStore, 3, &["--snapshot-count=100".to_string()]).await?;
    let leader = cluster.leader().await?;
    let down = (leader + 1) % 3;
    cluster.kill(down)?;
    let mut kv = cluster.kv(leader).await?;
    for n in 0..1500 {
        kv.put(PutRequest {
            key: format!("w/{n:05}").into_bytes(),
            // 3 MB in all: the snapshot travels in several chunks.
            value: vec![b'x'; 2048],
            ..Default::default()
        })
        .await?;
    }
    cluster.restart(down)?;
    wait_has_key(&cluster, down, "w/01499", Duration::from_secs(60)).await?;
    assert!(
        cluster.log_of(down).contains("installed a snapshot"),
        "the member caught up by snapshot, not by log; log:\n{}",
        cluster.log_of(down)
    );
    let keys = cluster.keys_under(down, "w").await?;
    assert_eq!(keys.len(), 1500);
    let h = hashes(&cluster, &[0, 1, 2]).await?;
    assert!(h.windows(2).all(|w| w[0] == w[1]), "HashKV differs: {h:?}");
    Ok(())
}
