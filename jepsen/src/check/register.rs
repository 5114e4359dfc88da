//! The register workload's checker: every key is an independent read/write/compare-and-set
//! register, and each key's operations must be linearizable.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::linear::{self, Entry, Model, Outcome};
use super::{Validity, Verdict};
use crate::history::{pair, Event, Kind};

/// An operation on one register. Values written are unique per test, so a read names the write
/// it saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegInput {
    Read,
    Write(u64),
    Cas(u64, u64),
}

/// What a register operation returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegOutput {
    /// The value read; `None` when the key does not exist.
    Read(Option<u64>),
    Write,
    /// Whether the compare held and the write happened.
    Cas(bool),
}

/// A register that starts absent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Register;

impl Model for Register {
    type State = Option<u64>;
    type Input = RegInput;
    type Output = RegOutput;

    fn init(&self) -> Option<u64> {
        None
    }

    fn step(&self, s: &Option<u64>, i: &RegInput, o: Option<&RegOutput>) -> Option<Option<u64>> {
        match (i, o) {
            (RegInput::Read, Some(RegOutput::Read(v))) => (v == s).then_some(*s),
            (RegInput::Read, None) => Some(*s),
            (RegInput::Write(v), Some(RegOutput::Write) | None) => Some(Some(*v)),
            (RegInput::Cas(from, to), Some(RegOutput::Cas(true))) => {
                (*s == Some(*from)).then_some(Some(*to))
            }
            (RegInput::Cas(from, _), Some(RegOutput::Cas(false))) => {
                (*s != Some(*from)).then_some(*s)
            }
            (RegInput::Cas(from, to), None) => Some(if *s == Some(*from) { Some(*to) } else { *s }),
            _ => None,
        }
    }
}

/// Search steps allowed per key before the verdict becomes unknown.
pub const BUDGET_PER_KEY: u64 = 10_000_000;

/// Splits register operations by key. Failed operations did not happen and are dropped, as are
/// reads of unknown outcome (they change nothing) and operations of unknown outcome invoked
/// after the key's last completed operation returned: linearizing those after everything else
/// is always possible and changes nothing anyone observed, so they cannot matter. (A cluster
/// that stops answering leaves many such operations, and each would double the search.)
pub fn partition(
    ops: Vec<(String, Entry<RegInput, RegOutput>)>,
) -> BTreeMap<String, Vec<Entry<RegInput, RegOutput>>> {
    let mut by_key: BTreeMap<String, Vec<Entry<RegInput, RegOutput>>> = BTreeMap::new();
    for (key, e) in ops {
        if e.output.is_none() && e.input == RegInput::Read {
            continue;
        }
        by_key.entry(key).or_default().push(e);
    }
    for ops in by_key.values_mut() {
        let last_return = ops.iter().filter_map(|e| e.ret).max().unwrap_or(0);
        ops.retain(|e| e.ret.is_some() || e.call <= last_return);
    }
    by_key.retain(|_, ops| !ops.is_empty());
    by_key
}

/// Checks every key's register; the witness is a small failing sub-history of the first bad key.
pub fn check_entries(by_key: &BTreeMap<String, Vec<Entry<RegInput, RegOutput>>>) -> Verdict {
    let mut verdict = Verdict::new("register");
    let mut unknown = Vec::new();
    for (key, ops) in by_key {
        match linear::check(&Register, ops, BUDGET_PER_KEY) {
            Outcome::Linearizable => {}
            Outcome::Unknown => unknown.push(key.clone()),
            Outcome::NotLinearizable => {
                verdict.valid = Validity::Invalid;
                verdict.problems.push(format!(
                    "key {key}: {} operations are not linearizable",
                    ops.len()
                ));
                if verdict.witness.is_empty() {
                    verdict.witness = linear::shrink(&Register, ops, BUDGET_PER_KEY / 10);
                }
            }
        }
    }
    if !unknown.is_empty() && verdict.valid == Validity::Valid {
        verdict.valid = Validity::Unknown;
        verdict
            .problems
            .push(format!("search budget exhausted on keys {unknown:?}"));
    }
    verdict.stats.insert("keys".into(), by_key.len() as u64);
    verdict.stats.insert(
        "operations".into(),
        by_key.values().map(|v| v.len() as u64).sum(),
    );
    verdict
}

