//! State machine snapshots: a consistent copy of the MVCC state, checksummed, written to the
//! snapshot directory and shipped to members that fell behind the purged log.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{IteratorMode, WriteBatch};
use serde::{Deserialize, Serialize};

use super::db::{Db, StorageError, CF_KV, CF_LEASE, CF_META};
use super::state_machine::{
    StoreState, KEY_LAST_APPLIED, KEY_MEMBERS, KEY_MEMBERSHIP, KEY_REMOVED, KEY_REVISION,
};
use crate::codec;
use crate::types::{LogId, SnapshotMeta, StoredMembership};

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
/// [`CF_META`]'s place in [`CFS`].
const META_TAG: usize = 2;

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

/// A snapshot's data: encoded, or a checkpoint of the database encoded only when it is sent.
///
/// Building a snapshot must not cost in proportion to the state: it happens every
/// `--snapshot-count` entries, and a member with millions of keys would spend its time encoding
/// them. A RocksDB checkpoint (hard links to the immutable table files) is a consistent,
/// openable copy made in about the time of a memtable flush; the encoding is paid only when a
/// member that fell behind the purged log needs the snapshot.
#[derive(Clone)]
pub enum Image {
    Encoded(Vec<u8>),
    Checkpoint(Arc<Checkpoint>),
}

impl Image {
    /// The snapshot file's bytes (blocking: a checkpoint is read from disk).
    pub fn into_bytes(self) -> Result<Vec<u8>, StorageError> {
        match self {
            Image::Encoded(bytes) => Ok(bytes),
            Image::Checkpoint(cp) => cp.encode(),
        }
    }
}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Image::Encoded(b) => write!(f, "Encoded({} bytes)", b.len()),
            Image::Checkpoint(cp) => write!(f, "Checkpoint({})", cp.dir.display()),
        }
    }
}

/// A checkpoint directory and the raft position its state is at. The directory is removed when
/// the last handle goes: a newer checkpoint replaces it, but a transfer still reading it keeps it.
#[derive(Debug)]
pub struct Checkpoint {
    dir: PathBuf,
    pub meta: SnapshotMeta,
}

impl Drop for Checkpoint {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not remove an old snapshot checkpoint");
        }
    }
}

const CHECKPOINT_PREFIX: &str = "checkpoint-";
const CHECKPOINT_META: &str = "snapshot.meta";

