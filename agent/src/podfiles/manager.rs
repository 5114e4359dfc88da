//! The volume manager: sets up a pod's volumes under its directory (emptyDir, hostPath,
//! configMap, secret, downwardAPI, projected), refreshes the projected ones on every setup
//! of a running pod, gives a container's CRI mounts, and tears a pod's directory down.
//!
//! File work runs on the caller's task: volumes are small and local, and a sync of one pod
//! waits for its volumes anyway.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use keel_client::k8s_openapi::api::core::v1::{Container, Pod, Volume};
use keel_types::Quantity;

use super::atomic::write_atomically;
use super::mounts::container_mounts;
use super::projection::volume_references;
use super::tokens::TokenCache;
use super::{hostpath, tmpfs, volume_payload, Fetched, MountError, NodeFacts, Sources, TokenSpec};
use crate::cri::Mount;
use crate::labels;
use crate::Error;

/// The lifetime a projected token asks for when its volume does not say.
const DEFAULT_TOKEN_EXPIRATION_SECONDS: i64 = 3600;

/// `<pod dir>/volumes/<plugin>/<volume>`: where a volume of `plugin` (kubelet's escaped
/// plugin name, e.g. `kubernetes.io~configmap`) lives.
pub fn plugin_dir(pod_dir: &Path, plugin: &str, volume: &str) -> PathBuf {
    pod_dir.join("volumes").join(plugin).join(volume)
}

/// kubelet's plugin directory name for the volumes that live in the pod's directory.
fn plugin_of(volume: &Volume) -> Option<&'static str> {
    if volume.empty_dir.is_some() {
        Some("kubernetes.io~empty-dir")
    } else if volume.config_map.is_some() {
        Some("kubernetes.io~configmap")
    } else if volume.secret.is_some() {
        Some("kubernetes.io~secret")
    } else if volume.downward_api.is_some() {
        Some("kubernetes.io~downward-api")
    } else if volume.projected.is_some() {
        Some("kubernetes.io~projected")
    } else {
        None
    }
}

fn pod_uid(pod: &Pod) -> Result<&str, String> {
    let uid = pod.metadata.uid.as_deref().unwrap_or("");
    if uid.is_empty() || uid.contains('/') || uid.starts_with('.') {
        return Err(format!("pod uid {uid:?} cannot name a directory"));
    }
    Ok(uid)
}

/// Sets up, refreshes and removes the volumes of the node's pods.
pub struct VolumeManager<S> {
    root: PathBuf,
    sources: S,
    tokens: TokenCache,
}

impl<S: Sources> VolumeManager<S> {
    /// A manager for pods under `<root>/pods` (`root` is the agent's `--root-dir`).
    pub fn new(root: impl Into<PathBuf>, sources: S) -> Self {
        Self {
            root: root.into(),
            sources,
            tokens: TokenCache::default(),
        }
    }

    /// The sources volumes are read from, for the environment to read from the same cache.
    pub fn sources(&self) -> &S {
        &self.sources
    }

    /// Where `volume` of `pod` is on the node: its directory under the pod's, or a
    /// hostPath's own path; `None` for types the agent does not support.
    pub fn volume_path(&self, pod: &Pod, volume: &Volume) -> Option<PathBuf> {
        if let Some(host) = &volume.host_path {
            return Some(PathBuf::from(&host.path));
        }
        let uid = pod_uid(pod).ok()?;
        let plugin = plugin_of(volume)?;
        Some(plugin_dir(
            &labels::pod_dir(&self.root, uid),
            plugin,
            &volume.name,
        ))
    }

