//! A container's CRI mounts from its volumeMounts, as kubelet's `makeMounts` makes them: the
//! volume's directory on the node (or a subPath within it), read-only when the mount asks or
//! the volume is a projection of API objects, with the mount's propagation.

use std::path::{Component, Path, PathBuf};

use keel_client::k8s_openapi::api::core::v1::{Container, Pod, Volume};

use crate::cri::{Mount, MountPropagation};

/// One mount to give the runtime, and whether its host path is a subPath that kubelet makes
/// (as a directory) when it does not exist.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedMount {
    pub mount: Mount,
    pub sub_path: bool,
    /// The volume's own directory on the node, which a subPath must stay within.
    pub volume_path: PathBuf,
    /// Whether the volume is a hostPath (whose subPaths may lead anywhere on the host anyway).
    pub host_volume: bool,
}

/// Whether the volume's contents come from API objects, which containers only read.
pub fn is_projection(volume: &Volume) -> bool {
    volume.config_map.is_some()
        || volume.secret.is_some()
        || volume.downward_api.is_some()
        || volume.projected.is_some()
}

fn check_sub_path(sub_path: &str) -> Result<(), String> {
    if Path::new(sub_path).is_absolute() {
        return Err(format!(
            "error SubPath `{sub_path}` must not be an absolute path"
        ));
    }
    if Path::new(sub_path)
        .components()
        .any(|c| matches!(c, Component::ParentDir))
    {
        return Err(format!(
            "unable to provision SubPath `{sub_path}`: must not contain '..'"
        ));
    }
    Ok(())
}

