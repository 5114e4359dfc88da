//! On-disk state of a member: one RocksDB holding the raft log, raft metadata and the MVCC state.
//!
//! Sharing one database (and so one write-ahead log) is deliberate: the state machine writes
//! without fsync, and the next fsync of a log append makes them durable, in order, because the
//! WAL is a single sequential file. A crash therefore leaves the state machine at a prefix of what
//! was applied, never ahead of the log, and openraft re-applies the rest from the log.

mod db;
pub mod identity;
mod log_store;
mod rocks_backend;
pub mod snapshot;
mod state_machine;

pub use db::{open, Db, StorageError};
pub use log_store::LogStore;
pub use snapshot::{export as export_snapshot, verify as verify_snapshot};
pub use state_machine::{alarm_members, Alarms, MemberAttributes, StateMachine, StoreState};