    /// Sets up every volume of `pod`, idempotently: a second call for a running pod writes
    /// the projected volumes' new contents (atomically) where their sources changed and
    /// renews tokens due for it. Returns one error per volume that failed; the others are
    /// set up all the same.
    pub async fn setup(&self, pod: &Pod, facts: &NodeFacts) -> Result<(), Vec<MountError>> {
        let volumes: Vec<&Volume> = pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .collect();
        if let Err(message) = pod_uid(pod) {
            return Err(volumes
                .iter()
                .map(|v| MountError::new(&v.name, message.clone()))
                .collect());
        }
        let fetched = self.read(pod, &volumes).await;
        let errors: Vec<MountError> = volumes
            .iter()
            .filter_map(|volume| {
                self.setup_volume(pod, volume, facts, &fetched)
                    .err()
                    .map(|message| MountError::new(&volume.name, message))
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Reads what the pod's volumes project: objects through the sources' cache, tokens
    /// through the token cache.
    async fn read(&self, pod: &Pod, volumes: &[&Volume]) -> Fetched {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let (config_maps, secrets) = volume_references(pod);
        let mut fetched = Fetched::read(&self.sources, namespace, &config_maps, &secrets).await;
        let service_account = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".to_owned());
        for volume in volumes {
            let sources = volume
                .projected
                .iter()
                .flat_map(|p| p.sources.iter().flatten());
            for (index, source) in sources.enumerate() {
                let Some(token) = &source.service_account_token else {
                    continue;
                };
                let spec = TokenSpec {
                    namespace: namespace.to_owned(),
                    service_account: service_account.clone(),
                    audience: token.audience.clone().unwrap_or_default(),
                    expiration_seconds: token
                        .expiration_seconds
                        .unwrap_or(DEFAULT_TOKEN_EXPIRATION_SECONDS),
                    pod_name: pod.metadata.name.clone().unwrap_or_default(),
                    pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
                };
                let got = self.tokens.get(&self.sources, &spec).await;
                fetched.tokens.insert((volume.name.clone(), index), got);
            }
        }
        fetched
    }

    fn setup_volume(
        &self,
        pod: &Pod,
        volume: &Volume,
        facts: &NodeFacts,
        fetched: &Fetched,
    ) -> Result<(), String> {
        if let Some(host) = &volume.host_path {
            return hostpath::check_type(
                Path::new(&host.path),
                host.type_.as_deref().unwrap_or(""),
            );
        }
        let dir = self.volume_path(pod, volume).ok_or_else(|| {
            format!(
                "volume {:?} has a type the agent does not support",
                volume.name
            )
        })?;
        let failed = |what: &str, e: io::Error| format!("{what} {}: {e}", dir.display());
        if let Some(empty) = &volume.empty_dir {
            fs::create_dir_all(&dir).map_err(|e| failed("mkdir", e))?;
            if empty.medium.as_deref() == Some("Memory") {
                let size = empty
                    .size_limit
                    .as_ref()
                    .and_then(|q| Quantity::parse(&q.0).ok())
                    .map(|q| q.value())
                    .filter(|bytes| *bytes > 0);
                tmpfs::mount(&dir, size)?;
            }
            // World-writable, as kubelet makes it, so any user of the pod can use it.
            return fs::set_permissions(&dir, fs::Permissions::from_mode(0o777))
                .map_err(|e| failed("chmod", e));
        }
        let payload = volume_payload(volume, pod, facts, fetched).unwrap_or_else(|| {
            Err(format!(
                "volume {:?} has a type the agent does not support",
                volume.name
            ))
        })?;
        fs::create_dir_all(&dir).map_err(|e| failed("mkdir", e))?;
        if volume.secret.is_some() || volume.projected.is_some() {
            // Secrets and tokens live in memory only, as kubelet keeps them.
            tmpfs::mount(&dir, None)?;
        }
        write_atomically(&dir, &payload)
            .map(drop)
            .map_err(|e| failed("writing the volume's files in", e))
    }

    /// The CRI mounts of `container`'s volumeMounts (kubelet's `makeMounts`), making any
    /// subPath that does not exist yet as a directory. The error is the container's
    /// CreateContainerConfigError message.
    pub fn mounts(&self, pod: &Pod, container: &Container) -> Result<Vec<Mount>, String> {
        let planned = container_mounts(pod, container, |v| self.volume_path(pod, v))?;
        let mut mounts = Vec::with_capacity(planned.len());
        for mut p in planned {
            if p.sub_path {
                let path = PathBuf::from(&p.mount.host_path);
                if fs::symlink_metadata(&path).is_err() {
                    fs::create_dir_all(&path)
                        .map_err(|e| format!("failed to create subPath directory for volumeMount {:?} of container {:?}: {e}", p.mount.container_path, container.name))?;
                }
                if !p.host_volume {
                    // Resolved once here and handed over resolved, so a symlink in the volume
                    // cannot lead the runtime outside it.
                    let resolved = fs::canonicalize(&path).map_err(|e| e.to_string())?;
                    let root = fs::canonicalize(&p.volume_path).map_err(|e| e.to_string())?;
                    if !resolved.starts_with(&root) {
                        return Err(format!(
                            "subpath {:?} not within volume path {:?}",
                            resolved.display().to_string(),
                            root.display().to_string()
                        ));
                    }
                    p.mount.host_path = resolved.display().to_string();
                }
            }
            mounts.push(p.mount);
        }
        Ok(mounts)
    }

    /// Unmounts whatever is mounted in the pod's directory and removes it; forgets the pod's
    /// tokens. Removing a pod that has no directory succeeds.
    pub fn teardown(&self, uid: &str) -> Result<(), Error> {
        if uid.is_empty() || uid.contains('/') || uid.starts_with('.') {
            return Err(Error::io(
                format!("removing pod directory {uid:?}"),
                io::Error::new(io::ErrorKind::InvalidInput, "not a pod uid"),
            ));
        }
        let dir = labels::pod_dir(&self.root, uid);
        self.tokens.forget_pod(uid);
        if fs::symlink_metadata(&dir).is_err() {
            return Ok(());
        }
        tmpfs::unmount_all(&dir).map_err(|detail| Error::Command {
            command: "umount".into(),
            detail,
        })?;
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("removing {}", dir.display()), e)),
        }
    }

    /// The uids of the pods that have a directory, for removing those of pods gone.
    pub fn pods_on_disk(&self) -> Result<BTreeSet<String>, Error> {
        let pods = self.root.join("pods");
        let entries = match fs::read_dir(&pods) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
            Err(e) => return Err(Error::io(format!("listing {}", pods.display()), e)),
        };
        let mut uids = BTreeSet::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(format!("listing {}", pods.display()), e))?;
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                uids.insert(entry.file_name().to_string_lossy().into_owned());
            }
        }
        Ok(uids)
    }
}

#[cfg(test)]
#[path = "manager_tests.rs"]
mod tests;