/// The mounts of `container`; `host_path` gives a volume's directory on the node (`None` for
/// a volume type the agent does not support).
pub fn container_mounts(
    pod: &Pod,
    container: &Container,
    host_path: impl Fn(&Volume) -> Option<PathBuf>,
) -> Result<Vec<PlannedMount>, String> {
    let volumes = pod.spec.iter().flat_map(|s| s.volumes.iter().flatten());
    let privileged = container
        .security_context
        .as_ref()
        .and_then(|s| s.privileged)
        .unwrap_or(false);
    let mut planned = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let Some(volume) = volumes.clone().find(|v| v.name == mount.name) else {
            return Err(format!(
                "cannot find volume {:?} to mount into container {:?}",
                mount.name, container.name
            ));
        };
        let volume_path = host_path(volume).ok_or_else(|| {
            format!(
                "volume {:?} has a type the agent does not support",
                volume.name
            )
        })?;
        let mut path = volume_path.clone();
        let sub_path = mount.sub_path.as_deref().unwrap_or("");
        if !sub_path.is_empty() {
            check_sub_path(sub_path)?;
            path = path.join(sub_path);
        }
        let propagation = match mount.mount_propagation.as_deref() {
            Some("Bidirectional") if !privileged => {
                return Err(
                    "Bidirectional mount propagation is available only to privileged containers"
                        .into(),
                );
            }
            Some("Bidirectional") => MountPropagation::PropagationBidirectional,
            Some("HostToContainer") => MountPropagation::PropagationHostToContainer,
            _ => MountPropagation::PropagationPrivate,
        };
        planned.push(PlannedMount {
            mount: Mount {
                container_path: mount.mount_path.clone(),
                host_path: path.display().to_string(),
                readonly: mount.read_only.unwrap_or(false) || is_projection(volume),
                propagation: propagation as i32,
                ..Mount::default()
            },
            sub_path: !sub_path.is_empty(),
            volume_path,
            host_volume: volume.host_path.is_some(),
        });
    }
    Ok(planned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_client::k8s_openapi::api::core::v1::{
        ConfigMapVolumeSource, EmptyDirVolumeSource, PodSpec, SecurityContext, VolumeMount,
    };

    fn pod() -> Pod {
        Pod {
            spec: Some(PodSpec {
                volumes: Some(vec![
                    Volume {
                        name: "scratch".into(),
                        empty_dir: Some(EmptyDirVolumeSource::default()),
                        ..Volume::default()
                    },
                    Volume {
                        name: "conf".into(),
                        config_map: Some(ConfigMapVolumeSource {
                            name: "settings".into(),
                            ..ConfigMapVolumeSource::default()
                        }),
                        ..Volume::default()
                    },
                ]),
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    fn mount(name: &str, path: &str) -> VolumeMount {
        VolumeMount {
            name: name.into(),
            mount_path: path.into(),
            ..VolumeMount::default()
        }
    }

    fn container(mounts: Vec<VolumeMount>) -> Container {
        Container {
            name: "c".into(),
            volume_mounts: Some(mounts),
            ..Container::default()
        }
    }

    fn dirs(volume: &Volume) -> Option<PathBuf> {
        Some(PathBuf::from("/pods/u/volumes").join(&volume.name))
    }

    #[test]
    fn projections_are_read_only_and_other_volumes_as_the_mount_says() {
        let mut ro = mount("scratch", "/ro");
        ro.read_only = Some(true);
        let c = container(vec![
            mount("scratch", "/data"),
            mount("conf", "/etc/app"),
            ro,
        ]);
        let planned = container_mounts(&pod(), &c, dirs).expect("mounts");
        let seen: Vec<(&str, &str, bool)> = planned
            .iter()
            .map(|p| {
                (
                    p.mount.container_path.as_str(),
                    p.mount.host_path.as_str(),
                    p.mount.readonly,
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("/data", "/pods/u/volumes/scratch", false),
                ("/etc/app", "/pods/u/volumes/conf", true),
                ("/ro", "/pods/u/volumes/scratch", true),
            ]
        );
    }

    #[test]
    fn a_sub_path_is_joined_and_escapes_are_refused() {
        let mut sub = mount("scratch", "/d");
        sub.sub_path = Some("a/b".into());
        let planned = container_mounts(&pod(), &container(vec![sub.clone()]), dirs).expect("ok");
        assert_eq!(planned[0].mount.host_path, "/pods/u/volumes/scratch/a/b");
        assert!(planned[0].sub_path);
        sub.sub_path = Some("../../etc".into());
        assert_eq!(
            container_mounts(&pod(), &container(vec![sub.clone()]), dirs),
            Err("unable to provision SubPath `../../etc`: must not contain '..'".into())
        );
        sub.sub_path = Some("/etc".into());
        assert_eq!(
            container_mounts(&pod(), &container(vec![sub]), dirs),
            Err("error SubPath `/etc` must not be an absolute path".into())
        );
    }

    #[test]
    fn propagation_follows_the_mount_and_bidirectional_needs_privilege() {
        let mut m = mount("scratch", "/d");
        m.mount_propagation = Some("HostToContainer".into());
        let planned = container_mounts(&pod(), &container(vec![m.clone()]), dirs).expect("ok");
        assert_eq!(
            planned[0].mount.propagation,
            MountPropagation::PropagationHostToContainer as i32
        );
        m.mount_propagation = Some("Bidirectional".into());
        assert!(container_mounts(&pod(), &container(vec![m.clone()]), dirs).is_err());
        let mut privileged = container(vec![m]);
        privileged.security_context = Some(SecurityContext {
            privileged: Some(true),
            ..SecurityContext::default()
        });
        let planned = container_mounts(&pod(), &privileged, dirs).expect("ok");
        assert_eq!(
            planned[0].mount.propagation,
            MountPropagation::PropagationBidirectional as i32
        );
    }

    #[test]
    fn a_mount_of_an_unknown_volume_fails() {
        let c = container(vec![mount("nope", "/x")]);
        assert_eq!(
            container_mounts(&pod(), &c, dirs),
            Err("cannot find volume \"nope\" to mount into container \"c\"".into())
        );
    }
}
