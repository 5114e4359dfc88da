//! Membership changes with etcd's semantics: MemberAdd (voter or learner), MemberPromote,
//! MemberRemove, MemberUpdate and leader transfer.
//!
//! [`plan`] decides a change as plain data over a [`ClusterView`] (the leader's knowledge of
//! voters, nodes, liveness and replication progress), so etcd's refusals are unit-tested without
//! a cluster. The leader then carries the plan out through openraft's joint consensus; any other
//! member forwards the request to it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openraft::errors::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::ChangeMembers;
use openraft::Instant as _;
use serde::{Deserialize, Serialize};

use crate::config::fnv64;
use crate::error::StoreError;
use crate::node::{Node, REQUEST_TIMEOUT};
use crate::raft::{ForwardReply, Forwarded};
use crate::types::{Member, NodeId};

/// A member counts as started when it acknowledged the leader this recently (etcd's health
/// interval).
const ACTIVE_WITHIN: Duration = Duration::from_secs(5);
/// A learner may be promoted once it holds this share of the leader's log (etcd's rule).
const PROMOTE_READY_PERCENT: u64 = 90;

/// A membership change as a client asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberChange {
    Add {
        peer_urls: Vec<String>,
        learner: bool,
    },
    Remove {
        id: NodeId,
    },
    Promote {
        id: NodeId,
    },
    Update {
        id: NodeId,
        peer_urls: Vec<String>,
    },
}

/// What a committed change did: the member it concerned and the log index of its (last)
/// membership entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeOutcome {
    pub id: NodeId,
    pub log_index: u64,
}

/// The leader's knowledge of the cluster when it decides a change.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    pub voters: BTreeSet<NodeId>,
    pub nodes: BTreeMap<NodeId, Member>,
    /// Members that acknowledged the leader within [`ACTIVE_WITHIN`], the leader included.
    pub active: BTreeSet<NodeId>,
    /// Highest log index known to be replicated to each member.
    pub matched: BTreeMap<NodeId, u64>,
    pub last_log_index: u64,
}

/// How the leader carries a change out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    AddLearner { id: NodeId, member: Member },
    Change(ChangeMembers<NodeId, Member>),
}

fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

/// Peer URLs must be absolute http(s) URLs with a host and a port, as etcd requires.
fn valid_urls(urls: &[String]) -> bool {
    !urls.is_empty()
        && urls.iter().all(|u| {
            let Some(rest) = u
                .strip_prefix("http://")
                .or_else(|| u.strip_prefix("https://"))
            else {
                return false;
            };
            let host_port = rest.trim_end_matches('/');
            match host_port.rsplit_once(':') {
                Some((host, port)) => {
                    !host.is_empty() && !host.contains('/') && port.parse::<u16>().is_ok()
                }
                None => false,
            }
        })
}

fn urls_taken(view: &ClusterView, urls: &[String], except: Option<NodeId>) -> bool {
    view.nodes
        .iter()
        .filter(|(id, _)| Some(**id) != except)
        .any(|(_, m)| m.peer_urls.iter().any(|u| urls.contains(u)))
}

