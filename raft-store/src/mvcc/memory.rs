//! An in-memory [`Backend`], the reference the RocksDB backend is checked against in tests.

use std::collections::{BTreeMap, BTreeSet};

use keel_proto::mvccpb::KeyValue;

use super::{Backend, MvccError, Revision, ValueReader};

/// Stored changes and leases in plain maps.
#[derive(Debug, Default, Clone)]
pub struct MemoryBackend {
    pub changes: BTreeMap<Revision, (KeyValue, bool)>,
    pub leases: BTreeMap<i64, i64>,
}

impl ValueReader for MemoryBackend {
    fn value(&self, rev: Revision) -> Result<Option<KeyValue>, MvccError> {
        Ok(self
            .changes
            .get(&rev)
            .filter(|(_, tomb)| !tomb)
            .map(|(kv, _)| kv.clone()))
    }
}

impl Backend for MemoryBackend {
    fn put_change(&mut self, rev: Revision, kv: &KeyValue, tombstone: bool) {
        self.changes.insert(rev, (kv.clone(), tombstone));
    }

    fn compact(&mut self, at: i64, keep: &BTreeSet<Revision>) -> Result<(), MvccError> {
        self.changes
            .retain(|rev, _| rev.main > at || keep.contains(rev));
        Ok(())
    }

    fn put_lease(&mut self, id: i64, ttl: i64) {
        self.leases.insert(id, ttl);
    }

    fn delete_lease(&mut self, id: i64) {
        self.leases.remove(&id);
    }
}
