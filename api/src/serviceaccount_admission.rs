//! ServiceAccount admission, as kube-apiserver's plugin of that name does it for a new pod: the
//! pod runs as `default` when it names no ServiceAccount, and unless the pod (or else its
//! ServiceAccount) turns `automountServiceAccountToken` off, every container and init
//! container that mounts nothing at the token path gets a read-only mount of a projected
//! `kube-api-access-<random>` volume: a bound token, the cluster CA and the namespace.
//!
//! The decisions are plain functions over JSON; [`ApiServer`] reads the ServiceAccount.

use keel_types::ResourceInfo;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::meta;
use crate::server::ApiServer;
use crate::storage::Storage;

/// The ServiceAccount a pod that names none runs as.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// Where containers find their API credentials.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The prefix of the projected volume's name.
pub const VOLUME_PREFIX: &str = "kube-api-access-";
/// The token's lifetime: an hour and seven seconds, which tells these tokens apart from ones
/// asked for explicitly.
pub const TOKEN_EXPIRATION_SECONDS: i64 = 3607;
/// 0644: every file of the volume readable by the container's user.
pub const DEFAULT_MODE: i64 = 420;
/// Annotation of a mirror pod (a kubelet's static pod): its spec is never changed.
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// The projected volume named `name` that holds a pod's API credentials.
pub fn token_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "defaultMode": DEFAULT_MODE,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        },
    })
}

/// Whether a pod gets the token mounted: the pod's own choice wins, then its ServiceAccount's
/// (`None` when it has none or the account is not there), and otherwise it does.
pub fn should_automount(pod: &Value, service_account: Option<&Value>) -> bool {
    if let Some(own) = pod
        .pointer("/spec/automountServiceAccountToken")
        .and_then(Value::as_bool)
    {
        return own;
    }
    service_account
        .and_then(|sa| sa.get("automountServiceAccountToken"))
        .and_then(Value::as_bool)
        .unwrap_or(true)
}

/// Sets `spec.serviceAccountName` to `default` when empty; returns the name.
pub fn default_service_account_name(pod: &mut Value) -> String {
    let name = meta::str_field(pod, &["spec", "serviceAccountName"])
        .unwrap_or("")
        .to_string();
    if !name.is_empty() {
        return name;
    }
    if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("serviceAccountName".into(), json!(DEFAULT_SERVICE_ACCOUNT));
    }
    DEFAULT_SERVICE_ACCOUNT.to_string()
}

/// Mounts the token volume into every container and init container that has nothing at
/// [`TOKEN_MOUNT_PATH`], adding the volume (named `new_name` unless the pod already has a
/// `kube-api-access-` volume) when some container needed it.
pub fn mount_token(pod: &mut Value, new_name: &str) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let existing = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.get("name").and_then(Value::as_str))
        .find(|n| n.starts_with(VOLUME_PREFIX))
        .map(str::to_string);
    let name = existing.clone().unwrap_or_else(|| new_name.to_string());
    let mount = json!({"name": name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
    let mut needed = false;
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for container in containers.iter_mut().filter_map(Value::as_object_mut) {
            let mounts = container
                .entry("volumeMounts")
                .or_insert_with(|| Value::Array(Vec::new()));
            if mounts.is_null() {
                *mounts = Value::Array(Vec::new());
            }
            let Some(mounts) = mounts.as_array_mut() else {
                // Not a list: decoding refuses the pod with the field named.
                continue;
            };
            let taken = mounts
                .iter()
                .any(|m| m.get("mountPath").and_then(Value::as_str) == Some(TOKEN_MOUNT_PATH));
            if !taken {
                mounts.push(mount.clone());
                needed = true;
            }
        }
    }
    if existing.is_some() || !needed {
        return;
    }
    let volumes = spec
        .entry("volumes")
        .or_insert_with(|| Value::Array(Vec::new()));
    if volumes.is_null() {
        *volumes = Value::Array(Vec::new());
    }
    if let Some(volumes) = volumes.as_array_mut() {
        volumes.push(token_volume(&name));
    }
}

fn is_mirror_pod(pod: &Value) -> bool {
    pod.pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION))
}

