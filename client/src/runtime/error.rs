//! What a controller reports when a reconcile does not succeed.
//!
//! Separate from the crate's [`crate::Error`] because it carries the reconciler's own error
//! type, which the crate cannot name.

use crate::error::Error;
use crate::object_key::ObjectKey;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError<E> {
    /// The reconcile returned an error. The error policy has been consulted and the key
    /// requeued (or not) as it said, stretched by the key's backoff.
    #[error("reconciling {key}: {error}")]
    Failed { key: ObjectKey, error: E },
    /// The reconcile panicked. The key is retried after its backoff.
    #[error("reconciling {key} panicked: {message}")]
    Panicked { key: ObjectKey, message: String },
    /// The reconcile was stopped before it finished (its runtime is shutting down). The key
    /// is retried after its backoff if the controller still runs.
    #[error("reconciling {key} was cancelled")]
    Cancelled { key: ObjectKey },
    /// A watch feeding the controller reported an error. Watches recover by themselves; this
    /// is for logging.
    #[error("watch: {0}")]
    Watch(Error),
}

impl<E> ReconcileError<E> {
    /// The key whose reconcile failed, if this is about one.
    pub fn key(&self) -> Option<&ObjectKey> {
        match self {
            Self::Failed { key, .. } | Self::Panicked { key, .. } | Self::Cancelled { key } => {
                Some(key)
            }
            Self::Watch(_) => None,
        }
    }
}
