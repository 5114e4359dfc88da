//! The replicated state machine: applies committed log entries to the MVCC core over RocksDB and
//! publishes the resulting events to watchers.
//!
//! `StoreState` is shared between openraft (which applies) and the serving path (which reads). A
//! whole apply call runs under the MVCC write lock and ends with one RocksDB `WriteBatch` that also
//! records the last applied log id, membership and revision counters, so readers see either all of
//! a batch or none of it, and a restart resumes exactly where the batch left off.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::PathBuf;
use std::sync::PoisonError;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use futures::{Stream, TryStreamExt};
use keel_proto::etcdserverpb::alarm_request::AlarmAction;
use keel_proto::etcdserverpb::{AlarmMember, AlarmRequest, AlarmResponse, RangeRequest};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use prost::Message;
use rocksdb::{Direction, IteratorMode};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::db::{Db, StorageError, CF_KV, CF_LEASE, CF_META};
use super::rocks_backend::{decode_change, DbReader, RocksBackend};
use super::snapshot;
use crate::auth::tokens::Tokens;
use crate::auth::{AuthOp, AuthState};
use crate::codec;
use crate::mvcc::{Mvcc, MvccError, Revision, WriteResponse};
use crate::types::{
    Command, CommandResult, LogId, NodeId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig,
};
use crate::watch::EventBatch;

pub(super) const KEY_LAST_APPLIED: &[u8] = b"last_applied";
pub(super) const KEY_MEMBERSHIP: &[u8] = b"membership";
pub(super) const KEY_REVISION: &[u8] = b"revision";
pub(super) const KEY_COMPACTED: &[u8] = b"compacted";
pub(super) const KEY_MEMBERS: &[u8] = b"members";
pub(super) const KEY_REMOVED: &[u8] = b"removed";
pub(super) const KEY_ALARMS: &[u8] = b"alarms";
pub(super) const KEY_AUTH: &[u8] = b"auth";

/// Raised alarms: (member ID, etcd alarm type).
pub type Alarms = BTreeSet<(NodeId, i32)>;

/// What a member published about itself through the log.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MemberAttributes {
    pub name: String,
    pub client_urls: Vec<String>,
}

/// State shared by the applier and the readers.
pub struct StoreState {
    db: Db,
    mvcc: RwLock<Mvcc>,
    members: RwLock<BTreeMap<NodeId, MemberAttributes>>,
    /// Members removed by a committed membership change. IDs are never reused, so a removed
    /// member that comes back asking for votes is told to stop.
    removed: RwLock<BTreeSet<NodeId>>,
    alarms: RwLock<Alarms>,
    /// Users, roles and whether auth is on (etcd's auth store).
    auth: RwLock<AuthState>,
    /// The simple tokens issued through the log, in memory only (as etcd's).
    tokens: Tokens,
    applied: RwLock<(Option<LogId>, StoredMembership)>,
    events: broadcast::Sender<Arc<EventBatch>>,
    min_lease_ttl: i64,
}

impl std::fmt::Debug for StoreState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreState")
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

fn corrupt(what: &'static str) -> impl Fn(codec::CodecError) -> StorageError {
    move |e| StorageError::Corrupt {
        what,
        detail: e.to_string(),
    }
}

fn lock_poisoned() -> io::Error {
    io::Error::other("state lock poisoned by a panic")
}

impl StoreState {
    /// Loads the state machine from disk.
    pub fn load(db: Db, min_lease_ttl: i64) -> Result<Arc<Self>, StorageError> {
        let (mvcc, members, applied) = Self::read_all(&db, min_lease_ttl)?;
        let removed = Self::read_removed(&db)?;
        let alarms = Self::read_alarms(&db)?;
        let auth = Self::read_auth(&db)?;
        let (events, _) = broadcast::channel(4096);
        Ok(Arc::new(Self {
            db,
            mvcc: RwLock::new(mvcc),
            members: RwLock::new(members),
            removed: RwLock::new(removed),
            alarms: RwLock::new(alarms),
            auth: RwLock::new(auth),
            tokens: Tokens::default(),
            applied: RwLock::new(applied),
            events,
            min_lease_ttl,
        }))
    }

