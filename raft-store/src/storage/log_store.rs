//! The raft log and raft metadata in RocksDB, implementing openraft's `RaftLogStorage`.
//!
//! Durability contract: `append` returns once the entries are readable, and reports completion
//! through the callback only after an fsync of the write-ahead log covering them. Votes are fsynced
//! before `save_vote` returns. Concurrent appends are group-committed: one flusher thread drains
//! every pending callback and covers them all with a single fsync.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::mpsc;

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::db::{Db, StorageError, CF_RAFT_LOG, CF_RAFT_META};
use crate::codec;
use crate::types::{Entry, LogId, TypeConfig, Vote};

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";

/// The log storage handle; cheap to clone, all clones share the flusher.
#[derive(Clone)]
pub struct LogStore {
    db: Db,
    flush_tx: mpsc::Sender<IOFlushed<TypeConfig>>,
}

impl LogStore {
    pub fn new(db: Db) -> Result<Self, StorageError> {
        let (flush_tx, flush_rx) = mpsc::channel::<IOFlushed<TypeConfig>>();
        let flush_db = db.clone();
        // The flusher ends when every sender (every LogStore clone) is dropped.
        std::thread::Builder::new()
            .name("keel-log-fsync".into())
            .spawn(move || flusher(flush_db, flush_rx))?;
        Ok(Self { db, flush_tx })
    }

    fn get_meta<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError> {
        let Some(bytes) = self.db.raw().get_cf(self.db.cf(CF_RAFT_META), key)? else {
            return Ok(None);
        };
        codec::decode(&bytes)
            .map(Some)
            .map_err(|e| StorageError::Corrupt {
                what: "raft metadata",
                detail: e.to_string(),
            })
    }

    fn put_meta<T: Serialize>(
        &self,
        key: &[u8],
        value: &T,
        sync: bool,
    ) -> Result<(), StorageError> {
        let bytes = codec::encode(value).map_err(|e| StorageError::Corrupt {
            what: "raft metadata",
            detail: e.to_string(),
        })?;
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        self.db
            .raw()
            .put_cf_opt(self.db.cf(CF_RAFT_META), key, bytes, &opts)?;
        Ok(())
    }

    fn decode_entry(bytes: &[u8]) -> Result<Entry, StorageError> {
        codec::decode(bytes).map_err(|e| StorageError::Corrupt {
            what: "raft log entry",
            detail: e.to_string(),
        })
    }

    /// The persisted committed log id, used at start-up to know how far to re-apply.
    pub fn committed(&self) -> Result<Option<LogId>, StorageError> {
        self.get_meta(KEY_COMMITTED)
    }
}

fn flusher(db: Db, rx: mpsc::Receiver<IOFlushed<TypeConfig>>) {
    while let Ok(first) = rx.recv() {
        let mut waiting = vec![first];
        waiting.extend(rx.try_iter());
        let started = std::time::Instant::now();
        let result = db.sync_wal();
        crate::metrics::METRICS.wal_fsync.observe(started.elapsed());
        for callback in waiting {
            let res = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::other(e.to_string())),
            };
            callback.io_completed(res);
        }
    }
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let from = index_key(start);
        let iter = self.db.raw().iterator_cf(
            self.db.cf(CF_RAFT_LOG),
            IteratorMode::From(&from, Direction::Forward),
        );
        let mut out = Vec::new();
        for item in iter {
            let (key, value) = item.map_err(StorageError::from)?;
            let index =
                u64::from_be_bytes(key.as_ref().try_into().map_err(|_| StorageError::Corrupt {
                    what: "raft log key",
                    detail: format!("{} bytes", key.len()),
                })?);
            if !range.contains(&index) {
                break;
            }
            out.push(Self::decode_entry(&value)?);
        }
        Ok(out)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.get_meta(KEY_VOTE)?)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last = self
            .db
            .raw()
            .iterator_cf(self.db.cf(CF_RAFT_LOG), IteratorMode::End)
            .next();
        let last_log_id = match last {
            None => None,
            Some(item) => {
                let (_, value) = item.map_err(StorageError::from)?;
                Some(openraft::entry::RaftEntry::log_id(&Self::decode_entry(
                    &value,
                )?))
            }
        };
        let last_purged_log_id: Option<LogId> = self.get_meta(KEY_LAST_PURGED)?;
        let last_log_id = last_log_id.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        Ok(self.put_meta(KEY_VOTE, vote, true)?)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // Not synced: a lost committed index only means re-deriving it from a quorum.
        Ok(self.put_meta(KEY_COMMITTED, &committed, false)?)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.get_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let cf = self.db.cf(CF_RAFT_LOG);
        let mut batch = WriteBatch::default();
        for entry in entries {
            let index = openraft::entry::RaftEntry::index(&entry);
            let bytes = codec::encode(&entry)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            batch.put_cf(cf, index_key(index), bytes);
        }
        self.db.raw().write(batch).map_err(StorageError::from)?;
        self.flush_tx
            .send(callback)
            .map_err(|_| io::Error::other("log fsync thread has stopped"))?;
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let start = last_log_id.map(|id| id.index() + 1).unwrap_or(0);
        self.db
            .raw()
            .delete_range_cf(
                self.db.cf(CF_RAFT_LOG),
                index_key(start),
                index_key(u64::MAX),
            )
            .map_err(StorageError::from)?;
        // Entries past u64::MAX - 1 cannot exist, but delete_range's end is exclusive.
        self.db
            .raw()
            .delete_cf(self.db.cf(CF_RAFT_LOG), index_key(u64::MAX))
            .map_err(StorageError::from)?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        // Record the purge point first: entries at or below it are ignored from then on, so a
        // crash between the two writes leaves only garbage, never a hole.
        self.put_meta(KEY_LAST_PURGED, &log_id, false)?;
        self.db
            .raw()
            .delete_range_cf(
                self.db.cf(CF_RAFT_LOG),
                index_key(0),
                index_key(log_id.index() + 1),
            )
            .map_err(StorageError::from)?;
        Ok(())
    }
}
