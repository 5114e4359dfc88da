//! State machine snapshots: a consistent copy of the MVCC state, checksummed, written to the
//! snapshot directory and shipped to members that fell behind the purged log.

use std::fs;
use std::path::Path;

use rocksdb::{IteratorMode, WriteBatch};
use serde::{Deserialize, Serialize};

use super::db::{StorageError, CF_KV, CF_LEASE, CF_META};
use super::state_machine::{
    StoreState, KEY_LAST_APPLIED, KEY_MEMBERS, KEY_MEMBERSHIP, KEY_REMOVED, KEY_REVISION,
};
use crate::codec;
use crate::types::{LogId, Snapshot, SnapshotMeta, StoredMembership};

const CURRENT: &str = "current.snap";

/// Every column family of the state machine, as (column family, key, value) rows.
#[derive(Serialize, Deserialize)]
struct Payload {
    rows: Vec<(u8, Vec<u8>, Vec<u8>)>,
}

/// The snapshot file: metadata, payload bytes and the payload's checksum.
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta,
    checksum: u64,
    payload: Vec<u8>,
}

const CFS: [&str; 3] = [CF_KV, CF_LEASE, CF_META];

/// FNV-1a over the payload: catches torn or flipped bytes in transit or on disk.
pub fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn corrupt(detail: impl ToString) -> StorageError {
    StorageError::Corrupt {
        what: "snapshot",
        detail: detail.to_string(),
    }
}

/// Builds a snapshot from a point-in-time view of the database and stores it as the current one.
pub fn build(state: &StoreState, dir: &Path) -> Result<Snapshot, StorageError> {
    let (meta, bytes) = encode(state)?;
    write_atomically(dir, &bytes)?;
    Ok(Snapshot {
        meta,
        snapshot: std::io::Cursor::new(bytes),
    })
}

/// The bytes of a snapshot of the state as it is now, without storing it: what Maintenance
/// Snapshot sends.
pub fn export(state: &StoreState) -> Result<Vec<u8>, StorageError> {
    encode(state).map(|(_, bytes)| bytes)
}

/// A snapshot file's metadata and bytes, from one point-in-time view of the database.
fn encode(state: &StoreState) -> Result<(SnapshotMeta, Vec<u8>), StorageError> {
    let db = state.db();
    let view = db.raw().snapshot();
    let mut rows = Vec::new();
    for (tag, cf) in CFS.iter().enumerate() {
        for item in view.iterator_cf(db.cf(cf), IteratorMode::Start) {
            let (k, v) = item?;
            rows.push((tag as u8, k.to_vec(), v.to_vec()));
        }
    }
    let get = |key: &[u8]| view.get_cf(db.cf(CF_META), key);
    let last_log_id: Option<LogId> = get(KEY_LAST_APPLIED)?
        .map(|b| codec::decode(&b))
        .transpose()
        .map_err(corrupt)?
        .flatten();
    let last_membership: StoredMembership = get(KEY_MEMBERSHIP)?
        .map(|b| codec::decode(&b))
        .transpose()
        .map_err(corrupt)?
        .unwrap_or_default();
    drop(view);
    let meta = SnapshotMeta {
        last_log_id,
        last_membership,
    };
    let payload = codec::encode(&Payload { rows }).map_err(corrupt)?;
    let file = SnapshotFile {
        meta: meta.clone(),
        checksum: checksum(&payload),
        payload,
    };
    let bytes = codec::encode(&file).map_err(corrupt)?;
    Ok((meta, bytes))
}

fn write_atomically(dir: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    let tmp = dir.join(format!("{CURRENT}.tmp"));
    fs::write(&tmp, bytes)?;
    fs::File::open(&tmp)?.sync_all()?;
    fs::rename(&tmp, dir.join(CURRENT))?;
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Checks a received snapshot's framing and checksum without installing it.
pub fn verify(bytes: &[u8]) -> Result<(), StorageError> {
    decode_file(bytes).map(|_| ())
}

fn decode_file(bytes: &[u8]) -> Result<SnapshotFile, StorageError> {
    let file: SnapshotFile = codec::decode(bytes).map_err(corrupt)?;
    if checksum(&file.payload) != file.checksum {
        return Err(corrupt("checksum mismatch"));
    }
    Ok(file)
}

/// Verifies and installs a snapshot received from the leader, replacing all state machine data.
pub fn install(
    state: &StoreState,
    dir: &Path,
    meta: &SnapshotMeta,
    bytes: Vec<u8>,
) -> Result<(), StorageError> {
    let file = decode_file(&bytes)?;
    if file.meta.last_log_id != meta.last_log_id {
        return Err(corrupt("metadata does not match the snapshot it came with"));
    }
    let payload: Payload = codec::decode(&file.payload).map_err(corrupt)?;
    let db = state.db();
    let mut batch = WriteBatch::default();
    for cf in CFS {
        for item in db.raw().iterator_cf(db.cf(cf), IteratorMode::Start) {
            let (k, _) = item?;
            batch.delete_cf(db.cf(cf), k);
        }
    }
    for (tag, k, v) in payload.rows {
        let cf = CFS
            .get(usize::from(tag))
            .ok_or_else(|| corrupt(format!("unknown column family tag {tag}")))?;
        batch.put_cf(db.cf(cf), k, v);
    }
    let mut opts = rocksdb::WriteOptions::default();
    opts.set_sync(true);
    db.raw().write_opt(batch, &opts)?;
    write_atomically(dir, &bytes)?;
    state.reload()
}

/// The snapshot last built or installed, if any.
pub fn load_current(dir: &Path) -> Result<Option<Snapshot>, StorageError> {
    let path = dir.join(CURRENT);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let file = decode_file(&bytes)?;
    Ok(Some(Snapshot {
        meta: file.meta,
        snapshot: std::io::Cursor::new(bytes),
    }))
}

/// What a restore wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    pub revision: i64,
    pub rows: usize,
}

/// Writes the state machine of snapshot `bytes` into a new data dir, for a new cluster to start
/// from (etcd's `snapshot restore`). The snapshot's raft position, membership and member records
/// are left out: the new cluster forms from its own flags and its log starts empty.
pub fn restore(bytes: &[u8], data_dir: &Path) -> Result<Restored, StorageError> {
    let file = decode_file(bytes)?;
    let payload: Payload = codec::decode(&file.payload).map_err(corrupt)?;
    let db = super::db::open(data_dir)?;
    let mut batch = WriteBatch::default();
    let mut rows = 0;
    let skipped: [&[u8]; 4] = [KEY_LAST_APPLIED, KEY_MEMBERSHIP, KEY_MEMBERS, KEY_REMOVED];
    for (tag, k, v) in payload.rows {
        let cf = *CFS
            .get(usize::from(tag))
            .ok_or_else(|| corrupt(format!("unknown column family tag {tag}")))?;
        if cf == CF_META && skipped.contains(&k.as_slice()) {
            continue;
        }
        batch.put_cf(db.cf(cf), k, v);
        rows += 1;
    }
    let mut opts = rocksdb::WriteOptions::default();
    opts.set_sync(true);
    db.raw().write_opt(batch, &opts)?;
    let revision: i64 = db
        .raw()
        .get_cf(db.cf(CF_META), KEY_REVISION)?
        .map(|b| codec::decode(&b))
        .transpose()
        .map_err(corrupt)?
        .unwrap_or(1);
    Ok(Restored { revision, rows })
}