impl Checkpoint {
    /// Encodes the checkpoint's state as a snapshot file.
    fn encode(&self) -> Result<Vec<u8>, StorageError> {
        let db = open_read_only(&self.dir)?;
        let handles = CFS
            .iter()
            .map(|name| {
                db.cf_handle(name)
                    .ok_or_else(|| corrupt(format!("checkpoint lacks column family {name}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (meta, bytes) = encode_view(
            |tag| db.iterator_cf(handles[tag], IteratorMode::Start),
            |key| db.get_cf(handles[META_TAG], key),
        )?;
        if meta.last_log_id != self.meta.last_log_id {
            return Err(corrupt(
                "checkpoint state does not match its recorded position",
            ));
        }
        Ok(bytes)
    }
}

fn open_read_only(dir: &Path) -> Result<rocksdb::DB, StorageError> {
    Ok(rocksdb::DB::open_cf_for_read_only(
        &rocksdb::Options::default(),
        dir,
        CFS,
        false,
    )?)
}

/// Makes a checkpoint of the database as it is now in `dir`, records its raft position beside
/// it, and returns it as the current snapshot.
pub fn build(db: &Db, dir: &Path) -> Result<Arc<Checkpoint>, StorageError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let path = dir.join(format!("{CHECKPOINT_PREFIX}{nanos:024}"));
    // Whatever is at this path is a leftover of an interrupted build.
    let _ = fs::remove_dir_all(&path);
    rocksdb::checkpoint::Checkpoint::new(db.raw())?.create_checkpoint(&path)?;
    let mut cp = Checkpoint {
        dir: path,
        meta: SnapshotMeta::default(),
    };
    let meta = {
        let db = open_read_only(&cp.dir)?;
        let meta_cf = db
            .cf_handle(CF_META)
            .ok_or_else(|| corrupt("checkpoint lacks the meta column family"))?;
        read_meta(|key| db.get_cf(meta_cf, key))?
    };
    // The position file marks the checkpoint complete; written last, and durably.
    let meta_path = cp.dir.join(CHECKPOINT_META);
    fs::write(&meta_path, codec::encode(&meta).map_err(corrupt)?)?;
    fs::File::open(&meta_path)?.sync_all()?;
    fs::File::open(&cp.dir)?.sync_all()?;
    fs::File::open(dir)?.sync_all()?;
    cp.meta = meta;
    Ok(Arc::new(cp))
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
    encode_view(
        |tag| view.iterator_cf(db.cf(CFS[tag]), IteratorMode::Start),
        |key| view.get_cf(db.cf(CF_META), key),
    )
}

/// Encodes the rows `iter` yields for each column family (by its place in [`CFS`]), with the
/// metadata `get` reads from [`CF_META`]; both must see the same point in time.
fn encode_view<'a, I>(
    iter: impl Fn(usize) -> I,
    get: impl Fn(&[u8]) -> Result<Option<Vec<u8>>, rocksdb::Error>,
) -> Result<(SnapshotMeta, Vec<u8>), StorageError>
where
    I: Iterator<Item = Result<(Box<[u8]>, Box<[u8]>), rocksdb::Error>> + 'a,
{
    let mut rows = Vec::new();
    for tag in 0..CFS.len() {
        for item in iter(tag) {
            let (k, v) = item?;
            rows.push((tag as u8, k.to_vec(), v.to_vec()));
        }
    }
    let meta = read_meta(get)?;
    let payload = codec::encode(&Payload { rows }).map_err(corrupt)?;
    let file = SnapshotFile {
        meta: meta.clone(),
        checksum: checksum(&payload),
        payload,
    };
    let bytes = codec::encode(&file).map_err(corrupt)?;
    Ok((meta, bytes))
}

/// The raft position and membership recorded in [`CF_META`].
fn read_meta(
    get: impl Fn(&[u8]) -> Result<Option<Vec<u8>>, rocksdb::Error>,
) -> Result<SnapshotMeta, StorageError> {
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
    Ok(SnapshotMeta {
        last_log_id,
        last_membership,
    })
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

/// Verifies and installs a snapshot received from the leader, replacing all state machine data;
/// the result is the new current snapshot.
pub fn install(
    state: &StoreState,
    dir: &Path,
    meta: &SnapshotMeta,
    bytes: Vec<u8>,
) -> Result<Arc<Checkpoint>, StorageError> {
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
    state.reload()?;
    build(state.db(), dir)
}

/// The snapshot last built or installed, if any, found in `dir` at startup, with its raft
/// position. Incomplete and older checkpoints are removed.
pub fn load_current(dir: &Path) -> Result<Option<(SnapshotMeta, Image)>, StorageError> {
    let mut complete = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let is_checkpoint = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(CHECKPOINT_PREFIX));
        if !is_checkpoint {
            continue;
        }
        match fs::read(path.join(CHECKPOINT_META)) {
            Ok(bytes) => complete.push((path, bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::remove_dir_all(&path)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    complete.sort();
    if let Some((path, bytes)) = complete.pop() {
        for (older, _) in complete {
            fs::remove_dir_all(older)?;
        }
        // A snapshot file from an earlier layout is superseded.
        let _ = fs::remove_file(dir.join(CURRENT));
        let meta: SnapshotMeta = codec::decode(&bytes).map_err(corrupt)?;
        let cp = Checkpoint {
            dir: path,
            meta: meta.clone(),
        };
        return Ok(Some((meta, Image::Checkpoint(Arc::new(cp)))));
    }
    // An earlier layout kept the encoded snapshot itself.
    match fs::read(dir.join(CURRENT)) {
        Ok(bytes) => Ok(Some((decode_file(&bytes)?.meta, Image::Encoded(bytes)))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(bytes: &[u8]) -> Vec<(u8, Vec<u8>, Vec<u8>)> {
        let file = decode_file(bytes).expect("snapshot decodes");
        codec::decode::<Payload>(&file.payload)
            .expect("payload decodes")
            .rows
    }

    #[test]
    fn a_checkpoint_encodes_the_state_it_was_built_at_and_survives_a_restart() {
        let data = tempfile::tempdir().expect("temp dir");
        let snap_dir = data.path().join("snap");
        fs::create_dir_all(&snap_dir).expect("snap dir");
        let db = super::super::db::open(data.path()).expect("db opens");
        db.raw().put_cf(db.cf(CF_KV), b"before", b"1").expect("put");
        let cp = build(&db, &snap_dir).expect("checkpoint");
        db.raw().put_cf(db.cf(CF_KV), b"after", b"2").expect("put");
        db.raw().delete_cf(db.cf(CF_KV), b"before").expect("delete");

        let built = rows(&Image::Checkpoint(cp.clone()).into_bytes().expect("encodes"));
        assert_eq!(built, vec![(0, b"before".to_vec(), b"1".to_vec())]);

        // A newer checkpoint replaces it; an interrupted one (no position file) is discarded.
        let newer = build(&db, &snap_dir).expect("second checkpoint");
        let partial = snap_dir.join(format!("{CHECKPOINT_PREFIX}{:024}", u128::MAX / 2));
        fs::create_dir_all(&partial).expect("partial dir");
        let newer_dir = newer.dir.clone();
        drop(cp);
        std::mem::forget(newer); // as a crash would leave it
        match load_current(&snap_dir).expect("loads") {
            Some((_, Image::Checkpoint(found))) => {
                assert_eq!(found.dir, newer_dir);
                let found = rows(&Image::Checkpoint(found).into_bytes().expect("encodes"));
                assert_eq!(found, vec![(0, b"after".to_vec(), b"2".to_vec())]);
            }
            other => panic!(
                "expected the newer checkpoint, got {:?}",
                other.map(|(_, i)| i)
            ),
        }
        assert!(!partial.exists(), "the interrupted checkpoint is removed");
        let left = fs::read_dir(&snap_dir).expect("snap dir").count();
        assert_eq!(left, 0, "every checkpoint is removed once unreferenced");
    }
}