    #[allow(clippy::type_complexity)]
    fn read_all(
        db: &Db,
        min_lease_ttl: i64,
    ) -> Result<
        (
            Mvcc,
            BTreeMap<NodeId, MemberAttributes>,
            (Option<LogId>, StoredMembership),
        ),
        StorageError,
    > {
        let mut mvcc = Mvcc::new(min_lease_ttl);
        for item in db.raw().iterator_cf(db.cf(CF_KV), IteratorMode::Start) {
            let (key, value) = item?;
            let rev = Revision::from_key(&key).ok_or(StorageError::Corrupt {
                what: "revision key",
                detail: format!("{} bytes", key.len()),
            })?;
            let (kv, tombstone) = decode_change(&value)?;
            mvcc.restore_change(rev, &kv, tombstone);
        }
        for item in db.raw().iterator_cf(db.cf(CF_LEASE), IteratorMode::Start) {
            let (key, value) = item?;
            let bad = || StorageError::Corrupt {
                what: "lease record",
                detail: format!("{} bytes", value.len()),
            };
            let id = i64::from_be_bytes(key.as_ref().try_into().map_err(|_| bad())?);
            let ttl = i64::from_be_bytes(value.as_ref().try_into().map_err(|_| bad())?);
            mvcc.restore_lease(id, ttl);
        }
        let meta = |key: &[u8]| db.raw().get_cf(db.cf(CF_META), key);
        let current: i64 = meta(KEY_REVISION)?
            .map(|b| codec::decode(&b))
            .transpose()
            .map_err(corrupt("revision"))?
            .unwrap_or(1);
        let compacted: i64 = meta(KEY_COMPACTED)?
            .map(|b| codec::decode(&b))
            .transpose()
            .map_err(corrupt("compacted"))?
            .unwrap_or(0);
        mvcc.finish_restore(current, compacted);
        let members = meta(KEY_MEMBERS)?
            .map(|b| codec::decode(&b))
            .transpose()
            .map_err(corrupt("members"))?
            .unwrap_or_default();
        let last_applied: Option<LogId> = meta(KEY_LAST_APPLIED)?
            .map(|b| codec::decode::<Option<LogId>>(&b))
            .transpose()
            .map_err(corrupt("last applied"))?
            .flatten();
        let membership: StoredMembership = meta(KEY_MEMBERSHIP)?
            .map(|b| codec::decode(&b))
            .transpose()
            .map_err(corrupt("membership"))?
            .unwrap_or_default();
        Ok((mvcc, members, (last_applied, membership)))
    }

    /// The value kept at `key` in the metadata column, or its default if there is none.
    fn read_meta<T: serde::de::DeserializeOwned + Default>(
        db: &Db,
        key: &[u8],
        what: &'static str,
    ) -> Result<T, StorageError> {
        Ok(db
            .raw()
            .get_cf(db.cf(CF_META), key)?
            .map(|b| codec::decode(&b))
            .transpose()
            .map_err(corrupt(what))?
            .unwrap_or_default())
    }

    fn read_removed(db: &Db) -> Result<BTreeSet<NodeId>, StorageError> {
        Self::read_meta(db, KEY_REMOVED, "removed members")
    }

    fn read_alarms(db: &Db) -> Result<Alarms, StorageError> {
        Self::read_meta(db, KEY_ALARMS, "alarms")
    }

    fn read_auth(db: &Db) -> Result<AuthState, StorageError> {
        Self::read_meta(db, KEY_AUTH, "auth")
    }