/// Reads register operations out of a history: `f` read/write/cas on `key`; invoke values are
/// `null`, `v` and `[from, to]`; ok values are the value read (or `null`), `null`, and a bool.
pub fn from_history(events: &[Event]) -> Vec<(String, Entry<RegInput, RegOutput>)> {
    let mut out = Vec::new();
    for op in pair(events) {
        let Some(key) = op.invoke.key.clone() else {
            continue;
        };
        let input = match (op.invoke.f.as_str(), &op.invoke.value) {
            ("read", _) => RegInput::Read,
            ("write", v) => match v.as_u64() {
                Some(v) => RegInput::Write(v),
                None => continue,
            },
            ("cas", v) => match (
                v.get(0).and_then(|x| x.as_u64()),
                v.get(1).and_then(|x| x.as_u64()),
            ) {
                (Some(a), Some(b)) => RegInput::Cas(a, b),
                _ => continue,
            },
            _ => continue,
        };
        let (ret, output) = match op.kind() {
            Kind::Fail => continue,
            Kind::Info | Kind::Invoke => (None, None),
            Kind::Ok => {
                let Some(c) = op.complete else { continue };
                let output = match input {
                    RegInput::Read => RegOutput::Read(c.value.as_u64()),
                    RegInput::Write(_) => RegOutput::Write,
                    RegInput::Cas(..) => RegOutput::Cas(c.value.as_bool().unwrap_or(false)),
                };
                (Some(c.time), Some(output))
            }
        };
        out.push((
            key,
            Entry {
                id: op.invoke.index,
                call: op.invoke.time,
                ret,
                input,
                output,
            },
        ));
    }
    out
}

