//! The bank workload's checker: transfers move money between accounts, so every read of all
//! accounts sees the same total and no negative balance.

use std::collections::BTreeMap;

use super::Verdict;
use crate::history::{pair, Event, Kind};

/// One snapshot read of all accounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub id: u64,
    pub balances: BTreeMap<String, i64>,
}

/// Checks that every read holds `accounts` accounts summing to `total`, none negative.
pub fn check_reads(reads: &[Read], accounts: usize, total: i64) -> Verdict {
    let mut v = Verdict::new("bank");
    v.stats.insert("reads".into(), reads.len() as u64);
    if reads.is_empty() {
        v.undecided("no successful read".into());
    }
    for r in reads {
        let sum: i64 = r.balances.values().sum();
        let mut bad = Vec::new();
        if r.balances.len() != accounts {
            bad.push(format!(
                "{} accounts instead of {accounts}",
                r.balances.len()
            ));
        }
        if sum != total {
            bad.push(format!("total {sum} instead of {total}"));
        }
        if let Some((k, b)) = r.balances.iter().find(|(_, b)| **b < 0) {
            bad.push(format!("account {k} at {b}"));
        }
        if !bad.is_empty() {
            v.fail(format!(
                "read {}: {} in {:?}",
                r.id,
                bad.join(", "),
                r.balances
            ));
            if v.witness.is_empty() {
                v.witness.push(r.id);
            }
        }
    }
    v
}

/// Reads are `f` read with an ok value mapping account to balance; the invoke of the setup
/// records `{"accounts": n, "total": t}` under `f` setup.
pub fn check(events: &[Event]) -> Verdict {
    let (mut accounts, mut total) = (0usize, 0i64);
    let mut reads = Vec::new();
    for op in pair(events) {
        match op.invoke.f.as_str() {
            "setup" => {
                accounts = op.invoke.value["accounts"].as_u64().unwrap_or(0) as usize;
                total = op.invoke.value["total"].as_i64().unwrap_or(0);
            }
            "read" if op.kind() == Kind::Ok => {
                let Some(c) = op.complete else { continue };
                let balances = c
                    .value
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .filter_map(|(k, b)| Some((k.clone(), b.as_i64()?)))
                            .collect()
                    })
                    .unwrap_or_default();
                reads.push(Read {
                    id: op.invoke.index,
                    balances,
                });
            }
            _ => {}
        }
    }
    let mut v = check_reads(&reads, accounts, total);
    v.stats.insert(
        "transfers_ok".into(),
        pair(events)
            .iter()
            .filter(|o| o.invoke.f == "transfer" && o.kind() == Kind::Ok)
            .count() as u64,
    );
    v
}

#[cfg(test)]
mod tests {
    use super::super::Validity;
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};

    /// Reads of a sequential bank after random transfers that never overdraw.
    fn generate(seed: u64, n: usize, accounts: usize) -> Vec<Read> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut bal = vec![100i64; accounts];
        let mut reads = Vec::new();
        for i in 0..n {
            let (from, to) = (rng.random_range(0..accounts), rng.random_range(0..accounts));
            let amount = rng.random_range(0..=bal[from]);
            bal[from] -= amount;
            bal[to] += amount;
            if rng.random_bool(0.3) {
                reads.push(Read {
                    id: i as u64,
                    balances: bal
                        .iter()
                        .enumerate()
                        .map(|(k, b)| (format!("a{k}"), *b))
                        .collect(),
                });
            }
        }
        reads
    }

    proptest! {
        #[test]
        fn conserved_totals_are_accepted(seed in any::<u64>(), n in 1usize..200, accounts in 2usize..8) {
            let reads = generate(seed, n, accounts);
            prop_assume!(!reads.is_empty());
            prop_assert_eq!(check_reads(&reads, accounts, 100 * accounts as i64).valid, Validity::Valid);
        }

        #[test]
        fn a_half_applied_transfer_is_rejected(seed in any::<u64>(), n in 1usize..200, accounts in 2usize..8, amount in 1i64..50) {
            let mut reads = generate(seed, n, accounts);
            prop_assume!(!reads.is_empty());
            let i = seed as usize % reads.len();
            if let Some(b) = reads[i].balances.get_mut("a0") { *b += amount; }
            let v = check_reads(&reads, accounts, 100 * accounts as i64);
            prop_assert_eq!(v.valid, Validity::Invalid);
            prop_assert_eq!(v.witness, vec![reads[i].id]);
        }
    }
}
