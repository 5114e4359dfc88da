//! The MVCC state machine core, as etcd's: revisions, versions, tombstones, txns, compaction and
//! leases over an abstract value store.
//!
//! Everything here is plain data and deterministic: the same requests applied in the same order to
//! the same state give the same responses on every member. Disk access goes through [`Backend`],
//! so the core is tested against an in-memory backend and run against RocksDB.

pub mod index;
pub mod memory;
pub mod revision;

use std::collections::{BTreeMap, BTreeSet};

use keel_proto::etcdserverpb::{
    compare, range_request, request_op, response_op, CompactionRequest, CompactionResponse,
    Compare, DeleteRangeRequest, DeleteRangeResponse, LeaseGrantRequest, LeaseGrantResponse,
    LeaseRevokeRequest, LeaseRevokeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse,
    RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use keel_proto::mvccpb::{event::EventType, Event, KeyValue};
use serde::{Deserialize, Serialize};

use index::{Change, KeyIndex, Visible};
pub use revision::Revision;

/// The longest TTL a lease may ask for, in seconds (etcd's MaxLeaseTTL).
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// Deterministic request failures: every member computes the same one for the same request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum MvccError {
    #[error("mvcc: required revision has been compacted")]
    Compacted,
    #[error("mvcc: required revision is a future revision")]
    FutureRevision,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// The backend failed to read; not deterministic, and fatal to the member that saw it.
    #[error("storage: {0}")]
    Storage(String),
}

/// Reads stored values by revision.
pub trait ValueReader {
    /// The value written at `rev`, or `None` if that revision holds nothing (or a tombstone).
    fn value(&self, rev: Revision) -> Result<Option<KeyValue>, MvccError>;
}

/// Where the core writes. Writes become visible to [`ValueReader::value`] immediately (a txn
/// reads its own writes) and durable when the owner commits them.
pub trait Backend: ValueReader {
    fn put_change(&mut self, rev: Revision, kv: &KeyValue, tombstone: bool);
    /// Deletes every stored revision with main revision `<= at` except those in `keep`.
    fn compact(&mut self, at: i64, keep: &BTreeSet<Revision>) -> Result<(), MvccError>;
    fn put_lease(&mut self, id: i64, ttl: i64);
    fn delete_lease(&mut self, id: i64);
}

/// A lease as the state machine records it. Expiry is the leader's business, not the state's.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaseRecord {
    pub ttl: i64,
    pub keys: BTreeSet<Vec<u8>>,
}

/// A request that changes state, as it travels through the log.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteRequest {
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact(CompactionRequest),
    LeaseGrant(LeaseGrantRequest),
    LeaseRevoke(LeaseRevokeRequest),
}

/// The response to a [`WriteRequest`] (headers are filled in by the server).
#[derive(Debug, Clone, PartialEq)]
pub enum WriteResponse {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compact(CompactionResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
}

/// What applying one request did: its response, and the events watchers must see.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub response: WriteResponse,
    /// Store revision after the request.
    pub revision: i64,
    pub events: Vec<Event>,
}

/// The MVCC keyspace and lease table.
#[derive(Debug, Clone)]
pub struct Mvcc {
    index: KeyIndex,
    current: i64,
    compacted: i64,
    leases: BTreeMap<i64, LeaseRecord>,
    min_lease_ttl: i64,
}

/// In-flight state of one write request: the main revision it will commit at and the changes so far.
struct WriteCtx {
    main: i64,
    sub: i64,
    events: Vec<Event>,
}

impl WriteCtx {
    fn next_rev(&mut self) -> Revision {
        let rev = Revision::new(self.main, self.sub);
        self.sub += 1;
        rev
    }

    /// The revision reads inside this request see: its own writes once it has made any.
    fn read_rev(&self) -> i64 {
        if self.sub > 0 {
            self.main
        } else {
            self.main - 1
        }
    }
}

impl Mvcc {
    /// An empty store. Like etcd, the first revision is 1 and the first write makes it 2.
    pub fn new(min_lease_ttl: i64) -> Self {
        Self {
            index: KeyIndex::default(),
            current: 1,
            compacted: 0,
            leases: BTreeMap::new(),
            min_lease_ttl,
        }
    }

