//! The MVCC core against a deliberately naive reference model: a full copy of the keyspace per
//! revision. Random sequences of put/delete/txn/compact/range must get identical responses.

use std::collections::BTreeMap;

use keel_proto::etcdserverpb::{
    compare, request_op, response_op, CompactionRequest, Compare, DeleteRangeRequest,
    DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp,
    ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use keel_proto::mvccpb::KeyValue;
use keel_store::mvcc::memory::MemoryBackend;
use keel_store::mvcc::{Mvcc, MvccError, WriteRequest, WriteResponse};
use proptest::prelude::*;

/// State at every revision, index = revision. Nothing clever, so obviously right.
struct Model {
    states: Vec<BTreeMap<Vec<u8>, KeyValue>>,
    compacted: i64,
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    match end {
        [] => key == start,
        [0] => key >= start,
        end => key >= start && key < end,
    }
}

impl Model {
    fn new() -> Self {
        // Revision 0 and 1 are both the empty store: the first write makes revision 2.
        Self {
            states: vec![BTreeMap::new(), BTreeMap::new()],
            compacted: 0,
        }
    }

    fn current(&self) -> i64 {
        self.states.len() as i64 - 1
    }

    fn range_in(&self, state: &BTreeMap<Vec<u8>, KeyValue>, req: &RangeRequest) -> RangeResponse {
        let all: Vec<KeyValue> = state
            .values()
            .filter(|kv| in_range(&kv.key, &req.key, &req.range_end))
            .cloned()
            .collect();
        let count = all.len() as i64;
        if req.count_only {
            return RangeResponse {
                count,
                ..Default::default()
            };
        }
        let mut kvs = all.clone();
        let mut more = false;
        if req.limit > 0 && kvs.len() > req.limit as usize {
            kvs.truncate(req.limit as usize);
            more = true;
        }
        if req.keys_only {
            kvs.iter_mut().for_each(|kv| kv.value.clear());
        }
        RangeResponse {
            header: None,
            kvs,
            more,
            count,
        }
    }

    fn range(&self, req: &RangeRequest) -> Result<RangeResponse, MvccError> {
        let at = if req.revision <= 0 {
            self.current()
        } else {
            req.revision
        };
        if at > self.current() {
            return Err(MvccError::FutureRevision);
        }
        if req.revision > 0 && at < self.compacted {
            return Err(MvccError::Compacted);
        }
        Ok(self.range_in(&self.states[at as usize], req))
    }

    fn compare(state: &BTreeMap<Vec<u8>, KeyValue>, c: &Compare) -> bool {
        let target = compare::CompareTarget::try_from(c.target).unwrap_or_default();
        let kv = state.get(&c.key);
        if kv.is_none() && target == compare::CompareTarget::Value {
            return false;
        }
        let kv = kv.cloned().unwrap_or_default();
        let ord = match (&c.target_union, target) {
            (Some(compare::TargetUnion::Version(v)), _) => kv.version.cmp(v),
            (Some(compare::TargetUnion::ModRevision(v)), _) => kv.mod_revision.cmp(v),
            (Some(compare::TargetUnion::CreateRevision(v)), _) => kv.create_revision.cmp(v),
            (Some(compare::TargetUnion::Value(v)), _) => kv.value.as_slice().cmp(v.as_slice()),
            _ => std::cmp::Ordering::Equal,
        };
        match compare::CompareResult::try_from(c.result).unwrap_or_default() {
            compare::CompareResult::Equal => ord.is_eq(),
            compare::CompareResult::Greater => ord.is_gt(),
            compare::CompareResult::Less => ord.is_lt(),
            compare::CompareResult::NotEqual => ord.is_ne(),
        }
    }

    /// Applies a write to `state` as of revision `rev`; returns whether anything changed.
    fn put_in(state: &mut BTreeMap<Vec<u8>, KeyValue>, req: &PutRequest, rev: i64) -> PutResponse {
        let prev = state.get(&req.key).cloned();
        let kv = KeyValue {
            key: req.key.clone(),
            create_revision: prev.as_ref().map(|p| p.create_revision).unwrap_or(rev),
            mod_revision: rev,
            version: prev.as_ref().map(|p| p.version + 1).unwrap_or(1),
            value: req.value.clone(),
            lease: 0,
        };
        state.insert(req.key.clone(), kv);
        PutResponse {
            header: None,
            prev_kv: if req.prev_kv { prev } else { None },
        }
    }

    fn delete_in(
        state: &mut BTreeMap<Vec<u8>, KeyValue>,
        req: &DeleteRangeRequest,
    ) -> DeleteRangeResponse {
        let keys: Vec<Vec<u8>> = state
            .keys()
            .filter(|k| in_range(k, &req.key, &req.range_end))
            .cloned()
            .collect();
        let mut resp = DeleteRangeResponse {
            deleted: keys.len() as i64,
            ..Default::default()
        };
        for k in keys {
            if let Some(kv) = state.remove(&k) {
                if req.prev_kv {
                    resp.prev_kvs.push(kv);
                }
            }
        }
        resp
    }

    fn txn_in(
        &self,
        state: &mut BTreeMap<Vec<u8>, KeyValue>,
        req: &TxnRequest,
        rev: i64,
        changed: &mut bool,
    ) -> TxnResponse {
        let succeeded = req.compare.iter().all(|c| Self::compare(state, c));
        let ops = if succeeded {
            &req.success
        } else {
            &req.failure
        };
        // Nested headers carry only a revision, as etcd stamps them: a read sees the request's
        // revision once it has changed something, a delete that changed nothing reports the
        // previous one, and a nested txn has an empty header.
        let at = |changed: bool| header(if changed { rev } else { rev - 1 });
        let mut responses = Vec::new();
        for op in ops {
            let r = match &op.request {
                Some(request_op::Request::RequestRange(r)) => {
                    let mut resp = self.range_in(state, r);
                    resp.header = at(*changed);
                    response_op::Response::ResponseRange(resp)
                }
                Some(request_op::Request::RequestPut(p)) => {
                    *changed = true;
                    let mut resp = Self::put_in(state, p, rev);
                    resp.header = at(true);
                    response_op::Response::ResponsePut(resp)
                }
                Some(request_op::Request::RequestDeleteRange(d)) => {
                    let mut resp = Self::delete_in(state, d);
                    *changed |= resp.deleted > 0;
                    resp.header = at(*changed);
                    response_op::Response::ResponseDeleteRange(resp)
                }
                Some(request_op::Request::RequestTxn(t)) => {
                    let mut resp = self.txn_in(state, t, rev, changed);
                    resp.header = Some(ResponseHeader::default());
                    response_op::Response::ResponseTxn(resp)
                }
                None => response_op::Response::ResponseRange(RangeResponse::default()),
            };
            responses.push(ResponseOp { response: Some(r) });
        }
        TxnResponse {
            header: None,
            succeeded,
            responses,
        }
    }

    fn apply(&mut self, req: &WriteRequest) -> Result<WriteResponse, MvccError> {
        let mut state = self.states[self.current() as usize].clone();
        let rev = self.current() + 1;
        let (resp, changed) = match req {
            WriteRequest::Put(p) => (WriteResponse::Put(Self::put_in(&mut state, p, rev)), true),
            WriteRequest::DeleteRange(d) => {
                let r = Self::delete_in(&mut state, d);
                let changed = r.deleted > 0;
                (WriteResponse::DeleteRange(r), changed)
            }
            WriteRequest::Txn(t) => {
                let mut changed = false;
                let r = self.txn_in(&mut state, t, rev, &mut changed);
                (WriteResponse::Txn(r), changed)
            }
            WriteRequest::Compact(c) => {
                if c.revision > self.current() {
                    return Err(MvccError::FutureRevision);
                }
                if c.revision <= self.compacted {
                    return Err(MvccError::Compacted);
                }
                self.compacted = c.revision;
                return Ok(WriteResponse::Compact(Default::default()));
            }
            other => panic!("model does not do {other:?}"),
        };
        if changed {
            self.states.push(state);
        }
        Ok(resp)
    }
}

#[derive(Debug, Clone)]
enum Op {
    Write(WriteRequest),
    Read(RangeRequest),
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(vec!["a", "b", "c", "d", "e"]).prop_map(|k| k.as_bytes().to_vec())
}

fn range_end() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(vec!["", "", "c", "f", "\0"]).prop_map(|k| k.as_bytes().to_vec())
}

