//! Checkers: pure functions from a recorded history to a verdict. No tokio, no I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub mod bank;
pub mod linear;
pub mod lock;
pub mod register;
pub mod set;
pub mod watch;

/// Whether a history satisfied its checker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Validity {
    Valid,
    Invalid,
    /// The checker could not decide (search budget exhausted, final read missing).
    Unknown,
}

/// A checker's judgement with the evidence for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub checker: String,
    pub valid: Validity,
    /// Each violation found, in words.
    pub problems: Vec<String>,
    /// Indices of the invoke events of a small sub-history that shows the first violation.
    pub witness: Vec<u64>,
    /// Counts the checker gathered (operations, keys, events).
    pub stats: BTreeMap<String, u64>,
}

impl Verdict {
    pub fn new(checker: &str) -> Self {
        Verdict {
            checker: checker.to_string(),
            valid: Validity::Valid,
            problems: Vec::new(),
            witness: Vec::new(),
            stats: BTreeMap::new(),
        }
    }

    /// Records a violation.
    pub fn fail(&mut self, problem: String) {
        self.valid = Validity::Invalid;
        if self.problems.len() < 100 {
            self.problems.push(problem);
        }
    }

    /// Records that the checker could not decide (unless it already found a violation).
    pub fn undecided(&mut self, why: String) {
        if self.valid == Validity::Valid {
            self.valid = Validity::Unknown;
        }
        self.problems.push(why);
    }
}
