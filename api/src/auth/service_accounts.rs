//! ServiceAccount tokens: JWTs signed with ES256 by a P-256 key every master shares, issued
//! through the TokenRequest subresource (`serviceaccounts/<name>/token`, as `kubectl create
//! token`) and accepted as bearer tokens while unexpired, for one of the API server's
//! audiences, while the ServiceAccount they name still exists with the same uid and, for a
//! token bound to a pod or secret, while that object does. The public key is published as a
//! JWKS (`/openid/v1/jwks`, with OpenID discovery beside it), so other services verify tokens
//! without holding anything secret, as with Kubernetes.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use serde_json::{json, Value};

use super::UserInfo;
use crate::error::ApiError;

pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The audience the API server accepts tokens for by default (kube-apiserver's
/// `--api-audiences` defaults to the issuer). A token requested without audiences gets the
/// API server's; a token for any other audience (`kubectl create token --audience=vault`) is
/// for someone else and does not authenticate here.
pub const API_AUDIENCE: &str = ISSUER;
/// How far a token's not-before may lie ahead of this master's clock (masters' clocks differ
/// a little), as go-jose's default leeway.
const NOT_BEFORE_LEEWAY: i64 = 60;

/// The audiences a TokenRequest asked for, or the API's own when it asked for none.
pub fn audiences_or_default(requested: Vec<String>, api: &[String]) -> Vec<String> {
    if !requested.is_empty() {
        requested
    } else if api.is_empty() {
        vec![API_AUDIENCE.to_string()]
    } else {
        api.to_vec()
    }
}
/// Kubernetes' default and bounds for a requested token's lifetime (seconds).
const DEFAULT_TTL: i64 = 3600;
const MIN_TTL: i64 = 600;
const MAX_TTL: i64 = 48 * 3600;

/// The object a token is bound to: it authenticates only while that object exists with the
/// same uid (Kubernetes' bound service account tokens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundObject {
    /// `Pod` or `Secret`.
    pub kind: String,
    pub name: String,
    pub uid: String,
}

/// The claims keel reads back from a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub expires: i64,
    pub bound: Option<BoundObject>,
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

/// The DER prefix of a P-256 public key's SubjectPublicKeyInfo (RFC 5480), before the
/// uncompressed point: SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING }.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Signs tokens with, and checks them against, the cluster's shared key.
#[derive(Clone)]
pub struct TokenSigner {
    key: Arc<EcdsaKeyPair>,
    /// The uncompressed public point (0x04, x, y).
    public: Vec<u8>,
    /// The key's id: the SHA-256 of its SubjectPublicKeyInfo, as Kubernetes names its keys.
    kid: String,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("kid", &self.kid)
            .finish()
    }
}

impl TokenSigner {
    /// A new signing key (PKCS#8 DER), for the first master to store.
    pub fn generate_key() -> Result<Vec<u8>, String> {
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .map(|doc| doc.as_ref().to_vec())
            .map_err(|_| "generating a P-256 key failed".to_string())
    }

