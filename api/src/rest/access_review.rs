//! `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews` (`kubectl auth can-i`): may
//! the caller do what `spec.resourceAttributes` or `spec.nonResourceAttributes` describes? The
//! answer comes from the same authorizer every request goes through; nothing is stored.
//! kubectl sends the review as protobuf, which [`super::protobuf`] reads.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::{protobuf, response, Core, MAX_BODY_BYTES};
use crate::auth::{Attributes, Authenticated, UserInfo};
use crate::error::ApiError;
use crate::server::ApiServer;
use crate::storage::Storage;
use axum::Extension;

const GROUP: &str = "authorization.k8s.io";
const RESOURCE: &str = "selfsubjectaccessreviews";

/// The attributes a review's spec asks about, for `user`.
pub fn attributes_of(spec: &Value, user: UserInfo) -> Result<Attributes, ApiError> {
    let s = |v: &Value, f: &str| {
        v.get(f)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    if let Some(r) = spec.get("resourceAttributes").filter(|r| r.is_object()) {
        return Ok(Attributes {
            user,
            verb: s(r, "verb"),
            api_group: s(r, "group"),
            resource: s(r, "resource"),
            subresource: s(r, "subresource"),
            namespace: s(r, "namespace"),
            name: s(r, "name"),
            path: None,
        });
    }
    if let Some(n) = spec.get("nonResourceAttributes").filter(|n| n.is_object()) {
        return Ok(Attributes {
            user,
            verb: s(n, "verb"),
            path: Some(s(n, "path")),
            ..Default::default()
        });
    }
    Err(ApiError::Invalid {
        group: GROUP.into(),
        kind: "SelfSubjectAccessReview".into(),
        name: String::new(),
        causes: vec![crate::error::Cause {
            field: "spec.resourceAttributes".into(),
            reason: "FieldValueRequired".into(),
            message: "Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified".into(),
        }],
    })
}

async fn review<S: Storage>(
    core: &ApiServer<S>,
    user: UserInfo,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, ApiError> {
    core.authorize(&Attributes {
        user: user.clone(),
        verb: "create".into(),
        api_group: GROUP.into(),
        resource: RESOURCE.into(),
        ..Default::default()
    })
    .await?;
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::TooLarge(format!(
            "Request entity too large: limit is {MAX_BODY_BYTES}"
        )));
    }
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mut review: Value = if media.starts_with(protobuf::MEDIA_TYPE) {
        protobuf::object(body)?
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("the object is not valid JSON: {e}")))?
    };
    let attrs = attributes_of(review.get("spec").unwrap_or(&Value::Null), user)?;
    let status = match core.authorize(&attrs).await {
        Ok(()) => json!({"allowed": true}),
        Err(ApiError::Forbidden(_)) => json!({"allowed": false}),
        Err(e) => return Err(e),
    };
    review["status"] = status;
    review["kind"] = json!("SelfSubjectAccessReview");
    review["apiVersion"] = json!(format!("{GROUP}/v1"));
    if review.get("metadata").is_none() {
        review["metadata"] = json!({});
    }
    Ok(review)
}

pub async fn create<S: Storage>(
    State(core): State<Core<S>>,
    headers: HeaderMap,
    Extension(Authenticated(user)): Extension<Authenticated>,
    body: Bytes,
) -> Response {
    match review(&core, user, &headers, &body).await {
        Ok(v) => response::json(StatusCode::CREATED, &v, &[]),
        Err(e) => response::error(&e),
    }
}
