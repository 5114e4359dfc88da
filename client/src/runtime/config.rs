//! How a controller runs: how many reconciles at once, and how failing keys back off.

use super::backoff::Backoff;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Reconciles allowed to run at once, over all keys (0 is taken as 1). One key never runs
    /// concurrently with itself whatever this is.
    pub concurrency: usize,
    /// Retry delays for keys whose reconcile keeps failing.
    pub backoff: Backoff,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            concurrency: 16,
            backoff: Backoff::default(),
        }
    }
}