    /// The signer of the key `pkcs8` (a P-256 key, PKCS#8 DER).
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, String> {
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8,
            &SystemRandom::new(),
        )
        .map_err(|e| format!("the service account signing key: {e}"))?;
        let public = key.public_key().as_ref().to_vec();
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(&public);
        let kid = URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, &spki));
        Ok(Self {
            key: Arc::new(key),
            public,
            kid,
        })
    }

    /// A token for the ServiceAccount `namespace/name` (uid `uid`) valid until `expires`
    /// (Unix seconds), for `audiences`.
    pub fn issue(
        &self,
        claims: &Claims,
        issued: i64,
        audiences: &[String],
    ) -> Result<String, ApiError> {
        let header = json!({"alg": "ES256", "kid": self.kid, "typ": "JWT"});
        let mut private = json!({
            "namespace": claims.namespace,
            "serviceaccount": {"name": claims.name, "uid": claims.uid},
        });
        if let Some(bound) = &claims.bound {
            private[bound.kind.to_lowercase()] = json!({"name": bound.name, "uid": bound.uid});
        }
        let body = json!({
            "iss": ISSUER,
            "sub": format!("system:serviceaccount:{}:{}", claims.namespace, claims.name),
            "aud": audiences,
            "iat": issued,
            "nbf": issued,
            "exp": claims.expires,
            "kubernetes.io": private,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(body.to_string())
        );
        let signature = self
            .key
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .map_err(|_| ApiError::Internal("signing a token failed".into()))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }

    /// The claims of a token this signer issued, if it is genuine, for one of `audiences`,
    /// and within its validity at `now`. Whether its ServiceAccount and bound object still
    /// exist is the caller's to check.
    pub fn verify(&self, token: &str, now: i64, audiences: &[String]) -> Option<Claims> {
        let (signing_input, signature) = token.rsplit_once('.')?;
        let (header, body) = signing_input.split_once('.')?;
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
        // Only our algorithm: a token naming another (none, HS256) is not ours, whatever it
        // says.
        if header["alg"] != "ES256" {
            return None;
        }
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.public)
            .verify(signing_input.as_bytes(), &signature)
            .ok()?;
        let body: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).ok()?).ok()?;
        let expires = body["exp"].as_i64()?;
        if expires <= now || body["iss"] != ISSUER {
            return None;
        }
        if body["nbf"]
            .as_i64()
            .is_some_and(|nbf| nbf > now + NOT_BEFORE_LEEWAY)
        {
            return None;
        }
        let ours = |a: &Value| {
            a.as_str()
                .is_some_and(|a| audiences.iter().any(|ours| ours == a))
        };
        // `aud` is a string or a list of strings (RFC 7519).
        let for_us = match &body["aud"] {
            Value::Array(list) => list.iter().any(ours),
            single => ours(single),
        };
        if !for_us {
            return None;
        }
        let k8s = &body["kubernetes.io"];
        let bound = ["pod", "secret"].iter().find_map(|kind| {
            let object = k8s.get(*kind)?;
            Some(BoundObject {
                kind: if *kind == "pod" { "Pod" } else { "Secret" }.to_string(),
                name: object["name"].as_str()?.to_string(),
                uid: object["uid"].as_str()?.to_string(),
            })
        });
        Some(Claims {
            namespace: k8s["namespace"].as_str()?.to_string(),
            name: k8s["serviceaccount"]["name"].as_str()?.to_string(),
            uid: k8s["serviceaccount"]["uid"].as_str()?.to_string(),
            expires,
            bound,
        })
    }

    /// The public key as a JSON Web Key Set, as `/openid/v1/jwks` serves it.
    pub fn jwks(&self) -> Value {
        let (x, y) = self.public[1..].split_at(32);
        json!({"keys": [{
            "use": "sig",
            "kty": "EC",
            "kid": self.kid,
            "crv": "P-256",
            "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(x),
            "y": URL_SAFE_NO_PAD.encode(y),
        }]})
    }
}

/// The OpenID provider configuration `/.well-known/openid-configuration` serves: enough for a
/// relying party to find the keys that verify ServiceAccount tokens.
pub fn openid_configuration() -> Value {
    json!({
        "issuer": ISSUER,
        "jwks_uri": format!("{ISSUER}/openid/v1/jwks"),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
    })
}

