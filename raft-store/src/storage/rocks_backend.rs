//! The MVCC [`Backend`] over RocksDB: writes go to one `WriteBatch` per apply call, with an
//! overlay so a request reads what earlier requests of the same batch wrote.

use std::collections::{BTreeMap, BTreeSet};

use keel_proto::mvccpb::KeyValue;
use prost::Message;
use rocksdb::{IteratorMode, WriteBatch};

use super::db::{Db, StorageError, CF_KV, CF_LEASE};
use crate::mvcc::{Backend, MvccError, Revision, ValueReader};

const PUT: u8 = 0;
const TOMBSTONE: u8 = 1;

/// Encodes a stored change: a kind byte, then the protobuf KeyValue.
pub fn encode_change(kv: &KeyValue, tombstone: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + kv.encoded_len());
    out.push(if tombstone { TOMBSTONE } else { PUT });
    kv.encode(&mut out).unwrap_or_default();
    out
}

/// Decodes a stored change written by [`encode_change`].
pub fn decode_change(bytes: &[u8]) -> Result<(KeyValue, bool), StorageError> {
    let corrupt = |detail: String| StorageError::Corrupt {
        what: "stored key-value",
        detail,
    };
    let (&kind, rest) = bytes.split_first().ok_or_else(|| corrupt("empty".into()))?;
    let kv = KeyValue::decode(rest).map_err(|e| corrupt(e.to_string()))?;
    match kind {
        PUT => Ok((kv, false)),
        TOMBSTONE => Ok((kv, true)),
        other => Err(corrupt(format!("unknown kind {other}"))),
    }
}

fn read_db(db: &Db, rev: Revision) -> Result<Option<KeyValue>, MvccError> {
    let bytes = db
        .raw()
        .get_pinned_cf(db.cf(CF_KV), rev.to_key())
        .map_err(|e| MvccError::Storage(e.to_string()))?;
    match bytes {
        None => Ok(None),
        Some(bytes) => {
            match decode_change(&bytes).map_err(|e| MvccError::Storage(e.to_string()))? {
                (_, true) => Ok(None),
                (kv, false) => Ok(Some(kv)),
            }
        }
    }
}

/// Read-only access for the serving path.
pub struct DbReader<'a>(pub &'a Db);

impl ValueReader for DbReader<'_> {
    fn value(&self, rev: Revision) -> Result<Option<KeyValue>, MvccError> {
        read_db(self.0, rev)
    }
}

/// The write side used while applying a batch of log entries.
pub struct RocksBackend<'a> {
    db: &'a Db,
    pub batch: WriteBatch,
    /// Changes written in this batch; `None` marks a revision removed by compaction.
    overlay: BTreeMap<Revision, Option<(KeyValue, bool)>>,
}

impl<'a> RocksBackend<'a> {
    pub fn new(db: &'a Db) -> Self {
        Self {
            db,
            batch: WriteBatch::default(),
            overlay: BTreeMap::new(),
        }
    }
}

impl ValueReader for RocksBackend<'_> {
    fn value(&self, rev: Revision) -> Result<Option<KeyValue>, MvccError> {
        match self.overlay.get(&rev) {
            Some(Some((kv, false))) => Ok(Some(kv.clone())),
            Some(_) => Ok(None),
            None => read_db(self.db, rev),
        }
    }
}

impl Backend for RocksBackend<'_> {
    fn put_change(&mut self, rev: Revision, kv: &KeyValue, tombstone: bool) {
        self.batch.put_cf(
            self.db.cf(CF_KV),
            rev.to_key(),
            encode_change(kv, tombstone),
        );
        self.overlay.insert(rev, Some((kv.clone(), tombstone)));
    }

    fn compact(&mut self, at: i64, keep: &BTreeSet<Revision>) -> Result<(), MvccError> {
        let cf = self.db.cf(CF_KV);
        let end = Revision::new(at + 1, 0).to_key();
        for item in self.db.raw().iterator_cf(cf, IteratorMode::Start) {
            let (key, _) = item.map_err(|e| MvccError::Storage(e.to_string()))?;
            if key.as_ref() >= end.as_slice() {
                break;
            }
            let rev = Revision::from_key(&key).ok_or_else(|| {
                MvccError::Storage(format!("bad revision key of {} bytes", key.len()))
            })?;
            if !keep.contains(&rev) {
                self.batch.delete_cf(cf, key);
            }
        }
        let pending: Vec<Revision> = self
            .overlay
            .range(..Revision::new(at + 1, 0))
            .filter(|(rev, change)| change.is_some() && !keep.contains(rev))
            .map(|(rev, _)| *rev)
            .collect();
        for rev in pending {
            self.batch.delete_cf(cf, rev.to_key());
            self.overlay.insert(rev, None);
        }
        Ok(())
    }

    fn put_lease(&mut self, id: i64, ttl: i64) {
        self.batch
            .put_cf(self.db.cf(CF_LEASE), id.to_be_bytes(), ttl.to_be_bytes());
    }

    fn delete_lease(&mut self, id: i64) {
        self.batch.delete_cf(self.db.cf(CF_LEASE), id.to_be_bytes());
    }
}
