//! What becomes of an Event before it is written, as client-go's EventCorrelator decides it,
//! with the same defaults:
//!
//! - **Aggregation**: once one source has said 10 different things for the same object, type
//!   and reason within 10 minutes, further ones are folded into one Event whose message is
//!   `(combined from similar events): <latest message>`.
//! - **Counting**: an Event said again (or the aggregate again) within 10 minutes bumps the
//!   count of the one written before instead of adding another.
//! - **Spam filter**: a source may write 25 Events about one object at once, then one every 5
//!   minutes; the rest are dropped. A ReplicaSet creating 3,000 pods writes 25 Events, not
//!   3,000.
//!
//! Pure: the caller passes the time.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// Distinct messages about one object and reason before they are aggregated.
pub const AGGREGATE_MAX_EVENTS: usize = 10;
/// How long similar events stay similar, and repeats stay repeats.
pub const WINDOW: Duration = Duration::from_secs(600);
/// Events one source may write about one object at once.
pub const SPAM_BURST: f64 = 25.0;
/// After the burst, one more Event per object every this long.
pub const SPAM_REFILL: Duration = Duration::from_secs(300);
/// Entries each memory holds; it is cleared when full.
const MAX_REMEMBERED: usize = 4096;
/// The prefix of an aggregated Event's message.
pub const COMBINED_PREFIX: &str = "(combined from similar events): ";

/// The source and object an Event is about, as the spam filter tells them apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Source {
    pub component: String,
    pub host: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub api_version: String,
}

/// One Event a component wants written.
#[derive(Debug, Clone)]
pub struct Draft {
    pub source: Source,
    pub type_: String,
    pub reason: String,
    pub reporting_instance: String,
    pub message: String,
}

