//! Linearizable reads, batched: one leadership confirmation (a ReadIndex round, or a look at
//! the leader lease in lease mode) serves every read that was waiting when it started.
//!
//! A read may only share a round that began after the read arrived; otherwise the round could
//! predate a write the reader already saw acknowledged. The batcher therefore takes everything
//! queued, runs one round for it, and queues later arrivals for the next round.

use std::sync::Arc;

use openraft::errors::{LinearizableReadError, RaftError};
use openraft::ReadPolicy;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::error::StoreError;
use crate::node::{Node, REQUEST_TIMEOUT};
use crate::raft::network;

/// How a leader confirms it still leads before serving a linearizable read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadMode {
    /// A heartbeat round to a quorum (etcd's ReadIndex).
    #[default]
    ReadIndex,
    /// The leader lease, without a round trip, while it holds; a round when it does not. Relies
    /// on clocks not drifting apart faster than the election timeout.
    Lease,
}

/// One waiting read: answered with the log index it must see applied.
pub(crate) type Waiter = oneshot::Sender<Result<u64, StoreError>>;

/// Queue handle the node sends reads to.
pub(crate) type ReadQueue = mpsc::UnboundedSender<Waiter>;

impl Node {
    /// The index a linearizable read must wait for, confirmed now.
    async fn read_round(&self) -> Result<u64, StoreError> {
        if self.is_leader() {
            return self
                .read_index_as_leader()
                .await
                .map_err(|leader| match leader {
                    Some(_) => StoreError::LeaderChanged,
                    None => StoreError::NoLeader,
                });
        }
        let url = self
            .leader()
            .and_then(|l| self.peer_url(l))
            .ok_or(StoreError::NoLeader)?;
        let mut client = self.peer(&url)?;
        match network::read_index(&mut client, REQUEST_TIMEOUT).await {
            Ok(Ok(index)) => Ok(index),
            Ok(Err(_)) => Err(StoreError::LeaderChanged),
            Err(_) => Err(StoreError::Timeout),
        }
    }

    /// This member's read index as leader; `Err(leader)` if it does not lead.
    pub async fn read_index_as_leader(&self) -> Result<u64, Option<u64>> {
        if self.read_mode() == ReadMode::Lease {
            if let Ok(read) = self.raft().ensure_linearizable(ReadPolicy::LeaseRead).await {
                return Ok(read.index());
            }
        }
        match self.raft().ensure_linearizable(ReadPolicy::ReadIndex).await {
            Ok(read) => Ok(read.index()),
            Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f))) => Err(f.leader_id),
            Err(_) => Err(None),
        }
    }

    /// Serves queued reads in rounds until `stop`.
    pub(crate) async fn run_read_batches(
        self: Arc<Self>,
        mut queue: mpsc::UnboundedReceiver<Waiter>,
        stop: CancellationToken,
    ) {
        loop {
            let first = tokio::select! {
                _ = stop.cancelled() => break,
                next = queue.recv() => match next {
                    Some(w) => w,
                    None => break,
                },
            };
            let mut batch = vec![first];
            while let Ok(more) = queue.try_recv() {
                batch.push(more);
            }
            let result = self.read_round().await;
            for waiter in batch {
                // A reader that gave up is gone; nothing to tell it.
                let _ = waiter.send(result.clone());
            }
        }
    }
}
