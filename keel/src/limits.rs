//! The REST endpoint's limits under load, as flags: the seats of each fairness class
//! (kube-apiserver's `--max-requests-inflight` and `--max-mutating-requests-inflight`, and
//! keel's own for watches setting up and large reads), whether fairness is on at all, and how
//! many connections the endpoint holds.

use std::sync::Arc;

use clap::Args;
use keel_api::fairness::{Fairness, Limits};

#[derive(Args, Debug, Clone)]
pub struct LimitArgs {
    /// Queue requests by class and serve each class's users in turn, answering 429 with
    /// Retry-After when a queue is full, in the spirit of kube-apiserver's API Priority and
    /// Fairness (its flag of the same name).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    enable_priority_and_fairness: bool,
    /// Read-only requests served at once (gets, small lists, discovery).
    #[arg(long, default_value_t = 400)]
    max_requests_inflight: usize,
    /// Creates, updates, patches and deletes served at once.
    #[arg(long, default_value_t = 200)]
    max_mutating_requests_inflight: usize,
    /// Watches sending their initial events at once.
    #[arg(long, default_value_t = 200)]
    max_watch_initializations_inflight: usize,
    /// Lists and watch set-ups of 1 MiB or more served at once [default: half the number of
    /// cores, at least 1]: each keeps a core busy while it decodes and encodes.
    #[arg(long)]
    max_large_reads_inflight: Option<usize>,
    /// Connections the REST endpoint holds at once; past it, new ones wait in the listen
    /// backlog until one closes [default: three quarters of the open-file limit].
    #[arg(long)]
    max_connections: Option<usize>,
}

impl LimitArgs {
    /// The connection limit, given the process's open-file limit: a quarter of the
    /// descriptors stays for the store, its files and the peers.
    pub fn max_connections(&self, open_files: u64) -> usize {
        self.max_connections.unwrap_or_else(|| {
            usize::try_from(open_files / 4 * 3)
                .unwrap_or(usize::MAX)
                .max(64)
        })
    }

    /// The queues these flags ask for; None when fairness is off.
    pub fn fairness(&self) -> anyhow::Result<Option<Arc<Fairness>>> {
        if !self.enable_priority_and_fairness {
            return Ok(None);
        }
        let defaults = Limits::default();
        let fairness = Fairness::new(Limits {
            read_only: self.max_requests_inflight,
            mutating: self.max_mutating_requests_inflight,
            watch: self.max_watch_initializations_inflight,
            large_read: self.max_large_reads_inflight.unwrap_or(defaults.large_read),
            ..defaults
        })?;
        Ok(Some(Arc::new(fairness)))
    }
}
