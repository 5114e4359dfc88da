//! Bad requests get etcd's exact gRPC code and message, checked against a real etcd in the same
//! run, and a rejected request changes nothing.

use keel_proto::etcdserverpb::kv_client::KvClient;
use keel_proto::etcdserverpb::lease_client::LeaseClient;
use keel_proto::etcdserverpb::{
    request_op, CompactionRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use keel_tests::{cluster::connect, Cluster, Flavor};
use tonic::transport::Channel;

/// (name, outcome) for every bad request in the script: Ok(()) or (code, message).
async fn run_script(
    kv: &mut KvClient<Channel>,
    lease: &mut LeaseClient<Channel>,
) -> anyhow::Result<Vec<(String, Result<(), (i32, String)>)>> {
    let mut out = Vec::new();
    let mut record = |name: &str, res: Result<(), tonic::Status>| {
        out.push((
            name.to_string(),
            res.map_err(|s| (s.code() as i32, s.message().to_string())),
        ));
    };
    for i in 0..5 {
        kv.put(PutRequest {
            key: format!("k{i}").into_bytes(),
            value: b"v".to_vec(),
            ..Default::default()
        })
        .await?;
    }
    kv.compact(CompactionRequest {
        revision: 3,
        physical: true,
    })
    .await?;

    let big = PutRequest {
        key: b"big".to_vec(),
        value: vec![b'x'; 1536 * 1024 + 1],
        ..Default::default()
    };
    record("oversized put", kv.put(big).await.map(|_| ()));
    let put_op = |k: String| RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: k.into_bytes(),
            ..Default::default()
        })),
    };
    let too_many = TxnRequest {
        success: (0..129).map(|i| put_op(format!("t{i}"))).collect(),
        ..Default::default()
    };
    record("txn with 129 ops", kv.txn(too_many).await.map(|_| ()));
    let dup = TxnRequest {
        success: vec![put_op("d".into()), put_op("d".into())],
        ..Default::default()
    };
    record("txn putting a key twice", kv.txn(dup).await.map(|_| ()));
    record(
        "put with empty key",
        kv.put(PutRequest::default()).await.map(|_| ()),
    );
    record(
        "range with empty key",
        kv.range(RangeRequest::default()).await.map(|_| ()),
    );
    record(
        "put with unknown lease",
        kv.put(PutRequest {
            key: b"l".to_vec(),
            lease: 12345,
            ..Default::default()
        })
        .await
        .map(|_| ()),
    );
    record(
        "read at compacted revision",
        kv.range(RangeRequest {
            key: b"k0".to_vec(),
            revision: 2,
            ..Default::default()
        })
        .await
        .map(|_| ()),
    );
    record(
        "read at future revision",
        kv.range(RangeRequest {
            key: b"k0".to_vec(),
            revision: 1000,
            ..Default::default()
        })
        .await
        .map(|_| ()),
    );
    record(
        "compact at compacted revision",
        kv.compact(CompactionRequest {
            revision: 2,
            physical: false,
        })
        .await
        .map(|_| ()),
    );
    record(
        "compact at future revision",
        kv.compact(CompactionRequest {
            revision: 1000,
            physical: false,
        })
        .await
        .map(|_| ()),
    );
    record(
        "put ignore_value on a missing key",
        kv.put(PutRequest {
            key: b"missing".to_vec(),
            ignore_value: true,
            ..Default::default()
        })
        .await
        .map(|_| ()),
    );
    record(
        "revoke unknown lease",
        lease
            .lease_revoke(keel_proto::etcdserverpb::LeaseRevokeRequest { id: 777 })
            .await
            .map(|_| ()),
    );

    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_same_errors_as_etcd_and_change_nothing() -> anyhow::Result<()> {
    let etcd = Cluster::start(Flavor::Etcd, 1).await?;
    let keel = Cluster::start(Flavor::KeelStore, 1).await?;
    let mut results = Vec::new();
    for cluster in [&etcd, &keel] {
        let channel = connect(&cluster.members[0].client_url()).await?;
        let mut kv = KvClient::new(channel.clone()).max_encoding_message_size(8 << 20);
        let mut lease = LeaseClient::new(channel);
        let before = kv
            .range(RangeRequest {
                key: b"k".to_vec(),
                range_end: b"l".to_vec(),
                ..Default::default()
            })
            .await?
            .into_inner();
        let outcome = run_script(&mut kv, &mut lease).await?;
        let after = kv
            .range(RangeRequest {
                key: b"k".to_vec(),
                range_end: b"l".to_vec(),
                ..Default::default()
            })
            .await?
            .into_inner();
        results.push((outcome, before.header.map(|h| h.revision), after));
    }
    let (etcd_out, _, etcd_after) = &results[0];
    let (keel_out, _, keel_after) = &results[1];
    for ((name, want), (_, got)) in etcd_out.iter().zip(keel_out) {
        assert!(want.is_err(), "etcd accepted {name}: the script is wrong");
        assert_eq!(got, want, "{name}");
    }
    assert_eq!(keel_after.kvs.len(), 5, "the five good puts are all there");
    assert_eq!(
        keel_after.kvs, etcd_after.kvs,
        "keel and etcd hold the same data after the same script"
    );
    assert_eq!(
        keel_after.header.map(|h| h.revision),
        etcd_after.header.map(|h| h.revision),
        "rejected requests did not bump the revision"
    );
    Ok(())
}
