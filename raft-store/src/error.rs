//! The store's one error type. Fatal or retryable is decided by variant, never by message text.

use crate::mvcc::MvccError;

/// Why a request to the store failed. Serializable: a leader's refusal travels back to the member
/// that forwarded the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum StoreError {
    /// A deterministic refusal by the state machine (compacted, unknown lease, ...).
    #[error(transparent)]
    Mvcc(#[from] MvccError),
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdserver: no leader")]
    NoLeader,
    /// The proposal may or may not have been committed: the leader changed or became unreachable
    /// after it was sent. Retrying a non-idempotent request may apply it twice.
    #[error("etcdserver: request timed out, possibly due to previous leader failure")]
    OutcomeUnknown,
    #[error("etcdserver: request timed out")]
    Timeout,
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    #[error("etcdserver: server stopped")]
    Stopped,
    #[error("etcdserver: member not found")]
    MemberNotFound,
    #[error("etcdserver: member ID already exist")]
    MemberExists,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    #[error("etcdserver: given member URLs are invalid")]
    BadMemberUrls,
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStartedMembers,
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    #[error("etcdserver: not leader")]
    NotLeader,
    /// The space quota is used up (or a NOSPACE alarm is raised): writes that need space are
    /// refused until an operator compacts, defragments and disarms.
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// This member was removed from the cluster; it serves nothing more.
    #[error("etcdserver: the member has been permanently removed from the cluster")]
    Removed,
    /// Refused by auth: a bad token or password, a missing permission, or an auth change
    /// etcd's rules forbid.
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    #[error("etcdserver: {0}")]
    Internal(String),
}
