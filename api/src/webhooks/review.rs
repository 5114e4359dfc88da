//! The `admission.k8s.io/v1` AdmissionReview a webhook is sent, and what its answer means:
//! allowed or denied (with Kubernetes' `admission webhook "x" denied the request: …`
//! message and code), a JSONPatch to apply (mutating webhooks only), and warnings.

use base64::Engine;
use serde_json::{json, Value};

use super::rules::Request;
use crate::auth::UserInfo;
use crate::error::ApiError;

/// The AdmissionReview for `r`, with `uid` naming this call.
pub fn request(r: &Request<'_>, uid: &str, user: &UserInfo, dry_run: bool) -> Value {
    let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
    let gvr = json!({"group": r.group, "version": r.version, "resource": r.resource});
    let options_kind = match r.operation {
        "CREATE" => "CreateOptions",
        "UPDATE" => "UpdateOptions",
        _ => "DeleteOptions",
    };
    let mut request = json!({
        "uid": uid,
        "kind": gvk,
        "resource": gvr,
        "requestKind": gvk,
        "requestResource": gvr,
        "name": r.name,
        "operation": r.operation,
        "userInfo": {"username": user.name, "uid": user.uid, "groups": user.groups},
        "object": r.object.cloned().unwrap_or(Value::Null),
        "oldObject": r.old_object.cloned().unwrap_or(Value::Null),
        "dryRun": dry_run,
        "options": {"kind": options_kind, "apiVersion": "meta.k8s.io/v1"},
    });
    if !r.subresource.is_empty() {
        request["subResource"] = json!(r.subresource);
        request["requestSubResource"] = json!(r.subresource);
    }
    if r.namespaced {
        request["namespace"] = json!(r.namespace);
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
}

/// A webhook's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The JSONPatch to apply, if the webhook sent one.
    pub patch: Option<json_patch::Patch>,
    pub warnings: Vec<String>,
}

/// Reads a webhook's answer to the review with `uid`. A denial is the error the request
/// fails with; an answer that is not a valid review is a failure to call the webhook
/// (`Err(Err(message))`), which the failure policy decides about.
pub fn verdict(
    webhook: &str,
    uid: &str,
    mutating: bool,
    body: &[u8],
) -> Result<Verdict, Result<ApiError, String>> {
    let review: Value = serde_json::from_slice(body)
        .map_err(|e| Err(format!("failed to decode the webhook's response: {e}")))?;
    let Some(response) = review.get("response").filter(|r| r.is_object()) else {
        return Err(Err("webhook response was absent".into()));
    };
    if response.get("uid").and_then(Value::as_str) != Some(uid) {
        return Err(Err(format!(
            "expected response.uid={uid:?}, got {:?}",
            response.get("uid").and_then(Value::as_str).unwrap_or("")
        )));
    }
    let warnings = response
        .get("warnings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|w| w.as_str().map(str::to_string))
        .collect();
    if response.get("allowed").and_then(Value::as_bool) != Some(true) {
        return Err(Ok(denied(webhook, response.get("status"))));
    }
    let patch = match response.get("patch").and_then(Value::as_str) {
        None | Some("") => None,
        Some(_) if !mutating => {
            return Err(Err("validating webhook may not return a patch".into()));
        }
        Some(encoded) => {
            match response.get("patchType").and_then(Value::as_str) {
                Some("JSONPatch") => {}
                other => {
                    return Err(Err(format!(
                        "unsupported patch type {:?}",
                        other.unwrap_or("")
                    )))
                }
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| Err(format!("the patch is not base64: {e}")))?;
            let patch: json_patch::Patch = serde_json::from_slice(&bytes)
                .map_err(|e| Err(format!("the patch is not a JSONPatch: {e}")))?;
            Some(patch)
        }
    };
    Ok(Verdict { patch, warnings })
}

/// The error a denial gives, as kube-apiserver words it: the webhook's own status, its
/// code at least 400, its message prefixed with who denied the request.
fn denied(webhook: &str, status: Option<&Value>) -> ApiError {
    let text = |f: &str| {
        status
            .and_then(|s| s.get(f))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let code = status
        .and_then(|s| s.get("code"))
        .and_then(Value::as_u64)
        .map(|c| c as u16)
        .filter(|c| *c >= 400)
        .unwrap_or(400);
    let by = format!("admission webhook {webhook:?} denied the request");
    let (message, reason) = (text("message"), text("reason"));
    let message = if !message.is_empty() {
        format!("{by}: {message}")
    } else if !reason.is_empty() {
        format!("{by}: {reason}")
    } else {
        format!("{by} without explanation")
    };
    ApiError::Denied {
        code,
        reason,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(response: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}))
            .expect("encodes")
    }

    #[test]
    fn allowed_denied_patched_and_broken_answers() {
        let ok = verdict(
            "h",
            "u1",
            false,
            &answer(json!({"uid": "u1", "allowed": true, "warnings": ["careful"]})),
        );
        assert_eq!(
            ok,
            Ok(Verdict {
                patch: None,
                warnings: vec!["careful".into()]
            })
        );

        let no = verdict(
            "deny.example.com",
            "u1",
            false,
            &answer(json!({"uid": "u1", "allowed": false,
            "status": {"message": "not today", "code": 403, "reason": "Forbidden"}})),
        );
        let Err(Ok(e)) = no else { panic!("{no:?}") };
        assert_eq!(
            e.to_string(),
            "admission webhook \"deny.example.com\" denied the request: not today"
        );
        assert_eq!(e.code(), 403);
        let Err(Ok(bare)) = verdict(
            "h",
            "u1",
            false,
            &answer(json!({"uid": "u1", "allowed": false})),
        ) else {
            panic!()
        };
        assert_eq!(
            bare.to_string(),
            "admission webhook \"h\" denied the request without explanation"
        );
        assert_eq!(bare.code(), 400);

        let patch = base64::engine::general_purpose::STANDARD
            .encode(r#"[{"op":"add","path":"/metadata/labels","value":{"a":"b"}}]"#);
        let patched = verdict(
            "m",
            "u1",
            true,
            &answer(
                json!({"uid": "u1", "allowed": true, "patchType": "JSONPatch", "patch": patch}),
            ),
        );
        assert!(patched.is_ok_and(|v| v.patch.is_some()));
        let from_validating = verdict(
            "v",
            "u1",
            false,
            &answer(
                json!({"uid": "u1", "allowed": true, "patchType": "JSONPatch", "patch": patch}),
            ),
        );
        assert!(matches!(from_validating, Err(Err(_))));
        assert!(matches!(
            verdict("h", "u1", false, b"not json"),
            Err(Err(_))
        ));
        assert!(matches!(
            verdict(
                "h",
                "u1",
                false,
                &answer(json!({"uid": "other", "allowed": true}))
            ),
            Err(Err(_))
        ));
    }
}
