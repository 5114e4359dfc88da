//! Registry credentials from a pod's imagePullSecrets, as kubelet's credential keyring finds
//! them: `kubernetes.io/dockerconfigjson` (`{"auths": {registry: {...}}}`) and the older
//! `kubernetes.io/dockercfg` (`{registry: {...}}`) Secrets, matched to an image by its
//! registry host (Docker Hub for images that name none).

use keel_types::k8s_openapi::api::core::v1::Secret;
use serde_json::Value;

use crate::cri::AuthConfig;

/// The registry host an image reference pulls from: its first path segment when that looks
/// like a host (has a dot or a port, or is localhost), Docker Hub otherwise.
pub fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first
        }
        _ => "docker.io",
    }
}

/// The host a credential's key names (`https://host/v1/`, `host`, `host/path`).
fn key_host(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key);
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        other => other,
    }
}

/// The credentials in `secrets` that apply to `image`, in the order the secrets are listed.
pub fn credentials_for(image: &str, secrets: &[Secret]) -> Vec<AuthConfig> {
    let registry = registry_of(image);
    let mut found = Vec::new();
    for secret in secrets {
        let data = secret.data.clone().unwrap_or_default();
        let auths: Option<Value> = match secret.type_.as_deref() {
            Some("kubernetes.io/dockerconfigjson") => data
                .get(".dockerconfigjson")
                .and_then(|b| serde_json::from_slice::<Value>(&b.0).ok())
                .and_then(|v| v.get("auths").cloned()),
            Some("kubernetes.io/dockercfg") => data
                .get(".dockercfg")
                .and_then(|b| serde_json::from_slice(&b.0).ok()),
            _ => None,
        };
        let Some(Value::Object(auths)) = auths else {
            continue;
        };
        for (key, entry) in auths {
            if key_host(&key) != registry {
                continue;
            }
            let text = |field: &str| {
                entry
                    .get(field)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            found.push(AuthConfig {
                username: text("username"),
                password: text("password"),
                auth: text("auth"),
                // Left empty, as kubelet leaves it: the entry is already matched to the
                // image's registry, and containerd refuses a key that is not a URL
                // (`host:port`) where one is given.
                server_address: String::new(),
                identity_token: text("identitytoken"),
                registry_token: text("registrytoken"),
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_types::k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    fn secret(type_: &str, key: &str, json: &str) -> Secret {
        Secret {
            type_: Some(type_.into()),
            data: Some(BTreeMap::from([(
                key.to_owned(),
                ByteString(json.as_bytes().to_vec()),
            )])),
            ..Default::default()
        }
    }

    #[test]
    fn images_pull_from_their_first_segment_when_it_is_a_host_and_docker_hub_otherwise() {
        assert_eq!(
            registry_of("registry.example.com/team/app:1"),
            "registry.example.com"
        );
        assert_eq!(registry_of("localhost:5000/app"), "localhost:5000");
        assert_eq!(registry_of("localhost/app"), "localhost");
        assert_eq!(registry_of("library/busybox"), "docker.io");
        assert_eq!(registry_of("busybox"), "docker.io");
    }

    #[test]
    fn only_credentials_for_the_images_registry_are_used() {
        let secrets = [
            secret(
                "kubernetes.io/dockerconfigjson",
                ".dockerconfigjson",
                r#"{"auths": {"registry.example.com": {"username": "u", "password": "p"},
                              "other.example.com": {"auth": "eDp5"}}}"#,
            ),
            secret(
                "kubernetes.io/dockercfg",
                ".dockercfg",
                r#"{"https://index.docker.io/v1/": {"auth": "aHViOmh1Yg=="}}"#,
            ),
            secret("Opaque", "x", "{}"),
        ];
        let found = credentials_for("registry.example.com/app:1", &secrets);
        assert_eq!(found.len(), 1);
        assert_eq!(
            (found[0].username.as_str(), found[0].password.as_str()),
            ("u", "p")
        );
        assert!(found[0].server_address.is_empty());
        let hub = credentials_for("busybox:1", &secrets);
        assert_eq!(hub.len(), 1);
        assert_eq!(hub[0].auth, "aHViOmh1Yg==");
        assert!(credentials_for("quay.io/app", &secrets).is_empty());
    }
}