/// Decides `change` against `view`. `new_id` is the ID an added member gets.
pub fn plan(view: &ClusterView, change: &MemberChange, new_id: NodeId) -> Result<Plan, StoreError> {
    let active_voters = |without: Option<NodeId>| {
        view.voters
            .iter()
            .filter(|v| Some(**v) != without && view.active.contains(v))
            .count()
    };
    match change {
        MemberChange::Add { peer_urls, learner } => {
            if !valid_urls(peer_urls) {
                return Err(StoreError::BadMemberUrls);
            }
            if urls_taken(view, peer_urls, None) {
                return Err(StoreError::PeerUrlExists);
            }
            if view.nodes.contains_key(&new_id) {
                return Err(StoreError::MemberExists);
            }
            let member = Member {
                name: String::new(),
                peer_urls: peer_urls.clone(),
            };
            if *learner {
                return Ok(Plan::AddLearner { id: new_id, member });
            }
            // The new voter has not started yet: the members running now must still be a quorum
            // of the larger cluster, or every write stalls until it joins.
            if active_voters(None) < quorum(view.voters.len() + 1) {
                return Err(StoreError::NotEnoughStartedMembers);
            }
            Ok(Plan::Change(ChangeMembers::AddVoters(BTreeMap::from([(
                new_id, member,
            )]))))
        }
        MemberChange::Remove { id } => {
            if !view.nodes.contains_key(id) {
                return Err(StoreError::MemberNotFound);
            }
            if !view.voters.contains(id) {
                return Ok(Plan::Change(ChangeMembers::RemoveNodes(BTreeSet::from([
                    *id,
                ]))));
            }
            let remaining = view.voters.len() - 1;
            if remaining == 0 || active_voters(Some(*id)) < quorum(remaining) {
                return Err(StoreError::NotEnoughStartedMembers);
            }
            Ok(Plan::Change(ChangeMembers::RemoveVoters(BTreeSet::from([
                *id,
            ]))))
        }
        MemberChange::Promote { id } => {
            if !view.nodes.contains_key(id) {
                return Err(StoreError::MemberNotFound);
            }
            if view.voters.contains(id) {
                return Err(StoreError::MemberNotLearner);
            }
            let matched = view.matched.get(id).copied().unwrap_or(0);
            if matched * 100 < view.last_log_index * PROMOTE_READY_PERCENT {
                return Err(StoreError::LearnerNotReady);
            }
            if active_voters(None) + 1 < quorum(view.voters.len() + 1) {
                return Err(StoreError::NotEnoughStartedMembers);
            }
            Ok(Plan::Change(ChangeMembers::AddVoterIds(BTreeSet::from([
                *id,
            ]))))
        }
        MemberChange::Update { id, peer_urls } => {
            let Some(current) = view.nodes.get(id) else {
                return Err(StoreError::MemberNotFound);
            };
            if !valid_urls(peer_urls) {
                return Err(StoreError::BadMemberUrls);
            }
            if urls_taken(view, peer_urls, Some(*id)) {
                return Err(StoreError::PeerUrlExists);
            }
            let member = Member {
                name: current.name.clone(),
                peer_urls: peer_urls.clone(),
            };
            Ok(Plan::Change(ChangeMembers::SetNodes(BTreeMap::from([(
                *id, member,
            )]))))
        }
    }
}

/// A fresh member ID from the peer URLs, the cluster token and the time, as etcd derives one.
/// IDs must never repeat: a reused ID could replay an old membership and split the cluster.
pub fn new_member_id(peer_urls: &[String], token: &str, taken: impl Fn(NodeId) -> bool) -> NodeId {
    let mut salt = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    loop {
        let mut parts: Vec<&[u8]> = peer_urls.iter().map(|u| u.as_bytes()).collect();
        parts.push(token.as_bytes());
        let salt_bytes = salt.to_be_bytes();
        parts.push(&salt_bytes);
        let id = fnv64(&parts).max(1);
        if !taken(id) {
            return id;
        }
        salt = salt.wrapping_add(1);
    }
}

