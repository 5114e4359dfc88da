//! The openraft type configuration and what travels through the log.
//!
//! openraft is pinned at an alpha; every openraft type the rest of the crate names is aliased here
//! so an upgrade touches this module and the storage/network adapters only.

use std::fmt;

use keel_proto::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest, PutRequest,
    TxnRequest,
};
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::mvcc::{MvccError, WriteRequest};

/// A member's raft identity (etcd's member ID).
pub type NodeId = u64;

/// What the raft membership records about a member: enough to reach its peer port.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    pub peer_urls: Vec<String>,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.peer_urls.join(","))
    }
}

/// A log entry's payload. etcd requests are carried in their protobuf encoding, which is stable
/// and already defined; the state machine decodes them on apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Put(Vec<u8>),
    DeleteRange(Vec<u8>),
    Txn(Vec<u8>),
    Compact(Vec<u8>),
    LeaseGrant(Vec<u8>),
    LeaseRevoke(Vec<u8>),
    /// A member announces the client URLs it serves on (etcd publishes these the same way).
    PublishMember {
        id: NodeId,
        name: String,
        client_urls: Vec<String>,
    },
    /// Raise or clear an alarm (an etcd `AlarmRequest`, protobuf-encoded).
    Alarm(Vec<u8>),
    /// Change the auth state (an [`crate::auth::AuthOp`] in the store's codec).
    Auth(Vec<u8>),
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Command::Put(_) => "put",
            Command::DeleteRange(_) => "delete_range",
            Command::Txn(_) => "txn",
            Command::Compact(_) => "compact",
            Command::LeaseGrant(_) => "lease_grant",
            Command::LeaseRevoke(_) => "lease_revoke",
            Command::PublishMember { .. } => "publish_member",
            Command::Alarm(_) => "alarm",
            Command::Auth(_) => "auth",
        };
        f.write_str(name)
    }
}

impl Command {
    pub fn from_write(req: &WriteRequest) -> Self {
        match req {
            WriteRequest::Put(r) => Command::Put(r.encode_to_vec()),
            WriteRequest::DeleteRange(r) => Command::DeleteRange(r.encode_to_vec()),
            WriteRequest::Txn(r) => Command::Txn(r.encode_to_vec()),
            WriteRequest::Compact(r) => Command::Compact(r.encode_to_vec()),
            WriteRequest::LeaseGrant(r) => Command::LeaseGrant(r.encode_to_vec()),
            WriteRequest::LeaseRevoke(r) => Command::LeaseRevoke(r.encode_to_vec()),
        }
    }

    /// The etcd request inside, or `None` for keel's own commands.
    pub fn to_write(&self) -> Result<Option<WriteRequest>, prost::DecodeError> {
        Ok(Some(match self {
            Command::Put(b) => WriteRequest::Put(PutRequest::decode(b.as_slice())?),
            Command::DeleteRange(b) => {
                WriteRequest::DeleteRange(DeleteRangeRequest::decode(b.as_slice())?)
            }
            Command::Txn(b) => WriteRequest::Txn(TxnRequest::decode(b.as_slice())?),
            Command::Compact(b) => WriteRequest::Compact(CompactionRequest::decode(b.as_slice())?),
            Command::LeaseGrant(b) => {
                WriteRequest::LeaseGrant(LeaseGrantRequest::decode(b.as_slice())?)
            }
            Command::LeaseRevoke(b) => {
                WriteRequest::LeaseRevoke(LeaseRevokeRequest::decode(b.as_slice())?)
            }
            Command::PublishMember { .. } | Command::Alarm(_) | Command::Auth(_) => {
                return Ok(None)
            }
        }))
    }

    pub fn encoded_len(&self) -> usize {
        match self {
            Command::Put(b)
            | Command::DeleteRange(b)
            | Command::Txn(b)
            | Command::Compact(b)
            | Command::LeaseGrant(b)
            | Command::LeaseRevoke(b)
            | Command::Alarm(b)
            | Command::Auth(b) => b.len(),
            Command::PublishMember {
                name, client_urls, ..
            } => name.len() + client_urls.iter().map(String::len).sum::<usize>(),
        }
    }
}

/// The result of applying a [`Command`]: the store revision after it and the protobuf-encoded
/// etcd response (its type is the one matching the request), or the deterministic error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult {
    pub revision: i64,
    pub outcome: Result<Vec<u8>, MvccError>,
}

impl fmt::Display for CommandResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Ok(bytes) => write!(f, "ok@{} ({} bytes)", self.revision, bytes.len()),
            Err(e) => write!(f, "err@{}: {e}", self.revision),
        }
    }
}

openraft::declare_raft_types!(
    /// keel's raft type configuration.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = NodeId,
        Node = Member,
);

pub type Raft = openraft::Raft<TypeConfig, crate::storage::StateMachine>;
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, crate::storage::snapshot::Image>;
