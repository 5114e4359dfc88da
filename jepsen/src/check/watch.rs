//! The watch workload's checker. Writers put and delete keys under one prefix; watchers watch
//! the prefix with prev_kv, reconnecting now and then and resuming from the revision after the
//! last event they saw. After the test the harness reads the prefix's whole history once more
//! (a fresh watch from the first revision: the "truth") and its final state.
//!
//! The truth must replay into the final state with correct MVCC metadata and contain every
//! acknowledged write at its revision; each watcher's events, stream by stream, must be exactly
//! the truth's events from the revision the stream asked for: ordered, unique, without gaps.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::Verdict;

/// A key's metadata and value, as in etcd's `KeyValue`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kv {
    pub value: String,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
}

/// One watch event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    pub revision: i64,
    pub key: String,
    pub delete: bool,
    /// The key after a put (for a delete: empty value, zero metadata).
    pub kv: Kv,
    pub prev: Option<Kv>,
}

/// One watch stream, from its creation until it was canceled or broke.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stream {
    pub start_revision: i64,
    pub events: Vec<WatchEvent>,
}

/// Everything one watcher received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watcher {
    pub id: u64,
    pub streams: Vec<Stream>,
}

/// A write as its client saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Write {
    pub id: u64,
    pub key: String,
    /// `None` for a delete.
    pub value: Option<String>,
    /// The header revision of an acknowledged write.
    pub revision: Option<i64>,
    /// Whether an acknowledged delete removed anything.
    pub deleted: bool,
    /// The write certainly did not happen.
    pub failed: bool,
}

/// The watch test's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct WatchRecord {
    /// The first revision of the test: the prefix was empty before it.
    pub start_revision: i64,
    /// The revision of the final read.
    pub end_revision: i64,
    pub truth: Vec<WatchEvent>,
    pub final_state: BTreeMap<String, Kv>,
    pub writes: Vec<Write>,
    pub watchers: Vec<Watcher>,
}

/// Replays the truth: every event must follow from the state before it.
fn check_truth(r: &WatchRecord, v: &mut Verdict) -> BTreeMap<String, Kv> {
    let mut state: BTreeMap<String, Kv> = BTreeMap::new();
    let mut last_rev = r.start_revision - 1;
    let mut seen = BTreeSet::new();
    for e in &r.truth {
        if e.revision < last_rev || !seen.insert((e.revision, e.key.clone())) {
            v.fail(format!(
                "truth: event for {} at {} out of order or repeated",
                e.key, e.revision
            ));
        }
        last_rev = e.revision;
        let before = state.get(&e.key).cloned();
        if e.prev != before {
            v.fail(format!(
                "truth: prev_kv of {} at {} is {:?}, the key was {:?}",
                e.key, e.revision, e.prev, before
            ));
        }
        if e.delete {
            if before.is_none() {
                v.fail(format!(
                    "truth: delete of absent {} at {}",
                    e.key, e.revision
                ));
            }
            let tombstone = Kv {
                value: String::new(),
                create_revision: 0,
                mod_revision: e.revision,
                version: 0,
            };
            if e.kv != tombstone {
                v.fail(format!(
                    "truth: delete of {} at {} carries {:?}, expected {:?}",
                    e.key, e.revision, e.kv, tombstone
                ));
            }
            state.remove(&e.key);
            continue;
        }
        let expect = match &before {
            None => Kv {
                value: e.kv.value.clone(),
                create_revision: e.revision,
                mod_revision: e.revision,
                version: 1,
            },
            Some(b) => Kv {
                value: e.kv.value.clone(),
                create_revision: b.create_revision,
                mod_revision: e.revision,
                version: b.version + 1,
            },
        };
        if e.kv != expect {
            v.fail(format!(
                "truth: put of {} at {} carries {:?}, expected {:?} ({})",
                e.key,
                e.revision,
                e.kv,
                expect,
                if before.is_none() {
                    "a create"
                } else {
                    "a modification"
                }
            ));
        }
        state.insert(e.key.clone(), e.kv.clone());
    }
    state
}

