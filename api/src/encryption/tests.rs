//! Specifications of encryption at rest: the providers round-trip, the storage format carries
//! kube-apiserver's prefixes, keys rotate, and a value does not decrypt under another key.

use super::*;

const KEY_A: &str = "c2VjcmV0IGlzIHNlY3VyZSwgb3IgaXMgaXQ/IDMyIGI="; // 32 bytes
const KEY_B: &str = "YW5vdGhlciBzZWNyZXQgb2YgMzIgYnl0ZXMgbG9uZyE="; // 32 bytes
const SECRET_KEY: &[u8] = b"/registry/secrets/default/db";

fn config(providers: &str) -> String {
    format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n{providers}"
    )
}

fn transformer(providers: &str) -> Transformer {
    Transformer::from_rules(config::parse(&config(providers)).expect("valid configuration"))
}

fn keyed(kind: &str, name: &str, secret: &str) -> String {
    format!("      - {kind}:\n          keys:\n            - name: {name}\n              secret: {secret}\n")
}

#[test]
fn every_provider_round_trips_and_writes_kubernetes_prefix() {
    for kind in ["aesgcm", "aescbc", "secretbox"] {
        let t = transformer(&keyed(kind, "k1", KEY_A));
        let stored = t
            .to_storage(SECRET_KEY, b"{\"data\":1}".to_vec())
            .expect("seal");
        let prefix = format!("k8s:enc:{kind}:v1:k1:");
        assert!(stored.starts_with(prefix.as_bytes()), "{kind}");
        assert!(
            !stored.windows(8).any(|w| w == b"\"data\":1"),
            "{kind} hides the plaintext"
        );
        assert_eq!(
            t.from_storage(SECRET_KEY, stored).expect("open"),
            b"{\"data\":1}"
        );
    }
}

#[test]
fn resources_without_a_rule_are_stored_as_they_are() {
    let t = transformer(&keyed("aesgcm", "k1", KEY_A));
    let key = b"/registry/configmaps/default/c";
    assert_eq!(
        t.to_storage(key, b"plain".to_vec()).expect("store"),
        b"plain"
    );
    assert_eq!(
        t.from_storage(key, b"plain".to_vec()).expect("read"),
        b"plain"
    );
}

#[test]
fn aes_gcm_values_moved_to_another_key_do_not_decrypt() {
    let t = transformer(&keyed("aesgcm", "k1", KEY_A));
    let stored = t.to_storage(SECRET_KEY, b"value".to_vec()).expect("seal");
    assert!(t
        .from_storage(b"/registry/secrets/default/other", stored)
        .is_err());
}

#[test]
fn rotation_reads_old_keys_and_marks_their_values_stale() {
    let old = transformer(&keyed("aesgcm", "old", KEY_A));
    let written = old.to_storage(SECRET_KEY, b"value".to_vec()).expect("seal");
    let rotated = transformer(&(keyed("aesgcm", "new", KEY_B) + &keyed("aesgcm", "old", KEY_A)));
    assert_eq!(
        rotated
            .from_storage(SECRET_KEY, written.clone())
            .expect("open"),
        b"value"
    );
    assert!(rotated.is_stale(SECRET_KEY, &written));
    let rewritten = rotated
        .to_storage(SECRET_KEY, b"value".to_vec())
        .expect("seal");
    assert!(rewritten.starts_with(b"k8s:enc:aesgcm:v1:new:"));
    assert!(!rotated.is_stale(SECRET_KEY, &rewritten));
}

#[test]
fn plaintext_reads_only_where_identity_is_a_provider() {
    let strict = transformer(&keyed("aescbc", "k1", KEY_A));
    assert!(strict.from_storage(SECRET_KEY, b"{}".to_vec()).is_err());
    assert!(strict.is_stale(SECRET_KEY, b"{}"));
    let migrating = transformer(&(keyed("aescbc", "k1", KEY_A) + "      - identity: {}\n"));
    assert_eq!(
        migrating
            .from_storage(SECRET_KEY, b"{}".to_vec())
            .expect("read"),
        b"{}"
    );
}

#[test]
fn a_value_written_with_an_unknown_key_is_an_error_naming_its_prefix() {
    let a = transformer(&keyed("aesgcm", "a", KEY_A));
    let b = transformer(&keyed("aesgcm", "b", KEY_B));
    let written = a.to_storage(SECRET_KEY, b"value".to_vec()).expect("seal");
    let error = b.from_storage(SECRET_KEY, written).expect_err("no key");
    assert!(error.contains("k8s:enc:aesgcm:v1:a:"), "{error}");
}

#[test]
fn bad_configurations_are_refused_with_the_reason() {
    let short = config(&keyed("aesgcm", "k1", "c2hvcnQ="));
    assert!(config::parse(&short)
        .expect_err("short key")
        .contains("16, 24 or 32"));
    let wrong_kind = "apiVersion: v1\nkind: ConfigMap\nresources: []\n";
    assert!(config::parse(wrong_kind).is_err());
    let kms = config("      - kms:\n          name: x\n");
    assert!(config::parse(&kms)
        .expect_err("kms")
        .contains("not supported"));
}

#[test]
fn wildcards_select_groups_of_resources() {
    let text = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: ['*.apps']\n    providers:\n".to_owned()
        + &keyed("secretbox", "k", KEY_A);
    let t = Transformer::from_rules(config::parse(&text).expect("valid"));
    let deployment = b"/registry/deployments/default/web";
    assert!(t
        .to_storage(deployment, b"x".to_vec())
        .expect("seal")
        .starts_with(b"k8s:enc:secretbox:v1:k:"));
    assert_eq!(
        t.to_storage(SECRET_KEY, b"x".to_vec()).expect("store"),
        b"x"
    );
}