    pub fn current_revision(&self) -> i64 {
        self.current
    }

    pub fn compacted_revision(&self) -> i64 {
        self.compacted
    }

    pub fn leases(&self) -> &BTreeMap<i64, LeaseRecord> {
        &self.leases
    }

    pub fn key_count(&self) -> usize {
        self.index.len()
    }

    /// Rebuilds state during recovery: stored changes must be replayed in revision order, then
    /// leases, then [`Mvcc::finish_restore`].
    pub fn restore_change(&mut self, rev: Revision, kv: &KeyValue, tombstone: bool) {
        let change = if tombstone {
            Change::Tombstone
        } else {
            Change::Put {
                created: kv.create_revision,
                version: kv.version,
                lease: kv.lease,
            }
        };
        self.index.restore(&kv.key, rev, change);
        self.current = self.current.max(rev.main);
    }

    pub fn restore_lease(&mut self, id: i64, ttl: i64) {
        self.leases.insert(
            id,
            LeaseRecord {
                ttl,
                keys: BTreeSet::new(),
            },
        );
    }

    /// Completes recovery with the persisted revision counters and re-attaches keys to leases.
    pub fn finish_restore(&mut self, current: i64, compacted: i64) {
        self.current = self.current.max(current);
        self.compacted = compacted;
        let attached: Vec<(i64, Vec<u8>)> = self
            .index
            .range(&[], None, self.current)
            .filter(|(_, v)| v.lease != 0)
            .map(|(k, v)| (v.lease, k.to_vec()))
            .collect();
        for (lease, key) in attached {
            if let Some(record) = self.leases.get_mut(&lease) {
                record.keys.insert(key);
            }
        }
    }

    /// Serves a range request at its revision (0 = current).
    pub fn range(
        &self,
        req: &RangeRequest,
        values: &impl ValueReader,
    ) -> Result<RangeResponse, MvccError> {
        self.range_at(req, self.current, values)
    }

    fn check_read_revision(&self, requested: i64, current: i64) -> Result<i64, MvccError> {
        if requested <= 0 {
            return Ok(current);
        }
        if requested > current {
            return Err(MvccError::FutureRevision);
        }
        if requested < self.compacted {
            return Err(MvccError::Compacted);
        }
        Ok(requested)
    }

    fn range_at(
        &self,
        req: &RangeRequest,
        current: i64,
        values: &impl ValueReader,
    ) -> Result<RangeResponse, MvccError> {
        let at = self.check_read_revision(req.revision, current)?;
        let mut matches: Vec<(&[u8], Visible)> = match range_end(&req.key, &req.range_end) {
            RangeEnd::Single => self
                .index
                .get(&req.key, at)
                .map(|v| (req.key.as_slice(), v))
                .into_iter()
                .collect(),
            RangeEnd::To(end) => self.index.range(&req.key, Some(end), at).collect(),
            RangeEnd::Unbounded => self.index.range(&req.key, None, at).collect(),
        };
        let count = matches.len() as i64;
        let mut resp = RangeResponse {
            count,
            ..Default::default()
        };
        if req.count_only {
            return Ok(resp);
        }

        matches.retain(|(_, v)| {
            (req.min_mod_revision == 0 || v.modified.main >= req.min_mod_revision)
                && (req.max_mod_revision == 0 || v.modified.main <= req.max_mod_revision)
                && (req.min_create_revision == 0 || v.created >= req.min_create_revision)
                && (req.max_create_revision == 0 || v.created <= req.max_create_revision)
        });

        let order = range_request::SortOrder::try_from(req.sort_order).unwrap_or_default();
        let target = range_request::SortTarget::try_from(req.sort_target).unwrap_or_default();
        // The index yields keys ascending; any other target sorts ascending unless told otherwise.
        let order = match (order, target) {
            (range_request::SortOrder::None, range_request::SortTarget::Key) => {
                range_request::SortOrder::None
            }
            (range_request::SortOrder::None, _) => range_request::SortOrder::Ascend,
            (o, _) => o,
        };
        let limit = usize::try_from(req.limit).unwrap_or(0);
        // Without sorting only the first `limit` values are needed; with it, all of them.
        let fetch = if order == range_request::SortOrder::None && limit > 0 {
            matches.len().min(limit)
        } else {
            matches.len()
        };
        let mut kvs = Vec::with_capacity(fetch);
        for (key, visible) in matches.iter().take(fetch) {
            let kv = values.value(visible.modified)?.ok_or_else(|| {
                MvccError::Storage(format!(
                    "index names revision {:?} for key {:?} but no value is stored",
                    visible.modified, key
                ))
            })?;
            kvs.push(kv);
        }
        sort_kvs(&mut kvs, order, target);
        if limit > 0 && matches.len() > limit {
            kvs.truncate(limit);
            resp.more = true;
        }
        if req.keys_only {
            for kv in &mut kvs {
                kv.value.clear();
            }
        }
        resp.kvs = kvs;
        Ok(resp)
    }

