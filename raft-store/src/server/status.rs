//! The one mapping from store errors to gRPC statuses, with etcd's codes and messages (clients
//! such as etcdctl and clientv3 recognise errors by exactly these).

use tonic::{Code, Status};

use crate::auth::AuthError;
use crate::error::StoreError;
use crate::mvcc::MvccError;

pub fn to_status(err: StoreError) -> Status {
    let code = match &err {
        StoreError::Mvcc(m) => match m {
            MvccError::Compacted | MvccError::FutureRevision | MvccError::LeaseTtlTooLarge => {
                Code::OutOfRange
            }
            MvccError::LeaseNotFound => Code::NotFound,
            MvccError::LeaseExists => Code::FailedPrecondition,
            MvccError::KeyNotFound => Code::InvalidArgument,
            MvccError::Storage(_) => Code::Internal,
        },
        StoreError::EmptyKey
        | StoreError::ValueProvided
        | StoreError::LeaseProvided
        | StoreError::TooManyOps
        | StoreError::DuplicateKey
        | StoreError::RequestTooLarge => Code::InvalidArgument,
        StoreError::NoLeader
        | StoreError::OutcomeUnknown
        | StoreError::Timeout
        | StoreError::LeaderChanged
        | StoreError::Stopped => Code::Unavailable,
        StoreError::MemberNotFound => Code::NotFound,
        StoreError::BadMemberUrls => Code::InvalidArgument,
        StoreError::MemberExists
        | StoreError::PeerUrlExists
        | StoreError::MemberNotLearner
        | StoreError::LearnerNotReady
        | StoreError::NotEnoughStartedMembers
        | StoreError::BadLeaderTransferee
        | StoreError::NotLeader => Code::FailedPrecondition,
        StoreError::Removed => Code::Unavailable,
        StoreError::NoSpace => Code::ResourceExhausted,
        StoreError::Auth(a) => match a {
            AuthError::UserEmpty
            | AuthError::RoleEmpty
            | AuthError::AuthFailed
            | AuthError::PasswordEmpty
            | AuthError::InvalidAuthMgmt => Code::InvalidArgument,
            AuthError::PermissionDenied => Code::PermissionDenied,
            AuthError::InvalidAuthToken => Code::Unauthenticated,
            AuthError::RootUserNotExist
            | AuthError::RootRoleNotExist
            | AuthError::UserAlreadyExist
            | AuthError::UserNotFound
            | AuthError::RoleAlreadyExist
            | AuthError::RoleNotFound
            | AuthError::RoleNotGranted
            | AuthError::PermissionNotGranted
            | AuthError::AuthNotEnabled => Code::FailedPrecondition,
        },
        StoreError::Internal(_) => Code::Internal,
    };
    let message = match &err {
        // etcd prefixes its mvcc errors with "etcdserver: " on the wire.
        StoreError::Mvcc(m @ (MvccError::Compacted | MvccError::FutureRevision)) => {
            format!("etcdserver: {m}")
        }
        other => other.to_string(),
    };
    Status::new(code, message)
}

impl From<StoreError> for Status {
    fn from(err: StoreError) -> Self {
        to_status(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compacted_reads_get_etcds_code_and_text() {
        let s = to_status(StoreError::Mvcc(MvccError::Compacted));
        assert_eq!(s.code(), Code::OutOfRange);
        assert_eq!(
            s.message(),
            "etcdserver: mvcc: required revision has been compacted"
        );
    }

    #[test]
    fn oversized_requests_get_etcds_code_and_text() {
        let s = to_status(StoreError::RequestTooLarge);
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(s.message(), "etcdserver: request is too large");
    }
}
