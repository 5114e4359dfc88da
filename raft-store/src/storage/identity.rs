//! Who this member is: its member ID and its cluster's ID, fixed when the data dir is first used.
//!
//! Founding members derive both from `--initial-cluster`; a member added later learns them from
//! the cluster. Either way they are stored, so a restart never re-derives them from flags that may
//! have changed since (the initial cluster of a grown cluster no longer names its founders).

use serde::{Deserialize, Serialize};

use super::db::{Db, StorageError, CF_RAFT_META};
use crate::codec;
use crate::types::NodeId;

const KEY_IDENTITY: &[u8] = b"identity";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub member_id: NodeId,
    pub cluster_id: u64,
}

/// The stored identity, if this data dir has one.
pub fn load(db: &Db) -> Result<Option<Identity>, StorageError> {
    db.raw()
        .get_cf(db.cf(CF_RAFT_META), KEY_IDENTITY)?
        .map(|b| codec::decode(&b))
        .transpose()
        .map_err(|e| StorageError::Corrupt {
            what: "member identity",
            detail: e.to_string(),
        })
}

/// Stores the identity durably (fsynced before returning).
pub fn save(db: &Db, identity: &Identity) -> Result<(), StorageError> {
    let bytes = codec::encode(identity).map_err(|e| StorageError::Corrupt {
        what: "member identity",
        detail: e.to_string(),
    })?;
    let mut opts = rocksdb::WriteOptions::default();
    opts.set_sync(true);
    db.raw()
        .put_cf_opt(db.cf(CF_RAFT_META), KEY_IDENTITY, bytes, &opts)?;
    Ok(())
}
