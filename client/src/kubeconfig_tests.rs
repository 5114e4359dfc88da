//! Reading kubeconfigs as kubectl does: the current context picks the cluster and user, data
//! fields are base64, file references are relative to the kubeconfig, lists merge with the
//! first definition winning, and every unusable kubeconfig is refused naming its file and fault.

use std::path::Path;

use super::*;

const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

/// The kubeconfig `keel server` writes: a token and an inline CA.
fn admin(server: &str, token: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: keel
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: keel-admin
  user:
    token: {token}
contexts:
- name: keel-admin@keel
  context:
    cluster: keel
    user: keel-admin
    namespace: default
current-context: keel-admin@keel
",
        ca = STANDARD.encode(CA),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

fn problem_of(result: Result<Kubeconfig, Error>) -> (String, String) {
    match result {
        Err(Error::Kubeconfig { origin, problem }) => (origin, problem),
        other => panic!("expected a kubeconfig error, got {other:?}"),
    }
}

#[test]
fn the_admin_kubeconfig_gives_server_ca_token_and_namespace() {
    let config = Kubeconfig::parse(&admin("https://127.0.0.1:6443", "s3cret")).expect("parses");
    assert_eq!(config.context, "keel-admin@keel");
    assert_eq!(config.server, "https://127.0.0.1:6443");
    assert_eq!(config.certificate_authority.as_deref(), Some(CA.as_bytes()));
    assert_eq!(config.token.as_deref(), Some("s3cret"));
    assert_eq!(config.token_file, None);
    assert_eq!(config.client_certificate, None);
    assert_eq!(config.namespace.as_deref(), Some("default"));
    assert!(!config.insecure_skip_tls_verify);
}

#[test]
fn debug_output_hides_the_token_and_key() {
    let mut config = Kubeconfig::parse(&admin("https://h:6443", "s3cret")).expect("parses");
    config.client_certificate = Some(ClientCertificate {
        cert_pem: b"CERT".to_vec(),
        key_pem: b"PRIVATE".to_vec(),
    });
    let shown = format!("{config:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(!shown.contains("PRIVATE"), "{shown}");
    assert!(shown.contains("https://h:6443"), "{shown}");
}

#[test]
fn the_current_context_chooses_among_several() {
    let text = "
clusters:
- name: a
  cluster: {server: 'https://a:6443', insecure-skip-tls-verify: true}
- name: b
  cluster: {server: 'https://b:6443', tls-server-name: kubernetes}
users:
- name: ua
  user: {token: ta}
- name: ub
  user: {token: tb}
contexts:
- name: ca
  context: {cluster: a, user: ua}
- name: cb
  context: {cluster: b, user: ub}
current-context: cb
";
    let config = Kubeconfig::parse(text).expect("parses");
    assert_eq!(config.server, "https://b:6443");
    assert_eq!(config.token.as_deref(), Some("tb"));
    assert_eq!(config.tls_server_name.as_deref(), Some("kubernetes"));
    assert!(!config.insecure_skip_tls_verify);
    assert_eq!(config.namespace, None);
}

#[test]
fn client_certificates_come_from_data_fields() {
    let text = format!(
        "
clusters:
- name: k
  cluster: {{server: 'https://k:6443', insecure-skip-tls-verify: true}}
users:
- name: alice
  user:
    client-certificate-data: {}
    client-key-data: {}
contexts:
- name: c
  context: {{cluster: k, user: alice}}
current-context: c
",
        STANDARD.encode("CERT PEM"),
        STANDARD.encode("KEY PEM"),
    );
    let config = Kubeconfig::parse(&text).expect("parses");
    assert_eq!(
        config.client_certificate,
        Some(ClientCertificate {
            cert_pem: b"CERT PEM".to_vec(),
            key_pem: b"KEY PEM".to_vec(),
        })
    );
    assert_eq!(config.token, None);
    assert!(config.insecure_skip_tls_verify);
    assert_eq!(config.certificate_authority, None);
}

#[test]
fn file_references_resolve_against_the_kubeconfigs_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sub = dir.path().join("pki");
    std::fs::create_dir(&sub).expect("mkdir");
    write(&sub, "ca.crt", CA);
    write(&sub, "alice.crt", "CERT PEM");
    write(&sub, "alice.key", "KEY PEM");
    write(&sub, "token", "from-a-file\n");
    let path = write(
        dir.path(),
        "config",
        "
clusters:
- name: k
  cluster: {server: 'https://k:6443', certificate-authority: pki/ca.crt}
users:
- name: alice
  user:
    client-certificate: pki/alice.crt
    client-key: pki/alice.key
    tokenFile: pki/token
contexts:
- name: c
  context: {cluster: k, user: alice}
current-context: c
",
    );
    // Read from elsewhere: the working directory must not matter.
    let config = Kubeconfig::read(&path).expect("reads");
    assert_eq!(config.certificate_authority.as_deref(), Some(CA.as_bytes()));
    assert_eq!(
        config
            .client_certificate
            .as_ref()
            .map(|c| c.key_pem.as_slice()),
        Some(b"KEY PEM".as_slice())
    );
    assert_eq!(config.token.as_deref(), Some("from-a-file"));
    assert_eq!(config.token_file, Some(sub.join("token")));
    assert_eq!(config.origin, path.display().to_string());
}

#[test]
fn data_fields_win_over_files_and_inline_tokens_over_token_files() {
    let text = format!(
        "
clusters:
- name: k
  cluster:
    server: https://k:6443
    certificate-authority: /nonexistent/ca.crt
    certificate-authority-data: {}
users:
- name: u
  user: {{token: inline, tokenFile: /nonexistent/token}}
contexts:
- name: c
  context: {{cluster: k, user: u}}
current-context: c
",
        STANDARD.encode(CA)
    );
    let config = Kubeconfig::parse(&text).expect("the files are never read");
    assert_eq!(config.certificate_authority.as_deref(), Some(CA.as_bytes()));
    assert_eq!(config.token.as_deref(), Some("inline"));
    assert_eq!(config.token_file, None);
}

#[test]
fn a_missing_current_context_is_refused_naming_the_file_and_the_contexts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = admin("https://h:6443", "t").replace(
        "current-context: keel-admin@keel",
        "current-context: elsewhere",
    );
    let path = write(dir.path(), "kubeconfig", &text);
    let (origin, problem) = problem_of(Kubeconfig::read(&path));
    assert_eq!(origin, path.display().to_string());
    assert!(problem.contains("\"elsewhere\""), "{problem}");
    assert!(problem.contains("keel-admin@keel"), "{problem}");
}

