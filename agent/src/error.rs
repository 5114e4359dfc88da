//! The agent's errors: calls to the container runtime, sorted by what a caller can do about
//! them, and the local work around it (files, helper programs, a private containerd).

use std::time::Duration;

/// What went wrong.
///
/// Each gRPC status code maps to exactly one variant (see [`Error::from_status`]), so
/// callers decide on retries and pod status reasons by variant, never by message text.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The endpoint is not a `unix://` address (or a bare socket path).
    #[error("invalid container runtime endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        endpoint: String,
        reason: &'static str,
    },
    /// The socket could not be reached or the HTTP/2 connection failed.
    #[error("cannot connect to the container runtime at {endpoint}: {source}")]
    Connect {
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
    /// The runtime is not (yet, or any more) serving: retry later.
    #[error("{operation}: container runtime unavailable: {message}")]
    Unavailable {
        operation: &'static str,
        message: String,
    },
    /// The call did not finish within its deadline.
    #[error("{operation}: no answer within {timeout:?}: {message}")]
    DeadlineExceeded {
        operation: &'static str,
        timeout: Duration,
        message: String,
    },
    /// The sandbox, container or image named in the request does not exist.
    #[error("{operation}: not found: {message}")]
    NotFound {
        operation: &'static str,
        message: String,
    },
    /// The runtime refused the request as malformed or inapplicable.
    #[error("{operation}: invalid argument: {message}")]
    InvalidArgument {
        operation: &'static str,
        message: String,
    },
    /// An image could not be pulled: the registry is unreachable, refuses us, or lacks the
    /// image. containerd reports all of these as one opaque error, as kubelet's ErrImagePull does.
    #[error("pulling image {image:?} failed: {message}")]
    PullFailed { image: String, message: String },
    /// Any other failure the runtime reported.
    #[error("{operation} failed ({code:?}): {message}")]
    Failed {
        operation: &'static str,
        code: tonic::Code,
        message: String,
    },
    /// The runtime answered but left out a field CRI says it must fill.
    #[error("{operation}: the runtime's answer lacks {field}")]
    MissingField {
        operation: &'static str,
        field: &'static str,
    },
    /// A local file or directory operation failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A helper program (`ctr`, `mount`, `busybox`) failed or could not be run.
    #[error("{command}: {detail}")]
    Command { command: String, detail: String },
    /// An image archive could not be laid out (for instance a path tar cannot hold).
    #[error("image archive: {reason}")]
    ImageArchive { reason: String },
    /// The containerd we started exited before or while serving.
    #[error("containerd exited ({status}); its log ends with:\n{log_tail}")]
    ContainerdExited { status: String, log_tail: String },
    /// The containerd we started does not serve CRI: not within the time allowed, or not at
    /// all because its CRI plugin failed to load.
    #[error("containerd does not serve CRI ({last}); its log ends with:\n{log_tail}")]
    ContainerdNotServing { last: String, log_tail: String },
}

impl Error {
    /// An [`Error::Io`] saying what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }

    /// The one mapping from a gRPC status to an error; `timeout` is the deadline the call ran
    /// under, reported when it ran out.
    pub fn from_status(operation: &'static str, timeout: Duration, status: tonic::Status) -> Self {
        let message = status.message().to_owned();
        match status.code() {
            tonic::Code::Unavailable => Self::Unavailable { operation, message },
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => Self::DeadlineExceeded {
                operation,
                timeout,
                message,
            },
            tonic::Code::NotFound => Self::NotFound { operation, message },
            tonic::Code::InvalidArgument => Self::InvalidArgument { operation, message },
            code @ (tonic::Code::Ok
            | tonic::Code::Unknown
            | tonic::Code::AlreadyExists
            | tonic::Code::PermissionDenied
            | tonic::Code::ResourceExhausted
            | tonic::Code::FailedPrecondition
            | tonic::Code::Aborted
            | tonic::Code::OutOfRange
            | tonic::Code::Unimplemented
            | tonic::Code::Internal
            | tonic::Code::DataLoss
            | tonic::Code::Unauthenticated) => Self::Failed {
                operation,
                code,
                message,
            },
        }
    }

    /// Whether the same call may succeed if simply made again later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Connect { .. } | Self::Unavailable { .. } | Self::DeadlineExceeded { .. }
        )
    }

    /// Whether the object the call named does not exist (so removing it again is done).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(code: tonic::Code) -> Error {
        Error::from_status(
            "StopContainer",
            Duration::from_secs(2),
            tonic::Status::new(code, "boom"),
        )
    }

    #[test]
    fn unavailable_and_deadline_are_retryable_and_the_rest_are_not() {
        assert!(from(tonic::Code::Unavailable).is_retryable());
        assert!(from(tonic::Code::DeadlineExceeded).is_retryable());
        assert!(!from(tonic::Code::NotFound).is_retryable());
        assert!(!from(tonic::Code::Unknown).is_retryable());
        assert!(!from(tonic::Code::InvalidArgument).is_retryable());
    }

    #[test]
    fn not_found_is_recognised_by_variant() {
        assert!(from(tonic::Code::NotFound).is_not_found());
        assert!(!from(tonic::Code::Internal).is_not_found());
    }

    #[test]
    fn messages_name_the_operation_and_keep_the_runtime_text() {
        let text = from(tonic::Code::Internal).to_string();
        assert!(
            text.starts_with("StopContainer failed (Internal)"),
            "{text}"
        );
        assert!(text.ends_with("boom"), "{text}");
        let deadline = from(tonic::Code::DeadlineExceeded).to_string();
        assert!(deadline.contains("2s"), "{deadline}");
    }
}
