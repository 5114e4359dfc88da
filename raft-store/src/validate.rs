//! Request checks done before anything is proposed, with etcd's rules and error texts.

use std::collections::HashSet;

use keel_proto::etcdserverpb::{
    request_op, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};

use crate::error::StoreError;

/// etcd's default `--max-request-bytes`: 1.5 MiB.
pub const MAX_REQUEST_BYTES: usize = 1536 * 1024;
/// etcd's default `--max-txn-ops`.
pub const MAX_TXN_OPS: usize = 128;

pub fn check_range(r: &RangeRequest) -> Result<(), StoreError> {
    if r.key.is_empty() {
        return Err(StoreError::EmptyKey);
    }
    // etcd 3.4 accepts unknown sort values (and then does not sort); so does keel.
    Ok(())
}

pub fn check_put(r: &PutRequest) -> Result<(), StoreError> {
    if r.key.is_empty() {
        return Err(StoreError::EmptyKey);
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(StoreError::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(StoreError::LeaseProvided);
    }
    Ok(())
}

pub fn check_delete(r: &DeleteRangeRequest) -> Result<(), StoreError> {
    if r.key.is_empty() {
        return Err(StoreError::EmptyKey);
    }
    Ok(())
}

pub fn check_txn(r: &TxnRequest) -> Result<(), StoreError> {
    if r.compare.len() > MAX_TXN_OPS
        || r.success.len() > MAX_TXN_OPS
        || r.failure.len() > MAX_TXN_OPS
    {
        return Err(StoreError::TooManyOps);
    }
    for c in &r.compare {
        if c.key.is_empty() {
            return Err(StoreError::EmptyKey);
        }
    }
    for op in r.success.iter().chain(&r.failure) {
        check_op(op)?;
    }
    check_intervals(&r.success)?;
    check_intervals(&r.failure)?;
    Ok(())
}

fn check_op(op: &RequestOp) -> Result<(), StoreError> {
    match &op.request {
        Some(request_op::Request::RequestRange(r)) => check_range(r),
        Some(request_op::Request::RequestPut(r)) => check_put(r),
        Some(request_op::Request::RequestDeleteRange(r)) => check_delete(r),
        Some(request_op::Request::RequestTxn(r)) => check_txn(r),
        None => Ok(()),
    }
}

/// A deleted key range; `end == None` means unbounded.
#[derive(Clone)]
struct Interval {
    start: Vec<u8>,
    end: Option<Vec<u8>>,
}

impl Interval {
    fn of_delete(r: &DeleteRangeRequest) -> Self {
        let end = match r.range_end.as_slice() {
            [] => {
                let mut e = r.key.clone();
                e.push(0);
                Some(e)
            }
            [0] => None,
            end => Some(end.to_vec()),
        };
        Self {
            start: r.key.clone(),
            end,
        }
    }

    fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && self.end.as_deref().is_none_or(|e| key < e)
    }
}

/// A txn branch may not put one key twice, nor put a key it also deletes (etcd's checkIntervals):
/// the outcome would depend on op order in ways etcd forbids.
fn check_intervals(ops: &[RequestOp]) -> Result<(HashSet<Vec<u8>>, Vec<Interval>), StoreError> {
    let mut dels: Vec<Interval> = ops
        .iter()
        .filter_map(|op| match &op.request {
            Some(request_op::Request::RequestDeleteRange(d)) => Some(Interval::of_delete(d)),
            _ => None,
        })
        .collect();
    let mut puts: HashSet<Vec<u8>> = HashSet::new();
    let clash = |k: &[u8], puts: &HashSet<Vec<u8>>, dels: &[Interval]| {
        puts.contains(k) || dels.iter().any(|d| d.contains(k))
    };
    for op in ops {
        let Some(request_op::Request::RequestTxn(txn)) = &op.request else {
            continue;
        };
        let (puts_then, dels_then) = check_intervals(&txn.success)?;
        let (puts_else, dels_else) = check_intervals(&txn.failure)?;
        for k in &puts_then {
            if clash(k, &puts, &dels) {
                return Err(StoreError::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        for k in &puts_else {
            // then and else are exclusive: the same key in both branches is fine.
            if (puts.contains(k) && !puts_then.contains(k)) || dels.iter().any(|d| d.contains(k)) {
                return Err(StoreError::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in ops {
        let Some(request_op::Request::RequestPut(put)) = &op.request else {
            continue;
        };
        if clash(&put.key, &puts, &dels) {
            return Err(StoreError::DuplicateKey);
        }
        puts.insert(put.key.clone());
    }
    Ok((puts, dels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: k.into(),
                ..Default::default()
            })),
        }
    }

    fn del(k: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestDeleteRange(
                DeleteRangeRequest {
                    key: k.into(),
                    range_end: end.into(),
                    ..Default::default()
                },
            )),
        }
    }

    #[test]
    fn txn_putting_one_key_twice_is_rejected() {
        let txn = TxnRequest {
            success: vec![put("a"), put("a")],
            ..Default::default()
        };
        assert_eq!(check_txn(&txn), Err(StoreError::DuplicateKey));
    }

    #[test]
    fn txn_putting_a_key_it_deletes_is_rejected() {
        let txn = TxnRequest {
            success: vec![del("a", "c"), put("b")],
            ..Default::default()
        };
        assert_eq!(check_txn(&txn), Err(StoreError::DuplicateKey));
        let ok = TxnRequest {
            success: vec![del("a", "b"), put("b")],
            ..Default::default()
        };
        assert_eq!(check_txn(&ok), Ok(()));
    }

    #[test]
    fn same_key_in_then_and_else_of_a_nested_txn_is_allowed() {
        let nested = TxnRequest {
            success: vec![put("a")],
            failure: vec![put("a")],
            ..Default::default()
        };
        let txn = TxnRequest {
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestTxn(nested)),
            }],
            ..Default::default()
        };
        assert_eq!(check_txn(&txn), Ok(()));
    }

    #[test]
    fn txn_over_the_op_limit_is_rejected() {
        let txn = TxnRequest {
            success: (0..=MAX_TXN_OPS).map(|i| put(&i.to_string())).collect(),
            ..Default::default()
        };
        assert_eq!(check_txn(&txn), Err(StoreError::TooManyOps));
    }

    #[test]
    fn put_with_ignore_value_and_a_value_is_rejected() {
        let r = PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ignore_value: true,
            ..Default::default()
        };
        assert_eq!(check_put(&r), Err(StoreError::ValueProvided));
        assert_eq!(check_put(&PutRequest::default()), Err(StoreError::EmptyKey));
    }
}
