//! Opening the member's RocksDB and naming its column families.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, Options, DB};

/// Column families. `raft_log`: index -> entry; `raft_meta`: vote, committed, last purged;
/// `kv`: revision -> stored change; `lease`: id -> ttl; `meta`: state machine metadata.
pub const CF_RAFT_LOG: &str = "raft_log";
pub const CF_RAFT_META: &str = "raft_meta";
pub const CF_KV: &str = "kv";
pub const CF_LEASE: &str = "lease";
pub const CF_META: &str = "meta";
const ALL_CFS: [&str; 5] = [CF_RAFT_LOG, CF_RAFT_META, CF_KV, CF_LEASE, CF_META];

/// Errors of the on-disk layer. All of them are fatal to the member: an I/O error is never
/// retried as if it were transient, since what reached the disk is then unknown.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("corrupt {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl From<StorageError> for std::io::Error {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Io(io) => io,
            other => std::io::Error::other(other.to_string()),
        }
    }
}

/// The shared database handle.
#[derive(Clone)]
pub struct Db {
    inner: Arc<DB>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("path", &self.inner.path())
            .finish()
    }
}

/// Opens (or creates) the database under `dir`.
pub fn open(dir: &Path) -> Result<Db, StorageError> {
    std::fs::create_dir_all(dir)?;
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    opts.increase_parallelism(2);
    // Paranoid checks make RocksDB refuse to open a database whose files are damaged instead of
    // serving from them.
    opts.set_paranoid_checks(true);
    // The write-ahead log holds fsynced raft entries this member has acknowledged. RocksDB's
    // default recovery silently drops a damaged tail, and with it acknowledged entries: a member
    // that forgets what it acknowledged can lose a committed write. Refuse to open instead; the
    // operator replaces the member (remove it, wipe it, add it back). The price: after a power
    // loss that tore the last (unsynced) record, the member refuses too, as RocksDB cannot tell
    // a torn unsynced record from damage to a synced one.
    opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::AbsoluteConsistency);
    let cfs = ALL_CFS
        .iter()
        .map(|name| ColumnFamilyDescriptor::new(*name, Options::default()));
    let db = DB::open_cf_descriptors(&opts, dir.join("db"), cfs)?;
    Ok(Db {
        inner: Arc::new(db),
    })
}

impl Db {
    pub fn raw(&self) -> &DB {
        &self.inner
    }

    pub fn cf(&self, name: &'static str) -> &ColumnFamily {
        // Every column family is created by `open`; a missing one means the handle was built
        // some other way, which is a programming error.
        #[allow(clippy::expect_used)]
        self.inner
            .cf_handle(name)
            .expect("column family created at open")
    }

    /// Makes every write so far durable (one fsync of the shared write-ahead log).
    pub fn sync_wal(&self) -> Result<(), StorageError> {
        self.inner.flush_wal(true)?;
        Ok(())
    }

    /// Approximate bytes of the state machine (keys, history, leases), without the raft log:
    /// what the space quota limits.
    pub fn state_size_bytes(&self) -> u64 {
        [CF_KV, CF_LEASE, CF_META]
            .iter()
            .map(|name| self.cf_size(name))
            .sum()
    }

    fn cf_size(&self, name: &'static str) -> u64 {
        let cf = self.cf(name);
        let prop = |p: &str| {
            self.inner
                .property_int_value_cf(cf, p)
                .ok()
                .flatten()
                .unwrap_or(0)
        };
        prop("rocksdb.total-sst-files-size") + prop("rocksdb.cur-size-all-mem-tables")
    }

    /// Approximate bytes on disk (SST files plus memtables), as etcd reports its db size.
    pub fn size_bytes(&self) -> u64 {
        let prop = |cf: &ColumnFamily, name: &str| {
            self.inner
                .property_int_value_cf(cf, name)
                .ok()
                .flatten()
                .unwrap_or(0)
        };
        ALL_CFS
            .iter()
            .map(|name| {
                let cf = self.cf(name);
                prop(cf, "rocksdb.total-sst-files-size")
                    + prop(cf, "rocksdb.cur-size-all-mem-tables")
            })
            .sum()
    }
}
