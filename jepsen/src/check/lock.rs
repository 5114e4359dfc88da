//! The lease-lock workload's checker. A holder acquires the lock key under a lease and gets the
//! key's revision as its fencing token; it writes the data key only in a transaction that
//! compares the lock's revision with its token. So the data key's versions, in revision order,
//! carry non-decreasing tokens: once a newer holder wrote, no older holder may write again.

use std::collections::{BTreeMap, BTreeSet};

use super::Verdict;
use crate::history::{pair, Event, Kind};

/// A fenced write as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub id: u64,
    pub token: i64,
    pub value: String,
    /// Revision of an acknowledged write.
    pub revision: Option<i64>,
    /// The fencing compare failed: the write did not happen.
    pub failed: bool,
}

/// What the lock test recorded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LockHistory {
    /// (invoke index, token) of every acknowledged acquisition.
    pub acquired: Vec<(u64, i64)>,
    pub writes: Vec<Write>,
    /// Every version of the data key: (mod revision, value), read after the test.
    pub data: Option<Vec<(i64, String)>>,
}

/// The token a data value was written under (`t<token>-...`).
pub fn token_of(value: &str) -> Option<i64> {
    value.strip_prefix('t')?.split('-').next()?.parse().ok()
}

pub fn check_lock(h: &LockHistory) -> Verdict {
    let mut v = Verdict::new("lock");
    v.stats.insert("acquired".into(), h.acquired.len() as u64);
    v.stats.insert(
        "writes_ok".into(),
        h.writes.iter().filter(|w| w.revision.is_some()).count() as u64,
    );
    let mut tokens = BTreeMap::new();
    for (id, t) in &h.acquired {
        if let Some(other) = tokens.insert(*t, *id) {
            v.fail(format!("token {t} granted to two acquisitions"));
            v.witness.extend([other, *id]);
        }
    }
    let Some(data) = &h.data else {
        v.undecided("the data key's history was not read".into());
        return v;
    };
    let attempted: BTreeMap<&str, &Write> =
        h.writes.iter().map(|w| (w.value.as_str(), w)).collect();
    let mut last: Option<(i64, i64)> = None;
    for (rev, value) in data {
        let Some(token) = token_of(value) else {
            v.fail(format!("data value {value:?} at {rev} carries no token"));
            continue;
        };
        match attempted.get(value.as_str()) {
            None => v.fail(format!("data value {value:?} at {rev} was never written")),
            Some(w) if w.failed => {
                v.fail(format!(
                    "data value {value:?} at {rev} is there although its fencing check failed"
                ));
                v.witness.push(w.id);
            }
            Some(_) => {}
        }
        if !tokens.contains_key(&token) {
            v.fail(format!(
                "data value {value:?} at {rev} carries token {token} nobody acquired"
            ));
        }
        if let Some((prev_rev, prev_token)) = last {
            if *rev <= prev_rev {
                v.fail(format!(
                    "data revisions out of order: {prev_rev} then {rev}"
                ));
            }
            if token < prev_token {
                v.fail(format!(
                    "holder with token {token} wrote at {rev} after holder with token {prev_token} wrote at {prev_rev}: two holders"
                ));
                if let Some(w) = attempted.get(value.as_str()) {
                    v.witness.push(w.id);
                }
            }
        }
        last = Some((*rev, token));
    }
    let in_data: BTreeSet<(i64, &str)> = data.iter().map(|(r, s)| (*r, s.as_str())).collect();
    for w in &h.writes {
        if let Some(rev) = w.revision {
            if !in_data.contains(&(rev, w.value.as_str())) {
                v.fail(format!(
                    "acknowledged write {:?} at revision {rev} is not in the data key's history",
                    w.value
                ));
                v.witness.push(w.id);
            }
        }
    }
    v
}