    /// Applies one write request.
    pub fn apply(
        &mut self,
        req: &WriteRequest,
        backend: &mut impl Backend,
    ) -> Result<Applied, MvccError> {
        let mut ctx = WriteCtx {
            main: self.current + 1,
            sub: 0,
            events: Vec::new(),
        };
        let response = match req {
            WriteRequest::Put(put) => WriteResponse::Put(self.put(put, &mut ctx, backend)?),
            WriteRequest::DeleteRange(del) => {
                WriteResponse::DeleteRange(self.delete_range(del, &mut ctx, backend)?)
            }
            WriteRequest::Txn(txn) => WriteResponse::Txn(self.txn(txn, &mut ctx, backend)?),
            WriteRequest::Compact(c) => WriteResponse::Compact(self.compact(c, backend)?),
            WriteRequest::LeaseGrant(g) => WriteResponse::LeaseGrant(self.lease_grant(g, backend)?),
            WriteRequest::LeaseRevoke(r) => {
                WriteResponse::LeaseRevoke(self.lease_revoke(r, &mut ctx, backend)?)
            }
        };
        if ctx.sub > 0 {
            self.current = ctx.main;
        }
        Ok(Applied {
            response,
            revision: self.current,
            events: ctx.events,
        })
    }

    fn put(
        &mut self,
        req: &PutRequest,
        ctx: &mut WriteCtx,
        backend: &mut impl Backend,
    ) -> Result<PutResponse, MvccError> {
        let prev = self.index.get(&req.key, ctx.read_rev());
        let prev_kv = match prev {
            Some(v) if req.prev_kv || req.ignore_value => backend.value(v.modified)?,
            _ => None,
        };
        if (req.ignore_value || req.ignore_lease) && prev.is_none() {
            return Err(MvccError::KeyNotFound);
        }
        let lease = match (req.ignore_lease, prev) {
            (true, Some(v)) => v.lease,
            _ => req.lease,
        };
        if lease != 0 && !self.leases.contains_key(&lease) {
            return Err(MvccError::LeaseNotFound);
        }
        let value = match (&prev_kv, req.ignore_value) {
            (Some(p), true) => p.value.clone(),
            _ => req.value.clone(),
        };
        let rev = ctx.next_rev();
        let visible = self.index.put(&req.key, rev, lease);
        let kv = KeyValue {
            key: req.key.clone(),
            create_revision: visible.created,
            mod_revision: rev.main,
            version: visible.version,
            value,
            lease,
        };
        backend.put_change(rev, &kv, false);
        if let Some(old) = prev.filter(|p| p.lease != 0 && p.lease != lease) {
            self.detach(old.lease, &req.key);
        }
        if lease != 0 {
            if let Some(record) = self.leases.get_mut(&lease) {
                record.keys.insert(req.key.clone());
            }
        }
        ctx.events.push(Event {
            r#type: EventType::Put as i32,
            kv: Some(kv),
            prev_kv: None,
        });
        Ok(PutResponse {
            header: None,
            prev_kv: if req.prev_kv { prev_kv } else { None },
        })
    }