/// Checks a register history.
pub fn check(events: &[Event]) -> Verdict {
    check_entries(&partition(from_history(events)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};

    type E = Entry<RegInput, RegOutput>;

    /// A history produced by running a sequential register per key and giving every operation
    /// an interval around its linearization point (spaced 100 apart) of up to `spread` * 100
    /// on each side. Some writes and CASes get unknown outcomes; some of those never apply.
    fn generate(seed: u64, n: usize, keys: usize, spread: u64) -> Vec<(String, E)> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut state: Vec<Option<u64>> = vec![None; keys];
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let k = rng.random_range(0..keys);
            let point = 1_000_000 + 100 * i as u64;
            let call = point - rng.random_range(0..=spread * 100);
            let ret = point + rng.random_range(0..=spread * 100);
            let value = i as u64 + 1;
            let input = match rng.random_range(0..10) {
                0..=3 => RegInput::Read,
                4..=6 => RegInput::Write(value),
                _ => {
                    let from = if rng.random_bool(0.6) {
                        state[k].unwrap_or(0)
                    } else {
                        rng.random_range(0..=i as u64)
                    };
                    RegInput::Cas(from, value)
                }
            };
            let unknown = input != RegInput::Read && rng.random_bool(0.03);
            let applies = !unknown || rng.random_bool(0.5);
            let output = match input {
                RegInput::Read => RegOutput::Read(state[k]),
                RegInput::Write(v) => {
                    if applies {
                        state[k] = Some(v);
                    }
                    RegOutput::Write
                }
                RegInput::Cas(from, to) => {
                    let hit = state[k] == Some(from);
                    if hit && applies {
                        state[k] = Some(to);
                    }
                    RegOutput::Cas(hit)
                }
            };
            let e = Entry {
                id: i as u64,
                call,
                ret: (!unknown).then_some(ret),
                input,
                output: (!unknown).then_some(output),
            };
            out.push((format!("k{k}"), e));
        }
        out
    }

    fn is_write_like(e: &E) -> bool {
        matches!(
            (e.input, e.output),
            (RegInput::Write(_), _) | (RegInput::Cas(..), Some(RegOutput::Cas(true)) | None)
        )
    }

    fn written(e: &E) -> Option<u64> {
        match e.input {
            RegInput::Write(v) | RegInput::Cas(_, v) => Some(v),
            RegInput::Read => None,
        }
    }

    /// Makes one read return a value that two completed writes of its key, both finished
    /// before the read began and ordered in real time, have overwritten. None if there is no
    /// such read.
    fn plant_stale_read(h: &mut [(String, E)]) -> bool {
        for r in (0..h.len()).rev() {
            if h[r].1.input != RegInput::Read || h[r].1.output.is_none() {
                continue;
            }
            let (key, call) = (h[r].0.clone(), h[r].1.call);
            let done: Vec<&E> = h
                .iter()
                .map(|(k, e)| (k, e))
                .filter(|(k, e)| **k == key && e.ret.is_some_and(|t| t < call))
                .map(|(_, e)| e)
                .filter(|e| {
                    matches!(
                        (e.input, e.output),
                        (RegInput::Write(_), Some(_))
                            | (RegInput::Cas(..), Some(RegOutput::Cas(true)))
                    )
                })
                .collect();
            for old in &done {
                let newer = done.iter().any(|n| n.call > old.ret.unwrap_or(u64::MAX));
                if newer {
                    let v = written(old);
                    h[r].1.output = Some(RegOutput::Read(v));
                    return true;
                }
            }
        }
        false
    }

    /// Makes a read that starts after a key's first acknowledged write return "absent": the
    /// write is lost (nothing deletes keys in this model).
    fn plant_lost_write(h: &mut [(String, E)]) -> bool {
        for w in 0..h.len() {
            if !(is_write_like(&h[w].1) && h[w].1.ret.is_some()) {
                continue;
            }
            let (key, ret) = (h[w].0.clone(), h[w].1.ret.unwrap_or(u64::MAX));
            if let Some(r) = (w + 1..h.len()).find(|&r| {
                h[r].0 == key
                    && h[r].1.input == RegInput::Read
                    && h[r].1.output.is_some()
                    && h[r].1.call > ret
            }) {
                h[r].1.output = Some(RegOutput::Read(None));
                return true;
            }
        }
        false
    }

    #[test]
    fn a_read_of_an_overwritten_value_is_rejected_with_a_small_witness() {
        let e = |id, call, ret, input, output| Entry {
            id,
            call,
            ret: Some(ret),
            input,
            output: Some(output),
        };
        let ops = vec![
            e(0, 0, 10, RegInput::Write(1), RegOutput::Write),
            e(1, 20, 30, RegInput::Write(2), RegOutput::Write),
            e(2, 21, 29, RegInput::Read, RegOutput::Read(Some(1))),
            e(3, 40, 50, RegInput::Read, RegOutput::Read(Some(1))),
            e(4, 60, 70, RegInput::Read, RegOutput::Read(Some(1))),
        ];
        assert_eq!(
            linear::check(&Register, &ops, 1000),
            Outcome::NotLinearizable
        );
        // Write 2 then a read of 1: 1 was overwritten (or, without write 1, never written).
        assert_eq!(linear::shrink(&Register, &ops, 1000), vec![1, 3]);
    }

    #[test]
    fn an_unknown_write_may_apply_late_or_never() {
        let ops = vec![
            Entry {
                id: 0,
                call: 0,
                ret: None,
                input: RegInput::Write(1),
                output: None,
            },
            Entry {
                id: 1,
                call: 10,
                ret: Some(20),
                input: RegInput::Read,
                output: Some(RegOutput::Read(None)),
            },
            Entry {
                id: 2,
                call: 30,
                ret: Some(40),
                input: RegInput::Read,
                output: Some(RegOutput::Read(Some(1))),
            },
        ];
        assert_eq!(linear::check(&Register, &ops, 1000), Outcome::Linearizable);
        let never = &ops[..2];
        assert_eq!(linear::check(&Register, never, 1000), Outcome::Linearizable);
        // But once seen it cannot be unseen.
        let mut flicker = ops.clone();
        flicker.push(Entry {
            id: 3,
            call: 50,
            ret: Some(60),
            input: RegInput::Read,
            output: Some(RegOutput::Read(None)),
        });
        assert_eq!(
            linear::check(&Register, &flicker, 1000),
            Outcome::NotLinearizable
        );
    }

    #[test]
    fn operations_of_unknown_outcome_after_the_last_return_do_not_slow_the_search() {
        let mut h: Vec<(String, E)> = generate(11, 200, 1, 2);
        let end = h.iter().filter_map(|(_, e)| e.ret).max().unwrap_or(0);
        for i in 0..200u64 {
            h.push((
                "k0".into(),
                Entry {
                    id: 10_000 + i,
                    call: end + 1 + i,
                    ret: None,
                    input: RegInput::Write(50_000 + i),
                    output: None,
                },
            ));
        }
        let parts = partition(h);
        assert!(parts["k0"].iter().all(|e| e.id < 10_000));
        assert_eq!(check_entries(&parts).valid, Validity::Valid);
    }

    #[test]
    fn ten_thousand_operations_check_in_seconds() {
        let h = generate(7, 10_000, 10, 4);
        let start = std::time::Instant::now();
        let v = check_entries(&partition(h));
        let took = start.elapsed();
        println!("10000-op register history over 10 keys checked in {took:?}");
        assert_eq!(v.valid, Validity::Valid, "{:?}", v.problems);
        assert!(took < std::time::Duration::from_secs(20), "took {took:?}");

        let h = generate(8, 10_000, 1, 3);
        let start = std::time::Instant::now();
        let v = check_entries(&partition(h));
        let took = start.elapsed();
        println!("10000-op register history on one key checked in {took:?}");
        assert_eq!(v.valid, Validity::Valid, "{:?}", v.problems);
        assert!(took < std::time::Duration::from_secs(20), "took {took:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn histories_of_a_sequential_register_are_accepted(seed in any::<u64>(), n in 1usize..300, keys in 1usize..4, spread in 0u64..5) {
            let v = check_entries(&partition(generate(seed, n, keys, spread)));
            prop_assert_eq!(v.valid, Validity::Valid, "{:?}", v.problems);
        }

        #[test]
        fn a_planted_stale_read_is_rejected(seed in any::<u64>(), n in 20usize..300, keys in 1usize..3, spread in 0u64..4) {
            let mut h = generate(seed, n, keys, spread);
            prop_assume!(plant_stale_read(&mut h));
            let v = check_entries(&partition(h));
            prop_assert_eq!(v.valid, Validity::Invalid);
            prop_assert!(!v.witness.is_empty());
        }

        #[test]
        fn a_planted_lost_write_is_rejected(seed in any::<u64>(), n in 20usize..300, keys in 1usize..3, spread in 0u64..4) {
            let mut h = generate(seed, n, keys, spread);
            prop_assume!(plant_lost_write(&mut h));
            let v = check_entries(&partition(h));
            prop_assert_eq!(v.valid, Validity::Invalid);
        }
    }
}
