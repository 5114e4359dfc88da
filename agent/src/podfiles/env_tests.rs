//! A container's environment: kubelet's order, expansion, references and their errors.

use std::collections::BTreeMap;

use keel_client::k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapEnvSource, ConfigMapKeySelector, Container, EnvFromSource, EnvVar,
    EnvVarSource, ObjectFieldSelector, Pod, PodSpec, Secret, SecretEnvSource, SecretKeySelector,
};
use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keel_client::k8s_openapi::ByteString;

use super::*;

fn pod() -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("shop".into()),
            uid: Some("u-1".into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: Some("n1".into()),
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

fn literal(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn from(name: &str, source: EnvVarSource) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(source),
    }
}

fn cm_key(name: &str, key: &str, optional: Option<bool>) -> EnvVarSource {
    EnvVarSource {
        config_map_key_ref: Some(ConfigMapKeySelector {
            name: name.into(),
            key: key.into(),
            optional,
        }),
        ..EnvVarSource::default()
    }
}

fn fetched() -> Fetched {
    let cm = ConfigMap {
        data: Some(BTreeMap::from([
            ("MODE".into(), "fast".into()),
            ("1BAD".into(), "x".into()),
            ("LEVEL".into(), "3".into()),
        ])),
        ..ConfigMap::default()
    };
    let secret = Secret {
        data: Some(BTreeMap::from([(
            "password".into(),
            ByteString(b"s3cret".to_vec()),
        )])),
        ..Secret::default()
    };
    let mut f = Fetched::default();
    f.config_maps.insert("settings".into(), Ok(cm));
    f.config_maps.insert(
        "absent".into(),
        Err(SourceError::NotFound {
            kind: "configmap",
            name: "absent".into(),
        }),
    );
    f.secrets.insert("db".into(), Ok(secret));
    f.secrets.insert(
        "gone".into(),
        Err(SourceError::NotFound {
            kind: "secret",
            name: "gone".into(),
        }),
    );
    f
}

fn env_of(container: &Container) -> Result<Env, EnvError> {
    container_env(&pod(), container, &NodeFacts::default(), &fetched())
}

fn pairs(env: &Env) -> Vec<(&str, &str)> {
    env.vars
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.as_str()))
        .collect()
}

#[test]
fn env_from_comes_first_prefixed_and_env_overrides_it() {
    let c = Container {
        env_from: Some(vec![EnvFromSource {
            prefix: Some("APP_".into()),
            config_map_ref: Some(ConfigMapEnvSource {
                name: "settings".into(),
                optional: None,
            }),
            secret_ref: None,
        }]),
        env: Some(vec![
            literal("APP_MODE", "slow"),
            literal(
                "GREETING",
                "mode=$(APP_MODE) level=$(APP_LEVEL) $(UNSET) $$(APP_MODE)",
            ),
        ]),
        ..Container::default()
    };
    let env = env_of(&c).expect("env");
    assert_eq!(
        pairs(&env),
        [
            ("APP_1BAD", "x"),
            ("APP_LEVEL", "3"),
            ("APP_MODE", "slow"),
            ("GREETING", "mode=slow level=3 $(UNSET) $(APP_MODE)"),
        ]
    );
    assert!(env.warnings.is_empty(), "APP_1BAD is a valid name");
}

#[test]
fn invalid_env_from_keys_are_skipped_with_a_warning() {
    let c = Container {
        env_from: Some(vec![EnvFromSource {
            prefix: None,
            config_map_ref: Some(ConfigMapEnvSource {
                name: "settings".into(),
                optional: None,
            }),
            secret_ref: None,
        }]),
        ..Container::default()
    };
    let env = env_of(&c).expect("env");
    assert_eq!(pairs(&env), [("LEVEL", "3"), ("MODE", "fast")]);
    assert_eq!(
        env.warnings,
        [EnvWarning {
            reason: "InvalidEnvironmentVariableNames",
            message: "Keys [1BAD] from the EnvFrom configMap shop/settings were skipped since they are considered invalid environment variable names.".into(),
        }]
    );
}

#[test]
fn a_reference_expands_only_variables_defined_before_it() {
    let c = Container {
        env: Some(vec![literal("A", "$(B)"), literal("B", "b")]),
        ..Container::default()
    };
    assert_eq!(
        pairs(&env_of(&c).expect("env")),
        [("A", "$(B)"), ("B", "b")]
    );
}