/// What to write: the Event's message, which Event it is, and how many times it has been said
/// (1: create it; more: bump the count of the one created first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub message: String,
    /// Which Event this is, for naming: the same for every repeat.
    pub key: u64,
    pub count: i32,
    /// Whether this is the first of its key (so the caller names a new Event).
    pub new: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct AggregateKey {
    source: Source,
    type_: String,
    reason: String,
    reporting_instance: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum EventKey {
    /// One exact Event.
    Exact(AggregateKey, String),
    /// The aggregate of many messages.
    Aggregate(AggregateKey),
}

#[derive(Debug)]
struct Similar {
    messages: HashSet<String>,
    last: Instant,
}

#[derive(Debug)]
struct Logged {
    id: u64,
    count: i32,
    last: Instant,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The correlator's memory.
#[derive(Debug, Default)]
pub struct Correlator {
    similar: HashMap<AggregateKey, Similar>,
    logged: HashMap<EventKey, Logged>,
    buckets: HashMap<Source, Bucket>,
    next_id: u64,
}

fn bounded<K, V>(map: &mut HashMap<K, V>) {
    if map.len() >= MAX_REMEMBERED {
        map.clear();
    }
}

impl Correlator {
    /// What to write for `draft` seen at `now`; None if the spam filter drops it.
    pub fn correlate(&mut self, draft: Draft, now: Instant) -> Option<Decision> {
        let aggregate = AggregateKey {
            source: draft.source.clone(),
            type_: draft.type_,
            reason: draft.reason,
            reporting_instance: draft.reporting_instance,
        };
        // Aggregation, by distinct messages about the same thing.
        bounded(&mut self.similar);
        let similar = self
            .similar
            .entry(aggregate.clone())
            .or_insert_with(|| Similar {
                messages: HashSet::new(),
                last: now,
            });
        if now.duration_since(similar.last) > WINDOW {
            similar.messages.clear();
        }
        similar.messages.insert(draft.message.clone());
        similar.last = now;
        let (key, message) = if similar.messages.len() < AGGREGATE_MAX_EVENTS {
            (
                EventKey::Exact(aggregate, draft.message.clone()),
                draft.message,
            )
        } else {
            // Kept one short of the threshold, so every further message aggregates.
            if let Some(any) = similar.messages.iter().next().cloned() {
                similar.messages.remove(&any);
            }
            (
                EventKey::Aggregate(aggregate),
                format!("{COMBINED_PREFIX}{}", draft.message),
            )
        };
        // Counting repeats.
        bounded(&mut self.logged);
        let logged = match self.logged.get_mut(&key) {
            Some(l) if now.duration_since(l.last) <= WINDOW => {
                l.count += 1;
                l.last = now;
                l
            }
            _ => {
                self.next_id += 1;
                self.logged.insert(
                    key.clone(),
                    Logged {
                        id: self.next_id,
                        count: 1,
                        last: now,
                    },
                );
                self.logged.get_mut(&key)?
            }
        };
        let decision = Decision {
            message,
            key: logged.id,
            count: logged.count,
            new: logged.count == 1,
        };
        // The spam filter: a token bucket per source and object.
        bounded(&mut self.buckets);
        let bucket = self.buckets.entry(draft.source).or_insert(Bucket {
            tokens: SPAM_BURST,
            at: now,
        });
        let refilled = now.duration_since(bucket.at).as_secs_f64() / SPAM_REFILL.as_secs_f64();
        bucket.tokens = (bucket.tokens + refilled).min(SPAM_BURST);
        bucket.at = now;
        if bucket.tokens < 1.0 {
            return None;
        }
        bucket.tokens -= 1.0;
        Some(decision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(object: &str, reason: &str, message: &str) -> Draft {
        Draft {
            source: Source {
                component: "replicaset-controller".into(),
                host: String::new(),
                kind: "ReplicaSet".into(),
                namespace: "default".into(),
                name: object.into(),
                uid: format!("uid-{object}"),
                api_version: "apps/v1".into(),
            },
            type_: "Normal".into(),
            reason: reason.into(),
            reporting_instance: "m0".into(),
            message: message.into(),
        }
    }

    #[test]
    fn a_repeated_event_is_counted_on_the_first_one() {
        let mut c = Correlator::default();
        let t = Instant::now();
        let first = c
            .correlate(draft("rs", "FailedCreate", "quota"), t)
            .expect("kept");
        let second = c
            .correlate(
                draft("rs", "FailedCreate", "quota"),
                t + Duration::from_secs(1),
            )
            .expect("kept");
        assert!(first.new && !second.new);
        assert_eq!((first.count, second.count), (1, 2));
        assert_eq!(first.key, second.key);
        // After the window, it is a new Event.
        let later = c
            .correlate(
                draft("rs", "FailedCreate", "quota"),
                t + WINDOW + Duration::from_secs(2),
            )
            .expect("kept");
        assert!(later.new);
        assert_ne!(later.key, first.key);
    }

    #[test]
    fn the_tenth_distinct_message_for_one_reason_is_combined_and_later_ones_counted_on_it() {
        let mut c = Correlator::default();
        let t = Instant::now();
        let decisions: Vec<Decision> = (0..12)
            .filter_map(|i| {
                c.correlate(
                    draft("rs", "SuccessfulCreate", &format!("Created pod: p{i}")),
                    t,
                )
            })
            .collect();
        for d in &decisions[..9] {
            assert!(d.new && !d.message.starts_with(COMBINED_PREFIX));
        }
        assert_eq!(
            decisions[9].message,
            "(combined from similar events): Created pod: p9"
        );
        assert!(decisions[9].new);
        assert_eq!(decisions[10].key, decisions[9].key);
        assert_eq!((decisions[10].count, decisions[11].count), (2, 3));
        assert_eq!(
            decisions[11].message,
            "(combined from similar events): Created pod: p11"
        );
        // Another reason about the same object is not aggregated with them.
        let other = c.correlate(draft("rs", "SuccessfulDelete", "Deleted pod: p0"), t);
        assert!(other.is_some_and(|d| d.new && !d.message.starts_with(COMBINED_PREFIX)));
    }

    #[test]
    fn a_source_writes_25_events_about_one_object_then_one_every_five_minutes() {
        let mut c = Correlator::default();
        let t = Instant::now();
        let kept = (0..100)
            .filter(|i| {
                c.correlate(
                    draft("rs", "SuccessfulCreate", &format!("Created pod: p{i}")),
                    t,
                )
                .is_some()
            })
            .count();
        assert_eq!(kept, 25);
        // Other objects have their own budget.
        assert!(c
            .correlate(draft("other", "SuccessfulCreate", "Created pod: q"), t)
            .is_some());
        // One token back after five minutes, not more.
        let later = t + SPAM_REFILL;
        assert!(c
            .correlate(draft("rs", "SuccessfulCreate", "Created pod: x"), later)
            .is_some());
        assert!(c
            .correlate(draft("rs", "SuccessfulCreate", "Created pod: y"), later)
            .is_none());
    }
}