#[test]
fn unusable_kubeconfigs_are_refused_with_the_reason() {
    let cases = [
        ("clusters: [", "is not a kubeconfig"),
        ("", "sets no current-context"),
        (
            "contexts: [{name: c, context: {cluster: k}}]\ncurrent-context: c",
            "names cluster \"k\", which it does not define",
        ),
        (
            "clusters: [{name: k, cluster: {server: 'https://k'}}]\n\
             contexts: [{name: c, context: {cluster: k, user: nobody}}]\ncurrent-context: c",
            "names user \"nobody\"",
        ),
        (
            "clusters: [{name: k, cluster: {}}]\n\
             contexts: [{name: c, context: {cluster: k}}]\ncurrent-context: c",
            "cluster \"k\" has no server",
        ),
        (
            "clusters: [{name: k, cluster: {server: 'k:6443'}}]\n\
             contexts: [{name: c, context: {cluster: k}}]\ncurrent-context: c",
            "not an https:// or http:// URL",
        ),
        (
            "clusters: [{name: k, cluster: {server: 'https://k', certificate-authority-data: '!!'}}]\n\
             contexts: [{name: c, context: {cluster: k}}]\ncurrent-context: c",
            "certificate-authority-data of cluster \"k\" is not base64",
        ),
        (
            "clusters: [{name: k, cluster: {server: 'https://k', certificate-authority: /nonexistent/ca}}]\n\
             contexts: [{name: c, context: {cluster: k}}]\ncurrent-context: c",
            "certificate-authority of cluster \"k\": reading /nonexistent/ca",
        ),
        (
            "clusters: [{name: k, cluster: {server: 'https://k'}}]\n\
             users: [{name: u, user: {client-certificate-data: Q0VSVA==}}]\n\
             contexts: [{name: c, context: {cluster: k, user: u}}]\ncurrent-context: c",
            "needs both a client certificate and its key",
        ),
        (
            "clusters: [{name: k, cluster: {server: 'https://k'}}]\n\
             users: [{name: u, user: {exec: {command: gke-gcloud-auth-plugin}}}]\n\
             contexts: [{name: c, context: {cluster: k, user: u}}]\ncurrent-context: c",
            "exec plugin",
        ),
    ];
    for (text, expected) in cases {
        let (origin, problem) = problem_of(Kubeconfig::parse(text));
        assert_eq!(origin, "(inline)");
        assert!(problem.contains(expected), "{text:?}: {problem}");
    }
}

#[test]
fn an_unreadable_file_is_named() {
    let error = Kubeconfig::read("/nonexistent/kubeconfig").expect_err("no such file");
    let message = error.to_string();
    assert!(
        message.starts_with("kubeconfig /nonexistent/kubeconfig: cannot be read"),
        "{message}"
    );
}

#[test]
fn a_list_merges_with_the_first_definition_winning_and_missing_files_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The first file chooses the context and defines its user; the second defines the
    // cluster, and a user of the same name that must lose.
    let first = write(
        dir.path(),
        "first",
        "users: [{name: u, user: {token: first}}]\n\
         contexts: [{name: c, context: {cluster: k, user: u}}]\ncurrent-context: c\n",
    );
    let second = write(
        dir.path(),
        "second",
        "clusters: [{name: k, cluster: {server: 'https://k:6443'}}]\n\
         users: [{name: u, user: {token: second}}]\ncurrent-context: other\n",
    );
    let missing = dir.path().join("missing");
    let config = Kubeconfig::read_all(&[missing.clone(), first, second]).expect("merges");
    assert_eq!(config.context, "c");
    assert_eq!(config.server, "https://k:6443");
    assert_eq!(config.token.as_deref(), Some("first"));

    let (_, problem) = problem_of(Kubeconfig::read_all(&[missing]));
    assert_eq!(problem, "none of these files exists");
}
