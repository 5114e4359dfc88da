//! A running member: the raft node, its state, and the operations the client API is built from.
//!
//! Any member accepts any request. Writes are proposed locally when this member leads and
//! forwarded to the leader otherwise; linearizable reads wait until the local state has applied
//! the leader's read index; serializable reads are served from local state as it is.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::PoisonError;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_proto::etcdserverpb::ResponseHeader;
use keel_proto::keelpb::raft_peer_client::RaftPeerClient;
use openraft::errors::{ClientWriteError, RaftError};
use tonic::transport::Channel;

use crate::config::{cluster_id, member_id, ClusterState, NodeConfig};
use crate::error::StoreError;
use crate::forward::{QueuedWrite, WriteQueue};
use crate::lessor::Lessor;
use crate::mvcc::WriteRequest;
use crate::raft::network::{self, NetworkFactory, PeerTls};
use crate::raft::{ForwardReply, Forwarded};
use crate::read_index::{ReadMode, ReadQueue, Waiter};
use crate::storage::identity::{self, Identity};
use crate::storage::{self, LogStore, StateMachine, StoreState};
use crate::types::{Command, CommandResult, Member, NodeId, Raft, TypeConfig};

/// How long a request waits for a leader, a forward or a read index before giving up.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a joining member looks for a cluster that lists it.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(60);
const RETRY_PAUSE: Duration = Duration::from_millis(25);

/// openraft's election timers for an etcd-style election timeout: how long a follower goes
/// without hearing from a leader before it campaigns.
///
/// openraft keeps a follower from campaigning until `max` (the leader lease, which also bounds
/// lease reads) plus a timeout drawn from `[min, max)` have passed since the last heartbeat. The
/// sum is made to land in `[timeout, timeout + heartbeat)`: the wait an operator asked for, spread
/// over one heartbeat so that two followers rarely campaign together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ElectionTimers {
    min: u64,
    max: u64,
}

impl ElectionTimers {
    fn for_timeout(timeout_ms: u64, heartbeat_ms: u64) -> Self {
        let max = (timeout_ms + heartbeat_ms).div_ceil(2);
        Self {
            min: timeout_ms.saturating_sub(max),
            max,
        }
    }
}

/// Startup failures.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
    #[error("raft: {0}")]
    Raft(String),
    #[error("config: {0}")]
    Config(String),
    #[error("the member has been permanently removed from the cluster")]
    Removed,
}

/// Shared handle on a running member.
pub struct Node {
    pub id: NodeId,
    pub cluster_id: u64,
    pub name: String,
    raft: Raft,
    state: Arc<StoreState>,
    lessor: Mutex<Lessor>,
    peers: Mutex<HashMap<String, RaftPeerClient<Channel>>>,
    config: NodeConfig,
    /// Set when a peer says this member was removed from the cluster.
    removed: Arc<AtomicBool>,
    reads: ReadQueue,
    read_queue: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<Waiter>>>,
    writes: WriteQueue,
    write_queue: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<QueuedWrite>>>,
    peer_tls: PeerTls,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &format_args!("{:x}", self.id))
            .field("name", &self.name)
            .finish()
    }
}