fn put() -> impl Strategy<Value = PutRequest> {
    (key(), "[xyz]{0,3}", any::<bool>()).prop_map(|(key, v, prev_kv)| PutRequest {
        key,
        value: v.into_bytes(),
        prev_kv,
        ..Default::default()
    })
}

fn delete() -> impl Strategy<Value = DeleteRangeRequest> {
    (key(), range_end(), any::<bool>()).prop_map(|(key, range_end, prev_kv)| DeleteRangeRequest {
        key,
        range_end,
        prev_kv,
    })
}

fn range(max_rev: i64) -> impl Strategy<Value = RangeRequest> {
    (
        key(),
        range_end(),
        0..max_rev,
        0i64..3,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(key, range_end, revision, limit, keys_only, count_only)| RangeRequest {
                key,
                range_end,
                revision,
                limit,
                keys_only,
                count_only,
                ..Default::default()
            },
        )
}

fn compare_strategy() -> impl Strategy<Value = Compare> {
    (key(), 0i32..4, 0i32..4, 0i64..6, "[xyz]{0,2}").prop_map(|(key, result, target, n, v)| {
        let target_union = match target {
            0 => compare::TargetUnion::Version(n),
            1 => compare::TargetUnion::CreateRevision(n),
            2 => compare::TargetUnion::ModRevision(n),
            _ => compare::TargetUnion::Value(v.into_bytes()),
        };
        Compare {
            key,
            result,
            target: target.min(3),
            target_union: Some(target_union),
            range_end: Vec::new(),
        }
    })
}

