//! Volume payloads: which files each kind of projected volume holds, with which modes.

use std::collections::BTreeMap;

use keel_client::k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapProjection, ConfigMapVolumeSource, DownwardAPIProjection,
    DownwardAPIVolumeSource, ObjectFieldSelector, PodSpec, ProjectedVolumeSource, Secret,
    SecretVolumeSource, ServiceAccountTokenProjection, VolumeProjection,
};
use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keel_client::k8s_openapi::ByteString;

use super::*;
use crate::podfiles::SourceError;

fn pod() -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("shop".into()),
            labels: Some(BTreeMap::from([("app".into(), "web".into())])),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec::default()),
        ..Pod::default()
    }
}

fn fetched() -> Fetched {
    let mut f = Fetched::default();
    f.config_maps.insert(
        "settings".into(),
        Ok(ConfigMap {
            data: Some(BTreeMap::from([
                ("a.conf".into(), "A".into()),
                ("b.conf".into(), "B".into()),
            ])),
            binary_data: Some(BTreeMap::from([("blob".into(), ByteString(vec![0, 1]))])),
            ..ConfigMap::default()
        }),
    );
    f.config_maps.insert(
        "absent".into(),
        Err(SourceError::NotFound {
            kind: "configmap",
            name: "absent".into(),
        }),
    );
    f.secrets.insert(
        "db".into(),
        Ok(Secret {
            data: Some(BTreeMap::from([("pw".into(), ByteString(b"x".to_vec()))])),
            ..Secret::default()
        }),
    );
    f
}

fn key(k: &str, path: &str, mode: Option<i32>) -> KeyToPath {
    KeyToPath {
        key: k.into(),
        path: path.into(),
        mode,
    }
}

fn cm_volume(name: &str, items: Option<Vec<KeyToPath>>, optional: Option<bool>) -> Volume {
    Volume {
        name: "v".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: name.into(),
            items,
            optional,
            default_mode: None,
        }),
        ..Volume::default()
    }
}

fn files(payload: &Payload) -> Vec<(&str, &[u8], u32)> {
    payload
        .iter()
        .map(|(p, f)| (p.as_str(), f.data.as_slice(), f.mode))
        .collect()
}

fn payload_of(volume: &Volume) -> Result<Payload, String> {
    volume_payload(volume, &pod(), &NodeFacts::default(), &fetched()).expect("a projection")
}

#[test]
fn a_config_map_volume_holds_every_key_text_and_binary_at_0644() {
    let p = payload_of(&cm_volume("settings", None, None)).expect("payload");
    assert_eq!(
        files(&p),
        [
            ("a.conf", &b"A"[..], 0o644),
            ("b.conf", &b"B"[..], 0o644),
            ("blob", &[0u8, 1][..], 0o644),
        ]
    );
}

#[test]
fn items_pick_keys_to_paths_with_their_own_modes() {
    let items = vec![
        key("a.conf", "conf/a", Some(0o400)),
        key("b.conf", "b", None),
    ];
    let mut volume = cm_volume("settings", Some(items), None);
    if let Some(cm) = volume.config_map.as_mut() {
        cm.default_mode = Some(0o440);
    }
    let p = payload_of(&volume).expect("payload");
    assert_eq!(
        files(&p),
        [("b", &b"B"[..], 0o440), ("conf/a", &b"A"[..], 0o400)]
    );
}

#[test]
fn a_missing_key_fails_unless_optional() {
    let items = vec![key("nope", "n", None), key("a.conf", "a", None)];
    assert_eq!(
        payload_of(&cm_volume("settings", Some(items.clone()), None)),
        Err("configmap references non-existent config key: nope".into())
    );
    let p = payload_of(&cm_volume("settings", Some(items), Some(true))).expect("payload");
    assert_eq!(files(&p), [("a", &b"A"[..], 0o644)]);
}

#[test]
fn a_missing_config_map_fails_unless_optional_which_makes_an_empty_volume() {
    assert_eq!(
        payload_of(&cm_volume("absent", None, None)),
        Err("configmap \"absent\" not found".into())
    );
    assert_eq!(
        payload_of(&cm_volume("absent", None, Some(true))),
        Ok(Payload::new())
    );
}

#[test]
fn a_secret_volume_holds_its_decoded_keys() {
    let volume = Volume {
        name: "s".into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some("db".into()),
            default_mode: Some(0o400),
            items: None,
            optional: None,
        }),
        ..Volume::default()
    };
    let p = payload_of(&volume).expect("payload");
    assert_eq!(files(&p), [("pw", &b"x"[..], 0o400)]);
    let missing_key = Volume {
        secret: Some(SecretVolumeSource {
            secret_name: Some("db".into()),
            items: Some(vec![key("user", "u", None)]),
            ..SecretVolumeSource::default()
        }),
        ..volume
    };
    assert_eq!(
        payload_of(&missing_key),
        Err("references non-existent secret key: user".into())
    );
}