impl Node {
    /// Opens the data dir, recovers state and starts raft. Serving is up to the caller.
    pub async fn start(config: NodeConfig) -> Result<Arc<Node>, StartError> {
        let peer_tls: PeerTls = match &config.peer_tls {
            Some(files) => Some(
                crate::tls::client_config(files).map_err(|e| StartError::Config(e.to_string()))?,
            ),
            None => None,
        };
        let db = storage::open(&config.data_dir)?;
        let state = StoreState::load(db.clone(), config.min_lease_ttl())?;
        let log_store = LogStore::new(db.clone())?;
        let sm = StateMachine::new(state.clone(), config.data_dir.join("snap"))?;

        let founders: Vec<(u64, String, String)> = config
            .initial_cluster
            .iter()
            .map(|(name, url)| {
                (
                    member_id(std::slice::from_ref(url), &config.initial_cluster_token),
                    name.clone(),
                    url.clone(),
                )
            })
            .collect();
        let Identity {
            member_id: id,
            cluster_id: cid,
        } = match identity::load(&db)? {
            Some(known) => known,
            None => {
                let derived = Identity {
                    member_id: member_id(
                        &config.advertise_peer_urls,
                        &config.initial_cluster_token,
                    ),
                    cluster_id: cluster_id(
                        &founders.iter().map(|(id, _, _)| *id).collect::<Vec<_>>(),
                    ),
                };
                // A data dir that already applied entries predates stored identities and belongs
                // to a founder: derive as founders do.
                let joining = config.initial_cluster_state == ClusterState::Existing
                    && state.last_applied().is_none();
                let found = if joining {
                    discover(&config, &peer_tls).await?
                } else {
                    if !founders.iter().any(|(fid, _, _)| *fid == derived.member_id) {
                        return Err(StartError::Config(format!(
                            "--initial-cluster has no member with this member's peer URLs {:?}",
                            config.advertise_peer_urls
                        )));
                    }
                    derived
                };
                identity::save(&db, &found)?;
                found
            }
        };
        if state.is_removed(id) {
            return Err(StartError::Removed);
        }

        let election = ElectionTimers::for_timeout(config.election_timeout_ms, config.heartbeat_ms);
        let raft_config = openraft::Config {
            cluster_name: config.initial_cluster_token.clone(),
            heartbeat_interval: config.heartbeat_ms,
            election_timeout_min: election.min,
            election_timeout_max: election.max,
            install_snapshot_timeout: 60_000,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_count),
            max_in_snapshot_log_to_keep: config.log_kept_after_snapshot(),
            enable_pre_vote: Some(true),
            // Entries go to followers as soon as they are handed to the log store, so the
            // leader's fsync and the followers' run at the same time.
            broadcast_submitted_on_append: Some(true),
            ..Default::default()
        }
        .validate()
        .map_err(|e| StartError::Raft(e.to_string()))?;

