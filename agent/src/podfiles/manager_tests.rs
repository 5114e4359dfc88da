//! The volume manager on a real directory: setup, refresh, mounts and teardown.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use keel_client::k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, EmptyDirVolumeSource, HostPathVolumeSource, PodSpec,
    ProjectedVolumeSource, Secret, ServiceAccountTokenProjection, VolumeMount, VolumeProjection,
};
use keel_client::k8s_openapi::apimachinery::pkg::api::resource::Quantity as Q;
use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;
use crate::podfiles::{SourceError, Token};

/// Objects held in memory, for these unit tests only.
#[derive(Default)]
struct MemorySources {
    config_maps: Mutex<BTreeMap<String, ConfigMap>>,
    tokens_issued: AtomicUsize,
}

impl MemorySources {
    fn put_config_map(&self, name: &str, data: &[(&str, &str)]) {
        let cm = ConfigMap {
            data: Some(
                data.iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..ConfigMap::default()
        };
        self.config_maps
            .lock()
            .expect("lock")
            .insert(name.to_owned(), cm);
    }
}

impl Sources for MemorySources {
    async fn config_map(&self, _namespace: &str, name: &str) -> Result<ConfigMap, SourceError> {
        self.config_maps
            .lock()
            .expect("lock")
            .get(name)
            .cloned()
            .ok_or_else(|| SourceError::NotFound {
                kind: "configmap",
                name: name.to_owned(),
            })
    }

    async fn secret(&self, _namespace: &str, name: &str) -> Result<Secret, SourceError> {
        Err(SourceError::NotFound {
            kind: "secret",
            name: name.to_owned(),
        })
    }

