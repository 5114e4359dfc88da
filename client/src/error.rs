//! The SDK's one error type. Whether to retry is decided by variant and Status code.

use serde::Deserialize;

/// A Kubernetes Status as the server sent it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Status {
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub code: u16,
    #[serde(default)]
    pub details: Option<StatusDetails>,
}

/// The parts of a Status' details the SDK reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct StatusDetails {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub causes: Vec<StatusCause>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct StatusCause {
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub field: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with a Kubernetes error (NotFound, Conflict, Invalid, …).
    #[error("{} ({}): {}", .0.reason, .0.code, .0.message)]
    Api(Status),
    /// No master could be reached, or the connection broke mid-call. A write that failed this
    /// way may or may not have been applied.
    #[error("transport: {0}")]
    Transport(String),
    #[error("decoding a server reply: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("invalid endpoint {0}")]
    Endpoint(String),
    /// A kubeconfig that cannot be used: unreadable, not a kubeconfig, naming a context,
    /// cluster or user it does not define, or carrying credentials that do not parse.
    /// `origin` is the file (or the files of a list, or `(inline)`).
    #[error("kubeconfig {origin}: {problem}")]
    Kubeconfig { origin: String, problem: String },
    /// A bearer token with characters an HTTP header cannot carry.
    #[error("the bearer token has characters a header cannot carry")]
    InvalidToken,
    /// A cache's writer went away before the cache was ever filled: it never will be.
    #[error("the cache's writer was dropped before the cache was filled")]
    StoreClosed,
}

impl Error {
    pub fn from_grpc(status: tonic::Status) -> Self {
        match serde_json::from_slice::<Status>(status.details()) {
            Ok(st) if st.code != 0 => Error::Api(st),
            _ => Error::Transport(format!("{:?}: {}", status.code(), status.message())),
        }
    }

    /// The HTTP-style code of an API error, if this is one.
    pub fn code(&self) -> Option<u16> {
        match self {
            Error::Api(s) => Some(s.code),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }

    /// A fenced write refused because its Lease names another holder now: the writer is no
    /// longer the leader.
    pub fn is_fence_lost(&self) -> bool {
        match self {
            Error::Api(st) => st
                .details
                .as_ref()
                .is_some_and(|d| d.causes.iter().any(|c| c.reason == "FenceLost")),
            _ => false,
        }
    }

    pub fn is_conflict(&self) -> bool {
        self.code() == Some(409)
    }

    /// History the request needed was compacted: relist.
    pub fn is_gone(&self) -> bool {
        self.code() == Some(410)
    }
}
