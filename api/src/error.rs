//! The API server's one error type, and its one mapping to what clients see: a Kubernetes
//! `Status` object with reason and code, carried by HTTP status codes over REST and by gRPC codes
//! (with the Status JSON in the details) over gRPC.

use serde_json::{json, Value};

/// One reason an object is invalid, as a Status cause: the field path, the cause reason
/// ("FieldValueInvalid", …) and the message without the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    pub field: String,
    pub reason: String,
    pub message: String,
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Why an API request failed, in Kubernetes' terms.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    #[error("{resource}{group_suffix} \"{name}\" not found", group_suffix = dotted(group))]
    NotFound {
        group: String,
        resource: String,
        name: String,
    },
    #[error("{resource}{group_suffix} \"{name}\" already exists", group_suffix = dotted(group))]
    AlreadyExists {
        group: String,
        resource: String,
        name: String,
    },
    /// The object changed since the version the request was based on.
    #[error("Operation cannot be fulfilled on {resource}{group_suffix} \"{name}\": {detail}", group_suffix = dotted(group))]
    Conflict {
        group: String,
        resource: String,
        name: String,
        detail: String,
    },
    /// A server-side apply would change fields other managers own; `causes` name each field
    /// and its manager.
    #[error("{message}")]
    ApplyConflict { message: String, causes: Vec<Cause> },
    /// The object failed validation; `causes` name each field.
    #[error("{kind} \"{name}\" is invalid: {}", join_causes(causes))]
    Invalid {
        group: String,
        kind: String,
        name: String,
        causes: Vec<Cause>,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    /// An admission webhook denied the request: its own code (at least 400), reason and
    /// message (prefixed with the webhook's name).
    #[error("{message}")]
    Denied {
        code: u16,
        reason: String,
        message: String,
    },
    /// A method refused for a reason of the moment (a create while the kind's definition is
    /// being deleted).
    #[error("{0}")]
    NotAllowedNow(String),
    /// A watch or list asked for history that compaction removed.
    #[error("{0}")]
    Expired(String),
    /// A continue token from a list older than the compacted history.
    #[error("{0}")]
    Gone(String),
    #[error("the server could not find the requested resource")]
    UnknownResource,
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    TooLarge(String),
    /// The lease that fenced this write no longer names the writer as holder.
    #[error("fenced write refused: lease {lease} no longer names the writer as its holder")]
    FenceLost { lease: String },
    /// The request may succeed later (an eviction that would break a disruption budget, a
    /// server too busy to queue it); `causes` say why, each with a reason and message and no
    /// field, and `retry_after_seconds` (when not 0) how long to wait.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        causes: Vec<Cause>,
        retry_after_seconds: u64,
    },
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

fn dotted(group: &str) -> String {
    if group.is_empty() {
        String::new()
    } else {
        format!(".{group}")
    }
}

fn join_causes(causes: &[Cause]) -> String {
    let parts: Vec<String> = causes.iter().map(|c| c.to_string()).collect();
    if parts.len() == 1 {
        parts.concat()
    } else {
        format!("[{}]", parts.join(", "))
    }
}

impl ApiError {
    /// The HTTP status code Kubernetes answers with.
    pub fn code(&self) -> u16 {
        match self {
            ApiError::NotFound { .. } | ApiError::UnknownResource => 404,
            ApiError::AlreadyExists { .. } | ApiError::Conflict { .. } => 409,
            ApiError::ApplyConflict { .. } => 409,
            ApiError::FenceLost { .. } => 409,
            ApiError::Invalid { .. } => 422,
            ApiError::BadRequest(_) => 400,
            ApiError::Unauthorized(_) => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::MethodNotAllowed | ApiError::NotAllowedNow(_) => 405,
            ApiError::Denied { code, .. } => *code,
            ApiError::Expired(_) | ApiError::Gone(_) => 410,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::TooLarge(_) => 413,
            ApiError::TooManyRequests { .. } => 429,
            ApiError::Timeout(_) => 504,
            ApiError::Unavailable(_) => 503,
            ApiError::Internal(_) => 500,
        }
    }

