//! Writes a follower forwards to the leader, batched: every write that is waiting when a batch
//! leaves goes in one peer request, which the leader hands to raft as one submission.
//!
//! Under load, a per-write request costs the forwarding member and the leader more CPU than the
//! write itself. Batching never delays a write: a batch leaves as soon as a slot is free, holding
//! whatever queued meanwhile; a lone write travels alone.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use openraft::errors::ClientWriteError;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::error::StoreError;
use crate::node::Node;
use crate::raft::{ForwardReply, Forwarded};
use crate::types::{Command, TypeConfig};

/// Batches on their way to the leader at once. More queue up behind them and leave together.
const BATCHES_IN_FLIGHT: usize = 4;
/// Most writes in one batch.
const MAX_BATCH_WRITES: usize = 1024;
/// Most encoded command bytes in one batch (a single command may be larger and goes alone).
const MAX_BATCH_BYTES: usize = 4 << 20;

/// One write waiting to be forwarded, answered with the leader's reply for it.
pub(crate) struct QueuedWrite {
    pub(crate) cmd: Command,
    pub(crate) deadline: Instant,
    pub(crate) reply: oneshot::Sender<Result<ForwardReply, StoreError>>,
}

/// Queue handle the node sends writes to forward to.
pub(crate) type WriteQueue = mpsc::UnboundedSender<QueuedWrite>;

impl Node {
    /// Forwards batches of queued writes to the leader until `stop`.
    pub(crate) async fn run_forward_batches(
        self: Arc<Self>,
        mut queue: mpsc::UnboundedReceiver<QueuedWrite>,
        stop: CancellationToken,
    ) {
        let slots = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT));
        loop {
            let slot = tokio::select! {
                _ = stop.cancelled() => break,
                slot = slots.clone().acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => break,
                },
            };
            let first = tokio::select! {
                _ = stop.cancelled() => break,
                next = queue.recv() => match next {
                    Some(w) => w,
                    None => break,
                },
            };
            let mut bytes = first.cmd.encoded_len();
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH_WRITES && bytes < MAX_BATCH_BYTES {
                match queue.try_recv() {
                    Ok(w) => {
                        bytes += w.cmd.encoded_len();
                        batch.push(w);
                    }
                    Err(_) => break,
                }
            }
            let node = self.clone();
            tokio::spawn(async move {
                node.forward_batch(batch).await;
                drop(slot);
            });
        }
    }

    /// Sends one batch to the leader and answers each of its writes.
    async fn forward_batch(&self, batch: Vec<QueuedWrite>) {
        let deadline = batch
            .iter()
            .map(|w| w.deadline)
            .min()
            .unwrap_or_else(Instant::now);
        let (cmds, replies): (Vec<Command>, Vec<_>) =
            batch.into_iter().map(|w| (w.cmd, w.reply)).unzip();
        let n = cmds.len();
        let req = if n == 1 {
            Forwarded::Write(cmds.into_iter().next().expect("one command"))
        } else {
            Forwarded::Writes(cmds)
        };
        let answers: Vec<Result<ForwardReply, StoreError>> =
            match self.to_leader(&req, deadline).await {
                Ok(ForwardReply::WrittenMany(each)) if each.len() == n => {
                    each.into_iter().map(Ok).collect()
                }
                // A reply about the whole request (not the leader, or it could not be read)
                // answers every write in it.
                Ok(whole) => vec![Ok(whole); n],
                Err(e) => vec![Err(e); n],
            };
        for (reply, answer) in replies.into_iter().zip(answers) {
            // A writer that gave up is gone; nothing to tell it.
            let _ = reply.send(answer);
        }
    }

    /// Proposes a batch of forwarded writes as leader: one submission to raft, one reply each,
    /// in order.
    pub(crate) async fn serve_forwarded_writes(&self, cmds: Vec<Command>) -> ForwardReply {
        let n = cmds.len();
        let mut each = Vec::with_capacity(n);
        // An error submitting means raft stopped, with the entries perhaps in the log.
        if let Ok(mut results) = self.raft().client_write_many(cmds).await {
            while let Some(result) = results.next().await {
                each.push(match result {
                    Ok(Ok(resp)) => ForwardReply::Written(resp.response),
                    Ok(Err(e)) => refused_write(e),
                    // Raft stopped with the entry perhaps appended.
                    Err(_) => ForwardReply::OutcomeUnknown,
                });
            }
        }
        // Writes the stream never answered (raft stopped) may or may not commit.
        each.resize(n, ForwardReply::OutcomeUnknown);
        ForwardReply::WrittenMany(each)
    }
}

/// The reply to a forwarded write raft did not accept as leader.
pub(crate) fn refused_write(e: ClientWriteError<TypeConfig>) -> ForwardReply {
    match e {
        ClientWriteError::ForwardToLeader(f) => ForwardReply::NotLeader {
            leader: f.leader_id,
        },
        // Appended, then dropped by a leader change: it may or may not commit.
        ClientWriteError::LogEntryDiscarded(_) => ForwardReply::OutcomeUnknown,
        e => ForwardReply::Failed(e.to_string()),
    }
}
