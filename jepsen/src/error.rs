//! The harness's one error type: what went wrong setting up, running or recording a test.

use std::path::PathBuf;

/// Errors of the harness. A violation found by a checker is never an error: it is a verdict.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory of the report or of a member could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A system command (ip, iptables, kill) failed.
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    /// A member process could not be started.
    #[error("starting member {member}: {detail}")]
    Spawn { member: usize, detail: String },
    /// The cluster did not become writable in time.
    #[error("cluster not ready: {0}")]
    NotReady(String),
    /// A client call failed where the harness needs it to succeed (setup, final reads).
    #[error("{what}: {status}")]
    Rpc {
        what: String,
        #[source]
        status: tonic::Status,
    },
    /// A history line did not parse.
    #[error("history line {line}: {detail}")]
    History { line: usize, detail: String },
    /// A name given on the command line is not known.
    #[error("unknown {kind} {name:?}")]
    Unknown { kind: &'static str, name: String },
    /// JSON (de)serialisation of a report file.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