impl Node {
    /// What this member, as leader, knows of the cluster.
    fn cluster_view(&self) -> ClusterView {
        let metrics = self.metrics();
        let membership = metrics.membership_config.membership();
        let mut active = BTreeSet::from([self.id]);
        if let Some(heartbeats) = &metrics.heartbeat {
            for (id, last) in heartbeats {
                if last.as_ref().is_some_and(|t| t.elapsed() < ACTIVE_WITHIN) {
                    active.insert(*id);
                }
            }
        }
        let matched = metrics
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .map(|(id, log)| (*id, log.as_ref().map(|l| l.index()).unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default();
        ClusterView {
            voters: membership.voter_ids().collect(),
            nodes: membership.nodes().map(|(id, m)| (*id, m.clone())).collect(),
            active,
            matched,
            last_log_index: metrics.last_log_index.unwrap_or(0),
        }
    }

    /// Carries out a membership change, here if this member leads, at the leader otherwise, and
    /// returns once this member has applied it.
    pub async fn change_members(&self, change: MemberChange) -> Result<ChangeOutcome, StoreError> {
        let deadline = Instant::now() + 2 * REQUEST_TIMEOUT;
        let outcome = loop {
            if self.is_leader() {
                match self.change_members_as_leader(&change, deadline).await {
                    Err(StoreError::NotLeader) => {}
                    other => break other?,
                }
            } else {
                match self
                    .to_leader(&Forwarded::ChangeMembers(change.clone()), deadline)
                    .await?
                {
                    ForwardReply::Changed(result) => break result?,
                    ForwardReply::NotLeader { .. } => {}
                    ForwardReply::OutcomeUnknown => return Err(StoreError::OutcomeUnknown),
                    other => {
                        return Err(StoreError::Internal(format!(
                            "unexpected reply to a membership change: {other:?}"
                        )))
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(StoreError::Timeout);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        // Answer with the membership as this member knows it, so include the change. A member
        // removed by the change never applies it; it answers anyway.
        if change == (MemberChange::Remove { id: self.id }) {
            // The leader stops replicating to a member it removed: this member may never apply
            // its own removal, so it does not wait for it.
            return Ok(outcome);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = self
            .raft()
            .wait(Some(left))
            .applied_index_at_least(Some(outcome.log_index), "membership change applied")
            .await;
        Ok(outcome)
    }

    /// The leader's side of [`Node::change_members`]. `NotLeader` means leadership moved on and
    /// nothing was proposed here.
    pub(crate) async fn change_members_as_leader(
        &self,
        change: &MemberChange,
        deadline: Instant,
    ) -> Result<ChangeOutcome, StoreError> {
        // A leader asked to remove itself does so directly: it commits the change, then steps
        // down, and the remaining voters elect a successor within an election timeout. (Handing
        // leadership over first would stop writes during the transfer as well, and a transfer
        // that stalls would leave the cluster without a writable leader.)
        tracing::info!(?change, "membership change requested");
        let token = self.config().initial_cluster_token.clone();
        loop {
            // Only a leader knows who is started and caught up; a member that stopped leading
            // passes the change on instead of refusing it on a view it does not have.
            if !self.is_leader() {
                return Err(StoreError::NotLeader);
            }
            let view = self.cluster_view();
            let new_id = match change {
                MemberChange::Add { peer_urls, .. } => new_member_id(peer_urls, &token, |id| {
                    view.nodes.contains_key(&id) || self.state().is_removed(id)
                }),
                _ => 0,
            };
            let id = match change {
                MemberChange::Add { .. } => new_id,
                MemberChange::Remove { id }
                | MemberChange::Promote { id }
                | MemberChange::Update { id, .. } => *id,
            };
            let left = deadline.saturating_duration_since(Instant::now());
            let proposal = async {
                match plan(&view, change, new_id)? {
                    Plan::AddLearner { id, member } => {
                        Ok(self.raft().add_learner(id, member, false).await)
                    }
                    Plan::Change(c) => Ok(self.raft().change_membership(c, false).await),
                }
            };
            let result: Result<_, StoreError> = tokio::time::timeout(left, proposal)
                .await
                .map_err(|_| StoreError::Timeout)?;
            match result? {
                Ok(resp) => {
                    tracing::info!(
                        ?change,
                        member = %format_args!("{id:x}"),
                        log_index = resp.log_id.index(),
                        "membership change committed"
                    );
                    return Ok(ChangeOutcome {
                        id,
                        log_index: resp.log_id.index(),
                    });
                }
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                    return Err(StoreError::NotLeader)
                }
                Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                    ChangeMembershipError::InProgress(_),
                ))) => {
                    // Another change is still committing; etcd serialises them the same way.
                }
                Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                    ChangeMembershipError::LearnerNotFound(_),
                ))) => return Err(StoreError::MemberNotFound),
                Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(_))) => {
                    return Err(StoreError::OutcomeUnknown)
                }
                Err(RaftError::APIError(e)) => return Err(StoreError::Internal(e.to_string())),
                Err(RaftError::Fatal(_)) => return Err(StoreError::Stopped),
            }
            if Instant::now() >= deadline {
                return Err(StoreError::Timeout);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Transfers leadership from this member (which must lead) to voter `to`, and waits until
    /// `to` leads.
    pub async fn transfer_leadership(&self, to: NodeId, wait: Duration) -> Result<(), StoreError> {
        if !self.is_leader() {
            return Err(StoreError::NotLeader);
        }
        if to == self.id {
            return Ok(());
        }
        let voters: BTreeSet<NodeId> = self
            .metrics()
            .membership_config
            .membership()
            .voter_ids()
            .collect();
        if !voters.contains(&to) {
            return Err(StoreError::BadLeaderTransferee);
        }
        tracing::info!(to = %format_args!("{to:x}"), "transferring leadership");
        self.raft()
            .trigger()
            .transfer_leader(to)
            .await
            .map_err(|_| StoreError::Stopped)?;
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if self.leader() == Some(to) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(StoreError::Timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(port: u16) -> Member {
        Member {
            name: format!("m{port}"),
            peer_urls: vec![format!("http://127.0.0.1:{port}")],
        }
    }

    /// Three voters 1..=3, all active, all caught up at index 100.
    fn three() -> ClusterView {
        ClusterView {
            voters: BTreeSet::from([1, 2, 3]),
            nodes: (1..=3).map(|i| (i, member(2380 + i as u16))).collect(),
            active: BTreeSet::from([1, 2, 3]),
            matched: (1..=3).map(|i| (i, 100)).collect(),
            last_log_index: 100,
        }
    }

    fn add(url: &str, learner: bool) -> MemberChange {
        MemberChange::Add {
            peer_urls: vec![url.to_string()],
            learner,
        }
    }

    #[test]
    fn adding_a_voter_joins_it_through_joint_consensus() {
        let plan = plan(&three(), &add("http://127.0.0.1:9000", false), 7).expect("a valid change");
        let Plan::Change(ChangeMembers::AddVoters(added)) = plan else {
            panic!("expected AddVoters, got {plan:?}");
        };
        assert_eq!(added.keys().copied().collect::<Vec<_>>(), vec![7]);
        assert_eq!(added[&7].peer_urls, vec!["http://127.0.0.1:9000"]);
    }

    #[test]
    fn adding_a_learner_does_not_touch_voters() {
        let plan = plan(&three(), &add("http://127.0.0.1:9000", true), 7).unwrap();
        assert!(matches!(plan, Plan::AddLearner { id: 7, .. }));
    }

    #[test]
    fn a_peer_url_already_in_use_is_refused() {
        let err = plan(&three(), &add("http://127.0.0.1:2382", true), 7).unwrap_err();
        assert_eq!(err, StoreError::PeerUrlExists);
        assert_eq!(err.to_string(), "etcdserver: Peer URLs already exists");
    }

    #[test]
    fn malformed_peer_urls_are_refused() {
        for bad in [
            "127.0.0.1:9000",
            "http://",
            "http://host",
            "ftp://h:1",
            "http://h:99999",
        ] {
            assert_eq!(
                plan(&three(), &add(bad, true), 7).unwrap_err(),
                StoreError::BadMemberUrls,
                "{bad}"
            );
        }
        assert_eq!(
            plan(
                &three(),
                &MemberChange::Add {
                    peer_urls: vec![],
                    learner: false
                },
                7
            )
            .unwrap_err(),
            StoreError::BadMemberUrls
        );
    }

    #[test]
    fn a_voter_is_not_added_when_the_started_members_would_lose_quorum() {
        // 3 voters, one down: 2 of a 4-voter cluster is not a quorum.
        let mut view = three();
        view.active.remove(&3);
        assert_eq!(
            plan(&view, &add("http://127.0.0.1:9000", false), 7).unwrap_err(),
            StoreError::NotEnoughStartedMembers
        );
        // A learner does not count towards quorum: still allowed.
        assert!(plan(&view, &add("http://127.0.0.1:9000", true), 7).is_ok());
    }

    #[test]
    fn removing_keeps_a_quorum_of_started_members() {
        let mut view = three();
        assert!(matches!(
            plan(&view, &MemberChange::Remove { id: 1 }, 0).unwrap(),
            Plan::Change(ChangeMembers::RemoveVoters(_))
        ));
        // With 3 down, removing 1 leaves {2} of {2,3}: not a quorum.
        view.active.remove(&3);
        assert_eq!(
            plan(&view, &MemberChange::Remove { id: 1 }, 0).unwrap_err(),
            StoreError::NotEnoughStartedMembers
        );
        // Removing the member that is down is fine: {1,2} of {1,2}.
        assert!(plan(&view, &MemberChange::Remove { id: 3 }, 0).is_ok());
    }

    #[test]
    fn the_last_voter_cannot_be_removed() {
        let view = ClusterView {
            voters: BTreeSet::from([1]),
            nodes: BTreeMap::from([(1, member(2380))]),
            active: BTreeSet::from([1]),
            ..Default::default()
        };
        assert_eq!(
            plan(&view, &MemberChange::Remove { id: 1 }, 0).unwrap_err(),
            StoreError::NotEnoughStartedMembers
        );
    }

    #[test]
    fn learners_are_removed_as_nodes() {
        let mut view = three();
        view.nodes.insert(4, member(9000));
        assert!(matches!(
            plan(&view, &MemberChange::Remove { id: 4 }, 0).unwrap(),
            Plan::Change(ChangeMembers::RemoveNodes(_))
        ));
    }

    #[test]
    fn unknown_members_are_not_found() {
        for change in [
            MemberChange::Remove { id: 42 },
            MemberChange::Promote { id: 42 },
            MemberChange::Update {
                id: 42,
                peer_urls: vec!["http://127.0.0.1:1".into()],
            },
        ] {
            assert_eq!(
                plan(&three(), &change, 0).unwrap_err(),
                StoreError::MemberNotFound
            );
        }
    }

    #[test]
    fn only_a_caught_up_learner_is_promoted() {
        let mut view = three();
        view.nodes.insert(4, member(9000));
        view.active.insert(4);
        view.matched.insert(4, 50);
        assert_eq!(
            plan(&view, &MemberChange::Promote { id: 4 }, 0).unwrap_err(),
            StoreError::LearnerNotReady
        );
        view.matched.insert(4, 95);
        assert!(matches!(
            plan(&view, &MemberChange::Promote { id: 4 }, 0).unwrap(),
            Plan::Change(ChangeMembers::AddVoterIds(_))
        ));
        assert_eq!(
            plan(&view, &MemberChange::Promote { id: 2 }, 0).unwrap_err(),
            StoreError::MemberNotLearner
        );
    }

    #[test]
    fn update_may_not_take_another_members_urls() {
        let update = |url: &str| MemberChange::Update {
            id: 1,
            peer_urls: vec![url.to_string()],
        };
        assert_eq!(
            plan(&three(), &update("http://127.0.0.1:2382"), 0).unwrap_err(),
            StoreError::PeerUrlExists
        );
        // Its own URL is fine (a no-op update), and a new one keeps its name.
        assert!(plan(&three(), &update("http://127.0.0.1:2381"), 0).is_ok());
        let Plan::Change(ChangeMembers::SetNodes(nodes)) =
            plan(&three(), &update("http://127.0.0.1:9001"), 0).unwrap()
        else {
            panic!("expected SetNodes");
        };
        assert_eq!(nodes[&1].name, "m2381");
        assert_eq!(nodes[&1].peer_urls, vec!["http://127.0.0.1:9001"]);
    }

    #[test]
    fn new_member_ids_skip_taken_ones() {
        let urls = vec!["http://127.0.0.1:9000".to_string()];
        let first = new_member_id(&urls, "t", |_| false);
        let second = new_member_id(&urls, "t", |id| id == first);
        assert_ne!(first, second);
        assert_ne!(second, 0);
    }
}
