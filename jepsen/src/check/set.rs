//! The set workload's checker: every acknowledged add is in the final read, no element is there
//! twice, nothing is there that was never added, and no read misses an add acknowledged before
//! the read began.

use std::collections::{BTreeMap, BTreeSet};

use super::Verdict;
use crate::history::{pair, Event, Kind};

/// An add of one element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Add {
    pub id: u64,
    pub element: u64,
    pub call: u64,
    /// Return time of an acknowledged add; `None` when the outcome is unknown.
    pub ok_at: Option<u64>,
    /// The add certainly did not happen.
    pub failed: bool,
}

/// A read of the whole set, with every element as often as it was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub id: u64,
    pub call: u64,
    pub elements: Vec<u64>,
}

/// Checks adds against reads; the last read is the final read, taken after the faults healed.
pub fn check_ops(adds: &[Add], reads: &[Read]) -> Verdict {
    let mut v = Verdict::new("set");
    v.stats.insert("adds".into(), adds.len() as u64);
    v.stats.insert(
        "acknowledged".into(),
        adds.iter().filter(|a| a.ok_at.is_some()).count() as u64,
    );
    v.stats.insert("reads".into(), reads.len() as u64);
    let Some(last) = reads.last() else {
        v.undecided("no final read".into());
        return v;
    };
    let by_element: BTreeMap<u64, &Add> = adds.iter().map(|a| (a.element, a)).collect();
    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    for e in &last.elements {
        *counts.entry(*e).or_default() += 1;
    }
    for (e, n) in &counts {
        match by_element.get(e) {
            None => v.fail(format!(
                "element {e} is in the final read but was never added"
            )),
            Some(a) if a.failed => {
                v.fail(format!("element {e} is present although its add failed"))
            }
            Some(_) => {}
        }
        if *n > 1 {
            v.fail(format!("element {e} is in the final read {n} times"));
            v.witness.extend(by_element.get(e).map(|a| a.id));
        }
    }
    let lost: Vec<&Add> = adds
        .iter()
        .filter(|a| a.ok_at.is_some() && !counts.contains_key(&a.element))
        .collect();
    if !lost.is_empty() {
        v.fail(format!(
            "{} acknowledged adds are missing from the final read: {:?}",
            lost.len(),
            lost.iter().take(20).map(|a| a.element).collect::<Vec<_>>()
        ));
        v.witness.extend(lost.iter().take(5).map(|a| a.id));
        v.witness.push(last.id);
    }
    v.stats.insert("lost".into(), lost.len() as u64);
    v.stats.insert(
        "unknown_present".into(),
        adds.iter()
            .filter(|a| a.ok_at.is_none() && !a.failed && counts.contains_key(&a.element))
            .count() as u64,
    );
    // Every read must contain every add acknowledged before the read was invoked.
    for r in &reads[..reads.len() - 1] {
        let seen: BTreeSet<u64> = r.elements.iter().copied().collect();
        if let Some(a) = adds
            .iter()
            .find(|a| a.ok_at.is_some_and(|t| t < r.call) && !seen.contains(&a.element))
        {
            v.fail(format!(
                "read {} misses element {} acknowledged before it began (stale read)",
                r.id, a.element
            ));
            if v.witness.is_empty() {
                v.witness = vec![a.id, r.id];
            }
        }
    }
    v
}

/// Reads adds (`f` add, value the element) and reads (`f` read, ok value the list of elements).
pub fn from_history(events: &[Event]) -> (Vec<Add>, Vec<Read>) {
    let (mut adds, mut reads) = (Vec::new(), Vec::new());
    for op in pair(events) {
        match op.invoke.f.as_str() {
            "add" => {
                let Some(element) = op.invoke.value.as_u64() else {
                    continue;
                };
                adds.push(Add {
                    id: op.invoke.index,
                    element,
                    call: op.invoke.time,
                    ok_at: op.ret().filter(|_| op.kind() == Kind::Ok),
                    failed: op.kind() == Kind::Fail,
                });
            }
            "read" if op.kind() == Kind::Ok => {
                let Some(c) = op.complete else { continue };
                let elements = c
                    .value
                    .as_array()
                    .map(|a| a.iter().filter_map(|x| x.as_u64()).collect())
                    .unwrap_or_default();
                reads.push(Read {
                    id: op.invoke.index,
                    call: op.invoke.time,
                    elements,
                });
            }
            _ => {}
        }
    }
    (adds, reads)
}

pub fn check(events: &[Event]) -> Verdict {
    let (adds, reads) = from_history(events);
    check_ops(&adds, &reads)
}

#[cfg(test)]
mod tests {
    use super::super::Validity;
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};

    /// Adds with random overlap and outcomes; reads taken from the sequential set at their
    /// point, the last read after everything.
    fn generate(seed: u64, n: usize) -> (Vec<Add>, Vec<Read>) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut set: Vec<u64> = Vec::new();
        let (mut adds, mut reads) = (Vec::new(), Vec::new());
        for i in 0..n {
            let point = 1000 + 100 * i as u64;
            if rng.random_bool(0.1) {
                reads.push(Read {
                    id: i as u64,
                    call: point - rng.random_range(0..50),
                    elements: set.clone(),
                });
                continue;
            }
            let outcome = rng.random_range(0..20);
            let applies = outcome != 0 && (outcome != 1 || rng.random_bool(0.5));
            if applies {
                set.push(i as u64);
            }
            adds.push(Add {
                id: i as u64,
                element: i as u64,
                call: point - rng.random_range(0..300),
                ok_at: (outcome > 1).then(|| point + rng.random_range(0..300)),
                failed: outcome == 0,
            });
        }
        reads.push(Read {
            id: n as u64,
            call: 1000 + 100 * n as u64 + 1000,
            elements: set,
        });
        (adds, reads)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn sequential_sets_are_accepted(seed in any::<u64>(), n in 1usize..300) {
            let (adds, reads) = generate(seed, n);
            let v = check_ops(&adds, &reads);
            prop_assert_eq!(v.valid, Validity::Valid, "{:?}", v.problems);
        }

        #[test]
        fn a_lost_add_is_rejected(seed in any::<u64>(), n in 5usize..300) {
            let (adds, mut reads) = generate(seed, n);
            let Some(a) = adds.iter().find(|a| a.ok_at.is_some()) else { return Ok(()) };
            let last = reads.len() - 1;
            reads[last].elements.retain(|e| *e != a.element);
            prop_assert_eq!(check_ops(&adds, &reads).valid, Validity::Invalid);
        }

        #[test]
        fn a_duplicate_is_rejected(seed in any::<u64>(), n in 5usize..300) {
            let (adds, mut reads) = generate(seed, n);
            let last = reads.len() - 1;
            let Some(e) = reads[last].elements.first().copied() else { return Ok(()) };
            reads[last].elements.push(e);
            prop_assert_eq!(check_ops(&adds, &reads).valid, Validity::Invalid);
        }

        #[test]
        fn an_element_never_added_is_rejected(seed in any::<u64>(), n in 1usize..300) {
            let (adds, mut reads) = generate(seed, n);
            let last = reads.len() - 1;
            reads[last].elements.push(1_000_000);
            prop_assert_eq!(check_ops(&adds, &reads).valid, Validity::Invalid);
        }
    }
}