        let removed = Arc::new(AtomicBool::new(false));
        let (reads, read_queue) = tokio::sync::mpsc::unbounded_channel();
        let (writes, write_queue) = tokio::sync::mpsc::unbounded_channel();
        let network = NetworkFactory::new(removed.clone(), peer_tls.clone());
        let raft = Raft::new(id, Arc::new(raft_config), network, log_store, sm)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;

        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        if !initialized && config.initial_cluster_state == ClusterState::New {
            let members: BTreeMap<NodeId, Member> = founders
                .iter()
                .map(|(id, name, url)| {
                    (
                        *id,
                        Member {
                            name: name.clone(),
                            peer_urls: vec![url.clone()],
                        },
                    )
                })
                .collect();
            // Every founder initializes with the same membership; that is safe, and it means no
            // founder has to be started first.
            if let Err(e) = raft.initialize(members).await {
                tracing::info!(error = %e, "raft initialize skipped");
            }
        }
        Ok(Arc::new(Node {
            id,
            cluster_id: cid,
            name: config.name.clone(),
            raft,
            state,
            lessor: Mutex::new(Lessor::default()),
            peers: Mutex::new(HashMap::new()),
            config,
            removed,
            peer_tls,
            reads,
            read_queue: Mutex::new(Some(read_queue)),
            writes,
            write_queue: Mutex::new(Some(write_queue)),
        }))
    }

    /// Waits until the state machine has caught up with what the cluster had committed before a
    /// restart. Clients must not be served before: a read could go back in time. Needs a quorum
    /// (the commit point is the cluster's), so the peer transport must already be serving.
    pub async fn wait_for_recovery(&self) -> Result<(), StartError> {
        self.raft
            .wait_for_recovery(None)
            .await
            .map(|_| ())
            .map_err(|e| StartError::Raft(format!("recovery: {e}")))
    }

    /// Whether this member was removed from the cluster: it must stop serving.
    pub fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Relaxed) || self.state.is_removed(self.id)
    }

    /// Whether member `id` was removed from the cluster (and so may never vote again).
    pub fn was_removed(&self, id: NodeId) -> bool {
        self.state.is_removed(id)
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    pub fn state(&self) -> &Arc<StoreState> {
        &self.state
    }

    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// The latest raft metrics (term, leader, membership, log positions).
    pub fn metrics(&self) -> openraft::RaftMetrics<TypeConfig> {
        use openraft::async_runtime::WatchReceiver;
        self.raft.metrics().borrow_watched().clone()
    }

    pub fn term(&self) -> u64 {
        self.metrics().current_term
    }

    pub fn leader(&self) -> Option<NodeId> {
        self.metrics().current_leader
    }

    pub fn is_leader(&self) -> bool {
        self.leader() == Some(self.id)
    }

    /// The header every response carries.
    pub fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.id,
            revision,
            raft_term: self.term(),
        }
    }

    pub(crate) fn peer_url(&self, id: NodeId) -> Option<String> {
        let metrics = self.metrics();
        let member = metrics
            .membership_config
            .membership()
            .get_node(&id)?
            .clone();
        member.peer_urls.first().cloned()
    }

    pub(crate) fn peer(&self, url: &str) -> Result<RaftPeerClient<Channel>, StoreError> {
        let mut peers = self
            .peers
            .lock()
            .map_err(|_| StoreError::Internal("peer table lock poisoned".into()))?;
        if let Some(c) = peers.get(url) {
            return Ok(c.clone());
        }
        let client = network::peer_client(url, &self.peer_tls)
            .map_err(|e| StoreError::Internal(format!("peer url {url}: {e}")))?;
        peers.insert(url.to_string(), client.clone());
        Ok(client)
    }

    /// Sends `req` to the current leader, waiting for one if there is none.
    pub(crate) async fn to_leader(
        &self,
        req: &Forwarded,
        deadline: Instant,
    ) -> Result<ForwardReply, StoreError> {
        loop {
            // A leader this member saw removed is gone (it stops once removed): wait for the
            // next one rather than send it requests that cannot be answered.
            let leader = self.leader().filter(|l| !self.state.is_removed(*l));
            match leader.and_then(|l| self.peer_url(l)) {
                Some(url) if leader != Some(self.id) => {
                    let mut client = self.peer(&url)?;
                    let left = deadline.saturating_duration_since(Instant::now());
                    match network::forward(&mut client, req, left).await {
                        Ok(ForwardReply::NotLeader { .. }) => {}
                        Ok(reply) => return Ok(reply),
                        Err(e) => {
                            tracing::debug!(error = %e, "forward to leader failed");
                            // A fresh connection next time: the old one may be to a dead process.
                            self.peers
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .remove(&url);
                            // Unless it was never sent, the leader may have carried it out:
                            // sending it again could apply it twice (or answer a false refusal).
                            // A refused one waits here for the next leader instead.
                            let sent = matches!(e, network::ForwardError::Unanswered(_));
                            if sent
                                && matches!(
                                    req,
                                    Forwarded::Write(_)
                                        | Forwarded::Writes(_)
                                        | Forwarded::ChangeMembers(_)
                                )
                            {
                                return Err(StoreError::OutcomeUnknown);
                            }
                        }
                    }
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                return Err(if self.leader().is_none() {
                    StoreError::NoLeader
                } else {
                    StoreError::Timeout
                });
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// Proposes a command through raft, here or at the leader, and waits until it is applied.
    pub async fn propose(&self, cmd: Command) -> Result<CommandResult, StoreError> {
        use std::sync::atomic::Ordering::Relaxed;
        let m = &crate::metrics::METRICS;
        m.proposals_pending.fetch_add(1, Relaxed);
        let result = self.propose_inner(cmd).await;
        m.proposals_pending.fetch_sub(1, Relaxed);
        if result.is_err() {
            m.proposals_failed.fetch_add(1, Relaxed);
        }
        result
    }

    async fn propose_inner(&self, cmd: Command) -> Result<CommandResult, StoreError> {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        loop {
            match self.raft.client_write(cmd.clone()).await {
                Ok(resp) => return Ok(resp.data),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(fwd))) => {
                    // Rejected before it was appended: safe to send elsewhere.
                    if fwd.leader_id.is_some() && fwd.leader_id != Some(self.id) {
                        match self.forward_write(cmd.clone(), deadline).await? {
                            ForwardReply::Written(result) => return Ok(result),
                            ForwardReply::Failed(e) => return Err(StoreError::Internal(e)),
                            ForwardReply::OutcomeUnknown => return Err(StoreError::OutcomeUnknown),
                            ForwardReply::Ttl(_)
                            | ForwardReply::NotLeader { .. }
                            | ForwardReply::Changed(_)
                            | ForwardReply::WrittenMany(_)
                            | ForwardReply::Membership { .. } => {}
                        }
                    }
                }
                Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(_))) => {
                    return Err(StoreError::OutcomeUnknown)
                }
                Err(RaftError::APIError(
                    e @ (ClientWriteError::ChangeMembershipError(_)
                    | ClientWriteError::PreconditionFailed(_)),
                )) => return Err(StoreError::Internal(e.to_string())),
                Err(RaftError::Fatal(_)) => return Err(StoreError::Stopped),
            }
            if Instant::now() >= deadline {
                return Err(StoreError::NoLeader);
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// Sends a write to the leader in the next forwarded batch. The queue holds it until the
    /// server's batcher runs.
    async fn forward_write(
        &self,
        cmd: Command,
        deadline: Instant,
    ) -> Result<ForwardReply, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.writes
            .send(QueuedWrite {
                cmd,
                deadline,
                reply,
            })
            .map_err(|_| StoreError::Stopped)?;
        answer.await.map_err(|_| StoreError::Stopped)?
    }

    /// Proposes an etcd write request after the size check etcd applies to proposals.
    pub async fn write(&self, req: &WriteRequest) -> Result<CommandResult, StoreError> {
        let cmd = Command::from_write(req);
        if cmd.encoded_len() > crate::validate::MAX_REQUEST_BYTES {
            return Err(StoreError::RequestTooLarge);
        }
        self.check_space(crate::quota::cost(req)).await?;
        let result = self.propose(cmd).await?;
        Ok(result)
    }

    /// Handles a request forwarded by another member, if this member leads.
    pub async fn serve_forwarded(&self, req: Forwarded) -> ForwardReply {
        match req {
            Forwarded::Write(cmd) => match self.raft.client_write(cmd).await {
                Ok(resp) => ForwardReply::Written(resp.data),
                Err(RaftError::APIError(e)) => crate::forward::refused_write(e),
                Err(e) => ForwardReply::Failed(e.to_string()),
            },
            Forwarded::Writes(cmds) => self.serve_forwarded_writes(cmds).await,
            Forwarded::LeaseKeepAlive { id } if self.is_leader() => {
                ForwardReply::Ttl(self.renew_local(id))
            }
            Forwarded::LeaseTimeToLive { id } if self.is_leader() => {
                ForwardReply::Ttl(self.remaining_local(id))
            }
            Forwarded::LeaseKeepAlive { .. } | Forwarded::LeaseTimeToLive { .. } => {
                ForwardReply::NotLeader {
                    leader: self.leader(),
                }
            }
            Forwarded::ChangeMembers(change) => {
                let deadline = Instant::now() + 2 * REQUEST_TIMEOUT;
                match self.change_members_as_leader(&change, deadline).await {
                    Err(StoreError::NotLeader) => ForwardReply::NotLeader {
                        leader: self.leader(),
                    },
                    result => ForwardReply::Changed(result),
                }
            }
            Forwarded::Membership => {
                let metrics = self.metrics();
                ForwardReply::Membership {
                    cluster_id: self.cluster_id,
                    members: metrics
                        .membership_config
                        .membership()
                        .nodes()
                        .map(|(id, m)| (*id, m.clone()))
                        .collect(),
                }
            }
        }
    }

    /// The read index a linearizable read must wait for, if this member leads.
    pub async fn serve_read_index(&self) -> Result<u64, Option<NodeId>> {
        self.read_index_as_leader().await
    }

    /// Waits until a read served from local state is linearizable: the read joins the next
    /// leadership confirmation round, then waits until the local state has applied the index it
    /// names.
    pub async fn linearize(&self) -> Result<(), StoreError> {
        if self.config.unsafe_stale_reads {
            return Ok(());
        }
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        loop {
            let (tx, rx) = tokio::sync::oneshot::channel();
            self.reads.send(tx).map_err(|_| StoreError::Stopped)?;
            match rx.await {
                Ok(Ok(index)) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    return match self
                        .raft
                        .wait(Some(left))
                        .applied_index_at_least(Some(index), "linearizable read")
                        .await
                    {
                        Ok(_) => Ok(()),
                        Err(_) => Err(StoreError::Timeout),
                    };
                }
                Ok(Err(StoreError::Stopped)) | Err(_) => return Err(StoreError::Stopped),
                Ok(Err(_)) => {}
            }
            if Instant::now() >= deadline {
                return Err(if self.leader().is_none() {
                    StoreError::NoLeader
                } else {
                    StoreError::Timeout
                });
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    pub fn read_mode(&self) -> ReadMode {
        self.config.read_mode
    }

    /// The queue of linearizable reads, for [`Node::run_read_batches`]; taken once, by the server.
    pub(crate) fn take_read_queue(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Waiter>> {
        self.read_queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// The queue of writes to forward, for [`Node::run_forward_batches`]; taken once, by the
    /// server.
    pub(crate) fn take_write_queue(
        &self,
    ) -> Option<tokio::sync::mpsc::UnboundedReceiver<QueuedWrite>> {
        self.write_queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    fn lease_ttls(&self) -> BTreeMap<i64, i64> {
        self.state
            .mvcc()
            .map(|m| m.leases().iter().map(|(id, l)| (*id, l.ttl)).collect())
            .unwrap_or_default()
    }

    fn renew_local(&self, id: i64) -> i64 {
        let ttl = self.lease_ttls().get(&id).copied();
        let mut lessor = self.lessor.lock().unwrap_or_else(PoisonError::into_inner);
        lessor.renew(id, ttl, Instant::now()).unwrap_or(0)
    }

    fn remaining_local(&self, id: i64) -> i64 {
        let Some(ttl) = self.lease_ttls().get(&id).copied() else {
            return -1;
        };
        self.lessor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remaining(id, ttl, Instant::now())
    }

    /// Renews a lease on the leader's clock; returns its TTL, or 0 if it does not exist.
    pub async fn lease_keep_alive(&self, id: i64) -> Result<i64, StoreError> {
        if self.is_leader() {
            return Ok(self.renew_local(id));
        }
        match self
            .to_leader(
                &Forwarded::LeaseKeepAlive { id },
                Instant::now() + REQUEST_TIMEOUT,
            )
            .await?
        {
            ForwardReply::Ttl(ttl) => Ok(ttl),
            other => Err(StoreError::Internal(format!(
                "unexpected reply to keep-alive: {other:?}"
            ))),
        }
    }

    /// Seconds left on a lease by the leader's clock; -1 if it does not exist.
    pub async fn lease_remaining(&self, id: i64) -> Result<i64, StoreError> {
        if self.is_leader() {
            return Ok(self.remaining_local(id));
        }
        match self
            .to_leader(
                &Forwarded::LeaseTimeToLive { id },
                Instant::now() + REQUEST_TIMEOUT,
            )
            .await?
        {
            ForwardReply::Ttl(ttl) => Ok(ttl),
            other => Err(StoreError::Internal(format!(
                "unexpected reply to time-to-live: {other:?}"
            ))),
        }
    }

    /// One round of leader duties for leases: start clocks, revoke what expired.
    pub async fn expire_leases(&self) {
        if !self.is_leader() {
            self.lessor
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .demote();
            return;
        }
        let ttls = self.lease_ttls();
        let expired = self
            .lessor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .tick(&ttls, Instant::now());
        for id in expired {
            let req =
                WriteRequest::LeaseRevoke(keel_proto::etcdserverpb::LeaseRevokeRequest { id });
            if let Err(e) = self.write(&req).await {
                tracing::warn!(lease = id, error = %e, "revoking expired lease failed; will retry");
            }
        }
    }

    /// Announces this member's client URLs through the log, retrying until it is applied.
    pub async fn publish(&self) {
        let cmd = Command::PublishMember {
            id: self.id,
            name: self.name.clone(),
            client_urls: self.config.advertise_client_urls.clone(),
        };
        loop {
            let published = self
                .state
                .members()
                .get(&self.id)
                .map(|m| (m.name.clone(), m.client_urls.clone()));
            if published == Some((self.name.clone(), self.config.advertise_client_urls.clone())) {
                return;
            }
            match self.propose(cmd.clone()).await {
                Ok(_) => return,
                Err(e) => {
                    tracing::debug!(error = %e, "publishing member attributes failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// Stops raft. In-flight requests fail with "server stopped".
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}

/// Asks the members named in `--initial-cluster` for the membership until one lists this member's
/// peer URLs, and takes the ID it was given when it was added.
async fn discover(config: &NodeConfig, peer_tls: &PeerTls) -> Result<Identity, StartError> {
    let own: BTreeSet<&String> = config.advertise_peer_urls.iter().collect();
    let peers: Vec<&String> = config
        .initial_cluster
        .iter()
        .map(|(_, url)| url)
        .filter(|url| !own.contains(url))
        .collect();
    if peers.is_empty() {
        return Err(StartError::Config(
            "--initial-cluster-state=existing needs --initial-cluster to name a running member"
                .into(),
        ));
    }
    let started = Instant::now();
    let mut answered = false;
    loop {
        for url in &peers {
            let Ok(mut client) = network::peer_client(url, peer_tls) else {
                continue;
            };
            let reply =
                network::forward(&mut client, &Forwarded::Membership, Duration::from_secs(2)).await;
            if let Ok(ForwardReply::Membership {
                cluster_id,
                members,
            }) = reply
            {
                answered = true;
                let me = members
                    .iter()
                    .find(|(_, m)| m.peer_urls.iter().collect::<BTreeSet<_>>() == own);
                if let Some((member_id, _)) = me {
                    return Ok(Identity {
                        member_id: *member_id,
                        cluster_id,
                    });
                }
            }
        }
        // A cluster that answers but does not list this member is unlikely to change its mind:
        // give a racing `member add` a moment, not the full wait.
        let limit = if answered {
            DISCOVERY_TIMEOUT / 6
        } else {
            DISCOVERY_TIMEOUT
        };
        if started.elapsed() >= limit {
            let why = if answered {
                "no member lists this member's peer URLs: add it first (etcdctl member add)"
            } else {
                "no member answered"
            };
            return Err(StartError::Config(format!(
                "joining the cluster at {peers:?} as {:?}: {why}",
                config.advertise_peer_urls
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::ElectionTimers;

    #[test]
    fn a_follower_campaigns_one_election_timeout_after_the_last_heartbeat() {
        for (timeout, heartbeat) in [(500, 100), (1000, 100), (250, 50), (501, 100)] {
            let t = ElectionTimers::for_timeout(timeout, heartbeat);
            // Earliest and latest campaign: lease plus the drawn timeout.
            assert_eq!(t.max + t.min, timeout, "{t:?}");
            assert!(t.max + t.max <= timeout + heartbeat + 1, "{t:?}");
            assert!(t.min < t.max && t.min > heartbeat, "{t:?}");
        }
    }
}
