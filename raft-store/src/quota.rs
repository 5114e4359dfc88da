//! The space quota (etcd's `--quota-backend-bytes`): what a write costs, and the NOSPACE alarm
//! that stops writes needing space once the quota is used up.

use keel_proto::etcdserverpb::alarm_request::AlarmAction;
use keel_proto::etcdserverpb::request_op::Request;
use keel_proto::etcdserverpb::{AlarmRequest, AlarmResponse, AlarmType, RequestOp, TxnRequest};
use prost::Message;

use crate::error::StoreError;
use crate::mvcc::WriteRequest;
use crate::node::Node;
use crate::storage::Alarms;
use crate::types::Command;

/// Bytes of bookkeeping per stored revision beyond its key and value, roughly.
const PER_REVISION: usize = 64;

/// The space a write request may take: puts cost their key, value and bookkeeping; deletes,
/// compactions and revocations free space and always pass (as on etcd, they are how an operator
/// gets out of NOSPACE).
pub fn cost(req: &WriteRequest) -> usize {
    match req {
        WriteRequest::Put(p) => p.key.len() + p.value.len() + PER_REVISION,
        WriteRequest::Txn(t) => txn_cost(t),
        WriteRequest::LeaseGrant(_) => PER_REVISION,
        WriteRequest::DeleteRange(_) | WriteRequest::Compact(_) | WriteRequest::LeaseRevoke(_) => 0,
    }
}

fn txn_cost(t: &TxnRequest) -> usize {
    // Only one branch runs: the dearer one bounds it.
    let branch = |ops: &[RequestOp]| -> usize {
        ops.iter()
            .map(|op| match &op.request {
                Some(Request::RequestPut(p)) => p.key.len() + p.value.len() + PER_REVISION,
                Some(Request::RequestTxn(inner)) => txn_cost(inner),
                _ => 0,
            })
            .sum()
    };
    branch(&t.success).max(branch(&t.failure))
}

/// Whether a NOSPACE alarm is raised by any member.
pub fn no_space(alarms: &Alarms) -> bool {
    alarms
        .iter()
        .any(|(_, alarm)| *alarm == AlarmType::Nospace as i32)
}

/// An alarm's name as etcd prints it.
pub fn alarm_name(alarm: i32) -> &'static str {
    match AlarmType::try_from(alarm) {
        Ok(AlarmType::Nospace) => "NOSPACE",
        Ok(AlarmType::Corrupt) => "CORRUPT",
        _ => "NONE",
    }
}

impl Node {
    /// Refuses a write costing `cost` bytes when the space quota is used up, raising NOSPACE
    /// through the log the first time so that every member refuses alike.
    pub(crate) async fn check_space(&self, cost: usize) -> Result<(), StoreError> {
        if cost == 0 {
            return Ok(());
        }
        if no_space(&self.state().alarms()) {
            return Err(StoreError::NoSpace);
        }
        let quota = self.config().quota_backend_bytes;
        if quota > 0 && self.state().db().state_size_bytes() + cost as u64 > quota {
            tracing::warn!(quota, "the space quota is used up; raising NOSPACE");
            let raise = AlarmRequest {
                action: AlarmAction::Activate as i32,
                member_id: self.id,
                alarm: AlarmType::Nospace as i32,
            };
            if let Err(e) = self.alarm(raise).await {
                tracing::warn!(error = %e, "raising NOSPACE failed");
            }
            return Err(StoreError::NoSpace);
        }
        Ok(())
    }

    /// Raises or clears an alarm through the log; answers with the alarms after it.
    pub async fn alarm(&self, req: AlarmRequest) -> Result<AlarmResponse, StoreError> {
        let result = self.propose(Command::Alarm(req.encode_to_vec())).await?;
        let bytes = result.outcome?;
        AlarmResponse::decode(bytes.as_slice())
            .map_err(|e| StoreError::Internal(format!("alarm response: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use keel_proto::etcdserverpb::{DeleteRangeRequest, PutRequest};

    use super::*;

    fn put(key: &str, len: usize) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestPut(PutRequest {
                key: key.into(),
                value: vec![0; len],
                ..Default::default()
            })),
        }
    }

    #[test]
    fn puts_cost_their_size_and_deletes_are_free() {
        let p = WriteRequest::Put(PutRequest {
            key: b"k".to_vec(),
            value: vec![0; 100],
            ..Default::default()
        });
        assert_eq!(cost(&p), 1 + 100 + PER_REVISION);
        assert_eq!(
            cost(&WriteRequest::DeleteRange(DeleteRangeRequest::default())),
            0
        );
    }

    #[test]
    fn a_txn_costs_its_dearer_branch() {
        let t = TxnRequest {
            compare: vec![],
            success: vec![put("a", 10), put("b", 10)],
            failure: vec![put("c", 1000)],
        };
        assert_eq!(cost(&WriteRequest::Txn(t)), 1 + 1000 + PER_REVISION);
    }
}