fn check_writes(r: &WatchRecord, v: &mut Verdict) {
    let at: BTreeMap<(i64, &str), &WatchEvent> = r
        .truth
        .iter()
        .map(|e| ((e.revision, e.key.as_str()), e))
        .collect();
    let puts: BTreeMap<&str, &Write> = r
        .writes
        .iter()
        .filter_map(|w| Some((w.value.as_deref()?, w)))
        .collect();
    for w in &r.writes {
        let Some(rev) = w.revision else { continue };
        if w.value.is_none() && !w.deleted {
            continue;
        }
        match at.get(&(rev, w.key.as_str())) {
            Some(e)
                if e.delete == w.value.is_none()
                    && (e.delete || Some(&e.kv.value) == w.value.as_ref()) => {}
            other => {
                v.fail(format!(
                    "acknowledged write {} of {} = {:?} at {rev} is not in the history (found {:?})",
                    w.id, w.key, w.value, other
                ));
                v.witness.push(w.id);
            }
        }
    }
    for e in r.truth.iter().filter(|e| !e.delete) {
        match puts.get(e.kv.value.as_str()) {
            None => v.fail(format!(
                "value {:?} of {} at {} was never written",
                e.kv.value, e.key, e.revision
            )),
            Some(w) if w.failed => v.fail(format!(
                "value {:?} at {} is there although its write failed",
                e.kv.value, e.revision
            )),
            Some(_) => {}
        }
    }
}

fn check_watcher(r: &WatchRecord, w: &Watcher, v: &mut Verdict) {
    let mut last_seen = r.start_revision - 1;
    let mut got = 0u64;
    for (s, stream) in w.streams.iter().enumerate() {
        let expected: Vec<&WatchEvent> = r
            .truth
            .iter()
            .filter(|e| e.revision >= stream.start_revision)
            .collect();
        if stream.start_revision > last_seen + 1 {
            v.fail(format!(
                "watcher {} stream {s} resumed from {} after seeing only up to {last_seen}: events skipped",
                w.id, stream.start_revision
            ));
        }
        for (i, e) in stream.events.iter().enumerate() {
            got += 1;
            if e.revision <= last_seen && stream.start_revision > last_seen {
                v.fail(format!(
                    "watcher {} stream {s}: event at {} after {last_seen} (reordered or duplicate)",
                    w.id, e.revision
                ));
                return;
            }
            match expected.get(i) {
                Some(x) if *x == e => {}
                Some(x) => {
                    let kind = if e.revision < x.revision {
                        "reordered or duplicate"
                    } else if e.revision > x.revision {
                        "gap"
                    } else {
                        "wrong contents"
                    };
                    v.fail(format!(
                        "watcher {} stream {s} event {i}: {kind}: got {} {} at {}, expected {} {} at {}",
                        w.id, e.key, if e.delete { "delete" } else { "put" }, e.revision,
                        x.key, if x.delete { "delete" } else { "put" }, x.revision
                    ));
                    return;
                }
                None => {
                    v.fail(format!(
                        "watcher {} stream {s}: event at {} beyond the history",
                        w.id, e.revision
                    ));
                    return;
                }
            }
            last_seen = last_seen.max(e.revision);
        }
    }
    v.stats.insert(format!("watcher{}_events", w.id), got);
    if let Some(end) = r.truth.last().map(|e| e.revision) {
        if last_seen < end {
            v.fail(format!(
                "watcher {} saw events up to {last_seen} only; the history goes to {end}",
                w.id
            ));
        }
    }
}

pub fn check_record(r: &WatchRecord) -> Verdict {
    let mut v = Verdict::new("watch");
    v.stats.insert("events".into(), r.truth.len() as u64);
    v.stats.insert("writes".into(), r.writes.len() as u64);
    v.stats.insert("watchers".into(), r.watchers.len() as u64);
    let replayed = check_truth(r, &mut v);
    if replayed != r.final_state {
        let diff: Vec<&String> = replayed
            .keys()
            .chain(r.final_state.keys())
            .filter(|k| replayed.get(*k) != r.final_state.get(*k))
            .collect();
        v.fail(format!(
            "the history replays to a state other than the final read on keys {diff:?}"
        ));
    }
    check_writes(r, &mut v);
    for w in &r.watchers {
        check_watcher(r, w, &mut v);
    }
    v
}

