//! Raft plumbing: the peer transport (client and server) and what followers ask the leader.

pub mod network;
pub mod peer_service;
pub mod snapshot_transfer;

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::membership::{ChangeOutcome, MemberChange};
use crate::types::{Command, CommandResult, Member, NodeId};

/// A request a member sends to the leader on a client's behalf.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Forwarded {
    /// Propose a command; the reply is its [`CommandResult`].
    Write(Command),
    /// Renew a lease; the reply is the remaining TTL in seconds (0 if the lease is unknown).
    LeaseKeepAlive { id: i64 },
    /// Remaining TTL of a lease on the leader's clock (-1 if unknown).
    LeaseTimeToLive { id: i64 },
    /// Change the membership; the reply is [`ForwardReply::Changed`].
    ChangeMembers(MemberChange),
    /// The membership as the receiver knows it (any member answers; a joining member asks to
    /// learn its own ID and the cluster's).
    Membership,
    /// Propose several commands in one submission; the reply is [`ForwardReply::WrittenMany`].
    Writes(Vec<Command>),
}

/// The leader's answer to a [`Forwarded`] request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardReply {
    Written(CommandResult),
    Ttl(i64),
    /// The receiver is not the leader (any more); the caller retries against the new one.
    NotLeader {
        leader: Option<u64>,
    },
    /// The entry was appended but discarded by a leader change: it may or may not commit.
    OutcomeUnknown,
    /// The leader could not serve the request; the text says why.
    Failed(String),
    Changed(Result<ChangeOutcome, StoreError>),
    Membership {
        cluster_id: u64,
        members: Vec<(NodeId, Member)>,
    },
    /// One reply per command of [`Forwarded::Writes`], in order.
    WrittenMany(Vec<ForwardReply>),
}
