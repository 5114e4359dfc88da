//! Histories as Jepsen records them: one event per invocation and one per completion, each with a
//! process, a time and a value, written as JSON lines.

use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Error;

/// The process id nemesis events carry.
pub const NEMESIS: i64 = -1;

/// What an event says about its operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The client is about to send the request.
    Invoke,
    /// The operation took effect, with the value returned.
    Ok,
    /// The operation certainly did not take effect.
    Fail,
    /// Nobody knows: the operation may take effect at any later time, or never.
    Info,
}

/// One line of a history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the history, from 0.
    pub index: u64,
    /// Client process (one operation at a time), or [`NEMESIS`].
    pub process: i64,
    #[serde(rename = "type")]
    pub kind: Kind,
    /// The operation's function: read, write, cas, add, transfer, ... or the nemesis's fault.
    pub f: String,
    /// The key the operation touches, when it touches one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Arguments on invoke, results on completion.
    #[serde(default)]
    pub value: serde_json::Value,
    /// Nanoseconds since the test started (monotonic clock of the harness).
    pub time: u64,
    /// The member a client is pinned to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<usize>,
    /// What went wrong, for fail and info.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One operation: its invocation paired with its completion (if any).
#[derive(Debug, Clone, PartialEq)]
pub struct Op<'a> {
    pub invoke: &'a Event,
    /// `None` when the history ended with the operation in flight (treated as info).
    pub complete: Option<&'a Event>,
}

impl Op<'_> {
    /// The completion kind; an operation never completed counts as info.
    pub fn kind(&self) -> Kind {
        self.complete.map_or(Kind::Info, |c| c.kind)
    }

    /// Return time, or `None` for an operation whose outcome is unknown (returns at +infinity).
    pub fn ret(&self) -> Option<u64> {
        match self.complete {
            Some(c) if c.kind != Kind::Info => Some(c.time),
            _ => None,
        }
    }
}

/// Pairs each client invocation with the next completion of the same process.
pub fn pair(events: &[Event]) -> Vec<Op<'_>> {
    let mut open: std::collections::HashMap<i64, usize> = std::collections::HashMap::new();
    let mut ops: Vec<Op<'_>> = Vec::new();
    for e in events.iter().filter(|e| e.process != NEMESIS) {
        match e.kind {
            Kind::Invoke => {
                open.insert(e.process, ops.len());
                ops.push(Op {
                    invoke: e,
                    complete: None,
                });
            }
            _ => {
                if let Some(i) = open.remove(&e.process) {
                    ops[i].complete = Some(e);
                }
            }
        }
    }
    ops
}

/// Writes events as JSON lines.
pub fn write_jsonl(path: &Path, events: &[Event]) -> Result<(), Error> {
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut w = std::io::BufWriter::new(file);
    for e in events {
        serde_json::to_writer(&mut w, e)?;
        w.write_all(b"\n").map_err(|e| Error::io(path, e))?;
    }
    w.flush().map_err(|e| Error::io(path, e))
}

/// Reads a history written by [`write_jsonl`].
pub fn read_jsonl(path: &Path) -> Result<Vec<Event>, Error> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut events = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| Error::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        events.push(serde_json::from_str(&line).map_err(|e| Error::History {
            line: i + 1,
            detail: e.to_string(),
        })?);
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(index: u64, process: i64, kind: Kind, time: u64) -> Event {
        Event {
            index,
            process,
            kind,
            f: "read".into(),
            key: None,
            value: serde_json::Value::Null,
            time,
            node: None,
            error: None,
        }
    }

    #[test]
    fn pairing_matches_each_invoke_with_the_next_completion_of_its_process() {
        let events = vec![
            ev(0, 1, Kind::Invoke, 1),
            ev(1, 2, Kind::Invoke, 2),
            ev(2, 2, Kind::Ok, 3),
            ev(3, NEMESIS, Kind::Info, 4),
            ev(4, 1, Kind::Info, 5),
            ev(5, 3, Kind::Invoke, 6),
        ];
        let ops = pair(&events);
        assert_eq!(ops.len(), 3);
        assert_eq!(ops[0].complete.map(|c| c.index), Some(4));
        assert_eq!(ops[0].ret(), None);
        assert_eq!(ops[1].ret(), Some(3));
        assert_eq!(ops[2].kind(), Kind::Info);
    }

    #[test]
    fn histories_round_trip_through_jsonl() -> Result<(), Error> {
        let dir = std::env::temp_dir().join(format!("kj-hist-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let path = dir.join("h.jsonl");
        let mut events = vec![ev(0, 1, Kind::Invoke, 1), ev(1, 1, Kind::Ok, 9)];
        events[1].value = serde_json::json!({"read": 3});
        write_jsonl(&path, &events)?;
        assert_eq!(read_jsonl(&path)?, events);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