fn txn() -> impl Strategy<Value = TxnRequest> {
    // Distinct keys per branch so the request passes etcd's duplicate-key rule, as validated ones do.
    let branch = prop::collection::vec(
        prop_oneof![
            put().prop_map(|p| RequestOp {
                request: Some(request_op::Request::RequestPut(p))
            }),
            key().prop_map(|k| RequestOp {
                request: Some(request_op::Request::RequestDeleteRange(
                    DeleteRangeRequest {
                        key: k,
                        ..Default::default()
                    }
                ))
            }),
            range(1).prop_map(|r| RequestOp {
                request: Some(request_op::Request::RequestRange(RangeRequest {
                    revision: 0,
                    ..r
                }))
            }),
        ],
        0..4,
    )
    .prop_map(|ops| {
        let mut seen = std::collections::HashSet::new();
        ops.into_iter()
            .filter(|op| match &op.request {
                Some(request_op::Request::RequestPut(p)) => seen.insert(p.key.clone()),
                Some(request_op::Request::RequestDeleteRange(d)) => seen.insert(d.key.clone()),
                _ => true,
            })
            .collect::<Vec<_>>()
    });
    (
        prop::collection::vec(compare_strategy(), 0..3),
        branch.clone(),
        branch,
    )
        .prop_map(|(compare, success, failure)| TxnRequest {
            compare,
            success,
            failure,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => put().prop_map(|p| Op::Write(WriteRequest::Put(p))),
        2 => delete().prop_map(|d| Op::Write(WriteRequest::DeleteRange(d))),
        2 => txn().prop_map(|t| Op::Write(WriteRequest::Txn(t))),
        1 => (0i64..30).prop_map(|r| Op::Write(WriteRequest::Compact(CompactionRequest { revision: r, physical: false }))),
        4 => range(30).prop_map(Op::Read),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn mvcc_agrees_with_the_reference_model(ops in prop::collection::vec(op(), 1..60)) {
        let mut model = Model::new();
        let mut mvcc = Mvcc::new(1);
        let mut backend = MemoryBackend::default();
        for (i, op) in ops.iter().enumerate() {
            match op {
                Op::Write(req) => {
                    let want = model.apply(req);
                    let got = mvcc.apply(req, &mut backend).map(|a| a.response);
                    prop_assert_eq!(&got, &want, "op {} {:?}", i, req);
                    prop_assert_eq!(mvcc.current_revision(), model.current(), "revision after op {}", i);
                }
                Op::Read(req) => {
                    let want = model.range(req);
                    let got = mvcc.range(req, &backend);
                    prop_assert_eq!(&got, &want, "op {} {:?}", i, req);
                }
            }
        }
    }
}
