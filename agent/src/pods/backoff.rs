//! kubelet's back-off for containers that keep failing and images that cannot be pulled: the
//! first retry is immediate, then 10 s, doubling to 5 minutes; a key that fails again 10
//! minutes after its delay was last raised (a container that ran that long) starts over.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// The first delay.
pub const INITIAL: Duration = Duration::from_secs(10);
/// The longest delay.
pub const MAX: Duration = Duration::from_secs(300);
/// A failure this long after the last raise starts the delays over.
pub const RESET_AFTER: Duration = Duration::from_secs(600);

/// The delays of many keys (pod uid and container name, or pod uid and image), shared by the
/// pod workers. Times are Unix nanoseconds as the runtime reports them.
#[derive(Debug, Default)]
pub struct Backoffs {
    entries: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    delay: Duration,
    /// When the delay was last raised.
    at: i64,
}

/// Whether a retry of a key may go ahead now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead (and the next delay has been raised).
    Go,
    /// Wait: `remaining` is left of `delay`.
    Wait {
        delay: Duration,
        remaining: Duration,
    },
}

impl Backoffs {
    /// Whether the key may be retried at `now` after a failure at `failed_at`: kubelet waits
    /// until `failed_at + delay`. Going ahead raises the delay for the next time.
    pub fn check(&self, key: &str, failed_at: i64, now: i64) -> Verdict {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        match entries.get(key).copied() {
            Some(entry) if failed_at.saturating_sub(entry.at) < nanos(RESET_AFTER) => {
                let due = failed_at.saturating_add(nanos(entry.delay));
                if now < due {
                    return Verdict::Wait {
                        delay: entry.delay,
                        remaining: Duration::from_nanos(
                            u64::try_from(due - now).unwrap_or_default(),
                        ),
                    };
                }
                let delay = (entry.delay * 2).min(MAX);
                entries.insert(key.to_owned(), Entry { delay, at: now });
                Verdict::Go
            }
            // Never failed, or last raised long enough ago that this is a new story.
            _ => {
                entries.insert(
                    key.to_owned(),
                    Entry {
                        delay: INITIAL,
                        at: now,
                    },
                );
                Verdict::Go
            }
        }
    }

    /// Forgets the key: its next failure is retried at once.
    pub fn reset(&self, key: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.remove(key);
    }

    /// Forgets every key of pod `uid` (keys start with the uid).
    pub fn forget_pod(&self, uid: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.retain(|key, _| !key.starts_with(uid));
    }
}

/// Now, in Unix nanoseconds, the unit back-offs and the runtime's times are in.
pub fn now_nanos() -> i64 {
    keel_types::k8s_openapi::chrono::Utc::now()
        .timestamp_nanos_opt()
        .unwrap_or_default()
}

/// The key of container `name` of pod `uid`.
pub fn container_key(uid: &str, name: &str) -> String {
    format!("{uid}/{name}")
}

/// The key of image `image` for pod `uid`.
pub fn image_key(uid: &str, image: &str) -> String {
    format!("{uid}/image/{image}")
}

fn nanos(duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn the_first_retry_goes_at_once_and_later_ones_wait_ten_seconds_doubling() {
        let backoffs = Backoffs::default();
        assert_eq!(backoffs.check("k", 0, S), Verdict::Go);
        // Failed again at 2 s: 10 s from then.
        assert!(matches!(
            backoffs.check("k", 2 * S, 3 * S),
            Verdict::Wait { delay, .. } if delay == INITIAL
        ));
        assert_eq!(backoffs.check("k", 2 * S, 12 * S), Verdict::Go);
        // Now 20 s.
        assert!(matches!(
            backoffs.check("k", 13 * S, 30 * S),
            Verdict::Wait { delay, .. } if delay == Duration::from_secs(20)
        ));
        assert_eq!(backoffs.check("k", 13 * S, 33 * S), Verdict::Go);
    }

    #[test]
    fn the_delay_stops_growing_at_five_minutes() {
        let backoffs = Backoffs::default();
        let mut now = 0;
        for _ in 0..12 {
            now += 400 * S;
            assert_eq!(backoffs.check("k", now - 350 * S, now), Verdict::Go);
        }
        assert!(matches!(
            backoffs.check("k", now + S, now + 2 * S),
            Verdict::Wait { delay, .. } if delay == MAX
        ));
    }

    #[test]
    fn reset_and_forgotten_pods_start_over() {
        let backoffs = Backoffs::default();
        assert_eq!(backoffs.check("uid/c", 0, 0), Verdict::Go);
        backoffs.forget_pod("uid");
        assert_eq!(backoffs.check("uid/c", 0, S), Verdict::Go);
        backoffs.reset("uid/c");
        assert_eq!(backoffs.check("uid/c", S, S), Verdict::Go);
    }
}