    async fn token(&self, spec: &TokenSpec) -> Result<Token, SourceError> {
        let n = self.tokens_issued.fetch_add(1, Ordering::SeqCst);
        Ok(Token {
            token: format!("token-{n}-for-{}-{}", spec.pod_name, spec.audience),
            expiration: chrono::Utc::now() + chrono::Duration::seconds(spec.expiration_seconds),
        })
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

fn pod(uid: &str, volumes: Vec<Volume>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("shop".into()),
            uid: Some(uid.into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            volumes: Some(volumes),
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

fn config_map_volume(name: &str, config_map: &str) -> Volume {
    Volume {
        name: name.into(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map.into(),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn manager() -> (tempfile::TempDir, VolumeManager<MemorySources>) {
    let root = tempfile::tempdir().expect("temp dir");
    let manager = VolumeManager::new(root.path(), MemorySources::default());
    (root, manager)
}

#[tokio::test]
async fn a_config_map_volume_is_written_and_refreshed_when_the_config_map_changes() {
    let (root, manager) = manager();
    manager
        .sources()
        .put_config_map("settings", &[("mode", "fast")]);
    let p = pod("u1", vec![config_map_volume("conf", "settings")]);
    manager
        .setup(&p, &NodeFacts::default())
        .await
        .expect("setup");
    let dir = root
        .path()
        .join("pods/u1/volumes/kubernetes.io~configmap/conf");
    assert_eq!(fs::read_to_string(dir.join("mode")).expect("mode"), "fast");
    let first = fs::read_link(dir.join("..data")).expect("..data");

    manager
        .setup(&p, &NodeFacts::default())
        .await
        .expect("again");
    assert_eq!(
        fs::read_link(dir.join("..data")).expect("..data"),
        first,
        "unchanged sources write nothing"
    );

    manager
        .sources()
        .put_config_map("settings", &[("mode", "slow"), ("extra", "1")]);
    manager
        .setup(&p, &NodeFacts::default())
        .await
        .expect("refresh");
    assert_eq!(fs::read_to_string(dir.join("mode")).expect("mode"), "slow");
    assert_eq!(fs::read_to_string(dir.join("extra")).expect("extra"), "1");
    assert_ne!(fs::read_link(dir.join("..data")).expect("..data"), first);
}

#[tokio::test]
async fn a_missing_config_map_fails_that_volume_with_kubelets_failed_mount_message() {
    let (root, manager) = manager();
    let p = pod(
        "u2",
        vec![
            config_map_volume("conf", "absent"),
            Volume {
                name: "scratch".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            },
        ],
    );
    let errors = manager
        .setup(&p, &NodeFacts::default())
        .await
        .expect_err("fails");
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        ["MountVolume.SetUp failed for volume \"conf\" : configmap \"absent\" not found"]
    );
    let scratch = root
        .path()
        .join("pods/u2/volumes/kubernetes.io~empty-dir/scratch");
    assert!(
        scratch.is_dir(),
        "the other volumes are set up all the same"
    );
    let mode = fs::metadata(&scratch).expect("meta").permissions().mode();
    assert_eq!(mode & 0o777, 0o777);
}

#[tokio::test]
async fn host_paths_are_checked_and_made_as_their_type_says() {
    let (root, manager) = manager();
    let made = root.path().join("host/made");
    let file = root.path().join("host-file");
    fs::write(&file, "x").expect("file");
    let host = |name: &str, path: &Path, kind: &str| Volume {
        name: name.into(),
        host_path: Some(HostPathVolumeSource {
            path: path.display().to_string(),
            type_: Some(kind.into()),
        }),
        ..Volume::default()
    };
    let p = pod(
        "u3",
        vec![
            host("made", &made, "DirectoryOrCreate"),
            host("wrong", &file, "Directory"),
        ],
    );
    let errors = manager
        .setup(&p, &NodeFacts::default())
        .await
        .expect_err("fails");
    assert!(made.is_dir());
    assert_eq!(
        errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [format!(
            "MountVolume.SetUp failed for volume \"wrong\" : hostPath type check failed: {} is not a directory",
            file.display()
        )]
    );
}

fn token_volume(expiration_seconds: i64) -> Volume {
    Volume {
        name: "kube-api-access-abcde".into(),
        projected: Some(ProjectedVolumeSource {
            default_mode: Some(420),
            sources: Some(vec![VolumeProjection {
                service_account_token: Some(ServiceAccountTokenProjection {
                    path: "token".into(),
                    expiration_seconds: Some(expiration_seconds),
                    audience: Some("vault".into()),
                }),
                ..VolumeProjection::default()
            }]),
        }),
        ..Volume::default()
    }
}

#[tokio::test]
async fn a_projected_token_is_requested_once_and_renewed_only_when_due() {
    if !is_root() {
        eprintln!("skipping: projected volumes are tmpfs mounts, which need root");
        return;
    }
    let (root, manager) = manager();
    let p = pod("u4", vec![token_volume(3607)]);
    manager
        .setup(&p, &NodeFacts::default())
        .await
        .expect("setup");
    manager
        .setup(&p, &NodeFacts::default())
        .await
        .expect("again");
    let dir = root
        .path()
        .join("pods/u4/volumes/kubernetes.io~projected/kube-api-access-abcde");
    assert_eq!(
        fs::read_to_string(dir.join("token")).expect("token"),
        "token-0-for-web-vault"
    );
    assert_eq!(manager.sources().tokens_issued.load(Ordering::SeqCst), 1);
    assert!(
        tmpfs::is_mount_point(&dir).expect("mountinfo"),
        "tokens live in memory"
    );
    manager.teardown("u4").expect("teardown");
    assert!(!root.path().join("pods/u4").exists());
    assert!(!tmpfs::is_mount_point(&dir).expect("mountinfo"));
}

#[tokio::test]
async fn a_token_past_eighty_percent_of_its_life_is_renewed_on_the_next_setup() {
    if !is_root() {
        eprintln!("skipping: projected volumes are tmpfs mounts, which need root");
        return;
    }
    let (root, manager) = manager();
    // A token that lives no longer than its renewal margin is due at once.
    let p = pod("u5", vec![token_volume(0)]);
    manager
        .setup(&p, &NodeFacts::default())
        .await
        .expect("setup");
    manager
        .setup(&p, &NodeFacts::default())
        .await
        .expect("again");
    let file = root
        .path()
        .join("pods/u5/volumes/kubernetes.io~projected/kube-api-access-abcde/token");
    assert_eq!(
        fs::read_to_string(file).expect("token"),
        "token-1-for-web-vault"
    );
    manager.teardown("u5").expect("teardown");
}

#[tokio::test]
async fn a_memory_empty_dir_is_a_tmpfs_of_its_size_limit_and_teardown_unmounts_it() {
    if !is_root() {
        eprintln!("skipping: tmpfs mounts need root");
        return;
    }
    let (root, manager) = manager();
    let p = pod(
        "u6",
        vec![Volume {
            name: "cache".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".into()),
                size_limit: Some(Q("1Mi".into())),
            }),
            ..Volume::default()
        }],
    );
    manager
        .setup(&p, &NodeFacts::default())
        .await
        .expect("setup");
    manager
        .setup(&p, &NodeFacts::default())
        .await
        .expect("idempotent");
    let dir = root
        .path()
        .join("pods/u6/volumes/kubernetes.io~empty-dir/cache");
    let points = tmpfs::mounts_under(&dir).expect("mountinfo");
    assert_eq!(points.len(), 1, "mounted once: {points:?}");
    assert_eq!(points[0], dir);
    let too_big = fs::write(dir.join("big"), vec![0u8; 2 * 1024 * 1024]);
    assert!(too_big.is_err(), "the size limit holds");
    assert_eq!(
        manager
            .pods_on_disk()
            .expect("list")
            .into_iter()
            .collect::<Vec<_>>(),
        ["u6"]
    );
    manager.teardown("u6").expect("teardown");
    assert!(manager.pods_on_disk().expect("list").is_empty());
    assert!(tmpfs::mounts_under(root.path())
        .expect("mountinfo")
        .is_empty());
}

#[tokio::test]
async fn mounts_point_into_the_volume_dirs_and_make_missing_sub_paths() {
    let (root, manager) = manager();
    manager
        .sources()
        .put_config_map("settings", &[("app.conf", "x")]);
    let p = pod(
        "u7",
        vec![
            config_map_volume("conf", "settings"),
            Volume {
                name: "scratch".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            },
        ],
    );
    manager
        .setup(&p, &NodeFacts::default())
        .await
        .expect("setup");
    let container = Container {
        name: "app".into(),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "conf".into(),
                mount_path: "/etc/app/app.conf".into(),
                sub_path: Some("app.conf".into()),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "scratch".into(),
                mount_path: "/work".into(),
                sub_path: Some("w/1".into()),
                ..VolumeMount::default()
            },
        ]),
        ..Container::default()
    };
    let mounts = manager.mounts(&p, &container).expect("mounts");
    let pod_dir = fs::canonicalize(root.path().join("pods/u7")).expect("pod dir");
    let conf_data = fs::canonicalize(
        root.path()
            .join("pods/u7/volumes/kubernetes.io~configmap/conf/app.conf"),
    )
    .expect("resolved");
    assert_eq!(mounts[0].host_path, conf_data.display().to_string());
    assert!(mounts[0].readonly);
    let work = pod_dir.join("volumes/kubernetes.io~empty-dir/scratch/w/1");
    assert!(work.is_dir(), "the subPath was made");
    assert_eq!(mounts[1].host_path, work.display().to_string());
    assert!(!mounts[1].readonly);
    manager.teardown("u7").expect("teardown");
    assert!(!pod_dir.exists());
}

#[tokio::test]
async fn a_sub_path_leading_out_of_its_volume_through_a_symlink_is_refused() {
    let (root, manager) = manager();
    let p = pod(
        "u8",
        vec![Volume {
            name: "scratch".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        }],
    );
    manager
        .setup(&p, &NodeFacts::default())
        .await
        .expect("setup");
    let dir = root
        .path()
        .join("pods/u8/volumes/kubernetes.io~empty-dir/scratch");
    std::os::unix::fs::symlink("/etc", dir.join("escape")).expect("symlink");
    let container = Container {
        name: "app".into(),
        volume_mounts: Some(vec![VolumeMount {
            name: "scratch".into(),
            mount_path: "/x".into(),
            sub_path: Some("escape".into()),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    };
    let error = manager.mounts(&p, &container).expect_err("refused");
    assert!(
        error.starts_with("subpath \"/etc\" not within volume path"),
        "{error}"
    );
}
