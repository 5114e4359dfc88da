//! Watches: applied events fan out to watchers without ever blocking apply.
//!
//! Apply publishes each request's events on a bounded broadcast channel and moves on. A watch
//! session that falls behind loses its place in that channel and catches up from the revisions
//! stored on disk instead, so a slow watcher costs only its own reads, never the writers' time.

pub mod matcher;
pub mod session;

/// The events one applied request produced, all at one main revision.
#[derive(Debug, Clone, PartialEq)]
pub struct EventBatch {
    pub revision: i64,
    pub events: Vec<keel_proto::mvccpb::Event>,
}
