//! Behaviour of the MVCC core against the in-memory backend.

use keel_proto::etcdserverpb::{
    compare, request_op, response_op, CompactionRequest, Compare, DeleteRangeRequest,
    LeaseGrantRequest, LeaseRevokeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};

use super::memory::MemoryBackend;
use super::*;

fn put(key: &str, value: &str) -> WriteRequest {
    WriteRequest::Put(PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    })
}

fn get(m: &Mvcc, b: &MemoryBackend, key: &str, rev: i64) -> Result<RangeResponse, MvccError> {
    m.range(
        &RangeRequest {
            key: key.into(),
            revision: rev,
            ..Default::default()
        },
        b,
    )
}

#[test]
fn each_write_request_bumps_the_revision_once() {
    let (mut m, mut b) = (Mvcc::new(1), MemoryBackend::default());
    assert_eq!(m.current_revision(), 1);
    let applied = m.apply(&put("a", "1"), &mut b).expect("put");
    assert_eq!(applied.revision, 2);
    let kv = &get(&m, &b, "a", 0).expect("get").kvs[0];
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 2, 1));
}

#[test]
fn txn_writes_share_one_revision_and_read_their_own_writes() {
    let (mut m, mut b) = (Mvcc::new(1), MemoryBackend::default());
    let op_put = |k: &str| RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: k.into(),
            value: b"v".to_vec(),
            ..Default::default()
        })),
    };
    let txn = TxnRequest {
        compare: vec![Compare {
            key: b"a".to_vec(),
            target: compare::CompareTarget::Version as i32,
            result: compare::CompareResult::Equal as i32,
            target_union: Some(compare::TargetUnion::Version(0)),
            ..Default::default()
        }],
        success: vec![
            op_put("a"),
            op_put("b"),
            RequestOp {
                request: Some(request_op::Request::RequestRange(RangeRequest {
                    key: b"a".to_vec(),
                    ..Default::default()
                })),
            },
        ],
        failure: vec![],
    };
    let applied = m.apply(&WriteRequest::Txn(txn), &mut b).expect("txn");
    let WriteResponse::Txn(resp) = applied.response else {
        panic!("not a txn response")
    };
    assert!(resp.succeeded);
    assert_eq!(applied.revision, 2);
    let Some(response_op::Response::ResponseRange(read)) = &resp.responses[2].response else {
        panic!("no range")
    };
    assert_eq!(read.kvs.len(), 1, "the txn sees its own put");
    assert_eq!(applied.events.len(), 2);
}

#[test]
fn reads_at_compacted_or_future_revisions_fail() {
    let (mut m, mut b) = (Mvcc::new(1), MemoryBackend::default());
    for i in 0..3 {
        m.apply(&put("a", &i.to_string()), &mut b).expect("put");
    }
    m.apply(
        &WriteRequest::Compact(CompactionRequest {
            revision: 3,
            physical: false,
        }),
        &mut b,
    )
    .expect("compact");
    assert_eq!(get(&m, &b, "a", 2), Err(MvccError::Compacted));
    assert_eq!(get(&m, &b, "a", 9), Err(MvccError::FutureRevision));
    assert_eq!(
        get(&m, &b, "a", 3).expect("at compaction point").kvs[0].value,
        b"1"
    );
    assert_eq!(
        b.changes.len(),
        2,
        "only the revision visible at 3 and the newer one remain"
    );
}

#[test]
fn deleting_a_missing_key_changes_nothing() {
    let (mut m, mut b) = (Mvcc::new(1), MemoryBackend::default());
    let applied = m
        .apply(
            &WriteRequest::DeleteRange(DeleteRangeRequest {
                key: b"nope".to_vec(),
                ..Default::default()
            }),
            &mut b,
        )
        .expect("delete");
    assert_eq!(applied.revision, 1);
    assert!(applied.events.is_empty());
}

#[test]
fn revoking_a_lease_deletes_its_keys_at_one_revision() {
    let (mut m, mut b) = (Mvcc::new(1), MemoryBackend::default());
    m.apply(
        &WriteRequest::LeaseGrant(LeaseGrantRequest { ttl: 10, id: 7 }),
        &mut b,
    )
    .expect("grant");
    for k in ["a", "b"] {
        m.apply(
            &WriteRequest::Put(PutRequest {
                key: k.into(),
                lease: 7,
                ..Default::default()
            }),
            &mut b,
        )
        .expect("put");
    }
    assert_eq!(m.leases()[&7].keys.len(), 2);
    let applied = m
        .apply(
            &WriteRequest::LeaseRevoke(LeaseRevokeRequest { id: 7 }),
            &mut b,
        )
        .expect("revoke");
    assert_eq!(applied.revision, 4);
    assert_eq!(applied.events.len(), 2);
    assert!(get(&m, &b, "a", 0).expect("get").kvs.is_empty());
    assert_eq!(
        m.apply(
            &WriteRequest::Put(PutRequest {
                key: b"c".to_vec(),
                lease: 7,
                ..Default::default()
            }),
            &mut b
        ),
        Err(MvccError::LeaseNotFound)
    );
}