fn field(path: &str, field_path: &str) -> DownwardAPIVolumeFile {
    DownwardAPIVolumeFile {
        path: path.into(),
        field_ref: Some(ObjectFieldSelector {
            api_version: Some("v1".into()),
            field_path: field_path.into(),
        }),
        ..DownwardAPIVolumeFile::default()
    }
}

#[test]
fn a_downward_api_volume_holds_pod_fields() {
    let volume = Volume {
        name: "d".into(),
        downward_api: Some(DownwardAPIVolumeSource {
            items: Some(vec![
                field("name", "metadata.name"),
                field("labels", "metadata.labels"),
            ]),
            default_mode: None,
        }),
        ..Volume::default()
    };
    let p = payload_of(&volume).expect("payload");
    assert_eq!(
        files(&p),
        [
            ("labels", &b"app=\"web\""[..], 0o644),
            ("name", &b"web"[..], 0o644)
        ]
    );
}

fn projected(sources: Vec<VolumeProjection>) -> Volume {
    Volume {
        name: "kube-api-access-x".into(),
        projected: Some(ProjectedVolumeSource {
            default_mode: Some(420),
            sources: Some(sources),
        }),
        ..Volume::default()
    }
}

#[test]
fn a_projected_volume_merges_token_config_map_and_downward_api() {
    let volume = projected(vec![
        VolumeProjection {
            service_account_token: Some(ServiceAccountTokenProjection {
                path: "token".into(),
                expiration_seconds: Some(3607),
                audience: None,
            }),
            ..VolumeProjection::default()
        },
        VolumeProjection {
            config_map: Some(ConfigMapProjection {
                name: "settings".into(),
                items: Some(vec![key("a.conf", "ca.crt", None)]),
                optional: None,
            }),
            ..VolumeProjection::default()
        },
        VolumeProjection {
            downward_api: Some(DownwardAPIProjection {
                items: Some(vec![field("namespace", "metadata.namespace")]),
            }),
            ..VolumeProjection::default()
        },
    ]);
    let mut f = fetched();
    f.tokens
        .insert(("kube-api-access-x".into(), 0), Ok("jwt".into()));
    let p = volume_payload(&volume, &pod(), &NodeFacts::default(), &f)
        .expect("a projection")
        .expect("payload");
    assert_eq!(
        files(&p),
        [
            ("ca.crt", &b"A"[..], 0o644),
            ("namespace", &b"shop"[..], 0o644),
            ("token", &b"jwt"[..], 0o644),
        ]
    );
}

#[test]
fn a_projected_volume_reports_every_failing_source() {
    let volume = projected(vec![
        VolumeProjection {
            config_map: Some(ConfigMapProjection {
                name: "absent".into(),
                items: None,
                optional: None,
            }),
            ..VolumeProjection::default()
        },
        VolumeProjection {
            config_map: Some(ConfigMapProjection {
                name: "absent".into(),
                items: None,
                optional: Some(true),
            }),
            ..VolumeProjection::default()
        },
        VolumeProjection {
            downward_api: Some(DownwardAPIProjection {
                items: Some(vec![field("x", "spec.nodeName")]),
            }),
            ..VolumeProjection::default()
        },
    ]);
    assert_eq!(
        payload_of(&volume),
        Err("[configmap \"absent\" not found, unsupported fieldPath: spec.nodeName]".into())
    );
}

#[test]
fn other_volumes_are_not_projections() {
    let volume = Volume {
        name: "scratch".into(),
        empty_dir: Some(Default::default()),
        ..Volume::default()
    };
    assert!(volume_payload(&volume, &pod(), &NodeFacts::default(), &fetched()).is_none());
}

#[test]
fn references_name_every_object_the_volumes_read() {
    let mut p = pod();
    if let Some(spec) = p.spec.as_mut() {
        spec.volumes = Some(vec![
            cm_volume("settings", None, None),
            projected(vec![VolumeProjection {
                secret: Some(keel_client::k8s_openapi::api::core::v1::SecretProjection {
                    name: "db".into(),
                    items: None,
                    optional: None,
                }),
                ..VolumeProjection::default()
            }]),
        ]);
    }
    let (cms, secrets) = volume_references(&p);
    assert_eq!(cms.into_iter().collect::<Vec<_>>(), ["settings"]);
    assert_eq!(secrets.into_iter().collect::<Vec<_>>(), ["db"]);
}
