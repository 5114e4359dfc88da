//! Linearizability search over one partition of a history: the Wing–Gong algorithm with Lowe's
//! memoisation, as Porcupine implements it.
//!
//! Calls and returns sit in one time-ordered doubly linked list. The search repeatedly takes the
//! first call whose operation can be applied to the model state, "lifts" that operation out of
//! the list and pushes it on a stack; when it meets a return whose call was not yet taken, the
//! last choice was wrong and is undone. A set of (operations linearized, model state) pairs
//! already explored prunes repeated work, which is what makes long histories feasible.
//!
//! An operation whose outcome is unknown (it timed out, or the test ended with it in flight)
//! returns at +infinity: it may take effect at any point after its call, or never.

use std::collections::HashSet;
use std::hash::Hash;

/// A sequential specification: which states may follow which operations.
pub trait Model {
    type State: Clone + Eq + Hash;
    type Input;
    type Output;
    fn init(&self) -> Self::State;
    /// The state after `input` produced `output` in `state`, or `None` if it could not have.
    /// `output` is `None` when the outcome is unknown; the step must then accept whatever the
    /// operation would do from `state`.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;
}

/// One operation of a partition.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry<I, O> {
    /// Caller's identifier (reported back in witnesses).
    pub id: u64,
    pub call: u64,
    /// `None`: the outcome is unknown; the operation returns at +infinity.
    pub ret: Option<u64>,
    pub input: I,
    /// `None` exactly when `ret` is `None`.
    pub output: Option<O>,
}

/// What the search concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Linearizable,
    NotLinearizable,
    /// The search gave up after its step budget.
    Unknown,
}

const NIL: usize = usize::MAX;

/// A fixed-size set of operation indices; the memo key together with the model state.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Self {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// Checks one partition. `budget` bounds the number of search steps.
pub fn check<M: Model>(model: &M, ops: &[Entry<M::Input, M::Output>], budget: u64) -> Outcome {
    let n = ops.len();
    if n == 0 {
        return Outcome::Linearizable;
    }
    // Node 0 is the head sentinel; node 1 + 2k is op k's call, 2 + 2k its return.
    let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (k, op) in ops.iter().enumerate() {
        order.push((op.call, false, k));
        order.push((op.ret.unwrap_or(u64::MAX), true, k));
    }
    // At equal times calls sort first: such operations count as concurrent.
    order.sort_unstable();
    let len = 2 * n + 1;
    let (mut next, mut prev) = (vec![NIL; len], vec![NIL; len]);
    let node_of = |k: usize, is_ret: bool| 1 + 2 * k + usize::from(is_ret);
    let mut last = 0;
    for &(_, is_ret, k) in &order {
        let node = node_of(k, is_ret);
        next[last] = node;
        prev[node] = last;
        last = node;
    }
    let lift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, call: usize| {
        for node in [call, call + 1] {
            next[prev[node]] = next[node];
            if next[node] != NIL {
                prev[next[node]] = prev[node];
            }
        }
    };
    let unlift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, call: usize| {
        for node in [call + 1, call] {
            next[prev[node]] = node;
            if next[node] != NIL {
                prev[next[node]] = node;
            }
        }
    };

    let mut state = model.init();
    let mut linearized = Bits::new(n);
    let mut seen: HashSet<(Bits, M::State)> = HashSet::new();
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut node = next[0];
    let mut steps = 0u64;
    while next[0] != NIL {
        steps += 1;
        if steps > budget {
            return Outcome::Unknown;
        }
        let is_call = (node - 1) % 2 == 0;
        if is_call {
            let k = (node - 1) / 2;
            let op = &ops[k];
            if let Some(after) = model.step(&state, &op.input, op.output.as_ref()) {
                let mut bits = linearized.clone();
                bits.set(k);
                if seen.insert((bits.clone(), after.clone())) {
                    stack.push((node, std::mem::replace(&mut state, after)));
                    linearized = bits;
                    lift(&mut next, &mut prev, node);
                    node = next[0];
                    continue;
                }
            }
            node = next[node];
        } else {
            // A return whose call is still in the list: an earlier choice was wrong.
            let Some((call, before)) = stack.pop() else {
                return Outcome::NotLinearizable;
            };
            state = before;
            linearized.clear((call - 1) / 2);
            unlift(&mut next, &mut prev, call);
            node = next[call];
        }
        if node == NIL {
            // Only calls of unknown-outcome operations were left and none applies: impossible,
            // since unknown outcomes always apply; treat as a dead end all the same.
            let Some((call, before)) = stack.pop() else {
                return Outcome::NotLinearizable;
            };
            state = before;
            linearized.clear((call - 1) / 2);
            unlift(&mut next, &mut prev, call);
            node = next[call];
        }
    }
    Outcome::Linearizable
}

/// A small sub-history that is still not linearizable: the shortest failing prefix (by call
/// time), then greedily without every operation whose removal keeps it failing. Returns the ids.
pub fn shrink<M: Model>(model: &M, ops: &[Entry<M::Input, M::Output>], budget: u64) -> Vec<u64>
where
    M::Input: Clone,
    M::Output: Clone,
{
    let mut sorted: Vec<&Entry<M::Input, M::Output>> = ops.iter().collect();
    sorted.sort_by_key(|e| e.call);
    let fails = |sub: &[&Entry<M::Input, M::Output>]| {
        let owned: Vec<Entry<M::Input, M::Output>> = sub.iter().map(|e| (*e).clone()).collect();
        check(model, &owned, budget) == Outcome::NotLinearizable
    };
    // Failure is not strictly monotone in the prefix; the binary search is a heuristic and the
    // result is verified below.
    let (mut lo, mut hi) = (1, sorted.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        if fails(&sorted[..mid]) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let mut keep: Vec<&Entry<M::Input, M::Output>> = sorted[..hi].to_vec();
    if !fails(&keep) {
        keep = sorted.clone();
    }
    if keep.len() <= 400 {
        let mut i = keep.len();
        while i > 0 {
            i -= 1;
            let mut without = keep.clone();
            without.remove(i);
            if fails(&without) {
                keep = without;
            }
        }
    }
    keep.iter().map(|e| e.id).collect()
}