/// Events: `acquire` (ok value `{"token": t}`), `write` (invoke value `{"token": t, "value":
/// s}`, ok value `{"revision": r}`, fail when the fence held it off) and one `data-history`
/// (ok value `[[revision, value], ...]`).
pub fn from_history(events: &[Event]) -> LockHistory {
    let mut h = LockHistory::default();
    for op in pair(events) {
        let c = op.complete;
        match op.invoke.f.as_str() {
            "acquire" if op.kind() == Kind::Ok => {
                if let Some(t) = c.and_then(|c| c.value["token"].as_i64()) {
                    h.acquired.push((op.invoke.index, t));
                }
            }
            "write" => h.writes.push(Write {
                id: op.invoke.index,
                token: op.invoke.value["token"].as_i64().unwrap_or(0),
                value: op.invoke.value["value"].as_str().unwrap_or("").to_string(),
                revision: c
                    .filter(|c| c.kind == Kind::Ok)
                    .and_then(|c| c.value["revision"].as_i64()),
                failed: op.kind() == Kind::Fail,
            }),
            "data-history" if op.kind() == Kind::Ok => {
                h.data = c.and_then(|c| c.value.as_array()).map(|a| {
                    a.iter()
                        .filter_map(|p| {
                            Some((p.get(0)?.as_i64()?, p.get(1)?.as_str()?.to_string()))
                        })
                        .collect()
                });
            }
            _ => {}
        }
    }
    h
}

pub fn check(events: &[Event]) -> Verdict {
    check_lock(&from_history(events))
}

#[cfg(test)]
mod tests {
    use super::super::Validity;
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};

    /// Holders take turns; each writes a few times; some late writes of old holders fail.
    fn generate(seed: u64, holders: usize) -> LockHistory {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut h = LockHistory {
            data: Some(Vec::new()),
            ..Default::default()
        };
        let mut rev = 10i64;
        let mut id = 0u64;
        for holder in 0..holders {
            rev += 1;
            let token = rev;
            h.acquired.push((id, token));
            id += 1;
            for n in 0..rng.random_range(0..5) {
                rev += 1;
                let value = format!("t{token}-h{holder}-n{n}");
                let ok = rng.random_bool(0.8);
                h.writes.push(Write {
                    id,
                    token,
                    value: value.clone(),
                    revision: ok.then_some(rev),
                    failed: false,
                });
                id += 1;
                if let Some(d) = h.data.as_mut() {
                    d.push((rev, value));
                }
            }
            if holder > 0 && rng.random_bool(0.5) {
                let old = h.acquired[holder - 1].1;
                h.writes.push(Write {
                    id,
                    token: old,
                    value: format!("t{old}-late-{holder}"),
                    revision: None,
                    failed: true,
                });
                id += 1;
            }
        }
        h
    }

    proptest! {
        #[test]
        fn fenced_histories_are_accepted(seed in any::<u64>(), holders in 1usize..20) {
            let v = check_lock(&generate(seed, holders));
            prop_assert_eq!(v.valid, Validity::Valid, "{:?}", v.problems);
        }

        #[test]
        fn an_old_holder_writing_after_a_new_one_is_rejected(seed in any::<u64>(), holders in 2usize..20) {
            let mut h = generate(seed, holders);
            let old = h.acquired[0].1;
            let value = format!("t{old}-zombie");
            let rev = h.data.as_ref().and_then(|d| d.last()).map_or(100, |(r, _)| r + 1);
            h.writes.push(Write { id: 999, token: old, value: value.clone(), revision: Some(rev), failed: false });
            if let Some(d) = h.data.as_mut() { d.push((rev, value)); }
            // Only a violation if a newer holder wrote before.
            let newer_wrote = h.data.as_ref().is_some_and(|d| d.iter().any(|(_, s)| token_of(s).is_some_and(|t| t > old)));
            prop_assume!(newer_wrote);
            prop_assert_eq!(check_lock(&h).valid, Validity::Invalid);
        }

        #[test]
        fn a_lost_acknowledged_write_is_rejected(seed in any::<u64>(), holders in 1usize..20) {
            let mut h = generate(seed, holders);
            let Some(w) = h.writes.iter().find(|w| w.revision.is_some()).cloned() else { return Ok(()) };
            if let Some(d) = h.data.as_mut() { d.retain(|(_, s)| *s != w.value); }
            prop_assert_eq!(check_lock(&h).valid, Validity::Invalid);
        }
    }
}
