//! The errors of a pod's files and environment, worded as kubelet words them, since they end
//! up verbatim in pod status messages (CreateContainerConfigError) and FailedMount Events.

/// Why an object a pod refers to could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The object does not exist: `configmap "x" not found`, `secret "x" not found`.
    #[error("{kind} \"{name}\" not found")]
    NotFound { kind: &'static str, name: String },
    /// The API could not answer (unreachable, refused, malformed reply).
    #[error("{0}")]
    Failed(String),
}

impl SourceError {
    /// Whether the object is known not to exist (an optional reference is then skipped).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }
}

/// Why a container's environment could not be made; the message is kubelet's and goes into
/// the container's `CreateContainerConfigError` waiting message as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EnvError(pub String);

/// Why a volume could not be set up (or a container's mounts made), as kubelet's FailedMount
/// Event says it: `MountVolume.SetUp failed for volume "v" : configmap "x" not found`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("MountVolume.SetUp failed for volume \"{volume}\" : {message}")]
pub struct MountError {
    pub volume: String,
    pub message: String,
}

impl MountError {
    pub(crate) fn new(volume: &str, message: impl Into<String>) -> Self {
        Self {
            volume: volume.to_owned(),
            message: message.into(),
        }
    }
}

/// Joins several errors as Kubernetes' error aggregate prints them: one alone as itself,
/// more as `[a, b]`.
pub(crate) fn aggregate(messages: &[String]) -> Option<String> {
    match messages {
        [] => None,
        [one] => Some(one.clone()),
        many => Some(format!("[{}]", many.join(", "))),
    }
}