/// The object a TokenRequest's `spec.boundObjectRef` names: kind (Pod or Secret), name and
/// the uid it must have, if given.
pub fn requested_binding(
    request: &Value,
) -> Result<Option<(String, String, Option<String>)>, ApiError> {
    let Some(reference) = request
        .pointer("/spec/boundObjectRef")
        .filter(|r| !r.is_null())
    else {
        return Ok(None);
    };
    let kind = reference["kind"].as_str().unwrap_or_default();
    let name = reference["name"].as_str().unwrap_or_default();
    if kind != "Pod" && kind != "Secret" {
        return Err(ApiError::BadRequest(format!(
            "spec.boundObjectRef.kind: Unsupported value: {kind:?}: supported values: \"Pod\", \"Secret\""
        )));
    }
    if name.is_empty() {
        return Err(ApiError::BadRequest(
            "spec.boundObjectRef.name: Required value".into(),
        ));
    }
    let uid = reference["uid"]
        .as_str()
        .filter(|u| !u.is_empty())
        .map(str::to_string);
    Ok(Some((kind.to_string(), name.to_string(), uid)))
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
            bound: None,
        }
    }

    fn ours() -> Vec<String> {
        audiences_or_default(Vec::new(), &[])
    }

    fn signer() -> TokenSigner {
        TokenSigner::from_pkcs8(&TokenSigner::generate_key().expect("key")).expect("signer")
    }

    #[test]
    fn tokens_for_another_audience_do_not_authenticate_here() {
        let signer = signer();
        let vault = signer
            .issue(&claims(2000), 1000, &["vault".to_string()])
            .expect("issue");
        assert_eq!(signer.verify(&vault, 1500, &ours()), None);
        assert_eq!(
            signer.verify(&vault, 1500, &["vault".to_string()]),
            Some(claims(2000)),
            "the audience the API server is configured with"
        );
        let both = signer
            .issue(
                &claims(2000),
                1000,
                &["vault".to_string(), API_AUDIENCE.to_string()],
            )
            .expect("issue");
        assert_eq!(signer.verify(&both, 1500, &ours()), Some(claims(2000)));
        let none = signer.issue(&claims(2000), 1000, &[]).expect("issue");
        assert_eq!(
            signer.verify(&none, 1500, &ours()),
            None,
            "an empty audience list names no one"
        );
        assert_eq!(ours(), vec![API_AUDIENCE.to_string()]);
        assert_eq!(
            audiences_or_default(Vec::new(), &["api".to_string()]),
            ["api"]
        );
    }

    #[test]
    fn issued_tokens_verify_from_not_before_until_they_expire() {
        let signer = signer();
        let token = signer.issue(&claims(2000), 1000, &ours()).expect("issue");
        assert!(looks_like_jwt(&token));
        assert_eq!(signer.verify(&token, 1500, &ours()), Some(claims(2000)));
        assert_eq!(signer.verify(&token, 2000, &ours()), None, "expired");
        assert_eq!(
            signer.verify(&token, 950, &ours()),
            Some(claims(2000)),
            "within the leeway"
        );
        assert_eq!(signer.verify(&token, 900, &ours()), None, "not yet valid");
        assert_eq!(user_of(&claims(0)).name, "system:serviceaccount:ns:robot");
    }

    #[test]
    fn tokens_from_another_key_altered_or_of_another_algorithm_are_refused() {
        let token = signer().issue(&claims(2000), 1000, &ours()).expect("issue");
        assert_eq!(signer().verify(&token, 1500, &ours()), None);
        let (head, rest) = token.split_once('.').expect("three parts");
        let (_, sig) = rest.rsplit_once('.').expect("three parts");
        let forged_body = URL_SAFE_NO_PAD.encode(
            json!({"iss": ISSUER, "aud": [ISSUER], "exp": 9999, "kubernetes.io": {"namespace": "kube-system",
                "serviceaccount": {"name": "admin", "uid": "x"}}})
            .to_string(),
        );
        let forged = format!("{head}.{forged_body}.{sig}");
        let owner = signer();
        assert_eq!(owner.verify(&forged, 1500, &ours()), None);
        let none = format!(
            "{}.{forged_body}.",
            URL_SAFE_NO_PAD.encode(json!({"alg": "none"}).to_string())
        );
        assert_eq!(owner.verify(&none, 1500, &ours()), None);
    }

    #[test]
    fn a_bound_token_carries_its_object_and_the_key_is_published() {
        let signer = signer();
        let mut bound = claims(2000);
        bound.bound = Some(BoundObject {
            kind: "Pod".into(),
            name: "web-0".into(),
            uid: "p-1".into(),
        });
        let token = signer.issue(&bound, 1000, &ours()).expect("issue");
        assert_eq!(signer.verify(&token, 1500, &ours()), Some(bound));
        let jwks = signer.jwks();
        let key = &jwks["keys"][0];
        assert_eq!(key["kty"], "EC");
        assert_eq!(key["alg"], "ES256");
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(key["x"].as_str().expect("x"))
                .expect("b64")
                .len(),
            32
        );
        let header: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').next().expect("header"))
                .expect("b64"),
        )
        .expect("json");
        assert_eq!(header["kid"], key["kid"], "tokens name the published key");
        assert_eq!(
            openid_configuration()["jwks_uri"],
            format!("{ISSUER}/openid/v1/jwks")
        );
    }

    #[test]
    fn bindings_name_a_pod_or_a_secret() {
        let pod = json!({"spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p", "uid": "u"}}});
        assert_eq!(
            requested_binding(&pod).expect("valid"),
            Some(("Pod".into(), "p".into(), Some("u".into())))
        );
        assert_eq!(requested_binding(&json!({"spec": {}})).expect("none"), None);
        assert!(requested_binding(
            &json!({"spec": {"boundObjectRef": {"kind": "Node", "name": "n"}}})
        )
        .is_err());
        assert!(requested_binding(&json!({"spec": {"boundObjectRef": {"kind": "Pod"}}})).is_err());
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
