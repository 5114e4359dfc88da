//! ServiceAccount tokens: JWTs (HS256) signed with a key every master shares, issued through
//! the TokenRequest subresource (`serviceaccounts/<name>/token`, as `kubectl create token`) and
//! accepted as bearer tokens while unexpired and while the ServiceAccount they name still
//! exists with the same uid.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::hmac;
use serde_json::{json, Value};

use super::UserInfo;
use crate::error::ApiError;

pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The audience the API server accepts tokens for (kube-apiserver's `--api-audiences`, which
/// defaults to the issuer). A token requested without audiences gets this one; a token for
/// any other audience (`kubectl create token --audience=vault`) is for someone else and does
/// not authenticate here.
pub const API_AUDIENCE: &str = ISSUER;

/// The audiences a TokenRequest asked for, or the API's own when it asked for none.
pub fn audiences_or_default(requested: Vec<String>) -> Vec<String> {
    if requested.is_empty() {
        vec![API_AUDIENCE.to_string()]
    } else {
        requested
    }
}
/// Kubernetes' default and bounds for a requested token's lifetime (seconds).
const DEFAULT_TTL: i64 = 3600;
const MIN_TTL: i64 = 600;
const MAX_TTL: i64 = 48 * 3600;

/// The claims keel reads back from a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub expires: i64,
}

/// The user a ServiceAccount authenticates as.
pub fn user_of(claims: &Claims) -> UserInfo {
    UserInfo {
        name: format!("system:serviceaccount:{}:{}", claims.namespace, claims.name),
        uid: claims.uid.clone(),
        groups: vec![
            "system:serviceaccounts".to_string(),
            format!("system:serviceaccounts:{}", claims.namespace),
            super::authn::AUTHENTICATED.to_string(),
        ],
    }
}

/// Signs tokens with, and checks them against, the cluster's shared key.
#[derive(Clone)]
pub struct TokenSigner {
    key: hmac::Key,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSigner")
    }
}

impl TokenSigner {
    pub fn new(secret: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    /// A token for the ServiceAccount `namespace/name` (uid `uid`) valid until `expires`
    /// (Unix seconds), for `audiences`.
    pub fn issue(&self, claims: &Claims, issued: i64, audiences: &[String]) -> String {
        let header = json!({"alg": "HS256", "typ": "JWT"});
        let body = json!({
            "iss": ISSUER,
            "sub": format!("system:serviceaccount:{}:{}", claims.namespace, claims.name),
            "aud": audiences,
            "iat": issued,
            "nbf": issued,
            "exp": claims.expires,
            "kubernetes.io": {
                "namespace": claims.namespace,
                "serviceaccount": {"name": claims.name, "uid": claims.uid},
            },
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(body.to_string())
        );
        let tag = hmac::sign(&self.key, signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// The claims of a token this signer issued, if it is genuine and unexpired at `now`.
    pub fn verify(&self, token: &str, now: i64) -> Option<Claims> {
        let (signing_input, signature) = token.rsplit_once('.')?;
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        hmac::verify(&self.key, signing_input.as_bytes(), &signature).ok()?;
        let (_, body) = signing_input.split_once('.')?;
        let body: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).ok()?).ok()?;
        let expires = body["exp"].as_i64()?;
        if expires <= now || body["iss"] != ISSUER {
            return None;
        }
        // `aud` is a string or a list of strings (RFC 7519).
        let for_us = match &body["aud"] {
            Value::String(a) => a == API_AUDIENCE,
            Value::Array(list) => list.iter().any(|a| a == API_AUDIENCE),
            _ => false,
        };
        if !for_us {
            return None;
        }
        let k8s = &body["kubernetes.io"];
        Some(Claims {
            namespace: k8s["namespace"].as_str()?.to_string(),
            name: k8s["serviceaccount"]["name"].as_str()?.to_string(),
            uid: k8s["serviceaccount"]["uid"].as_str()?.to_string(),
            expires,
        })
    }
}

/// Whether a bearer token looks like a JWT (three dot-separated parts).
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

/// The lifetime a TokenRequest asks for, within Kubernetes' bounds.
pub fn requested_ttl(request: &Value) -> Result<i64, ApiError> {
    match request.pointer("/spec/expirationSeconds").and_then(Value::as_i64) {
        None => Ok(DEFAULT_TTL),
        Some(s) if s < MIN_TTL => Err(ApiError::BadRequest(format!(
            "spec.expirationSeconds: Invalid value: {s}: may not specify a duration less than 10 minutes"
        ))),
        Some(s) => Ok(s.min(MAX_TTL)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(expires: i64) -> Claims {
        Claims {
            namespace: "ns".into(),
            name: "robot".into(),
            uid: "u-1".into(),
            expires,
        }
    }

    fn ours() -> Vec<String> {
        audiences_or_default(Vec::new())
    }

    #[test]
    fn tokens_for_another_audience_do_not_authenticate_here() {
        let signer = TokenSigner::new(b"k");
        let vault = signer.issue(&claims(2000), 1000, &["vault".to_string()]);
        assert_eq!(signer.verify(&vault, 1500), None);
        let both = signer.issue(
            &claims(2000),
            1000,
            &["vault".to_string(), API_AUDIENCE.to_string()],
        );
        assert_eq!(signer.verify(&both, 1500), Some(claims(2000)));
        let none = signer.issue(&claims(2000), 1000, &[]);
        assert_eq!(
            signer.verify(&none, 1500),
            None,
            "an empty audience list names no one"
        );
        assert_eq!(ours(), vec![API_AUDIENCE.to_string()]);
    }

    #[test]
    fn issued_tokens_verify_until_they_expire() {
        let signer = TokenSigner::new(b"k");
        let token = signer.issue(&claims(2000), 1000, &ours());
        assert!(looks_like_jwt(&token));
        assert_eq!(signer.verify(&token, 1500), Some(claims(2000)));
        assert_eq!(signer.verify(&token, 2000), None, "expired");
        assert_eq!(user_of(&claims(0)).name, "system:serviceaccount:ns:robot");
    }

    #[test]
    fn tokens_from_another_key_or_altered_are_refused() {
        let token = TokenSigner::new(b"k").issue(&claims(2000), 1000, &ours());
        assert_eq!(TokenSigner::new(b"other").verify(&token, 1500), None);
        let (head, rest) = token.split_once('.').expect("three parts");
        let (_, sig) = rest.rsplit_once('.').expect("three parts");
        let forged_body = URL_SAFE_NO_PAD.encode(
            json!({"iss": ISSUER, "exp": 9999, "kubernetes.io": {"namespace": "kube-system",
                "serviceaccount": {"name": "admin", "uid": "x"}}})
            .to_string(),
        );
        let forged = format!("{head}.{forged_body}.{sig}");
        assert_eq!(TokenSigner::new(b"k").verify(&forged, 1500), None);
    }

    #[test]
    fn requested_lifetimes_are_bounded() {
        assert_eq!(requested_ttl(&json!({})).expect("default"), DEFAULT_TTL);
        assert!(requested_ttl(&json!({"spec": {"expirationSeconds": 60}})).is_err());
        assert_eq!(
            requested_ttl(&json!({"spec": {"expirationSeconds": 999_999}})).expect("capped"),
            MAX_TTL
        );
    }
}