/// Fills the record's writes from the history (`put` with the value, `delete`; ok values carry
/// `revision` and `deleted`) and checks it.
pub fn check(events: &[crate::history::Event], mut record: WatchRecord) -> Verdict {
    use crate::history::{pair, Kind};
    record.writes = pair(events)
        .iter()
        .filter(|op| op.invoke.f == "put" || op.invoke.f == "delete")
        .map(|op| {
            let ok = op.complete.filter(|c| c.kind == Kind::Ok);
            Write {
                id: op.invoke.index,
                key: op.invoke.key.clone().unwrap_or_default(),
                value: op.invoke.value.as_str().map(str::to_string),
                revision: ok.and_then(|c| c.value["revision"].as_i64()),
                deleted: ok.is_some_and(|c| c.value["deleted"].as_i64().unwrap_or(0) > 0),
                failed: op.kind() == Kind::Fail,
            }
        })
        .collect();
    check_record(&record)
}

#[cfg(test)]
mod tests {
    use super::super::Validity;
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};

    /// Sequential puts/deletes on a few keys, the truth they produce, and watchers that cut the
    /// truth into streams at random points, each resuming right after its last event.
    fn generate(seed: u64, n: usize, watchers: usize) -> WatchRecord {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let start = 5;
        let mut rev = start - 1;
        let mut state: BTreeMap<String, Kv> = BTreeMap::new();
        let mut r = WatchRecord {
            start_revision: start,
            ..Default::default()
        };
        for i in 0..n {
            let key = format!("k{}", rng.random_range(0..4));
            let delete = rng.random_bool(0.2);
            let failed = rng.random_bool(0.05);
            if delete {
                let exists = state.contains_key(&key);
                if exists && !failed {
                    rev += 1;
                    let prev = state.remove(&key);
                    r.truth.push(WatchEvent {
                        revision: rev,
                        key: key.clone(),
                        delete: true,
                        kv: Kv {
                            value: String::new(),
                            create_revision: 0,
                            mod_revision: rev,
                            version: 0,
                        },
                        prev,
                    });
                }
                r.writes.push(Write {
                    id: i as u64,
                    key,
                    value: None,
                    revision: (!failed).then_some(rev),
                    deleted: exists,
                    failed,
                });
                continue;
            }
            let value = format!("v{i}");
            if !failed {
                rev += 1;
                let prev = state.get(&key).cloned();
                let kv = match &prev {
                    None => Kv {
                        value: value.clone(),
                        create_revision: rev,
                        mod_revision: rev,
                        version: 1,
                    },
                    Some(p) => Kv {
                        value: value.clone(),
                        create_revision: p.create_revision,
                        mod_revision: rev,
                        version: p.version + 1,
                    },
                };
                state.insert(key.clone(), kv.clone());
                r.truth.push(WatchEvent {
                    revision: rev,
                    key: key.clone(),
                    delete: false,
                    kv,
                    prev,
                });
            }
            let unknown = !failed && rng.random_bool(0.1);
            r.writes.push(Write {
                id: i as u64,
                key,
                value: Some(value),
                revision: (!failed && !unknown).then_some(rev),
                deleted: false,
                failed,
            });
        }
        r.end_revision = rev;
        r.final_state = state;
        for id in 0..watchers as u64 {
            let mut streams = Vec::new();
            let mut from = start;
            let mut rest: Vec<WatchEvent> = r.truth.clone();
            loop {
                let take = if rest.is_empty() {
                    0
                } else {
                    rng.random_range(0..=rest.len())
                };
                let events: Vec<WatchEvent> = rest.drain(..take).collect();
                let next = events.last().map_or(from, |e| e.revision + 1);
                streams.push(Stream {
                    start_revision: from,
                    events,
                });
                from = next;
                if rest.is_empty() {
                    break;
                }
            }
            r.watchers.push(Watcher { id, streams });
        }
        r
    }

    fn watcher_events(r: &mut WatchRecord) -> Option<(&mut Stream, usize)> {
        r.watchers
            .iter_mut()
            .flat_map(|w| w.streams.iter_mut())
            .find(|s| s.events.len() >= 2)
            .map(|s| {
                let n = s.events.len();
                (s, n)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn sequential_histories_are_accepted(seed in any::<u64>(), n in 0usize..200, watchers in 1usize..4) {
            let v = check_record(&generate(seed, n, watchers));
            prop_assert_eq!(v.valid, Validity::Valid, "{:?}", v.problems);
        }

        #[test]
        fn a_duplicated_event_is_rejected(seed in any::<u64>(), n in 2usize..200, at in any::<usize>()) {
            let mut r = generate(seed, n, 2);
            let Some((s, len)) = watcher_events(&mut r) else { return Ok(()) };
            let i = at % len;
            let e = s.events[i].clone();
            s.events.insert(i, e);
            prop_assert_eq!(check_record(&r).valid, Validity::Invalid);
        }

        #[test]
        fn reordered_events_are_rejected(seed in any::<u64>(), n in 2usize..200, at in any::<usize>()) {
            let mut r = generate(seed, n, 2);
            let Some((s, len)) = watcher_events(&mut r) else { return Ok(()) };
            let i = at % (len - 1);
            s.events.swap(i, i + 1);
            prop_assert_eq!(check_record(&r).valid, Validity::Invalid);
        }

        #[test]
        fn a_missed_event_is_rejected(seed in any::<u64>(), n in 2usize..200, at in any::<usize>()) {
            let mut r = generate(seed, n, 2);
            let Some((s, len)) = watcher_events(&mut r) else { return Ok(()) };
            s.events.remove(at % len);
            prop_assert_eq!(check_record(&r).valid, Validity::Invalid);
        }

        #[test]
        fn a_resume_that_skips_is_rejected(seed in any::<u64>(), n in 2usize..200) {
            let mut r = generate(seed, n, 1);
            let w = &mut r.watchers[0];
            prop_assume!(w.streams.len() >= 2 && !w.streams[1].events.is_empty());
            let skipped = w.streams[1].events.remove(0);
            w.streams[1].start_revision = skipped.revision + 1;
            prop_assert_eq!(check_record(&r).valid, Validity::Invalid);
        }

        #[test]
        fn wrong_prev_kv_or_create_flags_are_rejected(seed in any::<u64>(), n in 1usize..200, at in any::<usize>(), which in 0u8..3) {
            let mut r = generate(seed, n, 1);
            prop_assume!(!r.truth.is_empty());
            let i = at % r.truth.len();
            let e = &mut r.truth[i];
            match which {
                0 => e.prev = match &e.prev { Some(_) => None, None => Some(Kv { value: "ghost".into(), create_revision: 1, mod_revision: 1, version: 1 }) },
                1 => e.kv.version += 1,
                _ => e.kv.create_revision += 1,
            }
            let e = e.clone();
            for w in &mut r.watchers { for s in &mut w.streams { for x in &mut s.events { if x.revision == e.revision { *x = e.clone(); } } } }
            prop_assert_eq!(check_record(&r).valid, Validity::Invalid);
        }

        #[test]
        fn a_lost_acknowledged_write_is_rejected(seed in any::<u64>(), n in 1usize..200) {
            let mut r = generate(seed, n, 1);
            let Some(w) = r.writes.iter().find(|w| w.revision.is_some() && w.value.is_some()).cloned() else { return Ok(()) };
            r.truth.retain(|e| e.kv.value.as_str() != w.value.as_deref().unwrap_or(""));
            prop_assert_eq!(check_record(&r).valid, Validity::Invalid);
        }
    }
}