    /// The `reason` field of the Status object.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } | ApiError::UnknownResource => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. }
            | ApiError::FenceLost { .. }
            | ApiError::ApplyConflict { .. } => "Conflict",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Unauthorized(_) => "Unauthorized",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::MethodNotAllowed | ApiError::NotAllowedNow(_) => "MethodNotAllowed",
            // The webhook's own reason replaces this in the Status (see `status`).
            ApiError::Denied { .. } => "",
            ApiError::Expired(_) => "Expired",
            ApiError::Gone(_) => "Gone",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::TooLarge(_) => "RequestEntityTooLarge",
            ApiError::TooManyRequests { .. } => "TooManyRequests",
            ApiError::Timeout(_) => "Timeout",
            ApiError::Unavailable(_) => "ServiceUnavailable",
            ApiError::Internal(_) => "InternalError",
        }
    }

    /// The error as a Kubernetes `Status` object.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code(),
        });
        if let ApiError::Denied { reason, .. } = self {
            match reason.as_str() {
                "" => status.as_object_mut().map(|m| m.remove("reason")),
                r => status
                    .as_object_mut()
                    .map(|m| m.insert("reason".into(), r.into())),
            };
        }
        let details = match self {
            ApiError::NotFound {
                group,
                resource,
                name,
            }
            | ApiError::AlreadyExists {
                group,
                resource,
                name,
            }
            | ApiError::Conflict {
                group,
                resource,
                name,
                ..
            } => Some(json!({"name": name, "group": group, "kind": resource})),
            ApiError::Invalid {
                group,
                kind,
                name,
                causes,
            } => Some(json!({
                "name": name,
                "group": group,
                "kind": kind,
                "causes": causes.iter().map(|c| json!({
                    "reason": c.reason,
                    "message": c.message,
                    "field": c.field,
                })).collect::<Vec<_>>(),
            })),
            // A typed cause lets a deposed leader tell a lost fence from an ordinary conflict.
            ApiError::FenceLost { lease } => Some(json!({
                "name": lease,
                "causes": [{"reason": "FenceLost", "message": self.to_string(), "field": ""}],
            })),
            ApiError::ApplyConflict { causes, .. } => Some(json!({
                "causes": causes.iter().map(|c| json!({
                    "reason": c.reason,
                    "message": c.message,
                    "field": c.field,
                })).collect::<Vec<_>>(),
            })),
            ApiError::TooManyRequests {
                causes,
                retry_after_seconds,
                ..
            } => {
                let mut details = json!({});
                if !causes.is_empty() {
                    details["causes"] = causes
                        .iter()
                        .map(|c| {
                            let mut cause = json!({"reason": c.reason, "message": c.message});
                            if !c.field.is_empty() {
                                cause["field"] = json!(c.field);
                            }
                            cause
                        })
                        .collect();
                }
                if *retry_after_seconds > 0 {
                    details["retryAfterSeconds"] = json!(retry_after_seconds);
                }
                Some(details)
            }
            _ => None,
        };
        if let Some(mut d) = details {
            // Kubernetes leaves an empty group out.
            if d.get("group").is_some_and(|g| g == "") {
                if let Some(map) = d.as_object_mut() {
                    map.remove("group");
                }
            }
            status["details"] = d;
        }
        status
    }

    /// The error for gRPC clients: a code in the same spirit, the Status JSON in the details.
    pub fn to_grpc(&self) -> tonic::Status {
        use tonic::Code;
        let code = match self.code() {
            400 | 422 | 413 | 415 => Code::InvalidArgument,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 => Code::NotFound,
            405 => Code::Unimplemented,
            409 => match self {
                ApiError::AlreadyExists { .. } => Code::AlreadyExists,
                _ => Code::Aborted,
            },
            410 => Code::OutOfRange,
            429 => Code::ResourceExhausted,
            503 => Code::Unavailable,
            504 => Code::DeadlineExceeded,
            _ => Code::Internal,
        };
        let details = serde_json::to_vec(&self.status()).unwrap_or_default();
        tonic::Status::with_details(code, self.to_string(), details.into())
    }
}