    /// The simple tokens this member knows.
    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// Reads the auth state (users, roles, whether auth is on) as of the last applied entry.
    pub fn with_auth<R>(&self, f: impl FnOnce(&AuthState) -> R) -> R {
        f(&self.auth.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The alarms raised and not yet cleared.
    pub fn alarms(&self) -> Alarms {
        self.alarms
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the in-memory state with what is on disk (after a snapshot install).
    pub(super) fn reload(&self) -> Result<(), StorageError> {
        let (mvcc, members, applied) = Self::read_all(&self.db, self.min_lease_ttl)?;
        let removed = Self::read_removed(&self.db)?;
        let poisoned = || StorageError::Io(lock_poisoned());
        *self.removed.write().map_err(|_| poisoned())? = removed;
        *self.alarms.write().map_err(|_| poisoned())? = Self::read_alarms(&self.db)?;
        *self.auth.write().map_err(|_| poisoned())? = Self::read_auth(&self.db)?;
        *self.mvcc.write().map_err(|_| poisoned())? = mvcc;
        *self.members.write().map_err(|_| poisoned())? = members;
        *self.applied.write().map_err(|_| poisoned())? = applied;
        Ok(())
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Read access to the MVCC state; values are read through [`StoreState::reader`].
    pub fn mvcc(&self) -> Result<RwLockReadGuard<'_, Mvcc>, MvccError> {
        self.mvcc
            .read()
            .map_err(|_| MvccError::Storage("state lock poisoned".into()))
    }

    pub fn reader(&self) -> DbReader<'_> {
        DbReader(&self.db)
    }

    /// Serves a range from local state (no consistency checks: callers decide those).
    pub fn range(
        &self,
        req: &RangeRequest,
    ) -> Result<(keel_proto::etcdserverpb::RangeResponse, i64), MvccError> {
        let mvcc = self.mvcc()?;
        let resp = mvcc.range(req, &self.reader())?;
        Ok((resp, mvcc.current_revision()))
    }

    pub fn current_revision(&self) -> i64 {
        self.mvcc
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .current_revision()
    }

    pub fn members(&self) -> BTreeMap<NodeId, MemberAttributes> {
        self.members
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether a committed membership change removed member `id`.
    pub fn is_removed(&self, id: NodeId) -> bool {
        self.removed
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&id)
    }

    pub fn last_applied(&self) -> Option<LogId> {
        self.applied
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .0
    }

    /// Subscribes to every event batch applied from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<EventBatch>> {
        self.events.subscribe()
    }

    /// Stored changes with main revision in `[from, to]`, in revision order: what a watcher that
    /// fell behind reads to catch up.
    pub fn history(
        &self,
        from: i64,
        to: i64,
    ) -> Result<Vec<(Revision, keel_proto::mvccpb::KeyValue, bool)>, MvccError> {
        let start = Revision::new(from, 0).to_key();
        let end = Revision::new(to.saturating_add(1), 0).to_key();
        let mut out = Vec::new();
        let iter = self.db.raw().iterator_cf(
            self.db.cf(CF_KV),
            IteratorMode::From(&start, Direction::Forward),
        );
        for item in iter {
            let (key, value) = item.map_err(|e| MvccError::Storage(e.to_string()))?;
            if key.as_ref() >= end.as_slice() {
                break;
            }
            let rev = Revision::from_key(&key)
                .ok_or_else(|| MvccError::Storage("bad revision key".into()))?;
            let (kv, tomb) =
                decode_change(&value).map_err(|e| MvccError::Storage(e.to_string()))?;
            out.push((rev, kv, tomb));
        }
        Ok(out)
    }

    /// A hash of every stored change up to revision `at`: members that applied the same history
    /// agree on it (etcd's HashKV). Compaction state is part of the history, so compare members at
    /// the same compaction point.
    pub fn hash_kv(&self, at: i64) -> Result<u64, MvccError> {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        let end = Revision::new(at.saturating_add(1), 0).to_key();
        for item in self
            .db
            .raw()
            .iterator_cf(self.db.cf(CF_KV), IteratorMode::Start)
        {
            let (key, value) = item.map_err(|e| MvccError::Storage(e.to_string()))?;
            if key.as_ref() >= end.as_slice() {
                break;
            }
            for b in key.iter().chain(value.iter()) {
                h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        Ok(h)
    }

    fn apply_entries(&self, entries: Vec<EntryResponder<TypeConfig>>) -> Result<(), io::Error> {
        let mut responses = Vec::with_capacity(entries.len());
        let mut batches = Vec::new();
        {
            let mut mvcc = self.mvcc.write().map_err(|_| lock_poisoned())?;
            let mut members = self.members.write().map_err(|_| lock_poisoned())?;
            let mut applied = self.applied.write().map_err(|_| lock_poisoned())?;
            let mut removed = self.removed.write().map_err(|_| lock_poisoned())?;
            let mut alarms = self.alarms.write().map_err(|_| lock_poisoned())?;
            let mut alarms_changed = false;
            // Taken at the first auth entry only: every client call reads the auth state, and
            // a batch without auth changes must not hold them up while it is written.
            let mut auth: Option<std::sync::RwLockWriteGuard<'_, AuthState>> = None;
            let mut auth_changed = false;
            let mut backend = RocksBackend::new(&self.db);
            let mut members_changed = false;
            let mut removed_changed = false;
            let mut last_log_id = None;
            for (entry, responder) in entries {
                last_log_id = Some(entry.log_id);
                let outcome = match &entry.payload {
                    EntryPayload::Blank => Ok(Vec::new()),
                    EntryPayload::Membership(m) => {
                        let gone: Vec<NodeId> = applied
                            .1
                            .membership()
                            .nodes()
                            .map(|(id, _)| *id)
                            .filter(|id| m.get_node(id).is_none())
                            .collect();
                        for id in gone {
                            removed.insert(id);
                            members.remove(&id);
                            removed_changed = true;
                            members_changed = true;
                        }
                        applied.1 = StoredMembership::new(Some(entry.log_id), m.clone());
                        Ok(Vec::new())
                    }
                    EntryPayload::Normal(Command::PublishMember {
                        id,
                        name,
                        client_urls,
                    }) if !removed.contains(id) => {
                        members.insert(
                            *id,
                            MemberAttributes {
                                name: name.clone(),
                                client_urls: client_urls.clone(),
                            },
                        );
                        members_changed = true;
                        Ok(Vec::new())
                    }
                    EntryPayload::Normal(Command::Alarm(bytes)) => {
                        let req = AlarmRequest::decode(bytes.as_slice()).map_err(|e| {
                            io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!("undecodable alarm entry {}: {e}", entry.log_id),
                            )
                        })?;
                        let before = alarms.len();
                        let concerned = apply_alarm(&mut alarms, &req);
                        alarms_changed |= alarms.len() != before;
                        Ok(AlarmResponse {
                            header: None,
                            alarms: alarm_members(&concerned),
                        }
                        .encode_to_vec())
                    }
                    EntryPayload::Normal(Command::Auth(bytes)) => {
                        let op: AuthOp = codec::decode(bytes).map_err(|e| {
                            io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!("undecodable auth entry {}: {e}", entry.log_id),
                            )
                        })?;
                        let state = match &mut auth {
                            Some(state) => state,
                            empty => empty.insert(self.auth.write().map_err(|_| lock_poisoned())?),
                        };
                        let applied = state.apply(&op);
                        match (&op, &applied) {
                            (AuthOp::IssueToken { user, token }, Ok(())) => {
                                self.tokens.insert(token, user, std::time::Instant::now());
                            }
                            (AuthOp::UserDelete { name }, Ok(())) => {
                                self.tokens.revoke_user(name);
                                auth_changed = true;
                            }
                            (_, result) => auth_changed |= result.is_ok(),
                        }
                        Ok(codec::encode(&applied).map_err(|e| io::Error::other(e.to_string()))?)
                    }
                    // A removed member's late announcement changes nothing.
                    EntryPayload::Normal(Command::PublishMember { .. }) => Ok(Vec::new()),
                    EntryPayload::Normal(cmd) => {
                        let req = cmd
                            .to_write()
                            .map_err(|e| {
                                io::Error::new(
                                    io::ErrorKind::InvalidData,
                                    format!("undecodable log entry {}: {e}", entry.log_id),
                                )
                            })?
                            .ok_or_else(|| io::Error::other("command has no request"))?;
                        match mvcc.apply(&req, &mut backend) {
                            Ok(done) => {
                                if !done.events.is_empty() {
                                    batches.push(Arc::new(EventBatch {
                                        revision: done.revision,
                                        events: done.events,
                                    }));
                                }
                                Ok(encode_response(&done.response))
                            }
                            Err(MvccError::Storage(e)) => return Err(io::Error::other(e)),
                            Err(e) => Err(e),
                        }
                    }
                };
                if let Some(responder) = responder {
                    responses.push((
                        responder,
                        CommandResult {
                            revision: mvcc.current_revision(),
                            outcome,
                        },
                    ));
                }
            }
            applied.0 = last_log_id;
            let meta = self.db.cf(CF_META);
            backend
                .batch
                .put_cf(meta, KEY_LAST_APPLIED, enc(&applied.0)?);
            backend.batch.put_cf(meta, KEY_MEMBERSHIP, enc(&applied.1)?);
            backend
                .batch
                .put_cf(meta, KEY_REVISION, enc(&mvcc.current_revision())?);
            backend
                .batch
                .put_cf(meta, KEY_COMPACTED, enc(&mvcc.compacted_revision())?);
            if members_changed {
                backend.batch.put_cf(meta, KEY_MEMBERS, enc(&*members)?);
            }
            if removed_changed {
                backend.batch.put_cf(meta, KEY_REMOVED, enc(&*removed)?);
            }
            if alarms_changed {
                backend.batch.put_cf(meta, KEY_ALARMS, enc(&*alarms)?);
            }
            if let Some(state) = auth.as_deref().filter(|_| auth_changed) {
                backend.batch.put_cf(meta, KEY_AUTH, enc(state)?);
            }
            // No fsync here: see the module docs of `storage` for why the log's fsync covers this.
            let started = std::time::Instant::now();
            self.db
                .raw()
                .write(backend.batch)
                .map_err(|e| io::Error::other(e.to_string()))?;
            crate::metrics::METRICS
                .backend_commit
                .observe(started.elapsed());
        }
        for batch in batches {
            // No receivers is fine: nobody is watching.
            let _ = self.events.send(batch);
        }
        for (responder, result) in responses {
            responder.send(result);
        }
        Ok(())
    }
}

/// Applies an alarm request and returns the alarms it concerned, as etcd answers: the alarm
/// raised (new or already raised), or the alarms cleared. Member 0 or alarm NONE in a
/// deactivation match any.
fn apply_alarm(alarms: &mut Alarms, req: &AlarmRequest) -> Alarms {
    match AlarmAction::try_from(req.action) {
        Ok(AlarmAction::Activate) if req.alarm != 0 => {
            alarms.insert((req.member_id, req.alarm));
            Alarms::from([(req.member_id, req.alarm)])
        }
        Ok(AlarmAction::Deactivate) => {
            let cleared: Alarms = alarms
                .iter()
                .filter(|(member, alarm)| {
                    (req.member_id == 0 || *member == req.member_id)
                        && (req.alarm == 0 || *alarm == req.alarm)
                })
                .copied()
                .collect();
            alarms.retain(|a| !cleared.contains(a));
            cleared
        }
        _ => Alarms::new(),
    }
}

/// The alarms as etcd lists them.
pub fn alarm_members(alarms: &Alarms) -> Vec<AlarmMember> {
    alarms
        .iter()
        .map(|(member_id, alarm)| AlarmMember {
            member_id: *member_id,
            alarm: *alarm,
        })
        .collect()
}

fn enc<T: Serialize>(value: &T) -> Result<Vec<u8>, io::Error> {
    codec::encode(value).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
}

fn encode_response(resp: &WriteResponse) -> Vec<u8> {
    match resp {
        WriteResponse::Put(r) => r.encode_to_vec(),
        WriteResponse::DeleteRange(r) => r.encode_to_vec(),
        WriteResponse::Txn(r) => r.encode_to_vec(),
        WriteResponse::Compact(r) => r.encode_to_vec(),
        WriteResponse::LeaseGrant(r) => r.encode_to_vec(),
        WriteResponse::LeaseRevoke(r) => r.encode_to_vec(),
    }
}

/// openraft's handle on the state machine.
#[derive(Clone)]
pub struct StateMachine {
    state: Arc<StoreState>,
    snapshot_dir: PathBuf,
    /// The snapshot last built or installed and its raft position (shared with the snapshot
    /// builders).
    current: Arc<std::sync::Mutex<Option<(SnapshotMeta, snapshot::Image)>>>,
}

impl StateMachine {
    pub fn new(state: Arc<StoreState>, snapshot_dir: PathBuf) -> Result<Self, StorageError> {
        std::fs::create_dir_all(&snapshot_dir)?;
        let current = snapshot::load_current(&snapshot_dir)?;
        Ok(Self {
            state,
            snapshot_dir,
            current: Arc::new(std::sync::Mutex::new(current)),
        })
    }