impl<S: Storage> ApiServer<S> {
    /// Gives a new pod its ServiceAccount and API credentials (other kinds pass untouched).
    /// Runs before the pod is validated, as Kubernetes' mutating admission does.
    ///
    /// A pod naming a ServiceAccount that does not exist is refused with Kubernetes' message;
    /// one left to `default` is admitted even before the ServiceAccount controller has
    /// created that account in its namespace, so that a pod created right after its namespace
    /// is not refused for a race it cannot see.
    pub(crate) async fn admit_service_account(
        &self,
        info: &'static ResourceInfo,
        pod: &mut Value,
    ) -> Result<(), ApiError> {
        if !crate::priority_admission::is_pod(info) || is_mirror_pod(pod) {
            return Ok(());
        }
        if !pod.get("spec").is_some_and(Value::is_object) {
            return Ok(());
        }
        let named =
            meta::str_field(pod, &["spec", "serviceAccountName"]).is_some_and(|n| !n.is_empty());
        let name = default_service_account_name(pod);
        let namespace = meta::namespace(pod).to_string();
        let account = match keel_types::kinds::by_kind("v1", "ServiceAccount") {
            Some(sa_info) => match self.get_cached(sa_info, Some(&namespace), &name).await {
                Ok(sa) => Some(sa),
                Err(ApiError::NotFound { .. }) if !named || name == DEFAULT_SERVICE_ACCOUNT => None,
                Err(ApiError::NotFound { .. }) => {
                    return Err(ApiError::Forbidden(format!(
                        "pods \"{}\" is forbidden: error looking up service account {namespace}/{name}: serviceaccount \"{name}\" not found",
                        meta::name(pod)
                    )));
                }
                Err(e) => return Err(e),
            },
            None => None,
        };
        if should_automount(pod, account.as_ref()) {
            let volume = meta::generate_name(VOLUME_PREFIX);
            mount_token(pod, &volume);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "default"}, "spec": spec})
    }

    #[test]
    fn a_pod_without_an_account_runs_as_default() {
        let mut p = pod(json!({"containers": []}));
        assert_eq!(default_service_account_name(&mut p), "default");
        assert_eq!(p["spec"]["serviceAccountName"], "default");
        let mut own = pod(json!({"serviceAccountName": "builder"}));
        assert_eq!(default_service_account_name(&mut own), "builder");
    }

    #[test]
    fn every_container_and_init_container_mounts_the_token_volume_read_only() {
        let mut p = pod(json!({
            "initContainers": [{"name": "i"}],
            "containers": [{"name": "a"}, {"name": "b", "volumeMounts": [{"name": "x", "mountPath": "/x"}]}],
        }));
        mount_token(&mut p, "kube-api-access-abcde");
        let mount = json!({"name": "kube-api-access-abcde", "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
        assert_eq!(
            p["spec"]["initContainers"][0]["volumeMounts"],
            json!([mount])
        );
        assert_eq!(p["spec"]["containers"][0]["volumeMounts"], json!([mount]));
        assert_eq!(p["spec"]["containers"][1]["volumeMounts"][1], mount);
        assert_eq!(
            p["spec"]["volumes"],
            json!([token_volume("kube-api-access-abcde")])
        );
        let sources = &p["spec"]["volumes"][0]["projected"]["sources"];
        assert_eq!(sources[0]["serviceAccountToken"]["expirationSeconds"], 3607);
        assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
        assert_eq!(
            sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"],
            "metadata.namespace"
        );
        assert_eq!(p["spec"]["volumes"][0]["projected"]["defaultMode"], 420);
    }

    #[test]
    fn a_container_with_its_own_mount_at_the_token_path_keeps_it() {
        let own = json!({"name": "mine", "mountPath": TOKEN_MOUNT_PATH});
        let mut p = pod(json!({"containers": [{"name": "a", "volumeMounts": [own.clone()]}]}));
        mount_token(&mut p, "kube-api-access-abcde");
        assert_eq!(p["spec"]["containers"][0]["volumeMounts"], json!([own]));
        assert!(p["spec"].get("volumes").is_none(), "no container needs it");
    }

    #[test]
    fn an_existing_token_volume_is_reused() {
        let mut p = pod(json!({
            "containers": [{"name": "a"}],
            "volumes": [token_volume("kube-api-access-zzzzz")],
        }));
        mount_token(&mut p, "kube-api-access-abcde");
        assert_eq!(
            p["spec"]["containers"][0]["volumeMounts"][0]["name"],
            "kube-api-access-zzzzz"
        );
        assert_eq!(p["spec"]["volumes"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn the_pods_choice_wins_over_its_accounts() {
        let off = json!({"automountServiceAccountToken": false});
        let on = json!({"automountServiceAccountToken": true});
        assert!(should_automount(&pod(json!({})), None));
        assert!(!should_automount(&pod(json!({})), Some(&off)));
        assert!(should_automount(
            &pod(json!({"automountServiceAccountToken": true})),
            Some(&off)
        ));
        assert!(!should_automount(
            &pod(json!({"automountServiceAccountToken": false})),
            Some(&on)
        ));
    }
}