    fn detach(&mut self, lease: i64, key: &[u8]) {
        if let Some(record) = self.leases.get_mut(&lease) {
            record.keys.remove(key);
        }
    }

    fn delete_keys(
        &mut self,
        keys: Vec<(Vec<u8>, Visible)>,
        want_prev: bool,
        ctx: &mut WriteCtx,
        backend: &mut impl Backend,
    ) -> Result<DeleteRangeResponse, MvccError> {
        let mut resp = DeleteRangeResponse {
            deleted: keys.len() as i64,
            ..Default::default()
        };
        for (key, visible) in keys {
            if want_prev {
                if let Some(kv) = backend.value(visible.modified)? {
                    resp.prev_kvs.push(kv);
                }
            }
            let rev = ctx.next_rev();
            self.index.tombstone(&key, rev);
            if visible.lease != 0 {
                self.detach(visible.lease, &key);
            }
            let tomb = KeyValue {
                key,
                mod_revision: rev.main,
                ..Default::default()
            };
            backend.put_change(rev, &tomb, true);
            ctx.events.push(Event {
                r#type: EventType::Delete as i32,
                kv: Some(tomb),
                prev_kv: None,
            });
        }
        Ok(resp)
    }

    fn visible_keys(&self, key: &[u8], end: &[u8], at: i64) -> Vec<(Vec<u8>, Visible)> {
        match range_end(key, end) {
            RangeEnd::Single => self
                .index
                .get(key, at)
                .map(|v| (key.to_vec(), v))
                .into_iter()
                .collect(),
            RangeEnd::To(end) => self
                .index
                .range(key, Some(end), at)
                .map(|(k, v)| (k.to_vec(), v))
                .collect(),
            RangeEnd::Unbounded => self
                .index
                .range(key, None, at)
                .map(|(k, v)| (k.to_vec(), v))
                .collect(),
        }
    }

    fn delete_range(
        &mut self,
        req: &DeleteRangeRequest,
        ctx: &mut WriteCtx,
        backend: &mut impl Backend,
    ) -> Result<DeleteRangeResponse, MvccError> {
        let keys = self.visible_keys(&req.key, &req.range_end, ctx.read_rev());
        self.delete_keys(keys, req.prev_kv, ctx, backend)
    }

