//! What a reconcile asks for next: to look at the object again after a while, or only when
//! something changes.

use std::time::Duration;

/// The outcome of a successful reconcile (or the error policy's answer to a failed one).
///
/// Requeueing is how a controller re-checks state that can drift without an event it
/// watches (an external system, a clock); a key requeued while it also has a pending event is
/// reconciled once, at the earlier of the two times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    requeue_after: Option<Duration>,
}

impl Action {
    /// Reconcile this object again `after` from now, even if nothing changes.
    pub fn requeue(after: Duration) -> Self {
        Self {
            requeue_after: Some(after),
        }
    }

    /// Reconcile this object again only when an event for it (or for something mapped to it)
    /// arrives.
    pub fn await_change() -> Self {
        Self {
            requeue_after: None,
        }
    }

    /// The requested delay before the next reconcile, if any.
    pub fn requeue_after(&self) -> Option<Duration> {
        self.requeue_after
    }
}
