//! Accepting connections when the process runs short of them: a pause after a failed accept
//! that doubles while failures go on (running out of file descriptors fails every accept at
//! once, and retrying at once would spin a core while nothing can be served), a log line at
//! most once per interval saying how many failures it stands for, and the process's open-file
//! limit raised to what it may be at start, as Go programs such as kube-apiserver get.

use std::time::{Duration, Instant};

/// The first pause after a failed accept.
const FIRST_PAUSE: Duration = Duration::from_millis(5);
/// The longest pause: a free descriptor is noticed within this.
const LONGEST_PAUSE: Duration = Duration::from_secs(1);
/// At most one log line per this interval while accepts fail.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// How long to pause after each failed accept, and when to say so.
#[derive(Debug, Default)]
pub struct Backoff {
    pause: Option<Duration>,
    logged_at: Option<Instant>,
    unlogged: u64,
}

/// What to do after a failed accept.
#[derive(Debug, PartialEq, Eq)]
pub struct AfterFailure {
    pub pause: Duration,
    /// Log now, counting this many failures (this one included) since the last line.
    pub log: Option<u64>,
}

impl Backoff {
    pub fn failed(&mut self, now: Instant) -> AfterFailure {
        let pause = self
            .pause
            .map_or(FIRST_PAUSE, |p| (p * 2).min(LONGEST_PAUSE));
        self.pause = Some(pause);
        self.unlogged += 1;
        let due = self
            .logged_at
            .is_none_or(|at| now.duration_since(at) >= LOG_EVERY);
        let log = due.then(|| {
            self.logged_at = Some(now);
            std::mem::take(&mut self.unlogged)
        });
        AfterFailure { pause, log }
    }

    /// An accept succeeded: the next failure starts over with the shortest pause.
    pub fn succeeded(&mut self) {
        self.pause = None;
    }
}

/// Raises the soft limit on open files to the hard limit, returning the limit in force. A
/// server holding one descriptor per connection (and per watch on HTTP/1.1) runs out at the
/// common soft default of 1024 long before the machine does.
pub fn raise_open_file_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(error = %e, "keeping the soft limit on open files");
        }
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_a_second_and_start_over_after_a_success() {
        let mut b = Backoff::default();
        let now = Instant::now();
        let pauses: Vec<u64> = (0..10)
            .map(|_| b.failed(now).pause.as_millis() as u64)
            .collect();
        assert_eq!(pauses, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.succeeded();
        assert_eq!(b.failed(now).pause, FIRST_PAUSE);
    }

    #[test]
    fn failures_are_logged_once_per_interval_with_their_count() {
        let mut b = Backoff::default();
        let start = Instant::now();
        assert_eq!(b.failed(start).log, Some(1));
        let mut logged = Vec::new();
        // Sixty failures over twelve seconds: one every 200 ms.
        for i in 1..=60u32 {
            if let Some(n) = b.failed(start + Duration::from_millis(200) * i).log {
                logged.push((i, n));
            }
        }
        assert_eq!(logged, [(25, 25), (50, 25)]);
    }
}