#[test]
fn values_from_keys_fields_and_secrets() {
    let c = Container {
        env: Some(vec![
            from("MODE", cm_key("settings", "MODE", None)),
            from(
                "PASSWORD",
                EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: "db".into(),
                        key: "password".into(),
                        optional: None,
                    }),
                    ..EnvVarSource::default()
                },
            ),
            from(
                "POD",
                EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        api_version: Some("v1".into()),
                        field_path: "metadata.name".into(),
                    }),
                    ..EnvVarSource::default()
                },
            ),
            from(
                "NODE",
                EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        api_version: None,
                        field_path: "spec.nodeName".into(),
                    }),
                    ..EnvVarSource::default()
                },
            ),
            literal("URL", "http://$(POD):$(PASSWORD)@$(NODE)"),
        ]),
        ..Container::default()
    };
    assert_eq!(
        pairs(&env_of(&c).expect("env")),
        [
            ("MODE", "fast"),
            ("PASSWORD", "s3cret"),
            ("POD", "web"),
            ("NODE", "n1"),
            ("URL", "http://web:s3cret@n1"),
        ]
    );
}

#[test]
fn optional_references_to_missing_objects_and_keys_are_left_out() {
    let c = Container {
        env_from: Some(vec![EnvFromSource {
            prefix: None,
            config_map_ref: None,
            secret_ref: Some(SecretEnvSource {
                name: "gone".into(),
                optional: Some(true),
            }),
        }]),
        env: Some(vec![
            from("A", cm_key("absent", "k", Some(true))),
            from("B", cm_key("settings", "nokey", Some(true))),
            literal("C", "c"),
        ]),
        ..Container::default()
    };
    assert_eq!(pairs(&env_of(&c).expect("env")), [("C", "c")]);
}

#[test]
fn missing_objects_and_keys_fail_with_kubelets_messages() {
    let fail = |var: EnvVar| {
        let c = Container {
            env: Some(vec![var]),
            ..Container::default()
        };
        env_of(&c).expect_err("fails").to_string()
    };
    assert_eq!(
        fail(from("A", cm_key("absent", "k", None))),
        "configmap \"absent\" not found"
    );
    assert_eq!(
        fail(from("A", cm_key("settings", "nokey", None))),
        "couldn't find key nokey in ConfigMap shop/settings"
    );
    assert_eq!(
        fail(from(
            "A",
            EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: "gone".into(),
                    key: "k".into(),
                    optional: None,
                }),
                ..EnvVarSource::default()
            }
        )),
        "secret \"gone\" not found"
    );
    assert_eq!(
        fail(from(
            "A",
            EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: "db".into(),
                    key: "user".into(),
                    optional: None,
                }),
                ..EnvVarSource::default()
            }
        )),
        "couldn't find key user in Secret shop/db"
    );
    let env_from_missing = Container {
        env_from: Some(vec![EnvFromSource {
            prefix: None,
            config_map_ref: Some(ConfigMapEnvSource {
                name: "absent".into(),
                optional: None,
            }),
            secret_ref: None,
        }]),
        ..Container::default()
    };
    assert_eq!(
        env_of(&env_from_missing).expect_err("fails").to_string(),
        "configmap \"absent\" not found"
    );
}

#[test]
fn a_failed_read_fails_even_an_optional_reference() {
    let mut f = fetched();
    f.config_maps.insert(
        "flaky".into(),
        Err(SourceError::Failed("unavailable".into())),
    );
    let c = Container {
        env: Some(vec![from("A", cm_key("flaky", "k", Some(true)))]),
        ..Container::default()
    };
    let error = container_env(&pod(), &c, &NodeFacts::default(), &f).expect_err("fails");
    assert_eq!(error.to_string(), "unavailable");
}

#[test]
fn references_name_every_config_map_and_secret_read() {
    let c = Container {
        env_from: Some(vec![EnvFromSource {
            prefix: None,
            config_map_ref: Some(ConfigMapEnvSource {
                name: "a".into(),
                optional: None,
            }),
            secret_ref: Some(SecretEnvSource {
                name: "s".into(),
                optional: None,
            }),
        }]),
        env: Some(vec![from("X", cm_key("b", "k", None))]),
        ..Container::default()
    };
    let (cms, secrets) = env_references(&c);
    assert_eq!(cms.into_iter().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(secrets.into_iter().collect::<Vec<_>>(), ["s"]);
}

#[test]
fn variable_names_follow_kubernetes_rules() {
    for good in ["A", "a_b", "-x", ".y", "MY.VAR-1"] {
        assert!(is_env_var_name(good), "{good}");
    }
    for bad in ["", "1A", "A B", "A=B", "é"] {
        assert!(!is_env_var_name(bad), "{bad}");
    }
}