    fn txn(
        &mut self,
        req: &TxnRequest,
        ctx: &mut WriteCtx,
        backend: &mut impl Backend,
    ) -> Result<TxnResponse, MvccError> {
        let mut succeeded = true;
        for cmp in &req.compare {
            if !self.compare(cmp, ctx.read_rev(), backend)? {
                succeeded = false;
                break;
            }
        }
        let ops = if succeeded {
            &req.success
        } else {
            &req.failure
        };
        // A failing op must fail the request before anything changes, so leases, ignore_* and
        // revisions are checked up front against the state the txn started from (as etcd does,
        // nested txns choose their branch by that state too).
        self.check_txn_ops(ops, ctx.read_rev(), backend)?;
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            responses.push(self.txn_op(op, ctx, backend)?);
        }
        Ok(TxnResponse {
            header: None,
            succeeded,
            responses,
        })
    }

    fn check_txn_ops(
        &self,
        ops: &[RequestOp],
        at: i64,
        backend: &impl Backend,
    ) -> Result<(), MvccError> {
        for op in ops {
            match &op.request {
                Some(request_op::Request::RequestPut(put)) => {
                    let prev = self.index.get(&put.key, at);
                    if (put.ignore_value || put.ignore_lease) && prev.is_none() {
                        return Err(MvccError::KeyNotFound);
                    }
                    let lease = match (put.ignore_lease, prev) {
                        (true, Some(v)) => v.lease,
                        _ => put.lease,
                    };
                    if lease != 0 && !self.leases.contains_key(&lease) {
                        return Err(MvccError::LeaseNotFound);
                    }
                }
                Some(request_op::Request::RequestRange(range)) => {
                    self.check_read_revision(range.revision, at.max(self.current))?;
                }
                Some(request_op::Request::RequestTxn(txn)) => {
                    let mut ok = true;
                    for cmp in &txn.compare {
                        if !self.compare(cmp, at, backend)? {
                            ok = false;
                            break;
                        }
                    }
                    self.check_txn_ops(if ok { &txn.success } else { &txn.failure }, at, backend)?;
                }
                Some(request_op::Request::RequestDeleteRange(_)) | None => {}
            }
        }
        Ok(())
    }

    fn txn_op(
        &mut self,
        op: &RequestOp,
        ctx: &mut WriteCtx,
        backend: &mut impl Backend,
    ) -> Result<ResponseOp, MvccError> {
        // Nested responses carry only a revision in their header, stamped as etcd does: a read
        // sees the request's revision once it has changed something, a delete that changed
        // nothing reports the previous one, and a nested txn gets an empty header.
        let response = match &op.request {
            Some(request_op::Request::RequestRange(range)) => {
                let at = ctx.read_rev();
                let mut req = range.clone();
                if req.revision <= 0 {
                    req.revision = at;
                }
                let mut resp = self.range_at(&req, at, backend)?;
                resp.header = revision_header(at);
                response_op::Response::ResponseRange(resp)
            }
            Some(request_op::Request::RequestPut(put)) => {
                let mut resp = self.put(put, ctx, backend)?;
                resp.header = revision_header(ctx.main);
                response_op::Response::ResponsePut(resp)
            }
            Some(request_op::Request::RequestDeleteRange(del)) => {
                let mut resp = self.delete_range(del, ctx, backend)?;
                resp.header = revision_header(ctx.read_rev());
                response_op::Response::ResponseDeleteRange(resp)
            }
            Some(request_op::Request::RequestTxn(txn)) => {
                let mut resp = self.txn(txn, ctx, backend)?;
                resp.header = Some(ResponseHeader::default());
                response_op::Response::ResponseTxn(resp)
            }
            None => response_op::Response::ResponseRange(RangeResponse::default()),
        };
        Ok(ResponseOp {
            response: Some(response),
        })
    }

    fn compare(
        &self,
        cmp: &Compare,
        at: i64,
        values: &impl ValueReader,
    ) -> Result<bool, MvccError> {
        let keys = self.visible_keys(&cmp.key, &cmp.range_end, at);
        let target = compare::CompareTarget::try_from(cmp.target).unwrap_or_default();
        if keys.is_empty() {
            // A missing key has no value to compare; every other target compares as zero.
            if target == compare::CompareTarget::Value {
                return Ok(false);
            }
            return Ok(compare_one(cmp, target, &KeyValue::default()));
        }
        for (_, visible) in keys {
            let kv = if target == compare::CompareTarget::Value {
                values.value(visible.modified)?.unwrap_or_default()
            } else {
                KeyValue {
                    create_revision: visible.created,
                    mod_revision: visible.modified.main,
                    version: visible.version,
                    lease: visible.lease,
                    ..Default::default()
                }
            };
            if !compare_one(cmp, target, &kv) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn compact(
        &mut self,
        req: &CompactionRequest,
        backend: &mut impl Backend,
    ) -> Result<CompactionResponse, MvccError> {
        if req.revision > self.current {
            return Err(MvccError::FutureRevision);
        }
        if req.revision <= self.compacted {
            return Err(MvccError::Compacted);
        }
        let keep: BTreeSet<Revision> = self.index.compact(req.revision).into_iter().collect();
        backend.compact(req.revision, &keep)?;
        self.compacted = req.revision;
        Ok(CompactionResponse { header: None })
    }

    fn lease_grant(
        &mut self,
        req: &LeaseGrantRequest,
        backend: &mut impl Backend,
    ) -> Result<LeaseGrantResponse, MvccError> {
        if req.ttl > MAX_LEASE_TTL {
            return Err(MvccError::LeaseTtlTooLarge);
        }
        if self.leases.contains_key(&req.id) {
            return Err(MvccError::LeaseExists);
        }
        let ttl = req.ttl.max(self.min_lease_ttl);
        self.leases.insert(
            req.id,
            LeaseRecord {
                ttl,
                keys: BTreeSet::new(),
            },
        );
        backend.put_lease(req.id, ttl);
        Ok(LeaseGrantResponse {
            header: None,
            id: req.id,
            ttl,
            error: String::new(),
        })
    }

    fn lease_revoke(
        &mut self,
        req: &LeaseRevokeRequest,
        ctx: &mut WriteCtx,
        backend: &mut impl Backend,
    ) -> Result<LeaseRevokeResponse, MvccError> {
        let record = self
            .leases
            .remove(&req.id)
            .ok_or(MvccError::LeaseNotFound)?;
        backend.delete_lease(req.id);
        let at = ctx.read_rev();
        let keys: Vec<(Vec<u8>, Visible)> = record
            .keys
            .into_iter()
            .filter_map(|k| self.index.get(&k, at).map(|v| (k, v)))
            .collect();
        self.delete_keys(keys, false, ctx, backend)?;
        Ok(LeaseRevokeResponse { header: None })
    }

    /// The revision holding the version of `key` visible at `at`, if any (watchers use it to
    /// find an event's previous value).
    pub fn key_at(&self, key: &[u8], at: i64) -> Option<Revision> {
        self.index.get(key, at).map(|v| v.modified)
    }
}

/// How a request's `range_end` bounds its key.
enum RangeEnd<'a> {
    Single,
    To(&'a [u8]),
    Unbounded,
}

fn revision_header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

fn range_end<'a>(_key: &[u8], end: &'a [u8]) -> RangeEnd<'a> {
    match end {
        [] => RangeEnd::Single,
        [0] => RangeEnd::Unbounded,
        end => RangeEnd::To(end),
    }
}

