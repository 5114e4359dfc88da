//! Bodies as kubectl 1.32 sends them (captured from `kubectl create … -v=9`), read back as
//! the JSON kubectl would have sent.

use serde_json::json;

use super::*;

fn hex(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).expect("hex"))
        .collect()
}

/// `kubectl create configmap c --from-literal=a=b`
const CONFIGMAP: &str = "6b 38 73 00 0a 0f 0a 02 76 31 12 09 43 6f 6e 66 69 67 4d 61 70 12 1b
    0a 11 0a 01 63 12 00 1a 00 22 00 2a 00 32 00 38 00 42 00 12 06 0a 01 61 12 01 62 1a 00
    22 00";

/// `kubectl create deployment d --image=busybox:1.36 --replicas=0 --port=80`
const DEPLOYMENT: &str = "6b 38 73 00 0a 15 0a 07 61 70 70 73 2f 76 31 12 0a 44 65 70 6c 6f 79 6d
    65 6e 74 12 b9 01 0a 1b 0a 01 64 12 00 1a 00 22 00 2a 00 32 00 38 00 42 00 5a 08 0a 03 61
    70 70 12 01 64 12 8b 01 08 00 12 0a 0a 08 0a 03 61 70 70 12 01 64 1a 73 0a 1a 0a 00 12 00
    1a 00 22 00 2a 00 32 00 38 00 42 00 5a 08 0a 03 61 70 70 12 01 64 12 55 12 37 0a 07 62 75
    73 79 62 6f 78 12 0c 62 75 73 79 62 6f 78 3a 31 2e 33 36 2a 00 32 0a 0a 00 10 00 18 50 22
    00 2a 00 42 00 6a 00 72 00 80 01 00 88 01 00 90 01 00 a2 01 00 1a 00 32 00 42 00 4a 00 52
    00 58 00 60 00 68 00 82 01 00 8a 01 00 9a 01 00 c2 01 00 22 02 0a 00 28 00 38 00 1a 0c 08
    00 10 00 18 00 20 00 28 00 38 00 1a 00 22 00";

#[test]
fn a_configmap_from_kubectl_create_reads_as_its_json_form() {
    let out = object(&hex(CONFIGMAP)).expect("decodes");
    assert_eq!(
        out,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c"}, "data": {"a": "b"}})
    );
}

#[test]
fn a_deployment_keeps_zero_replicas_and_drops_unset_zero_values() {
    let out = object(&hex(DEPLOYMENT)).expect("decodes");
    assert_eq!(
        out["metadata"],
        json!({"name": "d", "labels": {"app": "d"}})
    );
    assert_eq!(
        out["spec"]["replicas"],
        json!(0),
        "a pointer keeps its zero"
    );
    assert_eq!(
        out["spec"]["selector"],
        json!({"matchLabels": {"app": "d"}})
    );
    let container = &out["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["name"], "busybox");
    assert_eq!(container["image"], "busybox:1.36");
    assert_eq!(container["ports"], json!([{"containerPort": 80}]));
    assert!(
        container.get("imagePullPolicy").is_none(),
        "an empty string that JSON omits is unset: {container}"
    );
    assert!(out["spec"]["template"]["spec"].get("hostNetwork").is_none());
    assert!(out["metadata"].get("creationTimestamp").is_none());
}

#[test]
fn a_self_subject_access_review_reads_with_its_attributes() {
    fn message(fields: &[(u8, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (number, bytes) in fields {
            out.push((number << 3) | 2);
            out.push(bytes.len() as u8);
            out.extend_from_slice(bytes);
        }
        out
    }
    let attrs = message(&[(1, b"default"), (2, b"list"), (5, b"pods")]);
    let spec = message(&[(1, &attrs)]);
    let review = message(&[(2, &spec)]);
    let type_meta = message(&[
        (1, b"authorization.k8s.io/v1"),
        (2, b"SelfSubjectAccessReview"),
    ]);
    let mut body = b"k8s\0".to_vec();
    body.extend(message(&[(1, &type_meta), (2, &review)]));
    let out = object(&body).expect("decodes");
    assert_eq!(
        out["spec"],
        json!({"resourceAttributes": {"namespace": "default", "verb": "list", "resource": "pods"}})
    );
}

#[test]
fn bodies_without_the_envelope_cut_short_or_of_unknown_kinds_are_refused() {
    assert_eq!(object(b"{}").expect_err("no magic").code(), 400);
    assert_eq!(object(b"k8s\0\x0a\x05ab").expect_err("short").code(), 400);
    let mut body = b"k8s\0\x0a\x0a\x0a\x02v1\x12\x04Nope".to_vec();
    body.extend(b"\x12\x00");
    assert_eq!(object(&body).expect_err("unknown kind").code(), 415);
}
