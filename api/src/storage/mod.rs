//! The storage the API server needs, and nothing more: reads at a revision, all-or-nothing
//! conditional writes, and watches from a revision. The API server owns this trait; the store
//! (or any etcd v3 endpoint) implements it in [`etcd`].

pub mod etcd;
pub mod memory;

use std::pin::Pin;

use futures::Stream;

/// A stored value with the store revisions that version it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// The revision of the write that produced this value: the object's resourceVersion.
    pub mod_revision: i64,
    pub create_revision: i64,
}

/// One page of a range read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<Stored>,
    /// The store revision the page was read at; later pages must be read at the same one.
    pub revision: i64,
    /// Whether keys remain in the range after this page.
    pub more: bool,
    /// How many keys in the range the page did not include.
    pub remaining: i64,
}

/// What a write expects of its key at the time it applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The key must not exist (create).
    Absent,
    /// The key must exist at exactly this revision (compare-and-swap on resourceVersion).
    Revision(i64),
    /// No expectation: the change rides along with the others.
    Any,
}

/// One change in a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Put(Vec<u8>),
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOp {
    pub key: Vec<u8>,
    pub change: Change,
    pub expect: Expect,
}

/// A key that must hold exactly `value` for a write to apply (a fencing token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// A change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreEvent {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        prev: Option<Vec<u8>>,
        mod_revision: i64,
        create_revision: i64,
    },
    Delete {
        key: Vec<u8>,
        prev: Option<Vec<u8>>,
        mod_revision: i64,
    },
    /// Every change up to this revision has been delivered.
    Progress { revision: i64 },
}

pub type EventStream = Pin<Box<dyn Stream<Item = Result<StoreEvent, StorageError>> + Send>>;

/// Asks a watch for progress: after [`request`](Self::request), the watch sends a `Progress`
/// event naming the store's revision at that time, once every change up to it is delivered.
/// Requests made while one is pending may be answered together.
#[derive(Debug, Clone, Default)]
pub struct ProgressRequests(std::sync::Arc<tokio::sync::Notify>);

impl ProgressRequests {
    pub fn request(&self) {
        self.0.notify_one();
    }

    /// Resolves when progress was requested (immediately if a request is pending).
    pub async fn requested(&self) {
        self.0.notified().await;
    }
}

/// Why a storage call failed. Conflicts and missing keys are outcomes the API server turns into
/// Kubernetes errors; `Unavailable` may succeed if retried; `Internal` will not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    #[error("key exists")]
    AlreadyExists { key: Vec<u8> },
    #[error("key not found")]
    NotFound { key: Vec<u8> },
    #[error("key changed: expected revision {expected}, found {found}")]
    Conflict {
        key: Vec<u8>,
        expected: i64,
        found: i64,
    },
    /// A guard key no longer holds the expected value.
    #[error("guard failed")]
    GuardFailed { key: Vec<u8> },
    #[error("required revision has been compacted (compacted at {compacted})")]
    Compacted { compacted: i64 },
    #[error("required revision is a future revision")]
    FutureRevision,
    #[error("request too large")]
    TooLarge,
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("storage: {0}")]
    Internal(String),
}

/// The store as the API server uses it.
///
/// Contract: every method is safe to call concurrently. A successful `write` is durable and
/// visible to every later `get`/`list` (reads are linearizable unless `revision` names a past
/// one). Watches deliver every change after `from` in revision order, each once, and end with an
/// error rather than skip a change.
pub trait Storage: Send + Sync + 'static {
    /// The current value of `key`.
    fn get(
        &self,
        key: &[u8],
    ) -> impl std::future::Future<Output = Result<Option<Stored>, StorageError>> + Send;

    /// Keys in `[start, end)` in key order, at most `limit` (0 = all), read at `revision`
    /// (0 = latest, linearizable).
    fn list(
        &self,
        start: &[u8],
        end: &[u8],
        limit: i64,
        revision: i64,
    ) -> impl std::future::Future<Output = Result<Page, StorageError>> + Send;

    /// Applies every op, or none if any expectation or guard fails; returns the new revision.
    fn write(
        &self,
        ops: Vec<WriteOp>,
        guards: Vec<Guard>,
    ) -> impl std::future::Future<Output = Result<i64, StorageError>> + Send;

    /// Changes to keys in `[start, end)` after revision `after`, with previous values, and a
    /// `Progress` event for each request made through `progress`.
    fn watch(
        &self,
        start: &[u8],
        end: &[u8],
        after: i64,
        progress: ProgressRequests,
    ) -> impl std::future::Future<Output = Result<EventStream, StorageError>> + Send;

    /// The store's current revision (linearizable).
    fn revision(&self) -> impl std::future::Future<Output = Result<i64, StorageError>> + Send;

    /// Whether the value at `key` is stored other than a write would store it now (encrypted
    /// with a key that is no longer the first): an update that changes nothing must still
    /// write it, which is how keys are rotated.
    fn needs_rewrite(&self, key: &[u8]) -> impl std::future::Future<Output = bool> + Send {
        let _ = key;
        async { false }
    }
}

/// The first key after every key that starts with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff: the range has no end ("\0" means "to the end of the keyspace" in etcd).
    vec![0]
}