/// Whether `key` falls in the range a request or watch names by `(start, end)`.
pub fn key_in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    match range_end(start, end) {
        RangeEnd::Single => key == start,
        RangeEnd::Unbounded => key >= start,
        RangeEnd::To(end) => key >= start && key < end,
    }
}

fn compare_one(cmp: &Compare, target: compare::CompareTarget, kv: &KeyValue) -> bool {
    use compare::{CompareResult, CompareTarget, TargetUnion};
    let ordering = match target {
        CompareTarget::Value => {
            let want: &[u8] = match &cmp.target_union {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value.as_slice().cmp(want)
        }
        CompareTarget::Version => kv.version.cmp(&int_target(&cmp.target_union, |t| match t {
            TargetUnion::Version(v) => Some(*v),
            _ => None,
        })),
        CompareTarget::Create => {
            kv.create_revision
                .cmp(&int_target(&cmp.target_union, |t| match t {
                    TargetUnion::CreateRevision(v) => Some(*v),
                    _ => None,
                }))
        }
        CompareTarget::Mod => kv
            .mod_revision
            .cmp(&int_target(&cmp.target_union, |t| match t {
                TargetUnion::ModRevision(v) => Some(*v),
                _ => None,
            })),
        CompareTarget::Lease => kv.lease.cmp(&int_target(&cmp.target_union, |t| match t {
            TargetUnion::Lease(v) => Some(*v),
            _ => None,
        })),
    };
    match CompareResult::try_from(cmp.result).unwrap_or_default() {
        CompareResult::Equal => ordering.is_eq(),
        CompareResult::Greater => ordering.is_gt(),
        CompareResult::Less => ordering.is_lt(),
        CompareResult::NotEqual => ordering.is_ne(),
    }
}

fn int_target(
    target: &Option<compare::TargetUnion>,
    pick: impl Fn(&compare::TargetUnion) -> Option<i64>,
) -> i64 {
    target.as_ref().and_then(pick).unwrap_or(0)
}

fn sort_kvs(
    kvs: &mut [KeyValue],
    order: range_request::SortOrder,
    target: range_request::SortTarget,
) {
    use range_request::{SortOrder, SortTarget};
    if order == SortOrder::None {
        return;
    }
    kvs.sort_by(|a, b| {
        let o = match target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        };
        if order == SortOrder::Descend {
            o.reverse()
        } else {
            o
        }
    });
}

#[cfg(test)]
mod tests;