    pub fn state(&self) -> &Arc<StoreState> {
        &self.state
    }

    /// Makes `cp` the current snapshot unless a newer one already is (a build that raced an
    /// install of a later snapshot).
    fn set_current(&self, cp: Arc<snapshot::Checkpoint>) -> Result<Snapshot, io::Error> {
        let snap = Snapshot {
            meta: cp.meta.clone(),
            snapshot: snapshot::Image::Checkpoint(cp),
        };
        let mut current = self.current.lock().map_err(|_| lock_poisoned())?;
        let newer_kept = current
            .as_ref()
            .is_some_and(|(have, _)| have.last_log_id > snap.meta.last_log_id);
        if !newer_kept {
            *current = Some((snap.meta.clone(), snap.snapshot.clone()));
        }
        Ok(snap)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = snapshot::Image;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let state = self.state.clone();
        let dir = self.snapshot_dir.clone();
        let cp = tokio::task::spawn_blocking(move || snapshot::build(state.db(), &dir))
            .await
            .map_err(|e| io::Error::other(e.to_string()))?
            .map_err(io::Error::from)?;
        self.set_current(cp)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = snapshot::Image;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let applied = self.state.applied.read().map_err(|_| lock_poisoned())?;
        Ok(applied.clone())
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        // Collect first: the state locks are synchronous and must not be held across an await.
        let mut batch = Vec::new();
        while let Some(item) = entries.try_next().await? {
            batch.push(item);
        }
        self.state.apply_entries(batch)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        data: Self::SnapshotData,
    ) -> Result<(), io::Error> {
        let state = self.state.clone();
        let dir = self.snapshot_dir.clone();
        let meta = meta.clone();
        let at = meta.last_log_id;
        let cp = tokio::task::spawn_blocking(move || {
            snapshot::install(&state, &dir, &meta, data.into_bytes()?)
        })
        .await
        .map_err(|e| io::Error::other(e.to_string()))?
        .map_err(io::Error::from)?;
        self.set_current(cp)?;
        tracing::info!(last_log_id = ?at, "installed a snapshot from the leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let current = self.current.lock().map_err(|_| lock_poisoned())?;
        Ok(current.as_ref().map(|(meta, image)| Snapshot {
            meta: meta.clone(),
            snapshot: image.clone(),
        }))
    }
}
